"""The sandbox EHR's SMART authorization server, driven through Flask's test client.

The FHIR gateway behind it talks to a real sekmet server (one per module).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass, replace
from enum import StrEnum
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey
from werkzeug.test import TestResponse

from smart_app.sandbox.ehr import create_ehr
from smart_app.sandbox.oauth.routes import CAPABILITIES
from smart_app.sandbox.settings import EhrSettings, LauncherPatient, SandboxClient
from tests import fhirserver

pytestmark = pytest.mark.integration
"""Every test here runs against the EHR in front of a real sekmet server (`fhir_base`)."""

PUBLIC = "http://127.0.0.1:8091"
FHIR = f"{PUBLIC}/fhir"
TOKEN_URL = f"{PUBLIC}/oauth/token"
APP = "http://127.0.0.1:8092"
REDIRECT = f"{APP}/callback"
CLIENT_ID = "zolgensma-planner"
PRACTITIONER = f"{FHIR}/Practitioner/sandbox-practitioner"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "infant-eligible.json"
SCOPE = "launch openid fhirUser patient/*.rs"
TEST_SECRET = secrets.token_urlsafe(16)
"""The confidential test client's secret."""
SIGNING_KEY = RSAKey.generate_key(2048, auto_kid=True)
"""One key for the module: generating RSA keys is slow."""


@dataclass
class FakeClock:
    """A settable clock for expiry tests."""

    now: float

    def __call__(self) -> float:
        """The current fake time."""
        return self.now


def public_client(**changes: Any) -> SandboxClient:
    """The app as a public client."""
    client = SandboxClient(
        client_id=CLIENT_ID, redirect_uris=(REDIRECT,), launch_url=f"{APP}/launch"
    )
    return replace(client, **changes)


def make_settings(
    upstream: str, patients: tuple[LauncherPatient, ...], **changes: Any
) -> EhrSettings:
    """Sandbox settings in front of `upstream`."""
    settings = EhrSettings(
        public_base=PUBLIC,
        fhir_upstream=upstream,
        clients=(public_client(),),
        patients=patients,
        signing_key=SIGNING_KEY,
    )
    return replace(settings, **changes)


def pkce() -> tuple[str, str]:
    """A code verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def authorize(
    client: FlaskClient,
    *,
    scope: str = SCOPE,
    launch: str | None = None,
    challenge: str | None = None,
    method: str | None = "S256",
    aud: str = FHIR,
    client_id: str = CLIENT_ID,
    redirect_uri: str = REDIRECT,
    nonce: str | None = None,
) -> TestResponse:
    """GET /oauth/authorize with SMART's parameters."""
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": "st-123",
        "aud": aud,
    }
    if challenge:
        query["code_challenge"] = challenge
    if method:
        query["code_challenge_method"] = method
    if launch:
        query["launch"] = launch
    if nonce:
        query["nonce"] = nonce
    return client.get("/oauth/authorize", query_string=query)


def redirect_params(response: TestResponse) -> dict[str, str]:
    """The query parameters of a redirect back to the app."""
    assert response.status_code == 302, response.get_data(as_text=True)
    location = response.headers["Location"]
    assert location.startswith(REDIRECT)
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def exchange(client: FlaskClient, code: str, verifier: str | None, **extra: Any) -> TestResponse:
    """POST /oauth/token for a code (public client unless `extra` authenticates)."""
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    if verifier is not None:
        form["code_verifier"] = verifier
    headers = extra.pop("headers", {})
    if "client_id" not in extra and "client_assertion" not in extra and not headers:
        form["client_id"] = CLIENT_ID
    form.update(extra)
    return client.post("/oauth/token", data=form, headers=headers)


def _refresh(client: FlaskClient, refresh_token: str, **extra: str) -> TestResponse:
    """A refresh-token grant for the public client (extra form fields, e.g. scope)."""
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": CLIENT_ID}
    return client.post("/oauth/token", data={**data, **extra})


