"""The SMART App Launch client: discovery, authorize URL (PKCE S256), token, id_token, refresh."""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, import_key

from smart_app.config import LOOPBACK_HOSTS, ClientType, Registration
from smart_app.errors import LaunchError, SessionExpired

TIMEOUT_S = 10
REFRESH_MARGIN_S = 60
ID_TOKEN_ALGS = ["RS256", "RS384", "ES256", "ES384"]
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
KEYS_TTL_S = 3600.0
"""How long a server's JWK Set (its id_token keys) is kept before it is fetched again."""
KEYS_MIN_REFETCH_S = 60.0
"""A JWK Set lacking an id_token's key id is fetched again (key rotation), at most this often."""
MAX_CONTEXT_ITEMS = 32
MAX_CONTEXT_TEXT = 1024
"""Bounds on the fhirContext kept in the session (its items are short references)."""
MAX_APP_CONTEXT_CHARS = 4096
"""The longest appContext kept (a CDS card link's, passed on by the EHR); longer: ignored."""
REFERENCE_TYPE = re.compile(
    r"(?:^|/)([A-Z][A-Za-z]{1,63})/[A-Za-z0-9.-]{1,64}(?:/_history/[^/]+)?$"
)
"""The resource type of a (relative or absolute) literal reference."""

READ_TYPES = (
    "Patient",
    "Observation",
    "Condition",
    "MedicationAdministration",
    "MedicationStatement",
    "Medication",
    "Procedure",
    "Device",
    "Immunization",
)
WRITE_TYPES = (
    "MedicationRequest",
    "CarePlan",
    "Task",
    "ServiceRequest",
    "DetectedIssue",
    "DocumentReference",
    "Provenance",
)


@dataclass(frozen=True)
class Endpoints:
    """What discovery found on one FHIR server."""

    token: str
    authorize: str = ""
    issuer: str | None = None
    jwks_uri: str | None = None
    capabilities: frozenset[str] = frozenset()
    challenge_methods: frozenset[str] | None = None


@dataclass(frozen=True)
class ContextItem:
    """One fhirContext item of a token response (SMART 2.x): what the EHR had open besides the
    patient, by reference, canonical URL or identifier (`system|value`), with its type and role."""

    reference: str | None = None
    canonical: str | None = None
    identifier: str | None = None
    resource_type: str | None = None
    role: str | None = None

    @classmethod
    def from_json(cls, raw: Any) -> ContextItem | None:
        """An item from the token response (an object, or a bare reference string as in SMART
        2.0.0), or None when it names nothing usable."""
        if isinstance(raw, str):
            raw = {"reference": raw}
        if not isinstance(raw, Mapping):
            return None
        identifier = raw.get("identifier")
        token = None
        if isinstance(identifier, Mapping) and _short(identifier.get("value")):
            token = f"{_short(identifier.get('system')) or ''}|{identifier['value']}"
        item = cls(
            reference=_short(raw.get("reference")),
            canonical=_short(raw.get("canonical")),
            identifier=token if token and len(token) <= MAX_CONTEXT_TEXT else None,
            resource_type=_short(raw.get("type")),
            role=_short(raw.get("role")),
        )
        return item if item.reference or item.canonical or item.identifier else None

    @property
    def kind(self) -> str | None:
        """The resource type: `type`, else the one its literal reference names."""
        if self.resource_type:
            return self.resource_type
        match = REFERENCE_TYPE.search(self.reference or "")
        return match.group(1) if match else None


def _short(value: Any) -> str | None:
    """A non-empty string of bounded length, else None."""
    if isinstance(value, str) and value.strip() and len(value) <= MAX_CONTEXT_TEXT:
        return value.strip()
    return None


def fhir_context(raw: Any) -> tuple[ContextItem, ...]:
    """The usable items of a token response's fhirContext (anything else ignored)."""
    if not isinstance(raw, list):
        return ()
    items = (ContextItem.from_json(item) for item in raw[:MAX_CONTEXT_ITEMS])
    return tuple(item for item in items if item is not None)


@dataclass(frozen=True)
class TokenGrant:
    """A token response, checked: the tokens and the launch context."""

    access_token: str
    refresh_token: str | None
    expires_at: float
    scope: str
    patient: str | None
    encounter: str | None
    need_patient_banner: bool
    smart_style_url: str | None
    fhir_user: str | None
    fhir_context: tuple[ContextItem, ...] = ()
    app_context: str | None = None
    """The appContext of the CDS card link the app was launched from: untrusted text, kept as
    sent (read only by the plan page, never logged or shown)."""


