"""The app's FHIR conformance resources (fhir_profiles/) and the profile checker over them.

Every resource is checked against the fhir.resources R4B models (never the top-level R5 ones),
every StructureDefinition against the base resource's cardinalities read from those models, and
the checker against real transactions built offline from the fixture bundles, then against
copies of their resources broken one element at a time.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.careplan import CarePlan
from fhir.resources.R4B.codesystem import CodeSystem
from fhir.resources.R4B.detectedissue import DetectedIssue
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.provenance import Provenance
from fhir.resources.R4B.structuredefinition import StructureDefinition
from fhir.resources.R4B.task import Task
from fhir.resources.R4B.valueset import ValueSet

from smart_app.fhir import codes, profiles
from smart_app.fhir.gateway import PatientRecord
from smart_app.fhir.plan_bundle import build_transaction
from smart_app.fhir.read import (
    _is_infection,
    _is_liver_disease,
    facts_from_bundle,
    parse_bundle_json,
)
from smart_app.fhir.written import Confirmation, OrderMode
from smart_app.rules.model import ActivityKind, DecisionBranch, FindingCode, Severity
from smart_app.rules.plan import WRITABLE, build_plan
from tests.test_findings import BASE_EXAMPLE, BUNDLES, DATES, EXPECTED_CODES, EXPECTED_SEVERITY

PROFILES_DIR = Path(__file__).resolve().parents[2] / "fhir_profiles"
CORE = "http://hl7.org/fhir/StructureDefinition"
ON = dt.date(2026, 11, 20)
INFUSION = dt.date(2026, 11, 24)
RECORDED = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
USER = "Practitioner/dr-lee"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NDC, LOINC, SNOMED = codes.NDC, codes.LOINC, codes.SNOMED

MODELS: dict[str, Any] = {
    "StructureDefinition": StructureDefinition,
    "CodeSystem": CodeSystem,
    "ValueSet": ValueSet,
    "MedicationRequest": MedicationRequest,
    "CarePlan": CarePlan,
    "Task": Task,
    "DetectedIssue": DetectedIssue,
    "Provenance": Provenance,
}
"""The R4B model of every resource type written or defined here."""

PROFILE_TYPES = {
    "zolgensma-kit-order": "MedicationRequest",
    "zolgensma-steroid-order": "MedicationRequest",
    "zolgensma-careplan": "CarePlan",
    "zolgensma-task": "Task",
    "zolgensma-detectedissue": "DetectedIssue",
    "zolgensma-provenance": "Provenance",
    "zolgensma-consult": "ServiceRequest",
}

WRITABLE_FIXTURES = sorted(
    name
    for name, found in EXPECTED_CODES.items()
    if all(EXPECTED_SEVERITY[code] in (Severity.NEEDS_REVIEW, Severity.INFO) for code in found)
)
"""Fixtures whose plan may be written: no finding worse than needs-review."""


# Helpers -------------------------------------------------------------------------------------


def _files() -> list[Path]:
    return sorted(PROFILES_DIR.glob("*.json"))


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _of_type(resource_type: str) -> list[dict[str, Any]]:
    return [data for data in map(_load, _files()) if data["resourceType"] == resource_type]


def _structure_definitions() -> list[dict[str, Any]]:
    return _of_type("StructureDefinition")


def _code_system() -> dict[str, Any]:
    (found,) = [cs for cs in _of_type("CodeSystem") if cs["url"] == codes.APP_CODES]
    return found


def _value_set(name: str = "infection-conditions") -> dict[str, Any]:
    url = f"{codes.APP_BASE}/ValueSet/{name}"
    (found,) = [vs for vs in _of_type("ValueSet") if vs["url"] == url]
    return found


def _bundle_path(name: str) -> Path:
    return BASE_EXAMPLE if name == "example" else BUNDLES / f"{name}.json"


def _transaction(
    name: str = "example",
    *,
    fhir_user: str | None = USER,
    order_mode: OrderMode = OrderMode.PROPOSAL,
    infusion: dt.date | None = None,
    extra: tuple[dict[str, Any], ...] = (),
) -> dict[str, Any]:
    """The transaction the writer builds for a fixture, every finding acknowledged."""
    bundle = parse_bundle_json(_bundle_path(name).read_text(encoding="utf-8"))
    facts = facts_from_bundle(bundle)
    on, default_infusion = DATES.get(name, (ON, INFUSION))
    plan = build_plan(facts, on=on, infusion_date=infusion or default_infusion)
    assert plan.eligibility.status in WRITABLE, (name, plan.eligibility.status)
    record = PatientRecord(
        patient_id=facts.patient_id,
        resources=[entry["resource"] for entry in bundle["entry"]] + list(extra),
    )
    confirmation = Confirmation(
        recorded=RECORDED,
        acknowledged=frozenset(f.code.value for f in plan.eligibility.findings),
        fhir_user=fhir_user,
        order_mode=order_mode,
    )
    return build_transaction(plan, facts, record, confirmation)


@cache
def _example_json() -> str:
    return json.dumps(_transaction())


def _example() -> dict[str, Any]:
    """A fresh copy of the eligible example's transaction."""
    return json.loads(_example_json())


