"""Each write strategy on real servers, through the fault-injecting proxy: the report matches
what the server holds, and a re-run completes the plan with no duplicates.

Faults: the connection dropped after the server applied the request, the answer held past the
client's time-out, a garbled answer, and one entry refused by the server itself (a stale
version) inside a 200 transaction-response or as a single update.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from typing import Any

import pytest

from smart_app import service
from smart_app.errors import WriteBackError, WriteIncomplete
from smart_app.fhir import codes
from smart_app.fhir.gateway import FhirGateway, Limits
from smart_app.fhir.transaction import server_interactions
from smart_app.fhir.written import (
    Confirmation,
    Outcome,
    Strategy,
    WriteReport,
    WriteState,
    Written,
)
from tests import fhirserver
from tests.fhirserver import FaultMode
from tests.integration.conftest import Server, Servers, load_example

pytestmark = pytest.mark.integration

ON = dt.date(2026, 11, 20)
INFUSION = dt.date(2026, 11, 24)
RECORDED = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)
CONFIRM = Confirmation(
    recorded=RECORDED,
    acknowledged=frozenset({"caregiver-counseling", "smn2-copy-number"}),
    fhir_user="Practitioner/dr-lee",
)
TIMEOUT_S = 1.0
STALL_S = 2.0
APPLIED_FAULTS = (FaultMode.DROP_AFTER, FaultMode.STALL_AFTER, FaultMode.GARBLE_AFTER)

CASES = [
    (Server.SEKMET, Strategy.TRANSACTION),
    (Server.SEKMET, Strategy.LOOKUP),
    (Server.SEKMET, Strategy.PER_RESOURCE),
    (Server.MEDPLUM_ATOMIC, Strategy.LOOKUP),
    (Server.MEDPLUM_ENTRY, Strategy.LOOKUP),
    (Server.MEDPLUM_NONE, Strategy.LOOKUP),
    (Server.MEDPLUM_NONE, Strategy.PER_RESOURCE),
]
"""Each strategy on each server where it applies: a look-up on a server without transactions
sends batches."""


@dataclasses.dataclass
class Setup:
    """One server, its proxy, a freshly loaded patient and the strategy under test."""

    base: str
    proxy: fhirserver.Proxy
    patient: str
    strategy: Strategy

    def gateway(self) -> FhirGateway:
        """A gateway through the proxy that gives up waiting after TIMEOUT_S."""
        return FhirGateway(self.proxy.base, limits=Limits(timeout_s=TIMEOUT_S))

    def write(self, *, infusion: dt.date = INFUSION) -> list[Written]:
        """Read, plan and write once."""
        gateway = self.gateway()
        evaluation = service.evaluate(gateway, self.patient, on=ON, infusion_date=infusion)
        return service.write(gateway, evaluation, CONFIRM, strategy=self.strategy)

    def held(self) -> Counter[str]:
        """How many resources the server holds under each app key of this patient (its
        Provenance by their targets)."""
        counts: Counter[str] = Counter()
        refs = set()
        for kind in ("CarePlan", "Task", "MedicationRequest", "DetectedIssue"):
            for resource in fhirserver.search(self.base, f"{kind}?_count=500"):
                keys = codes.app_keys(resource)
                if keys and _about(resource, self.patient):
                    counts[keys[0]] += 1
                    refs.add(f"{kind}/{resource['id']}")
        for resource in fhirserver.search(self.base, "Provenance?_count=500"):
            keys = codes.app_keys(resource)
            if keys and {t.get("reference") for t in resource.get("target", [])} & refs:
                counts[keys[0]] += 1
        return counts


def _about(resource: dict[str, Any], patient: str) -> bool:
    """True when a resource is this patient's."""
    subject = resource.get("subject") or resource.get("for") or resource.get("patient") or {}
    return subject.get("reference") == f"Patient/{patient}"


@pytest.fixture(params=CASES, ids=[f"{s}-{k}" for s, k in CASES])
def setup(request: pytest.FixtureRequest, servers: Servers) -> Setup:
    """The case's server with a fresh eligible patient."""
    server, strategy = request.param
    base = servers.base(server)
    proxy = servers.proxy(server)
    proxy.reset()
    return Setup(base, proxy, load_example(base), strategy)


def _check_report_matches_server(setup: Setup, report: WriteReport) -> None:
    """Every entry the report says the server holds is there once; every entry it says is
    absent, failed or not sent is not there."""
    held = setup.held()
    items = Counter(key.split("/", 1)[1] for key in held)
    for written in report.written:
        on_server = written.outcome.on_server
        assert on_server is not None, written
        if written.item.startswith("provenance/"):
            continue  # a Provenance is keyed by its operations: checked by the re-run below
        assert items[written.item] == (1 if on_server else 0), written


