"""Draft orders read: ZOLGENSMA and corticosteroid orders, the kit NDC and the order's date."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from smart_app.fhir import codes
from smart_app.fhir.read import is_zolgensma

Resource = Mapping[str, Any]

NDC_WIDTHS = (5, 4, 2)
"""The 11-digit (5-4-2) billing form of an NDC."""
LIVE_ON_CHART = frozenset({"active", "on-hold"})
RETIRED = frozenset({"revoked", "cancelled", "entered-in-error", "stopped", "completed"})


@dataclass(frozen=True)
class DraftOrder:
    """A draft MedicationRequest from draftOrders with the medication it names."""

    resource: Resource
    reference: str | None
    """'MedicationRequest/<id>', or None for a draft without an id."""
    concept: Resource | None
    key: str
    """What the draft's cards and suggestions are keyed by: its reference, else its entry."""


def _objects(value: Any) -> list[Resource]:
    """The JSON objects of a list (others skipped)."""
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _first(value: Any) -> Resource:
    """The first object of a list, else {}."""
    found = _objects(value)
    return found[0] if found else {}


def field(node: Any, name: str) -> Resource:
    """A JSON object field of a JSON object, else {} (drafts come from the EHR as they are)."""
    value = node.get(name) if isinstance(node, Mapping) else None
    return value if isinstance(value, Mapping) else {}


def first_dosage(order: Resource) -> Resource:
    """The order's first dosage instruction, or {}."""
    return _first(order.get("dosageInstruction"))


def _date(raw: Any) -> dt.date | None:
    """The date part of a FHIR date or dateTime, or None."""
    if not isinstance(raw, str) or len(raw) < 10:
        return None
    try:
        return dt.date.fromisoformat(raw[:10])
    except ValueError:
        return None


def medications(resources: Iterable[Resource]) -> dict[str, Resource]:
    """'Medication/<id>' -> the Medication's code, for medicationReference."""
    return {
        f"Medication/{r.get('id')}": r.get("code")
        for r in resources
        if r.get("resourceType") == "Medication" and isinstance(r.get("code"), Mapping)
    }


def medication_concept(order: Resource, known: Mapping[str, Resource]) -> Resource | None:
    """The medication an order names: its CodeableConcept, or the code of the Medication it
    references (contained, in the same Bundle, or on the chart)."""
    concept = order.get("medicationCodeableConcept")
    if isinstance(concept, Mapping):
        return concept
    reference = field(order, "medicationReference").get("reference")
    if not isinstance(reference, str):
        return None
    if reference.startswith("#"):
        for contained in _objects(order.get("contained")):
            if (
                contained.get("resourceType") == "Medication"
                and contained.get("id") == reference[1:]
            ):
                code = contained.get("code")
                return code if isinstance(code, Mapping) else None
        return None
    return known.get(codes.relative_reference(reference) or reference)


def _codings(concept: Resource | None, system: str) -> list[str]:
    """The codes of one system in a concept."""
    if concept is None:
        return []
    return [
        str(c.get("code"))
        for c in _objects(concept.get("coding"))
        if c.get("system") == system and c.get("code")
    ]


def _words(concept: Resource | None) -> str:
    """Text and displays of a concept, lower case."""
    if concept is None:
        return ""
    parts = [concept.get("text")] + [c.get("display") for c in _objects(concept.get("coding"))]
    return " ".join(p for p in parts if isinstance(p, str)).lower()


def names_zolgensma(concept: Resource | None) -> bool:
    """An NDC under labeler 71894 (any format), a ZOLGENSMA RxNorm code, or its name."""
    if concept is None:
        return False
    return is_zolgensma(concept) or bool(
        set(_codings(concept, codes.RXNORM)) & codes.ZOLGENSMA_RXNORM
    )


def names_corticosteroid(concept: Resource | None) -> bool:
    """Prednisolone or an equivalent oral corticosteroid, by RxNorm or by name."""
    if set(_codings(concept, codes.RXNORM)) & codes.CORTICOSTEROID_RXNORM:
        return True
    return any(word in _words(concept) for word in codes.CORTICOSTEROID_TEXT)


def ndc11(code: str) -> str | None:
    """An NDC in its 11-digit form (5-4-2, no dashes) from any of its formats: 4-4-2, 5-3-2,
    5-4-1 and 5-4-2 with dashes, or 11 digits; 10 digits without dashes are ambiguous and read
    as 5-3-2 only under the ZOLGENSMA labeler (every ZOLGENSMA kit is 5-3-2). None otherwise."""
    text = code.strip()
    if "-" in text:
        parts = text.split("-")
        if len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts):
            return None
        if any(len(p) > w for p, w in zip(parts, NDC_WIDTHS, strict=True)):
            return None
        if sum(len(p) for p in parts) not in (10, 11):
            return None
        return "".join(p.zfill(w) for p, w in zip(parts, NDC_WIDTHS, strict=True))
    if not (text.isascii() and text.isdigit()):
        return None
    if len(text) == 11:
        return text
    if len(text) == 10 and text.startswith(codes.ZOLGENSMA_NDC_LABELER):
        return f"{text[:5]}0{text[5:]}"
    return None


def ordered_ndc(concept: Resource | None) -> str | None:
    """The ZOLGENSMA NDC an order names as written, or None."""
    for code in _codings(concept, codes.NDC):
        if (ndc11(code) or "").startswith(codes.ZOLGENSMA_NDC_LABELER):
            return code
    return None


def order_date(order: Resource) -> dt.date | None:
    """The date an order is for: its dosage timing event, else its validity period's start,
    else when it was authored."""
    events = field(first_dosage(order), "timing").get("event")
    candidates = (
        events[0] if isinstance(events, list) and events else None,
        field(field(order, "dispenseRequest"), "validityPeriod").get("start"),
        order.get("authoredOn"),
    )
    return next((d for d in map(_date, candidates) if d is not None), None)


def draft_orders(bundle: Resource, known: Mapping[str, Resource]) -> list[DraftOrder]:
    """The MedicationRequests of a draftOrders Bundle with the medication each names."""
    resources = [e.get("resource") for e in _objects(bundle.get("entry"))]
    out = []
    for index, resource in enumerate(resources):
        if not isinstance(resource, Mapping) or resource.get("resourceType") != "MedicationRequest":
            continue
        rid = resource.get("id")
        reference = f"MedicationRequest/{rid}" if isinstance(rid, str) and rid else None
        concept = medication_concept(resource, known)
        out.append(DraftOrder(resource, reference, concept, reference or f"entry/{index}"))
    return out


def bundle_medications(bundle: Resource) -> dict[str, Resource]:
    """The Medications a draftOrders Bundle carries, by reference."""
    entries = [e.get("resource") for e in _objects(bundle.get("entry"))]
    return medications(r for r in entries if isinstance(r, Mapping))


def corticosteroid_on_chart(resources: Sequence[Resource], known: Mapping[str, Resource]) -> bool:
    """An active corticosteroid order on the chart, or the app's own not retired."""
    for r in resources:
        if r.get("resourceType") != "MedicationRequest":
            continue
        status = r.get("status")
        live = status in LIVE_ON_CHART or (
            bool(codes.app_identifier_values(r)) and status not in RETIRED
        )
        if live and names_corticosteroid(medication_concept(r, known)):
            return True
    return False
