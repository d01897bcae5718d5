"""The sandbox authorization server's state: launches, codes and tokens in memory, behind one lock.

Secrets (codes, access and refresh tokens) are kept only as SHA-256 digests. A code is claimed the
moment it is presented: a second use is refused and revokes the tokens issued from it. Refresh
tokens rotate: a refresh token is revoked once, and a lost race revokes the token issued meanwhile.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from authlib.oauth2.rfc6749 import ClientMixin, TokenMixin
from authlib.oidc.core import AuthorizationCodeMixin

CODE_LIFETIME_S = 300
LAUNCH_LIFETIME_S = 600
MAX_APP_CONTEXT_CHARS = 4096
"""The longest CDS Hooks appContext a launch carries into its token response (longer: refused)."""


def digest(secret: str) -> str:
    """The SHA-256 hex digest under which a secret is stored."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class LaunchContext:
    """The context an authorization carries into its tokens."""

    patient: str | None = None
    encounter: str | None = None
    need_patient_banner: bool = False
    read_only: bool = False
    """The user allowed reading only: writes are taken out of the granted scopes."""
    app_context: str | None = None
    """The appContext of the CDS card link the launch was made from (opaque text), if any."""

    def token_fields(self) -> dict[str, Any]:
        """The SMART launch-context fields of a token response (and a card link's appContext)."""
        out: dict[str, Any] = {"need_patient_banner": self.need_patient_banner}
        if self.patient:
            out["patient"] = self.patient
        if self.encounter:
            out["encounter"] = self.encounter
        if self.app_context:
            out["appContext"] = self.app_context
        return out


@dataclass
class Launch:
    """One EHR launch id: single use, bound to a client and a context, short-lived."""

    launch_id: str
    client_id: str
    context: LaunchContext
    expires_at: float
    used: bool = False
    companion: str | None = None
    """For a chart page: the launch id of its "open in a new tab" link."""


@dataclass(frozen=True)
class EhrUser:
    """The practitioner signed in to the EHR (the sandbox has exactly one)."""

    practitioner_id: str

    def get_user_id(self) -> str:
        """authlib's user id."""
        return self.practitioner_id


@dataclass
class AuthCode(AuthorizationCodeMixin):
    """An issued authorization code (stored under the digest of the code)."""

    key: str
    client_id: str
    redirect_uri: str
    scope: str
    user_id: str
    context: LaunchContext
    nonce: str | None
    code_challenge: str
    code_challenge_method: str
    auth_time: int
    expires_at: float
    used: bool = False

    def get_redirect_uri(self) -> str:
        """The redirect URI the code was issued for."""
        return self.redirect_uri

    def get_scope(self) -> str:
        """The granted scope."""
        return self.scope

    def get_nonce(self) -> str | None:
        """The OpenID Connect nonce of the authorization request."""
        return self.nonce

    def get_auth_time(self) -> int:
        """When the user authorized."""
        return self.auth_time

    def get_acr(self) -> None:
        """No authentication context class."""
        return None

    def get_amr(self) -> None:
        """No authentication methods reference."""
        return None


@dataclass
class IssuedToken(TokenMixin):
    """An access token (and its refresh token), stored under digests."""

    access_key: str
    refresh_key: str | None
    client_id: str
    scope: str
    user_id: str
    context: LaunchContext
    issued_at: float
    expires_in: int
    code_key: str | None
    clock: Callable[[], float] = field(repr=False, compare=False)
    revoked: bool = False
    refresh_revoked: bool = False

    def check_client(self, client: ClientMixin) -> bool:
        """Whether the token was issued to this client."""
        return client.get_client_id() == self.client_id

    def get_scope(self) -> str:
        """The granted scope."""
        return self.scope

    def get_expires_in(self) -> int:
        """The access token's lifetime in seconds."""
        return self.expires_in

    def is_expired(self) -> bool:
        """Whether the access token has expired (by the sandbox's clock)."""
        return self.clock() >= self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        """Whether the access token was revoked."""
        return self.revoked


