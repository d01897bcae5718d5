"""Everything the app writes, on each server: valid base R4 by @medplum/core's validateResource
(zero errors, as composed and as the server holds it), and readable by fhirclient's R4 models."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from smart_app import service
from smart_app.fhir import codes
from smart_app.fhir.gateway import FhirGateway
from smart_app.fhir.written import Confirmation, Written
from tests import fhirserver, medplum
from tests.fhirclient_check import read_back_with_fhirclient
from tests.integration import test_followup as followup

pytestmark = pytest.mark.integration
ALL_SERVERS = True

ON = dt.date(2026, 11, 20)
INFUSION = dt.date(2026, 11, 24)
CONFIRM = Confirmation(
    recorded=dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC),
    acknowledged=frozenset({"caregiver-counseling", "smn2-copy-number"}),
    fhir_user="Practitioner/dr-lee",
)


def _clean(report: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The validator's report, for a readable assertion."""
    return [{k: r[k] for k in ("resourceType", "id", "errors")} for r in report]


def _check(base: str, bundles: list[dict[str, Any]], written: list[Written]) -> None:
    """Zero validateResource errors as sent and as held; every written resource parses."""
    sent = [entry["resource"] for bundle in bundles for entry in bundle["entry"]]
    assert _clean(medplum.validate(sent)) == []
    references = [w.reference for w in written if w.outcome.on_server]
    held = []
    for reference in references:
        status, resource = fhirserver.http_json("GET", f"{base}/{reference}")
        assert status == 200, reference
        held.append(resource)
    assert _clean(medplum.validate(held)) == []
    parsed = read_back_with_fhirclient(base, references)
    assert len(parsed) == len(references)


def test_plan_and_its_revision(fhir_server: str, load: Callable[[str], str]) -> None:
    """The plan, then a new infusion date that retires it."""
    patient = load("infant-eligible")
    bundles, written = [], []
    for infusion in (INFUSION, INFUSION + dt.timedelta(days=7)):
        gateway = FhirGateway(fhir_server)
        evaluation = service.evaluate(gateway, patient, on=ON, infusion_date=infusion)
        bundles.append(service.transaction(evaluation, CONFIRM))
        written += service.write(gateway, evaluation, CONFIRM)
    assert any(w.reference.startswith("DetectedIssue/") for w in written)
    _check(fhir_server, bundles, written)


@pytest.mark.parametrize("pid", ["zs-day-28", "zs-day-28-alt-3x"])
def test_the_day_30_decisions(fhir_server: str, pid: str) -> None:
    """The taper, and the continuation with its consult request."""
    patient = followup.loaded(fhir_server, pid)
    following = followup._follow(fhir_server, patient.patient_id, exam_normal=True)
    confirmed = followup._confirmed()
    bundle = service.decision_transaction(following, confirmed)
    written = service.record_decision(FhirGateway(fhir_server), following, confirmed)
    kinds = {w.reference.split("/")[0] for w in written}
    assert {"MedicationRequest", "CarePlan", "Task", "Provenance"} <= kinds
    _check(fhir_server, [bundle], written)


def test_task_completion(fhir_server: str) -> None:
    """Resulted Tasks completed with their results."""
    patient = followup.loaded(fhir_server, "zs-day-10")
    following = followup._follow(fhir_server, patient.patient_id)
    written = service.complete_tasks(FhirGateway(fhir_server), following, followup._confirmed())
    app = [
        r
        for r in fhirserver.search(fhir_server, f"Task?patient={patient.patient_id}&_count=200")
        if codes.app_identifier_values(r)
    ]
    assert any(t["status"] == "completed" for t in app)
    _check(fhir_server, [], written)
