"""Talks to a FHIR R4 server: one batch read per patient, one transaction per write."""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from smart_app.errors import (
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
)
from smart_app.fhir import codes
from smart_app.fhir.read import has_lone_surrogate
from smart_app.rules.policy import DEFAULT_POLICY

FHIR_JSON = "application/fhir+json"
RETRY_STATUSES = frozenset({429, 503})
BATCH_REFUSED = frozenset({400, 404, 405, 415, 422, 501})
"""Answers to a batch POST that mean 'this server does not do batch': fall back to GETs."""

Resource = dict[str, Any]

STATUS_ERRORS: dict[int, tuple[type[FhirError], str]] = {
    400: (FhirUnprocessable, "rejected (400)"),
    401: (FhirUnauthorized, "not authorized (401): sign in again"),
    403: (FhirForbidden, "forbidden (403): the granted scopes do not allow it"),
    404: (FhirNotFound, "not found (404)"),
    409: (FhirConflict, "conflict (409): changed by someone else"),
    410: (FhirNotFound, "not found (410)"),
    412: (FhirConflict, "conflict (412): changed by someone else"),
    422: (FhirUnprocessable, "rejected (422)"),
    429: (FhirRateLimited, "rate limited (429): try again later"),
}
"""Typed errors for 4xx statuses; every 5xx is a FhirServerError."""


@dataclass(frozen=True)
class Limits:
    """Bounds on one read: page size, pages per search, retries and their waits."""

    page_size: int = 100
    max_pages: int = 5
    retries: int = 3
    backoff_s: float = 0.5
    max_wait_s: float = 10.0
    timeout_s: float = 30.0
    parallel_gets: int = 4
    max_answer_bytes: int = DEFAULT_POLICY.bundle_max_bytes
    """The largest answer read from the server (policy.bundle_max_bytes); larger are refused."""


@dataclass
class PatientRecord:
    """Everything read for one patient, and how it was read."""

    patient_id: str
    resources: list[Resource]
    requests: int = 0
    truncated: list[str] = field(default_factory=list)
    base_url: str | None = None
    """The server's base URL; None for a record not read from a server."""

    def bundle(self) -> Resource:
        """A collection Bundle of the resources, the shape read.py takes.

        Each fullUrl is the resource's absolute URL on the server it was read from (relative
        'Type/id' without a base), so a reference to the Patient by its absolute URL there
        is recognised and one to another server is not.
        """
        return {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [self._entry(r) for r in self.resources],
        }

    def _entry(self, resource: Resource) -> Resource:
        """One Bundle entry; a fullUrl only for a resource with a type and an id."""
        kind, rid = resource.get("resourceType"), resource.get("id")
        if not (isinstance(kind, str) and kind and isinstance(rid, str) and rid):
            return {"resource": resource}
        relative = f"{kind}/{rid}"
        full_url = f"{self.base_url}/{relative}" if self.base_url else relative
        return {"fullUrl": full_url, "resource": resource}

    def own(self, resource_type: str) -> list[Resource]:
        """Resources of one type that carry the app's identifier system."""
        return [
            r
            for r in self.resources
            if r.get("resourceType") == resource_type and codes.app_identifier_values(r)
        ]


def _token_list(pairs: Iterable[tuple[str, str]]) -> str:
    """A token search value: system|code,system|code, sorted so the URL is stable."""
    return ",".join(f"{system}|{code}" for system, code in sorted(pairs))


