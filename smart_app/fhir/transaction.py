"""Sends a prepared write by a strategy and reports what the server did with each entry.

The app composes every write as one transaction Bundle (plan_bundle.py, followup_write.py):
conditional creates keyed by the app's identifiers, version-checked updates, a Provenance last.
Servers differ in what they take, so the same Bundle goes out one of three ways:

- transaction: as composed, for servers that take conditional transactions whole;
- lookup: one search for the app's identifiers, then the missing resources as plain creates
  (and the updates) in one transaction, or in batches where the server has no transactions;
- per-resource: the same look-up, then each create and update on its own, in reference order.

Outcomes come from each entry's answer (status and location), never from the request method.
An answer lost after the request was sent makes the outcome unknown; the app then reads the
server back by its identifiers and reports what it holds. Every way is idempotent: re-running
finds what exists and creates only what is missing.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from smart_app.errors import (
    FhirAnswerLost,
    FhirConflict,
    FhirError,
    WriteBackError,
    WriteIncomplete,
)
from smart_app.fhir import codes
from smart_app.fhir.gateway import FhirGateway
from smart_app.fhir.written import Outcome, Strategy, WriteReport, WriteState, Written

Resource = dict[str, Any]

ENTRY_INDEX = re.compile(r"entry\[(\d+)\]")
"""How OperationOutcome expressions and diagnostics name a transaction entry."""
STRICT_TRANSACTION_SOFTWARE = frozenset({"medplum"})
"""Servers whose transactions take few conditional entries (Medplum: at most 8 under strict
isolation), a limit no CapabilityStatement states: the lookup strategy avoids conditions."""
RERUN = (
    "Re-running the write is safe: it finds what the server holds by the app's identifiers and "
    "creates only what is missing."
)


@dataclass(frozen=True)
class Op:
    """One entry of the composed Bundle, as the strategies need it."""

    index: int
    kind: str
    method: str
    url: str
    full_url: str
    resource: Resource
    key: str
    """The app's identifier (or tag) value; '' for a resource of another app or the EHR."""
    search: str
    """The ifNoneExist search ('identifier=...' or '_tag=...'); '' for an update."""
    if_match: str

    @property
    def item(self) -> str:
        """The app's item name: the key after the plan key ('careplan', 'task/lab-draw/7')."""
        return self.key.split("/", 1)[1] if "/" in self.key else self.key

    def named(self) -> str:
        """The entry as a person reads it: type and item, or the URL it updates."""
        return f"{self.kind} {self.item}" if self.item else f"{self.kind} {self.url}"


def operations(bundle: Mapping[str, Any]) -> list[Op]:
    """The entries of a composed transaction Bundle."""
    ops = []
    for index, entry in enumerate(bundle.get("entry") or []):
        request = entry["request"]
        resource = entry["resource"]
        keys = codes.app_keys(resource)
        ops.append(
            Op(
                index=index,
                kind=str(resource["resourceType"]),
                method=str(request["method"]),
                url=str(request["url"]),
                full_url=str(entry.get("fullUrl") or ""),
                resource=resource,
                key=keys[0] if keys else "",
                search=str(request.get("ifNoneExist") or ""),
                if_match=str(request.get("ifMatch") or ""),
            )
        )
    return ops


def choose_strategy(capability: Mapping[str, Any] | None) -> Strategy:
    """The strategy for a server, from its CapabilityStatement.

    Transactions with conditional creates where the server states both (and is not known to
    cap conditional entries); the look-up where it takes transactions or batches; else one by
    one. No CapabilityStatement: the look-up, which needs the least of a server.
    """
    if not capability:
        return Strategy.LOOKUP
    interactions = server_interactions(capability)
    software = str((capability.get("software") or {}).get("name") or "").lower().split(" ")[0]
    conditional = _conditional_create(capability)
    if (
        "transaction" in interactions
        and conditional
        and software not in STRICT_TRANSACTION_SOFTWARE
    ):
        return Strategy.TRANSACTION
    if interactions & {"transaction", "batch"}:
        return Strategy.LOOKUP
    return Strategy.PER_RESOURCE


def server_interactions(capability: Mapping[str, Any] | None) -> set[str]:
    """The system-level interactions a CapabilityStatement names (transaction, batch, ...)."""
    out: set[str] = set()
    for rest in (capability or {}).get("rest") or []:
        if isinstance(rest, Mapping) and rest.get("mode", "server") == "server":
            out |= {
                str(i.get("code")) for i in rest.get("interaction") or [] if isinstance(i, Mapping)
            }
    return out


