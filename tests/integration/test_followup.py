"""Follow-up against the real local FHIR server: phases, alerts, the day-30 decision written end to
end on both branches, idempotency, Tasks completed by their results (late ones too), the CLI.

Every patient is a sandbox patient loaded under a fresh id (the server is shared by the whole
session), its plan written and earlier launches replayed by `run.load`, as `make demo` does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from smart_app import cli, service
from smart_app.errors import WriteBackError, WriteBlocked, WriteIncomplete
from smart_app.fhir import codes
from smart_app.fhir.followup_write import Confirmed
from smart_app.fhir.gateway import FhirGateway
from smart_app.fhir.transaction import send
from smart_app.fhir.written import OrderMode, Outcome, WriteState
from smart_app.rules.model import (
    ActivityKind,
    AlertCode,
    AlertLevel,
    DecisionBranch,
    LabTest,
    Phase,
    SteroidRole,
    TaskState,
)
from smart_app.sandbox import run
from smart_app.sandbox.patients import LABS, SyntheticPatient, lab, synthetic_patients
from tests import fhirserver
from tests.smartsandbox import NOW, TODAY

pytestmark = pytest.mark.integration
ALL_SERVERS = True

USER = f"Practitioner/{run.PRACTITIONER_ID}"
LIVER_TESTS = frozenset({"AST", "ALT", "total bilirubin", "PT", "INR"})
READ_ONLY = (
    "zs-day-10",
    "zs-day-28",
    "zs-day-45-taper",
    "zs-day-15-liver-injury",
    "zs-day-100-complete",
)


# Fresh patients --------------------------------------------------------------------------------


def renamed(pid: str) -> SyntheticPatient:
    """The sandbox patient `pid` under a fresh id: the Patient, every resource id derived from
    it and every reference to it (only this patient's resources are rewritten, so the prefix
    'zs-day-28' of 'zs-day-28-alt-3x' cannot leak between patients)."""
    (patient,) = [p for p in synthetic_patients(today=TODAY) if p.patient_id == pid]
    new = f"{pid}-{uuid.uuid4().hex[:8]}"
    text = re.sub(rf'(?<=["/]){re.escape(pid)}(?=["-])', new, json.dumps(patient.resources))
    assert pid not in text.replace(new, ""), "an id of the patient was left behind"
    resources = tuple(json.loads(text))
    assert all(r["id"] == new or r["id"].startswith(f"{new}-") for r in resources)
    return dataclasses.replace(patient, patient_id=new, resources=resources)


def loaded(base: str, pid: str) -> SyntheticPatient:
    """A fresh copy of a sandbox patient on the server, its plan written as `run.load` does."""
    patient = renamed(pid)
    run.load(base, [patient], now=NOW)
    return patient


@pytest.fixture(scope="module")
def once() -> dict[tuple[str, ...], Any]:
    """Set-ups the module's tests share, by what they are and the server's base URL."""
    return {}


@pytest.fixture
def read_only(fhir_server: str, once: dict[tuple[str, ...], Any]) -> dict[str, SyntheticPatient]:
    """One fresh copy of each patient the read-only tests look at (never written to), loaded
    once per server."""
    key = ("read-only", fhir_server)
    if key not in once:
        once[key] = {pid: loaded(fhir_server, pid) for pid in READ_ONLY}
    return once[key]


@pytest.fixture
def fresh(fhir_server: str) -> Callable[[str], SyntheticPatient]:
    """A factory of fresh patients for tests that write."""
    return lambda pid: loaded(fhir_server, pid)


# Server helpers --------------------------------------------------------------------------------


def _follow(
    base: str, pid: str, *, on: dt.date = TODAY, exam_normal: bool | None = None
) -> service.Following:
    following = service.read_followup(FhirGateway(base), pid, on=on, exam_normal=exam_normal)
    assert following is not None, f"{pid} has no active plan"
    return following


def _confirmed(mode: OrderMode = OrderMode.ORDER) -> Confirmed:
    return Confirmed(recorded=NOW, fhir_user=USER, order_mode=mode)


def _own(base: str, kind: str, pid: str) -> list[dict[str, Any]]:
    """The app's resources of one type for the patient, straight from the server."""
    return [
        r
        for r in fhirserver.search(base, f"{kind}?patient={pid}&_count=200")
        if any(i.get("system") == codes.APP_IDENTIFIER for i in r.get("identifier", []))
    ]


def _versions(base: str, reference: str) -> int:
    """How many versions the server holds of a resource (servers number them differently)."""
    status, history = fhirserver.http_json("GET", f"{base}/{reference}/_history")
    assert status == 200, history
    return len(history.get("entry") or [])


def _item(resource: dict[str, Any]) -> str:
    """The app identifier after the plan key, e.g. 'task/lab-draw/day7'."""
    (value,) = [
        i["value"] for i in resource["identifier"] if i.get("system") == codes.APP_IDENTIFIER
    ]
    return value.split("/", 1)[1]


def _by_item(base: str, kind: str, pid: str) -> dict[str, dict[str, Any]]:
    return {_item(r): r for r in _own(base, kind, pid)}


