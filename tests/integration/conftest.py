"""Fixtures: one real sekmet FHIR server per test session, a counting proxy per test."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import fhirserver

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bundles"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="session")
def fhir_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a real local FHIR server with an empty store."""
    with fhirserver.sekmet(tmp_path_factory.mktemp("sekmet")) as base:
        yield base


@pytest.fixture(scope="session")
def fhir_proxy(fhir_server: str) -> Iterator[fhirserver.Proxy]:
    """A proxy in front of the server that counts requests and can inject failures."""
    with fhirserver.proxy(fhir_server) as state:
        yield state


@pytest.fixture
def proxy(fhir_proxy: fhirserver.Proxy) -> fhirserver.Proxy:
    """The proxy with no recorded calls and no pending faults."""
    fhir_proxy.reset()
    return fhir_proxy


@pytest.fixture
def load(fhir_server: str) -> Callable[[str], str]:
    """Load a fixture patient (by bundle name, or 'infant-eligible') under fresh ids."""

    def loader(name: str) -> str:
        path = EXAMPLES / f"{name}.json" if name == "infant-eligible" else FIXTURES / f"{name}.json"
        return fhirserver.load_patient(fhir_server, json.loads(path.read_text(encoding="utf-8")))

    return loader
