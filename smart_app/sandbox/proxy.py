"""The sandbox EHR's /fhir gateway: bearer token, SMART scopes, then the real FHIR server.

Every request except /metadata and /.well-known needs `Authorization: Bearer <access token>`.
A granted request goes to the upstream server without that header (only Accept, Content-Type,
the conditional headers and Prefer pass); the upstream base URL is rewritten to the public FHIR
base in bodies and in Location/Content-Location, and the other way round in request bodies.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote

import requests
from flask import Flask, Response, request

from smart_app.sandbox import scopes

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 60.0
FHIR_JSON = "application/fhir+json"
REQUEST_HEADERS = (
    "Accept",
    "Content-Type",
    "If-Match",
    "If-None-Match",
    "If-None-Exist",
    "If-Modified-Since",
    "Prefer",
)
RESPONSE_HEADERS = ("Content-Type", "ETag", "Last-Modified", "Location", "Content-Location")
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
SECURITY_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"


class UpstreamError(Exception):
    """The real FHIR server could not be reached or answered unusably."""


@dataclass(frozen=True)
class Upstream:
    """The real FHIR server behind the gateway, and the public base shown in its place."""

    base: str
    public_base: str
    timeout_s: tuple[float, float] = (CONNECT_TIMEOUT_S, READ_TIMEOUT_S)

    def url(self, relative: str) -> str:
        """The upstream URL of a path relative to the FHIR base (segments re-quoted)."""
        path = "/".join(quote(s, safe="$_-.") for s in relative.split("/")) if relative else ""
        return f"{self.base.rstrip('/')}/{path}" if path else self.base.rstrip("/")

    def send(
        self,
        method: str,
        relative: str,
        *,
        query: str = "",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """One exchange with the upstream server (no redirects, bounded time)."""
        url = self.url(relative) + (f"?{query}" if query else "")
        try:
            return requests.request(
                method,
                url,
                data=body,
                headers=dict(headers or {}),
                timeout=self.timeout_s,
                allow_redirects=False,
            )
        except requests.RequestException as error:
            raise UpstreamError(
                f"the FHIR server did not answer ({type(error).__name__})"
            ) from error

    def lookup(self, relative: str) -> list[dict[str, Any]]:
        """The resources now on the server at a read (`Type/id`) or search (`Type?q`) URL."""
        path, _, query = relative.partition("?")
        answer = self.send("GET", path, query=query, headers={"Accept": FHIR_JSON})
        if answer.status_code in (404, 410):
            return []
        if answer.status_code != 200:
            raise UpstreamError(f"checking {path} failed: HTTP {answer.status_code}")
        try:
            body = answer.json()
        except ValueError as error:
            raise UpstreamError(f"checking {path}: the answer is not JSON") from error
        if isinstance(body, dict) and body.get("resourceType") == "Bundle":
            return [
                e["resource"]
                for e in body.get("entry") or []
                if isinstance(e, dict)
                and isinstance(e.get("resource"), dict)
                and (e.get("search") or {}).get("mode", "match") == "match"
            ]
        return [body] if isinstance(body, dict) else []

    def to_public(self, data: bytes) -> bytes:
        """Upstream URLs in a body rewritten to the public FHIR base."""
        return data.replace(self.base.rstrip("/").encode(), self.public_base.encode())

    def to_upstream(self, data: bytes) -> bytes:
        """Public FHIR base URLs in a request body rewritten to the upstream base."""
        return data.replace(self.public_base.encode(), self.base.rstrip("/").encode())

    def public_url(self, value: str) -> str:
        """An upstream URL (a Location header) on the public base."""
        return self.to_public(value.encode()).decode()


def outcome(
    status: int,
    code: str,
    text: str,
    *,
    issues: list[scopes.Refusal] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """An OperationOutcome response (one issue, or one per refusal)."""
    items = issues or [scopes.Refusal(status, code, text)]
    body = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": item.code,
                "diagnostics": item.text,
                **({"expression": [item.expression]} if item.expression else {}),
            }
            for item in items
        ],
    }
    return Response(
        json.dumps(body), status=status, headers=dict(headers or {}), content_type=FHIR_JSON
    )


def _relay(upstream: Upstream, answer: requests.Response) -> Response:
    """The upstream answer, on the public base."""
    headers = {}
    for name in RESPONSE_HEADERS:
        value = answer.headers.get(name)
        if value:
            headers[name] = upstream.public_url(value) if "Location" in name else value
    return Response(upstream.to_public(answer.content), status=answer.status_code, headers=headers)


def _forward_headers() -> dict[str, str]:
    """The client's headers that go upstream (never Authorization or cookies)."""
    return {name: request.headers[name] for name in REQUEST_HEADERS if name in request.headers}


