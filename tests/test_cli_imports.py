"""The command line's offline paths (`plan --bundle`, `dose`) import no server or FHIR-model code:
what keeps their start-up short (`make bench` times it; this checks the structure)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "infant-eligible.json"
HEAVY = (
    "requests",
    "urllib3",
    "fhir",
    "fhir_core",
    "pydantic",
    "flask",
    "smart_app.service",
    "smart_app.fhir.gateway",
    "smart_app.fhir.transaction",
    "smart_app.fhir.plan_bundle",
    "smart_app.fhir.followup_write",
    "smart_app.render_followup",
    "smart_app.rules.followup",
)
"""Packages and modules the offline paths never use."""

PROBE = """
import contextlib, io, json, sys
from smart_app import cli
with contextlib.redirect_stdout(io.StringIO()):
    code = cli.main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def imported(*argv: str) -> set[str]:
    """The modules loaded by running the command line with `argv` in a fresh interpreter."""
    done = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-c", PROBE, *argv],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=60,
    )
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["code"] == 0, done.stderr
    return set(answer["modules"])


def heavy(modules: set[str]) -> list[str]:
    """The modules of HEAVY (or under them) that were loaded."""
    return sorted(m for m in modules if any(m == h or m.startswith(f"{h}.") for h in HEAVY))


@pytest.mark.parametrize(
    "argv",
    [
        ("plan", "--bundle", str(EXAMPLE), "--on", "2026-11-20"),
        ("plan", "--bundle", str(EXAMPLE), "--on", "2026-11-20", "--format", "text"),
        ("dose", "3.5", "8", "--unit", "kg"),
    ],
    ids=["plan-bundle-json", "plan-bundle-text", "dose"],
)
def test_offline_paths_import_no_server_or_model_code(argv: tuple[str, ...]) -> None:
    """Neither requests nor fhir.resources/pydantic nor the writers are imported."""
    assert heavy(imported(*argv)) == []


def test_the_check_sees_what_a_server_command_imports() -> None:
    """The check can fail: the service module every server command uses loads them."""
    done = subprocess.run(
        [sys.executable, "-c", "import sys, smart_app.service; print(sorted(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=60,
    )
    found = heavy(set(json.loads(done.stdout.replace("'", '"'))))
    assert "requests" in found
    assert "smart_app.fhir.gateway" in found
