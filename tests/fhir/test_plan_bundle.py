"""Plan -> transaction Bundle, offline: identity, references, content, refusals, revocation,
validation and the reading of a transaction-response (no server, no HTTP)."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from smart_app.errors import WriteBackError, WriteBlocked
from smart_app.fhir import codes, plan_bundle, profiles
from smart_app.fhir.gateway import PatientRecord
from smart_app.fhir.plan_bundle import build_transaction, plan_key, validate_bundle
from smart_app.fhir.read import facts_from_bundle, parse_bundle_json
from smart_app.fhir.written import Confirmation, OrderMode
from smart_app.rules.model import PatientFacts, Plan, Severity, Status
from smart_app.rules.plan import build_plan

TESTS = Path(__file__).resolve().parents[1]
BUNDLES = TESTS / "fixtures" / "bundles"
ELIGIBLE = TESTS.parent / "examples" / "infant-eligible.json"

ON = dt.date(2026, 11, 20)
INFUSION = dt.date(2026, 11, 24)
RECORDED = dt.datetime(2026, 11, 20, 10, 30, tzinfo=dt.UTC)
USER = "Practitioner/dr-lee"
SMA_CONDITION = "Condition/sma-dx"
URN = "urn:uuid:"
RETIRED_CODES = frozenset({"revoked", "cancelled", "entered-in-error", "stopped"})
BLOCKED = {
    "age-not-under-2": Status.NOT_ELIGIBLE,
    "weight-outside-label-range": Status.NOT_ELIGIBLE,
    "prior-onasemnogene": Status.NOT_ELIGIBLE,
    "anti-aav9-titer-elevated": Status.DEFERRED,
    "active-infection": Status.DEFERRED,
    "preterm-before-term-age": Status.DEFERRED,
    "weight-missing": Status.INCOMPLETE,
    "weight-stale": Status.INCOMPLETE,
    "baseline-lab-missing": Status.INCOMPLETE,
    "anti-aav9-titer-missing": Status.INCOMPLETE,
    "birth-date-missing": Status.INCOMPLETE,
}
"""Fixtures (named by their finding code) whose plan may not be written, and its status."""


# Inputs ----------------------------------------------------------------------------------------


@cache
def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def load(name: str | None = None) -> dict[str, Any]:
    """A fresh copy of a fixture bundle, or of the eligible example when name is None."""
    return json.loads(_text(ELIGIBLE if name is None else BUNDLES / f"{name}.json"))


def inputs(
    bundle: dict[str, Any],
    *,
    on: dt.date = ON,
    infusion: dt.date = INFUSION,
    extra: list[dict[str, Any]] | None = None,
) -> tuple[Plan, PatientFacts, PatientRecord]:
    """Plan, facts and record of a bundle, with `extra` resources in the record as if read."""
    facts = facts_from_bundle(bundle)
    resources = [e["resource"] for e in bundle["entry"]] + list(extra or [])
    record = PatientRecord(patient_id=facts.patient_id, resources=resources)
    return build_plan(facts, on=on, infusion_date=infusion), facts, record


def confirm(
    *acknowledged: str,
    recorded: dt.datetime = RECORDED,
    fhir_user: str | None = USER,
    order_mode: OrderMode = OrderMode.PROPOSAL,
) -> Confirmation:
    return Confirmation(
        recorded=recorded,
        acknowledged=frozenset(acknowledged),
        fhir_user=fhir_user,
        order_mode=order_mode,
    )


def transaction(
    name: str | None = None,
    *,
    confirmation: Confirmation | None = None,
    extra: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The transaction of a fixture (default: the eligible example) on the default dates."""
    plan, facts, record = inputs(load(name), extra=extra)
    return build_transaction(plan, facts, record, confirmation or confirm())


@cache
def eligible() -> tuple[Plan, PatientFacts, PatientRecord]:
    return inputs(load())


@cache
def eligible_bundle() -> str:
    """The eligible example's transaction, as JSON text (copy it with json.loads)."""
    plan, facts, record = eligible()
    return json.dumps(build_transaction(plan, facts, record, confirm()))


def base() -> dict[str, Any]:
    return json.loads(eligible_bundle())


