"""The prior-authorization criteria payers commonly ask, checked against the chart and the plan."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from smart_app.errors import InputError
from smart_app.rules.arith import add_months
from smart_app.rules.eligibility import Context, _baseline, current
from smart_app.rules.model import (
    Evidence,
    Finding,
    FindingCode,
    LabResult,
    PatientFacts,
    Plan,
    Severity,
    Status,
)
from smart_app.rules.plan import dosing_weight
from smart_app.rules.policy import DEFAULT_POLICY, Policy

F = FindingCode

ICD10CM_SYSTEM = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED_SYSTEM = "http://snomed.info/sct"
"""The code systems the SMA Conditions are read in (the same URIs as smart_app.fhir.codes)."""
SYSTEM_NAMES = {ICD10CM_SYSTEM: "ICD-10-CM", SNOMED_SYSTEM: "SNOMED CT"}
PA_SMA_CODES = ("G12.0", "G12.1")
"""ICD-10-CM codes payers commonly ask for: G12.0 infantile SMA type I (Werdnig-Hoffmann),
G12.1 other inherited SMA. G12.9 (unspecified) is read as SMA but is not one of them."""

HCPCS_J3399 = "J3399"
J3399_DESCRIPTOR = (
    "Injection, onasemnogene abeparvovec-xioi, per treatment, up to 5x10^15 vector genomes"
)
"""The HCPCS Level II descriptor of J3399: 1 unit = 1 treatment."""

NDC_SEGMENTS = re.compile(r"([0-9]+)-([0-9]+)-([0-9]+)")
NDC_10_FORMS = frozenset({(4, 4, 2), (5, 3, 2), (5, 4, 1)})
"""The three 10-digit NDC layouts (labeler-product-package)."""
NDC_11_FORM = (5, 4, 2)
"""The 11-digit billing layout (HIPAA claims)."""


class CriterionStatus(StrEnum):
    """Where one criterion stands."""

    MET = "met"
    NOT_MET = "not met"
    MISSING = "missing"
    NOTED = "noted"
    """Facts a payer weighs differently (concurrent SMN-targeted therapy): named, not judged."""


@dataclass(frozen=True)
class Criterion:
    """One criterion with its evidence: value, date and source resources, and the label section."""

    key: str
    title: str
    status: CriterionStatus
    value: str
    date: dt.date | None
    sources: tuple[str, ...]
    section: str
    note: str = ""
    findings: tuple[str, ...] = ()
    """The plan's finding codes this criterion rests on (the packet never disagrees with them)."""
    missing: tuple[str, ...] = ()
    """What the chart lacks for it, item by item (the baseline tests with no current result)."""


@dataclass(frozen=True)
class Billing:
    """The billing facts: HCPCS code and units, the kit NDC (10- and 11-digit), ICD-10-CM codes."""

    hcpcs: str
    hcpcs_units: int
    hcpcs_source: str
    ndc_10: str | None
    ndc_11: str | None
    icd10: tuple[tuple[str, str], ...]
    """(code, display) from the patient's SMA Conditions."""
    hcpcs_descriptor: str = J3399_DESCRIPTOR

    @property
    def ndc_11_digits(self) -> str | None:
        """The 11-digit NDC without hyphens, as a claim's drug identification field takes it."""
        return self.ndc_11.replace("-", "") if self.ndc_11 else None


@dataclass(frozen=True)
class Packet:
    """Everything a care coordinator sends: the criteria, the billing facts, the plan it is for."""

    patient_id: str
    infusion_date: dt.date
    evaluated_on: dt.date
    criteria: tuple[Criterion, ...]
    billing: Billing
    policy_version: str
    label_version: str
    plan_status: Status | None = None
    """The plan's eligibility status on the infusion date, for the page's heading."""
    blocking: tuple[Finding, ...] = ()
    """The plan's findings at its status's severity (a deferred plan's fever or prematurity):
    what holds the infusion back, payer criterion or not; empty for an eligible plan."""

    def criterion(self, key: str) -> Criterion:
        """The criterion with this key; KeyError when there is none."""
        for item in self.criteria:
            if item.key == key:
                return item
        raise KeyError(key)


