"""The sandbox EHR as a CDS Hooks 2.0 client: discovery, signed calls with prefetch, feedback.

- Discovery (`GET {services_url}`) is cached per app for DISCOVERY_TTL_S after a good answer.
- Every call carries `Authorization: Bearer <JWT>` ("Trusting CDS Clients"): RS384 with the EHR's
  CDS key, header `kid` and `jku` (the EHR's /oauth/jwks), claims iss (the EHR's public base),
  sub (CLIENT_SUB), aud (the service URL), iat, exp (iat + JWT_LIFETIME_S) and a fresh jti.
- The EHR fulfils the service's prefetch templates itself from the FHIR server (a template whose
  tokens it cannot fill is left out, so the service reads it; a failed read is null), and gives
  `fhirServer` (its public FHIR base) and `fhirAuthorization` (a short-lived read-only token for
  the patient, issued by the sandbox's authorization server).
- A service that does not answer, answers late or answers nonsense gives a short note instead of
  cards: the chart never breaks. Tokens and patient data are never logged.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import quote

import requests
from joserfc import jwt
from joserfc.jwk import RSAKey

from smart_app.sandbox.cds_cards import Card, Coding, parse_cards
from smart_app.sandbox.proxy import FHIR_JSON, Upstream, UpstreamError
from smart_app.sandbox.settings import CDS_JWT_ALG

LOG = logging.getLogger("smart_app.sandbox.cds")
CLIENT_SUB = "sandbox-ehr"
"""The `sub` of the EHR's CDS JWTs: its client id with the CDS services."""
JWT_ALG = CDS_JWT_ALG
JWT_LIFETIME_S = 300
DISCOVERY_TTL_S = 300.0
SERVICE_GRANT_LIFETIME_S = 300
SERVICE_READ_SCOPE = "patient/*.rs"
"""What `fhirAuthorization` allows: reading and searching the patient's record."""
TIMEOUT_S = (3.0, 10.0)
"""Connect and read timeouts for discovery, calls and feedback."""
NO_ANSWER = "CDS service did not answer"
TOKEN = re.compile(r"\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")
USER_TOKENS = {
    "Practitioner": "userPractitionerId",
    "PractitionerRole": "userPractitionerRoleId",
    "Patient": "userPatientId",
    "RelatedPerson": "userRelatedPersonId",
}


class Hook(StrEnum):
    """The hooks the sandbox EHR fires."""

    PATIENT_VIEW = "patient-view"
    ORDER_SELECT = "order-select"
    ORDER_SIGN = "order-sign"


