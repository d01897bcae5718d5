"""Interpreting a lab result against its upper limit of normal (ULN)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from importlib import resources

from smart_app.rules.model import (
    CANONICAL_UNIT,
    Comparator,
    LabResult,
    LabTest,
    PatientFacts,
    UlnSource,
)

DISPLAY_UNIT: dict[LabTest, str] = {LabTest.INR: "", LabTest.PLATELETS: "x 10^3/uL"}
"""How units read in messages where the UCUM code would not ({INR}, 10*3/uL)."""


def display_unit(test: LabTest) -> str:
    """A test's unit as shown in messages."""
    return DISPLAY_UNIT.get(test, CANONICAL_UNIT[test])


def shown(result: LabResult) -> str:
    """Value, censoring comparator and unit as the laboratory reported them ('<20 x 10^3/uL')."""
    prefix = "" if result.comparator is Comparator.EQ else result.comparator.value
    unit = display_unit(result.test)
    return f"{prefix}{result.value} {unit}" if unit else f"{prefix}{result.value}"


def newest_final(
    facts: PatientFacts, test: LabTest, *, start: dt.date, end: dt.date
) -> LabResult | None:
    """The newest final result of `test` dated within [start, end]."""
    return next((r for r in facts.labs_for(test) if r.final and start <= r.effective <= end), None)


@dataclass(frozen=True)
class FallbackUln:
    """One row of the versioned pediatric fallback table: a test's ULN for an age range."""

    test: LabTest
    age_from_days: int
    age_to_days: int
    uln: Decimal


@cache
def fallback_table() -> tuple[FallbackUln, ...]:
    """The institution's pediatric ULNs for when a result reports none (canonical units)."""
    text = resources.files("smart_app.rules").joinpath("uln_fallback.csv").read_text("utf-8")
    rows = []
    for row in csv.DictReader(io.StringIO(text)):
        test = LabTest(row["test"])
        if row["unit"] != CANONICAL_UNIT[test]:
            raise ValueError(f"uln_fallback.csv: {test} must be in {CANONICAL_UNIT[test]}")
        rows.append(
            FallbackUln(
                test, int(row["age_from_days"]), int(row["age_to_days"]), Decimal(row["uln"])
            )
        )
    return tuple(rows)


@dataclass(frozen=True)
class Interpreted:
    """A result with the ULN used and how many times the ULN it is."""

    result: LabResult
    uln: Decimal | None
    source: UlnSource

    def exceeds(self, multiple: Decimal) -> bool:
        """True when the value is strictly above `multiple` x ULN, compared exactly; a ULN of
        zero or below is no limit at all and never exceeded."""
        return self.uln is not None and self.uln > 0 and self.result.value > multiple * self.uln

    def reaches(self, multiple: Decimal) -> bool:
        """True when the value is at or above `multiple` x a positive ULN, compared exactly."""
        return self.uln is not None and self.uln > 0 and self.result.value >= multiple * self.uln

    @property
    def multiple_of_uln(self) -> Decimal | None:
        """value / ULN to two decimals for display (decide with `exceeds`), or None."""
        if self.uln is None or self.uln == 0:
            return None
        return (self.result.value / self.uln).quantize(Decimal("0.01"))


def interpret(result: LabResult, *, birth_date: dt.date | None) -> Interpreted:
    """Attach the reported ULN, else the fallback for the patient's age on the result date."""
    if result.reported_uln is not None:
        return Interpreted(result, result.reported_uln, UlnSource.REPORTED)
    if birth_date is not None:
        age_days = (result.effective - birth_date).days
        for row in fallback_table():
            if row.test is result.test and row.age_from_days <= age_days < row.age_to_days:
                return Interpreted(result, row.uln, UlnSource.FALLBACK)
    return Interpreted(result, None, UlnSource.NONE)