KEYS = (
    "diagnosis",
    "smn1",
    "smn2",
    "age",
    "titer",
    "weight-kit",
    "baseline-labs",
    "not-advanced",
    "no-prior-zolgensma",
    "smn-therapy",
)
"""The criteria in the order the packet lists them."""

NOT_MET_SEVERITIES = frozenset({Severity.NOT_ELIGIBLE, Severity.DEFERRED})
TITER_CODES = frozenset(
    {F.ANTI_AAV9_TITER_ELEVATED, F.ANTI_AAV9_TITER_MISSING, F.ANTI_AAV9_TITER_AMBIGUOUS}
)
WEIGHT_CODES = frozenset(
    {
        F.WEIGHT_MISSING,
        F.WEIGHT_STALE,
        F.WEIGHT_OUTSIDE_LABEL_RANGE,
        F.WEIGHT_DISCREPANCY,
        F.WEIGHT_BETWEEN_BANDS,
    }
)
LAB_CODES = frozenset(
    {F.BASELINE_LAB_MISSING, F.LIVER_FUNCTION_ELEVATED, F.HEPATIC_IMPAIRMENT, F.ULN_FALLBACK_USED}
)
SMN_THERAPY_NOTE = (
    "Named, not judged: payer criteria vary (some require stopping nusinersen or risdiplam "
    "before ZOLGENSMA, some allow it as a bridge until the infusion); check this payer's policy. "
    "The label sets no rule; in Study 3 (24 children), 'Before treatment with ZOLGENSMA, 21 "
    "patients discontinued their previous treatment with nusinersen or risdiplam' (6.1)."
)
SMN2_NOTE = (
    "Payer criteria vary (often 3 copies or fewer, or 1 to 4 copies): check this payer's policy. "
    "The pivotal trials enrolled infants with 2 copies of SMN2 (14)."
)
ADVANCED_NONE_NOTE = (
    "Met only in the sense that the chart records none: no tracheostomy or ventilator dependence "
    "among the Conditions, Procedures and Devices read. Confirm clinically (permanent "
    "ventilation, complete paralysis of limbs)."
)


def ndc_11(ndc: str) -> str:
    """The 11-digit 5-4-2 billing form of a 10-digit NDC as labeled (4-4-2, 5-3-2 or 5-4-1): a
    leading zero pads the short segment (71894-120-02 -> 71894-0120-02). A 5-4-2 NDC is returned
    as it is; anything else raises InputError."""
    match = NDC_SEGMENTS.fullmatch(ndc.strip())
    if match is None:
        raise InputError(f"NDC {ndc!r} is not three hyphen-separated groups of digits")
    parts = match.groups()
    form = tuple(len(part) for part in parts)
    if form not in NDC_10_FORMS and form != NDC_11_FORM:
        shown = "-".join(str(n) for n in form)
        raise InputError(f"NDC {ndc!r} is laid out {shown}, not 4-4-2, 5-3-2 or 5-4-1")
    return "-".join(part.zfill(width) for part, width in zip(parts, NDC_11_FORM, strict=True))


def age_text(birth: dt.date, on: dt.date) -> str:
    """Age on `on` in calendar months and days ('5 months 14 days'), years from 2 on."""
    months = (on.year - birth.year) * 12 + on.month - birth.month - (on.day < birth.day)
    days = (on - add_months(birth, months=months)).days
    years, months = divmod(months, 12) if months >= 24 else (0, months)
    parts = [(years, "year"), (months, "month"), (days, "day")]
    shown = [f"{n} {unit}{'' if n == 1 else 's'}" for n, unit in parts if n]
    return " ".join(shown) or "0 days"


def _refs(evidence: Iterable[Evidence]) -> tuple[str, ...]:
    """Distinct references, in order."""
    return tuple(dict.fromkeys(e.reference for e in evidence if e.reference))


def _mine(plan: Plan, codes: Iterable[FindingCode]) -> tuple[Finding, ...]:
    """The plan's findings with these codes."""
    wanted = frozenset(codes)
    return tuple(f for f in plan.eligibility.findings if f.code in wanted)


