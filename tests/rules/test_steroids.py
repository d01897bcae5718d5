"""The prophylactic corticosteroid course: dose, volume, dates and the institution's taper."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smart_app.errors import PolicyError
from smart_app.rules.policy import DEFAULT_POLICY, Policy
from smart_app.rules.steroids import steroid_course

INFUSION = dt.date(2026, 11, 24)
WEIGHTS = st.decimals(
    min_value=Decimal("2.6"),
    max_value=Decimal("21.0"),
    places=2,
    allow_nan=False,
    allow_infinity=False,
)
DATES = st.dates(min_value=dt.date(2020, 1, 1), max_value=dt.date(2040, 12, 31))


def _hundredths(weight: Decimal) -> int:
    value = weight * 100
    assert value == value.to_integral_value(), weight
    return int(value)


def _tenths(value: Decimal) -> int:
    scaled = value * 10
    assert scaled == scaled.to_integral_value(), value
    return int(scaled)


def _expected_dose_tenths_mg(weight: Decimal) -> int:
    """1 mg/kg on actual weight, half-up to 0.1 mg, in integer tenths of a mg."""
    return (_hundredths(weight) + 5) // 10


def _expected_volume_tenths_ml(dose_tenths_mg: int, mg: int, per_ml: int) -> int:
    """dose / (mg / per_ml), half-up to 0.1 mL, in integer tenths of a mL."""
    # volume_tenths = dose_tenths * per_ml / mg, rounded half up: floor(x + 1/2).
    return (2 * dose_tenths_mg * per_ml + mg) // (2 * mg)


@given(WEIGHTS, DATES)
def test_full_dose_is_1_mg_per_kg_and_15_mg_per_5_ml(weight: Decimal, infusion: dt.date) -> None:
    course = steroid_course(weight, infusion_date=infusion, policy=DEFAULT_POLICY)
    dose_tenths = _expected_dose_tenths_mg(weight)
    assert _tenths(course.dose_mg_per_day) == dose_tenths
    assert course.dose_mg_per_day == weight.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    assert _tenths(course.volume_ml_per_day) == _expected_volume_tenths_ml(dose_tenths, 15, 5)
    assert course.concentration_mg_per_ml == Decimal(3)
    assert course.weight_kg == weight


@given(WEIGHTS, DATES)
def test_course_dates(weight: Decimal, infusion: dt.date) -> None:
    course = steroid_course(weight, infusion_date=infusion, policy=DEFAULT_POLICY)
    day = dt.timedelta(days=1)
    assert course.start_date == infusion - day
    assert course.full_dose_through == infusion + 28 * day
    assert (course.full_dose_through - course.start_date).days + 1 == 30
    assert course.liver_check_date == infusion + 28 * day


@given(WEIGHTS, DATES)
def test_taper_is_gradual_and_contiguous(weight: Decimal, infusion: dt.date) -> None:
    course = steroid_course(weight, infusion_date=infusion, policy=DEFAULT_POLICY)
    taper = course.taper
    assert taper, "a taper is required: never stop abruptly"
    assert taper[0].start == infusion + dt.timedelta(days=29)
    for previous, step in itertools.pairwise(taper):
        assert step.start == previous.end + dt.timedelta(days=1)
        assert step.dose_mg_per_day < previous.dose_mg_per_day
    for step in taper:
        assert step.end >= step.start
        assert step.dose_mg_per_day > 0
        assert step.volume_ml_per_day > 0
    total_days = (taper[-1].end - taper[0].start).days + 1
    assert total_days >= 28
    assert sum(step.days for step in taper) == total_days
    assert taper[0].dose_mg_per_day < course.dose_mg_per_day


@given(WEIGHTS)
def test_default_taper_steps_follow_policy(weight: Decimal) -> None:
    course = steroid_course(weight, infusion_date=INFUSION, policy=DEFAULT_POLICY)
    assert [s.mg_per_kg_per_day for s in course.taper] == list(
        DEFAULT_POLICY.taper_mg_per_kg_per_day
    )
    assert [s.days for s in course.taper] == list(DEFAULT_POLICY.taper_step_days)
    for step in course.taper:
        dose_tenths = (_hundredths(weight) * _hundredths(step.mg_per_kg_per_day) + 500) // 1000
        assert _tenths(step.dose_mg_per_day) == dose_tenths
        assert _tenths(step.volume_ml_per_day) == _expected_volume_tenths_ml(dose_tenths, 15, 5)


def test_known_example_12_kg() -> None:
    course = steroid_course(Decimal("12.0"), infusion_date=INFUSION, policy=DEFAULT_POLICY)
    assert course.dose_mg_per_day == Decimal("12.0")
    assert course.volume_ml_per_day == Decimal("4.0")
    assert course.start_date == dt.date(2026, 11, 23)
    assert course.liver_check_date == dt.date(2026, 12, 22)
    assert [(s.start, s.end, s.dose_mg_per_day) for s in course.taper] == [
        (dt.date(2026, 12, 23), dt.date(2027, 1, 5), Decimal("6.0")),
        (dt.date(2027, 1, 6), dt.date(2027, 1, 19), Decimal("3.0")),
    ]


@given(WEIGHTS)
def test_custom_concentration_changes_volume(weight: Decimal) -> None:
    policy = dataclasses.replace(
        DEFAULT_POLICY, prednisolone_mg=Decimal(5), prednisolone_per_ml=Decimal(1)
    )
    course = steroid_course(weight, infusion_date=INFUSION, policy=policy)
    dose_tenths = _expected_dose_tenths_mg(weight)
    assert _tenths(course.dose_mg_per_day) == dose_tenths
    assert course.concentration_mg_per_ml == Decimal(5)
    assert _tenths(course.volume_ml_per_day) == _expected_volume_tenths_ml(dose_tenths, 5, 1)
    for step in course.taper:
        assert _tenths(step.volume_ml_per_day) == _expected_volume_tenths_ml(
            _tenths(step.dose_mg_per_day), 5, 1
        )


def test_custom_concentration_example() -> None:
    policy = dataclasses.replace(
        DEFAULT_POLICY, prednisolone_mg=Decimal(5), prednisolone_per_ml=Decimal(1)
    )
    default = steroid_course(Decimal("9.0"), infusion_date=INFUSION, policy=DEFAULT_POLICY)
    custom = steroid_course(Decimal("9.0"), infusion_date=INFUSION, policy=policy)
    assert default.volume_ml_per_day == Decimal("3.0")
    assert custom.volume_ml_per_day == Decimal("1.8")
    assert custom.dose_mg_per_day == default.dose_mg_per_day


def _d(*values: str) -> tuple[Decimal, ...]:
    return tuple(Decimal(v) for v in values)


@pytest.mark.parametrize(
    ("doses", "days"),
    [
        pytest.param(_d("0.5", "0.25"), (28,), id="mismatched-lengths"),
        pytest.param(_d("0.5"), (14, 14), id="mismatched-lengths-other-way"),
        pytest.param((), (), id="empty"),
        pytest.param(_d("0.5", "0.25"), (14, 13), id="total-27-days"),
        pytest.param(_d("0.5"), (7,), id="total-7-days"),
        pytest.param(_d("0.25", "0.5"), (14, 14), id="increasing"),
        pytest.param(_d("0.5", "0.25", "0.4"), (10, 10, 10), id="increasing-later"),
        pytest.param(_d("1", "0.5"), (14, 14), id="dose-equal-1"),
        pytest.param(_d("1.5", "0.5"), (14, 14), id="dose-above-1"),
        pytest.param(_d("0.5", "0"), (14, 14), id="dose-zero"),
        pytest.param(_d("0.5", "-0.25"), (14, 14), id="dose-negative"),
        pytest.param(_d("0.5", "0.25", "0.1"), (14, 14, 0), id="zero-day-step"),
        pytest.param(_d("0.5", "0.25"), (30, -2), id="negative-day-step"),
    ],
)
def test_policy_rejects_malformed_taper(doses: tuple[Decimal, ...], days: tuple[int, ...]) -> None:
    with pytest.raises(PolicyError):
        dataclasses.replace(DEFAULT_POLICY, taper_mg_per_kg_per_day=doses, taper_step_days=days)
    with pytest.raises(PolicyError):
        Policy(taper_mg_per_kg_per_day=doses, taper_step_days=days)


@pytest.mark.parametrize(
    ("doses", "days"),
    [
        pytest.param(_d("0.5"), (28,), id="single-step"),
        pytest.param(_d("0.5", "0.25"), (14, 14), id="default"),
        pytest.param(_d("0.75", "0.5", "0.25"), (14, 14, 14), id="longer"),
        pytest.param(_d("0.5", "0.25", "0.125"), (10, 9, 9), id="three-steps-28-days"),
    ],
)
def test_policy_accepts_valid_taper(doses: tuple[Decimal, ...], days: tuple[int, ...]) -> None:
    policy = dataclasses.replace(
        DEFAULT_POLICY, taper_mg_per_kg_per_day=doses, taper_step_days=days
    )
    assert policy.taper_mg_per_kg_per_day == doses
    assert policy.taper_step_days == days
    course = steroid_course(Decimal("5.0"), infusion_date=INFUSION, policy=policy)
    assert len(course.taper) == len(doses)
    assert sum(step.days for step in course.taper) == sum(days)
    assert course.taper[-1].end == INFUSION + dt.timedelta(days=28 + sum(days))


def test_taper_basis_names_institution_default_and_28_days() -> None:
    course = steroid_course(Decimal("8.4"), infusion_date=INFUSION, policy=DEFAULT_POLICY)
    basis = course.taper_basis
    assert "institution default" in basis
    assert "28 days" in basis
    assert DEFAULT_POLICY.version in basis
    assert "abruptly" in basis
