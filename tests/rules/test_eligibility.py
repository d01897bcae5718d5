"""Eligibility boundaries: the exact day, value or dilution where a decision flips."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import pytest

from smart_app.errors import InputError
from smart_app.rules.eligibility import Standing, standing, under_age_limit_on
from smart_app.rules.labs import interpret
from smart_app.rules.model import (
    CANONICAL_UNIT,
    Comparator,
    Evidence,
    Finding,
    FindingCode,
    LabResult,
    LabTest,
    Measurement,
    PatientFacts,
    Plan,
    Severity,
    Status,
    Titer,
)
from smart_app.rules.plan import build_plan
from smart_app.rules.policy import DEFAULT_POLICY, Policy
from tests.builders import LAB_DAY, baseline_lab, eligible, evidence, measurement

ON = dt.date(2026, 11, 20)
INFUSION = dt.date(2026, 11, 24)


def codes(
    facts: PatientFacts, *, on: dt.date = ON, infusion: dt.date = INFUSION
) -> set[FindingCode]:
    return build_plan(facts, on=on, infusion_date=infusion).eligibility.codes()


def test_base_is_eligible() -> None:
    plan = build_plan(eligible(), on=ON, infusion_date=INFUSION)
    assert plan.eligibility.status is Status.ELIGIBLE
    assert all(f.severity is Severity.INFO for f in plan.eligibility.findings)


@pytest.mark.parametrize(
    ("birth", "blocked"),
    [
        (dt.date(2024, 11, 24), True),  # second birthday on the infusion day
        (dt.date(2024, 11, 23), True),
        (dt.date(2024, 11, 25), False),  # turns 2 the day after: still under 2
    ],
)
def test_age_limit_is_judged_on_the_infusion_day(birth: dt.date, blocked: bool) -> None:
    found = codes(eligible(birth_date=birth, gestational_age_days=()))
    assert (FindingCode.AGE_NOT_UNDER_2 in found) is blocked


def test_leap_day_infant_turns_two_on_28_february() -> None:
    facts = eligible(birth_date=dt.date(2024, 2, 29), gestational_age_days=())
    found = codes(facts, on=dt.date(2026, 2, 27), infusion=dt.date(2026, 2, 28))
    assert FindingCode.AGE_NOT_UNDER_2 in found
    plan = build_plan(facts, on=dt.date(2026, 2, 26), infusion_date=dt.date(2026, 2, 27))
    assert FindingCode.AGE_NOT_UNDER_2 not in plan.eligibility.codes()
    assert plan.last_labeled_infusion_date == dt.date(2026, 2, 27)


@pytest.mark.parametrize(
    ("weight_day", "stale"),
    [(INFUSION - dt.timedelta(days=30), False), (INFUSION - dt.timedelta(days=31), True)],
)
def test_weight_is_stale_after_30_days_before_infusion(weight_day: dt.date, stale: bool) -> None:
    facts = eligible(weights_kg=(measurement("w", "6.12", "kg", weight_day),))
    plan = build_plan(facts, on=ON, infusion_date=INFUSION)
    assert (FindingCode.WEIGHT_STALE in plan.eligibility.codes()) is stale
    assert (plan.dose is None) is stale
    assert (plan.steroids is None) is stale


def test_weight_after_the_evaluation_date_is_not_used() -> None:
    facts = eligible(weights_kg=(measurement("future", "9.0", "kg", ON + dt.timedelta(days=1)),))
    plan = build_plan(facts, on=ON, infusion_date=INFUSION)
    assert FindingCode.WEIGHT_MISSING in plan.eligibility.codes()
    assert plan.dose is None


@pytest.mark.parametrize(
    ("comparator", "denominator", "expected"),
    [
        (Comparator.EQ, "50", None),
        (Comparator.EQ, "51", FindingCode.ANTI_AAV9_TITER_ELEVATED),
        (Comparator.LT, "50", None),
        (Comparator.LE, "50", None),
        (Comparator.LT, "100", FindingCode.ANTI_AAV9_TITER_AMBIGUOUS),
        (Comparator.GT, "50", FindingCode.ANTI_AAV9_TITER_ELEVATED),
        (Comparator.GT, "25", FindingCode.ANTI_AAV9_TITER_AMBIGUOUS),
        (Comparator.GE, "50", FindingCode.ANTI_AAV9_TITER_AMBIGUOUS),
        (Comparator.GE, "100", FindingCode.ANTI_AAV9_TITER_ELEVATED),
        (Comparator.EQ, None, FindingCode.ANTI_AAV9_TITER_AMBIGUOUS),
    ],
)
def test_titer_above_1_to_50_defers_and_censored_values_never_guess(
    comparator: Comparator, denominator: str | None, expected: FindingCode | None
) -> None:
    value = Decimal(denominator) if denominator else None
    titer = Titer(value, comparator, dt.date(2026, 11, 9), evidence("titer", "x"))
    found = codes(eligible(titers=(titer,)))
    titer_codes = {c for c in found if c.value.startswith("anti-aav9")}
    assert titer_codes == ({expected} if expected else set())


def test_newest_titer_wins_over_an_older_elevated_one() -> None:
    old = Titer(Decimal(100), Comparator.EQ, dt.date(2026, 10, 30), evidence("old", "1:100"))
    new = Titer(Decimal(25), Comparator.EQ, dt.date(2026, 11, 12), evidence("new", "1:25"))
    assert FindingCode.ANTI_AAV9_TITER_ELEVATED not in codes(eligible(titers=(new, old)))


def test_titer_older_than_30_days_counts_as_missing() -> None:
    titer = Titer(
        Decimal(25), Comparator.EQ, INFUSION - dt.timedelta(days=31), evidence("t", "1:25")
    )
    assert FindingCode.ANTI_AAV9_TITER_MISSING in codes(eligible(titers=(titer,)))


@pytest.mark.parametrize(
    ("value", "flagged"),
    [("90", False), ("90.01", True), ("100.2", True)],  # ULN 45: exactly 2 x is not "> 2 x"
)
def test_liver_entry_threshold_is_strictly_above_2_x_uln(value: str, flagged: bool) -> None:
    labs = tuple(
        baseline_lab(t, value) if t is LabTest.ALT else baseline_lab(t, "1") for t in LabTest
    )
    assert (FindingCode.LIVER_FUNCTION_ELEVATED in codes(eligible(labs=labs))) is flagged


def test_missing_reference_range_uses_the_fallback_and_says_so() -> None:
    labs = tuple(
        LabResult(t, Decimal("120"), LAB_DAY, evidence("alt", "120"), None)
        if t is LabTest.ALT
        else baseline_lab(t, "1")
        for t in LabTest
    )
    plan = build_plan(eligible(labs=labs), on=ON, infusion_date=INFUSION)
    found = plan.eligibility.codes()
    assert {FindingCode.ULN_FALLBACK_USED, FindingCode.LIVER_FUNCTION_ELEVATED} <= found
    fallback = next(f for f in plan.eligibility.findings if f.code is FindingCode.ULN_FALLBACK_USED)
    assert DEFAULT_POLICY.uln_fallback_version in fallback.message


@pytest.mark.parametrize(("days_before", "missing"), [(30, False), (31, True)])
def test_baseline_lab_look_back_is_30_days_before_infusion(days_before: int, missing: bool) -> None:
    day = INFUSION - dt.timedelta(days=days_before)
    labs = tuple(baseline_lab(t, "1", day if t is LabTest.ALBUMIN else LAB_DAY) for t in LabTest)
    plan = build_plan(eligible(labs=labs), on=ON, infusion_date=INFUSION)
    missing_findings = [
        f for f in plan.eligibility.findings if f.code is FindingCode.BASELINE_LAB_MISSING
    ]
    assert bool(missing_findings) is missing
    if missing:
        assert "albumin" in missing_findings[0].message


@pytest.mark.parametrize(("age_days", "deferred"), [(49, False), (48, True)])
def test_term_age_boundary_is_37_weeks_postmenstrual(age_days: int, deferred: bool) -> None:
    """Born at 30+0 weeks (210 days): 37+0 weeks is reached 49 days after birth."""
    birth = INFUSION - dt.timedelta(days=age_days)
    facts = eligible(
        birth_date=birth,
        gestational_age_days=(measurement("ga", "210", "d", birth),),
        weights_kg=(measurement("w", "2.9", "kg", ON),),
    )
    assert (FindingCode.PRETERM_BEFORE_TERM_AGE in codes(facts)) is deferred


@pytest.mark.parametrize(("age_days", "incomplete"), [(104, True), (105, False)])
def test_unknown_gestation_is_only_a_gap_while_term_age_is_in_doubt(
    age_days: int, incomplete: bool
) -> None:
    facts = eligible(birth_date=INFUSION - dt.timedelta(days=age_days), gestational_age_days=())
    assert (FindingCode.GESTATIONAL_AGE_MISSING in codes(facts)) is incomplete


@pytest.mark.parametrize(
    ("celsius", "day", "fever"),
    [
        ("38.0", ON, True),
        ("37.9", ON, False),
        ("38.5", ON - dt.timedelta(days=3), True),
        ("38.5", ON - dt.timedelta(days=4), False),
    ],
)
def test_fever_in_the_72_hours_before_evaluation_defers(
    celsius: str, day: dt.date, fever: bool
) -> None:
    facts = eligible(temperatures_c=(measurement("t", celsius, "Cel", day),))
    assert (FindingCode.ACTIVE_INFECTION in codes(facts)) is fever


def test_infusion_the_same_day_means_steroids_should_have_started() -> None:
    assert FindingCode.STEROID_START_PASSED in codes(eligible(), on=INFUSION, infusion=INFUSION)
    assert FindingCode.STEROID_START_PASSED not in codes(eligible(), on=ON, infusion=INFUSION)


def test_live_vaccine_caution_from_20_mg_a_day() -> None:
    heavy = eligible(weights_kg=(measurement("w", "19.95", "kg", dt.date(2026, 11, 18)),))
    light = eligible(weights_kg=(measurement("w", "19.94", "kg", dt.date(2026, 11, 18)),))
    assert FindingCode.LIVE_VACCINE_CAUTION in codes(heavy)  # 20.0 mg/day
    assert FindingCode.LIVE_VACCINE_CAUTION not in codes(light)  # 19.9 mg/day


def test_status_is_the_most_severe_finding() -> None:
    facts = eligible(
        birth_date=dt.date(2024, 1, 1),  # not eligible
        titers=(),  # incomplete
        temperatures_c=(measurement("t", "39", "Cel", ON),),  # deferred
    )
    plan = build_plan(facts, on=ON, infusion_date=INFUSION)
    assert plan.eligibility.status is Status.NOT_ELIGIBLE
    ranks = [f.severity.rank for f in plan.eligibility.findings]
    assert ranks == sorted(ranks)


def test_dates_that_cannot_be_planned_are_input_errors() -> None:
    with pytest.raises(InputError, match="before the evaluation date"):
        build_plan(eligible(), on=INFUSION, infusion_date=ON)
    with pytest.raises(InputError, match="before the birth date"):
        build_plan(
            eligible(birth_date=ON), on=dt.date(2026, 1, 1), infusion_date=dt.date(2026, 1, 2)
        )


# Hepatic impairment (5.1, 8.6) -------------------------------------------------------------


def _with_lab(result: LabResult) -> tuple[LabResult, ...]:
    """The eligible labs with one test's result replaced."""
    return tuple(result if t is result.test else baseline_lab(t, "1") for t in LabTest)