def _snapshot(base: str, pid: str) -> dict[str, str]:
    """Every app resource of the patient (and the Provenances over them) with its version:
    equal snapshots mean nothing was created and nothing was changed."""
    versions = {}
    for kind in ("CarePlan", "Task", "MedicationRequest", "ServiceRequest"):
        for resource in _own(base, kind, pid):
            versions[f"{kind}/{resource['id']}"] = resource["meta"]["versionId"]
    targets = set(versions)
    for provenance in fhirserver.search(base, "Provenance?_count=200"):
        if any(t.get("reference") in targets for t in provenance.get("target", [])):
            versions[f"Provenance/{provenance['id']}"] = provenance["meta"]["versionId"]
    return versions


def _counts(snapshot: dict[str, str]) -> Counter[str]:
    return Counter(ref.split("/")[0] for ref in snapshot)


def _get(base: str, reference: str) -> dict[str, Any]:
    status, resource = fhirserver.http_json("GET", f"{base}/{reference}")
    assert status == 200, (reference, resource)
    return resource


def _post_lab(base: str, patient: SyntheticPatient, test: LabTest, value: float, day: int) -> str:
    """POST a final lab result (as the sandbox lab reports it, with its reference range) dated
    `day` days after infusion; return 'Observation/<server id>'."""
    obs = lab(
        patient.patient_id,
        test,
        on=patient.infusion_date + dt.timedelta(days=day),
        tag=f"posted-{uuid.uuid4().hex[:6]}",
        value=value,
    )
    del obs["id"]
    status, created = fhirserver.http_json("POST", f"{base}/Observation", obs)
    assert status == 201, created
    return f"Observation/{created['id']}"


def _obs(patient: SyntheticPatient, test: LabTest, tag: str) -> str:
    """The reference of one of the sandbox's own results, e.g. the day-7 platelets ('d7')."""
    return f"Observation/{patient.patient_id}-{LABS[test].key}-{tag}"


def _view(following: service.Following, item: str) -> Any:
    (view,) = [v for v in following.followup.tasks if v.task.item == item]
    return view


# Phases ----------------------------------------------------------------------------------------


def test_day_10_full_dose(fhir_server: str, read_only: dict[str, SyntheticPatient]) -> None:
    patient = read_only["zs-day-10"]
    found = _follow(fhir_server, patient.patient_id).followup
    assert found.infusion_date == TODAY - dt.timedelta(days=10)
    assert (found.day, found.hcp_day) == (10, 12)
    assert found.phase is Phase.FULL_DOSE
    assert found.decision is None
    assert found.alerts == ()
    assert found.findings == ()
    assert found.dose_today is not None
    assert found.dose_today.order.role is SteroidRole.FULL_DOSE
    assert found.dose_today.order.mg_per_day == Decimal("3.8")
    states = {v.task.item: v.state for v in found.tasks}
    assert states["task/lab-draw/day7"] is TaskState.RESULTED
    assert states["task/baseline/day-1"] is TaskState.DONE
    assert states["task/counseling/day-1"] is TaskState.DONE
    assert states["task/lab-draw/day14"] is TaskState.UPCOMING


def test_day_28_liver_assessment_due(
    fhir_server: str, read_only: dict[str, SyntheticPatient]
) -> None:
    """Day 28, labs normal: the taper is proposed on today's weight, writable once the exam
    is attested normal, and not before."""
    patient = read_only["zs-day-28"]
    pid = patient.patient_id
    following = _follow(fhir_server, pid, exam_normal=True)
    found = following.followup
    assert (found.day, found.hcp_day) == (28, 30)
    assert found.phase is Phase.LIVER_ASSESSMENT_DUE
    decision = found.decision
    assert decision is not None
    assert decision.branch is DecisionBranch.TAPER
    assert decision.writable
    assert decision.labs_unremarkable
    assert not decision.consult
    assert decision.weight is not None
    assert decision.weight.value == Decimal("6.1")
    assert decision.weight.evidence.reference == f"Observation/{pid}-weight-d28"
    assert [s.mg_per_kg_per_day for s in decision.steps] == [Decimal("0.5"), Decimal("0.25")]
    assert decision.steps[0].start == patient.infusion_date + dt.timedelta(days=29)
    assert {s.result.evidence.reference for s in decision.panel} == {
        _obs(patient, t, "d28")
        for t in (LabTest.ALT, LabTest.AST, LabTest.BILIRUBIN_TOTAL, LabTest.PT, LabTest.INR)
    }
    unattested = _follow(fhir_server, pid).followup.decision
    assert unattested is not None
    assert unattested.branch is DecisionBranch.TAPER
    assert not unattested.writable
    with pytest.raises(WriteBlocked, match="attest a normal clinical exam"):
        service.decision_transaction(_follow(fhir_server, pid), _confirmed())
    abnormal = _follow(fhir_server, pid, exam_normal=False).followup.decision
    assert abnormal is not None
    assert abnormal.branch is DecisionBranch.CONTINUE
    assert "the clinical exam is not normal" in abnormal.reasons


