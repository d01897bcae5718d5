"""Read, plan and write back against the real local FHIR server, counting HTTP requests."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from smart_app import service
from smart_app.errors import FhirNotFound, WriteBackError, WriteBlocked, WriteIncomplete
from smart_app.fhir import codes
from smart_app.fhir.gateway import FhirGateway, Limits
from smart_app.fhir.transaction import choose_strategy
from smart_app.fhir.written import Confirmation, OrderMode, Outcome, Strategy, WriteState
from tests import fhirserver
from tests.integration.conftest import Server

pytestmark = pytest.mark.integration
ALL_SERVERS = True

ON = dt.date(2026, 11, 20)
INFUSION = dt.date(2026, 11, 24)
RECORDED = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
INFO_ACK = frozenset({"caregiver-counseling", "smn2-copy-number"})


def _confirm(**changes: object) -> Confirmation:
    """The clinician's confirmation used by these tests."""
    base: dict[str, object] = {
        "recorded": RECORDED,
        "acknowledged": INFO_ACK,
        "fhir_user": "Practitioner/dr-lee",
    }
    base.update(changes)
    return Confirmation(**base)  # type: ignore[arg-type]


SUBJECT = {"Task": "for", "DetectedIssue": "patient"}


def _own(base: str, kind: str, patient: str) -> list[dict[str, Any]]:
    """The app's resources of one type for a patient, straight from the server."""
    subject = SUBJECT.get(kind, "subject")
    return [
        r
        for r in fhirserver.search(base, f"{kind}?_count=200")
        if r.get(subject) == {"reference": f"Patient/{patient}"}
        and any(i.get("system") == codes.APP_IDENTIFIER for i in r.get("identifier", []))
    ]


def _inventory(base: str, patient: str) -> Counter[str]:
    """How many app resources of each type and status the server holds for a patient."""
    counts: Counter[str] = Counter()
    refs = set()
    for kind in ("CarePlan", "Task", "MedicationRequest", "DetectedIssue"):
        for resource in _own(base, kind, patient):
            counts[f"{kind}:{resource.get('status')}"] += 1
            refs.add(f"{kind}/{resource['id']}")
    for provenance in fhirserver.search(base, "Provenance?_count=200"):
        if any(t["reference"] in refs for t in provenance.get("target", [])):
            counts["Provenance"] += 1
    return counts


def _evaluate(
    proxy: fhirserver.Proxy, patient: str, *, infusion: dt.date = INFUSION
) -> tuple[FhirGateway, service.Evaluation]:
    """Read through the counting proxy and build the plan (and the server's capabilities,
    which choose the write strategy: a transaction, for sekmet)."""
    gateway = FhirGateway(proxy.base)
    gateway.capabilities()
    return gateway, service.evaluate(gateway, patient, on=ON, infusion_date=infusion)


def _write_calls(gateway: FhirGateway, *, new: bool = True) -> list[tuple[str, str]]:
    """The requests one write makes: one conditional transaction (sekmet); or a look-up of the
    app's identifiers, then one plain transaction of what is missing (Medplum)."""
    if choose_strategy(gateway.capabilities()) is Strategy.TRANSACTION:
        return [("POST", "/fhir")]
    return [("POST", "/fhir")] * (2 if new else 1)


def _lookups(gateway: FhirGateway) -> int:
    """How many requests come before the write's transaction (its look-up)."""
    return len(_write_calls(gateway)) - 1


def _atomic(server: Server) -> bool:
    """True for the servers that apply a transaction all or nothing."""
    return server is not Server.MEDPLUM_ENTRY


def test_read_is_one_request_and_finds_the_inputs(
    proxy: fhirserver.Proxy, load: Callable[[str], str]
) -> None:
    """All inputs for one patient come back from one HTTP request."""
    patient = load("infant-eligible")
    _, evaluation = _evaluate(proxy, patient)
    assert proxy.calls == [("GET", "/fhir/metadata"), ("POST", "/fhir")]
    assert evaluation.record.requests == 1
    assert evaluation.plan.eligibility.status.value == "eligible"
    assert evaluation.plan.dose is not None
    assert evaluation.plan.dose.kit.ndc == "71894-127-05"
    assert evaluation.facts.sma_conditions[0].reference == f"Condition/sma-dx-{patient[-8:]}"


