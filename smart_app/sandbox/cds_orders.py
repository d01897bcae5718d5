"""The sandbox EHR's draft orders for order-select and order-sign, kept in memory per chart.

The "Order ZOLGENSMA" form makes draft FHIR R4 MedicationRequests (the kit by NDC, and, when
asked, prednisolone from the day before infusion); accepting a CDS suggestion applies its actions
to them. Nothing here is written to the FHIR server: a signed sandbox order would read as a
prior dose on the chart.
"""

from __future__ import annotations

import copy
import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from smart_app.fhir.plan_bundle import (
    PREDNISOLONE,
    ROUTE_IV,
    kit_medication,
    kit_vials,
    oral_once_daily,
)
from smart_app.rules import label
from smart_app.rules.model import Kit
from smart_app.sandbox.cds_cards import Action, ActionType, Card, Indicator, Suggestion
from smart_app.sandbox.cds_client import CdsAnswer, Hook

SESSION_LIFETIME_S = 3600.0
"""A chart's draft orders are forgotten this long after the chart was opened."""
Resource = dict[str, Any]


def _num(value: Decimal) -> str:
    """A decimal as written in the label's tables (3.0 stays 3.0)."""
    return format(value, "f")


def kit_choice(kit: Kit) -> str:
    """A kit as the order form lists it: weight band, vials and NDC."""
    return (
        f"{_num(kit.band_low_kg)}-{_num(kit.band_high_kg)} kg: {kit.vials} "
        f"({_num(kit.dose_volume_ml)} mL), NDC {kit.ndc}"
    )


def kit_by_ndc(ndc: str) -> Kit | None:
    """The labeled kit with this NDC."""
    return next((k for k in label.kits() if k.ndc == ndc), None)


def _order_common(*, patient_id: str, practitioner_id: str, authored_on: str) -> Resource:
    """The fields both draft orders share."""
    return {
        "resourceType": "MedicationRequest",
        "id": uuid.uuid4().hex,
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient_id}"},
        "authoredOn": authored_on,
        "requester": {"reference": f"Practitioner/{practitioner_id}"},
    }


def kit_order(
    kit: Kit, *, patient_id: str, practitioner_id: str, infusion_date: dt.date, authored_on: str
) -> Resource:
    """A draft MedicationRequest for a ZOLGENSMA kit, by NDC, infused on `infusion_date`."""
    return {
        **_order_common(
            patient_id=patient_id, practitioner_id=practitioner_id, authored_on=authored_on
        ),
        "medicationCodeableConcept": kit_medication(kit),
        "dosageInstruction": [
            {
                "text": (
                    f"{_num(kit.dose_volume_ml)} mL intravenous infusion over "
                    f"{label.INFUSION_MINUTES} minutes on {infusion_date.isoformat()}. "
                    f"{label.NO_IV_PUSH}"
                ),
                "timing": {"event": [infusion_date.isoformat()]},
                "route": {"coding": [ROUTE_IV], "text": "intravenous"},
            }
        ],
        "dispenseRequest": {"quantity": kit_vials(kit)},
    }


def prednisolone_order(
    *, patient_id: str, practitioner_id: str, infusion_date: dt.date, authored_on: str
) -> Resource:
    """A draft oral prednisolone MedicationRequest, once daily from the day before infusion for
    the label's full-dose days (section 2.1); the dose per kg, as the EHR has no weight here."""
    start = infusion_date - dt.timedelta(days=1)
    end = start + dt.timedelta(days=label.STEROID_FULL_DOSE_DAYS - 1)
    per_kg = _num(label.STEROID_MG_PER_KG_PER_DAY)
    return {
        **_order_common(
            patient_id=patient_id, practitioner_id=practitioner_id, authored_on=authored_on
        ),
        "medicationCodeableConcept": {"coding": [PREDNISOLONE], "text": "prednisolone oral"},
        "dosageInstruction": [
            {
                "text": (
                    f"Prednisolone {per_kg} mg/kg/day by mouth once daily, "
                    f"{start.isoformat()} to {end.isoformat()}"
                ),
                **oral_once_daily(start, end),
            }
        ],
    }


def reference(resource: Mapping[str, Any]) -> str:
    """`Type/id` of a resource."""
    return f"{resource['resourceType']}/{resource['id']}"


def medication_text(resource: Mapping[str, Any]) -> str:
    """What a draft order orders, as the list shows it."""
    concept = resource.get("medicationCodeableConcept") or {}
    codings = concept.get("coding") or [{}]
    text = concept.get("text") or codings[0].get("display") or resource.get("resourceType", "")
    return str(text)


