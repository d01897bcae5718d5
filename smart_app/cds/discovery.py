"""The CDS services the app offers and their prefetch templates: every search the app reads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from smart_app.fhir import codes
from smart_app.fhir.gateway import Limits, patient_searches, titer_fallback_search

PATIENT_ID = "{{context.patientId}}"
"""The prefetch token CDS clients replace with the patient's id."""
_SENTINEL = "cds0patient0id0sentinel"
"""A FHIR id no search text contains, replaced by PATIENT_ID in the templates."""

SEARCH_NAMES: tuple[tuple[str, str], ...] = (
    ("patient", "Patient"),
    ("weights", "Observation"),
    ("gestationalAge", "Observation"),
    ("temperatures", "Observation"),
    ("genetics", "Observation"),
    ("labs", "Observation"),
    ("titers", "Observation"),
    ("titersByText", "Observation"),
    ("conditions", "Condition"),
    ("medicationAdministrations", "MedicationAdministration"),
    ("medicationStatements", "MedicationStatement"),
    ("medicationRequests", "MedicationRequest"),
    ("procedures", "Procedure"),
    ("devices", "Device"),
    ("immunizations", "Immunization"),
    ("appCarePlans", "CarePlan"),
    ("appTasks", "Task"),
    ("appServiceRequests", "ServiceRequest"),
)
"""A readable prefetch key for each search of gateway.patient_searches (without date floors),
in its order, with the resource type it reads."""
FALLBACK_NAME = "laboratoryResults"
"""The key of the laboratory search the gateway adds when no titer is found by code or text."""


class Hook(StrEnum):
    """The CDS Hooks the services answer."""

    PATIENT_VIEW = "patient-view"
    ORDER_SELECT = "order-select"
    ORDER_SIGN = "order-sign"


@dataclass(frozen=True)
class Service:
    """One CDS service as discovery lists it."""

    id: str
    hook: Hook
    title: str
    description: str


SERVICES: tuple[Service, ...] = (
    Service(
        "zolgensma-patient-view",
        Hook.PATIENT_VIEW,
        "ZOLGENSMA eligibility and follow-up",
        "For a child under 2 with SMA or an SMN1 result: eligibility for ZOLGENSMA on the "
        "earliest practical infusion date, or for a patient on the app's plan the day, phase "
        "and safety alerts (prescribing information rev. 2/2025).",
    ),
    Service(
        "zolgensma-order-select",
        Hook.ORDER_SELECT,
        "ZOLGENSMA order check",
        "Checks a draft ZOLGENSMA order: the kit for the weight band, the anti-AAV9 titer, age "
        "on the order's date, the prednisolone order and any blocking finding; suggests the "
        "right kit and the prednisolone order.",
    ),
    Service(
        "zolgensma-order-sign",
        Hook.ORDER_SIGN,
        "ZOLGENSMA order check at signing",
        "The same checks as the order-select service when a ZOLGENSMA order is signed.",
    ),
)
BY_ID: dict[str, Service] = {service.id: service for service in SERVICES}


def _templates(patient_id: str, *, titer_codes: frozenset[codes.Coding]) -> dict[str, str]:
    """Prefetch key -> relative search URL for one patient id (no date floors)."""
    page_size = Limits().page_size
    searches = patient_searches(patient_id, titer_codes=titer_codes, page_size=page_size)
    if len(searches) != len(SEARCH_NAMES) or any(
        not url.startswith(kind) for url, (_, kind) in zip(searches, SEARCH_NAMES, strict=True)
    ):
        raise RuntimeError("the prefetch names no longer match gateway.patient_searches")
    named = {name: url for (name, _), url in zip(SEARCH_NAMES, searches, strict=True)}
    named[FALLBACK_NAME] = titer_fallback_search(patient_id, page_size=page_size)
    return named


def prefetch_templates(
    *, titer_codes: frozenset[codes.Coding] = codes.DEFAULT_TITER_CODES
) -> dict[str, str]:
    """Prefetch key -> template with {{context.patientId}}: everything the app reads."""
    return {
        name: url.replace(_SENTINEL, PATIENT_ID)
        for name, url in _templates(_SENTINEL, titer_codes=titer_codes).items()
    }


def prefetch_urls(
    patient_id: str, *, titer_codes: frozenset[codes.Coding] = codes.DEFAULT_TITER_CODES
) -> dict[str, str]:
    """Prefetch key -> the relative URL the gateway sends for this patient (what the CDS
    client's answer under that key stands for)."""
    return _templates(patient_id, titer_codes=titer_codes)


def discovery(
    *, titer_codes: frozenset[codes.Coding] = codes.DEFAULT_TITER_CODES
) -> dict[str, Any]:
    """The discovery document: every service with its hook and prefetch templates."""
    templates = prefetch_templates(titer_codes=titer_codes)
    return {
        "services": [
            {
                "id": service.id,
                "hook": service.hook.value,
                "title": service.title,
                "description": service.description,
                "prefetch": dict(templates),
            }
            for service in SERVICES
        ]
    }


def answers_by_url(
    prefetch: Mapping[str, Any],
    patient_id: str,
    *,
    titer_codes: frozenset[codes.Coding] = codes.DEFAULT_TITER_CODES,
) -> dict[str, Any]:
    """The CDS client's prefetch, keyed by the relative URL each answer stands for; keys it
    does not know and null values (read it yourself) are left out."""
    urls = prefetch_urls(patient_id, titer_codes=titer_codes)
    return {
        urls[key]: answer for key, answer in prefetch.items() if key in urls and answer is not None
    }