def launch_via_page(
    client: FlaskClient, patient_id: str, *, client_id: str = CLIENT_ID, access: str | None = None
) -> tuple[str, str, str]:
    """Launch from the launcher page: (embedded launch id, tab launch id, chart HTML)."""
    page = client.get("/", query_string={"access": access} if access else {}).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token
    form = {"csrf_token": token.group(1), "client_id": client_id, "patient_id": patient_id}
    hidden = re.search(
        r'<input type="hidden" name="access" value="([^"]+)">', page.split("<table", 1)[-1]
    )
    if hidden:
        form["access"] = hidden.group(1)
    answer = client.post("/launch", data=form)
    assert answer.status_code == 303
    chart = client.get(answer.headers["Location"]).get_data(as_text=True)
    frame = re.search(r'<iframe[^>]*src="([^"]+)"', chart)
    tab = re.search(r'<a href="([^"]+)" target="_blank"', chart)
    assert frame and tab
    embedded = parse_qs(urlsplit(unescape(frame.group(1))).query)["launch"][0]
    in_tab = parse_qs(urlsplit(unescape(tab.group(1))).query)["launch"][0]
    return embedded, in_tab, chart


class Launch(StrEnum):
    """Where the launch id sent to authorize comes from."""

    EMBEDDED = "embedded"
    """The chart's iframe."""
    NEW_TAB = "new tab"
    """The chart's link opening the app in a new tab (the app must show a patient banner)."""
    NONE = "none"
    """No launch id: a standalone launch approved without the picker (no launch/patient)."""


@dataclass(frozen=True)
class Grant:
    """One pass through authorize: the browser it ran in, the code and its PKCE verifier."""

    client: FlaskClient
    code: str
    verifier: str

    def exchange(self, **extra: Any) -> TestResponse:
        """POST /oauth/token for the code (`extra`: how a confidential client authenticates)."""
        return exchange(self.client, self.code, self.verifier, **extra)

    def token(self) -> dict[str, Any]:
        """The token response of an exchange that must succeed."""
        answer = self.exchange()
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()


@dataclass(frozen=True)
class OAuthSequence:
    """The sequence an app runs: the launcher page (an EHR launch), authorize with PKCE S256,
    the code on the redirect back; `Grant.token()` finishes it at the token endpoint."""

    client: FlaskClient
    patient_id: str

    def __call__(
        self,
        *,
        via: FlaskClient | None = None,
        scope: str = SCOPE,
        launch: Launch = Launch.EMBEDDED,
        client_id: str = CLIENT_ID,
        access: str | None = None,
        nonce: str | None = None,
    ) -> Grant:
        """A code for `scope`, in `via` (another EHR's browser) or the fixture's browser."""
        browser = via or self.client
        launch_id = None
        if launch is not Launch.NONE:
            embedded, in_tab, _ = launch_via_page(
                browser, self.patient_id, client_id=client_id, access=access
            )
            launch_id = in_tab if launch is Launch.NEW_TAB else embedded
        verifier, challenge = pkce()
        answer = authorize(
            browser,
            scope=scope,
            launch=launch_id,
            challenge=challenge,
            client_id=client_id,
            nonce=nonce,
        )
        params = redirect_params(answer)
        assert "code" in params, params
        return Grant(browser, params["code"], verifier)


def ehr_token(
    ehr: Flask, patient_id: str, *, scope: str = SCOPE, nonce: str | None = None
) -> dict[str, Any]:
    """A full EHR launch in a new browser: launcher page, authorize, token. The token response."""
    return OAuthSequence(ehr.test_client(), patient_id)(scope=scope, nonce=nonce).token()


@pytest.fixture(scope="module")
def patient_id(fhir_base: str) -> str:
    """The example patient, loaded on the server."""
    return fhirserver.load_patient(fhir_base, json.loads(EXAMPLE.read_text(encoding="utf-8")))


@pytest.fixture
def patients(patient_id: str) -> tuple[LauncherPatient, ...]:
    """The launcher's patient list (one has a hostile name)."""
    return (
        LauncherPatient(patient_id, "Ada Example", "2026-06-10", "eligible"),
        LauncherPatient("evil", "<script>alert(1)</script>", None, "escaping"),
    )


@pytest.fixture
def ehr(fhir_base: str, patients: tuple[LauncherPatient, ...]) -> Flask:
    """The sandbox EHR with one public client."""
    return create_ehr(make_settings(fhir_base, patients))


@pytest.fixture
def client(ehr: Flask) -> FlaskClient:
    """A browser (and app) talking to the EHR."""
    return ehr.test_client()


@pytest.fixture
def oauth(client: FlaskClient, patient_id: str) -> OAuthSequence:
    """The OAuth sequence (launch, authorize, code; `.token()` for the token) in `client`."""
    return OAuthSequence(client, patient_id)


# discovery --------------------------------------------------------------------------------