def app_context(raw: Any) -> str | None:
    """A token response's appContext: a non-empty string of at most MAX_APP_CONTEXT_CHARS
    characters, else None."""
    if isinstance(raw, str) and raw and len(raw) <= MAX_APP_CONTEXT_CHARS:
        return raw
    return None


def _https_or_loopback(url: str, *, what: str) -> str:
    """An endpoint URL the app will send credentials to."""
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS):
        return url
    raise LaunchError(f"the server's {what} {url!r} is not https")


def _get_json(http: requests.Session, url: str, *, what: str) -> Any:
    """GET a JSON document, or None when the server does not have it."""
    try:
        response = http.get(url, headers={"Accept": "application/json"}, timeout=TIMEOUT_S)
    except requests.RequestException as exc:
        raise LaunchError(f"cannot reach {what} at {url}: {type(exc).__name__}") from exc
    if response.status_code != 200:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def discover(iss: str, *, http: requests.Session) -> Endpoints:
    """SMART configuration from .well-known, else the CapabilityStatement security extension."""
    config = _get_json(http, f"{iss}/.well-known/smart-configuration", what="SMART discovery")
    if isinstance(config, dict) and config.get("authorization_endpoint"):
        methods = config.get("code_challenge_methods_supported")
        return Endpoints(
            authorize=_https_or_loopback(config["authorization_endpoint"], what="authorize URL"),
            token=_https_or_loopback(str(config.get("token_endpoint", "")), what="token URL"),
            issuer=config.get("issuer"),
            jwks_uri=config.get("jwks_uri"),
            capabilities=frozenset(config.get("capabilities") or ()),
            challenge_methods=frozenset(methods) if isinstance(methods, list) else None,
        )
    metadata = _get_json(http, f"{iss}/metadata", what="the CapabilityStatement")
    uris = _oauth_uris(metadata)
    if "authorize" not in uris or "token" not in uris:
        raise LaunchError(f"{iss} advertises no SMART authorization endpoints")
    return Endpoints(
        authorize=_https_or_loopback(uris["authorize"], what="authorize URL"),
        token=_https_or_loopback(uris["token"], what="token URL"),
    )


def _oauth_uris(metadata: Any) -> dict[str, str]:
    """authorize/token URLs from a CapabilityStatement's rest.security oauth-uris extension."""
    found: dict[str, str] = {}
    rests = metadata.get("rest", []) if isinstance(metadata, dict) else []
    for rest in rests if isinstance(rests, list) else []:
        security = rest.get("security", {}) if isinstance(rest, dict) else {}
        for ext in security.get("extension", []) if isinstance(security, dict) else []:
            if isinstance(ext, dict) and ext.get("url") == OAUTH_URIS:
                for inner in ext.get("extension", []):
                    if isinstance(inner, dict) and isinstance(inner.get("valueUri"), str):
                        found[str(inner.get("url"))] = inner["valueUri"]
    return found


def scopes(endpoints: Endpoints, *, standalone: bool) -> str:
    """The scopes to ask for: launch context, identity, and the patient's reads and writes."""
    v2 = "permission-v2" in endpoints.capabilities
    wanted = ["launch/patient" if standalone else "launch", "openid", "fhirUser"]
    for kind in READ_TYPES:
        wanted.append(f"patient/{kind}.rs" if v2 else f"patient/{kind}.read")
    for kind in WRITE_TYPES:
        # v1: `.read` and `.write` rather than `.*`, naming what the app does (v1 has no
        # write scope without delete: `.write` is create, update and delete)
        wanted.extend(
            [f"patient/{kind}.crus"] if v2 else [f"patient/{kind}.read", f"patient/{kind}.write"]
        )
    # the signed-in user's own Practitioner (fhirUser): the prior-authorization letter names
    # the prescriber from it; a refusal only leaves the letter's placeholder
    wanted.append("user/Practitioner.rs" if v2 else "user/Practitioner.read")
    if "permission-online" in endpoints.capabilities:
        wanted.append("online_access")
    elif "permission-offline" in endpoints.capabilities:
        wanted.append("offline_access")
    return " ".join(wanted)


