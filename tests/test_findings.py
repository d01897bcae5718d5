"""One FHIR R4 fixture per finding code, each a minimal change to the eligible example.

Every fixture in tests/fixtures/bundles/ is examples/infant-eligible.json with its own Patient
id (``fx-<file name>``) and the smallest realistic change that raises exactly one finding. All
are evaluated on 2026-11-20 for an infusion on 2026-11-24, except where DATES says otherwise.
The codes only a read from a server can raise (READ_ONLY) are raised here from the eligible
example with the read notes a server read would carry.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from smart_app.fhir.read import ReadNotes, facts_from_bundle, parse_bundle_json
from smart_app.rules.labs import fallback_table
from smart_app.rules.model import Finding, FindingCode, LabTest, Plan, Severity, Status
from smart_app.rules.plan import build_plan
from smart_app.rules.policy import DEFAULT_POLICY

TESTS = Path(__file__).resolve().parent
BUNDLES = TESTS / "fixtures" / "bundles"
BASE_EXAMPLE = TESTS.parent / "examples" / "infant-eligible.json"
BASE_PATIENT_ID = "infant-eligible"

ON = dt.date(2026, 11, 20)
INFUSION = dt.date(2026, 11, 24)
DATES: dict[str, tuple[dt.date, dt.date]] = {
    # The steroid start depends on the dates, not the data: evaluate on the infusion day.
    FindingCode.STEROID_START_PASSED.value: (INFUSION, INFUSION),
}
"""(on, infusion date) per fixture where the defaults (ON, INFUSION) do not apply."""

EXPECTED_SEVERITY: dict[FindingCode, Severity] = {
    FindingCode.AGE_NOT_UNDER_2: Severity.NOT_ELIGIBLE,
    FindingCode.WEIGHT_OUTSIDE_LABEL_RANGE: Severity.NOT_ELIGIBLE,
    FindingCode.PRIOR_ONASEMNOGENE: Severity.NOT_ELIGIBLE,
    FindingCode.PRETERM_BEFORE_TERM_AGE: Severity.DEFERRED,
    FindingCode.ANTI_AAV9_TITER_ELEVATED: Severity.DEFERRED,
    FindingCode.ACTIVE_INFECTION: Severity.DEFERRED,
    FindingCode.BIRTH_DATE_MISSING: Severity.INCOMPLETE,
    FindingCode.WEIGHT_MISSING: Severity.INCOMPLETE,
    FindingCode.WEIGHT_STALE: Severity.INCOMPLETE,
    FindingCode.GESTATIONAL_AGE_MISSING: Severity.INCOMPLETE,
    FindingCode.ANTI_AAV9_TITER_MISSING: Severity.INCOMPLETE,
    FindingCode.ANTI_AAV9_TITER_AMBIGUOUS: Severity.INCOMPLETE,
    FindingCode.BASELINE_LAB_MISSING: Severity.INCOMPLETE,
    FindingCode.SMN1_BIALLELIC_NOT_CONFIRMED: Severity.INCOMPLETE,
    FindingCode.LIVER_FUNCTION_ELEVATED: Severity.NEEDS_REVIEW,
    FindingCode.HEPATIC_IMPAIRMENT: Severity.NEEDS_REVIEW,
    FindingCode.WEIGHT_DISCREPANCY: Severity.NEEDS_REVIEW,
    FindingCode.ADVANCED_SMA: Severity.NEEDS_REVIEW,
    FindingCode.ULN_FALLBACK_USED: Severity.NEEDS_REVIEW,
    FindingCode.RESULT_UNREADABLE: Severity.NEEDS_REVIEW,
    FindingCode.STEROID_START_PASSED: Severity.NEEDS_REVIEW,
    FindingCode.MEDICATION_UNRESOLVED: Severity.NEEDS_REVIEW,
    FindingCode.SEARCHES_EMPTY: Severity.INCOMPLETE,
    FindingCode.SEARCH_TRUNCATED: Severity.NEEDS_REVIEW,
    FindingCode.LIVE_VACCINE_CAUTION: Severity.INFO,
    FindingCode.WEIGHT_BETWEEN_BANDS: Severity.INFO,
    FindingCode.SMA_DIAGNOSIS_NOT_RECORDED: Severity.INFO,
    FindingCode.SMN2_COPY_NUMBER: Severity.INFO,
    FindingCode.CAREGIVER_COUNSELING: Severity.INFO,
}
"""The severity each code must carry (the issue's specification, not read from the code)."""

BASE_CODES = frozenset({FindingCode.SMN2_COPY_NUMBER, FindingCode.CAREGIVER_COUNSELING})
"""The info findings the eligible example itself raises."""

READ_ONLY = frozenset({FindingCode.SEARCHES_EMPTY, FindingCode.SEARCH_TRUNCATED})
"""Codes raised from what a read from a server saw (its notes), never by a Bundle file."""
FIXTURE_CODES = [code for code in FindingCode if code not in READ_ONLY]
"""Codes with a fixture Bundle of their own."""

EXTRAS: dict[str, frozenset[FindingCode]] = {
    # 2nd birthday 2026-11-25, the day after the infusion: still under 2, no age finding.
    "age-boundary-day-before": BASE_CODES,
    # The same deferral as active-infection, raised by a 38.4 Cel temperature instead.
    "active-infection-fever": BASE_CODES | {FindingCode.ACTIVE_INFECTION},
    # hepatic-impairment raised by an active liver-disease Condition (ICD-10-CM K75.9), labs normal.
    "hepatic-impairment-condition": BASE_CODES | {FindingCode.HEPATIC_IMPAIRMENT},
    # weight-discrepancy with the two weights' resource ids exchanged: the same plan.
    "weight-discrepancy-swapped-ids": BASE_CODES | {FindingCode.WEIGHT_DISCREPANCY},
}
"""Fixture files beyond one per code, with the exact codes each must raise."""

EXPECTED_CODES: dict[str, frozenset[FindingCode]] = {
    **{code.value: BASE_CODES | {code} for code in FIXTURE_CODES},
    **EXTRAS,
}
"""Every fixture's exact set of finding codes: its own change and nothing else."""

COPIES_OF_BASE = (
    FindingCode.STEROID_START_PASSED,
    FindingCode.SMN2_COPY_NUMBER,
    FindingCode.CAREGIVER_COUNSELING,
)
"""Fixtures that differ from the example only by their patient id (and MRN)."""

SEVERITY_STATUS: dict[Severity, Status] = {
    Severity.NOT_ELIGIBLE: Status.NOT_ELIGIBLE,
    Severity.DEFERRED: Status.DEFERRED,
    Severity.INCOMPLETE: Status.INCOMPLETE,
    Severity.NEEDS_REVIEW: Status.NEEDS_REVIEW,
    Severity.INFO: Status.ELIGIBLE,
}
"""The overall status a finding of each severity yields when it is the most severe present."""

SEVERITY_ORDER = (
    Severity.NOT_ELIGIBLE,
    Severity.DEFERRED,
    Severity.INCOMPLETE,
    Severity.NEEDS_REVIEW,
    Severity.INFO,
)


def _fixture_names() -> list[str]:
    return sorted(path.stem for path in BUNDLES.glob("*.json"))


@cache
def _bundle_text(name: str) -> str:
    return (BUNDLES / f"{name}.json").read_text(encoding="utf-8")


def _bundle(name: str) -> dict[str, Any]:
    """A fixture's JSON as plain Python (floats), for looking at its shape."""
    return json.loads(_bundle_text(name))


def _plan_of(bundle: dict[str, Any], *, on: dt.date = ON, infusion: dt.date = INFUSION) -> Plan:
    return build_plan(facts_from_bundle(bundle), on=on, infusion_date=infusion)


@cache
def plan_for(name: str) -> Plan:
    """The plan for one fixture on its evaluation and infusion dates."""
    on, infusion = DATES.get(name, (ON, INFUSION))
    return _plan_of(parse_bundle_json(_bundle_text(name)), on=on, infusion=infusion)


@cache
def base_plan() -> Plan:
    """The plan for the eligible example on the default dates."""
    return _plan_of(parse_bundle_json(BASE_EXAMPLE.read_text(encoding="utf-8")))


def _base_dict() -> dict[str, Any]:
    return parse_bundle_json(BASE_EXAMPLE.read_text(encoding="utf-8"))


def findings_of(plan: Plan, code: FindingCode) -> list[Finding]:
    return [f for f in plan.eligibility.findings if f.code is code]


def only(plan: Plan, code: FindingCode) -> Finding:
    """The one finding with `code` (fails when there are none or several)."""
    found = findings_of(plan, code)
    assert len(found) == 1, [f.message for f in found]
    return found[0]


def status_from(findings: tuple[Finding, ...]) -> Status:
    """The expected status, worked out here: the most severe non-info finding decides."""
    for severity in SEVERITY_ORDER[:-1]:
        if any(f.severity is severity for f in findings):
            return SEVERITY_STATUS[severity]
    return Status.ELIGIBLE


def _resource(bundle: dict[str, Any], resource_id: str) -> dict[str, Any]:
    return next(e["resource"] for e in bundle["entry"] if e["resource"].get("id") == resource_id)


def _patient(bundle: dict[str, Any]) -> dict[str, Any]:
    return next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    )