def test_smart_configuration(client: FlaskClient) -> None:
    """The discovery document names the endpoints and SMART capabilities."""
    doc = client.get("/fhir/.well-known/smart-configuration").get_json()
    assert doc["issuer"] == FHIR
    assert doc["jwks_uri"] == f"{PUBLIC}/oauth/jwks"
    assert doc["authorization_endpoint"] == f"{PUBLIC}/oauth/authorize"
    assert doc["token_endpoint"] == TOKEN_URL
    assert set(doc["token_endpoint_auth_methods_supported"]) == {
        "none",
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    }
    assert set(doc["grant_types_supported"]) == {"authorization_code", "refresh_token"}
    assert doc["response_types_supported"] == ["code"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert {"openid", "fhirUser", "launch", "launch/patient", "offline_access"} <= set(
        doc["scopes_supported"]
    )
    assert doc["capabilities"] == CAPABILITIES
    assert {"launch-ehr", "launch-standalone", "sso-openid-connect", "permission-v2"} <= set(
        CAPABILITIES
    )


def test_jwks_has_a_kid_and_no_private_part(client: FlaskClient) -> None:
    """The key set is public and names its keys: the id_token key, then the CDS Hooks one."""
    keys = client.get("/oauth/jwks").get_json()["keys"]
    assert [k["alg"] for k in keys] == ["RS256", "RS384"]
    assert keys[0]["kid"] != keys[1]["kid"]
    for key in keys:
        assert key["kid"]
        assert key["kty"] == "RSA"
        assert "d" not in key
        assert "p" not in key


def test_metadata_announces_smart_without_a_token(client: FlaskClient) -> None:
    """/metadata is the server's CapabilityStatement plus SMART security."""
    answer = client.get("/fhir/metadata")
    assert answer.status_code == 200
    body = answer.get_json(force=True)
    assert body["resourceType"] == "CapabilityStatement"
    security = body["rest"][0]["security"]
    uris = {
        e["url"]: e["valueUri"]
        for ext in security["extension"]
        if ext["url"].endswith("/oauth-uris")
        for e in ext["extension"]
    }
    assert uris == {"authorize": f"{PUBLIC}/oauth/authorize", "token": TOKEN_URL}
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    assert "127.0.0.1:8091/fhir" in answer.get_data(as_text=True)


# the code flow ----------------------------------------------------------------------------


def test_ehr_launch_gives_token_patient_and_verifiable_id_token(
    client: FlaskClient, patient_id: str, oauth: OAuthSequence
) -> None:
    """authorize -> token with S256: context and an id_token signed by the JWKS key."""
    token = oauth(nonce="n-0S6_WzA2Mj").token()
    assert token["token_type"] == "Bearer"  # noqa: S105 - the token type, not a secret
    assert token["expires_in"] == 3600
    assert token["patient"] == patient_id
    assert token["need_patient_banner"] is False
    assert "encounter" not in token
    assert "refresh_token" not in token
    assert set(token["scope"].split()) == set(SCOPE.split())
    jwks = client.get("/oauth/jwks").get_json()
    decoded = jwt.decode(token["id_token"], KeySet.import_key_set(jwks), algorithms=["RS256"])
    assert decoded.header["kid"] == jwks["keys"][0]["kid"]
    claims = decoded.claims
    assert claims["iss"] == FHIR
    assert claims["aud"] == CLIENT_ID
    assert claims["sub"] == "sandbox-practitioner"
    assert claims["fhirUser"] == PRACTITIONER
    assert claims["nonce"] == "n-0S6_WzA2Mj"
    assert claims["iat"] <= time.time() < claims["exp"]


def test_the_token_answers_fhir_requests(
    client: FlaskClient, patient_id: str, oauth: OAuthSequence
) -> None:
    """The issued access token opens the launch patient's record."""
    token = oauth().token()
    answer = client.get(
        f"/fhir/Patient/{patient_id}",
        headers={"Authorization": f"Bearer {token['access_token']}"},
    )
    assert answer.status_code == 200
    assert answer.get_json(force=True)["id"] == patient_id


def test_no_id_token_without_openid(oauth: OAuthSequence) -> None:
    """Without openid there is no id_token."""
    token = oauth(scope="launch patient/*.rs").token()
    assert "id_token" not in token


def test_fhir_user_claim_only_with_fhir_user_scope(
    client: FlaskClient, oauth: OAuthSequence
) -> None:
    """openid without fhirUser: an id_token without the fhirUser claim."""
    token = oauth(scope="launch openid patient/*.rs").token()
    jwks = KeySet.import_key_set(client.get("/oauth/jwks").get_json())
    claims = jwt.decode(token["id_token"], jwks, algorithms=["RS256"]).claims
    assert "fhirUser" not in claims
    assert claims["sub"] == "sandbox-practitioner"


def test_style_url_in_token_response(fhir_base: str, patients: Any, oauth: OAuthSequence) -> None:
    """smart_style_url is passed along when configured."""
    ehr = create_ehr(make_settings(fhir_base, patients, smart_style_url=f"{PUBLIC}/style.json"))
    token = oauth(via=ehr.test_client()).token()
    assert token["smart_style_url"] == f"{PUBLIC}/style.json"


def test_plain_pkce_is_refused(ehr: Flask, client: FlaskClient, patient_id: str) -> None:
    """code_challenge_method=plain: an invalid_request redirect, no code."""
    launch, _, _ = launch_via_page(client, patient_id)
    verifier, _ = pkce()
    params = redirect_params(authorize(client, launch=launch, challenge=verifier, method="plain"))
    assert params["error"] == "invalid_request"
    assert params["state"] == "st-123"
    assert "code" not in params


def test_missing_challenge_is_refused(ehr: Flask, client: FlaskClient, patient_id: str) -> None:
    """No code_challenge at all: refused."""
    launch, _, _ = launch_via_page(client, patient_id)
    params = redirect_params(authorize(client, launch=launch, challenge=None, method=None))
    assert params["error"] == "invalid_request"
    assert "code" not in params


@pytest.mark.parametrize("verifier", ["wrong", None], ids=["wrong", "missing"])
def test_bad_verifier_is_invalid_grant(
    client: FlaskClient, oauth: OAuthSequence, verifier: str | None
) -> None:
    """A wrong or missing code_verifier: invalid_grant."""
    grant = oauth()
    answer = exchange(client, grant.code, None if verifier is None else secrets.token_urlsafe(48))
    assert answer.status_code == 400
    assert answer.get_json()["error"] == "invalid_grant"


def test_code_is_single_use_and_replay_revokes(
    client: FlaskClient, patient_id: str, oauth: OAuthSequence
) -> None:
    """A second exchange of the code is refused and kills the first token."""
    grant = oauth()
    first = grant.exchange()
    assert first.status_code == 200
    again = grant.exchange()
    assert again.status_code == 400
    assert again.get_json()["error"] == "invalid_grant"
    answer = client.get(
        f"/fhir/Patient/{patient_id}",
        headers={"Authorization": f"Bearer {first.get_json()['access_token']}"},
    )
    assert answer.status_code == 401


def test_unknown_launch_is_refused(client: FlaskClient) -> None:
    """A launch id this EHR never issued: an error redirect."""
    _, challenge = pkce()
    params = redirect_params(authorize(client, launch="made-up", challenge=challenge))
    assert params["error"] == "invalid_request"
    assert "code" not in params


def test_used_launch_is_refused(client: FlaskClient, patient_id: str) -> None:
    """A launch id works once."""
    launch, _, _ = launch_via_page(client, patient_id)
    _, challenge = pkce()
    assert "code" in redirect_params(authorize(client, launch=launch, challenge=challenge))
    params = redirect_params(authorize(client, launch=launch, challenge=challenge))
    assert params["error"] == "invalid_request"


def test_launch_of_another_client_is_refused(
    fhir_base: str, patients: Any, patient_id: str
) -> None:
    """A launch id is bound to the client it was made for."""
    other = public_client(client_id="other-app")
    ehr = create_ehr(make_settings(fhir_base, patients, clients=(public_client(), other)))
    client = ehr.test_client()
    launch, _, _ = launch_via_page(client, patient_id, client_id="other-app")
    _, challenge = pkce()
    params = redirect_params(authorize(client, launch=launch, challenge=challenge))
    assert params["error"] == "invalid_request"


def test_expired_launch_is_refused(fhir_base: str, patients: Any, patient_id: str) -> None:
    """A launch id lives ten minutes."""
    clock = FakeClock(1_900_000_000.0)
    client = create_ehr(make_settings(fhir_base, patients, clock=clock)).test_client()
    launch, _, _ = launch_via_page(client, patient_id)
    clock.now += 601
    _, challenge = pkce()
    params = redirect_params(authorize(client, launch=launch, challenge=challenge))
    assert params["error"] == "invalid_request"


@pytest.mark.parametrize("aud", ["http://127.0.0.1:9999/fhir", f"{PUBLIC}/other", ""])
def test_wrong_aud_is_refused(client: FlaskClient, patient_id: str, aud: str) -> None:
    """aud must be this EHR's FHIR base."""
    launch, _, _ = launch_via_page(client, patient_id)
    _, challenge = pkce()
    params = redirect_params(authorize(client, launch=launch, challenge=challenge, aud=aud))
    assert params["error"] == "invalid_request"
    assert "code" not in params


def test_unknown_redirect_uri_is_refused_without_redirect(
    client: FlaskClient, patient_id: str
) -> None:
    """A redirect_uri the client did not register: an error page, never a redirect."""
    launch, _, _ = launch_via_page(client, patient_id)
    _, challenge = pkce()
    answer = authorize(
        client, launch=launch, challenge=challenge, redirect_uri="http://evil.example/cb"
    )
    assert answer.status_code == 400
    assert "Location" not in answer.headers
    assert "evil.example" not in answer.headers.get("Location", "")
    assert "text/html" in answer.content_type


def test_unknown_client_is_refused_without_redirect(client: FlaskClient) -> None:
    """An unknown client_id: an error page."""
    _, challenge = pkce()
    answer = authorize(client, challenge=challenge, client_id="nobody")
    assert answer.status_code == 400
    assert "Location" not in answer.headers


def test_refresh_rotates_and_old_code_cannot_be_reused(
    client: FlaskClient, patient_id: str, oauth: OAuthSequence
) -> None:
    """offline_access: a refresh token; refreshing rotates it; the code stays spent."""
    grant = oauth(scope="launch patient/*.rs offline_access")
    first = grant.token()
    assert first["refresh_token"]
    refreshed = _refresh(client, first["refresh_token"])
    assert refreshed.status_code == 200, refreshed.get_json()
    second = refreshed.get_json()
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    assert second["patient"] == patient_id
    assert second["need_patient_banner"] is False
    headers = {"Authorization": f"Bearer {second['access_token']}"}
    assert client.get(f"/fhir/Patient/{patient_id}", headers=headers).status_code == 200
    old = _refresh(client, first["refresh_token"])
    assert old.status_code == 400
    assert old.get_json()["error"] == "invalid_grant"
    replay = grant.exchange()
    assert replay.get_json()["error"] == "invalid_grant"
    assert client.get(f"/fhir/Patient/{patient_id}", headers=headers).status_code == 401


def test_refresh_can_narrow_the_scope(client: FlaskClient, oauth: OAuthSequence) -> None:
    """A refresh may ask for less than was granted, never more."""
    first = oauth(scope="launch patient/*.rs online_access").token()
    wider = _refresh(client, first["refresh_token"], scope="patient/*.cruds")
    assert wider.get_json()["error"] == "invalid_scope"
    narrower = _refresh(client, first["refresh_token"], scope="patient/*.rs online_access")
    assert narrower.status_code == 200
    assert narrower.get_json()["scope"] == "patient/*.rs online_access"


WRITE_SCOPE = "launch openid fhirUser patient/*.rs patient/MedicationRequest.crus online_access"


def _create_order(client: FlaskClient, token: str, patient_id: str) -> TestResponse:
    """POST a MedicationRequest for the launch patient through the gateway."""
    order = {
        "resourceType": "MedicationRequest",
        "status": "draft",
        "intent": "proposal",
        "medicationCodeableConcept": {"text": "read-only test"},
        "subject": {"reference": f"Patient/{patient_id}"},
        "identifier": [{"system": "urn:test:read-only", "value": secrets.token_hex(8)}],
    }
    return client.post(
        "/fhir/MedicationRequest", json=order, headers={"Authorization": f"Bearer {token}"}
    )


def test_the_launcher_offers_a_read_only_launch(client: FlaskClient, patient_id: str) -> None:
    """The launcher's access choice: everything by default, read only on request."""
    default = client.get("/").get_data(as_text=True)
    assert '<option value="read-only">' in default
    assert 'name="access" value="read-only"' not in default
    chosen = client.get("/", query_string={"access": "read-only"}).get_data(as_text=True)
    assert '<option value="read-only" selected>' in chosen
    assert chosen.count('<input type="hidden" name="access" value="read-only">') == 2
    assert "with <strong>read-only</strong> access" in chosen


def test_a_read_only_ehr_launch_grants_the_asked_scopes_without_writes(
    client: FlaskClient, patient_id: str, oauth: OAuthSequence
) -> None:
    """The code and its tokens carry no c/u/d; the gateway refuses a write; a refresh cannot
    widen it; reads still work."""
    token = oauth(scope=WRITE_SCOPE, access="read-only").token()
    assert token["scope"] == (
        "launch openid fhirUser patient/*.rs patient/MedicationRequest.rs online_access"
    )
    assert token["patient"] == patient_id
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    assert client.get(f"/fhir/Patient/{patient_id}", headers=headers).status_code == 200
    refused = _create_order(client, token["access_token"], patient_id)
    assert refused.status_code == 403, refused.get_data(as_text=True)
    assert "MedicationRequest" in refused.get_data(as_text=True)
    renewed = _refresh(client, token["refresh_token"]).get_json()
    assert renewed["scope"] == token["scope"]
    widened = _refresh(
        client, renewed["refresh_token"], scope="patient/MedicationRequest.crus"
    ).get_json()
    assert widened["error"] == "invalid_scope"


def test_an_ehr_launch_by_default_grants_what_is_asked(
    client: FlaskClient, patient_id: str, oauth: OAuthSequence
) -> None:
    token = oauth(scope=WRITE_SCOPE).token()
    assert token["scope"] == WRITE_SCOPE
    created = _create_order(client, token["access_token"], patient_id)
    assert created.status_code == 201, created.get_data(as_text=True)


@pytest.mark.parametrize(("ticked", "read_only"), [(True, True), (False, False)])
def test_the_picker_can_allow_reading_only(
    client: FlaskClient, patient_id: str, ticked: bool, read_only: bool
) -> None:
    verifier, challenge = pkce()
    scope = "launch/patient openid fhirUser patient/*.cruds"
    page = authorize(client, scope=scope, challenge=challenge)
    html = page.get_data(as_text=True)
    assert 'type="checkbox" id="access" name="access" value="read-only"' in html
    form = _picker_form(html)
    assert "access" not in form
    form.update({"patient_choice": patient_id, "decision": "allow"})
    if ticked:
        form["access"] = "read-only"
    params = redirect_params(client.post("/oauth/authorize", data=form))
    token = exchange(client, params["code"], verifier).get_json()
    expected = "patient/*.rs" if read_only else "patient/*.cruds"
    assert token["scope"] == f"launch/patient openid fhirUser {expected}"
    assert token["patient"] == patient_id


def test_expired_token_is_401(
    fhir_base: str, patients: Any, patient_id: str, oauth: OAuthSequence
) -> None:
    """Past expires_in (on the injected clock) the gateway refuses the token."""
    clock = FakeClock(1_900_000_000.0)
    ehr = create_ehr(make_settings(fhir_base, patients, clock=clock, access_token_lifetime_s=300))
    token = oauth(via=ehr.test_client()).token()
    assert token["expires_in"] == 300
    client = ehr.test_client()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    assert client.get(f"/fhir/Patient/{patient_id}", headers=headers).status_code == 200
    clock.now += 301
    answer = client.get(f"/fhir/Patient/{patient_id}", headers=headers)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert answer.get_json(force=True)["resourceType"] == "OperationOutcome"


# standalone launch ------------------------------------------------------------------------


def _picker_form(page: str) -> dict[str, str]:
    """The hidden fields of the patient picker."""
    fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page)
    return {unescape(k): unescape(v) for k, v in fields}


