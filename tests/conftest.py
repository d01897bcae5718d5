"""Session fixtures shared by the integration and browser tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from smart_app.sandbox import run
from tests.smartsandbox import NOW, TODAY


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
