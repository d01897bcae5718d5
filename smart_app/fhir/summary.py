"""FHIR resources summarised for people: the patient banner, who signs a letter, the entries of a
transaction."""

from __future__ import annotations

import re
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


NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
"""The US National Provider Identifier's system."""
NPI_FORMAT = re.compile(r"\d{10}")
"""An NPI as written: ten digits (its check digit is not verified)."""
LEFT_OUT_NAMES = frozenset({"old", "maiden", "anonymous"})
"""HumanName uses that do not name the person now."""
NAME_USES = ("official", "usual")
"""The HumanName uses preferred, in order, before any other current one."""
MAX_NAME_CHARS = 200
"""The longest name kept (a letter's signature line, not a free-text field)."""


def _words(value: Any) -> list[str]:
    """The strings of a HumanName part (a list of strings; anything else is nothing)."""
    items = value if isinstance(value, list) else []
    return [" ".join(i.split()) for i in items if isinstance(i, str) and i.strip()]


def human_name(names: Any) -> str:
    """A person's name from a list of HumanName: the official one (else usual, else the first
    current one), as its text, else 'prefix given family, suffix'; '' when none is recorded."""
    current = [n for n in (names if isinstance(names, list) else []) if isinstance(n, Mapping)]
    current = [n for n in current if n.get("use") not in LEFT_OUT_NAMES]
    ranked = sorted(
        current,
        key=lambda n: NAME_USES.index(n["use"]) if n.get("use") in NAME_USES else len(NAME_USES),
    )
    for name in ranked:
        text = name.get("text")
        if isinstance(text, str) and text.strip():
            return " ".join(text.split())[:MAX_NAME_CHARS]
        family = name.get("family")
        family_words = [" ".join(family.split())] if isinstance(family, str) and family else []
        shown = " ".join(_words(name.get("prefix")) + _words(name.get("given")) + family_words)
        suffix = ", ".join(_words(name.get("suffix")))
        if shown or suffix:
            return ", ".join(p for p in (shown, suffix) if p)[:MAX_NAME_CHARS]
    return ""


def npi(resource: Resource) -> str:
    """The resource's US NPI (ten digits), or ''."""
    for identifier in resource.get("identifier") or []:
        if not isinstance(identifier, Mapping) or identifier.get("system") != NPI_SYSTEM:
            continue
        value = identifier.get("value")
        if isinstance(value, str) and NPI_FORMAT.fullmatch(value.strip()):
            return value.strip()
    return ""


@dataclass(frozen=True)
class Signer:
    """Who signs a letter, as the chart names them; '' for what it does not say."""

    name: str = ""
    npi: str = ""
    organization: str = ""


def _display(reference: Any) -> str:
    """A Reference's display text, or ''."""
    display = reference.get("display") if isinstance(reference, Mapping) else None
    return " ".join(display.split())[:MAX_NAME_CHARS] if isinstance(display, str) else ""


def signer(resource: Resource) -> Signer:
    """A Practitioner's name and NPI; a PractitionerRole's practitioner and organization as its
    references display them (the Practitioner itself is not read); nothing for anything else."""
    kind = resource.get("resourceType")
    if kind == "Practitioner":
        return Signer(name=human_name(resource.get("name")), npi=npi(resource))
    if kind == "PractitionerRole":
        return Signer(
            name=_display(resource.get("practitioner")),
            organization=_display(resource.get("organization")),
        )
    return Signer()


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
