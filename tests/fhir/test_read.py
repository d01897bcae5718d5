"""Reading a FHIR R4 Bundle into PatientFacts: codes, titers, statuses, ordering and errors."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest

from smart_app.errors import BundleError, InputError
from smart_app.fhir import codes
from smart_app.fhir.gateway import PatientRecord
from smart_app.fhir.read import (
    ReadNotes,
    facts_from_bundle,
    is_zolgensma,
    parse_bundle_json,
    titer_date,
)
from smart_app.rules.eligibility import weights_disagree, weights_together
from smart_app.rules.model import (
    Comparator,
    Finding,
    FindingCode,
    LabTest,
    PatientFacts,
    Severity,
    Titer,
)
from smart_app.rules.policy import DEFAULT_POLICY

PATIENT = "p1"
BIRTH = "2026-06-10"
TITER = (codes.APP_CODES, "anti-aav9-titer")
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
ZOLGENSMA_NDC = "71894-124-04"


# Bundle builders -------------------------------------------------------------------------------


def patient(pid: str = PATIENT, birth_date: str | None = BIRTH) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "Patient", "id": pid}
    if birth_date is not None:
        out["birthDate"] = birth_date
    return out


def bundle(
    *resources: dict[str, Any], birth_date: str | None = BIRTH, kind: str = "collection"
) -> dict[str, Any]:
    """A Bundle: one Patient (fullUrl urn:uuid:p1), then `resources`."""
    entries = [{"fullUrl": f"urn:uuid:{PATIENT}", "resource": patient(birth_date=birth_date)}]
    entries += [{"resource": r} for r in resources]
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def read(
    *resources: dict[str, Any],
    birth_date: str | None = BIRTH,
    titer_codes: frozenset[tuple[str, str]] | None = None,
) -> PatientFacts:
    """Serialise and read a bundle the way the CLI does."""
    data = parse_bundle_json(json.dumps(bundle(*resources, birth_date=birth_date)))
    if titer_codes is None:
        return facts_from_bundle(data)
    return facts_from_bundle(data, titer_codes=titer_codes)


def concept(system: str, code: str, text: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"coding": [{"system": system, "code": code}]}
    if text is not None:
        out["text"] = text
    return out


def observation(
    code: str | dict[str, Any],
    *,
    system: str = codes.LOINC,
    when: str = "2026-11-16",
    oid: str = "obs",
    status: str = "final",
    subject: str = f"Patient/{PATIENT}",
    **fields: Any,
) -> dict[str, Any]:
    obs = {
        "resourceType": "Observation",
        "id": oid,
        "status": status,
        "code": code if isinstance(code, dict) else concept(system, code),
        "subject": {"reference": subject},
        "effectiveDateTime": when,
    }
    obs.update(fields)
    return obs


def weight(kg: Any, when: str, oid: str, status: str = "final", **fields: Any) -> dict[str, Any]:
    return observation(
        "29463-7",
        when=when,
        oid=oid,
        status=status,
        valueQuantity={"value": kg, "unit": "kg", "system": codes.UCUM, "code": "kg"},
        **fields,
    )


def titer(**value: Any) -> dict[str, Any]:
    """An anti-AAV9 titer Observation under the app's default code."""
    return observation(TITER[1], system=TITER[0], when="2026-11-09", oid="aav9", **value)


def condition(
    system: str,
    code: str,
    *,
    cid: str = "cond",
    clinical: str | None = "active",
    verification: str | None = "confirmed",
    **fields: Any,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "Condition",
        "id": cid,
        "code": concept(system, code),
        "subject": {"reference": f"Patient/{PATIENT}"},
    }
    if clinical is not None:
        out["clinicalStatus"] = concept(CLINICAL, clinical)
    if verification is not None:
        out["verificationStatus"] = concept(VERIFICATION, verification)
    out.update(fields)
    return out


def ndc(code: str, display: str = "gene therapy kit") -> dict[str, Any]:
    """A medication coded by NDC only; the display names no drug, so only the code can match."""
    return {"coding": [{"system": codes.NDC, "code": code, "display": display}]}


def only_titer(facts: PatientFacts) -> Titer:
    assert len(facts.titers) == 1, facts.titers
    return facts.titers[0]


# Anti-AAV9 titers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "denominator", "comparator"),
    [
        ("1:25", Decimal(25), Comparator.EQ),
        ("<1:25", Decimal(25), Comparator.LT),
        (">1:400", Decimal(400), Comparator.GT),
        ("1:50", Decimal(50), Comparator.EQ),
        ("≤1:50", Decimal(50), Comparator.LE),
        ("≥1:100", Decimal(100), Comparator.GE),
        ("<=1:50", Decimal(50), Comparator.LE),
        (" < 1 : 25 (negative)", Decimal(25), Comparator.LT),
    ],
)
def test_titer_value_string(text: str, denominator: Decimal, comparator: Comparator) -> None:
    t = only_titer(read(titer(valueString=text)))
    assert t.denominator == denominator
    assert t.comparator is comparator
    assert t.effective == dt.date(2026, 11, 9)
    assert t.evidence.value == text
    assert t.evidence.reference == "Observation/aav9"


@pytest.mark.parametrize("text", ["positive", "negative", "", "1:25 then 1:50", "25"])
def test_unparseable_titer_string_is_ambiguous(text: str) -> None:
    t = only_titer(read(titer(valueString=text)))
    assert t.denominator is None
    assert t.comparator is Comparator.EQ


def test_titer_value_ratio_1_to_50() -> None:
    ratio = {"numerator": {"value": 1}, "denominator": {"value": 50}}
    t = only_titer(read(titer(valueRatio=ratio)))
    assert (t.denominator, t.comparator) == (Decimal(50), Comparator.EQ)


def test_titer_value_ratio_reduces_to_one_over_n() -> None:
    ratio = {"numerator": {"value": 2}, "denominator": {"value": 100}}
    t = only_titer(read(titer(valueRatio=ratio)))
    assert (t.denominator, t.comparator) == (Decimal(50), Comparator.EQ)


def test_titer_value_ratio_with_numerator_comparator_is_censored() -> None:
    ratio = {"numerator": {"value": 1, "comparator": "<"}, "denominator": {"value": 50}}
    t = only_titer(read(titer(valueRatio=ratio)))
    assert t.denominator == Decimal(50)
    assert t.comparator is not Comparator.EQ


@pytest.mark.parametrize(
    ("symbol", "comparator"),
    [("<", Comparator.LT), (">", Comparator.GT), ("<=", Comparator.LE), (">=", Comparator.GE)],
)
def test_titer_value_ratio_comparator_means_what_the_string_form_means(
    symbol: str, comparator: Comparator
) -> None:
    # "<1:50" is a titer below 1:50 (negative at the 1:50 screen) whether sent as text or as a
    # Ratio with the comparator on the numerator; reading the Ratio inverted would defer a
    # negative patient and pass a ">1:50" one.
    ratio = {"numerator": {"value": 1, "comparator": symbol}, "denominator": {"value": 50}}
    as_ratio = only_titer(read(titer(valueRatio=ratio)))
    as_string = only_titer(read(titer(valueString=f"{symbol}1:50")))
    assert (as_string.denominator, as_string.comparator) == (Decimal(50), comparator)
    assert (as_ratio.denominator, as_ratio.comparator) == (Decimal(50), comparator)


def test_titer_value_ratio_comparator_on_denominator() -> None:
    ratio = {"numerator": {"value": 1}, "denominator": {"value": 50, "comparator": "<"}}
    t = only_titer(read(titer(valueRatio=ratio)))
    assert (t.denominator, t.comparator) == (Decimal(50), Comparator.LT)


