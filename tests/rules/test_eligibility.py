"""Eligibility boundaries: the exact day, value or dilution where a decision flips."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import pytest

from smart_app.errors import InputError
from smart_app.rules.model import (
    Comparator,
    Evidence,
    FindingCode,
    LabResult,
    LabTest,
    Measurement,
    PatientFacts,
    Severity,
    Status,
    Titer,
)
from smart_app.rules.plan import build_plan
from smart_app.rules.policy import DEFAULT_POLICY

ON = dt.date(2026, 11, 20)
INFUSION = dt.date(2026, 11, 24)
LAB_DAY = dt.date(2026, 11, 16)
ULN = {LabTest.ALT: Decimal(45), LabTest.AST: Decimal(60), LabTest.BILIRUBIN_TOTAL: Decimal("1.2")}


def _ev(name: str, value: object = "", day: dt.date | None = None) -> Evidence:
    return Evidence(f"Observation/{name}", str(value), date=day)


def _m(name: str, value: str, unit: str, day: dt.date) -> Measurement:
    return Measurement(Decimal(value), unit, day, _ev(name, value, day))


def _lab(
    test: LabTest, value: str, day: dt.date = LAB_DAY, uln: Decimal | None = None
) -> LabResult:
    reported = uln if uln is not None else ULN.get(test, Decimal(1000))
    return LabResult(test, Decimal(value), day, _ev(test.name, value, day), reported)


def eligible(**changes: object) -> PatientFacts:
    """A complete, eligible 5-month-old; keyword arguments replace fields."""
    facts = PatientFacts(
        patient_id="p",
        birth_date=dt.date(2026, 6, 10),
        weights_kg=(_m("w", "6.12", "kg", dt.date(2026, 11, 18)),),
        gestational_age_days=(_m("ga", "273", "d", dt.date(2026, 6, 10)),),
        labs=tuple(_lab(test, "1") for test in LabTest),
        titers=(Titer(Decimal(25), Comparator.LT, dt.date(2026, 11, 9), _ev("titer", "<1:25")),),
        smn1_copies=(_m("smn1", "0", "{copies}", dt.date(2026, 8, 20)),),
        sma_conditions=(Evidence("Condition/sma", "SMA type 1"),),
    )
    return dataclasses.replace(facts, **changes)


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
    facts = eligible(weights_kg=(_m("w", "6.12", "kg", weight_day),))
    plan = build_plan(facts, on=ON, infusion_date=INFUSION)
    assert (FindingCode.WEIGHT_STALE in plan.eligibility.codes()) is stale
    assert (plan.dose is None) is stale
    assert (plan.steroids is None) is stale


def test_weight_after_the_evaluation_date_is_not_used() -> None:
    facts = eligible(weights_kg=(_m("future", "9.0", "kg", ON + dt.timedelta(days=1)),))
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
    titer = Titer(value, comparator, dt.date(2026, 11, 9), _ev("titer", "x"))
    found = codes(eligible(titers=(titer,)))
    titer_codes = {c for c in found if c.value.startswith("anti-aav9")}
    assert titer_codes == ({expected} if expected else set())


def test_newest_titer_wins_over_an_older_elevated_one() -> None:
    old = Titer(Decimal(100), Comparator.EQ, dt.date(2026, 10, 30), _ev("old", "1:100"))
    new = Titer(Decimal(25), Comparator.EQ, dt.date(2026, 11, 12), _ev("new", "1:25"))
    assert FindingCode.ANTI_AAV9_TITER_ELEVATED not in codes(eligible(titers=(new, old)))


def test_titer_older_than_30_days_counts_as_missing() -> None:
    titer = Titer(Decimal(25), Comparator.EQ, INFUSION - dt.timedelta(days=31), _ev("t", "1:25"))
    assert FindingCode.ANTI_AAV9_TITER_MISSING in codes(eligible(titers=(titer,)))


@pytest.mark.parametrize(
    ("value", "flagged"),
    [("90", False), ("90.01", True), ("100.2", True)],  # ULN 45: exactly 2 x is not "> 2 x"
)
def test_liver_entry_threshold_is_strictly_above_2_x_uln(value: str, flagged: bool) -> None:
    labs = tuple(_lab(t, value) if t is LabTest.ALT else _lab(t, "1") for t in LabTest)
    assert (FindingCode.LIVER_FUNCTION_ELEVATED in codes(eligible(labs=labs))) is flagged


def test_missing_reference_range_uses_the_fallback_and_says_so() -> None:
    labs = tuple(
        LabResult(t, Decimal("120"), LAB_DAY, _ev("alt", "120"), None)
        if t is LabTest.ALT
        else _lab(t, "1")
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
    labs = tuple(_lab(t, "1", day if t is LabTest.ALBUMIN else LAB_DAY) for t in LabTest)
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
        gestational_age_days=(_m("ga", "210", "d", birth),),
        weights_kg=(_m("w", "2.9", "kg", ON),),
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
    facts = eligible(temperatures_c=(_m("t", celsius, "Cel", day),))
    assert (FindingCode.ACTIVE_INFECTION in codes(facts)) is fever


def test_infusion_the_same_day_means_steroids_should_have_started() -> None:
    assert FindingCode.STEROID_START_PASSED in codes(eligible(), on=INFUSION, infusion=INFUSION)
    assert FindingCode.STEROID_START_PASSED not in codes(eligible(), on=ON, infusion=INFUSION)


def test_live_vaccine_caution_from_20_mg_a_day() -> None:
    heavy = eligible(weights_kg=(_m("w", "19.95", "kg", dt.date(2026, 11, 18)),))
    light = eligible(weights_kg=(_m("w", "19.94", "kg", dt.date(2026, 11, 18)),))
    assert FindingCode.LIVE_VACCINE_CAUTION in codes(heavy)  # 20.0 mg/day
    assert FindingCode.LIVE_VACCINE_CAUTION not in codes(light)  # 19.9 mg/day


def test_status_is_the_most_severe_finding() -> None:
    facts = eligible(
        birth_date=dt.date(2024, 1, 1),  # not eligible
        titers=(),  # incomplete
        temperatures_c=(_m("t", "39", "Cel", ON),),  # deferred
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