def _status(findings: Iterable[Finding], *, default: CriterionStatus) -> CriterionStatus:
    """Not met for a not-eligible or deferred finding, missing for an incomplete one, else the
    default (needs-review and information findings leave the criterion as it is; the note says
    them)."""
    severities = {f.severity for f in findings}
    if severities & NOT_MET_SEVERITIES:
        return CriterionStatus.NOT_MET
    if Severity.INCOMPLETE in severities:
        return CriterionStatus.MISSING
    return default


def _note(findings: Iterable[Finding], *, lead: str = "") -> str:
    """What the plan says of the criterion: its findings' messages, a review asked for named."""
    parts = [lead] if lead else []
    for finding in findings:
        if finding.severity is Severity.NEEDS_REVIEW:
            parts.append(f"The plan asks for the clinician's review: {finding.message}")
        else:
            parts.append(finding.message)
    return " ".join(parts)


def _codes(findings: Iterable[Finding]) -> tuple[str, ...]:
    """Distinct finding codes, in order."""
    return tuple(dict.fromkeys(f.code.value for f in findings))


def _coding_shown(system: str, code: str, display: str) -> str:
    """'ICD-10-CM G12.9 Spinal muscular atrophy, unspecified'."""
    return " ".join(p for p in (SYSTEM_NAMES.get(system, system), code, display) if p)


def sma_icd10(facts: PatientFacts) -> tuple[tuple[str, str, Evidence], ...]:
    """(ICD-10-CM code, display, the Condition) of every SMA Condition coding, in chart order."""
    found = []
    for evidence in facts.sma_conditions:
        for system, code, display in evidence.codings:
            if system == ICD10CM_SYSTEM:
                found.append((code, display or evidence.display, evidence))
    return tuple(found)


def _diagnosis(facts: PatientFacts) -> Criterion:
    """SMA on the problem list with ICD-10-CM G12.0 or G12.1."""
    title = "SMA diagnosis (ICD-10-CM G12.0 / G12.1)"
    specific = [(c, d, e) for c, d, e in sma_icd10(facts) if c in PA_SMA_CODES]
    if specific:
        dates = [e.date for _, _, e in specific if e.date]
        return Criterion(
            "diagnosis",
            title,
            CriterionStatus.MET,
            "; ".join(dict.fromkeys(f"{c} {d}".strip() for c, d, _ in specific)),
            min(dates) if dates else None,
            _refs(e for _, _, e in specific),
            "1",
        )
    conditions = facts.sma_conditions
    if not conditions:
        value = "no spinal muscular atrophy Condition recorded"
    else:
        shown = [
            "; ".join(_coding_shown(*c) for c in e.codings) or f"'{e.display or e.value}' (no code)"
            for e in conditions
        ]
        value = "recorded only as " + "; ".join(dict.fromkeys(shown))
    dates = [e.date for e in conditions if e.date]
    return Criterion(
        "diagnosis",
        title,
        CriterionStatus.MISSING,
        value,
        min(dates) if dates else None,
        _refs(conditions),
        "1",
        note="Payers commonly ask for ICD-10-CM G12.0 (SMA type I) or G12.1 (other inherited "
        "SMA): record the SMA type on the Condition.",
    )


def _smn1(facts: PatientFacts, plan: Plan) -> Criterion:
    """Bi-allelic SMN1 mutations confirmed by a genetic test (section 1; eligibility decides)."""
    mine = _mine(plan, {F.SMN1_BIALLELIC_NOT_CONFIRMED})
    smn1 = current(facts.smn1_copies, on=plan.evaluated_on)
    if smn1 is None:
        value = "no SMN1 copy number (genetic test) recorded"
    else:
        copies = int(smn1.value)
        value = f"{copies} cop{'y' if copies == 1 else 'ies'} of SMN1"
        if copies == 0:
            value += " (bi-allelic deletion)"
    default = CriterionStatus.MET if smn1 is not None else CriterionStatus.MISSING
    return Criterion(
        "smn1",
        "Bi-allelic SMN1 mutations confirmed by genetic test",
        _status(mine, default=default),
        value,
        smn1.effective if smn1 else None,
        _refs([smn1.evidence] if smn1 else []),
        "1",
        note=_note(mine),
        findings=_codes(mine),
    )


