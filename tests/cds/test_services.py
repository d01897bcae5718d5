"""The CDS endpoints without a FHIR server: discovery, the client JWT on every POST, request
checks (400 with a message), prefetch-only reads (412 when short), feedback logged without PHI."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from smart_app import create_app
from smart_app.cds.discovery import PATIENT_ID, SERVICES, prefetch_templates, prefetch_urls
from smart_app.cds.feedback import Outcome
from smart_app.cds.orders import ndc11, order_date, ordered_ndc
from smart_app.cds.routes import EXTENSION
from smart_app.config import web_settings
from smart_app.fhir.gateway import FhirNoServer, NoServerGateway, patient_searches
from smart_app.web.state import WebState
from tests.cds.contract import check_response
from tests.cds.signing import CdsTestClient

PUBLIC_URL = "https://app.example.org"
REGISTERED = "https://ehr.example.org/fhir"
TODAY = dt.date(2026, 11, 21)
VIEW = "/cds-services/zolgensma-patient-view"


@pytest.fixture(scope="module")
def ehr() -> CdsTestClient:
    """The calling EHR's key (one per module: RSA generation is slow)."""
    return CdsTestClient()


@pytest.fixture
def client(ehr: CdsTestClient, tmp_path: Path) -> Iterator[FlaskClient]:
    """The app with one registered CDS client."""
    settings = web_settings(
        {},
        public_url=PUBLIC_URL,
        secret_key="k" * 40,
        registrations={},
        session_dir=tmp_path / "sessions",
        cds_clients={ehr.iss: ehr.registration(fhir_servers=(REGISTERED,))},
    )
    app = create_app({"STATE": WebState(settings=settings, today=lambda: TODAY), "TESTING": True})
    yield app.test_client()


def body(**changes: Any) -> dict[str, Any]:
    """A patient-view request body, with fields changed or removed (None)."""
    out: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"userId": "Practitioner/1", "patientId": "p1"},
    }
    out.update(changes)
    return {k: v for k, v in out.items() if v is not None}


def post(client: FlaskClient, ehr: CdsTestClient, path: str, payload: Any) -> Any:
    """POST JSON with a fresh signed JWT for the path's URL."""
    auth = ehr.authorization(aud=PUBLIC_URL + path)
    return client.post(path, json=payload, headers={"Authorization": auth})


# Discovery ----------------------------------------------------------------------------------


def test_discovery_lists_the_three_services_publicly(client: FlaskClient) -> None:
    """GET needs no JWT, allows any origin, and lists id, hook, title, description, prefetch."""
    answer = client.get("/cds-services")
    assert answer.status_code == 200
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    services = answer.get_json()["services"]
    assert [(s["id"], s["hook"]) for s in services] == [
        ("zolgensma-patient-view", "patient-view"),
        ("zolgensma-order-select", "order-select"),
        ("zolgensma-order-sign", "order-sign"),
    ]
    for service in services:
        assert service["title"] and service["description"]
        assert service["prefetch"] == prefetch_templates()
        assert all(PATIENT_ID in url for url in service["prefetch"].values())


def test_prefetch_covers_every_search_the_gateway_sends() -> None:
    """The templates are the gateway's searches without date floors, plus its titer fallback,
    the id unescaped in the template and substituted back exactly."""
    urls = prefetch_urls("p-1.x")
    searches = patient_searches("p-1.x")
    assert list(urls.values())[: len(searches)] == searches
    assert urls["laboratoryResults"] == (
        "Observation?patient=p-1.x&category=laboratory&_sort=-date&_count=100"
    )
    for key, template in prefetch_templates().items():
        assert template.replace(PATIENT_ID, "p-1.x") == urls[key]
    assert not any("date=ge" in url for url in urls.values())


# Security and request checks ----------------------------------------------------------------


def test_every_post_needs_the_clients_jwt(client: FlaskClient, ehr: CdsTestClient) -> None:
    """No JWT, a JWT for another service's URL, or a replayed one: 401 JSON."""
    assert client.post(VIEW, json=body()).status_code == 401
    other = ehr.authorization(aud=f"{PUBLIC_URL}/cds-services/zolgensma-order-sign")
    answer = client.post(VIEW, json=body(), headers={"Authorization": other})
    assert answer.status_code == 401
    assert answer.get_json()["error"]
    header = ehr.authorization(aud=PUBLIC_URL + VIEW, jti="once")
    first = client.post(
        VIEW, json=body(prefetch={"patient": None}), headers={"Authorization": header}
    )
    assert first.status_code == 412
    again = client.post(VIEW, json=body(), headers={"Authorization": header})
    assert again.status_code == 401
    assert "replay" in again.get_json()["error"]
    feedback = client.post(f"{VIEW}/feedback", json={"feedback": []})
    assert feedback.status_code == 401


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"hook": "order-sign"}, "hook must be 'patient-view'"),
        ({"hookInstance": None}, "hookInstance"),
        ({"context": {"patientId": "not a/fhir id"}}, "context.patientId"),
        ({"context": None}, "context must be a JSON object"),
        ({"fhirServer": "https://elsewhere.example/fhir"}, "fhirServer is not a FHIR server"),
        (
            {"fhirServer": REGISTERED, "fhirAuthorization": {"token_type": "Bearer"}},
            "fhirAuthorization.access_token",
        ),
        ({"prefetch": {"patient": {"resourceType": "Patient", "id": "p2"}}}, "prefetch.patient"),
        ({"prefetch": {"labs": {"resourceType": "Bundle", "type": "batch"}}}, "prefetch.labs"),
    ],
)
def test_bad_requests_are_400_with_a_message(
    client: FlaskClient, ehr: CdsTestClient, changes: dict[str, Any], words: str
) -> None:
    """A request the service cannot take: 400 JSON naming what is wrong, never a traceback."""
    answer = post(client, ehr, VIEW, body(**changes))
    assert answer.status_code == 400, answer.text
    assert words in answer.get_json()["error"]
    assert "Traceback" not in answer.text


