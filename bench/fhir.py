"""The service path (what `zolgensma-smart plan --fhir-base ... [--write]` runs) against the real
FHIR server through the counting, delaying proxy: requests per step, latency against the floor,
and patients with many Observations."""

from __future__ import annotations

import time
import tracemalloc
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from bench import patients
from bench.figures import Figure, Goal, Report, median_ms
from smart_app import cli, clock, service
from smart_app.errors import SmartAppError
from smart_app.fhir.gateway import FhirGateway, Floors, patient_searches
from smart_app.fhir.written import Confirmation
from smart_app.rules.model import Severity
from tests.fhirserver import Proxy

DELAY_S = 0.05
"""Added each way by the proxy: a 100 ms round trip."""
RUNS = 11
LATENCY_GOAL = 1.2
OBSERVATION_COUNTS = (50, 1_000, 10_000)


@dataclass(frozen=True)
class Step:
    """One timed run: seconds and the requests the proxy saw."""

    seconds: float
    calls: list[tuple[str, str]]


def _confirmation(evaluation: service.Evaluation) -> Confirmation:
    """The clinician's confirmation: every needs-review finding acknowledged."""
    review = {
        f.code.value
        for f in evaluation.plan.eligibility.findings
        if f.severity is Severity.NEEDS_REVIEW
    }
    return Confirmation(
        recorded=clock.now(), acknowledged=frozenset(review), fhir_user="Practitioner/bench"
    )


def _timed(proxy: Proxy, action: Callable[[], object]) -> Step:
    """Run `action`, timing it and collecting the proxy's calls."""
    proxy.reset()
    start = time.perf_counter()
    action()
    seconds = time.perf_counter() - start
    return Step(seconds, list(proxy.calls))


def _plan(proxy: Proxy, patient_id: str) -> service.Evaluation:
    """Read and plan, as `plan --fhir-base` does (a fresh gateway, as each CLI run has)."""
    return service.evaluate(
        FhirGateway(proxy.base), patient_id, on=patients.ON, infusion_date=patients.INFUSION
    )


def _plan_and_write(proxy: Proxy, patient_id: str) -> tuple[Step, Step]:
    """`plan --fhir-base --write` as cli.run_plan runs it: the read with the server's
    CapabilityStatement asked for beside it, the plan, then the write; each step timed."""
    gateway = FhirGateway(proxy.base)
    evaluated: list[service.Evaluation] = []

    def read() -> None:
        capabilities = cli.prefetch_capabilities(gateway)
        evaluated.append(
            service.evaluate(gateway, patient_id, on=patients.ON, infusion_date=patients.INFUSION)
        )
        capabilities.join()

    reading = _timed(proxy, read)
    evaluation = evaluated[0]
    write = _timed(proxy, lambda: service.write(gateway, evaluation, _confirmation(evaluation)))
    return reading, write


def _shown(calls: list[tuple[str, str]]) -> str:
    """The requests of a step, shortly: 'POST /fhir (batch), GET /fhir/metadata'."""
    return ", ".join(f"{m} {p.split('?', 1)[0]}" for m, p in calls) or "none"


