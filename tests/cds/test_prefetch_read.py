"""FhirGateway.read_patient with a CDS client's prefetch: what is prefetched is not asked for
again, the rest goes in one batch, `next` pages are still followed, the titer fallback too."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import responses

from smart_app.fhir.gateway import FhirGateway, patient_searches, titer_fallback_search
from tests.builders import searchset

BASE = "http://fhir.test/fhir"
PID = "p1"


def full() -> dict[str, Any]:
    """Every search answered: the Patient and empty searchsets, the titer fallback included."""
    answers: dict[str, Any] = {url: searchset() for url in patient_searches(PID)}
    answers[f"Patient/{PID}"] = {"resourceType": "Patient", "id": PID, "birthDate": "2026-06-10"}
    answers[titer_fallback_search(PID)] = searchset()
    return answers


@pytest.fixture
def server() -> Iterator[responses.RequestsMock]:
    """A fake server that answers batches entry by entry with empty searchsets."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:

        def batch(request: Any) -> tuple[int, dict[str, str], str]:
            """An empty searchset for every entry."""
            entries = json.loads(request.body)["entry"]
            answer = {
                "resourceType": "Bundle",
                "type": "batch-response",
                "entry": [
                    {"resource": searchset(), "response": {"status": "200 OK"}} for _ in entries
                ],
            }
            return 200, {}, json.dumps(answer)

        mock.add_callback(responses.POST, BASE, callback=batch)
        yield mock


def sent(mock: responses.RequestsMock) -> list[list[str]]:
    """The URLs of each batch sent."""
    return [
        [e["request"]["url"] for e in json.loads(call.request.body)["entry"]]
        for call in mock.calls
        if call.request.method == "POST"
    ]


def test_a_full_prefetch_sends_nothing(server: responses.RequestsMock) -> None:
    """Every search prefetched (the titer fallback too): no request at all."""
    record = FhirGateway(BASE).read_patient(PID, prefetched=full())
    assert len(server.calls) == 0 and record.requests == 0
    assert record.searched == [*patient_searches(PID)[1:], titer_fallback_search(PID)]


def test_only_what_is_missing_is_batched(server: responses.RequestsMock) -> None:
    """Two searches not prefetched: one batch of those two; the fallback is prefetched."""
    answers = full()
    conditions, labs = patient_searches(PID)[8], patient_searches(PID)[5]
    del answers[conditions]
    del answers[labs]
    FhirGateway(BASE).read_patient(PID, prefetched=answers)
    assert sent(server) == [[labs, conditions]]


def test_the_titer_fallback_is_read_when_not_prefetched(server: responses.RequestsMock) -> None:
    """No titer found and the fallback not prefetched: it alone is asked for."""
    answers = full()
    del answers[titer_fallback_search(PID)]
    FhirGateway(BASE).read_patient(PID, prefetched=answers)
    assert sent(server) == [[titer_fallback_search(PID)]]


def test_next_pages_of_a_prefetched_search_are_followed(server: responses.RequestsMock) -> None:
    """A prefetched searchset with a `next` link: that page is read from the server."""
    answers = full()
    weights = patient_searches(PID)[1]
    page_two = f"{BASE}/Observation?page=2"
    answers[weights] = searchset(next_url=page_two)
    server.add(responses.GET, page_two, json=searchset())
    record = FhirGateway(BASE).read_patient(PID, prefetched=answers)
    assert [call.request.url for call in server.calls] == [page_two]
    assert record.requests == 1
