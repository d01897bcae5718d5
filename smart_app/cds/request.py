"""A CDS Hooks request checked: hook, hookInstance, context, fhirServer and its token, prefetch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from smart_app.cds.discovery import Hook, Service, prefetch_urls
from smart_app.config import CdsClient
from smart_app.errors import InputError, SmartAppError
from smart_app.fhir import codes

MAX_HOOK_INSTANCE_CHARS = 200


class CdsBadRequest(InputError):
    """A request the service cannot take (answered with 400 and this message)."""


class CdsNoData(SmartAppError):
    """The service cannot get the data it needs: not prefetched and no FHIR server to read it
    from, or the server would not give it (answered with 412, as CDS Hooks says)."""


@dataclass(frozen=True)
class HookRequest:
    """What the service needs from one CDS Hooks call."""

    service: Service
    hook_instance: str
    patient_id: str
    context: Mapping[str, Any]
    fhir_server: str | None
    access_token: str | None = field(repr=False)
    prefetch: Mapping[str, Any] = field(repr=False)
    """The prefetched answers, by prefetch key (null values left out)."""


def _object(value: Any, what: str) -> Mapping[str, Any]:
    """A JSON object, or CdsBadRequest naming it."""
    if not isinstance(value, Mapping):
        raise CdsBadRequest(f"{what} must be a JSON object")
    return value


def _text(value: Any, what: str) -> str:
    """A non-empty string, or CdsBadRequest naming it."""
    if not isinstance(value, str) or not value.strip():
        raise CdsBadRequest(f"{what} must be a non-empty string")
    return value


def _base(url: str) -> str:
    """A FHIR base compared without its trailing slash."""
    return url.rstrip("/")


def _server(body: Mapping[str, Any], client: CdsClient) -> tuple[str | None, str | None]:
    """(fhirServer, its access token): the server must be one the client registered, so its
    token never goes anywhere else; none without fhirServer."""
    server = body.get("fhirServer")
    if server is None:
        return None, None
    server = _text(server, "fhirServer")
    if _base(server) not in {_base(s) for s in client.fhir_servers}:
        raise CdsBadRequest(
            "fhirServer is not a FHIR server registered for this CDS client; nothing was read"
        )
    authorization = body.get("fhirAuthorization")
    if authorization is None:
        return _base(server), None
    authorization = _object(authorization, "fhirAuthorization")
    token = _text(authorization.get("access_token"), "fhirAuthorization.access_token")
    kind = authorization.get("token_type", "Bearer")
    if not isinstance(kind, str) or kind.lower() != "bearer":
        raise CdsBadRequest("fhirAuthorization.token_type must be Bearer")
    return _base(server), token


def _checked_prefetch(prefetch: Mapping[str, Any], patient_id: str) -> dict[str, Any]:
    """The prefetched answers that are there, each the kind of resource its key asks for (the
    Patient must be the context's patient)."""
    known = prefetch_urls(patient_id)
    out: dict[str, Any] = {}
    for key, value in prefetch.items():
        if value is None or key not in known:
            continue
        answer = _object(value, f"prefetch.{key}")
        kind = answer.get("resourceType")
        if kind == "OperationOutcome":
            out[key] = answer
        elif key == "patient":
            if kind != "Patient" or answer.get("id") != patient_id:
                raise CdsBadRequest("prefetch.patient must be the Patient of context.patientId")
            out[key] = answer
        elif kind != "Bundle" or answer.get("type") != "searchset":
            raise CdsBadRequest(f"prefetch.{key} must be a searchset Bundle or null")
        else:
            out[key] = answer
    return out


def parse_request(body: Any, service: Service, *, client: CdsClient) -> HookRequest:
    """The request checked against the service and the client it comes from."""
    body = _object(body, "the request body")
    hook = body.get("hook")
    if hook != service.hook.value:
        raise CdsBadRequest(f"hook must be {service.hook.value!r} for service {service.id}")
    instance = _text(body.get("hookInstance"), "hookInstance")
    if len(instance) > MAX_HOOK_INSTANCE_CHARS:
        raise CdsBadRequest(f"hookInstance is longer than {MAX_HOOK_INSTANCE_CHARS} characters")
    context = _object(body.get("context"), "context")
    patient_id = context.get("patientId")
    if not isinstance(patient_id, str) or not codes.FHIR_ID.fullmatch(patient_id):
        raise CdsBadRequest("context.patientId must be a FHIR id")
    if service.hook in (Hook.ORDER_SELECT, Hook.ORDER_SIGN):
        orders = _object(context.get("draftOrders"), "context.draftOrders")
        if orders.get("resourceType") != "Bundle" or not isinstance(orders.get("entry", []), list):
            raise CdsBadRequest("context.draftOrders must be a FHIR Bundle")
    if service.hook is Hook.ORDER_SELECT:
        selections = context.get("selections", [])
        if not isinstance(selections, list) or not all(isinstance(s, str) for s in selections):
            raise CdsBadRequest("context.selections must be a list of references")
    prefetch = body.get("prefetch")
    given = _checked_prefetch(_object(prefetch, "prefetch"), patient_id) if prefetch else {}
    server, token = _server(body, client)
    return HookRequest(
        service=service,
        hook_instance=instance,
        patient_id=patient_id,
        context=context,
        fhir_server=server,
        access_token=token,
        prefetch=given,
    )
