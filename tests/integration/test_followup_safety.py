"""Follow-up safety against the real local FHIR server: worsening liver tests (5.1), the day-30
consult on any liver test at or above 2 x ULN (2.1), the warning before the full-dose order
ends and a late decision that leaves no day uncovered (2.1).

Each test takes a fresh copy of a sandbox patient (its plan written and earlier launches replayed
as `make demo` does), posts or corrects results over HTTP, and reads the follow-up back.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from smart_app import service
from smart_app.fhir.gateway import FhirGateway
from smart_app.rules import label
from smart_app.rules.model import AlertCode, AlertLevel, DecisionBranch, FollowUpCode, LabTest
from smart_app.sandbox.patients import SyntheticPatient
from tests import fhirserver
from tests.integration.test_followup import (
    _by_item,
    _confirmed,
    _follow,
    _get,
    _obs,
    _post_lab,
    loaded,
)
from tests.smartsandbox import TODAY

pytestmark = pytest.mark.integration

WORSE = AlertCode.LIVER_TESTS_WORSENING
ACUTE = AlertCode.ACUTE_LIVER_INJURY


@pytest.fixture
def fresh(fhir_server: str) -> Callable[[str], SyntheticPatient]:
    """A factory of fresh sandbox patients on the server."""
    return lambda pid: loaded(fhir_server, pid)


def _alerts(base: str, patient: SyntheticPatient) -> dict[AlertCode, Any]:
    return {a.code: a for a in _follow(base, patient.patient_id).followup.alerts}


def _correct(base: str, reference: str, value: float) -> None:
    """Replace the value of one of the sandbox's results, as a corrected result."""
    obs = _get(base, reference)
    obs["status"] = "corrected"
    obs["valueQuantity"]["value"] = value
    status, body = fhirserver.http_json("PUT", f"{base}/{reference}", obs)
    assert status == 200, body


# 1. Worsening liver tests (5.1) ---------------------------------------------------------------


def test_aminotransferases_ten_times_uln_raise_an_urgent_worsening_alert(
    fhir_server: str, fresh: Callable[[str], SyntheticPatient]
) -> None:
    patient = fresh("zs-day-10")
    assert _alerts(fhir_server, patient) == {}
    alt = _post_lab(fhir_server, patient, LabTest.ALT, 450, 10)
    ast = _post_lab(fhir_server, patient, LabTest.AST, 600, 10)
    alerts = _alerts(fhir_server, patient)
    assert set(alerts) == {WORSE}
    alert = alerts[WORSE]
    assert alert.level is AlertLevel.URGENT
    assert alert.section == "5.1"
    assert "ALT 450 U/L = 10.00 x ULN" in alert.message
    assert "AST 600 U/L = 10.00 x ULN" in alert.message
    refs = [e.reference for e in alert.evidence]
    assert alt in refs and ast in refs
    assert _obs(patient, LabTest.ALT, "b") in refs  # the pre-infusion value it is compared with
    assert alert.advice[0] == "Promptly assess and closely monitor."


def test_bilirubin_alone_at_2_5x_uln_is_urgent(
    fhir_server: str, fresh: Callable[[str], SyntheticPatient]
) -> None:
    patient = fresh("zs-day-10")
    posted = _post_lab(fhir_server, patient, LabTest.BILIRUBIN_TOTAL, 3.0, 10)
    alerts = _alerts(fhir_server, patient)
    assert set(alerts) == {WORSE}
    assert alerts[WORSE].level is AlertLevel.URGENT
    assert "total bilirubin 3.0 mg/dL = 2.50 x ULN" in alerts[WORSE].message
    assert posted in {e.reference for e in alerts[WORSE].evidence}


def test_an_inr_that_stays_high_keeps_its_alert(
    fhir_server: str, fresh: Callable[[str], SyntheticPatient]
) -> None:
    patient = fresh("zs-day-10")
    _post_lab(fhir_server, patient, LabTest.INR, 1.8, 8)
    _post_lab(fhir_server, patient, LabTest.INR, 1.9, 10)
    alerts = _alerts(fhir_server, patient)
    assert set(alerts) == {WORSE}  # up only 0.1 on day 8: not the acute pattern's 'rising'
    assert alerts[WORSE].level is AlertLevel.URGENT
    assert "INR 1.9 = 1.46 x ULN" in alerts[WORSE].message
    assert "up 0.1 from 1.8 on 2026-11-19 (day 8)" in alerts[WORSE].message


def test_a_value_at_uln_raises_nothing(
    fhir_server: str, fresh: Callable[[str], SyntheticPatient]
) -> None:
    patient = fresh("zs-day-10")
    _post_lab(fhir_server, patient, LabTest.ALT, 45, 10)  # exactly the reported ULN
    _post_lab(fhir_server, patient, LabTest.PT, 14.5, 10)
    assert _alerts(fhir_server, patient) == {}


# 2. The consult follows any liver test at or above 2 x ULN (2.1) -------------------------------