def test_titer_value_ratio_with_two_comparators_is_ambiguous() -> None:
    ratio = {
        "numerator": {"value": 1, "comparator": "<"},
        "denominator": {"value": 50, "comparator": ">"},
    }
    assert only_titer(read(titer(valueRatio=ratio))).denominator is None


def test_titer_value_ratio_without_denominator_is_ambiguous() -> None:
    t = only_titer(read(titer(valueRatio={"numerator": {"value": 1}})))
    assert t.denominator is None


def test_titer_value_quantity_with_comparator() -> None:
    t = only_titer(read(titer(valueQuantity={"value": 25, "comparator": ">"})))
    assert (t.denominator, t.comparator) == (Decimal(25), Comparator.GT)


def test_titer_value_integer() -> None:
    t = only_titer(read(titer(valueInteger=100)))
    assert (t.denominator, t.comparator) == (Decimal(100), Comparator.EQ)


def test_titer_value_below_one_is_ambiguous() -> None:
    t = only_titer(read(titer(valueQuantity={"value": 0.5})))
    assert t.denominator is None


def test_titer_recognised_by_custom_code_only_when_passed() -> None:
    local = ("http://lab.example/codes", "VV-AB-7")
    obs = observation(
        {"coding": [{"system": local[0], "code": local[1], "display": "Vector antibody screen"}]},
        oid="local",
        valueString="<1:25",
    )
    assert read(obs).titers == ()
    t = only_titer(read(obs, titer_codes=frozenset({local})))
    assert (t.denominator, t.comparator) == (Decimal(25), Comparator.LT)
    assert t.evidence.reference == "Observation/local"


def test_default_titer_code_still_recognised_with_custom_codes() -> None:
    facts = read(titer(valueString="1:25"), titer_codes=frozenset({("http://x", "y")}))
    assert only_titer(facts).denominator == 25


@pytest.mark.parametrize("text", ["Anti-AAV9 Ab", "anti-aav9 total antibody", "ANTI-AAV9 TITER"])
def test_titer_recognised_by_text(text: str) -> None:
    obs = observation({"text": text}, oid="by-text", valueString="1:50")
    t = only_titer(read(obs))
    assert t.denominator == 50
    assert t.evidence.display == text


def test_titer_recognised_by_coding_display() -> None:
    code = {"coding": [{"system": "http://lab.example", "code": "Q1", "display": "AAV9 Ab"}]}
    assert only_titer(read(observation(code, valueString="1:50"))).denominator == 50


def test_observation_with_unrelated_text_is_not_a_titer() -> None:
    facts = read(observation({"text": "Anti-AAV8 antibody"}, valueString="1:50"))
    assert facts.titers == ()
    assert facts.unreadable == ()


# Codes -----------------------------------------------------------------------------------------


def _value_kg(v: Any) -> dict[str, Any]:
    return {"valueQuantity": {"value": v, "system": codes.UCUM, "code": "kg"}}


def _value(v: Any, unit: str) -> dict[str, Any]:
    return {"valueQuantity": {"value": v, "system": codes.UCUM, "code": unit}}


CODE_CASES = [
    ("29463-7", "weights_kg", None, _value_kg(6)),
    ("76516-4", "gestational_age_days", None, _value(39, "wk")),
    ("1742-6", "labs", LabTest.ALT, _value(28, "U/L")),
    ("1920-8", "labs", LabTest.AST, _value(42, "U/L")),
    ("1975-2", "labs", LabTest.BILIRUBIN_TOTAL, _value("0.4", "mg/dL")),
    ("1751-7", "labs", LabTest.ALBUMIN, _value(4, "g/dL")),
    ("5902-2", "labs", LabTest.PT, _value("12.5", "s")),
    ("14979-9", "labs", LabTest.PTT, _value(33, "s")),
    ("3173-2", "labs", LabTest.PTT, _value(33, "s")),
    ("6301-6", "labs", LabTest.INR, _value(1, "{INR}")),
    ("34714-6", "labs", LabTest.INR, _value(1, "{INR}")),
    ("777-3", "labs", LabTest.PLATELETS, _value(318, "10*3/uL")),
    ("26515-7", "labs", LabTest.PLATELETS, _value(318, "10*3/uL")),
    ("718-7", "labs", LabTest.HEMOGLOBIN, _value("11.4", "g/dL")),
    ("2160-0", "labs", LabTest.CREATININE, _value("0.24", "mg/dL")),
    ("10839-9", "labs", LabTest.TROPONIN_I, _value("0.01", "ng/mL")),
    ("89579-7", "labs", LabTest.TROPONIN_I, _value(10, "ng/L")),
    ("8310-5", "temperatures_c", None, _value("36.8", "Cel")),
    ("111768-8", "smn1_copies", None, {"valueInteger": 0}),
    ("97654-8", "smn2_copies", None, {"valueInteger": 2}),
]
BUCKETS = (
    "weights_kg",
    "gestational_age_days",
    "labs",
    "temperatures_c",
    "smn1_copies",
    "smn2_copies",
    "titers",
)


@pytest.mark.parametrize(
    ("loinc", "bucket", "test", "value"), CODE_CASES, ids=[c[0] for c in CODE_CASES]
)
def test_loinc_codes_are_recognised(
    loinc: str, bucket: str, test: LabTest | None, value: dict[str, Any]
) -> None:
    facts = read(observation(loinc, oid=f"o-{loinc}", **value))
    assert facts.unreadable == ()
    for name in BUCKETS:
        assert len(getattr(facts, name)) == (1 if name == bucket else 0), name
    item = getattr(facts, bucket)[0]
    assert item.evidence.reference == f"Observation/o-{loinc}"
    if test is not None:
        assert item.test is test


def test_loinc_code_under_another_system_is_not_recognised() -> None:
    facts = read(observation("29463-7", system="http://example.org/local", **_value_kg(6)))
    assert facts.weights_kg == ()


def test_unrelated_loinc_is_ignored() -> None:
    facts = read(observation("8302-2", **_value(60, "cm")))  # body height
    assert facts == PatientFacts(patient_id=PATIENT, birth_date=dt.date(2026, 6, 10))


def test_smn_copy_number_must_be_whole() -> None:
    facts = read(observation("97654-8", valueQuantity={"value": 2.5}))
    assert facts.smn2_copies == ()
    assert facts.unreadable[0].what == "SMN2 copy number"


def test_smn_copy_number_from_value_quantity_and_string() -> None:
    facts = read(
        observation("111768-8", oid="s1", valueQuantity={"value": 0, "unit": "{copies}"}),
        observation("97654-8", oid="s2", valueString="3"),
    )
    assert [m.value for m in facts.smn1_copies] == [0]
    assert [m.value for m in facts.smn2_copies] == [3]


# Observation status ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["entered-in-error", "cancelled", "registered", "unknown"])
def test_withdrawn_weight_does_not_replace_the_older_final_one(status: str) -> None:
    facts = read(
        weight("6.0", "2026-11-01", "old"),
        weight("9.9", "2026-11-18", "newer", status=status),
    )
    assert [w.value for w in facts.weights_kg] == [Decimal("6.0")]
    assert facts.weights_kg[0].evidence.reference == "Observation/old"


@pytest.mark.parametrize("status", ["amended", "corrected", "final", "preliminary"])
def test_usable_status_is_read(status: str) -> None:
    facts = read(weight("6.0", "2026-11-01", "old"), weight("6.4", "2026-11-18", "new", status))
    assert facts.weights_kg[0].value == Decimal("6.4")


def test_data_absent_reason_is_ignored() -> None:
    absent = weight("9.9", "2026-11-18", "absent", dataAbsentReason={"text": "not performed"})
    facts = read(weight("6.0", "2026-11-01", "old"), absent)
    assert [w.evidence.reference for w in facts.weights_kg] == ["Observation/old"]