# The specification itself ------------------------------------------------------------------


def test_expected_severity_covers_every_code() -> None:
    assert set(EXPECTED_SEVERITY) == set(FindingCode)


def test_every_code_has_a_fixture_and_every_fixture_is_a_code_or_documented_extra() -> None:
    names = set(_fixture_names())
    codes = {code.value for code in FIXTURE_CODES}
    assert codes - names == set(), "finding codes without a fixture"
    assert names - codes == set(EXTRAS), "fixtures that are neither a code nor a listed extra"


def test_default_policy_matches_the_dates_the_fixtures_assume() -> None:
    policy = DEFAULT_POLICY
    assert policy.weight_max_age_days == 30
    assert policy.baseline_lab_max_age_days == 30
    assert policy.titer_max_age_days == 30
    assert policy.fever_threshold_c == Decimal("38.0")
    assert policy.fever_lookback_days == 3
    assert policy.term_gestational_age_days == 259
    assert policy.min_gestational_age_days == 154


# The base example --------------------------------------------------------------------------


def test_base_example_is_eligible_with_a_dose_and_a_prednisolone_course() -> None:
    plan = base_plan()
    assert plan.eligibility.status is Status.ELIGIBLE
    assert plan.eligibility.codes() == BASE_CODES
    assert all(f.severity is Severity.INFO for f in plan.eligibility.findings)
    assert plan.dose is not None
    assert plan.dose.kit.ndc == "71894-127-05"
    assert plan.dose.weight_kg == Decimal("6.12")
    assert plan.steroids is not None
    assert plan.steroids.dose_mg_per_day == Decimal("6.1")
    assert plan.steroids.start_date == INFUSION - dt.timedelta(days=1)


