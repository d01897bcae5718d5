"""Credentials out of error messages: the redaction function, and a server (an HTTP-level fake)
echoing the token lower-cased, in part and as the Authorization header it received, on reads,
writes and per-entry answers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import responses

from smart_app.errors import FhirAnswerLost, FhirError, FhirUnauthorized, WriteIncomplete
from smart_app.fhir import codes
from smart_app.fhir.gateway import FhirGateway
from smart_app.fhir.redaction import MASK, MIN_PART, redact
from smart_app.fhir.transaction import send
from smart_app.fhir.written import Strategy

BASE = "http://fhir.test/fhir"
TOKEN = "eyJhbGciOiJSUzM4NCJ9.Zm9vYmFyYmF6cXV1eA.Sig-Nature_123456"  # noqa: S105 - a test value
OTHER = "a9F3kQ7zP2mX8vL1tR6yW4nB0cJ5hD"
"""A bearer-looking value that is not the gateway's token (a refresh token, another user's)."""


def leaks(text: str, secret: str = TOKEN) -> list[str]:
    """The runs of MIN_PART characters of `secret` (any case) still in `text`."""
    folded = text.lower()
    runs = {secret[i : i + MIN_PART].lower() for i in range(len(secret) - MIN_PART + 1)}
    return sorted(r for r in runs if r in folded)


# the function ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "echo",
    [
        TOKEN,
        TOKEN.lower(),
        TOKEN.upper(),
        TOKEN.swapcase(),
        TOKEN[:12],
        TOKEN[:30],
        TOKEN[10:22],
        TOKEN[-12:],
        TOKEN[-25:].lower(),
        f"{TOKEN[:15]}...{TOKEN[-15:]}",
    ],
    ids=[
        "exact",
        "lower",
        "upper",
        "swapped",
        "prefix-12",
        "prefix-30",
        "middle-12",
        "suffix-12",
        "suffix-lower",
        "both-ends",
    ],
)
def test_the_token_in_any_case_or_any_run_of_12_is_redacted(echo: str) -> None:
    text = f"invalid token '{echo}' for this request"
    redacted = redact(text, secret=TOKEN)
    assert leaks(redacted) == []
    assert MASK in redacted
    assert redacted.startswith("invalid token '") and redacted.endswith("' for this request")


def test_runs_shorter_than_12_are_kept_and_so_is_the_rest_of_the_text() -> None:
    """11 characters of the token is below the bound (a server's own words may share that
    much by chance); the surrounding words are never touched."""
    text = f"HAPI-0389: resource Patient/p1 is not known here ({TOKEN[5:16]})"
    assert redact(text, secret=TOKEN) == text


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        (f"Authorization: Bearer {OTHER}", "Authorization: Bearer "),
        (f"authorization=bearer {OTHER}", "authorization=bearer "),
        (f'{{"access_token": "{OTHER}", "token_type": "Bearer"}}', '{"access_token": "'),
        (f"grant_type=refresh_token&refresh_token={OTHER}&client_id=x", "refresh_token="),
        (f"'id_token': '{OTHER}'", "'id_token': '"),
        (f"client_secret={OTHER}", "client_secret="),
        ("Authorization: Basic emVvbGdlbnNtYTpzM2NyM3Q=", "Authorization: Basic "),
        (f"DPoP {OTHER}", "DPoP "),
    ],
)
def test_bearer_looking_values_are_redacted_without_knowing_the_token(text: str, kept: str) -> None:
    redacted = redact(text)
    assert OTHER not in redacted and "emVvbGdlbnNtYTpzM2NyM3Q" not in redacted
    assert kept + MASK in redacted, redacted


@pytest.mark.parametrize(
    "text",
    [
        "Bearer token required",
        "missing bearer token in the Authorization header",
        "authorization failed: the token has expired",
        "access_token: none",
        "",
    ],
)
def test_plain_words_about_tokens_are_kept(text: str) -> None:
    assert redact(text, secret=TOKEN) == text


def test_a_short_secret_is_redacted_whole_in_any_case() -> None:
    assert redact("got ABC123xyz!", secret="abc123XYZ")  # noqa: S106 == f"got {MASK}!"


# a server echoing it ----------------------------------------------------------------------


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    """The HTTP fake; every registered answer must be used."""
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


def outcome(text: str) -> dict[str, Any]:
    """An OperationOutcome with one error."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "security", "diagnostics": text}],
    }