def requests_and_latency(report: Report, *, base: str, proxy: Proxy) -> None:
    """Requests per step and plan / plan + write latency as a multiple of the floor."""
    report.section("FHIR requests per step and latency (service path, real server)")
    timings: dict[float, dict[str, list[float]]] = {
        delay: {"plan": [], "plan+write": []} for delay in (0.0, DELAY_S)
    }
    calls: dict[str, list[tuple[str, str]]] = {}
    reader = patients.load_example(base)
    for delay in (0.0, DELAY_S):  # warm: connection pools, imports, the server's caches
        proxy.delay_s = delay
        _plan(proxy, reader)
    # Delayed and undelayed runs alternate, so that whatever drifts (the server's data grows
    # with every write, the machine's load) weighs on both alike.
    for _ in range(RUNS):
        for delay in (0.0, DELAY_S):
            proxy.delay_s = delay
            step = _timed(proxy, lambda: _plan(proxy, reader))
            timings[delay]["plan"].append(step.seconds)
            calls["plan"] = step.calls
    for _ in range(RUNS):
        for delay in (0.0, DELAY_S):
            writer = patients.load_example(base)  # straight to the server, not timed
            proxy.delay_s = delay
            read, write = _plan_and_write(proxy, writer)
            timings[delay]["plan+write"].append(read.seconds + write.seconds)
            calls["write"] = write.calls
            calls["write-read"] = read.calls
    proxy.delay_s = 0.0
    report.add(
        Figure(
            "requests.plan",
            "Requests to read a patient for a plan",
            len(calls["plan"]),
            "requests",
            f"counted by the proxy in front of the FHIR server for one `plan` read of the example "
            f"patient: {_shown(calls['plan'])}",
            Goal(1),
        )
    )
    report.add(
        Figure(
            "requests.write",
            "Requests to write a plan (CLI, --write-strategy auto)",
            len(calls["write"]),
            "requests",
            "counted by the proxy for the write step of `plan --write` on a fresh gateway (as "
            f"each CLI run has): {_shown(calls['write'])}; its read step sent "
            f"{_shown(sorted(calls['write-read']))} side by side (the CapabilityStatement "
            "chooses the write strategy)",
            Goal(1),
        )
    )
    for step, trips in (("plan", 1), ("plan+write", 2)):
        own_ms = median_ms(timings[0.0][step])
        delayed_ms = median_ms(timings[DELAY_S][step])
        floor_ms = trips * 2 * DELAY_S * 1000 + own_ms
        report.add(
            Figure(
                f"latency.{step}",
                f"Latency of {step} with 50 ms added each way",
                delayed_ms / floor_ms,
                "x the floor",
                f"median of {RUNS} runs through the proxy adding 50 ms each way ({delayed_ms:.0f} "
                f"ms) / floor = {trips} round trip(s) x 100 ms + the same step's median with no "
                f"delay ({own_ms:.0f} ms) = {floor_ms:.0f} ms",
                Goal(LATENCY_GOAL),
                {
                    "delayed_ms": round(delayed_ms, 1),
                    "undelayed_ms": round(own_ms, 1),
                    "floor_ms": round(floor_ms, 1),
                    "round_trips_minimum": trips,
                },
            )
        )


@dataclass(frozen=True)
class Heavy:
    """One patient size: its read-and-plan time, requests and peak memory."""

    observations: int
    seconds: float
    requests: int
    peak_bytes: int = 0
    error: str = ""
    resources: int = 0
    truncated: int = 0


def _heavy_run(proxy: Proxy, patient_id: str, count: int) -> Heavy:
    """Read and plan once (timed), then once more under tracemalloc (peak memory)."""

    def evaluate() -> service.Evaluation:
        return service.evaluate(
            FhirGateway(proxy.base), patient_id, on=patients.ON, infusion_date=patients.INFUSION
        )

    proxy.reset()
    start = time.perf_counter()
    try:
        evaluation = evaluate()
    except SmartAppError as exc:
        return Heavy(count, time.perf_counter() - start, len(proxy.calls), error=str(exc))
    seconds = time.perf_counter() - start
    tracemalloc.start()
    try:
        evaluate()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return Heavy(
        count,
        seconds,
        evaluation.record.requests,
        peak,
        resources=len(evaluation.record.resources),
        truncated=len(evaluation.record.truncated),
    )


@dataclass(frozen=True)
class ServerTime:
    """The FHIR server's own time for the patient's dated lab search, asked directly."""

    sorted_s: float | None
    """As the app sends it (_sort=-date); None when it took longer than SERVER_TIMEOUT_S."""
    unsorted_s: float
    """The same search without _sort."""

    def shown(self) -> str:
        """'400 ms (20 ms without _sort=-date)'."""
        first = f"{self.sorted_s * 1000:.0f} ms" if self.sorted_s is not None else "over 180 s"
        return f"{first} ({self.unsorted_s * 1000:.0f} ms without _sort=-date)"


SERVER_TIMEOUT_S = 180.0


def _server_time(base: str, patient_id: str) -> ServerTime:
    """Time the patient's dated lab search (first page) on the server itself, with and without
    the newest-first sort the app asks for."""
    labs = next(
        s
        for s in patient_searches(patient_id, floors=Floors.before(patients.ON))
        if "1742-6" in s and "date=ge" in s
    )

    def seconds(query: str) -> float | None:
        request = urllib.request.Request(  # noqa: S310 - the local server
            f"{base}/{query}", headers={"Accept": "application/fhir+json"}
        )
        start = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=SERVER_TIMEOUT_S) as answer:  # noqa: S310
                answer.read()
        except (TimeoutError, urllib.error.URLError):
            return None
        return time.perf_counter() - start

    unsorted = seconds(labs.replace("&_sort=-date", "")) or SERVER_TIMEOUT_S
    return ServerTime(seconds(labs), unsorted)


