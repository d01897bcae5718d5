"""Follow-up transactions, offline: completion and decision bundles conform to R4B and to the
app's profiles, the consult profile refuses what it should, bundles are deterministic, and a
decision without a weight is refused.

The charts are the sandbox's synthetic patients with their plan written by the app itself into
an in-memory store (`_Chart`) that applies transactions the way a FHIR server does: conditional
creates on identifier or tag, version-checked updates, urn:uuid references resolved. No HTTP.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any
from urllib.parse import unquote

import pytest
from fhir.resources.R4B import get_fhir_model_class

from smart_app import service
from smart_app.errors import WriteBlocked
from smart_app.fhir import codes, profiles
from smart_app.fhir.followup_write import Confirmed, completion_bundle, decision_bundle
from smart_app.fhir.gateway import PatientRecord
from smart_app.fhir.plan_bundle import validate_bundle
from smart_app.fhir.written import Confirmation, OrderMode
from smart_app.rules.liver_decision import Decision
from smart_app.rules.model import DecisionBranch, LabTest, TaskState
from smart_app.sandbox import run
from smart_app.sandbox.patients import SyntheticPatient, synthetic_patients
from tests.smartsandbox import NOW, TODAY

USER = f"Practitioner/{run.PRACTITIONER_ID}"
CONSULT = profiles.profile_url("zolgensma-consult")
SERVER_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://offline-chart.test/fhir")


# An in-memory chart ----------------------------------------------------------------------------


class _Chart:
    """One patient's resources, changed only by transactions, as a FHIR server would."""

    def __init__(self, resources: tuple[dict[str, Any], ...]) -> None:
        self.store: dict[str, dict[str, Any]] = {}
        for resource in resources:
            stored = copy.deepcopy(resource)
            stored["meta"] = {**stored.get("meta", {}), "versionId": "1"}
            self.store[f"{stored['resourceType']}/{stored['id']}"] = stored

    # the calls the service makes of a gateway ---------------------------------------------------

    def capabilities(self) -> dict[str, Any]:
        """A server that takes conditional transactions."""
        kinds = ("CarePlan", "Task", "MedicationRequest", "Provenance", "ServiceRequest")
        return {
            "resourceType": "CapabilityStatement",
            "rest": [
                {
                    "mode": "server",
                    "interaction": [{"code": "transaction"}],
                    "resource": [{"type": k, "conditionalCreate": True} for k in kinds],
                }
            ],
        }

    def read_patient(self, patient_id: str, **_: Any) -> PatientRecord:
        """Every resource, as one read would return them."""
        return PatientRecord(
            patient_id=patient_id, resources=copy.deepcopy(list(self.store.values()))
        )

    def transaction(self, bundle: Mapping[str, Any]) -> dict[str, Any]:
        """Apply a transaction all or nothing; answer like a transaction-response."""
        store = copy.deepcopy(self.store)
        resolved: dict[str, str] = {}
        answers = []
        touched = []
        for entry in bundle["entry"]:
            request = entry["request"]
            resource = copy.deepcopy(entry["resource"])
            if request["method"] == "POST":
                found = _match(store.values(), resource["resourceType"], request["ifNoneExist"])
                if found is not None:
                    resolved[entry["fullUrl"]] = found
                    answers.append({"response": {"status": "200 OK", "location": found}})
                    continue
                resource["id"] = str(uuid.uuid5(SERVER_NAMESPACE, entry["fullUrl"]))
                version = 1
                reference = f"{resource['resourceType']}/{resource['id']}"
                resolved[entry["fullUrl"]] = reference
                status = "201 Created"
            else:
                reference = request["url"]
                old = store.get(reference)
                current = (old or {}).get("meta", {}).get("versionId")
                expected = request.get("ifMatch")
                if expected and expected != f'W/"{current}"':
                    raise AssertionError(f"412 on {reference}: {expected} != {current}")
                version = int(current or 0) + 1
                status = "200 OK"
            resource["meta"] = {**resource.get("meta", {}), "versionId": str(version)}
            store[reference] = resource
            touched.append(reference)
            answers.append({"response": {"status": status, "location": reference}})
        text = json.dumps({k: store[k] for k in touched})
        for urn, reference in resolved.items():
            text = text.replace(f'"{urn}"', f'"{reference}"')
        store.update(json.loads(text))
        self.store = store
        return {"resourceType": "Bundle", "type": "transaction-response", "entry": answers}