def _finding(plan: Plan, code: FindingCode) -> Finding:
    (found,) = [f for f in plan.eligibility.findings if f.code is code]
    return found


@pytest.mark.parametrize(
    ("test", "value", "uln", "flagged"),
    [
        (LabTest.INR, "1.3", "1.3", False),  # exactly at ULN is not above it
        (LabTest.INR, "1.31", "1.3", True),
        (LabTest.PT, "14.5", "14.5", False),
        (LabTest.PT, "14.6", "14.5", True),
    ],
)
def test_hepatic_impairment_when_baseline_inr_or_pt_is_strictly_above_uln(
    test: LabTest, value: str, uln: str, flagged: bool
) -> None:
    labs = _with_lab(baseline_lab(test, value, uln=Decimal(uln)))
    plan = build_plan(eligible(labs=labs), on=ON, infusion_date=INFUSION)
    assert (FindingCode.HEPATIC_IMPAIRMENT in plan.eligibility.codes()) is flagged
    assert plan.eligibility.status is (Status.NEEDS_REVIEW if flagged else Status.ELIGIBLE)
    if flagged:
        finding = _finding(plan, FindingCode.HEPATIC_IMPAIRMENT)
        assert finding.severity is Severity.NEEDS_REVIEW
        assert finding.section == "5.1; 8.6"
        assert f"baseline {test} {value} {CANONICAL_UNIT[test]} is above its ULN" in finding.message
        assert [e.reference for e in finding.evidence] == [f"Observation/{test.name}"]