def test_not_json_and_unknown_service(client: FlaskClient, ehr: CdsTestClient) -> None:
    """A form body is 400; an unknown service id is 404, both JSON."""
    auth = ehr.authorization(aud=PUBLIC_URL + VIEW)
    answer = client.post(VIEW, data="hook=patient-view", headers={"Authorization": auth})
    assert answer.status_code == 400 and "JSON" in answer.get_json()["error"]
    answer = post(client, ehr, "/cds-services/nothing-here", body())
    assert answer.status_code == 404 and answer.is_json


def test_order_hooks_need_draft_orders(client: FlaskClient, ehr: CdsTestClient) -> None:
    """order-sign without a draftOrders Bundle: 400."""
    payload = body(hook="order-sign")
    answer = post(client, ehr, "/cds-services/zolgensma-order-sign", payload)
    assert answer.status_code == 400
    assert "draftOrders" in answer.get_json()["error"]


def test_without_fhir_server_an_empty_prefetch_is_412(
    client: FlaskClient, ehr: CdsTestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing to read from and nothing prefetched: 412 (CDS Hooks: the data cannot be had)."""
    caplog.set_level(logging.DEBUG)
    answer = post(client, ehr, VIEW, body())
    assert answer.status_code == 412
    assert "fhirServer" in answer.get_json()["error"]
    assert "p1" not in caplog.text


def test_the_token_goes_nowhere_without_a_registered_server() -> None:
    """A gateway without a server raises before sending anything."""
    gateway = NoServerGateway()
    with pytest.raises(FhirNoServer):
        gateway.read_patient("p1")
    with pytest.raises(FhirNoServer):
        gateway.create({"resourceType": "Task"})


# Feedback -----------------------------------------------------------------------------------


def test_feedback_is_logged_without_phi(
    client: FlaskClient, ehr: CdsTestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """One line per entry with ids, outcome and reason code; the user's comment never."""
    caplog.set_level(logging.INFO, logger="smart_app.cds")
    card, suggestion = (
        "4e0a3a1e-3283-4575-ab82-028d55fe2719",
        "e56e1945-20b3-4393-8503-a1a20fd73152",
    )
    payload = {
        "feedback": [
            {
                "card": card,
                "outcome": "accepted",
                "acceptedSuggestions": [{"id": suggestion}],
                "outcomeTimestamp": "2026-11-21T15:30:00Z",
            },
            {
                "card": card,
                "outcome": "overridden",
                "overrideReason": {
                    "reason": {
                        "system": "https://zolgensma-smart.example/fhir/CodeSystem/cds-override-reason",
                        "code": "weight-rechecked",
                    },
                    "userComment": "Amara Okafor-Test p1 reweighed at 4.3 kg",
                },
                "outcomeTimestamp": "2026-11-21T15:31:00Z",
            },
        ]
    }
    answer = post(client, ehr, f"{VIEW}/feedback", payload)
    assert answer.status_code == 200, answer.text
    lines = [r.getMessage() for r in caplog.records if r.name == "smart_app.cds"]
    assert lines == [
        f"cds feedback: service=zolgensma-patient-view card={card} outcome=accepted "
        f"suggestions={suggestion} reason=-",
        f"cds feedback: service=zolgensma-patient-view card={card} outcome=overridden "
        "suggestions=- reason=weight-rechecked",
    ]
    assert "Okafor" not in caplog.text and "reweighed" not in caplog.text
    kept = client.application.extensions[EXTENSION].feedback
    assert [item.outcome for item in kept] == [Outcome.ACCEPTED, Outcome.OVERRIDDEN]


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ({"card": "Amara Okafor-Test", "outcome": "overridden"}, "card must be a UUID"),
        ({"outcome": "accepted", "acceptedSuggestions": []}, "needs acceptedSuggestions"),
        ({"outcome": "maybe"}, "outcome"),
        ({"outcome": "overridden", "outcomeTimestamp": "yesterday"}, "outcomeTimestamp"),
        (
            {"outcome": "overridden", "overrideReason": {"reason": {"code": "free text here"}}},
            "overrideReason.reason.code",
        ),
    ],
)
def test_bad_feedback_is_400(
    client: FlaskClient, ehr: CdsTestClient, entry: dict[str, Any], words: str
) -> None:
    """Feedback whose fields are not ids, codes or timestamps is refused (nothing logged)."""
    item = {
        "card": "4e0a3a1e-3283-4575-ab82-028d55fe2719",
        "outcomeTimestamp": "2026-11-21T15:30:00Z",
        **entry,
    }
    answer = post(client, ehr, f"{VIEW}/feedback", {"feedback": [item]})
    assert answer.status_code == 400
    assert words in answer.get_json()["error"]
    assert not client.application.extensions[EXTENSION].feedback