@dataclass(frozen=True)
class AuthorizeRequest:
    """The redirect to the EHR and what the callback needs to finish it."""

    url: str
    state: str
    code_verifier: str
    nonce: str
    scope: str
    """The scopes asked for: what was granted when the token response names none."""


def _oauth(
    registration: Registration, *, scope: str = "", token_endpoint: str = ""
) -> OAuth2Session:
    """An authlib OAuth2 session for this registration's client type."""
    method = {
        ClientType.PUBLIC: "none",
        ClientType.CONFIDENTIAL_SECRET: "client_secret_basic",
        ClientType.CONFIDENTIAL_JWT: "private_key_jwt",
    }[registration.client_type]
    secret: Any = registration.client_secret or None
    jwk = dict(registration.private_jwk or {})
    if registration.client_type is ClientType.CONFIDENTIAL_JWT:
        secret = import_key(jwk)
    session = OAuth2Session(
        client_id=registration.client_id,
        client_secret=secret,
        scope=scope or None,
        redirect_uri=registration.redirect_uri,
        code_challenge_method="S256",
        token_endpoint_auth_method=method,
    )
    if registration.client_type is ClientType.CONFIDENTIAL_JWT:
        session.register_client_auth_method(
            PrivateKeyJWT(
                token_endpoint,
                alg=registration.jwt_alg,
                headers={"kid": jwk["kid"]} if "kid" in jwk else None,
            )
        )
    return session


def authorize_request(
    registration: Registration, endpoints: Endpoints, *, launch: str | None
) -> AuthorizeRequest:
    """The authorize URL: PKCE S256, fresh state and nonce, aud=iss, launch when given."""
    if endpoints.challenge_methods is not None and "S256" not in endpoints.challenge_methods:
        raise LaunchError(f"{registration.iss} does not support PKCE S256; refusing to launch")
    scope = registration.scopes or scopes(endpoints, standalone=launch is None)
    state, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(16)
    extra: dict[str, str] = {"aud": registration.iss, "nonce": nonce}
    if launch is not None:
        extra["launch"] = launch
    with _oauth(registration, scope=scope) as oauth:
        url, _ = oauth.create_authorization_url(
            endpoints.authorize, state=state, code_verifier=verifier, **extra
        )
    return AuthorizeRequest(url=url, state=state, code_verifier=verifier, nonce=nonce, scope=scope)


def exchange_code(
    registration: Registration,
    endpoints: Endpoints,
    *,
    code: str,
    code_verifier: str,
    nonce: str,
    http: requests.Session,
    clock: Callable[[], float] = time.time,
    requested_scope: str = "",
    keys: KeySets | None = None,
) -> TokenGrant:
    """Trade the code (with the PKCE verifier) for tokens; verify the id_token (its key from
    `keys`, else the running app's JWK Sets).

    A token response without `scope` granted what was asked (`requested_scope`, RFC 6749 5.1).
    """
    with _oauth(registration, token_endpoint=endpoints.token) as oauth:
        try:
            token = oauth.fetch_token(
                endpoints.token,
                grant_type="authorization_code",
                code=code,
                code_verifier=code_verifier,
                timeout=TIMEOUT_S,
            )
        except (AuthlibBaseError, requests.RequestException, ValueError) as exc:
            raise LaunchError(f"the token request was refused: {_reason(exc)}") from None
    if "scope" not in token:
        token = {**token, "scope": requested_scope}
    return _grant(token, registration, endpoints, nonce=nonce, http=http, clock=clock, keys=keys)


def refresh(
    registration: Registration,
    endpoints: Endpoints,
    *,
    refresh_token: str,
    previous: TokenGrant,
    clock: Callable[[], float] = time.time,
) -> TokenGrant:
    """A new access token from the refresh token; the launch context carries over."""
    with _oauth(registration, token_endpoint=endpoints.token) as oauth:
        try:
            token = oauth.refresh_token(
                endpoints.token, refresh_token=refresh_token, timeout=TIMEOUT_S
            )
        except (AuthlibBaseError, requests.RequestException, ValueError) as exc:
            raise SessionExpired(
                f"the session could not be renewed ({_reason(exc)}); relaunch the app from the EHR"
            ) from None
    access = token.get("access_token")
    if not isinstance(access, str) or not access:
        raise SessionExpired(
            "the session could not be renewed (no access token); relaunch the app from the EHR"
        )
    return TokenGrant(
        access_token=access,
        refresh_token=token.get("refresh_token") or refresh_token,
        expires_at=_expires_at(token, clock),
        scope=str(token.get("scope") or previous.scope),
        patient=previous.patient,
        encounter=previous.encounter,
        need_patient_banner=previous.need_patient_banner,
        smart_style_url=previous.smart_style_url,
        fhir_user=previous.fhir_user,
        fhir_context=previous.fhir_context,
        app_context=previous.app_context,
    )