def test_observation_without_full_effective_date_is_unreadable() -> None:
    facts = read(weight("6.0", "2026-11", "partial"))
    assert facts.weights_kg == ()
    assert facts.unreadable[0].what == "body weight"
    assert "effective date" in facts.unreadable[0].reason


def test_effective_period_start_is_used() -> None:
    obs = weight("6.0", "x", "period")
    del obs["effectiveDateTime"]
    obs["effectivePeriod"] = {"start": "2026-11-17T10:00:00Z", "end": "2026-11-17T11:00:00Z"}
    assert read(obs).weights_kg[0].effective == dt.date(2026, 11, 17)


# Newest first ----------------------------------------------------------------------------------


def test_weights_newest_first_by_date_then_instant() -> None:
    facts = read(
        weight("5.0", "2026-10-01", "w-oct"),
        # Same local date: 10:00-05:00 is 15:00Z, later than 12:00Z although 10 < 12.
        weight("6.2", "2026-11-18T10:00:00-05:00", "w-1500z"),
        weight("5.8", "2026-11-10", "w-nov10"),
        weight("6.0", "2026-11-18T12:00:00+00:00", "w-1200z"),
        weight("5.9", "2026-11-18T08:30:00+02:00", "w-0630z"),
        weight("5.5", "2026-11-02T23:00:00-08:00", "w-nov2"),
    )
    assert [w.evidence.reference.removeprefix("Observation/") for w in facts.weights_kg] == [
        "w-1500z",
        "w-1200z",
        "w-0630z",
        "w-nov10",
        "w-nov2",
        "w-oct",
    ]
    assert facts.weights_kg[0].value == Decimal("6.2")
    assert facts.weights_kg[0].evidence.recorded == "2026-11-18T10:00:00-05:00"


def test_labs_and_titers_are_newest_first() -> None:
    facts = read(
        observation("1742-6", oid="alt-old", when="2026-10-01", **_value(20, "U/L")),
        observation("1742-6", oid="alt-new", when="2026-11-16", **_value(30, "U/L")),
        observation(TITER[1], system=TITER[0], oid="t-old", when="2026-09-01", valueString="1:25"),
        observation(TITER[1], system=TITER[0], oid="t-new", when="2026-11-09", valueString="1:50"),
    )
    assert [lab.value for lab in facts.labs_for(LabTest.ALT)] == [30, 20]
    assert [t.denominator for t in facts.titers] == [50, 25]


# Conditions ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("system", "code"),
    [
        (codes.ICD10CM, "G12.0"),
        (codes.ICD10CM, "G12.1"),
        (codes.ICD10CM, "G12.9"),
        (codes.SNOMED, "5262007"),
    ],
)
def test_sma_condition_codes(system: str, code: str) -> None:
    facts = read(condition(system, code, cid="sma"))
    assert [e.reference for e in facts.sma_conditions] == ["Condition/sma"]


def test_other_neuromuscular_code_is_not_sma() -> None:
    assert read(condition(codes.ICD10CM, "G12.2")).sma_conditions == ()


@pytest.mark.parametrize("verification", ["refuted", "entered-in-error"])
def test_excluded_verification_status(verification: str) -> None:
    facts = read(
        condition(codes.ICD10CM, "G12.0", cid="sma", verification=verification),
        condition(codes.ICD10CM, "J21.0", cid="rsv", verification=verification),
    )
    assert facts.sma_conditions == ()
    assert facts.active_infections == ()


@pytest.mark.parametrize("verification", ["confirmed", "provisional", None])
def test_included_verification_status(verification: str | None) -> None:
    facts = read(condition(codes.ICD10CM, "G12.0", verification=verification))
    assert len(facts.sma_conditions) == 1


def test_active_infection_is_counted() -> None:
    facts = read(condition(codes.ICD10CM, "J21.0", cid="rsv", onsetDateTime="2026-11-15"))
    assert [e.reference for e in facts.active_infections] == ["Condition/rsv"]
    assert facts.active_infections[0].date == dt.date(2026, 11, 15)


def test_resolved_infection_is_not_counted() -> None:
    facts = read(condition(codes.ICD10CM, "J21.0", clinical="resolved"))
    assert facts.active_infections == ()


def test_abated_infection_without_clinical_status_is_not_counted() -> None:
    facts = read(condition(codes.ICD10CM, "J21.0", clinical=None, abatementDateTime="2026-11-10"))
    assert facts.active_infections == ()


def test_infection_without_clinical_status_or_abatement_is_counted() -> None:
    assert len(read(condition(codes.ICD10CM, "J21.0", clinical=None)).active_infections) == 1


def test_snomed_infection_is_counted() -> None:
    assert len(read(condition(codes.SNOMED, "55735004")).active_infections) == 1


def test_non_infection_condition_is_not_counted() -> None:
    assert read(condition(codes.ICD10CM, "K21.9")).active_infections == ()


# Prior gene therapy ----------------------------------------------------------------------------


def med(kind: str, status: str, mid: str = "med", **fields: Any) -> dict[str, Any]:
    out = {
        "resourceType": kind,
        "id": mid,
        "status": status,
        "subject": {"reference": f"Patient/{PATIENT}"},
    }
    out.update(fields)
    return out


@pytest.mark.parametrize("code", [ZOLGENSMA_NDC, "7189412404", "71894-0124-04"])
def test_prior_administration_by_ndc(code: str) -> None:
    given = med(
        "MedicationAdministration",
        "completed",
        "given",
        medicationCodeableConcept=ndc(code),
        effectiveDateTime="2026-03-01T10:00:00Z",
    )
    facts = read(given)
    assert [e.reference for e in facts.prior_gene_therapy] == ["MedicationAdministration/given"]
    assert facts.prior_gene_therapy[0].date == dt.date(2026, 3, 1)


def test_other_labeler_ndc_is_not_prior_gene_therapy() -> None:
    given = med(
        "MedicationAdministration", "completed", medicationCodeableConcept=ndc("0002-8215-01")
    )
    assert read(given).prior_gene_therapy == ()


def test_prior_statement_by_text() -> None:
    statement = med(
        "MedicationStatement",
        "completed",
        "stmt",
        medicationCodeableConcept={"text": "onasemnogene abeparvovec-xioi (outside hospital)"},
    )
    facts = read(statement)
    assert [e.reference for e in facts.prior_gene_therapy] == ["MedicationStatement/stmt"]


def test_active_request_with_medication_reference_in_bundle() -> None:
    medication = {"resourceType": "Medication", "id": "zol", "code": ndc("71894-127-05")}
    request = med(
        "MedicationRequest",
        "active",
        "req",
        medicationReference={"reference": "Medication/zol"},
        authoredOn="2026-11-01",
    )
    facts = read(medication, request)
    assert [e.reference for e in facts.prior_gene_therapy] == ["MedicationRequest/req"]
    assert facts.prior_gene_therapy[0].date == dt.date(2026, 11, 1)


def test_request_referencing_an_unrelated_medication_is_not_counted() -> None:
    medication = {"resourceType": "Medication", "id": "amox", "code": ndc("0093-4155-73")}
    request = med(
        "MedicationRequest", "active", medicationReference={"reference": "Medication/amox"}
    )
    assert read(medication, request).prior_gene_therapy == ()


def test_request_written_by_this_app_is_not_counted() -> None:
    request = med(
        "MedicationRequest",
        "active",
        "own",
        medicationCodeableConcept=ndc(ZOLGENSMA_NDC),
        identifier=[{"system": f"{codes.APP_IDENTIFIER}/medication-request", "value": "plan-1"}],
    )
    assert read(request).prior_gene_therapy == ()


