"""Reads that miss nothing, against the real servers: a prior dose behind a medicationReference
(also from a server that ignores _include), the titer recorded with text only, searches that all
come back empty, date floors and truthful truncation with 10,000 lab results, decimals by value.

Every chart is the eligible example with one change, loaded under fresh ids. "The same decision"
is checked against the same chart read as a Bundle file.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import requests

from smart_app import cli, render, service
from smart_app.fhir import codes
from smart_app.fhir.gateway import FhirGateway, Limits
from smart_app.fhir.plan_bundle import plan_key
from smart_app.fhir.read import facts_from_bundle, parse_bundle_json
from smart_app.fhir.written import Confirmation
from smart_app.rules.model import FindingCode, Plan, Status
from smart_app.rules.plan import build_plan
from smart_app.rules.policy import DEFAULT_POLICY
from tests import fhirserver, medplum

pytestmark = pytest.mark.integration
ALL_SERVERS = True

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "infant-eligible.json"
ON = dt.date(2026, 11, 20)
INFUSION = dt.date(2026, 11, 24)
RECORDED = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
ZOLGENSMA_KIT = {"system": codes.NDC, "code": "71894-124-04"}
LAB_CATEGORY = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "laboratory",
        }
    ]
}


# Charts ------------------------------------------------------------------------------------------


def example() -> dict[str, Any]:
    """The eligible example as plain JSON."""
    return json.loads(EXAMPLE.read_text(encoding="utf-8"))


def resource(bundle: dict[str, Any], rid: str) -> dict[str, Any]:
    """A resource of the bundle by id."""
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["id"] == rid)


def add(bundle: dict[str, Any], *resources: dict[str, Any]) -> dict[str, Any]:
    """The bundle with `resources` appended (each with its fullUrl)."""
    for r in resources:
        bundle["entry"].append(
            {"fullUrl": f"http://ehr.example/fhir/{r['resourceType']}/{r['id']}", "resource": r}
        )
    return bundle


def administration(reference: str) -> dict[str, Any]:
    """A completed administration naming its medication by reference only."""
    return {
        "resourceType": "MedicationAdministration",
        "id": "outside-admin",
        "status": "completed",
        "medicationReference": {"reference": reference},
        "subject": {"reference": "Patient/infant-eligible"},
        "effectiveDateTime": "2026-10-15T10:00:00-04:00",
    }


def text_titer(bundle: dict[str, Any], text: str, value: str) -> dict[str, Any]:
    """The bundle with its titer recorded with text only, as a laboratory result."""
    titer = resource(bundle, "aav9")
    titer["code"] = {"text": text}
    titer["category"] = [LAB_CATEGORY]
    titer["valueString"] = value
    return bundle


def from_file(bundle: dict[str, Any]) -> Plan:
    """The plan for the chart read as a Bundle file."""
    facts = facts_from_bundle(parse_bundle_json(json.dumps(bundle)))
    return build_plan(facts, on=ON, infusion_date=INFUSION)


def from_server(base: str, bundle: dict[str, Any]) -> service.Evaluation:
    """Load the chart under fresh ids and evaluate it from the server."""
    patient = fhirserver.load_patient(base, copy.deepcopy(bundle))
    return service.evaluate(FhirGateway(base), patient, on=ON, infusion_date=INFUSION)


def decision(plan: Plan) -> tuple[Status, frozenset[FindingCode]]:
    """What a plan decides: its status and its finding codes."""
    return plan.eligibility.status, frozenset(plan.eligibility.codes())


# A prior dose behind a medicationReference ------------------------------------------------------


@pytest.fixture(scope="module")
def ignores_include() -> Iterator[str]:
    """Medplum's router as its in-memory repository is: _include ignored."""
    with medplum.medplum(ignore_include=True) as base:
        yield base


def prior_dose_chart() -> dict[str, Any]:
    """The example with a ZOLGENSMA administration whose Medication is coded by NDC only."""
    kit = {"resourceType": "Medication", "id": "outside-kit", "code": {"coding": [ZOLGENSMA_KIT]}}
    return add(example(), kit, administration("Medication/outside-kit"))