def test_day_45_taper(fhir_server: str, read_only: dict[str, SyntheticPatient]) -> None:
    patient = read_only["zs-day-45-taper"]
    found = _follow(fhir_server, patient.patient_id).followup
    assert found.day == 45
    assert found.phase is Phase.TAPER
    assert found.decision is None
    assert found.course_text.startswith("Taper step 2 of 2: 0.25 mg/kg/day")
    assert found.dose_today is not None
    assert found.dose_today.order.role is SteroidRole.TAPER_STEP
    assert found.dose_today.order.step == 2
    states = {v.task.item: v.state for v in found.tasks}
    assert states["task/liver-assessment/day28"] is TaskState.DONE
    assert states["task/lab-draw/day42"] is TaskState.RESULTED


def test_day_100_complete(fhir_server: str, read_only: dict[str, SyntheticPatient]) -> None:
    patient = read_only["zs-day-100-complete"]
    found = _follow(fhir_server, patient.patient_id).followup
    assert found.day == 100
    assert found.phase is Phase.COMPLETE
    assert found.course_text.startswith("Corticosteroid course: taper completed on")
    draws = [v for v in found.tasks if v.task.kind is ActivityKind.LAB_DRAW]
    # The last draw on the date 3 calendar months after infusion (2026-08-13 -> 2026-11-13).
    assert [v.task.day for v in draws] == [7, 14, 21, 28, 35, 42, 49, 56, 70, 84, 92]
    assert found.proposed == ()
    assert {v.state for v in draws} == {TaskState.DONE}
    assert all(v.task.outputs for v in draws)
    assert all(
        o.startswith(f"Observation/{patient.patient_id}-") for v in draws for o in v.task.outputs
    )


# Alerts ----------------------------------------------------------------------------------------


def test_acute_liver_injury(fhir_server: str, read_only: dict[str, SyntheticPatient]) -> None:
    patient = read_only["zs-day-15-liver-injury"]
    found = _follow(fhir_server, patient.patient_id).followup
    assert found.day == 15
    alert = found.alerts[0]
    assert alert.code is AlertCode.ACUTE_LIVER_INJURY
    assert alert.level is AlertLevel.URGENT
    assert alert.section == "5.1"
    assert "ALT 1020 U/L" in alert.message
    assert alert.message.count("ALT 1020 U/L") == 1
    assert "ALT or AST above 20 × ULN" in alert.criteria[0].rule
    assert "label section 5.1" in alert.source
    refs = {e.reference for e in alert.evidence}
    assert _obs(patient, LabTest.ALT, "d14") in refs
    assert _obs(patient, LabTest.BILIRUBIN_TOTAL, "d14") in refs


Post = tuple[LabTest, float]
ALERT_CASES: dict[str, tuple[tuple[Post, ...], dict[AlertCode, tuple[AlertLevel, str]]]] = {
    "thrombocytopenia": (
        ((LabTest.PLATELETS, 90),),
        {AlertCode.THROMBOCYTOPENIA: (AlertLevel.URGENT, "5.3")},
    ),
    "tma-creatinine": (
        ((LabTest.PLATELETS, 90), (LabTest.CREATININE, 0.40)),
        {
            AlertCode.THROMBOCYTOPENIA: (AlertLevel.URGENT, "5.3"),
            AlertCode.TMA_PATTERN: (AlertLevel.URGENT, "5.4"),
        },
    ),
    "tma-hemoglobin": (
        ((LabTest.PLATELETS, 90), (LabTest.HEMOGLOBIN, 9.2)),
        {
            AlertCode.THROMBOCYTOPENIA: (AlertLevel.URGENT, "5.3"),
            AlertCode.TMA_PATTERN: (AlertLevel.URGENT, "5.4"),
        },
    ),
    "creatinine-up-under-50-percent": (
        ((LabTest.PLATELETS, 90), (LabTest.CREATININE, 0.34)),
        {AlertCode.THROMBOCYTOPENIA: (AlertLevel.URGENT, "5.3")},
    ),
    "hemoglobin-down-under-2": (
        ((LabTest.PLATELETS, 90), (LabTest.HEMOGLOBIN, 9.6)),
        {AlertCode.THROMBOCYTOPENIA: (AlertLevel.URGENT, "5.3")},
    ),
    "creatinine-up-platelets-normal": (((LabTest.CREATININE, 0.60),), {}),
    "troponin-i": (
        ((LabTest.TROPONIN_I, 0.09),),
        {AlertCode.TROPONIN_I_ELEVATED: (AlertLevel.WARNING, "5.5")},
    ),
    "troponin-i-at-uln": (((LabTest.TROPONIN_I, 0.04),), {}),
}
"""Results posted on day 10 to a day-10 patient (baseline creatinine 0.24 mg/dL, hemoglobin
11.4 g/dL; ULN troponin I 0.04 ng/mL), and the alerts expected (code: level, section)."""