# One fixture per code ----------------------------------------------------------------------


@pytest.mark.parametrize("code", FIXTURE_CODES, ids=lambda c: c.value)
def test_fixture_raises_its_code_with_the_specified_severity(code: FindingCode) -> None:
    plan = plan_for(code.value)
    found = findings_of(plan, code)
    assert found, f"{code.value} not raised; got {sorted(plan.eligibility.codes())}"
    expected = EXPECTED_SEVERITY[code]
    for finding in found:
        assert finding.severity is expected
        assert finding.message.strip()
        assert finding.section.strip()
    findings = plan.eligibility.findings
    assert plan.eligibility.status is status_from(findings)
    # Each fixture is built to raise only its own finding (beside the example's info ones),
    # so the status is exactly that severity's.
    assert plan.eligibility.codes() == EXPECTED_CODES[code.value]
    assert plan.eligibility.status is SEVERITY_STATUS[expected]
    assert plan.patient_id == f"fx-{code.value}"


@pytest.mark.parametrize("code", FIXTURE_CODES, ids=lambda c: c.value)
def test_the_fixture_change_caused_the_code(code: FindingCode) -> None:
    assert (code in base_plan().eligibility.codes()) is (code in BASE_CODES)


@pytest.mark.parametrize("name", sorted(EXTRAS))
def test_extra_fixture_raises_exactly_its_codes(name: str) -> None:
    plan = plan_for(name)
    assert plan.eligibility.codes() == EXTRAS[name]
    assert plan.eligibility.status is status_from(plan.eligibility.findings)


@pytest.mark.parametrize("code", COPIES_OF_BASE, ids=lambda c: c.value)
def test_copies_of_the_base_differ_only_in_patient_id(code: FindingCode) -> None:
    text = _bundle_text(code.value).replace(f"fx-{code.value}", BASE_PATIENT_ID)
    fixture = json.loads(text)
    _patient(fixture)["identifier"] = _patient(_base_dict())["identifier"]
    assert fixture == json.loads(BASE_EXAMPLE.read_text(encoding="utf-8"))


# Fixture shape ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", _fixture_names())
def test_fixture_is_a_well_formed_r4_bundle_for_its_own_patient(name: str) -> None:
    text = _bundle_text(name)
    bundle = json.loads(text)
    assert text == json.dumps(bundle, indent=2, ensure_ascii=False) + "\n", "pretty-print"
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "collection"
    assert BASE_PATIENT_ID not in text
    patients = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert len(patients) == 1
    patient_id = f"fx-{name}"
    assert patients[0]["resource"]["id"] == patient_id
    ids = []
    for entry in bundle["entry"]:
        resource = entry["resource"]
        kind, rid = resource["resourceType"], resource["id"]
        ids.append((kind, rid))
        assert entry["fullUrl"].endswith(f"/{kind}/{rid}")
        if kind == "Patient":
            continue
        assert resource["subject"] == {"reference": f"Patient/{patient_id}"}
        if kind in ("Observation", "Procedure", "MedicationAdministration"):
            assert resource["status"]
        if kind == "Condition":
            assert resource["clinicalStatus"]["coding"][0]["system"]
        if "medicationReference" in resource:
            assert resource["medicationReference"]["reference"].startswith("Medication/")
            continue
        concept = resource.get("code") or resource.get("medicationCodeableConcept")
        assert concept["coding"], f"{kind}/{rid} has no coding"
        assert all(c["system"] and c["code"] for c in concept["coding"])
    assert len(ids) == len(set(ids)), "duplicate resource ids"


# Evidence and messages ---------------------------------------------------------------------


