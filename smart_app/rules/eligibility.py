"""Eligibility on the planned infusion date: every check returns findings, never raises."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from smart_app.rules import label
from smart_app.rules.arith import anniversary, round_half_up, weeks_days
from smart_app.rules.dosing import band_weight_kg, between_bands, in_label_range, kit_for_weight
from smart_app.rules.labs import Interpreted, interpret
from smart_app.rules.model import (
    Comparator,
    Eligibility,
    Evidence,
    Finding,
    FindingCode,
    LabResult,
    LabTest,
    Measurement,
    PatientFacts,
    Severity,
    Status,
    SteroidCourse,
    UlnSource,
)
from smart_app.rules.policy import Policy

LAB_SECTION: dict[LabTest, str] = {
    LabTest.AST: "2.3; 5.1",
    LabTest.ALT: "2.3; 5.1",
    LabTest.BILIRUBIN_TOTAL: "2.3; 5.1",
    LabTest.ALBUMIN: "2.3; 5.1",
    LabTest.PT: "2.3; 5.1",
    LabTest.PTT: "2.3; 5.1",
    LabTest.INR: "2.3; 5.1",
    LabTest.CREATININE: "2.1; 5.4",
    LabTest.HEMOGLOBIN: "2.1; 5.4",
    LabTest.PLATELETS: "2.1; 2.3; 5.3",
    LabTest.TROPONIN_I: "5.5",
}

LIVER_ENTRY_TESTS = (LabTest.ALT, LabTest.AST, LabTest.BILIRUBIN_TOTAL)
"""Section 5.1: ALT, AST or total bilirubin > 2 x ULN were not studied."""


class Standing(StrEnum):
    """How one baseline result stands against its limits."""

    LOW = "low"
    """Platelets below the institution's low count."""
    NO_ULN = "no ULN"
    ABOVE_2X_ULN = "above 2 × ULN"
    """ALT, AST or total bilirubin above 2 × ULN: not studied (5.1)."""
    ABOVE_ULN = "above ULN"
    WITHIN = "within range"


def standing(seen: Interpreted, *, policy: Policy) -> Standing:
    """Where a baseline result stands: low platelets (institution default), above 2 × ULN for
    the liver entry tests (5.1), above its ULN, within range, or no ULN to judge by."""
    result = seen.result
    if result.test is LabTest.PLATELETS and result.value < policy.platelets_low_10e3_per_ul:
        return Standing.LOW
    if seen.uln is None:
        return Standing.NO_ULN
    if result.test in LIVER_ENTRY_TESTS and seen.exceeds(label.LIVER_ULN_MULTIPLE):
        return Standing.ABOVE_2X_ULN
    if seen.exceeds(Decimal(1)):
        return Standing.ABOVE_ULN
    return Standing.WITHIN


COAGULATION_TESTS = (LabTest.INR, LabTest.PT)
"""Sections 5.1, 8.6: a baseline INR or PT above its ULN suggests preexisting liver impairment."""

ULN_JUDGED_TESTS = LIVER_ENTRY_TESTS + COAGULATION_TESTS
"""Baseline tests judged against a ULN before infusion: each needs a reported or fallback ULN."""


@dataclass(frozen=True)
class Context:
    """What every check may look at: the facts, the dates and the institution policy."""

    facts: PatientFacts
    on: dt.date
    infusion_date: dt.date
    policy: Policy
    weight: Measurement | None
    steroids: SteroidCourse | None

    def since(self, days: int) -> dt.date:
        """The oldest date a result may carry and still count, `days` before infusion."""
        return self.infusion_date - dt.timedelta(days=days)


Check = Callable[[Context], list[Finding]]


def _ev(m: Measurement) -> tuple[Evidence, ...]:
    """A measurement's evidence as a one-item tuple."""
    return (m.evidence,)


def current(items: tuple[Measurement, ...], *, on: dt.date) -> Measurement | None:
    """The newest measurement on or before `on`; results dated later are not yet known."""
    return next((m for m in items if m.effective <= on), None)


