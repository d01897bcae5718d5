"""Synthetic patients for the benchmark: the example infant, alone or with many lab results.

The crowded chart has the shape of tests/integration/test_reads.py's 10,000-result patient: the
example infant born just under 2 years before the evaluation date, with results spread evenly
over the last 700 days, one in four one of the app's lab tests and the rest sodium (a test the
app never asks for). The app's date floors (180 days for labs) leave about a quarter of its own
tests to be read, and its page bound (5 pages of 100) cuts the rest.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

from tests.fhirserver import http_json, load_patient

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "infant-eligible.json"
ON = dt.date(2026, 11, 20)
"""The evaluation date the example's results are dated for."""
INFUSION = dt.date(2026, 11, 24)
BORN = "2024-12-01"
"""The crowded patient's birth date: 723 days old on the infusion date, still under 2."""
SPAN_DAYS = 700
OURS_EVERY = 4
"""One result in four is one of the app's lab tests; the rest are sodium results."""
NEWEST = dt.datetime(2026, 11, 19, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
LOAD_CHUNK = 2500
"""Results per loading transaction."""
SODIUM = {"coding": [{"system": "http://loinc.org", "code": "2951-2"}], "text": "Sodium"}


def example() -> dict[str, Any]:
    """The example patient's Bundle."""
    return json.loads(EXAMPLE.read_text(encoding="utf-8"))


def load_example(base: str) -> str:
    """Load the example patient under fresh ids; its Patient id."""
    return load_patient(base, example())


def _is_lab(resource: dict[str, Any]) -> bool:
    """A laboratory Observation of the example other than the genetic tests."""
    categories = resource.get("category") or []
    return (
        resource.get("resourceType") == "Observation"
        and any(c.get("code") == "laboratory" for cat in categories for c in cat.get("coding", []))
        and resource["id"] not in ("smn1", "smn2")
    )


def crowded_results(chart: dict[str, Any], patient_id: str, count: int) -> list[dict[str, Any]]:
    """`count` laboratory results for `patient_id`, copies of the chart's own lab results, one
    in OURS_EVERY kept as it is and the rest made sodium results, dated every SPAN_DAYS/count
    back from NEWEST."""
    labs = [e["resource"] for e in chart["entry"] if _is_lab(e["resource"])]
    out = []
    for i in range(count):
        result = copy.deepcopy(labs[i % len(labs)])
        result["id"] = f"bulk-{i}-{patient_id}"
        result["subject"] = {"reference": f"Patient/{patient_id}"}
        if i % OURS_EVERY:
            result["code"] = SODIUM
            result["valueQuantity"] = {"value": 140, "unit": "mmol/L", "code": "mmol/L"}
            result.pop("referenceRange", None)
        taken = NEWEST - dt.timedelta(minutes=SPAN_DAYS * 24 * 60 * i // count)
        result["effectiveDateTime"] = taken.isoformat()
        out.append(result)
    return out


def load_with_observations(base: str, total: int) -> str:
    """Load the crowded patient with `total` Observations in all (the example's own 17
    included); its Patient id."""
    chart = example()
    for entry in chart["entry"]:
        if entry["resource"]["resourceType"] == "Patient":
            entry["resource"]["birthDate"] = BORN
    patient_id = load_patient(base, chart, suffix=uuid.uuid4().hex[:8])
    own = sum(1 for e in chart["entry"] if e["resource"]["resourceType"] == "Observation")
    results = crowded_results(chart, patient_id, max(0, total - own))
    for start in range(0, len(results), LOAD_CHUNK):
        entries = [
            {"resource": r, "request": {"method": "PUT", "url": f"Observation/{r['id']}"}}
            for r in results[start : start + LOAD_CHUNK]
        ]
        status, answer = http_json(
            "POST", base, {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        )
        if status != 200:
            raise RuntimeError(f"loading the results failed: {status} {str(answer)[:300]}")
    return patient_id