def test_bilirubin_2_5x_at_day_28_continues_with_a_consult_written_once(
    fhir_server: str, fresh: Callable[[str], SyntheticPatient]
) -> None:
    patient = fresh("zs-day-28")
    pid = patient.patient_id
    _correct(fhir_server, _obs(patient, LabTest.BILIRUBIN_TOTAL, "d28"), 3.0)
    following = _follow(fhir_server, pid, exam_normal=True)
    decision = following.followup.decision
    assert decision is not None
    assert decision.branch is DecisionBranch.CONTINUE
    assert decision.consult is True
    assert [r.test for r in decision.consult_results] == [LabTest.BILIRUBIN_TOTAL]
    service.record_decision(FhirGateway(fhir_server), following, _confirmed())
    requests = _by_item(fhir_server, "ServiceRequest", pid)
    consult = requests["servicerequest/hepatology-consult"]
    assert consult["priority"] == "urgent"
    reasons = {r["reference"] for r in consult.get("reasonReference", [])}
    assert _obs(patient, LabTest.BILIRUBIN_TOTAL, "d28") in reasons
    (plan,) = [
        c for c in fhirserver.search(fhir_server, f"CarePlan?patient={pid}") if c.get("note")
    ]
    assert label.CONSULT_RULE in plan["note"][-1]["text"]
    orders = _by_item(fhir_server, "MedicationRequest", pid)
    (continuation,) = [o for item, o in orders.items() if item.endswith("/continue")]
    assert label.CONSULT_RULE in continuation["dosageInstruction"][0]["text"]
    task = _by_item(fhir_server, "Task", pid)["task/liver-assessment/day28"]
    assert any(label.CONSULT_RULE in note["text"] for note in task["note"])
    again = _follow(fhir_server, pid, exam_normal=True).followup.decision
    assert again is None or again.consult is False  # the consult is not asked for twice


def test_abnormal_below_2x_continues_and_shows_the_manufacturers_advice(
    fhir_server: str, fresh: Callable[[str], SyntheticPatient]
) -> None:
    patient = fresh("zs-day-28")
    _correct(fhir_server, _obs(patient, LabTest.INR, "d28"), 1.5)  # ULN 1.3
    decision = _follow(fhir_server, patient.patient_id, exam_normal=True).followup.decision
    assert decision is not None
    assert decision.branch is DecisionBranch.CONTINUE
    assert decision.consult is False
    assert decision.manufacturer_advice == label.MANUFACTURER_CONSULT_ADVICE


# 3. Never an uncovered steroid day (2.1) -------------------------------------------------------


def test_the_full_dose_order_says_to_continue_until_the_assessment(
    fhir_server: str, fresh: Callable[[str], SyntheticPatient]
) -> None:
    patient = fresh("zs-day-10")
    order = _by_item(fhir_server, "MedicationRequest", patient.patient_id)[
        "medicationrequest/prednisolone"
    ]
    assert label.FULL_DOSE_UNTIL_DECISION in order["dosageInstruction"][0]["text"]


@pytest.mark.parametrize(("days_before", "warned"), [(3, False), (2, True), (0, True)])
def test_warning_before_the_full_dose_order_ends(
    days_before: int, warned: bool, fhir_server: str, fresh: Callable[[str], SyntheticPatient]
) -> None:
    patient = fresh("zs-day-28")  # full dose ordered through day 28 = today, no decision yet
    on = TODAY - dt.timedelta(days=days_before)
    found = _follow(fhir_server, patient.patient_id, on=on).followup
    codes = {f.code for f in found.findings}
    assert (FollowUpCode.STEROID_ORDER_ENDING in codes) is warned
    if warned:
        (finding,) = [f for f in found.findings if f.code is FollowUpCode.STEROID_ORDER_ENDING]
        assert (
            "institution default: the app warns 2 days before the last ordered full-dose "
            "prednisolone day"
        ) in finding.message
        last = patient.infusion_date + dt.timedelta(days=28)
        assert f"ends on {last.day} {last:%b} {last.year}" in finding.message


def test_a_late_taper_starts_on_the_first_uncovered_day(
    fhir_server: str, fresh: Callable[[str], SyntheticPatient]
) -> None:
    patient = fresh("zs-day-28")
    pid = patient.patient_id
    late = TODAY + dt.timedelta(days=3)
    following = _follow(fhir_server, pid, on=late, exam_normal=True)
    decision = following.followup.decision
    assert decision is not None
    assert decision.branch is DecisionBranch.TAPER
    assert FollowUpCode.DECISION_AFTER_FULL_DOSE in {f.code for f in decision.findings}
    service.record_decision(FhirGateway(fhir_server), following, _confirmed())
    orders = _by_item(fhir_server, "MedicationRequest", pid)
    first = next(o for item, o in orders.items() if item.endswith("/taper-1"))
    bounds = first["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"]
    assert bounds["start"] == str(patient.infusion_date + dt.timedelta(days=29))
    full = orders["medicationrequest/prednisolone"]
    assert full["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"]["end"] == str(
        patient.infusion_date + dt.timedelta(days=28)
    )
    after = _follow(fhir_server, pid, on=late).followup
    assert FollowUpCode.NO_STEROID_ORDER not in {f.code for f in after.findings}
    assert after.dose_today is not None