def _conditional_create(capability: Mapping[str, Any]) -> bool:
    """True when every resource type the app writes states conditionalCreate."""
    stated = {
        str(r.get("type")): bool(r.get("conditionalCreate"))
        for rest in capability.get("rest") or []
        if isinstance(rest, Mapping)
        for r in rest.get("resource") or []
        if isinstance(r, Mapping)
    }
    written = ("CarePlan", "Task", "MedicationRequest", "Provenance")
    return all(stated.get(kind) for kind in written)


def send(
    gateway: FhirGateway, bundle: Mapping[str, Any], *, strategy: Strategy = Strategy.AUTO
) -> list[Written]:
    """Send a composed Bundle by a strategy; the outcome of every entry, in Bundle order.

    Raises WriteBackError when the server refused it whole (nothing written) and WriteIncomplete
    when it applied part of it or its answer was lost and could not be read back.
    """
    chosen = choose_strategy(gateway.capabilities()) if strategy is Strategy.AUTO else strategy
    ops = operations(bundle)
    done: dict[int, Written] = {}
    read_back = False
    try:
        if chosen is Strategy.TRANSACTION:
            _as_transaction(gateway, bundle, ops, done)
        else:
            transactions = chosen is Strategy.LOOKUP and "transaction" in server_interactions(
                gateway.capabilities()
            )
            _by_lookup(gateway, ops, done, transactions=transactions, one_by_one=chosen)
    except FhirAnswerLost as lost:
        read_back = True
        _read_back(gateway, ops, done, lost=lost)
    except WriteBackError as refused:
        held = (
            _held_after_conflict(gateway, ops)
            if isinstance(refused.__cause__, FhirConflict)
            else None
        )
        if held is None:
            raise
        return held
    report = WriteReport(
        strategy=chosen,
        written=tuple(
            _redacted(gateway, done.get(op.index) or Written(op.url, Outcome.NOT_SENT, op.item))
            for op in ops
        ),
        read_back=read_back,
    )
    if report.state is not WriteState.COMPLETE:
        held = _held_after_conflict(gateway, ops) if _only_conflicts(report) else None
        if held is not None:
            return held
        raise WriteIncomplete(incomplete_message(report), report=report)
    return list(report.written)


def _only_conflicts(report: WriteReport) -> bool:
    """True when nothing was applied and every refused entry met a version conflict (409/412):
    what a server that runs a transaction entry by entry answers where an atomic one refuses
    the transaction whole (then read back the same way)."""
    failed = report.of(Outcome.FAILED)
    return (
        report.state is WriteState.NOTHING
        and not report.read_back
        and bool(failed)
        and all(w.detail.startswith(("409:", "412:")) for w in failed)
    )


def _redacted(gateway: FhirGateway, written: Written) -> Written:
    """An entry whose detail (the server's words) names no credential."""
    if not written.detail:
        return written
    return dataclasses.replace(written, detail=gateway.redact(written.detail))


def _current(gateway: FhirGateway, updates: Sequence[Op]) -> dict[int, Resource | None]:
    """The server's version of each updated resource, by entry index (None: not there), read
    in one search; FhirError when it cannot be read."""
    if not updates:
        return {}
    found = gateway.search_all(
        [f"{op.url.split('/')[0]}?_id={op.url.split('/', 1)[1]}" for op in updates]
    )
    return {op.index: hits[0] if hits else None for op, hits in zip(updates, found, strict=True)}


def _held_after_conflict(gateway: FhirGateway, ops: Sequence[Op]) -> list[Written] | None:
    """After a version conflict (409/412): when the server holds every entry of this write,
    each create by the app's key and each update as sent (a write of the same plan got there
    first, e.g. a double-click), those entries as existing; None when anything is missing or
    could not be read (the refusal then stands)."""
    creates = [op for op in ops if op.method == "POST"]
    updates = [op for op in ops if op.method == "PUT"]
    if any(not op.key for op in creates):
        return None
    try:
        held = existing(gateway, creates)
        now = _current(gateway, updates)
    except FhirError:
        return None
    written = []
    for op in ops:
        found = held.get(op.key) if op.method == "POST" else now.get(op.index)
        if found is None or (op.method == "PUT" and not _applied(op, found)):
            return None
        reference = _reference_of(found) if op.method == "POST" else op.url
        written.append(Written(reference, Outcome.EXISTING, op.item))
    return written