def resources_of(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def entries_of(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def entry_by_item(bundle: dict[str, Any], item: str) -> dict[str, Any]:
    """The entry whose app identifier (or tag) ends with /<item>."""
    found = [e for e in bundle["entry"] if any(v.endswith(f"/{item}") for v in app_values(e))]
    assert len(found) == 1, [app_values(e) for e in found]
    return found[0]


def app_values(entry: dict[str, Any]) -> list[str]:
    """App identifier values and app meta.tag codes of an entry's resource."""
    resource = entry["resource"]
    values = [
        i["value"]
        for i in resource.get("identifier") or []
        if i.get("system") == codes.APP_IDENTIFIER
    ]
    values += [
        t["code"]
        for t in (resource.get("meta") or {}).get("tag") or []
        if t.get("system") == codes.APP_IDENTIFIER
    ]
    return values


def strings(node: Any) -> Iterator[tuple[str, str]]:
    """(key, value) of every string anywhere below a JSON node."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str):
                yield key, value
            else:
                yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            if isinstance(value, str):
                yield "", value
            else:
                yield from strings(value)


def refs(items: list[dict[str, Any]] | None) -> list[str]:
    return [r["reference"] for r in items or []]


def set_weight(bundle: dict[str, Any], kg: float) -> dict[str, Any]:
    """A copy of the bundle with the weight Observation's value changed."""
    out = copy.deepcopy(bundle)
    weight = next(e["resource"] for e in out["entry"] if e["resource"].get("id") == "weight")
    assert weight["valueQuantity"]["unit"] == "kg"
    weight["valueQuantity"]["value"] = kg
    return out


def key_of(bundle: dict[str, Any], *, on: dt.date = ON, infusion: dt.date = INFUSION) -> str:
    plan, _, _ = inputs(bundle, on=on, infusion=infusion)
    return plan_key(plan)


# 1. Determinism --------------------------------------------------------------------------------


def test_building_twice_gives_identical_bundles() -> None:
    """The same inputs give byte-identical transactions (a retry is the same request)."""
    plan, facts, record = eligible()
    first = build_transaction(plan, facts, record, confirm())
    second = build_transaction(plan, facts, record, confirm())
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    assert first["resourceType"] == "Bundle"
    assert first["type"] == "transaction"


def test_full_urls_are_unique_urn_uuids() -> None:
    """Every created entry has its own urn:uuid fullUrl."""
    bundle = base()
    urls = [e["fullUrl"] for e in bundle["entry"]]
    assert all(u.startswith(URN) and len(u) == len(URN) + 36 for u in urls)
    assert len(set(urls)) == len(urls)


# 2. The plan key -------------------------------------------------------------------------------


def test_plan_key_changes_with_the_infusion_date() -> None:
    """Another infusion date is another plan."""
    bundle = load()
    assert key_of(bundle) != key_of(bundle, infusion=INFUSION + dt.timedelta(days=1))


def test_plan_key_changes_with_the_weight() -> None:
    """Another dosing weight (6.12 -> 7.3 kg) is another plan."""
    bundle = load()
    heavier = set_weight(bundle, 7.3)
    plan, _, _ = inputs(heavier)
    assert str(plan.dose.weight_kg) == "7.3"
    assert key_of(bundle) != key_of(heavier)


def test_plan_key_ignores_the_evaluation_date_and_the_recorded_time() -> None:
    """Re-evaluating a day later, or confirming at another time, keeps the plan's identity."""
    bundle = load()
    later = ON + dt.timedelta(days=1)
    assert key_of(bundle) == key_of(bundle, on=later)
    plan, facts, record = inputs(bundle, on=later)
    other_time = confirm(recorded=RECORDED + dt.timedelta(hours=5))
    again = build_transaction(plan, facts, record, other_time)
    first = base()
    assert [e["fullUrl"] for e in again["entry"]] == [e["fullUrl"] for e in first["entry"]]
    assert [app_values(e) for e in again["entry"]] == [app_values(e) for e in first["entry"]]


# 3. Conditional creates ------------------------------------------------------------------------


def test_every_post_is_conditional_on_its_own_identifier() -> None:
    """ifNoneExist searches the entry's own identifier (or its tag), under the plan key."""
    plan, _, _ = eligible()
    key = plan_key(plan)
    bundle = base()
    seen: list[str] = []
    for entry in bundle["entry"]:
        request = entry["request"]
        resource = entry["resource"]
        assert request["method"] == "POST"
        assert request["url"] == resource["resourceType"]
        if resource["resourceType"] in ("Provenance", "DetectedIssue"):
            tags = [t for t in resource["meta"]["tag"] if t["system"] == codes.APP_IDENTIFIER]
            assert len(tags) == 1
            value = tags[0]["code"]
            assert request["ifNoneExist"] == f"_tag={codes.APP_IDENTIFIER}|{value}"
        else:
            (ident,) = resource["identifier"]
            assert ident["system"] == codes.APP_IDENTIFIER
            value = ident["value"]
            assert request["ifNoneExist"] == f"identifier={codes.APP_IDENTIFIER}|{value}"
        assert value.startswith(f"{key}/")
        seen.append(value)
    assert len(set(seen)) == len(seen) == len(bundle["entry"])


def test_detected_issues_are_searched_by_tag() -> None:
    """An acknowledged finding's DetectedIssue carries identifier and tag; ifNoneExist uses _tag."""
    bundle = transaction(confirmation=confirm("smn2-copy-number"))
    (entry,) = entries_of(bundle, "DetectedIssue")
    (ident,) = entry["resource"]["identifier"]
    assert ident["value"].endswith("/detectedissue/smn2-copy-number")
    assert entry["resource"]["meta"]["tag"] == [
        {"system": codes.APP_IDENTIFIER, "code": ident["value"]}
    ]
    assert entry["request"]["ifNoneExist"] == f"_tag={codes.APP_IDENTIFIER}|{ident['value']}"


# 4. References ---------------------------------------------------------------------------------


def test_every_urn_reference_resolves_to_an_entry() -> None:
    """No urn:uuid inside a resource points outside the bundle."""
    bundle = transaction(confirmation=confirm("smn2-copy-number", "caregiver-counseling"))
    full_urls = {e["fullUrl"] for e in bundle["entry"]}
    found = [
        value
        for entry in bundle["entry"]
        for _, value in strings(entry["resource"])
        if value.startswith("urn:")
    ]
    assert len(found) > len(bundle["entry"])
    assert set(found) <= full_urls


def test_tasks_are_based_on_the_care_plan() -> None:
    """Every Task's basedOn is exactly the CarePlan's fullUrl."""
    bundle = base()
    (care_plan,) = entries_of(bundle, "CarePlan")
    tasks = resources_of(bundle, "Task")
    assert tasks
    for task in tasks:
        assert refs(task["basedOn"]) == [care_plan["fullUrl"]]


def test_care_plan_activities_are_both_orders_and_every_task() -> None:
    """CarePlan.activity references the two MedicationRequests and each Task, once."""
    bundle = base()
    (care_plan,) = resources_of(bundle, "CarePlan")
    activity = [a["reference"]["reference"] for a in care_plan["activity"]]
    orders = [e["fullUrl"] for e in entries_of(bundle, "MedicationRequest")]
    tasks = [e["fullUrl"] for e in entries_of(bundle, "Task")]
    assert len(orders) == 2
    assert sorted(activity) == sorted(orders + tasks)


def test_provenance_targets_every_other_entry_once() -> None:
    """Provenance.target lists each other entry's fullUrl exactly once, and not itself."""
    bundle = transaction(confirmation=confirm("smn2-copy-number"))
    (provenance,) = entries_of(bundle, "Provenance")
    assert bundle["entry"][-1] is provenance
    targets = refs(provenance["resource"]["target"])
    others = [e["fullUrl"] for e in bundle["entry"] if e is not provenance]
    assert sorted(targets) == sorted(others)
    assert len(set(targets)) == len(targets)
    assert provenance["fullUrl"] not in targets


# 5. Content ------------------------------------------------------------------------------------


def test_kit_order_content() -> None:
    """NDC, dose volume, pump rate, vials, route, no-push note, date and reason of the kit order."""
    plan, _, _ = eligible()
    kit = plan.dose.kit
    order = entry_by_item(base(), "medicationrequest/kit")["resource"]
    assert order["medicationCodeableConcept"]["coding"][0]["system"] == codes.NDC
    assert order["medicationCodeableConcept"]["coding"][0]["code"] == kit.ndc
    (dosage,) = order["dosageInstruction"]
    (dose_rate,) = dosage["doseAndRate"]
    assert dose_rate["doseQuantity"] == {
        "value": float(kit.dose_volume_ml),
        "unit": "mL",
        "system": codes.UCUM,
        "code": "mL",
    }
    rate = dose_rate["rateQuantity"]
    assert (rate["value"], rate["system"], rate["code"]) == (
        float(plan.dose.pump_rate_ml_per_h),
        codes.UCUM,
        "mL/h",
    )
    assert order["dispenseRequest"]["quantity"]["value"] == kit.total_vials
    assert order["dispenseRequest"]["quantity"]["code"] == "{vial}"
    route = dosage["route"]["coding"]
    assert {"system": codes.SNOMED, "code": "47625008"}.items() <= route[0].items()
    assert any("push or bolus" in n["text"] for n in order["note"])
    assert dosage["timing"]["event"] == [plan.infusion_date.isoformat()]
    assert refs(order["reasonReference"]) == [SMA_CONDITION]
    assert order["subject"] == {"reference": f"Patient/{plan.patient_id}"}


def test_steroid_order_content() -> None:
    """Course bounds, mg and mL per day, oral route of the prednisolone order."""
    plan, _, _ = eligible()
    course = plan.steroids
    order = entry_by_item(base(), "medicationrequest/prednisolone")["resource"]
    (dosage,) = order["dosageInstruction"]
    assert dosage["timing"]["repeat"]["boundsPeriod"] == {
        "start": course.start_date.isoformat(),
        "end": course.full_dose_through.isoformat(),
    }
    by_unit = {d["doseQuantity"]["code"]: d["doseQuantity"] for d in dosage["doseAndRate"]}
    assert set(by_unit) == {"mg", "mL"}
    assert by_unit["mg"]["value"] == float(course.dose_mg_per_day)
    assert by_unit["mL"]["value"] == float(course.volume_ml_per_day)
    assert all(q["system"] == codes.UCUM for q in by_unit.values())
    assert dosage["route"]["coding"][0]["code"] == "26643006"
    assert refs(order["reasonReference"]) == [SMA_CONDITION]


def test_orders_default_to_draft_proposals() -> None:
    """Without an order mode both MedicationRequests are draft proposals."""
    orders = resources_of(base(), "MedicationRequest")
    assert len(orders) == 2
    assert {(o["status"], o["intent"]) for o in orders} == {("draft", "proposal")}


def test_order_mode_writes_active_orders() -> None:
    """OrderMode.ORDER writes active orders."""
    bundle = transaction(confirmation=confirm(order_mode=OrderMode.ORDER))
    orders = resources_of(bundle, "MedicationRequest")
    assert len(orders) == 2
    assert {(o["status"], o["intent"]) for o in orders} == {("active", "order")}


def test_one_task_per_task_kind_schedule_item() -> None:
    """Each schedule item of a Task kind is one requested Task with its window and kind code."""
    plan, _, _ = eligible()
    items = [i for i in plan.schedule if i.kind in plan_bundle.TASK_KINDS]
    assert len(items) < len(plan.schedule)
    tasks = resources_of(base(), "Task")
    assert len(tasks) == len(items)
    for item, task in zip(items, tasks, strict=True):
        assert task["status"] == "requested"
        assert task["code"]["coding"] == [{"system": codes.APP_CODES, "code": item.kind.value}]
        assert task["restriction"]["period"] == {
            "start": item.window_start.isoformat(),
            "end": item.window_end.isoformat(),
        }
        assert task["identifier"][0]["value"].endswith(f"/task/{item.kind.value}/day{item.day}")
        inputs_ = task.get("input") or []
        assert len(inputs_) == len(item.tests)
        for test, given in zip(item.tests, inputs_, strict=True):
            (coding,) = given["valueCodeableConcept"]["coding"]
            assert coding["system"] == codes.LOINC
            assert (coding["system"], coding["code"]) in codes.LABS[test]
            assert given["valueCodeableConcept"]["text"] == test.value
        assert task["requester"] == {"reference": USER}


def test_lab_tasks_carry_tests() -> None:
    """Lab-draw Tasks exist and each has at least one LOINC-coded input."""
    tasks = [
        t for t in resources_of(base(), "Task") if t["code"]["coding"][0]["code"] == "lab-draw"
    ]
    assert tasks
    assert all(t["input"] for t in tasks)


def test_detected_issues_only_for_acknowledged_codes() -> None:
    """Without acknowledgements no DetectedIssue; with one, exactly that one."""
    assert resources_of(base(), "DetectedIssue") == []
    bundle = transaction(confirmation=confirm("caregiver-counseling"))
    (issue,) = resources_of(bundle, "DetectedIssue")
    assert issue["code"]["coding"] == [{"system": codes.APP_CODES, "code": "caregiver-counseling"}]


def test_detected_issue_severity_follows_the_finding() -> None:
    """A needs-review finding is a moderate issue, an info finding a low one."""
    bundle = transaction("advanced-sma", confirmation=confirm("advanced-sma", "smn2-copy-number"))
    severity = {
        i["code"]["coding"][0]["code"]: i["severity"] for i in resources_of(bundle, "DetectedIssue")
    }
    assert severity == {"advanced-sma": "moderate", "smn2-copy-number": "low"}
    issue = entry_by_item(bundle, "detectedissue/advanced-sma")["resource"]
    assert refs(issue["implicated"]) == ["Procedure/tracheostomy"]
    assert issue["mitigation"][0]["author"] == {"reference": USER}


def test_no_user_means_no_requester_or_author() -> None:
    """Without fhirUser nothing names a person and Provenance has only the app as agent."""
    bundle = transaction(confirmation=confirm("smn2-copy-number", fhir_user=None))
    text = json.dumps(bundle)
    assert "Practitioner" not in text
    for entry in bundle["entry"]:
        resource = entry["resource"]
        assert "requester" not in resource
        assert "author" not in resource
        for mitigation in resource.get("mitigation") or []:
            assert "author" not in mitigation
    (provenance,) = resources_of(bundle, "Provenance")
    (agent,) = provenance["agent"]
    assert agent["type"]["coding"][0]["code"] == "assembler"
    assert agent["who"]["identifier"]["system"] == codes.APP_IDENTIFIER


def test_absolute_fhir_user_becomes_a_relative_reference() -> None:
    """fhirUser as an absolute URL is written as Practitioner/7 wherever a person is named."""
    user = "https://ehr.example/fhir/Practitioner/7"
    bundle = transaction(confirmation=confirm(fhir_user=user))
    expected = {"reference": "Practitioner/7"}
    for order in resources_of(bundle, "MedicationRequest"):
        assert order["requester"] == expected
    for task in resources_of(bundle, "Task"):
        assert task["requester"] == expected
    (care_plan,) = resources_of(bundle, "CarePlan")
    assert care_plan["author"] == expected
    (provenance,) = resources_of(bundle, "Provenance")
    assert provenance["agent"][0]["who"] == expected
    assert "ehr.example" not in json.dumps(bundle)


def test_every_entry_declares_an_app_profile_and_conforms() -> None:
    """Each created resource declares one of the app's profiles and passes the checker."""
    for entry in base()["entry"]:
        declared = entry["resource"]["meta"]["profile"]
        assert len(declared) == 1
        assert declared[0].startswith(profiles.PROFILE_BASE)
        assert profiles.check(entry["resource"]) == []


# 6. Refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BLOCKED))
def test_blocked_plans_are_refused_naming_status_and_finding(name: str) -> None:
    """A not-eligible, deferred or incomplete plan is refused with its status and finding code."""
    plan, facts, record = inputs(load(name))
    assert plan.eligibility.status is BLOCKED[name]
    with pytest.raises(WriteBlocked) as caught:
        build_transaction(plan, facts, record, confirm())
    message = str(caught.value)
    assert f"the plan is {BLOCKED[name].value}" in message
    assert f"{name}:" in message


def test_blocked_plan_message_names_only_findings_of_its_status() -> None:
    """Info findings do not appear among the reasons of a refusal."""
    plan, facts, record = inputs(load("weight-missing"))
    with pytest.raises(WriteBlocked) as caught:
        build_transaction(plan, facts, record, confirm())
    assert "smn2-copy-number" not in str(caught.value)


def test_needs_review_requires_acknowledgement() -> None:
    """advanced-sma is refused until acknowledged, then builds."""
    plan, facts, record = inputs(load("advanced-sma"))
    assert plan.eligibility.status is Status.NEEDS_REVIEW
    with pytest.raises(WriteBlocked, match="acknowledge") as caught:
        build_transaction(plan, facts, record, confirm())
    assert "advanced-sma" in str(caught.value)
    bundle = build_transaction(plan, facts, record, confirm("advanced-sma"))
    assert len(resources_of(bundle, "DetectedIssue")) == 1


def test_acknowledging_a_code_not_in_the_plan_is_refused() -> None:
    """An acknowledgement of a finding the plan does not raise is refused, naming it."""
    plan, facts, record = eligible()
    with pytest.raises(WriteBlocked, match="not in the plan") as caught:
        build_transaction(plan, facts, record, confirm("advanced-sma"))
    assert "advanced-sma" in str(caught.value)


def test_naive_recorded_time_is_refused() -> None:
    """A recorded datetime without a time zone is refused."""
    plan, facts, record = eligible()
    with pytest.raises(WriteBlocked, match="time zone"):
        build_transaction(plan, facts, record, confirm(recorded=dt.datetime(2026, 11, 20, 10)))


def test_recorded_time_keeps_its_offset() -> None:
    """The recorded time is written to the second with its UTC offset."""
    tz = dt.timezone(dt.timedelta(hours=-5))
    bundle = transaction(confirmation=confirm(recorded=dt.datetime(2026, 11, 20, 9, 5, 7, 99, tz)))
    (provenance,) = resources_of(bundle, "Provenance")
    assert provenance["recorded"] == "2026-11-20T09:05:07-05:00"
    for order in resources_of(bundle, "MedicationRequest"):
        assert order["authoredOn"] == "2026-11-20T09:05:07-05:00"


# 7. Revocation and reactivation ----------------------------------------------------------------


def old(kind: str, rid: str, value: str, status: str, **fields: Any) -> dict[str, Any]:
    """A resource of an earlier write, as read back from the server (version 3)."""
    return {
        "resourceType": kind,
        "id": rid,
        "meta": {"versionId": "3", "lastUpdated": "2026-11-01T10:00:00Z"},
        "identifier": [{"system": codes.APP_IDENTIFIER, "value": value}],
        "status": status,
        **fields,
    }


def older_plan(patient: str) -> list[dict[str, Any]]:
    subject = {"reference": f"Patient/{patient}"}
    return [
        old("CarePlan", "cp-old", "oldkey/careplan", "active", intent="plan", subject=subject),
        old(
            "Task",
            "t-open",
            "oldkey/task/lab-draw/day7",
            "requested",
            intent="plan",
            **{"for": subject},
        ),
        old(
            "Task",
            "t-done",
            "oldkey/task/lab-draw/day14",
            "completed",
            intent="plan",
            **{"for": subject},
        ),
        old(
            "MedicationRequest",
            "mr-draft",
            "oldkey/medicationrequest/kit",
            "draft",
            intent="proposal",
            subject=subject,
            medicationCodeableConcept={"text": "ZOLGENSMA kit"},
        ),
        old(
            "MedicationRequest",
            "mr-active",
            "oldkey/medicationrequest/prednisolone",
            "active",
            intent="order",
            subject=subject,
            medicationCodeableConcept={"text": "prednisolone"},
        ),
    ]


def puts(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["request"]["url"]: e for e in bundle["entry"] if e["request"]["method"] == "PUT"}


def test_an_older_plan_is_retired() -> None:
    """Open resources of another key are revoked or cancelled with ifMatch on the version read."""
    plan, _, _ = eligible()
    bundle = transaction(extra=older_plan(plan.patient_id))
    put = puts(bundle)
    assert set(put) == {"CarePlan/cp-old", "Task/t-open", "MedicationRequest/mr-draft"}
    for url, entry in put.items():
        assert entry["request"]["ifMatch"] == 'W/"3"'
        assert entry["resource"]["id"] == url.split("/")[1]
        assert "versionId" not in (entry["resource"].get("meta") or {})
        assert app_values(entry)[0].startswith("oldkey/")
    assert put["CarePlan/cp-old"]["resource"]["status"] == "revoked"
    task = put["Task/t-open"]["resource"]
    assert task["status"] == "cancelled"
    assert task["statusReason"]["text"]
    assert put["MedicationRequest/mr-draft"]["resource"]["status"] == "cancelled"
    text = json.dumps(bundle)
    assert "t-done" not in text
    assert "mr-active" not in text


def test_retirements_are_provenance_targets() -> None:
    """The Provenance covers the retired resources too."""
    plan, _, _ = eligible()
    bundle = transaction(extra=older_plan(plan.patient_id))
    (provenance,) = resources_of(bundle, "Provenance")
    targets = refs(provenance["target"])
    for url in puts(bundle):
        assert targets.count(url) == 1
    assert len(targets) == len(bundle["entry"]) - 1


def test_the_provenance_key_is_the_plans_own_entries() -> None:
    """The Provenance key hashes the plan's own entries, not the updates retiring an older plan:
    re-sending a plan whose old one is already retired matches the Provenance written with it
    (nothing new), while its targets still name every resource the transaction touched."""
    plan, _, _ = eligible()
    (plain,) = entries_of(base(), "Provenance")
    retiring_bundle = transaction(extra=older_plan(plan.patient_id))
    (retiring,) = entries_of(retiring_bundle, "Provenance")
    assert app_values(plain)[0].startswith(f"{plan_key(plan)}/provenance/")
    assert app_values(plain) == app_values(retiring)
    updates = [
        e["request"]["url"] for e in retiring_bundle["entry"] if e["request"]["method"] == "PUT"
    ]
    assert updates
    targets = {t["reference"] for t in retiring["resource"]["target"]}
    assert set(updates) <= targets
    assert not set(updates) & {t["reference"] for t in plain["resource"]["target"]}


def test_resources_of_the_new_key_already_present_stay_conditional_creates() -> None:
    """An active CarePlan and a requested Task of this very plan are not PUT again."""
    plan, _, _ = eligible()
    key = plan_key(plan)
    subject = {"reference": f"Patient/{plan.patient_id}"}
    present = [
        old("CarePlan", "cp-same", f"{key}/careplan", "active", intent="plan", subject=subject),
        old(
            "Task",
            "t-same",
            f"{key}/task/lab-draw/day7",
            "requested",
            intent="plan",
            **{"for": subject},
        ),
    ]
    bundle = transaction(extra=present)
    assert puts(bundle) == {}
    assert json.dumps(bundle, sort_keys=True) == json.dumps(base(), sort_keys=True)


def test_a_retired_resource_of_the_new_key_is_reactivated() -> None:
    """A revoked CarePlan of this plan is PUT to its id with the new content, active again."""
    plan, _, _ = eligible()
    key = plan_key(plan)
    subject = {"reference": f"Patient/{plan.patient_id}"}
    revoked = old("CarePlan", "cp-back", f"{key}/careplan", "revoked", intent="plan")
    revoked["subject"] = subject
    bundle = transaction(extra=[revoked])
    (entry,) = puts(bundle).values()
    assert entry["request"]["url"] == "CarePlan/cp-back"
    assert entry["request"]["ifMatch"] == 'W/"3"'
    assert "ifNoneExist" not in entry["request"]
    resource = entry["resource"]
    assert resource["id"] == "cp-back"
    assert resource["status"] == "active"
    assert resource["title"].endswith(INFUSION.isoformat())
    assert len(resource["activity"]) == len(base()["entry"]) - 2
    fresh = entry_by_item(base(), "careplan")
    assert entry["fullUrl"] == fresh["fullUrl"]
    for task in resources_of(bundle, "Task"):
        assert refs(task["basedOn"]) == [entry["fullUrl"]]


# 8. Validation and outcomes --------------------------------------------------------------------


def bare_task(**fields: Any) -> dict[str, Any]:
    return {
        "fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000001",
        "resource": {"resourceType": "Task", "status": "requested", "intent": "plan", **fields},
        "request": {"method": "POST", "url": "Task"},
    }


@pytest.mark.parametrize("fields", [{"status": 5}, {"bogusElement": "x"}])
def test_validate_bundle_names_the_invalid_entry(fields: dict[str, Any]) -> None:
    """A resource the R4B model rejects fails validation, naming entry 0 (Task)."""
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [bare_task(**fields)]}
    with pytest.raises(WriteBackError, match="not valid FHIR R4") as caught:
        validate_bundle(bundle)
    assert caught.value.entry == "entry 0 (Task)"
    assert "entry 0 (Task)" in str(caught.value)


def test_validate_bundle_names_a_later_entry() -> None:
    """The index in the message is the failing entry's own."""
    good = base()["entry"][0]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [good, bare_task(status=5)],
    }
    with pytest.raises(WriteBackError) as caught:
        validate_bundle(bundle)
    assert caught.value.entry == "entry 1 (Task)"


