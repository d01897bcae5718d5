"""The sandbox EHR's /fhir gateway in front of a real sekmet server."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from smart_app.sandbox.ehr import create_ehr
from smart_app.sandbox.settings import LauncherPatient
from tests import fhirserver
from tests.sandbox.test_oauth import (
    FHIR,
    FakeClock,
    authorize,
    ehr_token,
    exchange,
    make_settings,
    pkce,
    redirect_params,
)

pytestmark = pytest.mark.integration
"""A real sekmet server behind the gateway (and a recording HTTP server for one test)."""

APP_SYSTEM = "urn:example:sandbox-gateway-test"


@pytest.fixture
def ehr(fhir_base: str, two_patients: tuple[str, str]) -> Flask:
    """The sandbox EHR in front of the server."""
    mine, other = two_patients
    patients = (
        LauncherPatient(mine, "Ada Example", "2026-06-10", "eligible"),
        LauncherPatient(other, "Bo Other", "2026-06-10", "eligible"),
    )
    return create_ehr(make_settings(fhir_base, patients))


@pytest.fixture
def client(ehr: Flask) -> FlaskClient:
    """The app's HTTP client."""
    return ehr.test_client()


def bearer(token: dict[str, Any]) -> dict[str, str]:
    """The Authorization header of a token response."""
    return {"Authorization": f"Bearer {token['access_token']}"}


def fhir_json(body: Any) -> dict[str, str]:
    """Keyword arguments for a FHIR JSON body."""
    return {"data": json.dumps(body), "content_type": "application/fhir+json"}


def user_token(client: FlaskClient, scope: str) -> dict[str, Any]:
    """A token without a patient (user scopes), via the standalone flow."""
    verifier, challenge = pkce()
    code = redirect_params(authorize(client, scope=scope, challenge=challenge))["code"]
    answer = exchange(client, code, verifier)
    assert answer.status_code == 200
    return answer.get_json()


def marker() -> str:
    """A unique identifier value, to find what a test wrote."""
    return uuid.uuid4().hex


def written(fhir_base: str, kind: str, value: str) -> list[dict[str, Any]]:
    """Resources on the real server carrying the test identifier (or code text)."""
    by_id = fhirserver.search(fhir_base, f"{kind}?identifier={APP_SYSTEM}|{value}")
    return by_id


def medication_request(patient: str, value: str) -> dict[str, Any]:
    """A minimal MedicationRequest about `patient`."""
    return {
        "resourceType": "MedicationRequest",
        "identifier": [{"system": APP_SYSTEM, "value": value}],
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {"text": "prednisolone"},
        "subject": {"reference": f"Patient/{patient}"},
    }


def observation(patient: str, value: str) -> dict[str, Any]:
    """A minimal Observation about `patient`."""
    return {
        "resourceType": "Observation",
        "identifier": [{"system": APP_SYSTEM, "value": value}],
        "status": "final",
        "code": {"text": "sandbox gateway test"},
        "subject": {"reference": f"Patient/{patient}"},
    }


# authentication ---------------------------------------------------------------------------


def test_no_token_is_401(client: FlaskClient, two_patients: tuple[str, str]) -> None:
    """Without a bearer token: 401, WWW-Authenticate: Bearer, an OperationOutcome."""
    answer = client.get(f"/fhir/Patient/{two_patients[0]}")
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    body = answer.get_json(force=True)
    assert body["resourceType"] == "OperationOutcome"
    assert client.post("/fhir", **fhir_json({"resourceType": "Bundle"})).status_code == 401


def test_unknown_token_is_401(client: FlaskClient, two_patients: tuple[str, str]) -> None:
    """A token this EHR never issued: 401 invalid_token."""
    answer = client.get(
        f"/fhir/Patient/{two_patients[0]}", headers={"Authorization": "Bearer not-a-token"}
    )
    assert answer.status_code == 401
    assert 'error="invalid_token"' in answer.headers["WWW-Authenticate"]


def test_expired_token_is_401(fhir_base: str, two_patients: tuple[str, str]) -> None:
    """After expires_in on the injected clock."""
    clock = FakeClock(2_000_000_000.0)
    patients = (LauncherPatient(two_patients[0], "Ada", None, "x"),)
    ehr = create_ehr(make_settings(fhir_base, patients, clock=clock))
    token = ehr_token(ehr, two_patients[0])
    client = ehr.test_client()
    url = f"/fhir/Patient/{two_patients[0]}"
    assert client.get(url, headers=bearer(token)).status_code == 200
    clock.now += token["expires_in"]
    assert client.get(url, headers=bearer(token)).status_code == 401