@pytest.mark.parametrize("case", list(ALERT_CASES))
def test_posted_results_raise_alerts(
    case: str, fhir_server: str, fresh: Callable[[str], SyntheticPatient]
) -> None:
    """Each alert names its level and section, and its evidence names the posted result."""
    posts, expected = ALERT_CASES[case]
    patient = fresh("zs-day-10")
    assert _follow(fhir_server, patient.patient_id).followup.alerts == ()
    posted = {test: _post_lab(fhir_server, patient, test, value, 10) for test, value in posts}
    alerts = {a.code: a for a in _follow(fhir_server, patient.patient_id).followup.alerts}
    assert {code: (a.level, a.section) for code, a in alerts.items()} == expected
    for code, alert in alerts.items():
        refs = {e.reference for e in alert.evidence}
        if code is AlertCode.TROPONIN_I_ELEVATED:
            assert refs == {posted[LabTest.TROPONIN_I]}
            assert "0.09 ng/mL" in alert.message
        elif code is AlertCode.THROMBOCYTOPENIA:
            assert posted[LabTest.PLATELETS] in refs
            assert _obs(patient, LabTest.PLATELETS, "b") in refs
            assert "(day 10)" in alert.message
            assert "x ULN" not in alert.message  # no multiple of an upper limit for platelets
        elif code is AlertCode.TMA_PATTERN:
            arm = LabTest.CREATININE if LabTest.CREATININE in posted else LabTest.HEMOGLOBIN
            assert {posted[LabTest.PLATELETS], posted[arm], _obs(patient, arm, "b")} <= refs
            assert "thrombotic microangiopathy" in alert.message
    urgent_first = [a.level for a in _follow(fhir_server, patient.patient_id).followup.alerts]
    assert urgent_first == sorted(urgent_first, key=list(AlertLevel).index)


# The day-30 decision: taper --------------------------------------------------------------------


@pytest.fixture(params=list(OrderMode), ids=lambda m: m.value)
def tapered(
    request: pytest.FixtureRequest, fhir_server: str, once: dict[tuple[str, ...], Any]
) -> tuple[SyntheticPatient, OrderMode, list[Any]]:
    """A fresh day-28 patient whose normal liver assessment was recorded (exam attested), once
    per server and order mode."""
    mode: OrderMode = request.param
    key = ("tapered", fhir_server, mode.value)
    if key not in once:
        patient = loaded(fhir_server, "zs-day-28")
        following = _follow(fhir_server, patient.patient_id, exam_normal=True)
        written = service.record_decision(FhirGateway(fhir_server), following, _confirmed(mode))
        once[key] = (patient, mode, written)
    return once[key]


def test_taper_orders_on_the_day_28_weight(
    fhir_server: str, tapered: tuple[SyntheticPatient, OrderMode, list[Any]]
) -> None:
    """Two taper steps, doses on the 6.1 kg weighed on day 28 (not the 5.4 kg of baseline)."""
    patient, mode, written = tapered
    orders = _by_item(fhir_server, "MedicationRequest", patient.patient_id)
    steps = {item: o for item, o in orders.items() if "/taper-" in item}
    assert sorted(steps) == [
        "medicationrequest/2026-11-21-taper/taper-1",
        "medicationrequest/2026-11-21-taper/taper-2",
    ]
    created = {w.reference for w in written if w.outcome is Outcome.CREATED}
    assert {f"MedicationRequest/{o['id']}" for o in steps.values()} <= created
    expected = [
        ("2026-11-22", "2026-12-05", 3.1, 1.0, "0.5 mg/kg/day for 6.1 kg"),
        ("2026-12-06", "2026-12-19", 1.5, 0.5, "0.25 mg/kg/day for 6.1 kg"),
    ]
    assert patient.infusion_date + dt.timedelta(days=29) == dt.date(2026, 11, 22)
    for (start, end, mg, ml, text), item in zip(expected, sorted(steps), strict=True):
        order = steps[item]
        assert (order["status"], order["intent"]) == (mode.status, mode.value)
        assert order["subject"] == {"reference": f"Patient/{patient.patient_id}"}
        assert order["requester"] == {"reference": USER}
        dosage = order["dosageInstruction"][0]
        assert dosage["timing"]["repeat"]["boundsPeriod"] == {"start": start, "end": end}
        doses = {d["type"]["coding"][0]["code"]: d["doseQuantity"] for d in dosage["doseAndRate"]}
        assert (doses["ordered"]["value"], doses["ordered"]["unit"]) == (mg, "mg")
        assert (doses["calculated"]["value"], doses["calculated"]["unit"]) == (ml, "mL")
        assert text in dosage["text"]
        assert order["meta"]["profile"] == [
            "https://zolgensma-smart.example/fhir/StructureDefinition/zolgensma-steroid-order"
        ]
    full = orders["medicationrequest/prednisolone"]
    assert full["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"]["end"] == "2026-11-21"


def test_taper_completes_the_liver_assessment(
    fhir_server: str, tapered: tuple[SyntheticPatient, OrderMode, list[Any]]
) -> None:
    patient, _, _ = tapered
    tasks = _by_item(fhir_server, "Task", patient.patient_id)
    check = tasks["task/liver-assessment/day28"]
    assert check["status"] == "completed"
    assert check["businessStatus"]["coding"] == [{"system": codes.APP_CODES, "code": "taper"}]
    assert check["executionPeriod"]["end"] == TODAY.isoformat()
    assert check["owner"] == {"reference": USER}
    outputs = {o["valueReference"]["reference"] for o in check["output"]}
    assert outputs == {
        _obs(patient, t, "d28")
        for t in (LabTest.ALT, LabTest.AST, LabTest.BILIRUBIN_TOTAL, LabTest.PT, LabTest.INR)
    }
    assert "unremarkable: taper" in check["note"][-1]["text"]
    assert "Exam normal (attested)" in check["note"][-1]["text"]
    draws = {i: t for i, t in tasks.items() if i.startswith("task/lab-draw/")}
    assert all(t["status"] != "cancelled" for t in draws.values())


