"""The eligibility checklist: every criterion with its evidence, and what would unblock a plan."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from smart_app.rules import label
from smart_app.rules.alerts import LOW_TESTS
from smart_app.rules.arith import weeks_days
from smart_app.rules.dosing import band_weight_kg, between_bands, kit_for_weight
from smart_app.rules.eligibility import (
    COAGULATION_TESTS,
    LAB_SECTION,
    LIVER_ENTRY_TESTS,
    Standing,
    current,
    fever_clears_on,
    standing,
    term_age_date,
)
from smart_app.rules.labs import Interpreted, interpret
from smart_app.rules.model import (
    Comparator,
    Evidence,
    Finding,
    FindingCode,
    LabResult,
    LabTest,
    Measurement,
    PatientFacts,
    Plan,
    Severity,
    Status,
    UlnSource,
)
from smart_app.rules.plan import build_plan, dosing_weight
from smart_app.rules.policy import DEFAULT_POLICY, Policy
from smart_app.web import words

F = FindingCode


class State(StrEnum):
    """Where one criterion stands on the infusion date."""

    MET = "met"
    NOT_MET = "not met"
    MISSING = "missing"
    REVIEW = "needs review"


STATE_OF_SEVERITY = {
    Severity.NOT_ELIGIBLE: State.NOT_MET,
    Severity.DEFERRED: State.NOT_MET,
    Severity.INCOMPLETE: State.MISSING,
    Severity.NEEDS_REVIEW: State.REVIEW,
}
"""A finding's severity as the state of the criterion it belongs to (info leaves it met)."""
STATE_RANK = (State.NOT_MET, State.MISSING, State.REVIEW, State.MET)
TERM_EQUIVALENT_DAYS = 280
"""40 weeks: the age a preterm infant's corrected age counts from (words.age's default)."""


@dataclass(frozen=True)
class Row:
    """One criterion (or one baseline test) with its value, date, rule and sources."""

    key: str
    criterion: str
    state: State
    value: str
    date: dt.date | None
    rule: str
    section: str
    sources: tuple[str, ...] = ()
    note: str = ""
    uln: str = ""
    """For a baseline test: the ULN it is judged against and where it came from."""
    multiple: str = ""
    """For a baseline test: the value as a multiple of its ULN ('0.53 × ULN')."""
    flag: str = ""
    """For a baseline test: 'within range', 'above ULN', 'above 2 × ULN'."""


@dataclass(frozen=True)
class Checklist:
    """The criteria, the baseline tests and the findings that belong to neither."""

    criteria: tuple[Row, ...]
    baseline: tuple[Row, ...]
    other: tuple[Finding, ...]
    """Findings no row shows (a passed steroid start, a truncated search, information)."""
    gestational_age_days: int | None
    """At birth, when recorded: the corrected age of a preterm infant needs it."""

    @property
    def rows(self) -> tuple[Row, ...]:
        """Criteria then baseline tests."""
        return (*self.criteria, *self.baseline)

    def row(self, key: str) -> Row:
        """The row with this key."""
        return next(r for r in self.rows if r.key == key)

    def counts(self) -> dict[State, int]:
        """How many rows are in each state."""
        return {s: sum(1 for r in self.rows if r.state is s) for s in State}


CODES: dict[str, frozenset[FindingCode]] = {
    "age": frozenset({F.AGE_NOT_UNDER_2, F.BIRTH_DATE_MISSING}),
    "weight": frozenset(
        {
            F.WEIGHT_MISSING,
            F.WEIGHT_STALE,
            F.WEIGHT_OUTSIDE_LABEL_RANGE,
            F.WEIGHT_DISCREPANCY,
            F.WEIGHT_BETWEEN_BANDS,
        }
    ),
    "smn1": frozenset({F.SMN1_BIALLELIC_NOT_CONFIRMED, F.SMN2_COPY_NUMBER}),
    "titer": frozenset(
        {F.ANTI_AAV9_TITER_ELEVATED, F.ANTI_AAV9_TITER_MISSING, F.ANTI_AAV9_TITER_AMBIGUOUS}
    ),
    "term": frozenset({F.PRETERM_BEFORE_TERM_AGE, F.GESTATIONAL_AGE_MISSING}),
    "infection": frozenset({F.ACTIVE_INFECTION}),
    "prior": frozenset({F.PRIOR_ONASEMNOGENE}),
    "hepatic": frozenset({F.HEPATIC_IMPAIRMENT}),
}
"""The findings each criterion row stands for."""
LAB_CODES = frozenset(
    {F.BASELINE_LAB_MISSING, F.LIVER_FUNCTION_ELEVATED, F.ULN_FALLBACK_USED, F.RESULT_UNREADABLE}
)
"""Findings about one baseline result: a lab row stands for those naming its resource."""
SHOWN_ELSEWHERE = frozenset({F.CAREGIVER_COUNSELING})
"""Findings the plan page shows in a section of their own (the counseling points)."""


