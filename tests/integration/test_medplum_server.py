"""The Medplum test server (tests/medplum) itself behaves as its documentation says."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import medplum
from tests.fhirserver import http_json, search

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def atomic() -> Iterator[str]:
    """The default server: transactions all or nothing, Medplum-server search behaviour."""
    with medplum.medplum() as base:
        yield base


@pytest.fixture(scope="module")
def entry_mode() -> Iterator[str]:
    """A server that runs a transaction entry by entry (Medplum's transaction feature off)."""
    with medplum.medplum(transactions=medplum.Transactions.ENTRY) as base:
        yield base


@pytest.fixture(scope="module")
def no_transactions() -> Iterator[str]:
    """A server that refuses transaction Bundles."""
    with medplum.medplum(transactions="none") as base:
        yield base


def _exchange(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    """One HTTP exchange: status, headers and the parsed JSON body (None when empty)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 - loopback test server
        url,
        data=data,
        method=method,
        headers={"Content-Type": "application/fhir+json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            status, head, raw = answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as exc:
        status, head, raw = exc.code, dict(exc.headers), exc.read()
    return status, head, json.loads(raw) if raw else None


def _text(outcome: dict[str, Any]) -> str:
    """All the text of an OperationOutcome's issues."""
    return " ".join(
        f"{i.get('diagnostics', '')} {i.get('details', {}).get('text', '')}"
        for i in outcome["issue"]
    )


def _patient(system: str, value: str, **extra: Any) -> dict[str, Any]:
    """A Patient with one identifier."""
    return {"resourceType": "Patient", "identifier": [{"system": system, "value": value}], **extra}


def _conditional_creates(system: str, count: int) -> dict[str, Any]:
    """A transaction of `count` conditional creates (If-None-Exist on the identifier)."""
    entries = [
        {
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": _patient(system, f"v{i}"),
            "request": {
                "method": "POST",
                "url": "Patient",
                "ifNoneExist": f"identifier={system}|v{i}",
            },
        }
        for i in range(count)
    ]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _system() -> str:
    """A fresh identifier system, so tests sharing a server do not see each other's data."""
    return f"urn:test:{uuid.uuid4().hex}"


def _ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    """Type/id of the entries of a search Bundle with the given search mode."""
    return [
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry") or []
        if e.get("search", {}).get("mode") == mode
    ]


def _link(bundle: dict[str, Any], relation: str) -> str | None:
    """The URL of a Bundle link, or None."""
    return next((x["url"] for x in bundle.get("link", []) if x["relation"] == relation), None)


def _with_observations(base: str, count: int) -> str:
    """A new Patient with `count` Observations; return the Patient id."""
    status, patient = http_json("POST", f"{base}/Patient", _patient(_system(), "p"))
    assert status == 201
    for i in range(count):
        observation = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
            "subject": {"reference": f"Patient/{patient['id']}"},
            "effectiveDateTime": f"2026-01-{i + 1:02d}",
        }
        assert http_json("POST", f"{base}/Observation", observation)[0] == 201
    return str(patient["id"])


def _with_medication_request(base: str) -> tuple[str, str]:
    """A Patient with a MedicationRequest that references a Medication; return both ids."""
    status, patient = http_json("POST", f"{base}/Patient", _patient(_system(), "p"))
    assert status == 201
    status, medication = http_json(
        "POST", f"{base}/Medication", {"resourceType": "Medication", "code": {"text": "AAV9"}}
    )
    assert status == 201
    request = {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient['id']}"},
        "medicationReference": {"reference": f"Medication/{medication['id']}"},
    }
    assert http_json("POST", f"{base}/MedicationRequest", request)[0] == 201
    return str(patient["id"]), str(medication["id"])


# --- the HTTP surface -------------------------------------------------------------------------


