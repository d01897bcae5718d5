"""A second real FHIR server for the tests: Medplum's FHIR router over its in-memory repository."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from smart_app.sandbox.fhirserver import free_port

NODE_DIR = Path(__file__).resolve().parent / "medplum"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
VALIDATE_TIMEOUT_S = 120.0


class Transactions(StrEnum):
    """How the server treats a transaction Bundle (see tests/medplum/server.mjs)."""

    ATOMIC = "atomic"
    """Medplum's transaction-bundles feature on: all or nothing, 8-entry conditional limit."""
    ENTRY = "entry"
    """Feature off: entries run one by one, partial commits possible."""
    NONE = "none"
    """A transaction Bundle is refused with 400; batch still works."""


def _node() -> str:
    """The node executable, with the Medplum packages installed, or a RuntimeError saying how."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is missing: run `make node`")
    if not (NODE_DIR / "node_modules" / "@medplum" / "fhir-router").is_dir():
        raise RuntimeError(f"{NODE_DIR / 'node_modules'} is missing: run `make node`")
    return node


@contextlib.contextmanager
def medplum(
    *,
    transactions: Transactions | str = Transactions.ATOMIC,
    raw_patient_param: bool = False,
    ignore_include: bool = False,
    paging: bool = True,
) -> Iterator[str]:
    """Start the Medplum test server on a free loopback port; yield its base URL; stop it."""
    mode = Transactions(transactions)
    port = free_port()
    command = [_node(), str(NODE_DIR / "server.mjs"), "--port", str(port), "--transactions", mode]
    if raw_patient_param:
        command.append("--raw-patient-param")
    if ignore_include:
        command.append("--ignore-include")
    if not paging:
        command.append("--no-paging")
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(  # noqa: S603 - our own script, fixed arguments
            command, stdout=subprocess.PIPE, stderr=stderr, cwd=NODE_DIR, text=True
        )
        assert process.stdout is not None
        ready = threading.Event()
        reader = threading.Thread(target=_read_stdout, args=(process.stdout, ready), daemon=True)
        reader.start()
        try:
            _wait_ready(process, ready, stderr)
            yield f"http://127.0.0.1:{port}/fhir"
        finally:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_S)
            reader.join(timeout=STOP_TIMEOUT_S)
            process.stdout.close()


def _read_stdout(stdout: IO[str], ready: threading.Event) -> None:
    """Set `ready` on the server's "ready <base>" line; keep draining stdout until it closes."""
    for line in stdout:
        if line.startswith("ready "):
            ready.set()


def _wait_ready(process: subprocess.Popen[str], ready: threading.Event, stderr: IO[bytes]) -> None:
    """Wait for the ready line, or fail with the server's stderr when it dies or times out."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready.wait(0.05):
        if process.poll() is not None:
            raise RuntimeError(
                f"the Medplum test server exited ({process.returncode}): {_tail(stderr)}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the Medplum test server was not ready in {START_TIMEOUT_S:.0f} s: {_tail(stderr)}"
            )


def _tail(stream: IO[bytes], limit: int = 2000) -> str:
    """The last `limit` characters written to a temporary file."""
    stream.flush()
    stream.seek(0)
    return stream.read().decode("utf-8", errors="replace")[-limit:].strip() or "(no stderr)"


def validate(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validate resources with @medplum/core (base R4): one item per resource with errors."""
    result = subprocess.run(  # noqa: S603 - our own script, fixed arguments
        [_node(), str(NODE_DIR / "validate.mjs")],
        input=json.dumps(resources),
        capture_output=True,
        text=True,
        cwd=NODE_DIR,
        timeout=VALIDATE_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"validate.mjs failed ({result.returncode}): {result.stderr[-2000:]}")
    report: list[dict[str, Any]] = json.loads(result.stdout)
    return report
