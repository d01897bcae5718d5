"""The command line offline: `plan --bundle` throughput on one core (output byte-identical to
json.dumps(indent=2)), where its time goes, and the start-up of `plan --bundle` and `dose`."""

from __future__ import annotations

import compileall
import contextlib
import cProfile
import datetime as dt
import io
import json
import os
import pstats
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.figures import Better, Figure, Goal, Report, median_ms
from smart_app import cli, render
from smart_app.fhir.read import facts_from_bundle, parse_bundle_json
from smart_app.rules.plan import build_plan

ROOT = Path(__file__).resolve().parents[1]
BUNDLES = [
    ROOT / "examples" / "infant-eligible.json",
    *sorted((ROOT / "tests" / "fixtures" / "bundles").glob("*.json")),
]
ON = "2026-11-20"
THROUGHPUT_GOAL = 2500.0
MEASURE_S = 4.0
"""How long the throughput loop runs (after a warm-up pass)."""
STARTUP_RUNS = 21
STARTUP_GOAL_MS = 80.0
STAGES = {
    "reading the file": "_read_text",
    "decoding JSON (parse_bundle_json)": "parse_bundle_json",
    "the reader (facts_from_bundle)": "facts_from_bundle",
    "the rules (build_plan)": "build_plan",
    "plan data (plan_data)": "plan_data",
    "JSON text (render.to_json)": "to_json",
}
"""Where the bundle path's time goes, by the function of the app that owns each stage (found
by name in the project's files, wherever a refactoring puts it)."""


def _args(path: Path) -> object:
    """The parsed arguments of `plan --bundle PATH --on ON`."""
    return cli._parser().parse_args(["plan", "--bundle", str(path), "--on", ON])


@contextlib.contextmanager
def one_core() -> Iterator[str]:
    """Run pinned to one CPU (the last one); yield which, restoring the affinity after."""
    if not hasattr(os, "sched_setaffinity"):
        yield "not pinned (no sched_setaffinity here)"
        return
    before = os.sched_getaffinity(0)
    core = max(before)
    os.sched_setaffinity(0, {core})
    try:
        yield f"pinned to CPU {core}"
    finally:
        os.sched_setaffinity(0, before)


def _standard_output(path: Path) -> str:
    """What the bundle path printed before: the plan through json.dumps(indent=2)."""
    bundle = parse_bundle_json(path.read_text(encoding="utf-8"))
    on = dt.date.fromisoformat(ON)
    plan = build_plan(facts_from_bundle(bundle), on=on, infusion_date=on + dt.timedelta(days=1))
    return json.dumps(render.plan_data(plan), indent=2, ensure_ascii=False) + "\n"


@dataclass(frozen=True)
class Rate:
    """Patients evaluated in a loop, per second of CPU time and of wall time."""

    patients: int
    cpu_s: float
    wall_s: float

    @property
    def per_cpu_s(self) -> float:
        """Patients per second of this process's CPU time: one core's throughput, whatever
        else the machine runs."""
        return self.patients / self.cpu_s

    @property
    def per_wall_s(self) -> float:
        """Patients per second of wall time."""
        return self.patients / self.wall_s


def _rate(all_args: list[object]) -> Rate:
    """The bundle path over MEASURE_S of CPU time, in whole passes over every bundle."""
    for args in all_args:  # warm-up pass
        cli.run_plan(args)
    done = 0
    cpu, wall = time.process_time(), time.perf_counter()
    while time.process_time() - cpu < MEASURE_S:
        for args in all_args:
            cli.run_plan(args)
        done += len(all_args)
    return Rate(done, time.process_time() - cpu, time.perf_counter() - wall)


def _stdlib_rate(all_args: list[object]) -> Rate:
    """The same loop with render.to_json back on the standard library's encoder."""
    fast = render.to_json
    render.to_json = lambda data: json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    try:
        return _rate(all_args)
    finally:
        render.to_json = fast


def _profile(all_args: list[object]) -> dict[str, float]:
    """Each stage's share of the bundle path's time under cProfile."""
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(5):
        for args in all_args:
            cli.run_plan(args)
    profile.disable()
    stats = pstats.Stats(profile, stream=io.StringIO())
    table = stats.stats  # type: ignore[attr-defined]
    total = next(
        ct
        for (file, _, name), (_, _, _, ct, _) in table.items()
        if file.endswith("cli.py") and name == "run_plan"
    )
    shares = {}
    package = str(ROOT / "smart_app")
    for stage, function in STAGES.items():
        spent = sum(
            ct
            for (file, _, name), (_, _, _, ct, _) in table.items()
            if file.startswith(package) and name == function
        )
        shares[stage] = spent / total
    return shares


