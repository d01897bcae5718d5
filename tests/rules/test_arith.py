"""Decimal rounding and calendar helpers."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from smart_app.rules.arith import (
    add_months,
    anniversary,
    ceil_to,
    floor_int,
    round_half_up,
    weeks_days,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("19.25", "19.3"), ("19.24", "19.2"), ("24.75", "24.8"), ("0.05", "0.1"), ("3.0", "3.0")],
)
def test_round_half_up(value: str, expected: str) -> None:
    result = round_half_up(Decimal(value))
    assert result == Decimal(expected)
    assert result.as_tuple().exponent == -1


def test_round_half_up_other_quantum() -> None:
    assert round_half_up(Decimal("2.345"), Decimal("0.01")) == Decimal("2.35")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3.04", "3.1"), ("3.0", "3.0"), ("3.00", "3.0"), ("3.01", "3.1"), ("20.91", "21.0")],
)
def test_ceil_to(value: str, expected: str) -> None:
    result = ceil_to(Decimal(value))
    assert result == Decimal(expected)
    assert result.as_tuple().exponent == -1


@pytest.mark.parametrize(("value", "expected"), [("3.9", 3), ("4", 4), ("-0.5", -1)])
def test_floor_int(value: str, expected: int) -> None:
    assert floor_int(Decimal(value)) == expected


@pytest.mark.parametrize(
    ("birth", "years", "expected"),
    [
        (dt.date(2024, 2, 29), 2, dt.date(2026, 2, 28)),
        (dt.date(2024, 2, 29), 4, dt.date(2028, 2, 29)),
        (dt.date(2025, 3, 1), 2, dt.date(2027, 3, 1)),
        (dt.date(2024, 12, 31), 2, dt.date(2026, 12, 31)),
    ],
)
def test_anniversary(birth: dt.date, years: int, expected: dt.date) -> None:
    assert anniversary(birth, years=years) == expected


@pytest.mark.parametrize(
    ("days", "expected"), [(259, "37+0 weeks"), (154, "22+0 weeks"), (260, "37+1 weeks")]
)
def test_weeks_days(days: int, expected: str) -> None:
    assert weeks_days(days) == expected


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (dt.date(2026, 1, 31), dt.date(2026, 2, 28)),
        (dt.date(2026, 12, 15), dt.date(2027, 1, 15)),
        (dt.date(2028, 1, 30), dt.date(2028, 2, 29)),
    ],
)
def test_one_calendar_month_later(start: dt.date, end: dt.date) -> None:
    """The month's last day when it has no such day; December into January."""
    assert add_months(start, months=1) == end