def taken_together(a: Measurement, b: Measurement, *, hours: int) -> bool:
    """Within `hours` of each other when both record a time; else on the same date."""
    if a.taken_at is not None and b.taken_at is not None:
        return abs(a.taken_at - b.taken_at) <= dt.timedelta(hours=hours)
    return a.effective == b.effective


def weights_together(
    facts: PatientFacts, *, on: dt.date, policy: Policy
) -> tuple[Measurement, ...]:
    """The newest weight known on `on` first, then every other one taken together with it."""
    newest = current(facts.weights_kg, on=on)
    if newest is None:
        return ()
    others = tuple(
        m
        for m in facts.weights_kg
        if m is not newest
        and m.effective <= on
        and taken_together(m, newest, hours=policy.weight_pair_hours)
    )
    return (newest, *others)


def weights_disagree(weights: tuple[Measurement, ...], *, policy: Policy) -> bool:
    """Section 2.1: weights taken together fall in different kit bands (Table 1), or the heaviest
    exceeds the lightest by more than the institution's fraction of the lightest."""
    if len(weights) < 2:
        return False
    light = min(m.value for m in weights)
    heavy = max(m.value for m in weights)
    different_kits = kit_for_weight(light) != kit_for_weight(heavy)
    return different_kits or heavy - light > policy.weight_discrepancy_fraction * light


def heaviest(weights: tuple[Measurement, ...]) -> Measurement:
    """The heaviest weight; equal values keep the order given (newest first)."""
    return max(weights, key=lambda m: m.value)


def age_limit_date(birth: dt.date) -> dt.date:
    """The second birthday: the first day the label's indication (section 1: "less than 2 years
    of age") no longer covers."""
    return anniversary(birth, years=label.AGE_LIMIT_YEARS)


def under_age_limit_on(birth: dt.date, day: dt.date) -> bool:
    """Born on or before `day` and less than 2 years of age on it (section 1)."""
    return birth <= day < age_limit_date(birth)


def check_age(ctx: Context) -> list[Finding]:
    """Section 1: under 2 years of age on the infusion date."""
    birth = ctx.facts.birth_date
    if birth is None:
        return [
            Finding(
                FindingCode.BIRTH_DATE_MISSING,
                Severity.INCOMPLETE,
                "Patient.birthDate is missing: age on the infusion date, the label's age limit "
                "and term age cannot be checked. Record the date of birth.",
                "1; 8.4",
                (Evidence(f"Patient/{ctx.facts.patient_id}", "", display="birthDate"),),
            )
        ]
    second = age_limit_date(birth)
    if ctx.infusion_date < second:
        return []
    return [
        Finding(
            FindingCode.AGE_NOT_UNDER_2,
            Severity.NOT_ELIGIBLE,
            f"Second birthday is {second}, on or before the infusion date {ctx.infusion_date}: "
            "ZOLGENSMA is indicated for patients less than 2 years of age.",
            "1",
            (
                Evidence(
                    f"Patient/{ctx.facts.patient_id}",
                    birth.isoformat(),
                    display="birthDate",
                    date=birth,
                ),
            ),
        )
    ]


def check_weight(ctx: Context) -> list[Finding]:
    """Section 2.1, Table 1: a recent weight within 2.6-21.0 kg."""
    newest = current(ctx.facts.weights_kg, on=ctx.on)
    if newest is None:
        return [
            Finding(
                FindingCode.WEIGHT_MISSING,
                Severity.INCOMPLETE,
                "No body weight (LOINC 29463-7) on record: the kit, dose volume and steroid dose "
                "depend on it. Weigh the patient.",
                "2.1",
            )
        ]
    if ctx.weight is None:
        age = (ctx.infusion_date - newest.effective).days
        return [
            Finding(
                FindingCode.WEIGHT_STALE,
                Severity.INCOMPLETE,
                f"Newest weight {newest.value} kg is from {newest.effective}, {age} days before "
                f"the infusion date ({ctx.policy.cite('weight_max_age_days')}): infants "
                "grow; re-weigh before ordering the kit.",
                "2.1",
                _ev(newest),
            )
        ]
    w = ctx.weight.value
    if not in_label_range(w):
        side = "below 2.6 kg" if w < label.MIN_WEIGHT_KG else "above 21.0 kg"
        return [
            Finding(
                FindingCode.WEIGHT_OUTSIDE_LABEL_RANGE,
                Severity.NOT_ELIGIBLE,
                f"Weight {w} kg is {side}: Table 1 has no labeled kit for it.",
                "2.1; 16.1",
                _ev(ctx.weight),
            )
        ]
    if not between_bands(w):
        return []
    lookup = band_weight_kg(w)
    return [
        Finding(
            FindingCode.WEIGHT_BETWEEN_BANDS,
            Severity.INFO,
            f"Weight {w} kg lies between printed bands; it is looked up as {lookup} kg (rounded "
            "up) because Table 1 computes each volume at the band's upper limit so that every "
            "patient receives at least 1.1e14 vg/kg.",
            "2.1",
            _ev(ctx.weight),
        )
    ]


