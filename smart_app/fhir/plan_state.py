"""The app's own CarePlan, orders and Tasks read back from the chart into a PlanState."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from smart_app.errors import PlanStateError
from smart_app.fhir import codes
from smart_app.fhir.gateway import PatientRecord
from smart_app.fhir.read import is_zolgensma
from smart_app.rules import label
from smart_app.rules.model import (
    ActivityKind,
    DecisionBranch,
    Evidence,
    Kit,
    LabTest,
    PlannedTask,
    PlanState,
    RecordedDecision,
    SteroidOrder,
    SteroidRole,
)

Resource = Mapping[str, Any]

CAREPLAN_SUFFIX = "/careplan"
MG_PER_KG = re.compile(r"= (\d+(?:\.\d+)?) mg/kg/day")
FOR_KG = re.compile(r"mg/kg/day for (\d+(?:\.\d+)?) kg")
ITEM_DAY = re.compile(r"/day(-?\d+)$")
TAPER_ITEM = re.compile(r"^medicationrequest/(?P<decision>[^/]+)/taper-(?P<step>\d+)$")
CONTINUE_ITEM = re.compile(r"^medicationrequest/(?P<decision>[^/]+)/continue$")
RETIRED = frozenset({"revoked", "cancelled", "entered-in-error", "stopped"})
CONSULT_ITEM = "servicerequest/hepatology-consult"
GIVEN = frozenset({"completed", "in-progress"})


def _date(raw: Any) -> dt.date | None:
    """The date part of a FHIR date or dateTime."""
    try:
        return dt.date.fromisoformat(str(raw)[:10]) if raw else None
    except ValueError:
        return None


def _item(resource: Resource, key: str) -> str | None:
    """The identifier value after `<key>/`, when the resource belongs to that plan."""
    for value in codes.app_identifier_values(resource):
        if value.startswith(f"{key}/"):
            return value[len(key) + 1 :]
    return None


def active_care_plans(record: PatientRecord) -> list[Resource]:
    """The app's active CarePlans, newest first."""
    plans = [
        r
        for r in record.own("CarePlan")
        if r.get("status") == "active"
        and any(v.endswith(CAREPLAN_SUFFIX) for v in codes.app_identifier_values(r))
    ]
    return sorted(plans, key=lambda r: str(r.get("created") or ""), reverse=True)


def _plan_key(care_plan: Resource) -> str:
    """The plan key from the CarePlan's identifier."""
    value = next(v for v in codes.app_identifier_values(care_plan) if v.endswith(CAREPLAN_SUFFIX))
    return value[: -len(CAREPLAN_SUFFIX)]


def _dose(dosage: Resource, code: str) -> Decimal | None:
    """The doseQuantity of the doseAndRate entry with that type ('ordered' or 'calculated')."""
    for rate in dosage.get("doseAndRate") or []:
        kinds = {c.get("code") for c in (rate.get("type") or {}).get("coding") or []}
        if code in kinds:
            try:
                return Decimal(str((rate.get("doseQuantity") or {}).get("value")))
            except InvalidOperation:
                return None
    return None


def _steroid_order(order: Resource, item: str) -> SteroidOrder | None:
    """One of the app's prednisolone orders, or None when it is not one."""
    if item == "medicationrequest/prednisolone":
        role, step = SteroidRole.FULL_DOSE, 0
    elif match := TAPER_ITEM.match(item):
        role, step = SteroidRole.TAPER_STEP, int(match["step"])
    elif CONTINUE_ITEM.match(item):
        role, step = SteroidRole.CONTINUATION, 0
    else:
        return None
    dosage = (order.get("dosageInstruction") or [{}])[0]
    bounds = ((dosage.get("timing") or {}).get("repeat") or {}).get("boundsPeriod") or {}
    start, end = _date(bounds.get("start")), _date(bounds.get("end"))
    mg, ml = _dose(dosage, "ordered"), _dose(dosage, "calculated")
    per_kg = MG_PER_KG.search(str(dosage.get("text") or ""))
    if start is None or end is None or mg is None or ml is None or per_kg is None:
        raise PlanStateError(
            f"MedicationRequest/{order.get('id')} ({item}) lacks its dates or doses: "
            "it was changed outside the app; review the corticosteroid orders in the EHR"
        )
    return SteroidOrder(
        reference=f"MedicationRequest/{order.get('id')}",
        item=item,
        role=role,
        start=start,
        end=end,
        mg_per_day=mg,
        mg_per_kg_per_day=Decimal(per_kg[1]),
        volume_ml_per_day=ml,
        status=str(order.get("status") or ""),
        step=step,
        weight_kg=Decimal(kg[1]) if (kg := FOR_KG.search(str(dosage.get("text") or ""))) else None,
    )


