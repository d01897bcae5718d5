"""FhirGateway.read: one resource by its relative reference, one GET (429/503 retried), typed
errors, and nothing sent for what is not a relative reference."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
import responses

from smart_app.errors import (
    FhirForbidden,
    FhirNotFound,
    FhirProtocolError,
    FhirUnreachable,
    InputError,
)
from smart_app.fhir.gateway import FhirGateway, Limits

BASE = "http://fhir.test/fhir"
URL = f"{BASE}/Practitioner/dr-lee"
BEARER = "eyJhbGciOi.bearer-value-that-must-never-leak.Zx9"
PRACTITIONER = {"resourceType": "Practitioner", "id": "dr-lee", "name": [{"family": "Lee"}]}


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    """The HTTP fake; every registered answer must be used."""
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


def _gateway(waits: list[float] | None = None) -> FhirGateway:
    """A gateway on BASE with a token, recording its waits instead of sleeping."""
    return FhirGateway(
        BASE,
        bearer_token=BEARER,
        limits=Limits(retries=2),
        sleep=(waits if waits is not None else []).append,
    )


def test_a_read_is_one_get_with_the_token(rsps: responses.RequestsMock) -> None:
    rsps.get(URL, json=PRACTITIONER)
    gateway = _gateway()
    assert gateway.read("Practitioner/dr-lee") == PRACTITIONER
    assert gateway.requests_sent == 1
    (call,) = rsps.calls
    assert call.request.method == "GET"
    assert call.request.headers["Authorization"] == f"Bearer {BEARER}"


def test_a_rate_limited_read_is_retried(rsps: responses.RequestsMock) -> None:
    rsps.get(URL, status=429, headers={"Retry-After": "1"})
    rsps.get(URL, json=PRACTITIONER)
    waits: list[float] = []
    gateway = _gateway(waits)
    assert gateway.read("Practitioner/dr-lee")["id"] == "dr-lee"
    assert waits == [1.0]
    assert gateway.requests_sent == 2


@pytest.mark.parametrize(("status", "error"), [(403, FhirForbidden), (404, FhirNotFound)])
def test_a_refused_read_raises_typed(
    rsps: responses.RequestsMock, status: int, error: type[Exception]
) -> None:
    rsps.get(URL, status=status, json={"resourceType": "OperationOutcome", "issue": []})
    with pytest.raises(error, match=r"^read Practitioner: "):
        _gateway().read("Practitioner/dr-lee")


def test_an_answer_of_another_type_is_a_protocol_error(rsps: responses.RequestsMock) -> None:
    rsps.get(URL, json={"resourceType": "Patient", "id": "dr-lee"})
    with pytest.raises(FhirProtocolError, match="not a Practitioner"):
        _gateway().read("Practitioner/dr-lee")


def test_an_unreachable_server_is_fhir_unreachable(rsps: responses.RequestsMock) -> None:
    rsps.get(URL, body=requests.ConnectionError("refused"))
    with pytest.raises(FhirUnreachable, match=r"cannot reach fhir\.test"):
        _gateway().read("Practitioner/dr-lee")


@pytest.mark.parametrize(
    "reference",
    [
        "",
        "Practitioner",
        "Practitioner/",
        "practitioner/dr-lee",
        "Practitioner/dr-lee/_history/2",
        "Practitioner?name=Lee",
        "https://other.example/fhir/Practitioner/dr-lee",
        "Practitioner/../Patient/p1",
    ],
)
def test_what_is_not_a_relative_reference_is_refused_unsent(
    rsps: responses.RequestsMock, reference: str
) -> None:
    gateway = _gateway()
    with pytest.raises(InputError, match="is not a relative reference"):
        gateway.read(reference)
    assert gateway.requests_sent == 0
