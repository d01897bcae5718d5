"""The real local FHIR server (sekmet) for tests, and a counting, fault-injecting HTTP proxy."""

from __future__ import annotations

import contextlib
import http.client
import json
import socketserver
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from smart_app.sandbox.fhirserver import free_port, sekmet

__all__ = ["free_port", "sekmet"]


def http_json(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    """A plain HTTP exchange for test set-up and checks (not the code under test)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 - loopback test server
        url,
        data=data,
        method=method,
        headers={"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def load_patient(base: str, bundle: Mapping[str, Any], *, suffix: str | None = None) -> str:
    """Load a fixture Bundle with one transaction under fresh ids; return the Patient id."""
    suffix = suffix or uuid.uuid4().hex[:8]
    ids = {}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        new_id = f"{resource['id']}-{suffix}"
        ids[f"{resource['resourceType']}/{resource['id']}"] = f"{resource['resourceType']}/{new_id}"
        if entry.get("fullUrl"):
            ids[entry["fullUrl"]] = f"{resource['resourceType']}/{new_id}"
    text = json.dumps(bundle)
    for old, new in sorted(ids.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(f'"reference": "{old}"', f'"reference": "{new}"')
    renamed = json.loads(text)
    entries = []
    patient_id = ""
    for entry in renamed["entry"]:
        resource = dict(entry["resource"])
        resource["id"] = f"{resource['id']}-{suffix}"
        if resource["resourceType"] == "Patient":
            patient_id = resource["id"]
        entries.append(
            {
                "resource": resource,
                "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
            }
        )
    status, answer = http_json(
        "POST", base, {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    )
    if status == 400 and "not supported" in json.dumps(answer):
        for entry in entries:  # a server without transactions: one PUT each
            status, answer = http_json(
                "PUT", f"{base}/{entry['request']['url']}", entry["resource"]
            )
            if status not in (200, 201):
                raise RuntimeError(f"loading the fixture failed: {status} {answer}")
        return patient_id
    if status != 200:
        raise RuntimeError(f"loading the fixture failed: {status} {answer}")
    return patient_id


def search(base: str, query: str) -> list[dict[str, Any]]:
    """All resources of a search (follows next links)."""
    url: str | None = f"{base}/{query}"
    out = []
    while url:
        status, page = http_json("GET", url)
        if status != 200:
            raise RuntimeError(f"search {query} failed: {status} {page}")
        out.extend(e["resource"] for e in page.get("entry") or [])
        url = next((x["url"] for x in page.get("link", []) if x["relation"] == "next"), None)
    return out


class FaultMode(StrEnum):
    """What the proxy does to a matching request."""

    ANSWER = "answer"
    """Answer with the fault's status and body; the server never sees the request."""
    DROP_AFTER = "drop-after"
    """Forward (the server applies it), then close the connection without an answer."""
    STALL_AFTER = "stall-after"
    """Forward, then hold the answer longer than the client waits."""
    GARBLE_AFTER = "garble-after"
    """Forward, then answer 200 with a body that is not JSON."""
    STALE_ENTRY = "stale-entry"
    """Forward with a stale version in If-Match (entry `entry` of a Bundle, or the header):
    the server itself refuses that entry."""


@dataclass
class Fault:
    """What the proxy does, once, to a matching request instead of plainly forwarding it."""

    method: str
    path: str
    status: int
    body: dict[str, Any]
    after: int = 0
    """Let this many matching requests through first."""
    mode: FaultMode = FaultMode.ANSWER
    entry: int = 0
    stall_s: float = 3.0


@dataclass
class Proxy:
    """Forwards to the real server, records every request, can answer one with a fault."""

    target: str
    base: str = ""
    calls: list[tuple[str, str]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    delay_s: float = 0.0
    """Added to every request on its way in and again on its way out (a network's latency:
    0.05 makes a 100 ms round trip); 0 forwards at once."""

    def reset(self) -> None:
        """Forget the recorded calls and pending faults."""
        with self.lock:
            self.calls.clear()
            self.faults.clear()

    def fault_next(
        self,
        method: str,
        path: str,
        mode: FaultMode,
        *,
        after: int = 0,
        entry: int = 0,
        stall_s: float = 3.0,
    ) -> None:
        """Apply a fault that lets the request reach the server (or corrupts it on the way)."""
        with self.lock:
            self.faults.append(
                Fault(method, path, 0, {}, after, mode=mode, entry=entry, stall_s=stall_s)
            )

    def fail_next(self, method: str, path: str, status: int, text: str, *, after: int = 0) -> None:
        """Answer a later matching request (after `after` others) with an OperationOutcome."""
        body = {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "exception", "diagnostics": text}],
        }
        with self.lock:
            self.faults.append(Fault(method, path, status, body, after))