def test_taper_updates_the_care_plan_with_provenance(
    fhir_server: str, tapered: tuple[SyntheticPatient, OrderMode, list[Any]]
) -> None:
    patient, _, written = tapered
    (care_plan,) = _own(fhir_server, "CarePlan", patient.patient_id)
    assert _versions(fhir_server, f"CarePlan/{care_plan['id']}") == 2
    activity = {a["reference"]["reference"] for a in care_plan["activity"]}
    orders = _by_item(fhir_server, "MedicationRequest", patient.patient_id)
    for item in ("2026-11-21-taper/taper-1", "2026-11-21-taper/taper-2"):
        assert f"MedicationRequest/{orders['medicationrequest/' + item]['id']}" in activity
    note = care_plan["note"][-1]["text"]
    assert note.startswith("Liver assessment on 2026-11-21: taper.")
    assert "Weight 6.1 kg on 2026-11-21" in note
    assert "was 5.4 mg" in note
    (provenance_ref,) = [w.reference for w in written if w.reference.startswith("Provenance/")]
    provenance = _get(fhir_server, provenance_ref)
    targets = {t["reference"] for t in provenance["target"]}
    assert {w.reference for w in written if not w.reference.startswith("Provenance/")} == targets
    assert provenance["activity"]["coding"][0]["code"] == "UPDATE"
    assert {"reference": USER} in [a["who"] for a in provenance["agent"]]


def test_taper_read_back(
    fhir_server: str, tapered: tuple[SyntheticPatient, OrderMode, list[Any]]
) -> None:
    """Recorded on day 28: full dose still today, decision gone; three days on, the taper."""
    patient, _, _ = tapered
    today = _follow(fhir_server, patient.patient_id, exam_normal=True).followup
    assert today.phase is Phase.FULL_DOSE
    assert today.decision is None
    assert today.next_change is not None
    assert today.next_change.date == dt.date(2026, 11, 22)
    assert today.next_change.order.role is SteroidRole.TAPER_STEP
    later = _follow(fhir_server, patient.patient_id, on=TODAY + dt.timedelta(days=3)).followup
    assert later.phase is Phase.TAPER
    assert later.decision is None
    assert later.course_text.startswith("Taper step 1 of 2: 0.5 mg/kg/day, day 3 of 14")
    assert later.dose_today is not None
    assert later.dose_today.order.mg_per_day == Decimal("3.1")
    assert _view(_follow(fhir_server, patient.patient_id), "task/liver-assessment/day28").state is (
        TaskState.DONE
    )


# The day-30 decision: continue with a consult --------------------------------------------------


@pytest.fixture
def continued(
    fhir_server: str, once: dict[tuple[str, ...], Any]
) -> tuple[SyntheticPatient, service.Following, list[Any]]:
    """A fresh day-28 patient with ALT 3 x ULN whose assessment was recorded (exam attested),
    once per server."""
    key = ("continued", fhir_server)
    if key not in once:
        patient = loaded(fhir_server, "zs-day-28-alt-3x")
        following = _follow(fhir_server, patient.patient_id, exam_normal=True)
        written = service.record_decision(FhirGateway(fhir_server), following, _confirmed())
        once[key] = (patient, following, written)
    return once[key]


def test_continue_decision_proposed(
    continued: tuple[SyntheticPatient, service.Following, list[Any]],
) -> None:
    _, following, _ = continued
    decision = following.followup.decision
    assert following.followup.phase is Phase.LIVER_ASSESSMENT_DUE
    assert decision is not None
    assert decision.branch is DecisionBranch.CONTINUE
    assert decision.writable
    assert decision.consult
    assert any(r.startswith("ALT 135 U/L = 3.00 x ULN") for r in decision.reasons)
    assert decision.weight is not None
    assert decision.weight.value == Decimal("5.4")


def test_continue_orders_one_mg_per_kg(
    fhir_server: str, continued: tuple[SyntheticPatient, service.Following, list[Any]]
) -> None:
    patient, _, _ = continued
    orders = _by_item(fhir_server, "MedicationRequest", patient.patient_id)
    assert not [i for i in orders if "/taper-" in i]
    order = orders["medicationrequest/2026-11-21-continue/continue"]
    assert (order["status"], order["intent"]) == ("active", "order")
    dosage = order["dosageInstruction"][0]
    assert dosage["timing"]["repeat"]["boundsPeriod"] == {
        "start": "2026-11-22",
        "end": "2026-12-19",
    }
    doses = {
        d["type"]["coding"][0]["code"]: d["doseQuantity"]["value"] for d in dosage["doseAndRate"]
    }
    assert doses == {"ordered": 5.4, "calculated": 1.8}
    assert "= 1 mg/kg/day for 5.4 kg" in dosage["text"]