# reads and URL rewriting ------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["launch patient/*.rs", "launch patient/Observation.read"])
def test_search_with_read_scope_and_public_urls(
    ehr: Flask, client: FlaskClient, fhir_base: str, two_patients: tuple[str, str], scope: str
) -> None:
    """.rs and .read search; fullUrl and links show the public base; next pages work."""
    mine = two_patients[0]
    token = ehr_token(ehr, mine, scope=scope)
    answer = client.get(f"/fhir/Observation?patient={mine}&_count=2", headers=bearer(token))
    assert answer.status_code == 200
    page = answer.get_json(force=True)
    assert page["entry"]
    assert all(e["fullUrl"].startswith(f"{FHIR}/Observation/") for e in page["entry"])
    assert all(link["url"].startswith(f"{FHIR}/") for link in page["link"])
    assert fhir_base not in answer.get_data(as_text=True)
    nxt = next(x["url"] for x in page["link"] if x["relation"] == "next")
    parts = urlsplit(nxt)
    second = client.get(f"{parts.path}?{parts.query}", headers=bearer(token))
    assert second.status_code == 200
    assert second.get_json(force=True)["entry"]


def test_read_by_id(ehr: Flask, client: FlaskClient, two_patients: tuple[str, str]) -> None:
    """The launch patient and their resources are readable."""
    mine = two_patients[0]
    token = ehr_token(ehr, mine)
    answer = client.get(f"/fhir/Patient/{mine}", headers=bearer(token))
    assert answer.status_code == 200
    assert answer.headers["ETag"]
    page = client.get(f"/fhir/Observation?patient={mine}", headers=bearer(token))
    some = page.get_json(force=True)["entry"][0]["resource"]
    answer = client.get(f"/fhir/Observation/{some['id']}", headers=bearer(token))
    assert answer.status_code == 200


def test_batch_of_reads(ehr: Flask, client: FlaskClient, two_patients: tuple[str, str]) -> None:
    """A batch of GETs pinned to the patient passes; one about someone else sinks it."""
    mine, other = two_patients
    token = ehr_token(ehr, mine)
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": f"Patient/{mine}"}},
            {"request": {"method": "GET", "url": f"Condition?patient={mine}"}},
        ],
    }
    answer = client.post("/fhir", headers=bearer(token), **fhir_json(batch))
    assert answer.status_code == 200
    assert answer.get_json(force=True)["type"] == "batch-response"
    batch["entry"].append({"request": {"method": "GET", "url": f"Condition?patient={other}"}})
    answer = client.post("/fhir", headers=bearer(token), **fhir_json(batch))
    assert answer.status_code == 403
    assert answer.get_json(force=True)["issue"][0]["expression"] == ["Bundle.entry[2]"]


# writes -----------------------------------------------------------------------------------


def test_write_without_c_scope_never_reaches_the_server(
    ehr: Flask, client: FlaskClient, fhir_base: str, two_patients: tuple[str, str]
) -> None:
    """A MedicationRequest create with read-only scopes: 403, and nothing was written."""
    mine = two_patients[0]
    token = ehr_token(ehr, mine, scope="launch patient/*.rs patient/Observation.c")
    value = marker()
    answer = client.post(
        "/fhir/MedicationRequest",
        headers=bearer(token),
        **fhir_json(medication_request(mine, value)),
    )
    assert answer.status_code == 403
    outcome = answer.get_json(force=True)
    assert outcome["resourceType"] == "OperationOutcome"
    assert "patient/MedicationRequest.c" in outcome["issue"][0]["diagnostics"]
    assert written(fhir_base, "MedicationRequest", value) == []


def test_create_with_c_scope_and_location_rewritten(
    ehr: Flask, client: FlaskClient, fhir_base: str, two_patients: tuple[str, str]
) -> None:
    """With .c the create goes through; Location is on the public base."""
    mine = two_patients[0]
    token = ehr_token(ehr, mine, scope="launch patient/MedicationRequest.c")
    value = marker()
    answer = client.post(
        "/fhir/MedicationRequest",
        headers=bearer(token),
        **fhir_json(medication_request(mine, value)),
    )
    assert answer.status_code == 201, answer.get_data(as_text=True)
    assert answer.headers["Location"].startswith(f"{FHIR}/MedicationRequest/")
    assert len(written(fhir_base, "MedicationRequest", value)) == 1


