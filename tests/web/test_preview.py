"""The plan page's preview of what a write would send is built without the R4B validation
(only what is sent is validated): it must name exactly the entries the validated Bundle has."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from smart_app import service
from smart_app.fhir.gateway import PatientRecord
from smart_app.fhir.written import Confirmation
from smart_app.rules.model import Severity
from smart_app.rules.plan import may_write
from smart_app.web import present

ROOT = Path(__file__).resolve().parents[2]
PATIENTS = [
    ROOT / "examples" / "infant-eligible.json",
    *sorted((ROOT / "tests" / "fixtures" / "bundles").glob("*.json")),
]
ON = dt.date(2026, 11, 20)
RECORDED = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)


def evaluation(path: Path) -> service.Evaluation:
    """A fixture patient's plan, evaluated as if read from a server."""
    bundle = json.loads(path.read_text(encoding="utf-8"))
    patient = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    record = PatientRecord(
        patient_id=patient["id"], resources=[e["resource"] for e in bundle["entry"]]
    )
    return service.evaluate_record(record, on=ON, infusion_date=ON + dt.timedelta(days=4))


WRITABLE = [p for p in PATIENTS if may_write(evaluation(p).plan)]


def test_some_fixtures_are_writable() -> None:
    """The comparison below runs on more than one plan."""
    assert len(WRITABLE) >= 3


@pytest.mark.parametrize("path", WRITABLE, ids=lambda p: p.stem)
def test_preview_names_what_the_validated_bundle_sends(path: Path) -> None:
    """Rows (reference, outcome, item, kind) are equal; the unvalidated Bundle differs only in
    what the R4B round trip normalises, not in its entries' requests."""
    evaluated = evaluation(path)
    review = {
        f.code.value
        for f in evaluated.plan.eligibility.findings
        if f.severity is Severity.NEEDS_REVIEW
    }
    confirmation = Confirmation(
        recorded=RECORDED, acknowledged=frozenset(review), fhir_user="Practitioner/dr-lee"
    )
    sent = service.transaction(evaluated, confirmation)
    shown = service.transaction(evaluated, confirmation, validate=False)
    assert present.preview_rows(shown) == present.preview_rows(sent)
    assert [e["request"] for e in shown["entry"]] == [e["request"] for e in sent["entry"]]
    assert [e.get("fullUrl") for e in shown["entry"]] == [e.get("fullUrl") for e in sent["entry"]]