def test_standalone_launch_picks_a_patient(client: FlaskClient, patient_id: str) -> None:
    """launch/patient without launch: the picker, then a code with that patient."""
    verifier, challenge = pkce()
    page = authorize(
        client, scope="launch/patient openid fhirUser patient/*.rs", challenge=challenge
    )
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'name="patient_choice"' in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>" not in html
    form = _picker_form(html)
    assert form["aud"] == FHIR
    form.update({"patient_choice": patient_id, "decision": "allow"})
    params = redirect_params(client.post("/oauth/authorize", data=form))
    token = exchange(client, params["code"], verifier).get_json()
    assert token["patient"] == patient_id
    assert token["need_patient_banner"] is True
    assert "id_token" in token


def test_picker_needs_the_sandbox_csrf_token(client: FlaskClient, patient_id: str) -> None:
    """A picker post with another session's token is refused."""
    _, challenge = pkce()
    page = authorize(client, scope="launch/patient patient/*.rs", challenge=challenge)
    form = _picker_form(page.get_data(as_text=True))
    form.update({"patient_choice": patient_id, "csrf_token": "forged"})
    answer = client.post("/oauth/authorize", data=form)
    assert answer.status_code == 400
    assert "Location" not in answer.headers


def test_picker_cancel_is_access_denied(client: FlaskClient) -> None:
    """Cancelling the picker returns access_denied to the app."""
    _, challenge = pkce()
    page = authorize(client, scope="launch/patient patient/*.rs", challenge=challenge)
    form = _picker_form(page.get_data(as_text=True))
    form["decision"] = "deny"
    assert redirect_params(client.post("/oauth/authorize", data=form))["error"] == "access_denied"