def test_update_and_delete_need_u_and_d(
    ehr: Flask, client: FlaskClient, fhir_base: str, two_patients: tuple[str, str]
) -> None:
    """PUT needs u, DELETE needs d."""
    mine = two_patients[0]
    value = marker()
    resource = observation(mine, value)
    resource["id"] = f"gw-{value[:12]}"
    status, _ = fhirserver.http_json("PUT", f"{fhir_base}/Observation/{resource['id']}", resource)
    assert status in (200, 201)
    url = f"/fhir/Observation/{resource['id']}"
    reader = ehr_token(ehr, mine, scope="launch patient/Observation.rs")
    assert client.put(url, headers=bearer(reader), **fhir_json(resource)).status_code == 403
    assert client.delete(url, headers=bearer(reader)).status_code == 403
    writer = ehr_token(ehr, mine, scope="launch patient/Observation.ud")
    resource["status"] = "amended"
    assert client.put(url, headers=bearer(writer), **fhir_json(resource)).status_code == 200
    assert written(fhir_base, "Observation", value)[0]["status"] == "amended"
    assert client.delete(url, headers=bearer(writer)).status_code in (200, 204)
    assert written(fhir_base, "Observation", value) == []


def test_transaction_with_one_bad_entry_is_refused_whole(
    ehr: Flask, client: FlaskClient, fhir_base: str, two_patients: tuple[str, str]
) -> None:
    """One entry outside the grant: 403 naming it, and not even the good entries land."""
    mine = two_patients[0]
    token = ehr_token(ehr, mine, scope="launch patient/*.rs patient/Observation.c")
    obs_value, med_value = marker(), marker()
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": observation(mine, obs_value),
                "request": {"method": "POST", "url": "Observation"},
            },
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": medication_request(mine, med_value),
                "request": {"method": "POST", "url": "MedicationRequest"},
            },
        ],
    }
    answer = client.post("/fhir", headers=bearer(token), **fhir_json(bundle))
    assert answer.status_code == 403
    issues = answer.get_json(force=True)["issue"]
    assert len(issues) == 1
    assert issues[0]["expression"] == ["Bundle.entry[1]"]
    assert "MedicationRequest" in issues[0]["diagnostics"]
    assert "patient/MedicationRequest.c" in issues[0]["diagnostics"]
    assert written(fhir_base, "Observation", obs_value) == []
    assert written(fhir_base, "MedicationRequest", med_value) == []


def test_transaction_in_scope_goes_through(
    ehr: Flask, client: FlaskClient, fhir_base: str, two_patients: tuple[str, str]
) -> None:
    """The app's shape (conditional creates + a Provenance over urn:uuid targets) passes."""
    mine = two_patients[0]
    token = ehr_token(ehr, mine, scope="launch patient/*.rs patient/*.c")
    value = marker()
    full_url = f"urn:uuid:{uuid.uuid4()}"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": full_url,
                "resource": medication_request(mine, value),
                "request": {
                    "method": "POST",
                    "url": "MedicationRequest",
                    "ifNoneExist": f"identifier={APP_SYSTEM}|{value}",
                },
            },
            {
                "resource": {
                    "resourceType": "Provenance",
                    "target": [{"reference": full_url}],
                    "recorded": "2026-11-20T10:00:00Z",
                    "agent": [{"who": {"display": "sandbox test"}}],
                },
                "request": {"method": "POST", "url": "Provenance"},
            },
        ],
    }
    answer = client.post("/fhir", headers=bearer(token), **fhir_json(bundle))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    reply = answer.get_json(force=True)
    assert reply["type"] == "transaction-response"
    assert all(e["response"]["location"].startswith(f"{FHIR}/") for e in reply["entry"])
    assert len(written(fhir_base, "MedicationRequest", value)) == 1


# the patient's compartment ----------------------------------------------------------------


def test_other_patients_data_is_refused(
    ehr: Flask, client: FlaskClient, fhir_base: str, two_patients: tuple[str, str]
) -> None:
    """With patient scopes, nothing of another patient: read, search, by id, or write."""
    mine, other = two_patients
    token = ehr_token(ehr, mine, scope="launch patient/*.cruds")
    headers = bearer(token)
    theirs = fhirserver.search(fhir_base, f"Observation?patient={other}&_count=1")[0]
    assert client.get(f"/fhir/Patient/{other}", headers=headers).status_code == 403
    assert client.get(f"/fhir/Observation?patient={other}", headers=headers).status_code == 403
    assert client.get("/fhir/Observation?code=29463-7", headers=headers).status_code == 403
    answer = client.get(f"/fhir/Observation/{theirs['id']}", headers=headers)
    assert answer.status_code == 403
    assert answer.get_json(force=True)["resourceType"] == "OperationOutcome"
    value = marker()
    answer = client.post(
        "/fhir/Observation", headers=headers, **fhir_json(observation(other, value))
    )
    assert answer.status_code == 403
    assert written(fhir_base, "Observation", value) == []
    assert client.delete(f"/fhir/Observation/{theirs['id']}", headers=headers).status_code == 403
    assert fhirserver.http_json("GET", f"{fhir_base}/Observation/{theirs['id']}")[0] == 200