def order_date(resource: Mapping[str, Any]) -> str:
    """The date (or start date) in a draft order's first dosage timing."""
    dosage = (resource.get("dosageInstruction") or [{}])[0]
    timing = dosage.get("timing") or {}
    events = timing.get("event") or []
    if events:
        return str(events[0])
    bounds = (timing.get("repeat") or {}).get("boundsPeriod") or {}
    return str(bounds.get("start") or "")


@dataclass
class OrderSession:
    """One chart's order entry: draft orders, the selected ones, and the last CDS answer."""

    patient_id: str
    client_id: str
    expires_at_s: float
    orders: dict[str, Resource] = field(default_factory=dict)
    """Draft resources by `Type/id`, in the order they were added."""
    selected: list[str] = field(default_factory=list)
    answer: CdsAnswer | None = None
    hook: Hook | None = None
    """The hook `answer` came from."""
    handled: dict[str, str] = field(default_factory=dict)
    """Card uuid -> what the clinician did ("accepted ...", "overridden: reason")."""
    message: str = ""
    problem: bool = False
    """Whether `message` tells of a refused form rather than what was done."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    """Held while the session changes (a CDS call included)."""
    _gap: int | None = field(default=None, repr=False, compare=False)
    """While a suggestion is applied: where the order it deleted stood."""

    def bundle(self) -> Resource:
        """The draft orders as the collection Bundle `draftOrders` carries."""
        return {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": copy.deepcopy(r)} for r in self.orders.values()],
        }

    def selections(self) -> list[str]:
        """The selected draft orders (all of them when none is selected)."""
        chosen = [s for s in self.selected if s in self.orders]
        return chosen or list(self.orders)

    def start(self, orders: list[Resource], *, selected: Resource) -> None:
        """A new set of draft orders, replacing the previous ones."""
        self.orders = {reference(r): r for r in orders}
        self.selected = [reference(selected)]
        self.answer, self.hook, self.handled = None, None, {}

    def apply(self, suggestion: Suggestion) -> list[str]:
        """Apply a suggestion's actions to the drafts; what each did, for the page."""
        done: list[str] = []
        self._gap = None
        replaced = False
        created: list[str] = []
        for action in suggestion.actions:
            outcome = self._apply_one(action)
            if outcome is None:
                continue
            kind, ref = outcome
            done.append(action.description or f"{kind} {ref}")
            if kind is ActionType.DELETE and ref in self.selected:
                self.selected.remove(ref)
                replaced = True
            elif kind is ActionType.CREATE:
                created.append(ref)
        if replaced:
            self.selected.extend(created)
        return done

    def _apply_one(self, action: Action) -> tuple[ActionType, str] | None:
        """Delete by resourceId, create with a new id (in the place of the order last deleted),
        update by id; None when inapplicable."""
        if action.type is ActionType.DELETE:
            ref = (action.resource_id or "").lstrip("/")
            if ref not in self.orders:
                return None
            self._gap = list(self.orders).index(ref)
            del self.orders[ref]
            return action.type, ref
        resource = copy.deepcopy(dict(action.resource or {}))
        if action.type is ActionType.CREATE or not resource.get("id"):
            resource["id"] = uuid.uuid4().hex
        ref = reference(resource)
        if ref not in self.orders and self._gap is not None:
            items = list(self.orders.items())
            items.insert(self._gap, (ref, resource))
            self.orders, self._gap = dict(items), None
        else:
            self.orders[ref] = resource
        return action.type, ref

    def open_cards(self) -> tuple[Card, ...]:
        """The last answer's cards the clinician has not acted on."""
        if self.answer is None:
            return ()
        return tuple(c for c in self.answer.cards if not (c.uuid and c.uuid in self.handled))

    @property
    def signed(self) -> bool:
        """Signed in the sandbox: order-sign answered and no critical card is left open."""
        return self.hook is Hook.ORDER_SIGN and not any(
            c.indicator is Indicator.CRITICAL for c in self.open_cards()
        )


class OrderStore:
    """Every chart's OrderSession by launch id, in memory, behind a lock."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        """An empty store."""
        self.clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, OrderSession] = {}

    def open(self, launch_id: str, *, patient_id: str, client_id: str) -> OrderSession:
        """The chart's session, created when the chart is first shown."""
        now = self.clock()
        with self._lock:
            for key in [k for k, v in self._sessions.items() if v.expires_at_s <= now]:
                del self._sessions[key]
            found = self._sessions.get(launch_id)
            if found is None:
                found = OrderSession(patient_id, client_id, now + SESSION_LIFETIME_S)
                self._sessions[launch_id] = found
            return found

    def get(self, launch_id: str) -> OrderSession | None:
        """The chart's unexpired session."""
        with self._lock:
            found = self._sessions.get(launch_id)
        if found is None or found.expires_at_s <= self.clock():
            return None
        return found