def test_validate_bundle_checks_app_profiles_on_creates() -> None:
    """A POST without any of the app's profiles is refused."""
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [bare_task()]}
    with pytest.raises(WriteBackError, match="profile") as caught:
        validate_bundle(bundle)
    assert caught.value.entry == "entry 0 (Task)"


def test_validate_bundle_returns_the_valid_bundle_unchanged() -> None:
    """Validating a built bundle again is a no-op."""
    bundle = base()
    assert validate_bundle(bundle) == bundle


# 9. Bundle-local evidence ----------------------------------------------------------------------


def test_bundle_local_sma_condition_is_not_a_reason_reference() -> None:
    """An SMA Condition known only by urn:uuid is not referenced; a reasonCode stands in."""
    plan, facts, record = eligible()
    local = dataclasses.replace(facts.sma_conditions[0], reference=f"{URN}1f0e-local")
    facts = dataclasses.replace(facts, sma_conditions=(local,))
    bundle = build_transaction(plan, facts, record, confirm())
    for order in resources_of(bundle, "MedicationRequest"):
        assert "reasonReference" not in order
        assert order["reasonCode"][0]["text"]
    (care_plan,) = resources_of(bundle, "CarePlan")
    assert "addresses" not in care_plan
    assert "1f0e-local" not in json.dumps(bundle)


