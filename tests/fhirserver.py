"""The real local FHIR server (sekmet) for tests, and a counting, fault-injecting HTTP proxy."""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
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


@dataclass
class Fault:
    """An answer the proxy gives instead of forwarding, once, for a matching request."""

    method: str
    path: str
    status: int
    body: dict[str, Any]
    after: int = 0
    """Let this many matching requests through first."""


@dataclass
class Proxy:
    """Forwards to the real server, records every request, can answer one with a fault."""

    target: str
    base: str = ""
    calls: list[tuple[str, str]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        """Forget the recorded calls and pending faults."""
        with self.lock:
            self.calls.clear()
            self.faults.clear()

    def fail_next(self, method: str, path: str, status: int, text: str, *, after: int = 0) -> None:
        """Answer a later matching request (after `after` others) with an OperationOutcome."""
        body = {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "exception", "diagnostics": text}],
        }
        with self.lock:
            self.faults.append(Fault(method, path, status, body, after))


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
                    (f for f in state.faults if f.method == self.command and f.path == path), None
                )
                if fault and fault.after > 0:
                    fault.after -= 1
                    fault = None
                elif fault:
                    state.faults.remove(fault)
            if fault:
                self._reply(fault.status, json.dumps(fault.body).encode(), {})
                return
            headers = {
                k: v
                for k, v in self.headers.items()
                if k.lower() in ("content-type", "accept", "authorization", "if-match")
            }
            rest = self.path.removeprefix("/fhir")
            request = urllib.request.Request(  # noqa: S310 - the test's own target
                state.target + rest, data=body, method=self.command, headers=headers
            )
            try:
                with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310
                    status, data, extra = answer.status, answer.read(), answer.headers
            except urllib.error.HTTPError as exc:
                status, data, extra = exc.code, exc.read(), exc.headers
            data = data.replace(state.target.encode(), state.base.encode())
            self._reply(status, data, {"Retry-After": extra.get("Retry-After")})

        def _reply(self, status: int, data: bytes, extra: Mapping[str, str | None]) -> None:
            """Send an answer."""
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
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
