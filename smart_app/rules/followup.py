"""After infusion: day and phase, Tasks against results, the day-30 decision, alert reviews."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from smart_app.rules import label
from smart_app.rules.alerts import ACTIONS, AlertAction, post_infusion_alerts
from smart_app.rules.eligibility import (
    current,
    weight_shown,
    weights_disagree,
    weights_together,
)
from smart_app.rules.extension import proposed_draws
from smart_app.rules.labs import Interpreted, interpret, newest_final
from smart_app.rules.model import (
    ActivityKind,
    Alert,
    DecisionBranch,
    Evidence,
    Finding,
    FollowUpCode,
    LabResult,
    LabTest,
    Measurement,
    PatientFacts,
    Phase,
    PlannedTask,
    PlanState,
    ScheduleItem,
    Severity,
    SteroidOrder,
    SteroidRole,
    SteroidStep,
    TaskState,
)
from smart_app.rules.monitoring import (
    LIVER_PANEL,
    LiverDays,
    lab_draws,
    taper_liver_days,
    three_months_after,
)
from smart_app.rules.plan import dosing_weight
from smart_app.rules.policy import Policy
from smart_app.rules.steroids import daily_dose_mg, taper_steps, volume_ml

LIVE_ORDER = frozenset({"active", "draft", "completed", "on-hold"})
"""Order statuses that still describe the course (retired ones are ignored)."""
NORMAL_TESTS = (LabTest.BILIRUBIN_TOTAL, LabTest.PT, LabTest.INR)
"""Section 2.1: these must be normal (at or below ULN) for an unremarkable assessment."""
AMINOTRANSFERASES = (LabTest.ALT, LabTest.AST)
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
class Decision:
    """The proposed day-30 (or repeat) liver assessment decision."""

    key: str
    branch: DecisionBranch | None
    """None while a required result, ULN or weight is missing (see `findings`)."""
    labs_unremarkable: bool
    exam_normal: bool | None
    reasons: tuple[str, ...]
    findings: tuple[Finding, ...]
    consult: bool
    consult_results: tuple[LabResult, ...]
    """The liver panel results (ALT, AST, total bilirubin, PT, INR) at or above 2 x ULN behind
    the consult."""
    panel: tuple[Interpreted, ...]
    weight: Measurement | None
    previous_mg_per_day: Decimal
    full_dose_mg_per_day: Decimal | None
    steps: tuple[SteroidStep, ...]
    draws: tuple[ScheduleItem, ...]
    """The lab draws after the decision day under this decision (Tasks to create or keep)."""
    after_day: int
    """Draws up to this day are history; later open Tasks are replaced by `draws`."""
    end_order: SteroidOrder | None = None
    """A continuation order that the taper ends early (its end is moved to the taper's eve)."""
    concentration_mg_per_ml: Decimal = Decimal(3)
    """The oral solution strength the volumes were calculated with."""
    manufacturer_advice: str = ""
    """The manufacturer's advice where it goes further than the label (a consult below 2 x ULN)."""

    @property
    def writable(self) -> bool:
        """A branch, a current weight, and for the taper an attested normal exam."""
        if self.branch is None or self.full_dose_mg_per_day is None:
            return False
        return self.branch is DecisionBranch.CONTINUE or self.exam_normal is True


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


def _live(state: PlanState) -> tuple[SteroidOrder, ...]:
    """Orders that still describe the course, by start date."""
    orders = [o for o in state.steroid_orders if o.status in LIVE_ORDER]
    return tuple(sorted(orders, key=lambda o: (o.start, o.step, o.item)))


def _covering(orders: tuple[SteroidOrder, ...], day: dt.date) -> SteroidOrder | None:
    """The order covering a date; a later-starting one wins an overlap (a taper after a bridge)."""
    found = [o for o in orders if o.start <= day <= o.end]
    return found[-1] if found else None


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


def _day(date: dt.date) -> str:
    """A date as the follow-up view writes it in prose: '24 Nov 2026'."""
    return f"{date.day} {date:%b} {date.year}"


def _course_text(orders: tuple[SteroidOrder, ...], on: dt.date) -> str:
    """Where the course stands: the step, its day and what follows."""
    if not orders:
        return "No prednisolone order of this plan was found in the chart."
    now = _covering(orders, on)
    tapers = [o for o in orders if o.role is SteroidRole.TAPER_STEP]
    if now is None:
        last = max(o.end for o in orders)
        if on > last:
            ended = "taper completed" if tapers and last == tapers[-1].end else "order ended"
            return f"Corticosteroid course: {ended} on {_day(last)}."
        later = [o.start for o in orders if o.start > on]
        if not later:
            return f"Corticosteroid course starts on {_day(min(o.start for o in orders))}."
        before = [o.end for o in orders if o.end < on]
        if not before:
            return f"Corticosteroid course starts on {_day(min(later))}."
        return (
            f"No prednisolone order covers {_day(on)}: the last ended {_day(max(before))}; the "
            f"next starts {_day(min(later))}."
        )
    day_of = (on - now.start).days + 1
    length = (now.end - now.start).days + 1
    if now.role is SteroidRole.TAPER_STEP:
        return (
            f"Taper step {now.step} of {len(tapers)}: {now.mg_per_kg_per_day} mg/kg/day, day "
            f"{day_of} of {length} (step ends {_day(now.end)}; taper ends {_day(tapers[-1].end)})."
        )
    return f"Full dose 1 mg/kg/day, day {day_of} of {length} of this order (ends {_day(now.end)})."


def _first_panel_start(state: PlanState, policy: Policy) -> dt.date:
    """The first day a result counts for the day-30 assessment."""
    check = state.infusion_date + dt.timedelta(days=label.STEROID_FULL_DOSE_DAYS - 2)
    return check - dt.timedelta(days=policy.weekly_window_days)


def _continuation_end(orders: tuple[SteroidOrder, ...]) -> dt.date | None:
    """The last day of full-dose treatment ordered so far (full dose or continuation)."""
    full = [o.end for o in orders if o.role is not SteroidRole.TAPER_STEP]
    return max(full, default=None)


def decision_due(state: PlanState, facts: PatientFacts, *, on: dt.date, policy: Policy) -> bool:
    """The day-30 check is due, or a continued full dose has new results or is ending."""
    latest = state.latest_decision
    if latest is None:
        return on >= _first_panel_start(state, policy)
    if latest.branch is DecisionBranch.TAPER:
        return False
    end = _continuation_end(_live(state))
    if end is not None and on >= end - dt.timedelta(days=policy.weekly_window_days):
        return True
    return all(_newest(facts, test, after=latest.decided_on, on=on) for test in LIVER_PANEL)


def _newest(facts: PatientFacts, test: LabTest, *, after: dt.date, on: dt.date) -> LabResult | None:
    """The newest result of a test dated after `after` (exclusive) and on or before `on`."""
    return next((r for r in facts.labs_for(test) if after < r.effective <= on), None)


def _finding(
    code: FollowUpCode, severity: Severity, message: str, section: str, *ev: Evidence
) -> Finding:
    """A finding of the follow-up."""
    return Finding(code, severity, message, section, tuple(ev))


def _judge_panel(
    facts: PatientFacts, *, since: dt.date, on: dt.date, since_why: str = ""
) -> tuple[list[Interpreted], list[str], list[Finding], bool, list[LabResult]]:
    """Interpret the newest liver panel since `since`: (panel, reasons, findings, ok, and the
    results at or above 2 x ULN, any of ALT, AST, total bilirubin, PT, INR, that call for the
    consult of section 2.1)."""
    panel: list[Interpreted] = []
    reasons: list[str] = []
    findings: list[Finding] = []
    consult: list[LabResult] = []
    before = since - dt.timedelta(days=1)
    for test in LIVER_PANEL:
        result = _newest(facts, test, after=before, on=on)
        if result is None:
            findings.append(
                _finding(
                    FollowUpCode.LIVER_PANEL_MISSING,
                    Severity.INCOMPLETE,
                    f"No {test} result since {_day(since)}{since_why}: the liver assessment needs "
                    "ALT, AST, total bilirubin, PT and INR.",
                    "2.1; 2.3",
                )
            )
            continue
        seen = interpret(result, birth_date=facts.birth_date)
        panel.append(seen)
        if seen.uln is None:
            findings.append(
                _finding(
                    FollowUpCode.ULN_MISSING,
                    Severity.INCOMPLETE,
                    f"{test} {result.value} {result.unit} on {_day(result.effective)} has no upper "
                    "limit of normal and none is configured: it cannot be judged.",
                    "2.1",
                    result.evidence,
                )
            )
            continue
        shown = f"{test} {result.value} {result.unit} = {seen.multiple_of_uln} x ULN"
        at_least_2x = seen.reaches(label.LIVER_ULN_MULTIPLE)
        if at_least_2x:
            reasons.append(f"{shown} on {_day(result.effective)} (not below 2 x ULN)")
            consult.append(result)
        elif test not in AMINOTRANSFERASES and seen.exceeds(Decimal(1)):
            reasons.append(f"{shown} on {_day(result.effective)} (above normal)")
    ok = not reasons and not findings
    return panel, reasons, findings, ok, consult


def _weight(
    facts: PatientFacts, *, on: dt.date, policy: Policy
) -> tuple[Measurement | None, list[Finding]]:
    """The weight for the new steroid dose: the newest one, recent enough (infants grow); weights
    taken together that disagree are chosen as the plan chooses them, never by record order."""
    newest = current(facts.weights_kg, on=on)
    if newest is None:
        return None, [
            _finding(
                FollowUpCode.WEIGHT_MISSING,
                Severity.INCOMPLETE,
                "No body weight: weigh the infant before the steroid dose is set.",
                "2.1",
            )
        ]
    age = (on - newest.effective).days
    if age > policy.weight_max_age_days:
        return None, [
            _finding(
                FollowUpCode.WEIGHT_STALE,
                Severity.INCOMPLETE,
                f"The newest weight ({newest.value} kg on {_day(newest.effective)}) is {age} days "
                "old, "
                f"over {policy.weight_max_age_days} ({policy.cite('weight_max_age_days')}): "
                "re-weigh before the steroid dose is set.",
                "2.1",
                newest.evidence,
            )
        ]
    chosen = dosing_weight(facts, on=on, infusion_date=on, policy=policy) or newest
    together = weights_together(facts, on=on, policy=policy)
    if not weights_disagree(together, policy=policy):
        return chosen, []
    shown = " and ".join(weight_shown(m) for m in sorted(together, key=lambda m: -m.value))
    return chosen, [
        _finding(
            FollowUpCode.WEIGHT_DISCREPANCY,
            Severity.NEEDS_REVIEW,
            f"Weights taken together disagree: {shown} "
            f"({policy.cite('weight_discrepancy_fraction', 'weight_pair_hours')}). The steroid "
            f"dose is set on the heavier, {chosen.value} kg, as the plan's dose is: confirm it, "
            "or re-weigh the infant or mark the wrong weight entered-in-error.",
            "2.1",
            *(m.evidence for m in together),
        )
    ]


def _step(
    weight_kg: Decimal, *, start: dt.date, days: int, mg_per_kg: Decimal, policy: Policy
) -> SteroidStep:
    """One dosing period on the given weight."""
    dose = daily_dose_mg(weight_kg, mg_per_kg)
    return SteroidStep(
        start=start,
        end=start + dt.timedelta(days=days - 1),
        mg_per_kg_per_day=mg_per_kg,
        dose_mg_per_day=dose,
        volume_ml_per_day=volume_ml(dose, concentration_mg_per_ml=policy.concentration_mg_per_ml),
    )


def decide(
    facts: PatientFacts,
    state: PlanState,
    *,
    on: dt.date,
    policy: Policy,
    exam_normal: bool | None = None,
) -> Decision:
    """The liver assessment: taper when unremarkable and the exam is normal, else continue."""
    orders = _live(state)
    latest = state.latest_decision
    since = (
        _first_panel_start(state, policy)
        if latest is None
        else latest.decided_on + dt.timedelta(days=1)
    )
    since_why = (
        f" (the day-30 window opens {policy.weekly_window_days} day(s) before infusion + 28, "
        f"{policy.cite('weekly_window_days')})"
        if latest is None
        else ", the day after the last decision"
    )
    panel, reasons, findings, labs_ok, consult = _judge_panel(
        facts, since=since, on=on, since_why=since_why
    )
    if exam_normal is False:
        reasons.append("the clinical exam is not normal")
    weight, weight_findings = _weight(facts, on=on, policy=policy)
    findings += weight_findings
    branch: DecisionBranch | None = None
    if reasons:
        branch = DecisionBranch.CONTINUE
    elif labs_ok:
        branch = DecisionBranch.TAPER
    full_end = _continuation_end(orders) or state.infusion_date + dt.timedelta(
        days=label.STEROID_FULL_DOSE_DAYS - 2
    )
    previous = next(
        (o.mg_per_day for o in reversed(orders) if o.role is not SteroidRole.TAPER_STEP),
        Decimal(0),
    )
    full_dose = daily_dose_mg(weight.value, label.STEROID_MG_PER_KG_PER_DAY) if weight else None
    if on > full_end:
        findings.append(
            _finding(
                FollowUpCode.DECISION_AFTER_FULL_DOSE,
                Severity.NEEDS_REVIEW,
                f"The last full-dose prednisolone order ended on {_day(full_end)}, "
                f"{(on - full_end).days}"
                " day(s) before this decision: confirm what was given since; the orders of this "
                f"decision start on {_day(full_end + dt.timedelta(days=1))}, the first uncovered "
                "day, so that no day goes uncovered. Never stop corticosteroids abruptly.",
                "2.1",
            )
        )
    steps: tuple[SteroidStep, ...] = ()
    liver: LiverDays | None = None
    end_order: SteroidOrder | None = None
    day_of = (on - state.infusion_date).days
    if branch is DecisionBranch.TAPER and weight is not None:
        full_dose_end = max(
            (o.end for o in orders if o.role is SteroidRole.FULL_DOSE),
            default=state.infusion_date + dt.timedelta(days=label.STEROID_FULL_DOSE_DAYS - 2),
        )
        first = min(max(full_dose_end, on), full_end) + dt.timedelta(days=1)
        steps = taper_steps(weight.value, first_day=first, policy=policy)
        liver = taper_liver_days(
            taper_first_day=(first - state.infusion_date).days,
            taper_days=sum(policy.taper_step_days),
        )
        running = _covering(orders, on)
        if (
            running is not None
            and running.role is SteroidRole.CONTINUATION
            and running.end >= first
        ):
            end_order = running
    elif branch is DecisionBranch.CONTINUE and weight is not None:
        first = full_end + dt.timedelta(days=1)
        if on >= full_end - dt.timedelta(days=policy.weekly_window_days):
            steps = (
                _step(
                    weight.value,
                    start=first,
                    days=policy.continuation_days,
                    mg_per_kg=label.STEROID_MG_PER_KG_PER_DAY,
                    policy=policy,
                ),
            )
        start = steps[0].start if steps else on + dt.timedelta(days=1)
        last = steps[-1].end if steps else full_end
        start_day = (start - state.infusion_date).days
        end_day = (last - state.infusion_date).days
        liver = LiverDays(
            weekly=tuple(range(start_day + 6, end_day + 1, 7)) or (max(end_day, start_day),),
            conditional="weekly while 1 mg/kg/day continues, until ALT and AST are < 2 x ULN "
            "and the rest is normal",
        )
    draws: tuple[ScheduleItem, ...] = ()
    after_day = max(day_of, label.STEROID_FULL_DOSE_DAYS - 2)
    if liver is not None:
        draws = tuple(
            d
            for d in lab_draws(state.infusion_date, policy=policy, liver=liver)
            if d.day > after_day
        )
    key = f"{on.isoformat()}-{branch.value if branch else 'undecided'}"
    return Decision(
        key=key,
        branch=branch,
        labs_unremarkable=labs_ok,
        exam_normal=exam_normal,
        reasons=tuple(reasons),
        findings=tuple(findings),
        consult=bool(consult) and state.consult is None,
        consult_results=tuple(consult),
        panel=tuple(panel),
        weight=weight,
        previous_mg_per_day=previous,
        full_dose_mg_per_day=full_dose,
        steps=steps,
        draws=draws,
        after_day=after_day,
        end_order=end_order,
        concentration_mg_per_ml=policy.concentration_mg_per_ml,
        manufacturer_advice=label.MANUFACTURER_CONSULT_ADVICE
        if branch is DecisionBranch.CONTINUE and not consult
        else "",
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
    orders = _live(state)
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
            _finding(
                FollowUpCode.INFUSION_NOT_RECORDED,
                Severity.NEEDS_REVIEW,
                f"No ZOLGENSMA administration is recorded: days are counted from the planned "
                f"infusion date {_day(state.infusion_date)}. Record the administration in the EHR.",
                "2.1",
            )
        )
    if orders and on >= state.infusion_date and _covering(orders, on) is None:
        last = (
            max(o.end for o in orders if o.start <= on)
            if any(o.start <= on for o in orders)
            else min(o.start for o in orders)
        )
        tapers = [o for o in orders if o.role is SteroidRole.TAPER_STEP]
        finished = bool(tapers) and on > tapers[-1].end
        if not finished:
            found.append(
                _finding(
                    FollowUpCode.NO_STEROID_ORDER,
                    Severity.NEEDS_REVIEW,
                    f"No prednisolone order covers {_day(on)}: the last one ended on {_day(last)} "
                    "and no taper is ordered. Never stop corticosteroids abruptly.",
                    "2.1",
                )
            )
    return found


def _ending_order(
    orders: tuple[SteroidOrder, ...], *, on: dt.date, policy: Policy
) -> list[Finding]:
    """Warn before the last ordered full-dose day while nothing is ordered after it (2.1)."""
    now = _covering(orders, on)
    if now is None or now.role is SteroidRole.TAPER_STEP:
        return []
    left = (now.end - on).days
    if left > policy.steroid_end_warning_days:
        return []
    if _covering(orders, now.end + dt.timedelta(days=1)) is not None:
        return []
    when = "today" if left == 0 else f"in {left} day(s)"
    return [
        _finding(
            FollowUpCode.STEROID_ORDER_ENDING,
            Severity.NEEDS_REVIEW,
            f"The prednisolone order at 1 mg/kg/day ends on {_day(now.end)} ({when}) and no "
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
    orders = _live(state)
    due = on >= state.infusion_date and decision_due(state, facts, on=on, policy=policy)
    covering = _covering(orders, on)
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
