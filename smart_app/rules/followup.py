"""After infusion: day and phase, Tasks against results, alert reviews; the day-30 decision is
in `smart_app.rules.liver_decision`."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from smart_app.rules import label
from smart_app.rules.alerts import ACTIONS, AlertAction, post_infusion_alerts
from smart_app.rules.course import covering_order, follow_up_finding, live_orders, prose_date
from smart_app.rules.extension import proposed_draws
from smart_app.rules.labs import interpret, newest_final
from smart_app.rules.liver_decision import AMINOTRANSFERASES, Decision, decide, decision_due
from smart_app.rules.model import (
    ActivityKind,
    Alert,
    DecisionBranch,
    Evidence,
    Finding,
    FollowUpCode,
    LabResult,
    LabTest,
    PatientFacts,
    Phase,
    PlannedTask,
    PlanState,
    ScheduleItem,
    Severity,
    SteroidOrder,
    SteroidRole,
    TaskState,
)
from smart_app.rules.monitoring import three_months_after
from smart_app.rules.policy import Policy

STANDING_KINDS = frozenset({ActivityKind.VIGILANCE})
"""Items that run over a window and are ticked by hand: 'ongoing' in it, never overdue."""


class ResultFlag(StrEnum):
    """How a result compares with its limits."""

    NORMAL = ""
    ABOVE_ULN = "above ULN"
    AT_LEAST_2X = ">= 2 x ULN"
    ABOVE_20X = "> 20 x ULN"
    LOW = "low"
    NO_ULN = "no ULN"


@dataclass(frozen=True)
class ResultRow:
    """One post-infusion result with its day, ULN, multiple of ULN and flag."""

    result: LabResult
    day: int
    uln: Decimal | None
    multiple_of_uln: Decimal | None
    flag: ResultFlag


@dataclass(frozen=True)
class TaskView:
    """A planned Task, its state on the follow-up date and the results that complete it."""

    task: PlannedTask
    state: TaskState
    matches: tuple[LabResult, ...] = ()
    missing: tuple[LabTest, ...] = ()
    late: bool = False


@dataclass(frozen=True)
class DoseToday:
    """The steroid dose for a date and the order it comes from."""

    date: dt.date
    order: SteroidOrder
    text: str


@dataclass(frozen=True)
class ActionState:
    """One Task an alert calls for today, and the newest Task already made for it."""

    action: AlertAction
    item: str
    """What today's Task is known by ('task/consult/alert-hepatology-consult/day15')."""
    task: PlannedTask | None = None

    @property
    def offered(self) -> bool:
        """A button: no Task for it yet, or only finished ones from earlier days."""
        return self.task is None or (not self.task.is_open and self.task.item != self.item)


@dataclass(frozen=True)
class AlertReview:
    """An alert with its acknowledgement (a completed Task per alert and day) and its Tasks."""

    alert: Alert
    item: str
    """What today's acknowledgement is known by ('task/alert-review/<code>/day15')."""
    acknowledged: PlannedTask | None
    """The newest acknowledgement of this alert, on any day."""
    actions: tuple[ActionState, ...]

    @property
    def acknowledged_today(self) -> bool:
        """Acknowledged on the follow-up date: acknowledging again writes nothing."""
        return self.acknowledged is not None and self.acknowledged.item == self.item


def _latest_task(tasks: list[PlannedTask]) -> PlannedTask | None:
    """The Task of the latest day (then the latest window), or None."""
    return max(tasks, key=lambda t: (t.day, t.window_end, t.item), default=None)


def alert_item(alert: Alert, day: int) -> str:
    """The item an alert's acknowledgement on a day is known by."""
    return f"task/{ActivityKind.ALERT_REVIEW.value}/{alert.code.value}/day{day}"


def action_item(action: AlertAction, day: int) -> str:
    """The item an alert's consult or repeat-lab Task of a day is known by."""
    return f"task/{action.kind.value}/alert-{action.key}/day{day}"


def is_alert_task(item: str) -> bool:
    """A Task made from an alert (acknowledgement, consult or repeat draw), not by the plan."""
    return item.startswith(f"task/{ActivityKind.ALERT_REVIEW.value}/") or "/alert-" in item


