"""The same round trip against a public FHIR server (FHIR_SANDBOX_URL, e.g. the HAPI sandbox)."""

from __future__ import annotations

import datetime as dt
import json
import os
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from smart_app import service
from smart_app.fhir.gateway import FhirGateway
from smart_app.fhir.written import Confirmation, Outcome
from tests import fhirserver

pytestmark = pytest.mark.hapi

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "infant-eligible.json"
RECORDED = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[fhirserver.Proxy]:
    """A counting proxy in front of FHIR_SANDBOX_URL; skip when unset or unreachable."""
    url = os.environ.get("FHIR_SANDBOX_URL", "").rstrip("/")
    if not url:
        pytest.skip("FHIR_SANDBOX_URL is not set (e.g. https://hapi.fhir.org/baseR4)")
    try:
        with urllib.request.urlopen(f"{url}/metadata", timeout=15) as answer:  # noqa: S310
            if answer.status != 200:
                pytest.skip(f"{url} answered {answer.status} to /metadata")
    except (OSError, urllib.error.URLError) as exc:
        pytest.skip(f"{url} is unreachable: {exc}")
    with fhirserver.proxy(url) as state:
        yield state


def test_round_trip_on_the_sandbox(sandbox: fhirserver.Proxy) -> None:
    """Load, read (1 request), write (1), write again (nothing new), move the date (revoke)."""
    bundle = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    patient = fhirserver.load_patient(sandbox.target, bundle, suffix=uuid.uuid4().hex[:12])
    on, infusion = dt.date(2026, 11, 20), dt.date(2026, 11, 24)
    confirmation = Confirmation(
        recorded=RECORDED, acknowledged=frozenset({"caregiver-counseling", "smn2-copy-number"})
    )

    def evaluate(day: dt.date) -> tuple[FhirGateway, service.Evaluation]:
        sandbox.reset()
        gateway = FhirGateway(sandbox.base)
        evaluation = service.evaluate(gateway, patient, on=on, infusion_date=day)
        assert len(sandbox.calls) == 1
        return gateway, evaluation

    gateway, evaluation = evaluate(infusion)
    assert evaluation.plan.eligibility.status.value == "eligible"
    sandbox.reset()
    first = service.write(gateway, evaluation, confirmation)
    assert len(sandbox.calls) == 1
    assert {w.outcome for w in first} == {Outcome.CREATED}

    gateway, evaluation = evaluate(infusion)
    again = service.write(gateway, evaluation, confirmation)
    assert {w.outcome for w in again} == {Outcome.EXISTING}

    gateway, evaluation = evaluate(infusion + dt.timedelta(days=7))
    moved = service.write(gateway, evaluation, confirmation)
    old_plan = next(w.reference for w in first if w.reference.startswith("CarePlan/"))
    assert old_plan in {w.reference for w in moved if w.outcome is Outcome.UPDATED}
    status, care_plan = fhirserver.http_json("GET", f"{sandbox.target}/{old_plan}")
    assert (status, care_plan["status"]) == (200, "revoked")
