"""Session fixtures shared by the tests: the source documents, the SMART sandbox; and the guard
that keeps servers to tests marked integration, so `pytest -m "not integration"` starts none."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from smart_app.sandbox import run
from tests.smartsandbox import NOW, TODAY

SEED_LABEL = "001_4a21bb1626926527.txt"
SEED_HCP = "000_671695a26f6a3f3d.txt"
SERVER_FIXTURES = frozenset(
    {
        "servers",  # tests/integration/conftest.py: sekmet and Medplum, started on first use
        "fhir_server",
        "fhir_proxy",
        "proxy",
        "load",
        "fhir_base",  # a module's own sekmet (tests/sandbox/)
        "smart_sandbox",  # the sandbox EHR, the app and sekmet
        "browser",  # headless Chromium (tests/browser/)
        "browsers",
    }
)
"""Fixtures that start (or need) a server: only tests marked integration may use them."""


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fail, before any fixture starts, a test that uses a server but is not marked integration
    (browser tests are marked both), so that `-m "not integration"` never starts one."""
    if item.get_closest_marker("integration") is not None:
        return
    if item.get_closest_marker("browser") is not None:
        pytest.fail(f"{item.nodeid} is marked browser but not integration", pytrace=False)
    servers = sorted(SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())))
    if servers:
        pytest.fail(
            f"{item.nodeid} uses {', '.join(servers)}, which start a server, but is not marked "
            "integration",
            pytrace=False,
        )


def _seeds_dir() -> Path:
    """ZOLGENSMA_SEEDS_DIR, else ../shared/seeds beside the repository."""
    override = os.environ.get("ZOLGENSMA_SEEDS_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "shared" / "seeds"


@pytest.fixture(scope="session")
def seeds_dir() -> Path:
    """The source documents; tests that compare with them are skipped, saying why, without."""
    path = _seeds_dir()
    if not path.is_dir():
        pytest.skip(
            f"source documents not found at {path}; set ZOLGENSMA_SEEDS_DIR to the directory "
            f"holding {SEED_LABEL} and {SEED_HCP}"
        )
    return path


@pytest.fixture(scope="session")
def smart_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[run.Sandbox]:
    """The local SMART EHR in front of a real FHIR server, and the app, with a fixed date."""
    with run.running(
        today=TODAY,
        now=NOW,
        work_dir=tmp_path_factory.mktemp("sandbox"),
        app_state={"today": lambda: TODAY, "now": lambda: NOW},
    ) as sandbox:
        yield sandbox
