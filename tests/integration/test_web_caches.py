"""What the web app keeps of an EHR between requests, against the real servers: the JWK Set that
verifies id_tokens (fetched once for two launches, again for a key id it lacks, at most once a
minute) and the CapabilityStatement the write strategy is chosen from (a write sends none)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from smart_app.sandbox import run
from smart_app.sandbox.patients import SyntheticPatient, transaction_bundle
from smart_app.web.smart import KEYS_MIN_REFETCH_S, KEYS_TTL_S, KeySets
from tests import fhirserver
from tests.integration.test_web_open import PATIENTS, _app, _open, _write_form
from tests.smartsandbox import NOW, TODAY, ehr_launch_url, follow

pytestmark = pytest.mark.integration

PATIENT = "zs-eligible-4-2kg"
"""Launched (only read) in this module's own sandbox; written under fresh ids on the proxy."""


@dataclass
class Clock:
    """A monotonic clock the test moves."""

    now_s: float = 1000.0

    def __call__(self) -> float:
        return self.now_s


@dataclass
class Sent:
    """Every request the app sent through its HTTP session (discovery, JWKS, FHIR)."""

    calls: list[tuple[str, str]] = field(default_factory=list)

    def record(self, response: requests.Response, *_: Any, **__: Any) -> None:
        """A response hook: note the request's method and URL."""
        self.calls.append((str(response.request.method), str(response.request.url)))

    def take(self, url: str) -> int:
        """How many requests went to `url` since the last take (and forget them all)."""
        count = sum(1 for _, sent in self.calls if sent == url)
        self.calls.clear()
        return count


@dataclass
class Caching:
    """This module's sandbox, what its app sent, and the app's JWK Sets with their clock."""

    sandbox: run.Sandbox
    sent: Sent
    keys: KeySets
    clock: Clock

    @property
    def jwks_url(self) -> str:
        return f"{self.sandbox.ehr_base}/oauth/jwks"


@pytest.fixture(scope="module")
def caching(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Caching]:
    """A sandbox of its own (its app's caches start empty), its HTTP session recorded."""
    sent, clock = Sent(), Clock()
    http = requests.Session()
    http.hooks["response"].append(sent.record)
    keys = KeySets(monotonic_s=clock)
    with run.running(
        today=TODAY,
        now=NOW,
        work_dir=tmp_path_factory.mktemp("caches-sandbox"),
        app_state={"today": lambda: TODAY, "now": lambda: NOW, "http": http, "key_sets": keys},
    ) as sandbox:
        yield Caching(sandbox, sent, keys, clock)


def launch(sandbox: run.Sandbox) -> tuple[int, str]:
    """Launch the app from the patient's chart in a fresh browser: the last status and page."""
    with requests.Session() as browser:
        hops = follow(browser, ehr_launch_url(browser, sandbox.ehr_base, PATIENT))
        return hops[-1].status, browser.last_page  # type: ignore[attr-defined]


def before_rotation(caching: Caching) -> None:
    """Make the app hold the EHR's JWK Set as it was before its id_token key was added (the
    set it publishes, less its RS256 key), as fetched just now."""
    caching.clock.now_s += KEYS_TTL_S  # what the app holds is stale: the next get fetches

    def without_id_token_key(response: requests.Response, *_: Any, **__: Any) -> None:
        published = response.json()
        published["keys"] = [k for k in published["keys"] if k.get("alg") != "RS256"]
        assert published["keys"], "the sandbox publishes its CDS key too"
        response._content = json.dumps(published).encode()  # what .json() and .text read

    with requests.Session() as http:
        http.hooks["response"].append(without_id_token_key)
        held = caching.keys.get(caching.jwks_url, http=http)
    assert all(k.get("alg") != "RS256" for k in held["keys"])


def test_two_launches_to_the_same_ehr_fetch_its_jwks_once(caching: Caching) -> None:
    caching.sent.calls.clear()
    for _ in range(2):
        status, page = launch(caching.sandbox)
        assert status == 200, page
        assert 'id="status-h"' in page
    calls = list(caching.sent.calls)
    assert caching.sent.take(caching.jwks_url) == 1, calls
    # the plan page asked for the CapabilityStatement beside the first chart read only
    assert sum(1 for _, url in calls if url == f"{caching.sandbox.iss}/metadata") == 1, calls
    caching.clock.now_s += KEYS_TTL_S  # an hour on: fetched again
    assert launch(caching.sandbox)[0] == 200
    assert caching.sent.take(caching.jwks_url) == 1


def test_an_unknown_key_id_fetches_the_jwks_again_once(caching: Caching) -> None:
    before_rotation(caching)
    caching.clock.now_s += KEYS_MIN_REFETCH_S  # held for a minute: it may be fetched again
    caching.sent.calls.clear()
    status, page = launch(caching.sandbox)
    assert status == 200, page  # the id_token's key was found in the set fetched again
    assert caching.sent.take(caching.jwks_url) == 1
    assert launch(caching.sandbox)[0] == 200
    assert caching.sent.take(caching.jwks_url) == 0  # the new set is kept


def test_an_unknown_key_id_fetches_the_jwks_at_most_once_a_minute(caching: Caching) -> None:
    before_rotation(caching)  # fetched just now
    caching.sent.calls.clear()
    status, page = launch(caching.sandbox)
    assert status == 400, page  # not fetched again so soon: the id_token cannot be verified
    assert "id_token is not valid" in page
    assert caching.sent.take(caching.jwks_url) == 0
    caching.clock.now_s += KEYS_MIN_REFETCH_S
    assert launch(caching.sandbox)[0] == 200
    assert caching.sent.take(caching.jwks_url) == 1


@pytest.fixture
def put_patient(fhir_server: str) -> Callable[[SyntheticPatient], str]:
    """Load the synthetic patient under fresh ids; return the Patient id."""

    def loader(patient: SyntheticPatient) -> str:
        return fhirserver.load_patient(fhir_server, transaction_bundle([patient]))

    return loader


def test_web_writes_send_the_write_and_the_reread_and_no_metadata_request(
    proxy: fhirserver.Proxy,
    tmp_path: Path,
    put_patient: Callable[[SyntheticPatient], str],
    fhir_server: str,
) -> None:
    """The first plan page asks for the CapabilityStatement beside its read; the writes that
    follow (and page views) send none: each write is its re-read and one transaction."""
    client = _app(proxy.base, tmp_path).test_client()
    path = urlsplit(proxy.base).path
    first, second = put_patient(PATIENTS[PATIENT]), put_patient(PATIENTS[PATIENT])
    url, page = _open(client, proxy.base, first)
    assert sorted(proxy.calls) == [("GET", f"{path}/metadata"), ("POST", path)]
    for patient_id in (first, second):
        if patient_id == second:
            proxy.reset()
            url, page = _open(client, proxy.base, patient_id)
            assert proxy.calls == [("POST", path)]  # the read only
        proxy.reset()
        written = client.post(url + "write", data=_write_form(page))
        assert written.status_code == 200, written.text
        assert proxy.calls == [("POST", path), ("POST", path)]  # the re-read, the transaction
        _, plans = fhirserver.http_json(
            "GET", f"{fhir_server}/CarePlan?patient={patient_id}&_summary=count"
        )
        assert plans["total"] == 1
