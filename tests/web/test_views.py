"""The pages through Flask's test client with a fake EHR (no server): the plan page, the write
(refused without the CSRF token, one transaction with it), the follow-up page, a printed
document; the chart read once per request; and every state-changing route CSRF-checked unless
it is explicitly exempt.

The fake gateway is injected through the app's WebState (its gateway factory); the launch
context is put in the session directly, as the callback would store it.
"""

# ruff: noqa: S106 - fake tokens, not credentials

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Mapping
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, url_for
from flask.testing import FlaskClient

from smart_app.fhir.gateway import PatientRecord
from smart_app.sandbox.patients import synthetic_patients
from smart_app.web import context
from smart_app.web.security import CHECKED_METHODS, exempt_endpoints
from smart_app.web.state import EXTENSION, WebState
from tests.fhir.test_followup_write import USER, _fresh_chart
from tests.smartsandbox import TODAY
from tests.web.planner_app import ISS, page_text, planner_app, store_context

PLAN_PATIENT = "zs-eligible-4-2kg"
"""Eligible, 4.2 kg: kit 71894-123-03."""
FOLLOWUP_PATIENT = "zs-day-28"
"""On a plan written by the app; the day-30 liver decision is due."""
EXEMPT = frozenset({"cds.call", "cds.feedback"})
"""The only views that take a POST without the session's CSRF token: the CDS Hooks services,
which authenticate every call with a signed JWT. A new exemption must be added here."""
CSRF_REFUSED = "security token is missing or out of date"
WRITTEN_KINDS = ("CarePlan", "Task", "MedicationRequest", "Provenance", "DetectedIssue")


class FakeGateway:
    """The EHR without a server: answers reads from PatientRecords, records every write (each
    transaction or batch Bundle sent) and answers it as created; any other call fails."""

    def __init__(self, records: Mapping[str, PatientRecord]) -> None:
        self.records = dict(records)
        self.reads: list[str] = []
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def read_patient(self, patient_id: str, **_: Any) -> PatientRecord:
        """The patient's record as one read returns it (a copy: pages never share one)."""
        self.reads.append(patient_id)
        return copy.deepcopy(self.records[patient_id])

    def capabilities(self) -> dict[str, Any]:
        """A server taking transactions with conditional creates (the app's first choice)."""
        return {
            "resourceType": "CapabilityStatement",
            "rest": [
                {
                    "mode": "server",
                    "interaction": [{"code": "transaction"}, {"code": "batch"}],
                    "resource": [{"type": k, "conditionalCreate": True} for k in WRITTEN_KINDS],
                }
            ],
        }

    def transaction(self, bundle: Mapping[str, Any]) -> dict[str, Any]:
        """Record the Bundle; every entry created."""
        return self._answer("transaction", bundle)

    def batch(self, bundle: Mapping[str, Any]) -> dict[str, Any]:
        """Record the Bundle; every entry created."""
        return self._answer("batch", bundle)

    def redact(self, text: str) -> str:
        """Nothing to hide: the fake has no token."""
        return text

    def _answer(self, kind: str, bundle: Mapping[str, Any]) -> dict[str, Any]:
        self.sent.append((kind, copy.deepcopy(dict(bundle))))
        entries = bundle.get("entry") or []
        answers = [
            {
                "response": {
                    "status": "201 Created",
                    "location": f"{e['resource']['resourceType']}/fake-{len(self.sent)}-{i}",
                }
            }
            for i, e in enumerate(entries)
        ]
        return {"resourceType": "Bundle", "type": f"{kind}-response", "entry": answers}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise AssertionError(f"the page called gateway.{name}, which the fake does not answer")


def _sandbox_record(patient_id: str) -> PatientRecord:
    """A synthetic patient of the sandbox (smart_app/sandbox/patients.py) as a read returns it."""
    (patient,) = [p for p in synthetic_patients(today=TODAY) if p.patient_id == patient_id]
    return PatientRecord(patient_id=patient_id, resources=[dict(r) for r in patient.resources])