def alert_reviews(
    alerts: tuple[Alert, ...], state: PlanState, *, on: dt.date
) -> tuple[AlertReview, ...]:
    """Each alert with whether it was acknowledged and which of its Tasks exist."""
    day = (on - state.infusion_date).days
    reviews = []
    for alert in alerts:
        prefix = alert_item(alert, day).rsplit("/", 1)[0] + "/"
        acks = [t for t in state.tasks if t.item.startswith(prefix)]
        actions = []
        for action in ACTIONS.get(alert.code, ()):
            item = action_item(action, day)
            made = [t for t in state.tasks if t.item.startswith(item.rsplit("/", 1)[0] + "/")]
            actions.append(ActionState(action, item, _latest_task(made)))
        reviews.append(
            AlertReview(alert, alert_item(alert, day), _latest_task(acks), tuple(actions))
        )
    return tuple(reviews)


@dataclass(frozen=True)
class FollowUp:
    """Where the patient stands on `on`: everything the follow-up view and command show."""

    patient_id: str
    on: dt.date
    infusion_date: dt.date
    day: int
    phase: Phase
    dose_today: DoseToday | None
    next_change: DoseToday | None
    course_text: str
    tasks: tuple[TaskView, ...]
    results: tuple[ResultRow, ...]
    alerts: tuple[Alert, ...]
    decision: Decision | None
    findings: tuple[Finding, ...]
    orders: tuple[SteroidOrder, ...]
    proposed: tuple[ScheduleItem, ...] = ()
    """Further weekly draws until results are back to baseline (2.3; 5.1; 5.3): new Tasks."""
    reviews: tuple[AlertReview, ...] = ()
    """The alerts with their acknowledgements and the Tasks they call for."""

    @property
    def hcp_day(self) -> int:
        """The manufacturer's numbering: Day 1 the day before infusion, Day 2 infusion."""
        return self.day + 2


def _dose_text(order: SteroidOrder) -> str:
    """'5.4 mg (1.8 mL) daily = 1 mg/kg/day, full dose through 2026-11-21'."""
    what = {
        SteroidRole.FULL_DOSE: "full dose",
        SteroidRole.CONTINUATION: "full dose continued",
        SteroidRole.TAPER_STEP: f"taper step {order.step}",
    }[order.role]
    return (
        f"{order.mg_per_day} mg ({order.volume_ml_per_day} mL) daily = "
        f"{order.mg_per_kg_per_day} mg/kg/day, {what}, {order.start} to {order.end}"
    )


def _course_text(orders: tuple[SteroidOrder, ...], on: dt.date) -> str:
    """Where the course stands: the step, its day and what follows."""
    if not orders:
        return "No prednisolone order of this plan was found in the chart."
    now = covering_order(orders, on)
    tapers = [o for o in orders if o.role is SteroidRole.TAPER_STEP]
    if now is None:
        last = max(o.end for o in orders)
        if on > last:
            ended = "taper completed" if tapers and last == tapers[-1].end else "order ended"
            return f"Corticosteroid course: {ended} on {prose_date(last)}."
        later = [o.start for o in orders if o.start > on]
        if not later:
            return f"Corticosteroid course starts on {prose_date(min(o.start for o in orders))}."
        before = [o.end for o in orders if o.end < on]
        if not before:
            return f"Corticosteroid course starts on {prose_date(min(later))}."
        return (
            f"No prednisolone order covers {prose_date(on)}: the last ended "
            f"{prose_date(max(before))}; the next starts {prose_date(min(later))}."
        )
    day_of = (on - now.start).days + 1
    length = (now.end - now.start).days + 1
    if now.role is SteroidRole.TAPER_STEP:
        return (
            f"Taper step {now.step} of {len(tapers)}: {now.mg_per_kg_per_day} mg/kg/day, day "
            f"{day_of} of {length} (step ends {prose_date(now.end)}; taper ends "
            f"{prose_date(tapers[-1].end)})."
        )
    return (
        f"Full dose 1 mg/kg/day, day {day_of} of {length} of this order "
        f"(ends {prose_date(now.end)})."
    )


