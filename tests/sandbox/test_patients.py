"""The sandbox's synthetic patients: each plans to its expected status, on any `today`."""

from __future__ import annotations

import ast
import datetime as dt
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from smart_app.fhir.read import facts_from_bundle, parse_bundle_json
from smart_app.rules.model import FindingCode, LabTest, PatientFacts, Plan, Status
from smart_app.rules.monitoring import lab_draws
from smart_app.rules.plan import build_plan
from smart_app.rules.policy import DEFAULT_POLICY
from smart_app.sandbox import patients as sandbox
from smart_app.sandbox.patients import SyntheticPatient, synthetic_patients, transaction_bundle

TODAYS = (dt.date(2026, 11, 21), dt.date(2027, 2, 28), dt.date(2028, 2, 29))
ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
DAY = dt.timedelta(days=1)

REQUIRED_CODES = {
    FindingCode.AGE_NOT_UNDER_2,
    FindingCode.WEIGHT_OUTSIDE_LABEL_RANGE,
    FindingCode.PRIOR_ONASEMNOGENE,
    FindingCode.PRETERM_BEFORE_TERM_AGE,
    FindingCode.ANTI_AAV9_TITER_ELEVATED,
    FindingCode.ACTIVE_INFECTION,
    FindingCode.BIRTH_DATE_MISSING,
    FindingCode.WEIGHT_MISSING,
    FindingCode.WEIGHT_STALE,
    FindingCode.GESTATIONAL_AGE_MISSING,
    FindingCode.ANTI_AAV9_TITER_MISSING,
    FindingCode.ANTI_AAV9_TITER_AMBIGUOUS,
    FindingCode.BASELINE_LAB_MISSING,
    FindingCode.SMN1_BIALLELIC_NOT_CONFIRMED,
    FindingCode.LIVER_FUNCTION_ELEVATED,
    FindingCode.WEIGHT_BETWEEN_BANDS,
}
"""Every scenario the brief asks for has a patient whose expected findings include it."""


def read(resources: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> PatientFacts:
    """Serialise a collection Bundle and read it the way the CLI does (exact decimals)."""
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in resources],
    }
    return facts_from_bundle(parse_bundle_json(json.dumps(bundle)))


def evaluated_on(patient: SyntheticPatient, today: dt.date) -> dt.date:
    """Planning patients are evaluated today; patients on a plan the day before infusion."""
    return today if patient.in_plan_day is None else patient.infusion_date - DAY


def plan_of(patient: SyntheticPatient, today: dt.date) -> Plan:
    """The plan the rules build for a patient on its planning date."""
    return build_plan(
        read(patient.resources),
        on=evaluated_on(patient, today),
        infusion_date=patient.infusion_date,
    )


CASES = [(today, p) for today in TODAYS for p in synthetic_patients(today=today)]


@pytest.mark.parametrize(("today", "patient"), CASES, ids=[f"{t}-{p.patient_id}" for t, p in CASES])
def test_plan_has_expected_status_and_findings(today: dt.date, patient: SyntheticPatient) -> None:
    plan = plan_of(patient, today)
    assert plan.eligibility.status is patient.expected_status, plan.eligibility.findings
    assert patient.expected_codes <= plan.eligibility.codes()
    assert plan.patient_id == patient.patient_id


@pytest.mark.parametrize("today", TODAYS)
def test_dates_relative_to_today(today: dt.date) -> None:
    for p in synthetic_patients(today=today):
        if p.in_plan_day is None:
            assert 1 <= (p.infusion_date - today).days <= 14, p.patient_id
        else:
            assert p.in_plan_day == (today - p.infusion_date).days > 0, p.patient_id
            assert p.expected_status is Status.ELIGIBLE, p.patient_id


@pytest.mark.parametrize("today", TODAYS)
def test_nothing_is_dated_after_today(today: dt.date) -> None:
    keys = ("effectiveDateTime", "onsetDateTime", "recordedDate", "birthDate")
    for p in synthetic_patients(today=today):
        for r in p.resources:
            for key in keys:
                if key in r:
                    assert dt.date.fromisoformat(r[key][:10]) <= today, (p.patient_id, r["id"])


def test_at_least_ten_patients_with_unique_ids_and_names() -> None:
    patients = synthetic_patients(today=TODAYS[0])
    assert len(patients) >= 10
    assert len({p.patient_id for p in patients}) == len(patients)
    assert len({p.name for p in patients}) == len(patients)
    resource_ids = [f"{r['resourceType']}/{r['id']}" for p in patients for r in p.resources]
    assert len(set(resource_ids)) == len(resource_ids)
    for p in patients:
        assert p.scenario and "\n" not in p.scenario
        assert p.resources[0]["resourceType"] == "Patient"
        assert p.resources[0]["id"] == p.patient_id
        for r in p.resources:
            assert ID.match(r["id"]), r["id"]
            assert r["id"].startswith(p.patient_id)
            subject = r.get("subject")
            if subject is not None:
                assert subject == {"reference": f"Patient/{p.patient_id}"}


def test_same_today_same_patients() -> None:
    assert synthetic_patients(today=TODAYS[1]) == synthetic_patients(today=TODAYS[1])


