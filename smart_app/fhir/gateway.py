"""Talks to a FHIR R4 server: one batch read per patient, one transaction per write."""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import re
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
)
from smart_app.fhir import codes
from smart_app.fhir.read import (
    ReadNotes,
    has_lone_surrogate,
    medication_reference,
    titer_date,
    without_version,
)
from smart_app.fhir.redaction import redact
from smart_app.rules.policy import DEFAULT_POLICY, Policy

FHIR_JSON = "application/fhir+json"
RETRY_STATUSES = frozenset({429, 503})
BATCH_REFUSED = frozenset({400, 404, 405, 415, 422, 501})
"""Answers to a batch POST that mean 'this server does not do batch': fall back to GETs."""
TITER_TEXT_QUERY = "AAV9"
"""The anti-AAV9 titer by text (code:text, the standard token modifier), as read.py matches it."""
OPTIONAL_SEARCHES = ("code:text=", "date:missing=", "category=laboratory")
"""Searches a server may refuse (4xx) without failing the read: each is replaced or noted (the
titer by text, results recorded without a date, the laboratory results read for the titer)."""
MEDICATION_ID = re.compile(r"Medication/[A-Za-z0-9\-.]{1,64}")
"""A relative reference to a Medication this server can be asked for."""
RESOURCE_ID = re.compile(r"([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})")
"""A relative reference ('Practitioner/123') that `FhirGateway.read` reads."""

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
    searched: list[str] = field(default_factory=list)
    """Every search sent (the Patient read is not one)."""
    empty: list[str] = field(default_factory=list)
    """Searches that found nothing."""
    refused: list[str] = field(default_factory=list)
    """Optional searches the server refused (4xx): the titer by text, the undated results."""
    unresolved: dict[str, str] = field(default_factory=dict)
    """medicationReferences still unread after the extra read, and why."""
    floors: str = ""
    """How far back the dated searches asked (Floors.shown), '' for no floors."""

    def notes(self) -> ReadNotes | None:
        """What the read saw besides the resources, for the facts; None when not read live."""
        if self.base_url is None:
            return None
        return ReadNotes(
            searched=tuple(self.searched),
            empty=tuple(self.empty),
            truncated=tuple(self.truncated),
            refused=tuple(self.refused),
            unresolved=tuple(sorted(self.unresolved.items())),
            floors=self.floors,
        )

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


@dataclass(frozen=True)
class Floors:
    """The oldest date each dated search asks for (date=ge); None: no floor."""

    weight: dt.date | None = None
    labs: dt.date | None = None
    temperature: dt.date | None = None
    titer: dt.date | None = None
    """Only for the laboratory Observations read when the titer cannot be found by text."""
    cited: str = ""
    """The policy fields the floors come from, cited as institution defaults."""

    @classmethod
    def before(cls, on: dt.date, policy: Policy = DEFAULT_POLICY) -> Floors:
        """The floors for a read on `on`: the policy's search days (institution defaults) back,
        and the titer look-back for the titer by text."""

        def back(days: int) -> dt.date:
            """`days` before the reading date."""
            return on - dt.timedelta(days=days)

        return cls(
            weight=back(policy.weight_search_days),
            labs=back(policy.lab_search_days),
            temperature=back(policy.temperature_search_days),
            titer=back(policy.titer_max_age_days),
            cited=policy.cite("weight_search_days", "lab_search_days", "temperature_search_days"),
        )

    def shown(self) -> str:
        """'weights since ..., lab results since ... and temperatures since ... (institution
        default: ...)'; '' without floors."""
        if not (self.weight and self.labs and self.temperature):
            return ""
        return (
            f"weights since {self.weight}, lab results since {self.labs} and body temperatures "
            f"since {self.temperature} ({self.cited})"
        )


def _since(floor: dt.date | None) -> str:
    """The date floor of a search ('' for none)."""
    return f"&date=ge{floor.isoformat()}" if floor else ""