def test_prior_dose_behind_a_medication_reference_is_found(fhir_server: str) -> None:
    chart = prior_dose_chart()
    evaluation = from_server(fhir_server, chart)
    assert decision(evaluation.plan) == decision(from_file(chart))
    assert evaluation.plan.eligibility.status is Status.NOT_ELIGIBLE
    (prior,) = evaluation.facts.prior_gene_therapy
    assert prior.reference.startswith("MedicationAdministration/outside-admin-")


def test_prior_dose_found_when_the_server_ignores_include(ignores_include: str) -> None:
    chart = prior_dose_chart()
    evaluation = from_server(ignores_include, chart)
    assert evaluation.record.requests == 2  # the read, then the Medication it did not include
    assert evaluation.plan.eligibility.status is Status.NOT_ELIGIBLE
    assert FindingCode.PRIOR_ONASEMNOGENE in evaluation.plan.eligibility.codes()
    assert decision(evaluation.plan) == decision(from_file(chart))


def test_a_medication_no_server_holds_is_a_needs_review_finding(fhir_server: str) -> None:
    chart = add(example(), administration("Medication/never-recorded"))
    evaluation = from_server(fhir_server, chart)
    assert decision(evaluation.plan) == decision(from_file(chart))
    assert evaluation.plan.eligibility.status is Status.NEEDS_REVIEW
    (finding,) = [
        f
        for f in evaluation.plan.eligibility.findings
        if f.code is FindingCode.MEDICATION_UNRESOLVED
    ]
    assert "MedicationAdministration/outside-admin-" in finding.message
    assert "'Medication/never-recorded'" in finding.message
    assert "the server answered" in finding.message
    assert evaluation.record.requests == 2


# The titer recorded with text only --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value", "status"),
    [
        ("AAV9 total antibody", "1:100", Status.DEFERRED),
        ("Anti-AAV9 antibody titer", "1:100", Status.DEFERRED),
        ("Anti-AAV9 antibody titer", "<1:25", Status.ELIGIBLE),
    ],
)
def test_a_titer_recorded_with_text_only_gives_the_bundles_decision(
    fhir_server: str, text: str, value: str, status: Status
) -> None:
    chart = text_titer(example(), text, value)
    evaluation = from_server(fhir_server, chart)
    assert decision(evaluation.plan) == decision(from_file(chart))
    assert evaluation.plan.eligibility.status is status
    (titer,) = evaluation.facts.titers
    assert titer.evidence.value == value


# Every search empty -----------------------------------------------------------------------------


def test_a_chart_with_nothing_but_the_patient_says_why_results_may_be_missing(
    fhir_server: str,
) -> None:
    chart = example()
    chart["entry"] = chart["entry"][:1]
    evaluation = from_server(fhir_server, chart)
    codes_found = evaluation.plan.eligibility.codes()
    assert FindingCode.SEARCHES_EMPTY in codes_found
    assert FindingCode.WEIGHT_MISSING in codes_found
    assert evaluation.plan.eligibility.status is Status.INCOMPLETE
    assert set(evaluation.record.empty) == set(evaluation.record.searched)


def test_searches_a_server_reads_differently_come_back_empty_and_say_so() -> None:
    """Medplum's in-memory repository reads `patient=<bare id>` literally: every search finds
    nothing although the chart is there and the Patient read succeeds."""
    with medplum.medplum(raw_patient_param=True) as base:
        evaluation = from_server(base, example())
    (finding,) = [
        f for f in evaluation.plan.eligibility.findings if f.code is FindingCode.SEARCHES_EMPTY
    ]
    assert "search support" in finding.message
    assert "granted scopes" in finding.message
    assert "institution default" in finding.message
    assert evaluation.plan.eligibility.status is Status.INCOMPLETE


def test_the_follow_up_says_when_an_unordered_search_was_cut(fhir_server: str) -> None:
    """With tiny pages, the app's own Task search is cut: the follow-up says so."""
    patient = fhirserver.load_patient(fhir_server, example())
    gateway = FhirGateway(fhir_server)
    evaluation = service.evaluate(gateway, patient, on=ON, infusion_date=INFUSION)
    acknowledged = frozenset({"caregiver-counseling", "smn2-copy-number"})
    confirmation = Confirmation(recorded=RECORDED, acknowledged=acknowledged)
    service.write(gateway, evaluation, confirmation)
    small = FhirGateway(fhir_server, limits=Limits(page_size=5, max_pages=1))
    after = INFUSION + dt.timedelta(days=3)
    following = service.read_followup(small, patient, on=after)
    assert following is not None
    (cut,) = [s for s in following.record.truncated if s.startswith("Task?")]
    (finding,) = [f for f in following.followup.findings if f.code is FindingCode.SEARCH_TRUNCATED]
    assert cut in finding.message


