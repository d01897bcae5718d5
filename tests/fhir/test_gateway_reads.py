"""What the read asks a server and what it makes of the answers: date floors, the one extra
batch for Medications a server did not include and for the titer by text, searches refused,
empty or cut short, and `next` pages of different searches fetched side by side.

The server here is an HTTP-level fake (responses) answering each search URL from a table, the
way a server that ignores _include or refuses code:text answers; tests/integration/test_reads.py
reads the same charts from the real servers.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import unquote

import pytest
import requests
import responses

from smart_app import service
from smart_app.errors import FhirServerError, PolicyError
from smart_app.fhir import codes
from smart_app.fhir.gateway import FhirGateway, Floors, Limits, PatientRecord, patient_searches
from smart_app.rules.model import FindingCode, Severity
from smart_app.rules.policy import DEFAULT_POLICY, Policy
from tests.builders import searchset

BASE = "http://fhir.test/fhir"
PID = "p1"
ON = dt.date(2026, 11, 20)
ANY_URL = re.compile(re.escape(BASE) + r"(/.*)?$")
ZOLGENSMA = {"system": codes.NDC, "code": "71894-124-04"}
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"

Answer = tuple[int, Any]


# The fake server -------------------------------------------------------------------------------


def outcome(text: str) -> dict[str, Any]:
    """An OperationOutcome with one error."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "not-supported", "diagnostics": text}],
    }


def patient() -> dict[str, Any]:
    """The patient."""
    return {"resourceType": "Patient", "id": PID, "birthDate": "2026-06-10"}


def titer(
    *, oid: str = "aav9", when: str = "2026-11-09", text_only: bool = False
) -> dict[str, Any]:
    """An anti-AAV9 titer: coded with the app's code, or recorded with text only."""
    code: dict[str, Any] = (
        {"text": "AAV9 total antibody"}
        if text_only
        else {"coding": [{"system": codes.APP_CODES, "code": "anti-aav9-titer"}]}
    )
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": "laboratory"}]}],
        "code": code,
        "subject": {"reference": f"Patient/{PID}"},
        "effectiveDateTime": when,
        "valueString": "<1:25",
    }


def use(kind: str, reference: str, uid: str = "use") -> dict[str, Any]:
    """A medication use naming its medication by reference only."""
    return {
        "resourceType": kind,
        "id": uid,
        "status": "completed" if kind != "MedicationRequest" else "active",
        "medicationReference": {"reference": reference},
        "subject": {"reference": f"Patient/{PID}"},
        "effectiveDateTime": "2026-10-01",
        "authoredOn": "2026-10-01",
    }


def zolgensma(mid: str = "m1") -> dict[str, Any]:
    """A Medication coded by its ZOLGENSMA NDC only."""
    return {"resourceType": "Medication", "id": mid, "code": {"coding": [ZOLGENSMA]}}