def _state(findings: Iterable[Finding], *, default: State = State.MET) -> State:
    """The worst state the findings give, never better than `default`."""
    states = [default, *(STATE_OF_SEVERITY.get(f.severity, State.MET) for f in findings)]
    return min(states, key=STATE_RANK.index)


def _of(findings: tuple[Finding, ...], key: str) -> list[Finding]:
    """The findings a criterion row stands for."""
    return [f for f in findings if f.code in CODES[key]]


def _refs(evidence: Iterable[Evidence]) -> tuple[str, ...]:
    """Distinct references, in order."""
    return tuple(dict.fromkeys(e.reference for e in evidence if e.reference))


def _days_default(days: int) -> str:
    """'within 30 days before infusion (institution default)'."""
    return f"within {days} days before infusion (institution default)"


def _age_shown(days: int, ga_days: int | None, *, term: int) -> str:
    """Age in months and days; a preterm infant's corrected age, or before term-equivalent age
    (40 weeks) the postmenstrual age instead."""
    if ga_days is None or ga_days >= term:
        return words.age(days)
    if ga_days + days < TERM_EQUIVALENT_DAYS:
        return f"{words.age(days)} (postmenstrual age {weeks_days(ga_days + days)})"
    return words.age(days, gestational_days=ga_days)


def _age_row(plan: Plan, findings: tuple[Finding, ...], ga_days: int | None, term: int) -> Row:
    """Section 1: under 2 years of age on the infusion date."""
    mine = _of(findings, "age")
    last = plan.last_labeled_infusion_date
    if plan.birth_date is None or plan.age_days_on_infusion is None:
        return Row(
            "age",
            "Under 2 years on the infusion date",
            _state(mine, default=State.MISSING),
            "no date of birth recorded",
            None,
            "under 2 years on the infusion date",
            "1",
            (f"Patient/{plan.patient_id}",),
        )
    return Row(
        "age",
        "Under 2 years on the infusion date",
        _state(mine),
        _age_shown(plan.age_days_on_infusion, ga_days, term=term),
        plan.birth_date,
        f"under 2 years; last labelled infusion date {words.clinical_date(last)}",
        "1",
        (f"Patient/{plan.patient_id}",),
        note=f"born {words.clinical_date(plan.birth_date)}",
    )


def _entered(m: Measurement) -> str:
    """A weight as it was entered, kg to 2 decimals beside it when it was not in kg."""
    entered = f"{m.evidence.value} {m.evidence.unit}".strip() if m.evidence.value else ""
    return words.weight(m.value, entered=entered)


def _weight_row(
    plan: Plan, facts: PatientFacts, findings: tuple[Finding, ...], policy: Policy
) -> Row:
    """Section 2.1, Table 1: a current weight in the labelled 2.6-21.0 kg range."""
    mine = _of(findings, "weight")
    limits = f"{label.MIN_WEIGHT_KG}–{label.MAX_WEIGHT_KG} kg (Table 1)"
    dosed = dosing_weight(
        facts, on=plan.evaluated_on, infusion_date=plan.infusion_date, policy=policy
    )
    shown = dosed or current(facts.weights_kg, on=plan.evaluated_on)
    if shown is None:
        return Row(
            "weight",
            "Weight in the labelled range",
            _state(mine, default=State.MISSING),
            "no weight recorded",
            None,
            limits,
            "2.1",
        )
    note = ""
    kit = kit_for_weight(shown.value)
    if dosed is None:
        note = f"too old: weigh {_days_default(policy.weight_max_age_days)}"
    elif kit is None:
        note = "outside the labelled range: no kit"
    else:
        note = f"band {kit.band_low_kg}–{kit.band_high_kg} kg"
        if between_bands(shown.value):
            note += f" (between printed bands: looked up as {band_weight_kg(shown.value)} kg)"
    if any(f.code is F.WEIGHT_DISCREPANCY for f in mine):
        note += "; weights taken together disagree: dosed on the heavier"
    sources = _refs([shown.evidence, *(e for f in mine for e in f.evidence)])
    return Row(
        "weight",
        "Weight in the labelled range",
        _state(mine),
        _entered(shown),
        shown.effective,
        limits,
        "2.1",
        sources,
        note=note,
    )