def test_age_not_under_2_when_the_second_birthday_is_the_infusion_day() -> None:
    plan = plan_for(FindingCode.AGE_NOT_UNDER_2.value)
    finding = only(plan, FindingCode.AGE_NOT_UNDER_2)
    assert plan.birth_date == dt.date(2024, 11, 24)
    assert "2026-11-24" in finding.message
    (evidence,) = finding.evidence
    assert evidence.reference == "Patient/fx-age-not-under-2"
    assert evidence.value == "2024-11-24"
    assert plan.last_labeled_infusion_date == INFUSION - dt.timedelta(days=1)


def test_age_boundary_the_day_before_the_second_birthday_is_still_under_2() -> None:
    plan = plan_for("age-boundary-day-before")
    assert plan.birth_date == dt.date(2024, 11, 25)
    assert FindingCode.AGE_NOT_UNDER_2 not in plan.eligibility.codes()
    assert plan.eligibility.status is Status.ELIGIBLE
    assert plan.last_labeled_infusion_date == INFUSION


def test_weight_outside_label_range_names_the_weight_and_gives_no_dose() -> None:
    plan = plan_for(FindingCode.WEIGHT_OUTSIDE_LABEL_RANGE.value)
    finding = only(plan, FindingCode.WEIGHT_OUTSIDE_LABEL_RANGE)
    assert "2.45 kg" in finding.message
    assert "below 2.6 kg" in finding.message
    assert finding.evidence[0].reference == "Observation/weight"
    assert plan.dose is None
    assert plan.steroids is None


def test_weight_missing_gives_no_dose_and_no_steroids() -> None:
    plan = plan_for(FindingCode.WEIGHT_MISSING.value)
    only(plan, FindingCode.WEIGHT_MISSING)
    assert plan.dose is None
    assert plan.steroids is None


def test_weight_stale_evidence_is_the_old_weight() -> None:
    plan = plan_for(FindingCode.WEIGHT_STALE.value)
    finding = only(plan, FindingCode.WEIGHT_STALE)
    (evidence,) = finding.evidence
    assert evidence.reference == "Observation/weight"
    assert evidence.date == dt.date(2026, 10, 20)
    assert (INFUSION - evidence.date).days == 35
    assert "35 days" in finding.message
    assert plan.dose is None


def test_weight_between_bands_is_rounded_up_to_the_next_band() -> None:
    plan = plan_for(FindingCode.WEIGHT_BETWEEN_BANDS.value)
    finding = only(plan, FindingCode.WEIGHT_BETWEEN_BANDS)
    assert "3.04 kg" in finding.message
    assert "3.1 kg" in finding.message
    assert plan.dose is not None
    assert plan.dose.band_weight_kg == Decimal("3.1")
    assert plan.dose.kit.ndc == "71894-121-03"


def test_prior_onasemnogene_cites_the_administration() -> None:
    finding = only(plan_for(FindingCode.PRIOR_ONASEMNOGENE.value), FindingCode.PRIOR_ONASEMNOGENE)
    (evidence,) = finding.evidence
    assert evidence.reference == "MedicationAdministration/zolgensma-admin"
    assert "completed" in evidence.value
    assert evidence.date == dt.date(2026, 10, 15)


def test_medication_unresolved_names_the_administration_and_its_reference() -> None:
    plan = plan_for(FindingCode.MEDICATION_UNRESOLVED.value)
    finding = only(plan, FindingCode.MEDICATION_UNRESOLVED)
    (evidence,) = finding.evidence
    assert evidence.reference == "MedicationAdministration/outside-admin"
    assert evidence.value == "Medication/outside-kit"
    assert evidence.date == dt.date(2026, 10, 15)
    assert "MedicationAdministration/outside-admin" in finding.message
    assert "'Medication/outside-kit'" in finding.message
    assert "not in the Bundle" in finding.message
    prior = only(plan_for(FindingCode.PRIOR_ONASEMNOGENE.value), FindingCode.PRIOR_ONASEMNOGENE)
    assert finding.section == prior.section == "1; 6.2"
    assert plan.dose is not None  # needs review, not blocked: the clinician checks the EHR


def test_medication_unresolved_is_prior_onasemnogene_once_the_medication_is_read() -> None:
    bundle = parse_bundle_json(_bundle_text(FindingCode.MEDICATION_UNRESOLVED.value))
    kit = {"system": "http://hl7.org/fhir/sid/ndc", "code": "71894-124-04"}
    bundle["entry"].append(
        {
            "fullUrl": "http://ehr.example/fhir/Medication/outside-kit",
            "resource": {
                "resourceType": "Medication",
                "id": "outside-kit",
                "code": {"coding": [kit]},
            },
        }
    )
    plan = _plan_of(bundle)
    assert plan.eligibility.codes() == BASE_CODES | {FindingCode.PRIOR_ONASEMNOGENE}
    assert plan.eligibility.status is Status.NOT_ELIGIBLE
    (evidence,) = only(plan, FindingCode.PRIOR_ONASEMNOGENE).evidence
    assert evidence.reference == "MedicationAdministration/outside-admin"