def _bearer(authenticate: Callable[[str], scopes.Grant | None]) -> scopes.Grant | Response:
    """The grant of the request's bearer token, or the 401 answer."""
    header = request.headers.get("Authorization", "")
    kind, _, token = header.partition(" ")
    if kind.lower() != "bearer" or not token.strip():
        return outcome(
            401,
            "login",
            "This FHIR endpoint needs an access token: Authorization: Bearer <token>",
            headers={"WWW-Authenticate": 'Bearer realm="sandbox-ehr"'},
        )
    grant = authenticate(token.strip())
    if grant is None:
        return outcome(
            401,
            "login",
            "The access token is unknown, revoked or expired",
            headers={"WWW-Authenticate": 'Bearer realm="sandbox-ehr", error="invalid_token"'},
        )
    return grant


def _json_body(data: bytes) -> Any:
    """The request body as JSON (None when empty); ValueError when it is not JSON."""
    return json.loads(data) if data.strip() else None


def with_security(capability: Any, *, authorize_url: str, token_url: str) -> Any:
    """A CapabilityStatement whose rest[0].security announces SMART and its OAuth URIs."""
    if not isinstance(capability, dict) or not capability.get("rest"):
        return capability
    rest = capability["rest"][0]
    security = dict(rest.get("security") or {})
    security["extension"] = [
        {
            "url": OAUTH_URIS,
            "extension": [
                {"url": "authorize", "valueUri": authorize_url},
                {"url": "token", "valueUri": token_url},
            ],
        }
    ]
    security["service"] = [
        {
            "coding": [{"system": SECURITY_SERVICE, "code": "SMART-on-FHIR"}],
            "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)",
        }
    ]
    security["description"] = "SMART App Launch: the sandbox EHR's authorization server"
    rest["security"] = security
    return capability


def register_proxy(
    app: Flask,
    *,
    upstream: Upstream,
    authenticate: Callable[[str], scopes.Grant | None],
    authorize_url: str,
    token_url: str,
) -> None:
    """Add /fhir/metadata and the authorized /fhir pass-through to the app."""
    public = upstream.public_base

    def metadata() -> Response:
        """The upstream CapabilityStatement with SMART security (no token needed)."""
        try:
            answer = upstream.send("GET", "metadata", headers={"Accept": FHIR_JSON})
        except UpstreamError as error:
            return outcome(502, "transient", str(error))
        if answer.status_code != 200:
            return _relay(upstream, answer)
        try:
            capability = json.loads(upstream.to_public(answer.content))
        except ValueError:
            return outcome(502, "transient", "the FHIR server's metadata is not JSON")
        body = with_security(capability, authorize_url=authorize_url, token_url=token_url)
        return Response(json.dumps(body), status=200, content_type=FHIR_JSON)

    def base() -> Response:
        """A batch or transaction Bundle: every entry must be granted, or none is sent."""
        grant = _bearer(authenticate)
        if isinstance(grant, Response):
            return grant
        data = request.get_data()
        try:
            bundle = _json_body(data)
        except ValueError:
            return outcome(400, "invalid", "The body is not JSON")
        try:
            refusals = scopes.authorize_bundle(
                grant, bundle, lookup=upstream.lookup, fhir_base=public
            )
        except UpstreamError as error:
            return outcome(502, "transient", str(error))
        if refusals:
            status = max(r.status for r in refusals)
            return outcome(status, refusals[0].code, refusals[0].text, issues=refusals)
        return _forward("POST", "", data)

    def resource(rest: str) -> Response:
        """One REST interaction on a resource type or instance."""
        grant = _bearer(authenticate)
        if isinstance(grant, Response):
            return grant
        method = "GET" if request.method == "HEAD" else request.method
        data = request.get_data()
        query = request.query_string.decode("latin-1")
        extra: list[tuple[str, str]] = []
        body = None
        if request.mimetype == "application/x-www-form-urlencoded":
            extra = parse_qsl(data.decode("utf-8", "replace"), keep_blank_values=True)
        else:
            try:
                body = _json_body(data)
            except ValueError:
                return outcome(400, "invalid", "The body is not JSON")
        url = f"{rest}?{query}" if query else rest
        access = scopes.parse_request(
            method, url, resource=body, extra_params=extra, fhir_base=public
        )
        if isinstance(access, scopes.Refusal):
            return outcome(access.status, access.code, access.text)
        try:
            refusal = scopes.authorize(grant, access, lookup=upstream.lookup, fhir_base=public)
        except UpstreamError as error:
            return outcome(502, "transient", str(error))
        if refusal:
            return outcome(refusal.status, refusal.code, refusal.text)
        return _forward(method, rest, data, query=query)

    def _forward(method: str, rest: str, data: bytes, *, query: str = "") -> Response:
        """Send a granted request upstream and relay the answer."""
        try:
            answer = upstream.send(
                method,
                rest,
                query=query,
                body=upstream.to_upstream(data) if data else None,
                headers=_forward_headers(),
            )
        except UpstreamError as error:
            return outcome(502, "transient", str(error))
        return _relay(upstream, answer)

    app.add_url_rule("/fhir/metadata", "fhir_metadata", metadata, methods=["GET"])
    app.add_url_rule("/fhir", "fhir_base", base, methods=["POST"])
    app.add_url_rule(
        "/fhir/<path:rest>", "fhir_resource", resource, methods=["GET", "POST", "PUT", "DELETE"]
    )