def test_request_with_a_foreign_identifier_is_counted() -> None:
    request = med(
        "MedicationRequest",
        "active",
        "theirs",
        medicationCodeableConcept=ndc(ZOLGENSMA_NDC),
        identifier=[{"system": "urn:oid:2.16.840.1.113883.3.9999.7", "value": "ord-9"}],
    )
    assert len(read(request).prior_gene_therapy) == 1


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        ("MedicationAdministration", "not-done"),
        ("MedicationAdministration", "entered-in-error"),
        ("MedicationStatement", "not-taken"),
        ("MedicationStatement", "entered-in-error"),
        ("MedicationRequest", "entered-in-error"),
        ("MedicationRequest", "cancelled"),
    ],
)
def test_medication_not_given_is_not_counted(kind: str, status: str) -> None:
    assert (
        read(med(kind, status, medicationCodeableConcept=ndc(ZOLGENSMA_NDC))).prior_gene_therapy
        == ()
    )


# Advanced SMA ----------------------------------------------------------------------------------


def test_tracheostomy_procedure() -> None:
    procedure = {
        "resourceType": "Procedure",
        "id": "trach",
        "status": "completed",
        "code": concept(codes.SNOMED, "48387007"),
        "subject": {"reference": f"Patient/{PATIENT}"},
        "performedDateTime": "2026-10-02",
    }
    facts = read(procedure)
    assert [e.reference for e in facts.advanced_sma] == ["Procedure/trach"]
    assert facts.advanced_sma[0].date == dt.date(2026, 10, 2)


def test_planned_tracheostomy_procedure_is_not_counted() -> None:
    procedure = {
        "resourceType": "Procedure",
        "status": "preparation",
        "code": concept(codes.SNOMED, "48387007"),
        "subject": {"reference": f"Patient/{PATIENT}"},
    }
    assert read(procedure).advanced_sma == ()


def test_ventilator_dependence_condition() -> None:
    facts = read(condition(codes.ICD10CM, "Z99.11", cid="vent"))
    assert [e.reference for e in facts.advanced_sma] == ["Condition/vent"]


def test_tracheostomy_tube_device() -> None:
    device = {
        "resourceType": "Device",
        "id": "tube",
        "status": "active",
        "type": {"text": "Tracheostomy tube"},
        "patient": {"reference": f"Patient/{PATIENT}"},
    }
    facts = read(device)
    assert [e.reference for e in facts.advanced_sma] == ["Device/tube"]


def test_inactive_device_is_not_counted() -> None:
    device = {
        "resourceType": "Device",
        "status": "inactive",
        "type": {"text": "Tracheostomy tube"},
        "patient": {"reference": f"Patient/{PATIENT}"},
    }
    assert read(device).advanced_sma == ()


# Subject -----------------------------------------------------------------------------------------


def test_resource_about_another_patient_is_unreadable_and_not_used() -> None:
    facts = read(
        weight("6.0", "2026-11-18", "theirs", subject="Patient/someone-else"),
        condition(codes.ICD10CM, "J21.0", cid="their-rsv", subject={"reference": "Patient/x"}),
    )
    assert facts.weights_kg == ()
    assert facts.active_infections == ()
    refs = {u.evidence.reference: u.reason for u in facts.unreadable}
    assert "Patient/someone-else" in refs["Observation/theirs"]
    assert "Patient/x" in refs["Condition/their-rsv"]


def test_subject_by_full_url_is_the_patient() -> None:
    obs = weight("6.0", "2026-11-18", "w")
    obs["subject"] = {"reference": f"urn:uuid:{PATIENT}"}
    assert len(read(obs).weights_kg) == 1


# Bundle errors -----------------------------------------------------------------------------------


def test_parse_bundle_json_keeps_exact_decimals() -> None:
    data = parse_bundle_json('{"resourceType": "Bundle", "x": 0.1}')
    assert data["x"] == Decimal("0.1")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{not json", "not JSON"),
        ("", "not JSON"),
        ("[]", "not a FHIR Bundle"),
        ('"Bundle"', "not a FHIR Bundle"),
        ('{"resourceType": "Patient", "id": "p1"}', "'Patient'"),
        ('{"type": "collection"}', "not a FHIR Bundle"),
    ],
    ids=["invalid", "empty", "array", "string", "patient", "no-resource-type"],
)
def test_parse_bundle_json_rejects(text: str, fragment: str) -> None:
    with pytest.raises(BundleError, match=fragment):
        parse_bundle_json(text)


def test_bundle_error_is_an_input_error() -> None:
    assert issubclass(BundleError, InputError)


@pytest.mark.parametrize("kind", ["document", "message", "history", None])
def test_bundle_type_not_accepted(kind: str | None) -> None:
    data = bundle(kind="x")
    data["type"] = kind
    with pytest.raises(BundleError, match=r"Bundle\.type"):
        facts_from_bundle(data)


@pytest.mark.parametrize("kind", ["collection", "searchset", "transaction"])
def test_bundle_type_accepted(kind: str) -> None:
    assert facts_from_bundle(bundle(kind=kind)).patient_id == PATIENT


def test_bundle_without_patient() -> None:
    data = bundle(weight("6", "2026-11-18", "w"))
    data["entry"] = data["entry"][1:]
    with pytest.raises(BundleError, match="no Patient"):
        facts_from_bundle(data)


def test_bundle_with_two_patients() -> None:
    data = bundle()
    data["entry"].append({"resource": patient("p2")})
    with pytest.raises(BundleError, match="2 Patients"):
        facts_from_bundle(data)


def test_patient_id_from_full_url() -> None:
    data = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "fullUrl": "http://ehr.example/fhir/Patient/abc",
                "resource": {"resourceType": "Patient", "birthDate": BIRTH},
            }
        ],
    }
    assert facts_from_bundle(data).patient_id == "abc"


# Birth date --------------------------------------------------------------------------------------


def test_full_birth_date() -> None:
    facts = read()
    assert facts.birth_date == dt.date(2026, 6, 10)
    assert facts.unreadable == ()


@pytest.mark.parametrize("birth", ["2025-06", "2025", "2025-02-30"])
def test_partial_or_invalid_birth_date_is_unreadable(birth: str) -> None:
    facts = read(birth_date=birth)
    assert facts.birth_date is None
    assert len(facts.unreadable) == 1
    entry = facts.unreadable[0]
    assert entry.what == "birth date"
    assert birth in entry.reason
    assert entry.evidence.reference == f"Patient/{PATIENT}"


def test_missing_birth_date_is_none_without_unreadable() -> None:
    facts = read(birth_date=None)
    assert facts.birth_date is None
    assert facts.unreadable == ()


def test_observation_dated_before_birth_is_unreadable() -> None:
    facts = read(weight("3.1", "2026-06-01", "before-birth"))
    assert facts.weights_kg == ()
    assert [u.evidence.reference for u in facts.unreadable] == ["Observation/before-birth"]
    assert "before the birth date" in facts.unreadable[0].reason


def test_prenatal_gestation_and_genetics_are_kept() -> None:
    facts = read(
        observation("76516-4", oid="ga", when="2026-06-01", **_value(39, "wk")),
        observation("111768-8", oid="smn1", when="2026-05-01", valueInteger=0),
    )
    assert [g.value for g in facts.gestational_age_days] == [273]
    assert [m.value for m in facts.smn1_copies] == [0]
    assert facts.unreadable == ()


# Fixes found in review -------------------------------------------------------------------------


def test_newest_weight_is_the_latest_instant_across_midnight_and_time_zones() -> None:
    tokyo = weight(5.1, "2026-11-19T01:00:00+09:00", "tokyo")  # 2026-11-18T16:00Z
    boston = weight(5.2, "2026-11-18T20:00:00-05:00", "boston")  # 2026-11-19T01:00Z, later
    facts = read(tokyo, boston)
    assert [m.evidence.reference for m in facts.weights_kg] == [
        "Observation/boston",
        "Observation/tokyo",
    ]