def incomplete_message(report: WriteReport) -> str:
    """What a partial, refused or unknown write did, entry by entry, and what to do."""
    state = report.state
    failed = report.of(Outcome.FAILED)
    lines = []
    if state is WriteState.UNKNOWN:
        lines.append(
            "the server's answer was lost and reading back failed too: the outcome is unknown. "
            "Check the chart before acting on it."
        )
    elif state is WriteState.PARTIAL:
        lines.append(f"the server applied part of the write ({report.summary()}).")
    else:
        lines.append(f"nothing was written ({report.summary()}).")
    if report.read_back and state is not WriteState.UNKNOWN:
        lines.append("The server's answer was lost; these outcomes were read back from it.")
    lines.extend(f"Failed: {w.item} ({w.reference}): {w.detail}" for w in failed)
    lines.append(RERUN)
    return " ".join(lines)


# transaction ---------------------------------------------------------------------------------


def _as_transaction(
    gateway: FhirGateway, bundle: Mapping[str, Any], ops: Sequence[Op], done: dict[int, Written]
) -> None:
    """The Bundle as composed, in one transaction."""
    try:
        response = gateway.transaction(bundle)
    except FhirAnswerLost:
        raise
    except FhirError as exc:
        raise _refused(exc, ops) from exc
    _record_answers(response, ops, done)


def _refused(exc: FhirError, ops: Sequence[Op]) -> WriteBackError:
    """A refusal of a whole transaction: nothing written; names the entry the server named."""
    found = ENTRY_INDEX.search(exc.outcome)
    entry = None
    if found:
        index = int(found.group(1))
        entry = f"entry {index}" + (f" ({ops[index].named()})" if index < len(ops) else "")
    where = f" (failing entry: {entry})" if entry else ""
    return WriteBackError(
        f"nothing written: the server refused the transaction: {exc}{where}", entry=entry
    )


def _record_answers(
    response: Mapping[str, Any], ops: Sequence[Op], done: dict[int, Written]
) -> None:
    """Each entry's outcome from its own answer; an answer that cannot be matched is lost."""
    answers = response.get("entry") or []
    if not isinstance(answers, list) or len(answers) != len(ops):
        raise FhirAnswerLost(
            f"the server answered {len(answers) if isinstance(answers, list) else 0} entries "
            f"for {len(ops)} sent"
        )
    for op, answer in zip(ops, answers, strict=True):
        done[op.index] = answered(op, answer)


def answered(op: Op, answer: Any) -> Written:
    """One entry's outcome from its response: status, location and the server's words."""
    response = answer.get("response") if isinstance(answer, Mapping) else None
    if not isinstance(response, Mapping):
        raise FhirAnswerLost(f"{op.named()}: an answer entry without a response")
    text = str(response.get("status", ""))
    code = int(text[:3]) if text[:3].isascii() and text[:3].isdigit() else 0
    location = str(response.get("location") or "")
    resource = answer.get("resource") if isinstance(answer.get("resource"), Mapping) else {}
    reference = codes.relative_reference(location) or _reference_of(resource) or op.url
    if 200 <= code < 300:
        if code == 201 or (op.method == "POST" and not op.search):
            return Written(reference, Outcome.CREATED, op.item)
        return Written(
            reference, Outcome.UPDATED if op.method == "PUT" else Outcome.EXISTING, op.item
        )
    if code >= 400:
        said = _said(response.get("outcome")) or _said(resource) or f"HTTP {code}"
        return Written(op.url, Outcome.FAILED, op.item, detail=f"{code}: {said}")
    raise FhirAnswerLost(f"{op.named()}: the answer's status {text[:40]!r} is unreadable")


def _said(outcome: Any) -> str:
    """The diagnostics of an OperationOutcome, or ''."""
    if not isinstance(outcome, Mapping) or outcome.get("resourceType") != "OperationOutcome":
        return ""
    parts = []
    for issue in outcome.get("issue") or []:
        if isinstance(issue, Mapping):
            details = issue.get("details") if isinstance(issue.get("details"), Mapping) else {}
            parts.append(str(issue.get("diagnostics") or details.get("text") or issue.get("code")))
    return "; ".join(parts)[:300]


def _reference_of(resource: Mapping[str, Any]) -> str:
    """Type/id of a returned resource, or ''."""
    kind, rid = resource.get("resourceType"), resource.get("id")
    return f"{kind}/{rid}" if isinstance(kind, str) and isinstance(rid, str) and rid else ""


