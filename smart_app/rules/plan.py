"""The whole decision for one patient: eligibility, dose, steroid course, schedule."""

from __future__ import annotations

import datetime as dt

from smart_app.errors import InputError
from smart_app.rules import label
from smart_app.rules.dosing import dose_for_weight
from smart_app.rules.eligibility import (
    Context,
    age_limit_date,
    evaluate,
    heaviest,
    weights_disagree,
    weights_together,
)
from smart_app.rules.model import Measurement, PatientFacts, Plan, Severity, Status
from smart_app.rules.monitoring import schedule
from smart_app.rules.policy import DEFAULT_POLICY, Policy
from smart_app.rules.steroids import steroid_course


def dosing_weight(
    facts: PatientFacts, *, on: dt.date, infusion_date: dt.date, policy: Policy
) -> Measurement | None:
    """The weight the kit and prednisolone are dosed on, if recent enough; else None.

    The newest weight known on `on`, unless weights taken together with it (same date, or within
    `policy.weight_pair_hours` when both are timed) disagree (section 2.1: a weight discrepancy)
    or cannot be told apart in time: then the heaviest of them. Table 1 computes each volume at
    the band's upper limit so that every patient receives at least 1.1e14 vg/kg; the lighter
    weight would underdose if the heavier is right. Never a resource-id tie-break.
    """
    together = weights_together(facts, on=on, policy=policy)
    if not together:
        return None
    newest = together[0]
    if (infusion_date - newest.effective).days > policy.weight_max_age_days:
        return None
    if weights_disagree(together, policy=policy):
        return heaviest(together)
    return heaviest(tuple(m for m in together if not _timed_apart(m, newest)))


def _timed_apart(a: Measurement, b: Measurement) -> bool:
    """True when both weights record a time and the times differ (so one is the newer)."""
    return a.taken_at is not None and b.taken_at is not None and a.taken_at != b.taken_at


WRITABLE = frozenset({Status.ELIGIBLE, Status.NEEDS_REVIEW})
"""Statuses whose plan may be written back (needs-review once each finding is acknowledged)."""
BLOCKING = frozenset(s for s in Severity if s.rank < Severity.NEEDS_REVIEW.rank)
"""Finding severities that keep a plan from being written: those above needs-review, one for each
status outside WRITABLE."""


def may_write(plan: Plan) -> bool:
    """True when the plan's status allows a write and it has a dose and a steroid course."""
    return (
        plan.eligibility.status in WRITABLE and plan.dose is not None and plan.steroids is not None
    )


def write_refusal(plan: Plan, *, acknowledged: frozenset[str]) -> str | None:
    """Why this plan may not be written with these acknowledgements, or None when it may."""
    status = plan.eligibility.status
    if status not in WRITABLE:
        blocking = [f for f in plan.eligibility.findings if f.severity.value == status.value]
        reasons = "; ".join(f"{f.code.value}: {f.message} ({f.section})" for f in blocking)
        return f"nothing written: the plan is {status.value}. {reasons}"
    if plan.dose is None or plan.steroids is None:
        return "nothing written: the plan has no dose or corticosteroid course"
    missing = sorted(
        f.code.value
        for f in plan.eligibility.findings
        if f.severity is Severity.NEEDS_REVIEW and f.code.value not in acknowledged
    )
    if missing:
        return "nothing written: acknowledge each needs-review finding first: " + ", ".join(missing)
    stray = sorted(acknowledged - {f.code.value for f in plan.eligibility.findings})
    if stray:
        return f"nothing written: acknowledged findings not in the plan: {stray}"
    return None


CALENDAR_MARGIN = dt.timedelta(days=3660)
"""Ten years: every date a plan computes (baseline look-backs, the taper, a year of follow-up,
the second birthday) lies well within this of the evaluation or infusion date."""
EARLIEST_DATE = dt.date.min + CALENDAR_MARGIN
LATEST_DATE = dt.date.max - CALENDAR_MARGIN
"""Dates outside [EARLIEST_DATE, LATEST_DATE] cannot carry a schedule: refused as input."""


def check_calendar(name: str, day: dt.date) -> None:
    """InputError when `day` lies too near the calendar's ends for the plan's dates to exist."""
    if not EARLIEST_DATE <= day <= LATEST_DATE:
        raise InputError(
            f"{name} {day} is outside the dates a schedule can be computed for "
            f"({EARLIEST_DATE} to {LATEST_DATE})"
        )


def build_plan(
    facts: PatientFacts,
    *,
    on: dt.date,
    infusion_date: dt.date,
    policy: Policy = DEFAULT_POLICY,
) -> Plan:
    """Evaluate a patient for an infusion on `infusion_date`, as known on `on`."""
    check_calendar("evaluation date", on)
    check_calendar("infusion date", infusion_date)
    if infusion_date < on:
        raise InputError(f"infusion date {infusion_date} is before the evaluation date {on}")
    birth = facts.birth_date
    if birth is not None and infusion_date < birth:
        raise InputError(f"infusion date {infusion_date} is before the birth date {birth}")
    weight = dosing_weight(facts, on=on, infusion_date=infusion_date, policy=policy)
    dose = dose_for_weight(weight.value) if weight else None
    steroids = (
        steroid_course(weight.value, infusion_date=infusion_date, policy=policy)
        if weight and dose
        else None
    )
    eligibility = evaluate(
        Context(
            facts=facts,
            on=on,
            infusion_date=infusion_date,
            policy=policy,
            weight=weight,
            steroids=steroids,
        )
    )
    last_day = age_limit_date(birth) - dt.timedelta(days=1) if birth else None
    return Plan(
        patient_id=facts.patient_id,
        birth_date=birth,
        evaluated_on=on,
        infusion_date=infusion_date,
        age_days_on_infusion=(infusion_date - birth).days if birth else None,
        last_labeled_infusion_date=last_day,
        eligibility=eligibility,
        dose=dose,
        steroids=steroids,
        schedule=schedule(infusion_date, policy=policy, steroids=steroids),
        counseling=label.COUNSELING,
        policy_version=policy.version,
        label_version=label.LABEL_VERSION,
    )