def _smn1_row(plan: Plan, facts: PatientFacts, findings: tuple[Finding, ...]) -> Row:
    """Section 1: bi-allelic SMN1 mutations (0 copies of SMN1 shows a bi-allelic deletion)."""
    mine = _of(findings, "smn1")
    smn1 = current(facts.smn1_copies, on=plan.evaluated_on)
    smn2 = current(facts.smn2_copies, on=plan.evaluated_on)
    note = f"SMN2: {smn2.value.normalize():f} copies" if smn2 else ""
    sources = _refs([m.evidence for m in (smn1, smn2) if m is not None])
    if smn1 is None:
        value = "no SMN1 copy number recorded"
    else:
        copies = int(smn1.value)
        value = f"SMN1: {copies} cop{'y' if copies == 1 else 'ies'}"
    return Row(
        "smn1",
        "SMN1 bi-allelic mutation",
        _state(mine, default=State.MET if smn1 is not None else State.MISSING),
        value,
        smn1.effective if smn1 else None,
        "0 copies (bi-allelic deletion), or a documented pathogenic variant",
        "1",
        sources,
        note=note,
    )


def _titer_row(
    plan: Plan, facts: PatientFacts, findings: tuple[Finding, ...], policy: Policy
) -> Row:
    """Sections 2.3 and 6.2: a baseline anti-AAV9 antibody titer at or below 1:50."""
    mine = _of(findings, "titer")
    newest = next((t for t in facts.titers if t.effective <= plan.evaluated_on), None)
    rule = f"≤ 1:50; {_days_default(policy.titer_max_age_days)}"
    if newest is None:
        return Row(
            "titer",
            "Anti-AAV9 antibody titer",
            _state(mine, default=State.MISSING),
            "no titer recorded",
            None,
            rule,
            "2.3; 6.2",
        )
    return Row(
        "titer",
        "Anti-AAV9 antibody titer",
        _state(mine),
        newest.evidence.value or "?",
        newest.effective,
        rule,
        "2.3; 6.2",
        (newest.evidence.reference,),
    )


def _term_row(
    plan: Plan, facts: PatientFacts, findings: tuple[Finding, ...], policy: Policy
) -> Row:
    """Section 8.4: a preterm infant reaches full-term postmenstrual age before infusion."""
    mine = _of(findings, "term")
    term = policy.term_gestational_age_days
    rule = f"{weeks_days(term)} postmenstrual age on the infusion date (institution default)"
    ga = current(facts.gestational_age_days, on=plan.evaluated_on)
    age = plan.age_days_on_infusion
    if ga is None:
        value = "no gestational age at birth recorded"
        note = (
            f"term age is reached by then even if born at "
            f"{weeks_days(policy.min_gestational_age_days)} (institution default)"
            if age is not None and not mine
            else ""
        )
        return Row(
            "term",
            "Term age (preterm infants)",
            _state(mine),
            value,
            None,
            rule,
            "8.4",
            note=note,
        )
    ga_days = int(ga.value)
    value = f"born at {weeks_days(ga_days)}"
    note = ""
    if ga_days >= term:
        value += " (term)"
    elif age is not None:
        note = f"{weeks_days(ga_days + age)} postmenstrual on the infusion date"
    return Row(
        "term",
        "Term age (preterm infants)",
        _state(mine),
        value,
        ga.effective,
        rule,
        "8.4",
        (ga.evidence.reference,),
        note=note,
    )


