"""The sandbox EHR's synthetic patients: FHIR R4 resources dated relative to a given `today`."""

from __future__ import annotations

import copy
import datetime as dt
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from smart_app.fhir import codes
from smart_app.fhir.units import weight_to_kg
from smart_app.rules.dosing import dose_for_weight
from smart_app.rules.model import FindingCode, LabTest, Status
from smart_app.rules.monitoring import lab_draws
from smart_app.rules.policy import DEFAULT_POLICY

Resource = dict[str, Any]

OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
TEST_DATA_TAG = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
    "code": "HTEST",
    "display": "test health data",
}
MRN_SYSTEM = "https://sandbox-ehr.example/fhir/mrn"
UTC_OFFSET = "-05:00"
BUNDLE_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://sandbox-ehr.example/fhir")
"""fullUrls are urn:uuid:s derived from 'Type/id', so the same patients give the same Bundle."""


@dataclass(frozen=True)
class LabSpec:
    """How the sandbox reports one lab test: LOINC code, UCUM unit, normal range, usual value."""

    loinc: str
    display: str
    unit: str
    low: float
    high: float
    normal: float
    key: str


LABS: dict[LabTest, LabSpec] = {
    LabTest.AST: LabSpec("1920-8", "AST", "U/L", 10, 60, 38, "ast"),
    LabTest.ALT: LabSpec("1742-6", "ALT", "U/L", 5, 45, 24, "alt"),
    LabTest.BILIRUBIN_TOTAL: LabSpec("1975-2", "Bilirubin total", "mg/dL", 0.1, 1.2, 0.4, "tbil"),
    LabTest.ALBUMIN: LabSpec("1751-7", "Albumin", "g/dL", 3.4, 5.0, 4.0, "alb"),
    LabTest.PT: LabSpec("5902-2", "Prothrombin time", "s", 11.0, 14.5, 12.5, "pt"),
    LabTest.PTT: LabSpec("14979-9", "aPTT", "s", 25, 45, 33, "ptt"),
    LabTest.INR: LabSpec("6301-6", "INR", "{INR}", 0.8, 1.3, 1.0, "inr"),
    LabTest.CREATININE: LabSpec("2160-0", "Creatinine", "mg/dL", 0.1, 0.5, 0.24, "cre"),
    LabTest.HEMOGLOBIN: LabSpec("718-7", "Hemoglobin", "g/dL", 9.5, 14.0, 11.4, "hgb"),
    LabTest.PLATELETS: LabSpec("777-3", "Platelets", "10*3/uL", 150, 450, 318, "plt"),
    LabTest.TROPONIN_I: LabSpec("10839-9", "Troponin I", "ng/mL", 0, 0.04, 0.01, "tni"),
}
"""Every test the rules read, with the pediatric reference range the sandbox lab reports."""


@dataclass(frozen=True)
class SyntheticPatient:
    """One synthetic patient of the sandbox EHR."""

    patient_id: str
    name: str
    scenario: str
    expected_status: Status
    expected_codes: frozenset[FindingCode]
    infusion_date: dt.date
    in_plan_day: int | None
    resources: tuple[Resource, ...]


@dataclass(frozen=True)
class _Spec:
    """A patient as data: every date is derived from `today` and these day counts."""

    key: str
    name: tuple[str, str]
    gender: str
    scenario: str
    status: Status
    codes: frozenset[FindingCode]
    age_days: int
    """Age on the infusion date."""
    infusion_offset: int
    """Infusion date minus today: 1-14 for planning patients, negative for patients on a plan."""
    weight: float | None
    weight_unit: str = "kg"
    weight_days: int = 2
    """Days before the evaluation date the patient was weighed; the same for the items below."""
    labs_days: int = 4
    titer: str | None = "<1:25"
    titer_days: int = 16
    ga_weeks: int | None = 39
    smn1: int | None = 0
    smn2: int = 2
    diagnosed_age_days: int = 4
    birth_date_recorded: bool = True
    missing_labs: frozenset[LabTest] = frozenset()
    baseline: Mapping[LabTest, float] = field(default_factory=dict)
    followup: Mapping[int, Mapping[LabTest, float]] = field(default_factory=dict)
    """Post-infusion values by day (day 0 = infusion); unnamed tests are normal."""
    temperature_c: float = 36.8
    infection: bool = False
    prior_zolgensma_days: int | None = None
    """Days before the evaluation date ZOLGENSMA was given elsewhere."""


