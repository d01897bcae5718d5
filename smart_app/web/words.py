"""Numbers, units, dates and ages as clinicians write them: the pages' Jinja filters."""

from __future__ import annotations

import datetime as dt
import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from smart_app.rules import label
from smart_app.rules.arith import json_number

NBSP = "\u00a0"
"""Joins the parts of a date, a quantity or an age so that none wraps across lines."""
SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")
UNITS = {
    "{INR}": "",
    "{ratio}": "",
    "{titer}": "",
    "1": "",
    "10*3/uL": "10³/µL",
    "10*9/L": "10⁹/L",
    "10*6/uL": "10⁶/µL",
    "u/L": "U/L",
    "U/L": "U/L",
    "ug/L": "µg/L",
    "ng/L": "ng/L",
    "ug/dL": "µg/dL",
    "umol/L": "µmol/L",
    "mg/dL": "mg/dL",
    "g/dL": "g/dL",
    "s": "s",
    "Cel": "°C",
    "[degF]": "°F",
    "kg": "kg",
    "g": "g",
    "mL": "mL",
    "mL/h": "mL/h",
    "mg": "mg",
    "mg/mL": "mg/mL",
    "d": "days",
    "wk": "weeks",
}
"""UCUM codes the app shows -> clinical notation ('' where the value has no unit, as INR)."""


def clinical_date(value: Any) -> str:
    """One date format everywhere: '24 Nov 2026', joined so that it never wraps."""
    day = _as_date(value)
    if day is None:
        return "" if value in (None, "") else str(value)
    return NBSP.join((str(day.day), day.strftime("%b"), str(day.year)))


def _as_date(value: Any) -> dt.date | None:
    """A date from a date, a datetime or ISO text; None when it is none of those."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str) and len(value) >= 10:
        try:
            return dt.date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


def decimal(value: Any, *, places: int) -> str:
    """A number rounded half-up to a fixed number of decimals ('6.03')."""
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return str(value)
    quantum = Decimal(1).scaleb(-places)
    return format(number.quantize(quantum, rounding=ROUND_HALF_UP), "f")


def number(value: Any) -> str:
    """A plan's quantity as the plan's JSON writes it: integers bare ('10'), others with their
    digits ('24.8', '5.0')."""
    return str(json_number(value)) if isinstance(value, Decimal) else str(value)


def weight(value_kg: Any, *, entered: str = "") -> str:
    """A weight in kg to 2 decimals, with the weight as entered when it was not in kg
    ('6030 g (6.03 kg)')."""
    kg = f"{decimal(value_kg, places=2)}{NBSP}kg"
    if entered and not entered.rstrip().endswith("kg"):
        return f"{entered.strip().replace(' ', NBSP)} ({kg})"
    return kg


def unit(code: Any) -> str:
    """A UCUM code in clinical notation: '10³/µL' for 10*3/uL, nothing for INR."""
    text = "" if code is None else str(code)
    return UNITS.get(text, text)


def quantity(value: Any, code: Any) -> str:
    """A value with its unit in clinical notation, joined ('1.2', '254 10³/µL')."""
    shown = unit(code)
    return f"{value}{NBSP}{shown}" if shown else str(value)


def vector_genomes(value: Any) -> str:
    """Vector genomes as clinicians write them: '1.1 × 10¹⁴' (3 significant figures at most,
    trailing zeros dropped)."""
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return str(value)
    if number == 0:
        return "0"
    mantissa, exponent = f"{number:.2e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    power = str(int(exponent)).translate(SUPERSCRIPT)
    return f"{mantissa}{NBSP}×{NBSP}10{power}"


def age(days: Any, *, gestational_days: Any = None, term_days: int = 280) -> str:
    """An age in months and days ('5 months 12 days'), and the corrected age of an infant born
    before term (`gestational_days` at birth, `term_days` a term pregnancy: 40 weeks)."""
    if days is None or days == "":
        return "unknown"
    total = int(days)
    shown = _months_days(total)
    if gestational_days not in (None, ""):
        early = term_days - int(gestational_days)
        if early > 0:
            shown += f" (corrected{NBSP}age {_months_days(max(total - early, 0))})"
    return shown


def _months_days(total_days: int) -> str:
    """Whole months of 30.4375 days (the average month) and the days left over."""
    months = int(Decimal(total_days) / Decimal("30.4375"))
    rest = total_days - int((Decimal(months) * Decimal("30.4375")).to_integral_value(ROUND_HALF_UP))
    if rest < 0:
        months, rest = months - 1, rest + 30
    parts = []
    if months:
        parts.append(f"{months}{NBSP}month{'s' if months != 1 else ''}")
    if rest or not months:
        parts.append(f"{rest}{NBSP}day{'s' if rest != 1 else ''}")
    return " ".join(parts)


def relative_day(day: Any) -> str:
    """A plan day in words: '1 day before infusion', 'infusion day', 'day 7 after infusion'."""
    number = int(day)
    if number == 0:
        return "infusion day"
    if number < 0:
        before = -number
        return f"{before}{NBSP}day{'s' if before != 1 else ''} before infusion"
    return f"day{NBSP}{number} after infusion"


def topic(code: Any) -> str:
    """A counseling topic in plain words (label.TOPIC_NAMES; an unknown code spaced)."""
    text = "" if code is None else str(code)
    return label.TOPIC_NAMES.get(text, text.replace("-", " "))


ISO_DATE = re.compile(r"\b(\d{4}-\d{2}-\d{2})\b")
E_NOTATION = re.compile(r"\b(\d+(?:\.\d+)?)e(\d{1,3})\b")


def clinical_text(text: Any) -> str:
    """The rules' sentences as a clinician writes them: ISO dates as '24 Nov 2026', '1.1e14' as
    '1.1 × 10¹⁴', ' x ULN' as ' × ULN'."""
    shown = "" if text is None else str(text)
    shown = ISO_DATE.sub(lambda m: clinical_date(m.group(1)), shown)
    shown = E_NOTATION.sub(lambda m: vector_genomes(f"{m.group(1)}e{m.group(2)}"), shown)
    return shown.replace(" x ULN", f"{NBSP}×{NBSP}ULN")


FILTERS = {
    "clinical_date": clinical_date,
    "weight": weight,
    "unit": unit,
    "quantity": quantity,
    "vg": vector_genomes,
    "age": age,
    "relative_day": relative_day,
    "topic": topic,
    "decimal": decimal,
    "number": number,
    "clinical_text": clinical_text,
}
"""The Jinja filters this module gives the templates (registered in web/app.py)."""
