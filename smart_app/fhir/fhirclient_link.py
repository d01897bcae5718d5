"""A fhirclient client's server, token, session and patient, as the app's own FhirGateway.

The only module that touches a `fhirclient.client.FHIRClient`: it reads the server base
(`client.server.base_uri`), the bearer token fhirclient holds (`client.server.auth.access_token`),
fhirclient's `requests.Session` (`client.server.session`) and the patient (`client.patient_id`).
The token goes into the gateway's Authorization header only, never into a message or a log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import requests

from smart_app.errors import FhirProtocolError, FhirUnreachable, InputError
from smart_app.fhir.gateway import FhirGateway, Limits

if TYPE_CHECKING:
    from fhirclient.client import FHIRClient


def gateway_for(client: FHIRClient, *, limits: Limits | None = None) -> FhirGateway:
    """A gateway on the client's server with its token and session; InputError when the
    client has no server or is not authorized."""
    server = getattr(client, "server", None)
    if server is None or not getattr(server, "base_uri", None):
        raise InputError("the fhirclient client has no server: give it settings['api_base']")
    _prepare(client)
    token = getattr(server.auth, "access_token", None)
    session = getattr(server, "session", None)
    return FhirGateway(
        server.base_uri,
        bearer_token=token or None,
        limits=limits,
        session=session if isinstance(session, requests.Session) else None,
    )


def patient_of(client: FHIRClient) -> str:
    """The patient in the client's context; InputError when there is none."""
    patient_id = getattr(client, "patient_id", None)
    if not isinstance(patient_id, str) or not patient_id:
        raise InputError(
            "the fhirclient client has no patient: launch it with a patient in context "
            "or set settings['patient_id']"
        )
    return patient_id


def _prepare(client: FHIRClient) -> None:
    """Make fhirclient ready (it reads the server's CapabilityStatement once when it has not);
    InputError when it holds no usable authorization."""
    try:
        ready = bool(client.ready) or bool(client.prepare())
    except requests.RequestException as exc:
        raise FhirUnreachable(
            f"fhirclient cannot reach the server's CapabilityStatement ({type(exc).__name__})"
        ) from None
    except Exception as exc:  # fhirclient raises bare Exception and FHIRValidationError
        raise FhirProtocolError(
            f"fhirclient cannot prepare the server connection ({type(exc).__name__})"
        ) from None
    if not ready:
        raise InputError(
            "the fhirclient client is not authorized: complete its SMART authorization "
            "(authorize_url, then handle_callback) or give it a token first"
        )