def _result_row(
    result: LabResult, *, facts: PatientFacts, infusion: dt.date, policy: Policy
) -> ResultRow:
    """A result with its day, ULN and flag."""
    seen = interpret(result, birth_date=facts.birth_date)
    flag = ResultFlag.NORMAL
    if result.test is LabTest.PLATELETS:
        flag = ResultFlag.LOW if result.value < policy.platelets_low_10e3_per_ul else flag
    elif result.test is LabTest.HEMOGLOBIN or result.test is LabTest.ALBUMIN:
        flag = ResultFlag.NORMAL
    elif seen.uln is None:
        flag = ResultFlag.NO_ULN
    elif seen.exceeds(label.ACUTE_LIVER_INJURY_ULN_MULTIPLE):
        flag = ResultFlag.ABOVE_20X
    elif result.test in AMINOTRANSFERASES and result.value >= label.LIVER_ULN_MULTIPLE * seen.uln:
        flag = ResultFlag.AT_LEAST_2X
    elif seen.exceeds(Decimal(1)):
        flag = ResultFlag.ABOVE_ULN
    return ResultRow(
        result=result,
        day=(result.effective - infusion).days,
        uln=seen.uln,
        multiple_of_uln=seen.multiple_of_uln,
        flag=flag,
    )


def _late_limit(
    task: PlannedTask, test: LabTest, tasks: tuple[PlannedTask, ...], on: dt.date
) -> dt.date:
    """The last date a late result still belongs to this Task: before the next draw's window."""
    later = [
        t.window_start
        for t in tasks
        if test in t.tests and t.window_start > task.window_end and t.kind is task.kind
    ]
    limit = min(later, default=on + dt.timedelta(days=1)) - dt.timedelta(days=1)
    if task.kind is ActivityKind.BASELINE:
        limit = task.window_end + dt.timedelta(days=1)  # up to the infusion day, never after
    return min(limit, on)


def task_view(
    task: PlannedTask, *, facts: PatientFacts, tasks: tuple[PlannedTask, ...], on: dt.date
) -> TaskView:
    """A Task's state on `on`: done, resulted (to confirm), upcoming, due or overdue."""
    if task.status == "completed":
        return TaskView(task, TaskState.DONE)
    auto = task.tests and task.kind is not ActivityKind.LIVER_ASSESSMENT
    matches: list[LabResult] = []
    missing: list[LabTest] = []
    late = False
    if auto:
        end = min(task.window_end, on)
        for test in task.tests:
            found = newest_final(facts, test, start=task.window_start, end=end)
            if found is None and on > task.window_end:
                limit = _late_limit(task, test, tasks, on)
                after = task.window_end + dt.timedelta(days=1)
                found = newest_final(facts, test, start=after, end=limit)
                late = late or found is not None
            if found is None:
                missing.append(test)
            else:
                matches.append(found)
        if not missing:
            return TaskView(task, TaskState.RESULTED, tuple(matches), (), late)
    if on < task.window_start:
        return TaskView(task, TaskState.UPCOMING)
    if task.kind in STANDING_KINDS:
        state = TaskState.ONGOING if on <= task.window_end else TaskState.DUE
        return TaskView(task, state, tuple(matches), tuple(missing), late)
    state = TaskState.DUE if on <= task.window_end else TaskState.OVERDUE
    return TaskView(task, state, tuple(matches), tuple(missing), late)


def _phase(
    state: PlanState, *, on: dt.date, due: bool, proposed: tuple[ScheduleItem, ...]
) -> Phase:
    """The phase on `on`."""
    if on < state.infusion_date:
        return Phase.PRE_INFUSION
    if due:
        return Phase.LIVER_ASSESSMENT_DUE
    latest = state.latest_decision
    if latest is None or latest.branch is DecisionBranch.CONTINUE:
        return Phase.FULL_DOSE
    orders = live_orders(state)
    tapers = [o for o in orders if o.role is SteroidRole.TAPER_STEP]
    if not tapers or on < tapers[0].start:
        return Phase.FULL_DOSE
    if on <= tapers[-1].end:
        return Phase.TAPER
    open_ends = [t.window_end for t in state.tasks if t.is_open or t.status == "completed"]
    further = [p.window_end for p in proposed]
    monitoring_end = max([*open_ends, *further, three_months_after(state.infusion_date)])
    return Phase.POST_TAPER if on <= monitoring_end else Phase.COMPLETE