def _days(n: int) -> dt.timedelta:
    """`n` days."""
    return dt.timedelta(days=n)


def _at(day: dt.date, time: str = "08:00") -> str:
    """A local dateTime in the sandbox's time zone."""
    return f"{day.isoformat()}T{time}:00{UTC_OFFSET}"


def _concept(system: str, code: str, display: str, text: str | None = None) -> dict[str, Any]:
    """A one-coding CodeableConcept with text."""
    return {
        "coding": [{"system": system, "code": code, "display": display}],
        "text": text or display,
    }


def _quantity(value: float, unit: str) -> dict[str, Any]:
    """A UCUM Quantity."""
    return {"value": value, "unit": unit, "system": codes.UCUM, "code": unit}


def observation(
    pid: str,
    suffix: str,
    *,
    code: tuple[str, str, str],
    when: str,
    category: str,
    **value: Any,
) -> Resource:
    """A final Observation `<pid>-<suffix>` about the patient; `value` holds its value[x]."""
    system, code_value, display = code
    return {
        "resourceType": "Observation",
        "id": f"{pid}-{suffix}",
        "status": "final",
        "category": [{"coding": [{"system": OBS_CATEGORY, "code": category}]}],
        "code": _concept(system, code_value, display),
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when,
        **value,
    }


def lab(pid: str, test: LabTest, *, on: dt.date, tag: str, value: float | None = None) -> Resource:
    """A lab result with its normal reference range; the usual normal value unless given."""
    spec = LABS[test]
    obs = observation(
        pid,
        f"{spec.key}-{tag}",
        code=(codes.LOINC, spec.loinc, spec.display),
        when=_at(on, "08:00"),
        category="laboratory",
        valueQuantity=_quantity(spec.normal if value is None else value, spec.unit),
    )
    obs["referenceRange"] = [
        {
            "low": _quantity(spec.low, spec.unit),
            "high": _quantity(spec.high, spec.unit),
            "type": _concept(codes.REFERENCE_RANGE_MEANING, "normal", "Normal Range"),
        }
    ]
    return obs


def _patient(spec: _Spec, pid: str, birth: dt.date, index: int) -> Resource:
    """The Patient resource, tagged as test data."""
    given, family = spec.name
    patient: Resource = {
        "resourceType": "Patient",
        "id": pid,
        "meta": {"tag": [TEST_DATA_TAG]},
        "identifier": [{"system": MRN_SYSTEM, "value": f"SBX-{index:04d}"}],
        "name": [{"use": "official", "family": family, "given": [given]}],
        "gender": spec.gender,
    }
    if spec.birth_date_recorded:
        patient["birthDate"] = birth.isoformat()
    return patient


def _condition(
    pid: str, suffix: str, concept: dict[str, Any], *, onset: dt.date, recorded: dt.date
) -> Resource:
    """An active, confirmed Condition."""
    return {
        "resourceType": "Condition",
        "id": f"{pid}-{suffix}",
        "clinicalStatus": _concept(CONDITION_CLINICAL, "active", "Active"),
        "verificationStatus": _concept(CONDITION_VERIFICATION, "confirmed", "Confirmed"),
        "code": concept,
        "subject": {"reference": f"Patient/{pid}"},
        "onsetDateTime": onset.isoformat(),
        "recordedDate": recorded.isoformat(),
    }