def _posts_before_write(setup: Setup) -> int:
    """POSTs to the base before the write's first: the batch read, then the look-up."""
    return 1 if setup.strategy is Strategy.TRANSACTION else 2


def _fault_request(setup: Setup) -> tuple[str, str, int]:
    """The request to fault: the write itself; the second batch or the fourth Task create
    where the write takes many requests."""
    caps = setup.gateway().capabilities()
    if setup.strategy is Strategy.PER_RESOURCE:
        return "POST", "/fhir/Task", 3
    batches = setup.strategy is Strategy.LOOKUP and "transaction" not in server_interactions(caps)
    return "POST", "/fhir", _posts_before_write(setup) + (1 if batches else 0)


def _complete(setup: Setup) -> None:
    """A re-run finishes the plan: every item once, nothing duplicated, and the CarePlan names
    every order and Task (one created early by an interrupted write is completed)."""
    again = setup.write()
    assert {w.outcome for w in again} <= {Outcome.CREATED, Outcome.EXISTING, Outcome.UPDATED}
    held = setup.held()
    duplicated = {key: n for key, n in held.items() if n > 1}
    assert duplicated == {}
    plan_items = {w.item for w in again if not w.item.startswith("provenance/")}
    assert plan_items <= {key.split("/", 1)[1] for key in held}
    (care_plan,) = [
        r for r in fhirserver.search(setup.base, "CarePlan?_count=500") if _about(r, setup.patient)
    ]
    activities = {a["reference"]["reference"] for a in care_plan["activity"]}
    named = {w.reference for w in again if w.reference.startswith(("Task/", "MedicationRequest/"))}
    assert activities == named
    tasks = [w.reference for w in again if w.reference.startswith("Task/")]
    for reference in tasks:
        status, task = fhirserver.http_json("GET", f"{setup.base}/{reference}")
        assert status == 200
        assert task["basedOn"] == [{"reference": f"CarePlan/{care_plan['id']}"}]
    assert again[-1].reference.startswith("Provenance/")


def test_clean_write_then_again_creates_nothing(setup: Setup) -> None:
    """No fault: everything created once; the same write again creates nothing."""
    first = setup.write()
    assert {w.outcome for w in first} == {Outcome.CREATED}
    again = setup.write()
    assert {w.outcome for w in again} == {Outcome.EXISTING}
    assert [w.reference for w in again] == [w.reference for w in first]
    assert set(setup.held().values()) == {1}


@pytest.mark.parametrize("mode", APPLIED_FAULTS, ids=str)
def test_answer_lost_after_the_server_applied_it(setup: Setup, mode: FaultMode) -> None:
    """The server applied the request, the answer never came back whole: the outcome is read
    back, the report matches the server, and a re-run completes without duplicates."""
    method, path, after = _fault_request(setup)
    setup.proxy.fault_next(method, path, mode, after=after, stall_s=STALL_S)
    try:
        written = setup.write()
    except WriteIncomplete as incomplete:
        report = incomplete.report
        assert report.state is WriteState.PARTIAL
        assert "Re-running the write is safe" in str(incomplete)
    else:
        report = WriteReport(strategy=setup.strategy, written=tuple(written), read_back=True)
        assert report.state is WriteState.COMPLETE
    assert any(w.outcome is Outcome.PRESENT for w in report.written)
    _check_report_matches_server(setup, report)
    _complete(setup)


def test_one_entry_refused_by_the_server(setup: Setup) -> None:
    """A plan change whose first update carries a stale version: an atomic server keeps
    nothing; others keep what they applied; the report says which, and a re-run completes."""
    setup.write()
    before = setup.held()
    if setup.strategy is Strategy.PER_RESOURCE:
        setup.proxy.fault_next("PUT", "/fhir/*", FaultMode.STALE_ENTRY)
    else:
        after = _posts_before_write(setup)
        setup.proxy.fault_next("POST", "/fhir", FaultMode.STALE_ENTRY, entry=-1, after=after)
    later = INFUSION + dt.timedelta(days=7)
    try:
        setup.write(infusion=later)
    except WriteBackError as refused:
        assert "412" in str(refused) or "conflict" in str(refused)
        assert setup.held() == before
    except WriteIncomplete as incomplete:
        report = incomplete.report
        (failed,) = report.of(Outcome.FAILED)
        assert failed.detail
        assert report.state in (WriteState.PARTIAL, WriteState.NOTHING)
    else:
        pytest.fail("a refused entry was reported as written")
    again = setup.write(infusion=later)
    assert Outcome.FAILED not in {w.outcome for w in again}
    held = setup.held()
    assert {key: n for key, n in held.items() if n > 1} == {}
    plans = [
        r for r in fhirserver.search(setup.base, "CarePlan?_count=500") if _about(r, setup.patient)
    ]
    assert sorted(p["status"] for p in plans) == ["active", "revoked"]