def _smn2(facts: PatientFacts, plan: Plan) -> Criterion:
    """SMN2 copy number as recorded: met when recorded (payer thresholds vary)."""
    smn2 = current(facts.smn2_copies, on=plan.evaluated_on)
    if smn2 is None:
        value, status = "no SMN2 copy number recorded", CriterionStatus.MISSING
    else:
        copies = int(smn2.value)
        value, status = f"{copies} cop{'y' if copies == 1 else 'ies'}", CriterionStatus.MET
    return Criterion(
        "smn2",
        "SMN2 copy number",
        status,
        value,
        smn2.effective if smn2 else None,
        _refs([smn2.evidence] if smn2 else []),
        "14",
        note=SMN2_NOTE,
        findings=_codes(_mine(plan, {F.SMN2_COPY_NUMBER})),
    )


def _age(plan: Plan) -> Criterion:
    """Under 2 years of age on the planned infusion date (section 1)."""
    mine = _mine(plan, {F.AGE_NOT_UNDER_2, F.BIRTH_DATE_MISSING})
    source = (f"Patient/{plan.patient_id}",)
    title = "Under 2 years of age on the planned infusion date"
    birth, last = plan.birth_date, plan.last_labeled_infusion_date
    if birth is None or plan.age_days_on_infusion is None:
        return Criterion(
            "age",
            title,
            _status(mine, default=CriterionStatus.MISSING),
            "no date of birth recorded",
            None,
            source,
            "1",
            note=_note(mine),
            findings=_codes(mine),
        )
    lead = f"Born {birth}; the last infusion date under 2 years of age is {last}."
    return Criterion(
        "age",
        title,
        _status(mine, default=CriterionStatus.MET),
        f"{age_text(birth, plan.infusion_date)} on {plan.infusion_date}",
        birth,
        source,
        "1",
        note=_note(mine, lead=lead),
        findings=_codes(mine),
    )


def _titer(facts: PatientFacts, plan: Plan, policy: Policy) -> Criterion:
    """Anti-AAV9 antibody titer at or below 1:50 (sections 2.3, 6.2), as the plan judged it."""
    mine = _mine(plan, TITER_CODES)
    newest = next((t for t in facts.titers if t.effective <= plan.evaluated_on), None)
    lead = (
        f"At or below 1:50 (2.3, 6.2); a titer counts within {policy.titer_max_age_days} days "
        "before the infusion date (institution default)."
    )
    return Criterion(
        "titer",
        "Anti-AAV9 antibody titer at or below 1:50",
        _status(mine, default=CriterionStatus.MET if newest else CriterionStatus.MISSING),
        (newest.evidence.value or "?") if newest else "no anti-AAV9 titer recorded",
        newest.effective if newest else None,
        _refs([newest.evidence] if newest else []),
        "2.3; 6.2",
        note=_note(mine, lead=lead),
        findings=_codes(mine),
    )


def _weight_kit(facts: PatientFacts, plan: Plan, policy: Policy) -> Criterion:
    """A current weight in the labeled range and the kit it takes (2.1, Table 1; 16.1, Table 3)."""
    mine = _mine(plan, WEIGHT_CODES)
    dosed = dosing_weight(
        facts, on=plan.evaluated_on, infusion_date=plan.infusion_date, policy=policy
    )
    shown = dosed or current(facts.weights_kg, on=plan.evaluated_on)
    dose = plan.dose
    if dose is not None:
        kit = dose.kit
        value = (
            f"{dose.weight_kg} kg; kit NDC {kit.ndc} ({kit.band_low_kg}-{kit.band_high_kg} kg "
            f"band, {kit.vials})"
        )
    elif shown is not None:
        value = f"{shown.value} kg; no kit"
    else:
        value = "no weight recorded"
    evidence = [shown.evidence] if shown else []
    evidence += [e for f in mine for e in f.evidence]
    return Criterion(
        "weight-kit",
        "Weight and kit NDC",
        _status(mine, default=CriterionStatus.MET if dose else CriterionStatus.MISSING),
        value,
        shown.effective if shown else None,
        _refs(evidence),
        "2.1; 16.1",
        note=_note(mine),
        findings=_codes(mine),
    )


