"""FhirGateway error handling against an HTTP-level fake (responses): typed errors, retries, waits,
batch fallback, paging bounds, off-server links, unreachable servers and the bearer token."""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import requests
import responses

from smart_app.errors import (
    FhirAnswerLost,
    FhirConflict,
    FhirError,
    FhirForbidden,
    FhirNotFound,
    FhirProtocolError,
    FhirRateLimited,
    FhirServerError,
    FhirUnauthorized,
    FhirUnprocessable,
    FhirUnreachable,
    InputError,
    SmartAppError,
)
from smart_app.fhir import codes
from smart_app.fhir.gateway import FhirGateway, Limits, PatientRecord, patient_searches
from smart_app.rules.policy import DEFAULT_POLICY

BASE = "http://fhir.test/fhir"
HOST = "fhir.test"
BEARER = "eyJhbGciOi.bearer-value-that-must-never-leak.Zx9"
PID = "p1"
SEARCHES = patient_searches(PID)
CONDITION = next(i for i, s in enumerate(SEARCHES) if s.startswith("Condition?"))
LABS = 5
"""Index of the lab Observation search (the one sized by page_size)."""
TITER = next(i for i, s in enumerate(SEARCHES) if "anti-aav9-titer" in s)
"""Index of the titer search by code."""
APP_CODES = codes.APP_CODES
DIAGNOSTICS = "HAPI-0389: resource Patient/p1 is not known here"
ANY_URL = re.compile(re.escape(BASE) + r"/.*")


# Fakes and builders ----------------------------------------------------------------------------


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    """The HTTP fake; every registered answer must be used."""
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def waits() -> list[float]:
    """The waits the gateway asked for, in order (nothing really sleeps)."""
    return []


def gateway(waits: list[float], **limits: Any) -> FhirGateway:
    """A gateway on BASE with the bearer token and a recording sleep."""
    return FhirGateway(BASE, bearer_token=BEARER, limits=Limits(**limits), sleep=waits.append)


def outcome(text: str = DIAGNOSTICS) -> dict[str, Any]:
    """An OperationOutcome whose first issue carries `text` as diagnostics."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "processing", "diagnostics": text}],
    }


def patient(pid: str = PID) -> dict[str, Any]:
    """A minimal Patient."""
    return {"resourceType": "Patient", "id": pid, "birthDate": "2026-06-10"}


def searchset(*resources: dict[str, Any], next_url: str | None = None) -> dict[str, Any]:
    """A searchset Bundle of `resources`, with a `next` link when given."""
    out: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r} for r in resources],
    }
    if next_url is not None:
        out["link"] = [{"relation": "next", "url": next_url}]
    return out


def titer(rid: str, pid: str = PID) -> dict[str, Any]:
    """A dated anti-AAV9 titer Observation with the app's code."""
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": {"coding": [{"system": APP_CODES, "code": "anti-aav9-titer"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": "2026-11-09",
        "valueString": "<1:25",
    }


def search_answers(pid: str = PID) -> list[dict[str, Any]]:
    """One answer per search: the Patient, then one searchset with one resource (id r<i>); the
    titer search finds a titer, so no second read is needed."""
    answers: list[dict[str, Any]] = [patient(pid)]
    for i, search in enumerate(patient_searches(pid)[1:], start=1):
        if i == TITER:
            answers.append(searchset(titer(f"r{i}", pid)))
            continue
        answers.append(searchset({"resourceType": search.split("?", 1)[0], "id": f"r{i}"}))
    return answers