def _resource(profile: str, *, where: str | None = None) -> dict[str, Any]:
    """The first resource of the example transaction declaring `profile` (and key `where`)."""
    url = profiles.profile_url(profile)
    return next(
        entry["resource"]
        for entry in _example()["entry"]
        if url in entry["resource"]["meta"]["profile"]
        and (where is None or where in entry["resource"])
    )


def _app_codes(node: Any) -> Iterator[str]:
    """Every code under the app's code system anywhere in a JSON tree."""
    if isinstance(node, dict):
        if node.get("system") == codes.APP_CODES and "code" in node:
            yield node["code"]
        for value in node.values():
            yield from _app_codes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _app_codes(value)


def _assert_conforms(bundle: dict[str, Any]) -> None:
    for index, entry in enumerate(bundle["entry"]):
        resource = entry["resource"]
        MODELS[resource["resourceType"]].model_validate(resource)
        assert profiles.check(resource) == [], (index, resource["resourceType"])


# Base cardinality from the R4B models --------------------------------------------------------


@dataclass(frozen=True)
class Base:
    """The base resource's definition of one element, as the R4B model has it."""

    min: int
    max: str
    model: Any
    """The R4B model class of the element's type, None for primitives and choices."""
    extra: dict[str, Any]


def _extra(field: Any) -> dict[str, Any]:
    extra = field.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def _is_list(annotation: Any) -> bool:
    if typing.get_origin(annotation) is list:
        return True
    return any(_is_list(arg) for arg in typing.get_args(annotation))


def _classes(annotation: Any) -> Iterator[type]:
    if isinstance(annotation, type):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _classes(arg)


def _model_of(annotation: Any) -> Any:
    """The R4B model behind an annotation such as Optional[List[abc.DosageType]]."""
    for cls in _classes(annotation):
        name = cls.__name__
        if name.endswith("Type") and name != "NoneType":
            try:
                return get_fhir_model_class(name[: -len("Type")])
            except (KeyError, ValueError, ImportError):
                continue
    return None


def _base_child(model: Any, name: str) -> Base:
    fields = {(f.alias or n): f for n, f in model.model_fields.items()}
    if name.endswith("[x]"):
        stem = name[:-3]
        choices = [f for f in fields.values() if _extra(f).get("one_of_many") == stem]
        assert choices, f"{model.__name__} has no choice element {name}"
        required = any(_extra(f).get("one_of_many_required") for f in choices)
        return Base(int(required), "1", None, _extra(choices[0]))
    assert name in fields, f"{model.__name__} has no element {name}"
    field = fields[name]
    extra = _extra(field)
    assert extra.get("element_property"), f"{model.__name__}.{name} is not a FHIR element"
    required = field.is_required() or extra.get("element_required") or False
    if extra.get("one_of_many"):
        required = required and extra.get("one_of_many_required", False)
    maximum = "*" if _is_list(field.annotation) else "1"
    return Base(int(bool(required)), maximum, _model_of(field.annotation), extra)


def base_element(path: str) -> Base:
    """The base cardinality of an element path such as MedicationRequest.dispenseRequest.quantity;
    nested elements are 'required' only within a present parent, as in FHIR."""
    root, *names = path.split(".")
    base = Base(1, "1", get_fhir_model_class(root), {})
    for name in names:
        assert base.model is not None, f"{path}: cannot go below a primitive or choice"
        base = _base_child(base.model, name)
    return base


def _max(value: str) -> float:
    return float("inf") if value == "*" else int(value)


@pytest.mark.parametrize(
    ("path", "cardinality"),
    [
        ("MedicationRequest.subject", (1, "1")),
        ("MedicationRequest.status", (1, "1")),
        ("MedicationRequest.identifier", (0, "*")),
        ("MedicationRequest.medication[x]", (1, "1")),
        ("MedicationRequest.dosageInstruction.timing.event", (0, "*")),
        ("MedicationRequest.dosageInstruction.timing.repeat.boundsPeriod", (0, "1")),
        ("MedicationRequest.dosageInstruction.doseAndRate.doseQuantity", (0, "1")),
        ("MedicationRequest.dispenseRequest.quantity", (0, "1")),
        ("Provenance.target", (1, "*")),
        ("Provenance.policy", (0, "*")),
        ("Provenance.agent.who", (1, "1")),
        ("CarePlan.intent", (1, "1")),
        ("CarePlan.activity.reference", (0, "1")),
        ("Task.basedOn", (0, "*")),
        ("Task.for", (0, "1")),
        ("Task.input.type", (1, "1")),
        ("Task.input.value[x]", (1, "1")),
        ("DetectedIssue.identified[x]", (0, "1")),
        ("DetectedIssue.mitigation.action", (1, "1")),
    ],
)
def test_base_element_reads_the_r4b_definitions(path: str, cardinality: tuple[int, str]) -> None:
    base = base_element(path)
    assert (base.min, base.max) == cardinality