def test_continue_consult_and_its_task(
    fhir_server: str, continued: tuple[SyntheticPatient, service.Following, list[Any]]
) -> None:
    patient, _, written = continued
    (consult,) = _own(fhir_server, "ServiceRequest", patient.patient_id)
    assert _item(consult) == "servicerequest/hepatology-consult"
    assert consult["priority"] == "urgent"
    assert {"system": codes.APP_CODES, "code": "hepatology-consult"} in consult["code"]["coding"]
    assert (consult["status"], consult["intent"]) == ("active", "order")
    (care_plan,) = _own(fhir_server, "CarePlan", patient.patient_id)
    assert consult["basedOn"] == [{"reference": f"CarePlan/{care_plan['id']}"}]
    assert "ALT 135 U/L" in consult["reasonCode"][0]["text"]
    reasons = {r["reference"] for r in consult["reasonReference"]}
    assert _obs(patient, LabTest.ALT, "d28") in reasons
    tasks = _by_item(fhir_server, "Task", patient.patient_id)
    task = tasks["task/consult/hepatology"]
    assert task["focus"] == {"reference": f"ServiceRequest/{consult['id']}"}
    assert task["status"] == "requested"
    assert task["priority"] == "urgent"
    assert task["code"]["coding"][0]["code"] == ActivityKind.CONSULT.value
    activity = {a["reference"]["reference"] for a in care_plan["activity"]}
    assert f"ServiceRequest/{consult['id']}" in activity
    assert f"Task/{task['id']}" in activity
    assert f"ServiceRequest/{consult['id']}" in {w.reference for w in written}
    check = tasks["task/liver-assessment/day28"]
    assert check["status"] == "completed"
    assert check["businessStatus"]["coding"] == [{"system": codes.APP_CODES, "code": "continue"}]
    assert "promptly consult" in check["note"][-1]["text"]


def test_continue_drops_liver_tests_from_the_later_draws(
    fhir_server: str, continued: tuple[SyntheticPatient, service.Following, list[Any]]
) -> None:
    """The day-70 and day-84 draws keep platelets (and troponin) but no liver tests: the next
    assessment replans them; the weekly liver draws while 1 mg/kg/day continues stay."""
    patient, _, _ = continued
    tasks = _by_item(fhir_server, "Task", patient.patient_id)

    def tests(item: str) -> set[str]:
        return {i["valueCodeableConcept"]["text"] for i in tasks[item].get("input", [])}

    assert tests("task/lab-draw/day70") == {"platelets"}
    assert tests("task/lab-draw/day84") == {"platelets", "troponin I"}
    for item in ("task/lab-draw/day70", "task/lab-draw/day84"):
        assert tasks[item]["status"] == "requested"
        assert _versions(fhir_server, f"Task/{tasks[item]['id']}") == 2
        headline = tasks[item]["description"].split(" (")[0]
        assert not [t for t in LIVER_TESTS if t in headline], headline
    for day in (35, 42, 49, 56):
        assert tests(f"task/lab-draw/day{day}") >= LIVER_TESTS, day


def test_continue_care_plan_note_states_the_consult(
    fhir_server: str, continued: tuple[SyntheticPatient, service.Following, list[Any]]
) -> None:
    patient, _, _ = continued
    (care_plan,) = _own(fhir_server, "CarePlan", patient.patient_id)
    note = care_plan["note"][-1]["text"]
    assert note.startswith("Liver assessment on 2026-11-21: continue.")
    assert "Weight 5.4 kg on 2026-11-21" in note
    assert "consult" in note.lower()


def test_taper_after_continuation_starts_when_unremarkable(
    fhir_server: str, fresh: Callable[[str], SyntheticPatient]
) -> None:
    """Continue on day 28 (ALT 3 x ULN); the day-35 panel is normal: the taper starts on day
    36 and the running continuation is ended on day 35, in the same transaction."""
    patient = fresh("zs-day-28-alt-3x")
    pid = patient.patient_id
    gateway = FhirGateway(fhir_server)
    service.record_decision(gateway, _follow(fhir_server, pid, exam_normal=True), _confirmed())
    day35 = patient.infusion_date + dt.timedelta(days=35)
    for test, value in ((LabTest.ALT, 30), (LabTest.AST, 40)):
        _post_lab(fhir_server, patient, test, value, 35)
    for test in (LabTest.BILIRUBIN_TOTAL, LabTest.PT, LabTest.INR):
        _post_lab(fhir_server, patient, test, LABS[test].normal, 35)
    following = _follow(fhir_server, pid, on=day35, exam_normal=True)
    assert following.followup.phase is Phase.LIVER_ASSESSMENT_DUE
    decision = following.followup.decision
    assert decision is not None
    assert decision.branch is DecisionBranch.TAPER
    assert decision.writable
    assert decision.steps[0].start == day35 + dt.timedelta(days=1)
    assert decision.end_order is not None
    assert decision.end_order.role is SteroidRole.CONTINUATION
    recorded = dt.datetime.combine(day35, dt.time(10), tzinfo=NOW.tzinfo)
    service.record_decision(
        gateway, following, Confirmed(recorded=recorded, fhir_user=USER, order_mode=OrderMode.ORDER)
    )
    orders = _by_item(fhir_server, "MedicationRequest", pid)
    continuation = orders["medicationrequest/2026-11-21-continue/continue"]
    bounds = continuation["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"]
    assert bounds["end"] == day35.isoformat()
    later = _follow(fhir_server, pid, on=day35 + dt.timedelta(days=1)).followup
    assert later.phase is Phase.TAPER


