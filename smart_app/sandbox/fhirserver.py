"""Start and stop the real local FHIR server (sekmet) on loopback: for the demo and the tests.

The sekmet executable is found without any repository path: $SEKMET_BIN, else `sekmet` on PATH,
else `.venv-fhir/bin/sekmet` under the working directory (where `make venv` installs it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

SEKMET_ENV = "SEKMET_BIN"
"""The environment variable naming the sekmet executable (the Makefile's demo target sets it)."""
SEKMET_COMMAND = "sekmet"
LOCAL_SEKMET = Path(".venv-fhir") / "bin" / SEKMET_COMMAND
"""Where `make venv` installs sekmet, relative to the working directory."""
START_TIMEOUT_S = 60.0


class SekmetNotFoundError(RuntimeError):
    """No sekmet executable where find_sekmet looks; the message says what to set."""


def _executable(path: Path) -> bool:
    """Whether path is a file this process may run."""
    return path.is_file() and os.access(path, os.X_OK)


def find_sekmet() -> Path:
    """The sekmet executable: $SEKMET_BIN (which must then be one), else `sekmet` on PATH, else
    .venv-fhir/bin/sekmet under the working directory."""
    named = os.environ.get(SEKMET_ENV, "")
    if named:
        path = Path(named).expanduser().absolute()
        if not _executable(path):
            raise SekmetNotFoundError(
                f"{SEKMET_ENV}={named} is not an executable file: set {SEKMET_ENV} to the path "
                "of the sekmet executable"
            )
        return path
    on_path = shutil.which(SEKMET_COMMAND)
    if on_path:
        return Path(on_path)
    local = Path.cwd() / LOCAL_SEKMET
    if _executable(local):
        return local
    raise SekmetNotFoundError(
        f"the FHIR server sekmet was not found: set {SEKMET_ENV} to its executable, put "
        f"`{SEKMET_COMMAND}` on PATH, or run `make venv` in the repository (it installs "
        f"{LOCAL_SEKMET})"
    )


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def sekmet(data_dir: Path, *, port: int | None = None) -> Iterator[str]:
    """Start sekmet with a fresh data directory (simulator off); yield its base URL."""
    binary = find_sekmet()
    port = port or free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    config = data_dir / "sekmet.yaml"
    config.write_text(
        f"base_url: {base}\nhost: 127.0.0.1\nport: {port}\ndata_dir: {data_dir / 'data'}\n"
        "simulator: {enabled: false}\nlog_inbound: false\n",
        encoding="utf-8",
    )
    with background_process(
        [str(binary), "serve", "-c", str(config)],
        ready_url=f"{base}/metadata",
        log_path=data_dir / "sekmet.log",
        what="sekmet",
    ):
        yield base


@contextlib.contextmanager
def background_process(
    command: list[str],
    *,
    ready_url: str,
    log_path: Path,
    what: str,
    env: dict[str, str] | None = None,
    stop_timeout_s: float = 10.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `command` with its output in `log_path`, wait until `ready_url` answers 200 (or fail
    with the end of its log), yield it, and stop it on exit (terminate, then kill)."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - fixed commands of this project
            command, stdout=log, stderr=subprocess.STDOUT, env=env
        )
        try:
            _wait_ready(ready_url, process, log_path, what=what)
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=stop_timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, *, what: str) -> None:
    """Poll `url` until it answers 200, or fail with the process's log."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited early: {log.read_text(errors='replace')[-2000:]}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(url, timeout=2) as answer,  # noqa: S310 - loopback
        ):
            if answer.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what}: {url} did not answer in {START_TIMEOUT_S:.0f} s")