def test_server_sma_condition_is_addressed_by_the_care_plan() -> None:
    """The SMA Condition read from the server is what the CarePlan addresses."""
    (care_plan,) = resources_of(base(), "CarePlan")
    assert refs(care_plan["addresses"]) == [SMA_CONDITION]


def test_bundle_local_evidence_is_not_implicated() -> None:
    """A finding whose evidence is a bundle-local resource gives a DetectedIssue without it."""
    bundle = load("advanced-sma")
    procedure = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Procedure")
    procedure["fullUrl"] = f"{URN}7d1c2a9e-0000-4000-8000-00000000beef"
    del procedure["resource"]["id"]
    plan, facts, record = inputs(bundle)
    (finding,) = [f for f in plan.eligibility.findings if f.severity is Severity.NEEDS_REVIEW]
    assert finding.evidence[0].reference == procedure["fullUrl"]
    out = build_transaction(plan, facts, record, confirm("advanced-sma"))
    (issue,) = resources_of(out, "DetectedIssue")
    assert "implicated" not in issue
    assert procedure["fullUrl"] not in json.dumps(out)


# Known defects ---------------------------------------------------------------------------------


def test_plan_key_is_the_same_for_the_same_weight_however_written() -> None:
    """The same weight written with a trailing zero or in grams keeps the plan key."""
    bundle = load()
    trailing_zero = parse_bundle_json(
        json.dumps(bundle).replace('"value": 6.12,', '"value": 6.120,')
    )
    grams = copy.deepcopy(bundle)
    weight = next(e["resource"] for e in grams["entry"] if e["resource"].get("id") == "weight")
    weight["valueQuantity"].update(value=6120, unit="g", code="g")
    assert key_of(trailing_zero) == key_of(bundle)
    assert key_of(grams) == key_of(bundle)


def test_sma_condition_without_id_or_full_url_is_not_referenced() -> None:
    """Evidence that names no resource (type only) is not written as a reference."""
    bundle = load()
    entry = next(e for e in bundle["entry"] if e["resource"].get("id") == "sma-dx")
    del entry["fullUrl"]
    del entry["resource"]["id"]
    plan, facts, record = inputs(bundle)
    assert facts.sma_conditions[0].reference == "Condition"
    out = build_transaction(plan, facts, record, confirm())
    for order in resources_of(out, "MedicationRequest"):
        assert "reasonReference" not in order
    (care_plan,) = resources_of(out, "CarePlan")
    assert "addresses" not in care_plan