def test_create_and_update_answer_location_etag_and_last_modified(atomic: str) -> None:
    """A create is 201 with Location/ETag/Last-Modified; an update moves the ETag on."""
    status, head, created = _exchange("POST", f"{atomic}/Patient", _patient(_system(), "1"))
    assert status == 201
    assert head["Location"] == f"{atomic}/Patient/{created['id']}"
    assert head["ETag"] == f'W/"{created["meta"]["versionId"]}"'
    assert head["Last-Modified"].endswith(" GMT")
    assert head["Content-Type"].startswith("application/fhir+json")
    status, head, updated = _exchange(
        "PUT",
        f"{atomic}/Patient/{created['id']}",
        {**created, "gender": "female"},
        {"If-Match": f'W/"{created["meta"]["versionId"]}"'},
    )
    assert status == 200
    assert "Location" not in head
    assert head["ETag"] == f'W/"{updated["meta"]["versionId"]}"'
    assert updated["meta"]["versionId"] != created["meta"]["versionId"]


def test_stale_if_match_is_412(atomic: str) -> None:
    """An update whose If-Match names an old version is refused with 412."""
    status, created = http_json("POST", f"{atomic}/Patient", _patient(_system(), "1"))
    stale = f'W/"{created["meta"]["versionId"]}"'
    assert http_json("PUT", f"{atomic}/Patient/{created['id']}", created)[0] == 200
    status, _, outcome = _exchange(
        "PUT", f"{atomic}/Patient/{created['id']}", created, {"If-Match": stale}
    )
    assert status == 412
    assert outcome["resourceType"] == "OperationOutcome"


def test_if_none_exist_returns_the_existing_resource(atomic: str) -> None:
    """A second conditional create finds the first one (200, same id) instead of creating."""
    system = _system()
    header = {"If-None-Exist": f"identifier={system}|1"}
    first = _exchange("POST", f"{atomic}/Patient", _patient(system, "1"), header)
    second = _exchange("POST", f"{atomic}/Patient", _patient(system, "1"), header)
    assert (first[0], second[0]) == (201, 200)
    assert first[2]["id"] == second[2]["id"]
    assert len(search(atomic, f"Patient?identifier={system}|")) == 1


def test_prefer_return_minimal_has_no_body(atomic: str) -> None:
    """Prefer: return=minimal answers the headers without the resource."""
    status, head, body = _exchange(
        "POST", f"{atomic}/Patient", _patient(_system(), "1"), {"Prefer": "return=minimal"}
    )
    assert status == 201
    assert body is None
    assert head["Location"].startswith(f"{atomic}/Patient/")


def test_unknown_resource_and_bad_json(atomic: str) -> None:
    """A missing resource is 404 and a body that is not JSON is 400, both OperationOutcomes."""
    status, outcome = http_json("GET", f"{atomic}/Patient/{uuid.uuid4()}")
    assert status == 404
    assert outcome["resourceType"] == "OperationOutcome"
    request = urllib.request.Request(  # noqa: S310 - loopback test server
        f"{atomic}/Patient",
        data=b"{not json",
        method="POST",
        headers={"Content-Type": "application/fhir+json"},
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)  # noqa: S310
    assert caught.value.code == 400
    caught.value.close()


def test_capability_statement_by_mode(atomic: str, entry_mode: str, no_transactions: str) -> None:
    """metadata: FHIR 4.0.1; transaction listed unless off; search params that work listed."""
    for base, has_transaction in ((atomic, True), (entry_mode, True), (no_transactions, False)):
        status, statement = http_json("GET", f"{base}/metadata")
        assert status == 200
        assert statement["resourceType"] == "CapabilityStatement"
        assert statement["fhirVersion"] == "4.0.1"
        rest = statement["rest"][0]
        codes = {i["code"] for i in rest["interaction"]}
        assert "batch" in codes
        assert ("transaction" in codes) is has_transaction
    _, statement = http_json("GET", f"{atomic}/metadata")
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    observation = resources["Observation"]
    params = {p["name"]: p["type"] for p in observation["searchParam"]}
    assert params["patient"] == "reference"
    assert params["code"] == "token"
    assert params["date"] == "date"
    assert "value-quantity" not in params  # quantity search matches nothing in memory
    assert {"create", "update", "search-type"} <= {i["code"] for i in observation["interaction"]}
    assert "MedicationRequest:medication" in resources["MedicationRequest"]["searchInclude"]


