"""The follow-up view of a patient on a plan and its confirmed writes: Tasks done, the day-30
decision, an alert acknowledged with the consult or repeat-lab Task it calls for."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from smart_app import service
from smart_app.digest import fingerprint
from smart_app.errors import WriteBackError, WriteBlocked, WriteIncomplete
from smart_app.fhir import summary
from smart_app.fhir.followup_write import Confirmed
from smart_app.fhir.gateway import FhirGateway, PatientRecord
from smart_app.fhir.written import Outcome, Written
from smart_app.followup_shown import decision_data
from smart_app.report import report_data, written_data
from smart_app.rules import label
from smart_app.rules.followup import AlertReview
from smart_app.rules.model import ActivityKind, AlertCode, TaskState
from smart_app.web import charts, context, grants
from smart_app.web.connection import write_strategy
from smart_app.web.followup_charts import follow_up_charts
from smart_app.web.followup_view import follow_up_view
from smart_app.web.request_context import current
from smart_app.web.state import web_state

bp = Blueprint("followup", __name__, url_prefix="/p/<context_id>/followup")

MANUAL_KINDS = frozenset({ActivityKind.COUNSELING, ActivityKind.VIGILANCE, ActivityKind.CONSULT})
"""Tasks without a lab result that the clinician confirms by hand."""
EXAM = {"normal": True, "abnormal": False}


def follow(record: PatientRecord, *, exam_normal: bool | None = None) -> service.Following | None:
    """The follow-up for a record read today, or None when there is no active plan."""
    state = web_state()
    return service.follow_record(
        record, on=state.today(), policy=state.settings.policy, exam_normal=exam_normal
    )


def _decision_fingerprint(following: service.Following) -> str:
    """What the clinician saw of the decision: the results, weight and proposal (not the exam)."""
    data = decision_data(following.followup.decision) or {}
    shown = {k: v for k, v in data.items() if k not in ("exam_normal", "writable", "key")}
    shown["branch"] = None
    return fingerprint(shown)


def _tasks_fingerprint(following: service.Following) -> str:
    """The resulted Tasks, the results that complete them and the proposed further draws."""
    found = following.followup
    return fingerprint(
        [
            *(
                (v.task.reference, [m.evidence.reference for m in v.matches])
                for v in found.tasks
                if v.state is TaskState.RESULTED
            ),
            *((p.date.isoformat(), [t.value for t in p.tests]) for p in found.proposed),
        ]
    )


def _alert_fingerprint(review: AlertReview) -> str:
    """What the clinician saw of an alert: its level and the results behind it."""
    alert = review.alert
    return fingerprint(
        [alert.code.value, alert.level.value, [r.result.evidence.reference for r in alert.results]]
    )


def page(
    context_id: str, launched: context.LaunchContext, following: service.Following
) -> dict[str, Any]:
    """Everything the follow-up template shows: the FollowUp (`f`) and its view model (`view`)."""
    found = following.followup
    drawn = [
        (chart, charts.render_svg(chart), charts.table(chart))
        for chart in follow_up_charts(found, following.facts, policy=web_state().settings.policy)
    ]
    manual = [
        v
        for v in found.tasks
        if v.task.kind in MANUAL_KINDS
        and v.state in (TaskState.DUE, TaskState.OVERDUE, TaskState.ONGOING)
    ]
    granted = launched.grants()
    return {
        "context_id": context_id,
        "launched": launched,
        "banner": summary.banner(following.record.resources, launched.patient),
        "show_banner": launched.need_patient_banner,
        "decision_refused": grants.refusal(granted, grants.Write.DECISION),
        "tasks_refused": grants.refusal(granted, grants.Write.TASKS),
        "alert_refused": grants.refusal(granted, grants.Write.ALERT),
        "alert_fingerprints": {r.alert.code.value: _alert_fingerprint(r) for r in found.reviews},
        "steroid_weight_kg": next(
            (o.weight_kg for o in following.state.steroid_orders if o.weight_kg is not None), None
        ),
        "f": found,
        "view": follow_up_view(found, kit=following.kit),
        "charts": drawn,
        "manual": manual,
        "resulted": [v for v in found.tasks if v.state is TaskState.RESULTED],
        "decision_fingerprint": _decision_fingerprint(following),
        "tasks_fingerprint": _tasks_fingerprint(following),
        "truncated": following.record.truncated,
        "label_version": label.LABEL_VERSION,
        "policy_version": web_state().settings.policy.version,
    }


def _render(
    context_id: str,
    launched: context.LaunchContext,
    following: service.Following,
    *,
    status: int = 200,
    **extra: Any,
) -> tuple[str, int]:
    """The follow-up page with an optional notice, error or list of written resources."""
    return render_template(
        "followup.html", **page(context_id, launched, following), **extra
    ), status


def _write(
    context_id: str,
    launched: context.LaunchContext,
    following: service.Following,
    action: Callable[[Confirmed], list[Written]],
    *,
    notice: Callable[[list[Written]], str],
) -> tuple[str, int]:
    """Run one confirmed write; show the page again with what was written, or why not."""
    confirmed = Confirmed(
        recorded=web_state().now(),
        fhir_user=launched.fhir_user or None,
        order_mode=web_state().settings.order_mode,
    )
    try:
        written = action(confirmed)
    except WriteBlocked as exc:
        return _render(context_id, launched, following, status=422, error=str(exc))
    except WriteBackError as exc:
        return _render(context_id, launched, following, status=502, error=str(exc))
    except WriteIncomplete as exc:
        current_app.logger.warning("follow-up write %s", exc.report.state.value)
        after = follow(current().reread())
        report = report_data(exc.report, str(exc))
        return _render(context_id, launched, after or following, status=502, report=report)
    current_app.logger.info("follow-up: %d resources written", len(written))
    after = follow(current().reread())
    return _render(
        context_id,
        launched,
        after or following,
        notice=notice(written),
        written=[written_data(w) for w in written],
    )


def _load(
    *, exam_normal: bool | None = None
) -> tuple[str, context.LaunchContext, FhirGateway, service.Following | None]:
    """This request's context id, launch context, gateway and follow-up (None: no active plan),
    from the chart read once for the request."""
    now = current()
    following = follow(now.record, exam_normal=exam_normal)
    return now.context_id, now.launched, now.gateway, following


@bp.get("/")
def show() -> tuple[str, int] | Response:
    """Where the patient stands: alerts, phase, steroid dose, decision, Tasks, charts, results."""
    context_id, launched, _, following = _load()
    if following is None:
        return redirect(url_for("plan.show", context_id=context_id, view="plan"), code=303)
    return _render(context_id, launched, following)


def _refused(
    context_id: str,
    launched: context.LaunchContext,
    following: service.Following,
    write: grants.Write,
) -> tuple[str, int] | None:
    """The page with why the launch's grants do not allow this write, or None when they do."""
    refused = grants.refusal(launched.grants(), write)
    if refused is None:
        return None
    error = f"Nothing was written. {refused.message}"
    return _render(context_id, launched, following, status=403, error=error)