def test_user_scopes_reach_every_patient(
    client: FlaskClient, two_patients: tuple[str, str]
) -> None:
    """user/*.rs (the practitioner's own access) reads any patient."""
    token = user_token(client, "openid fhirUser user/*.rs")
    for patient in two_patients:
        assert client.get(f"/fhir/Patient/{patient}", headers=bearer(token)).status_code == 200


def test_token_without_resource_scopes_reads_nothing(
    client: FlaskClient, two_patients: tuple[str, str]
) -> None:
    """openid fhirUser alone grants no FHIR access."""
    token = user_token(client, "openid fhirUser")
    assert client.get(f"/fhir/Patient/{two_patients[0]}", headers=bearer(token)).status_code == 403


def test_malformed_requests(ehr: Flask, client: FlaskClient, two_patients: tuple[str, str]) -> None:
    """Bodies that are not JSON or not a matching resource, and unsupported shapes: 400."""
    token = ehr_token(ehr, two_patients[0], scope="launch user/*.*")
    headers = bearer(token)
    answer = client.post(
        "/fhir/Observation", headers=headers, data="{nope", content_type="application/fhir+json"
    )
    assert answer.status_code == 400
    answer = client.post(
        "/fhir/Observation", headers=headers, **fhir_json({"resourceType": "Patient"})
    )
    assert answer.status_code == 400
    assert (
        client.post(
            "/fhir", headers=headers, **fhir_json({"resourceType": "Bundle", "type": "collection"})
        ).status_code
        == 400
    )
    assert client.get("/fhir/Patient/x/$everything", headers=headers).status_code == 400


# the upstream connection ------------------------------------------------------------------


@contextlib.contextmanager
def recording_server() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A stand-in FHIR server that records request headers and answers with its own URLs."""
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        """Answer every GET with a Patient whose link uses the server's own base."""

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

        def do_GET(self) -> None:
            """Record and answer."""
            seen.append(dict(self.headers.items()))
            base = f"http://127.0.0.1:{self.server.server_address[1]}/fhir"
            body = json.dumps(
                {
                    "resourceType": "Patient",
                    "id": "p1",
                    "link": [{"other": {"reference": f"{base}/Patient/p2"}, "type": "seealso"}],
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Location", f"{base}/Patient/p1/_history/1")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with fhirserver.serving(server):
        yield f"http://127.0.0.1:{server.server_address[1]}/fhir", seen


def test_authorization_header_is_not_forwarded() -> None:
    """Upstream sees no token or cookie; its URLs come back on the public base."""
    with recording_server() as (base, seen):
        patients = (LauncherPatient("p1", "Ada", None, "x"),)
        ehr = create_ehr(make_settings(base, patients))
        token = ehr_token(ehr, "p1")
        client = ehr.test_client()
        answer = client.get(
            "/fhir/Patient/p1",
            headers={**bearer(token), "Accept": "application/fhir+json", "Prefer": "x=1"},
        )
        assert answer.status_code == 200
        assert answer.headers["Content-Location"] == f"{FHIR}/Patient/p1/_history/1"
        assert answer.get_json(force=True)["link"][0]["other"]["reference"] == f"{FHIR}/Patient/p2"
        names = {k.lower() for k in seen[-1]}
        assert "authorization" not in names
        assert "cookie" not in names
        assert seen[-1]["Prefer"] == "x=1"


def test_unreachable_upstream_is_502(two_patients: tuple[str, str]) -> None:
    """No FHIR server behind the gateway: 502 with an OperationOutcome."""
    dead = f"http://127.0.0.1:{fhirserver.free_port()}/fhir"
    patients = (LauncherPatient("p1", "Ada", None, "x"),)
    ehr = create_ehr(make_settings(dead, patients))
    token = ehr_token(ehr, "p1")
    client = ehr.test_client()
    answer = client.get("/fhir/Patient/p1", headers=bearer(token))
    assert answer.status_code == 502
    assert answer.get_json(force=True)["resourceType"] == "OperationOutcome"
    answer = client.get("/fhir/Observation/o1", headers=bearer(token))
    assert answer.status_code == 502
    assert client.get("/fhir/metadata").status_code == 502