def test_medication_unresolved_gives_the_servers_reason() -> None:
    bundle = parse_bundle_json(_bundle_text(FindingCode.MEDICATION_UNRESOLVED.value))
    why = "the server answered not found (404)"
    notes = ReadNotes(unresolved=(("Medication/outside-kit", why),))
    facts = facts_from_bundle(bundle, notes=notes)
    plan = build_plan(facts, on=ON, infusion_date=INFUSION)
    finding = only(plan, FindingCode.MEDICATION_UNRESOLVED)
    assert f"could not be read: {why}." in finding.message
    assert "not in the Bundle" not in finding.message


def test_preterm_message_names_the_date_term_age_is_reached() -> None:
    name = FindingCode.PRETERM_BEFORE_TERM_AGE.value
    bundle = _bundle(name)
    birth = dt.date.fromisoformat(_patient(bundle)["birthDate"])
    ga = _resource(bundle, "ga-birth")["valueQuantity"]
    assert ga["code"] == "wk"
    ga_days = int(ga["value"]) * 7
    term_date = birth + dt.timedelta(days=259 - ga_days)
    assert term_date == dt.date(2026, 12, 8)
    assert term_date > INFUSION
    finding = only(plan_for(name), FindingCode.PRETERM_BEFORE_TERM_AGE)
    assert term_date.isoformat() in finding.message
    assert "30+0 weeks" in finding.message
    assert finding.evidence[0].reference == "Observation/ga-birth"


def test_gestational_age_missing_names_the_age_in_days() -> None:
    plan = plan_for(FindingCode.GESTATIONAL_AGE_MISSING.value)
    finding = only(plan, FindingCode.GESTATIONAL_AGE_MISSING)
    assert plan.age_days_on_infusion == 25
    assert "25 days" in finding.message
    assert plan.age_days_on_infusion + 154 < 259


def test_birth_date_missing_cites_the_patient() -> None:
    plan = plan_for(FindingCode.BIRTH_DATE_MISSING.value)
    finding = only(plan, FindingCode.BIRTH_DATE_MISSING)
    assert finding.evidence[0].reference == "Patient/fx-birth-date-missing"
    assert plan.birth_date is None
    assert plan.age_days_on_infusion is None
    assert plan.last_labeled_infusion_date is None


def test_anti_aav9_titer_elevated_cites_the_titer_observation() -> None:
    finding = only(
        plan_for(FindingCode.ANTI_AAV9_TITER_ELEVATED.value), FindingCode.ANTI_AAV9_TITER_ELEVATED
    )
    (evidence,) = finding.evidence
    assert evidence.reference == "Observation/aav9"
    assert evidence.value == "1:100"
    assert evidence.date == dt.date(2026, 11, 9)
    assert "1:100" in finding.message


def test_anti_aav9_titer_ambiguous_cites_the_value_as_reported() -> None:
    finding = only(
        plan_for(FindingCode.ANTI_AAV9_TITER_AMBIGUOUS.value),
        FindingCode.ANTI_AAV9_TITER_AMBIGUOUS,
    )
    (evidence,) = finding.evidence
    assert evidence.reference == "Observation/aav9"
    assert evidence.value == ">1:25"
    assert ">1:25" in finding.message


def test_anti_aav9_titer_missing_has_no_evidence() -> None:
    finding = only(
        plan_for(FindingCode.ANTI_AAV9_TITER_MISSING.value), FindingCode.ANTI_AAV9_TITER_MISSING
    )
    assert finding.evidence == ()


def test_active_infection_cites_the_condition() -> None:
    finding = only(plan_for(FindingCode.ACTIVE_INFECTION.value), FindingCode.ACTIVE_INFECTION)
    (evidence,) = finding.evidence
    assert evidence.reference == "Condition/rsv-bronchiolitis"
    assert "RSV bronchiolitis" in finding.message


def test_active_infection_from_fever_cites_the_temperature() -> None:
    plan = plan_for("active-infection-fever")
    finding = only(plan, FindingCode.ACTIVE_INFECTION)
    assert finding.severity is Severity.DEFERRED
    assert plan.eligibility.status is Status.DEFERRED
    assert "38.0" in finding.message
    (evidence,) = finding.evidence
    assert evidence.reference == "Observation/temp"
    assert evidence.value == "38.4"
    assert evidence.date == dt.date(2026, 11, 19)


def test_baseline_lab_missing_names_only_albumin() -> None:
    finding = only(
        plan_for(FindingCode.BASELINE_LAB_MISSING.value), FindingCode.BASELINE_LAB_MISSING
    )
    assert str(LabTest.ALBUMIN) in finding.message
    assert finding.message.startswith("Baseline albumin missing")
    assert finding.evidence == ()