def _alt_with_age_bands(when: str) -> dict[str, Any]:
    """ALT with two month-banded normal ranges, as labs print them: 0-11 mo and 12-23 mo."""

    def band(low: int, high: int, uln: int) -> dict[str, Any]:
        return {
            "high": {"value": uln, "unit": "U/L", "system": codes.UCUM, "code": "U/L"},
            "age": {
                "low": {"value": low, "unit": "mo", "system": codes.UCUM, "code": "mo"},
                "high": {"value": high, "unit": "mo", "system": codes.UCUM, "code": "mo"},
            },
        }

    return observation(
        "1742-6",
        when=when,
        valueQuantity={"value": 30, "unit": "U/L", "system": codes.UCUM, "code": "U/L"},
        referenceRange=[band(0, 11, 56), band(12, 23, 39)],
    )


@pytest.mark.parametrize(
    ("when", "uln"),
    [
        ("2027-05-09", Decimal(56)),  # 10 completed months (born 2026-06-10)
        ("2027-05-16", Decimal(56)),  # 11 months 6 days: still "11 mo", not a gap
        ("2027-06-09", Decimal(56)),  # the day before the first birthday
        ("2027-06-10", Decimal(39)),  # 12 completed months
    ],
)
def test_age_banded_reference_ranges_use_completed_months(when: str, uln: Decimal) -> None:
    (lab,) = read(_alt_with_age_bands(when)).labs
    assert lab.reported_uln == uln


@pytest.mark.parametrize("birth", ["2026-06-10junk", "2026-06-10T25:99"])
def test_dates_with_trailing_garbage_are_not_dates(birth: str) -> None:
    facts = read(birth_date=birth)
    assert facts.birth_date is None
    assert any(u.what == "birth date" for u in facts.unreadable)


# One child, one weight: comparators, subjects, time taken, ties ---------------------------------


def unread(facts: PatientFacts) -> dict[str, str]:
    """Reason for each unreadable resource, by reference."""
    return {u.evidence.reference: u.reason for u in facts.unreadable}


@pytest.mark.parametrize("symbol", ["<", "<=", ">", ">="])
def test_weight_with_a_comparator_is_unreadable_not_a_dosing_weight(symbol: str) -> None:
    censored = weight("6.1", "2026-11-18", "censored")
    censored["valueQuantity"]["comparator"] = symbol
    facts = read(weight("5.9", "2026-11-01", "older"), censored)
    assert [w.evidence.reference for w in facts.weights_kg] == ["Observation/older"]
    (entry,) = facts.unreadable
    assert (entry.what, entry.evidence.reference) == ("body weight", "Observation/censored")
    assert entry.evidence.value == f"{symbol}6.1"
    assert "bound, not a value" in entry.reason


@pytest.mark.parametrize(
    ("loinc", "value", "bucket"),
    [
        ("76516-4", {"value": 37, "code": "wk", "comparator": "<"}, "gestational_age_days"),
        ("8310-5", {"value": 38, "code": "Cel", "comparator": ">"}, "temperatures_c"),
        ("97654-8", {"value": 4, "code": "{copies}", "comparator": ">="}, "smn2_copies"),
    ],
)
def test_other_censored_measurements_are_unreadable(
    loinc: str, value: dict[str, Any], bucket: str
) -> None:
    facts = read(observation(loinc, oid="censored", valueQuantity=value))
    assert getattr(facts, bucket) == ()
    assert "bound, not a value" in unread(facts)["Observation/censored"]


def test_censored_lab_keeps_its_comparator() -> None:
    obs = observation("1742-6", oid="alt", valueQuantity={"value": 5, "code": "U/L"})
    obs["valueQuantity"]["comparator"] = "<"
    (lab,) = read(obs).labs
    assert (lab.value, lab.comparator) == (5, Comparator.LT)


@pytest.mark.parametrize("symbol", ["ad", "=", "~", "less than"])
def test_a_comparator_fhir_does_not_define_is_unreadable(symbol: str) -> None:
    odd = weight("6.1", "2026-11-18", "odd")
    odd["valueQuantity"]["comparator"] = symbol
    facts = read(odd)
    assert facts.weights_kg == ()
    assert "not a FHIR comparator" in unread(facts)["Observation/odd"]


def _with_subject(subject: Any, key: str = "subject") -> dict[str, Any]:
    obs = weight("6.0", "2026-11-18", "w")
    del obs["subject"]
    if subject is not None:
        obs[key] = subject
    return obs


@pytest.mark.parametrize(
    ("subject", "fragment"),
    [
        (None, "has no subject"),
        ({"display": "Baby Lee"}, "not a reference to a patient"),
        ({"reference": 7}, "not a reference to a patient"),
        ({"reference": ""}, "not a reference to a patient"),
        ("Patient/p1", "not a reference to a patient"),
        ({"reference": "Patient/p2"}, "refers to Patient/p2"),
        ({"reference": "Group/p1"}, "refers to Group/p1"),
        ({"reference": "Patient/p1/_history/2"}, "refers to Patient/p1/_history/2"),
        ({"reference": "http://other.example/fhir/Patient/p1"}, "other.example"),
        ({"reference": "urn:uuid:someone-else"}, "urn:uuid:someone-else"),
    ],
    ids=[
        "missing",
        "display-only",
        "not-a-string",
        "empty",
        "not-an-object",
        "other-patient",
        "other-type",
        "versioned",
        "other-server",
        "other-full-url",
    ],
)
def test_result_without_this_patient_as_subject_is_unreadable(subject: Any, fragment: str) -> None:
    facts = read(_with_subject(subject))
    assert facts.weights_kg == ()
    (entry,) = facts.unreadable
    assert (entry.what, entry.evidence.reference) == ("Observation", "Observation/w")
    assert fragment in entry.reason


def test_patient_element_is_not_an_observation_subject() -> None:
    facts = read(_with_subject({"reference": f"Patient/{PATIENT}"}, key="patient"))
    assert facts.weights_kg == ()
    assert "has no subject" in unread(facts)["Observation/w"]


def test_condition_without_subject_is_not_counted() -> None:
    rsv = condition(codes.ICD10CM, "J21.0", cid="rsv")
    del rsv["subject"]
    facts = read(rsv)
    assert facts.active_infections == ()
    assert "has no subject" in unread(facts)["Condition/rsv"]


def test_device_is_about_the_patient_by_its_patient_element() -> None:
    device = {
        "resourceType": "Device",
        "id": "vent",
        "status": "active",
        "type": {"text": "home ventilator, ventilator dependent"},
    }
    assert "has no patient" in unread(read(device))["Device/vent"]
    device["patient"] = {"reference": f"Patient/{PATIENT}"}
    assert [e.reference for e in read(device).advanced_sma] == ["Device/vent"]


def _absolute_bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    """A Bundle whose Patient has an absolute fullUrl on ehr.example."""
    data = bundle(*resources)
    data["entry"][0]["fullUrl"] = f"http://ehr.example/fhir/Patient/{PATIENT}"
    return data


def test_subject_by_the_patients_absolute_full_url_is_the_patient() -> None:
    obs = _with_subject({"reference": f"http://ehr.example/fhir/Patient/{PATIENT}"})
    facts = facts_from_bundle(_absolute_bundle(obs))
    assert [w.evidence.reference for w in facts.weights_kg] == ["Observation/w"]
    assert facts.unreadable == ()


@pytest.mark.parametrize(
    "reference",
    [
        f"http://other.example/fhir/Patient/{PATIENT}",
        f"https://ehr.example/fhir/Patient/{PATIENT}",
        f"http://ehr.example/Patient/{PATIENT}",
    ],
)
def test_absolute_url_on_another_server_is_not_the_patient(reference: str) -> None:
    facts = facts_from_bundle(_absolute_bundle(_with_subject({"reference": reference})))
    assert facts.weights_kg == ()
    assert reference in unread(facts)["Observation/w"]