def _match(resources: Any, kind: str, search: str) -> str | None:
    """The resource a conditional create's ifNoneExist names, if one exists."""
    name, _, value = search.partition("=")
    system, _, code = unquote(value).partition("|")
    for resource in resources:
        if resource["resourceType"] != kind:
            continue
        if name == "identifier":
            pairs = [(i.get("system"), i.get("value")) for i in resource.get("identifier", [])]
        else:
            pairs = [
                (t.get("system"), t.get("code")) for t in resource.get("meta", {}).get("tag", [])
            ]
        if (system, code) in pairs:
            return f"{kind}/{resource['id']}"
    return None


def _patient(pid: str) -> SyntheticPatient:
    return next(p for p in synthetic_patients(today=TODAY) if p.patient_id == pid)


def _chart(pid: str) -> _Chart:
    """A synthetic patient with the plan and the earlier launches replayed, as `run.load` does."""
    patient = _patient(pid)
    chart = _Chart(patient.resources)
    on = patient.infusion_date - dt.timedelta(days=1)
    evaluation = service.evaluate(chart, pid, on=on, infusion_date=patient.infusion_date)
    confirmation = Confirmation(
        recorded=dt.datetime.combine(on, dt.time(9), tzinfo=NOW.tzinfo),
        fhir_user=USER,
        order_mode=OrderMode.ORDER,
    )
    service.write(chart, evaluation, confirmation)
    run._replay_followup(chart, patient, now=NOW)  # type: ignore[arg-type]
    return chart


@cache
def _chart_json(pid: str) -> str:
    return json.dumps(_chart(pid).store)


def _fresh_chart(pid: str) -> _Chart:
    """A copy of the cached chart of a patient."""
    chart = _Chart(())
    chart.store = json.loads(_chart_json(pid))
    return chart


def _following(pid: str, *, on: dt.date = TODAY, exam_normal: bool | None = True) -> Any:
    following = service.read_followup(_fresh_chart(pid), pid, on=on, exam_normal=exam_normal)  # type: ignore[arg-type]
    assert following is not None
    return following


def _confirmed(mode: OrderMode = OrderMode.PROPOSAL) -> Confirmed:
    return Confirmed(recorded=NOW, fhir_user=USER, order_mode=mode)


def _decision_bundle(pid: str, mode: OrderMode = OrderMode.PROPOSAL) -> dict[str, Any]:
    return service.decision_transaction(_following(pid), _confirmed(mode))


def _completion_bundle(pid: str) -> dict[str, Any]:
    following = _following(pid)
    return completion_bundle(
        following.state,
        following.record,
        patient_id=pid,
        views=following.followup.tasks,
        confirmed=_confirmed(),
    )


def _resources(bundle: Mapping[str, Any]) -> Iterator[tuple[int, dict[str, Any]]]:
    for index, entry in enumerate(bundle["entry"]):
        yield index, entry["resource"]


def _assert_conforms(bundle: dict[str, Any]) -> None:
    """Every resource: the R4B model, and the app profile it declares."""
    assert validate_bundle(bundle) == bundle
    for index, resource in _resources(bundle):
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        assert profiles.check(resource) == [], (index, resource["resourceType"])


def _consult(pid: str = "zs-day-28-alt-3x") -> dict[str, Any]:
    bundle = _decision_bundle(pid)
    (found,) = [r for _, r in _resources(bundle) if r["resourceType"] == "ServiceRequest"]
    return found


# Conformance -----------------------------------------------------------------------------------


def test_completion_bundle_conforms() -> None:
    """Day 10: the resulted day-7 draw is completed; every resource conforms."""
    bundle = _completion_bundle("zs-day-10")
    kinds = [r["resourceType"] for _, r in _resources(bundle)]
    assert kinds == ["Task", "Provenance"]
    task = bundle["entry"][0]["resource"]
    assert task["status"] == "completed"
    assert task["identifier"][0]["value"].endswith("/task/lab-draw/day7")
    assert {o["valueReference"]["reference"] for o in task["output"]} >= {
        "Observation/zs-day-10-plt-d7",
        "Observation/zs-day-10-alt-d7",
    }
    _assert_conforms(bundle)


@pytest.mark.parametrize("mode", list(OrderMode))
def test_taper_decision_bundle_conforms(mode: OrderMode) -> None:
    """Day 28, labs normal, exam attested: the taper orders, Task, CarePlan and Provenance."""
    bundle = _decision_bundle("zs-day-28", mode)
    kinds = [r["resourceType"] for _, r in _resources(bundle)]
    assert kinds.count("MedicationRequest") == 2
    assert "ServiceRequest" not in kinds
    for _, resource in _resources(bundle):
        if resource["resourceType"] == "MedicationRequest":
            assert (resource["status"], resource["intent"]) == (mode.status, mode.value)
    _assert_conforms(bundle)