# Decimals by value ------------------------------------------------------------------------------


def test_a_weight_of_6120_g_is_the_plan_of_6_12_kg(fhir_server: str) -> None:
    """The same weight spelled another way (grams) gives the same plan, text and key."""
    in_grams = example()
    resource(in_grams, "weight")["valueQuantity"] = {
        "value": 6120,
        "unit": "g",
        "system": codes.UCUM,
        "code": "g",
    }
    plans = {}
    for suffix, chart in (("kg", example()), ("g", in_grams)):
        patient = fhirserver.load_patient(fhir_server, chart, suffix=f"dec{suffix}")
        gateway = FhirGateway(fhir_server)
        plans[suffix] = service.evaluate(gateway, patient, on=ON, infusion_date=INFUSION).plan
    kg, g = plans["kg"], plans["g"]
    assert g.dose is not None and str(g.dose.weight_kg) == "6.12"
    as_kg = dataclasses.replace(g, patient_id=kg.patient_id)
    assert plan_key(as_kg) == plan_key(kg)
    shown = json.dumps(render.plan_data(g)).replace("-decg", "-deckg")
    assert json.loads(shown) == render.plan_data(kg)
    assert render.plan_text(g).replace("-decg", "-deckg") == render.plan_text(kg)


# 10,000 laboratory results ----------------------------------------------------------------------

BULK = 10_000
OURS_EVERY = 4
"""One bulk result in four is one of the app's lab tests; the rest are sodium results."""
SPAN_DAYS = 700
BORN = "2024-12-01"


Crowded = tuple[str, str, dict[str, Any], list[dict[str, Any]]]
"""(base URL, patient id, the chart, the bulk results) of the server with 10,000 results."""