class Fake:
    """Answers GETs from `route(url)` and batch POSTs entry by entry; remembers what came."""

    def __init__(self, rsps: responses.RequestsMock, route: Callable[[str], Answer]) -> None:
        self.route = route
        self.batches: list[list[str]] = []
        self.gets: list[str] = []
        self.batch = True
        rsps.add_callback(responses.POST, BASE, callback=self._post)
        rsps.add_callback(responses.GET, ANY_URL, callback=self._get)

    def _post(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        """A batch: each entry answered by the route."""
        body = json.loads(request.body or b"{}")
        urls = [e["request"]["url"] for e in body["entry"]]
        self.batches.append(urls)
        if not self.batch:
            return 405, {}, json.dumps(outcome("batch is not supported"))
        entries = []
        for url in urls:
            status, answer = self.route(url)
            if status >= 400:
                entries.append({"response": {"status": str(status), "outcome": answer}})
            else:
                entries.append({"resource": answer, "response": {"status": "200 OK"}})
        reply = {"resourceType": "Bundle", "type": "batch-response", "entry": entries}
        return 200, {}, json.dumps(reply)

    def _get(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        """One GET, by its URL relative to the base."""
        url = unquote(str(request.url)).removeprefix(BASE + "/")
        self.gets.append(url)
        status, answer = self.route(url)
        return status, {"Content-Type": "application/fhir+json"}, json.dumps(answer)

    @property
    def requests(self) -> int:
        """Requests received."""
        return len(self.batches) + len(self.gets)


def chart(
    *,
    uses: tuple[dict[str, Any], ...] = (),
    held: tuple[dict[str, Any], ...] = (),
    titers: tuple[dict[str, Any], ...] = (titer(),),
    text: Answer | None = None,
    labs: tuple[dict[str, Any], ...] = (),
    empty: bool = False,
) -> Callable[[str], Answer]:
    """A route for a small chart: a server that ignores _include, with the Medications it holds
    answering reads, `text` answering the code:text search, `labs` the laboratory search."""
    by_id = {f"Medication/{m['id']}": m for m in held}

    def route(url: str) -> Answer:
        """The answer to one relative URL."""
        url = unquote(url)
        if url == f"Patient/{PID}":
            return 200, patient()
        if empty:
            return 200, searchset()
        if url.startswith("Medication/"):
            found = by_id.get(url)
            return (200, found) if found else (404, outcome(f"{url} is not known"))
        if "code:text=" in url:
            return text or (200, searchset(*[t for t in titers if "coding" not in t["code"]]))
        if "category=laboratory" in url:
            return 200, searchset(*labs)
        if "anti-aav9-titer" in url:
            return 200, searchset(*[t for t in titers if "coding" in t["code"]])
        kind = url.split("?", 1)[0]
        return 200, searchset(*[u for u in uses if u["resourceType"] == kind])

    return route


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    """The HTTP fake."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def read(fake: Fake, *, on: dt.date | None = ON, **limits: Any) -> PatientRecord:
    """Read the patient through the fake."""
    return FhirGateway(BASE, limits=Limits(**limits), sleep=lambda _s: None).read_patient(
        PID, on=on
    )


def read_findings(record: PatientRecord, code: FindingCode) -> list[Any]:
    """The findings of one code that the record's facts carry."""
    facts = service.evaluate_record(record, on=ON, infusion_date=ON + dt.timedelta(days=4)).facts
    return [f for f in facts.read_findings if f.code is code]


# Date floors ---------------------------------------------------------------------------------


def _search(urls: list[str], *needles: str) -> str:
    """The one URL holding every needle."""
    (found,) = [u for u in urls if all(n in unquote(u) for n in needles)]
    return found


def test_floors_on_the_weight_lab_and_temperature_searches_only(
    rsps: responses.RequestsMock,
) -> None:
    fake = Fake(rsps, chart())
    read(fake)
    (sent, *_) = fake.batches
    days = DEFAULT_POLICY
    weight = _search(sent, "29463-7", "_sort=-date")
    labs = _search(sent, "1742-6", "_sort=-date")
    temperature = _search(sent, "8310-5", "_sort=-date")
    assert f"date=ge{ON - dt.timedelta(days=days.weight_search_days)}" in weight
    assert f"date=ge{ON - dt.timedelta(days=days.lab_search_days)}" in labs
    assert f"date=ge{ON - dt.timedelta(days=days.temperature_search_days)}" in temperature
    for unfloored in ("76516-4", "111768-8", "anti-aav9-titer", "code:text=AAV9"):
        assert "date=" not in _search(sent, unfloored)
    for other in (u for u in sent if not u.startswith("Observation")):
        assert "date=" not in other


def test_results_recorded_without_a_date_are_asked_for_beside_the_floors(
    rsps: responses.RequestsMock,
) -> None:
    fake = Fake(rsps, chart())
    read(fake)
    undated = unquote(_search(fake.batches[0], "date:missing=true"))
    for code in ("29463-7", "8310-5", "1742-6", "777-3"):
        assert f"|{code}" in undated
    for code in ("76516-4", "111768-8", "anti-aav9-titer"):
        assert code not in undated


def test_the_policy_sets_the_floors(rsps: responses.RequestsMock) -> None:
    policy = Policy(lab_search_days=400, weight_search_days=60, temperature_search_days=5)
    searches = patient_searches(PID, floors=Floors.before(ON, policy))
    assert f"date=ge{ON - dt.timedelta(days=400)}" in _search(searches, "1742-6", "_sort")
    assert f"date=ge{ON - dt.timedelta(days=60)}" in _search(searches, "29463-7", "_sort")
    assert f"date=ge{ON - dt.timedelta(days=5)}" in _search(searches, "8310-5", "_sort")
    shown = Floors.before(ON, policy).shown()
    assert f"lab results since {ON - dt.timedelta(days=400)}" in shown
    assert (
        "institution defaults: weights are searched for back to 60 days before the reading date; "
        "lab results are searched for back to 400 days before the reading date"
    ) in shown
    assert "_search_days" not in shown


def test_without_a_reading_date_nothing_is_floored(rsps: responses.RequestsMock) -> None:
    fake = Fake(rsps, chart())
    record = read(fake, on=None)
    assert not any("date=" in u or "date:missing" in u for u in fake.batches[0])
    assert record.floors == ""


@pytest.mark.parametrize(
    ("field", "days", "why"),
    [
        ("weight_search_days", 29, "at least weight_max_age_days"),
        ("temperature_search_days", 2, "at least fever_lookback_days"),
        ("lab_search_days", 121, "baseline_lab_max_age_days plus the follow-up period"),
        ("lab_search_days", 3661, "lab_search_days must lie in 122-3660 days"),
    ],
)
def test_a_floor_must_cover_the_look_back_of_its_rules(field: str, days: int, why: str) -> None:
    with pytest.raises(PolicyError, match=field) as caught:
        Policy(**{field: days})
    assert why in str(caught.value)


def test_the_lab_floor_covers_the_follow_up_period_of_the_policy() -> None:
    assert DEFAULT_POLICY.followup_days == 92  # three calendar months at most (5.1)
    longer = {"continuation_days": 56, "taper_step_days": (50, 50)}  # 30 + 56 + 100 = 186 days
    with pytest.raises(PolicyError, match="lab_search_days must lie in 216-3660"):
        Policy(**longer)  # type: ignore[arg-type]
    assert Policy(**longer, lab_search_days=216).followup_days == 186  # type: ignore[arg-type]


def test_the_default_floors_cover_the_rules_own_look_backs() -> None:
    policy = DEFAULT_POLICY
    assert policy.weight_search_days >= policy.weight_max_age_days
    assert policy.temperature_search_days >= policy.fever_lookback_days
    assert policy.lab_search_days >= policy.baseline_lab_max_age_days + policy.followup_days


# Medications a server did not include ------------------------------------------------------------


@pytest.mark.parametrize(
    "kind", ["MedicationAdministration", "MedicationStatement", "MedicationRequest"]
)
def test_a_medication_not_included_is_read_in_one_more_batch(
    rsps: responses.RequestsMock, kind: str
) -> None:
    fake = Fake(rsps, chart(uses=(use(kind, "Medication/m1"),), held=(zolgensma(),)))
    record = read(fake)
    assert fake.batches[1] == ["Medication/m1"]
    assert record.requests == fake.requests == 2
    assert record.unresolved == {}
    evaluation = service.evaluate_record(record, on=ON, infusion_date=ON + dt.timedelta(days=4))
    assert [e.reference for e in evaluation.facts.prior_gene_therapy] == [f"{kind}/use"]
    assert FindingCode.PRIOR_ONASEMNOGENE in evaluation.plan.eligibility.codes()
    assert evaluation.facts.read_findings == ()


def test_each_missing_medication_is_read_once(rsps: responses.RequestsMock) -> None:
    uses = (
        use("MedicationAdministration", "Medication/m1", "a"),
        use("MedicationStatement", "Medication/m1/_history/2", "b"),
        use("MedicationRequest", f"{BASE}/Medication/m1", "c"),
    )
    fake = Fake(rsps, chart(uses=uses, held=(zolgensma(),)))
    record = read(fake)
    assert fake.batches[1] == ["Medication/m1"]
    facts = service.evaluate_record(record, on=ON, infusion_date=ON).facts
    assert len(facts.prior_gene_therapy) == 3


def test_a_medication_the_server_does_not_have_is_a_needs_review_finding(
    rsps: responses.RequestsMock,
) -> None:
    fake = Fake(rsps, chart(uses=(use("MedicationAdministration", "Medication/gone"),)))
    record = read(fake)
    assert fake.batches[1] == ["Medication/gone"]
    assert "404" in record.unresolved["Medication/gone"]
    (finding,) = read_findings(record, FindingCode.MEDICATION_UNRESOLVED)
    assert finding.severity is Severity.NEEDS_REVIEW
    assert "MedicationAdministration/use" in finding.message
    assert "'Medication/gone'" in finding.message
    assert "404" in finding.message


def test_a_medication_on_another_server_is_not_asked_for(rsps: responses.RequestsMock) -> None:
    elsewhere = "https://other.example/fhir/Medication/m1"
    fake = Fake(rsps, chart(uses=(use("MedicationStatement", elsewhere),)))
    record = read(fake)
    assert fake.requests == 1
    assert record.unresolved == {elsewhere: "it points to another server"}
    (finding,) = read_findings(record, FindingCode.MEDICATION_UNRESOLVED)
    assert "it points to another server" in finding.message


def test_an_answer_that_is_not_a_medication_leaves_it_unresolved(
    rsps: responses.RequestsMock,
) -> None:
    wrong = {"resourceType": "Substance", "id": "m1"}
    fake = Fake(rsps, chart(uses=(use("MedicationRequest", "Medication/m1"),), held=(wrong,)))
    record = read(fake)
    assert record.unresolved == {"Medication/m1": "the server's answer is not a Medication"}


def test_medications_and_the_titer_are_looked_up_in_the_same_batch(
    rsps: responses.RequestsMock,
) -> None:
    fake = Fake(rsps, chart(uses=(use("MedicationRequest", "Medication/m1"),), titers=()))
    read(fake)
    (second,) = fake.batches[1:]
    assert second[0] == "Medication/m1"
    assert "category=laboratory" in second[1]


# The titer by text -----------------------------------------------------------------------------


def test_a_titer_found_by_text_needs_no_second_request(rsps: responses.RequestsMock) -> None:
    fake = Fake(rsps, chart(titers=(titer(text_only=True),)))
    record = read(fake)
    assert fake.requests == 1
    facts = service.evaluate_record(record, on=ON, infusion_date=ON).facts
    assert [t.evidence.reference for t in facts.titers] == ["Observation/aav9"]


def test_a_refused_text_search_reads_the_laboratory_results_within_the_titer_look_back(
    rsps: responses.RequestsMock,
) -> None:
    refused = (400, outcome("modifier :text is not supported"))
    text_only = titer(oid="lab-aav9", text_only=True)
    fake = Fake(rsps, chart(titers=(), text=refused, labs=(text_only,)))
    record = read(fake)
    (text_search,) = [u for u in record.refused if "code:text=" in u]
    assert text_search == _search(fake.batches[0], "code:text=AAV9")
    (fallback,) = fake.batches[1]
    since = ON - dt.timedelta(days=DEFAULT_POLICY.titer_max_age_days)
    assert unquote(fallback) == (
        f"Observation?patient={PID}&category=laboratory&date=ge{since}&_sort=-date&_count=100"
    )
    facts = service.evaluate_record(record, on=ON, infusion_date=ON).facts
    assert [t.evidence.reference for t in facts.titers] == ["Observation/lab-aav9"]


def test_a_refused_text_search_without_batch_support(rsps: responses.RequestsMock) -> None:
    refused = (400, outcome("modifier :text is not supported"))
    fake = Fake(rsps, chart(titers=(), text=refused, labs=(titer(text_only=True),)))
    fake.batch = False
    record = read(fake)
    assert any("code:text=" in u for u in record.refused)
    assert any("category=laboratory" in u for u in fake.gets)
    assert any(r.get("id") == "aav9" for r in record.resources)


def test_a_server_error_on_the_text_search_is_still_an_error(
    rsps: responses.RequestsMock,
) -> None:
    fake = Fake(rsps, chart(text=(500, outcome("boom"))))
    with pytest.raises(FhirServerError):
        read(fake)


def test_only_a_stale_titer_sends_the_laboratory_search(rsps: responses.RequestsMock) -> None:
    fake = Fake(rsps, chart(titers=(titer(when="2026-09-01"),)))
    read(fake)
    assert len(fake.batches) == 2
    assert "category=laboratory" in fake.batches[1][0]


def test_a_refused_laboratory_search_is_noted_not_fatal(rsps: responses.RequestsMock) -> None:
    def route(url: str) -> Answer:
        """The chart, with the laboratory search refused."""
        if "category=laboratory" in unquote(url):
            return 403, outcome("category searches are not allowed")
        return chart(titers=())(url)

    record = read(Fake(rsps, route))
    assert any("category=laboratory" in u for u in record.refused)


# Empty, refused and truncated searches -------------------------------------------------------


def test_every_search_empty_while_the_patient_was_read(rsps: responses.RequestsMock) -> None:
    fake = Fake(rsps, chart(empty=True))
    record = read(fake)
    assert record.searched and set(record.empty) == set(record.searched)
    notes = record.notes()
    assert notes is not None and notes.all_empty
    (finding,) = read_findings(record, FindingCode.SEARCHES_EMPTY)
    assert finding.severity is Severity.INCOMPLETE
    assert "granted scopes" in finding.message
    assert (
        "institution defaults: weights are searched for back to 180 days before the reading date"
    ) in finding.message


def test_a_warning_alone_is_an_empty_answer(rsps: responses.RequestsMock) -> None:
    warning = {"resourceType": "OperationOutcome", "id": "w", "issue": []}

    def route(url: str) -> Answer:
        """Every search answered with a server's warning and nothing else."""
        if url == f"Patient/{PID}":
            return 200, patient()
        return 200, searchset(warning)

    record = read(Fake(rsps, route))
    assert set(record.empty) == set(record.searched)
    assert all(r["resourceType"] != "OperationOutcome" for r in record.resources)


def test_one_search_with_a_result_is_not_an_empty_chart(rsps: responses.RequestsMock) -> None:
    record = read(Fake(rsps, chart()))
    assert read_findings(record, FindingCode.SEARCHES_EMPTY) == []
    assert _search(record.searched, "anti-aav9-titer") not in record.empty


def test_a_truncated_unordered_search_is_a_finding(rsps: responses.RequestsMock) -> None:
    def route(url: str) -> Answer:
        """Conditions without end; the rest of the chart as usual."""
        if url.startswith("Condition?"):
            page = int(url.rsplit("page=", 1)[1]) if "page=" in url else 1
            more = f"{BASE}/Condition?patient={PID}&page={page + 1}"
            return 200, searchset({"resourceType": "Condition", "id": f"c{page}"}, next_url=more)
        return chart()(url)

    record = read(Fake(rsps, route), max_pages=2)
    (cut,) = record.truncated
    assert cut.startswith("Condition?")
    (finding,) = read_findings(record, FindingCode.SEARCH_TRUNCATED)
    assert cut in finding.message


def test_a_truncated_search_ordered_newest_first_is_noted_but_no_finding(
    rsps: responses.RequestsMock,
) -> None:
    def route(url: str) -> Answer:
        """Weights without end."""
        if ("29463-7" in unquote(url) and "_sort=-date" in url) or "page=" in url:
            page = int(url.rsplit("page=", 1)[1]) if "page=" in url else 1
            more = f"{BASE}/Observation?patient={PID}&weights&page={page + 1}"
            return 200, searchset({"resourceType": "Observation", "id": f"w{page}"}, next_url=more)
        return chart()(url)

    record = read(Fake(rsps, route), max_pages=2)
    (cut,) = record.truncated
    assert "29463-7" in unquote(cut)
    assert read_findings(record, FindingCode.SEARCH_TRUNCATED) == []


# Next pages side by side ---------------------------------------------------------------------


def test_next_pages_of_different_searches_are_fetched_side_by_side(
    rsps: responses.RequestsMock,
) -> None:
    """Page 2 of the Condition search is answered only once page 2 of the Procedure search has
    been asked for, and the other way round: one after the other, the read would fail."""
    both = threading.Barrier(2, timeout=5)

    def route(url: str) -> Answer:
        """Two searches with a second page each; the second pages wait for each other."""
        kind = url.split("?", 1)[0]
        if kind in ("Condition", "Procedure") and "page=2" in url:
            try:
                both.wait()
            except threading.BrokenBarrierError:
                return 500, outcome("the second pages were not asked for together")
            return 200, searchset({"resourceType": kind, "id": f"{kind}-2"})
        if kind in ("Condition", "Procedure"):
            more = f"{BASE}/{kind}?patient={PID}&page=2"
            return 200, searchset({"resourceType": kind, "id": f"{kind}-1"}, next_url=more)
        return chart()(url)

    fake = Fake(rsps, route)
    record = read(fake)
    ids = {r["id"] for r in record.resources}
    assert {"Condition-1", "Condition-2", "Procedure-1", "Procedure-2"} <= ids
    assert record.requests == 3
    assert record.truncated == []


# The callers pass the reading date ---------------------------------------------------------------


class Spy:
    """A gateway that remembers how it was asked to read."""

    def __init__(self) -> None:
        self.asked: list[dict[str, Any]] = []

    def read_patient(self, patient_id: str, **options: Any) -> PatientRecord:
        """A Patient and nothing else."""
        self.asked.append(options)
        return PatientRecord(patient_id=patient_id, resources=[patient()], base_url=BASE)


def test_the_plan_and_the_follow_up_read_on_their_date_with_their_policy() -> None:
    policy = Policy(lab_search_days=365)
    spy = Spy()
    service.evaluate(spy, PID, on=ON, infusion_date=ON, policy=policy)  # type: ignore[arg-type]
    service.read_followup(spy, PID, on=ON, policy=policy)  # type: ignore[arg-type]
    assert [(a["on"], a["policy"]) for a in spy.asked] == [(ON, policy), (ON, policy)]