def many_observations(report: Report, *, base: str, proxy: Proxy) -> None:
    """Patients with 50, 1,000 and 10,000 Observations: time, requests, peak memory."""
    report.section("A patient with many Observations (read + plan, real server)")
    results: dict[int, dict[float, Heavy]] = {}
    server: dict[int, ServerTime] = {}
    for count in OBSERVATION_COUNTS:
        started = time.perf_counter()
        patient_id = patients.load_with_observations(base, count)
        took_s = time.perf_counter() - started
        report.say(f"  loaded a patient with {count:,} Observations in {took_s:.0f} s")
        server[count] = _server_time(base, patient_id)  # first: an abandoned read keeps it busy
        results[count] = {}
        for delay in (0.0, DELAY_S):
            proxy.delay_s = delay
            tries = 1 if count > 1_000 else 3
            runs = [_heavy_run(proxy, patient_id, count) for _ in range(tries)]
            results[count][delay] = min(runs, key=lambda r: (bool(r.error), r.seconds))
        proxy.delay_s = 0.0
    _heavy_figures(report, results, server)


def _heavy_figures(
    report: Report, results: dict[int, dict[float, Heavy]], server: dict[int, ServerTime]
) -> None:
    """One figure per size, then the ratios the goals are about."""
    for count, by_delay in results.items():
        loop, delayed = by_delay[0.0], by_delay[DELAY_S]
        failed = f"; FAILED: {loop.error}" if loop.error else ""
        report.add(
            Figure(
                f"observations.{count}.ms",
                f"Read + plan, {count:,} Observations",
                loop.seconds * 1000,
                "ms",
                f"service.evaluate on a fresh gateway through the proxy, loopback (best of runs): "
                f"{loop.requests} requests, {loop.resources} resources kept, peak "
                f"{loop.peak_bytes / 1e6:.1f} MB (tracemalloc, a second run); with 50 ms each way "
                f"{delayed.seconds * 1000:.0f} ms; the server alone takes "
                f"{server[count].shown()} for the first page of the lab search{failed}",
                None,
                {
                    "loopback_ms": round(loop.seconds * 1000, 1),
                    "delayed_ms": round(delayed.seconds * 1000, 1),
                    "requests": loop.requests,
                    "peak_bytes": loop.peak_bytes,
                    "resources_read": loop.resources,
                    "searches_cut_at_page_bound": loop.truncated,
                    "server_lab_search_s": server[count].sorted_s,
                    "server_lab_search_unsorted_s": server[count].unsorted_s,
                    "error": loop.error or delayed.error,
                },
            )
        )
    least, largest = OBSERVATION_COUNTS[0], OBSERVATION_COUNTS[-1]
    small = results[least]
    for delay, words in ((DELAY_S, "100 ms round trip"), (0.0, "loopback")):
        run = results[largest][delay]
        note = (
            f"; it FAILED ({run.error}): the time to the failure is used, a lower bound"
            if run.error
            else ""
        )
        report.add(
            Figure(
                f"observations.ratio.{'delayed' if delay else 'loopback'}",
                f"{largest:,} vs {least} Observations, time ({words})",
                run.seconds / small[delay].seconds,
                "x",
                f"read + plan time of the {largest:,}-Observation patient / the "
                f"{least}-Observation patient's, {words}{note}",
                Goal(2.0, text=f"{largest:,} Observations within 2 x the time of {least}"),
            )
        )
    measured = [c for c in OBSERVATION_COUNTS if results[c][0.0].peak_bytes]
    top = measured[-1]
    skipped = (
        f"; the {largest:,}-Observation read failed, so the largest patient read is used"
        if top != largest
        else ""
    )
    report.add(
        Figure(
            "observations.ratio.memory",
            f"{top:,} vs {least} Observations, peak memory",
            results[top][0.0].peak_bytes / small[0.0].peak_bytes,
            "x",
            f"tracemalloc peak during read + plan of the {top:,}-Observation patient / the "
            f"{least}-Observation patient's (flat: at most 2 x){skipped}",
            Goal(2.0, text="peak memory flat"),
        )
    )