def _task(task: Resource, item: str) -> PlannedTask | None:
    """One of the app's Tasks, or None when its code is not an activity kind."""
    codings = (task.get("code") or {}).get("coding") or []
    kind_code = next((c.get("code") for c in codings if c.get("system") == codes.APP_CODES), None)
    try:
        kind = ActivityKind(kind_code)
    except ValueError:
        return None
    period = (task.get("restriction") or {}).get("period") or {}
    start, end = _date(period.get("start")), _date(period.get("end"))
    if start is None or end is None:
        return None
    day_match = ITEM_DAY.search(item)
    tests = []
    for given in task.get("input") or []:
        text = (given.get("valueCodeableConcept") or {}).get("text")
        if text in {t.value for t in LabTest}:
            tests.append(LabTest(text))
    outputs = tuple(
        str((o.get("valueReference") or {}).get("reference"))
        for o in task.get("output") or []
        if (o.get("valueReference") or {}).get("reference")
    )
    return PlannedTask(
        reference=f"Task/{task.get('id')}",
        item=item,
        kind=kind,
        day=int(day_match[1]) if day_match else 0,
        window_start=start,
        window_end=end,
        tests=tuple(tests),
        status=str(task.get("status") or ""),
        description=str(task.get("description") or ""),
        outputs=outputs,
        version=str((task.get("meta") or {}).get("versionId") or ""),
    )


def _decision(task: Resource, item: str) -> RecordedDecision | None:
    """A completed liver assessment with its recorded branch."""
    if task.get("status") != "completed" or not item.startswith("task/liver-assessment/"):
        return None
    codings = (task.get("businessStatus") or {}).get("coding") or []
    branch = next((c.get("code") for c in codings if c.get("system") == codes.APP_CODES), None)
    when = _date((task.get("executionPeriod") or {}).get("end"))
    if branch not in {b.value for b in DecisionBranch} or when is None:
        return None
    return RecordedDecision(key=item, branch=DecisionBranch(branch), decided_on=when)


def _infusion(record: PatientRecord, planned: dt.date) -> tuple[dt.date, Evidence | None]:
    """The recorded ZOLGENSMA administration nearest the planned date, else the planned date."""
    given = []
    for r in record.resources:
        if r.get("resourceType") != "MedicationAdministration" or r.get("status") not in GIVEN:
            continue
        if not is_zolgensma(r.get("medicationCodeableConcept")):
            continue
        when = _date(r.get("effectiveDateTime") or (r.get("effectivePeriod") or {}).get("start"))
        if when is not None:
            given.append((abs((when - planned).days), when, r))
    if not given:
        return planned, None
    _, when, resource = min(given, key=lambda g: (g[0], g[1]))
    reference = f"MedicationAdministration/{resource.get('id')}"
    return when, Evidence(reference, "ZOLGENSMA administered", date=when)