# lookup and per-resource ---------------------------------------------------------------------


def existing(gateway: FhirGateway, ops: Sequence[Op]) -> dict[str, Resource]:
    """What the server holds of the app's keys in `ops`: one search per type, in one batch."""
    groups: dict[tuple[str, str], list[str]] = {}
    for op in ops:
        if op.key:
            param = (
                "_tag" if op.search.startswith("_tag=") or op.kind == "Provenance" else "identifier"
            )
            value = f"{codes.APP_IDENTIFIER}|{op.key}"
            groups.setdefault((op.kind, param), []).append(value)
    searches = [
        f"{kind}?{param}={','.join(_quoted(v) for v in values)}&_count={len(values) + 10}"
        for (kind, param), values in groups.items()
    ]
    if not searches:
        return {}
    held: dict[str, Resource] = {}
    for found in gateway.search_all(searches):
        for resource in found:
            for key in codes.app_keys(resource):
                held.setdefault(key, resource)
    return held


def _quoted(value: str) -> str:
    """A token search value, quoted for a URL but keeping ':', '/' and '|' readable."""
    return quote(value, safe=":/|")


def _by_lookup(
    gateway: FhirGateway,
    ops: Sequence[Op],
    done: dict[int, Written],
    *,
    transactions: bool,
    one_by_one: Strategy,
) -> None:
    """Look the app's keys up, then send only what is missing: in one transaction, in
    batches of entries whose references are known, or one by one."""
    held = existing(gateway, ops)
    resolved: dict[str, str] = {}
    for op in ops:
        found = held.get(op.key) if op.method == "POST" and op.key else None
        if found is not None and _reference_of(found):
            done[op.index] = Written(_reference_of(found), Outcome.EXISTING, op.item)
            if op.full_url:
                resolved[op.full_url] = _reference_of(found)
        elif op.method == "PUT" and op.full_url:
            resolved[op.full_url] = op.url
    incomplete = [
        op
        for op in ops
        if op.index in done and not _holds_references(held[op.key], op.resource, resolved)
    ]
    todo = [op for op in ops if op.index not in done]
    if not todo and not incomplete:
        return
    if transactions:
        completions = [_completion(op, held[op.key], resolved) for op in incomplete]
        sent = [o for o in todo if o.kind != "Provenance"] + completions
        sent += [o for o in todo if o.kind == "Provenance"]
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [_plain_entry(op, resolved) for op in sent],
        }
        _as_transaction(gateway, bundle, sent, done)
        return
    ordered = _Ordered(gateway, done, resolved, batch=one_by_one is Strategy.LOOKUP)
    for op in incomplete:
        ordered.versions[done[op.index].reference] = _version_of(held[op.key])
    ordered.run(todo, incomplete=incomplete)


def _holds_references(found: Resource, composed: Resource, resolved: Mapping[str, str]) -> bool:
    """True when a resource the server holds already names everything the composed one does
    (False for one created without its references by an interrupted write: it is completed)."""
    wanted = {resolved.get(urn) for urn in _urns(composed)}
    if None in wanted:
        return False
    return wanted <= _references(found)


def _references(node: Any) -> set[str | None]:
    """Every reference string in a resource, as Type/id where it is a server URL."""
    found: set[str | None] = set()
    if isinstance(node, Mapping):
        ref = node.get("reference")
        if isinstance(ref, str):
            found.add(codes.relative_reference(ref) or ref)
        for value in node.values():
            found |= _references(value)
    elif isinstance(node, list):
        for value in node:
            found |= _references(value)
    return found


def _version_of(resource: Mapping[str, Any]) -> str:
    """The versionId a server gave a resource, or ''."""
    meta = resource.get("meta")
    return str(meta.get("versionId") or "") if isinstance(meta, Mapping) else ""


def _completion(op: Op, found: Resource, resolved: Mapping[str, str]) -> Op:
    """A version-checked update that puts back what an interrupted write left out."""
    reference = _reference_of(found)
    version = _version_of(found)
    return dataclasses.replace(
        op,
        method="PUT",
        url=reference,
        full_url="",
        resource={**rewrite(op.resource, resolved), "id": reference.split("/", 1)[1]},
        search="",
        if_match=f'W/"{version}"' if version else "",
    )


def _plain_entry(op: Op, resolved: Mapping[str, str]) -> Resource:
    """An entry without conditions: a create, or the version-checked update composed."""
    request: Resource = {"method": op.method, "url": op.url}
    if op.if_match:
        request["ifMatch"] = op.if_match
    entry: Resource = {"resource": rewrite(op.resource, resolved), "request": request}
    if op.full_url:
        entry["fullUrl"] = op.full_url
    return entry


