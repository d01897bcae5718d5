"""Response headers (CSP with frame-ancestors, no caching of PHI) and the CSRF and origin check,
applied to every state-changing request unless its view is explicitly exempt."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import Flask, Response, abort, request, session

from smart_app.config import WebSettings

CHECKED_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
"""The methods that may change something: each needs the session's CSRF token."""
EXEMPT_MARK = "csrf_exempt"
"""The attribute `csrf_exempt` sets on a view function."""

View = TypeVar("View", bound=Callable[..., Any])


def content_security_policy(settings: WebSettings) -> str:
    """Only the app's own scripts, styles and images; framing only by the configured EHRs."""
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "object-src 'none'",
            "base-uri 'none'",
            f"frame-ancestors {' '.join(settings.frame_ancestors)}",
        ]
    )


def csrf_exempt(view: View) -> View:
    """Exempt a view from the CSRF and origin check: only for callers that authenticate every
    request otherwise (the CDS Hooks services: a signed JWT), never for a browser form."""
    setattr(view, EXEMPT_MARK, True)
    return view


def exempt_endpoints(app: Flask) -> frozenset[str]:
    """The endpoints whose views are marked `csrf_exempt`."""
    return frozenset(
        name for name, view in app.view_functions.items() if getattr(view, EXEMPT_MARK, False)
    )


def install(app: Flask, settings: WebSettings) -> None:
    """Check the CSRF token and origin of every state-changing request (exempt views aside)
    before its view runs, and add the security headers to every response."""
    policy = content_security_policy(settings)

    @app.before_request
    def _csrf() -> None:
        if request.method not in CHECKED_METHODS or request.routing_exception is not None:
            return  # nothing to change, or no view: the 404 or 405 answers it
        view = app.view_functions.get(request.endpoint or "")
        if not getattr(view, EXEMPT_MARK, False):
            check_csrf(settings)

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = policy
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        if response.mimetype == "text/html":
            response.headers["Cache-Control"] = "no-store"
        return response


def check_csrf(settings: WebSettings) -> None:
    """Refuse a write without this session's CSRF token or from another origin."""
    expected = session.get("csrf")
    sent = request.form.get("csrf_token", "")
    if not isinstance(expected, str) or not hmac.compare_digest(expected, sent):
        abort(403, description="The form's security token is missing or out of date. Reload.")
    origin = request.headers.get("Origin")
    if origin and _origin(origin) != _origin(settings.public_url):
        abort(403, description="This form was sent from another site and is refused.")


def _origin(url: str) -> tuple[str, str]:
    """Scheme and host:port of a URL."""
    parts = urlsplit(url)
    return parts.scheme, parts.netloc