def test_an_inr_above_uln_outside_the_look_back_is_not_the_baseline() -> None:
    old = INFUSION - dt.timedelta(days=31)
    found = codes(eligible(labs=_with_lab(baseline_lab(LabTest.INR, "2.0", old, Decimal("1.3")))))
    assert FindingCode.HEPATIC_IMPAIRMENT not in found
    assert FindingCode.BASELINE_LAB_MISSING in found


def test_a_liver_condition_is_hepatic_impairment_without_any_lab() -> None:
    cirrhosis = Evidence("Condition/liver", "K74.60", display="Cirrhosis of liver")
    plan = build_plan(eligible(liver_conditions=(cirrhosis,)), on=ON, infusion_date=INFUSION)
    finding = _finding(plan, FindingCode.HEPATIC_IMPAIRMENT)
    assert "liver disease on record (Cirrhosis of liver)" in finding.message
    assert "may be at higher risk" in finding.message
    assert finding.evidence == (cirrhosis,)
    assert plan.eligibility.status is Status.NEEDS_REVIEW


def test_inr_pt_and_a_condition_make_one_finding_naming_each_reason() -> None:
    condition = Evidence("Condition/hep", "K75.4", display="Autoimmune hepatitis")
    labs = tuple(
        baseline_lab(t, "1.6", uln=Decimal("1.3"))
        if t is LabTest.INR
        else baseline_lab(t, "15.2", uln=Decimal("14.5"))
        if t is LabTest.PT
        else baseline_lab(t, "1")
        for t in LabTest
    )
    plan = build_plan(
        eligible(labs=labs, liver_conditions=(condition,)), on=ON, infusion_date=INFUSION
    )
    finding = _finding(plan, FindingCode.HEPATIC_IMPAIRMENT)
    assert "baseline INR 1.6" in finding.message
    assert "baseline PT 15.2 s" in finding.message
    assert "Autoimmune hepatitis" in finding.message
    assert [e.reference for e in finding.evidence] == [
        "Observation/INR",
        "Observation/PT",
        "Condition/hep",
    ]