# --- transactions -----------------------------------------------------------------------------


def test_atomic_refuses_a_nine_entry_conditional_transaction(atomic: str) -> None:
    """Above 8 entries a conditional transaction is refused with 400 and nothing is written."""
    system = _system()
    status, outcome = http_json("POST", atomic, _conditional_creates(system, 9))
    assert status == 400
    assert "strict isolation" in _text(outcome)
    assert search(atomic, f"Patient?identifier={system}|") == []


def test_atomic_runs_an_eight_entry_conditional_transaction(atomic: str) -> None:
    """At 8 entries the same transaction runs, and running it again creates nothing new."""
    system = _system()
    status, answer = http_json("POST", atomic, _conditional_creates(system, 8))
    assert status == 200
    assert answer["type"] == "transaction-response"
    assert [e["response"]["status"] for e in answer["entry"]] == ["201"] * 8
    status, again = http_json("POST", atomic, _conditional_creates(system, 8))
    assert status == 200
    assert [e["response"]["status"] for e in again["entry"]] == ["200"] * 8
    assert len(search(atomic, f"Patient?identifier={system}|")) == 8


def _stale_transaction(base: str, system: str) -> dict[str, Any]:
    """A transaction: create A, update B with a stale If-Match, create C (B already exists)."""
    status, b = http_json("POST", f"{base}/Patient", _patient(system, "b"))
    assert status == 201
    stale = f'W/"{b["meta"]["versionId"]}"'
    status, _ = http_json("PUT", f"{base}/Patient/{b['id']}", {**b, "gender": "male"})
    assert status == 200
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": _patient(system, "a"), "request": {"method": "POST", "url": "Patient"}},
            {
                "resource": {**b, "gender": "female"},
                "request": {"method": "PUT", "url": f"Patient/{b['id']}", "ifMatch": stale},
            },
            {"resource": _patient(system, "c"), "request": {"method": "POST", "url": "Patient"}},
        ],
    }


def test_atomic_transaction_with_a_stale_entry_commits_nothing(atomic: str) -> None:
    """All or nothing: one stale If-Match fails the transaction (412), A and C are not kept."""
    system = _system()
    status, outcome = http_json("POST", atomic, _stale_transaction(atomic, system))
    assert status == 412
    assert outcome["resourceType"] == "OperationOutcome"
    kept = search(atomic, f"Patient?identifier={system}|")
    assert [p["identifier"][0]["value"] for p in kept] == ["b"]
    assert kept[0]["gender"] == "male"


def test_entry_mode_commits_the_good_entries(entry_mode: str) -> None:
    """Entry by entry: a 200 transaction-response with 412 for the stale entry; A and C kept."""
    system = _system()
    status, answer = http_json("POST", entry_mode, _stale_transaction(entry_mode, system))
    assert status == 200
    assert answer["type"] == "transaction-response"
    assert [e["response"]["status"] for e in answer["entry"]] == ["201", "412", "201"]
    kept = {
        p["identifier"][0]["value"]: p for p in search(entry_mode, f"Patient?identifier={system}|")
    }
    assert sorted(kept) == ["a", "b", "c"]
    assert kept["b"]["gender"] == "male"


def test_entry_mode_has_no_eight_entry_limit(entry_mode: str) -> None:
    """With the feature off the 9-entry conditional transaction runs."""
    system = _system()
    status, answer = http_json("POST", entry_mode, _conditional_creates(system, 9))
    assert status == 200
    assert answer["type"] == "transaction-response"
    assert len(search(entry_mode, f"Patient?identifier={system}|")) == 9


def test_none_refuses_transactions_but_runs_batches(no_transactions: str) -> None:
    """A transaction is refused with 400 and writes nothing; the same entries as a batch run."""
    system = _system()
    bundle = _conditional_creates(system, 2)
    status, outcome = http_json("POST", no_transactions, bundle)
    assert status == 400
    assert "transactions are not supported" in _text(outcome)
    assert search(no_transactions, f"Patient?identifier={system}|") == []
    status, answer = http_json("POST", no_transactions, {**bundle, "type": "batch"})
    assert status == 200
    assert answer["type"] == "batch-response"
    assert len(search(no_transactions, f"Patient?identifier={system}|")) == 2