class Recording(requests.Session):
    """A session that remembers every request it sends (method, URL, body)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str, Any]] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        """Remember, then send."""
        self.sent.append((str(method), str(url), kwargs.get("data")))
        return super().request(method, url, *args, **kwargs)


def bulk_chart() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A patient just under 2 with 10,000 laboratory results over 700 days: (the example with
    the earlier birth date, the bulk results)."""
    chart = example()
    resource(chart, "infant-eligible")["birthDate"] = BORN
    labs = [
        r
        for e in chart["entry"]
        if (r := e["resource"]).get("category") == [LAB_CATEGORY]
        and r["id"] not in ("smn1", "smn2")
    ]
    sodium = {"coding": [{"system": codes.LOINC, "code": "2951-2"}], "text": "Sodium"}
    newest = dt.datetime(2026, 11, 19, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    bulk = []
    for i in range(BULK):
        result = copy.deepcopy(labs[i % len(labs)])
        result["id"] = f"bulk-{i}"
        if i % OURS_EVERY:
            result["code"] = sodium
            result["valueQuantity"] = {"value": 140, "unit": "mmol/L", "code": "mmol/L"}
            result.pop("referenceRange", None)
        taken = newest - dt.timedelta(minutes=SPAN_DAYS * 24 * 60 * i // BULK)
        result["effectiveDateTime"] = taken.isoformat()
        bulk.append(result)
    return chart, bulk


@pytest.fixture(scope="module", params=["sekmet", "medplum"])
def crowded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Crowded]:
    """A server of its own (so the 10,000 results slow no other test), sekmet or Medplum's
    router (running transactions entry by entry, which takes them without its 50-update
    cap), holding the bulk patient: (base URL, patient id, the chart and the bulk results)."""
    if request.param == "sekmet":
        server = fhirserver.sekmet(tmp_path_factory.mktemp("crowded"))
    else:
        server = medplum.medplum(transactions=medplum.Transactions.ENTRY)
    with server as base:
        chart, bulk = bulk_chart()
        patient = fhirserver.load_patient(base, chart, suffix="bulk")
        chart = json.loads(json.dumps(chart).replace("infant-eligible", patient))
        for r in bulk:
            r["id"] = f"{r['id']}-{patient}"
            r["subject"] = {"reference": f"Patient/{patient}"}
        for start in range(0, BULK, 2500):
            entries = [
                {"resource": r, "request": {"method": "PUT", "url": f"Observation/{r['id']}"}}
                for r in bulk[start : start + 2500]
            ]
            status, answer = fhirserver.http_json(
                "POST", base, {"resourceType": "Bundle", "type": "transaction", "entry": entries}
            )
            assert status == 200, str(answer)[:300]
        yield base, patient, chart, bulk


def _newest_ours(chart: dict[str, Any], bulk: list[dict[str, Any]], count: int) -> set[str]:
    """The ids of the bulk results among the `count` newest results of the app's lab tests."""
    ours = [
        r
        for r in [*(e["resource"] for e in chart["entry"]), *bulk]
        if r["resourceType"] == "Observation"
        and r.get("category") == [LAB_CATEGORY]
        and r["code"].get("coding", [{}])[0].get("code") not in ("2951-2", "111768-8", "97654-8")
    ]
    ours.sort(key=lambda r: dt.datetime.fromisoformat(r["effectiveDateTime"]), reverse=True)
    return {r["id"] for r in ours[:count] if r["id"].startswith("bulk-")}


def _within(bulk: list[dict[str, Any]], floor: dt.date) -> int:
    """How many bulk results of the app's lab tests are dated on or after `floor`."""
    return sum(
        1
        for r in bulk
        if r["code"]["coding"][0]["code"] != "2951-2"
        and dt.date.fromisoformat(r["effectiveDateTime"][:10]) >= floor
    )


def test_ten_thousand_results_read_within_the_floors_and_truncation_is_told(
    crowded: Crowded,
) -> None:
    base, patient, chart, bulk = crowded
    session = Recording()
    limits = Limits()
    record = FhirGateway(base, session=session, limits=limits).read_patient(patient, on=ON)
    # The searches carried their floors: weights, labs and temperatures; not gestation.
    (batch,) = [json.loads(body) for method, _, body in session.sent[:1] if method == "POST"]
    urls = [unquote(e["request"]["url"]) for e in batch["entry"]]
    floor = ON - dt.timedelta(days=DEFAULT_POLICY.lab_search_days)
    (labs,) = [u for u in urls if "|1742-6" in u and "_sort=-date" in u]
    assert f"date=ge{floor}" in labs
    (weights,) = [u for u in urls if "|29463-7" in u and "_sort=-date" in u]
    assert f"date=ge{ON - dt.timedelta(days=DEFAULT_POLICY.weight_search_days)}" in weights
    (temperatures,) = [u for u in urls if "|8310-5" in u and "_sort=-date" in u]
    assert f"date=ge{ON - dt.timedelta(days=DEFAULT_POLICY.temperature_search_days)}" in (
        temperatures
    )
    (gestation,) = [u for u in urls if "|76516-4" in u]
    assert "date=" not in gestation
    # Truncation told truthfully: the lab search alone had more than the app reads, and what
    # was read is the newest of it.
    bound = limits.page_size * limits.max_pages
    assert _within(bulk, floor) > bound
    assert [unquote(s) for s in record.truncated] == [labs]
    read_bulk = {r["id"] for r in record.resources if r["id"].startswith("bulk-")}
    assert read_bulk == _newest_ours(chart, bulk, bound)
    assert record.requests == limits.max_pages  # the batch, then the lab search's pages 2-5
    # The plan is the one the whole chart gives: only results older than it needs were cut.
    evaluation = service.evaluate_record(record, on=ON, infusion_date=INFUSION)
    everything = add(copy.deepcopy(chart), *bulk)
    assert decision(evaluation.plan) == decision(from_file(everything))


def test_the_command_line_tells_of_truncated_searches(
    crowded: Crowded, capsys: pytest.CaptureFixture[str]
) -> None:
    base, patient, _, _ = crowded
    args = ["plan", "--fhir-base", base, "--patient", patient, "--on", str(ON)]
    assert cli.main([*args, "--infusion-date", str(INFUSION)]) == 0
    out, err = capsys.readouterr()
    (cut,) = json.loads(out)["truncated"]
    assert "Observation?" in cut and "1742-6" in unquote(cut)
    assert err.startswith("zolgensma-smart: note: 1 search(es) had more results than the app")
    assert cli.main([*args, "--infusion-date", str(INFUSION), "--format", "text"]) == 0
    text, err = capsys.readouterr()
    assert "TRUNCATED: 1 search(es) had more results than the app reads" in text
    assert err
