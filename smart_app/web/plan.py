"""The plan page and the confirmed write: thin views over service.py."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, Response, current_app, render_template, request

from smart_app import render, service
from smart_app.errors import InputError, WriteBackError, WriteBlocked, WriteIncomplete
from smart_app.fhir import summary
from smart_app.fhir.gateway import FhirGateway, PatientRecord
from smart_app.fhir.plan_state import plan_state
from smart_app.fhir.written import Confirmation
from smart_app.rules.eligibility import UNBLOCK_ADVICE
from smart_app.rules.model import Severity
from smart_app.rules.plan import may_write
from smart_app.web import context, followup, grants, present, smart
from smart_app.web.connection import connect, write_strategy
from smart_app.web.security import check_csrf
from smart_app.web.state import web_state

bp = Blueprint("plan", __name__, url_prefix="/p/<context_id>")

MAX_PLANNING_DAYS = 365


def _infusion_date(text: str | None, *, today: dt.date) -> dt.date:
    """The planned infusion date from the form: tomorrow by default, never in the past."""
    if not text:
        return today + dt.timedelta(days=1)
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise InputError(f"{text!r} is not a date (YYYY-MM-DD)") from None
    if not today <= day <= today + dt.timedelta(days=MAX_PLANNING_DAYS):
        raise InputError("the planned infusion date must be between today and a year from now")
    return day


def _read(gateway: FhirGateway, patient: str) -> PatientRecord:
    """The patient's chart as read today, its searches floored by the web's policy."""
    state = web_state()
    return gateway.read_patient(patient, on=state.today(), policy=state.settings.policy)


def _evaluate(
    context_id: str, infusion_text: str | None
) -> tuple[context.LaunchContext, FhirGateway, service.Evaluation]:
    """Read the chart once and build the plan."""
    launched, gateway = connect(context_id)
    record = _read(gateway, launched.patient)
    return launched, gateway, _plan(record, infusion_text)


def _plan(record: PatientRecord, infusion_text: str | None) -> service.Evaluation:
    """The plan for a record read today."""
    state = web_state()
    today = state.today()
    infusion = _infusion_date(infusion_text, today=today)
    return service.evaluate_record(
        record, on=today, infusion_date=infusion, policy=state.settings.policy
    )


def _page(
    context_id: str,
    launched: context.LaunchContext,
    evaluation: service.Evaluation,
    *,
    preview: bool = True,
) -> dict[str, Any]:
    """Everything the plan template shows."""
    state = web_state()
    plan = evaluation.plan
    data = render.plan_data(plan)
    status = plan.eligibility.status
    writable = may_write(plan)
    review = [f for f in data["eligibility"]["findings"] if f["severity"] == "needs-review"]
    blocking = [f for f in data["eligibility"]["findings"] if f["severity"] == status.value]
    refused = grants.refusal(launched.grants(), grants.Write.PLAN)
    rows: list[summary.WriteRow] = []
    if writable and preview and refused is None:
        confirmation = Confirmation(
            recorded=state.now(),
            acknowledged=frozenset(f["code"] for f in review),
            fhir_user=launched.fhir_user or None,
            order_mode=state.settings.order_mode,
        )
        rows = summary.write_rows(service.transaction(evaluation, confirmation))
    return {
        "context_id": context_id,
        "launched": launched,
        "banner": summary.banner(evaluation.record.resources, launched.patient),
        "show_banner": launched.need_patient_banner,
        "plan": data,
        "status": status.value,
        "writable": writable,
        "refused": refused,
        "review": review,
        "blocking": [] if writable else blocking,
        "advice": UNBLOCK_ADVICE.get(status, ""),
        "timeline": present.timeline(data),
        "write_rows": rows,
        "fingerprint": render.fingerprint(data),
        "order_mode": state.settings.order_mode.value,
        "truncated": evaluation.record.truncated,
        "severities": [s.value for s in Severity],
    }


@bp.get("/")
def show(context_id: str) -> str | tuple[str, int]:
    """A patient on an active plan gets the follow-up view; otherwise (or with ?view=plan) the
    plan page: eligibility with evidence, dose and kit, course, schedule, what is written."""
    launched, gateway = connect(context_id)
    record = _read(gateway, launched.patient)
    planning = request.args.get("view") == "plan"
    if not planning and (following := followup.follow(record)) is not None:
        return render_template("followup.html", **followup.page(context_id, launched, following))
    evaluation = _plan(record, request.args.get("infusion_date"))
    page = _page(context_id, launched, evaluation)
    return render_template("plan.html", **page, on_plan=plan_state(record) is not None)


@bp.post("/write")
def write(context_id: str) -> tuple[str, int] | str:
    """Rebuild the plan from the chart, check it is what was reviewed, write one transaction."""
    check_csrf(web_state().settings)
    state = web_state()
    launched, gateway, evaluation = _evaluate(context_id, request.form.get("infusion_date"))
    page = _page(context_id, launched, evaluation, preview=False)  # the write builds it once

    def again(message: str, status: int) -> tuple[str, int]:
        """The plan page again, with what it would write and why nothing was."""
        shown = _page(context_id, launched, evaluation)
        return render_template("plan.html", error=message, **shown), status

    if page["refused"] is not None:
        return again(f"Nothing was written. {page['refused'].message}", 403)
    if request.form.get("fingerprint") != page["fingerprint"]:
        return again(
            "The chart changed since this plan was shown (new results or a new date). Nothing was"
            " written: review the updated plan below and confirm again.",
            409,
        )
    confirmation = Confirmation(
        recorded=state.now(),
        acknowledged=frozenset(request.form.getlist("acknowledge")),
        fhir_user=launched.fhir_user or None,
        order_mode=state.settings.order_mode,
    )
    try:
        written = service.write(
            gateway, evaluation, confirmation, strategy=write_strategy(launched)
        )
    except WriteBlocked as exc:
        return again(str(exc), 422)
    except WriteBackError as exc:
        return again(f"The FHIR server refused the plan; nothing was written. {exc}", 502)
    except WriteIncomplete as exc:
        current_app.logger.warning("plan write %s", exc.report.state.value)
        shown = _page(
            context_id,
            launched,
            _plan(_read(gateway, launched.patient), request.form.get("infusion_date")),
        )
        report = render.report_data(exc.report, str(exc))
        return render_template("plan.html", report=report, **shown), 502
    current_app.logger.info("plan written: %d resources", len(written))
    rows = [render.written_data(w) for w in written]
    return render_template("written.html", rows=rows, **page)


@bp.get("/ehr-style.css")
def ehr_style(context_id: str) -> Response:
    """The EHR's smart_style_url as CSS variables; only known keys with checked values."""
    launched = context.load_context(context_id)
    style = {}
    if launched.smart_style_url:
        style = smart.fetch_style(launched.smart_style_url, http=web_state().http)
    return Response(present.style_css(style), mimetype="text/css")