@pytest.mark.parametrize(
    "path",
    [
        "MedicationRequest.dosageInstructions",
        "MedicationRequest.medication",
        "Task.status.code",
        "Task.input.valueFoo",
        "DetectedIssue.identified",
        "CarePlan.status__ext",
    ],
)
def test_base_element_refuses_unknown_paths(path: str) -> None:
    with pytest.raises(AssertionError):
        base_element(path)


# Every file ----------------------------------------------------------------------------------


def test_the_expected_files_are_there() -> None:
    names = {path.name for path in _files()}
    assert names == {
        *(f"StructureDefinition-{name}.json" for name in PROFILE_TYPES),
        "CodeSystem-zolgensma-smart.json",
        "ValueSet-infection-conditions.json",
        "ValueSet-liver-disease-conditions.json",
    }


@pytest.mark.parametrize("path", _files(), ids=lambda p: p.stem)
def test_file_is_a_valid_r4b_resource_named_after_its_id(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    data = json.loads(text)
    MODELS[data["resourceType"]].model_validate(data)
    assert path.name == f"{data['resourceType']}-{data['id']}.json"
    assert text == json.dumps(data, indent=2, ensure_ascii=False) + "\n", "not 2-space pretty"
    assert data["url"].startswith(f"{codes.APP_BASE}/")
    assert data["status"] == "draft"


def test_the_checker_loads_every_file_by_url() -> None:
    assert set(profiles.conformance()) == {_load(path)["url"] for path in _files()}
    assert set(profiles.structure_definitions()) == {
        profiles.profile_url(name) for name in PROFILE_TYPES
    }


# StructureDefinitions ------------------------------------------------------------------------


@pytest.mark.parametrize("sd", _structure_definitions(), ids=lambda sd: sd["id"])
def test_structure_definition_header(sd: dict[str, Any]) -> None:
    assert sd["url"] == profiles.profile_url(sd["id"])
    assert sd["url"] == f"{codes.APP_BASE}/StructureDefinition/{sd['id']}"
    assert sd["type"] == PROFILE_TYPES[sd["id"]]
    assert sd["baseDefinition"] == f"{CORE}/{sd['type']}"
    assert sd["derivation"] == "constraint"
    assert sd["kind"] == "resource"
    assert sd["abstract"] is False
    assert sd["fhirVersion"] == "4.0.1"
    assert re.fullmatch(r"[A-Z][A-Za-z0-9]*", sd["name"])
    assert sd["title"]
    assert sd["description"]
    assert "snapshot" not in sd
    assert set(sd["differential"]) == {"element"}


SLICED = {"zolgensma-careplan": {"CarePlan.category": ["zolgensmaPlan"]}}
"""The only slicing in the app's profiles: open, by pattern, so other categories fit beside."""


@pytest.mark.parametrize("sd", _structure_definitions(), ids=lambda sd: sd["id"])
def test_elements_are_paths_of_the_type_and_slices_are_well_formed(sd: dict[str, Any]) -> None:
    elements = sd["differential"]["element"]
    ids = [element["id"] for element in elements]
    assert len(ids) == len(set(ids)), "an element is constrained twice"
    slices: dict[str, list[str]] = {}
    for position, element in enumerate(elements):
        path = element["path"]
        assert path == sd["type"] or path.startswith(f"{sd['type']}.")
        assert ":" not in path
        if "sliceName" in element:
            assert element["id"] == f"{path}:{element['sliceName']}"
            assert "slicing" in elements[ids.index(path)], f"{path} is sliced without slicing"
            assert ids.index(path) < position, "a slice comes after its sliced element"
            assert element["min"] >= 1, "the app's slice is required"
            slices.setdefault(path, []).append(element["sliceName"])
        else:
            assert element["id"] == path
        if "slicing" in element:
            assert element["slicing"]["rules"] == "open"
            assert element["slicing"]["discriminator"] == [{"type": "pattern", "path": "$this"}]
            assert not profiles._constraints(element), "a pattern on the whole sliced element"
    assert slices == SLICED.get(sd["id"], {})


@pytest.mark.parametrize("sd", _structure_definitions(), ids=lambda sd: sd["id"])
def test_cardinalities_only_narrow_the_base_resource(sd: dict[str, Any]) -> None:
    for element in sd["differential"]["element"][1:]:
        path = element["path"]
        base = base_element(path)
        low = element.get("min", base.min)
        high = element.get("max", base.max)
        assert low >= base.min, f"{path}: min {low} below the base {base.min}"
        assert _max(high) <= _max(base.max), f"{path}: max {high} above the base {base.max}"
        assert low <= _max(high), f"{path}: min {low} > max {high}"


@pytest.mark.parametrize("sd", _structure_definitions(), ids=lambda sd: sd["id"])
def test_fixed_values_and_patterns_fit_their_element(sd: dict[str, Any]) -> None:
    for element in sd["differential"]["element"][1:]:
        path = element["path"]
        base = base_element(path)
        declared = [t["code"] for t in element.get("type", [])]
        for key, value in element.items():
            if not key.startswith(("fixed", "pattern")):
                continue
            kind = key.removeprefix("fixed").removeprefix("pattern")
            if kind == "Code":
                assert value in base.extra["enum_values"], f"{path}: {value} is not a code"
            elif path.endswith("[x]"):
                assert declared == [kind], f"{path}: {key} without type {kind}"
            else:
                assert base.model is not None, f"{path}: {key} on a primitive"
                assert base.model.__name__ == kind, f"{path}: {key} on a {base.model.__name__}"
            if kind != "Code":
                get_fhir_model_class(kind).model_validate(value)
        if path.endswith("[x]") and declared:
            stem = path.rsplit(".", 1)[-1][:-3]
            parent = base_element(path.rsplit(".", 1)[0]).model
            names = {(f.alias or n) for n, f in parent.model_fields.items()}
            for code in declared:
                assert f"{stem}{code[0].upper()}{code[1:]}" in names, f"{path}: no type {code}"


def test_every_profile_the_writer_declares_exists_and_every_profile_is_used() -> None:
    declared = {url for e in _example()["entry"] for url in e["resource"]["meta"]["profile"]}
    consult = profiles.profile_url("zolgensma-consult")
    assert declared == set(profiles.structure_definitions()) - {consult}
    # the consult request comes from the day-30 decision: tests/fhir/test_followup_write.py


# CodeSystem ----------------------------------------------------------------------------------


def test_code_system_header() -> None:
    cs = _code_system()
    assert cs["url"] == codes.APP_CODES
    assert cs["content"] == "complete"
    assert cs["caseSensitive"] is True
    concepts = cs["concept"]
    assert len({c["code"] for c in concepts}) == len(concepts), "duplicate codes"
    assert cs.get("count", len(concepts)) == len(concepts)
    for concept in concepts:
        assert set(concept) == {"code", "display", "definition"}, concept
        assert concept["display"].strip()
        assert concept["definition"].strip()


def test_code_system_has_every_finding_with_its_severity() -> None:
    concepts = {c["code"]: c for c in _code_system()["concept"]}
    for code in FindingCode:
        assert code.value in concepts, code
        definition = concepts[code.value]["definition"]
        assert f"Severity {EXPECTED_SEVERITY[code].value}:" in definition, code
        others = {s.value for s in Severity} - {EXPECTED_SEVERITY[code].value}
        assert not any(f"Severity {other}:" in definition for other in others), code


def test_code_system_has_every_activity_kind_and_the_other_app_codes() -> None:
    present = {c["code"] for c in _code_system()["concept"]}
    assert {kind.value for kind in ActivityKind} <= present
    assert {"lab-test", "zolgensma-plan", "anti-aav9-titer"} <= present
    assert {code for system, code in codes.DEFAULT_TITER_CODES if system == codes.APP_CODES} <= (
        present
    )
    expected = (
        {c.value for c in FindingCode}
        | {k.value for k in ActivityKind}
        | {"lab-test", "zolgensma-plan", "anti-aav9-titer"}
        | {"lab-result", "hepatology-consult"}
        | {b.value for b in DecisionBranch}
        | {"prior-authorization-packet"}  # fhir/document_write.py
    )
    assert present == expected, "a concept nothing uses"


@pytest.mark.parametrize("name", ["example", *WRITABLE_FIXTURES])
def test_code_system_has_every_code_the_writer_uses(name: str) -> None:
    present = {c["code"] for c in _code_system()["concept"]}
    used = set(_app_codes(_transaction(name)))
    assert used, "the writer uses no app code?"
    assert used <= present


# ValueSet ------------------------------------------------------------------------------------


def _includes(name: str = "infection-conditions") -> dict[str, dict[str, Any]]:
    includes = _value_set(name)["compose"]["include"]
    by_system = {include["system"]: include for include in includes}
    assert len(by_system) == len(includes)
    return by_system


def _icd_regex(name: str = "infection-conditions") -> str:
    (only,) = _includes(name)[codes.ICD10CM]["filter"]
    assert (only["property"], only["op"]) == ("code", "regex")
    assert "concept" not in _includes(name)[codes.ICD10CM]
    return only["value"]


def test_value_set_header() -> None:
    vs = _value_set()
    assert "institution" in vs["description"].lower()
    assert set(_includes()) == {codes.SNOMED, codes.ICD10CM}


def test_value_set_snomed_codes_are_exactly_the_apps() -> None:
    concepts = _includes()[codes.SNOMED]["concept"]
    assert "filter" not in _includes()[codes.SNOMED]
    found = [c["code"] for c in concepts]
    assert len(found) == len(set(found))
    assert set(found) == codes.INFECTION_SNOMED
    assert all(c.get("display") for c in concepts)


@pytest.mark.parametrize("prefix", codes.INFECTION_ICD10_PREFIXES)
def test_value_set_icd10_regex_matches_every_prefix(prefix: str) -> None:
    regex = _icd_regex()
    candidates = [prefix, f"{prefix}9"] + ([] if "." in prefix else [f"{prefix}.9"])
    for code in candidates:
        assert re.fullmatch(regex, code), code
        assert re.search(regex, code), code


@pytest.mark.parametrize(
    ("code", "member"),
    [
        ("J21.9", True),
        ("J06.9", True),
        ("J18.9", True),
        ("A08.4", True),
        ("B34.9", True),
        ("H66.90", True),
        ("N39.0", True),
        ("U07.1", True),
        ("R50.9", True),
        ("J30.1", False),
        ("J45.909", False),
        ("Z00", False),
        ("Z00.129", False),
        ("N39.1", False),
        ("N3900", False),
        ("U0711", False),
        ("G12.0", False),
        ("H60.9", False),
        ("R05.9", False),
        ("XA00", False),
    ],
)
def test_value_set_icd10_membership_agrees_with_the_reader(code: str, member: bool) -> None:
    regex = _icd_regex()
    assert bool(re.fullmatch(regex, code)) is member
    assert bool(re.search(regex, code)) is member
    assert _is_infection({(codes.ICD10CM, code)}) is member


LIVER = "liver-disease-conditions"


def test_liver_value_set_header() -> None:
    vs = _value_set(LIVER)
    description = vs["description"].lower()
    assert "institution" in description
    assert "8.6" in description
    assert "carefully considered in patients with liver impairment" in description
    assert set(_includes(LIVER)) == {codes.SNOMED, codes.ICD10CM}


def test_liver_value_set_snomed_codes_are_exactly_the_apps() -> None:
    concepts = _includes(LIVER)[codes.SNOMED]["concept"]
    assert "filter" not in _includes(LIVER)[codes.SNOMED]
    found = [c["code"] for c in concepts]
    assert len(found) == len(set(found))
    assert set(found) == codes.LIVER_SNOMED
    assert all(c.get("display") for c in concepts)
    assert all(_is_liver_disease({(codes.SNOMED, code)}) for code in found)


@pytest.mark.parametrize("prefix", codes.LIVER_ICD10_PREFIXES)
def test_liver_value_set_icd10_regex_matches_every_prefix(prefix: str) -> None:
    regex = _icd_regex(LIVER)
    for code in (prefix, f"{prefix}.9", f"{prefix}.60"):
        assert re.fullmatch(regex, code), code


@pytest.mark.parametrize(
    ("code", "member"),
    [
        ("K70.30", True),
        ("K71.9", True),
        ("K72.90", True),
        ("K73.9", True),
        ("K74.60", True),
        ("K75.4", True),
        ("K76.0", True),
        ("K77", True),
        ("K7", False),
        ("K78", False),
        ("K69", False),
        ("K80.20", False),
        ("K21.9", False),
        ("B18.1", False),
        ("P59.9", False),
        ("XK70", False),
    ],
)
def test_liver_value_set_icd10_membership_agrees_with_the_reader(code: str, member: bool) -> None:
    regex = _icd_regex(LIVER)
    assert bool(re.fullmatch(regex, code)) is member
    assert _is_liver_disease({(codes.ICD10CM, code)}) is member
    assert _is_infection({(codes.ICD10CM, code)}) is (code == "B18.1")


# The checker against real transactions -------------------------------------------------------


@pytest.mark.parametrize("name", ["example", *WRITABLE_FIXTURES])
def test_real_transaction_conforms(name: str) -> None:
    bundle = _transaction(name)
    assert bundle["type"] == "transaction"
    _assert_conforms(bundle)
    kinds = {e["resource"]["resourceType"] for e in bundle["entry"]}
    assert kinds == {"MedicationRequest", "CarePlan", "Task", "DetectedIssue", "Provenance"}
    issues = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DetectedIssue"
    ]
    expected = EXPECTED_CODES["caregiver-counseling" if name == "example" else name]
    assert {i["code"]["coding"][0]["code"] for i in issues} == {c.value for c in expected}