def test_an_inr_without_a_range_is_judged_on_the_fallback_and_says_so() -> None:
    inr = LabResult(LabTest.INR, Decimal("1.4"), LAB_DAY, evidence("inr", "1.4", LAB_DAY), None)
    plan = build_plan(eligible(labs=_with_lab(inr)), on=ON, infusion_date=INFUSION)
    hepatic = _finding(plan, FindingCode.HEPATIC_IMPAIRMENT)
    assert "above its ULN (1.3 {INR}, fallback)" in hepatic.message
    fallback = _finding(plan, FindingCode.ULN_FALLBACK_USED)
    assert "INR 1.3 {INR}" in fallback.message
    assert (
        "institution default: the pediatric upper limits of normal table "
        f"{DEFAULT_POLICY.uln_fallback_version}, used when a laboratory reports no range"
    ) in fallback.message


def test_an_inr_without_any_uln_is_never_guessed() -> None:
    inr = LabResult(LabTest.INR, Decimal("1.4"), LAB_DAY, evidence("inr", "1.4", LAB_DAY), None)
    facts = eligible(labs=_with_lab(inr), birth_date=None)
    plan = build_plan(facts, on=ON, infusion_date=INFUSION)
    assert FindingCode.HEPATIC_IMPAIRMENT not in plan.eligibility.codes()
    unreadable = _finding(plan, FindingCode.RESULT_UNREADABLE)
    assert "Baseline INR 1.4" in unreadable.message
    assert "is above ULN cannot be judged" in unreadable.message


