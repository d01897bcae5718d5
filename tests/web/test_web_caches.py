"""What the web app keeps between requests: the EHRs' JWK Sets (KeySets) and the FHIR servers'
CapabilityStatements (Capabilities): how long, when they are asked for again, under threads.

HTTP is faked with `responses`; tests/integration/test_web_caches.py runs the same through the
sandbox EHR and the real FHIR server."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import responses

from smart_app.errors import LaunchError
from smart_app.web.smart import KeySets
from smart_app.web.state import Capabilities

JWKS = "https://ehr.example.org/oauth/jwks"
BASE = "https://ehr.example.org/fhir"
STATEMENT = {"resourceType": "CapabilityStatement", "rest": [{"mode": "server"}]}


def key_set(*kids: str) -> dict[str, Any]:
    """A JWK Set naming these key ids (the keys' material does not matter here)."""
    return {"keys": [{"kty": "RSA", "kid": kid, "n": "AQAB", "e": "AQAB"} for kid in kids]}


@dataclass
class Clock:
    """A monotonic clock the test moves."""

    now_s: float = 500.0

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keys(clock: Clock) -> KeySets:
    return KeySets(ttl_s=3600, min_refetch_s=60, monotonic_s=clock)


def fetches(rsps: responses.RequestsMock) -> int:
    return sum(1 for call in rsps.calls if call.request.url == JWKS)


# --- KeySets ------------------------------------------------------------------------------------


def test_a_jwks_is_fetched_once_then_again_when_stale(
    rsps: responses.RequestsMock, http: requests.Session, keys: KeySets, clock: Clock
) -> None:
    rsps.get(JWKS, json=key_set("a"))
    assert keys.get(JWKS, http=http, kid="a") == key_set("a")
    clock.now_s += 3599
    assert keys.get(JWKS, http=http, kid="a") == key_set("a")
    assert keys.get(JWKS, http=http) == key_set("a")  # a token without a kid: no refetch
    assert fetches(rsps) == 1
    clock.now_s += 1
    keys.get(JWKS, http=http, kid="a")
    assert fetches(rsps) == 2


def test_an_unknown_kid_refetches_once_and_at_most_once_a_minute(
    rsps: responses.RequestsMock, http: requests.Session, keys: KeySets, clock: Clock
) -> None:
    rsps.get(JWKS, json=key_set("a"))
    keys.get(JWKS, http=http, kid="a")
    clock.now_s += 59
    assert keys.get(JWKS, http=http, kid="b") == key_set("a")  # fetched 59 s ago: not again
    assert fetches(rsps) == 1
    rsps.replace(responses.GET, JWKS, json=key_set("a", "b"))  # the EHR rotated its key
    clock.now_s += 1
    assert keys.get(JWKS, http=http, kid="b") == key_set("a", "b")
    assert keys.get(JWKS, http=http, kid="b") == key_set("a", "b")
    assert fetches(rsps) == 2
    clock.now_s += 30
    assert keys.get(JWKS, http=http, kid="c") == key_set("a", "b")  # unknown, but too soon
    assert fetches(rsps) == 2
    clock.now_s += 30
    keys.get(JWKS, http=http, kid="c")
    assert fetches(rsps) == 3


def test_sets_are_kept_per_jwks_uri(
    rsps: responses.RequestsMock, http: requests.Session, keys: KeySets
) -> None:
    other = "https://other.example.org/jwks"
    rsps.get(JWKS, json=key_set("a"))
    rsps.get(other, json=key_set("z"))
    assert keys.get(JWKS, http=http) == key_set("a")
    assert keys.get(other, http=http) == key_set("z")
    assert keys.get(JWKS, http=http) == key_set("a")
    assert len(rsps.calls) == 2


@pytest.mark.parametrize("answer", [{"status": 500}, {"json": {"no": "keys"}}, {"body": "<html>"}])
def test_an_unreadable_jwks_is_refused_and_not_kept(
    rsps: responses.RequestsMock, http: requests.Session, keys: KeySets, answer: dict[str, Any]
) -> None:
    rsps.get(JWKS, **answer)
    with pytest.raises(LaunchError, match="JWKS could not be read"):
        keys.get(JWKS, http=http)
    rsps.replace(responses.GET, JWKS, json=key_set("a"))
    assert keys.get(JWKS, http=http) == key_set("a")  # asked again, not a cached failure


def test_concurrent_launches_fetch_a_jwks_once(
    rsps: responses.RequestsMock, http: requests.Session, keys: KeySets
) -> None:
    def slow(_: Any) -> tuple[int, dict[str, str], str]:
        time.sleep(0.2)
        return 200, {"Content-Type": "application/json"}, '{"keys": [{"kid": "a"}]}'

    rsps.add_callback(responses.GET, JWKS, callback=slow)
    start = threading.Barrier(8)
    got: list[dict[str, Any]] = []

    def launch() -> None:
        start.wait()
        got.append(keys.get(JWKS, http=http, kid="a"))

    threads = [threading.Thread(target=launch) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert got == [{"keys": [{"kid": "a"}]}] * 8
    assert fetches(rsps) == 1


# --- Capabilities -------------------------------------------------------------------------------


def test_a_statement_is_kept_an_hour_per_server(clock: Clock) -> None:
    held = Capabilities(ttl_s=3600, retry_s=60, monotonic_s=clock)
    assert held.get(BASE) is None and held.wanted(BASE)
    held.keep(BASE, STATEMENT)
    assert held.get(BASE) == STATEMENT and not held.wanted(BASE)
    assert held.get("https://other.example.org/fhir") is None
    clock.now_s += 3599
    assert held.get(BASE) == STATEMENT and not held.wanted(BASE)
    clock.now_s += 1
    assert held.get(BASE) is None and held.wanted(BASE)


def test_a_server_without_a_statement_is_asked_again_after_a_minute(clock: Clock) -> None:
    held = Capabilities(ttl_s=3600, retry_s=60, monotonic_s=clock)
    held.keep(BASE, None)
    assert held.get(BASE) is None and not held.wanted(BASE)
    clock.now_s += 60
    assert held.wanted(BASE)
    held.keep(BASE, {})  # an empty answer is none either
    assert held.get(BASE) is None and not held.wanted(BASE)


def test_a_kept_statement_is_a_copy(clock: Clock) -> None:
    held = Capabilities(monotonic_s=clock)
    given = dict(STATEMENT)
    held.keep(BASE, given)
    given["rest"] = []
    assert held.get(BASE) == STATEMENT