def patient_searches(
    patient_id: str,
    *,
    titer_codes: frozenset[tuple[str, str]] = codes.DEFAULT_TITER_CODES,
    page_size: int = 100,
    floors: Floors | None = None,
) -> list[str]:
    """The relative URLs that gather one patient's inputs: a read, then bounded searches.

    With floors, the weight, lab and temperature searches stop at their dates (none on genetics
    and gestational age) and one more search asks for those results recorded with no date.
    """
    floors = floors or Floors()
    pid = quote(patient_id, safe="")
    labs = set().union(*codes.LABS.values())
    genetics = codes.SMN1_COPIES | codes.SMN2_COPIES
    titers = titer_codes | codes.DEFAULT_TITER_CODES
    observation = f"Observation?patient={pid}&_sort=-date"
    dated = codes.WEIGHT | codes.BODY_TEMPERATURE | labs
    undated = (
        [
            f"Observation?patient={pid}&code={quote(_token_list(dated), safe='|,')}"
            f"&date:missing=true&_count={page_size}"
        ]
        if floors.weight or floors.labs or floors.temperature
        else []
    )
    return [
        f"Patient/{pid}",
        f"{observation}&code={quote(_token_list(codes.WEIGHT), safe='|,')}"
        f"{_since(floors.weight)}&_count=20",
        f"{observation}&code={quote(_token_list(codes.GESTATIONAL_AGE_AT_BIRTH), safe='|,')}"
        "&_count=10",
        f"{observation}&code={quote(_token_list(codes.BODY_TEMPERATURE), safe='|,')}"
        f"{_since(floors.temperature)}&_count=20",
        f"{observation}&code={quote(_token_list(genetics), safe='|,')}&_count=20",
        f"{observation}&code={quote(_token_list(labs), safe='|,')}"
        f"{_since(floors.labs)}&_count={page_size}",
        f"{observation}&code={quote(_token_list(titers), safe='|,')}&_count=20",
        f"{observation}&code:text={TITER_TEXT_QUERY}&_count=20",
        *undated,
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


def titer_fallback_search(
    patient_id: str, *, page_size: int = 100, floor: dt.date | None = None
) -> str:
    """The patient's laboratory Observations (since `floor`), read when the titer could not be
    found by code or text."""
    pid = quote(patient_id, safe="")
    return (
        f"Observation?patient={pid}&category=laboratory{_since(floor)}"
        f"&_sort=-date&_count={page_size}"
    )


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
    """The typed error for an HTTP status, carrying the OperationOutcome text (the token, any
    part of it and anything bearer-looking redacted)."""
    outcome = redact(_outcome_text(body), secret=secret)
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


def _next_link(page: Mapping[str, Any]) -> str | None:
    """The `next` link of a searchset page, or None."""
    return next(
        (
            link.get("url")
            for link in page.get("link") or []
            if isinstance(link, Mapping) and link.get("relation") == "next"
        ),
        None,
    )


def _optional(url: str, error: FhirError) -> bool:
    """A refusal (4xx) of a search the read can do without: the titer by text, undated results."""
    return (
        error.status is not None
        and 400 <= error.status < 500
        and any(marker in url for marker in OPTIONAL_SEARCHES)
    )


def _lookup_or_optional(url: str, error: FhirError) -> bool:
    """Any failed Medication read (it becomes a finding), or a refused optional search."""
    return ("?" not in url and error.status is not None) or _optional(url, error)


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
        capabilities: Resource | None = None,
    ) -> None:
        """`capabilities`: the server's CapabilityStatement when the caller already holds it (a
        cache's): capabilities() then sends nothing."""
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
        self._capabilities: Resource | None = capabilities or None
        if bearer_token:
            self._headers["Authorization"] = f"Bearer {bearer_token}"

    def redact(self, text: str) -> str:
        """Server text without this gateway's token (in any case, or in part) or anything
        bearer-looking: for messages that quote the server."""
        return redact(text, secret=self._token)

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
        on: dt.date | None = None,
        policy: Policy = DEFAULT_POLICY,
        titer_codes: frozenset[tuple[str, str]] = codes.DEFAULT_TITER_CODES,
        prefetched: Mapping[str, Any] | None = None,
    ) -> PatientRecord:
        """Everything for one patient: one batch request, the `next` pages of its searches side
        by side, and one more batch only when the first left something open (Medications its
        medication uses name but it did not return; a titer it could not find by text).

        With `on` (the reading date) the weight, lab and temperature searches stop at the
        policy's date floors; without it they read back without a floor. `prefetched` maps a
        relative search URL to the answer a CDS client already supplied for it: those are taken
        as given and only the rest are sent (no batch when every one is there).
        """
        if not codes.FHIR_ID.fullmatch(patient_id):
            raise InputError(f"patient id {patient_id!r} is not a FHIR id")
        before = self.requests_sent
        floors = Floors.before(on, policy) if on else Floors()
        searches = patient_searches(
            patient_id, titer_codes=titer_codes, page_size=self.limits.page_size, floors=floors
        )
        given = prefetched or {}
        answers = self._answers(searches, given, tolerate=_optional)
        patient = answers[0]
        if not isinstance(patient, Mapping) or patient.get("resourceType") != "Patient":
            raise FhirProtocolError(f"Patient/{patient_id}: the answer is not a Patient")
        record = PatientRecord(
            patient_id=str(patient.get("id") or patient_id), resources=[], base_url=self.base_url
        )
        record.floors = floors.shown()
        record.resources.append(dict(patient))
        seen = {("Patient", str(patient.get("id")))}
        self._keep(record, seen, self._searches(searches[1:], answers[1:], record))
        self._look_again(record, seen, titer_codes=titer_codes, floors=floors, prefetched=given)
        record.requests = self.requests_sent - before
        return record

    def read(self, relative: str) -> Resource:
        """One resource by its relative reference ('Practitioner/123'): one GET (429/503
        retried); the answer must be a resource of that type, else FhirProtocolError."""
        match = RESOURCE_ID.fullmatch(relative)
        if match is None:
            raise InputError(f"{relative[:80]!r} is not a relative reference (Type/id)")
        kind = match.group(1)
        answer = self._exchange("GET", relative, what=f"read {kind}", retry=True)
        if not isinstance(answer, Mapping) or answer.get("resourceType") != kind:
            raise FhirProtocolError(f"read {kind}: the answer is not a {kind}")
        return dict(answer)

    def _answers(
        self,
        searches: list[str],
        prefetched: Mapping[str, Any],
        *,
        tolerate: Callable[[str, FhirError], bool],
    ) -> list[Any]:
        """Answers to the searches, in order: the prefetched ones as given, the rest in one
        batch (none sent when every search was prefetched)."""
        given = {url: self._prefetched(url, prefetched.get(url), tolerate) for url in searches}
        missing = [url for url in searches if given[url] is None]
        sent = iter(self._batch(missing, tolerate=tolerate) if missing else [])
        return [given[url] if given[url] is not None else next(sent) for url in searches]

    def _prefetched(
        self, url: str, answer: Any, tolerate: Callable[[str, FhirError], bool]
    ) -> Any | None:
        """A prefetched answer as the batch would give it; None to read it from the server
        (nothing prefetched, or an OperationOutcome for a search the read cannot do without).
        An OperationOutcome for a search it can do without is that search's refusal."""
        if not isinstance(answer, Mapping):
            return None
        if answer.get("resourceType") != "OperationOutcome":
            return answer
        path, query, _ = url.partition("?")
        error = http_error(400, f"search {path}" if query else path, answer, secret=self._token)
        return error if tolerate(url, error) else None

    def _keep(
        self, record: PatientRecord, seen: set[tuple[str, str]], found: Iterable[Resource]
    ) -> None:
        """Add resources to the record once each (by type and id)."""
        for resource in found:
            key = (str(resource.get("resourceType")), str(resource.get("id")))
            if key not in seen:
                seen.add(key)
                record.resources.append(resource)

    def _searches(
        self, searches: list[str], answers: list[Any], record: PatientRecord
    ) -> list[Resource]:
        """The resources of searches answered together: `next` pages of different searches are
        fetched side by side; refused, empty and truncated searches are noted on the record."""
        chains: dict[int, tuple[list[Resource], bool]] = {}
        waiting = []
        for i, (search, page) in enumerate(zip(searches, answers, strict=True)):
            if isinstance(page, FhirError):
                continue
            if _is_bundle(page, "searchset") and _next_link(page):
                waiting.append(i)
            else:
                chains[i] = self._chain(search, page)
        if waiting:
            workers = min(self.limits.parallel_gets, len(waiting))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                pages = pool.map(lambda i: self._chain(searches[i], answers[i]), waiting)
                chains.update(zip(waiting, pages, strict=True))
        out: list[Resource] = []
        for i, search in enumerate(searches):
            record.searched.append(search)
            if i not in chains:
                record.refused.append(search)
                continue
            found, cut = chains[i]
            if cut:
                record.truncated.append(search)
            if not found:
                record.empty.append(search)
            out.extend(found)
        return out

    def _look_again(
        self,
        record: PatientRecord,
        seen: set[tuple[str, str]],
        *,
        titer_codes: frozenset[tuple[str, str]],
        floors: Floors,
        prefetched: Mapping[str, Any],
    ) -> None:
        """One more batch, only when needed: the Medications the medication uses name that were
        not returned with them (a server that ignores _include, or one that lives elsewhere), and
        the patient's laboratory Observations within the titer look-back when the server refused
        the titer by text or no current titer was found (a text-only titer still counts). What
        a CDS client prefetched is taken as given."""
        wanted = self._missing_medications(record)
        lookups = sorted(set(wanted.values()))
        fallback = self._titer_fallback(record, titer_codes=titer_codes, floors=floors)
        searches = lookups + ([fallback] if fallback else [])
        if not searches:
            return
        answers = self._answers(searches, prefetched, tolerate=_lookup_or_optional)
        read: dict[str, Any] = dict(zip(lookups, answers, strict=False))
        for url in lookups:
            answer = read[url]
            if isinstance(answer, Mapping) and answer.get("resourceType") == "Medication":
                self._keep(record, seen, [dict(answer)])
        for reference, url in wanted.items():
            answer = read[url]
            if isinstance(answer, FhirError):
                record.unresolved[reference] = (
                    f"the server answered {str(answer).split(': ', 1)[-1]}"
                )
            elif not isinstance(answer, Mapping) or answer.get("resourceType") != "Medication":
                record.unresolved[reference] = "the server's answer is not a Medication"
        if fallback:
            self._keep(record, seen, self._searches([fallback], answers[-1:], record))

    def _missing_medications(self, record: PatientRecord) -> dict[str, str]:
        """{medicationReference: relative URL to read} for Medications not in the record; the
        ones this server cannot be asked for go straight to record.unresolved."""
        held = {
            f"Medication/{r.get('id')}"
            for r in record.resources
            if r.get("resourceType") == "Medication"
        }
        wanted: dict[str, str] = {}
        for resource in record.resources:
            reference = medication_reference(resource)
            if reference is None:
                continue
            relative = without_version(reference).removeprefix(self.base_url + "/")
            if relative in held:
                continue
            if MEDICATION_ID.fullmatch(relative):
                wanted[reference] = relative
            elif "://" in relative:
                record.unresolved[reference] = "it points to another server"
            else:
                record.unresolved[reference] = "it is not a reference to a Medication"
        return wanted

    def _titer_fallback(
        self, record: PatientRecord, *, titer_codes: frozenset[tuple[str, str]], floors: Floors
    ) -> str | None:
        """The laboratory Observations within the titer look-back, when the text search was
        refused or no titer dated within it came back; None when not needed."""
        refused = any("code:text=" in search for search in record.refused)
        dates = [titer_date(r, titer_codes) for r in record.resources]
        current = any(d is not None and (floors.titer is None or d >= floors.titer) for d in dates)
        if current and not refused:
            return None
        return titer_fallback_search(
            record.patient_id, page_size=self.limits.page_size, floor=floors.titer
        )

    def _batch(
        self, searches: list[str], *, tolerate: Callable[[str, FhirError], bool] | None = None
    ) -> list[Any]:
        """Answers to the searches, in order: one batch POST, else parallel GETs. An entry that
        fails is raised, unless `tolerate` accepts it: then its error is its answer."""
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
            return self._parallel_gets(searches, tolerate=tolerate)
        if not _is_bundle(answer, "batch-response"):
            return self._parallel_gets(searches, tolerate=tolerate)
        entries = answer.get("entry") or []
        if len(entries) != len(searches):
            raise FhirProtocolError(
                f"batch read: {len(entries)} answers to {len(searches)} searches"
            )
        return [
            self._entry_answer(e, url, tolerate=tolerate)
            for e, url in zip(entries, searches, strict=True)
        ]

    def _entry_answer(
        self, entry: Any, url: str, *, tolerate: Callable[[str, FhirError], bool] | None = None
    ) -> Any:
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
            error = http_error(code, what, outcome, secret=self._token)
            if tolerate is not None and tolerate(url, error):
                return error
            raise error
        return entry.get("resource")

    def _parallel_gets(
        self, searches: list[str], *, tolerate: Callable[[str, FhirError], bool] | None = None
    ) -> list[Any]:
        """The same searches as plain GETs, a few at a time."""

        def get(url: str) -> Any:
            """One GET; a tolerated failure is its answer."""
            try:
                return self._exchange("GET", url, what=url.split("?", 1)[0], retry=True)
            except FhirError as exc:
                if exc.status and tolerate is not None and tolerate(url, exc):
                    return exc
                raise

        with ThreadPoolExecutor(max_workers=self.limits.parallel_gets) as pool:
            futures = [pool.submit(get, url) for url in searches]
            return [f.result() for f in futures]

    def _pages(self, search: str, page: Any, record: PatientRecord) -> list[Resource]:
        """The resources of a searchset and its `next` pages, up to the page bound."""
        found, cut = self._chain(search, page)
        if cut:
            record.truncated.append(search)
        return found

    def _chain(self, search: str, page: Any) -> tuple[list[Resource], bool]:
        """(the resources of a searchset and its `next` pages, True when cut at the page bound);
        an OperationOutcome among them (a server's warning) is not a resource of the chart."""
        out: list[Resource] = []
        pages = 1
        while True:
            if not _is_bundle(page, "searchset"):
                raise FhirProtocolError(f"search {search.split('?', 1)[0]}: not a searchset")
            out.extend(
                e["resource"]
                for e in page.get("entry") or []
                if isinstance(e, Mapping)
                and isinstance(e.get("resource"), Mapping)
                and e["resource"].get("resourceType") != "OperationOutcome"
            )
            following = _next_link(page)
            if not following:
                return out, False
            if pages >= self.limits.max_pages:
                return out, True
            page = self._exchange("GET", following, what="next page", retry=True)
            pages += 1

    # Writes ----------------------------------------------------------------------------------

    def capabilities(self) -> Resource | None:
        """The server's CapabilityStatement (read once), or None when it has none to give."""
        if self._capabilities is None:
            try:
                answer = self._exchange("GET", "metadata", what="metadata", retry=True)
            except FhirError:
                answer = {}
            ok = isinstance(answer, Mapping) and answer.get("resourceType") == "CapabilityStatement"
            self._capabilities = dict(answer) if ok else {}
        return self._capabilities or None

    def transaction(self, bundle: Mapping[str, Any]) -> Resource:
        """Send one transaction Bundle; return the transaction-response (no retries)."""
        return self._write_bundle(bundle, "transaction")

    def batch(self, bundle: Mapping[str, Any]) -> Resource:
        """Send one batch Bundle of writes; return the batch-response (no retries)."""
        return self._write_bundle(bundle, "batch")

    def _write_bundle(self, bundle: Mapping[str, Any], kind: str) -> Resource:
        """POST a transaction or batch; a lost or unreadable answer is FhirAnswerLost."""
        _, _, answer = self._write("POST", "", bundle, what=kind)
        if not _is_bundle(answer, f"{kind}-response"):
            raise FhirAnswerLost(f"{kind}: the answer is not a {kind}-response")
        return answer

    def create(self, resource: Mapping[str, Any]) -> WriteAnswer:
        """POST one resource (no conditions); the server's status, location and body."""
        kind = str(resource.get("resourceType"))
        return WriteAnswer(*self._write("POST", kind, resource, what=f"create {kind}"))

    def update(self, url: str, resource: Mapping[str, Any], *, if_match: str = "") -> WriteAnswer:
        """PUT one resource, checked against a version when `if_match` is given."""
        headers = {"If-Match": if_match} if if_match else {}
        kind = url.split("/", 1)[0]
        return WriteAnswer(
            *self._write("PUT", url, resource, what=f"update {kind}", headers=headers)
        )

    def search_all(self, searches: list[str]) -> list[list[Resource]]:
        """The resources of each search (one batch, then `next` pages): for looking up writes."""
        record = PatientRecord(patient_id="", resources=[])
        answers = self._batch(searches)
        found = [
            self._pages(url, page, record) for url, page in zip(searches, answers, strict=True)
        ]
        if record.truncated:
            raise FhirProtocolError("a look-up search has more pages than the app reads")
        return found

    def _write(
        self,
        method: str,
        relative: str,
        body: Any,
        *,
        what: str,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, str, Any]:
        """One write exchange: (status, Location, JSON body). Refusals (4xx) raise typed; an
        answer lost after sending (time-out, reset, 5xx, unreadable) raises FhirAnswerLost."""
        with self._lock:
            self.requests_sent += 1
        try:
            response = self._session.request(
                method,
                self._url(relative),
                data=json.dumps(body),
                headers={**self._headers, **(headers or {})},
                timeout=self.limits.timeout_s,
                stream=True,
            )
        except requests.RequestException as exc:
            if _not_sent(exc):
                raise FhirUnreachable(
                    f"{what}: cannot reach {self._host} ({type(exc).__name__}); nothing was sent"
                ) from None
            raise FhirAnswerLost(
                f"{what}: the answer from {self._host} was lost ({type(exc).__name__})"
            ) from None
        try:
            content = self._body(response, what=what)
        except FhirError as exc:
            raise FhirAnswerLost(f"{what}: the answer was lost or unreadable ({exc})") from None
        parsed = _json(content)
        status = response.status_code
        if status >= 500:
            outcome = _outcome_text(parsed)
            raise FhirAnswerLost(
                f"{what}: server error ({status}); it may have applied the write",
                status=status,
                outcome=self.redact(outcome),
            )
        if status >= 400:
            raise http_error(status, what, parsed, secret=self._token)
        if content and (parsed is None or has_lone_surrogate(parsed)):
            raise FhirAnswerLost(f"{what}: the answer is not FHIR JSON")
        return status, response.headers.get("Location", ""), parsed