def _baseline(spec: _Spec, pid: str, birth: dt.date, on: dt.date) -> list[Resource]:
    """Everything known on the evaluation date: diagnosis, genetics, vitals, labs, titer."""
    diagnosed = min(birth + _days(spec.diagnosed_age_days), on)
    sma_type = ("G12.0", "Infantile spinal muscular atrophy, type I [Werdnig-Hoffman]", "SMA 1")
    if spec.smn2 >= 3:
        sma_type = ("G12.1", "Other inherited spinal muscular atrophy", "SMA type 2")
    out = [
        _condition(
            pid,
            "sma",
            _concept(codes.ICD10CM, sma_type[0], sma_type[1], sma_type[2]),
            onset=diagnosed,
            recorded=diagnosed,
        ),
        observation(
            pid,
            "smn2",
            code=(codes.LOINC, "97654-8", "SMN2 copy number"),
            when=diagnosed.isoformat(),
            category="laboratory",
            valueInteger=spec.smn2,
        ),
        observation(
            pid,
            "temp",
            code=(codes.LOINC, "8310-5", "Body temperature"),
            when=_at(on, "07:30"),
            category="vital-signs",
            valueQuantity=_quantity(spec.temperature_c, "Cel"),
        ),
    ]
    if spec.smn1 is not None:
        out.append(
            observation(
                pid,
                "smn1",
                code=(codes.LOINC, "111768-8", "SMN1 copy number"),
                when=diagnosed.isoformat(),
                category="laboratory",
                valueInteger=spec.smn1,
            )
        )
    if spec.ga_weeks is not None:
        out.append(
            observation(
                pid,
                "ga",
                code=(codes.LOINC, "76516-4", "Gestational age at birth"),
                when=birth.isoformat(),
                category="exam",
                valueQuantity=_quantity(spec.ga_weeks, "wk"),
            )
        )
    if spec.weight is not None:
        out.append(
            _weight(pid, "weight", _at(on - _days(spec.weight_days), "09:10"), spec.weight, spec)
        )
    if spec.titer is not None:
        titer = observation(
            pid,
            "aav9",
            code=(codes.APP_CODES, "anti-aav9-titer", "Anti-AAV9 total antibody titer (ELISA)"),
            when=(on - _days(spec.titer_days)).isoformat(),
            category="laboratory",
            valueString=spec.titer,
        )
        titer["code"]["text"] = "AAV9 total antibody ELISA"
        out.append(titer)
    drawn = on - _days(spec.labs_days)
    out += [
        lab(pid, test, on=drawn, tag="b", value=spec.baseline.get(test))
        for test in LABS
        if test not in spec.missing_labs
    ]
    if spec.infection:
        out.append(
            _condition(
                pid,
                "rsv",
                _concept(
                    codes.ICD10CM,
                    "J21.0",
                    "Acute bronchiolitis due to respiratory syncytial virus",
                    "RSV bronchiolitis",
                ),
                onset=on - _days(2),
                recorded=on - _days(1),
            )
        )
    if spec.prior_zolgensma_days is not None:
        given = on - _days(spec.prior_zolgensma_days)
        out.append(
            {
                "resourceType": "MedicationAdministration",
                "id": f"{pid}-zolgensma",
                "status": "completed",
                "medicationCodeableConcept": _concept(
                    codes.NDC,
                    "71894-126-04",
                    "ZOLGENSMA (onasemnogene abeparvovec-xioi) kit, 5.6-6.0 kg",
                    "ZOLGENSMA kit 5.6-6.0 kg (given at another center)",
                ),
                "subject": {"reference": f"Patient/{pid}"},
                "effectiveDateTime": _at(given, "10:00"),
            }
        )
    return out


GROWTH_G_PER_DAY = 25
"""How fast the synthetic infants gain weight after infusion (so the day-30 dose changes)."""


def _weight(pid: str, suffix: str, when: str, value: float, spec: _Spec) -> Resource:
    """A body weight in the spec's unit."""
    return observation(
        pid,
        suffix,
        code=(codes.LOINC, "29463-7", "Body weight"),
        when=when,
        category="vital-signs",
        valueQuantity=_quantity(value, spec.weight_unit),
    )


def _kit_ndc(spec: _Spec) -> str:
    """The NDC of the kit the patient's baseline weight was dosed with."""
    dose = dose_for_weight(weight_to_kg(Decimal(str(spec.weight or 0)), spec.weight_unit))
    return dose.kit.ndc if dose else "71894"