def test_batch_of_searches(atomic: str) -> None:
    """One batch of 17 GET searches answers 17 searchset Bundles in order."""
    patient_id = _with_observations(atomic, 3)
    queries = [f"Observation?patient={patient_id}&_count={n}" for n in range(1, 18)]
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": q}} for q in queries],
    }
    status, answer = http_json("POST", atomic, bundle)
    assert status == 200
    assert answer["type"] == "batch-response"
    assert [e["response"]["status"] for e in answer["entry"]] == ["200"] * 17
    sizes = [len(e["resource"].get("entry") or []) for e in answer["entry"]]
    assert sizes == [min(n, 3) for n in range(1, 18)]


# --- search: Medplum-server behaviour by default, raw behaviour by switch ---------------------


def test_bare_patient_id_is_read_as_patient_reference(atomic: str) -> None:
    """patient=<id> and subject=<id> find what patient=Patient/<id> finds."""
    patient_id = _with_observations(atomic, 2)
    full = search(atomic, f"Observation?patient=Patient/{patient_id}")
    assert len(full) == 2
    assert search(atomic, f"Observation?patient={patient_id}") == full
    assert search(atomic, f"Observation?subject={patient_id}") == full


def test_raw_patient_param_needs_the_type() -> None:
    """--raw-patient-param: a bare id matches nothing, Patient/<id> still matches."""
    with medplum.medplum(raw_patient_param=True) as base:
        patient_id = _with_observations(base, 2)
        assert search(base, f"Observation?patient={patient_id}") == []
        assert search(base, f"Observation?subject={patient_id}") == []
        assert len(search(base, f"Observation?patient=Patient/{patient_id}")) == 2


def test_include_adds_the_medication(atomic: str) -> None:
    """_include=MedicationRequest:medication adds the Medication with search.mode include."""
    patient_id, medication_id = _with_medication_request(atomic)
    status, bundle = http_json(
        "GET",
        f"{atomic}/MedicationRequest?patient={patient_id}&_include=MedicationRequest:medication",
    )
    assert status == 200
    assert len(_ids(bundle)) == 1
    assert _ids(bundle, "include") == [f"Medication/{medication_id}"]


def test_ignore_include_returns_only_matches() -> None:
    """--ignore-include: the same search answers the MedicationRequest alone."""
    with medplum.medplum(ignore_include=True) as base:
        patient_id, _ = _with_medication_request(base)
        status, bundle = http_json(
            "GET",
            f"{base}/MedicationRequest?patient={patient_id}&_include=MedicationRequest:medication",
        )
        assert status == 200
        assert len(_ids(bundle)) == 1
        assert _ids(bundle, "include") == []


def test_paging_with_next_links(atomic: str) -> None:
    """_count pages with next links carrying _offset; 20 per page when _count is absent."""
    patient_id = _with_observations(atomic, 25)
    status, page = http_json("GET", f"{atomic}/Observation?patient={patient_id}&_count=10")
    assert status == 200
    assert len(page["entry"]) == 10
    next_url = _link(page, "next")
    assert next_url is not None
    assert "_offset=10" in next_url
    seen = _ids(page)
    while next_url:
        status, page = http_json("GET", next_url)
        assert status == 200
        seen += _ids(page)
        next_url = _link(page, "next")
    assert len(seen) == len(set(seen)) == 25
    status, first = http_json("GET", f"{atomic}/Observation?patient={patient_id}")
    assert len(first["entry"]) == 20
    assert _link(first, "next") is not None


def test_no_paging_returns_everything_without_links() -> None:
    """--no-paging: all matches in one answer, and _count cuts without a next link."""
    with medplum.medplum(paging=False) as base:
        patient_id = _with_observations(base, 25)
        status, everything = http_json("GET", f"{base}/Observation?patient={patient_id}")
        assert status == 200
        assert len(everything["entry"]) == 25
        status, cut = http_json("GET", f"{base}/Observation?patient={patient_id}&_count=10")
        assert len(cut["entry"]) == 10
        assert _link(cut, "next") is None