def _infection_row(
    plan: Plan, facts: PatientFacts, findings: tuple[Finding, ...], policy: Policy
) -> Row:
    """Sections 2.1 and 5.2: no active infection, no fever in the look-back."""
    mine = _of(findings, "infection")
    since = plan.evaluated_on - dt.timedelta(days=policy.fever_lookback_days)
    temps = [t for t in facts.temperatures_c if since <= t.effective <= plan.evaluated_on]
    threshold = words.quantity(policy.fever_threshold_c, "Cel")
    rule = (
        f"no infection on the problem list; no temperature ≥ {threshold} in the "
        f"{policy.fever_lookback_days} days before today (institution default)"
    )
    parts = [e.display or e.value for e in facts.active_infections]
    fevers = [t for t in temps if t.value >= policy.fever_threshold_c]
    shown = fevers[0] if fevers else (temps[0] if temps else None)
    if shown is not None:
        parts.append(words.quantity(shown.value.normalize(), "Cel"))
    value = "; ".join(parts) if parts else "no infection or temperature on record"
    sources = _refs([*facts.active_infections, *([shown.evidence] if shown else [])])
    return Row(
        "infection",
        "No active infection",
        _state(mine),
        value,
        shown.effective if shown else None,
        rule,
        "2.1; 5.2",
        sources,
        note="" if facts.active_infections or not temps else "no infection on the problem list",
    )


def _prior_row(plan: Plan, facts: PatientFacts, findings: tuple[Finding, ...]) -> Row:
    """Section 1: no ZOLGENSMA given or ordered before (repeat dosing not evaluated)."""
    mine = _of(findings, "prior")
    known = [e for e in facts.prior_gene_therapy if e.date is None or e.date <= plan.evaluated_on]
    value = "; ".join(e.display or e.reference for e in known) if known else "none on record"
    return Row(
        "prior",
        "No prior ZOLGENSMA",
        _state(mine),
        value,
        max((e.date for e in known if e.date), default=None),
        "repeat administration has not been evaluated",
        "1; 6.2",
        _refs(known),
    )


def _hepatic_row(
    plan: Plan, facts: PatientFacts, findings: tuple[Finding, ...], labs: dict[LabTest, Row]
) -> Row:
    """Sections 5.1 and 8.6: no sign of preexisting liver impairment."""
    mine = _of(findings, "hepatic")
    parts = []
    for test in COAGULATION_TESTS:
        row = labs.get(test)
        if row is not None and row.date is not None:
            parts.append(f"{test} {row.value} ({row.flag})" if row.flag else f"{test} {row.value}")
    parts.extend(f"liver disease: {e.display or e.value}" for e in facts.liver_conditions)
    if not facts.liver_conditions:
        parts.append("no liver disease on record")
    sources = _refs([e for f in mine for e in f.evidence] or facts.liver_conditions)
    return Row(
        "hepatic",
        "No hepatic impairment",
        _state(mine),
        "; ".join(parts),
        None,
        "INR and PT at or below ULN; no liver disease Condition",
        "5.1; 8.6",
        sources,
    )


def _tidy(value: Decimal) -> str:
    """A number as the laboratory writes it: its own decimals, at most two ('1.0', '0.53')."""
    text = format(value, "f")
    if "." in text and len(text.split(".", 1)[1]) > 2:
        text = format(value.normalize(), "f")
        if "." in text and len(text.split(".", 1)[1]) > 2:
            text = words.decimal(value, places=2)
    return text


def _censored(result: LabResult) -> str:
    """A value in clinical notation, with its comparator when censored ('<0.2 mg/dL')."""
    prefix = "" if result.comparator is Comparator.EQ else result.comparator.value
    return prefix + words.quantity(_tidy(result.value), result.unit)


NO_MULTIPLE = (*LOW_TESTS, LabTest.ALBUMIN)
"""Tests whose concern is a low value: a multiple of their upper limit means nothing."""


def _flag(seen: Interpreted, policy: Policy) -> str:
    """How a baseline result stands against its limits (eligibility.standing), in words."""
    found = standing(seen, policy=policy)
    if found is Standing.LOW:
        low = words.quantity(policy.platelets_low_10e3_per_ul, "10*3/uL")
        return f"below {low} (institution default)"
    return found.value