@pytest.mark.parametrize("fhir_user", [USER, "PractitionerRole/r1", "Patient/p1", None])
@pytest.mark.parametrize("order_mode", list(OrderMode))
def test_real_transaction_conforms_for_every_user_and_order_mode(
    fhir_user: str | None, order_mode: OrderMode
) -> None:
    _assert_conforms(_transaction(fhir_user=fhir_user, order_mode=order_mode))


def _as_stored(bundle: dict[str, Any], status: dict[str, str] | None = None) -> tuple[Any, ...]:
    """The transaction's resources as a server would return them, with ids and versions."""
    stored = []
    for index, entry in enumerate(bundle["entry"]):
        resource = copy.deepcopy(entry["resource"])
        resource["id"] = f"stored-{index}"
        resource["meta"] = {**resource["meta"], "versionId": "1"}
        if status and resource["resourceType"] in status:
            resource["status"] = status[resource["resourceType"]]
        stored.append(resource)
    return tuple(stored)


def test_retiring_a_previous_plan_conforms() -> None:
    old = _as_stored(_example())
    bundle = _transaction(infusion=dt.date(2026, 11, 25), extra=old)
    updates = [e for e in bundle["entry"] if e["request"]["method"] == "PUT"]
    assert {e["resource"]["status"] for e in updates} == {"revoked", "cancelled"}
    _assert_conforms(bundle)