def _followup(spec: _Spec, pid: str, infusion: dt.date, today: dt.date) -> list[Resource]:
    """After infusion: the ZOLGENSMA administration, weekly weights, and the scheduled draws
    up to and including today."""
    out: list[Resource] = [
        {
            "resourceType": "MedicationAdministration",
            "id": f"{pid}-zolgensma",
            "status": "completed",
            "medicationCodeableConcept": _concept(
                codes.NDC,
                _kit_ndc(spec),
                "ZOLGENSMA (onasemnogene abeparvovec-xioi) kit",
                "ZOLGENSMA infusion",
            ),
            "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": _at(infusion, "10:00"),
        }
    ]
    if spec.weight is not None:
        out += [
            _weight(
                pid,
                f"weight-d{day}",
                _at(infusion + _days(day), "07:50"),
                round(spec.weight + GROWTH_G_PER_DAY * day / 1000, 2),
                spec,
            )
            for day in range(7, (today - infusion).days + 1, 7)
        ]
    out += [
        lab(
            pid,
            test,
            on=draw.date,
            tag=f"d{draw.day}",
            value=spec.followup.get(draw.day, {}).get(test),
        )
        for draw in lab_draws(infusion, policy=DEFAULT_POLICY)
        if draw.date <= today
        for test in draw.tests
    ]
    return out


def _build(spec: _Spec, index: int, today: dt.date) -> SyntheticPatient:
    """Turn one spec into its patient and resources."""
    pid = f"zs-{spec.key}"
    infusion = today + _days(spec.infusion_offset)
    in_plan = spec.infusion_offset < 0
    on = infusion - _days(1) if in_plan else today
    birth = infusion - _days(spec.age_days)
    resources = [_patient(spec, pid, birth, index), *_baseline(spec, pid, birth, on)]
    if in_plan:
        resources += _followup(spec, pid, infusion, today)
    given, family = spec.name
    return SyntheticPatient(
        patient_id=pid,
        name=f"{given} {family}",
        scenario=spec.scenario,
        expected_status=spec.status,
        expected_codes=spec.codes,
        infusion_date=infusion,
        in_plan_day=(today - infusion).days if in_plan else None,
        resources=tuple(resources),
    )


F = FindingCode
S = Status
NONE: frozenset[FindingCode] = frozenset()