def patient_searches(
    patient_id: str,
    *,
    titer_codes: frozenset[tuple[str, str]] = codes.DEFAULT_TITER_CODES,
    page_size: int = 100,
) -> list[str]:
    """The relative URLs that gather one patient's inputs: a read, then bounded searches."""
    pid = quote(patient_id, safe="")
    labs = set().union(*codes.LABS.values())
    genetics = codes.SMN1_COPIES | codes.SMN2_COPIES
    titers = titer_codes | codes.DEFAULT_TITER_CODES
    observation = f"Observation?patient={pid}&_sort=-date"
    return [
        f"Patient/{pid}",
        f"{observation}&code={quote(_token_list(codes.WEIGHT), safe='|,')}&_count=20",
        f"{observation}&code={quote(_token_list(codes.GESTATIONAL_AGE_AT_BIRTH), safe='|,')}"
        "&_count=10",
        f"{observation}&code={quote(_token_list(codes.BODY_TEMPERATURE), safe='|,')}&_count=20",
        f"{observation}&code={quote(_token_list(genetics), safe='|,')}&_count=20",
        f"{observation}&code={quote(_token_list(labs), safe='|,')}&_count={page_size}",
        f"{observation}&code={quote(_token_list(titers), safe='|,')}&_count=20",
        f"Condition?patient={pid}&_count={page_size}",
        f"MedicationAdministration?patient={pid}&_include=MedicationAdministration:medication"
        f"&_count={page_size}",
        f"MedicationStatement?patient={pid}&_include=MedicationStatement:medication"
        f"&_count={page_size}",
        f"MedicationRequest?patient={pid}&_include=MedicationRequest:medication&_count={page_size}",
        f"Procedure?patient={pid}&_count={page_size}",
        f"Device?patient={pid}&_count={page_size}",
        f"Immunization?patient={pid}&_count={page_size}",
        f"CarePlan?patient={pid}&identifier={quote(codes.APP_IDENTIFIER, safe='')}|"
        f"&_count={page_size}",
        f"Task?patient={pid}&identifier={quote(codes.APP_IDENTIFIER, safe='')}|&_count={page_size}",
        f"ServiceRequest?patient={pid}&identifier={quote(codes.APP_IDENTIFIER, safe='')}|"
        f"&_count={page_size}",
    ]


def _outcome_text(body: Any) -> str:
    """The human text of an OperationOutcome, or ''."""
    if not isinstance(body, Mapping) or body.get("resourceType") != "OperationOutcome":
        return ""
    parts = []
    for issue in body.get("issue") or []:
        if not isinstance(issue, Mapping):
            continue
        details = issue.get("details") if isinstance(issue.get("details"), Mapping) else {}
        text = issue.get("diagnostics") or details.get("text") or issue.get("code") or ""
        where = ", ".join(str(e) for e in issue.get("expression") or issue.get("location") or [])
        parts.append(f"{text} at {where}" if where else str(text))
    return "; ".join(p for p in parts if p)[:500]


def http_error(status: int, what: str, body: Any, *, secret: str | None = None) -> FhirError:
    """The typed error for an HTTP status, carrying the OperationOutcome text (token redacted)."""
    outcome = _outcome_text(body)
    if secret:
        outcome = outcome.replace(secret, "[redacted]")
    kind, text = STATUS_ERRORS.get(status, (FhirError, f"HTTP {status}"))
    if status >= 500:
        kind, text = FhirServerError, f"server error ({status})"
    return kind(f"{what}: {text}", status=status, outcome=outcome)


def _retry_after_s(value: str | None, *, now: dt.datetime) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - now).total_seconds())


def _is_bundle(body: Any, kind: str) -> bool:
    """True for a Bundle of the given type."""
    return (
        isinstance(body, Mapping)
        and body.get("resourceType") == "Bundle"
        and (body.get("type") == kind)
    )