# Draft orders -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "eleven"),
    [
        ("71894-123-03", "71894012303"),
        ("71894-0123-03", "71894012303"),
        ("71894012303", "71894012303"),
        ("7189412303", "71894012303"),
        ("0002-1433-80", "00002143380"),
        ("12345-678-9", None),
        ("1234567890", None),
        ("71894-12a-03", None),
    ],
)
def test_ndc11_reads_every_format(code: str, eleven: str | None) -> None:
    """4-4-2, 5-3-2, 5-4-2 with dashes, 11 digits, and 10 digits for ZOLGENSMA (5-3-2)."""
    assert ndc11(code) == eleven


def test_ordered_ndc_and_order_date() -> None:
    """The ZOLGENSMA NDC among codings; the date from the timing event, the validity period or
    authoredOn, in that order."""
    concept = {
        "coding": [
            {"system": "http://hl7.org/fhir/sid/ndc", "code": "0002-1433-80"},
            {"system": "http://hl7.org/fhir/sid/ndc", "code": "71894012002"},
        ]
    }
    assert ordered_ndc(concept) == "71894012002"
    order: dict[str, Any] = {"authoredOn": "2026-11-21T09:00:00-05:00"}
    assert order_date(order) == dt.date(2026, 11, 21)
    order["dispenseRequest"] = {"validityPeriod": {"start": "2026-11-23"}}
    assert order_date(order) == dt.date(2026, 11, 23)
    order["dosageInstruction"] = [{"timing": {"event": ["2026-11-25T08:00:00Z"]}}]
    assert order_date(order) == dt.date(2026, 11, 25)


def test_services_are_unique() -> None:
    """Each id once."""
    assert len({s.id for s in SERVICES}) == len(SERVICES)


def empty_chart(pid: str) -> dict[str, Any]:
    """A full prefetch of a chart holding only the Patient (every search empty)."""
    out: dict[str, Any] = {
        key: {"resourceType": "Bundle", "type": "searchset", "entry": []}
        for key in prefetch_templates()
    }
    out["patient"] = {"resourceType": "Patient", "id": pid, "birthDate": "2026-09-01"}
    return out


def test_a_full_prefetch_needs_no_fhir_server(client: FlaskClient, ehr: CdsTestClient) -> None:
    """Everything prefetched: answered without fhirServer; no SMA on the chart: no card."""
    answer = post(client, ehr, VIEW, body(prefetch=empty_chart("p1")))
    assert answer.status_code == 200, answer.text
    assert check_response(answer.get_json()) == []


def test_malformed_draft_orders_still_get_cards(client: FlaskClient, ehr: CdsTestClient) -> None:
    """A draft ZOLGENSMA order with ill-typed fields is read as far as it goes: the blocking
    findings of an empty chart come back as a critical card, no error."""
    draft = {
        "resourceType": "MedicationRequest",
        "id": "odd",
        "intent": ["order"],
        "medicationCodeableConcept": {"text": "Zolgensma kit"},
        "medicationReference": "Medication/1",
        "dosageInstruction": "tomorrow",
        "dispenseRequest": [1],
        "subject": "Patient/p1",
    }
    payload = body(
        hook="order-sign",
        prefetch=empty_chart("p1"),
        context={
            "patientId": "p1",
            "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": draft}, 7]},
        },
    )
    answer = post(client, ehr, "/cds-services/zolgensma-order-sign", payload)
    assert answer.status_code == 200, answer.text
    cards = check_response(answer.get_json())
    assert "critical" in [c["indicator"] for c in cards]


def test_large_prefetch_and_an_operation_outcome_for_an_optional_search(
    client: FlaskClient, ehr: CdsTestClient
) -> None:
    """A prefetch well above the web forms' 64 KiB limit is read; an OperationOutcome for the
    titer by text (a search the read can do without) stands for its refusal, not a 412; one for
    a search it needs sends the service to the server, which this request has not got."""
    chart = empty_chart("p1")
    chart["titersByText"] = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "not-supported", "diagnostics": "x" * 100_000}],
    }
    answer = post(client, ehr, VIEW, body(prefetch=chart))
    assert answer.status_code == 200, answer.text
    chart["conditions"] = chart["titersByText"]
    answer = post(client, ehr, VIEW, body(prefetch=chart))
    assert answer.status_code == 412
