"""Code systems and the codes the app reads (LOINC, SNOMED CT, ICD-10-CM, NDC) and writes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from smart_app.rules import label
from smart_app.rules.model import LabTest

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
NDC = "http://hl7.org/fhir/sid/ndc"
UCUM = "http://unitsofmeasure.org"
REFERENCE_RANGE_MEANING = "http://terminology.hl7.org/CodeSystem/referencerange-meaning"

APP_BASE = "https://zolgensma-smart.example/fhir"
"""Canonical base of what the app defines (.example is reserved: it never resolves)."""
APP_CODES = f"{APP_BASE}/CodeSystem/zolgensma-smart"
APP_IDENTIFIER = f"{APP_BASE}/identifier"
APP_OWN_PREFIX = f"{APP_IDENTIFIER}/"

Coding = tuple[str, str]
"""(system, code)"""

WEIGHT: frozenset[Coding] = frozenset({(LOINC, "29463-7"), (LOINC, "3141-9")})
GESTATIONAL_AGE_AT_BIRTH: frozenset[Coding] = frozenset({(LOINC, "76516-4")})
BODY_TEMPERATURE: frozenset[Coding] = frozenset({(LOINC, "8310-5")})
SMN1_COPIES: frozenset[Coding] = frozenset({(LOINC, "111768-8")})
SMN2_COPIES: frozenset[Coding] = frozenset({(LOINC, "97654-8")})

LABS: dict[LabTest, frozenset[Coding]] = {
    LabTest.ALT: frozenset({(LOINC, "1742-6")}),
    LabTest.AST: frozenset({(LOINC, "1920-8")}),
    LabTest.BILIRUBIN_TOTAL: frozenset({(LOINC, "1975-2")}),
    LabTest.ALBUMIN: frozenset({(LOINC, "1751-7")}),
    LabTest.PT: frozenset({(LOINC, "5902-2")}),
    LabTest.PTT: frozenset({(LOINC, "14979-9"), (LOINC, "3173-2")}),
    LabTest.INR: frozenset({(LOINC, "6301-6"), (LOINC, "34714-6")}),
    LabTest.PLATELETS: frozenset({(LOINC, "777-3"), (LOINC, "26515-7")}),
    LabTest.HEMOGLOBIN: frozenset({(LOINC, "718-7")}),
    LabTest.CREATININE: frozenset({(LOINC, "2160-0")}),
    LabTest.TROPONIN_I: frozenset({(LOINC, "10839-9"), (LOINC, "89579-7")}),
}

DEFAULT_TITER_CODES: frozenset[Coding] = frozenset({(APP_CODES, "anti-aav9-titer")})
"""No LOINC exists for anti-AAV9 antibodies: sites add local codes; text 'AAV9' also matches."""
TITER_TEXT = "aav9"

SMA: frozenset[Coding] = frozenset(
    {(ICD10CM, "G12.0"), (ICD10CM, "G12.1"), (ICD10CM, "G12.9"), (SNOMED, "5262007")}
)

INFECTION_ICD10_PREFIXES: tuple[str, ...] = (
    "A",  # A00-A99 certain infectious and parasitic diseases
    "B",  # B00-B99 incl. chronic viral hepatitis (B18)
    "J0",  # J00-J06 acute upper respiratory infections
    "J1",  # J09-J18 influenza and pneumonia
    "J20",  # acute bronchitis
    "J21",  # acute bronchiolitis
    "J22",  # unspecified acute lower respiratory infection
    "H65",  # nonsuppurative otitis media
    "H66",  # suppurative otitis media
    "N39.0",  # urinary tract infection
    "U07.1",  # COVID-19
    "R50",  # fever
)
"""ICD-10-CM code prefixes the app treats as an active infection (institution value set)."""

INFECTION_SNOMED: frozenset[str] = frozenset(
    {
        "40733004",  # infectious disease
        "233604007",  # pneumonia
        "4120002",  # bronchiolitis
        "65363002",  # otitis media
        "25374005",  # gastroenteritis
        "68566005",  # urinary tract infectious disease
        "840539006",  # COVID-19
        "55735004",  # respiratory syncytial virus infection
        "6142004",  # influenza
        "54150009",  # upper respiratory infection
        "91302008",  # sepsis
        "66071002",  # viral hepatitis type B
        "36971009",  # sinusitis
        "386661006",  # fever
    }
)

LIVER_ICD10_PREFIXES: tuple[str, ...] = (
    "K70",  # alcoholic liver disease
    "K71",  # toxic liver disease
    "K72",  # hepatic failure, not elsewhere classified
    "K73",  # chronic hepatitis, not elsewhere classified
    "K74",  # fibrosis and cirrhosis of liver
    "K75",  # other inflammatory liver diseases
    "K76",  # other diseases of liver
    "K77",  # liver disorders in diseases classified elsewhere
)
"""ICD-10-CM code prefixes of liver disease, K70-K77 (institution value set, label section 8.6)."""

LIVER_SNOMED: frozenset[str] = frozenset(
    {
        "235856003",  # disorder of liver
        "328383001",  # chronic liver disease
        "197321007",  # steatosis of liver
        "19943007",  # cirrhosis of liver
        "128241005",  # inflammatory disease of liver (hepatitis)
        "59927004",  # hepatic failure
        "41309000",  # alcoholic liver disease
    }
)
"""SNOMED CT liver disease concepts the app treats as liver impairment (section 8.6)."""

ADVANCED_SMA_CODES: frozenset[Coding] = frozenset(
    {
        (ICD10CM, "Z93.0"),  # tracheostomy status
        (ICD10CM, "Z99.11"),  # dependence on respirator [ventilator] status
        (SNOMED, "48387007"),  # tracheostomy (procedure)
        (SNOMED, "444932008"),  # dependence on ventilator
    }
)
ADVANCED_SMA_TEXT: tuple[str, ...] = (
    "tracheostomy",
    "permanent ventilation",
    "ventilator dependen",
    "ventilator-dependen",
)

ZOLGENSMA_NDC_LABELER = label.NDC_LABELER
ZOLGENSMA_TEXT: tuple[str, ...] = ("onasemnogene", "zolgensma")

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ZOLGENSMA_RXNORM: frozenset[str] = frozenset()
"""RxNorm concepts of ZOLGENSMA: none listed, as no RxCUI could be checked against RxNorm here
(a site adds its own); orders are recognised by NDC (labeler 71894) and by name."""
CORTICOSTEROID_RXNORM: frozenset[str] = frozenset(
    {
        "8638",  # prednisolone (ingredient)
        "8640",  # prednisone (ingredient), an equivalent oral corticosteroid (section 2.1)
    }
)
"""RxNorm ingredients of a prophylactic corticosteroid order; products are recognised by name."""
CORTICOSTEROID_TEXT: tuple[str, ...] = ("predniso",)
"""Prednisolone, prednisone and methylprednisolone by name (lower case)."""

SMN_THERAPY_TEXT: dict[str, str] = {
    "nusinersen": "nusinersen (SPINRAZA)",
    "spinraza": "nusinersen (SPINRAZA)",
    "risdiplam": "risdiplam (EVRYSDI)",
    "evrysdi": "risdiplam (EVRYSDI)",
}
"""SMN-targeted therapies, matched in the medication's text and coding displays (lower case) ->
the name the prior-authorization packet shows. No RxNorm or NDC codes are listed: none could be
checked against a source document here, and a wrong code would name a therapy the patient does
not take. An RxNorm or NDC coding with its display still matches by that display."""


def app_identifier_values(resource: Mapping[str, Any]) -> list[str]:
    """Values of a resource's identifiers in the app's system or below it (the app wrote it).

    Ill-typed identifiers are not the app's: it writes them well-formed.
    """
    identifiers = resource.get("identifier")
    if not isinstance(identifiers, list):
        return []
    return [
        str(i.get("value"))
        for i in identifiers
        if isinstance(i, Mapping)
        and isinstance(i.get("system"), str)
        and (i["system"] == APP_IDENTIFIER or i["system"].startswith(APP_OWN_PREFIX))
    ]


def app_keys(resource: Mapping[str, Any]) -> list[str]:
    """The app's identifier values of a resource, and its app tags (Provenance has no
    identifier in R4, so the app keys it by a meta.tag in the same system)."""
    meta = resource.get("meta")
    tags = meta.get("tag") if isinstance(meta, Mapping) else None
    tagged = [
        str(t.get("code"))
        for t in (tags if isinstance(tags, list) else [])
        if isinstance(t, Mapping) and t.get("system") == APP_IDENTIFIER and t.get("code")
    ]
    return app_identifier_values(resource) + tagged


def relative_reference(url: str) -> str:
    """Type/id from a location or absolute reference (drops _history and the base); '' if none."""
    path = url.split("/_history/", 1)[0].rstrip("/")
    parts = path.split("/")
    if len(parts) >= 2 and parts[-2][:1].isupper() and parts[-1]:
        return f"{parts[-2]}/{parts[-1]}"
    return ""


FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
"""A FHIR logical id (R4 `id` datatype)."""