def test_picker_refuses_a_patient_not_listed(client: FlaskClient) -> None:
    """Only the launcher's patients can be picked."""
    _, challenge = pkce()
    page = authorize(client, scope="launch/patient patient/*.rs", challenge=challenge)
    form = _picker_form(page.get_data(as_text=True))
    form.update({"patient_choice": "someone-else", "decision": "allow"})
    answer = client.post("/oauth/authorize", data=form)
    assert answer.status_code == 400
    assert "Choose a patient" in answer.get_data(as_text=True)


def test_no_launch_and_no_launch_patient_is_approved_without_context(
    oauth: OAuthSequence,
) -> None:
    """A user-level standalone app: approved for the signed-in practitioner, no patient."""
    token = oauth(scope="openid fhirUser user/*.rs", launch=Launch.NONE).token()
    assert "patient" not in token
    assert token["need_patient_banner"] is False


# confidential clients ---------------------------------------------------------------------


def test_confidential_client_with_a_secret(
    fhir_base: str, patients: Any, patient_id: str, oauth: OAuthSequence
) -> None:
    """client_secret_basic and client_secret_post work; no or a wrong secret does not."""
    secret_client = public_client(client_id="secret-app", client_secret=TEST_SECRET)
    client = create_ehr(make_settings(fhir_base, patients, clients=(secret_client,))).test_client()
    basic = base64.b64encode(f"secret-app:{TEST_SECRET}".encode()).decode()
    answer = oauth(via=client, client_id="secret-app").exchange(
        headers={"Authorization": f"Basic {basic}"}
    )
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["patient"] == patient_id
    grant = oauth(via=client, client_id="secret-app")
    answer = grant.exchange(client_id="secret-app", client_secret=TEST_SECRET)
    assert answer.status_code == 200
    grant = oauth(via=client, client_id="secret-app")
    answer = grant.exchange(client_id="secret-app")
    assert answer.get_json()["error"] == "invalid_client"
    wrong = base64.b64encode(b"secret-app:guess").decode()
    answer = grant.exchange(headers={"Authorization": f"Basic {wrong}"})
    assert answer.status_code == 401
    assert answer.get_json()["error"] == "invalid_client"