@pytest.mark.parametrize("mode", list(OrderMode))
def test_continue_decision_bundle_with_consult_conforms(mode: OrderMode) -> None:
    """Day 28, ALT 3 x ULN: the continuation, the consult and its Task all conform."""
    bundle = _decision_bundle("zs-day-28-alt-3x", mode)
    kinds = [r["resourceType"] for _, r in _resources(bundle)]
    assert kinds.count("MedicationRequest") == 1
    assert kinds.count("ServiceRequest") == 1
    consult = _consult()
    assert CONSULT in consult["meta"]["profile"]
    assert consult["priority"] == "urgent"
    _assert_conforms(bundle)


# The consult profile ---------------------------------------------------------------------------


def test_consult_as_composed_conforms() -> None:
    assert profiles.check(_consult()) == []


@pytest.mark.parametrize(
    ("change", "element"),
    [
        (lambda r: r.pop("reasonCode"), "ServiceRequest.reasonCode"),
        (lambda r: r.update(priority="routine"), "ServiceRequest.priority"),
        (lambda r: r.pop("priority"), "ServiceRequest.priority"),
        (lambda r: r.pop("code"), "ServiceRequest.code"),
        (
            lambda r: r.update(code={"coding": [{"system": codes.APP_CODES, "code": "other"}]}),
            "ServiceRequest.code",
        ),
        (lambda r: r.pop("basedOn"), "ServiceRequest.basedOn"),
    ],
    ids=["no-reasonCode", "routine", "no-priority", "no-code", "wrong-code", "no-basedOn"],
)
def test_consult_profile_rejects(change: Any, element: str) -> None:
    """Each broken copy gives a problem naming the element."""
    broken = _consult()
    change(broken)
    problems = profiles.check(broken)
    assert problems
    assert any(p.startswith(f"{element}:") for p in problems), problems


@pytest.mark.parametrize(
    ("pid", "build"),
    [
        ("zs-day-10", _completion_bundle),
        ("zs-day-28", _decision_bundle),
        ("zs-day-28-alt-3x", _decision_bundle),
    ],
    ids=["completion", "taper", "continue"],
)
def test_every_entry_is_conditional_or_version_checked(pid: str, build: Any) -> None:
    """Creates are conditional on the app identifier (or tag), updates carry the version read:
    a re-sent transaction can neither duplicate nor overwrite a newer change."""
    read = json.loads(_chart_json(pid))
    sent = build(pid)
    methods = []
    for entry in sent["entry"]:
        request, resource = entry["request"], entry["resource"]
        methods.append(request["method"])
        if request["method"] == "POST":
            assert entry["fullUrl"].startswith("urn:uuid:")
            param = "_tag" if resource["resourceType"] == "Provenance" else "identifier"
            assert request["ifNoneExist"].startswith(f"{param}={codes.APP_IDENTIFIER}|")
        else:
            assert request["method"] == "PUT"
            assert request["url"] == f"{resource['resourceType']}/{resource['id']}"
            assert request["ifMatch"] == f'W/"{read[request["url"]]["meta"]["versionId"]}"'
    assert "PUT" in methods
    (provenance,) = [e for e in sent["entry"] if e["resource"]["resourceType"] == "Provenance"]
    targets = [t["reference"] for t in provenance["resource"]["target"]]
    assert targets == [e.get("fullUrl") or e["request"]["url"] for e in sent["entry"][:-1]]


# Determinism and refusals ----------------------------------------------------------------------


@pytest.mark.parametrize("pid", ["zs-day-28", "zs-day-28-alt-3x"])
def test_decision_bundle_is_deterministic(pid: str) -> None:
    """The same chart, date and confirmation give byte-identical JSON."""
    first = json.dumps(_decision_bundle(pid))
    again = json.dumps(_decision_bundle(pid))
    assert first == again
    rebuilt = _chart(pid)
    following = service.read_followup(rebuilt, pid, on=TODAY, exam_normal=True)  # type: ignore[arg-type]
    assert following is not None
    assert json.dumps(service.decision_transaction(following, _confirmed())) == first


def test_decision_differs_with_the_confirmation() -> None:
    """Determinism is not constancy: another order mode changes the orders."""
    assert _decision_bundle("zs-day-28", OrderMode.ORDER) != _decision_bundle("zs-day-28")