def baseline_results(
    facts: PatientFacts, plan: Plan, *, policy: Policy
) -> dict[str, tuple[LabResult | None, LabResult | None]]:
    """Each baseline test the policy requires -> (usable result, newest result at all), as the
    eligibility rules judge them for this plan's dates."""
    ctx = Context(
        facts=facts,
        on=plan.evaluated_on,
        infusion_date=plan.infusion_date,
        policy=policy,
        weight=None,
        steroids=plan.steroids,
    )
    return {test.value: _baseline(ctx, test) for test in policy.baseline_tests}


def _labs(facts: PatientFacts, plan: Plan, policy: Policy) -> Criterion:
    """Every baseline test the policy requires, current (2.1, 2.3); missing ones named."""
    mine = _mine(plan, LAB_CODES)
    results = baseline_results(facts, plan, policy=policy)
    usable = [r for r, _ in results.values() if r is not None]
    missing = [test for test, (r, _) in results.items() if r is None]
    days = sorted({r.effective for r in usable})
    drawn = ""
    if days:
        drawn = f" (drawn {days[0]})" if len(days) == 1 else f" (drawn {days[0]} to {days[-1]})"
    if missing:
        value = f"missing: {', '.join(missing)}"
        if usable:
            value += f"; current: {', '.join(r.test.value for r in usable)}{drawn}"
    else:
        value = f"all {len(usable)} current: {', '.join(r.test.value for r in usable)}{drawn}"
    stale = [newest.evidence for r, newest in results.values() if r is None and newest]
    lead = (
        f"A baseline result counts within {policy.baseline_lab_max_age_days} days before the "
        "infusion date (institution default)."
    )
    return Criterion(
        "baseline-labs",
        "Baseline laboratory tests",
        _status(mine, default=CriterionStatus.MISSING if missing else CriterionStatus.MET),
        value,
        days[0] if days else None,
        _refs([*(r.evidence for r in usable), *stale]),
        "2.1; 2.3",
        note=_note(mine, lead=lead),
        findings=_codes(mine),
        missing=tuple(missing),
    )


def _not_advanced(facts: PatientFacts, plan: Plan) -> Criterion:
    """No tracheostomy or permanent ventilation on record (section 1, limitations of use)."""
    mine = _mine(plan, {F.ADVANCED_SMA})
    known = facts.advanced_sma
    title = "Not advanced SMA"
    if not known:
        return Criterion(
            "not-advanced",
            title,
            CriterionStatus.MET,
            "no tracheostomy or permanent ventilation recorded",
            None,
            (),
            "1; 14",
            note=ADVANCED_NONE_NOTE,
        )
    dates = [e.date for e in known if e.date]
    return Criterion(
        "not-advanced",
        title,
        CriterionStatus.NOT_MET,
        "; ".join(dict.fromkeys(e.display or e.value for e in known)),
        max(dates) if dates else None,
        _refs(known),
        "1; 14",
        note=_note(mine),
        findings=_codes(mine),
    )


def _no_prior(plan: Plan) -> Criterion:
    """No ZOLGENSMA given, recorded or ordered before (section 1): the plan's findings decide."""
    mine = _mine(plan, {F.PRIOR_ONASEMNOGENE, F.MEDICATION_UNRESOLVED})
    prior = [e for f in mine if f.code is F.PRIOR_ONASEMNOGENE for e in f.evidence]
    unresolved = [e for f in mine if f.code is F.MEDICATION_UNRESOLVED for e in f.evidence]
    said = mine
    if prior:
        status = CriterionStatus.NOT_MET
        value = "; ".join(dict.fromkeys(e.value or e.display for e in prior))
        shown = prior
        said = tuple(f for f in mine if f.code is F.PRIOR_ONASEMNOGENE)
    elif unresolved:
        status = CriterionStatus.MISSING
        value = "a medication on record could not be read: it may be ZOLGENSMA"
        shown = unresolved
    else:
        status = CriterionStatus.MET
        value = "no ZOLGENSMA administration, statement or order recorded"
        shown = []
    dates = [e.date for e in shown if e.date]
    return Criterion(
        "no-prior-zolgensma",
        "No prior ZOLGENSMA",
        status,
        value,
        max(dates) if dates else None,
        _refs(shown),
        "1; 6.2",
        note=_note(said),
        findings=_codes(mine),
    )


