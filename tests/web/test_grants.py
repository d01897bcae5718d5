"""The granted-scope parser: SMART v1 and v2 syntax, what each write needs, the plain message."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from smart_app.fhir import followup_write
from smart_app.web import smart
from smart_app.web.grants import (
    WRITE_TYPES,
    Action,
    Grants,
    Rule,
    Write,
    parse_scope,
    refusal,
    writable_types,
)

C, R, U, D, S = Action.CREATE, Action.READ, Action.UPDATE, Action.DELETE, Action.SEARCH
ALL = frozenset(Action)
PLAN_TYPES = ("MedicationRequest", "CarePlan", "Task", "DetectedIssue", "Provenance")
FOLLOWUP_TYPES = ("Task", "CarePlan", "MedicationRequest", "Provenance", "ServiceRequest")
EVERY_TYPE = sorted({*PLAN_TYPES, *FOLLOWUP_TYPES, "Observation", "Patient"})


# --- one scope ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "rule"),
    [
        ("patient/Task.cu", Rule("Task", frozenset({C, U}))),
        ("patient/Task.c", Rule("Task", frozenset({C}))),
        ("patient/Task.rs", Rule("Task", frozenset({R, S}))),
        ("patient/*.cruds", Rule("*", ALL)),
        ("patient/Observation.crus", Rule("Observation", frozenset({C, R, U, S}))),
        ("user/CarePlan.cud", Rule("CarePlan", frozenset({C, U, D}))),
        ("system/Provenance.u", Rule("Provenance", frozenset({U}))),
        ("patient/Task.read", Rule("Task", frozenset({R, S}))),
        ("patient/Task.write", Rule("Task", frozenset({C, U, D}))),
        ("patient/*.*", Rule("*", ALL)),
        ("user/*.read", Rule("*", frozenset({R, S}))),
        ("user/MedicationRequest.write", Rule("MedicationRequest", frozenset({C, U, D}))),
    ],
)
def test_a_resource_scope_is_parsed(scope: str, rule: Rule) -> None:
    assert parse_scope(scope) == rule


@pytest.mark.parametrize(
    "scope",
    [
        "launch",
        "launch/patient",
        "openid",
        "fhirUser",
        "offline_access",
        "patient/Task.uc",  # v2 letters out of order
        "patient/Task.cc",
        "patient/Task.x",
        "patient/Task.",
        "patient/Task",
        "patient/task.rs",  # not a resource type name
        "Task.rs",
        "practitioner/Task.rs",
        "patient/Task.writes",
        "patient/Task.**",
        "patient/Task.rs?category=laboratory",  # restricted: not counted
        "patient/Task.cu?code=http://loinc.org|1",
        "patient/*.cruds?x=1",
        "",
    ],
)
def test_anything_else_is_not_a_rule(scope: str) -> None:
    assert parse_scope(scope) is None


# --- a grant --------------------------------------------------------------------------------


def test_rules_for_one_type_and_for_every_type_add_up() -> None:
    grants = Grants.parse("patient/*.rs patient/Task.cu patient/Task.d user/CarePlan.c")
    assert grants.allowed("Task") == ALL
    assert grants.allowed("CarePlan") == frozenset({C, R, S})
    assert grants.allowed("Observation") == frozenset({R, S})
    assert grants.allows("Task", C, U, D)
    assert not grants.allows("CarePlan", C, U)
    assert grants.allows("Observation")  # nothing asked, nothing missing


def test_v1_and_v2_say_the_same() -> None:
    v1 = Grants.parse("patient/Task.read patient/Task.write")
    v2 = Grants.parse("patient/Task.cruds")
    assert v1.allowed("Task") == v2.allowed("Task") == ALL
    assert Grants.parse("patient/*.*").allowed("Anything") == ALL


def test_unknown_and_restricted_scopes_grant_nothing() -> None:
    grants = Grants.parse("launch openid fhirUser patient/Task.cu?code=x garbage user/task.rs")
    assert grants.rules == ()
    assert grants.allowed("Task") == frozenset()
    assert grants.read_only


@pytest.mark.parametrize(
    ("scope", "read_only"),
    [
        ("", True),
        ("launch openid", True),
        ("patient/*.rs", True),
        ("patient/*.read user/Observation.rs", True),
        ("patient/*.rs patient/Task.c", False),
        ("patient/*.rs patient/Task.u", False),
        ("patient/*.rs patient/Task.d", False),
        ("patient/Task.write", False),
        ("patient/*.*", False),
    ],
)
def test_read_only_means_no_create_update_or_delete_anywhere(scope: str, read_only: bool) -> None:
    assert Grants.parse(scope).read_only is read_only


def test_an_open_server_is_unlimited_and_never_read_only() -> None:
    grants = Grants.everything()
    assert grants.allowed("Task") == ALL
    assert not grants.read_only
    for write in Write:
        assert refusal(grants, write) is None


def test_the_scope_is_kept_normalised() -> None:
    assert Grants.parse("  launch   patient/*.rs \n").scope == "launch patient/*.rs"


def test_missing_lists_only_the_gaps() -> None:
    grants = Grants.parse("patient/*.rs patient/Task.cu")
    needs = {"Task": frozenset({C, U, R}), "CarePlan": frozenset({C, U, R}), "Patient": {R}}
    assert grants.missing(needs) == {"CarePlan": frozenset({C, U})}  # type: ignore[arg-type]


# --- which types may be created and updated -------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("patient/*.rs", set()),
        ("patient/*.read", set()),
        ("patient/*.cruds", set(EVERY_TYPE)),
        ("patient/*.*", set(EVERY_TYPE)),
        ("user/*.cu", set(EVERY_TYPE)),
        ("patient/*.write", set(EVERY_TYPE)),
        ("patient/Task.cu patient/CarePlan.c", {"Task"}),
        ("patient/Task.c patient/Task.u", {"Task"}),
        ("patient/Task.write patient/CarePlan.read", {"Task"}),
        ("patient/Task.cud patient/Provenance.crus", {"Task", "Provenance"}),
        ("patient/Task.cu?status=draft", set()),
        (
            "system/Task.cu user/CarePlan.cu patient/Provenance.cu",
            {"Task", "CarePlan", "Provenance"},
        ),
    ],
)
def test_writable_types(scope: str, expected: set[str]) -> None:
    assert writable_types(scope, EVERY_TYPE) == expected


# --- what each write needs ------------------------------------------------------------------


def test_each_write_names_the_types_it_writes() -> None:
    assert set(WRITE_TYPES[Write.PLAN]) == set(PLAN_TYPES)
    assert set(WRITE_TYPES[Write.DECISION]) | set(WRITE_TYPES[Write.TASKS]) == set(FOLLOWUP_TYPES)
    assert set(WRITE_TYPES[Write.TASKS]) == {"Task", "CarePlan", "Provenance"}
    for write in Write:
        for kind, actions in write.needs.items():
            assert actions == frozenset({C, U, R, S}), (write, kind)
            assert kind in smart.WRITE_TYPES, f"the app does not ask for {kind}"


def test_the_follow_up_writer_writes_no_type_the_grant_check_ignores() -> None:
    """Every resourceType the follow-up writer builds is one a follow-up write needs."""
    source = Path(followup_write.__file__).read_text(encoding="utf-8")
    built = set(re.findall(r'"resourceType": "([A-Za-z]+)"', source))
    assert built
    assert built <= set(WRITE_TYPES[Write.DECISION]) | set(WRITE_TYPES[Write.TASKS])


@pytest.mark.parametrize(
    "scope",
    [
        "launch openid fhirUser patient/*.cruds",
        "launch patient/*.*",
        "patient/*.rs patient/*.cu",
        "patient/*.read patient/*.write",
        "user/*.cruds",
        " ".join(f"patient/{k}.crus" for k in smart.WRITE_TYPES),
    ],
)
@pytest.mark.parametrize("write", list(Write))
def test_a_full_grant_allows_every_write(scope: str, write: Write) -> None:
    assert refusal(Grants.parse(scope), write) is None


@pytest.mark.parametrize("scope", ["", "launch openid fhirUser", "patient/*.rs", "user/*.read"])
@pytest.mark.parametrize("write", list(Write))
def test_a_read_only_grant_refuses_every_write_and_says_read_only(scope: str, write: Write) -> None:
    found = refusal(Grants.parse(scope), write)
    assert found is not None
    assert found.read_only
    assert found.write is write
    assert set(found.gaps) == set(WRITE_TYPES[write])
    message = found.message
    assert message.startswith(
        f"The EHR gave this launch read-only access, so the app cannot {write.value}"
    )
    for kind in WRITE_TYPES[write]:
        assert kind in message


def test_no_provenance_write_refuses_every_write_and_names_provenance() -> None:
    others = " ".join(f"patient/{k}.cu" for k in smart.WRITE_TYPES if k != "Provenance")
    grants = Grants.parse(f"patient/*.rs {others}")
    for write in Write:
        found = refusal(grants, write)
        assert found is not None and not found.read_only
        assert found.gaps == {"Provenance": frozenset({C, U})}
        assert found.message == (
            f"The EHR did not give this launch the access it needs to {write.value}: it would "
            "need permission to create and update Provenance. Relaunch the app and allow it to "
            "write to the chart, or ask the EHR's administrator for these permissions."
        )


def test_task_writes_only_allow_completing_tasks_not_the_decision_nor_the_plan() -> None:
    grants = Grants.parse(
        "patient/*.rs patient/Task.cu patient/CarePlan.cu patient/Provenance.c patient/Provenance.u"
    )
    assert refusal(grants, Write.TASKS) is None
    decision = refusal(grants, Write.DECISION)
    assert decision is not None
    assert set(decision.gaps) == {"MedicationRequest", "ServiceRequest"}
    assert "create and update MedicationRequest, ServiceRequest" in decision.message
    plan = refusal(grants, Write.PLAN)
    assert plan is not None
    assert set(plan.gaps) == {"MedicationRequest", "DetectedIssue"}


def test_no_task_write_refuses_all_three() -> None:
    others = " ".join(f"patient/{k}.write" for k in smart.WRITE_TYPES if k != "Task")
    grants = Grants.parse(f"patient/*.read {others}")
    for write in Write:
        found = refusal(grants, write)
        if "Task" not in WRITE_TYPES[write]:  # filing a document writes no Task
            assert found is None, write
            continue
        assert found is not None
        assert found.gaps == {"Task": frozenset({C, U})}
    assert refusal(grants, Write.DOCUMENT) is None


def test_writes_without_reads_name_the_reads_too() -> None:
    grants = Grants.parse("patient/Task.cu patient/CarePlan.cu patient/Provenance.cu")
    found = refusal(grants, Write.TASKS)
    assert found is not None
    assert "read and search Task, CarePlan, Provenance" in found.message


def test_mixed_gaps_are_grouped_by_what_is_missing() -> None:
    grants = Grants.parse("patient/Task.rs patient/CarePlan.crus patient/Provenance.cs")
    found = refusal(grants, Write.TASKS)
    assert found is not None
    assert found.gaps == {"Task": frozenset({C, U}), "Provenance": frozenset({R, U})}
    assert "create and update Task; read and update Provenance" in found.message


def test_a_restricted_write_scope_is_not_enough() -> None:
    grants = Grants.parse("patient/*.rs patient/*.cu?_tag=zolgensma")
    assert refusal(grants, Write.PLAN) is not None
