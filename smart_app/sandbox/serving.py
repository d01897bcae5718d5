"""The sandbox's request handler: log lines that name the route, not launch ids or codes, and a
414 for an overlong request line.

A log line is `:port METHOD route status`, the route being the matched URL rule with each
argument that identifies a launch (launch id, launch context id, code, token, state) left as its
placeholder (`/chart/<launch_id>`, `/p/<context_id>/write`) and the query string never written.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote, urlsplit

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map
from werkzeug.serving import WSGIRequestHandler

LOG = logging.getLogger("smart_app.sandbox")
MAX_REQUEST_LINE_BYTES = 8 * 1024
"""Longer request lines get 414 URI Too Long (gunicorn's limit_request_line is 4094 bytes)."""
DRAIN_MAX_BYTES = 1024 * 1024
DRAIN_TIMEOUT_S = 2.0
"""After a 414, what the client still sends is read and dropped (up to this much, this long) so
that closing the connection does not reset it before the client reads the answer."""
HIDDEN_ARGUMENT = re.compile(r"launch|context|code|token|state|secret", re.IGNORECASE)
"""URL rule arguments whose values identify a launch: logged as their placeholder."""
RULE_ARGUMENT = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")
UNROUTED = "(no route)"
TOO_LONG = "(request line too long)"


def route_for_log(url_map: Map, method: str, target: str) -> str:
    """The request's route as logged: the matched rule, its launch-identifying arguments as
    placeholders, the others as sent; UNROUTED when no rule matches (the raw path may hold
    anything)."""
    path = unquote(urlsplit(target).path or "/")
    try:
        rule, arguments = url_map.bind("sandbox.invalid").match(
            path, method=method, return_rule=True
        )
    except HTTPException:
        return UNROUTED

    def argument(match: re.Match[str]) -> str:
        name = match.group(1)
        if HIDDEN_ARGUMENT.search(name) or name not in arguments:
            return f"<{name}>"
        return str(arguments[name])

    return RULE_ARGUMENT.sub(argument, rule.rule)


class QuietHandler(WSGIRequestHandler):
    """Request log lines by route (no launch ids, codes or query strings); 414 for request
    lines over MAX_REQUEST_LINE_BYTES."""

    def parse_request(self) -> bool:
        """Refuse an overlong request line before parsing it (the standard library's own bound
        is 64 kB). The previous request's path on this connection is forgotten first."""
        self.__dict__.pop("path", None)
        if len(self.raw_requestline) > MAX_REQUEST_LINE_BYTES:
            self.requestline, self.request_version, self.command = "", "", ""
            self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
            return False
        return super().parse_request()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The error page; after a 414 the connection is drained before it is closed."""
        if code == HTTPStatus.REQUEST_URI_TOO_LONG:
            explain = f"The request line is longer than {MAX_REQUEST_LINE_BYTES} bytes."
        super().send_error(code, message, explain)
        if code == HTTPStatus.REQUEST_URI_TOO_LONG:
            self.close_connection = True
            self._drain()

    def _drain(self) -> None:
        """Stop writing, then read and drop what the client still sends, bounded."""
        with contextlib.suppress(OSError):
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(DRAIN_TIMEOUT_S)
            left = DRAIN_MAX_BYTES
            while left > 0 and (chunk := self.connection.recv(min(64 * 1024, left))):
                left -= len(chunk)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Port, method, route and status only."""
        status = int(code) if isinstance(code, int) or str(code).isdigit() else code
        LOG.info(
            ":%s %s %s %s",
            self.server.server_port,
            self.command or "-",
            self._route(status),
            status,
        )

    def log_error(self, format: str, *args: Any) -> None:
        """Nothing: the standard library's error lines quote the request line (with its launch
        ids); log_request writes the status."""

    def _route(self, status: int | str) -> str:
        """The route of the request being answered, as logged."""
        if status == HTTPStatus.REQUEST_URI_TOO_LONG:
            return TOO_LONG
        target = getattr(self, "path", None)
        app = getattr(self.server.app, "app", self.server.app)  # run._Deferred or the app
        url_map = getattr(app, "url_map", None)
        if not isinstance(target, str) or not self.command or url_map is None:
            return UNROUTED
        return route_for_log(url_map, self.command, target)
