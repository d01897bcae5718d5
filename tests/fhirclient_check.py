"""A second, independent parser for what the app writes: read it back through fhirclient's R4
models (strict: an unknown element, a wrong type or a missing required element fails)."""

from __future__ import annotations

import importlib
import re

from fhirclient.auth import FHIRAuth
from fhirclient.models.fhirabstractresource import FHIRAbstractResource
from fhirclient.server import FHIRServer

REFERENCE = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]+)?$")
"""A server reference Type/id, optionally with its version."""


class FhirclientReadBackError(AssertionError):
    """A written resource that fhirclient could not read or parse."""


def model_class(resource_type: str) -> type[FHIRAbstractResource]:
    """fhirclient's model class for a resource type, e.g. CarePlan -> careplan.CarePlan."""
    try:
        module = importlib.import_module(f"fhirclient.models.{resource_type.lower()}")
        kind = getattr(module, resource_type)
    except (ImportError, AttributeError):
        raise FhirclientReadBackError(f"fhirclient has no R4 model for {resource_type}") from None
    return kind


def fhirclient_server(base_url: str, *, bearer_token: str | None = None) -> FHIRServer:
    """A fhirclient server on a base URL, signing requests with a bearer token when given."""
    server = FHIRServer(None, base_uri=base_url)
    if bearer_token:
        state = {"app_id": "read-back", "access_token": bearer_token}
        server.auth = FHIRAuth.create("oauth2", state=state)
    else:
        server.auth = FHIRAuth.create("none", state={"app_id": "read-back"})
    return server


def read_back_with_fhirclient(
    base_url: str, references: list[str], *, bearer_token: str | None = None
) -> list[object]:
    """Each referenced resource read from the server and parsed by fhirclient's model of its
    type, in order; FhirclientReadBackError naming the reference and what fhirclient said."""
    server = fhirclient_server(base_url, bearer_token=bearer_token)
    parsed: list[object] = []
    for reference in references:
        match = REFERENCE.match(reference)
        if match is None:
            raise FhirclientReadBackError(f"{reference}: not a server reference Type/id")
        resource_type, rid = match.groups()
        kind = model_class(resource_type)
        try:
            resource = kind.read(rid, server)
        except Exception as exc:  # fhirclient raises FHIRValidationError, HTTP errors, Exception
            raise FhirclientReadBackError(
                f"{reference}: fhirclient could not read it: {_said(exc)}"
            ) from exc
        if resource.id != rid:
            raise FhirclientReadBackError(f"{reference}: fhirclient read id {resource.id!r}")
        parsed.append(resource)
    return parsed


def _said(exc: Exception) -> str:
    """What an exception says: its type, its message and an HTTP status when it carries one."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    message = str(exc).strip()
    parts = [type(exc).__name__]
    if status is not None:
        parts.append(f"HTTP {status}")
    if message:
        parts.append(message)
    return ": ".join(parts)