class _Ordered:
    """Creates and updates in reference order, Provenance last: each wave of entries whose
    references are known in one batch, or each entry on its own."""

    def __init__(
        self,
        gateway: FhirGateway,
        done: dict[int, Written],
        resolved: dict[str, str],
        *,
        batch: bool,
    ) -> None:
        self.gateway = gateway
        self.done = done
        self.resolved = resolved
        self.batch = batch
        self.versions: dict[str, str] = {}

    def run(self, todo: Sequence[Op], *, incomplete: Sequence[Op] = ()) -> None:
        """Send everything; stop at the first failure (what follows is not sent).

        A reference cycle (the CarePlan names its Tasks, each Task is based on the CarePlan)
        is broken by creating the most referenced resource without the references not yet
        known, then completing it by a version-checked update once they are; so is a resource
        an interrupted write left that way (`incomplete`).
        """
        pending = [op for op in todo if op.kind != "Provenance"]
        deferred: list[Op] = list(incomplete)
        while pending:
            ready = [op for op in pending if not _urns(op.resource) - self.resolved.keys()]
            stripped: dict[int, Resource] = {}
            if not ready:
                op = max(
                    pending, key=lambda o: sum(o.full_url in _urns(p.resource) for p in pending)
                )
                stripped[op.index] = strip(op.resource, self.resolved)
                deferred.append(op)
                ready = [op]
            wave = ready if self.batch else ready[:1]
            if not self.send(wave, stripped):
                return
            pending = [op for op in pending if op.index not in self.done]
        for op in deferred:
            if not self.complete(op):
                return
        last = [op for op in todo if op.kind == "Provenance"]
        if last:
            self.send(last, {})

    def complete(self, op: Op) -> bool:
        """Put back the references a resource was created without; False when refused."""
        written = self.done[op.index]
        version = self.versions.get(written.reference, "")
        body = {**rewrite(op.resource, self.resolved), "id": written.reference.split("/", 1)[1]}
        try:
            self.gateway.update(
                written.reference, body, if_match=f'W/"{version}"' if version else ""
            )
        except FhirAnswerLost:
            raise
        except FhirError as exc:
            self.done[op.index] = Written(
                written.reference,
                Outcome.FAILED,
                op.item,
                f"created without its references; completing it was refused: {exc}",
            )
            return False
        if written.outcome is Outcome.EXISTING:
            self.done[op.index] = dataclasses.replace(written, outcome=Outcome.UPDATED)
        return True

    def send(self, wave: Sequence[Op], stripped: Mapping[int, Resource]) -> bool:
        """Send one wave; record each outcome and its reference; False after a failure."""
        if self.batch and len(wave) > 1:
            self._batch(wave, stripped)
        else:
            for op in wave:
                if not self._one(op, stripped.get(op.index)):
                    return False
        failed = False
        for op in wave:
            written = self.done[op.index]
            if written.outcome is Outcome.FAILED:
                failed = True
            elif op.full_url:
                self.resolved[op.full_url] = written.reference
        return not failed

    def _batch(self, wave: Sequence[Op], stripped: Mapping[int, Resource]) -> None:
        """One batch of independent entries (a batch resolves no references between them)."""
        entries = []
        for op in wave:
            entry = _plain_entry(op, self.resolved)
            entry.pop("fullUrl", None)
            if op.index in stripped:
                entry["resource"] = stripped[op.index]
            entries.append(entry)
        try:
            response = self.gateway.batch(
                {"resourceType": "Bundle", "type": "batch", "entry": entries}
            )
        except FhirAnswerLost:
            raise
        except FhirError as exc:
            for op in wave:
                self.done[op.index] = Written(op.url, Outcome.FAILED, op.item, str(exc))
            return
        _record_answers(response, wave, self.done)
        for answer, op in zip(response.get("entry") or [], wave, strict=True):
            self._remember(self.done[op.index], answer.get("resource"), "")

    def _one(self, op: Op, stripped: Resource | None) -> bool:
        """One create or update on its own; False when refused."""
        resource = stripped or rewrite(op.resource, self.resolved)
        try:
            if op.method == "PUT":
                answer = self.gateway.update(op.url, resource, if_match=op.if_match)
            else:
                answer = self.gateway.create(resource)
        except FhirAnswerLost:
            raise
        except FhirError as exc:
            self.done[op.index] = Written(op.url, Outcome.FAILED, op.item, str(exc))
            return False
        body = answer.resource if isinstance(answer.resource, Mapping) else {}
        reference = codes.relative_reference(answer.location) or _reference_of(body)
        if op.method == "PUT":
            reference = reference or op.url
        if not reference:
            raise FhirAnswerLost(f"{op.named()}: the answer names no resource")
        created = answer.status == 201 or op.method == "POST"
        outcome = Outcome.CREATED if created else Outcome.UPDATED
        self.done[op.index] = Written(reference, outcome, op.item)
        self._remember(self.done[op.index], body, answer.location)
        return True

    def _remember(self, written: Written, resource: Any, location: str) -> None:
        """Keep the version a create answered with, for completing a resource created early."""
        meta = resource.get("meta") if isinstance(resource, Mapping) else None
        version = meta.get("versionId") if isinstance(meta, Mapping) else None
        if not version and "/_history/" in location:
            version = location.rsplit("/_history/", 1)[1].strip("/")
        if version:
            self.versions[written.reference] = str(version)