Echo = Callable[[requests.PreparedRequest], str]
ECHOES: dict[str, Echo] = {
    "lower-cased": lambda request: f"token {TOKEN.lower()} is not valid here",
    "in part": lambda request: f"token {TOKEN[:20]}... expired; ends ...{TOKEN[-14:]}",
    "the Authorization header": lambda request: (
        f"refused Authorization: {request.headers['Authorization']}"
    ),
    "the header lower-cased": lambda request: f"refused {request.headers['Authorization'].lower()}",
}


def echoing(status: int, echo: Echo) -> Callable[[requests.PreparedRequest], Any]:
    """A server callback answering `status` with an OperationOutcome echoing the request."""

    def answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        return status, {"Content-Type": "application/fhir+json"}, json.dumps(outcome(echo(request)))

    return answer


def gateway() -> FhirGateway:
    """A gateway holding the token."""
    return FhirGateway(BASE, bearer_token=TOKEN, sleep=lambda _: None)


def shown(error: BaseException) -> str:
    """Everything an error page or a log line could show of an error."""
    return f"{error} {getattr(error, 'outcome', '')} {error.args!r}"


@dataclass(frozen=True)
class Refusal:
    """A gateway call the fake server answers with an error, echoing the token."""

    method: str
    url: str
    status: int
    call: Callable[[FhirGateway], object]
    error: type[FhirError]
    masked: bool
    """Whether the error's outcome shows the mask where the token was."""


REFUSALS = {
    "read-401": Refusal(
        responses.POST, BASE, 401, lambda g: g.read_patient("p1"), FhirUnauthorized, masked=True
    ),
    "write-500": Refusal(
        responses.POST,
        f"{BASE}/Task",
        500,
        lambda g: g.create({"resourceType": "Task", "status": "requested"}),
        FhirAnswerLost,
        masked=True,
    ),
    "write-403": Refusal(
        responses.PUT,
        f"{BASE}/Task/t1",
        403,
        lambda g: g.update("Task/t1", {"resourceType": "Task", "id": "t1"}),
        FhirError,
        masked=False,
    ),
}


@pytest.mark.parametrize("refusal", list(REFUSALS.values()), ids=list(REFUSALS))
@pytest.mark.parametrize("echo", list(ECHOES), ids=list(ECHOES))
def test_an_error_answer_with_the_token_echoed_names_no_part_of_it(
    rsps: responses.RequestsMock, echo: str, refusal: Refusal
) -> None:
    rsps.add_callback(refusal.method, refusal.url, callback=echoing(refusal.status, ECHOES[echo]))
    with pytest.raises(refusal.error) as caught:
        refusal.call(gateway())
    assert leaks(shown(caught.value)) == [], shown(caught.value)
    if refusal.masked:
        assert MASK in caught.value.outcome


def task_bundle() -> dict[str, Any]:
    """A composed transaction of one conditional create."""
    key = "k1/task/lab-draw/7"
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:t",
                "resource": {
                    "resourceType": "Task",
                    "identifier": [{"system": codes.APP_IDENTIFIER, "value": key}],
                    "status": "requested",
                },
                "request": {"method": "POST", "url": "Task", "ifNoneExist": f"identifier={key}"},
            }
        ],
    }


@pytest.mark.parametrize("echo", list(ECHOES), ids=list(ECHOES))
def test_an_entry_refused_inside_a_transaction_response_names_no_part_of_it(
    rsps: responses.RequestsMock, echo: str
) -> None:
    """The per-entry words of a transaction-response reach the report and the page."""

    def answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        said = outcome(ECHOES[echo](request))
        body = {
            "resourceType": "Bundle",
            "type": "transaction-response",
            "entry": [{"response": {"status": "403 Forbidden", "outcome": said}}],
        }
        return 200, {"Content-Type": "application/fhir+json"}, json.dumps(body)

    rsps.add_callback(responses.POST, BASE, callback=answer)
    with pytest.raises(WriteIncomplete) as caught:
        send(gateway(), task_bundle(), strategy=Strategy.TRANSACTION)
    details = " ".join(w.detail for w in caught.value.report.written)
    assert details.startswith("403: ")
    assert leaks(f"{shown(caught.value)} {details}") == [], details
