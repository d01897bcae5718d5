"""Start and stop the real local FHIR server (sekmet) on loopback: for the demo and the tests."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SEKMET = Path(os.environ.get("SEKMET_BIN", ROOT / ".venv-fhir" / "bin" / "sekmet"))
START_TIMEOUT_S = 60.0


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def sekmet(data_dir: Path, *, port: int | None = None) -> Iterator[str]:
    """Start sekmet with a fresh data directory (simulator off); yield its base URL."""
    if not SEKMET.exists():
        raise RuntimeError(f"{SEKMET} is missing: `make demo` or `make test` installs it")
    port = port or free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    config = data_dir / "sekmet.yaml"
    config.write_text(
        f"base_url: {base}\nhost: 127.0.0.1\nport: {port}\ndata_dir: {data_dir / 'data'}\n"
        "simulator: {enabled: false}\nlog_inbound: false\n",
        encoding="utf-8",
    )
    log = (data_dir / "sekmet.log").open("wb")
    process = subprocess.Popen(  # noqa: S603 - our own pinned binary, fixed arguments
        [str(SEKMET), "serve", "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        _wait_ready(base, process, data_dir / "sekmet.log")
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


def _wait_ready(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll /metadata until it answers 200, or fail with the server's log."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sekmet exited early: {log.read_text(errors='replace')[-2000:]}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{base}/metadata", timeout=2) as answer,  # noqa: S310
        ):
            if answer.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"sekmet did not answer /metadata in {START_TIMEOUT_S:.0f} s")