def test_reactivating_a_cancelled_plan_conforms() -> None:
    old = _as_stored(_example(), {"Task": "cancelled", "MedicationRequest": "cancelled"})
    bundle = _transaction(extra=old)
    updates = [e for e in bundle["entry"] if e["request"]["method"] == "PUT"]
    assert updates
    assert all(e["resource"]["status"] in ("requested", "draft") for e in updates)
    _assert_conforms(bundle)


# The checker against broken copies -----------------------------------------------------------


class Case(NamedTuple):
    """Break one element of a real resource: drop it, set it, or repeat it."""

    profile: str
    op: str
    where: str
    element: str
    value: Any = None
    needs: str | None = None
    """A key the resource must have, to pick the right one of several (a Task with inputs)."""


KIT, STEROID, PLAN = "zolgensma-kit-order", "zolgensma-steroid-order", "zolgensma-careplan"
TASK, ISSUE, PROV = "zolgensma-task", "zolgensma-detectedissue", "zolgensma-provenance"
DOSAGE, RATE = "dosageInstruction", "dosageInstruction.doseAndRate"
BOUNDS = "dosageInstruction.timing.repeat.boundsPeriod"
D0, R0 = "dosageInstruction.0", "dosageInstruction.0.doseAndRate.0"
"""Element paths, and where the first dosage and dose-and-rate sit in the JSON."""
CASES = [
    Case(KIT, "drop", "identifier", "identifier"),
    Case(KIT, "drop", "subject", "subject"),
    Case(KIT, "drop", "authoredOn", "authoredOn"),
    Case(KIT, "drop", "note", "note"),
    Case(KIT, "set", "medicationCodeableConcept.coding.0.system", "medication[x]", RXNORM),
    Case(KIT, "set", "medicationReference", "medication[x]", {"reference": "Medication/m"}),
    Case(KIT, "dup", DOSAGE, DOSAGE),
    Case(KIT, "drop", f"{D0}.text", f"{DOSAGE}.text"),
    Case(KIT, "drop", f"{D0}.timing.event", f"{DOSAGE}.timing.event"),
    Case(KIT, "set", f"{D0}.route.coding.0.code", f"{DOSAGE}.route", "26643006"),
    Case(KIT, "dup", f"{D0}.doseAndRate", RATE),
    Case(KIT, "set", f"{R0}.rateQuantity.code", f"{RATE}.rateQuantity", "mL/min"),
    Case(KIT, "set", f"{R0}.doseQuantity.code", f"{RATE}.doseQuantity", "L"),
    Case(KIT, "drop", f"{R0}.doseQuantity", f"{RATE}.doseQuantity"),
    Case(KIT, "set", "dispenseRequest.quantity.code", "dispenseRequest.quantity", "mL"),
    Case(KIT, "drop", "dispenseRequest", "dispenseRequest"),
    Case(STEROID, "set", "medicationCodeableConcept.coding.0.system", "medication[x]", NDC),
    Case(STEROID, "drop", f"{D0}.timing.repeat.boundsPeriod", BOUNDS),
    Case(STEROID, "drop", f"{D0}.timing.repeat.boundsPeriod.end", f"{BOUNDS}.end"),
    Case(STEROID, "set", f"{D0}.route.coding.0.code", f"{DOSAGE}.route", "47625008"),
    Case(STEROID, "drop", f"{D0}.doseAndRate.1", RATE),
    Case(STEROID, "dup", f"{D0}.doseAndRate", RATE),
    Case(STEROID, "drop", "dispenseRequest.quantity", "dispenseRequest.quantity"),
    Case(STEROID, "drop", "intent", "intent"),
    Case(PLAN, "set", "intent", "intent", "order"),
    Case(PLAN, "set", "activity", "activity", [{"reference": {"reference": "Task/one"}}]),
    Case(PLAN, "drop", "activity.0.reference", "activity.reference"),
    Case(PLAN, "set", "category.0.coding.0.code", "category:zolgensmaPlan", "assess-plan"),
    Case(PLAN, "drop", "category", "category"),
    Case(PLAN, "drop", "period.end", "period.end"),
    Case(PLAN, "drop", "title", "title"),
    Case(PLAN, "dup", "subject", "subject"),
    Case(TASK, "set", "intent", "intent", "order"),
    Case(TASK, "dup", "basedOn", "basedOn"),
    Case(TASK, "set", "code.coding.0.system", "code", LOINC),
    Case(TASK, "drop", "for", "for"),
    Case(TASK, "drop", "restriction.period.start", "restriction.period.start"),
    Case(TASK, "drop", "restriction", "restriction"),
    Case(TASK, "set", "input.0.type.coding.0.code", "input.type", "lab-panel", "input"),
    Case(TASK, "drop", "input.0.valueCodeableConcept", "input.value[x]", None, "input"),
    Case(ISSUE, "set", "status", "status", "preliminary"),
    Case(ISSUE, "drop", "identifiedDateTime", "identified[x]"),
    Case(ISSUE, "set", "identifiedPeriod", "identified[x]", {"start": "2026-11-20"}),
    Case(ISSUE, "set", "code.coding.0.system", "code", SNOMED),
    Case(ISSUE, "drop", "severity", "severity"),
    Case(ISSUE, "drop", "detail", "detail"),
    Case(ISSUE, "drop", "mitigation", "mitigation"),
    Case(ISSUE, "drop", "mitigation.0.date", "mitigation.date"),
    Case(PROV, "drop", "policy", "policy"),
    Case(PROV, "drop", "activity", "activity"),
    Case(PROV, "drop", "agent.1.type", "agent.type"),
    Case(PROV, "drop", "agent.0.who", "agent.who"),
    Case(PROV, "set", "target", "target", []),
    Case(PROV, "dup", "recorded", "recorded"),
]