# Idempotency -----------------------------------------------------------------------------------


@pytest.mark.parametrize("pid", ["zs-day-28", "zs-day-28-alt-3x"])
def test_confirming_again_writes_nothing(
    pid: str, fhir_server: str, fresh: Callable[[str], SyntheticPatient]
) -> None:
    """A second confirmation on a fresh read: no decision is due, nothing is written."""
    patient = fresh(pid)
    gateway = FhirGateway(fhir_server)
    following = _follow(fhir_server, patient.patient_id, exam_normal=True)
    service.record_decision(gateway, following, _confirmed())
    before = _snapshot(fhir_server, patient.patient_id)
    assert _counts(before)["Provenance"] >= 2
    again = _follow(fhir_server, patient.patient_id, exam_normal=True)
    assert again.followup.decision is None
    with pytest.raises(WriteBlocked, match="no liver assessment decision is due"):
        service.record_decision(gateway, again, _confirmed())
    assert _snapshot(fhir_server, patient.patient_id) == before


@pytest.mark.parametrize("pid", ["zs-day-28", "zs-day-28-alt-3x"])
def test_same_decision_bundle_sent_twice(
    pid: str, fhir_server: str, fresh: Callable[[str], SyntheticPatient]
) -> None:
    """The very same transaction re-sent (a retried request): no duplicate of anything."""
    patient = fresh(pid)
    gateway = FhirGateway(fhir_server)
    following = _follow(fhir_server, patient.patient_id, exam_normal=True)
    bundle = service.decision_transaction(following, _confirmed())
    first = send(gateway, bundle)
    assert Outcome.CREATED in {w.outcome for w in first}
    after_first = _snapshot(fhir_server, patient.patient_id)
    try:
        second = send(gateway, bundle)
    except WriteBackError as exc:  # an atomic server refuses the stale versions whole
        assert "412" in str(exc) or "409" in str(exc), exc
        assert _snapshot(fhir_server, patient.patient_id) == after_first
    except WriteIncomplete as exc:  # the look-up finds the creates; the stale updates fail
        report = exc.report
        assert report.state is WriteState.NOTHING
        assert {w.outcome for w in report.written} == {Outcome.EXISTING, Outcome.FAILED}
        assert all(w.detail.startswith(("409", "412")) for w in report.of(Outcome.FAILED))
        assert _snapshot(fhir_server, patient.patient_id) == after_first
    else:
        assert Outcome.CREATED not in {w.outcome for w in second}
        assert _counts(_snapshot(fhir_server, patient.patient_id)) == _counts(after_first)


# Tasks -----------------------------------------------------------------------------------------


def test_complete_tasks_by_their_results(
    fhir_server: str, fresh: Callable[[str], SyntheticPatient]
) -> None:
    """Day 10: the day-7 draw is completed with its results; again, nothing to update."""
    patient = fresh("zs-day-10")
    pid = patient.patient_id
    gateway = FhirGateway(fhir_server)
    following = _follow(fhir_server, pid)
    view = _view(following, "task/lab-draw/day7")
    assert view.state is TaskState.RESULTED
    assert not view.late
    written = service.complete_tasks(gateway, following, _confirmed())
    assert [(w.reference.split("/")[0], w.outcome) for w in written] == [
        ("Task", Outcome.UPDATED),
        ("Provenance", Outcome.CREATED),
    ]
    tasks = _by_item(fhir_server, "Task", pid)
    task = tasks["task/lab-draw/day7"]
    assert written[0].reference == f"Task/{task['id']}"
    assert task["status"] == "completed"
    assert task["executionPeriod"]["end"] == "2026-11-18"
    assert {o["valueReference"]["reference"] for o in task["output"]} == {
        _obs(patient, test, "d7") for test in view.task.tests
    }
    assert task["note"][-1]["text"] == "Completed by the results dated 2026-11-18."
    assert tasks["task/vigilance/day0"]["status"] == "requested"
    before = _snapshot(fhir_server, pid)
    again = _follow(fhir_server, pid)
    assert _view(again, "task/lab-draw/day7").state is TaskState.DONE
    with pytest.raises(WriteBlocked, match="nothing to update"):
        service.complete_tasks(gateway, again, _confirmed())
    assert _snapshot(fhir_server, pid) == before


def _retract(base: str, reference: str, how: str) -> None:
    """Remove a result from the chart: DELETE, or mark it entered-in-error."""
    if how == "delete":
        status, _ = fhirserver.http_json("DELETE", f"{base}/{reference}")
        assert status in (200, 204)
        return
    resource = _get(base, reference)
    resource["status"] = "entered-in-error"
    status, _ = fhirserver.http_json("PUT", f"{base}/{reference}", resource)
    assert status == 200