def _state_findings(
    state: PlanState, orders: tuple[SteroidOrder, ...], on: dt.date
) -> list[Finding]:
    """What the chart does not say that the follow-up needs."""
    found: list[Finding] = []
    if state.infusion_evidence is None and on >= state.infusion_date:
        found.append(
            follow_up_finding(
                FollowUpCode.INFUSION_NOT_RECORDED,
                Severity.NEEDS_REVIEW,
                f"No ZOLGENSMA administration is recorded: days are counted from the planned "
                f"infusion date {prose_date(state.infusion_date)}. Record the administration in "
                "the EHR.",
                "2.1",
            )
        )
    if orders and on >= state.infusion_date and covering_order(orders, on) is None:
        last = (
            max(o.end for o in orders if o.start <= on)
            if any(o.start <= on for o in orders)
            else min(o.start for o in orders)
        )
        tapers = [o for o in orders if o.role is SteroidRole.TAPER_STEP]
        finished = bool(tapers) and on > tapers[-1].end
        if not finished:
            found.append(
                follow_up_finding(
                    FollowUpCode.NO_STEROID_ORDER,
                    Severity.NEEDS_REVIEW,
                    f"No prednisolone order covers {prose_date(on)}: the last one ended on "
                    f"{prose_date(last)} and no taper is ordered. Never stop corticosteroids "
                    "abruptly.",
                    "2.1",
                )
            )
    return found


def _ending_order(
    orders: tuple[SteroidOrder, ...], *, on: dt.date, policy: Policy
) -> list[Finding]:
    """Warn before the last ordered full-dose day while nothing is ordered after it (2.1)."""
    now = covering_order(orders, on)
    if now is None or now.role is SteroidRole.TAPER_STEP:
        return []
    left = (now.end - on).days
    if left > policy.steroid_end_warning_days:
        return []
    if covering_order(orders, now.end + dt.timedelta(days=1)) is not None:
        return []
    when = "today" if left == 0 else f"in {left} day(s)"
    return [
        follow_up_finding(
            FollowUpCode.STEROID_ORDER_ENDING,
            Severity.NEEDS_REVIEW,
            f"The prednisolone order at 1 mg/kg/day ends on {prose_date(now.end)} ({when}) and no "
            "decision orders what follows: the liver assessment is due. Record the day-30 decision "
            "(taper, or continue at full dose) before then; do not stop systemic "
            f"corticosteroids abruptly. Warned {policy.steroid_end_warning_days} days ahead "
            f"({policy.cite('steroid_end_warning_days')}).",
            "2.1",
            Evidence(now.reference, str(now.end), display="last ordered full-dose day"),
        )
    ]


def follow_up(
    facts: PatientFacts,
    state: PlanState,
    *,
    on: dt.date,
    policy: Policy,
    exam_normal: bool | None = None,
) -> FollowUp:
    """Everything about a patient on a plan, as of `on`."""
    orders = live_orders(state)
    due = on >= state.infusion_date and decision_due(state, facts, on=on, policy=policy)
    covering = covering_order(orders, on)
    upcoming = [o for o in orders if o.start > on]
    dose_today = DoseToday(on, covering, _dose_text(covering)) if covering else None
    next_change = (
        DoseToday(upcoming[0].start, upcoming[0], _dose_text(upcoming[0])) if upcoming else None
    )
    live_tasks = tuple(t for t in state.tasks if t.is_open or t.status == "completed")
    proposed = proposed_draws(facts, state, on=on, policy=policy)
    views = tuple(
        task_view(t, facts=facts, tasks=live_tasks, on=on)
        for t in sorted(live_tasks, key=lambda t: (t.window_start, t.day, t.item))
    )
    alerts = post_infusion_alerts(facts, infusion_date=state.infusion_date, on=on, policy=policy)
    results = tuple(
        _result_row(r, facts=facts, infusion=state.infusion_date, policy=policy)
        for r in sorted(facts.labs, key=lambda r: (r.effective, r.test.value))
        if state.infusion_date < r.effective <= on
    )
    return FollowUp(
        patient_id=facts.patient_id,
        on=on,
        infusion_date=state.infusion_date,
        day=(on - state.infusion_date).days,
        phase=_phase(state, on=on, due=due, proposed=proposed),
        dose_today=dose_today,
        next_change=next_change,
        course_text=_course_text(orders, on),
        tasks=views,
        results=results,
        alerts=alerts,
        decision=decide(facts, state, on=on, policy=policy, exam_normal=exam_normal)
        if due
        else None,
        findings=(
            *_state_findings(state, orders, on),
            *_ending_order(orders, on=on, policy=policy),
        ),
        orders=orders,
        proposed=proposed,
        reviews=alert_reviews(alerts, state, on=on),
    )