def weight_shown(m: Measurement) -> str:
    """'6.6 kg (Observation/b, 2026-11-18)': a weight with its source and when it was taken."""
    return f"{m.value} kg ({m.evidence.reference}, {m.evidence.recorded or m.effective})"


def _band_shown(weight_kg: Decimal) -> str:
    """'6.6-7.0 kg': the kit band a weight falls in, or 'no labeled band'."""
    kit = kit_for_weight(weight_kg)
    return f"{kit.band_low_kg}-{kit.band_high_kg} kg" if kit else "no labeled band"


def _listed(items: list[str]) -> str:
    """'a and b', 'a, b and c'."""
    return " and ".join([", ".join(items[:-1]), items[-1]]) if len(items) > 1 else items[0]


def check_weight_discrepancy(ctx: Context) -> list[Finding]:
    """Section 2.1: one child, one weight; weights taken together must agree on the kit."""
    if ctx.weight is None:
        return []
    together = weights_together(ctx.facts, on=ctx.on, policy=ctx.policy)
    if not weights_disagree(together, policy=ctx.policy):
        return []
    shown = sorted(
        together,
        key=lambda m: (
            -m.value,
            m.evidence.recorded or m.effective.isoformat(),
            m.evidence.reference,
        ),
    )
    light, heavy = shown[-1].value, shown[0].value
    differ = (
        f"differ by {round_half_up((heavy - light) * 100 / light)}% of the lighter"
        if light > 0
        else "differ"
    )
    bands = (
        f"fall in different kit bands ({_band_shown(heavy)} and {_band_shown(light)}) and "
        if kit_for_weight(light) != kit_for_weight(heavy)
        else ""
    )
    dosed = ctx.weight.value
    return [
        Finding(
            FindingCode.WEIGHT_DISCREPANCY,
            Severity.NEEDS_REVIEW,
            f"Weights taken together disagree: {_listed([weight_shown(m) for m in shown])} "
            f"{bands}{differ} "
            f"({ctx.policy.cite('weight_discrepancy_fraction', 'weight_pair_hours')}; weights on "
            "one date, or within that many hours when both are timed, are compared). The plan "
            f"does not pick one by record order: it doses on the heavier weight, {dosed} kg, "
            "because Table 1 computes each volume at the band's upper limit so that every "
            "patient receives at least 1.1e14 vg/kg, and the lighter weight would underdose if "
            f"the heavier is right. Confirm {dosed} kg, or re-weigh the patient or mark the wrong "
            "weight entered-in-error and relaunch.",
            "2.1",
            tuple(m.evidence for m in shown),
        )
    ]


def check_prior_gene_therapy(ctx: Context) -> list[Finding]:
    """Section 1: repeat dosing not evaluated; records dated after `on` are not yet known."""
    known = tuple(e for e in ctx.facts.prior_gene_therapy if e.date is None or e.date <= ctx.on)
    if not known:
        return []
    return [
        Finding(
            FindingCode.PRIOR_ONASEMNOGENE,
            Severity.NOT_ELIGIBLE,
            "ZOLGENSMA (onasemnogene abeparvovec) is already on record for this patient "
            "(administered, recorded or ordered): the safety and effectiveness of repeat "
            "administration have not been evaluated. If the record is an order for this same "
            "planned infusion, reconcile it in the EHR first.",
            "1; 6.2",
            known,
        )
    ]


