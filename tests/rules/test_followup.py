"""Follow-up after infusion: phase, steroid course, Tasks against results, the day-30 decision.

Label sections 2.1 and 2.3: 1 mg/kg/day for 30 days from the day before infusion; at the end,
check liver status clinically and by ALT, AST, total bilirubin, PT and INR. Unremarkable
(normal exam, bilirubin, PT and INR; ALT and AST below 2 x ULN): taper over 28 days, with
weekly liver panels through the taper and every other week for another month. Otherwise
continue 1 mg/kg/day; consult hepatology when abnormalities persist >= 2 x ULN.

Every test builds PlanState and PatientFacts directly, around an infusion on 2026-10-24
(day 28 = 2026-11-21, the day-30 check in the manufacturer's numbering).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import pytest

from smart_app.rules.alerts import ACTIONS
from smart_app.rules.followup import (
    ResultFlag,
    TaskView,
    follow_up,
    is_alert_task,
    task_view,
)
from smart_app.rules.liver_decision import decide, decision_due
from smart_app.rules.model import (
    ActivityKind,
    AlertCode,
    AlertLevel,
    DecisionBranch,
    FollowUpCode,
    LabResult,
    LabTest,
    PatientFacts,
    Phase,
    PlannedTask,
    PlanState,
    ScheduleItem,
    Severity,
    SteroidStep,
    TaskState,
)
from smart_app.rules.monitoring import LIVER_PANEL
from smart_app.rules.steroids import taper_steps
from tests.builders import (
    ALB,
    ALT,
    AST,
    BILI,
    CONTINUATION,
    CREAT,
    FULL_DOSE,
    HGB,
    INFUSION,
    INR,
    NORMAL,
    PLT,
    POLICY,
    PT,
    TNI,
    all_tasks,
    changed,
    continued,
    day,
    lab,
    normal_labs,
    patient,
    plan,
    planned,
    tapered,
    weight,
)


def task(tasks: tuple[PlannedTask, ...], kind: ActivityKind, n: int) -> PlannedTask:
    """The one Task of this kind on day `n`."""
    (found,) = [t for t in tasks if t.kind is kind and t.day == n]
    return found


def view(views: tuple[TaskView, ...], kind: ActivityKind, n: int) -> TaskView:
    """The one view of a Task of this kind on day `n`."""
    (found,) = [v for v in views if v.task.kind is kind and v.task.day == n]
    return found


def days_with(draws: tuple[ScheduleItem, ...], test: LabTest) -> list[int]:
    """The draw days that include `test`."""
    return [d.day for d in draws if test in d.tests]


# Phase, day and the steroid course ------------------------------------------------------------


def test_before_infusion_is_pre_infusion_on_hcp_day_1() -> None:
    fu = follow_up(patient(), plan(), on=day(-1), policy=POLICY)
    assert fu.phase is Phase.PRE_INFUSION
    assert (fu.day, fu.hcp_day) == (-1, 1)
    assert fu.decision is None
    assert fu.dose_today is not None and fu.dose_today.order == FULL_DOSE
    assert fu.results == ()
    assert fu.findings == ()


def test_full_dose_on_day_10() -> None:
    fu = follow_up(patient(), plan(), on=day(10), policy=POLICY)
    assert fu.phase is Phase.FULL_DOSE
    assert (fu.day, fu.hcp_day) == (10, 12)
    assert fu.infusion_date == INFUSION
    assert fu.decision is None
    assert fu.dose_today is not None
    assert fu.dose_today.date == day(10)
    assert fu.dose_today.order == FULL_DOSE
    assert fu.dose_today.text == (
        "5.4 mg (1.8 mL) daily = 1 mg/kg/day, full dose, 2026-10-23 to 2026-11-21"
    )
    assert fu.next_change is None
    assert fu.course_text == (
        "Full dose 1 mg/kg/day, day 12 of 30 of this order (ends 21 Nov 2026)."
    )
    assert fu.findings == ()


def test_day_26_is_still_full_dose_the_check_opens_on_day_27() -> None:
    state, facts = plan(), patient()
    assert not decision_due(state, facts, on=day(26), policy=POLICY)
    assert decision_due(state, facts, on=day(27), policy=POLICY)
    assert follow_up(facts, state, on=day(26), policy=POLICY).phase is Phase.FULL_DOSE


@pytest.mark.parametrize("n", [27, 28, 35])
def test_liver_assessment_due_from_day_27_until_a_decision_is_recorded(n: int) -> None:
    fu = follow_up(patient(), plan(), on=day(n), policy=POLICY)
    assert fu.phase is Phase.LIVER_ASSESSMENT_DUE
    assert fu.hcp_day == n + 2
    assert fu.decision is not None


def test_taper_phase_with_step_dose_and_course_text() -> None:
    state = tapered()
    fu = follow_up(patient(), state, on=day(45), policy=POLICY)
    step_2 = state.steroid_orders[2]
    assert fu.phase is Phase.TAPER
    assert (fu.day, fu.hcp_day) == (45, 47)
    assert fu.decision is None
    assert fu.dose_today is not None and fu.dose_today.order == step_2
    assert fu.dose_today.text == (
        "1.5 mg (0.5 mL) daily = 0.25 mg/kg/day, taper step 2, 2026-12-06 to 2026-12-19"
    )
    assert fu.next_change is None
    assert fu.course_text == (
        "Taper step 2 of 2: 0.25 mg/kg/day, day 3 of 14 "
        "(step ends 19 Dec 2026; taper ends 19 Dec 2026)."
    )


def test_first_taper_day_shows_step_1_and_the_next_change() -> None:
    state = tapered()
    fu = follow_up(patient(), state, on=day(29), policy=POLICY)
    assert fu.phase is Phase.TAPER
    assert fu.dose_today is not None and fu.dose_today.order.step == 1
    assert fu.dose_today.text.startswith("3.1 mg (1.0 mL) daily = 0.5 mg/kg/day, taper step 1")
    assert fu.next_change is not None
    assert fu.next_change.date == dt.date(2026, 12, 6)
    assert fu.next_change.order == state.steroid_orders[2]
    assert fu.course_text.startswith("Taper step 1 of 2: 0.5 mg/kg/day, day 1 of 14 ")


def test_after_taper_decision_before_the_taper_starts_is_full_dose() -> None:
    state = tapered()
    fu = follow_up(patient(), state, on=day(28), policy=POLICY)
    assert fu.phase is Phase.FULL_DOSE
    assert fu.decision is None
    assert fu.dose_today is not None and fu.dose_today.order == FULL_DOSE
    assert fu.next_change is not None and fu.next_change.date == day(29)
    assert fu.course_text.startswith("Full dose 1 mg/kg/day, day 30 of 30 ")


@pytest.mark.parametrize("n", [57, 60, 85, 90])
def test_post_taper_monitoring_after_the_last_step(n: int) -> None:
    fu = follow_up(patient(), tapered(), on=day(n), policy=POLICY)
    assert fu.phase is Phase.POST_TAPER
    assert fu.dose_today is None
    assert fu.next_change is None
    assert fu.course_text == "Corticosteroid course: taper completed on 19 Dec 2026."
    assert fu.findings == ()


@pytest.mark.parametrize("n", [96, 120])
def test_complete_after_day_90_and_the_last_task_window(n: int) -> None:
    """The last Task is the 3-month draw on day 92 (2027-01-24), on time through day 95."""
    fu = follow_up(patient(), tapered(), on=day(n), policy=POLICY)
    assert fu.phase is Phase.COMPLETE


def test_an_open_task_window_past_day_90_keeps_monitoring_going() -> None:
    late = ScheduleItem(
        date=day(99),
        day=99,
        kind=ActivityKind.LAB_DRAW,
        activity="Lab draw, day 99",
        tests=LIVER_PANEL,
        section="2.3",
        window_start=day(96),
        window_end=day(102),
    )
    state = tapered()
    state = dataclasses.replace(state, tasks=(*state.tasks, planned(late, 99)))
    assert follow_up(patient(), state, on=day(99), policy=POLICY).phase is Phase.POST_TAPER
    assert follow_up(patient(), state, on=day(102), policy=POLICY).phase is Phase.POST_TAPER
    assert follow_up(patient(), state, on=day(103), policy=POLICY).phase is Phase.COMPLETE
    cancelled = dataclasses.replace(state.tasks[-1], status="cancelled")
    state = dataclasses.replace(state, tasks=(*state.tasks[:-1], cancelled))
    assert follow_up(patient(), state, on=day(99), policy=POLICY).phase is Phase.COMPLETE


def test_after_a_continue_decision_the_full_dose_continues() -> None:
    fu = follow_up(patient(normal_labs(through=28)), continued(), on=day(32), policy=POLICY)
    assert fu.phase is Phase.FULL_DOSE
    assert fu.decision is None
    assert fu.dose_today is not None and fu.dose_today.order == CONTINUATION
    assert "full dose continued, 2026-11-22 to 2026-12-19" in fu.dose_today.text
    assert fu.course_text == (
        "Full dose 1 mg/kg/day, day 4 of 28 of this order (ends 19 Dec 2026)."
    )


def test_a_complete_newer_liver_panel_after_continue_makes_the_assessment_due() -> None:
    facts = patient(normal_labs(through=35))
    state = continued()
    assert follow_up(facts, state, on=day(34), policy=POLICY).phase is Phase.FULL_DOSE
    fu = follow_up(facts, state, on=day(35), policy=POLICY)
    assert fu.phase is Phase.LIVER_ASSESSMENT_DUE
    assert fu.decision is not None
    assert [p.result.effective for p in fu.decision.panel] == [day(35)] * 5


def test_an_incomplete_newer_panel_after_continue_is_not_enough() -> None:
    facts = patient(changed(normal_labs(through=35), drop=((INR, 35),)))
    assert not decision_due(continued(), facts, on=day(35), policy=POLICY)
    assert follow_up(facts, continued(), on=day(35), policy=POLICY).phase is Phase.FULL_DOSE


def test_a_continuation_about_to_end_makes_the_assessment_due() -> None:
    facts = patient(normal_labs(through=28))
    assert follow_up(facts, continued(), on=day(54), policy=POLICY).phase is Phase.FULL_DOSE
    fu = follow_up(facts, continued(), on=day(55), policy=POLICY)
    assert fu.phase is Phase.LIVER_ASSESSMENT_DUE
    assert fu.decision is not None
    assert fu.decision.branch is None  # no liver panel since the last decision
    assert {f.code for f in fu.decision.findings} == {FollowUpCode.LIVER_PANEL_MISSING}


def test_no_decision_after_a_taper_decision() -> None:
    assert not decision_due(tapered(), patient(), on=day(56), policy=POLICY)


# State findings -------------------------------------------------------------------------------


def test_no_recorded_administration_is_a_finding_after_the_infusion_date() -> None:
    state = plan(administered=False)
    assert follow_up(patient(), state, on=day(-1), policy=POLICY).findings == ()
    (finding,) = follow_up(patient(), state, on=day(3), policy=POLICY).findings
    assert finding.code is FollowUpCode.INFUSION_NOT_RECORDED
    assert finding.severity is Severity.NEEDS_REVIEW
    assert "24 Oct 2026" in finding.message


def test_no_order_covering_today_without_a_taper_is_a_finding() -> None:
    fu = follow_up(patient(), plan(), on=day(30), policy=POLICY)
    (finding,) = fu.findings
    assert finding.code is FollowUpCode.NO_STEROID_ORDER
    assert "23 Nov 2026" in finding.message and "21 Nov 2026" in finding.message
    assert fu.course_text == "Corticosteroid course: order ended on 21 Nov 2026."


# Tasks against results ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "state"),
    [
        (5, TaskState.UPCOMING),
        (6, TaskState.DUE),
        (7, TaskState.DUE),
        (8, TaskState.DUE),
        (9, TaskState.OVERDUE),
    ],
)
def test_task_state_follows_its_window_without_results(n: int, state: TaskState) -> None:
    tasks = all_tasks()
    seen = task_view(
        task(tasks, ActivityKind.LAB_DRAW, 7), facts=patient([]), tasks=tasks, on=day(n)
    )
    assert seen.state is state
    assert seen.matches == ()
    assert seen.late is False
    if state is not TaskState.UPCOMING:
        assert seen.missing == (AST, ALT, BILI, PT, INR, CREAT, HGB, PLT, TNI)


def test_results_dated_after_the_follow_up_date_are_not_known_yet() -> None:
    tasks = all_tasks()
    seen = task_view(task(tasks, ActivityKind.LAB_DRAW, 7), facts=patient(), tasks=tasks, on=day(6))
    assert seen.state is TaskState.DUE
    assert seen.matches == ()


def test_task_resulted_when_every_test_has_a_final_result_in_its_window() -> None:
    tasks = all_tasks()
    facts = patient(normal_labs(through=7))
    seen = task_view(task(tasks, ActivityKind.LAB_DRAW, 7), facts=facts, tasks=tasks, on=day(7))
    assert seen.state is TaskState.RESULTED
    assert seen.missing == ()
    assert seen.late is False
    assert [r.test for r in seen.matches] == [AST, ALT, BILI, PT, INR, CREAT, HGB, PLT, TNI]
    assert {r.effective for r in seen.matches} == {day(7)}


def test_completed_task_is_done() -> None:
    tasks = all_tasks({"task/lab-draw/day7": "completed"})
    seen = task_view(
        task(tasks, ActivityKind.LAB_DRAW, 7), facts=patient([]), tasks=tasks, on=day(20)
    )
    assert seen.state is TaskState.DONE


def test_a_preliminary_result_does_not_complete_a_task() -> None:
    labs = changed(normal_labs(through=7), lab(ALT, "24", 7, final=False))
    tasks = all_tasks()
    seen = task_view(
        task(tasks, ActivityKind.LAB_DRAW, 7), facts=patient(labs), tasks=tasks, on=day(7)
    )
    assert seen.state is TaskState.DUE
    assert seen.missing == (ALT,)
    assert ALT not in {r.test for r in seen.matches}


def test_a_partially_resulted_task_lists_what_is_missing() -> None:
    labs = changed(normal_labs(through=7), drop=((INR, 7), (PLT, 7)))
    tasks = all_tasks()
    t7 = task(tasks, ActivityKind.LAB_DRAW, 7)
    due = task_view(t7, facts=patient(labs), tasks=tasks, on=day(7))
    assert due.state is TaskState.DUE
    assert due.missing == (INR, PLT)
    assert len(due.matches) == 7
    overdue = task_view(t7, facts=patient(labs), tasks=tasks, on=day(9))
    assert overdue.state is TaskState.OVERDUE
    assert overdue.missing == (INR, PLT)


def test_a_late_result_completes_an_overdue_task_as_late() -> None:
    labs = [lab(t, NORMAL[t], 11) for t in task(all_tasks(), ActivityKind.LAB_DRAW, 7).tests]
    fu = follow_up(patient(labs), plan(), on=day(12), policy=POLICY)
    seven = view(fu.tasks, ActivityKind.LAB_DRAW, 7)
    assert seven.state is TaskState.RESULTED
    assert seven.late is True
    assert {r.effective for r in seven.matches} == {day(11)}
    assert view(fu.tasks, ActivityKind.LAB_DRAW, 14).state is TaskState.UPCOMING


def test_a_result_in_the_next_draws_window_does_not_complete_the_earlier_task() -> None:
    labs = [lab(t, NORMAL[t], 13) for t in task(all_tasks(), ActivityKind.LAB_DRAW, 7).tests]
    fu = follow_up(patient(labs), plan(), on=day(13), policy=POLICY)
    seven = view(fu.tasks, ActivityKind.LAB_DRAW, 7)
    assert seven.state is TaskState.OVERDUE
    assert seven.late is False
    assert seven.matches == ()
    assert len(seven.missing) == 9
    fourteen = view(fu.tasks, ActivityKind.LAB_DRAW, 14)
    assert fourteen.state is TaskState.RESULTED
    assert fourteen.late is False


def test_the_liver_assessment_task_is_never_resulted_by_labs() -> None:
    fu = follow_up(patient(), plan(), on=day(29), policy=POLICY)
    assert view(fu.tasks, ActivityKind.LAB_DRAW, 28).state is TaskState.RESULTED
    check = view(fu.tasks, ActivityKind.LIVER_ASSESSMENT, 28)
    assert check.state is TaskState.DUE
    assert check.matches == ()
    after = follow_up(patient(), plan(), on=day(30), policy=POLICY)
    assert view(after.tasks, ActivityKind.LIVER_ASSESSMENT, 28).state is TaskState.OVERDUE


def test_tasks_without_tests_follow_their_windows() -> None:
    on_14 = follow_up(patient(), plan(), on=day(14), policy=POLICY)
    assert view(on_14.tasks, ActivityKind.COUNSELING, -1).state is TaskState.OVERDUE


@pytest.mark.parametrize(
    ("on_day", "state"),
    [
        (-2, TaskState.UPCOMING),
        (0, TaskState.ONGOING),
        (14, TaskState.ONGOING),  # the window's last day
        (15, TaskState.DUE),  # the window ended: confirm it, never "overdue"
        (60, TaskState.DUE),
    ],
)
def test_a_standing_vigilance_item_is_ongoing_in_its_window_and_never_overdue(
    on_day: int, state: TaskState
) -> None:
    fu = follow_up(patient(), plan(), on=day(on_day), policy=POLICY)
    vigilance = view(fu.tasks, ActivityKind.VIGILANCE, 0)
    assert vigilance.state is state
    assert not any(
        v.state is TaskState.OVERDUE for v in fu.tasks if v.task.kind is ActivityKind.VIGILANCE
    )


def test_baseline_task_resulted_by_pre_infusion_labs() -> None:
    fu = follow_up(patient(), plan(), on=day(-1), policy=POLICY)
    baseline = view(fu.tasks, ActivityKind.BASELINE, -1)
    assert baseline.state is TaskState.RESULTED
    assert len(baseline.matches) == len(POLICY.baseline_tests)
    assert view(fu.tasks, ActivityKind.COUNSELING, -1).state is TaskState.DUE
    assert view(fu.tasks, ActivityKind.LAB_DRAW, 7).state is TaskState.UPCOMING


def _baseline_without_albumin(*post: LabResult) -> PatientFacts:
    """Baseline results on day -3 except albumin, plus `post`."""
    labs = [r for r in normal_labs(through=-1) if r.test is not ALB]
    return patient([*labs, *post])


def test_a_result_on_the_infusion_day_completes_the_baseline_late() -> None:
    facts = _baseline_without_albumin(lab(ALB, "0.01", 0))
    fu = follow_up(facts, plan(), on=day(3), policy=POLICY)
    baseline = view(fu.tasks, ActivityKind.BASELINE, -1)
    assert baseline.state is TaskState.RESULTED
    assert baseline.late is True


def test_a_missing_baseline_stays_overdue() -> None:
    fu = follow_up(_baseline_without_albumin(), plan(), on=day(3), policy=POLICY)
    baseline = view(fu.tasks, ActivityKind.BASELINE, -1)
    assert baseline.state is TaskState.OVERDUE
    assert baseline.missing == (ALB,)


def test_a_post_infusion_result_is_not_a_late_baseline() -> None:
    facts = _baseline_without_albumin(*(lab(t, NORMAL[t], 7) for t in (ALB, PLT)))
    fu = follow_up(facts, plan(), on=day(10), policy=POLICY)
    baseline = view(fu.tasks, ActivityKind.BASELINE, -1)
    assert baseline.state is TaskState.OVERDUE
    assert baseline.missing == (ALB,)
    assert baseline.late is False
    assert {r.effective for r in baseline.matches} == {day(-3)}


def test_retired_tasks_are_left_out_and_views_are_in_window_order() -> None:
    tasks = all_tasks(
        {"task/lab-draw/day70": "cancelled", "task/lab-draw/day84": "entered-in-error"}
    )
    fu = follow_up(patient(), plan(tasks=tasks), on=day(20), policy=POLICY)
    assert {v.task.day for v in fu.tasks if v.task.kind is ActivityKind.LAB_DRAW} == {
        7,
        14,
        21,
        28,
        35,
        42,
        49,
        56,
        92,
    }
    starts = [v.task.window_start for v in fu.tasks]
    assert starts == sorted(starts)


# The day-30 decision: unremarkable --------------------------------------------------------------


def test_unremarkable_assessment_tapers_on_the_new_weight() -> None:
    fu = follow_up(patient(), plan(), on=day(28), policy=POLICY, exam_normal=True)
    decision = fu.decision
    assert decision is not None
    assert decision.branch is DecisionBranch.TAPER
    assert decision.writable
    assert decision.labs_unremarkable
    assert decision.exam_normal is True
    assert decision.reasons == ()
    assert decision.findings == ()
    assert decision.consult is False
    assert decision.key == "2026-11-21-taper"
    assert {p.result.test for p in decision.panel} == set(LIVER_PANEL)
    # Weight re-read: 6.1 kg on day 27, not the 5.4 kg the full dose was ordered on.
    assert decision.weight == weight(27)
    assert decision.weight.value == Decimal("6.100")
    assert decision.previous_mg_per_day == Decimal("5.4")
    assert decision.full_dose_mg_per_day == Decimal("6.1")
    assert decision.steps == (
        SteroidStep(day(29), day(42), Decimal("0.5"), Decimal("3.1"), Decimal("1.0")),
        SteroidStep(day(43), day(56), Decimal("0.25"), Decimal("1.5"), Decimal("0.5")),
    )
    assert decision.steps == taper_steps(Decimal("6.100"), first_day=day(29), policy=POLICY)
    assert decision.end_order is None
    assert decision.after_day == 28
    assert [d.day for d in decision.draws] == [35, 42, 49, 56, 70, 84, 92]
    for test in LIVER_PANEL:
        assert days_with(decision.draws, test) == [35, 42, 49, 56, 70, 84, 92]
    assert days_with(decision.draws, PLT) == [42, 56, 70, 84, 92]
    assert days_with(decision.draws, TNI) == [56, 84]
    assert decision.concentration_mg_per_ml == Decimal(3)


def test_a_decision_on_day_27_still_gives_the_full_30_days() -> None:
    labs = [r for r in normal_labs() if r.effective != day(28)]
    labs += [lab(t, NORMAL[t], 27) for t in LIVER_PANEL]
    decision = decide(patient(labs), plan(), on=day(27), policy=POLICY, exam_normal=True)
    assert decision.branch is DecisionBranch.TAPER
    assert decision.weight == weight(27)
    assert decision.steps[0].start == day(29)
    assert decision.after_day == 28
    assert [d.day for d in decision.draws] == [35, 42, 49, 56, 70, 84, 92]


def test_aminotransferases_above_uln_but_below_2x_are_unremarkable() -> None:
    labs = changed(normal_labs(), lab(ALT, "89", 28), lab(AST, "119", 28))
    decision = decide(patient(labs), plan(), on=day(28), policy=POLICY, exam_normal=True)
    assert decision.branch is DecisionBranch.TAPER
    assert decision.labs_unremarkable
    assert decision.consult is False


def test_an_unattested_exam_proposes_the_taper_but_cannot_be_written() -> None:
    decision = decide(patient(), plan(), on=day(28), policy=POLICY, exam_normal=None)
    assert decision.branch is DecisionBranch.TAPER
    assert decision.exam_normal is None
    assert not decision.writable
    assert len(decision.steps) == 2


def test_an_abnormal_exam_continues_the_full_dose() -> None:
    decision = decide(patient(), plan(), on=day(28), policy=POLICY, exam_normal=False)
    assert decision.branch is DecisionBranch.CONTINUE
    assert decision.writable
    assert decision.labs_unremarkable
    assert decision.consult is False
    assert any("clinical exam" in r for r in decision.reasons)
    assert len(decision.steps) == 1
    assert decision.steps[0].mg_per_kg_per_day == Decimal(1)


# The day-30 decision: abnormal ------------------------------------------------------------------


def test_alt_3x_uln_continues_1_mg_per_kg_with_a_consult() -> None:
    labs = changed(normal_labs(), lab(ALT, "135", 28))
    decision = decide(patient(labs), plan(), on=day(28), policy=POLICY, exam_normal=True)
    assert decision.branch is DecisionBranch.CONTINUE
    assert decision.writable
    assert not decision.labs_unremarkable
    assert decision.consult is True
    assert [r.test for r in decision.consult_results] == [ALT]  # AST 38 U/L is not behind it
    (reason,) = decision.reasons
    assert "ALT" in reason and "3.00 x ULN" in reason and "21 Nov 2026" in reason
    assert decision.key == "2026-11-21-continue"
    assert decision.full_dose_mg_per_day == Decimal("6.1")
    (step,) = decision.steps
    assert step == SteroidStep(day(29), day(56), Decimal(1), Decimal("6.1"), Decimal("2.0"))
    assert step.days == POLICY.continuation_days
    # Weekly while 1 mg/kg/day continues, and on the 3-month date (day 92) whatever follows.
    for test in LIVER_PANEL:
        assert days_with(decision.draws, test) == [35, 42, 49, 56, 92]
    assert days_with(decision.draws, PLT) == [42, 56, 70, 84, 92]
    assert days_with(decision.draws, TNI) == [56, 84]
    assert decision.end_order is None


@pytest.mark.parametrize(("test", "value"), [(ALT, "90"), (AST, "120")])
def test_exactly_2x_uln_is_not_below_2x(test: LabTest, value: str) -> None:
    labs = changed(normal_labs(), lab(test, value, 28))
    decision = decide(patient(labs), plan(), on=day(28), policy=POLICY, exam_normal=True)
    assert decision.branch is DecisionBranch.CONTINUE
    assert decision.consult is True
    assert [r.test for r in decision.consult_results] == [test]
    (reason,) = decision.reasons
    assert str(test) in reason and "2.00 x ULN" in reason


def test_no_second_consult_when_one_is_on_record() -> None:
    labs = changed(normal_labs(), lab(ALT, "135", 28))
    state = plan(consult="ServiceRequest/s1")
    decision = decide(patient(labs), state, on=day(28), policy=POLICY, exam_normal=True)
    assert decision.branch is DecisionBranch.CONTINUE
    assert decision.consult is False


@pytest.mark.parametrize(
    ("test", "value"), [(BILI, "1.3"), (PT, "14.6"), (INR, "1.4")], ids=["bilirubin", "PT", "INR"]
)
def test_bilirubin_pt_or_inr_above_uln_continues_without_consult(test: LabTest, value: str) -> None:
    labs = changed(normal_labs(), lab(test, value, 28))
    decision = decide(patient(labs), plan(), on=day(28), policy=POLICY, exam_normal=True)
    assert decision.branch is DecisionBranch.CONTINUE
    assert decision.consult is False
    (reason,) = decision.reasons
    assert str(test) in reason and "above normal" in reason
    assert len(decision.steps) == 1


@pytest.mark.parametrize(
    ("test", "value"), [(BILI, "1.2"), (PT, "14.5"), (INR, "1.3")], ids=["bilirubin", "PT", "INR"]
)
def test_bilirubin_pt_or_inr_at_uln_are_normal(test: LabTest, value: str) -> None:
    labs = changed(normal_labs(), lab(test, value, 28))
    decision = decide(patient(labs), plan(), on=day(28), policy=POLICY, exam_normal=True)
    assert decision.branch is DecisionBranch.TAPER


def test_repeat_continue_while_the_continuation_runs_adds_no_order() -> None:
    labs = changed(normal_labs(), lab(ALT, "135", 35))
    fu = follow_up(patient(labs), continued(), on=day(35), policy=POLICY, exam_normal=True)
    decision = fu.decision
    assert decision is not None
    assert decision.branch is DecisionBranch.CONTINUE
    assert decision.previous_mg_per_day == Decimal("6.1")
    assert decision.steps == ()
    assert decision.after_day == 35
    assert days_with(decision.draws, ALT) == [42, 49, 56, 92]
    assert decision.findings == ()


def test_repeat_continue_as_the_continuation_ends_orders_another() -> None:
    labs = changed(normal_labs(), lab(ALT, "135", 49))
    decision = decide(patient(labs), continued(), on=day(55), policy=POLICY, exam_normal=True)
    assert decision.branch is DecisionBranch.CONTINUE
    assert [p.result.effective for p in decision.panel if p.result.test is ALT] == [day(49)]
    (step,) = decision.steps
    assert (step.start, step.end) == (day(57), day(84))
    assert decision.weight == weight(55)
    assert step.dose_mg_per_day == Decimal("6.8")
    assert days_with(decision.draws, ALT) == [63, 70, 77, 84, 92]


# Missing data ---------------------------------------------------------------------------------


def test_a_missing_panel_test_leaves_the_decision_open() -> None:
    labs = changed(normal_labs(), drop=((INR, 28),))
    decision = decide(patient(labs), plan(), on=day(28), policy=POLICY, exam_normal=True)
    assert decision.branch is None
    assert not decision.writable
    assert decision.key == "2026-11-21-undecided"
    (finding,) = decision.findings
    assert finding.code is FollowUpCode.LIVER_PANEL_MISSING
    assert finding.severity is Severity.INCOMPLETE
    assert "No INR result since 20 Nov 2026" in finding.message
    assert decision.steps == ()
    assert decision.draws == ()


def test_a_panel_older_than_day_27_does_not_count() -> None:
    labs = [r for r in normal_labs() if r.effective != day(28)]
    decision = decide(patient(labs), plan(), on=day(28), policy=POLICY, exam_normal=True)
    assert decision.branch is None
    assert len(decision.findings) == 5


def test_a_result_without_any_uln_leaves_the_decision_open() -> None:
    labs = changed(normal_labs(), lab(ALT, "24", 28, reported=False))
    facts = patient(labs, birth_date=None)
    decision = decide(facts, plan(), on=day(28), policy=POLICY, exam_normal=True)
    assert decision.branch is None
    (finding,) = decision.findings
    assert finding.code is FollowUpCode.ULN_MISSING
    assert "ALT" in finding.message


def test_a_stale_weight_blocks_the_new_dose() -> None:
    decision = decide(patient(weights=(-8,)), plan(), on=day(28), policy=POLICY, exam_normal=True)
    assert decision.branch is DecisionBranch.TAPER
    assert decision.weight is None
    assert decision.full_dose_mg_per_day is None
    assert not decision.writable
    assert decision.steps == ()
    (finding,) = decision.findings
    assert finding.code is FollowUpCode.WEIGHT_STALE
    assert "is 36 days old" in finding.message
    assert f"over {POLICY.weight_max_age_days}" in finding.message


def test_a_stale_weight_blocks_a_continue_too() -> None:
    labs = changed(normal_labs(), lab(ALT, "135", 28))
    decision = decide(patient(labs, weights=(-8,)), plan(), on=day(28), policy=POLICY)
    assert decision.branch is DecisionBranch.CONTINUE
    assert not decision.writable
    assert decision.steps == ()


def test_a_weight_exactly_at_the_age_limit_is_current() -> None:
    decision = decide(patient(weights=(-2,)), plan(), on=day(28), policy=POLICY, exam_normal=True)
    assert decision.weight == weight(-2)
    assert decision.writable


def test_no_weight_at_all_blocks_the_new_dose() -> None:
    decision = decide(patient(weights=()), plan(), on=day(28), policy=POLICY, exam_normal=True)
    assert not decision.writable
    (finding,) = decision.findings
    assert finding.code is FollowUpCode.WEIGHT_MISSING


def test_a_decision_after_the_full_dose_ended_flags_the_gap() -> None:
    fu = follow_up(patient(), plan(), on=day(35), policy=POLICY, exam_normal=True)
    assert fu.phase is Phase.LIVER_ASSESSMENT_DUE
    decision = fu.decision
    assert decision is not None
    assert decision.branch is DecisionBranch.TAPER
    assert [p.result.effective for p in decision.panel] == [day(35)] * 5
    (gap,) = decision.findings
    assert gap.code is FollowUpCode.DECISION_AFTER_FULL_DOSE
    assert gap.severity is Severity.NEEDS_REVIEW
    assert "ended on 21 Nov 2026, 7 day(s) before this decision" in gap.message
    assert "start on 22 Nov 2026, the first uncovered day" in gap.message
    # A late decision starts its orders on the first uncovered day (day 29), never leaving
    # days 29-35 without an order.
    assert decision.steps[0].start == day(29)
    assert decision.weight == weight(34)
    assert decision.after_day == 35
    assert days_with(decision.draws, ALT) == [42, 49, 56, 70, 84, 92]
    assert FollowUpCode.NO_STEROID_ORDER in {f.code for f in fu.findings}


# Bugs -------------------------------------------------------------------------------------------


def test_a_taper_after_continue_starts_the_next_day_and_ends_the_continuation() -> None:
    fu = follow_up(patient(), continued(), on=day(35), policy=POLICY, exam_normal=True)
    decision = fu.decision
    assert decision is not None
    assert decision.branch is DecisionBranch.TAPER
    assert decision.steps[0].start == day(36)
    assert decision.end_order == CONTINUATION


def _late_taper() -> PlanState:
    """A TAPER decided late on day 35, its taper ordered from day 36: nothing covers days 29-35."""
    return tapered(decided=35, taper_first=36)


def test_a_day_without_steroid_before_a_late_taper_is_a_finding() -> None:
    fu = follow_up(patient(), _late_taper(), on=day(35), policy=POLICY)
    assert fu.dose_today is None
    assert FollowUpCode.NO_STEROID_ORDER in {f.code for f in fu.findings}


def test_course_text_on_a_day_between_orders_names_the_next_start() -> None:
    fu = follow_up(patient(), _late_taper(), on=day(35), policy=POLICY)
    assert fu.next_change is not None and fu.next_change.date == day(36)
    assert "starts on 23 Oct 2026" not in fu.course_text
    assert "29 Nov 2026" in fu.course_text


# Alerts and results -----------------------------------------------------------------------------


def test_alerts_pass_through() -> None:
    labs = changed(normal_labs(), lab(ALT, "1125", 21))
    fu = follow_up(patient(labs), plan(), on=day(22), policy=POLICY)
    assert [a.code for a in fu.alerts] == [
        AlertCode.ACUTE_LIVER_INJURY,
        AlertCode.LIVER_TESTS_WORSENING,
    ]
    alert = fu.alerts[0]
    assert alert.level is AlertLevel.URGENT
    assert "25.00 x ULN" in alert.message
    assert follow_up(patient(), plan(), on=day(22), policy=POLICY).alerts == ()


def test_results_are_post_infusion_and_known_on_the_date() -> None:
    labs = [*normal_labs(), lab(ALT, "30", 0)]
    fu = follow_up(patient(labs), plan(), on=day(14), policy=POLICY)
    assert {r.day for r in fu.results} == {7, 14}
    assert len(fu.results) == 18
    assert all(day(1) <= r.result.effective <= day(14) for r in fu.results)
    assert [r.day for r in fu.results] == sorted(r.day for r in fu.results)
    (alt_7,) = [r for r in fu.results if r.result.test is ALT and r.day == 7]
    assert alt_7.uln == Decimal(45)
    assert alt_7.multiple_of_uln == Decimal("0.53")
    assert alt_7.flag is ResultFlag.NORMAL


FLAG_CASES = [
    (lab(ALT, "24", 7), ResultFlag.NORMAL, Decimal("0.53")),
    (lab(ALT, "60", 7), ResultFlag.ABOVE_ULN, Decimal("1.33")),
    (lab(ALT, "90", 7), ResultFlag.AT_LEAST_2X, Decimal("2.00")),
    (lab(AST, "1200", 7), ResultFlag.AT_LEAST_2X, Decimal("20.00")),
    (lab(AST, "1260", 7), ResultFlag.ABOVE_20X, Decimal("21.00")),
    (lab(ALT, "1125", 7), ResultFlag.ABOVE_20X, Decimal("25.00")),
    (lab(BILI, "1.3", 7), ResultFlag.ABOVE_ULN, Decimal("1.08")),
    (lab(BILI, "2.6", 7), ResultFlag.ABOVE_ULN, Decimal("2.17")),
    (lab(TNI, "0.05", 7), ResultFlag.ABOVE_ULN, Decimal("1.25")),
    (lab(PLT, "149", 7), ResultFlag.LOW, None),
    (lab(PLT, "150", 7), ResultFlag.NORMAL, None),
    (lab(HGB, "7.0", 7), ResultFlag.NORMAL, None),
]


@pytest.mark.parametrize(
    ("result", "flag", "multiple"),
    FLAG_CASES,
    ids=[f"{r.test.name}-{r.value}" for r, _, _ in FLAG_CASES],
)
def test_result_row_flags(result: LabResult, flag: ResultFlag, multiple: Decimal | None) -> None:
    fu = follow_up(patient([result]), plan(), on=day(8), policy=POLICY)
    (row,) = fu.results
    assert row.result == result
    assert row.day == 7
    assert row.flag is flag
    assert row.multiple_of_uln == multiple


def test_a_result_without_uln_is_flagged() -> None:
    facts = patient([lab(ALT, "24", 7, reported=False)], birth_date=None)
    (row,) = follow_up(facts, plan(), on=day(8), policy=POLICY).results
    assert row.flag is ResultFlag.NO_ULN
    assert row.uln is None and row.multiple_of_uln is None


# Determinism ----------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [10, 28, 45])
def test_same_inputs_give_the_same_follow_up(n: int) -> None:
    first = follow_up(patient(), tapered() if n == 45 else plan(), on=day(n), policy=POLICY)
    again = follow_up(patient(), tapered() if n == 45 else plan(), on=day(n), policy=POLICY)
    assert first == again


# Alerts: acknowledgements and the Tasks they call for ---------------------------------------


def _alert_task(item: str, kind: ActivityKind, n: int, status: str) -> PlannedTask:
    """A Task the alert actions wrote, on day `n`."""
    return PlannedTask(
        reference=f"Task/{item}",
        item=item,
        kind=kind,
        day=n,
        window_start=day(n),
        window_end=day(n),
        tests=(),
        status=status,
        description="",
    )


def test_each_alert_has_a_review_with_todays_items_and_its_actions() -> None:
    labs = changed(normal_labs(), lab(ALT, "1125", 21))
    fu = follow_up(patient(labs), plan(), on=day(22), policy=POLICY)
    assert [r.alert for r in fu.reviews] == list(fu.alerts)
    liver, worse = fu.reviews
    assert liver.item == "task/alert-review/acute-liver-injury/day22"
    assert liver.acknowledged is None and not liver.acknowledged_today
    assert [(a.action.key, a.action.kind, a.item, a.offered) for a in liver.actions] == [
        (
            "hepatology-consult",
            ActivityKind.CONSULT,
            "task/consult/alert-hepatology-consult/day22",
            True,
        ),
        ("liver-tests", ActivityKind.LAB_DRAW, "task/lab-draw/alert-liver-tests/day22", True),
    ]
    assert [a.action.key for a in worse.actions] == ["liver-tests"]
    assert is_alert_task(liver.item) and is_alert_task(liver.actions[0].item)
    assert not is_alert_task("task/lab-draw/day21") and not is_alert_task("task/consult/hepatology")


def test_an_acknowledgement_counts_for_its_day_and_a_made_task_until_it_is_finished() -> None:
    labs = changed(normal_labs(), lab(ALT, "1125", 21))
    acked = _alert_task(
        "task/alert-review/acute-liver-injury/day22", ActivityKind.ALERT_REVIEW, 22, "completed"
    )
    consult = _alert_task(
        "task/consult/alert-hepatology-consult/day22", ActivityKind.CONSULT, 22, "requested"
    )
    state = plan(tasks=(*all_tasks(), acked, consult))
    today = follow_up(patient(labs), state, on=day(22), policy=POLICY).reviews[0]
    assert today.acknowledged == acked and today.acknowledged_today
    assert [a.offered for a in today.actions] == [False, True]  # the consult exists, open
    tomorrow = follow_up(patient(labs), state, on=day(23), policy=POLICY).reviews[0]
    assert tomorrow.acknowledged == acked and not tomorrow.acknowledged_today
    assert tomorrow.actions[0].task == consult and not tomorrow.actions[0].offered  # still open
    done = plan(tasks=(*all_tasks(), acked, dataclasses.replace(consult, status="completed")))
    later = follow_up(patient(labs), done, on=day(23), policy=POLICY).reviews[0]
    assert later.actions[0].offered  # finished on an earlier day: a new one may be asked for
    same_day = follow_up(patient(labs), done, on=day(22), policy=POLICY).reviews[0]
    assert not same_day.actions[0].offered  # today's is done: never a second of the same day
    # the acknowledgement is a Task of its own kind: shown done, never due
    views = follow_up(patient(labs), state, on=day(22), policy=POLICY).tasks
    assert view(views, ActivityKind.ALERT_REVIEW, 22).state is TaskState.DONE


def test_every_alert_code_calls_for_a_consult_or_a_repeat_draw() -> None:
    for code in AlertCode:
        actions = ACTIONS[code]
        assert actions, code
        for action in actions:
            assert action.kind in (ActivityKind.CONSULT, ActivityKind.LAB_DRAW)
            assert (action.kind is ActivityKind.LAB_DRAW) == bool(action.tests)
            assert action.section and 0 <= action.within_days <= 7