@pytest.mark.parametrize("how", ["delete", "entered-in-error"])
def test_late_result_completes_an_overdue_task(
    how: str, fhir_server: str, fresh: Callable[[str], SyntheticPatient]
) -> None:
    """No day-7 platelets: the day-7 draw (window days 6-8) is overdue on day 10; a final count
    dated day 10 results it late, and completing it says so and references that count."""
    patient = fresh("zs-day-10")
    pid = patient.patient_id
    gateway = FhirGateway(fhir_server)
    _retract(fhir_server, _obs(patient, LabTest.PLATELETS, "d7"), how)
    view = _view(_follow(fhir_server, pid), "task/lab-draw/day7")
    assert view.state is TaskState.OVERDUE
    assert view.missing == (LabTest.PLATELETS,)
    posted = _post_lab(fhir_server, patient, LabTest.PLATELETS, 305, 10)
    following = _follow(fhir_server, pid)
    view = _view(following, "task/lab-draw/day7")
    assert view.state is TaskState.RESULTED
    assert view.late
    assert posted in {m.evidence.reference for m in view.matches}
    service.complete_tasks(gateway, following, _confirmed())
    task = _by_item(fhir_server, "Task", pid)["task/lab-draw/day7"]
    assert task["status"] == "completed"
    outputs = {o["valueReference"]["reference"] for o in task["output"]}
    assert posted in outputs
    assert _obs(patient, LabTest.PLATELETS, "d7") not in outputs
    assert _obs(patient, LabTest.ALT, "d7") in outputs
    assert task["executionPeriod"]["end"] == TODAY.isoformat()
    note = task["note"][-1]["text"]
    assert "2026-11-18, 2026-11-21" in note
    assert "Late: drawn after the window closed on 2026-11-19." in note


# The command line ------------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - this interpreter, our own module
        [sys.executable, "-m", "smart_app", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_followup_json(fhir_server: str, read_only: dict[str, SyntheticPatient]) -> None:
    pid = read_only["zs-day-10"].patient_id
    answer = _cli(
        "followup", "--fhir-base", fhir_server, "--patient", pid, "--on", "2026-11-21",
        "--format", "json",
    )  # fmt: skip
    assert answer.returncode == 0, answer.stderr
    data = json.loads(answer.stdout)
    assert {"day", "phase", "tasks", "alerts", "decision"} <= set(data)
    assert (data["day"], data["phase"], data["alerts"], data["decision"]) == (
        10,
        "steroid-full-dose",
        [],
        None,
    )
    for group in ("due", "overdue", "done"):
        assert isinstance(data["tasks"][group], list), group
    assert {t["item"] for t in data["tasks"]["done"]} == {
        "task/baseline/day-1",
        "task/counseling/day-1",
    }
    assert [t["item"] for t in data["tasks"]["resulted"]] == ["task/lab-draw/day7"]


def test_cli_followup_decision_and_alerts(
    fhir_server: str,
    read_only: dict[str, SyntheticPatient],
    capsys: pytest.CaptureFixture[str],
) -> None:
    day28 = read_only["zs-day-28"].patient_id
    injured = read_only["zs-day-15-liver-injury"].patient_id
    common = ["--fhir-base", fhir_server, "--on", "2026-11-21", "--format", "json"]
    assert cli.main(["followup", "--patient", day28, *common, "--exam-normal"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["phase"] == "liver-assessment-due"
    assert (data["decision"]["branch"], data["decision"]["writable"]) == ("taper", True)
    assert cli.main(["followup", "--patient", injured, *common]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(a["code"], a["level"], a["section"]) for a in data["alerts"]] == [
        ("acute-liver-injury", "urgent", "5.1"),
        ("liver-tests-worsening", "urgent", "5.1"),
    ]


def test_cli_followup_unknown_patient(fhir_server: str) -> None:
    nobody = f"zs-nobody-{uuid.uuid4().hex[:8]}"
    answer = _cli("followup", "--fhir-base", fhir_server, "--patient", nobody, "--format", "json")
    assert answer.returncode == cli.EXIT_SERVER == 3
    assert answer.stdout == ""
    assert "Traceback" not in answer.stderr
    assert f"Patient/{nobody}" in answer.stderr
    assert "not found (404)" in answer.stderr
    assert len(answer.stderr.strip().splitlines()) == 1


def test_cli_followup_patient_without_plan(
    fhir_server: str, fresh: Callable[[str], SyntheticPatient], capsys: pytest.CaptureFixture[str]
) -> None:
    """A patient still being planned has no plan to follow: a clear message, a failure code."""
    patient = fresh("zs-eligible-4-2kg")
    code = cli.main(["followup", "--fhir-base", fhir_server, "--patient", patient.patient_id])
    out, err = capsys.readouterr()
    assert code in (cli.EXIT_INPUT, cli.EXIT_NOT_WRITTEN)
    assert out == ""
    assert f"Patient/{patient.patient_id} has no active ZOLGENSMA plan" in err
    assert "Traceback" not in err