def test_token_date_and_sort_searches(atomic: str) -> None:
    """identifier=system|, _tag=system|code, code=a,b, _sort=-date work on the router."""
    system = _system()
    tagged = _patient(system, "1", meta={"tag": [{"system": system, "code": "demo"}]})
    status, patient = http_json("POST", f"{atomic}/Patient", tagged)
    assert status == 201
    assert [p["id"] for p in search(atomic, f"Patient?identifier={system}|")] == [patient["id"]]
    assert [p["id"] for p in search(atomic, f"Patient?_tag={system}|demo")] == [patient["id"]]
    assert search(atomic, f"Patient?_tag={system}|other") == []
    for day, code in (("2026-01-02", "a"), ("2026-03-01", "b"), ("2025-12-31", "c")):
        observation = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": system, "code": code, "display": "AAV9 antibody"}]},
            "subject": {"reference": f"Patient/{patient['id']}"},
            "effectiveDateTime": day,
        }
        assert http_json("POST", f"{atomic}/Observation", observation)[0] == 201
    newest_first = search(atomic, f"Observation?patient={patient['id']}&_sort=-date")
    days = [o["effectiveDateTime"] for o in newest_first]
    assert days == ["2026-03-01", "2026-01-02", "2025-12-31"]
    either = search(atomic, f"Observation?code={system}|a,{system}|c")
    assert sorted(o["code"]["coding"][0]["code"] for o in either) == ["a", "c"]


def test_code_text_is_not_a_text_search(atomic: str) -> None:
    """code:text is read as plain code equality by the router (the Medplum server text-matches)."""
    system = _system()
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": system, "code": "x1", "display": "AAV9 antibody"}]},
        "identifier": [{"system": system, "value": "1"}],
    }
    assert http_json("POST", f"{atomic}/Observation", observation)[0] == 201
    assert search(atomic, f"Observation?identifier={system}|&code:text=AAV9") == []
    assert len(search(atomic, f"Observation?identifier={system}|&code:text=x1")) == 1


# --- the fixture ----------------------------------------------------------------------------


def test_missing_packages_name_make_node(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without node_modules the fixture says to run `make node`."""
    monkeypatch.setattr(medplum, "NODE_DIR", tmp_path)
    with pytest.raises(RuntimeError, match="make node"), medplum.medplum():
        pass
    with pytest.raises(RuntimeError, match="make node"):
        medplum.validate([])


def test_a_server_that_dies_reports_its_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the port is taken the server exits and the error carries its message."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        monkeypatch.setattr(medplum, "free_port", lambda: busy.getsockname()[1])
        with pytest.raises(RuntimeError, match="cannot listen"), medplum.medplum():
            pass


# --- validation -------------------------------------------------------------------------------


def test_validate_flags_invalid_resources_only() -> None:
    """A valid Patient has no errors; a bad birthDate and an unknown element are errors."""
    valid = {"resourceType": "Patient", "id": "ok", "gender": "male", "birthDate": "2025-06-01"}
    invalid = {"resourceType": "Patient", "id": "bad", "birthDate": "yesterday", "colour": "red"}
    assert medplum.validate([valid]) == []
    report = medplum.validate([valid, invalid])
    assert [(r["index"], r["resourceType"], r["id"]) for r in report] == [(1, "Patient", "bad")]
    errors = " | ".join(report[0]["errors"])
    assert "Patient.birthDate" in errors
    assert "colour" in errors


def test_validate_does_not_check_code_bindings() -> None:
    """@medplum/core 4.5.2 checks structure, not required bindings: gender "x" passes."""
    assert medplum.validate([{"resourceType": "Patient", "gender": "x"}]) == []
    missing = medplum.validate([{"resourceType": "Observation", "status": "final"}])
    assert "Observation.code" in missing[0]["errors"][0]