def batch_response(answers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The batch-response to the read: one 200 OK entry per search, in order."""
    return {
        "resourceType": "Bundle",
        "type": "batch-response",
        "entry": [
            {"resource": a, "response": {"status": "200 OK"}}
            for a in (search_answers() if answers is None else answers)
        ],
    }


def failed_entry(status: str, text: str = DIAGNOSTICS) -> dict[str, Any]:
    """A batch-response entry that failed, with its OperationOutcome in response.outcome."""
    return {"response": {"status": status, "outcome": outcome(text)}}


def serve_gets(
    rsps: responses.RequestsMock, answers: Mapping[str, tuple[int, Any]] | None = None
) -> None:
    """Answer GETs of the searches (fallback) by URL; `answers` overrides some of them."""
    pairs = zip(SEARCHES, search_answers(), strict=True)
    table = {unquote(f"{BASE}/{s}"): (200, a) for s, a in pairs}
    table.update({unquote(f"{BASE}/{s}"): v for s, v in (answers or {}).items()})

    def callback(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        status, body = table[unquote(str(request.url))]
        return status, {"Content-Type": "application/fhir+json"}, json.dumps(body)

    rsps.add_callback(responses.GET, ANY_URL, callback=callback)


def failure(kind: type[SmartAppError], call: Callable[[], object]) -> Any:
    """Run `call`, expect `kind` (exactly), and check the bearer token is in no message."""
    with pytest.raises(kind) as info:
        call()
    error = info.value
    assert type(error) is kind
    assert BEARER not in str(error)
    assert BEARER not in getattr(error, "outcome", "")
    assert all(BEARER not in str(a) for a in error.args)
    return error


def ids(record: PatientRecord) -> set[str]:
    """The ids of the record's resources."""
    return {str(r.get("id")) for r in record.resources}


def sent_urls(rsps: responses.RequestsMock) -> list[str]:
    """The unquoted URLs of the GETs sent, sorted."""
    return sorted(unquote(str(c.request.url)) for c in rsps.calls if c.request.method == "GET")


# 1. HTTP status -> typed error -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (401, FhirUnauthorized),
        (403, FhirForbidden),
        (409, FhirConflict),
        (410, FhirNotFound),
        (412, FhirConflict),
        (500, FhirServerError),
        (502, FhirServerError),
    ],
)
def test_batch_post_status_maps_to_typed_error(
    rsps: responses.RequestsMock, waits: list[float], status: int, kind: type[FhirError]
) -> None:
    """A failed batch POST raises the typed error with its status and the outcome text."""
    rsps.add(responses.POST, BASE, status=status, json=outcome())
    gw = gateway(waits)
    error = failure(kind, lambda: gw.read_patient(PID))
    assert error.status == status
    assert DIAGNOSTICS in str(error)
    assert error.outcome == DIAGNOSTICS
    assert str(status) in str(error)
    assert len(rsps.calls) == 1
    assert gw.requests_sent == 1
    assert waits == []


@pytest.mark.parametrize(
    ("index", "status", "kind", "code"),
    [
        (0, "404 Not Found", FhirNotFound, 404),
        (0, "410 Gone", FhirNotFound, 410),
        (0, "401 Unauthorized", FhirUnauthorized, 401),
        (LABS, "422 Unprocessable Entity", FhirUnprocessable, 422),
        (LABS, "400 Bad Request", FhirUnprocessable, 400),
        (CONDITION, "403 Forbidden", FhirForbidden, 403),
        (CONDITION, "409 Conflict", FhirConflict, 409),
        (CONDITION, "500 Internal Server Error", FhirServerError, 500),
    ],
)
def test_batch_entry_status_maps_to_typed_error(
    rsps: responses.RequestsMock,
    waits: list[float],
    index: int,
    status: str,
    kind: type[FhirError],
    code: int,
) -> None:
    """A failed entry of a batch-response raises the typed error with its outcome text."""
    body = batch_response()
    body["entry"][index] = failed_entry(status)
    rsps.add(responses.POST, BASE, json=body)
    gw = gateway(waits)
    error = failure(kind, lambda: gw.read_patient(PID))
    assert error.status == code
    assert DIAGNOSTICS in str(error)
    assert SEARCHES[index].split("?", 1)[0] in str(error)
    assert len(rsps.calls) == 1
    assert gw.requests_sent == 1


@pytest.mark.parametrize(
    ("status", "kind"),
    [("400 Bad Request", None), ("422 Unprocessable", None), ("500 Error", FhirServerError)],
)
def test_refused_text_search_is_noted_a_failed_one_is_an_error(
    rsps: responses.RequestsMock,
    waits: list[float],
    status: str,
    kind: type[FhirError] | None,
) -> None:
    """A 4xx on the titer search by text (an optional search) is a refusal the read notes and
    works around with one more batch; a 5xx there is still the server's error."""
    text = next(i for i, s in enumerate(SEARCHES) if "code:text=" in s)
    body = batch_response()
    body["entry"][text] = failed_entry(status, "unknown modifier :text")
    rsps.add(responses.POST, BASE, json=body)
    gw = gateway(waits)
    if kind is not None:
        error = failure(kind, lambda: gw.read_patient(PID))
        assert "unknown modifier :text" in error.outcome
        return
    rsps.add(responses.POST, BASE, json=batch_response([searchset()]))
    record = gw.read_patient(PID)
    assert record.refused == [SEARCHES[text]]
    assert record.requests == 2
    (lookup,) = json.loads(rsps.calls[1].request.body or b"")["entry"]
    assert "category=laboratory" in lookup["request"]["url"]


def test_batch_entry_outcome_as_resource(rsps: responses.RequestsMock, waits: list[float]) -> None:
    """A failed entry whose OperationOutcome is its resource still reports the diagnostics."""
    body = batch_response()
    body["entry"][0] = {"resource": outcome(), "response": {"status": "404 Not Found"}}
    rsps.add(responses.POST, BASE, json=body)
    error = failure(FhirNotFound, lambda: gateway(waits).read_patient(PID))
    assert error.status == 404
    assert DIAGNOSTICS in str(error)