def _lab_row(
    test: LabTest, plan: Plan, facts: PatientFacts, findings: tuple[Finding, ...], policy: Policy
) -> Row:
    """One baseline test: its newest result within the look-back, × ULN and flag."""
    days = policy.baseline_lab_max_age_days
    since = plan.infusion_date - dt.timedelta(days=days)
    newest = next((r for r in facts.labs_for(test) if r.effective <= plan.evaluated_on), None)
    rule = (
        "≤ 2 × ULN (not studied above)"
        if test in LIVER_ENTRY_TESTS
        else "≤ ULN (liver impairment above)"
        if test in COAGULATION_TESTS
        else "recorded"
    )
    rule += f"; {_days_default(days)}"
    if newest is None or newest.effective < since:
        return Row(
            f"lab:{test.value}",
            f"Baseline {test}",
            State.MISSING,
            "no result" if newest is None else _censored(newest),
            None if newest is None else newest.effective,
            rule,
            LAB_SECTION[test],
            () if newest is None else (newest.evidence.reference,),
            note="" if newest is None else "too old",
        )
    seen = interpret(newest, birth_date=facts.birth_date)
    mine = [
        f
        for f in findings
        if f.code in LAB_CODES and any(e.reference == newest.evidence.reference for e in f.evidence)
    ]
    uln = ""
    if seen.uln is not None:
        where = "pediatric fallback table" if seen.source is UlnSource.FALLBACK else "reported"
        uln = f"{words.quantity(_tidy(seen.uln), newest.unit)} ({where})"
    multiple = None if test in NO_MULTIPLE else seen.multiple_of_uln
    return Row(
        f"lab:{test.value}",
        f"Baseline {test}",
        _state(mine),
        _censored(newest),
        newest.effective,
        rule,
        LAB_SECTION[test],
        (newest.evidence.reference,),
        uln=uln,
        multiple=f"{words.decimal(multiple, places=2)}{words.NBSP}×{words.NBSP}ULN"
        if multiple is not None
        else "",
        flag=_flag(seen, policy),
    )


def _covered(finding: Finding, baseline: tuple[Row, ...]) -> bool:
    """True when a row of the checklist stands for this finding."""
    if any(finding.code in codes for codes in CODES.values()):
        return True
    if finding.code is F.BASELINE_LAB_MISSING:
        return True
    if finding.code in LAB_CODES:
        shown = {s for row in baseline for s in row.sources}
        return bool(finding.evidence) and all(e.reference in shown for e in finding.evidence)
    return False


def build(plan: Plan, facts: PatientFacts, *, policy: Policy = DEFAULT_POLICY) -> Checklist:
    """Every criterion the label sets for the infusion date, with the evidence behind it."""
    findings = plan.eligibility.findings
    ga = current(facts.gestational_age_days, on=plan.evaluated_on)
    ga_days = int(ga.value) if ga is not None else None
    labs = {test: _lab_row(test, plan, facts, findings, policy) for test in policy.baseline_tests}
    baseline = tuple(labs.values())
    criteria = (
        _age_row(plan, findings, ga_days, policy.term_gestational_age_days),
        _weight_row(plan, facts, findings, policy),
        _smn1_row(plan, facts, findings),
        _titer_row(plan, facts, findings, policy),
        _term_row(plan, facts, findings, policy),
        _infection_row(plan, facts, findings, policy),
        _prior_row(plan, facts, findings),
        _hepatic_row(plan, facts, findings, labs),
    )
    other = tuple(
        f for f in findings if not _covered(f, baseline) and f.code not in SHOWN_ELSEWHERE
    )
    return Checklist(criteria, baseline, other, ga_days)


def as_data(checklist: Checklist) -> list[dict[str, str]]:
    """The rows as JSON-ready text: what the clinician reviewed, for the plan's fingerprint."""
    return [
        {
            "key": r.key,
            "state": r.state.value,
            "value": r.value,
            "date": r.date.isoformat() if r.date else "",
            "sources": " ".join(r.sources),
            "note": r.note,
            "uln": r.uln,
            "flag": r.flag,
        }
        for r in checklist.rows
    ]


