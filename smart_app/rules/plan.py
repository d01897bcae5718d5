"""The whole decision for one patient: eligibility, dose, steroid course, schedule."""

from __future__ import annotations

import datetime as dt

from smart_app.errors import InputError
from smart_app.rules import label
from smart_app.rules.arith import anniversary
from smart_app.rules.dosing import dose_for_weight
from smart_app.rules.eligibility import Context, current, evaluate
from smart_app.rules.model import Measurement, PatientFacts, Plan
from smart_app.rules.monitoring import schedule
from smart_app.rules.policy import DEFAULT_POLICY, Policy
from smart_app.rules.steroids import steroid_course


def dosing_weight(
    facts: PatientFacts, *, on: dt.date, infusion_date: dt.date, policy: Policy
) -> Measurement | None:
    """The newest weight known on `on`, if recent enough for the infusion date; else None."""
    newest = current(facts.weights_kg, on=on)
    if newest is None:
        return None
    if (infusion_date - newest.effective).days > policy.weight_max_age_days:
        return None
    return newest


def build_plan(
    facts: PatientFacts,
    *,
    on: dt.date,
    infusion_date: dt.date,
    policy: Policy = DEFAULT_POLICY,
) -> Plan:
    """Evaluate a patient for an infusion on `infusion_date`, as known on `on`."""
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
    last_day = (
        anniversary(birth, years=label.AGE_LIMIT_YEARS) - dt.timedelta(days=1) if birth else None
    )
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