def test_fallback_get_patient_404(rsps: responses.RequestsMock, waits: list[float]) -> None:
    """Batch refused, then GET Patient answers 404: FhirNotFound with the outcome text."""
    rsps.add(responses.POST, BASE, status=405, json=outcome("batch is not supported"))
    serve_gets(rsps, {SEARCHES[0]: (404, outcome())})
    error = failure(FhirNotFound, lambda: gateway(waits).read_patient(PID))
    assert error.status == 404
    assert DIAGNOSTICS in str(error)
    assert "batch is not supported" not in str(error)


def test_fallback_get_search_422(rsps: responses.RequestsMock, waits: list[float]) -> None:
    """Batch refused (400), then a search GET answers 422: FhirUnprocessable with the text."""
    rsps.add(responses.POST, BASE, status=400, json=outcome("no batch"))
    serve_gets(rsps, {SEARCHES[LABS]: (422, outcome("unknown code system"))})
    error = failure(FhirUnprocessable, lambda: gateway(waits).read_patient(PID))
    assert error.status == 422
    assert "unknown code system" in str(error)


# 2. Retries of reads ---------------------------------------------------------------------------


def test_429_then_200_succeeds(rsps: responses.RequestsMock, waits: list[float]) -> None:
    """One 429 without Retry-After, then the batch-response: read succeeds after one backoff."""
    rsps.add(responses.POST, BASE, status=429, json=outcome())
    rsps.add(responses.POST, BASE, json=batch_response())
    gw = gateway(waits)
    record = gw.read_patient(PID)
    assert record.resources[0]["resourceType"] == "Patient"
    assert ids(record) == {PID} | {f"r{i}" for i in range(1, len(SEARCHES))}
    assert waits == [0.5]
    assert len(rsps.calls) == 2
    assert gw.requests_sent == 2
    assert record.requests == 2


def test_503_then_200_succeeds(rsps: responses.RequestsMock, waits: list[float]) -> None:
    """503 is retried on reads like 429."""
    rsps.add(responses.POST, BASE, status=503)
    rsps.add(responses.POST, BASE, json=batch_response())
    record = gateway(waits).read_patient(PID)
    assert record.patient_id == PID
    assert waits == [0.5]
    assert len(rsps.calls) == 2


@pytest.mark.parametrize(("header", "expected"), [("2", 2.0), ("0", 0.0), (" 7 ", 7.0)])
def test_retry_after_seconds(
    rsps: responses.RequestsMock, waits: list[float], header: str, expected: float
) -> None:
    """Retry-After in delta-seconds is the wait."""
    rsps.add(responses.POST, BASE, status=429, headers={"Retry-After": header})
    rsps.add(responses.POST, BASE, json=batch_response())
    gateway(waits).read_patient(PID)
    assert waits == [expected]


def test_retry_after_http_date(rsps: responses.RequestsMock, waits: list[float]) -> None:
    """Retry-After as an HTTP date 30 s ahead waits about 30 s."""
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    header = email.utils.format_datetime(when, usegmt=True)
    rsps.add(responses.POST, BASE, status=429, headers={"Retry-After": header})
    rsps.add(responses.POST, BASE, json=batch_response())
    gateway(waits, max_wait_s=60.0).read_patient(PID)
    assert len(waits) == 1
    assert 25.0 < waits[0] <= 30.0


def test_retry_after_http_date_in_past(rsps: responses.RequestsMock, waits: list[float]) -> None:
    """Retry-After as an HTTP date already past waits 0 s, not a negative time."""
    header = "Wed, 21 Oct 2015 07:28:00 GMT"
    rsps.add(responses.POST, BASE, status=503, headers={"Retry-After": header})
    rsps.add(responses.POST, BASE, json=batch_response())
    gateway(waits).read_patient(PID)
    assert waits == [0.0]


def test_retry_after_garbage_falls_back_to_backoff(
    rsps: responses.RequestsMock, waits: list[float]
) -> None:
    """A Retry-After that is neither seconds nor a date uses the exponential backoff."""
    rsps.add(responses.POST, BASE, status=429, headers={"Retry-After": "soon"})
    rsps.add(responses.POST, BASE, status=429, headers={"Retry-After": "1.5"})
    rsps.add(responses.POST, BASE, json=batch_response())
    gateway(waits).read_patient(PID)
    assert waits == [0.5, 1.0]


def test_exponential_backoff_without_header(
    rsps: responses.RequestsMock, waits: list[float]
) -> None:
    """Without Retry-After the waits double from backoff_s: 0.5, 1.0, 2.0, 4.0."""
    for _ in range(4):
        rsps.add(responses.POST, BASE, status=429)
    rsps.add(responses.POST, BASE, json=batch_response())
    gw = gateway(waits, retries=4)
    gw.read_patient(PID)
    assert waits == [0.5, 1.0, 2.0, 4.0]
    assert gw.requests_sent == 5
    assert len(rsps.calls) == 5


