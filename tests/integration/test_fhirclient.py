"""The fhirclient entry point against the real local FHIR server, and everything it writes read
back through fhirclient's R4 models as a second, independent parser."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import pytest
import requests
from fhirclient.client import FHIRClient
from fhirclient.models.careplan import CarePlan
from fhirclient.models.detectedissue import DetectedIssue
from fhirclient.models.medicationrequest import MedicationRequest
from fhirclient.models.provenance import Provenance
from fhirclient.models.task import Task

from smart_app.errors import InputError
from smart_app.fhir import codes
from smart_app.fhir.written import Confirmation, Outcome
from smart_app.fhirclient_entry import plan_with_fhirclient, write_with_fhirclient
from tests import fhirserver
from tests.fhirclient_check import FhirclientReadBackError, read_back_with_fhirclient

pytestmark = pytest.mark.integration
ALL_SERVERS = True

ON = dt.date(2026, 11, 20)
INFUSION = dt.date(2026, 11, 24)
RECORDED = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
CONFIRMED = Confirmation(
    recorded=RECORDED,
    acknowledged=frozenset({"caregiver-counseling", "smn2-copy-number"}),
    fhir_user="Practitioner/dr-lee",
)
APP_ID = "zolgensma-fhirclient-test"
TOKEN = "fhirclient-test-token-7f3a"  # noqa: S105 - a made-up token the tests look for


def _client(base: str, patient: str | None) -> FHIRClient:
    """A fhirclient client on an open server, as an app would set one up."""
    settings = {"app_id": APP_ID, "api_base": base}
    if patient is not None:
        settings["patient_id"] = patient
    return FHIRClient(settings=settings)


def _authorized_client(base: str, patient: str, *, token: str | None) -> FHIRClient:
    """A fhirclient client restored from its saved state after a SMART launch (OAuth2)."""
    auth: dict[str, Any] = {"app_id": APP_ID, "token_uri": f"{base}/token"}
    if token is not None:
        auth["access_token"] = token
    state = {
        "app_id": APP_ID,
        "patient_id": patient,
        "server": {"base_uri": base, "auth_type": "oauth2", "auth": auth},
    }
    return FHIRClient(state=state)


class RecordingSession(requests.Session):
    """A requests session that remembers each request's Authorization header."""

    def __init__(self) -> None:
        super().__init__()
        self.authorizations: list[str | None] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        """Record the header, then send as usual."""
        self.authorizations.append((kwargs.get("headers") or {}).get("Authorization"))
        return super().request(method, url, *args, **kwargs)


def test_plan_and_write_through_fhirclient_read_back_by_its_models(
    fhir_server: str, load: Callable[[str], str]
) -> None:
    """A plan written through the entry point parses as fhirclient R4 models and agrees."""
    patient = load("infant-eligible")
    client = _client(fhir_server, patient)
    evaluation = plan_with_fhirclient(client, infusion_date=INFUSION, on=ON)
    assert evaluation.record.patient_id == patient
    assert evaluation.plan.eligibility.status.value == "eligible"
    assert evaluation.plan.dose is not None
    written = write_with_fhirclient(client, evaluation, confirmation=CONFIRMED)
    assert {w.outcome for w in written} == {Outcome.CREATED}
    refs = [w.reference for w in written]

    parsed = read_back_with_fhirclient(fhir_server, refs)
    assert len(parsed) == len(refs)
    by_ref = {f"{type(r).__name__}/{r.id}": r for r in parsed}
    assert list(by_ref) == refs

    (plan_ref,) = [r for r in refs if r.startswith("CarePlan/")]
    care_plan = by_ref[plan_ref]
    assert isinstance(care_plan, CarePlan)
    assert care_plan.status == "active"
    assert care_plan.subject.reference == f"Patient/{patient}"
    orders_and_tasks = {r for r in refs if r.startswith(("Task/", "MedicationRequest/"))}
    assert {a.reference.reference for a in care_plan.activity} == orders_and_tasks

    tasks = [r for r in parsed if isinstance(r, Task)]
    assert len(tasks) >= 10
    for task in tasks:
        assert [b.reference for b in task.basedOn] == [plan_ref]
        assert task.for_fhir.reference == f"Patient/{patient}"
        assert task.status == "requested"

    orders = [r for r in parsed if isinstance(r, MedicationRequest)]
    assert len(orders) == 2
    kits = [
        o
        for o in orders
        if any(c.system == codes.NDC for c in o.medicationCodeableConcept.coding or [])
    ]
    (kit,) = kits
    ndc = {c.code for c in kit.medicationCodeableConcept.coding if c.system == codes.NDC}
    assert ndc == {evaluation.plan.dose.kit.ndc}
    assert kit.status == "draft"
    assert kit.intent == "proposal"
    assert kit.subject.reference == f"Patient/{patient}"
    assert kit.dispenseRequest.quantity.value == 5

    issues = [r for r in parsed if isinstance(r, DetectedIssue)]
    assert len(issues) == len(CONFIRMED.acknowledged)
    assert {i.patient.reference for i in issues} == {f"Patient/{patient}"}

    (provenance,) = [r for r in parsed if isinstance(r, Provenance)]
    assert refs[-1] == f"Provenance/{provenance.id}"
    assert {t.reference for t in provenance.target} == set(refs[:-1])
    assert provenance.recorded.date == RECORDED