def _broken(resource: dict[str, Any], case: Case) -> dict[str, Any]:
    out = copy.deepcopy(resource)
    *parents, last = case.where.split(".")
    node: Any = out
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key: Any = int(last) if isinstance(node, list) else last
    if case.op == "drop":
        del node[key]
    elif case.op == "set":
        node[key] = case.value
    else:
        value = node[key]
        node[key] = [*value, *value] if isinstance(value, list) else [value, value]
    return out


def _case_id(case: Case) -> str:
    return f"{case.profile.removeprefix('zolgensma-')}-{case.op}-{case.where}"


def test_cases_cover_every_profile() -> None:
    # the consult request comes from the day-30 decision: tests/fhir/test_followup_write.py
    assert {case.profile for case in CASES} == set(PROFILE_TYPES) - {"zolgensma-consult"}


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_checker_names_the_broken_element(case: Case) -> None:
    resource = _resource(case.profile, where=case.needs)
    assert profiles.check(resource) == []
    problems = profiles.check(_broken(resource, case))
    path = f"{PROFILE_TYPES[case.profile]}.{case.element}"
    assert any(problem.startswith(f"{path}: ") for problem in problems), problems


def test_resource_without_a_profile_is_a_problem() -> None:
    resource = _resource("zolgensma-task")
    del resource["meta"]
    assert profiles.check(resource) == ["Task declares none of the app's profiles"]
    resource["meta"] = {"profile": []}
    assert len(profiles.check(resource)) == 1
    resource["meta"] = {"profile": ["http://hl7.org/fhir/us/core/StructureDefinition/x"]}
    assert len(profiles.check(resource)) == 1