def test_relative_subject_still_works_beside_an_absolute_full_url() -> None:
    facts = facts_from_bundle(_absolute_bundle(weight("6.0", "2026-11-18", "w")))
    assert len(facts.weights_kg) == 1


SERVER = "http://fhir.test/fhir"


def _record(subject: str, *, base_url: str | None = SERVER) -> PatientFacts:
    """Facts of a record read from SERVER, one weight with `subject`."""
    record = PatientRecord(
        patient_id=PATIENT,
        resources=[patient(), _with_subject({"reference": subject})],
        base_url=base_url,
    )
    return facts_from_bundle(record.bundle())


@pytest.mark.parametrize("subject", [f"Patient/{PATIENT}", f"{SERVER}/Patient/{PATIENT}"])
def test_server_record_accepts_relative_and_same_server_subjects(subject: str) -> None:
    facts = _record(subject)
    assert [w.evidence.reference for w in facts.weights_kg] == ["Observation/w"]
    assert facts.unreadable == ()


@pytest.mark.parametrize(
    "subject",
    [f"http://elsewhere.test/fhir/Patient/{PATIENT}", f"{SERVER}/Patient/someone-else"],
)
def test_server_record_refuses_other_servers_and_patients(subject: str) -> None:
    facts = _record(subject)
    assert facts.weights_kg == ()
    assert subject in unread(facts)["Observation/w"]


def test_record_without_a_base_has_relative_full_urls() -> None:
    assert _record(f"{SERVER}/Patient/{PATIENT}", base_url=None).weights_kg == ()
    record = PatientRecord(patient_id=PATIENT, resources=[patient(), {"resourceType": "Basic"}])
    assert [e.get("fullUrl") for e in record.bundle()["entry"]] == [f"Patient/{PATIENT}", None]


@pytest.mark.parametrize(
    ("when", "taken_at"),
    [
        ("2026-11-18T10:00:00-05:00", dt.datetime(2026, 11, 18, 15, 0, tzinfo=dt.UTC)),
        ("2026-11-18T23:30:00Z", dt.datetime(2026, 11, 18, 23, 30, tzinfo=dt.UTC)),
        ("2026-11-19T01:00:00+09:00", dt.datetime(2026, 11, 18, 16, 0, tzinfo=dt.UTC)),
        ("2026-11-18", None),
        ("2026-11-18T10:00:00", None),
    ],
    ids=["offset", "zulu", "across-midnight", "date-only", "no-zone"],
)
def test_taken_at_is_the_utc_moment_when_a_time_is_recorded(
    when: str, taken_at: dt.datetime | None
) -> None:
    (w,) = read(weight("6.0", when, "w")).weights_kg
    assert w.taken_at == taken_at
    if taken_at is not None:
        assert w.taken_at.utcoffset() == dt.timedelta(0)


def test_taken_at_past_the_calendar_is_none_not_an_overflow() -> None:
    facts = read(weight("6.0", "9999-12-31T23:00:00-05:00", "far"))
    (w,) = facts.weights_kg
    assert (w.effective, w.taken_at) == (dt.date(9999, 12, 31), None)


def _ids(facts: PatientFacts) -> list[tuple[Decimal, str]]:
    return [(w.value, w.evidence.reference) for w in facts.weights_kg]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("2026-11-18", "2026-11-18"),
        ("2026-11-18T10:00:00-05:00", "2026-11-18T15:00:00Z"),
    ],
    ids=["same-date", "same-instant"],
)
def test_tied_weights_are_ordered_heavier_first_whatever_their_ids(first: str, second: str) -> None:
    facts = read(weight("6.6", first, "a"), weight("6.1", second, "b"))
    swapped = read(weight("6.6", first, "b"), weight("6.1", second, "a"))
    assert [w.value for w in facts.weights_kg] == [Decimal("6.6"), Decimal("6.1")]
    assert [w.value for w in swapped.weights_kg] == [Decimal("6.6"), Decimal("6.1")]
    assert _ids(facts) == [(Decimal("6.6"), "Observation/a"), (Decimal("6.1"), "Observation/b")]
    assert _ids(swapped) == [(Decimal("6.6"), "Observation/b"), (Decimal("6.1"), "Observation/a")]


def test_tied_lab_results_are_ordered_by_value_not_id() -> None:
    def alt(value: int, oid: str) -> dict[str, Any]:
        return observation("1742-6", oid=oid, **_value(value, "U/L"))

    for facts in (read(alt(90, "a"), alt(30, "b")), read(alt(90, "b"), alt(30, "a"))):
        assert [lab.value for lab in facts.labs_for(LabTest.ALT)] == [90, 30]


# Liver disease Conditions (section 8.6) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("system", "code"),
    [
        (codes.ICD10CM, "K70.30"),
        (codes.ICD10CM, "K72.90"),
        (codes.ICD10CM, "K74.60"),
        (codes.ICD10CM, "K76.0"),
        (codes.ICD10CM, "K77"),
        (codes.SNOMED, "235856003"),
        (codes.SNOMED, "197321007"),
        (codes.SNOMED, "19943007"),
        (codes.SNOMED, "59927004"),
    ],
)
def test_liver_disease_condition_is_read(system: str, code: str) -> None:
    cond = condition(system, code, cid="liver", onsetDateTime="2026-09-01")
    cond["code"]["text"] = "Liver disease"
    facts = read(cond)
    (evidence,) = facts.liver_conditions
    assert evidence.reference == "Condition/liver"
    assert (evidence.value, evidence.display) == ("Liver disease", "Liver disease")
    assert evidence.date == dt.date(2026, 9, 1)
    assert facts.active_infections == ()


@pytest.mark.parametrize(
    ("system", "code"),
    [
        (codes.ICD10CM, "K80.20"),
        (codes.ICD10CM, "K7"),
        (codes.ICD10CM, "B18.1"),
        (codes.ICD10CM, "P59.9"),
        (codes.SNOMED, "66071002"),
        ("http://example.org/local", "K74.60"),
    ],
)
def test_other_conditions_are_not_liver_disease(system: str, code: str) -> None:
    assert read(condition(system, code)).liver_conditions == ()


@pytest.mark.parametrize(
    ("clinical", "verification", "fields", "counted"),
    [
        ("active", "confirmed", {}, True),
        ("recurrence", "provisional", {}, True),
        (None, None, {}, True),
        ("resolved", "confirmed", {}, False),
        ("inactive", "confirmed", {}, False),
        ("active", "refuted", {}, False),
        ("active", "entered-in-error", {}, False),
        (None, "confirmed", {"abatementDateTime": "2026-10-01"}, False),
    ],
)
def test_liver_conditions_follow_the_infection_activity_rules(
    clinical: str | None, verification: str | None, fields: dict[str, Any], counted: bool
) -> None:
    cond = condition(
        codes.ICD10CM, "K74.60", clinical=clinical, verification=verification, **fields
    )
    assert bool(read(cond).liver_conditions) is counted


# A reader that never crashes: ill-typed elements make their resource unreadable ---------------


def _alt(**fields: Any) -> dict[str, Any]:
    return observation(
        "1742-6",
        oid="alt",
        valueQuantity={"value": 28, "unit": "U/L", "system": codes.UCUM, "code": "U/L"},
        referenceRange=[{"high": {"value": 45, "unit": "U/L", "code": "U/L"}}],
        **fields,
    )