SPECS: tuple[_Spec, ...] = (
    # eligible, planning
    _Spec("eligible-4-2kg", ("Amara", "Okafor-Test"), "female",
          "eligible: 4.2 kg, 10 weeks old, SMN2 x2 (kit 4.1-4.5 kg)",
          S.ELIGIBLE, NONE, age_days=72, infusion_offset=3, weight=4.2),
    _Spec("eligible-band-edge-5-0kg", ("Liam", "Novak-Test"), "male",
          "eligible: 5.0 kg exactly on the upper edge of the 4.6-5.0 kg band",
          S.ELIGIBLE, NONE, age_days=118, infusion_offset=5, weight=5.0),
    _Spec("eligible-gap-6030g", ("Sofia", "Haddad-Test"), "female",
          "eligible: 6030 g lies between bands 5.6-6.0 and 6.1-6.5; rounded up to 6.1 kg",
          S.ELIGIBLE, frozenset({F.WEIGHT_BETWEEN_BANDS}), age_days=150, infusion_offset=7,
          weight=6030, weight_unit="g"),
    _Spec("eligible-10-8kg-14mo", ("Noah", "Lindqvist-Test"), "male",
          "eligible: 10.8 kg, 14 months old, SMA type 2, SMN2 x3 (kit 10.6-11.0 kg)",
          S.ELIGIBLE, NONE, age_days=425, infusion_offset=10, weight=10.8, smn2=3,
          diagnosed_age_days=330),
    # not eligible
    _Spec("age-over-2", ("Mateo", "Rossi-Test"), "male",
          "not eligible: turned 2 three weeks before the planned infusion",
          S.NOT_ELIGIBLE, frozenset({F.AGE_NOT_UNDER_2}), age_days=752, infusion_offset=4,
          weight=12.4, smn2=3, diagnosed_age_days=560),
    _Spec("weight-below-label", ("Hana", "Sato-Test"), "female",
          "not eligible: 2.45 kg newborn, below the 2.6 kg lightest labeled kit",
          S.NOT_ELIGIBLE, frozenset({F.WEIGHT_OUTSIDE_LABEL_RANGE}), age_days=12,
          infusion_offset=2, weight=2.45, weight_days=1, labs_days=2, titer_days=4,
          ga_weeks=38, diagnosed_age_days=3),
    _Spec("prior-onasemnogene", ("Elias", "Brandt-Test"), "male",
          "not eligible: ZOLGENSMA given at another center 4 months ago (titer now 1:3200)",
          S.NOT_ELIGIBLE, frozenset({F.PRIOR_ONASEMNOGENE}), age_days=285, infusion_offset=6,
          weight=7.6, titer="1:3200", prior_zolgensma_days=120),
    # deferred
    _Spec("preterm-34wk", ("Zara", "Mensah-Test"), "female",
          "deferred: born at 34+0 weeks, 18 days old: term age (37+0) is 3 days after infusion",
          S.DEFERRED, frozenset({F.PRETERM_BEFORE_TERM_AGE}), age_days=18, infusion_offset=2,
          weight=2.75, weight_days=1, labs_days=3, titer_days=6, ga_weeks=34,
          diagnosed_age_days=3),
    _Spec("aav9-titer-1-100", ("Oliver", "Kowalski-Test"), "male",
          "deferred: anti-AAV9 titer 1:100, above 1:50 (retest)",
          S.DEFERRED, frozenset({F.ANTI_AAV9_TITER_ELEVATED}), age_days=96, infusion_offset=5,
          weight=4.9, titer="1:100"),
    _Spec("active-infection", ("Ines", "Carvalho-Test"), "female",
          "deferred: RSV bronchiolitis since 2 days, febrile 38.4 C",
          S.DEFERRED, frozenset({F.ACTIVE_INFECTION}), age_days=110, infusion_offset=4,
          weight=5.3, temperature_c=38.4, infection=True),
    # incomplete
    _Spec("birth-date-missing", ("Theo", "Dubois-Test"), "male",
          "incomplete: no birth date on the Patient record",
          S.INCOMPLETE, frozenset({F.BIRTH_DATE_MISSING}), age_days=130, infusion_offset=3,
          weight=5.6, birth_date_recorded=False),
    _Spec("weight-missing", ("Maya", "Petrov-Test"), "female",
          "incomplete: never weighed, so no kit or steroid dose",
          S.INCOMPLETE, frozenset({F.WEIGHT_MISSING}), age_days=88, infusion_offset=3,
          weight=None),
    _Spec("weight-stale", ("Lucas", "Moreau-Test"), "male",
          "incomplete: last weight 4.4 kg is 40 days old: re-weigh",
          S.INCOMPLETE, frozenset({F.WEIGHT_STALE}), age_days=100, infusion_offset=3,
          weight=4.4, weight_days=40),
    _Spec("gestational-age-missing", ("Aisha", "Rahman-Test"), "female",
          "incomplete: 6 weeks old and no gestational age at birth",
          S.INCOMPLETE, frozenset({F.GESTATIONAL_AGE_MISSING}), age_days=45, infusion_offset=3,
          weight=3.9, ga_weeks=None),
    _Spec("aav9-titer-missing", ("Jonas", "Weber-Test"), "male",
          "incomplete: the only anti-AAV9 titer is 45 days old",
          S.INCOMPLETE, frozenset({F.ANTI_AAV9_TITER_MISSING}), age_days=140, infusion_offset=1,
          weight=6.3, titer_days=44),
    _Spec("aav9-titer-ambiguous", ("Chloe", "Nguyen-Test"), "female",
          "incomplete: anti-AAV9 titer reported as '>1:25' (straddles 1:50)",
          S.INCOMPLETE, frozenset({F.ANTI_AAV9_TITER_AMBIGUOUS}), age_days=77, infusion_offset=3,
          weight=4.6, titer=">1:25"),
    _Spec("baseline-labs-missing", ("Ethan", "Park-Test"), "male",
          "incomplete: baseline PTT and troponin I not drawn",
          S.INCOMPLETE, frozenset({F.BASELINE_LAB_MISSING}), age_days=160, infusion_offset=3,
          weight=6.8, missing_labs=frozenset({LabTest.PTT, LabTest.TROPONIN_I})),
    _Spec("smn1-one-copy", ("Lea", "Fischer-Test"), "female",
          "incomplete: one SMN1 copy: bi-allelic mutation not documented",
          S.INCOMPLETE, frozenset({F.SMN1_BIALLELIC_NOT_CONFIRMED}), age_days=92,
          infusion_offset=3, weight=5.1, smn1=1),
    # needs review
    _Spec("alt-elevated", ("Daniel", "Costa-Test"), "male",
          "needs review: baseline ALT 120 U/L = 2.67 x ULN (acknowledge to proceed)",
          S.NEEDS_REVIEW, frozenset({F.LIVER_FUNCTION_ELEVATED}), age_days=105,
          infusion_offset=4, weight=5.8, baseline={LabTest.ALT: 120}),
    # on a plan (infused in the past); status = on the day before infusion
    _Spec("day-10", ("Nora", "Jensen-Test"), "female",
          "on plan: infused 10 days ago (3.8 kg); day-7 labs normal",
          S.ELIGIBLE, NONE, age_days=58, infusion_offset=-10, weight=3.8),
    _Spec("day-28", ("Felix", "Schmidt-Test"), "male",
          "on plan: day 28 (5.4 kg); weekly labs normal: day-30 liver check due",
          S.ELIGIBLE, NONE, age_days=120, infusion_offset=-28, weight=5.4),
    _Spec("day-28-alt-3x", ("Ava", "Martins-Test"), "female",
          "on plan: day 28 (4.7 kg); ALT 135 U/L = 3 x ULN at the day-28 draw",
          S.ELIGIBLE, NONE, age_days=95, infusion_offset=-28, weight=4.7,
          followup={7: {LabTest.ALT: 48}, 14: {LabTest.ALT: 71, LabTest.AST: 66},
                    21: {LabTest.ALT: 96, LabTest.AST: 84},
                    28: {LabTest.ALT: 135, LabTest.AST: 110}}),
    _Spec("day-45-taper", ("Samuel", "Okonkwo-Test"), "male",
          "on plan: day 45 (6.6 kg), second taper step; labs normal",
          S.ELIGIBLE, NONE, age_days=170, infusion_offset=-45, weight=6.6),
    _Spec("day-15-liver-injury", ("Ella", "Horvath-Test"), "female",
          "on plan: day 15 (8.2 kg); acute liver injury: ALT 1020 U/L (22.7 x ULN), "
          "bilirubin 3.4 mg/dL",
          S.ELIGIBLE, NONE, age_days=240, infusion_offset=-15, weight=8.2,
          followup={7: {LabTest.ALT: 88, LabTest.AST: 95},
                    14: {LabTest.ALT: 1020, LabTest.AST: 870, LabTest.BILIRUBIN_TOTAL: 3.4,
                         LabTest.PT: 19.5, LabTest.INR: 1.7}}),
    _Spec("day-100-complete", ("Leo", "Virtanen-Test"), "male",
          "on plan: day 100 (7.3 kg); monitoring complete, all labs normal",
          S.ELIGIBLE, NONE, age_days=200, infusion_offset=-100, weight=7.3),
)  # fmt: skip
"""The sandbox's patients, one line of data each."""


def synthetic_patients(*, today: dt.date) -> tuple[SyntheticPatient, ...]:
    """Every synthetic patient, dated relative to `today`."""
    return tuple(_build(spec, index, today) for index, spec in enumerate(SPECS, start=1))


def transaction_bundle(patients: Iterable[SyntheticPatient]) -> dict[str, Any]:
    """One FHIR transaction of PUTs (Patient first, per patient) that loads `patients`."""
    entries = []
    for patient in patients:
        for resource in patient.resources:
            url = f"{resource['resourceType']}/{resource['id']}"
            entries.append(
                {
                    "fullUrl": f"urn:uuid:{uuid.uuid5(BUNDLE_NAMESPACE, url)}",
                    "resource": copy.deepcopy(resource),
                    "request": {"method": "PUT", "url": url},
                }
            )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}