def _assertion(key: RSAKey | ECKey, alg: str, *, client_id: str = "jwt-app", **claims: Any) -> str:
    """A SMART client assertion."""
    now = int(time.time())
    payload = {
        "iss": client_id,
        "sub": client_id,
        "aud": TOKEN_URL,
        "exp": now + 240,
        "jti": secrets.token_urlsafe(12),
        **claims,
    }
    return jwt.encode({"alg": alg, "kid": key.kid, "typ": "JWT"}, payload, key, algorithms=[alg])


def test_private_key_jwt(
    fhir_base: str, patients: Any, patient_id: str, oauth: OAuthSequence
) -> None:
    """An RS384 (or ES384) assertion signed by a registered key authenticates the client."""
    rsa = RSAKey.generate_key(2048, auto_kid=True)
    ec = ECKey.generate_key("P-384", auto_kid=True)
    jwks = {"keys": [rsa.as_dict(private=False), ec.as_dict(private=False)]}
    jwt_client = public_client(client_id="jwt-app", jwks=jwks)
    ehr = create_ehr(make_settings(fhir_base, patients, clients=(jwt_client,)))
    client = ehr.test_client()
    kind = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    for key, alg in ((rsa, "RS384"), (ec, "ES384")):
        assertion = _assertion(key, alg)
        answer = oauth(via=client, client_id="jwt-app").exchange(
            client_assertion_type=kind, client_assertion=assertion
        )
        assert answer.status_code == 200, answer.get_json()
        assert answer.get_json()["patient"] == patient_id
    # the same assertion again (replayed jti), a weaker algorithm, a foreign key, no assertion
    grant = oauth(via=client, client_id="jwt-app")
    stranger = RSAKey.generate_key(2048, auto_kid=True)
    for bad in (
        assertion,
        _assertion(rsa, "RS256"),
        _assertion(stranger, "RS384"),
        _assertion(rsa, "RS384", aud=f"{PUBLIC}/elsewhere"),
    ):
        answer = grant.exchange(client_assertion_type=kind, client_assertion=bad)
        assert answer.status_code in (400, 401)
        assert answer.get_json()["error"] == "invalid_client"
    answer = grant.exchange(client_id="jwt-app")
    assert answer.get_json()["error"] == "invalid_client"