# references ----------------------------------------------------------------------------------


def _urns(node: Any) -> set[str]:
    """The bundle-local (urn:) references anywhere in a resource."""
    found: set[str] = set()
    if isinstance(node, Mapping):
        ref = node.get("reference")
        if isinstance(ref, str) and ref.startswith("urn:"):
            found.add(ref)
        for value in node.values():
            found |= _urns(value)
    elif isinstance(node, list):
        for value in node:
            found |= _urns(value)
    return found


def rewrite(resource: Resource, resolved: Mapping[str, str]) -> Resource:
    """A copy with every resolved urn: reference replaced by the server's Type/id."""

    def walk(node: Any) -> Any:
        if isinstance(node, Mapping):
            out = {k: walk(v) for k, v in node.items()}
            ref = out.get("reference")
            if isinstance(ref, str) and ref in resolved:
                out["reference"] = resolved[ref]
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(resource)


def strip(resource: Resource, resolved: Mapping[str, str]) -> Resource:
    """A copy without the references not yet resolvable (and the elements left empty)."""
    empty = object()

    def walk(node: Any) -> Any:
        if isinstance(node, Mapping):
            ref = node.get("reference")
            if isinstance(ref, str) and ref.startswith("urn:") and ref not in resolved:
                return empty
            out = {}
            for key, value in node.items():
                kept = walk(value)
                if kept is not empty:
                    out[key] = kept
            return out if out else empty
        if isinstance(node, list):
            kept = [v for v in (walk(v) for v in node) if v is not empty]
            return kept if kept else empty
        return node

    result = walk(rewrite(resource, resolved))
    return result if isinstance(result, dict) else {"resourceType": resource["resourceType"]}


# read-back -----------------------------------------------------------------------------------


def _read_back(
    gateway: FhirGateway, ops: Sequence[Op], done: dict[int, Written], *, lost: FhirAnswerLost
) -> None:
    """After a lost answer: what the server holds of each entry not yet known, by the app's
    keys (creates) and by reading the updated resources (updates)."""
    unknown = [
        op for op in ops if op.index not in done or done[op.index].outcome is Outcome.NOT_SENT
    ]
    detail = str(lost)
    try:
        held = existing(gateway, unknown)
        now = _current(gateway, [op for op in unknown if op.method == "PUT"])
    except FhirError:
        for op in unknown:
            done[op.index] = Written(op.url, Outcome.UNKNOWN, op.item, detail)
        return
    for op in unknown:
        if op.method == "POST":
            found = held.get(op.key) if op.key else None
            outcome = Outcome.PRESENT if found is not None else Outcome.ABSENT
            reference = _reference_of(found) if found is not None else op.url
            done[op.index] = Written(reference, outcome, op.item, detail)
            continue
        server = now.get(op.index)
        applied = server is not None and _applied(op, server)
        done[op.index] = Written(
            op.url, Outcome.PRESENT if applied else Outcome.ABSENT, op.item, detail
        )


def _applied(op: Op, server: Mapping[str, Any]) -> bool:
    """True when the server's copy shows this update: a new version, and the status sent."""
    sent_version = op.if_match.removeprefix('W/"').rstrip('"')
    version = str((server.get("meta") or {}).get("versionId") or "")
    if sent_version and version == sent_version:
        return False
    return server.get("status") == op.resource.get("status")
