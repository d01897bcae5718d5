"""'Until back to baseline' (2.3; 5.1; 5.3): further weekly draws after the last scheduled one.

Every test builds PlanState and PatientFacts directly around an infusion on 2026-11-24 (the
3-month draw on day 92 = 2027-02-24), a taper recorded on day 28 and a pre-infusion platelet
count of 310 x 10^3/uL on day -3.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import pytest

from smart_app.rules.extension import above, below, proposed_draws
from smart_app.rules.followup import follow_up
from smart_app.rules.model import (
    ActivityKind,
    Comparator,
    DecisionBranch,
    LabResult,
    LabTest,
    PatientFacts,
    Phase,
    PlannedTask,
    PlanState,
    RecordedDecision,
    ScheduleItem,
    SteroidRole,
    SteroidStep,
)
from smart_app.rules.monitoring import LIVER_PANEL, lab_draws
from smart_app.rules.policy import DEFAULT_POLICY
from tests.builders import Timeline, orders_for, planned

INFUSION = dt.date(2026, 11, 24)
POLICY = DEFAULT_POLICY
PLT = LabTest.PLATELETS
ALT = LabTest.ALT
LAST = 92
"""The 3-month draw: the last scheduled one for the liver panel and platelets."""

ULN: dict[LabTest, Decimal] = {
    LabTest.AST: Decimal(60),
    LabTest.ALT: Decimal(45),
    LabTest.BILIRUBIN_TOTAL: Decimal("1.2"),
    LabTest.PT: Decimal("14.5"),
    LabTest.INR: Decimal("1.3"),
}
NORMAL: dict[LabTest, str] = {
    LabTest.AST: "38",
    LabTest.ALT: "24",
    LabTest.BILIRUBIN_TOTAL: "0.4",
    LabTest.PT: "12.5",
    LabTest.INR: "1.0",
    PLT: "318",
    LabTest.TROPONIN_I: "0.01",
    LabTest.CREATININE: "0.3",
    LabTest.HEMOGLOBIN: "11.8",
}
TAPER = RecordedDecision(
    "task/liver-assessment/2026-12-22-taper", DecisionBranch.TAPER, dt.date(2026, 12, 22)
)
CONTINUE = dataclasses.replace(TAPER, branch=DecisionBranch.CONTINUE)


EXTENSION = Timeline(INFUSION, ULN)
"""The days after infusion of these tests, and their results (ULNs for liver tests only)."""
day = EXTENSION.day
lab = EXTENSION.lab


def task(item: ScheduleItem, status: str = "completed") -> PlannedTask:
    """The Task the plan writer creates for a lab draw."""
    return planned(item, item.day, status)


DRAWS = lab_draws(INFUSION, policy=POLICY)


def state(
    *extra: PlannedTask,
    last_status: str = "completed",
    decision: RecordedDecision = TAPER,
) -> PlanState:
    """The plan with every draw completed but the last one (`last_status`), plus `extra`."""
    tasks = [task(d, last_status if d.day == LAST else "completed") for d in DRAWS]
    return PlanState(
        plan_key="plan-1",
        care_plan="CarePlan/cp1",
        infusion_date=INFUSION,
        infusion_evidence=None,
        steroid_orders=(),
        tasks=(*tasks, *extra),
        decisions=(decision,),
    )


def facts(*changes: LabResult, baseline_platelets: str | None = "310") -> PatientFacts:
    """Normal results at every draw and a baseline platelet count, with `changes` replacing
    any result of the same test and date; newest first as the reader delivers them."""
    found = [lab(t, NORMAL[t], d.day) for d in DRAWS for t in d.tests]
    if baseline_platelets is not None:
        found.append(lab(PLT, baseline_platelets, -3))
    gone = {(r.test, r.effective) for r in changes}
    found = [r for r in found if (r.test, r.effective) not in gone] + list(changes)
    ordered = sorted(found, key=lambda r: r.effective, reverse=True)
    return PatientFacts(patient_id="p1", birth_date=None, labs=tuple(ordered))


def proposed(facts_: PatientFacts, state_: PlanState, n: int) -> tuple[ScheduleItem, ...]:
    """The draws proposed on day `n`."""
    return proposed_draws(facts_, state_, on=day(n), policy=POLICY)


def test_the_plan_ends_with_the_three_month_draw() -> None:
    assert DRAWS[-1].day == LAST
    assert set(DRAWS[-1].tests) == {*LIVER_PANEL, PLT}


# Platelets (2.3; 5.3) -------------------------------------------------------------------------


def test_back_to_baseline_proposes_nothing() -> None:
    assert proposed(facts(lab(PLT, "310", LAST)), state(), LAST) == ()
    assert proposed(facts(), state(), 120) == ()


def test_platelets_below_baseline_at_the_last_draw_propose_a_weekly_draw() -> None:
    (item,) = proposed(facts(lab(PLT, "240", LAST)), state(), LAST)
    assert item.kind is ActivityKind.LAB_DRAW
    assert item.tests == (PLT,)
    assert (item.day, item.date) == (99, day(99))
    assert (item.window_start, item.window_end) == (day(98), day(100))
    assert item.section == "2.3; 5.3"
    assert "platelets 240 x 10^3/uL on 2027-02-24" in item.conditional
    assert "below the pre-infusion count 310 x 10^3/uL on 2026-11-21" in item.conditional
    assert "'until platelet counts return to baseline'" in item.conditional
    assert "institution default" not in item.conditional  # 240 is above the 150 threshold
    assert not item.institution_default
    assert item.activity == "Lab draw, day 99: platelets (until back to baseline)"


def test_platelets_below_the_threshold_cite_the_institution_default() -> None:
    (item,) = proposed(facts(lab(PLT, "145", LAST), baseline_platelets="140"), state(), LAST)
    assert (
        "below 150 x 10^3/uL (institution default: a platelet count below 150 × 10³/µL is low)"
    ) in item.conditional
    assert "pre-infusion" not in item.conditional  # 145 is above the baseline 140
    assert item.institution_default


def test_no_baseline_count_judges_by_the_threshold_and_says_so() -> None:
    (item,) = proposed(facts(lab(PLT, "120", LAST), baseline_platelets=None), state(), LAST)
    assert "below 150 x 10^3/uL" in item.conditional
    assert "no pre-infusion platelet count on or before 2026-11-24" in item.conditional
    assert proposed(facts(lab(PLT, "200", LAST), baseline_platelets=None), state(), LAST) == ()


def test_a_late_follow_up_proposes_the_draw_from_today() -> None:
    (item,) = proposed(facts(lab(PLT, "240", LAST)), state(), 110)
    assert (item.day, item.window_start) == (110, day(109))


def test_a_result_drawn_late_moves_the_next_draw_a_week_after_it() -> None:
    """Drawn on day 95 (window 92-95): next on day 102, its window opening after day 95."""
    (item,) = proposed(facts(lab(PLT, "240", 95)), state(), 95)
    assert item.day == 102
    assert item.window_start > day(95)


def test_nothing_while_the_last_draw_is_pending_or_before_it() -> None:
    pending = state(last_status="requested")
    no_result = facts(lab(PLT, "240", 84))
    assert proposed(no_result, pending, LAST) == ()
    assert proposed(facts(lab(PLT, "100", 84)), pending, 85) == ()


def test_a_resulted_but_unconfirmed_last_draw_counts() -> None:
    """The Task is open but its result is in: confirming completes it and adds the next."""
    (item,) = proposed(facts(lab(PLT, "240", LAST)), state(last_status="requested"), 93)
    assert item.tests == (PLT,)


def test_a_preliminary_result_does_not_count() -> None:
    assert proposed(facts(lab(PLT, "240", LAST, final=False)), state(), LAST) == ()


def test_one_draw_at_a_time_until_back() -> None:
    """The proposal written as a Task: nothing new while it is pending; low again: the next
    one; back: nothing."""
    (first,) = proposed(facts(lab(PLT, "240", LAST)), state(), LAST)
    written = state(task(first, "requested"))
    assert proposed(facts(lab(PLT, "240", LAST)), written, 98) == ()
    still_low = facts(lab(PLT, "240", LAST), lab(PLT, "260", 99))
    (second,) = proposed(still_low, written, 99)
    assert second.day == 106
    assert "platelets 260 x 10^3/uL on 2027-03-03" in second.conditional
    back = facts(lab(PLT, "240", LAST), lab(PLT, "320", 99))
    assert proposed(back, written, 99) == ()


def test_a_cancelled_last_draw_stops_the_proposals() -> None:
    (first,) = proposed(facts(lab(PLT, "240", LAST)), state(), LAST)
    stopped = state(task(first, "cancelled"))
    assert proposed(facts(lab(PLT, "240", LAST)), stopped, 100) == ()
    mistaken = state(task(first, "entered-in-error"))
    assert [i.tests for i in proposed(facts(lab(PLT, "240", LAST)), mistaken, 100)] == [(PLT,)]


def test_a_day_held_by_another_task_moves_the_draw_a_day() -> None:
    """An open liver-only draw on day 99 holds 'task/lab-draw/day99': platelets go to day 100."""
    liver = dataclasses.replace(task(DRAWS[-1], "requested"), day=99, tests=LIVER_PANEL,
                                window_start=day(98), window_end=day(100))  # fmt: skip
    facts_ = facts(lab(PLT, "240", LAST))
    (item,) = proposed(facts_, state(liver), LAST)
    assert (item.day, item.tests) == (100, (PLT,))


@pytest.mark.parametrize(
    ("comparator", "value", "expected"),
    [
        (Comparator.LT, "100", "below the pre-infusion count"),
        (Comparator.GT, "200", "censored, not certainly at or above the pre-infusion count"),
        (Comparator.GE, "300", "censored, not certainly at or above the pre-infusion count"),
        (Comparator.GT, "400", None),
        (Comparator.GE, "310", None),
    ],
    ids=["<100", ">200", ">=300", ">400", ">=310"],
)
def test_censored_platelet_counts(comparator: Comparator, value: str, expected: str | None) -> None:
    found = proposed(facts(lab(PLT, value, LAST, comparator=comparator)), state(), LAST)
    if expected is None:
        assert found == ()
    else:
        (item,) = found
        assert expected in item.conditional
        assert f"platelets {comparator.value}{value} x 10^3/uL" in item.conditional


# Liver tests (5.1) -----------------------------------------------------------------------------


def test_a_liver_test_above_uln_proposes_a_weekly_liver_panel() -> None:
    (item,) = proposed(facts(lab(ALT, "60", LAST)), state(), LAST)
    assert item.tests == LIVER_PANEL
    assert item.day == 99
    assert item.section == "2.3; 5.1"
    assert "ALT 60 U/L on 2027-02-24 above its ULN 45 U/L (reported)" in item.conditional
    assert "for at least 3 months after ZOLGENSMA infusion" in item.conditional
    assert not item.institution_default


def test_liver_and_platelets_on_one_date_are_one_draw() -> None:
    (item,) = proposed(facts(lab(ALT, "60", LAST), lab(PLT, "100", LAST)), state(), LAST)
    assert item.tests == (*LIVER_PANEL, PLT)
    assert item.section == "2.3; 5.1; 5.3"
    assert "ALT 60 U/L" in item.conditional
    assert "platelets 100 x 10^3/uL" in item.conditional


def test_liver_tests_at_uln_propose_nothing() -> None:
    assert proposed(facts(lab(ALT, "45", LAST)), state(), LAST) == ()


def test_no_liver_proposal_before_a_taper_is_recorded() -> None:
    """While 1 mg/kg/day continues, the liver assessments set the liver draws (2.1)."""
    assert proposed(facts(lab(ALT, "60", LAST)), state(decision=CONTINUE), LAST) == ()


def test_a_liver_result_without_uln_keeps_the_draws_going() -> None:
    (item,) = proposed(facts(lab(ALT, "30", LAST, reported=False)), state(), LAST)
    assert "ALT 30 U/L on 2027-02-24 has no ULN" in item.conditional


@pytest.mark.parametrize(
    ("comparator", "value", "expected"),
    [
        (Comparator.GT, "50", "above its ULN"),
        (Comparator.GE, "45", "censored, not certainly at or below its ULN"),
        (Comparator.LT, "50", "censored, not certainly at or below its ULN"),
        (Comparator.LT, "45", None),
        (Comparator.LE, "40", None),
    ],
    ids=[">50", ">=45", "<50", "<45", "<=40"],
)
def test_censored_liver_results(comparator: Comparator, value: str, expected: str | None) -> None:
    found = proposed(facts(lab(ALT, value, LAST, comparator=comparator)), state(), LAST)
    if expected is None:
        assert found == ()
    else:
        (item,) = found
        assert expected in item.conditional
        assert f"ALT {comparator.value}{value} U/L" in item.conditional


def test_below_and_above_are_certain_or_none() -> None:
    limit = Decimal(150)
    assert below(lab(PLT, "149", 1), limit) is True
    assert below(lab(PLT, "150", 1), limit) is False
    assert below(lab(PLT, "150", 1, comparator=Comparator.LT), limit) is True
    assert below(lab(PLT, "150", 1, comparator=Comparator.LE), limit) is None
    assert below(lab(PLT, "150", 1, comparator=Comparator.GT), limit) is False
    assert above(lab(ALT, "150", 1, comparator=Comparator.GT), limit) is True
    assert above(lab(ALT, "150", 1, comparator=Comparator.GE), limit) is None
    assert above(lab(ALT, "150", 1, comparator=Comparator.LE), limit) is False


# In the follow-up -----------------------------------------------------------------------------


TAPER_STEP = dataclasses.replace(
    orders_for(
        (SteroidStep(day(29), day(56), Decimal("0.5"), Decimal("3.1"), Decimal("1.0")),),
        "2026-12-22-taper",
        SteroidRole.TAPER_STEP,
    )[0],
    status="completed",
)
"""The first taper step (MedicationRequest/m2), taken to its end."""


def test_a_pending_proposal_keeps_monitoring_going() -> None:
    """Every Task done after the taper: complete, unless a further draw is proposed."""
    tapered = dataclasses.replace(state(), steroid_orders=(TAPER_STEP,))
    done = follow_up(facts(), tapered, on=day(120), policy=POLICY)
    assert done.phase is Phase.COMPLETE
    low = follow_up(facts(lab(PLT, "240", LAST)), tapered, on=day(120), policy=POLICY)
    assert low.phase is Phase.POST_TAPER
    assert [i.day for i in low.proposed] == [120]


def test_the_follow_up_carries_the_proposals() -> None:
    found = follow_up(facts(lab(PLT, "240", LAST)), state(), on=day(LAST), policy=POLICY)
    assert [i.day for i in found.proposed] == [99]
    assert follow_up(facts(), state(), on=day(LAST), policy=POLICY).proposed == ()