def _reason(exc: Exception) -> str:
    """A short reason that never repeats a credential."""
    if isinstance(exc, AuthlibBaseError):
        return exc.error or "error"
    return type(exc).__name__


def _expires_at(token: Mapping[str, Any], clock: Callable[[], float]) -> float:
    """Absolute expiry; a server that says nothing gets a cautious 5 minutes."""
    expires_in = token.get("expires_in")
    usable = isinstance(expires_in, int | float) and not isinstance(expires_in, bool)
    seconds = expires_in if usable and expires_in > 0 else 300
    return clock() + float(seconds)


def _grant(
    token: Mapping[str, Any],
    registration: Registration,
    endpoints: Endpoints,
    *,
    nonce: str,
    http: requests.Session,
    clock: Callable[[], float],
    keys: KeySets | None = None,
) -> TokenGrant:
    """Check a token response and pull the launch context out of it."""
    access = token.get("access_token")
    if not isinstance(access, str) or not access:
        raise LaunchError("the token response has no access token")
    if str(token.get("token_type", "")).lower() != "bearer":
        raise LaunchError("the token response is not a Bearer token")
    patient = token.get("patient")
    if not isinstance(patient, str) or not patient:
        raise LaunchError("the EHR gave no patient context; launch from a patient's chart")
    id_token = token.get("id_token")
    fhir_user = None
    if isinstance(id_token, str) and endpoints.jwks_uri is None:
        # found through the CapabilityStatement only: no key to verify it, so its claims are unused
        logging.getLogger(__name__).warning("id_token ignored: the server publishes no jwks_uri")
    elif isinstance(id_token, str):
        claims = verify_id_token(
            id_token, registration, endpoints, nonce=nonce, http=http, clock=clock, keys=keys
        )
        fhir_user = claims.get("fhirUser") or claims.get("profile")
    if not isinstance(fhir_user, str) or not fhir_user:
        # the token response itself (same authenticated channel as the access token): how a
        # server without a JWKS can still name the user, so Provenance keeps its author
        fhir_user = _short(token.get("fhirUser"))
    return TokenGrant(
        access_token=access,
        refresh_token=token.get("refresh_token") or None,
        expires_at=_expires_at(token, clock),
        scope=str(token.get("scope", "")),
        patient=patient,
        encounter=token.get("encounter") if isinstance(token.get("encounter"), str) else None,
        need_patient_banner=token.get("need_patient_banner") is not False,
        smart_style_url=_style_url(token.get("smart_style_url"), registration.iss),
        fhir_user=fhir_user if isinstance(fhir_user, str) else None,
        fhir_context=fhir_context(token.get("fhirContext")),
        app_context=app_context(token.get("appContext")),
    )


def _style_url(value: Any, iss: str) -> str | None:
    """smart_style_url, only when it is served from the EHR's own origin."""
    if not isinstance(value, str):
        return None
    style, base = urlsplit(value), urlsplit(iss)
    if (style.scheme, style.netloc) != (base.scheme, base.netloc):
        return None
    return value


@dataclass(frozen=True)
class _HeldKeys:
    """One JWK Set and when it was fetched (monotonic seconds)."""

    jwks: dict[str, Any]
    at_s: float