@pytest.mark.parametrize(
    ("comparator", "value", "expected"),
    [
        (Comparator.LT, "1.1", None),  # '<1.1' with ULN 1.3: not above
        (Comparator.LE, "1.3", None),
        (Comparator.LT, "1.5", FindingCode.RESULT_UNREADABLE),  # could be either
        (Comparator.GT, "1.3", FindingCode.HEPATIC_IMPAIRMENT),  # '>1.3': above
        (Comparator.GT, "1.2", FindingCode.RESULT_UNREADABLE),
        (Comparator.GE, "1.3", FindingCode.RESULT_UNREADABLE),  # could be exactly 1.3
        (Comparator.GE, "1.4", FindingCode.HEPATIC_IMPAIRMENT),
    ],
)
def test_a_censored_inr_is_placed_against_its_uln_or_named(
    comparator: Comparator, value: str, expected: FindingCode | None
) -> None:
    shown = f"{comparator.value}{value}"
    inr = LabResult(
        LabTest.INR,
        Decimal(value),
        LAB_DAY,
        evidence("inr", shown, LAB_DAY),
        Decimal("1.3"),
        comparator,
    )
    plan = build_plan(eligible(labs=_with_lab(inr)), on=ON, infusion_date=INFUSION)
    found = plan.eligibility.codes() & {
        FindingCode.HEPATIC_IMPAIRMENT,
        FindingCode.RESULT_UNREADABLE,
    }
    assert found == ({expected} if expected else set())
    if expected is not None:
        assert shown in _finding(plan, expected).message


# One child, one weight (2.1) ---------------------------------------------------------------

WEIGHT_DAY = dt.date(2026, 11, 18)


def _timed(name: str, value: str, taken_at: dt.datetime) -> Measurement:
    """A weight with the moment it was taken (UTC)."""
    recorded = taken_at.isoformat().replace("+00:00", "Z")
    evidence = Evidence(f"Observation/{name}", value, "kg", taken_at.date(), recorded=recorded)
    return Measurement(Decimal(value), "kg", taken_at.date(), evidence, taken_at)


def _utc(day: int, hour: int) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, tzinfo=dt.UTC)


def _weights_plan(*weights: Measurement, policy: Policy = DEFAULT_POLICY) -> Plan:
    return build_plan(eligible(weights_kg=weights), on=ON, infusion_date=INFUSION, policy=policy)


def test_two_weights_on_one_date_in_different_bands_are_a_discrepancy_dosed_on_the_heavier() -> (
    None
):
    light = measurement("a", "6.1", "kg", WEIGHT_DAY)
    heavy = measurement("b", "6.6", "kg", WEIGHT_DAY)
    plans = [_weights_plan(light, heavy), _weights_plan(heavy, light)]
    for plan in plans:
        finding = _finding(plan, FindingCode.WEIGHT_DISCREPANCY)
        assert finding.severity is Severity.NEEDS_REVIEW
        assert finding.section == "2.1"
        assert "6.6 kg (Observation/b, 2026-11-18)" in finding.message
        assert "6.1 kg (Observation/a, 2026-11-18)" in finding.message
        assert "weights differing by more than 5% disagree" in finding.message
        assert plan.dose is not None and plan.dose.weight_kg == Decimal("6.6")
        assert plan.dose.kit.dose_volume_ml == Decimal("38.5")
        assert plan.eligibility.status is Status.NEEDS_REVIEW
    # Whichever of the two the chart lists first, the plan is the same.
    assert plans[0].dose == plans[1].dose
    assert plans[0].steroids == plans[1].steroids
    assert plans[0].eligibility == plans[1].eligibility