class SandboxStore:
    """All OAuth state, in memory, behind one lock (the server runs threaded)."""

    def __init__(self, *, clock: Callable[[], float]) -> None:
        """An empty store on the given clock."""
        self.clock = clock
        self._lock = threading.Lock()
        self._launches: dict[str, Launch] = {}
        self._codes: dict[str, AuthCode] = {}
        self._tokens: dict[str, IssuedToken] = {}
        self._refresh: dict[str, str] = {}
        self._jtis: dict[tuple[str, str], float] = {}
        self._nonces: set[tuple[str, str]] = set()

    def _purge(self) -> None:
        """Forget expired launches, codes and assertion ids (lock held)."""
        now = self.clock()
        for key in [k for k, v in self._launches.items() if v.expires_at <= now]:
            del self._launches[key]
        for key in [k for k, v in self._codes.items() if v.expires_at <= now]:
            del self._codes[key]
        for key in [k for k, v in self._jtis.items() if v <= now]:
            del self._jtis[key]

    def create_launch(
        self, *, client_id: str, context: LaunchContext, companion: str | None = None
    ) -> str:
        """A new launch id for the client and context."""
        launch_id = secrets.token_urlsafe(16)
        with self._lock:
            self._purge()
            self._launches[launch_id] = Launch(
                launch_id, client_id, context, self.clock() + LAUNCH_LIFETIME_S, companion=companion
            )
        return launch_id

    def launch(self, launch_id: str) -> Launch | None:
        """An unexpired launch (used or not), for the chart page."""
        with self._lock:
            found = self._launches.get(launch_id)
            if found is None or found.expires_at <= self.clock():
                return None
            return found

    def _usable(self, launch_id: str, client_id: str) -> Launch | None:
        """The launch if unused, unexpired and the client's (lock held)."""
        found = self._launches.get(launch_id)
        if found is None or found.used or found.expires_at <= self.clock():
            return None
        return found if found.client_id == client_id else None

    def peek_launch(self, launch_id: str, client_id: str) -> Launch | None:
        """The launch if the client may still use it."""
        with self._lock:
            return self._usable(launch_id, client_id)

    def consume_launch(self, launch_id: str, client_id: str) -> Launch | None:
        """Spend the launch (once): the launch, or None if it cannot be used."""
        with self._lock:
            found = self._usable(launch_id, client_id)
            if found is not None:
                found.used = True
            return found

    def save_code(self, code: AuthCode) -> None:
        """Keep an issued code."""
        with self._lock:
            self._purge()
            self._codes[code.key] = code
            if code.nonce:
                self._nonces.add((code.client_id, code.nonce))

    def nonce_seen(self, client_id: str, nonce: str) -> bool:
        """Whether a code was already issued to the client with this nonce."""
        with self._lock:
            return (client_id, nonce) in self._nonces

    def claim_code(self, code: str, client_id: str) -> AuthCode | None:
        """Take a code for the client (once); a replay revokes the tokens issued from it."""
        key = digest(code)
        with self._lock:
            found = self._codes.get(key)
            if found is None or found.client_id != client_id:
                return None
            if found.used:
                for token in self._tokens.values():
                    if token.code_key == key:
                        token.revoked = token.refresh_revoked = True
                return None
            if found.expires_at <= self.clock():
                return None
            found.used = True
            return found

    def save_token(self, token: IssuedToken) -> None:
        """Keep an issued token."""
        with self._lock:
            self._tokens[token.access_key] = token
            if token.refresh_key:
                self._refresh[token.refresh_key] = token.access_key

    def access(self, raw: str) -> IssuedToken | None:
        """The record of a valid (unrevoked, unexpired) access token."""
        with self._lock:
            found = self._tokens.get(digest(raw))
        if found is None or found.revoked or found.is_expired():
            return None
        return found

    def refresh(self, raw: str) -> IssuedToken | None:
        """The record of a usable refresh token."""
        with self._lock:
            key = self._refresh.get(digest(raw))
            found = self._tokens.get(key) if key else None
            if found is None or found.refresh_revoked:
                return None
            return found

    def rotate(self, old: IssuedToken, new: IssuedToken | None) -> bool:
        """Revoke a refresh token once; a lost race revokes the token issued meanwhile."""
        with self._lock:
            if old.refresh_revoked:
                if new is not None:
                    new.revoked = new.refresh_revoked = True
                return False
            old.refresh_revoked = True
            return True

    def use_jti(self, client_id: str, jti: str, expires_at: float) -> bool:
        """Record a client assertion id: False if the client used it before."""
        with self._lock:
            self._purge()
            if (client_id, jti) in self._jtis:
                return False
            self._jtis[(client_id, jti)] = max(expires_at, self.clock() + 60)
            return True
