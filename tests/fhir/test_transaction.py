"""The write machinery's pure parts: strategy choice, each entry's outcome, references, reports."""

from __future__ import annotations

from typing import Any

import pytest

from smart_app.errors import FhirAnswerLost
from smart_app.fhir import codes, transaction
from smart_app.fhir.transaction import Op, answered, choose_strategy, operations, rewrite, strip
from smart_app.fhir.written import Outcome, Strategy, WriteReport, WriteState, Written

APP = codes.APP_IDENTIFIER
KINDS = ("CarePlan", "Task", "MedicationRequest", "Provenance")


def capability(
    *interactions: str, conditional: bool = True, software: str = "Some server"
) -> dict[str, Any]:
    """A CapabilityStatement with these system interactions."""
    return {
        "resourceType": "CapabilityStatement",
        "software": {"name": software},
        "rest": [
            {
                "mode": "server",
                "interaction": [{"code": i} for i in interactions],
                "resource": [{"type": k, "conditionalCreate": conditional} for k in KINDS],
            }
        ],
    }


@pytest.mark.parametrize(
    ("cap", "expected"),
    [
        (capability("transaction", "batch"), Strategy.TRANSACTION),
        (capability("transaction", "batch", conditional=False), Strategy.LOOKUP),
        (capability("transaction", "batch", software="Medplum"), Strategy.LOOKUP),
        (capability("batch"), Strategy.LOOKUP),
        (capability("history-system"), Strategy.PER_RESOURCE),
        (capability(), Strategy.PER_RESOURCE),
        (None, Strategy.LOOKUP),
        ({}, Strategy.LOOKUP),
    ],
)
def test_strategy_follows_the_capability_statement(
    cap: dict[str, Any] | None, expected: Strategy
) -> None:
    """Conditional transactions only where stated (and not capped); else look-up; else one by
    one."""
    assert choose_strategy(cap) is expected


def test_a_client_mode_rest_is_not_the_servers() -> None:
    """Interactions of a rest entry in client mode say nothing of the server."""
    cap = capability("transaction")
    cap["rest"][0]["mode"] = "client"
    assert choose_strategy(cap) is Strategy.PER_RESOURCE


def op(method: str = "POST", *, search: str = "identifier=x", url: str = "Task") -> Op:
    """One entry of a composed Bundle."""
    return Op(
        index=0,
        kind=url.split("/")[0],
        method=method,
        url=url,
        full_url="urn:uuid:1",
        resource={"resourceType": url.split("/")[0], "status": "requested"},
        key="abc123/task/lab-draw/7",
        search=search,
        if_match='W/"3"' if method == "PUT" else "",
    )


def entry(status: str, location: str | None = None, **extra: Any) -> dict[str, Any]:
    """A transaction-response entry."""
    response: dict[str, Any] = {"status": status, **extra}
    if location:
        response["location"] = location
    return {"response": response}


@pytest.mark.parametrize(
    ("sent", "answer", "expected"),
    [
        (op(), entry("201 Created", "Task/9/_history/1"), Written("Task/9", Outcome.CREATED)),
        (op(), entry("200 OK", "http://h/fhir/Task/9/_history/2"),
         Written("Task/9", Outcome.EXISTING)),
        (op(search=""), entry("200 OK", "Task/9"), Written("Task/9", Outcome.CREATED)),
        (op("PUT", url="Task/5"), entry("200"), Written("Task/5", Outcome.UPDATED)),
        (op("PUT", url="Task/5"), entry("201", "Task/5/_history/1"),
         Written("Task/5", Outcome.CREATED)),
    ],
)  # fmt: skip
def test_outcome_comes_from_each_entrys_status(
    sent: Op, answer: dict[str, Any], expected: Written
) -> None:
    """201 created; 200 to a conditional create existing; 200 to an update updated."""
    got = answered(sent, answer)
    assert (got.reference, got.outcome, got.item) == (
        expected.reference,
        expected.outcome,
        "task/lab-draw/7",
    )


def test_a_refused_entry_is_a_failure_with_the_servers_words() -> None:
    """A 412 inside a 200 transaction-response fails that entry, naming why."""
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "conflict", "diagnostics": "version mismatch"}],
    }
    got = answered(op("PUT", url="CarePlan/7"), entry("412 Precondition Failed", outcome=outcome))
    assert got.outcome is Outcome.FAILED
    assert got.reference == "CarePlan/7"
    assert got.detail == "412: version mismatch"


@pytest.mark.parametrize("answer", [{}, {"response": "201"}, entry(""), entry("created")])
def test_an_unreadable_entry_answer_is_lost(answer: dict[str, Any]) -> None:
    """No status to read: the outcome is not guessed."""
    with pytest.raises(FhirAnswerLost):
        answered(op(), answer)


