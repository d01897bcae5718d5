"""The dated monitoring schedule around an infusion on 2026-11-24 (label 2.1, 2.3; HCP timeline)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from decimal import Decimal

import pytest

from smart_app.rules.model import ActivityKind, LabTest, ScheduleItem
from smart_app.rules.monitoring import LiverDays, lab_draws, schedule, three_months_after
from smart_app.rules.policy import DEFAULT_POLICY, Policy
from smart_app.rules.steroids import steroid_course

INFUSION = dt.date(2026, 11, 24)
WEIGHT = Decimal("8.4")
LIVER = (LabTest.AST, LabTest.ALT, LabTest.BILIRUBIN_TOTAL, LabTest.PT, LabTest.INR)

# Label 2.3: liver weekly for the first month and during the 28-day taper (days 29-56), then
# every other week for another month; platelets weekly in month 1, every other week in months 2-3.
# Both last on the date 3 calendar months after infusion (5.1; 2.3; 5.3): 2027-02-24 = day 92.
THREE_MONTHS = 92
LIVER_DAYS_DEFAULT = [7, 14, 21, 28, 35, 42, 49, 56, 70, 84, THREE_MONTHS]
PLATELET_DAYS = [7, 14, 21, 28, 42, 56, 70, 84, THREE_MONTHS]

LONG_TAPER = dataclasses.replace(
    DEFAULT_POLICY,
    taper_mg_per_kg_per_day=(Decimal("0.5"), Decimal("0.25"), Decimal("0.125")),
    taper_step_days=(14, 14, 14),
)
# 42-day taper: days 29-70; weekly liver through day 70, then every other week: 84 and 98 (past
# 3 months: no extra liver draw).
LIVER_DAYS_LONG = [7, 14, 21, 28, 35, 42, 49, 56, 63, 70, 84, 98]


def _plan(policy: Policy = DEFAULT_POLICY) -> tuple[ScheduleItem, ...]:
    course = steroid_course(WEIGHT, infusion_date=INFUSION, policy=policy)
    return schedule(INFUSION, policy=policy, steroids=course)


def _draws(items: tuple[ScheduleItem, ...]) -> list[ScheduleItem]:
    return [i for i in items if i.kind is ActivityKind.LAB_DRAW]


def _days_with(items: tuple[ScheduleItem, ...], test: LabTest) -> list[int]:
    return sorted(i.day for i in _draws(items) if test in i.tests)


def _only(items: tuple[ScheduleItem, ...], kind: ActivityKind) -> ScheduleItem:
    found = [i for i in items if i.kind is kind]
    assert len(found) == 1, f"{kind}: {found}"
    return found[0]


def _after(days: int) -> dt.date:
    return INFUSION + dt.timedelta(days=days)


@pytest.fixture(scope="module")
def items() -> tuple[ScheduleItem, ...]:
    return _plan()


@pytest.mark.parametrize("test", LIVER, ids=str)
def test_liver_panel_days(items: tuple[ScheduleItem, ...], test: LabTest) -> None:
    assert _days_with(items, test) == LIVER_DAYS_DEFAULT


def test_platelet_days(items: tuple[ScheduleItem, ...]) -> None:
    assert _days_with(items, LabTest.PLATELETS) == PLATELET_DAYS


def test_troponin_days_follow_policy(items: tuple[ScheduleItem, ...]) -> None:
    assert _days_with(items, LabTest.TROPONIN_I) == sorted(DEFAULT_POLICY.troponin_days)


def test_custom_troponin_days() -> None:
    policy = dataclasses.replace(DEFAULT_POLICY, troponin_days=(3, 10, 31))
    assert _days_with(_plan(policy), LabTest.TROPONIN_I) == [3, 10, 31]


def test_draw_dates_and_windows(items: tuple[ScheduleItem, ...]) -> None:
    draws = _draws(items)
    assert draws
    for item in draws:
        assert item.date == _after(item.day), item
        assert item.window_start <= item.date <= item.window_end, item
        assert item.tests, item


def test_weekly_and_biweekly_windows(items: tuple[ScheduleItem, ...]) -> None:
    by_day = {i.day: i for i in _draws(items)}
    weekly = dt.timedelta(days=DEFAULT_POLICY.weekly_window_days)
    biweekly = dt.timedelta(days=DEFAULT_POLICY.biweekly_window_days)
    # Day 7 is weekly for everything; day 70 is every-other-week for liver and platelets only.
    assert by_day[7].window_start == by_day[7].date - weekly
    assert by_day[7].window_end == by_day[7].date + weekly
    assert by_day[70].window_start == by_day[70].date - biweekly
    assert by_day[70].window_end == by_day[70].date + biweekly


def test_one_lab_draw_per_date(items: tuple[ScheduleItem, ...]) -> None:
    counts = Counter(i.date for i in _draws(items))
    duplicates = {date: n for date, n in counts.items() if n > 1}
    assert not duplicates


def test_steroid_start_is_hcp_day_1(items: tuple[ScheduleItem, ...]) -> None:
    start = _only(items, ActivityKind.STEROID_START)
    assert start.date == INFUSION - dt.timedelta(days=1)
    assert start.hcp_day == 1


def test_infusion_is_hcp_day_2(items: tuple[ScheduleItem, ...]) -> None:
    infusion = _only(items, ActivityKind.INFUSION)
    assert infusion.date == INFUSION
    assert infusion.hcp_day == 2
    assert "60 minutes" in infusion.activity


def test_liver_assessment_is_hcp_day_30(items: tuple[ScheduleItem, ...]) -> None:
    check = _only(items, ActivityKind.LIVER_ASSESSMENT)
    assert check.date == _after(28)
    assert check.hcp_day == 30
    assert set(check.tests) == set(LIVER)
    course = steroid_course(WEIGHT, infusion_date=INFUSION, policy=DEFAULT_POLICY)
    assert check.date == course.liver_check_date


@pytest.mark.parametrize("policy", [DEFAULT_POLICY, LONG_TAPER], ids=["default", "long-taper"])
def test_taper_steps_and_steroid_end(policy: Policy) -> None:
    items = _plan(policy)
    course = steroid_course(WEIGHT, infusion_date=INFUSION, policy=policy)
    steps = [i for i in items if i.kind is ActivityKind.TAPER_STEP]
    assert [s.date for s in steps] == [step.start for step in course.taper]
    assert steps[0].date == _after(29)
    for item, step in zip(steps, course.taper, strict=True):
        assert str(step.dose_mg_per_day) in item.activity
        assert f"{step.days} days" in item.activity
    end = _only(items, ActivityKind.STEROID_END)
    assert end.date == course.taper[-1].end + dt.timedelta(days=1)
    assert end.date == _after(29 + sum(policy.taper_step_days))


def test_baseline_lists_all_policy_tests(items: tuple[ScheduleItem, ...]) -> None:
    baseline = _only(items, ActivityKind.BASELINE)
    assert set(baseline.tests) == set(DEFAULT_POLICY.baseline_tests)
    assert len(baseline.tests) == len(DEFAULT_POLICY.baseline_tests)
    for test in DEFAULT_POLICY.baseline_tests:
        assert str(test) in baseline.activity
    assert baseline.window_start <= baseline.date <= baseline.window_end
    assert baseline.date < INFUSION


def test_schedule_sorted_by_date(items: tuple[ScheduleItem, ...]) -> None:
    dates = [i.date for i in items]
    assert dates == sorted(dates)


def test_schedule_is_deterministic() -> None:
    assert _plan() == _plan()
    assert schedule(INFUSION, policy=DEFAULT_POLICY) == schedule(INFUSION, policy=DEFAULT_POLICY)


def test_longer_taper_moves_liver_monitoring() -> None:
    items = _plan(LONG_TAPER)
    taper_end = 28 + sum(LONG_TAPER.taper_step_days)
    assert taper_end == 70
    liver_days = _days_with(items, LabTest.ALT)
    assert liver_days == LIVER_DAYS_LONG
    weekly_through_taper = [d for d in liver_days if 28 < d <= taper_end]
    assert weekly_through_taper == list(range(35, taper_end + 1, 7))
    assert [d for d in liver_days if d > taper_end] == [taper_end + 14, taper_end + 28]
    # Platelets do not depend on the taper.
    assert _days_with(items, LabTest.PLATELETS) == PLATELET_DAYS


def test_items_outside_the_label_are_marked(items: tuple[ScheduleItem, ...]) -> None:
    for item in items:
        if item.kind is ActivityKind.TAPER_STEP:
            assert item.institution_default, item
            assert "institution default" in item.activity
            assert item.conditional, item
    extra = {LabTest.TROPONIN_I: "troponin I", LabTest.CREATININE: "creatinine"}
    for item in _draws(items):
        for test, name in extra.items():
            if test in item.tests:
                assert item.institution_default or (
                    name in item.activity and "institution default" in item.activity
                ), item


def test_troponin_only_draw_is_flagged_institution_default() -> None:
    policy = dataclasses.replace(DEFAULT_POLICY, troponin_days=(3,))
    draw = next(i for i in _draws(_plan(policy)) if i.day == 3)
    assert draw.tests == (LabTest.TROPONIN_I,)
    assert draw.institution_default


def test_label_draws_are_not_flagged_institution_default(items: tuple[ScheduleItem, ...]) -> None:
    by_day = {i.day: i for i in _draws(items)}
    for day in (35, 42, 70):
        assert not by_day[day].institution_default, by_day[day]


def test_lab_draw_sections_are_distinct_and_in_numeric_order() -> None:
    draws = [
        i for i in schedule(INFUSION, policy=DEFAULT_POLICY) if i.kind is ActivityKind.LAB_DRAW
    ]
    day_7 = next(i for i in draws if i.day == 7)
    assert day_7.section == "2.3; 5.1; 5.3; 5.4; 5.5"
    for item in draws:
        numbers = item.section.split("; ")
        keys = [tuple(int(p) for p in n.split(".")) for n in numbers]
        assert keys == sorted(set(keys)), item.section


# At least 3 months (5.1; 2.3; 5.3) ------------------------------------------------------------

THREE_MONTH_DATES = [
    (dt.date(2026, 11, 24), dt.date(2027, 2, 24)),
    (dt.date(2026, 11, 30), dt.date(2027, 2, 28)),
    (dt.date(2027, 1, 31), dt.date(2027, 4, 30)),
    (dt.date(2027, 11, 30), dt.date(2028, 2, 29)),
    (dt.date(2026, 12, 31), dt.date(2027, 3, 31)),
    (dt.date(2026, 10, 5), dt.date(2027, 1, 5)),
]
"""Infusion date -> the same day 3 calendar months later, or that month's last day."""