def test_waits_capped_at_max_wait(rsps: responses.RequestsMock, waits: list[float]) -> None:
    """Both Retry-After and the backoff are capped at Limits.max_wait_s."""
    rsps.add(responses.POST, BASE, status=429, headers={"Retry-After": "3600"})
    rsps.add(responses.POST, BASE, status=503)
    rsps.add(responses.POST, BASE, status=503)
    rsps.add(responses.POST, BASE, json=batch_response())
    gateway(waits, backoff_s=4.0, max_wait_s=5.0).read_patient(PID)
    assert waits == [5.0, 5.0, 5.0]


@pytest.mark.parametrize(("status", "kind"), [(429, FhirRateLimited), (503, FhirServerError)])
@pytest.mark.parametrize("retries", [0, 1, 3])
def test_retries_exhausted(
    rsps: responses.RequestsMock,
    waits: list[float],
    status: int,
    kind: type[FhirError],
    retries: int,
) -> None:
    """After Limits.retries retries the typed error is raised; exactly retries+1 requests."""
    rsps.add(responses.POST, BASE, status=status, json=outcome())
    gw = gateway(waits, retries=retries)
    error = failure(kind, lambda: gw.read_patient(PID))
    assert error.status == status
    assert DIAGNOSTICS in str(error)
    assert gw.requests_sent == retries + 1
    assert len(rsps.calls) == retries + 1
    assert waits == [0.5 * 2**i for i in range(retries)]


def test_fallback_get_retried(rsps: responses.RequestsMock, waits: list[float]) -> None:
    """A 429 on one fallback GET is retried after its Retry-After; the read completes."""
    rsps.add(responses.POST, BASE, status=501)
    patient_url = f"{BASE}/{SEARCHES[0]}"
    rsps.add(responses.GET, patient_url, status=429, headers={"Retry-After": "3"})
    rsps.add(responses.GET, patient_url, json=patient())
    serve_gets(rsps)
    gw = gateway(waits)
    record = gw.read_patient(PID)
    assert waits == [3.0]
    assert record.resources[0]["id"] == PID
    assert gw.requests_sent == len(rsps.calls) == 1 + len(SEARCHES) + 1


def test_next_page_retried(rsps: responses.RequestsMock, waits: list[float]) -> None:
    """A 503 on a next-page GET is retried with backoff."""
    answers = search_answers()
    page2 = f"{BASE}/Condition?patient={PID}&page=2"
    answers[CONDITION] = searchset({"resourceType": "Condition", "id": "c1"}, next_url=page2)
    rsps.add(responses.POST, BASE, json=batch_response(answers))
    rsps.add(responses.GET, page2, status=503)
    rsps.add(responses.GET, page2, json=searchset({"resourceType": "Condition", "id": "c2"}))
    record = gateway(waits).read_patient(PID)
    assert {"c1", "c2"} <= ids(record)
    assert waits == [0.5]
    assert len(rsps.calls) == 3


# 3. What is not retried ------------------------------------------------------------------------


def test_500_not_retried_on_reads(rsps: responses.RequestsMock, waits: list[float]) -> None:
    """A 500 to the batch POST is raised at once: no wait, one request."""
    rsps.add(responses.POST, BASE, status=500, json=outcome())
    gw = gateway(waits, retries=5)
    error = failure(FhirServerError, lambda: gw.read_patient(PID))
    assert error.status == 500
    assert waits == []
    assert gw.requests_sent == len(rsps.calls) == 1


def test_500_on_next_page_not_retried(rsps: responses.RequestsMock, waits: list[float]) -> None:
    """A 500 to a next-page GET is raised at once."""
    answers = search_answers()
    page2 = f"{BASE}/Condition?patient={PID}&page=2"
    answers[CONDITION] = searchset(next_url=page2)
    rsps.add(responses.POST, BASE, json=batch_response(answers))
    rsps.add(responses.GET, page2, status=500, json=outcome())
    gw = gateway(waits)
    error = failure(FhirServerError, lambda: gw.read_patient(PID))
    assert error.status == 500
    assert waits == []
    assert gw.requests_sent == len(rsps.calls) == 2


@pytest.mark.parametrize(("status", "kind"), [(429, FhirRateLimited), (503, FhirAnswerLost)])
def test_transaction_never_retried(
    rsps: responses.RequestsMock, waits: list[float], status: int, kind: type[FhirError]
) -> None:
    """429 or 503 to a transaction POST: one request, no wait, the typed error (a 5xx may
    follow a commit, so its outcome is lost, not refused)."""
    rsps.add(responses.POST, BASE, status=status, headers={"Retry-After": "1"}, json=outcome())
    gw = gateway(waits, retries=3)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": []}
    error = failure(kind, lambda: gw.transaction(bundle))
    assert error.status == status
    assert DIAGNOSTICS in str(error)
    assert waits == []
    assert gw.requests_sent == len(rsps.calls) == 1
    assert json.loads(rsps.calls[0].request.body or "") == bundle


