"""A FollowUp as JSON-ready data and as a readable summary: the `followup` command's output (the
web page renders from the types, with smart_app.web.followup_view)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from smart_app.fhir.plan_state import KitWritten
from smart_app.followup_shown import TASK_GROUPS as TASK_GROUPS
from smart_app.followup_shown import decision_data as decision_data
from smart_app.followup_shown import kit_shown, previous_shown, task_groups
from smart_app.plan_json import evidence_data, finding_data, iso_day
from smart_app.render import wrap
from smart_app.rules import label
from smart_app.rules.alerts import describe
from smart_app.rules.arith import json_number
from smart_app.rules.followup import (
    ActionState,
    AlertReview,
    DoseToday,
    FollowUp,
    ResultRow,
    TaskView,
)
from smart_app.rules.model import (
    AlertResult,
    LabResult,
    ScheduleItem,
    SteroidOrder,
)


def _order(order: SteroidOrder) -> dict[str, Any]:
    """One prednisolone order."""
    return {
        "reference": order.reference,
        "role": order.role.value,
        "step": order.step,
        "start": iso_day(order.start),
        "end": iso_day(order.end),
        "mg_per_day": json_number(order.mg_per_day),
        "mg_per_kg_per_day": json_number(order.mg_per_kg_per_day),
        "volume_ml_per_day": json_number(order.volume_ml_per_day),
        "weight_kg": json_number(order.weight_kg) if order.weight_kg is not None else None,
        "status": order.status,
    }


def _dose(dose: DoseToday | None) -> dict[str, Any] | None:
    """A dose on a date with its order."""
    if dose is None:
        return None
    return {"date": iso_day(dose.date), "text": dose.text, "order": _order(dose.order)}


def _task(view: TaskView) -> dict[str, Any]:
    """One Task with its state and results."""
    task = view.task
    return {
        "reference": task.reference,
        "item": task.item,
        "kind": task.kind.value,
        "day": task.day,
        "hcp_day": task.day + 2,
        "window": {"start": iso_day(task.window_start), "end": iso_day(task.window_end)},
        "tests": [t.value for t in task.tests],
        "state": view.state.value,
        "late": view.late,
        "missing": [t.value for t in view.missing],
        "results": [m.evidence.reference for m in view.matches],
        "outputs": list(task.outputs),
        "description": task.description,
    }


def _result(row: ResultRow) -> dict[str, Any]:
    """One post-infusion result."""
    result = row.result
    return {
        "test": result.test.value,
        "value": json_number(result.value),
        "comparator": result.comparator.value,
        "unit": result.unit,
        "date": iso_day(result.effective),
        "day": row.day,
        "uln": json_number(row.uln) if row.uln is not None else None,
        "multiple_of_uln": json_number(row.multiple_of_uln)
        if row.multiple_of_uln is not None
        else None,
        "flag": row.flag.value,
        "final": result.final,
        "reference": result.evidence.reference,
    }


def _lab(result: LabResult | None) -> dict[str, Any] | None:
    """A result as the alert states it: value, comparator, UCUM unit, date."""
    if result is None:
        return None
    return {
        "test": result.test.value,
        "value": json_number(result.value),
        "comparator": result.comparator.value,
        "unit": result.unit,
        "date": iso_day(result.effective),
        "reference": result.evidence.reference,
    }


def _alert_result(seen: AlertResult) -> dict[str, Any]:
    """One result behind an alert with what it was compared with."""
    return {
        **(_lab(seen.result) or {}),
        "day": seen.day,
        "multiple_of_uln": json_number(seen.multiple_of_uln)
        if seen.multiple_of_uln is not None
        else None,
        "fallback_uln": json_number(seen.fallback_uln) if seen.fallback_uln is not None else None,
        "previous": _lab(previous_shown(seen)),
        "baseline": _lab(seen.baseline),
        "note": seen.note,
    }


def _action(state: ActionState) -> dict[str, Any]:
    """A Task the alert calls for: offered as a button, or the Task already made."""
    action, task = state.action, state.task
    return {
        "key": action.key,
        "kind": action.kind.value,
        "what": action.what,
        "tests": [t.value for t in action.tests],
        "section": action.section,
        "within_days": action.within_days,
        "item": state.item,
        "offered": state.offered,
        "task": None
        if task is None
        else {
            "reference": task.reference,
            "status": task.status,
            "open": task.is_open,
            "window": {"start": iso_day(task.window_start), "end": iso_day(task.window_end)},
            "day": task.day,
        },
    }


def _alert(review: AlertReview) -> dict[str, Any]:
    """One alert: what was seen (each result once), the rules met, the label's advice in points,
    its acknowledgement and the Tasks it calls for."""
    alert, acknowledged = review.alert, review.acknowledged
    return {
        "code": alert.code.value,
        "level": alert.level.value,
        "title": alert.title,
        "message": alert.message,
        "advice": list(alert.advice),
        "section": alert.section,
        "source": alert.source,
        "criteria": [{"rule": c.rule, "source": c.source} for c in alert.criteria],
        "results": [_alert_result(r) for r in alert.results],
        "gaps": list(alert.gaps),
        "evidence": [evidence_data(e) for e in alert.evidence],
        "acknowledged": None
        if acknowledged is None
        else {
            "reference": acknowledged.reference,
            "date": iso_day(acknowledged.window_end),
            "day": acknowledged.day,
            "today": review.acknowledged_today,
        },
        "actions": [_action(a) for a in review.actions],
    }


def kit_data(kit: KitWritten | None) -> dict[str, Any] | None:
    """The kit order as written: NDC, vials, dose volume, pump rate, vector genomes."""
    shown = kit_shown(kit)
    if shown is None:
        return None
    return {
        "reference": shown.reference,
        "status": shown.status,
        "ndc": shown.ndc,
        "description": shown.description,
        "dose_volume_ml": _number(shown.dose_volume_ml),
        "pump_rate_ml_per_h": _number(shown.pump_rate_ml_per_h),
        "vector_genomes": _number(shown.vector_genomes),
        "total_vials": shown.total_vials,
        "vials_5_5_ml": shown.vials_5_5_ml,
        "vials_8_3_ml": shown.vials_8_3_ml,
        "capacity_ml": _number(shown.capacity_ml),
        "band_kg": [json_number(kg) for kg in shown.band_kg] if shown.band_kg else None,
    }


def _number(value: Decimal | None) -> int | float | None:
    """A Decimal as a JSON number, None as null."""
    return None if value is None else json_number(value)


def _proposed(item: ScheduleItem) -> dict[str, Any]:
    """A further draw proposed until results are back to baseline (a Task once confirmed)."""
    return {
        "item": item.task_item,
        "kind": item.kind.value,
        "day": item.day,
        "hcp_day": item.hcp_day,
        "date": iso_day(item.date),
        "window": {"start": iso_day(item.window_start), "end": iso_day(item.window_end)},
        "tests": [t.value for t in item.tests],
        "activity": item.activity,
        "reasons": item.conditional,
        "section": item.section,
        "institution_default": item.institution_default,
    }


def followup_data(found: FollowUp, *, kit: KitWritten | None = None) -> dict[str, Any]:
    """Everything the follow-up shows, as JSON-ready data (`kit`: the kit order as written)."""
    groups = {
        state.value: [_task(view) for view in views]
        for state, views in task_groups(found.tasks).items()
    }
    return {
        "patient": found.patient_id,
        "on": iso_day(found.on),
        "infusion_date": iso_day(found.infusion_date),
        "day": found.day,
        "hcp_day": found.hcp_day,
        "phase": found.phase.value,
        "steroid": {
            "today": _dose(found.dose_today),
            "next_change": _dose(found.next_change),
            "course": found.course_text,
            "if_oral_not_tolerated": label.STEROID_IV_ALTERNATIVE,
            "orders": [_order(o) for o in found.orders],
        },
        "alerts": [_alert(r) for r in found.reviews],
        "kit": kit_data(kit),
        "decision": decision_data(found.decision),
        "tasks": groups,
        "proposed": [_proposed(p) for p in found.proposed],
        "results": [_result(r) for r in found.results],
        "findings": [finding_data(f) for f in found.findings],
    }


def followup_text(found: FollowUp) -> str:
    """A readable summary: alerts first, then where the patient stands, the decision, Tasks."""
    data = followup_data(found)
    out = [
        f"ZOLGENSMA follow-up for Patient/{found.patient_id} on {found.on}",
        f"  Day {found.day} after infusion on {found.infusion_date} (HCP Day {found.hcp_day}); "
        f"phase: {found.phase.value}",
    ]
    for review in found.reviews:
        alert = review.alert
        out.append(f"  {alert.level.value.upper()}: {alert.title} [USPI {alert.section}]")
        for seen in alert.results:
            out.append(wrap(f"- {describe(seen)}", 6))
        for gap in alert.gaps:
            out.append(wrap(f"- {gap}", 6))
        out.append("      Why:")
        for criterion in alert.criteria:
            out.append(wrap(f"- {criterion.rule} ({criterion.source})", 8))
        out.append("      What the label advises:")
        for point in alert.advice:
            out.append(wrap(f"- {point}", 8))
        if review.acknowledged is not None:
            out.append(f"      Acknowledged on {review.acknowledged.window_end}")
    for finding in found.findings:
        out.append(wrap(f"{finding.severity.value}: {finding.message} [{finding.section}]", 2))
    out.append("Corticosteroid")
    today = found.dose_today
    out.append(wrap(f"Today: {today.text}" if today else "Today: no order covers today", 2))
    if found.next_change:
        out.append(wrap(f"Next: from {found.next_change.date}: {found.next_change.text}", 2))
    out.append(wrap(found.course_text, 2))
    out.append(wrap(label.STEROID_IV_ALTERNATIVE, 2))
    decision = data["decision"]
    if decision:
        out.append("Liver assessment decision (USPI 2.1)")
        branch = decision["branch"] or "undecided: results missing"
        out.append(f"  Proposed: {branch}; writable: {'yes' if decision['writable'] else 'no'}")
        for reason in decision["reasons"]:
            out.append(wrap(f"- {reason}", 4))
        weight = decision["weight"]
        if weight and decision["full_dose_mg_per_day"] is not None:
            out.append(
                f"  Weight {weight['kg']} kg on {weight['date']}: 1 mg/kg/day = "
                f"{decision['full_dose_mg_per_day']} mg (was {decision['previous_mg_per_day']} mg)"
            )
        if decision["consult"]:
            out.append(
                wrap(
                    "CONSULT pediatric gastroenterology or hepatology promptly: "
                    f"{decision['consult_rule']} (2.1; 5.1)",
                    2,
                )
            )
        if decision["manufacturer_advice"]:
            out.append(wrap(decision["manufacturer_advice"], 2))
        for step in decision["steps"]:
            out.append(
                f"  {step['start']} to {step['end']}: {step['mg_per_kg_per_day']} mg/kg/day = "
                f"{step['dose_mg_per_day']} mg ({step['volume_ml_per_day']} mL) daily"
            )
        for finding in decision["findings"]:
            out.append(wrap(f"{finding['severity']}: {finding['message']}", 4))
    out.append("Tasks")
    for state in TASK_GROUPS:
        tasks = data["tasks"][state.value]
        if not tasks:
            continue
        out.append(f"  {state.value} ({len(tasks)})")
        for task in tasks:
            late = " (late)" if task["late"] else ""
            missing = f"; missing {', '.join(task['missing'])}" if task["missing"] else ""
            out.append(
                f"    day {task['day']:>3}  {task['window']['start']}..{task['window']['end']}  "
                f"{task['kind']}{late}{missing}"
            )
    if data["proposed"]:
        out.append("Proposed Tasks until back to baseline (created on confirming the Task updates)")
        for item in data["proposed"]:
            out.append(
                f"    day {item['day']:>3}  {item['window']['start']}..{item['window']['end']}  "
                f"{', '.join(item['tests'])}"
            )
            out.append(wrap(f"{item['reasons']} [USPI {item['section']}]", 6))
    return "\n".join(out) + "\n"
