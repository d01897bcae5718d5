"""What the follow-up shows beyond the rules' types, derived once for the command's JSON
(smart_app.render_followup) and the web page's view model (smart_app.web.followup_view): the Task
groups, the result before an alerting one, the kit order as stated, the decision's draw days, and
the decision as JSON-ready data (the command prints it, the page digests what was shown)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from smart_app.plan_json import finding_data, iso_day
from smart_app.rules import label
from smart_app.rules.arith import json_number
from smart_app.rules.model import AlertResult, LabResult, SteroidStep, TaskState

if TYPE_CHECKING:
    from collections.abc import Iterable

    from smart_app.fhir.plan_state import KitWritten
    from smart_app.rules.followup import TaskView
    from smart_app.rules.labs import Interpreted
    from smart_app.rules.liver_decision import Decision

TASK_GROUPS = (
    TaskState.OVERDUE,
    TaskState.DUE,
    TaskState.ONGOING,
    TaskState.RESULTED,
    TaskState.UPCOMING,
    TaskState.DONE,
)
"""The order task groups are listed in: what needs action first."""


def task_groups(tasks: Iterable[TaskView]) -> dict[TaskState, list[TaskView]]:
    """The Tasks by state, every group of TASK_GROUPS present (maybe empty), in that order."""
    groups: dict[TaskState, list[TaskView]] = {state: [] for state in TASK_GROUPS}
    for view in tasks:
        groups[view.state].append(view)
    return groups


def previous_shown(seen: AlertResult) -> LabResult | None:
    """The result before an alerting one, unless it is the baseline (stated as such already)."""
    return seen.previous if seen.previous is not seen.baseline else None


def lab_draw_days(decision: Decision) -> list[int]:
    """The days of the lab-draw Tasks the decision keeps or creates."""
    return [draw.day for draw in decision.draws]


@dataclass(frozen=True)
class KitShown:
    """The kit order as written, as the follow-up states it: a missing or zero quantity is not
    stated; vial counts, capacity and weight band come from the label's row for its NDC."""

    reference: str
    status: str
    ndc: str
    description: str
    dose_volume_ml: Decimal | None
    pump_rate_ml_per_h: Decimal | None
    vector_genomes: Decimal | None
    total_vials: int | None
    vials_5_5_ml: int | None
    vials_8_3_ml: int | None
    capacity_ml: Decimal | None
    band_kg: tuple[Decimal, Decimal] | None


def kit_shown(kit: KitWritten | None) -> KitShown | None:
    """The kit order as stated (None without one)."""
    if kit is None:
        return None
    table = kit.kit
    return KitShown(
        reference=kit.reference,
        status=kit.status,
        ndc=kit.ndc,
        description=kit.description,
        dose_volume_ml=kit.dose_volume_ml or None,
        pump_rate_ml_per_h=kit.pump_rate_ml_per_h or None,
        vector_genomes=kit.vector_genomes or None,
        total_vials=kit.total_vials,
        vials_5_5_ml=table.vials_5_5_ml if table else None,
        vials_8_3_ml=table.vials_8_3_ml if table else None,
        capacity_ml=table.capacity_ml if table else None,
        band_kg=(table.band_low_kg, table.band_high_kg) if table else None,
    )


def _step(step: SteroidStep) -> dict[str, Any]:
    """One proposed dosing period."""
    return {
        "start": iso_day(step.start),
        "end": iso_day(step.end),
        "days": step.days,
        "mg_per_kg_per_day": json_number(step.mg_per_kg_per_day),
        "dose_mg_per_day": json_number(step.dose_mg_per_day),
        "volume_ml_per_day": json_number(step.volume_ml_per_day),
    }


def _panel(seen: Interpreted) -> dict[str, Any]:
    """A liver panel result with its multiple of ULN."""
    return {
        "test": seen.result.test.value,
        "value": json_number(seen.result.value),
        "unit": seen.result.unit,
        "date": iso_day(seen.result.effective),
        "uln": json_number(seen.uln) if seen.uln is not None else None,
        "multiple_of_uln": json_number(seen.multiple_of_uln)
        if seen.multiple_of_uln is not None
        else None,
        "reference": seen.result.evidence.reference,
    }


def decision_data(decision: Decision | None) -> dict[str, Any] | None:
    """The proposed liver assessment decision."""
    if decision is None:
        return None
    weight = decision.weight
    return {
        "key": decision.key,
        "branch": decision.branch.value if decision.branch else None,
        "writable": decision.writable,
        "labs_unremarkable": decision.labs_unremarkable,
        "exam_normal": decision.exam_normal,
        "reasons": list(decision.reasons),
        "consult": decision.consult,
        "consult_rule": label.CONSULT_RULE,
        "manufacturer_advice": decision.manufacturer_advice,
        "panel": [_panel(p) for p in decision.panel],
        "weight": None
        if weight is None
        else {
            "kg": json_number(weight.value),
            "date": iso_day(weight.effective),
            "reference": weight.evidence.reference,
        },
        "previous_mg_per_day": json_number(decision.previous_mg_per_day),
        "full_dose_mg_per_day": json_number(decision.full_dose_mg_per_day)
        if decision.full_dose_mg_per_day is not None
        else None,
        "steps": [_step(s) for s in decision.steps],
        "lab_draw_days": lab_draw_days(decision),
        "findings": [finding_data(f) for f in decision.findings],
    }