def _set(resource: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """`resource` with the element at a slash path replaced."""
    *parents, last = path.split("/")
    node: Any = resource
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[int(last) if isinstance(node, list) else last] = value
    return resource


ILL_TYPED = [
    ("code/coding", 5, "code.coding is not a list"),
    ("code/coding", "29463-7", "code.coding is not a list"),
    ("code/coding/0", "29463-7", "code.coding[0] is not an object"),
    ("code/coding/0/code", 29463, "code.coding[0].code is not a string"),
    ("code/coding/0/system", [codes.LOINC], "code.coding[0].system is not a string"),
    ("code", "body weight", "code is not a CodeableConcept"),
    ("code/text", {"en": "weight"}, "code.text is not a string"),
    ("valueQuantity/code", 7, "is not a string"),
    ("valueQuantity/unit", ["kg"], "is not a string"),
    ("valueQuantity/comparator", 1, "valueQuantity.comparator is not a string"),
    ("valueQuantity", [6.0], "valueQuantity is not an object"),
    ("status", ["final"], "status is not a string"),
    ("effectiveDateTime", 20261118, "effectiveDateTime is not a string"),
    ("id", 12, "id is not a string"),
]


@pytest.mark.parametrize(("path", "value", "fragment"), ILL_TYPED)
def test_ill_typed_weight_element_makes_the_weight_unreadable(
    path: str, value: Any, fragment: str
) -> None:
    bad = _set(weight("9.9", "2026-11-18", "bad"), path, value)
    facts = read(weight("6.0", "2026-11-01", "good"), bad)
    assert [w.evidence.reference for w in facts.weights_kg] == ["Observation/good"]
    reasons = [u.reason for u in facts.unreadable]
    assert len(reasons) == 1
    assert fragment in reasons[0]


def test_ill_typed_effective_period_is_unreadable() -> None:
    obs = weight("6.0", "x", "p")
    del obs["effectiveDateTime"]
    obs["effectivePeriod"] = "2026-11-18"
    facts = read(obs)
    assert facts.weights_kg == ()
    assert "effectivePeriod is not an object" in unread(facts)["Observation/p"]


@pytest.mark.parametrize(
    ("path", "value", "fragment"),
    [
        ("referenceRange", "0-45 U/L", "referenceRange is not a list"),
        ("referenceRange/0", "0-45", "referenceRange[0] is not an object"),
        ("referenceRange/0/high", 45, "referenceRange[0].high is not an object"),
        ("referenceRange/0/high/code", {"code": "U/L"}, "referenceRange[0].high.code is not a"),
        ("referenceRange/0/type", "normal", "referenceRange[0].type is not a CodeableConcept"),
        ("referenceRange/0/age", "0-11 mo", "referenceRange[0].age is not an object"),
    ],
)
def test_ill_typed_reference_range_makes_the_lab_unreadable(
    path: str, value: Any, fragment: str
) -> None:
    facts = read(_set(_alt(), path, value))
    assert facts.labs == ()
    assert fragment in unread(facts)["Observation/alt"]


def test_well_typed_alt_is_read_with_its_uln() -> None:
    (lab,) = read(_alt()).labs
    assert (lab.value, lab.reported_uln) == (28, 45)


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("clinicalStatus", "active", "clinicalStatus is not a CodeableConcept"),
        ("verificationStatus", {"coding": "confirmed"}, "verificationStatus.coding is not"),
        ("code", ["J21.0"], "code is not a CodeableConcept"),
        ("onsetDateTime", 2026, "onsetDateTime is not a string"),
    ],
)
def test_ill_typed_condition_is_unreadable_not_counted(
    field: str, value: Any, fragment: str
) -> None:
    rsv = condition(codes.ICD10CM, "J21.0", cid="rsv")
    rsv[field] = value
    facts = read(rsv)
    assert facts.active_infections == ()
    assert fragment in unread(facts)["Condition/rsv"]


def test_ill_typed_medication_is_unreadable_and_is_zolgensma_stays_false() -> None:
    given = med("MedicationAdministration", "completed", medicationCodeableConcept="Zolgensma")
    facts = read(given)
    assert facts.prior_gene_therapy == ()
    assert "medicationCodeableConcept is not" in unread(facts)["MedicationAdministration/med"]
    assert is_zolgensma("Zolgensma") is False
    assert is_zolgensma({"coding": 5}) is False


def test_ill_typed_identifier_is_unreadable() -> None:
    order = med("MedicationRequest", "active", identifier={"system": codes.APP_IDENTIFIER})
    assert "identifier is not a list" in unread(read(order))["MedicationRequest/med"]


@pytest.mark.parametrize(
    "number",
    ["9" * 5000, "1e999999999999999999", "1e-999999999999999999", "-1e999999999999999999"],
    ids=["5000-digits", "huge-exponent", "tiny-exponent", "negative-huge"],
)
def test_absurd_numbers_make_the_weight_unreadable(number: str) -> None:
    text = json.dumps(bundle(weight("@@", "2026-11-18", "absurd"))).replace('"@@"', number)
    facts = facts_from_bundle(parse_bundle_json(text))
    assert facts.weights_kg == ()
    assert [u.evidence.reference for u in facts.unreadable] == ["Observation/absurd"]


def test_a_5000_digit_titer_is_ambiguous_not_a_crash() -> None:
    (t,) = read(titer(valueString=f"1:{'9' * 5000}")).titers
    assert t.denominator is None


@pytest.mark.parametrize(
    ("entries", "fragment"),
    [
        ({"resourceType": "Observation"}, "Bundle.entry is not a list"),
        ("entries", "Bundle.entry is not a list"),
    ],
)
def test_entry_that_is_not_a_list_is_a_bundle_error(entries: Any, fragment: str) -> None:
    data = bundle()
    data["entry"] = entries
    with pytest.raises(BundleError, match=fragment):
        facts_from_bundle(data)


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ("not an entry", "it is not an object"),
        ({"resource": ["Observation"]}, "its resource is not an object"),
        ({"fullUrl": 5, "resource": {"resourceType": "Observation"}}, "fullUrl is not a string"),
    ],
)
def test_unusable_bundle_entry_is_unreadable(entry: Any, fragment: str) -> None:
    data = bundle(weight("6.0", "2026-11-18", "w"))
    data["entry"].append(entry)
    facts = facts_from_bundle(data)
    assert len(facts.weights_kg) == 1
    assert fragment in unread(facts)["Bundle.entry[2]"]


@pytest.mark.parametrize("kind", [5, ["collection"], {"type": "collection"}])
def test_ill_typed_bundle_type_is_a_bundle_error(kind: Any) -> None:
    data = bundle()
    data["type"] = kind
    with pytest.raises(BundleError, match=r"Bundle\.type"):
        facts_from_bundle(data)


def test_ill_typed_patient_id_is_a_bundle_error() -> None:
    data = bundle()
    data["entry"][0]["resource"]["id"] = 42
    with pytest.raises(BundleError, match="id is not a string"):
        facts_from_bundle(data)


@pytest.mark.parametrize("birth", [20260610, ["2026-06-10"], {"value": "2026-06-10"}])
def test_ill_typed_birth_date_is_unreadable(birth: Any) -> None:
    facts = read(birth_date=birth)
    assert facts.birth_date is None
    assert [u.what for u in facts.unreadable] == ["birth date"]


def test_long_resource_type_in_the_error_is_cut_short() -> None:
    with pytest.raises(BundleError) as caught:
        parse_bundle_json(json.dumps({"resourceType": ["x" * 500]}))
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize(
    "escape",
    ["\\ud800", "\\udfff", "x\\udc00", "\\ude42\\ud83d"],
    ids=["high", "low", "mid", "swapped"],
)
def test_lone_surrogate_escape_is_a_bundle_error(escape: str) -> None:
    text = json.dumps(bundle(weight("6.0", "2026-11-18", "w"))).replace('"kg"', f'"{escape}"', 1)
    with pytest.raises(BundleError, match="surrogate"):
        parse_bundle_json(text)