def test_entry_point_uses_the_clients_token_and_session_and_logs_no_token(
    fhir_server: str, load: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    """The access token fhirclient holds signs every request, on fhirclient's own session."""
    patient = load("infant-eligible")
    client = _authorized_client(fhir_server, patient, token=TOKEN)
    session = RecordingSession()
    client.server.session = session
    with caplog.at_level(logging.DEBUG):
        evaluation = plan_with_fhirclient(client, infusion_date=INFUSION, on=ON)
        written = write_with_fhirclient(client, evaluation, confirmation=CONFIRMED)
    assert {w.outcome for w in written} == {Outcome.CREATED}
    assert len(session.authorizations) >= 2
    assert set(session.authorizations) == {f"Bearer {TOKEN}"}
    assert TOKEN not in caplog.text


def test_entry_point_refuses_a_client_without_a_patient(
    proxy: fhirserver.Proxy,
) -> None:
    """No patient in the client's context: a one-line InputError before any request."""
    client = _client(proxy.base, None)
    with pytest.raises(InputError, match="no patient"):
        plan_with_fhirclient(client, infusion_date=INFUSION, on=ON)
    assert proxy.calls == []


def test_entry_point_refuses_a_client_not_authorized(
    proxy: fhirserver.Proxy, load: Callable[[str], str]
) -> None:
    """A SMART client that holds no access token: a one-line InputError before any request."""
    patient = load("infant-eligible")
    proxy.reset()
    client = _authorized_client(proxy.base, patient, token=None)
    with pytest.raises(InputError, match="not authorized"):
        plan_with_fhirclient(client, infusion_date=INFUSION, on=ON)
    assert proxy.calls == []


def test_write_refuses_a_plan_for_another_patient_or_server(
    proxy: fhirserver.Proxy, load: Callable[[str], str], fhir_server: str
) -> None:
    """A plan read for one patient on one server is not written through a client on another."""
    first, second = load("infant-eligible"), load("infant-eligible")
    evaluation = plan_with_fhirclient(_client(proxy.base, first), infusion_date=INFUSION, on=ON)
    proxy.reset()
    with pytest.raises(InputError, match="another patient"):
        write_with_fhirclient(_client(proxy.base, second), evaluation, confirmation=CONFIRMED)
    with pytest.raises(InputError, match="another server"):
        write_with_fhirclient(_client(fhir_server, first), evaluation, confirmation=CONFIRMED)
    assert [c for c in proxy.calls if c[0] != "GET"] == []
    plans = fhirserver.search(fhir_server, "CarePlan?_count=200")
    assert [p for p in plans if p["subject"]["reference"] == f"Patient/{first}"] == []


def test_read_back_names_the_reference_it_cannot_read(
    fhir_server: str, proxy: fhirserver.Proxy
) -> None:
    """A missing resource, one fhirclient cannot parse or a malformed reference fails with the
    reference and the reason."""
    with pytest.raises(FhirclientReadBackError, match=r"CarePlan/no-such-plan: .*HTTP 404"):
        read_back_with_fhirclient(fhir_server, ["CarePlan/no-such-plan"])
    bad = {
        "resourceType": "CarePlan",
        "id": "bad-plan",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": "Patient/p"},
        "activity": [{"reference": "Task/t"}],
    }
    with proxy.lock:
        proxy.faults.append(fhirserver.Fault("GET", "/fhir/CarePlan/bad-plan", 200, bad))
    with pytest.raises(
        FhirclientReadBackError, match=r"(?s)CarePlan/bad-plan: .*FHIRValidationError.*activity"
    ):
        read_back_with_fhirclient(proxy.base, ["CarePlan/bad-plan"])
    with pytest.raises(FhirclientReadBackError, match="not a server reference"):
        read_back_with_fhirclient(fhir_server, ["CarePlan?identifier=x"])