def test_operations_read_the_app_key_and_conditions() -> None:
    """Each entry's key, search, version check and item name."""
    bundle = {
        "entry": [
            {
                "fullUrl": "urn:uuid:a",
                "resource": {
                    "resourceType": "Task",
                    "identifier": [{"system": APP, "value": "k1/task/lab-draw/7"}],
                },
                "request": {"method": "POST", "url": "Task", "ifNoneExist": "identifier=q"},
            },
            {
                "resource": {
                    "resourceType": "Provenance",
                    "meta": {"tag": [{"system": APP, "code": "k1/provenance/d"}]},
                },
                "request": {"method": "POST", "url": "Provenance", "ifNoneExist": "_tag=q"},
            },
            {
                "resource": {"resourceType": "CarePlan", "id": "c1"},
                "request": {"method": "PUT", "url": "CarePlan/c1", "ifMatch": 'W/"2"'},
            },
        ]
    }  # fmt: skip
    ops = operations(bundle)
    assert [(o.kind, o.key, o.item, o.search, o.if_match) for o in ops] == [
        ("Task", "k1/task/lab-draw/7", "task/lab-draw/7", "identifier=q", ""),
        ("Provenance", "k1/provenance/d", "provenance/d", "_tag=q", ""),
        ("CarePlan", "", "", "", 'W/"2"'),
    ]
    assert ops[2].named() == "CarePlan CarePlan/c1"


CARE_PLAN = {
    "resourceType": "CarePlan",
    "status": "active",
    "addresses": [{"reference": "Condition/sma"}],
    "activity": [
        {"reference": {"reference": "urn:uuid:kit"}},
        {"reference": {"reference": "urn:uuid:task-1"}},
    ],
}


def test_rewrite_replaces_resolved_references_only() -> None:
    """Known urns become server references; others and server references stay."""
    out = rewrite(CARE_PLAN, {"urn:uuid:kit": "MedicationRequest/m1"})
    assert [a["reference"]["reference"] for a in out["activity"]] == [
        "MedicationRequest/m1",
        "urn:uuid:task-1",
    ]
    assert out["addresses"] == [{"reference": "Condition/sma"}]
    assert CARE_PLAN["activity"][0]["reference"]["reference"] == "urn:uuid:kit"


def test_strip_drops_unresolved_references_and_the_elements_left_empty() -> None:
    """A CarePlan created before its Tasks: no activity naming a Task not yet created."""
    out = strip(CARE_PLAN, {"urn:uuid:kit": "MedicationRequest/m1"})
    assert out["activity"] == [{"reference": {"reference": "MedicationRequest/m1"}}]
    assert strip(CARE_PLAN, {}).get("activity") is None
    assert strip(CARE_PLAN, {})["addresses"] == [{"reference": "Condition/sma"}]


def written(*outcomes: Outcome) -> WriteReport:
    """A report with one entry per outcome."""
    return WriteReport(
        strategy=Strategy.LOOKUP,
        written=tuple(Written(f"Task/{n}", o, f"task/{n}") for n, o in enumerate(outcomes)),
    )


@pytest.mark.parametrize(
    ("outcomes", "state"),
    [
        ((Outcome.CREATED, Outcome.EXISTING, Outcome.UPDATED), WriteState.COMPLETE),
        ((Outcome.PRESENT, Outcome.PRESENT), WriteState.COMPLETE),
        ((Outcome.CREATED, Outcome.FAILED, Outcome.NOT_SENT), WriteState.PARTIAL),
        ((Outcome.PRESENT, Outcome.ABSENT), WriteState.PARTIAL),
        ((Outcome.EXISTING, Outcome.FAILED), WriteState.NOTHING),
        ((Outcome.ABSENT, Outcome.ABSENT), WriteState.NOTHING),
        ((Outcome.CREATED, Outcome.UNKNOWN), WriteState.UNKNOWN),
    ],
)
def test_report_state_comes_from_the_entries(
    outcomes: tuple[Outcome, ...], state: WriteState
) -> None:
    """Complete only when the server holds every entry; unknown when any is unknown."""
    assert written(*outcomes).state is state


def test_incomplete_message_names_each_failure_and_says_a_rerun_is_safe() -> None:
    """The message lists what failed with the server's words, and what to do."""
    report = WriteReport(
        strategy=Strategy.TRANSACTION,
        written=(
            Written("Task/1", Outcome.CREATED, "task/a"),
            Written("CarePlan/7", Outcome.FAILED, "careplan", "412: version mismatch"),
        ),
    )
    message = transaction.incomplete_message(report)
    assert message.startswith("the server applied part of the write (1 created, 1 failed).")
    assert "Failed: careplan (CarePlan/7): 412: version mismatch" in message
    assert message.endswith(transaction.RERUN)
    unknown = written(Outcome.UNKNOWN)
    assert "the outcome is unknown" in transaction.incomplete_message(unknown)
