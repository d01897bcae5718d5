"""Explicit UCUM unit normalisation: every accepted unit, its factor to the canonical one."""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

from smart_app.rules.model import LabTest

Convert = Callable[[Decimal], Decimal]


def _times(factor: str) -> Convert:
    """A conversion that multiplies by `factor`."""
    f = Decimal(factor)
    return lambda v: v * f


def _per(divisor: str) -> Convert:
    """A conversion that divides by `divisor`."""
    d = Decimal(divisor)
    return lambda v: v / d


_SAME = _times("1")

WEIGHT_TO_KG: dict[str, Convert] = {
    "kg": _SAME,
    "g": _per("1000"),
    "[lb_av]": _times("0.45359237"),
    "[oz_av]": _times("0.028349523125"),
}
GESTATION_TO_DAYS: dict[str, Convert] = {"wk": _times("7"), "d": _SAME}
TEMPERATURE_TO_CEL: dict[str, Convert] = {
    "Cel": _SAME,
    "[degF]": lambda v: (v - 32) * 5 / 9,
}

_ENZYME = {"U/L": _SAME, "[IU]/L": _SAME, "ukat/L": _times("60"), "nkat/L": _times("0.06")}
_SECONDS = {"s": _SAME}

LAB_TO_CANONICAL: dict[LabTest, dict[str, Convert]] = {
    LabTest.ALT: _ENZYME,
    LabTest.AST: _ENZYME,
    LabTest.BILIRUBIN_TOTAL: {"mg/dL": _SAME, "umol/L": _per("17.104")},
    LabTest.ALBUMIN: {"g/dL": _SAME, "g/L": _per("10")},
    LabTest.PT: _SECONDS,
    LabTest.PTT: _SECONDS,
    LabTest.INR: {"{INR}": _SAME, "{ratio}": _SAME, "1": _SAME},
    LabTest.CREATININE: {"mg/dL": _SAME, "umol/L": _per("88.42")},
    LabTest.HEMOGLOBIN: {"g/dL": _SAME, "g/L": _per("10"), "mmol/L": _times("1.611")},
    LabTest.PLATELETS: {"10*3/uL": _SAME, "10*9/L": _SAME, "/uL": _per("1000")},
    LabTest.TROPONIN_I: {
        "ng/mL": _SAME,
        "ug/L": _SAME,
        "ng/L": _per("1000"),
        "pg/mL": _per("1000"),
    },
}

ALIASES: dict[str, str] = {
    "kilogram": "kg",
    "kilograms": "kg",
    "gram": "g",
    "grams": "g",
    "lb": "[lb_av]",
    "lbs": "[lb_av]",
    "pound": "[lb_av]",
    "pounds": "[lb_av]",
    "oz": "[oz_av]",
    "ounce": "[oz_av]",
    "ounces": "[oz_av]",
    "week": "wk",
    "weeks": "wk",
    "wks": "wk",
    "day": "d",
    "days": "d",
    "°c": "Cel",
    "c": "Cel",
    "degc": "Cel",
    "cel": "Cel",
    "°f": "[degF]",
    "f": "[degF]",
    "degf": "[degF]",
    "iu/l": "[IU]/L",
    "u/l": "U/L",
    "µkat/l": "ukat/L",
    "µmol/l": "umol/L",
    "umol/l": "umol/L",
    "mg/dl": "mg/dL",
    "g/dl": "g/dL",
    "g/l": "g/L",
    "mmol/l": "mmol/L",
    "sec": "s",
    "seconds": "s",
    "inr": "{INR}",
    "ratio": "{ratio}",
    "": "1",
    "10^3/ul": "10*3/uL",
    "10^9/l": "10*9/L",
    "k/ul": "10*3/uL",
    "x10e3/ul": "10*3/uL",
    "10*3/mm3": "10*3/uL",
    "/mm3": "/uL",
    "{cells}/ul": "/uL",
    "ng/ml": "ng/mL",
    "ug/l": "ug/L",
    "µg/l": "ug/L",
    "ng/l": "ng/L",
    "pg/ml": "pg/mL",
}
"""Human-entered unit strings (Quantity.unit without a UCUM code) mapped to UCUM codes."""


def _known_units() -> dict[str, str]:
    """Every accepted UCUM code and alias, keyed case-insensitively."""
    tables = (WEIGHT_TO_KG, GESTATION_TO_DAYS, TEMPERATURE_TO_CEL, *LAB_TO_CANONICAL.values())
    known = {unit.lower(): unit for table in tables for unit in table}
    clashes = {alias for alias in ALIASES if alias in known and known[alias] != ALIASES[alias]}
    if clashes:
        raise ValueError(f"unit aliases clash with UCUM codes: {sorted(clashes)}")
    return known | ALIASES


KNOWN_UNITS = _known_units()


def ucum(code: object, text: object) -> str:
    """The UCUM code of a Quantity: its `code`, else its `unit` text, matched case-insensitively.

    Exact UCUM codes pass through; 'KG' or 'mg/dl' typed by hand map to 'kg' and 'mg/dL'.
    Anything unknown is returned as recorded, so the caller can name it in a finding; a code or
    unit that is not a string raises UnitError.
    """
    for name, candidate in (("code", code), ("unit", text)):
        if candidate is not None and not isinstance(candidate, str):
            raise UnitError(f"the unit {name} {_shown(candidate)} is not a string")
    for candidate in (code, text):
        if isinstance(candidate, str) and candidate.strip().lower() in KNOWN_UNITS:
            return KNOWN_UNITS[candidate.strip().lower()]
    raw = str(code or text or "").strip()
    return KNOWN_UNITS.get(raw.lower(), raw)


def _shown(value: object) -> str:
    """A short, printable rendering of a value for a message."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


MAX_MAGNITUDE = Decimal("1e9")
"""No value the app reads is anywhere near this; larger ones are typing or encoding errors."""
MIN_MAGNITUDE = Decimal("1e-9")
"""Nor this small, unless zero: a smaller one is an encoding error (and would overflow a ratio)."""


class UnitError(ValueError):
    """A value the app cannot convert: an unknown unit or an absurd magnitude; says which."""


def to_canonical(
    value: Decimal, unit: str, table: dict[str, Convert], *, rounding: str = ROUND_HALF_UP
) -> Decimal:
    """Convert `value` in UCUM `unit` with `table` to 4 decimals; exact for factors of 1."""
    try:
        convert = table[unit]
    except KeyError:
        raise UnitError(f"unit '{unit}' cannot be converted") from None
    plausible(value, unit)
    if convert is _SAME:
        return value
    return convert(value).quantize(Decimal("0.0001"), rounding=rounding)


def plausible(value: Decimal, unit: str = "") -> Decimal:
    """`value` itself when finite and zero or between MIN_MAGNITUDE and MAX_MAGNITUDE in size."""
    size = value.copy_abs() if value.is_finite() else None
    if size is None or size > MAX_MAGNITUDE or (size and size < MIN_MAGNITUDE):
        shown = f"{value:.6g}" if value.is_finite() else str(value)
        raise UnitError(f"value {shown} {unit}".rstrip() + " is out of any plausible range")
    return value


def weight_to_kg(value: Decimal, unit: str) -> Decimal:
    """A weight in kg, rounded UP at 0.1 g so a conversion never moves a weight to a lower band."""
    return to_canonical(value, unit, WEIGHT_TO_KG, rounding=ROUND_CEILING)


def lab_to_canonical(test: LabTest, value: Decimal, unit: str) -> Decimal:
    """A lab value in the test's canonical unit (CANONICAL_UNIT)."""
    return to_canonical(value, unit, LAB_TO_CANONICAL[test])