class FhirNoServer(FhirError):
    """A read that needs a FHIR server where there is none (a CDS request without fhirServer
    whose prefetch does not cover it)."""


NO_SERVER_BASE = "https://no-fhir-server.invalid"
"""The base of a gateway without a server (.invalid never resolves)."""


class NoServerGateway(FhirGateway):
    """A gateway with no FHIR server behind it: reads only what was prefetched; every HTTP
    exchange raises FhirNoServer before anything is sent."""

    def __init__(self, base_url: str = NO_SERVER_BASE) -> None:
        """A gateway on a base that is never contacted."""
        super().__init__(base_url)

    def _send(self, method: str, url: str, body: Any | None, *, what: str) -> requests.Response:
        """Never sends: there is no server."""
        raise FhirNoServer(f"{what}: no FHIR server to read from and not prefetched")

    def _write(
        self,
        method: str,
        relative: str,
        body: Any,
        *,
        what: str,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, str, Any]:
        """Never writes: there is no server."""
        raise FhirNoServer(f"{what}: no FHIR server to write to")


@dataclass(frozen=True)
class WriteAnswer:
    """The server's answer to one create or update."""

    status: int
    location: str
    resource: Any


def _not_sent(exc: requests.RequestException) -> bool:
    """True when a request failed before any byte reached the server (no connection made)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError):
        text = repr(exc.args[0]) if exc.args else ""
        return "NewConnectionError" in text or "ConnectionRefused" in text
    return False


def _json(content: bytes) -> Any:
    """The JSON body, or None when there is none or it is not JSON (or nested too deeply)."""
    if not content:
        return None
    try:
        return json.loads(content, parse_float=Decimal)
    except (ValueError, RecursionError):
        return None