def test_transaction_wrong_answer(rsps: responses.RequestsMock, waits: list[float]) -> None:
    """A 200 to a transaction that is not a transaction-response: the answer is lost."""
    rsps.add(responses.POST, BASE, json=batch_response())
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": []}
    failure(FhirAnswerLost, lambda: gateway(waits).transaction(bundle))


# 4. Batch refused -> parallel GETs -------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (405, outcome("batch not allowed")),
        (501, outcome("batch not implemented")),
        (404, outcome("no such endpoint")),
        (400, outcome("bad request")),
        (415, None),
        (422, outcome("cannot process")),
        (200, {"resourceType": "Bundle", "type": "searchset", "entry": []}),
        (200, {"resourceType": "CapabilityStatement", "status": "active"}),
    ],
)
def test_batch_refused_falls_back_to_gets(
    rsps: responses.RequestsMock, waits: list[float], status: int, body: Any
) -> None:
    """A refused batch falls back to a GET of every search; the record is complete."""
    rsps.add(responses.POST, BASE, status=status, json=body)
    serve_gets(rsps)
    gw = gateway(waits)
    record = gw.read_patient(PID)
    assert record.resources[0] == patient()
    assert ids(record) == {PID} | {f"r{i}" for i in range(1, len(SEARCHES))}
    assert rsps.calls[0].request.method == "POST"
    assert sent_urls(rsps) == sorted(unquote(f"{BASE}/{s}") for s in SEARCHES)
    assert len(rsps.calls) == 1 + len(SEARCHES)
    assert gw.requests_sent == record.requests == 1 + len(SEARCHES)
    assert waits == []


def test_batch_post_carries_every_search(rsps: responses.RequestsMock, waits: list[float]) -> None:
    """The batch POST is a batch Bundle of GETs of exactly patient_searches(), in order."""
    rsps.add(responses.POST, BASE, json=batch_response())
    gateway(waits).read_patient(PID)
    sent = json.loads(rsps.calls[0].request.body or "")
    assert sent["resourceType"] == "Bundle"
    assert sent["type"] == "batch"
    assert [e["request"] for e in sent["entry"]] == [{"method": "GET", "url": s} for s in SEARCHES]


# 5. next links and the page bound --------------------------------------------------------------


def test_next_link_followed(rsps: responses.RequestsMock, waits: list[float]) -> None:
    """A searchset with a next link costs one more GET; both pages end up in the record."""
    answers = search_answers()
    page2 = f"{BASE}/Condition?patient={PID}&page=2"
    answers[CONDITION] = searchset({"resourceType": "Condition", "id": "c1"}, next_url=page2)
    rsps.add(responses.POST, BASE, json=batch_response(answers))
    rsps.add(responses.GET, page2, json=searchset({"resourceType": "Condition", "id": "c2"}))
    gw = gateway(waits)
    record = gw.read_patient(PID)
    assert {"c1", "c2"} <= ids(record)
    assert record.truncated == []
    assert len(rsps.calls) == 2
    assert rsps.calls[1].request.url == page2
    assert gw.requests_sent == record.requests == 2


def test_relative_next_link_followed(rsps: responses.RequestsMock, waits: list[float]) -> None:
    """A relative next link is resolved against the base URL."""
    answers = search_answers()
    answers[CONDITION] = searchset(next_url=f"Condition?patient={PID}&page=2")
    rsps.add(responses.POST, BASE, json=batch_response(answers))
    rsps.add(
        responses.GET,
        f"{BASE}/Condition?patient={PID}&page=2",
        json=searchset({"resourceType": "Condition", "id": "c2"}),
    )
    record = gateway(waits).read_patient(PID)
    assert "c2" in ids(record)
    assert len(rsps.calls) == 2