def test_smn1_one_copy_is_not_confirmed_bi_allelic() -> None:
    finding = only(
        plan_for(FindingCode.SMN1_BIALLELIC_NOT_CONFIRMED.value),
        FindingCode.SMN1_BIALLELIC_NOT_CONFIRMED,
    )
    (evidence,) = finding.evidence
    assert evidence.reference == "Observation/smn1"
    assert evidence.value == "1"
    assert "One SMN1 copy" in finding.message


def test_liver_function_elevated_states_the_multiple_of_uln() -> None:
    finding = only(
        plan_for(FindingCode.LIVER_FUNCTION_ELEVATED.value), FindingCode.LIVER_FUNCTION_ELEVATED
    )
    multiple = (Decimal(120) / Decimal(45)).quantize(Decimal("0.01"))
    assert multiple == Decimal("2.67")
    assert f"{multiple} x ULN" in finding.message
    assert "ALT 120 U/L" in finding.message
    assert "45 U/L, reported" in finding.message
    (evidence,) = finding.evidence
    assert evidence.reference == "Observation/alt"
    assert evidence.value == "120"


def test_advanced_sma_cites_the_tracheostomy() -> None:
    finding = only(plan_for(FindingCode.ADVANCED_SMA.value), FindingCode.ADVANCED_SMA)
    (evidence,) = finding.evidence
    assert evidence.reference == "Procedure/tracheostomy"
    assert "Tracheostomy" in finding.message


def test_uln_fallback_used_names_the_fallback_for_the_infants_age() -> None:
    plan = plan_for(FindingCode.ULN_FALLBACK_USED.value)
    finding = only(plan, FindingCode.ULN_FALLBACK_USED)
    (evidence,) = finding.evidence
    assert evidence.reference == "Observation/alt"
    assert plan.birth_date is not None
    assert evidence.date is not None
    age_days = (evidence.date - plan.birth_date).days
    (row,) = (
        r
        for r in fallback_table()
        if r.test is LabTest.ALT and r.age_from_days <= age_days < r.age_to_days
    )
    assert f"ALT {row.uln} U/L" in finding.message
    assert DEFAULT_POLICY.uln_fallback_version in finding.message


def test_result_unreadable_names_the_unit_and_keeps_the_valid_weight() -> None:
    plan = plan_for(FindingCode.RESULT_UNREADABLE.value)
    finding = only(plan, FindingCode.RESULT_UNREADABLE)
    (evidence,) = finding.evidence
    assert evidence.reference == "Observation/weight-stone"
    assert "Observation/weight-stone" in finding.message
    assert "stone" in finding.message
    assert plan.dose is not None
    assert plan.dose.weight_kg == Decimal("6.12")


def test_steroid_start_passed_only_when_evaluated_after_the_start_day() -> None:
    name = FindingCode.STEROID_START_PASSED.value
    finding = only(plan_for(name), FindingCode.STEROID_START_PASSED)
    assert "2026-11-23" in finding.message
    on_time = _plan_of(parse_bundle_json(_bundle_text(name)))
    assert on_time.eligibility.status is Status.ELIGIBLE
    assert FindingCode.STEROID_START_PASSED not in on_time.eligibility.codes()


def test_live_vaccine_caution_at_20_mg_per_day() -> None:
    plan = plan_for(FindingCode.LIVE_VACCINE_CAUTION.value)
    finding = only(plan, FindingCode.LIVE_VACCINE_CAUTION)
    assert plan.age_days_on_infusion is not None
    assert plan.last_labeled_infusion_date is not None
    assert plan.last_labeled_infusion_date >= INFUSION
    assert plan.steroids is not None
    assert plan.steroids.dose_mg_per_day == Decimal("20.4")
    assert plan.steroids.dose_mg_per_day >= 20
    assert "20.4 mg" in finding.message


def test_sma_diagnosis_not_recorded_and_smn2_and_counseling() -> None:
    no_dx = only(
        plan_for(FindingCode.SMA_DIAGNOSIS_NOT_RECORDED.value),
        FindingCode.SMA_DIAGNOSIS_NOT_RECORDED,
    )
    assert no_dx.evidence == ()
    smn2 = only(plan_for(FindingCode.SMN2_COPY_NUMBER.value), FindingCode.SMN2_COPY_NUMBER)
    assert smn2.evidence[0].reference == "Observation/smn2"
    assert smn2.evidence[0].value == "2"
    counseling = only(
        plan_for(FindingCode.CAREGIVER_COUNSELING.value), FindingCode.CAREGIVER_COUNSELING
    )
    assert counseling.section == "17"


def test_hepatic_impairment_names_the_inr_above_its_uln_and_quotes_the_label() -> None:
    plan = plan_for(FindingCode.HEPATIC_IMPAIRMENT.value)
    finding = only(plan, FindingCode.HEPATIC_IMPAIRMENT)
    assert "baseline INR 1.5 {INR} is above its ULN (1.3 {INR}, reported)" in finding.message
    assert "preexisting liver impairment" in finding.message
    assert "may be at higher risk" in finding.message
    assert "should be carefully considered in patients with liver impairment" in finding.message
    assert finding.section == "5.1; 8.6"
    (evidence,) = finding.evidence
    assert evidence.reference == "Observation/inr"
    assert evidence.value == "1.5"
    assert plan.dose is not None  # a needs-review finding: the plan is still computed


