"""What the web app holds for its lifetime: settings, an HTTP session, the clock, and what it
keeps of the EHRs between requests (their id_token keys and CapabilityStatements)."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import requests
from flask import current_app

import smart_app.clock as wall_clock
from smart_app.config import WebSettings
from smart_app.web.ledger import WriteLedger, write_ledger
from smart_app.web.smart import KeySets

if TYPE_CHECKING:
    from smart_app.web.context import LaunchContext

GatewayFactory = Callable[["LaunchContext"], Any]
"""How a launch's FHIR gateway is made from its (refreshed) launch context."""

EXTENSION = "zolgensma_smart"
CAPABILITIES_TTL_S = 3600.0
"""How long a FHIR server's CapabilityStatement is kept before it is asked for again."""
CAPABILITIES_RETRY_S = 60.0
"""After a server gave none, how long before it is asked again."""


class Capabilities:
    """The FHIR servers' CapabilityStatements by base URL, kept `ttl_s`: the write strategy is
    chosen from one, and a write to a server whose statement is held asks for none.
    Thread-safe."""

    def __init__(
        self,
        *,
        ttl_s: float = CAPABILITIES_TTL_S,
        retry_s: float = CAPABILITIES_RETRY_S,
        monotonic_s: Callable[[], float] = time.monotonic,
    ) -> None:
        """Keep a statement `ttl_s`; after a server gave none, ask it again after `retry_s`."""
        self.ttl_s = ttl_s
        self.retry_s = retry_s
        self.monotonic_s = monotonic_s
        self._held: dict[str, tuple[dict[str, Any] | None, float]] = {}
        self._lock = threading.Lock()

    def get(self, base: str) -> dict[str, Any] | None:
        """The server's statement when one is held and not stale, else None."""
        with self._lock:
            statement, at_s = self._held.get(base, (None, float("-inf")))
        return statement if self.monotonic_s() - at_s < self.ttl_s else None

    def wanted(self, base: str) -> bool:
        """True when none is held for the server and it was not found missing just now."""
        with self._lock:
            statement, at_s = self._held.get(base, (None, float("-inf")))
        age_s = self.monotonic_s() - at_s
        return age_s >= (self.ttl_s if statement is not None else self.retry_s)

    def keep(self, base: str, statement: Mapping[str, Any] | None) -> None:
        """Hold the server's statement (None: it gave none; asked again after `retry_s`)."""
        held = dict(statement) if statement else None
        with self._lock:
            self._held[base] = (held, self.monotonic_s())


@dataclass
class WebState:
    """The app's long-lived collaborators (injectable in tests)."""

    settings: WebSettings
    http: requests.Session = field(default_factory=requests.Session)
    clock: Callable[[], float] = time.time
    today: Callable[[], dt.date] = wall_clock.today
    now: Callable[[], dt.datetime] = wall_clock.now
    gateway_factory: GatewayFactory | None = None
    """A launch's gateway (tests inject a fake EHR); None: an HTTP FhirGateway to its server."""
    key_sets: KeySets = field(default_factory=KeySets)
    """The EHRs' JWK Sets by jwks_uri (id_token keys), fetched once per hour per server."""
    capabilities: Capabilities = field(default_factory=Capabilities)
    """The FHIR servers' CapabilityStatements by base, asked for once per hour per server."""
    writes: WriteLedger = field(init=False)
    """Plan writes under way and done, per launch (one at a time; a double-click shows the
    first one's result), kept beside the sessions."""

    def __post_init__(self) -> None:
        self.writes = write_ledger(self.settings)


def web_state() -> WebState:
    """The current app's state."""
    return current_app.extensions[EXTENSION]