def term_age_date(birth: dt.date, gestational_age_days: int, *, policy: Policy) -> dt.date:
    """The day a preterm infant reaches full-term postmenstrual age (8.4; institution default
    term)."""
    return birth + dt.timedelta(days=policy.term_gestational_age_days - gestational_age_days)


def fever_clears_on(taken: dt.date, *, policy: Policy) -> dt.date:
    """The first evaluation day whose fever look-back no longer reaches a temperature taken on
    `taken` (institution default look-back)."""
    return taken + dt.timedelta(days=policy.fever_lookback_days + 1)


def check_prematurity(ctx: Context) -> list[Finding]:
    """Section 8.4: delay infusion until full-term gestational age is reached."""
    birth = ctx.facts.birth_date
    if birth is None:
        return []
    age_days = (ctx.infusion_date - birth).days
    term = ctx.policy.term_gestational_age_days
    ga = current(ctx.facts.gestational_age_days, on=ctx.on)
    if ga is None:
        if age_days + ctx.policy.min_gestational_age_days >= term:
            return []
        return [
            Finding(
                FindingCode.GESTATIONAL_AGE_MISSING,
                Severity.INCOMPLETE,
                f"No gestational age at birth (LOINC 76516-4); at {age_days} days old on the "
                f"infusion date the infant may not have reached {weeks_days(term)} postmenstrual "
                "age, unless born at or after "
                f"{weeks_days(ctx.policy.min_gestational_age_days)} "
                f"({ctx.policy.cite('min_gestational_age_days', 'term_gestational_age_days')}). "
                "Record the gestational age at birth.",
                "8.4",
            )
        ]
    ga_days = int(ga.value)
    pma = ga_days + age_days
    if pma >= term:
        return []
    term_date = term_age_date(birth, ga_days, policy=ctx.policy)
    return [
        Finding(
            FindingCode.PRETERM_BEFORE_TERM_AGE,
            Severity.DEFERRED,
            f"Born at {weeks_days(ga_days)}; postmenstrual age on the infusion date is "
            f"{weeks_days(pma)}, before full term ({weeks_days(term)}; "
            f"{ctx.policy.cite('term_gestational_age_days')}). Corticosteroids may harm "
            f"neurological development: delay infusion until {term_date} or later.",
            "8.4",
            _ev(ga),
        )
    ]


def _titer_text(comparator: Comparator, denominator: Decimal | None) -> str:
    """'<1:25' style text for a parsed titer."""
    prefix = "" if comparator is Comparator.EQ else comparator.value
    return f"{prefix}1:{denominator.normalize():f}" if denominator is not None else "?"


def check_titer(ctx: Context) -> list[Finding]:
    """Sections 2.3 and 6.2: baseline anti-AAV9 titer <= 1:50."""
    newest = next((t for t in ctx.facts.titers if t.effective <= ctx.on), None)
    oldest_ok = ctx.since(ctx.policy.titer_max_age_days)
    if newest is None or newest.effective < oldest_ok:
        detail = (
            f" The newest, from {newest.effective}, is older than {ctx.policy.titer_max_age_days} "
            "days before the infusion date."
            if newest
            else ""
        )
        return [
            Finding(
                FindingCode.ANTI_AAV9_TITER_MISSING,
                Severity.INCOMPLETE,
                "No current anti-AAV9 antibody titer within "
                f"{ctx.policy.titer_max_age_days} days before the infusion date "
                f"({ctx.policy.cite('titer_max_age_days')}): baseline testing is required before "
                f"infusion.{detail}",
                "2.3; 6.2",
                (newest.evidence,) if newest else (),
            )
        ]
    limit = label.TITER_MAX_DENOMINATOR
    d, cmp = newest.denominator, newest.comparator
    shown = _titer_text(cmp, d)
    if d is None:
        verdict = None
    elif cmp is Comparator.EQ:
        verdict = d > limit
    elif cmp in (Comparator.LT, Comparator.LE):
        verdict = False if d <= limit else None
    elif cmp is Comparator.GT:
        verdict = True if d >= limit else None
    else:
        verdict = True if d > limit else None
    if verdict is None:
        return [
            Finding(
                FindingCode.ANTI_AAV9_TITER_AMBIGUOUS,
                Severity.INCOMPLETE,
                f"Anti-AAV9 titer reported as '{newest.evidence.value}' cannot be placed above or "
                "at/below 1:50. Ask the laboratory for an end-point titer.",
                "2.3; 6.2",
                (newest.evidence,),
            )
        ]
    if not verdict:
        return []
    return [
        Finding(
            FindingCode.ANTI_AAV9_TITER_ELEVATED,
            Severity.DEFERRED,
            f"Anti-AAV9 antibody titer {shown} is above 1:50: safety and efficacy have not been "
            "evaluated above 1:50. Retesting may be performed.",
            "2.3; 6.2",
            (newest.evidence,),
        )
    ]