def test_hepatic_impairment_from_a_liver_condition_cites_the_condition() -> None:
    plan = plan_for("hepatic-impairment-condition")
    finding = only(plan, FindingCode.HEPATIC_IMPAIRMENT)
    assert "liver disease on record (Inflammatory liver disease)" in finding.message
    assert "INR" not in finding.message
    (evidence,) = finding.evidence
    assert evidence.reference == "Condition/liver-dx"
    assert evidence.date == dt.date(2026, 10, 5)


WEIGHT_TWIN = "weight-discrepancy-swapped-ids"


def test_weight_discrepancy_doses_on_the_heavier_weight_and_names_both() -> None:
    plan = plan_for(FindingCode.WEIGHT_DISCREPANCY.value)
    finding = only(plan, FindingCode.WEIGHT_DISCREPANCY)
    assert finding.section == "2.1"
    assert "6.6 kg (Observation/weight, 2026-11-18)" in finding.message
    assert "6.1 kg (Observation/weight-recheck, 2026-11-18)" in finding.message
    assert "fall in different kit bands (6.6-7.0 kg and 6.1-6.5 kg)" in finding.message
    assert "differ by 8.2% of the lighter" in finding.message
    assert "institution defaults: weights differing by more than 5% disagree" in finding.message
    assert "weights taken within 24 hours of each other" in finding.message
    assert "doses on the heavier weight, 6.6 kg" in finding.message
    assert [e.reference for e in finding.evidence] == [
        "Observation/weight",
        "Observation/weight-recheck",
    ]
    assert plan.dose is not None
    assert plan.dose.weight_kg == Decimal("6.6")
    assert plan.dose.kit.ndc == "71894-128-05"
    assert plan.dose.kit.dose_volume_ml == Decimal("38.5")
    assert plan.steroids is not None
    assert plan.steroids.dose_mg_per_day == Decimal("6.6")


def test_weight_twin_is_the_same_chart_with_the_two_ids_exchanged() -> None:
    original = _bundle(FindingCode.WEIGHT_DISCREPANCY.value)
    twin = _bundle(WEIGHT_TWIN)
    for bundle in (original, twin):
        for entry in bundle["entry"]:
            if entry["resource"]["id"] in ("weight", "weight-recheck"):
                entry["resource"] = {**entry["resource"], "id": "?"}
                entry["fullUrl"] = "?"
    text = json.dumps(original).replace("fx-weight-discrepancy", "fx-twin")
    twin_text = json.dumps(twin).replace(f"fx-{WEIGHT_TWIN}", "fx-twin")
    original_weights = [e for e in json.loads(text)["entry"] if e["resource"]["id"] == "?"]
    twin_weights = [e for e in json.loads(twin_text)["entry"] if e["resource"]["id"] == "?"]
    assert original_weights == twin_weights[::-1]
    assert [e for e in json.loads(text)["entry"] if e["resource"]["id"] != "?"] == [
        e for e in json.loads(twin_text)["entry"] if e["resource"]["id"] != "?"
    ]


def test_exchanged_ids_give_the_same_plan() -> None:
    plan = plan_for(FindingCode.WEIGHT_DISCREPANCY.value)
    twin = plan_for(WEIGHT_TWIN)
    assert twin.dose == plan.dose
    assert twin.steroids == plan.steroids
    assert twin.schedule == plan.schedule
    assert twin.eligibility.status is plan.eligibility.status is Status.NEEDS_REVIEW
    assert twin.eligibility.codes() == plan.eligibility.codes()
    mine = only(plan, FindingCode.WEIGHT_DISCREPANCY).message
    theirs = only(twin, FindingCode.WEIGHT_DISCREPANCY).message
    swapped = (
        theirs.replace("Observation/weight-recheck", "<b>")
        .replace("Observation/weight", "Observation/weight-recheck")
        .replace("<b>", "Observation/weight")
    )
    assert swapped == mine


# Codes only a read from a server raises ------------------------------------------------------

SEARCHES = (
    "Observation?patient=infant-eligible&_sort=-date&code=http%3A%2F%2Floinc.org|29463-7",
    "Condition?patient=infant-eligible&_count=100",
)


def _read_plan(bundle: dict[str, Any], notes: ReadNotes | None) -> Plan:
    """The plan for a Bundle read with a server read's notes (None: a Bundle file)."""
    return build_plan(facts_from_bundle(bundle, notes=notes), on=ON, infusion_date=INFUSION)


def _patient_only() -> dict[str, Any]:
    """The eligible example's Patient and nothing else: what an empty read returns."""
    bundle = _base_dict()
    bundle["entry"] = bundle["entry"][:1]
    return bundle