def throughput(report: Report) -> None:
    """Patients per second on one core, identity of the output, and where the time goes."""
    report.section("Offline: `plan --bundle` throughput on one core")
    all_args = [_args(path) for path in BUNDLES]
    same = [cli.run_plan(_args(path)) == _standard_output(path) for path in BUNDLES]
    with one_core() as pinned:
        rate = _rate(all_args)
        before = _stdlib_rate(all_args)
        shares = _profile(all_args)
    report.add(
        Figure(
            "offline.byte_identical",
            "Output byte-identical to json.dumps(indent=2, ensure_ascii=False)",
            sum(same),
            f"of {len(same)} bundles",
            "cli.run_plan's output for the example and every fixture bundle compared byte for "
            "byte with the plan rendered through the standard library's json.dumps",
            Goal(len(same), Better.HIGHER),
        )
    )
    report.add(
        Figure(
            "offline.patients_per_s",
            "Offline throughput, `plan --bundle` path",
            rate.per_cpu_s,
            "patients/s",
            f"cli.run_plan (read file, decode, reader, rules, JSON text) in a loop over the "
            f"example and the {len(BUNDLES) - 1} fixture bundles for {MEASURE_S:.0f} s of CPU "
            f"time after a warm-up pass, one process {pinned}: {rate.patients} patients / the "
            f"process's CPU seconds ({rate.per_wall_s:.0f}/s by wall clock); the same loop with "
            f"the standard library's encoder: {before.per_cpu_s:.0f} patients/s",
            Goal(THROUGHPUT_GOAL, Better.HIGHER),
            {
                "patients": rate.patients,
                "cpu_s": round(rate.cpu_s, 2),
                "wall_s": round(rate.wall_s, 2),
                "per_wall_s": round(rate.per_wall_s, 1),
                "stdlib_encoder_patients_per_s": round(before.per_cpu_s, 1),
            },
        )
    )
    report.add(
        Figure(
            "offline.profile",
            "Share of the bundle path's time, JSON text",
            shares["JSON text (render.to_json)"] * 100,
            "%",
            "cProfile over 5 passes (cumulative time of each stage's function / cli.run_plan's): "
            + "; ".join(f"{stage} {share:.0%}" for stage, share in shares.items()),
            None,
            {stage: round(share, 3) for stage, share in shares.items()},
        )
    )


def _run_s(command: list[str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one run of a command, output discarded."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, check=True, cwd=ROOT)  # noqa: S603
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def startup(report: Report) -> None:
    """`plan --bundle` and `dose` against bare `python -c pass`, bytecode compiled."""
    report.section("CLI start-up")
    compileall.compile_dir(ROOT / "smart_app", quiet=1)
    python = sys.executable
    commands = {
        "bare": [python, "-c", "pass"],
        "plan --bundle": [
            python,
            "-m",
            "smart_app",
            "plan",
            "--bundle",
            str(BUNDLES[0].relative_to(ROOT)),
            "--on",
            ON,
        ],
        "dose": [python, "-m", "smart_app", "dose", "5.2"],
    }
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    wall: dict[str, list[float]] = {name: [] for name in commands}
    for command in commands.values():
        _run_s(command)  # warm the file cache
    for _ in range(STARTUP_RUNS):
        for name, command in commands.items():  # interleaved: drift hits all alike
            cpu_s, wall_s = _run_s(command)
            cpu[name].append(cpu_s)
            wall[name].append(wall_s)
    bare_ms, bare_wall_ms = median_ms(cpu["bare"]), median_ms(wall["bare"])
    for name in ("plan --bundle", "dose"):
        own_ms, own_wall_ms = median_ms(cpu[name]), median_ms(wall[name])
        report.add(
            Figure(
                f"startup.{name.split()[0]}",
                f"Start-up of `python -m smart_app {name}` over bare Python",
                own_ms - bare_ms,
                "ms",
                f"median CPU time (user + system) of {STARTUP_RUNS} interleaved runs, bytecode "
                f"compiled first: {own_ms:.0f} ms (the whole command, evaluation and output "
                f"included) - `python -c pass` {bare_ms:.0f} ms; by wall clock {own_wall_ms:.0f} "
                f"- {bare_wall_ms:.0f} = {own_wall_ms - bare_wall_ms:.0f} ms",
                Goal(STARTUP_GOAL_MS),
                {
                    "command_cpu_ms": round(own_ms, 1),
                    "bare_cpu_ms": round(bare_ms, 1),
                    "command_wall_ms": round(own_wall_ms, 1),
                    "bare_wall_ms": round(bare_wall_ms, 1),
                },
            )
        )