@pytest.mark.parametrize("max_pages", [1, 2, 3])
def test_page_bound_truncates(
    rsps: responses.RequestsMock, waits: list[float], max_pages: int
) -> None:
    """A never-ending next chain reads exactly max_pages pages and records the truncation."""

    def page(n: int) -> dict[str, Any]:
        following = f"{BASE}/Condition?patient={PID}&page={n + 1}"
        return searchset({"resourceType": "Condition", "id": f"c{n}"}, next_url=following)

    def callback(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        n = int(parse_qs(urlsplit(str(request.url)).query)["page"][0])
        return 200, {"Content-Type": "application/fhir+json"}, json.dumps(page(n))

    answers = search_answers()
    answers[CONDITION] = page(1)
    rsps.add(responses.POST, BASE, json=batch_response(answers))
    if max_pages > 1:
        rsps.add_callback(responses.GET, ANY_URL, callback=callback)
    gw = gateway(waits, max_pages=max_pages)
    record = gw.read_patient(PID)
    conditions = {r["id"] for r in record.resources if r["resourceType"] == "Condition"}
    assert conditions == {f"c{n}" for n in range(1, max_pages + 1)}
    (condition_search,) = [u for u in patient_searches(PID) if u.startswith("Condition?")]
    assert record.truncated == [condition_search]
    assert len(rsps.calls) == max_pages
    assert gw.requests_sent == record.requests == max_pages


@pytest.mark.parametrize(
    "link",
    [
        "http://evil.test/fhir/Condition?patient=p1&page=2",
        "http://fhir.test.evil.test/fhir/Condition?patient=p1&page=2",
        "https://evil.test/fhir",
        "http://fhir.test@evil.test/fhir/Condition?page=2",
    ],
)
def test_next_link_off_server_not_followed(
    rsps: responses.RequestsMock, waits: list[float], link: str
) -> None:
    """A next link to another host is a protocol error and no request goes there."""
    answers = search_answers()
    answers[CONDITION] = searchset(next_url=link)
    rsps.add(responses.POST, BASE, json=batch_response(answers))
    gw = gateway(waits)
    failure(FhirProtocolError, lambda: gw.read_patient(PID))
    assert len(rsps.calls) == 1
    assert gw.requests_sent == 1
    assert all(urlsplit(str(c.request.url)).hostname == HOST for c in rsps.calls)


# 6. Unreachable server and the bearer token ----------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        requests.ConnectionError(f"refused; headers were Authorization: Bearer {BEARER}"),
        requests.ReadTimeout(f"timed out with Bearer {BEARER}"),
    ],
)
def test_unreachable_names_host_not_token(
    rsps: responses.RequestsMock, waits: list[float], exc: requests.RequestException
) -> None:
    """A network failure is FhirUnreachable naming the host, never the token; not retried."""
    rsps.add(responses.POST, BASE, body=exc)
    gw = gateway(waits)
    error = failure(FhirUnreachable, lambda: gw.read_patient(PID))
    assert HOST in str(error)
    assert error.status is None
    assert error.__cause__ is None
    assert error.__suppress_context__
    assert gw.requests_sent == len(rsps.calls) == 1
    assert waits == []


def test_unreachable_during_fallback(rsps: responses.RequestsMock, waits: list[float]) -> None:
    """A network failure on a fallback GET is FhirUnreachable naming the host."""
    rsps.add(responses.POST, BASE, status=405)
    rsps.add(responses.GET, ANY_URL, body=requests.ConnectionError(BEARER))
    error = failure(FhirUnreachable, lambda: gateway(waits).read_patient(PID))
    assert HOST in str(error)


def test_authorization_header_on_every_request(
    rsps: responses.RequestsMock, waits: list[float]
) -> None:
    """POST, fallback GETs and next-page GETs all carry 'Bearer <token>' and FHIR JSON."""
    page2 = f"{BASE}/Condition?patient={PID}&page=2"
    rsps.add(responses.POST, BASE, status=405)
    rsps.add(responses.GET, page2, json=searchset({"resourceType": "Condition", "id": "c2"}))
    serve_gets(rsps, {SEARCHES[CONDITION]: (200, searchset(next_url=page2))})
    gateway(waits).read_patient(PID)
    assert len(rsps.calls) == 1 + len(SEARCHES) + 1
    for call in rsps.calls:
        assert call.request.headers["Authorization"] == f"Bearer {BEARER}"
        assert call.request.headers["Accept"] == "application/fhir+json"


def test_no_token_no_authorization_header(rsps: responses.RequestsMock) -> None:
    """Without a bearer token no Authorization header is sent."""
    rsps.add(responses.POST, BASE, json=batch_response())
    FhirGateway(BASE, sleep=lambda _s: None).read_patient(PID)
    assert "Authorization" not in rsps.calls[0].request.headers


# 7. Answers that are not FHIR JSON -------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("<html><body>Login</body></html>", "text/html"),
        ('{"resourceType": "Bundle", ', "application/fhir+json"),
        ("", "application/fhir+json"),
    ],
)
def test_non_json_200_is_protocol_error(
    rsps: responses.RequestsMock, waits: list[float], body: str, content_type: str
) -> None:
    """A 200 to the batch POST whose body is not JSON is FhirProtocolError, no fallback."""
    rsps.add(responses.POST, BASE, body=body, content_type=content_type)
    gw = gateway(waits)
    failure(FhirProtocolError, lambda: gw.read_patient(PID))
    assert gw.requests_sent == len(rsps.calls) == 1