def check_infection(ctx: Context) -> list[Finding]:
    """Sections 2.1 and 5.2: postpone infusion until infection has resolved."""
    since = ctx.on - dt.timedelta(days=ctx.policy.fever_lookback_days)
    fevers = tuple(
        t.evidence
        for t in ctx.facts.temperatures_c
        if since <= t.effective <= ctx.on and t.value >= ctx.policy.fever_threshold_c
    )
    findings = []
    if ctx.facts.active_infections:
        names = ", ".join(e.display or e.value for e in ctx.facts.active_infections)
        findings.append(
            Finding(
                FindingCode.ACTIVE_INFECTION,
                Severity.DEFERRED,
                f"Active infection on record ({names}): postpone ZOLGENSMA until the infection "
                "has resolved and the patient is clinically stable.",
                "2.1; 5.2",
                ctx.facts.active_infections,
            )
        )
    if fevers:
        findings.append(
            Finding(
                FindingCode.ACTIVE_INFECTION,
                Severity.DEFERRED,
                f"Body temperature >= {ctx.policy.fever_threshold_c} C in the "
                f"{ctx.policy.fever_lookback_days * 24} hours before evaluation "
                f"({ctx.policy.cite('fever_threshold_c', 'fever_lookback_days')}): clinical "
                "signs of infection must not be evident at infusion.",
                "2.1; 5.2",
                fevers,
            )
        )
    return findings


def _baseline(ctx: Context, test: LabTest) -> tuple[LabResult | None, LabResult | None]:
    """(usable baseline result, newest result at all) for one test."""
    newest = next((r for r in ctx.facts.labs_for(test) if r.effective <= ctx.on), None)
    if newest is None or newest.effective < ctx.since(ctx.policy.baseline_lab_max_age_days):
        return None, newest
    return newest, newest


def check_baseline_labs(ctx: Context) -> list[Finding]:
    """Sections 2.1, 2.3: baseline liver, renal and blood tests within the look-back."""
    findings = []
    days = ctx.policy.baseline_lab_max_age_days
    for test in ctx.policy.baseline_tests:
        usable, newest = _baseline(ctx, test)
        if usable is not None:
            continue
        detail = f" The newest, from {newest.effective}, is too old." if newest else ""
        default = (
            " Troponin I is not in the label's baseline tests (2.1, 2.3); it is required here by "
            f"an institution default ({ctx.policy.phrase('baseline_tests')}; 5.5: consider cardiac "
            "evaluation)."
            if test is LabTest.TROPONIN_I
            else ""
        )
        findings.append(
            Finding(
                FindingCode.BASELINE_LAB_MISSING,
                Severity.INCOMPLETE,
                f"Baseline {test} missing: no result within {days} days before the infusion "
                f"date ({ctx.policy.cite('baseline_lab_max_age_days')}).{detail}{default}",
                LAB_SECTION[test],
                (newest.evidence,) if newest else (),
            )
        )
    return findings


def _judged(ctx: Context, tests: tuple[LabTest, ...]) -> list[Interpreted]:
    """The usable baseline result of each test, with the ULN it is judged against."""
    found = []
    for test in tests:
        usable, _ = _baseline(ctx, test)
        if usable is not None:
            found.append(interpret(usable, birth_date=ctx.facts.birth_date))
    return found


