"""The sandbox EHR in a process of its own (so the benchmark's clients do not share its GIL).

`python -m bench.ehr SETTINGS.json` serves it; `ehr_process` starts it and waits until it answers.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

START_TIMEOUT_S = 60.0


def serve(settings_path: Path) -> None:
    """Serve the EHR described by a JSON file until terminated."""
    import logging

    from werkzeug.serving import make_server

    from smart_app.sandbox.ehr import EhrSettings, LauncherPatient, SandboxClient, create_ehr

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    raw = json.loads(settings_path.read_text(encoding="utf-8"))
    settings = EhrSettings(
        public_base=raw["public_base"],
        fhir_upstream=raw["fhir_upstream"],
        clients=tuple(
            SandboxClient(
                client_id=c["client_id"],
                redirect_uris=tuple(c["redirect_uris"]),
                launch_url=c["launch_url"],
            )
            for c in raw["clients"]
        ),
        patients=tuple(LauncherPatient(**p) for p in raw["patients"]),
        practitioner_id=raw["practitioner_id"],
    )
    server = make_server("127.0.0.1", raw["port"], create_ehr(settings), threaded=True)
    server.serve_forever()


@contextlib.contextmanager
def ehr_process(settings: dict[str, Any], *, work_dir: Path) -> Iterator[str]:
    """Start the EHR on settings['port']; yield its own origin (not its public base)."""
    path = work_dir / "ehr.json"
    path.write_text(json.dumps(settings), encoding="utf-8")
    log = (work_dir / "ehr.log").open("wb")
    origin = f"http://127.0.0.1:{settings['port']}"
    process = subprocess.Popen(  # noqa: S603 - this interpreter, our own module
        [sys.executable, "-m", "bench.ehr", str(path)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        _wait(f"{origin}/smart-style.json", process, work_dir / "ehr.log")
        yield origin
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


def _wait(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll `url` until it answers 200, or fail with the process's log."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited early: {log.read_text(errors='replace')[-2000:]}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(url, timeout=2) as answer,  # noqa: S310 - loopback
        ):
            if answer.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {START_TIMEOUT_S:.0f} s")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: serve the EHR of the settings file given."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        sys.stderr.write("usage: python -m bench.ehr SETTINGS.json\n")
        return 2
    serve(Path(args[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