@pytest.mark.parametrize(
    ("heavier", "discrepancy"),
    [("5.46", False), ("5.47", True)],  # 5.2 kg + 5 % = 5.46 kg; one band (5.1-5.5 kg)
)
def test_within_one_band_only_more_than_5_percent_is_a_discrepancy(
    heavier: str, discrepancy: bool
) -> None:
    plan = _weights_plan(
        measurement("a", "5.2", "kg", WEIGHT_DAY), measurement("b", heavier, "kg", WEIGHT_DAY)
    )
    assert (FindingCode.WEIGHT_DISCREPANCY in plan.eligibility.codes()) is discrepancy
    assert plan.dose is not None
    assert plan.dose.kit.band_low_kg == Decimal("5.1")
    # Same date, no time: which is newer is unknown, so the heavier doses either way.
    assert plan.dose.weight_kg == Decimal(heavier)
    if discrepancy:
        message = _finding(plan, FindingCode.WEIGHT_DISCREPANCY).message
        assert "differ by 5.2% of the lighter" in message
        assert "different kit bands" not in message


def test_three_weights_on_one_date_are_all_named_heaviest_first() -> None:
    weights = (
        measurement("a", "6.3", "kg", WEIGHT_DAY),
        measurement("b", "6.1", "kg", WEIGHT_DAY),
        measurement("c", "6.6", "kg", WEIGHT_DAY),
    )
    plan = _weights_plan(*weights)
    finding = _finding(plan, FindingCode.WEIGHT_DISCREPANCY)
    assert (
        "6.6 kg (Observation/c, 2026-11-18), 6.3 kg (Observation/a, 2026-11-18) and "
        "6.1 kg (Observation/b, 2026-11-18) fall in different kit bands (6.6-7.0 kg and "
        "6.1-6.5 kg)"
    ) in finding.message
    assert [e.reference for e in finding.evidence] == [
        "Observation/c",
        "Observation/a",
        "Observation/b",
    ]
    assert plan.dose is not None and plan.dose.weight_kg == Decimal("6.6")


def test_the_fraction_is_the_policys() -> None:
    policy = dataclasses.replace(DEFAULT_POLICY, weight_discrepancy_fraction=Decimal("0.10"))
    weights = (
        measurement("a", "5.2", "kg", WEIGHT_DAY),
        measurement("b", "5.47", "kg", WEIGHT_DAY),
    )
    plan = _weights_plan(*weights, policy=policy)
    assert FindingCode.WEIGHT_DISCREPANCY not in plan.eligibility.codes()


@pytest.mark.parametrize(("days_apart", "discrepancy"), [(0, True), (1, False)])
def test_date_only_weights_are_compared_on_the_same_date_only(
    days_apart: int, discrepancy: bool
) -> None:
    newer = measurement("new", "6.1", "kg", WEIGHT_DAY)
    older = measurement("old", "6.6", "kg", WEIGHT_DAY - dt.timedelta(days=days_apart))
    plan = _weights_plan(newer, older)
    assert (FindingCode.WEIGHT_DISCREPANCY in plan.eligibility.codes()) is discrepancy
    assert plan.dose is not None
    # The day before: the newest weight doses. Same date: the heavier.
    assert plan.dose.weight_kg == Decimal("6.6" if discrepancy else "6.1")


@pytest.mark.parametrize(
    ("older_at", "discrepancy"),
    [
        (_utc(17, 23), True),  # 9 h before, across midnight: compared
        (_utc(17, 8), True),  # exactly 24 h before
        (_utc(17, 7), False),  # 25 h before
    ],
)
def test_timed_weights_are_compared_within_24_hours(
    older_at: dt.datetime, discrepancy: bool
) -> None:
    newer = _timed("new", "6.1", _utc(18, 8))
    plan = _weights_plan(newer, _timed("old", "6.6", older_at))
    assert (FindingCode.WEIGHT_DISCREPANCY in plan.eligibility.codes()) is discrepancy
    assert plan.dose is not None
    assert plan.dose.weight_kg == Decimal("6.6" if discrepancy else "6.1")


