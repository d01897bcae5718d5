"""The sandbox EHR in a process of its own (so the benchmark's clients do not share its GIL).

`python -m bench.ehr SETTINGS.json` serves it; `ehr_process` starts it and waits until it answers.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from smart_app.sandbox.fhirserver import background_process


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
    origin = f"http://127.0.0.1:{settings['port']}"
    with background_process(
        [sys.executable, "-m", "bench.ehr", str(path)],
        ready_url=f"{origin}/smart-style.json",
        log_path=work_dir / "ehr.log",
        what="the sandbox EHR",
    ):
        yield origin


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
