"""Fixtures the sandbox tests share: a real sekmet server per module and patients on it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from tests import fhirserver
from tests.sandbox.fake_cds import FakeCds, service_app

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "infant-eligible.json"
"""The example infant's transaction bundle."""


@pytest.fixture(scope="module")
def fhir_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real sekmet server for this module."""
    with fhirserver.sekmet(tmp_path_factory.mktemp("sekmet")) as base:
        yield base


@pytest.fixture(scope="module")
def two_patients(fhir_base: str) -> tuple[str, str]:
    """The example infant, loaded twice: the chart's (or launch) patient and someone else."""
    bundle = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    return fhirserver.load_patient(fhir_base, bundle), fhirserver.load_patient(fhir_base, bundle)


@pytest.fixture(scope="module")
def fake_cds() -> Iterator[FakeCds]:
    """The stand-in service on a loopback port."""
    fake = FakeCds()
    server = make_server("127.0.0.1", 0, service_app(fake), threaded=True)
    fake.base = f"http://127.0.0.1:{server.server_port}/cds-services"
    with fhirserver.serving(server):
        yield fake


@pytest.fixture
def cds(fake_cds: FakeCds) -> Iterator[FakeCds]:
    """The stand-in service with nothing recorded."""
    fake_cds.reset()
    yield fake_cds
    fake_cds.reset()