@pytest.fixture
def fake() -> FakeGateway:
    """The fake EHR: the eligible infant, and an infant on the plan the app wrote."""
    return FakeGateway(
        {
            PLAN_PATIENT: _sandbox_record(PLAN_PATIENT),
            FOLLOWUP_PATIENT: _fresh_chart(FOLLOWUP_PATIENT).read_patient(FOLLOWUP_PATIENT),
        }
    )


@pytest.fixture
def app(tmp_path: Path, fake: FakeGateway) -> Flask:
    """The app with the fake EHR behind every launch."""
    built = planner_app(tmp_path)
    state: WebState = built.extensions[EXTENSION]
    state.gateway_factory = lambda launched: fake
    return built


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def _launched(client: FlaskClient, patient: str) -> str:
    """A SMART launch context with a live token and full patient scopes, in the session."""
    launched = dataclasses.replace(
        context.LaunchContext(iss=ISS, patient=patient),
        token_endpoint="https://ehr.example.org/oauth/token",
        access_token="ACCESS-" + "x" * 40,
        expires_at=2e9,  # the app's clock is 1e9: no refresh
        scope="launch openid fhirUser patient/*.cruds",
        fhir_user=USER,
    )
    return store_context(client, launched)


def _write_form(page: str) -> dict[str, Any]:
    """The write form's fields as the page shows them, every finding acknowledged."""
    form = page[page.index('class="write-form"') :]
    form = form[: form.index("</form>")]
    fields = dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', form))
    acknowledged = re.findall(r'name="acknowledge" value="([^"]+)"', form)
    return {**{k: unescape(v) for k, v in fields.items()}, "acknowledge": acknowledged}


def test_the_plan_page_reads_the_chart_once_and_sends_nothing(
    client: FlaskClient, fake: FakeGateway
) -> None:
    context_id = _launched(client, PLAN_PATIENT)
    answer = client.get(f"/p/{context_id}/")
    assert answer.status_code == 200
    text = page_text(answer.text)
    assert "Eligibility on" in text and "eligible" in text
    assert "Kit NDC 71894-123-03" in text
    assert 'id="write-plan"' in answer.text
    assert fake.reads == [PLAN_PATIENT]
    assert fake.sent == []


def test_a_write_without_the_csrf_token_is_refused_before_the_chart_is_read(
    client: FlaskClient, fake: FakeGateway
) -> None:
    context_id = _launched(client, PLAN_PATIENT)
    form = _write_form(client.get(f"/p/{context_id}/").text)
    del form["csrf_token"]
    answer = client.post(f"/p/{context_id}/write", data=form)
    assert answer.status_code == 403
    assert CSRF_REFUSED in page_text(answer.text)
    assert fake.reads == [PLAN_PATIENT]  # the page's read only: the POST read nothing
    assert fake.sent == []


def test_a_write_from_another_site_is_refused_even_with_the_token(
    client: FlaskClient, fake: FakeGateway
) -> None:
    context_id = _launched(client, PLAN_PATIENT)
    form = _write_form(client.get(f"/p/{context_id}/").text)
    answer = client.post(
        f"/p/{context_id}/write", data=form, headers={"Origin": "https://evil.example.org"}
    )
    assert answer.status_code == 403
    assert "sent from another site" in page_text(answer.text)
    assert fake.sent == []