def test_every_required_scenario_is_present() -> None:
    patients = synthetic_patients(today=TODAYS[0])
    covered = set().union(*(p.expected_codes for p in patients))
    assert covered >= REQUIRED_CODES
    statuses = {p.expected_status for p in patients if p.in_plan_day is None}
    assert statuses == set(Status)
    assert len([p for p in patients if p.in_plan_day is not None]) >= 6


@pytest.mark.parametrize("today", TODAYS)
def test_eligible_weights_cover_band_edge_gap_and_heavier_infant(today: dt.date) -> None:
    doses = [
        plan.dose
        for p in synthetic_patients(today=today)
        if p.in_plan_day is None and p.expected_status is Status.ELIGIBLE
        for plan in [plan_of(p, today)]
    ]
    assert all(d is not None for d in doses)
    weights = [d.weight_kg for d in doses if d is not None]
    edges = [d for d in doses if d and d.weight_kg in (d.kit.band_low_kg, d.kit.band_high_kg)]
    gaps = [d for d in doses if d and not d.kit.band_low_kg <= d.weight_kg <= d.kit.band_high_kg]
    assert edges, weights
    assert gaps, weights
    assert all(g.band_weight_kg == g.kit.band_low_kg for g in gaps)
    assert any(Decimal(10) <= w <= Decimal(12) for w in weights), weights


@pytest.mark.parametrize("today", TODAYS)
def test_in_plan_patients_have_every_draw_due_so_far(today: dt.date) -> None:
    for p in synthetic_patients(today=today):
        if p.in_plan_day is None:
            continue
        facts = read(p.resources)
        drawn = {(lab.test, lab.effective) for lab in facts.labs}
        due = [d for d in lab_draws(p.infusion_date, policy=DEFAULT_POLICY) if d.date <= today]
        assert due, p.patient_id
        for draw in due:
            for test in draw.tests:
                assert (test, draw.date) in drawn, (p.patient_id, draw.day, test)
        assert all(lab.reported_uln is not None for lab in facts.labs), p.patient_id


def _multiple_of_uln(facts: PatientFacts, test: LabTest, on: dt.date) -> Decimal:
    """value / reported ULN of the result of `test` drawn on `on`."""
    (result,) = [r for r in facts.labs_for(test) if r.effective == on]
    assert result.reported_uln is not None
    return result.value / result.reported_uln


def _patient(today: dt.date, patient_id: str) -> SyntheticPatient:
    """One patient by id."""
    return next(p for p in synthetic_patients(today=today) if p.patient_id == patient_id)


@pytest.mark.parametrize("today", TODAYS)
def test_follow_up_liver_patterns(today: dt.date) -> None:
    alt3 = _patient(today, "zs-day-28-alt-3x")
    day28 = alt3.infusion_date + 28 * DAY
    assert alt3.in_plan_day == 28
    assert _multiple_of_uln(read(alt3.resources), LabTest.ALT, day28) == 3
    injury = _patient(today, "zs-day-15-liver-injury")
    day14 = injury.infusion_date + 14 * DAY
    facts = read(injury.resources)
    assert _multiple_of_uln(facts, LabTest.ALT, day14) > 20
    assert _multiple_of_uln(facts, LabTest.BILIRUBIN_TOTAL, day14) > 2
    plain = [p for p in synthetic_patients(today=today) if p.in_plan_day is not None]
    assert sorted(p.in_plan_day or 0 for p in plain) == [10, 15, 28, 28, 45, 100]


def test_every_resource_is_valid_r4b() -> None:
    for today in TODAYS:
        for p in synthetic_patients(today=today):
            for r in p.resources:
                get_fhir_model_class(r["resourceType"]).model_validate(r)


def test_transaction_bundle_loads_everything_with_puts() -> None:
    patients = synthetic_patients(today=TODAYS[2])
    bundle = transaction_bundle(patients)
    get_fhir_model_class("Bundle").model_validate(bundle)
    assert bundle["type"] == "transaction"
    resources = [r for p in patients for r in p.resources]
    assert len(bundle["entry"]) == len(resources)
    assert [e["resource"] for e in bundle["entry"]] == resources
    for entry in bundle["entry"]:
        r = entry["resource"]
        assert entry["request"] == {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}
        assert entry["fullUrl"].startswith("urn:uuid:")
    assert len({e["fullUrl"] for e in bundle["entry"]}) == len(resources)
    assert transaction_bundle(patients) == bundle
    assert transaction_bundle([]) == {"resourceType": "Bundle", "type": "transaction", "entry": []}


def test_module_never_reads_the_clock() -> None:
    tree = ast.parse(Path(sandbox.__file__).read_text(encoding="utf-8"))
    clock = {"today", "now", "utcnow"}
    assert not [n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr in clock]


def test_own_administration_after_evaluation_date_is_not_yet_known() -> None:
    today = TODAYS[0]
    patient = _patient(today, "zs-day-10")
    administration = {
        "resourceType": "MedicationAdministration",
        "id": "zs-day-10-zolgensma",
        "status": "completed",
        "medicationCodeableConcept": {"text": "ZOLGENSMA"},
        "subject": {"reference": "Patient/zs-day-10"},
        "effectiveDateTime": f"{patient.infusion_date.isoformat()}T10:00:00-05:00",
    }
    facts = read([*patient.resources, administration])
    plan = build_plan(facts, on=patient.infusion_date - DAY, infusion_date=patient.infusion_date)
    assert plan.eligibility.status is Status.ELIGIBLE