def test_the_pair_window_is_the_policys() -> None:
    policy = dataclasses.replace(DEFAULT_POLICY, weight_pair_hours=12)
    weights = (_timed("new", "6.1", _utc(18, 8)), _timed("old", "6.6", _utc(17, 19)))
    plan = _weights_plan(*weights, policy=policy)
    assert FindingCode.WEIGHT_DISCREPANCY not in plan.eligibility.codes()
    strict = _weights_plan(*weights)
    message = _finding(strict, FindingCode.WEIGHT_DISCREPANCY).message
    assert "weights taken within 24 hours of each other, or on one date, are compared" in message
    assert "2026-11-17T19:00:00Z" in message


def test_agreeing_timed_weights_dose_on_the_newest() -> None:
    newer, older = _timed("new", "6.12", _utc(18, 20)), _timed("old", "6.15", _utc(18, 8))
    plan = _weights_plan(newer, older)
    assert FindingCode.WEIGHT_DISCREPANCY not in plan.eligibility.codes()
    assert plan.dose is not None and plan.dose.weight_kg == Decimal("6.12")


def test_equal_weights_on_one_date_change_nothing() -> None:
    one = _weights_plan(
        measurement("a", "6.12", "kg", WEIGHT_DAY), measurement("b", "6.12", "kg", WEIGHT_DAY)
    )
    single = _weights_plan(measurement("a", "6.12", "kg", WEIGHT_DAY))
    assert one.eligibility.codes() == single.eligibility.codes()
    assert one.dose == single.dose
    assert one.steroids == single.steroids


def test_stale_weights_are_only_stale() -> None:
    day = INFUSION - dt.timedelta(days=31)
    plan = _weights_plan(measurement("a", "6.1", "kg", day), measurement("b", "6.6", "kg", day))
    found = plan.eligibility.codes()
    assert FindingCode.WEIGHT_STALE in found
    assert FindingCode.WEIGHT_DISCREPANCY not in found
    assert plan.dose is None


# Troponin I and the institution's defaults ---------------------------------------------------


def test_troponin_i_is_not_a_default_baseline_test() -> None:
    labs = tuple(baseline_lab(t, "1") for t in LabTest if t is not LabTest.TROPONIN_I)
    plan = build_plan(eligible(labs=labs), on=ON, infusion_date=INFUSION)
    assert LabTest.TROPONIN_I not in DEFAULT_POLICY.baseline_tests
    assert FindingCode.BASELINE_LAB_MISSING not in plan.eligibility.codes()
    assert plan.eligibility.status is Status.ELIGIBLE


def test_a_policy_can_require_troponin_i_and_the_finding_says_so() -> None:
    labs = tuple(baseline_lab(t, "1") for t in LabTest if t is not LabTest.TROPONIN_I)
    policy = dataclasses.replace(
        DEFAULT_POLICY, baseline_tests=(*DEFAULT_POLICY.baseline_tests, LabTest.TROPONIN_I)
    )
    plan = build_plan(eligible(labs=labs), on=ON, infusion_date=INFUSION, policy=policy)
    finding = _finding(plan, FindingCode.BASELINE_LAB_MISSING)
    assert finding.message.startswith("Baseline troponin I missing")
    assert "required here by an institution default (the baseline tests are AST, ALT," in (
        finding.message
    )
    assert "platelets and troponin I; 5.5" in finding.message
    assert "not in the label's baseline tests" in finding.message
    assert finding.section == "5.5"


