"""The plan page and the confirmed write: thin views over service.py."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, current_app, render_template, request

from smart_app import service
from smart_app.digest import fingerprint
from smart_app.errors import InputError, WriteBackError, WriteBlocked, WriteIncomplete
from smart_app.fhir import summary
from smart_app.fhir.codes import app_identifier_values, relative_reference
from smart_app.fhir.gateway import PatientRecord
from smart_app.fhir.plan_bundle import plan_key
from smart_app.fhir.plan_state import plan_state
from smart_app.fhir.written import Confirmation
from smart_app.plan_json import plan_data
from smart_app.report import report_data, written_data
from smart_app.rules import label
from smart_app.rules.eligibility import UNBLOCK_ADVICE
from smart_app.rules.model import Plan, Severity
from smart_app.rules.plan import may_write
from smart_app.web import checklist, context, followup, grants, present, smart, words
from smart_app.web.connection import write_strategy
from smart_app.web.ledger import Slot, WrittenPlan
from smart_app.web.request_context import current
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


def context_date(app_context: str | None, *, today: dt.date) -> dt.date | None:
    """The `infusionDate` of a CDS card link's appContext (JSON text from the EHR, untrusted)
    when it passes the typed date's checks (_infusion_date: today to a year ahead); None for
    anything else: too long, not JSON, not an object, no date, not a date, out of bounds."""
    if not app_context or len(app_context) > smart.MAX_APP_CONTEXT_CHARS:
        return None
    try:
        data = json.loads(app_context)
    except (ValueError, RecursionError):
        return None
    text = data.get("infusionDate") if isinstance(data, dict) else None
    if not isinstance(text, str) or not text:
        return None
    try:
        return _infusion_date(text, today=today)
    except InputError:
        return None


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


def _planned(
    record: PatientRecord, infusion_text: str | None, launched: context.LaunchContext
) -> Planned:
    """The plan for the date the URL asks for; without one, for the date of the CDS card the app
    was launched from (its appContext), or tomorrow when that gives none or the plan refuses it
    (a default, not the clinician's entry: no message, and the card's text is never shown)."""
    if infusion_text:
        return _plan(record, infusion_text)
    day = context_date(launched.app_context, today=web_state().today())
    if day is None:
        return _plan(record, None)
    planned = _plan(record, day.isoformat())
    return _plan(record, None) if planned.error else planned


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


def _fingerprint(plan: Plan, listed: checklist.Checklist) -> str:
    """A digest of what the clinician reviewed (the plan in its JSON form and the checklist): a
    write goes ahead only when the plan rebuilt from the chart has the same."""
    return fingerprint({"plan": plan_data(plan), "checklist": checklist.as_data(listed)})


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
    status = plan.eligibility.status
    writable = may_write(plan)
    findings = plan.eligibility.findings
    review = [f for f in findings if f.severity is Severity.NEEDS_REVIEW]
    blocking = [f for f in findings if f.severity.value == status.value]
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
    schedule = present.schedule_rows(plan) if writable else ([], [])
    entries: list[present.WrittenEntry] = []
    if writable and preview and refused is None:
        confirmation = Confirmation(
            recorded=state.now(),
            acknowledged=frozenset(f.code.value for f in review),
            fhir_user=launched.fhir_user or None,
            order_mode=state.settings.order_mode,
        )
        # What is sent is validated (service.write); the preview only names the entries, so it
        # skips the R4B round trip that would otherwise cost about half of every page view.
        unsent = service.transaction(evaluation, confirmation, validate=False)
        entries = present.written_entries(
            present.preview_rows(unsent),
            plan,
            order_mode=state.settings.order_mode.value,
            earlier=_earlier(evaluation),
        )
    return {
        "context_id": context_id,
        "launched": launched,
        "banner": summary.banner(evaluation.record.resources, launched.patient),
        "show_banner": launched.need_patient_banner,
        "plan": plan,
        "boxed_warning": label.BOXED_WARNING,
        "status": status.value,
        "writable": writable,
        "refused": refused,
        "review": review,
        "blocking": [] if writable else blocking,
        "advice": advice,
        "unblock": unblock,
        "checklist": listed,
        "timeline": present.timeline(plan) if writable else None,
        "schedule_rows": schedule[0],
        "schedule_conditions": schedule[1],
        "write_entries": entries,
        "write_groups": present.write_groups(entries),
        "fingerprint": _fingerprint(plan, listed),
        "order_mode": state.settings.order_mode.value,
        "truncated": evaluation.record.truncated,
        "severities": [s.value for s in Severity],
        "checklist_reason": checklist.reason(listed, status),
        "baseline_days": policy.baseline_lab_max_age_days,
        "dosing_weight": listed.row("weight").value,
        "dosing_weight_date": listed.row("weight").date,
        "vials": present.vials(plan.dose.kit) if plan.dose else "",
        "user": relative_reference(launched.fhir_user or "") or launched.fhir_user or "",
        "date_min": today.isoformat(),
        "date_max": latest.isoformat(),
        "date_error": planned.error,
        "date_asked": planned.asked,
    }


@bp.get("/")
def show() -> str | tuple[str, int]:
    """A patient on an active plan gets the follow-up view; otherwise (or with ?view=plan) the
    plan page: eligibility with evidence, dose and kit, course, schedule, what is written (for
    ?infusion_date, else the launching CDS card's date, else tomorrow)."""
    now = current()
    context_id, launched, record = now.context_id, now.launched, now.record
    planning = request.args.get("view") == "plan"
    if not planning and (following := followup.follow(record)) is not None:
        return render_template("followup.html", **followup.page(context_id, launched, following))
    planned = _planned(record, request.args.get("infusion_date"), launched)
    page = _page(context_id, launched, planned)
    shown = render_template("plan.html", **page, on_plan=plan_state(record) is not None)
    return (shown, 400) if planned.error else shown


@bp.post("/write")
def write() -> tuple[str, int] | str:
    """Rebuild the plan from the chart, check it is what was reviewed, write one transaction
    (the CSRF token and origin are checked before any view: web/security.py)."""
    state = web_state()
    now = current()
    context_id, launched, gateway = now.context_id, now.launched, now.gateway
    planned = _plan(now.record, request.form.get("infusion_date"))
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
    with state.writes.turn(_slot(context_id, evaluation)) as turn:
        if turn.done is not None:
            current_app.logger.info("plan already written from this launch: shown again")
            return _written_page(page, turn.done, already=True)
        if not turn.mine:
            return again(
                "A write of this plan from this launch is still under way; nothing more was"
                " sent. Reload the page in a moment to see its result.",
                409,
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
                _plan(now.reread(), request.form.get("infusion_date")),
            )
            report = report_data(exc.report, str(exc))
            return render_template("plan.html", report=report, **shown), 502
        current_app.logger.info("plan written: %d resources", len(written))
        done = WrittenPlan(
            rows=tuple(written_data(w) for w in written),
            earlier=tuple(sorted(earlier)),
            at=state.now().isoformat(timespec="seconds"),
        )
        turn.remember(done)
    return _written_page(page, done)


def _slot(context_id: str, evaluation: service.Evaluation) -> Slot | None:
    """The launch and plan a write is for; None for a plan without a dose (never written)."""
    plan = evaluation.plan
    if plan.dose is None or plan.steroids is None:
        return None
    return context_id, plan_key(plan)


def _written_page(page: dict[str, Any], done: WrittenPlan, *, already: bool = False) -> str:
    """The written page: what the write did, entry by entry (`already`: a write of the same
    plan from this launch that came first, shown again; nothing was sent this time)."""
    rows = [dict(r) for r in done.rows]
    entries = present.written_entries(
        rows, page["plan"], order_mode=page["order_mode"], earlier=frozenset(done.earlier)
    )
    return render_template(
        "written.html", rows=rows, entries=entries, already=already, written_at=done.at, **page
    )


@bp.get("/ehr-style.css")
def ehr_style() -> Response:
    """The EHR's smart_style_url as CSS variables; only known keys with checked values."""
    launched = current().stored()
    style = {}
    if launched.smart_style_url:
        style = smart.fetch_style(launched.smart_style_url, http=web_state().http)
    return Response(present.style_css(style), mimetype="text/css")