def _smn_therapy(facts: PatientFacts, plan: Plan) -> Criterion:
    """Concurrent SMN-targeted therapy (nusinersen, risdiplam): named when recorded, not judged."""
    known = [e for e in facts.smn_therapies if e.date is None or e.date <= plan.evaluated_on]
    shown = [
        f"{e.display}: {e.value}" + (f" ({e.date})" if e.date else "")
        for e in sorted(known, key=lambda e: e.date or dt.date.min, reverse=True)
    ]
    dates = [e.date for e in known if e.date]
    return Criterion(
        "smn-therapy",
        "Concurrent SMN-targeted therapy (nusinersen, risdiplam)",
        CriterionStatus.NOTED,
        "; ".join(shown) if shown else "none recorded",
        max(dates) if dates else None,
        _refs(known),
        "6.1",
        note=SMN_THERAPY_NOTE,
    )


def billing(facts: PatientFacts, plan: Plan, *, policy: Policy = DEFAULT_POLICY) -> Billing:
    """HCPCS J3399 with the institution's units, the kit NDC in both forms, ICD-10-CM codes."""
    ndc = plan.dose.kit.ndc if plan.dose else None
    units = policy.hcpcs_j3399_units
    source = (
        f"Institution default ({policy.version}): {units} unit{'' if units == 1 else 's'} of "
        f"{HCPCS_J3399} per treatment. The HCPCS descriptor is '{J3399_DESCRIPTOR}': 1 unit = 1 "
        "treatment. Seed 004 names the manufacturer's Coding and Billing Guide, but its text is "
        "not among the source documents: confirm the units with the payer."
    )
    icd10 = tuple(dict.fromkeys((code, display) for code, display, _ in sma_icd10(facts)))
    return Billing(
        hcpcs=HCPCS_J3399,
        hcpcs_units=units,
        hcpcs_source=source,
        ndc_10=ndc,
        ndc_11=ndc_11(ndc) if ndc else None,
        icd10=icd10,
    )


def blocking(plan: Plan) -> tuple[Finding, ...]:
    """The plan's findings at the severity of its status (none for an eligible plan)."""
    status = plan.eligibility.status
    return tuple(f for f in plan.eligibility.findings if f.severity.value == status.value)


def prior_auth_packet(
    facts: PatientFacts, plan: Plan, *, policy: Policy = DEFAULT_POLICY
) -> Packet:
    """The criteria and billing facts for this patient and plan (pure: no clock, no I/O)."""
    if facts.patient_id != plan.patient_id:
        raise InputError(
            f"the plan is for Patient/{plan.patient_id}, the facts for Patient/{facts.patient_id}"
        )
    if policy.version != plan.policy_version:
        raise InputError(
            f"the plan was built with policy {plan.policy_version}, not {policy.version}"
        )
    criteria = (
        _diagnosis(facts),
        _smn1(facts, plan),
        _smn2(facts, plan),
        _age(plan),
        _titer(facts, plan, policy),
        _weight_kit(facts, plan, policy),
        _labs(facts, plan, policy),
        _not_advanced(facts, plan),
        _no_prior(plan),
        _smn_therapy(facts, plan),
    )
    return Packet(
        patient_id=plan.patient_id,
        infusion_date=plan.infusion_date,
        evaluated_on=plan.evaluated_on,
        criteria=criteria,
        billing=billing(facts, plan, policy=policy),
        policy_version=plan.policy_version,
        label_version=plan.label_version,
        plan_status=plan.eligibility.status,
        blocking=blocking(plan),
    )
