"""The transaction Bundle for the example patient, compared structurally with a golden file."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from smart_app.fhir.gateway import PatientRecord
from smart_app.fhir.plan_bundle import build_transaction
from smart_app.fhir.read import facts_from_bundle
from smart_app.fhir.written import Confirmation
from smart_app.rules.plan import build_plan

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "fixtures" / "golden" / "transaction-infant-eligible.json"
RECORDED = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))


def _transaction() -> dict[str, Any]:
    """Build the example patient's transaction as the app would send it."""
    bundle = json.loads((ROOT / "examples" / "infant-eligible.json").read_text(encoding="utf-8"))
    facts = facts_from_bundle(bundle)
    record = PatientRecord(
        patient_id=facts.patient_id, resources=[e["resource"] for e in bundle["entry"]]
    )
    plan = build_plan(facts, on=dt.date(2026, 11, 20), infusion_date=dt.date(2026, 11, 24))
    confirmation = Confirmation(
        recorded=RECORDED,
        acknowledged=frozenset({"caregiver-counseling", "smn2-copy-number"}),
        fhir_user="Practitioner/dr-lee",
    )
    return build_transaction(plan, facts, record, confirmation)


def _diff(expected: Any, actual: Any, path: str = "Bundle") -> list[str]:
    """Paths where two JSON values differ (types, keys, list lengths, leaves)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        out = [f"{path}.{k}: missing" for k in expected.keys() - actual.keys()]
        out += [f"{path}.{k}: unexpected" for k in actual.keys() - expected.keys()]
        for key in expected.keys() & actual.keys():
            out += _diff(expected[key], actual[key], f"{path}.{key}")
        return out
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{path}: {len(expected)} items expected, {len(actual)} found"]
        return [
            d
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for d in _diff(e, a, f"{path}[{i}]")
        ]
    same = type(expected) is type(actual) and expected == actual
    return [] if same else [f"{path}: {expected!r} expected, {actual!r} found"]


def test_transaction_matches_golden() -> None:
    """Every key, list length and value matches the reviewed golden Bundle."""
    actual = _transaction()
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(json.dumps(actual, indent=2) + "\n", encoding="utf-8")
    expected = json.loads(GOLDEN.read_text(encoding="utf-8"))
    differences = _diff(expected, actual)
    assert differences == [], "\n".join(differences[:20])


def test_golden_shape_is_what_the_issue_asks() -> None:
    """The golden file itself: 2 orders, 1 CarePlan, Tasks, 2 DetectedIssues, 1 Provenance."""
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert golden["type"] == "transaction"
    kinds = [e["resource"]["resourceType"] for e in golden["entry"]]
    assert kinds.count("MedicationRequest") == 2
    assert kinds.count("CarePlan") == 1
    assert kinds.count("DetectedIssue") == 2
    assert kinds.count("Provenance") == 1
    assert kinds.count("Task") == 15  # baseline, counseling, vigilance, liver check, 11 lab draws
    assert all(
        e["request"]["method"] == "POST" and e["request"]["ifNoneExist"] for e in golden["entry"]
    )


def test_diff_reports_a_number_written_differently() -> None:
    """2 and 2.0 are different JSON: the comparison catches a lost decimal digit."""
    assert _diff({"value": 2.0}, {"value": 2}) == ["Bundle.value: 2.0 expected, 2 found"]


def test_diff_reports_a_change() -> None:
    """The comparison is not vacuous: one changed leaf is reported with its path."""
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    changed = json.loads(json.dumps(golden))
    changed["entry"][0]["resource"]["status"] = "active"
    assert _diff(golden, changed) == [
        "Bundle.entry[0].resource.status: 'draft' expected, 'active' found"
    ]