@pytest.mark.parametrize(
    ("profile", "resource_profile"),
    [
        ("zolgensma-kit-order", "zolgensma-task"),
        ("zolgensma-task", "zolgensma-careplan"),
        ("zolgensma-provenance", "zolgensma-detectedissue"),
        ("zolgensma-careplan", "zolgensma-steroid-order"),
    ],
)
def test_profile_on_the_wrong_type_is_a_problem(profile: str, resource_profile: str) -> None:
    resource = _resource(resource_profile)
    resource["meta"]["profile"] = [profiles.profile_url(profile)]
    problems = profiles.check(resource)
    assert problems == [
        f"{profiles.profile_url(profile)} is for {PROFILE_TYPES[profile]}, "
        f"not {resource['resourceType']}"
    ]


def test_kit_order_profile_does_not_fit_the_steroid_order() -> None:
    resource = _resource("zolgensma-steroid-order")
    resource["meta"]["profile"] = [profiles.profile_url("zolgensma-kit-order")]
    problems = profiles.check(resource)
    for element in ("medication[x]", "dosageInstruction.route", "dosageInstruction.doseAndRate"):
        assert any(p.startswith(f"MedicationRequest.{element}: ") for p in problems), element


def test_models_are_r4b() -> None:
    for model in MODELS.values():
        assert model.__module__.startswith("fhir.resources.R4B."), model


# Slicing -------------------------------------------------------------------------------------

US_CORE_CAREPLAN = "http://hl7.org/fhir/us/core/CodeSystem/careplan-category"
ASSESS_PLAN = {"coding": [{"system": US_CORE_CAREPLAN, "code": "assess-plan"}]}
APP_PLAN = {"coding": [{"system": codes.APP_CODES, "code": "zolgensma-plan"}]}
PLAN_SLICE = "CarePlan.category:zolgensmaPlan"


def _care_plan(*categories: dict[str, Any]) -> dict[str, Any]:
    resource = _resource(PLAN)
    resource["category"] = [copy.deepcopy(c) for c in categories]
    return resource


def test_the_writer_writes_exactly_the_app_category() -> None:
    assert _resource(PLAN)["category"] == [APP_PLAN]


@pytest.mark.parametrize(
    "categories",
    [
        (APP_PLAN, ASSESS_PLAN),
        (ASSESS_PLAN, APP_PLAN),
        ({"coding": [*APP_PLAN["coding"], *ASSESS_PLAN["coding"]], "text": "ZOLGENSMA"},),
    ],
    ids=["app-then-us-core", "us-core-then-app", "one-concept-with-both"],
)
def test_a_us_core_assess_plan_category_may_sit_beside_the_apps(
    categories: tuple[dict[str, Any], ...],
) -> None:
    resource = _care_plan(*categories)
    CarePlan.model_validate(resource)
    assert profiles.check(resource) == []