def test_non_json_next_page_is_protocol_error(
    rsps: responses.RequestsMock, waits: list[float]
) -> None:
    """A next page whose body is not JSON is FhirProtocolError."""
    answers = search_answers()
    page2 = f"{BASE}/Condition?patient={PID}&page=2"
    answers[CONDITION] = searchset(next_url=page2)
    rsps.add(responses.POST, BASE, json=batch_response(answers))
    rsps.add(responses.GET, page2, body="<html>proxy error</html>", content_type="text/html")
    failure(FhirProtocolError, lambda: gateway(waits).read_patient(PID))


def test_error_with_non_json_body(rsps: responses.RequestsMock, waits: list[float]) -> None:
    """An error status with an HTML body keeps its type and status, with no outcome text."""
    rsps.add(responses.POST, BASE, status=502, body="<html>Bad Gateway</html>")
    error = failure(FhirServerError, lambda: gateway(waits).read_patient(PID))
    assert error.status == 502
    assert error.outcome == ""


@pytest.mark.parametrize("delta", [-1, 1, -len(SEARCHES)])
def test_batch_response_wrong_entry_count(
    rsps: responses.RequestsMock, waits: list[float], delta: int
) -> None:
    """A batch-response with too few or too many entries is FhirProtocolError."""
    body = batch_response()
    entries = body["entry"]
    body["entry"] = entries[:delta] if delta < 0 else entries + entries[-delta:]
    rsps.add(responses.POST, BASE, json=body)
    gw = gateway(waits)
    error = failure(FhirProtocolError, lambda: gw.read_patient(PID))
    assert f"{len(SEARCHES) + delta} answers to {len(SEARCHES)} searches" in str(error)
    assert gw.requests_sent == len(rsps.calls) == 1


def test_patient_entry_not_a_patient(rsps: responses.RequestsMock, waits: list[float]) -> None:
    """A 200 Patient entry that holds something else is FhirProtocolError."""
    answers = search_answers()
    answers[0] = {"resourceType": "Group", "id": PID}
    rsps.add(responses.POST, BASE, json=batch_response(answers))
    failure(FhirProtocolError, lambda: gateway(waits).read_patient(PID))


def test_search_entry_not_a_searchset(rsps: responses.RequestsMock, waits: list[float]) -> None:
    """A 200 search entry that is not a searchset is FhirProtocolError."""
    answers = search_answers()
    answers[CONDITION] = {"resourceType": "Bundle", "type": "collection"}
    rsps.add(responses.POST, BASE, json=batch_response(answers))
    failure(FhirProtocolError, lambda: gateway(waits).read_patient(PID))


@pytest.mark.parametrize(
    "entry", [None, "200 OK", {"resource": {"resourceType": "Bundle"}, "response": "200 OK"}]
)
def test_malformed_batch_entry_is_protocol_error(
    rsps: responses.RequestsMock, waits: list[float], entry: Any
) -> None:
    """A batch-response entry that is not an entry object is a typed FhirError."""
    body = batch_response()
    body["entry"][CONDITION] = entry
    rsps.add(responses.POST, BASE, json=body)
    with pytest.raises(FhirProtocolError):
        gateway(waits).read_patient(PID)