@pytest.mark.parametrize(("infusion", "expected"), THREE_MONTH_DATES, ids=str)
def test_three_months_after_is_calendar_months(infusion: dt.date, expected: dt.date) -> None:
    assert three_months_after(infusion) == expected


@pytest.mark.parametrize(("infusion", "expected"), THREE_MONTH_DATES, ids=str)
def test_liver_and_platelets_last_on_the_three_month_date(
    infusion: dt.date, expected: dt.date
) -> None:
    draws = lab_draws(infusion, policy=DEFAULT_POLICY)
    for test in (*LIVER, LabTest.PLATELETS):
        last = max(d.date for d in draws if test in d.tests)
        assert last == expected, test
    final = draws[-1]
    assert final.date == expected
    assert final.day == (expected - infusion).days
    assert set(final.tests) == {*LIVER, LabTest.PLATELETS}
    # On time from the 3-month date, never before it.
    assert final.window_start == expected
    assert final.window_end == expected + dt.timedelta(days=DEFAULT_POLICY.biweekly_window_days)
    assert final.section == "2.3; 5.1; 5.3"
    assert "3 months after infusion" in final.activity
    assert "for at least 3 months after ZOLGENSMA infusion" in final.conditional
    assert "every other week for the second and third months" in final.conditional
    assert not final.institution_default