@dataclass(frozen=True)
class ServiceEntry:
    """One service of a discovery answer."""

    id: str
    hook: str
    title: str
    prefetch: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CdsAnswer:
    """What the chart shows for one hook: the cards of every service, and short notes."""

    cards: tuple[Card, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServiceToken:
    """A short-lived access token for a service, and what it allows."""

    access_token: str = field(repr=False)
    expires_in_s: int
    scope: str


IssueToken = Callable[[str], ServiceToken]
"""Issues a read token for a patient id."""


def prefetch_values(context: Mapping[str, Any]) -> dict[str, str]:
    """The prefetch token values a hook context gives: context.<field> and user<Type>Id."""
    values = {f"context.{k}": v for k, v in context.items() if isinstance(v, str) and v}
    user = context.get("userId")
    if isinstance(user, str) and "/" in user:
        kind, _, ident = user.partition("/")
        if kind in USER_TOKENS and ident:
            values[USER_TOKENS[kind]] = ident
    return values


def fill_template(template: str, values: Mapping[str, str]) -> str | None:
    """A prefetch template with its tokens replaced (URL-quoted), or None when one is unknown."""
    missing = False

    def replace(match: re.Match[str]) -> str:
        """One token's value."""
        nonlocal missing
        value = values.get(match.group(1))
        if value is None:
            missing = True
            return ""
        return quote(value, safe="/-._~")

    filled = TOKEN.sub(replace, template)
    return None if missing else filled


def _discovery(body: Any) -> tuple[ServiceEntry, ...]:
    """The services of a discovery answer (entries without id or hook are skipped)."""
    services = body.get("services") if isinstance(body, dict) else None
    if not isinstance(services, list):
        raise ValueError("the discovery answer has no 'services' list")
    found = []
    for raw in services:
        if not isinstance(raw, dict):
            continue
        ident, hook = raw.get("id"), raw.get("hook")
        if not isinstance(ident, str) or not isinstance(hook, str) or not ident:
            continue
        prefetch = raw.get("prefetch")
        templates = (
            {k: v for k, v in prefetch.items() if isinstance(k, str) and isinstance(v, str)}
            if isinstance(prefetch, dict)
            else {}
        )
        found.append(ServiceEntry(ident, hook, str(raw.get("title") or ident), templates))
    return tuple(found)


class EhrCdsClient:
    """The sandbox EHR's CDS Hooks client for one app's services."""

    def __init__(
        self,
        *,
        services_url: str,
        public_base: str,
        fhir_upstream: str,
        key: RSAKey,
        issue_token: IssueToken,
        service_client_id: str,
        clock: Callable[[], float] = time.time,
        timeout_s: tuple[float, float] = TIMEOUT_S,
        http: requests.Session | None = None,
    ) -> None:
        """A client for the services at `services_url` (the app's `/cds-services`)."""
        self.services_url = services_url.rstrip("/")
        self.public_base = public_base.rstrip("/")
        self.fhir_base = f"{self.public_base}/fhir"
        self.upstream = Upstream(base=fhir_upstream, public_base=self.fhir_base)
        self.key = key
        self.kid = key.kid or key.thumbprint()
        self.issue_token = issue_token
        self.service_client_id = service_client_id
        self.clock = clock
        self.timeout_s = timeout_s
        self.http = http or requests.Session()
        self._lock = threading.Lock()
        self._cached: tuple[float, tuple[ServiceEntry, ...]] | None = None

    # the signed JWT ----------------------------------------------------------------------

    def jwt(self, audience: str) -> str:
        """A CDS Hooks 2.0 client JWT for one request to `audience` (the service URL)."""
        now = int(self.clock())
        header = {
            "alg": JWT_ALG,
            "typ": "JWT",
            "kid": self.kid,
            "jku": f"{self.public_base}/oauth/jwks",
        }
        claims = {
            "iss": self.public_base,
            "sub": CLIENT_SUB,
            "aud": audience,
            "iat": now,
            "exp": now + JWT_LIFETIME_S,
            "jti": str(uuid.uuid4()),
        }
        return jwt.encode(header, claims, self.key, algorithms=[JWT_ALG])

    def _headers(self, url: str) -> dict[str, str]:
        """Accept JSON, with the signed JWT for `url`."""
        return {"Accept": "application/json", "Authorization": f"Bearer {self.jwt(url)}"}

    # discovery -----------------------------------------------------------------------------

    def services(self) -> tuple[ServiceEntry, ...] | None:
        """The app's services (cached), or None when discovery fails."""
        with self._lock:
            cached = self._cached
        if cached is not None and self.clock() - cached[0] < DISCOVERY_TTL_S:
            return cached[1]
        try:
            answer = self.http.get(
                self.services_url, headers=self._headers(self.services_url), timeout=self.timeout_s
            )
            if answer.status_code != 200:
                LOG.warning("CDS discovery: HTTP %s", answer.status_code)
                return None
            found = _discovery(answer.json())
        except (requests.RequestException, ValueError) as error:
            LOG.warning("CDS discovery failed (%s)", type(error).__name__)
            return None
        with self._lock:
            self._cached = (self.clock(), found)
        return found

    def for_hook(self, hook: Hook) -> tuple[ServiceEntry, ...] | None:
        """The app's services for a hook, or None when discovery fails."""
        services = self.services()
        return None if services is None else tuple(s for s in services if s.hook == hook)

    # calls -------------------------------------------------------------------------------

    def prefetch(self, service: ServiceEntry, context: Mapping[str, Any]) -> dict[str, Any]:
        """The service's prefetch, read from the FHIR server: null for a failed read; a template
        whose tokens the context cannot fill is left out."""
        values = prefetch_values(context)
        out: dict[str, Any] = {}
        for key, template in service.prefetch.items():
            relative = fill_template(template, values)
            if relative is None:
                continue
            out[key] = self._read(relative)
        return out

    def _read(self, relative: str) -> Any:
        """One prefetch read (public URLs in the answer), or None when it fails."""
        path, _, query = relative.lstrip("/").partition("?")
        try:
            answer = self.upstream.send("GET", path, query=query, headers={"Accept": FHIR_JSON})
        except UpstreamError:
            return None
        if answer.status_code != 200:
            return None
        try:
            return json.loads(self.upstream.to_public(answer.content))
        except ValueError:
            return None

    def request_body(
        self, service: ServiceEntry, hook: Hook, *, context: Mapping[str, Any], patient_id: str
    ) -> dict[str, Any]:
        """The hook request: hook, hookInstance, fhirServer, fhirAuthorization, context,
        prefetch."""
        token = self.issue_token(patient_id)
        return {
            "hook": hook.value,
            "hookInstance": str(uuid.uuid4()),
            "fhirServer": self.fhir_base,
            "fhirAuthorization": {
                "access_token": token.access_token,
                "token_type": "Bearer",
                "expires_in": token.expires_in_s,
                "scope": token.scope,
                "subject": self.service_client_id,
                "patient": patient_id,
            },
            "context": dict(context),
            "prefetch": self.prefetch(service, context),
        }

    def call(self, hook: Hook, *, context: Mapping[str, Any], patient_id: str) -> CdsAnswer:
        """Fire a hook at every service for it: their cards, or notes saying what failed."""
        services = self.for_hook(hook)
        if services is None:
            return CdsAnswer(notes=(f"{NO_ANSWER} (its discovery failed).",))
        cards: list[Card] = []
        notes: list[str] = []
        for service in services:
            found, note = self._call_one(service, hook, context=context, patient_id=patient_id)
            cards.extend(found)
            if note:
                notes.append(note)
        return CdsAnswer(tuple(cards), tuple(notes))

    def _call_one(
        self, service: ServiceEntry, hook: Hook, *, context: Mapping[str, Any], patient_id: str
    ) -> tuple[tuple[Card, ...], str | None]:
        """One service's cards, and a note when it failed or sent invalid cards."""
        url = f"{self.services_url}/{quote(service.id, safe='')}"
        try:
            body = self.request_body(service, hook, context=context, patient_id=patient_id)
            answer = self.http.post(
                url, json=body, headers=self._headers(url), timeout=self.timeout_s
            )
        except requests.Timeout:
            LOG.warning("CDS %s: timed out", service.id)
            return (), f"{NO_ANSWER}: {service.title} took too long."
        except requests.RequestException as error:
            LOG.warning("CDS %s: %s", service.id, type(error).__name__)
            return (), f"{NO_ANSWER}: {service.title} could not be reached."
        if answer.status_code != 200:
            LOG.warning("CDS %s: HTTP %s", service.id, answer.status_code)
            return (), f"{NO_ANSWER}: {service.title} answered HTTP {answer.status_code}."
        try:
            parsed = parse_cards(answer.json(), service_id=service.id)
        except ValueError:
            LOG.warning("CDS %s: the answer is not a CDS Hooks response", service.id)
            return (), f"{NO_ANSWER}: {service.title} sent an unreadable answer."
        LOG.info("CDS %s: %d card(s)", service.id, len(parsed.cards))
        note = (
            f"{parsed.dropped} card(s) from {service.title} were not valid and are not shown."
            if parsed.dropped
            else None
        )
        return parsed.cards, note

    # feedback ----------------------------------------------------------------------------

    def feedback(
        self,
        card: Card,
        *,
        accepted: Sequence[str] = (),
        override: Coding | None = None,
        comment: str = "",
    ) -> bool:
        """Tell the card's service it was accepted (with the suggestion uuids) or overridden
        (with the reason); True when the service took it."""
        outcome: dict[str, Any] = {
            "card": card.uuid,
            "outcome": "overridden" if override is not None else "accepted",
            "outcomeTimestamp": dt.datetime.fromtimestamp(self.clock(), tz=dt.UTC).isoformat(),
        }
        if override is not None:
            reason: dict[str, Any] = {"reason": override.as_json()}
            if comment:
                reason["userComment"] = comment
            outcome["overrideReason"] = reason
        else:
            outcome["acceptedSuggestions"] = [{"id": s} for s in accepted]
        url = f"{self.services_url}/{quote(card.service_id, safe='')}/feedback"
        try:
            answer = self.http.post(
                url,
                json={"feedback": [outcome]},
                headers=self._headers(url),
                timeout=self.timeout_s,
            )
        except requests.RequestException as error:
            LOG.warning("CDS %s feedback: %s", card.service_id, type(error).__name__)
            return False
        if answer.status_code != 200:
            LOG.warning("CDS %s feedback: HTTP %s", card.service_id, answer.status_code)
        return answer.status_code == 200