def check_uln_sources(ctx: Context) -> list[Finding]:
    """Sections 2.3, 5.1: name every ULN the app supplied, and every result without one."""
    findings = []
    fallbacks = []
    for seen in _judged(ctx, ULN_JUDGED_TESTS):
        usable = seen.result
        if seen.source is UlnSource.FALLBACK:
            fallbacks.append(seen)
        if seen.source is not UlnSource.NONE:
            continue
        entry = usable.test in LIVER_ENTRY_TESTS
        findings.append(
            Finding(
                FindingCode.RESULT_UNREADABLE,
                Severity.NEEDS_REVIEW,
                f"Baseline {usable.test} {usable.value} {usable.unit} has no reference range and "
                "no fallback applies (age on the result date unknown): whether it "
                f"{'exceeds 2 x ULN' if entry else 'is above ULN'} cannot be judged.",
                "5.1" if entry else "5.1; 8.6",
                (usable.evidence,),
            )
        )
    if fallbacks:
        used = "; ".join(f"{s.result.test} {s.uln} {s.result.unit}" for s in fallbacks)
        findings.append(
            Finding(
                FindingCode.ULN_FALLBACK_USED,
                Severity.NEEDS_REVIEW,
                f"No reference range reported; the pediatric fallback "
                f"({ctx.policy.cite('uln_fallback_version')}) was used: {used}. Confirm against "
                "the performing laboratory's range.",
                "2.3; 5.1",
                tuple(s.result.evidence for s in fallbacks),
            )
        )
    return findings


def check_liver(ctx: Context) -> list[Finding]:
    """Section 5.1: ALT, AST or total bilirubin > 2 x ULN at baseline were not studied."""
    findings = []
    for seen in _judged(ctx, LIVER_ENTRY_TESTS):
        if not seen.exceeds(label.LIVER_ULN_MULTIPLE):
            continue
        usable = seen.result
        jaundice = (
            " Neonatal jaundice is the label's exception for bilirubin."
            if usable.test is LabTest.BILIRUBIN_TOTAL
            else ""
        )
        findings.append(
            Finding(
                FindingCode.LIVER_FUNCTION_ELEVATED,
                Severity.NEEDS_REVIEW,
                f"Baseline {usable.test} {usable.value} {usable.unit} is {seen.multiple_of_uln} x "
                f"ULN ({seen.uln} {usable.unit}, {seen.source}): patients above 2 x ULN were not "
                f"studied; weigh risks and benefits.{jaundice}",
                "5.1; 8.6",
                (usable.evidence,),
            )
        )
    return findings


def above_uln(seen: Interpreted) -> bool | None:
    """Whether a result is above its ULN, a censored value ('<1.1', '>2') included; None when
    the reported bound leaves it open, or there is no ULN. A ULN of zero or below is no limit."""
    uln, value = seen.uln, seen.result.value
    if uln is None:
        return None
    if uln <= 0:
        return False
    comparator = seen.result.comparator
    if comparator is Comparator.EQ:
        return seen.exceeds(Decimal(1))
    if comparator in (Comparator.LT, Comparator.LE):
        return False if value <= uln else None
    if comparator is Comparator.GT:
        return True if value >= uln else None
    return True if value > uln else None


def _censored(result: LabResult) -> str:
    """A value with its comparator when censored: '1.5', '>3'."""
    prefix = "" if result.comparator is Comparator.EQ else result.comparator.value
    return f"{prefix}{result.value}"