def test_a_long_taper_past_three_months_adds_platelets_only() -> None:
    by_day = {i.day: i for i in _draws(_plan(LONG_TAPER))}
    assert by_day[THREE_MONTHS].tests == (LabTest.PLATELETS,)
    assert by_day[THREE_MONTHS].section == "2.3; 5.3"
    assert by_day[98].window_start < by_day[98].date  # an ordinary biweekly draw


def test_liver_days_of_a_continuation_still_reach_three_months() -> None:
    """A continued full dose plans weekly liver draws only (rules/followup.py): the 3-month date
    still carries the liver panel."""
    liver = LiverDays(weekly=(35, 42, 49, 56), conditional="weekly while 1 mg/kg/day continues")
    draws = lab_draws(INFUSION, policy=DEFAULT_POLICY, liver=liver)
    assert _days_with(draws, LabTest.ALT) == [7, 14, 21, 28, 35, 42, 49, 56, THREE_MONTHS]
    assert _days_with(draws, LabTest.PLATELETS) == PLATELET_DAYS


def test_a_liver_draw_on_the_three_month_day_is_not_doubled() -> None:
    """Weekly liver draws reaching day 92 need no extra liver draw; platelets join that one."""
    liver = LiverDays(weekly=(78, 85, THREE_MONTHS))
    draws = lab_draws(INFUSION, policy=DEFAULT_POLICY, liver=liver)
    (final,) = [d for d in draws if d.day == THREE_MONTHS]
    assert set(final.tests) == {*LIVER, LabTest.PLATELETS}
    assert final.window_start == final.date
    assert final.window_end == final.date + dt.timedelta(days=DEFAULT_POLICY.weekly_window_days)
    assert Counter(d.date for d in draws).most_common(1)[0][1] == 1


def test_a_troponin_draw_on_the_three_month_day_is_merged() -> None:
    policy = dataclasses.replace(DEFAULT_POLICY, troponin_days=(7, THREE_MONTHS))
    (final,) = [d for d in lab_draws(INFUSION, policy=policy) if d.day == THREE_MONTHS]
    assert set(final.tests) == {*LIVER, LabTest.PLATELETS, LabTest.TROPONIN_I}
    assert final.window_start == final.date


def test_baseline_names_the_liver_clinical_exam(items: tuple[ScheduleItem, ...]) -> None:
    """2.3: 'Liver function (clinical exam, AST, ALT, ...) at baseline'."""
    baseline = _only(items, ActivityKind.BASELINE)
    assert "liver clinical exam" in baseline.activity
    assert "5.1" in baseline.section.split("; ")