def plan_state(record: PatientRecord) -> PlanState | None:
    """The newest active app CarePlan and what belongs to it; None when there is none."""
    plans = active_care_plans(record)
    if not plans:
        return None
    care_plan = plans[0]
    key = _plan_key(care_plan)
    kit = next(
        (o for o in record.own("MedicationRequest") if _item(o, key) == "medicationrequest/kit"),
        None,
    )
    events = (((kit or {}).get("dosageInstruction") or [{}])[0].get("timing") or {}).get(
        "event"
    ) or [None]
    planned = _date(events[0])
    if kit is None or planned is None:
        raise PlanStateError(
            f"CarePlan/{care_plan.get('id')} has no readable ZOLGENSMA kit order: the infusion "
            "date is unknown; review the plan in the EHR or plan again"
        )
    infusion, evidence = _infusion(record, planned)
    orders = []
    for order in record.own("MedicationRequest"):
        item = _item(order, key)
        if item is not None and (found := _steroid_order(order, item)) is not None:
            orders.append(found)
    tasks, decisions = [], []
    for task in record.own("Task"):
        item = _item(task, key)
        if item is None:
            continue
        if (planned_task := _task(task, item)) is not None:
            tasks.append(planned_task)
        if (decision := _decision(task, item)) is not None:
            decisions.append(decision)
    consult = next(
        (
            f"ServiceRequest/{s.get('id')}"
            for s in record.own("ServiceRequest")
            if _item(s, key) == CONSULT_ITEM and s.get("status") not in RETIRED
        ),
        None,
    )
    return PlanState(
        plan_key=key,
        care_plan=f"CarePlan/{care_plan.get('id')}",
        infusion_date=infusion,
        infusion_evidence=evidence,
        steroid_orders=tuple(orders),
        tasks=tuple(tasks),
        decisions=tuple(decisions),
        consult=consult,
    )


@dataclass(frozen=True)
class KitWritten:
    """The ZOLGENSMA kit order as the plan wrote it (shown before the infusion day)."""

    reference: str
    status: str
    ndc: str
    description: str
    dose_volume_ml: Decimal | None
    pump_rate_ml_per_h: Decimal | None
    total_vials: int | None
    kit: Kit | None
    """The label's Table 3 row for the NDC (vial counts, capacity), when it is one of them."""
    requester: str = ""
    """Who the order names as its requester ('Practitioner/123'), or ''."""

    @property
    def vector_genomes(self) -> Decimal | None:
        """The dose in vector genomes: dose volume x 2.0e13 vg/mL (section 2.1)."""
        if self.dose_volume_ml is None:
            return None
        return self.dose_volume_ml * label.CONCENTRATION_VG_PER_ML


def _quantity(raw: Any) -> Decimal | None:
    """A Quantity's value, or None."""
    try:
        value = (raw or {}).get("value")
        return None if value is None else Decimal(str(value))
    except (InvalidOperation, AttributeError):
        return None


def written_kit(record: PatientRecord, plan_key: str) -> KitWritten | None:
    """The plan's kit MedicationRequest read back from the chart, or None."""
    order = next(
        (
            o
            for o in record.own("MedicationRequest")
            if f"{plan_key}/medicationrequest/kit" in codes.app_identifier_values(o)
        ),
        None,
    )
    if order is None:
        return None
    concept = order.get("medicationCodeableConcept") or {}
    ndc = next(
        (str(c.get("code")) for c in concept.get("coding") or [] if c.get("system") == codes.NDC),
        "",
    )
    dosage = (order.get("dosageInstruction") or [{}])[0]
    rate = (dosage.get("doseAndRate") or [{}])[0]
    vials = _quantity((order.get("dispenseRequest") or {}).get("quantity"))
    requester = str((order.get("requester") or {}).get("reference") or "")
    return KitWritten(
        reference=f"MedicationRequest/{order.get('id')}",
        status=str(order.get("status") or ""),
        ndc=ndc,
        description=str(concept.get("text") or ""),
        dose_volume_ml=_quantity(rate.get("doseQuantity")),
        pump_rate_ml_per_h=_quantity(rate.get("rateQuantity")),
        total_vials=int(vials) if vials is not None else None,
        kit=next((k for k in label.kits() if k.ndc == ndc), None),
        requester=codes.relative_reference(requester) or requester,
    )