def _tasks_notice(written: list[Written]) -> str:
    """What the Task confirmation wrote, counted from the server's answer for each entry."""
    tasks = [w for w in written if w.reference.startswith("Task/")]
    completed = sum(w.outcome is Outcome.UPDATED for w in tasks)
    created = sum(w.outcome is Outcome.CREATED for w in tasks)
    if not created:
        return f"{completed} Task(s) completed, with Provenance."
    return (
        f"{completed} Task(s) completed and {created} further lab-draw Task(s) created until "
        "results are back to baseline, on the CarePlan, with Provenance."
    )


@bp.post("/tasks")
def confirm_tasks() -> tuple[str, int] | Response:
    """Complete the resulted Tasks (and the ticked manual ones) in one transaction."""
    context_id, launched, gateway, following = _load()
    if following is None:
        return redirect(url_for("plan.show", context_id=context_id, view="plan"), code=303)
    if (refused := _refused(context_id, launched, following, grants.Write.TASKS)) is not None:
        return refused
    if request.form.get("fingerprint") != _tasks_fingerprint(following):
        return _render(
            context_id,
            launched,
            following,
            status=409,
            error="The chart changed since this page was shown: nothing was written. Review the "
            "Tasks below and confirm again.",
        )
    manual = frozenset(request.form.getlist("manual"))
    return _write(
        context_id,
        launched,
        following,
        lambda confirmed: service.complete_tasks(
            gateway,
            following,
            confirmed,
            manual_items=manual,
            strategy=write_strategy(launched),
        ),
        notice=_tasks_notice,
    )


