"""Fixtures: real FHIR servers (sekmet; Medplum's router in three transaction modes), each
started once per session, a counting proxy per test, and fixture patients loaded under fresh ids."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path

import pytest

from smart_app.sandbox.patients import SyntheticPatient, transaction_bundle
from tests import fhirserver, medplum

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bundles"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class Server(StrEnum):
    """The real FHIR servers the integration suites run against."""

    SEKMET = "sekmet"
    MEDPLUM_ATOMIC = "medplum-atomic"
    """Medplum's router, transactions all or nothing with its 8-conditional-entry limit."""
    MEDPLUM_ENTRY = "medplum-entry"
    """Medplum's router running a transaction entry by entry (partial commits possible)."""
    MEDPLUM_NONE = "medplum-none"
    """Medplum's router refusing transactions: batches and single requests only."""
    MEDPLUM_RAW = "medplum-raw"
    """Medplum's bare in-memory repository: ignores _include, reads patient=<bare id>
    literally and returns no paging links (real servers differ too)."""


ALL_SERVERS = (Server.SEKMET, Server.MEDPLUM_ATOMIC, Server.MEDPLUM_ENTRY)
"""A module with `ALL_SERVERS = True` runs each of its server tests against each of these."""


class Servers:
    """Each server started on first use and kept for the session, with a proxy in front."""

    def __init__(self, stack: contextlib.ExitStack, tmp: pytest.TempPathFactory) -> None:
        self.stack = stack
        self.tmp = tmp
        self.bases: dict[Server, str] = {}
        self.proxies: dict[Server, fhirserver.Proxy] = {}

    def base(self, server: Server) -> str:
        """The server's base URL (started now if it is not running)."""
        if server not in self.bases:
            if server is Server.SEKMET:
                context = fhirserver.sekmet(self.tmp.mktemp("sekmet"))
            elif server is Server.MEDPLUM_RAW:
                context = medplum.medplum(raw_patient_param=True, ignore_include=True, paging=False)
            else:
                mode = server.value.removeprefix("medplum-")
                context = medplum.medplum(transactions=mode)
            self.bases[server] = self.stack.enter_context(context)
        return self.bases[server]

    def proxy(self, server: Server) -> fhirserver.Proxy:
        """The counting, fault-injecting proxy in front of the server."""
        if server not in self.proxies:
            self.proxies[server] = self.stack.enter_context(fhirserver.proxy(self.base(server)))
        return self.proxies[server]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Modules marked ALL_SERVERS run their server tests against every server."""
    if getattr(metafunc.module, "ALL_SERVERS", False) and "server" in metafunc.fixturenames:
        metafunc.parametrize("server", ALL_SERVERS, indirect=True, ids=str)


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """The session's servers, stopped at its end."""
    with contextlib.ExitStack() as stack:
        yield Servers(stack, tmp_path_factory)


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Server:
    """Which server a test runs against: sekmet unless its module runs on all of them."""
    return Server(getattr(request, "param", Server.SEKMET))


@pytest.fixture
def fhir_server(servers: Servers, server: Server) -> str:
    """The base URL of a real local FHIR server."""
    return servers.base(server)


@pytest.fixture
def fhir_proxy(servers: Servers, server: Server) -> fhirserver.Proxy:
    """A proxy in front of the server that counts requests and can inject failures."""
    return servers.proxy(server)


@pytest.fixture
def proxy(fhir_proxy: fhirserver.Proxy) -> fhirserver.Proxy:
    """The proxy with no recorded calls and no pending faults."""
    fhir_proxy.reset()
    return fhir_proxy


def load_example(base: str, name: str = "infant-eligible") -> str:
    """Load a fixture patient (by bundle name, or 'infant-eligible') into a server; its id."""
    path = EXAMPLES / f"{name}.json" if name == "infant-eligible" else FIXTURES / f"{name}.json"
    return fhirserver.load_patient(base, json.loads(path.read_text(encoding="utf-8")))


@pytest.fixture
def load(fhir_server: str) -> Callable[[str], str]:
    """Load a fixture patient (by bundle name, or 'infant-eligible') under fresh ids."""

    def loader(name: str) -> str:
        return load_example(fhir_server, name)

    return loader


@pytest.fixture
def put_patient(fhir_server: str) -> Callable[[SyntheticPatient], str]:
    """Load a synthetic patient (the sandbox's) under fresh ids; return the Patient id."""

    def loader(patient: SyntheticPatient) -> str:
        return fhirserver.load_patient(fhir_server, transaction_bundle([patient]))

    return loader