@pytest.mark.parametrize(
    "categories",
    [
        (ASSESS_PLAN,),
        (ASSESS_PLAN, {"coding": [{"system": codes.APP_CODES, "code": "hepatology-consult"}]}),
        ({"coding": [{"system": US_CORE_CAREPLAN, "code": "zolgensma-plan"}]},),
        ({"text": "zolgensma-plan"},),
    ],
    ids=["us-core-only", "another-app-code", "app-code-in-another-system", "text-only"],
)
def test_a_care_plan_without_the_apps_category_fails(
    categories: tuple[dict[str, Any], ...],
) -> None:
    problems = profiles.check(_care_plan(*categories))
    assert problems == [f"{PLAN_SLICE}: 0 present, at least 1 required"]


def test_the_apps_category_at_most_once() -> None:
    problems = profiles.check(_care_plan(APP_PLAN, ASSESS_PLAN, APP_PLAN))
    assert problems == [f"{PLAN_SLICE}: 2 present, at most 1 allowed"]


def test_no_category_at_all_names_the_element_and_the_slice() -> None:
    problems = profiles.check(_care_plan())
    assert problems == [
        "CarePlan.category: 0 present, at least 1 required",
        f"{PLAN_SLICE}: 0 present, at least 1 required",
    ]


def _synthetic(elements: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """A Task profile with the given differential elements, under a throwaway URL."""
    return {
        "resourceType": "StructureDefinition",
        "url": profiles.profile_url(f"test-{name}"),
        "type": "Task",
        "differential": {"element": [{"id": "Task", "path": "Task"}, *elements]},
    }


@pytest.fixture
def synthetic(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Check a resource against a synthetic profile (added to the app's for one test)."""

    def checker(sd: dict[str, Any], resource: dict[str, Any]) -> list[str]:
        known = {**profiles.structure_definitions(), sd["url"]: sd}
        monkeypatch.setattr(profiles, "structure_definitions", lambda: known)
        return profiles.check({**resource, "meta": {"profile": [sd["url"]]}})

    yield checker
    profiles._profile.cache_clear()


INPUT_TYPE = {"coding": [{"system": codes.APP_CODES, "code": "lab-panel"}]}
SLICED_INPUT = {
    "id": "Task.input",
    "path": "Task.input",
    "slicing": {"discriminator": [{"type": "value", "path": "type"}], "rules": "closed"},
}
PANEL_SLICE = [
    {"id": "Task.input:panel", "path": "Task.input", "sliceName": "panel", "min": 1, "max": "1"},
    {
        "id": "Task.input:panel.type",
        "path": "Task.input.type",
        "patternCodeableConcept": INPUT_TYPE,
    },
    {"id": "Task.input:panel.value[x]", "path": "Task.input.value[x]", "min": 1},
]


def _input(code: str, value: str | None = "x") -> dict[str, Any]:
    found: dict[str, Any] = {"type": {"coding": [{"system": codes.APP_CODES, "code": code}]}}
    if value is not None:
        found["valueString"] = value
    return found


def test_a_child_path_discriminator_selects_the_slice_and_its_constraints_apply_to_it_only(
    synthetic: Any,
) -> None:
    sd = _synthetic(
        [{**SLICED_INPUT, "slicing": {**SLICED_INPUT["slicing"], "rules": "open"}}, *PANEL_SLICE],
        "child-path",
    )
    assert synthetic(sd, {"resourceType": "Task", "input": [_input("lab-panel")]}) == []
    # an item outside the slice needs no value: the slice's constraints are the slice's only
    other = _input("counseling", None)
    assert synthetic(sd, {"resourceType": "Task", "input": [_input("lab-panel"), other]}) == []
    assert synthetic(sd, {"resourceType": "Task", "input": [_input("lab-panel", None)]}) == [
        "Task.input:panel.value[x]: 0 present, at least 1 required"
    ]
    assert synthetic(sd, {"resourceType": "Task", "input": [other]}) == [
        "Task.input:panel: 0 present, at least 1 required"
    ]


def test_closed_slicing_refuses_an_item_that_fits_no_slice(synthetic: Any) -> None:
    sd = _synthetic([SLICED_INPUT, *PANEL_SLICE], "closed")
    assert synthetic(sd, {"resourceType": "Task", "input": [_input("lab-panel")]}) == []
    problems = synthetic(
        sd, {"resourceType": "Task", "input": [_input("lab-panel"), _input("counseling")]}
    )
    assert len(problems) == 1
    assert problems[0].startswith("Task.input: ")
    assert problems[0].endswith("fits none of its slices (closed)")


@pytest.mark.parametrize(
    ("elements", "message"),
    [
        (
            [{**SLICED_INPUT, "slicing": {"discriminator": [{"type": "type", "path": "$this"}]}}],
            "discriminator type 'type' is not supported",
        ),
        ([PANEL_SLICE[0]], "a slice of an unsliced element"),
    ],
    ids=["type-discriminator", "slice-without-slicing"],
)
def test_slicing_the_checker_cannot_evaluate_is_refused(
    synthetic: Any, elements: list[dict[str, Any]], message: str
) -> None:
    sd = _synthetic(elements, f"refused-{len(message)}")
    with pytest.raises(ValueError, match=message):
        synthetic(sd, {"resourceType": "Task"})
