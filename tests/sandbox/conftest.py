"""Fixtures the sandbox tests share: a real sekmet server per module and patients on it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import fhirserver

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
