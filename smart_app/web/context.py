"""Launch state and launch contexts, kept in the server-side session (the cookie holds an id)."""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from typing import Any

from flask import current_app, session

from smart_app.errors import LaunchError, SessionExpired
from smart_app.web.grants import Grants
from smart_app.web.smart import ContextItem, Endpoints, TokenGrant

PENDING_LIFETIME_S = 600
MAX_PENDING = 8
MAX_CONTEXTS = 8
KEPT_AT_LOGIN = ("contexts", "pending")
"""What a session carries over to its new id at login: the launch contexts open in this browser
and its launches still on their way (another tab); not the CSRF token, made anew."""


@dataclass(frozen=True)
class Pending:
    """An authorize request on its way: what the callback needs to finish it."""

    iss: str
    code_verifier: str
    nonce: str
    token_endpoint: str
    issuer: str | None
    jwks_uri: str | None
    created: float
    scope: str = ""
    """The scopes asked for (granted when the token response names none)."""

    def endpoints(self) -> Endpoints:
        """Enough of the discovery result to exchange the code and verify the id_token."""
        return Endpoints(token=self.token_endpoint, issuer=self.issuer, jwks_uri=self.jwks_uri)


@dataclass(frozen=True)
class LaunchContext:
    """One launched patient: server, token (if any) and what the EHR told the app."""

    iss: str
    patient: str
    token_endpoint: str = ""
    access_token: str = ""
    refresh_token: str = ""
    expires_at: float = 0.0
    scope: str = ""
    encounter: str = ""
    need_patient_banner: bool = True
    smart_style_url: str = ""
    fhir_user: str = ""
    fhir_context: tuple[ContextItem, ...] = ()
    """SMART 2.x fhirContext: what else the EHR had open (kept, not yet shown)."""
    app_context: str = ""
    """The appContext of the CDS card link the app was launched from: untrusted text (the plan
    page reads a default infusion date from it; never logged or shown)."""

    @property
    def is_open(self) -> bool:
        """An open server, reached without a token."""
        return not self.access_token

    def grants(self) -> Grants:
        """What the launch may do: its granted scopes; anything on an open server."""
        return Grants.everything() if self.is_open else Grants.parse(self.scope)

    def context_references(self, resource_type: str) -> tuple[str, ...]:
        """The fhirContext references to resources of one type (e.g. an Encounter)."""
        return tuple(
            item.reference
            for item in self.fhir_context
            if item.reference and item.kind == resource_type
        )

    @classmethod
    def from_stored(cls, raw: dict[str, Any]) -> LaunchContext:
        """A context as kept in the session (fhirContext items stored as dicts)."""
        items = raw.get("fhir_context") or ()
        kept = tuple(i if isinstance(i, ContextItem) else ContextItem(**i) for i in items)
        return cls(**{**raw, "fhir_context": kept})

    def grant(self) -> TokenGrant:
        """The token as a TokenGrant, for refreshing."""
        return TokenGrant(
            access_token=self.access_token,
            refresh_token=self.refresh_token or None,
            expires_at=self.expires_at,
            scope=self.scope,
            patient=self.patient,
            encounter=self.encounter or None,
            need_patient_banner=self.need_patient_banner,
            smart_style_url=self.smart_style_url or None,
            fhir_user=self.fhir_user or None,
            fhir_context=self.fhir_context,
            app_context=self.app_context or None,
        )

    @classmethod
    def from_grant(cls, grant: TokenGrant, *, iss: str, token_endpoint: str) -> LaunchContext:
        """A context from a checked token response."""
        return cls(
            iss=iss,
            patient=grant.patient or "",
            token_endpoint=token_endpoint,
            access_token=grant.access_token,
            refresh_token=grant.refresh_token or "",
            expires_at=grant.expires_at,
            scope=grant.scope,
            encounter=grant.encounter or "",
            need_patient_banner=grant.need_patient_banner,
            smart_style_url=grant.smart_style_url or "",
            fhir_user=grant.fhir_user or "",
            fhir_context=grant.fhir_context,
            app_context=grant.app_context or "",
        )


def _table(name: str) -> dict[str, Any]:
    """A dict kept in the session under `name`."""
    table = session.get(name)
    return table if isinstance(table, dict) else {}


def _keep_newest(table: dict[str, Any], limit: int) -> dict[str, Any]:
    """Drop the oldest entries beyond `limit` (insertion order is age)."""
    return dict(list(table.items())[-limit:])


def remember_pending(state: str, pending: Pending) -> None:
    """Bind an authorize request's state to this browser session."""
    table = _table("pending")
    table[state] = asdict(pending)
    session["pending"] = _keep_newest(table, MAX_PENDING)


def take_pending(state: str | None, *, now: float) -> Pending:
    """The pending request for `state`, removed so it cannot be replayed."""
    if not state:
        raise LaunchError("the EHR's answer has no state; start the launch again from the EHR")
    table = _table("pending")
    raw = table.pop(state, None)
    session["pending"] = table
    if raw is None:
        raise LaunchError(
            "this launch's state is unknown or was already used; start again from the EHR"
        )
    pending = Pending(**raw)
    if now - pending.created > PENDING_LIFETIME_S:
        raise LaunchError("the launch took too long (over 10 minutes); start again from the EHR")
    return pending


def open_context(context: LaunchContext) -> str:
    """Store a new launch context and return its opaque id (used in the page URLs)."""
    context_id = secrets.token_urlsafe(16)
    table = _table("contexts")
    table[context_id] = asdict(context)
    session["contexts"] = _keep_newest(table, MAX_CONTEXTS)
    return context_id


def load_context(context_id: str) -> LaunchContext:
    """The launch context behind an id from this browser session."""
    raw = _table("contexts").get(context_id)
    if raw is None:
        raise SessionExpired("this launch is no longer open here; relaunch the app from the EHR")
    return LaunchContext.from_stored(raw)


def replace_context(context_id: str, context: LaunchContext) -> None:
    """Store a refreshed context under its id."""
    table = _table("contexts")
    table[context_id] = asdict(context)
    session["contexts"] = table


def rotate_session() -> None:
    """A new session id at login (the callback), so that a session id planted in the browser
    before the launch (session fixation) reaches nothing after it: what KEPT_AT_LOGIN names is
    carried over, everything else dropped (a new CSRF token is made on first use), and the old
    id's session is deleted from the store."""
    kept = {name: session[name] for name in KEPT_AT_LOGIN if name in session}
    session.clear()
    session.update(kept)
    current_app.session_interface.regenerate(session)  # type: ignore[attr-defined]


def csrf_token() -> str:
    """This session's CSRF token, created on first use."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token