# logging ----------------------------------------------------------------------------------


def test_tokens_never_reach_the_logs(
    fhir_base: str,
    patients: Any,
    patient_id: str,
    oauth: OAuthSequence,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A full flow with refresh and FHIR calls logs no code or token, even at DEBUG."""
    caplog.set_level(logging.DEBUG)
    client = create_ehr(make_settings(fhir_base, patients)).test_client()
    grant = oauth(via=client, scope="launch openid fhirUser patient/*.rs offline_access")
    token = grant.token()
    refreshed = _refresh(client, token["refresh_token"]).get_json()
    for access in (token["access_token"], refreshed["access_token"]):
        headers = {"Authorization": f"Bearer {access}"}
        assert client.get(f"/fhir/Patient/{patient_id}", headers=headers).status_code == 200
    secrets_seen = [
        grant.code,
        token["access_token"],
        token["refresh_token"],
        token["id_token"],
        refreshed["access_token"],
        refreshed["refresh_token"],
    ]
    logged = caplog.text + " ".join(repr(r.args) for r in caplog.records)
    for secret in secrets_seen:
        assert secret not in logged
    assert logging.getLogger("authlib").getEffectiveLevel() >= logging.WARNING


# launcher pages ---------------------------------------------------------------------------


def test_launcher_lists_patients_escaped(client: FlaskClient, patient_id: str) -> None:
    """The launcher shows each patient with a Launch button; names are escaped."""
    answer = client.get("/")
    html = answer.get_data(as_text=True)
    assert answer.status_code == 200
    assert "Ada Example" in html
    assert "2026-06-10" in html
    assert "eligible" in html
    assert patient_id in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>" not in html
    assert html.count(">Launch<") == 2
    assert "Content-Security-Policy" in answer.headers
    assert "style=" not in html


def test_chart_page_frames_the_app(client: FlaskClient, patient_id: str) -> None:
    """The chart has a banner and an iframe launching the app with iss and launch."""
    embedded, in_tab, html = launch_via_page(client, patient_id)
    frame = re.search(r'<iframe[^>]*src="([^"]+)"[^>]*title="([^"]+)"', html)
    assert frame
    src = urlsplit(unescape(frame.group(1)))
    assert f"{src.scheme}://{src.netloc}{src.path}" == f"{APP}/launch"
    query = parse_qs(src.query)
    assert query["iss"] == [FHIR]
    assert query["launch"] == [embedded]
    assert frame.group(2)
    assert "Ada Example" in html
    assert "2026-06-10" in html
    assert in_tab != embedded


def test_chart_of_a_hostile_name_is_escaped(client: FlaskClient) -> None:
    """A name with markup appears as text in the banner and the iframe title."""
    _, _, html = launch_via_page(client, "evil")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>" not in html


def test_new_tab_launch_needs_the_banner(patient_id: str, oauth: OAuthSequence) -> None:
    """The "new tab" launch id carries need_patient_banner=True."""
    token = oauth(launch=Launch.NEW_TAB).token()
    assert token["need_patient_banner"] is True
    assert token["patient"] == patient_id


def test_launch_form_needs_csrf(client: FlaskClient, patient_id: str) -> None:
    """POST /launch without the page's token is refused."""
    answer = client.post("/launch", data={"client_id": CLIENT_ID, "patient_id": patient_id})
    assert answer.status_code == 400


def test_unknown_chart_is_404(client: FlaskClient) -> None:
    """A chart for a launch id that does not exist."""
    assert client.get("/chart/nothing-here").status_code == 404
