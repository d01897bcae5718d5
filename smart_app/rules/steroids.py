"""The prophylactic corticosteroid course around the infusion (section 2.1, HCP timeline)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from smart_app.rules import label
from smart_app.rules.arith import round_half_up
from smart_app.rules.model import SteroidCourse, SteroidStep
from smart_app.rules.policy import Policy


def daily_dose_mg(weight_kg: Decimal, mg_per_kg: Decimal) -> Decimal:
    """A daily prednisolone-equivalent dose on actual weight, to 0.1 mg."""
    return round_half_up(weight_kg * mg_per_kg)


def volume_ml(dose_mg: Decimal, *, concentration_mg_per_ml: Decimal) -> Decimal:
    """The oral-solution volume for a dose, to 0.1 mL."""
    return round_half_up(dose_mg / concentration_mg_per_ml)


def taper_steps(
    weight_kg: Decimal, *, first_day: dt.date, policy: Policy
) -> tuple[SteroidStep, ...]:
    """The institution's gradual taper, starting on `first_day`, never an abrupt stop."""
    steps = []
    start = first_day
    for mg_per_kg, days in zip(policy.taper_mg_per_kg_per_day, policy.taper_step_days, strict=True):
        dose = daily_dose_mg(weight_kg, mg_per_kg)
        end = start + dt.timedelta(days=days - 1)
        steps.append(
            SteroidStep(
                start=start,
                end=end,
                mg_per_kg_per_day=mg_per_kg,
                dose_mg_per_day=dose,
                volume_ml_per_day=volume_ml(
                    dose, concentration_mg_per_ml=policy.concentration_mg_per_ml
                ),
            )
        )
        start = end + dt.timedelta(days=1)
    return tuple(steps)


def steroid_course(weight_kg: Decimal, *, infusion_date: dt.date, policy: Policy) -> SteroidCourse:
    """1 mg/kg/day from the day before infusion for 30 days, liver check on infusion + 28, taper."""
    dose = daily_dose_mg(weight_kg, label.STEROID_MG_PER_KG_PER_DAY)
    start = infusion_date - dt.timedelta(days=1)
    through = start + dt.timedelta(days=label.STEROID_FULL_DOSE_DAYS - 1)
    taper = taper_steps(weight_kg, first_day=through + dt.timedelta(days=1), policy=policy)
    described = ", then ".join(f"{s.mg_per_kg_per_day} mg/kg/day for {s.days} days" for s in taper)
    basis = (
        f"The label says to taper 'gradually over the next 28 days' without steps (2.1); this "
        f"taper is an institution default ({policy.version}): {described}, then stop. It starts "
        f"only if the liver assessment on {through} is unremarkable (normal exam, total "
        f"bilirubin, PT and INR; ALT and AST < 2 x ULN). Otherwise continue 1 mg/kg/day until "
        f"they are, then taper over 28 days or longer; with {label.CONSULT_RULE}, promptly "
        f"consult pediatric gastroenterology or hepatology. Never stop abruptly. "
        f"{label.STEROID_IV_ALTERNATIVE}"
    )
    return SteroidCourse(
        weight_kg=weight_kg,
        dose_mg_per_day=dose,
        volume_ml_per_day=volume_ml(dose, concentration_mg_per_ml=policy.concentration_mg_per_ml),
        concentration_mg_per_ml=policy.concentration_mg_per_ml,
        start_date=start,
        full_dose_through=through,
        liver_check_date=through,
        taper=taper,
        taper_basis=basis,
    )