def check_hepatic_impairment(ctx: Context) -> list[Finding]:
    """Sections 5.1, 8.6: a baseline INR or PT above ULN, or a liver disease on record."""
    findings = []
    reasons = []
    evidence: list[Evidence] = []
    for seen in _judged(ctx, COAGULATION_TESTS):
        usable = seen.result
        verdict = above_uln(seen)
        if verdict:
            reasons.append(
                f"baseline {usable.test} {_censored(usable)} {usable.unit} is above its ULN "
                f"({seen.uln} {usable.unit}, {seen.source})"
            )
            evidence.append(usable.evidence)
        elif verdict is None and seen.source is not UlnSource.NONE:
            findings.append(
                Finding(
                    FindingCode.RESULT_UNREADABLE,
                    Severity.NEEDS_REVIEW,
                    f"Baseline {usable.test} reported as '{usable.evidence.value}' cannot be "
                    f"placed above or at/below its ULN ({seen.uln} {usable.unit}): ask the "
                    "laboratory for a numeric result.",
                    "5.1; 8.6",
                    (usable.evidence,),
                )
            )
    if ctx.facts.liver_conditions:
        names = ", ".join(e.display or e.value for e in ctx.facts.liver_conditions)
        reasons.append(f"liver disease on record ({names})")
        evidence.extend(ctx.facts.liver_conditions)
    if reasons:
        findings.append(
            Finding(
                FindingCode.HEPATIC_IMPAIRMENT,
                Severity.NEEDS_REVIEW,
                f"Possible preexisting liver impairment: {'; '.join(reasons)}. Label 5.1: "
                "'Patients with preexisting liver impairment or acute hepatic viral infection may "
                "be at higher risk of acute serious liver injury/acute liver failure'; 8.6: "
                "'ZOLGENSMA therapy should be carefully considered in patients with liver "
                "impairment.' Weigh risks and benefits before infusion.",
                "5.1; 8.6",
                tuple(evidence),
            )
        )
    return findings


def check_genetics(ctx: Context) -> list[Finding]:
    """Section 1: SMA with bi-allelic SMN1 mutations; SMN2 copies and diagnosis for context."""
    findings = []
    smn1 = current(ctx.facts.smn1_copies, on=ctx.on)
    if smn1 is None or smn1.value != 0:
        if smn1 is None:
            why = "No SMN1 copy number (LOINC 111768-8) on record."
        elif smn1.value == 1:
            why = (
                "One SMN1 copy: bi-allelic only if the genetics report documents a pathogenic "
                "variant in the remaining copy."
            )
        else:
            why = f"{smn1.value} SMN1 copies do not show a bi-allelic deletion."
        findings.append(
            Finding(
                FindingCode.SMN1_BIALLELIC_NOT_CONFIRMED,
                Severity.INCOMPLETE,
                f"{why} The indication requires bi-allelic SMN1 mutations; attach the genetic "
                "test result.",
                "1",
                _ev(smn1) if smn1 else (),
            )
        )
    if not ctx.facts.sma_conditions:
        findings.append(
            Finding(
                FindingCode.SMA_DIAGNOSIS_NOT_RECORDED,
                Severity.INFO,
                "No spinal muscular atrophy Condition (ICD-10-CM G12.0/G12.1/G12.9, SNOMED "
                "5262007) on the problem list; the plan will not reference a diagnosis.",
                "1",
            )
        )
    smn2 = current(ctx.facts.smn2_copies, on=ctx.on)
    if smn2 is not None:
        findings.append(
            Finding(
                FindingCode.SMN2_COPY_NUMBER,
                Severity.INFO,
                f"SMN2 copy number {smn2.value}; the pivotal trials enrolled infants with 2 "
                "copies.",
                "14",
                _ev(smn2),
            )
        )
    return findings


def check_advanced_sma(ctx: Context) -> list[Finding]:
    """Section 1: use in advanced SMA (permanent ventilation) has not been evaluated."""
    if not ctx.facts.advanced_sma:
        return []
    names = ", ".join(e.display or e.value for e in ctx.facts.advanced_sma)
    return [
        Finding(
            FindingCode.ADVANCED_SMA,
            Severity.NEEDS_REVIEW,
            f"Signs of advanced SMA on record ({names}): use in patients with complete limb "
            "paralysis or permanent ventilator dependence has not been evaluated.",
            "1; 14",
            ctx.facts.advanced_sma,
        )
    ]


def check_unreadable(ctx: Context) -> list[Finding]:
    """Never guess: name every relevant resource the reader could not use."""
    return [
        Finding(
            FindingCode.RESULT_UNREADABLE,
            Severity.NEEDS_REVIEW,
            f"{u.what} in {u.evidence.reference} could not be used: {u.reason}.",
            "2.1; 2.3",
            (u.evidence,),
        )
        for u in ctx.facts.unreadable
    ]


