"""ULN interpretation: reported limits first, a zero limit is no limit."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from smart_app.rules.labs import interpret
from smart_app.rules.model import Evidence, LabResult, LabTest, UlnSource

DAY = dt.date(2026, 11, 1)


def _alt(value: str, uln: str | None) -> LabResult:
    return LabResult(
        LabTest.ALT,
        Decimal(value),
        DAY,
        Evidence("Observation/alt", value),
        reported_uln=Decimal(uln) if uln is not None else None,
    )


def test_a_zero_reported_uln_is_never_exceeded_and_has_no_multiple() -> None:
    seen = interpret(_alt("30", "0"), birth_date=None)
    assert seen.source is UlnSource.REPORTED
    assert seen.exceeds(Decimal(2)) is False
    assert seen.multiple_of_uln is None


def test_a_positive_uln_is_compared_strictly() -> None:
    seen = interpret(_alt("90", "45"), birth_date=None)
    assert seen.exceeds(Decimal("1.99")) is True
    assert seen.exceeds(Decimal(2)) is False
    assert seen.multiple_of_uln == Decimal("2.00")