@pytest.mark.parametrize(
    ("changes", "code", "cited"),
    [
        (
            {"weights_kg": (measurement("w", "6.12", "kg", INFUSION - dt.timedelta(days=31)),)},
            FindingCode.WEIGHT_STALE,
            ": a weight older than 30 days is out of date)",
        ),
        (
            {"labs": tuple(baseline_lab(t, "1") for t in LabTest if t is not LabTest.ALBUMIN)},
            FindingCode.BASELINE_LAB_MISSING,
            ": a baseline result older than 30 days before the infusion date counts as missing)",
        ),
        (
            {"titers": ()},
            FindingCode.ANTI_AAV9_TITER_MISSING,
            ": an anti-AAV9 titer older than 30 days before the infusion date counts as missing)",
        ),
        (
            {"temperatures_c": (measurement("t", "38.2", "Cel", ON),)},
            FindingCode.ACTIVE_INFECTION,
            "s: fever is a body temperature of 38.0 °C or more; temperatures taken in the last 3 "
            "days count)",
        ),
        (
            {"birth_date": INFUSION - dt.timedelta(days=60), "gestational_age_days": ()},
            FindingCode.GESTATIONAL_AGE_MISSING,
            "s: with no gestational age recorded, birth at 22+0 weeks is assumed at the earliest; "
            "full term is 37+0 weeks postmenstrual age)",
        ),
        (
            {
                "birth_date": INFUSION - dt.timedelta(days=20),
                "gestational_age_days": (
                    measurement("ga", "224", "d", INFUSION - dt.timedelta(days=20)),
                ),
                "weights_kg": (measurement("w", "2.9", "kg", ON),),
            },
            FindingCode.PRETERM_BEFORE_TERM_AGE,
            ": full term is 37+0 weeks postmenstrual age)",
        ),
        (
            {
                "weights_kg": (
                    measurement("a", "6.1", "kg", dt.date(2026, 11, 18)),
                    measurement("b", "6.6", "kg", dt.date(2026, 11, 18)),
                )
            },
            FindingCode.WEIGHT_DISCREPANCY,
            "s: weights differing by more than 5% disagree; weights taken within 24 hours of each "
            "other, or on one date, are compared;",
        ),
    ],
    ids=lambda v: v.value if isinstance(v, FindingCode) else "",
)
def test_a_limit_from_the_policy_is_named_as_an_institution_default(
    changes: dict[str, object], code: FindingCode, cited: str
) -> None:
    plan = build_plan(eligible(**changes), on=ON, infusion_date=INFUSION)
    finding = _finding(plan, code)
    assert f"institution default{cited}" in finding.message
    assert "_days" not in finding.message and " = " not in finding.message  # no field names


@pytest.mark.parametrize(
    ("test", "value", "uln", "expected"),
    [
        (LabTest.PLATELETS, "149", "450", Standing.LOW),
        (LabTest.PLATELETS, "150", "450", Standing.WITHIN),
        (LabTest.ALT, "90.1", "45", Standing.ABOVE_2X_ULN),
        (LabTest.ALT, "90", "45", Standing.ABOVE_ULN),
        (LabTest.INR, "1.4", "1.3", Standing.ABOVE_ULN),
        (LabTest.INR, "2.7", "1.3", Standing.ABOVE_ULN),  # 2 × ULN is for ALT, AST, bilirubin
        (LabTest.ALT, "45", "45", Standing.WITHIN),
    ],
)
def test_a_baseline_result_stands_against_its_limits(
    test: LabTest, value: str, uln: str, expected: Standing
) -> None:
    """Low platelets by the institution default; above 2 × ULN only for the liver entry tests."""
    seen = interpret(baseline_lab(test, value, uln=Decimal(uln)), birth_date=dt.date(2026, 6, 10))
    assert standing(seen, policy=DEFAULT_POLICY) is expected


@pytest.mark.parametrize(
    ("birth", "day", "under"),
    [
        (dt.date(2025, 1, 31), dt.date(2027, 1, 30), True),
        (dt.date(2025, 1, 31), dt.date(2027, 1, 31), False),
        (dt.date(2025, 1, 31), dt.date(2025, 1, 30), False),
        # a leap-day infant turns 2 on 28 February (the earlier convention, arith.anniversary)
        (dt.date(2024, 2, 29), dt.date(2026, 2, 27), True),
        (dt.date(2024, 2, 29), dt.date(2026, 2, 28), False),
    ],
)
def test_under_the_age_limit_until_the_second_birthday(
    birth: dt.date, day: dt.date, under: bool
) -> None:
    """Section 1: 'less than 2 years of age'; the second birthday is the first day outside it."""
    assert under_age_limit_on(birth, day) is under