@bp.post("/decision")
def decide() -> tuple[str, int] | Response:
    """Record the liver assessment decision in one idempotent transaction."""
    exam = EXAM.get(request.form.get("exam", ""))
    context_id, launched, gateway, following = _load(exam_normal=exam)
    if following is None:
        return redirect(url_for("plan.show", context_id=context_id, view="plan"), code=303)
    if (refused := _refused(context_id, launched, following, grants.Write.DECISION)) is not None:
        return refused
    decision = following.followup.decision
    if decision is None:
        recorded = {d.decided_on for d in following.state.decisions}
        if web_state().today() in recorded:
            return _render(
                context_id,
                launched,
                following,
                notice="This decision was already recorded today: nothing new was written.",
            )
        return _render(
            context_id, launched, following, status=409, error="No liver assessment is due."
        )
    if request.form.get("fingerprint") != _decision_fingerprint(following):
        return _render(
            context_id,
            launched,
            following,
            status=409,
            error="New results or a new weight arrived since this decision was shown: nothing "
            "was written. Review the updated proposal below and confirm again.",
        )
    if exam is None:
        return _render(
            context_id,
            launched,
            following,
            status=422,
            error="State whether the clinical exam is normal: the label's day-30 assessment is "
            "clinical as well as by laboratory tests (2.1).",
        )
    branch = decision.branch.value if decision.branch else ""
    return _write(
        context_id,
        launched,
        following,
        lambda confirmed: service.record_decision(
            gateway, following, confirmed, strategy=write_strategy(launched)
        ),
        notice=lambda written: (
            f"Liver assessment recorded ({branch}): {len(written)} resources in one transaction."
        ),
    )


def _alert_notice(review: AlertReview, action: str | None, written: list[Written]) -> str:
    """What acknowledging (and creating the Task) wrote, from the server's answer."""
    new = [w for w in written if w.outcome in (Outcome.CREATED, Outcome.UPDATED)]
    if not new:
        return (
            f"{review.alert.title}: already acknowledged today"
            f"{' and its Task already created' if action else ''}: nothing new was written."
        )
    chosen = next((a for a in review.actions if a.action.key == action), None)
    made = f" Task created: {chosen.action.what}." if chosen else ""
    return f"{review.alert.title}: acknowledged, with Provenance.{made}"


@bp.post("/alert")
def act_on_alert() -> tuple[str, int] | Response:
    """Acknowledge an alert for the day, and create the consult or repeat-lab Task it calls for,
    in one idempotent transaction."""
    context_id, launched, gateway, following = _load()
    if following is None:
        return redirect(url_for("plan.show", context_id=context_id, view="plan"), code=303)
    if (refused := _refused(context_id, launched, following, grants.Write.ALERT)) is not None:
        return refused
    code = next((c for c in AlertCode if c.value == request.form.get("alert")), None)
    review = next((r for r in following.followup.reviews if r.alert.code is code), None)
    if review is None:
        return _render(
            context_id,
            launched,
            following,
            status=409,
            error="This alert is no longer raised by the newest results: nothing was written.",
        )
    if request.form.get("fingerprint") != _alert_fingerprint(review):
        return _render(
            context_id,
            launched,
            following,
            status=409,
            error="The alert changed since this page was shown: nothing was written. Review it "
            "below and act again.",
        )
    action = request.form.get("action") or None
    if action is not None and action not in {a.action.key for a in review.actions}:
        return _render(
            context_id,
            launched,
            following,
            status=422,
            error="This alert does not call for that Task: nothing was written.",
        )
    return _write(
        context_id,
        launched,
        following,
        lambda confirmed: service.act_on_alert(
            gateway,
            following,
            confirmed,
            code=review.alert.code,
            action=action,
            strategy=write_strategy(launched),
        ),
        notice=lambda written: _alert_notice(review, action, written),
    )