def _without_weights(following: Any) -> Any:
    """The same chart with every body weight removed, read again."""
    chart = _fresh_chart(following.facts.patient_id)
    chart.store = {
        k: v
        for k, v in chart.store.items()
        if not (v["resourceType"] == "Observation" and "-weight" in v["id"])
    }
    found = service.read_followup(chart, following.facts.patient_id, on=TODAY, exam_normal=True)  # type: ignore[arg-type]
    assert found is not None
    return found


def test_decision_without_weight_is_refused_naming_the_weight() -> None:
    """No weight: the decision is not writable and the refusal says why."""
    following = _without_weights(_following("zs-day-28"))
    decision = following.followup.decision
    assert decision is not None
    assert decision.weight is None
    assert not decision.writable
    with pytest.raises(WriteBlocked, match=r"(?i)nothing written.*weigh"):
        service.decision_transaction(following, _confirmed())


def test_decision_with_weight_lost_is_refused_naming_the_weight() -> None:
    """A decision that says it is writable but has no weight still writes nothing."""
    following = _following("zs-day-28")
    decision: Decision = following.followup.decision
    assert decision.branch is DecisionBranch.TAPER
    bare = dataclasses.replace(decision, weight=None)
    with pytest.raises(WriteBlocked, match=r"nothing written.*weight"):
        decision_bundle(
            following.state,
            following.record,
            patient_id="zs-day-28",
            decision=bare,
            on=TODAY,
            confirmed=_confirmed(),
        )


def test_completion_without_results_is_refused() -> None:
    """No resulted Task among the views and none ticked: nothing to update."""
    following = _following("zs-day-10")
    views = [v for v in following.followup.tasks if v.state is not TaskState.RESULTED]
    with pytest.raises(WriteBlocked, match="nothing to update"):
        completion_bundle(
            following.state,
            following.record,
            patient_id="zs-day-10",
            views=views,
            confirmed=_confirmed(),
        )


def test_naive_recorded_time_is_refused() -> None:
    following = _following("zs-day-28")
    naive = Confirmed(recorded=NOW.replace(tzinfo=None), fhir_user=USER)
    with pytest.raises(WriteBlocked, match="time zone"):
        service.decision_transaction(following, naive)


# Further draws until back to baseline (2.3; 5.3) -----------------------------------------------


def _low_last_platelets(pid: str = "zs-day-100-complete") -> _Chart:
    """Day 100, every Task done; the 3-month (day-92) platelet count lowered to 100 x 10^3/uL."""
    chart = _fresh_chart(pid)
    count = chart.store[f"Observation/{pid}-plt-d92"]
    count["valueQuantity"]["value"] = 100
    return chart


def test_completion_creates_the_proposed_draw_once() -> None:
    """The proposed weekly platelet draw becomes a Task on the CarePlan, conforming; read back,
    it is an open lab draw and nothing more is proposed or written."""
    pid = "zs-day-100-complete"
    chart = _low_last_platelets(pid)
    following = service.read_followup(chart, pid, on=TODAY)  # type: ignore[arg-type]
    assert following is not None
    (item,) = following.followup.proposed
    assert (item.day, item.date, item.tests) == (100, TODAY, (LabTest.PLATELETS,))
    bundle = completion_bundle(
        following.state,
        following.record,
        patient_id=pid,
        views=following.followup.tasks,
        proposed=following.followup.proposed,
        confirmed=_confirmed(),
    )
    _assert_conforms(bundle)
    entries = bundle["entry"]
    assert [(e["resource"]["resourceType"], e["request"]["method"]) for e in entries] == [
        ("Task", "POST"),
        ("CarePlan", "PUT"),
        ("Provenance", "POST"),
    ]
    task = entries[0]["resource"]
    assert task["identifier"][0]["value"].endswith("/task/lab-draw/day100")
    assert "platelets 100 x 10^3/uL on" in task["description"]
    assert "until platelet counts return to baseline" in task["description"]
    care_plan = entries[1]["resource"]
    assert {"reference": {"reference": entries[0]["fullUrl"]}} in care_plan["activity"]
    assert "until results are back to baseline: day 100" in care_plan["note"][-1]["text"]
    chart.transaction(bundle)
    again = service.read_followup(chart, pid, on=TODAY)  # type: ignore[arg-type]
    assert again is not None
    assert again.followup.proposed == ()
    (view,) = [v for v in again.followup.tasks if v.task.day == 100]
    assert view.task.is_open
    assert view.task.tests == (LabTest.PLATELETS,)
    with pytest.raises(WriteBlocked, match="nothing to update"):
        service.complete_tasks(chart, again, _confirmed())  # type: ignore[arg-type]