@dataclass(frozen=True)
class Unblock:
    """What would let a blocked plan be written, and the earliest date when the chart gives one."""

    advice: str
    blocking: tuple[Finding, ...]
    retry_on: dt.date | None = None
    """An infusion date the rules were re-run for: re-evaluating with it is one click."""
    retry_status: Status | None = None
    """The status the rules give for `retry_on`."""
    retry_why: str = ""
    evaluate_from: dt.date | None = None
    """A later evaluation date (a look-back ending): not a click today, a date to come back."""
    evaluate_why: str = ""


def unblock(
    plan: Plan,
    facts: PatientFacts,
    *,
    advice: str,
    latest: dt.date,
    policy: Policy = DEFAULT_POLICY,
) -> Unblock:
    """For a blocked plan: the blocking findings, and a date only where the data gives one.

    A preterm infant reaches term age on a date the rules compute (birth + term - gestational
    age): the plan is re-run for that infusion date, if it is no later than `latest`, and its
    status shown. A fever leaves the look-back a fixed number of days after it was taken: that
    is a day to evaluate again (the look-back counts from the evaluation day), not a new
    infusion date. Nothing else has a date: it needs a new result or a clinician."""
    status = plan.eligibility.status
    blocking = tuple(f for f in plan.eligibility.findings if f.severity.value == status.value)
    found = Unblock(advice=advice, blocking=blocking)
    codes = {f.code for f in blocking}
    if F.PRETERM_BEFORE_TERM_AGE in codes and plan.birth_date is not None:
        ga = current(facts.gestational_age_days, on=plan.evaluated_on)
        if ga is not None:
            term = policy.term_gestational_age_days
            on = term_age_date(plan.birth_date, int(ga.value), policy=policy)
            if plan.infusion_date < on <= latest:
                again = build_plan(facts, on=plan.evaluated_on, infusion_date=on, policy=policy)
                found = Unblock(
                    advice=advice,
                    blocking=blocking,
                    retry_on=on,
                    retry_status=again.eligibility.status,
                    retry_why=f"full term ({weeks_days(term)} postmenstrual age) is reached",
                )
    fevers = [
        e.date
        for f in blocking
        if f.code is F.ACTIVE_INFECTION
        for e in f.evidence
        if e.date is not None and e.reference.startswith("Observation/")
    ]
    if fevers:
        after = fever_clears_on(max(fevers), policy=policy)
        return Unblock(
            advice=found.advice,
            blocking=found.blocking,
            retry_on=found.retry_on,
            retry_status=found.retry_status,
            retry_why=found.retry_why,
            evaluate_from=after,
            evaluate_why=(
                f"the last temperature ≥ {words.quantity(policy.fever_threshold_c, 'Cel')} "
                f"leaves the {policy.fever_lookback_days}-day look-back (institution default)"
            ),
        )
    return found


def reason(checklist: Checklist, status: Status) -> str:
    """The decision in one line: what is met, or which criteria are not, with their values."""
    counts = checklist.counts()
    total = len(checklist.rows)
    if status is Status.ELIGIBLE:
        return f"All {total} criteria and baseline tests below are met."
    wanted = {
        Status.NOT_ELIGIBLE: State.NOT_MET,
        Status.DEFERRED: State.NOT_MET,
        Status.INCOMPLETE: State.MISSING,
        Status.NEEDS_REVIEW: State.REVIEW,
    }[status]
    named = [
        f"{r.criterion} ({r.value}; {r.note})" if r.note else f"{r.criterion} ({r.value})"
        for r in checklist.rows
        if r.state is wanted
    ]
    severity = Severity(status.value)
    others = sum(1 for f in checklist.other if f.severity is severity)
    if others:
        named.append(f"{others} other finding{'s' if others > 1 else ''} below")
    lead = {
        State.NOT_MET: "Not met",
        State.MISSING: "Missing from the chart",
        State.REVIEW: "Needs your review",
    }[wanted]
    met = f" {counts[State.MET]} of {total} are met." if counts[State.MET] else ""
    return f"{lead}: {'; '.join(named)}.{met}"
