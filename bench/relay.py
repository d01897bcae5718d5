"""A reverse proxy on loopback that adds latency each way and counts requests by path.

Put in front of the sandbox EHR, it is the network between the EHR and both the browser
(authorize) and the app (discovery, token, FHIR reads through the EHR's gateway). Headers and
bodies pass unchanged (cookies, redirects and all); only hop-by-hop headers are dropped.
"""

from __future__ import annotations

import contextlib
import http.client
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}
)
TIMEOUT_S = 120.0


@dataclass
class Relay:
    """The relay's state: where it forwards, its delay, and what it has seen."""

    target: str
    """The upstream origin, http://host:port."""
    base: str = ""
    """The relay's own origin."""
    delay_s: float = 0.0
    """Slept before forwarding a request and again before answering (0.05: 100 ms a trip)."""
    calls: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take_calls(self) -> list[tuple[str, str]]:
        """The (method, path) pairs seen since the last call, and forget them."""
        with self.lock:
            calls, self.calls = self.calls, []
        return calls


class _Server(ThreadingHTTPServer):
    """Threads per request; many at once."""

    daemon_threads = True
    request_queue_size = 128


@contextlib.contextmanager
def relay(target: str) -> Iterator[Relay]:
    """A relay on a free loopback port in front of `target` (an origin)."""
    parts = urlsplit(target)
    state = Relay(target=f"{parts.scheme}://{parts.netloc}")
    host, port = parts.hostname or "127.0.0.1", parts.port or 80

    class Handler(BaseHTTPRequestHandler):
        """Forward one request as is, after the delay; answer after the delay."""

        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet (query strings carry codes and launch ids)."""

        def _handle(self) -> None:
            """Count, delay, forward, delay, answer."""
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            with state.lock:
                state.calls.append((self.command, self.path.split("?", 1)[0]))
            if state.delay_s:
                time.sleep(state.delay_s)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            upstream = http.client.HTTPConnection(host, port, timeout=TIMEOUT_S)
            try:
                upstream.request(self.command, self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                status, reason, extra = answer.status, answer.reason, answer.getheaders()
            finally:
                upstream.close()
            if state.delay_s:
                time.sleep(state.delay_s)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.send_response(status, reason)
                for key, value in extra:
                    if key.lower() not in HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _handle

    server = _Server(("127.0.0.1", 0), Handler)
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
