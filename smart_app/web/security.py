"""Response headers (CSP with frame-ancestors, no caching of PHI) and the CSRF check."""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from flask import Flask, Response, abort, request, session

from smart_app.config import WebSettings


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


def install(app: Flask, settings: WebSettings) -> None:
    """Add the security headers to every response."""
    policy = content_security_policy(settings)

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