def test_plan_written_in_one_request(
    proxy: fhirserver.Proxy, load: Callable[[str], str], fhir_server: str
) -> None:
    """Writing creates every resource of the plan with one transaction."""
    patient = load("infant-eligible")
    gateway, evaluation = _evaluate(proxy, patient)
    proxy.reset()
    written = service.write(gateway, evaluation, _confirm())
    assert proxy.calls == _write_calls(gateway)
    assert {w.outcome for w in written} == {Outcome.CREATED}
    kinds = Counter(w.reference.split("/")[0] for w in written)
    tasks = [i for i in evaluation.plan.schedule if i.kind.value in {"baseline", "counseling"}]
    assert kinds["MedicationRequest"] == 2
    assert kinds["CarePlan"] == 1
    assert kinds["DetectedIssue"] == len(INFO_ACK)
    assert kinds["Provenance"] == 1
    assert kinds["Task"] >= len(tasks) + 10
    (care_plan,) = _own(fhir_server, "CarePlan", patient)
    assert care_plan["status"] == "active"
    activity = {a["reference"]["reference"] for a in care_plan["activity"]}
    for ref in (w.reference for w in written if w.reference.startswith(("Task/", "Medication"))):
        assert ref in activity
    for task in _own(fhir_server, "Task", patient):
        assert task["basedOn"] == [{"reference": f"CarePlan/{care_plan['id']}"}]
        assert task["status"] == "requested"
        assert task["for"] == {"reference": f"Patient/{patient}"}
    orders = {
        r["medicationCodeableConcept"]["coding"][0]["system"]: r
        for r in _own(fhir_server, "MedicationRequest", patient)
    }
    kit = orders[codes.NDC]
    assert kit["status"] == "draft"
    assert kit["intent"] == "proposal"
    assert kit["dispenseRequest"]["quantity"]["value"] == 5
    assert kit["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 35.8
    assert kit["reasonReference"] == [{"reference": f"Condition/sma-dx-{patient[-8:]}"}]
    (provenance,) = [w for w in written if w.reference.startswith("Provenance/")]
    status, prov = fhirserver.http_json("GET", f"{fhir_server}/{provenance.reference}")
    assert status == 200
    assert len(prov["target"]) == len(written) - 1


def test_written_again_creates_nothing(
    proxy: fhirserver.Proxy, load: Callable[[str], str], fhir_server: str
) -> None:
    """Re-sending the same plan creates nothing: every entry matches what exists."""
    patient = load("infant-eligible")
    gateway, evaluation = _evaluate(proxy, patient)
    first = service.write(gateway, evaluation, _confirm())
    before = _inventory(fhir_server, patient)
    gateway, evaluation = _evaluate(proxy, patient)
    proxy.reset()
    again = service.write(gateway, evaluation, _confirm(recorded=RECORDED + dt.timedelta(hours=3)))
    assert proxy.calls == _write_calls(gateway, new=False)
    assert {w.outcome for w in again} == {Outcome.EXISTING}
    assert [w.reference for w in again] == [w.reference for w in first]
    assert _inventory(fhir_server, patient) == before


def test_changed_infusion_date_revokes_the_old_plan(
    proxy: fhirserver.Proxy, load: Callable[[str], str], fhir_server: str
) -> None:
    """A new infusion date: old CarePlan revoked, its Tasks and draft orders cancelled, at once."""
    patient = load("infant-eligible")
    gateway, evaluation = _evaluate(proxy, patient)
    first = service.write(gateway, evaluation, _confirm())
    old_plan = next(w.reference for w in first if w.reference.startswith("CarePlan/"))
    gateway, evaluation = _evaluate(proxy, patient, infusion=INFUSION + dt.timedelta(days=7))
    proxy.reset()
    second = service.write(gateway, evaluation, _confirm())
    assert proxy.calls == _write_calls(gateway)
    updated = {w.reference for w in second if w.outcome is Outcome.UPDATED}
    old_refs = {w.reference for w in first if not w.reference.startswith("Provenance/")}
    old_refs -= {w.reference for w in first if w.reference.startswith("DetectedIssue/")}
    assert updated == old_refs
    plans = {p["id"]: p for p in _own(fhir_server, "CarePlan", patient)}
    assert plans[old_plan.split("/")[1]]["status"] == "revoked"
    active = [p for p in plans.values() if p["status"] == "active"]
    assert len(active) == 1
    assert "2026-12-01" in active[0]["title"]
    for task in _own(fhir_server, "Task", patient):
        based_on = task["basedOn"][0]["reference"]
        expected = "cancelled" if based_on == old_plan else "requested"
        assert task["status"] == expected, task["identifier"]
    statuses = Counter(r["status"] for r in _own(fhir_server, "MedicationRequest", patient))
    assert statuses == Counter({"cancelled": 2, "draft": 2})
    before = _inventory(fhir_server, patient)
    gateway, evaluation = _evaluate(proxy, patient, infusion=INFUSION + dt.timedelta(days=7))
    again = service.write(gateway, evaluation, _confirm())
    assert {w.outcome for w in again} == {Outcome.EXISTING}  # the Provenance too
    assert _inventory(fhir_server, patient) == before


def test_back_to_the_first_date_reactivates_it(
    proxy: fhirserver.Proxy, load: Callable[[str], str], fhir_server: str
) -> None:
    """Returning to a revoked plan updates it back to active instead of duplicating it."""
    patient = load("infant-eligible")
    for infusion in (INFUSION, INFUSION + dt.timedelta(days=7), INFUSION):
        gateway, evaluation = _evaluate(proxy, patient, infusion=infusion)
        service.write(gateway, evaluation, _confirm())
    plans = _own(fhir_server, "CarePlan", patient)
    assert sorted(p["status"] for p in plans) == ["active", "revoked"]
    (active,) = [p for p in plans if p["status"] == "active"]
    assert INFUSION.isoformat() in active["title"]
    open_tasks = [t for t in _own(fhir_server, "Task", patient) if t["status"] == "requested"]
    assert {t["basedOn"][0]["reference"] for t in open_tasks} == {f"CarePlan/{active['id']}"}


def test_patient_without_weight_writes_nothing(
    proxy: fhirserver.Proxy, load: Callable[[str], str], fhir_server: str
) -> None:
    """No weight: the write is refused before any request, naming what is missing."""
    patient = load("weight-missing")
    gateway, evaluation = _evaluate(proxy, patient)
    proxy.reset()
    with pytest.raises(WriteBlocked, match=r"incomplete.*weight-missing.*\(2\.1\)"):
        service.write(gateway, evaluation, _confirm(acknowledged=frozenset()))
    assert proxy.calls == []
    assert _inventory(fhir_server, patient) == Counter()


def test_needs_review_requires_acknowledgement(
    proxy: fhirserver.Proxy, load: Callable[[str], str], fhir_server: str
) -> None:
    """A needs-review finding must be acknowledged; then it is written as a DetectedIssue."""
    patient = load("advanced-sma")
    gateway, evaluation = _evaluate(proxy, patient)
    codes_present = {f.code.value for f in evaluation.plan.eligibility.findings}
    assert "advanced-sma" in codes_present
    with pytest.raises(WriteBlocked, match="advanced-sma"):
        service.write(gateway, evaluation, _confirm(acknowledged=frozenset()))
    assert _inventory(fhir_server, patient)["CarePlan:active"] == 0
    written = service.write(gateway, evaluation, _confirm(acknowledged=frozenset({"advanced-sma"})))
    issues = _own(fhir_server, "DetectedIssue", patient)
    assert [i["code"]["coding"][0]["code"] for i in issues] == ["advanced-sma"]
    assert issues[0]["severity"] == "moderate"
    assert any(w.reference.startswith("CarePlan/") for w in written)


def test_server_500_on_transaction_writes_nothing(
    proxy: fhirserver.Proxy, load: Callable[[str], str], fhir_server: str
) -> None:
    """A 500 on the transaction may follow a commit: the outcome is read back, and the report
    says the server holds none of it (nothing on the server)."""
    patient = load("infant-eligible")
    gateway, evaluation = _evaluate(proxy, patient)
    proxy.fail_next("POST", "/fhir", 500, "database unavailable", after=_lookups(gateway))
    with pytest.raises(WriteIncomplete, match=r"nothing was written.*read back") as caught:
        service.write(gateway, evaluation, _confirm())
    report = caught.value.report
    assert report.read_back
    assert report.state is WriteState.NOTHING
    assert {w.outcome for w in report.written} == {Outcome.ABSENT}
    assert "server error (500)" in report.written[0].detail
    assert "database unavailable" in report.written[0].detail
    assert _inventory(fhir_server, patient) == Counter()


def test_conflict_mid_transaction_is_reported_as_the_server_applied_it(
    proxy: fhirserver.Proxy, load: Callable[[str], str], fhir_server: str, server: Server
) -> None:
    """The server itself refuses one entry (stale version). An atomic server keeps nothing and
    the app says nothing was written; a server that runs entries one by one keeps the others,
    and the app says exactly which failed and which were committed, then a re-run completes."""
    patient = load("infant-eligible")
    gateway, evaluation = _evaluate(proxy, patient)
    service.write(gateway, evaluation, _confirm())
    gateway, evaluation = _evaluate(proxy, patient, infusion=INFUSION + dt.timedelta(days=3))
    (care_plan,) = _own(fhir_server, "CarePlan", patient)
    care_plan["note"] = [*care_plan.get("note", []), {"text": "edited in the EHR meanwhile"}]
    status, _ = fhirserver.http_json("PUT", f"{fhir_server}/CarePlan/{care_plan['id']}", care_plan)
    assert status == 200
    before = _inventory(fhir_server, patient)
    if _atomic(server):
        with pytest.raises(WriteBackError, match=r"nothing written.*conflict \(412\)"):
            service.write(gateway, evaluation, _confirm())
        assert _inventory(fhir_server, patient) == before
        return
    with pytest.raises(WriteIncomplete, match="applied part of the write") as caught:
        service.write(gateway, evaluation, _confirm())
    report = caught.value.report
    (failed,) = report.of(Outcome.FAILED)
    assert (failed.reference, failed.item) == (f"CarePlan/{care_plan['id']}", "careplan")
    assert failed.detail.startswith("412")
    committed = report.of(Outcome.CREATED, Outcome.UPDATED)
    assert len(committed) == len(report.written) - 1
    after = _inventory(fhir_server, patient)
    assert after["CarePlan:active"] == 2  # the new plan, and the old one the server kept active
    gateway, evaluation = _evaluate(proxy, patient, infusion=INFUSION + dt.timedelta(days=3))
    resumed = service.write(gateway, evaluation, _confirm())
    assert {w.outcome for w in resumed} <= {Outcome.EXISTING, Outcome.UPDATED, Outcome.CREATED}
    final = _inventory(fhir_server, patient)
    assert final["CarePlan:active"] == 1
    assert final["CarePlan:revoked"] == 1
    assert final["MedicationRequest:draft"] == 2


def test_order_mode_writes_active_orders(
    proxy: fhirserver.Proxy, load: Callable[[str], str], fhir_server: str
) -> None:
    """The configurable order mode writes status active, intent order."""
    patient = load("infant-eligible")
    gateway, evaluation = _evaluate(proxy, patient)
    service.write(gateway, evaluation, _confirm(order_mode=OrderMode.ORDER))
    orders = _own(fhir_server, "MedicationRequest", patient)
    assert {(o["status"], o["intent"]) for o in orders} == {("active", "order")}


def test_unknown_patient_is_a_typed_error(proxy: fhirserver.Proxy) -> None:
    """A patient id the server does not have: FhirNotFound in one request."""
    with pytest.raises(FhirNotFound, match="Patient/nobody-here"):
        _evaluate(proxy, "nobody-here")
    assert proxy.calls[1:] == [("POST", "/fhir")]


def test_refused_entry_is_named(
    proxy: fhirserver.Proxy, load: Callable[[str], str], fhir_server: str
) -> None:
    """When the server's OperationOutcome points at an entry, the error names that entry."""
    patient = load("infant-eligible")
    gateway, evaluation = _evaluate(proxy, patient)
    proxy.fail_next(
        "POST",
        "/fhir",
        422,
        "Task.restriction invalid at Bundle.entry[2].resource",
        after=_lookups(gateway),
    )
    with pytest.raises(WriteBackError) as caught:
        service.write(gateway, evaluation, _confirm())
    assert caught.value.entry is not None
    assert caught.value.entry.startswith("entry 2 (Task ")
    assert caught.value.entry == "entry 2 (Task task/baseline/day-1)"
    assert "failing entry: entry 2 (Task" in str(caught.value)
    assert _inventory(fhir_server, patient) == Counter()


def test_next_pages_followed_within_the_bound(
    proxy: fhirserver.Proxy, load: Callable[[str], str]
) -> None:
    """Small pages on the real server: `next` links followed, and cut at the page bound."""
    patient = load("infant-eligible")
    full = FhirGateway(proxy.base).read_patient(patient)
    labs = {r["id"] for r in full.resources if r["resourceType"] == "Observation"}
    proxy.reset()
    paged = FhirGateway(proxy.base, limits=Limits(page_size=2, max_pages=10)).read_patient(patient)
    assert {r["id"] for r in paged.resources if r["resourceType"] == "Observation"} == labs
    assert paged.truncated == []
    assert paged.requests == len(proxy.calls) > 1
    assert all(method == "GET" for method, _ in proxy.calls[1:])
    proxy.reset()
    cut = FhirGateway(proxy.base, limits=Limits(page_size=2, max_pages=2)).read_patient(patient)
    assert len(cut.truncated) == 1
    assert cut.truncated[0].startswith("Observation?")
    assert cut.requests == 2
