"""FHIR resources summarised for people: the patient banner, the entries of a transaction."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Resource = Mapping[str, Any]


@dataclass(frozen=True)
class Banner:
    """The patient banner: who this plan is for."""

    name: str
    birth_date: str
    sex: str
    identifier: str
    patient_id: str


def banner(resources: Iterable[Resource], patient_id: str) -> Banner:
    """Name, birth date, sex and the first identifier from the Patient resource."""
    patient = next((r for r in resources if r.get("resourceType") == "Patient"), {})
    names = patient.get("name") or [{}]
    official = next((n for n in names if n.get("use") == "official"), names[0])
    text = official.get("text") or " ".join(
        [*official.get("given", []), official.get("family", "")]
    )
    identifiers = patient.get("identifier") or [{}]
    return Banner(
        name=text.strip() or "(no name recorded)",
        birth_date=patient.get("birthDate") or "not recorded",
        sex=patient.get("gender") or "not recorded",
        identifier=str(identifiers[0].get("value") or ""),
        patient_id=patient_id,
    )


@dataclass(frozen=True)
class WriteRow:
    """One entry of the transaction, as the clinician reads it before confirming."""

    action: str
    resource_type: str
    what: str


def _describe(resource: Resource) -> str:
    """A short human description of a resource the app writes."""
    kind = resource.get("resourceType")
    if kind == "MedicationRequest":
        medication = resource.get("medicationCodeableConcept", {}).get("text", "")
        dosage = (resource.get("dosageInstruction") or [{}])[0].get("text", "")
        return f"{medication}: {dosage}".strip(": ")
    if kind == "CarePlan":
        return str(resource.get("title", "treatment plan"))
    if kind == "Task":
        return str(resource.get("description") or resource.get("code", {}).get("text", ""))
    if kind == "DetectedIssue":
        return f"acknowledged finding: {resource.get('detail') or resource.get('code', {})}"
    if kind == "Provenance":
        return "who confirmed the plan, when, and under which label and policy version"
    return str(kind)


def write_rows(bundle: Resource) -> list[WriteRow]:
    """Every entry of a transaction Bundle: create, update (retire) or reactivate."""
    rows = []
    for entry in bundle.get("entry", []):
        resource = entry.get("resource", {})
        method = entry.get("request", {}).get("method", "")
        status = resource.get("status", "")
        action = f"set to {status}" if method == "PUT" else "create (unless already there)"
        rows.append(WriteRow(action, str(resource.get("resourceType")), _describe(resource)))
    return rows