def check_read(ctx: Context) -> list[Finding]:
    """What the reading could not settle (built with the facts): never silently dropped."""
    return list(ctx.facts.read_findings)


def check_steroid_timing(ctx: Context) -> list[Finding]:
    """Section 2.1: corticosteroids start one day before infusion."""
    start = ctx.infusion_date - dt.timedelta(days=1)
    if start >= ctx.on:
        return []
    return [
        Finding(
            FindingCode.STEROID_START_PASSED,
            Severity.NEEDS_REVIEW,
            f"Prednisolone should have started on {start}, before this evaluation ({ctx.on}): "
            "confirm it was given, or move the infusion date.",
            "2.1",
        )
    ]


def check_counseling(ctx: Context) -> list[Finding]:
    """Sections 7 and 17: vaccines on high-dose steroids, and what caregivers must be told."""
    findings = []
    steroids = ctx.steroids
    long_enough = label.STEROID_FULL_DOSE_DAYS >= label.LIVE_VACCINE_MIN_DAYS
    if (
        steroids is not None
        and long_enough
        and (
            steroids.dose_mg_per_day >= label.LIVE_VACCINE_MG_PER_DAY
            or label.STEROID_MG_PER_KG_PER_DAY >= label.LIVE_VACCINE_MG_PER_KG_PER_DAY
        )
    ):
        findings.append(
            Finding(
                FindingCode.LIVE_VACCINE_CAUTION,
                Severity.INFO,
                f"Daily prednisolone {steroids.dose_mg_per_day} mg for "
                f"{label.STEROID_FULL_DOSE_DAYS} days is substantially immunosuppressive "
                "(>= 20 mg/day for >= 2 weeks): MMR and varicella vaccines are contraindicated "
                "during the course; plan vaccinations around it.",
                "7",
            )
        )
    topics = ", ".join(label.TOPIC_NAMES[point.topic] for point in label.COUNSELING)
    findings.append(
        Finding(
            FindingCode.CAREGIVER_COUNSELING,
            Severity.INFO,
            f"Counsel caregivers before infusion ({topics}); the points are listed in the plan.",
            "17",
        )
    )
    return findings


CHECKS: tuple[Check, ...] = (
    check_age,
    check_weight,
    check_weight_discrepancy,
    check_prior_gene_therapy,
    check_prematurity,
    check_titer,
    check_infection,
    check_baseline_labs,
    check_uln_sources,
    check_liver,
    check_hepatic_impairment,
    check_genetics,
    check_advanced_sma,
    check_unreadable,
    check_read,
    check_steroid_timing,
    check_counseling,
)


def status_of(findings: tuple[Finding, ...]) -> Status:
    """The most severe finding decides; info findings do not count."""
    ranked = [f.severity for f in findings if f.severity is not Severity.INFO]
    if not ranked:
        return Status.ELIGIBLE
    return Status(min(ranked, key=lambda s: s.rank).value)


def evaluate(ctx: Context) -> Eligibility:
    """Run every check and order the findings most severe first."""
    findings = tuple(
        sorted(
            (finding for check in CHECKS for finding in check(ctx)),
            key=lambda f: (f.severity.rank, f.code.value, f.message),
        )
    )
    return Eligibility(status=status_of(findings), findings=findings)


UNBLOCK_ADVICE: dict[Status, str] = {
    Status.NOT_ELIGIBLE: (
        "The label does not cover this patient (section 1 and the findings below); no plan can"
        " be written. Review the findings with the treating team."
    ),
    Status.DEFERRED: (
        "Infusion should wait until each finding below has resolved (a term-equivalent age, a"
        " repeat anti-AAV9 titer of 1:50 or lower, a resolved infection); record the new"
        " results in the chart and relaunch."
    ),
    Status.INCOMPLETE: (
        "The chart lacks data the label needs; record what each finding below names and"
        " relaunch. Nothing is guessed."
    ),
    Status.NEEDS_REVIEW: (
        "Each finding below needs a clinician's explicit acknowledgement before the plan is"
        " written."
    ),
}
"""What would let a plan with this status be written; shown beside the blocking findings."""
