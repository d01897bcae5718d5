# ruff: noqa: S105, S106 - fake tokens and token-endpoint URLs, not credentials
"""The SMART App Launch client: discovery, scopes, authorize URL, token, id_token, refresh.

HTTP is faked with `responses`: these are unit tests of the client's checks and error
handling; the real EHR round trip is covered by the integration and browser suites.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from joserfc import jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet, OctKey, RSAKey

from smart_app.config import ClientType, Registration
from smart_app.errors import LaunchError, SessionExpired
from smart_app.web import grants, smart
from smart_app.web.smart import (
    REFRESH_MARGIN_S,
    Endpoints,
    TokenGrant,
    authorize_request,
    discover,
    exchange_code,
    fetch_style,
    needs_refresh,
    refresh,
    scopes,
    verify_id_token,
)

ISS = "https://ehr.example.org/fhir"
ISSUER = "https://ehr.example.org/oauth"
AUTHORIZE = "https://ehr.example.org/oauth/authorize"
TOKEN = "https://ehr.example.org/oauth/token"
JWKS = "https://ehr.example.org/oauth/jwks"
SMART_CONFIG = f"{ISS}/.well-known/smart-configuration"
METADATA = f"{ISS}/metadata"
CLIENT_ID = "zolgensma-planner"
REDIRECT = "https://planner.example.org/callback"
SECRET = "s3cret-Value-that-must-not-leak"
NOW = 1_700_000_000.0
NONCE = "nonce-123"
CODE = "AUTH-CODE-4f9a1c"
VERIFIER = "verifier-8d2e7b0c5a1f3e6d9b4a7c0e2f5d8b1a4c7e0f3d6b9a2c5e8f1d4b7a0c3e6f9"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

BASE_ENDPOINTS = Endpoints(
    authorize=AUTHORIZE,
    token=TOKEN,
    issuer=ISSUER,
    jwks_uri=JWKS,
    capabilities=frozenset({"launch-ehr", "client-public", "permission-v2"}),
    challenge_methods=frozenset({"S256"}),
)

SMART_CONFIGURATION = {
    "issuer": ISSUER,
    "jwks_uri": JWKS,
    "authorization_endpoint": AUTHORIZE,
    "token_endpoint": TOKEN,
    "capabilities": ["launch-ehr", "launch-standalone", "permission-v2", "permission-offline"],
    "code_challenge_methods_supported": ["S256"],
}


def capability_statement(authorize: str = AUTHORIZE, token: str = TOKEN) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "rest": [
            {
                "mode": "server",
                "security": {
                    "extension": [
                        {
                            "url": smart.OAUTH_URIS,
                            "extension": [
                                {"url": "token", "valueUri": token},
                                {"url": "authorize", "valueUri": authorize},
                            ],
                        }
                    ]
                },
            }
        ],
    }


def endpoints(**changes: Any) -> Endpoints:
    return dataclasses.replace(BASE_ENDPOINTS, **changes)


def registration(**changes: Any) -> Registration:
    base = Registration(
        iss=ISS,
        name="Example EHR",
        client_type=ClientType.PUBLIC,
        client_id=CLIENT_ID,
        redirect_uri=REDIRECT,
    )
    return dataclasses.replace(base, **changes)


def form(call: Any) -> dict[str, str]:
    """The urlencoded body of a faked request, one value per field."""
    body = call.request.body or ""
    if isinstance(body, bytes):
        body = body.decode("ascii")
    parsed = parse_qs(body, keep_blank_values=True, strict_parsing=True)
    assert all(len(values) == 1 for values in parsed.values()), parsed
    return {name: values[0] for name, values in parsed.items()}


def query(url: str) -> dict[str, str]:
    parsed = parse_qs(urlsplit(url).query, keep_blank_values=True, strict_parsing=True)
    assert all(len(values) == 1 for values in parsed.values()), parsed
    return {name: values[0] for name, values in parsed.items()}


def clock() -> float:
    return NOW


def token_response(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "access_token": "ACCESS-1",
        "token_type": "Bearer",
        "expires_in": 3600,
        "scope": "launch openid fhirUser patient/Patient.rs",
        "refresh_token": "REFRESH-1",
        "patient": "pat-1",
    }
    body.update(changes)
    return {key: value for key, value in body.items() if value is not None}


@pytest.fixture(scope="module")
def server_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "k1"})


@pytest.fixture(scope="module")
def other_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "k1"})


@pytest.fixture(scope="module")
def client_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "client-key-1"})


@pytest.fixture
def jwks(rsps: responses.RequestsMock, server_key: RSAKey) -> responses.RequestsMock:
    rsps.get(JWKS, json=KeySet([server_key]).as_dict(private=False))
    return rsps


def id_claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "practitioner-7",
        "aud": CLIENT_ID,
        "iat": int(NOW),
        "exp": int(NOW) + 300,
        "nonce": NONCE,
        "fhirUser": f"{ISS}/Practitioner/practitioner-7",
    }
    claims.update(changes)
    return {key: value for key, value in claims.items() if value is not None}


def sign(claims: dict[str, Any], key: RSAKey | OctKey, alg: str = "RS256") -> str:
    return jwt.encode({"alg": alg, "kid": "k1"}, claims, key)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# --- discover -------------------------------------------------------------------------------


def test_discover_uses_the_smart_configuration(
    rsps: responses.RequestsMock, http: requests.Session
) -> None:
    rsps.get(SMART_CONFIG, json=SMART_CONFIGURATION)
    found = discover(ISS, http=http)
    assert found == Endpoints(
        authorize=AUTHORIZE,
        token=TOKEN,
        issuer=ISSUER,
        jwks_uri=JWKS,
        capabilities=frozenset(SMART_CONFIGURATION["capabilities"]),
        challenge_methods=frozenset({"S256"}),
    )
    assert [call.request.url for call in rsps.calls] == [SMART_CONFIG]


def test_discover_without_challenge_methods_leaves_them_unknown(
    rsps: responses.RequestsMock, http: requests.Session
) -> None:
    config = {
        k: v for k, v in SMART_CONFIGURATION.items() if k != "code_challenge_methods_supported"
    }
    rsps.get(SMART_CONFIG, json=config)
    assert discover(ISS, http=http).challenge_methods is None


@pytest.mark.parametrize(
    "well_known",
    [
        {"status": 404, "json": {"resourceType": "OperationOutcome"}},
        {"status": 200, "body": "<html>not json</html>", "content_type": "text/html"},
        {"status": 200, "json": {"issuer": ISSUER}},
    ],
    ids=["404", "not-json", "no-authorization-endpoint"],
)
def test_discover_falls_back_to_the_capability_statement(
    rsps: responses.RequestsMock, http: requests.Session, well_known: dict[str, Any]
) -> None:
    rsps.get(SMART_CONFIG, **well_known)
    rsps.get(METADATA, json=capability_statement())
    found = discover(ISS, http=http)
    assert found.authorize == AUTHORIZE
    assert found.token == TOKEN
    assert found.issuer is None
    assert found.jwks_uri is None
    assert found.capabilities == frozenset()
    assert found.challenge_methods is None


@pytest.mark.parametrize(
    "metadata",
    [
        {"status": 404},
        {"status": 200, "json": {"resourceType": "CapabilityStatement", "rest": [{}]}},
        {"status": 200, "body": "not json", "content_type": "text/plain"},
        {
            "status": 200,
            "json": {
                "resourceType": "CapabilityStatement",
                "rest": [
                    {
                        "security": {
                            "extension": [
                                {
                                    "url": smart.OAUTH_URIS,
                                    "extension": [{"url": "authorize", "valueUri": AUTHORIZE}],
                                }
                            ]
                        }
                    }
                ],
            },
        },
    ],
    ids=["metadata-404", "no-security", "not-json", "no-token-uri"],
)
def test_discover_without_smart_endpoints_names_the_server(
    rsps: responses.RequestsMock, http: requests.Session, metadata: dict[str, Any]
) -> None:
    rsps.get(SMART_CONFIG, status=404)
    rsps.get(METADATA, **metadata)
    with pytest.raises(LaunchError, match=ISS.replace(".", r"\.")):
        discover(ISS, http=http)


def test_discover_on_an_unreachable_server_is_a_launch_error(
    rsps: responses.RequestsMock, http: requests.Session
) -> None:
    rsps.get(SMART_CONFIG, body=requests.ConnectionError("connection refused"))
    with pytest.raises(LaunchError, match="cannot reach"):
        discover(ISS, http=http)


def test_discover_on_an_unreachable_metadata_is_a_launch_error(
    rsps: responses.RequestsMock, http: requests.Session
) -> None:
    rsps.get(SMART_CONFIG, status=404)
    rsps.get(METADATA, body=requests.Timeout("timed out"))
    with pytest.raises(LaunchError, match="cannot reach"):
        discover(ISS, http=http)


@pytest.mark.parametrize("which", ["authorization_endpoint", "token_endpoint"])
def test_discover_refuses_plain_http_endpoints_on_a_remote_host(
    rsps: responses.RequestsMock, http: requests.Session, which: str
) -> None:
    config = dict(SMART_CONFIGURATION)
    config[which] = config[which].replace("https://", "http://")
    rsps.get(SMART_CONFIG, json=config)
    with pytest.raises(LaunchError, match="not https"):
        discover(ISS, http=http)


@pytest.mark.parametrize("which", ["authorize", "token"])
def test_discover_fallback_refuses_plain_http_endpoints_on_a_remote_host(
    rsps: responses.RequestsMock, http: requests.Session, which: str
) -> None:
    uris = {"authorize": AUTHORIZE, "token": TOKEN}
    uris[which] = uris[which].replace("https://", "http://")
    rsps.get(SMART_CONFIG, status=404)
    rsps.get(METADATA, json=capability_statement(**uris))
    with pytest.raises(LaunchError, match="not https"):
        discover(ISS, http=http)


def test_discover_refuses_a_missing_token_endpoint(
    rsps: responses.RequestsMock, http: requests.Session
) -> None:
    config = {k: v for k, v in SMART_CONFIGURATION.items() if k != "token_endpoint"}
    rsps.get(SMART_CONFIG, json=config)
    with pytest.raises(LaunchError):
        discover(ISS, http=http)


@pytest.mark.parametrize("host", ["127.0.0.1:8080", "localhost:8080", "[::1]:8080"])
def test_discover_accepts_plain_http_on_loopback(
    rsps: responses.RequestsMock, http: requests.Session, host: str
) -> None:
    iss = f"http://{host}/fhir"
    config = dict(
        SMART_CONFIGURATION,
        authorization_endpoint=f"http://{host}/auth/authorize",
        token_endpoint=f"http://{host}/auth/token",
    )
    rsps.get(f"{iss}/.well-known/smart-configuration", json=config)
    found = discover(iss, http=http)
    assert found.authorize == f"http://{host}/auth/authorize"
    assert found.token == f"http://{host}/auth/token"


def test_discover_fallback_accepts_plain_http_on_loopback(
    rsps: responses.RequestsMock, http: requests.Session
) -> None:
    iss = "http://localhost:8080/fhir"
    rsps.get(f"{iss}/.well-known/smart-configuration", status=404)
    rsps.get(
        f"{iss}/metadata",
        json=capability_statement(
            authorize="http://localhost:8080/authorize", token="http://localhost:8080/token"
        ),
    )
    found = discover(iss, http=http)
    assert (found.authorize, found.token) == (
        "http://localhost:8080/authorize",
        "http://localhost:8080/token",
    )


def test_discover_refuses_a_lookalike_loopback_host(
    rsps: responses.RequestsMock, http: requests.Session
) -> None:
    config = dict(SMART_CONFIGURATION, token_endpoint="http://localhost.attacker.example/token")
    rsps.get(SMART_CONFIG, json=config)
    with pytest.raises(LaunchError, match="not https"):
        discover(ISS, http=http)


# --- scopes ---------------------------------------------------------------------------------


def test_scopes_v2_syntax_when_the_server_supports_permission_v2() -> None:
    wanted = scopes(endpoints(capabilities=frozenset({"permission-v2"})), standalone=False).split()
    assert "patient/Observation.rs" in wanted
    assert "patient/Patient.rs" in wanted
    assert "patient/MedicationRequest.crus" in wanted
    assert "patient/CarePlan.crus" in wanted
    assert "user/Practitioner.rs" in wanted
    assert not [s for s in wanted if s.endswith((".read", ".*", ".write"))]


def test_scopes_v1_syntax_otherwise() -> None:
    wanted = scopes(endpoints(capabilities=frozenset({"permission-v1"})), standalone=False).split()
    assert "patient/Observation.read" in wanted
    assert "patient/Patient.read" in wanted
    assert "patient/MedicationRequest.read" in wanted
    assert "patient/MedicationRequest.write" in wanted
    assert "patient/CarePlan.write" in wanted
    assert "user/Practitioner.read" in wanted
    assert not [s for s in wanted if s.endswith((".rs", ".crus"))]


@pytest.mark.parametrize("caps", [frozenset(), frozenset({"permission-v1"})], ids=["none", "v1"])
def test_scopes_v1_fallback_asks_for_read_and_write_never_star(caps: frozenset[str]) -> None:
    """`.*` would include delete, which the app never does: the exact v1 scope string."""
    wanted = scopes(endpoints(capabilities=caps), standalone=False)
    reads = " ".join(f"patient/{kind}.read" for kind in smart.READ_TYPES)
    writes = " ".join(f"patient/{kind}.read patient/{kind}.write" for kind in smart.WRITE_TYPES)
    assert wanted == f"launch openid fhirUser {reads} {writes} user/Practitioner.read"
    assert ".*" not in wanted and "*" not in wanted


@pytest.mark.parametrize("v2", [True, False])
def test_scopes_cover_every_read_and_write_type(v2: bool) -> None:
    caps = frozenset({"permission-v2"}) if v2 else frozenset()
    wanted = set(scopes(endpoints(capabilities=caps), standalone=False).split())
    read = ".rs" if v2 else ".read"
    for kind in smart.READ_TYPES:
        assert f"patient/{kind}{read}" in wanted
    for kind in smart.WRITE_TYPES:
        needed = [".crus"] if v2 else [".read", ".write"]
        assert {f"patient/{kind}{suffix}" for suffix in needed} <= wanted


@pytest.mark.parametrize("v2", [True, False])
@pytest.mark.parametrize("write", list(grants.Write))
def test_scopes_asked_for_allow_every_write(v2: bool, write: grants.Write) -> None:
    caps = frozenset({"permission-v2"}) if v2 else frozenset()
    granted = grants.Grants.parse(scopes(endpoints(capabilities=caps), standalone=False))
    assert grants.refusal(granted, write) is None
    # v2 asks for no delete; v1 has no write scope without it (`.write` is c+u+d)
    deletable = {k for k in smart.READ_TYPES + smart.WRITE_TYPES if "d" in granted.allowed(k)}
    assert deletable == (set() if v2 else set(smart.WRITE_TYPES))


def test_scopes_ehr_launch_asks_for_launch() -> None:
    wanted = scopes(BASE_ENDPOINTS, standalone=False).split()
    assert "launch" in wanted
    assert "launch/patient" not in wanted


def test_scopes_standalone_launch_asks_for_a_patient() -> None:
    wanted = scopes(BASE_ENDPOINTS, standalone=True).split()
    assert "launch/patient" in wanted
    assert "launch" not in wanted


@pytest.mark.parametrize(
    "caps",
    [
        frozenset(),
        frozenset({"permission-v2"}),
        frozenset({"permission-offline"}),
        frozenset({"permission-online", "permission-v2"}),
    ],
)
@pytest.mark.parametrize("standalone", [True, False])
def test_scopes_always_ask_for_identity(caps: frozenset[str], standalone: bool) -> None:
    wanted = scopes(endpoints(capabilities=caps), standalone=standalone).split()
    assert "openid" in wanted
    assert "fhirUser" in wanted
    assert len(wanted) == len(set(wanted))


@pytest.mark.parametrize(
    ("caps", "expected"),
    [
        (frozenset(), set()),
        (frozenset({"permission-online"}), {"online_access"}),
        (frozenset({"permission-offline"}), {"offline_access"}),
        (frozenset({"permission-online", "permission-offline"}), {"online_access"}),
    ],
    ids=["neither", "online", "offline", "both"],
)
def test_scopes_refresh_access_follows_the_capabilities(
    caps: frozenset[str], expected: set[str]
) -> None:
    wanted = set(scopes(endpoints(capabilities=caps), standalone=False).split())
    assert wanted & {"online_access", "offline_access"} == expected


# --- authorize_request ----------------------------------------------------------------------


def test_authorize_url_carries_the_smart_parameters() -> None:
    request = authorize_request(registration(), BASE_ENDPOINTS, launch="launch-xyz")
    parts = urlsplit(request.url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == AUTHORIZE
    params = query(request.url)
    assert params["response_type"] == "code"
    assert params["client_id"] == CLIENT_ID
    assert params["redirect_uri"] == REDIRECT
    assert params["scope"] == scopes(BASE_ENDPOINTS, standalone=False)
    assert params["state"] == request.state
    assert params["aud"] == ISS
    assert params["launch"] == "launch-xyz"
    assert params["nonce"] == request.nonce
    assert params["code_challenge_method"] == "S256"


def test_authorize_url_code_challenge_is_s256_of_the_verifier() -> None:
    request = authorize_request(registration(), BASE_ENDPOINTS, launch="launch-xyz")
    challenge = query(request.url)["code_challenge"]
    expected = b64url(hashlib.sha256(request.code_verifier.encode("ascii")).digest())
    assert challenge == expected
    assert "=" not in challenge
    assert challenge != request.code_verifier
    assert 43 <= len(request.code_verifier) <= 128  # RFC 7636 section 4.1


def test_authorize_state_verifier_and_nonce_are_fresh_per_call() -> None:
    first = authorize_request(registration(), BASE_ENDPOINTS, launch="l")
    second = authorize_request(registration(), BASE_ENDPOINTS, launch="l")
    assert first.state != second.state
    assert first.code_verifier != second.code_verifier
    assert first.nonce != second.nonce
    assert len(first.state) >= 32
    assert len(first.nonce) >= 16


def test_authorize_standalone_has_no_launch_parameter() -> None:
    request = authorize_request(registration(), BASE_ENDPOINTS, launch=None)
    params = query(request.url)
    assert "launch" not in params
    assert "launch/patient" in params["scope"].split()
    assert params["aud"] == ISS


@pytest.mark.parametrize("methods", [frozenset({"plain"}), frozenset()], ids=["plain", "empty"])
def test_authorize_refuses_a_server_without_s256(methods: frozenset[str]) -> None:
    with pytest.raises(LaunchError, match="S256"):
        authorize_request(registration(), endpoints(challenge_methods=methods), launch="l")


@pytest.mark.parametrize(
    "methods", [None, frozenset({"S256"}), frozenset({"plain", "S256"})], ids=str
)
def test_authorize_accepts_s256_or_unknown(methods: frozenset[str] | None) -> None:
    request = authorize_request(registration(), endpoints(challenge_methods=methods), launch="l")
    assert query(request.url)["code_challenge_method"] == "S256"


def test_authorize_uses_registered_scopes_verbatim() -> None:
    custom = "launch openid fhirUser patient/*.read"
    request = authorize_request(registration(scopes=custom), BASE_ENDPOINTS, launch="l")
    assert query(request.url)["scope"] == custom


def test_authorize_url_never_carries_the_client_secret() -> None:
    reg = registration(client_type=ClientType.CONFIDENTIAL_SECRET, client_secret=SECRET)
    request = authorize_request(reg, BASE_ENDPOINTS, launch="l")
    assert SECRET not in request.url
    assert "client_secret" not in query(request.url)


# --- exchange_code --------------------------------------------------------------------------


def exchange(
    reg: Registration | None = None, eps: Endpoints | None = None, **kw: Any
) -> TokenGrant:
    with requests.Session() as session:
        return exchange_code(
            reg or registration(),
            eps or endpoints(jwks_uri=None),
            code=CODE,
            code_verifier=VERIFIER,
            nonce=NONCE,
            http=session,
            clock=clock,
            **kw,
        )


def test_exchange_posts_the_code_and_verifier(rsps: responses.RequestsMock) -> None:
    rsps.post(TOKEN, json=token_response())
    exchange()
    (call,) = rsps.calls
    assert call.request.method == "POST"
    sent = form(call)
    assert sent["grant_type"] == "authorization_code"
    assert sent["code"] == CODE
    assert sent["code_verifier"] == VERIFIER
    assert sent["redirect_uri"] == REDIRECT


def test_exchange_public_client_identifies_itself_in_the_body(
    rsps: responses.RequestsMock,
) -> None:
    rsps.post(TOKEN, json=token_response())
    exchange()
    (call,) = rsps.calls
    assert form(call)["client_id"] == CLIENT_ID
    assert "Authorization" not in call.request.headers
    assert "client_secret" not in form(call)
    assert "client_assertion" not in form(call)


def test_exchange_confidential_secret_uses_http_basic(rsps: responses.RequestsMock) -> None:
    rsps.post(TOKEN, json=token_response())
    exchange(registration(client_type=ClientType.CONFIDENTIAL_SECRET, client_secret=SECRET))
    (call,) = rsps.calls
    expected = base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode("ascii")
    assert call.request.headers["Authorization"] == f"Basic {expected}"
    body = call.request.body if isinstance(call.request.body, str) else call.request.body.decode()
    assert SECRET not in body
    assert "client_secret" not in form(call)


@pytest.mark.parametrize("with_kid", [True, False], ids=["kid", "no-kid"])
def test_exchange_confidential_jwt_signs_a_client_assertion(
    rsps: responses.RequestsMock, client_key: RSAKey, with_kid: bool
) -> None:
    private = client_key.as_dict(private=True)
    if not with_kid:
        private = {k: v for k, v in private.items() if k != "kid"}
    reg = registration(client_type=ClientType.CONFIDENTIAL_JWT, private_jwk=private)
    rsps.post(TOKEN, json=token_response())
    exchange(reg)
    (call,) = rsps.calls
    sent = form(call)
    assert "Authorization" not in call.request.headers
    assert sent["client_assertion_type"] == JWT_BEARER
    public = RSAKey.import_key(client_key.as_dict(private=False))
    decoded = jwt.decode(sent["client_assertion"], public, algorithms=[reg.jwt_alg])
    assert decoded.header["alg"] == "RS384"
    if with_kid:
        assert decoded.header["kid"] == "client-key-1"
    else:
        assert "kid" not in decoded.header
    claims = decoded.claims
    assert claims["iss"] == CLIENT_ID
    assert claims["sub"] == CLIENT_ID
    assert claims["aud"] == TOKEN
    assert claims["jti"]
    assert isinstance(claims["exp"], int)
    assert claims["exp"] > claims.get("iat", 0)
    assert sent["code_verifier"] == VERIFIER


def test_exchange_confidential_jwt_assertion_is_not_valid_for_another_key(
    rsps: responses.RequestsMock, client_key: RSAKey, other_key: RSAKey
) -> None:
    reg = registration(
        client_type=ClientType.CONFIDENTIAL_JWT, private_jwk=client_key.as_dict(private=True)
    )
    rsps.post(TOKEN, json=token_response())
    exchange(reg)
    assertion = form(rsps.calls[0])["client_assertion"]
    with pytest.raises(BadSignatureError):
        jwt.decode(
            assertion, RSAKey.import_key(other_key.as_dict(private=False)), algorithms=["RS384"]
        )


def test_exchange_jti_is_unique_per_assertion(
    rsps: responses.RequestsMock, client_key: RSAKey
) -> None:
    reg = registration(
        client_type=ClientType.CONFIDENTIAL_JWT, private_jwk=client_key.as_dict(private=True)
    )
    rsps.post(TOKEN, json=token_response())
    exchange(reg)
    exchange(reg)
    public = RSAKey.import_key(client_key.as_dict(private=False))
    jtis = {
        jwt.decode(form(call)["client_assertion"], public, algorithms=["RS384"]).claims["jti"]
        for call in rsps.calls
    }
    assert len(jtis) == 2


def test_exchange_returns_the_checked_grant(rsps: responses.RequestsMock) -> None:
    rsps.post(
        TOKEN,
        json=token_response(
            encounter="enc-9",
            need_patient_banner=False,
            smart_style_url="https://ehr.example.org/styles/smart.json",
        ),
    )
    grant = exchange()
    assert grant == TokenGrant(
        access_token="ACCESS-1",
        refresh_token="REFRESH-1",
        expires_at=NOW + 3600,
        scope="launch openid fhirUser patient/Patient.rs",
        patient="pat-1",
        encounter="enc-9",
        need_patient_banner=False,
        smart_style_url="https://ehr.example.org/styles/smart.json",
        fhir_user=None,
    )


def test_exchange_accepts_a_lowercase_bearer(rsps: responses.RequestsMock) -> None:
    rsps.post(TOKEN, json=token_response(token_type="bearer"))
    assert exchange().access_token == "ACCESS-1"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"access_token": None}, "no access token"),
        ({"access_token": ""}, "no access token"),
        ({"token_type": None}, "Bearer"),
        ({"token_type": "mac"}, "Bearer"),
        ({"patient": None}, "patient"),
        ({"patient": ""}, "patient"),
        ({"patient": 42}, "patient"),
    ],
    ids=[
        "no-access",
        "empty-access",
        "no-type",
        "mac",
        "no-patient",
        "empty-patient",
        "patient-number",
    ],
)
def test_exchange_refuses_an_unusable_token_response(
    rsps: responses.RequestsMock, change: dict[str, Any], message: str
) -> None:
    rsps.post(TOKEN, json=token_response(**change))
    with pytest.raises(LaunchError, match=message):
        exchange()


def test_exchange_error_response_is_a_launch_error(rsps: responses.RequestsMock) -> None:
    rsps.post(
        TOKEN,
        status=400,
        json={"error": "invalid_grant", "error_description": f"code {CODE} expired"},
    )
    with pytest.raises(LaunchError) as caught:
        exchange()
    message = str(caught.value)
    assert "invalid_grant" in message
    assert CODE not in message
    assert VERIFIER not in message


@pytest.mark.parametrize(
    "reply",
    [
        {"status": 500, "body": f"internal error for code={CODE}"},
        {"status": 401, "body": "<html>denied</html>", "content_type": "text/html"},
        {"status": 200, "body": "not json", "content_type": "text/plain"},
        {"body": requests.ConnectionError(f"refused {CODE} {VERIFIER}")},
    ],
    ids=["500", "401-html", "200-not-json", "unreachable"],
)
def test_exchange_failures_are_launch_errors_without_credentials(
    rsps: responses.RequestsMock, reply: dict[str, Any]
) -> None:
    rsps.post(TOKEN, **reply)
    with pytest.raises(LaunchError, match="refused") as caught:
        exchange()
    assert CODE not in str(caught.value)
    assert VERIFIER not in str(caught.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, True), (True, True), (False, False)],
    ids=["absent", "true", "false"],
)
def test_exchange_need_patient_banner_is_false_only_when_explicit(
    rsps: responses.RequestsMock, value: bool | None, expected: bool
) -> None:
    rsps.post(TOKEN, json=token_response(need_patient_banner=value))
    assert exchange().need_patient_banner is expected


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        ("https://ehr.example.org/styles/smart-v1.json", True),
        ("https://ehr.example.org:443/styles/smart-v1.json", False),
        ("https://cdn.example.net/smart-v1.json", False),
        ("http://ehr.example.org/styles/smart-v1.json", False),
        ("https://ehr.example.org.attacker.example/smart.json", False),
        ("//cdn.example.net/smart.json", False),
    ],
    ids=["same-origin", "explicit-port", "other-host", "http", "suffix-host", "scheme-relative"],
)
def test_exchange_smart_style_url_only_from_the_ehr_origin(
    rsps: responses.RequestsMock, url: str, kept: bool
) -> None:
    rsps.post(TOKEN, json=token_response(smart_style_url=url))
    assert exchange().smart_style_url == (url if kept else None)


def test_exchange_encounter_is_optional(rsps: responses.RequestsMock) -> None:
    rsps.post(TOKEN, json=token_response())
    grant = exchange()
    assert grant.encounter is None
    assert grant.smart_style_url is None


@pytest.mark.parametrize(
    ("expires_in", "expected"),
    [(3600, NOW + 3600), (120, NOW + 120), (None, NOW + 300)],
    ids=["3600", "120", "absent"],
)
def test_exchange_expiry_is_relative_to_the_clock(
    rsps: responses.RequestsMock, expires_in: int | None, expected: float
) -> None:
    rsps.post(TOKEN, json=token_response(expires_in=expires_in))
    assert exchange().expires_at == expected


def test_exchange_without_refresh_token(rsps: responses.RequestsMock) -> None:
    rsps.post(TOKEN, json=token_response(refresh_token=None))
    assert exchange().refresh_token is None


def test_exchange_returns_fhir_user_from_the_id_token(
    jwks: responses.RequestsMock, server_key: RSAKey
) -> None:
    jwks.post(TOKEN, json=token_response(id_token=sign(id_claims(), server_key)))
    grant = exchange(eps=BASE_ENDPOINTS)
    assert grant.fhir_user == f"{ISS}/Practitioner/practitioner-7"


def test_exchange_falls_back_to_the_profile_claim(
    jwks: responses.RequestsMock, server_key: RSAKey
) -> None:
    claims = id_claims(fhirUser=None, profile=f"{ISS}/Practitioner/p2")
    jwks.post(TOKEN, json=token_response(id_token=sign(claims, server_key)))
    assert exchange(eps=BASE_ENDPOINTS).fhir_user == f"{ISS}/Practitioner/p2"


def test_exchange_refuses_a_bad_id_token(jwks: responses.RequestsMock, server_key: RSAKey) -> None:
    jwks.post(TOKEN, json=token_response(id_token=sign(id_claims(nonce="other"), server_key)))
    with pytest.raises(LaunchError, match="nonce"):
        exchange(eps=BASE_ENDPOINTS)


def test_exchange_without_scope_in_the_answer_granted_what_was_asked(
    rsps: responses.RequestsMock,
) -> None:
    rsps.post(TOKEN, json=token_response(scope=None))
    asked = "launch openid patient/*.rs patient/Task.cu"
    assert exchange(requested_scope=asked).scope == asked


def test_exchange_an_explicit_scope_wins_over_what_was_asked(rsps: responses.RequestsMock) -> None:
    rsps.post(TOKEN, json=token_response(scope="launch patient/*.rs"))
    assert exchange(requested_scope="launch patient/*.cruds").scope == "launch patient/*.rs"


def test_authorize_request_remembers_the_scope_it_asked_for() -> None:
    request = authorize_request(registration(), BASE_ENDPOINTS, launch="l")
    assert request.scope == query(request.url)["scope"]
    assert "patient/Task.crus" in request.scope.split()


def test_exchange_takes_fhir_user_from_the_token_response_without_a_jwks(
    rsps: responses.RequestsMock, server_key: RSAKey
) -> None:
    """CapabilityStatement discovery: no JWKS, so the id_token is unverifiable and unused, but
    the token response's own fhirUser keeps Provenance's author."""
    user = f"{ISS}/Practitioner/practitioner-7"
    body = token_response(
        id_token=sign(id_claims(fhirUser=f"{ISS}/Practitioner/from-the-id-token"), server_key),
        fhirUser=user,
    )
    rsps.post(TOKEN, json=body)
    grant = exchange(eps=endpoints(jwks_uri=None))
    assert grant.fhir_user == user


def test_exchange_takes_fhir_user_from_the_token_response_without_an_id_token(
    rsps: responses.RequestsMock,
) -> None:
    rsps.post(TOKEN, json=token_response(fhirUser="Practitioner/p9"))
    assert exchange(eps=endpoints(jwks_uri=None)).fhir_user == "Practitioner/p9"


def test_exchange_the_verified_id_token_wins_over_the_token_response(
    jwks: responses.RequestsMock, server_key: RSAKey
) -> None:
    body = token_response(id_token=sign(id_claims(), server_key), fhirUser="Practitioner/other")
    jwks.post(TOKEN, json=body)
    assert exchange(eps=BASE_ENDPOINTS).fhir_user == f"{ISS}/Practitioner/practitioner-7"


@pytest.mark.parametrize("value", [42, "", "   ", ["Practitioner/p9"], {"reference": "x"}])
def test_exchange_ignores_an_unusable_fhir_user_in_the_token_response(
    rsps: responses.RequestsMock, value: Any
) -> None:
    rsps.post(TOKEN, json=token_response(fhirUser=value))
    assert exchange(eps=endpoints(jwks_uri=None)).fhir_user is None


def test_exchange_reads_fhir_context(rsps: responses.RequestsMock) -> None:
    """SMART 2.x fhirContext: references, canonicals and identifiers, with type and role."""
    context = [
        {"reference": "Encounter/enc-2"},
        {"reference": "ServiceRequest/sr-1", "role": "https://example.org/launch-role/order"},
        {"canonical": "http://example.org/Questionnaire/q|1.0", "type": "Questionnaire"},
        {"identifier": {"system": "urn:oid:1.2.3", "value": "img-7"}, "type": "ImagingStudy"},
        {"type": "Encounter"},
        "DiagnosticReport/dr-3",
        42,
        {"reference": ""},
        {"reference": "x" * 2000},
    ]
    rsps.post(TOKEN, json=token_response(fhirContext=context))
    items = exchange().fhir_context
    assert items == (
        smart.ContextItem(reference="Encounter/enc-2"),
        smart.ContextItem(
            reference="ServiceRequest/sr-1", role="https://example.org/launch-role/order"
        ),
        smart.ContextItem(
            canonical="http://example.org/Questionnaire/q|1.0", resource_type="Questionnaire"
        ),
        smart.ContextItem(identifier="urn:oid:1.2.3|img-7", resource_type="ImagingStudy"),
        smart.ContextItem(reference="DiagnosticReport/dr-3"),
    )
    assert [item.kind for item in items] == [
        "Encounter",
        "ServiceRequest",
        "Questionnaire",
        "ImagingStudy",
        "DiagnosticReport",
    ]


@pytest.mark.parametrize("value", [None, "Encounter/e1", {"reference": "Encounter/e1"}, 7])
def test_exchange_without_a_fhir_context_list_keeps_none(
    rsps: responses.RequestsMock, value: Any
) -> None:
    rsps.post(TOKEN, json=token_response(fhirContext=value))
    assert exchange().fhir_context == ()


def test_exchange_bounds_the_fhir_context_it_keeps(rsps: responses.RequestsMock) -> None:
    many = [{"reference": f"Observation/o{i}"} for i in range(500)]
    rsps.post(TOKEN, json=token_response(fhirContext=many))
    assert len(exchange().fhir_context) == smart.MAX_CONTEXT_ITEMS


@pytest.mark.parametrize(
    ("reference", "kind"),
    [
        ("Encounter/e1", "Encounter"),
        ("https://ehr.example.org/fhir/Encounter/e1", "Encounter"),
        ("Encounter/e1/_history/3", "Encounter"),
        ("e1", None),
        ("#contained", None),
    ],
)
def test_context_item_kind_from_its_reference(reference: str, kind: str | None) -> None:
    assert smart.ContextItem(reference=reference).kind == kind


def test_exchange_with_id_token_but_no_jwks_uri_ignores_its_claims(
    rsps: responses.RequestsMock, server_key: RSAKey
) -> None:
    rsps.post(TOKEN, json=token_response(id_token=sign(id_claims(), server_key)))
    grant = exchange(eps=endpoints(jwks_uri=None))
    assert grant.fhir_user is None  # unverifiable: never trusted


# --- verify_id_token ------------------------------------------------------------------------


def verify(token: str, eps: Endpoints = BASE_ENDPOINTS, **changes: Any) -> dict[str, Any]:
    with requests.Session() as session:
        return verify_id_token(
            token,
            registration(**changes),
            eps,
            nonce=NONCE,
            http=session,
            clock=clock,
        )


def test_verify_accepts_a_valid_id_token(jwks: responses.RequestsMock, server_key: RSAKey) -> None:
    claims = verify(sign(id_claims(), server_key))
    assert claims["fhirUser"] == f"{ISS}/Practitioner/practitioner-7"
    assert claims["sub"] == "practitioner-7"
    assert [call.request.url for call in jwks.calls] == [JWKS]


def test_verify_accepts_an_audience_list(jwks: responses.RequestsMock, server_key: RSAKey) -> None:
    claims = verify(sign(id_claims(aud=["other-app", CLIENT_ID]), server_key))
    assert claims["nonce"] == NONCE


def test_verify_without_a_discovered_issuer_skips_the_issuer_check(
    jwks: responses.RequestsMock, server_key: RSAKey
) -> None:
    claims = verify(
        sign(id_claims(iss="https://idp.example.org"), server_key), endpoints(issuer=None)
    )
    assert claims["iss"] == "https://idp.example.org"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"iss": "https://evil.example.org/oauth"}, "issuer"),
        ({"aud": "some-other-app"}, "audience"),
        ({"aud": ["a", "b"]}, "audience"),
        ({"aud": None}, "audience"),
        ({"exp": int(NOW) - 3600}, "expiry"),
        ({"exp": None}, "expiry"),
        ({"exp": "tomorrow"}, "expiry"),
        ({"nonce": "replayed-nonce"}, "nonce"),
        ({"nonce": None}, "nonce"),
    ],
    ids=[
        "issuer",
        "aud",
        "aud-list",
        "no-aud",
        "expired",
        "no-exp",
        "exp-string",
        "nonce",
        "no-nonce",
    ],
)
def test_verify_refuses_wrong_claims(
    jwks: responses.RequestsMock, server_key: RSAKey, change: dict[str, Any], problem: str
) -> None:
    with pytest.raises(LaunchError, match=problem):
        verify(sign(id_claims(**change), server_key))


def test_verify_names_every_failed_check(jwks: responses.RequestsMock, server_key: RSAKey) -> None:
    token = sign(id_claims(aud="x", nonce="y"), server_key)
    with pytest.raises(LaunchError, match="audience, nonce"):
        verify(token)


def test_verify_refuses_a_token_signed_by_another_key(
    jwks: responses.RequestsMock, other_key: RSAKey
) -> None:
    with pytest.raises(LaunchError, match="not valid"):
        verify(sign(id_claims(), other_key))


def test_verify_refuses_a_token_with_an_unknown_kid(
    jwks: responses.RequestsMock, client_key: RSAKey
) -> None:
    token = jwt.encode({"alg": "RS256", "kid": "client-key-1"}, id_claims(), client_key)
    with pytest.raises(LaunchError, match="not valid"):
        verify(token)


def test_verify_refuses_alg_none(jwks: responses.RequestsMock) -> None:
    header = b64url(json.dumps({"alg": "none", "kid": "k1", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(id_claims()).encode())
    with pytest.raises(LaunchError, match="not valid"):
        verify(f"{header}.{payload}.")


def test_verify_refuses_hs256(jwks: responses.RequestsMock) -> None:
    token = sign(id_claims(), OctKey.import_key(b"k" * 32), alg="HS256")
    with pytest.raises(LaunchError, match="not valid"):
        verify(token)


def test_verify_refuses_hs256_keyed_with_the_public_key(
    jwks: responses.RequestsMock, server_key: RSAKey
) -> None:
    # The classic algorithm-confusion attack: HMAC over the server's public key bytes.
    # joserfc refuses such a key, so the token is built by hand.
    public_pem = server_key.as_pem(private=False)
    header = b64url(json.dumps({"alg": "HS256", "kid": "k1", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(id_claims()).encode())
    mac = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    token = f"{header}.{payload}.{b64url(mac)}"
    with pytest.raises(LaunchError, match="not valid"):
        verify(token)


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c", "a.b"])
def test_verify_refuses_garbage(jwks: responses.RequestsMock, token: str) -> None:
    with pytest.raises(LaunchError, match="not valid"):
        verify(token)


def test_verify_refuses_a_tampered_payload(
    jwks: responses.RequestsMock, server_key: RSAKey
) -> None:
    header, _, signature = sign(id_claims(), server_key).split(".")
    forged = b64url(json.dumps(id_claims(sub="admin")).encode())
    with pytest.raises(LaunchError, match="not valid"):
        verify(f"{header}.{forged}.{signature}")


def test_verify_without_jwks_uri_is_refused(
    rsps: responses.RequestsMock, server_key: RSAKey
) -> None:
    with pytest.raises(LaunchError, match="jwks_uri"):
        verify(sign(id_claims(), server_key), endpoints(jwks_uri=None))
    assert not rsps.calls


def test_verify_refuses_a_plain_http_jwks_uri(
    rsps: responses.RequestsMock, server_key: RSAKey
) -> None:
    with pytest.raises(LaunchError, match="not https"):
        verify(sign(id_claims(), server_key), endpoints(jwks_uri="http://ehr.example.org/jwks"))
    assert not rsps.calls


@pytest.mark.parametrize(
    "reply",
    [
        {"status": 404},
        {"status": 200, "body": "nope", "content_type": "text/plain"},
        {"status": 200, "json": ["not", "a", "set"]},
    ],
    ids=["404", "not-json", "list"],
)
def test_verify_with_an_unreadable_jwks_is_refused(
    rsps: responses.RequestsMock, server_key: RSAKey, reply: dict[str, Any]
) -> None:
    rsps.get(JWKS, **reply)
    with pytest.raises(LaunchError, match="JWKS"):
        verify(sign(id_claims(), server_key))


def test_verify_with_an_unreachable_jwks_is_refused(
    rsps: responses.RequestsMock, server_key: RSAKey
) -> None:
    rsps.get(JWKS, body=requests.ConnectionError("refused"))
    with pytest.raises(LaunchError, match="cannot reach"):
        verify(sign(id_claims(), server_key))


def test_verify_with_a_malformed_jwks_is_refused(
    rsps: responses.RequestsMock, server_key: RSAKey
) -> None:
    rsps.get(JWKS, json={"keys": [{"kty": "RSA", "kid": "k1"}]})
    with pytest.raises(LaunchError):
        verify(sign(id_claims(), server_key))


# --- refresh --------------------------------------------------------------------------------

PREVIOUS = TokenGrant(
    access_token="ACCESS-OLD",
    refresh_token="REFRESH-OLD",
    expires_at=NOW - 10,
    scope="launch openid fhirUser patient/Patient.rs offline_access",
    patient="pat-1",
    encounter="enc-9",
    need_patient_banner=False,
    smart_style_url="https://ehr.example.org/styles/smart.json",
    fhir_user=f"{ISS}/Practitioner/practitioner-7",
)


def renew(reg: Registration | None = None) -> TokenGrant:
    return refresh(
        reg or registration(),
        BASE_ENDPOINTS,
        refresh_token="REFRESH-OLD",
        previous=PREVIOUS,
        clock=clock,
    )


def test_refresh_posts_the_refresh_token(rsps: responses.RequestsMock) -> None:
    rsps.post(TOKEN, json={"access_token": "ACCESS-NEW", "token_type": "Bearer"})
    renew()
    (call,) = rsps.calls
    sent = form(call)
    assert sent["grant_type"] == "refresh_token"
    assert sent["refresh_token"] == "REFRESH-OLD"
    assert sent["client_id"] == CLIENT_ID
    assert "code" not in sent


def test_refresh_confidential_secret_uses_http_basic(rsps: responses.RequestsMock) -> None:
    rsps.post(TOKEN, json={"access_token": "ACCESS-NEW", "token_type": "Bearer"})
    renew(registration(client_type=ClientType.CONFIDENTIAL_SECRET, client_secret=SECRET))
    expected = base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode("ascii")
    assert rsps.calls[0].request.headers["Authorization"] == f"Basic {expected}"


def test_refresh_confidential_jwt_sends_an_assertion(
    rsps: responses.RequestsMock, client_key: RSAKey
) -> None:
    rsps.post(TOKEN, json={"access_token": "ACCESS-NEW", "token_type": "Bearer"})
    renew(
        registration(
            client_type=ClientType.CONFIDENTIAL_JWT, private_jwk=client_key.as_dict(private=True)
        )
    )
    sent = form(rsps.calls[0])
    assert sent["client_assertion_type"] == JWT_BEARER
    public = RSAKey.import_key(client_key.as_dict(private=False))
    claims = jwt.decode(sent["client_assertion"], public, algorithms=["RS384"]).claims
    assert claims["aud"] == TOKEN


def test_refresh_keeps_the_launch_context(rsps: responses.RequestsMock) -> None:
    rsps.post(
        TOKEN,
        json={
            "access_token": "ACCESS-NEW",
            "token_type": "Bearer",
            "expires_in": 900,
            "patient": "someone-else",
            "refresh_token": "REFRESH-NEW",
        },
    )
    grant = renew()
    assert grant == dataclasses.replace(
        PREVIOUS,
        access_token="ACCESS-NEW",
        refresh_token="REFRESH-NEW",
        expires_at=NOW + 900,
    )


def test_refresh_keeps_the_old_refresh_token_when_none_is_sent(
    rsps: responses.RequestsMock,
) -> None:
    rsps.post(TOKEN, json={"access_token": "ACCESS-NEW", "token_type": "Bearer"})
    grant = renew()
    assert grant.refresh_token == "REFRESH-OLD"
    assert grant.expires_at == NOW + 300
    assert grant.scope == PREVIOUS.scope


def test_refresh_keeps_the_fhir_context(rsps: responses.RequestsMock) -> None:
    item = smart.ContextItem(reference="Encounter/enc-9")
    rsps.post(TOKEN, json={"access_token": "ACCESS-NEW", "token_type": "Bearer"})
    grant = refresh(
        registration(),
        BASE_ENDPOINTS,
        refresh_token="REFRESH-OLD",
        previous=dataclasses.replace(PREVIOUS, fhir_context=(item,)),
        clock=clock,
    )
    assert grant.fhir_context == (item,)


def test_refresh_takes_a_new_scope(rsps: responses.RequestsMock) -> None:
    rsps.post(TOKEN, json={"access_token": "ACCESS-NEW", "token_type": "Bearer", "scope": "openid"})
    assert renew().scope == "openid"


def test_refresh_refused_is_session_expired(rsps: responses.RequestsMock) -> None:
    rsps.post(TOKEN, status=400, json={"error": "invalid_grant"})
    with pytest.raises(SessionExpired) as caught:
        renew()
    assert "REFRESH-OLD" not in str(caught.value)


@pytest.mark.parametrize(
    "reply",
    [
        {"status": 500, "body": "boom"},
        {"status": 401, "body": "<html>no</html>", "content_type": "text/html"},
        {"body": requests.ConnectionError("refused")},
        {"status": 200, "json": {"token_type": "Bearer"}},
        {"status": 200, "json": {"access_token": "", "token_type": "Bearer"}},
    ],
    ids=["500", "401-html", "unreachable", "no-access-token", "empty-access-token"],
)
def test_refresh_failure_is_session_expired(
    rsps: responses.RequestsMock, reply: dict[str, Any]
) -> None:
    rsps.post(TOKEN, **reply)
    with pytest.raises(SessionExpired) as caught:
        renew()
    assert "REFRESH-OLD" not in str(caught.value)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (NOW - REFRESH_MARGIN_S - 1, False),
        (NOW - REFRESH_MARGIN_S - 0.001, False),
        (NOW - REFRESH_MARGIN_S, True),
        (NOW - 1, True),
        (NOW, True),
        (NOW + 1000, True),
        (NOW - 3600, False),
    ],
)
def test_needs_refresh_boundaries(now: float, expected: bool) -> None:
    assert needs_refresh(NOW, now=now) is expected


def test_refresh_margin_is_a_sane_value() -> None:
    assert 0 < REFRESH_MARGIN_S < 300  # shorter than the default token lifetime


# --- fetch_style ----------------------------------------------------------------------------

STYLE = "https://ehr.example.org/styles/smart.json"


def test_fetch_style_returns_the_document(
    rsps: responses.RequestsMock, http: requests.Session
) -> None:
    rsps.get(STYLE, json={"color_background": "#edeae3", "font_family_body": "Georgia"})
    assert fetch_style(STYLE, http=http) == {
        "color_background": "#edeae3",
        "font_family_body": "Georgia",
    }


@pytest.mark.parametrize(
    "reply",
    [
        {"status": 404},
        {"status": 500, "body": "boom"},
        {"status": 200, "body": "body { color: red }", "content_type": "text/css"},
        {"status": 200, "json": ["not", "an", "object"]},
        {"body": requests.ConnectionError("refused")},
        {"body": requests.Timeout("slow")},
    ],
    ids=["404", "500", "not-json", "list", "unreachable", "timeout"],
)
def test_fetch_style_is_empty_on_failure(
    rsps: responses.RequestsMock, http: requests.Session, reply: dict[str, Any]
) -> None:
    rsps.get(STYLE, **reply)
    assert fetch_style(STYLE, http=http) == {}
