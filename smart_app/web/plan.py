"""The plan page and the confirmed write: thin views over service.py."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, current_app, render_template, request

from smart_app import render, service
from smart_app.errors import InputError, WriteBackError, WriteBlocked, WriteIncomplete
from smart_app.fhir import summary
from smart_app.fhir.codes import app_identifier_values, relative_reference
from smart_app.fhir.gateway import FhirGateway, PatientRecord
from smart_app.fhir.plan_bundle import plan_key
from smart_app.fhir.plan_state import plan_state
from smart_app.fhir.written import Confirmation
from smart_app.rules.eligibility import UNBLOCK_ADVICE
from smart_app.rules.model import Severity
from smart_app.rules.plan import may_write
from smart_app.web import checklist, context, followup, grants, present, smart, words
from smart_app.web.connection import connect, write_strategy
from smart_app.web.security import check_csrf
from smart_app.web.state import web_state

bp = Blueprint("plan", __name__, url_prefix="/p/<context_id>")

MAX_PLANNING_DAYS = 365


@dataclass(frozen=True)
class Planned:
    """A plan built for the date asked for, or for the default date with why it was refused."""

    evaluation: service.Evaluation
    error: str = ""
    """Why the date asked for was refused; shown beside the date field (status 400)."""
    asked: str = ""
    """The date text as sent, when it was refused."""


def _infusion_date(text: str | None, *, today: dt.date) -> dt.date:
    """The planned infusion date from a query: tomorrow by default, never in the past, at most a
    year ahead (the printed documents' bound; the plan page offers the label's own)."""
    if not text:
        return today + dt.timedelta(days=1)
    day = _asked(text) or today
    if not today <= day <= today + dt.timedelta(days=MAX_PLANNING_DAYS):
        raise InputError("the planned infusion date must be between today and a year from now")
    return day


def latest_date(*, today: dt.date, last_labeled: dt.date | None) -> dt.date:
    """The latest infusion date the form offers: the last day under 2 years, or a year ahead
    when the date of birth is unknown (or already past the label's age)."""
    if last_labeled is not None and last_labeled >= today:
        return last_labeled
    return today + dt.timedelta(days=MAX_PLANNING_DAYS)


def _asked(text: str | None) -> dt.date | None:
    """The date sent (None when none was); InputError when it is not a date."""
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise InputError(f"{text!r} is not a date: choose one in the date field") from None


def _out_of_bounds(day: dt.date, *, today: dt.date, latest: dt.date) -> str:
    """Why an infusion date is refused, or ''."""
    if day < today:
        earliest = words.clinical_date(today)
        return f"The infusion date cannot be in the past: choose {earliest} or later."
    if day > latest:
        return (
            f"The infusion date must be on or before {words.clinical_date(latest)}, the last "
            "date this plan can be made for."
        )
    return ""


def _read(gateway: FhirGateway, patient: str) -> PatientRecord:
    """The patient's chart as read today, its searches floored by the web's policy."""
    state = web_state()
    return gateway.read_patient(patient, on=state.today(), policy=state.settings.policy)


def _plan(record: PatientRecord, infusion_text: str | None) -> Planned:
    """The plan for a record read today, for the date asked for when it is a date between today
    and the latest date offered; else for tomorrow, with why the date was refused."""
    state = web_state()
    today = state.today()
    policy = state.settings.policy

    def on(day: dt.date) -> service.Evaluation:
        return service.evaluate_record(record, on=today, infusion_date=day, policy=policy)

    default = today + dt.timedelta(days=1)
    try:
        asked = _asked(infusion_text)
    except InputError as exc:
        return Planned(on(default), str(exc), infusion_text or "")
    if asked is None:
        return Planned(on(default))
    if asked < today:
        return Planned(on(default), _out_of_bounds(asked, today=today, latest=asked), str(asked))
    try:
        evaluation = on(asked)
    except InputError as exc:  # a date too far for a schedule to be computed
        return Planned(on(default), f"The infusion date is refused: {exc}.", str(asked))
    latest = latest_date(today=today, last_labeled=evaluation.plan.last_labeled_infusion_date)
    if error := _out_of_bounds(asked, today=today, latest=latest):
        return Planned(on(min(default, latest)), error, str(asked))
    return Planned(evaluation)


def _earlier(evaluation: service.Evaluation) -> frozenset[str]:
    """References of the app's entries in the chart that belong to another plan (a write
    retires those still open)."""
    plan = evaluation.plan
    if plan.dose is None or plan.steroids is None:
        return frozenset()
    key = plan_key(plan)
    return frozenset(
        f"{kind}/{r['id']}"
        for kind in ("CarePlan", "Task", "MedicationRequest")
        for r in evaluation.record.own(kind)
        if r.get("id") and not any(v.startswith(f"{key}/") for v in app_identifier_values(r))
    )


def _page(
    context_id: str,
    launched: context.LaunchContext,
    planned: Planned,
    *,
    preview: bool = True,
) -> dict[str, Any]:
    """Everything the plan template shows."""
    state = web_state()
    evaluation = planned.evaluation
    plan = evaluation.plan
    policy = state.settings.policy
    data = render.plan_data(plan)
    status = plan.eligibility.status
    writable = may_write(plan)
    review = [f for f in data["eligibility"]["findings"] if f["severity"] == "needs-review"]
    blocking = [f for f in data["eligibility"]["findings"] if f["severity"] == status.value]
    refused = grants.refusal(launched.grants(), grants.Write.PLAN)
    today = state.today()
    latest = latest_date(today=today, last_labeled=plan.last_labeled_infusion_date)
    listed = checklist.build(plan, evaluation.facts, policy=policy)
    advice = UNBLOCK_ADVICE.get(status, "")
    unblock = (
        None
        if writable
        else checklist.unblock(plan, evaluation.facts, advice=advice, latest=latest, policy=policy)
    )
    schedule = present.schedule_rows(data) if writable else ([], [])
    entries: list[present.WrittenEntry] = []
    if writable and preview and refused is None:
        confirmation = Confirmation(
            recorded=state.now(),
            acknowledged=frozenset(f["code"] for f in review),
            fhir_user=launched.fhir_user or None,
            order_mode=state.settings.order_mode,
        )
        entries = present.written_entries(
            present.preview_rows(service.transaction(evaluation, confirmation)),
            data,
            order_mode=state.settings.order_mode.value,
            earlier=_earlier(evaluation),
        )
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
        "advice": advice,
        "unblock": unblock,
        "checklist": listed,
        "timeline": present.timeline(data) if writable else None,
        "schedule_rows": schedule[0],
        "schedule_conditions": schedule[1],
        "write_entries": entries,
        "write_groups": present.write_groups(entries),
        "fingerprint": render.fingerprint({"plan": data, "checklist": checklist.as_data(listed)}),
        "order_mode": state.settings.order_mode.value,
        "truncated": evaluation.record.truncated,
        "severities": [s.value for s in Severity],
        "checklist_reason": checklist.reason(listed, status),
        "baseline_days": policy.baseline_lab_max_age_days,
        "dosing_weight": listed.row("weight").value,
        "dosing_weight_date": listed.row("weight").date,
        "vials": present.vials(data["dose"]) if data["dose"] else "",
        "user": relative_reference(launched.fhir_user or "") or launched.fhir_user or "",
        "date_min": today.isoformat(),
        "date_max": latest.isoformat(),
        "date_error": planned.error,
        "date_asked": planned.asked,
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
    planned = _plan(record, request.args.get("infusion_date"))
    page = _page(context_id, launched, planned)
    shown = render_template("plan.html", **page, on_plan=plan_state(record) is not None)
    return (shown, 400) if planned.error else shown


@bp.post("/write")
def write(context_id: str) -> tuple[str, int] | str:
    """Rebuild the plan from the chart, check it is what was reviewed, write one transaction."""
    check_csrf(web_state().settings)
    state = web_state()
    launched, gateway = connect(context_id)
    record = _read(gateway, launched.patient)
    planned = _plan(record, request.form.get("infusion_date"))
    evaluation = planned.evaluation
    page = _page(context_id, launched, planned, preview=False)  # the write builds it once

    def again(message: str, status: int) -> tuple[str, int]:
        """The plan page again, with what it would write and why nothing was."""
        shown = _page(context_id, launched, planned)
        return render_template("plan.html", error=message, **shown), status

    if planned.error:
        return again(f"Nothing was written. {planned.error}", 400)
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
    earlier = _earlier(evaluation)
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
    entries = present.written_entries(
        rows, page["plan"], order_mode=page["order_mode"], earlier=earlier
    )
    return render_template("written.html", rows=rows, entries=entries, **page)


@bp.get("/ehr-style.css")
def ehr_style(context_id: str) -> Response:
    """The EHR's smart_style_url as CSS variables; only known keys with checked values."""
    launched = context.load_context(context_id)
    style = {}
    if launched.smart_style_url:
        style = smart.fetch_style(launched.smart_style_url, http=web_state().http)
    return Response(present.style_css(style), mimetype="text/css")
