"""A Plan as JSON-ready data, keys in a fixed order: the command's plan JSON (smart_app.render
writes it) and what the web's fingerprint digests of a reviewed plan."""

from __future__ import annotations

import datetime as dt
from typing import Any

from smart_app.rules import label
from smart_app.rules.arith import json_number
from smart_app.rules.model import Dose, Evidence, Finding, Plan, ScheduleItem, SteroidCourse


def iso_day(value: dt.date | None) -> str | None:
    """ISO date or None."""
    return value.isoformat() if value else None


def evidence_data(e: Evidence) -> dict[str, Any]:
    """One piece of evidence."""
    return {
        "reference": e.reference,
        "value": e.value,
        "unit": e.unit,
        "date": iso_day(e.date),
        "recorded": e.recorded or None,
        "display": e.display,
    }


def finding_data(f: Finding) -> dict[str, Any]:
    """One finding."""
    return {
        "code": f.code.value,
        "severity": f.severity.value,
        "message": f.message,
        "section": f.section,
        "evidence": [evidence_data(e) for e in f.evidence],
    }


def dose_data(dose: Dose | None) -> dict[str, Any] | None:
    """The dose card, or None when no labeled kit applies."""
    if dose is None:
        return None
    kit = dose.kit
    return {
        "weight_kg": json_number(dose.weight_kg),
        "band_weight_kg": json_number(dose.band_weight_kg),
        "band_kg": [json_number(kit.band_low_kg), json_number(kit.band_high_kg)],
        "kit_ndc": kit.ndc,
        "dose_volume_ml": json_number(kit.dose_volume_ml),
        "vials_5_5_ml": kit.vials_5_5_ml,
        "vials_8_3_ml": kit.vials_8_3_ml,
        "total_vials": kit.total_vials,
        "kit_capacity_ml": json_number(kit.capacity_ml),
        "vector_genomes": dose.vector_genomes,
        "vector_genomes_per_kg": json_number(dose.vector_genomes_per_kg),
        "infusion_minutes": dose.infusion_minutes,
        "pump_rate_ml_per_h": json_number(dose.pump_rate_ml_per_h),
        "explanation": dose.explanation,
    }


def _steroids(course: SteroidCourse | None) -> dict[str, Any] | None:
    """The corticosteroid course, or None without a dose."""
    if course is None:
        return None
    return {
        "drug": "prednisolone (or equivalent)",
        "weight_kg": json_number(course.weight_kg),
        "dose_mg_per_day": json_number(course.dose_mg_per_day),
        "volume_ml_per_day": json_number(course.volume_ml_per_day),
        "concentration_mg_per_ml": json_number(course.concentration_mg_per_ml),
        "start_date": iso_day(course.start_date),
        "full_dose_through": iso_day(course.full_dose_through),
        "liver_check_date": iso_day(course.liver_check_date),
        "taper": [
            {
                "start": iso_day(s.start),
                "end": iso_day(s.end),
                "days": s.days,
                "mg_per_kg_per_day": json_number(s.mg_per_kg_per_day),
                "dose_mg_per_day": json_number(s.dose_mg_per_day),
                "volume_ml_per_day": json_number(s.volume_ml_per_day),
            }
            for s in course.taper
        ],
        "taper_basis": course.taper_basis,
    }


def _item(i: ScheduleItem) -> dict[str, Any]:
    """One scheduled activity."""
    return {
        "date": iso_day(i.date),
        "day": i.day,
        "hcp_day": i.hcp_day,
        "kind": i.kind.value,
        "activity": i.activity,
        "tests": [t.value for t in i.tests],
        "section": i.section,
        "window": {"start": iso_day(i.window_start), "end": iso_day(i.window_end)},
        "institution_default": i.institution_default,
        "conditional": i.conditional or None,
    }


def boxed_warning_data(warning: label.BoxedWarning = label.BOXED_WARNING) -> dict[str, Any]:
    """The label's boxed warning in short, as shown on every plan."""
    return {
        "title": warning.title,
        "says": list(warning.says),
        "before_infusion": list(warning.before_infusion),
        "after_infusion": list(warning.after_infusion),
        "section": warning.section,
    }


def plan_data(plan: Plan) -> dict[str, Any]:
    """The plan as JSON-ready data, keys in a fixed order."""
    return {
        "evaluated_on": iso_day(plan.evaluated_on),
        "infusion_date": iso_day(plan.infusion_date),
        "patient": {
            "id": plan.patient_id,
            "birth_date": iso_day(plan.birth_date),
            "age_days_on_infusion": plan.age_days_on_infusion,
            "last_labeled_infusion_date": iso_day(plan.last_labeled_infusion_date),
        },
        "boxed_warning": boxed_warning_data(),
        "eligibility": {
            "status": plan.eligibility.status.value,
            "findings": [finding_data(f) for f in plan.eligibility.findings],
        },
        "dose": dose_data(plan.dose),
        "prednisolone": _steroids(plan.steroids),
        "schedule": [_item(i) for i in plan.schedule],
        "counseling": [
            {"topic": c.topic, "text": c.text, "section": c.section} for c in plan.counseling
        ],
        "label_version": plan.label_version,
        "policy_version": plan.policy_version,
    }