def test_the_confirmed_write_sends_one_transaction_after_one_read(
    client: FlaskClient, fake: FakeGateway
) -> None:
    context_id = _launched(client, PLAN_PATIENT)
    form = _write_form(client.get(f"/p/{context_id}/").text)
    answer = client.post(f"/p/{context_id}/write", data=form)
    assert answer.status_code == 200, page_text(answer.text)[:400]
    assert "Plan written to the chart" in page_text(answer.text)
    assert fake.reads == [PLAN_PATIENT, PLAN_PATIENT]  # the page's read, then the write's one
    assert [kind for kind, _ in fake.sent] == ["transaction"]
    bundle = fake.sent[0][1]
    kinds = {e["resource"]["resourceType"] for e in bundle["entry"]}
    assert {"CarePlan", "MedicationRequest", "Task", "Provenance"} <= kinds
    assert all(
        e["resource"].get("subject", {}).get("reference", f"Patient/{PLAN_PATIENT}")
        == f"Patient/{PLAN_PATIENT}"
        for e in bundle["entry"]
        if e["resource"]["resourceType"] != "Provenance"
    )


def test_the_follow_up_page_of_a_patient_on_a_plan(client: FlaskClient, fake: FakeGateway) -> None:
    context_id = _launched(client, FOLLOWUP_PATIENT)
    answer = client.get(f"/p/{context_id}/followup/")
    assert answer.status_code == 200
    assert "<title>Follow-up" in answer.text
    assert 'id="decision"' in answer.text or "liver assessment" in page_text(answer.text).lower()
    assert fake.reads == [FOLLOWUP_PATIENT]
    landing = client.get(f"/p/{context_id}/")  # the launch lands on the follow-up view
    assert landing.status_code == 200 and "<title>Follow-up" in landing.text
    assert fake.reads == [FOLLOWUP_PATIENT, FOLLOWUP_PATIENT]
    assert fake.sent == []


def test_a_printed_document_reads_the_chart_once_and_sends_nothing(
    client: FlaskClient, fake: FakeGateway
) -> None:
    context_id = _launched(client, PLAN_PATIENT)
    answer = client.get(f"/p/{context_id}/print/pharmacy")
    assert answer.status_code == 200
    text = page_text(answer.text)
    assert "Pharmacy verification sheet" in text and "Kit NDC 71894-123-03" in text
    assert fake.reads == [PLAN_PATIENT]
    assert fake.sent == []


def test_an_unknown_launch_is_a_session_ended_page(client: FlaskClient, fake: FakeGateway) -> None:
    answer = client.get("/p/no-such-launch/")
    assert answer.status_code == 401
    assert "relaunch the app" in page_text(answer.text)
    assert fake.reads == []


def _post_rules(app: Flask) -> list[tuple[str, str]]:
    """Every (endpoint, URL) whose rule takes a state-changing method, arguments filled in."""
    found = []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            if rule.methods and rule.methods & CHECKED_METHODS:
                values = {name: "x" for name in rule.arguments}
                found.append((rule.endpoint, url_for(rule.endpoint, **values)))
    return found


def test_every_state_changing_route_is_csrf_checked_or_explicitly_exempt(
    app: Flask, client: FlaskClient, fake: FakeGateway
) -> None:
    rules = _post_rules(app)
    assert {"plan.write", "followup.decide", "launch.open_server"} <= {e for e, _ in rules}
    assert exempt_endpoints(app) == EXEMPT, "a new CSRF exemption: add it to EXEMPT, with why"
    _launched(client, PLAN_PATIENT)
    for endpoint, url in rules:
        answer = client.post(url, data={"fingerprint": "x"})
        if endpoint in EXEMPT:  # its own checks answer (no such service, no JWT), not CSRF's
            assert answer.status_code in (401, 404), endpoint
            assert CSRF_REFUSED not in answer.text, endpoint
        else:
            assert answer.status_code == 403, endpoint
            assert CSRF_REFUSED in page_text(answer.text), endpoint
    assert fake.reads == [] and fake.sent == []


def test_a_new_post_view_is_checked_without_asking(app: Flask, client: FlaskClient) -> None:
    app.add_url_rule("/probe", "probe", lambda: "done", methods=["POST"])
    assert client.post("/probe").status_code == 403
    with client.session_transaction() as session:
        session["csrf"] = "t" * 43
    answer = client.post("/probe", data={"csrf_token": "t" * 43})
    assert (answer.status_code, answer.text) == (200, "done")