class FhirGateway:
    """One FHIR server: base URL, optional bearer token, bounded retries; counts its requests."""

    def __init__(
        self,
        base_url: str,
        *,
        bearer_token: str | None = None,
        limits: Limits | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        try:
            parts = urlsplit(base_url)
            _ = parts.port
        except ValueError as exc:
            raise InputError(f"FHIR base {base_url!r} is not a valid URL ({exc})") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(f"FHIR base {base_url!r} is not an http(s) URL")
        self.base_url = base_url.rstrip("/")
        self._host = parts.netloc
        self.limits = limits or Limits()
        self.requests_sent = 0
        self._lock = threading.Lock()
        self._sleep = sleep
        self._session = session or requests.Session()
        self._headers = {"Accept": FHIR_JSON, "Content-Type": FHIR_JSON}
        self._token = bearer_token
        if bearer_token:
            self._headers["Authorization"] = f"Bearer {bearer_token}"

    # HTTP ------------------------------------------------------------------------------------

    def _url(self, relative: str) -> str:
        """Absolute URL of a relative one; absolute URLs must be on this server."""
        if relative.startswith(("http://", "https://")):
            if not relative.startswith(self.base_url + "/") and relative != self.base_url:
                raise FhirProtocolError("a paging link points off the FHIR server; not followed")
            return relative
        return f"{self.base_url}/{relative}" if relative else self.base_url

    def _send(self, method: str, url: str, body: Any | None, *, what: str) -> requests.Response:
        """One HTTP exchange, its body not yet read; network failures become FhirUnreachable."""
        with self._lock:
            self.requests_sent += 1
        data = None if body is None else json.dumps(body)
        try:
            return self._session.request(
                method,
                url,
                data=data,
                headers=self._headers,
                timeout=self.limits.timeout_s,
                stream=True,
            )
        except requests.RequestException as exc:
            raise FhirUnreachable(
                f"{what}: cannot reach {self._host} ({type(exc).__name__})"
            ) from None

    def _body(self, response: requests.Response, *, what: str) -> bytes:
        """The answer's bytes, read up to the bound; a larger answer is FhirProtocolError."""
        limit = self.limits.max_answer_bytes
        too_large = FhirProtocolError(
            f"{what}: the answer is larger than {limit} bytes, the most the app reads "
            "(bundle_max_bytes)"
        )
        chunks: list[bytes] = []
        size = 0
        try:
            declared = response.headers.get("Content-Length", "")
            if declared.isascii() and declared.isdigit() and int(declared) > limit:
                raise too_large
            for chunk in response.iter_content(chunk_size=64 * 1024):
                size += len(chunk)
                if size > limit:
                    raise too_large
                chunks.append(chunk)
        except requests.RequestException as exc:
            raise FhirUnreachable(
                f"{what}: the answer from {self._host} broke off ({type(exc).__name__})"
            ) from None
        finally:
            response.close()
        return b"".join(chunks)

    def _exchange(
        self, method: str, relative: str, body: Any | None = None, *, what: str, retry: bool
    ) -> Any:
        """Send, retrying 429/503 when `retry`, and return the JSON body or raise typed."""
        url = self._url(relative)
        attempt = 0
        while True:
            response = self._send(method, url, body, what=what)
            if response.status_code in RETRY_STATUSES and retry and attempt < self.limits.retries:
                response.close()
                wait = _retry_after_s(
                    response.headers.get("Retry-After"), now=dt.datetime.now(dt.UTC)
                )
                if wait is None:
                    wait = self.limits.backoff_s * (2**attempt)
                self._sleep(min(wait, self.limits.max_wait_s))
                attempt += 1
                continue
            parsed = _json(self._body(response, what=what))
            if response.status_code >= 400:
                raise http_error(response.status_code, what, parsed, secret=self._token)
            if parsed is None:
                raise FhirProtocolError(f"{what}: the answer is not FHIR JSON")
            if has_lone_surrogate(parsed):
                raise FhirProtocolError(
                    f"{what}: the answer is not Unicode text (half a surrogate)"
                )
            return parsed

    # Reads -----------------------------------------------------------------------------------

    def read_patient(
        self,
        patient_id: str,
        *,
        titer_codes: frozenset[tuple[str, str]] = codes.DEFAULT_TITER_CODES,
    ) -> PatientRecord:
        """Everything for one patient: one batch request, then `next` pages within the bound."""
        if not codes.FHIR_ID.fullmatch(patient_id):
            raise InputError(f"patient id {patient_id!r} is not a FHIR id")
        before = self.requests_sent
        searches = patient_searches(
            patient_id, titer_codes=titer_codes, page_size=self.limits.page_size
        )
        answers = self._batch(searches)
        patient = answers[0]
        if not isinstance(patient, Mapping) or patient.get("resourceType") != "Patient":
            raise FhirProtocolError(f"Patient/{patient_id}: the answer is not a Patient")
        record = PatientRecord(
            patient_id=str(patient.get("id") or patient_id), resources=[], base_url=self.base_url
        )
        seen: set[tuple[str, str]] = set()
        record.resources.append(dict(patient))
        seen.add(("Patient", str(patient.get("id"))))
        for search, page in zip(searches[1:], answers[1:], strict=True):
            for resource in self._pages(search, page, record):
                key = (str(resource.get("resourceType")), str(resource.get("id")))
                if key not in seen:
                    seen.add(key)
                    record.resources.append(resource)
        record.requests = self.requests_sent - before
        return record

    def _batch(self, searches: list[str]) -> list[Any]:
        """Answers to the searches, in order: one batch POST, else parallel GETs."""
        bundle = {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [{"request": {"method": "GET", "url": url}} for url in searches],
        }
        try:
            answer = self._exchange("POST", "", bundle, what="batch read", retry=True)
        except FhirError as exc:
            if exc.status not in BATCH_REFUSED:
                raise
            return self._parallel_gets(searches)
        if not _is_bundle(answer, "batch-response"):
            return self._parallel_gets(searches)
        entries = answer.get("entry") or []
        if len(entries) != len(searches):
            raise FhirProtocolError(
                f"batch read: {len(entries)} answers to {len(searches)} searches"
            )
        return [self._entry_answer(e, url) for e, url in zip(entries, searches, strict=True)]

    def _entry_answer(self, entry: Any, url: str) -> Any:
        """The resource of one batch-response entry, or the typed error its status names."""
        path, query, _ = url.partition("?")
        what = f"search {path}" if query else path
        if not isinstance(entry, Mapping) or not isinstance(entry.get("response"), Mapping):
            raise FhirProtocolError(f"{what}: a batch-response entry without a response")
        response = entry["response"]
        status_text = str(response.get("status", ""))
        code = (
            int(status_text[:3]) if status_text[:3].isascii() and status_text[:3].isdigit() else 0
        )
        if code == 0:
            raise FhirProtocolError(f"{what}: batch-response status {status_text[:40]!r}")
        if code >= 400:
            outcome = response.get("outcome") or entry.get("resource")
            raise http_error(code, what, outcome, secret=self._token)
        return entry.get("resource")

    def _parallel_gets(self, searches: list[str]) -> list[Any]:
        """The same searches as plain GETs, a few at a time."""
        with ThreadPoolExecutor(max_workers=self.limits.parallel_gets) as pool:
            futures = [
                pool.submit(self._exchange, "GET", url, what=url.split("?", 1)[0], retry=True)
                for url in searches
            ]
            return [f.result() for f in futures]

    def _pages(self, search: str, page: Any, record: PatientRecord) -> list[Resource]:
        """The resources of a searchset and its `next` pages, up to the page bound."""
        out: list[Resource] = []
        pages = 1
        while True:
            if not _is_bundle(page, "searchset"):
                raise FhirProtocolError(f"search {search.split('?', 1)[0]}: not a searchset")
            out.extend(
                e["resource"]
                for e in page.get("entry") or []
                if isinstance(e, Mapping) and isinstance(e.get("resource"), Mapping)
            )
            following = next(
                (
                    link.get("url")
                    for link in page.get("link") or []
                    if isinstance(link, Mapping) and link.get("relation") == "next"
                ),
                None,
            )
            if not following:
                return out
            if pages >= self.limits.max_pages:
                record.truncated.append(search)
                return out
            page = self._exchange("GET", following, what="next page", retry=True)
            pages += 1

    # Writes ----------------------------------------------------------------------------------

    def transaction(self, bundle: Mapping[str, Any]) -> Resource:
        """Send one transaction Bundle; return the transaction-response (no retries)."""
        answer = self._exchange("POST", "", bundle, what="transaction", retry=False)
        if not _is_bundle(answer, "transaction-response"):
            raise FhirProtocolError("transaction: the answer is not a transaction-response")
        return answer


def _json(content: bytes) -> Any:
    """The JSON body, or None when there is none or it is not JSON (or nested too deeply)."""
    if not content:
        return None
    try:
        return json.loads(content, parse_float=Decimal)
    except (ValueError, RecursionError):
        return None