def test_every_read_only_code_has_a_specified_severity() -> None:
    assert set(FIXTURE_CODES) | READ_ONLY == set(FindingCode)
    assert all(code in EXPECTED_SEVERITY for code in READ_ONLY)


def test_searches_empty_when_the_patient_was_read_and_every_search_found_nothing() -> None:
    floors = "weights since 2026-05-24 (institution default: weight_search_days = 180)"
    plan = _read_plan(_patient_only(), ReadNotes(searched=SEARCHES, empty=SEARCHES, floors=floors))
    finding = only(plan, FindingCode.SEARCHES_EMPTY)
    assert finding.severity is EXPECTED_SEVERITY[FindingCode.SEARCHES_EMPTY]
    assert "every one of the 2 searches" in finding.message
    assert "search support" in finding.message
    assert "granted scopes" in finding.message
    assert f"The dated searches asked for {floors}." in finding.message
    assert finding.evidence[0].reference == "Patient/infant-eligible"
    # The "missing" findings stay; the new one says why they may be missing.
    assert {
        FindingCode.WEIGHT_MISSING,
        FindingCode.BASELINE_LAB_MISSING,
    } <= plan.eligibility.codes()
    assert plan.eligibility.status is Status.INCOMPLETE


def test_a_refused_search_does_not_count_as_found() -> None:
    notes = ReadNotes(searched=SEARCHES, empty=SEARCHES[:1], refused=SEARCHES[1:])
    assert FindingCode.SEARCHES_EMPTY in _read_plan(_patient_only(), notes).eligibility.codes()


@pytest.mark.parametrize(
    "notes",
    [
        None,
        ReadNotes(),
        ReadNotes(searched=SEARCHES, empty=SEARCHES[:1]),
        ReadNotes(searched=SEARCHES, refused=SEARCHES),
    ],
    ids=["bundle-file", "no-searches", "one-found-something", "all-refused"],
)
def test_searches_empty_not_raised_unless_every_answered_search_was_empty(
    notes: ReadNotes | None,
) -> None:
    assert FindingCode.SEARCHES_EMPTY not in _read_plan(_patient_only(), notes).eligibility.codes()


def test_search_truncated_for_a_search_not_ordered_by_date() -> None:
    cut = SEARCHES[1]
    plan = _read_plan(_base_dict(), ReadNotes(searched=SEARCHES, truncated=(cut,)))
    assert plan.eligibility.codes() == BASE_CODES | {FindingCode.SEARCH_TRUNCATED}
    finding = only(plan, FindingCode.SEARCH_TRUNCATED)
    assert finding.severity is EXPECTED_SEVERITY[FindingCode.SEARCH_TRUNCATED]
    assert cut in finding.message
    assert [e.reference for e in finding.evidence] == [cut]
    assert plan.eligibility.status is Status.NEEDS_REVIEW


def test_search_truncated_not_raised_for_a_search_ordered_newest_first() -> None:
    plan = _read_plan(_base_dict(), ReadNotes(searched=SEARCHES, truncated=SEARCHES[:1]))
    assert plan.eligibility.codes() == BASE_CODES
    assert plan.eligibility.status is Status.ELIGIBLE


# Ordering --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", _fixture_names())
def test_findings_are_ordered_most_severe_first(name: str) -> None:
    findings = plan_for(name).eligibility.findings
    ranks = [SEVERITY_ORDER.index(f.severity) for f in findings]
    assert ranks == sorted(ranks)


def test_many_findings_are_ordered_most_severe_first_and_the_worst_decides() -> None:
    bundle = _base_dict()
    _patient(bundle)["birthDate"] = "2024-11-24"  # not-eligible
    _resource(bundle, "temp")["valueQuantity"]["value"] = Decimal("38.4")  # deferred
    bundle["entry"] = [  # incomplete: titer and albumin missing
        e for e in bundle["entry"] if e["resource"]["id"] not in ("aav9", "albumin")
    ]
    del _resource(bundle, "alt")["referenceRange"]  # needs-review: fallback ULN
    plan = _plan_of(bundle)
    findings = plan.eligibility.findings
    assert [f.severity for f in findings] == [
        Severity.NOT_ELIGIBLE,
        Severity.DEFERRED,
        Severity.INCOMPLETE,
        Severity.INCOMPLETE,
        Severity.NEEDS_REVIEW,
        Severity.INFO,
        Severity.INFO,
    ]
    assert [f.code for f in findings[:5]] == [
        FindingCode.AGE_NOT_UNDER_2,
        FindingCode.ACTIVE_INFECTION,
        FindingCode.ANTI_AAV9_TITER_MISSING,
        FindingCode.BASELINE_LAB_MISSING,
        FindingCode.ULN_FALLBACK_USED,
    ]
    assert plan.eligibility.status is Status.NOT_ELIGIBLE
    assert plan.eligibility.status is status_from(findings)
