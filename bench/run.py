"""`make bench`: start the real FHIR server and the app, measure, print each figure with how it
was measured and its goal, and write them all to .bench/latest.json."""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import fhir, launches, offline, web
from bench.figures import Report
from smart_app.sandbox.fhirserver import sekmet
from tests.fhirserver import proxy

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / ".bench" / "latest.json"
COMMAND = "make bench"


def machine() -> dict[str, Any]:
    """Where the run happens."""
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run every measurement; 0 when the run finished (goals met or not)."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--output", type=Path, default=OUTPUT, help="the JSON file written")
    parser.add_argument(
        "--skip-heavy", action="store_true", help="leave out the 10,000-Observation patient"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    report = Report(machine=machine())
    report.say(
        f"{COMMAND}: {report.machine['cpu']}, {report.machine['cpus']} CPUs, Python "
        f"{report.machine['python']}, load average {report.machine['load_average_at_start']}"
    )
    offline.startup(report)
    offline.throughput(report)
    with tempfile.TemporaryDirectory(prefix="bench-") as temporary:
        work = Path(temporary)
        (work / "fhir").mkdir()
        with sekmet(work / "fhir") as base, proxy(base) as counting:
            fhir.requests_and_latency(report, base=base, proxy=counting)
            (work / "web").mkdir()
            with web.stack(fhir_base=base, work_dir=work / "web") as stack:
                launches.launch_latency(report, stack)
                launches.plan_page(report, stack)
                launches.concurrent_launches(report, stack)
        (work / "heavy").mkdir()
        with sekmet(work / "heavy") as base, proxy(base) as counting:
            if args.skip_heavy:
                fhir.OBSERVATION_COUNTS = fhir.OBSERVATION_COUNTS[:-1]
            fhir.many_observations(report, base=base, proxy=counting)
    seconds = time.perf_counter() - started
    report.machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report.save(args.output, command=COMMAND, seconds=seconds)
    report.say("\n== Goals ==")
    for line in report.summary():
        report.say(line)
    report.say(f"\n{len(report.figures)} figures in {seconds:.0f} s; written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
