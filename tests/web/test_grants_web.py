"""The plan and follow-up pages with partial SMART grants: no write offered, POSTs refused.

The chart comes from an in-memory stand-in for the EHR (the synthetic patients; for the
follow-up, the offline chart of tests/fhir/test_followup_write.py with the plan written by the
app): the gateway below answers `read_patient` only, and records any other call, so "nothing
was sent" is checked, not assumed. The launch context is the real one, kept in the app's
server-side session, so the scopes are read exactly as the pages read them. The launch itself
(/launch then /callback) is driven with the token endpoint faked by `responses`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from flask.testing import FlaskClient

from smart_app.fhir.gateway import PatientRecord
from smart_app.sandbox.patients import synthetic_patients
from smart_app.web import context, followup, grants, plan
from tests.fhir.test_followup_write import _fresh_chart
from tests.smartsandbox import TODAY, field
from tests.web.planner_app import ISS, TOKEN_URL, launch_context, serve_through, store_context
from tests.web.test_smart import capability_statement

AUTHORIZE = "https://ehr.example.org/oauth/authorize"
PLAN_PATIENT = "zs-eligible-4-2kg"
FOLLOWUP_PATIENT = "zs-day-28"
"""Day 28: the liver decision is due and the day-28 draws have resulted."""
FULL = "launch openid fhirUser patient/*.cruds"
READ_ONLY = "launch openid fhirUser patient/*.rs"
READ_ONLY_V1 = "launch openid fhirUser patient/*.read"
NO_PROVENANCE = "patient/*.rs " + " ".join(
    f"patient/{k}.cu" for k in ("MedicationRequest", "CarePlan", "Task", "DetectedIssue")
)
TASKS_ONLY = "patient/*.read patient/Task.write patient/CarePlan.write patient/Provenance.write"
"""SMART v1: enough to complete Tasks, not to record the decision (no MedicationRequest)."""


class ChartGateway:
    """Answers reads from an in-memory chart; any other call is recorded and fails."""

    def __init__(self, read: Callable[[str], PatientRecord]) -> None:
        self._read = read
        self.sent: list[str] = []

    def read_patient(self, patient_id: str, **_: Any) -> PatientRecord:
        return self._read(patient_id)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        self.sent.append(name)
        raise AssertionError(f"gateway.{name} was called: something was sent to the EHR")


def _synthetic_record(patient_id: str) -> PatientRecord:
    (patient,) = [p for p in synthetic_patients(today=TODAY) if p.patient_id == patient_id]
    return PatientRecord(patient_id=patient_id, resources=[dict(r) for r in patient.resources])


def chart_reader(on_plan: str) -> Callable[[str], PatientRecord]:
    """Reads `on_plan` from the offline chart with the plan written by the app (one chart for
    the reader's life), any other patient as the sandbox makes it."""
    chart = _fresh_chart(on_plan)

    def read(patient_id: str) -> PatientRecord:
        if patient_id == on_plan:
            return chart.read_patient(patient_id)
        return _synthetic_record(patient_id)

    return read


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[ChartGateway]:
    """The EHR stand-in behind both pages, for the plan patient and the follow-up patient."""
    fake = ChartGateway(chart_reader(FOLLOWUP_PATIENT))
    serve_through(monkeypatch, fake, plan, followup)
    yield fake


def _launched(client: FlaskClient, patient: str, scope: str | None) -> str:
    """A launch context in the client's session; None scope: an open server (no token, no
    user)."""
    user = "" if scope is None else "Practitioner/dr-lee"
    return store_context(client, launch_context(patient, scope=scope, user=user))


def _csrf(client: FlaskClient) -> str:
    return field(client.get("/launch.html").text, "csrf_token")


def _forms(page: str) -> list[str]:
    """The action of every POST form on a page."""
    return re.findall(r'<form method="post" action="([^"]+)"', page)


# --- the plan page --------------------------------------------------------------------------


def test_a_full_grant_offers_the_write_of_exactly_the_types_the_grant_check_knows(
    client: FlaskClient, gateway: ChartGateway
) -> None:
    context_id = _launched(client, PLAN_PATIENT, FULL)
    page = client.get(f"/p/{context_id}/").text
    assert 'id="write-plan"' in page
    assert _forms(page) == [f"/p/{context_id}/write"]
    assert 'id="write-refused"' not in page
    listed = page.split('id="write-details"', 1)[1].split("</details>", 1)[0]
    shown = set(re.findall(r'<td class="kind">([A-Za-z]+), ', listed))
    assert shown and shown <= set(grants.WRITE_TYPES[grants.Write.PLAN]), shown
    assert gateway.sent == []


@pytest.mark.parametrize("scope", [READ_ONLY, READ_ONLY_V1, "launch openid fhirUser", ""])
def test_a_read_only_grant_offers_no_write_and_says_why(
    client: FlaskClient, gateway: ChartGateway, scope: str
) -> None:
    context_id = _launched(client, PLAN_PATIENT, scope)
    answer = client.get(f"/p/{context_id}/")
    assert answer.status_code == 200
    page = answer.text
    assert "Eligibility on" in page and "Kit NDC" in page  # the plan itself is all there
    assert 'id="write-plan"' not in page
    assert "Write plan to chart" not in page
    assert _forms(page) == []
    assert 'name="acknowledge"' not in page
    refused = page.split('id="write-refused"', 1)[1].split("</div>", 1)[0]
    text = unescape(re.sub(r"<[^>]+>", "", refused))
    assert "Writing is not offered with this launch's access." in text
    assert "read-only access, so the app cannot write the plan to the chart" in text
    for kind in grants.WRITE_TYPES[grants.Write.PLAN]:
        assert kind in text
    assert f"Scopes granted: {scope or 'none'}" in " ".join(text.split())
    assert gateway.sent == []


def test_a_grant_without_provenance_write_names_it(
    client: FlaskClient, gateway: ChartGateway
) -> None:
    context_id = _launched(client, PLAN_PATIENT, NO_PROVENANCE)
    page = unescape(client.get(f"/p/{context_id}/").text)
    assert 'id="write-plan"' not in page
    assert "did not give this launch the access it needs to write the plan to the chart" in page
    assert "permission to create and update Provenance." in page


def test_a_blocked_plan_says_blocked_whatever_the_grant(
    client: FlaskClient, gateway: ChartGateway
) -> None:
    context_id = _launched(client, "zs-aav9-titer-1-100", READ_ONLY)
    page = client.get(f"/p/{context_id}/").text
    assert "Writing is blocked: the plan is deferred" in page
    assert 'id="write-refused"' not in page


def test_an_open_server_has_no_scopes_to_check(client: FlaskClient, gateway: ChartGateway) -> None:
    context_id = _launched(client, PLAN_PATIENT, None)
    page = client.get(f"/p/{context_id}/").text
    assert 'id="write-plan"' in page
    assert 'id="write-refused"' not in page


@pytest.mark.parametrize("scope", [READ_ONLY, NO_PROVENANCE])
def test_the_write_post_is_refused_and_sends_nothing(
    client: FlaskClient, gateway: ChartGateway, scope: str
) -> None:
    """Even the exact form a full grant would show is refused on a partial grant."""
    full = client.get(f"/p/{_launched(client, PLAN_PATIENT, FULL)}/").text
    form = {
        "csrf_token": field(full, "csrf_token"),
        "fingerprint": field(full, "fingerprint"),
        "infusion_date": field(full, "infusion_date"),
    }
    context_id = _launched(client, PLAN_PATIENT, scope)
    answer = client.post(f"/p/{context_id}/write", data=form)
    assert answer.status_code == 403
    page = unescape(answer.text)
    alert = page.split('role="alert"', 1)[1].split("</section>", 1)[0]
    assert "Not written" in alert
    assert "Nothing was written. The EHR" in alert
    assert "cannot write the plan" in alert or "needs to write the plan" in alert
    assert "Plan written to the chart" not in page
    assert _forms(page) == []
    assert gateway.sent == []


def test_the_write_post_still_needs_csrf(client: FlaskClient, gateway: ChartGateway) -> None:
    context_id = _launched(client, PLAN_PATIENT, READ_ONLY)
    answer = client.post(f"/p/{context_id}/write", data={"csrf_token": "forged"})
    assert answer.status_code == 403
    assert "security token" in answer.text
    assert gateway.sent == []


# --- the follow-up page ---------------------------------------------------------------------


def test_a_full_grant_offers_the_decision_and_the_task_confirmation(
    client: FlaskClient, gateway: ChartGateway
) -> None:
    context_id = _launched(client, FOLLOWUP_PATIENT, FULL)
    page = client.get(f"/p/{context_id}/followup/").text
    assert 'id="decision-form"' in page and 'id="tasks-form"' in page
    assert 'id="decision-refused"' not in page and 'id="tasks-refused"' not in page


@pytest.mark.parametrize("scope", [READ_ONLY, READ_ONLY_V1])
def test_a_read_only_grant_offers_neither_follow_up_write(
    client: FlaskClient, gateway: ChartGateway, scope: str
) -> None:
    context_id = _launched(client, FOLLOWUP_PATIENT, scope)
    answer = client.get(f"/p/{context_id}/followup/")
    assert answer.status_code == 200
    page = unescape(answer.text)
    assert "Liver assessment: the day-30 decision" in page  # the proposal is still shown
    assert _forms(page) == []
    assert 'id="record-decision"' not in page and 'id="confirm-tasks"' not in page
    decision = page.split('id="decision-refused"', 1)[1].split("</div>", 1)[0]
    assert "Recording the decision is not offered with this launch's access." in decision
    assert "read-only access, so the app cannot record the day-30 liver assessment decision" in (
        decision
    )
    tasks = page.split('id="tasks-refused"', 1)[1].split("</div>", 1)[0]
    assert "Confirming Tasks is not offered with this launch's access." in tasks
    assert "cannot record completed Tasks" in tasks
    assert gateway.sent == []


def test_a_task_only_grant_offers_tasks_but_not_the_decision(
    client: FlaskClient, gateway: ChartGateway
) -> None:
    context_id = _launched(client, FOLLOWUP_PATIENT, TASKS_ONLY)
    page = unescape(client.get(f"/p/{context_id}/followup/").text)
    assert _forms(page) == [f"/p/{context_id}/followup/tasks"]
    assert 'id="tasks-refused"' not in page
    decision = page.split('id="decision-refused"', 1)[1].split("</div>", 1)[0]
    assert "permission to create and update MedicationRequest, ServiceRequest" in decision


@pytest.mark.parametrize(
    ("action", "scope", "what"),
    [
        ("tasks", READ_ONLY, "record completed Tasks"),
        ("decision", READ_ONLY, "record the day-30 liver assessment decision"),
        ("decision", TASKS_ONLY, "record the day-30 liver assessment decision"),
    ],
)
def test_follow_up_posts_are_refused_and_send_nothing(
    client: FlaskClient, gateway: ChartGateway, action: str, scope: str, what: str
) -> None:
    full = client.get(f"/p/{_launched(client, FOLLOWUP_PATIENT, FULL)}/followup/").text
    fingerprint = re.search(
        rf'id="{action}-form">\s*<input[^>]*>\s*<input type="hidden" name="fingerprint" '
        r'value="([^"]*)"',
        full,
    )
    assert fingerprint, f"no {action} form on the full-grant page"
    form = {"csrf_token": field(full, "csrf_token"), "fingerprint": fingerprint.group(1)}
    if action == "decision":
        form["exam"] = "normal"
    context_id = _launched(client, FOLLOWUP_PATIENT, scope)
    answer = client.post(f"/p/{context_id}/followup/{action}", data=form)
    assert answer.status_code == 403
    page = unescape(answer.text)
    error = page.split('id="error"', 1)[1].split("</section>", 1)[0]
    assert "Not written" in error
    assert "Nothing was written. The EHR" in error
    assert what in error
    assert 'id="notice"' not in page
    assert gateway.sent == []


# --- the launch: requested scope, fhirContext and fhirUser into the launch context ----------


def test_a_launch_keeps_the_asked_scope_fhir_context_and_the_token_responses_fhir_user(
    client: FlaskClient,
) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as fake:
        fake.get(f"{ISS}/.well-known/smart-configuration", status=404)
        fake.get(f"{ISS}/metadata", json=capability_statement(AUTHORIZE, TOKEN_URL))
        started = client.get(f"/launch?iss={ISS}&launch=L-1")
        assert started.status_code == 302
        asked = {k: v[0] for k, v in parse_qs(urlsplit(started.headers["Location"]).query).items()}
        assert "patient/Task.read" in asked["scope"].split()
        assert "patient/Task.write" in asked["scope"].split()
        assert "*" not in asked["scope"]
        fake.post(
            TOKEN_URL,
            json={
                "access_token": "ACCESS-" + "y" * 40,
                "token_type": "Bearer",
                "expires_in": 3600,
                "patient": PLAN_PATIENT,
                "fhirUser": "Practitioner/dr-lee",
                "fhirContext": [
                    {"reference": "Encounter/enc-1"},
                    {"canonical": "http://example.org/PlanDefinition/zolgensma|1"},
                ],
            },
        )
        done = client.get(f"/callback?code=C-1&state={asked['state']}")
    assert done.status_code == 303
    context_id = done.headers["Location"].rstrip("/").split("/")[-1]
    with client.session_transaction() as session:
        stored = session["contexts"][context_id]
    launched = context.LaunchContext.from_stored(stored)
    assert launched.scope == asked["scope"]  # no scope in the answer: what was asked
    assert launched.fhir_user == "Practitioner/dr-lee"
    assert launched.context_references("Encounter") == ("Encounter/enc-1",)
    assert launched.fhir_context[1].canonical == "http://example.org/PlanDefinition/zolgensma|1"
    assert grants.refusal(launched.grants(), grants.Write.PLAN) is None
    assert "y" * 40 not in done.text


def test_the_fhir_context_survives_the_session_store(
    client: FlaskClient, gateway: ChartGateway
) -> None:
    from smart_app.web.smart import ContextItem

    item = ContextItem(reference="Encounter/enc-3", role="launch")
    launched = dataclasses.replace(
        context.LaunchContext(iss=ISS, patient=PLAN_PATIENT), fhir_context=(item,)
    )
    with client.application.test_request_context():
        context_id = context.open_context(launched)
        assert context.load_context(context_id) == launched
    # and through a real request: stored (as msgpack lists of dicts), then loaded
    with client.session_transaction() as session:
        session["contexts"] = {"c1": dataclasses.asdict(launched)}
    assert client.get("/p/c1/").status_code == 200
    with client.session_transaction() as session:
        loaded = context.LaunchContext.from_stored(session["contexts"]["c1"])
    assert loaded == launched
    assert loaded.context_references("Encounter") == ("Encounter/enc-3",)