def test_surrogate_pair_escape_is_read() -> None:
    obs = weight("6.0", "2026-11-18", "w")
    obs["code"]["text"] = "@@"
    text = json.dumps(bundle(obs)).replace('"@@"', '"weight \\ud83d\\ude42"')
    (w,) = facts_from_bundle(parse_bundle_json(text)).weights_kg
    assert w.evidence.display == "weight \U0001f642"


# Medication references that cannot be followed ---------------------------------------------


def unresolved(facts: PatientFacts) -> list[Finding]:
    """The medication-unresolved findings of the facts."""
    return [f for f in facts.read_findings if f.code is FindingCode.MEDICATION_UNRESOLVED]


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        ("MedicationAdministration", "completed"),
        ("MedicationStatement", "active"),
        ("MedicationRequest", "active"),
    ],
)
def test_reference_to_a_medication_not_in_the_bundle_is_a_needs_review_finding(
    kind: str, status: str
) -> None:
    use = med(kind, status, "use", medicationReference={"reference": "Medication/elsewhere"})
    facts = read(use)
    (finding,) = unresolved(facts)
    assert finding.severity is Severity.NEEDS_REVIEW
    assert finding.section == "1; 6.2"
    assert f"{kind}/use names its medication by 'Medication/elsewhere'" in finding.message
    assert "it is not in the Bundle" in finding.message
    assert [(e.reference, e.value) for e in finding.evidence] == [
        (f"{kind}/use", "Medication/elsewhere")
    ]
    assert facts.prior_gene_therapy == ()


def test_unresolved_reference_whose_display_names_zolgensma_is_a_prior_dose() -> None:
    use = med(
        "MedicationAdministration",
        "completed",
        "given",
        medicationReference={"reference": "Medication/kit", "display": "Zolgensma kit"},
    )
    facts = read(use)
    assert [e.reference for e in facts.prior_gene_therapy] == ["MedicationAdministration/given"]
    assert unresolved(facts) == []


def test_unresolved_reference_keeps_its_display_in_the_message() -> None:
    use = med(
        "MedicationStatement",
        "active",
        "stmt",
        medicationReference={"reference": "Medication/x", "display": "gene therapy"},
    )
    (finding,) = unresolved(read(use))
    assert "(shown as 'gene therapy')" in finding.message


def test_contained_medication_is_followed() -> None:
    use = med(
        "MedicationAdministration",
        "completed",
        "given",
        contained=[{"resourceType": "Medication", "id": "kit", "code": ndc(ZOLGENSMA_NDC)}],
        medicationReference={"reference": "#kit"},
    )
    facts = read(use)
    assert [e.reference for e in facts.prior_gene_therapy] == ["MedicationAdministration/given"]
    assert unresolved(facts) == []


def test_contained_reference_to_nothing_is_unresolved() -> None:
    use = med("MedicationAdministration", "completed", medicationReference={"reference": "#kit"})
    (finding,) = unresolved(read(use))
    assert "the resource contains no Medication #kit" in finding.message


@pytest.mark.parametrize(
    "reference",
    ["Medication/kit/_history/3", "http://ehr.example/fhir/Medication/kit"],
    ids=["versioned", "absolute"],
)
def test_versioned_and_absolute_references_are_followed(reference: str) -> None:
    medication = {"resourceType": "Medication", "id": "kit", "code": ndc(ZOLGENSMA_NDC)}
    use = med("MedicationStatement", "completed", "s", medicationReference={"reference": reference})
    data = bundle(medication, use)
    data["entry"][1]["fullUrl"] = "http://ehr.example/fhir/Medication/kit"
    facts = facts_from_bundle(parse_bundle_json(json.dumps(data)))
    assert [e.reference for e in facts.prior_gene_therapy] == ["MedicationStatement/s"]
    assert unresolved(facts) == []


def test_reference_without_a_literal_reference_is_unresolved() -> None:
    use = med("MedicationRequest", "active", "req", medicationReference={"display": "kit"})
    (finding,) = unresolved(read(use))
    assert "MedicationRequest/req names its medication by a reference" in finding.message
    assert "it is not a literal reference" in finding.message


@pytest.mark.parametrize(
    ("kind", "status"),
    [("MedicationAdministration", "not-done"), ("MedicationRequest", "cancelled")],
)
def test_unresolved_reference_of_a_medication_not_given_is_not_a_finding(
    kind: str, status: str
) -> None:
    use = med(kind, status, medicationReference={"reference": "Medication/elsewhere"})
    assert unresolved(read(use)) == []


def test_unresolved_reference_on_the_apps_own_order_is_not_a_finding() -> None:
    own = med(
        "MedicationRequest",
        "active",
        "own",
        medicationReference={"reference": "Medication/pred"},
        identifier=[{"system": f"{codes.APP_IDENTIFIER}/medication-request", "value": "plan-1"}],
    )
    assert unresolved(read(own)) == []


def test_the_reads_reason_replaces_the_bundle_default() -> None:
    use = med("MedicationAdministration", "completed", medicationReference={"reference": "M/x"})
    data = parse_bundle_json(json.dumps(bundle(use)))
    why = "it points to another server"
    facts = facts_from_bundle(data, notes=ReadNotes(unresolved=(("M/x", why),)))
    (finding,) = unresolved(facts)
    assert f"could not be read: {why}." in finding.message


def test_a_record_read_from_a_server_passes_its_notes_a_file_record_none() -> None:
    record = PatientRecord(patient_id=PATIENT, resources=[patient()])
    assert record.notes() is None
    record.base_url = "http://fhir.test/fhir"
    record.searched = ["Condition?patient=p1"]
    record.empty = ["Condition?patient=p1"]
    record.unresolved = {"Medication/b": "why b", "Medication/a": "why a"}
    notes = record.notes()
    assert notes is not None
    assert notes.all_empty
    assert notes.unresolved == (("Medication/a", "why a"), ("Medication/b", "why b"))


def test_titer_date_is_the_readers_titer() -> None:
    local = ("urn:lab", "AAV9AB")
    coded = titer(valueString="<1:25")
    text_only = observation({"text": "Anti-AAV9 total antibody"}, when="2026-11-02")
    weight_obs = weight("6.1", "2026-11-18", "w")
    assert titer_date(coded, frozenset()) == dt.date(2026, 11, 9)
    assert titer_date(text_only, frozenset()) == dt.date(2026, 11, 2)
    assert titer_date(weight_obs, frozenset()) is None
    assert titer_date(observation(local[1], system=local[0]), frozenset({local})) is not None
    assert titer_date({"resourceType": "Observation", "code": "AAV9"}, frozenset()) is None


# Decimals by value -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "unit"),
    [("3", "kg"), ("3.0", "kg"), ("3.000", "kg"), ("3000", "g"), ("3000.0", "g")],
)
def test_a_weight_is_one_value_whatever_its_spelling(number: str, unit: str) -> None:
    obs = observation("29463-7", oid="w", when="2026-11-18", **_value("@@", unit))
    text = json.dumps(bundle(obs)).replace('"@@"', number)
    (w,) = facts_from_bundle(parse_bundle_json(text)).weights_kg
    assert w.value == Decimal(3)
    assert str(w.value) == "3"
    assert w.evidence.value == number


def test_weights_spelled_differently_at_one_time_are_not_a_discrepancy() -> None:
    a = weight("@a", "2026-11-18T09:00:00Z", "a")
    b = weight("@b", "2026-11-18T09:00:00Z", "b")
    text = json.dumps(bundle(a, b)).replace('"@a"', "6.0").replace('"@b"', "6")
    facts = facts_from_bundle(parse_bundle_json(text))
    assert {str(w.value) for w in facts.weights_kg} == {"6"}
    together = weights_together(facts, on=dt.date(2026, 11, 20), policy=DEFAULT_POLICY)
    assert len(together) == 2
    assert not weights_disagree(together, policy=DEFAULT_POLICY)