class KeySets:
    """The servers' JWK Sets (their id_token keys) by jwks_uri, kept `ttl_s`: a launch after the
    first one to a server fetches none. A set lacking a token's key id is fetched again (key
    rotation), at most once per `min_refetch_s`. Thread-safe: one fetch per URL at a time."""

    def __init__(
        self,
        *,
        ttl_s: float = KEYS_TTL_S,
        min_refetch_s: float = KEYS_MIN_REFETCH_S,
        monotonic_s: Callable[[], float] = time.monotonic,
    ) -> None:
        """Keep each set `ttl_s`; refetch for an unknown key id at most once per
        `min_refetch_s`."""
        self.ttl_s = ttl_s
        self.min_refetch_s = min_refetch_s
        self.monotonic_s = monotonic_s
        self._held: dict[str, _HeldKeys] = {}
        self._fetching: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, url: str, *, http: requests.Session, kid: str | None = None) -> dict[str, Any]:
        """The JWK Set at `url`: the one held unless stale, or unless it lacks `kid` and was not
        fetched within `min_refetch_s`; else fetched (LaunchError when it cannot be read)."""
        held = self._usable(url, kid)
        if held is not None:
            return held
        with self._lock:
            fetching = self._fetching.setdefault(url, threading.Lock())
        with fetching:
            held = self._usable(url, kid)  # fetched by another thread while this one waited
            if held is not None:
                return held
            jwks = _get_json(http, url, what="the JWKS")
            if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
                raise LaunchError("the server's JWKS could not be read")
            with self._lock:
                self._held[url] = _HeldKeys(jwks, self.monotonic_s())
            return jwks

    def _usable(self, url: str, kid: str | None) -> dict[str, Any] | None:
        """The set held for `url` when it may be used as it is for a token naming `kid`."""
        with self._lock:
            held = self._held.get(url)
        if held is None:
            return None
        age_s = self.monotonic_s() - held.at_s
        if age_s >= self.ttl_s:
            return None
        if kid is None or _has_key(held.jwks, kid) or age_s < self.min_refetch_s:
            return held.jwks
        return None


def _has_key(jwks: Mapping[str, Any], kid: str) -> bool:
    """Whether a JWK Set holds a key with this key id."""
    return any(isinstance(k, Mapping) and k.get("kid") == kid for k in jwks.get("keys") or [])


def _key_id(id_token: str) -> str | None:
    """The `kid` of a compact JWS's header (not verified: it only picks the key), or None."""
    try:
        kid = jws.extract_compact(id_token.encode("ascii")).headers().get("kid")
    except (JoseError, ValueError, TypeError, UnicodeError):
        return None
    return kid if isinstance(kid, str) else None


def _app_key_sets() -> KeySets:
    """The running app's JWK Sets (WebState.key_sets); outside an app, a new one (no cache)."""
    from flask import has_app_context

    if not has_app_context():
        return KeySets()
    from smart_app.web.state import web_state

    return web_state().key_sets


def verify_id_token(
    id_token: str,
    registration: Registration,
    endpoints: Endpoints,
    *,
    nonce: str,
    http: requests.Session,
    clock: Callable[[], float] = time.time,
    keys: KeySets | None = None,
) -> dict[str, Any]:
    """Signature against the server's JWKS (from `keys`, else the app's), iss, aud, exp and
    nonce checked."""
    if not endpoints.jwks_uri:
        raise LaunchError("the server sent an id_token but publishes no jwks_uri to verify it")
    url = _https_or_loopback(endpoints.jwks_uri, what="JWKS URL")
    held = keys if keys is not None else _app_key_sets()
    jwks = held.get(url, http=http, kid=_key_id(id_token))
    try:
        decoded = jwt.decode(id_token, KeySet.import_key_set(jwks), algorithms=ID_TOKEN_ALGS)
    except (JoseError, ValueError, TypeError) as exc:
        raise LaunchError(f"the id_token is not valid: {type(exc).__name__}") from None
    claims = decoded.claims
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    now = clock()
    problems = [
        ("issuer", endpoints.issuer is not None and claims.get("iss") != endpoints.issuer),
        ("audience", registration.client_id not in audiences),
        ("expiry", not isinstance(claims.get("exp"), int | float) or claims["exp"] < now - 60),
        ("nonce", claims.get("nonce") != nonce),
    ]
    wrong = [name for name, bad in problems if bad]
    if wrong:
        raise LaunchError(f"the id_token failed its checks: {', '.join(wrong)}")
    return dict(claims)


def needs_refresh(expires_at: float, *, now: float) -> bool:
    """True when the access token is expired or about to be."""
    return now >= expires_at - REFRESH_MARGIN_S


def fetch_style(url: str, *, http: requests.Session) -> dict[str, Any]:
    """The EHR's style document (smart_style_url); empty when it cannot be read."""
    try:
        data = _get_json(http, url, what="the EHR style")
    except LaunchError:
        return {}
    return data if isinstance(data, dict) else {}