def _matches(pattern: str, path: str) -> bool:
    """A fault's path: exact, or a prefix ending in '*'."""
    return path == pattern or (pattern.endswith("*") and path.startswith(pattern[:-1]))


def _stale(
    body: bytes | None, headers: dict[str, str], entry: int
) -> tuple[bytes | None, dict[str, str]]:
    """The request with a version no server holds in If-Match: entry `entry` of a Bundle (a
    negative `entry`: its first update), or the If-Match header of a single update."""
    stale = 'W/"999999"'
    data = json.loads(body) if body else None
    if isinstance(data, dict) and data.get("resourceType") == "Bundle":
        if entry < 0:
            entry = next(i for i, e in enumerate(data["entry"]) if e["request"]["method"] == "PUT")
        request = data["entry"][entry]["request"]
        request["ifMatch"] = stale
        return json.dumps(data).encode(), headers
    return body, {
        **{k: v for k, v in headers.items() if k.lower() != "if-match"},
        "If-Match": stale,
    }


@contextlib.contextmanager
def proxy(target: str) -> Iterator[Proxy]:
    """A loopback HTTP proxy in front of `target` (a FHIR base URL)."""
    state = Proxy(target=target.rstrip("/"))

    class Handler(BaseHTTPRequestHandler):
        """Forward one request, rewriting the server's absolute URLs to the proxy's."""

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

        def _handle(self) -> None:
            """Record, then fault or forward."""
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            path = self.path.split("?", 1)[0].rstrip("/")
            with state.lock:
                state.calls.append((self.command, self.path))
                fault = next(
                    (
                        f
                        for f in state.faults
                        if f.method == self.command and _matches(f.path, path)
                    ),
                    None,
                )
                if fault and fault.after > 0:
                    fault.after -= 1
                    fault = None
                elif fault:
                    state.faults.remove(fault)
            if state.delay_s:
                time.sleep(state.delay_s)  # the request's way in
            if fault and fault.mode is FaultMode.ANSWER:
                self._reply(fault.status, json.dumps(fault.body).encode(), {})
                return
            headers = {
                k: v
                for k, v in self.headers.items()
                if k.lower() in ("content-type", "accept", "authorization", "if-match")
            }
            if fault and fault.mode is FaultMode.STALE_ENTRY:
                body, headers = _stale(body, headers, fault.entry)
            rest = self.path.removeprefix("/fhir")
            request = urllib.request.Request(  # noqa: S310 - the test's own target
                state.target + rest, data=body, method=self.command, headers=headers
            )
            try:
                with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310
                    status, data, extra = answer.status, answer.read(), answer.headers
            except urllib.error.HTTPError as exc:
                status, data, extra = exc.code, exc.read(), exc.headers
            except (OSError, http.client.HTTPException) as exc:  # the server went away or gave up
                outcome = {
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "error", "code": "transient", "diagnostics": str(exc)}],
                }
                self._reply(502, json.dumps(outcome).encode(), {})
                return
            data = data.replace(state.target.encode(), state.base.encode())
            if fault and fault.mode is FaultMode.DROP_AFTER:
                self.close_connection = True
                return
            if fault and fault.mode is FaultMode.STALL_AFTER:
                time.sleep(fault.stall_s)
            if fault and fault.mode is FaultMode.GARBLE_AFTER:
                status, data = 200, data[: len(data) // 2] or b"{"
            location = extra.get("Location")
            if location:
                location = location.replace(state.target, state.base)
            self._reply(
                status,
                data,
                {
                    "Retry-After": extra.get("Retry-After"),
                    "Location": location,
                    "ETag": extra.get("ETag"),
                },
            )

        def _reply(self, status: int, data: bytes, extra: Mapping[str, str | None]) -> None:
            """Send an answer (after the delay of its way out)."""
            if state.delay_s:
                time.sleep(state.delay_s)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self._send(status, data, extra)

        def _send(self, status: int, data: bytes, extra: Mapping[str, str | None]) -> None:
            """Write the answer (the client may have given up waiting)."""
            self.send_response(status)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in extra.items():
                if value:
                    self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base = f"http://127.0.0.1:{server.server_address[1]}/fhir"
    with serving(server):
        yield state


@contextlib.contextmanager
def serving(server: socketserver.BaseServer) -> Iterator[None]:
    """Serve `server` on a daemon thread for the block; then shut it down and close it."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