def test_retry_after_unicode_digit_falls_back(waits: list[float]) -> None:
    """A Retry-After of a non-ASCII digit is ignored like any unparseable value."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.POST, BASE, status=429, headers={"Retry-After": "\u00b2"})
        rsps.add(responses.POST, BASE, json=batch_response())
        gateway(waits).read_patient(PID)
        assert waits == [0.5]
        assert len(rsps.calls) == 2


# 8. Input refused before any request -----------------------------------------------------------


@pytest.mark.parametrize("pid", ["", "a/b", "x" * 65, "a b", "p1\n", "../Patient", "p1?x=1"])
def test_invalid_patient_id_sends_nothing(
    rsps: responses.RequestsMock, waits: list[float], pid: str
) -> None:
    """An id that is not a FHIR id is an InputError before any HTTP request."""
    gw = gateway(waits)
    error = failure(InputError, lambda: gw.read_patient(pid))
    assert "not a FHIR id" in str(error)
    assert len(rsps.calls) == 0
    assert gw.requests_sent == 0


def test_longest_valid_patient_id_is_read(rsps: responses.RequestsMock, waits: list[float]) -> None:
    """A 64-character id with '-' and '.' is a FHIR id and is read."""
    pid = "A-1." + "x" * 60
    rsps.add(responses.POST, BASE, json=batch_response(search_answers(pid)))
    record = gateway(waits).read_patient(pid)
    assert record.patient_id == pid
    assert len(rsps.calls) == 1


@pytest.mark.parametrize(
    "base", ["ftp://fhir.test/fhir", "fhir.test/fhir", "http://", "", "file:///srv/fhir"]
)
def test_base_url_not_http_refused(base: str) -> None:
    """A base URL that is not http(s) with a host is an InputError at construction."""
    error = failure(InputError, lambda: FhirGateway(base, bearer_token=BEARER))
    assert "not an http(s) URL" in str(error)


def test_token_echoed_by_the_server_is_redacted(rsps: responses.RequestsMock) -> None:
    """A server that echoes the token in its OperationOutcome does not leak it into errors."""
    body = outcome(f"bad token {BEARER}")
    rsps.add(responses.POST, BASE, status=401, json=body)
    gw = FhirGateway(BASE, bearer_token=BEARER, sleep=lambda _: None)
    with pytest.raises(FhirUnauthorized) as caught:
        gw.read_patient(PID)
    assert BEARER not in str(caught.value)
    assert "[redacted]" in caught.value.outcome


# 9. Bounded answers, malformed URLs and the record's base ---------------------------------------


def _answer_size() -> int:
    """The byte length of the batch-response as the fake sends it."""
    return len(json.dumps(batch_response()).encode("utf-8"))


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "streamed"])
def test_answer_larger_than_the_bound_is_refused(
    rsps: responses.RequestsMock, waits: list[float], declared: bool
) -> None:
    """An answer past max_answer_bytes is a FhirProtocolError naming the bound, with or
    without a Content-Length header (then the body is read in chunks and cut at the bound)."""
    limit = _answer_size() - 1
    headers = {"Content-Length": str(_answer_size())} if declared else {}
    rsps.add(
        responses.POST,
        BASE,
        body=json.dumps(batch_response()),
        content_type="application/fhir+json",
        headers=headers,
    )
    gw = gateway(waits, max_answer_bytes=limit)
    error = failure(FhirProtocolError, lambda: gw.read_patient(PID))
    assert f"larger than {limit} bytes" in str(error)
    assert "bundle_max_bytes" in str(error)
    assert gw.requests_sent == 1


def test_answer_at_the_bound_is_read(rsps: responses.RequestsMock, waits: list[float]) -> None:
    rsps.add(responses.POST, BASE, json=batch_response())
    record = gateway(waits, max_answer_bytes=_answer_size()).read_patient(PID)
    assert record.patient_id == PID


def test_error_answer_larger_than_the_bound_is_refused_too(
    rsps: responses.RequestsMock, waits: list[float]
) -> None:
    rsps.add(responses.POST, BASE, status=500, body="x" * 5000)
    error = failure(
        FhirProtocolError, lambda: gateway(waits, max_answer_bytes=1024).read_patient(PID)
    )
    assert "larger than 1024 bytes" in str(error)


def test_the_default_bound_is_the_policys() -> None:
    assert Limits().max_answer_bytes == DEFAULT_POLICY.bundle_max_bytes


@pytest.mark.parametrize(
    "body",
    ["[" * 100_000 + "]" * 100_000, '{"resourceType": "Bundle", "total": ' + "9" * 5000 + "}"],
    ids=["nested-too-deeply", "5000-digit-number"],
)
def test_answer_json_python_cannot_hold_is_a_protocol_error(
    rsps: responses.RequestsMock, waits: list[float], body: str
) -> None:
    rsps.add(responses.POST, BASE, body=body, content_type="application/fhir+json")
    failure(FhirProtocolError, lambda: gateway(waits).read_patient(PID))


@pytest.mark.parametrize(
    "base", ["http://[::1", "http://[::1/fhir", "http://fhir.test:99999/fhir", "http://:80/fhir"]
)
def test_malformed_base_url_is_an_input_error(base: str) -> None:
    error = failure(InputError, lambda: FhirGateway(base, bearer_token=BEARER))
    assert repr(base) in str(error)


def test_ipv6_base_url_is_accepted() -> None:
    assert FhirGateway("http://[::1]:8080/fhir/").base_url == "http://[::1]:8080/fhir"


def test_record_read_from_a_server_has_absolute_full_urls(
    rsps: responses.RequestsMock, waits: list[float]
) -> None:
    rsps.add(responses.POST, BASE, json=batch_response())
    record = gateway(waits).read_patient(PID)
    assert record.base_url == BASE
    urls = [e["fullUrl"] for e in record.bundle()["entry"]]
    assert urls[0] == f"{BASE}/Patient/{PID}"
    assert all(u.startswith(f"{BASE}/") for u in urls)
    assert len(urls) == len(record.resources)


def test_answer_with_a_lone_surrogate_is_a_protocol_error(
    rsps: responses.RequestsMock, waits: list[float]
) -> None:
    body = json.dumps(batch_response()).replace('"p1"', '"p1\\ud800"', 1)
    rsps.add(responses.POST, BASE, body=body, content_type="application/fhir+json")
    error = failure(FhirProtocolError, lambda: gateway(waits).read_patient(PID))
    assert "surrogate" in str(error)
