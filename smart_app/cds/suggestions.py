"""Card suggestions as CDS Hooks actions on draft MedicationRequests (valid FHIR R4)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from smart_app.cds.cards import stable_uuid
from smart_app.cds.orders import DraftOrder, field, first_dosage
from smart_app.errors import WriteBackError
from smart_app.fhir import codes
from smart_app.fhir.plan_bundle import (
    ROUTE_IV,
    kit_medication,
    kit_vials,
    steroid_course_order,
    steroid_course_text,
    validate_bundle,
)
from smart_app.rules import label
from smart_app.rules.arith import json_number
from smart_app.rules.model import Dose, SteroidCourse

Resource = dict[str, Any]
Suggestion = dict[str, Any]

INTENTS = frozenset(
    {
        "proposal",
        "plan",
        "order",
        "original-order",
        "reflex-order",
        "filler-order",
        "instance-order",
        "option",
    }
)
"""MedicationRequest.intent codes (R4)."""


def _num(value: Decimal) -> str:
    """A Decimal as plain text ('24.8')."""
    return format(value, "f")


def _reference(value: Any) -> dict[str, str] | None:
    """A Reference copied when it is one (a string reference), else None."""
    if isinstance(value, Mapping) and isinstance(value.get("reference"), str):
        return {"reference": value["reference"]}
    return None


def _copied(draft: DraftOrder, patient_id: str) -> Resource:
    """What a new draft takes from the one it goes with: patient, encounter, requester,
    authoredOn and intent."""
    order = draft.resource
    intent = order.get("intent")
    out: Resource = {
        "status": "draft",
        "intent": intent if isinstance(intent, str) and intent in INTENTS else "order",
        "subject": _reference(order.get("subject")) or {"reference": f"Patient/{patient_id}"},
    }
    for name in ("encounter", "requester"):
        if (reference := _reference(order.get(name))) is not None:
            out[name] = reference
    if isinstance(order.get("authoredOn"), str):
        out["authoredOn"] = order["authoredOn"]
    return out


def valid(resource: Resource) -> Resource | None:
    """The resource as valid FHIR R4 JSON (fhir.resources R4B), or None when it is not (a
    draft whose copied fields are malformed)."""
    try:
        bundle = validate_bundle(
            {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": resource}]}
        )
    except WriteBackError:
        return None
    return bundle["entry"][0]["resource"]


def kit_order(draft: DraftOrder, dose: Dose, *, patient_id: str, date: dt.date) -> Resource | None:
    """A draft ZOLGENSMA order for the weight band's kit, on the draft's date."""
    kit = dose.kit
    timing = field(first_dosage(draft.resource), "timing")
    validity = field(field(draft.resource, "dispenseRequest"), "validityPeriod")
    dispense: Resource = {"quantity": kit_vials(kit), "numberOfRepeatsAllowed": 0}
    if validity:
        dispense["validityPeriod"] = dict(validity)
    resource: Resource = {
        "resourceType": "MedicationRequest",
        "id": stable_uuid("kit-order", draft.key, kit.ndc),
        **_copied(draft, patient_id),
        "medicationCodeableConcept": kit_medication(kit),
        "dosageInstruction": [
            {
                "sequence": 1,
                "text": f"Infuse {_num(kit.dose_volume_ml)} mL intravenously over "
                f"{dose.infusion_minutes} minutes by syringe pump at "
                f"{_num(dose.pump_rate_ml_per_h)} mL/h. {label.NO_IV_PUSH}",
                "timing": dict(timing) if timing else {"event": [date.isoformat()]},
                "route": {"coding": [ROUTE_IV], "text": "intravenous"},
                "doseAndRate": [
                    {
                        "doseQuantity": {
                            "value": json_number(kit.dose_volume_ml),
                            "unit": "mL",
                            "system": codes.UCUM,
                            "code": "mL",
                        }
                    }
                ],
            }
        ],
        "dispenseRequest": dispense,
    }
    return valid(resource)


def steroid_order(draft: DraftOrder, course: SteroidCourse, *, patient_id: str) -> Resource | None:
    """A draft prednisolone order for the course's 30 days at 1 mg/kg/day from the day before
    the infusion (section 2.1)."""
    text = steroid_course_text(course, then=", starting the day before the ZOLGENSMA infusion.")
    resource: Resource = {
        "resourceType": "MedicationRequest",
        "id": stable_uuid("steroid-order", draft.key, course.start_date.isoformat()),
        **_copied(draft, patient_id),
        **steroid_course_order(course, text=text),
    }
    return valid(resource)


def replace_kit(
    draft: DraftOrder, new_order: Resource, *, uuid_parts: tuple[str, ...], ordered: str
) -> Suggestion:
    """Delete the draft kit order and create the right one."""
    ndc = new_order["medicationCodeableConcept"]["coding"][0]["code"]
    actions: list[Resource] = []
    if draft.reference:
        actions.append(
            {
                "type": "delete",
                "description": f"Remove the draft ZOLGENSMA order ({ordered})",
                "resourceId": draft.reference,
            }
        )
    actions.append(
        {
            "type": "create",
            "description": f"Order ZOLGENSMA kit {ndc} for the weight band",
            "resource": new_order,
        }
    )
    return {
        "label": f"Order kit {ndc} instead",
        "uuid": stable_uuid(*uuid_parts, "replace-kit"),
        "isRecommended": True,
        "actions": actions,
    }


def add_steroid(new_order: Resource, *, uuid_parts: tuple[str, ...]) -> Suggestion:
    """Create the prednisolone order."""
    text = new_order["dosageInstruction"][0]["text"]
    return {
        "label": "Add the prednisolone order (1 mg/kg/day for 30 days)",
        "uuid": stable_uuid(*uuid_parts, "add-prednisolone"),
        "isRecommended": True,
        "actions": [{"type": "create", "description": text.split(". ")[0], "resource": new_order}],
    }
