"""Exact decimal rounding and calendar arithmetic the rules share."""

from __future__ import annotations

import calendar
import datetime as dt
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

TENTH = Decimal("0.1")


def round_half_up(value: Decimal, quantum: Decimal = TENTH) -> Decimal:
    """Round to `quantum`, halves away from zero (the label's 19.25 mL -> 19.3 mL)."""
    return value.quantize(quantum, rounding=ROUND_HALF_UP)


def ceil_to(value: Decimal, quantum: Decimal = TENTH) -> Decimal:
    """Round up to the next multiple of `quantum` (3.04 kg -> 3.1 kg)."""
    return value.quantize(quantum, rounding=ROUND_CEILING)


def floor_int(value: Decimal) -> int:
    """The largest integer not above `value`."""
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def anniversary(birth_date: dt.date, *, years: int) -> dt.date:
    """The date a person born on `birth_date` turns `years`; 29 February falls on 28 February.

    Taking the earlier of the two conventions means a leap-day infant is never treated
    as still under the age limit on a day some registries already count as the birthday.
    """
    try:
        return birth_date.replace(year=birth_date.year + years)
    except ValueError:
        return birth_date.replace(year=birth_date.year + years, day=28)


def add_months(date: dt.date, *, months: int) -> dt.date:
    """The same day `months` calendar months later, or that month's last day if it is shorter
    (2026-11-30 + 3 months = 2027-02-28)."""
    index = date.month - 1 + months
    year, month = date.year + index // 12, index % 12 + 1
    return dt.date(year, month, min(date.day, calendar.monthrange(year, month)[1]))


def weeks_days(days: int) -> str:
    """A gestational or postmenstrual age in the clinical 'W+D weeks' form."""
    return f"{days // 7}+{days % 7} weeks"


def json_number(value: Decimal) -> int | float:
    """A Decimal as a JSON number: integers stay integers, others keep their digits (2.0 mL)."""
    if value == value.to_integral_value() and value.as_tuple().exponent >= 0:
        return int(value)
    return float(value)
