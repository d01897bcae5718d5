"""Plan and write for apps already built on fhirclient: its server, token, session and patient.

An app that holds an authorized `fhirclient.client.FHIRClient` (SMART launch done, patient in
context) gets the plan and writes it without a second sign-in::

    from smart_app.fhirclient_entry import plan_with_fhirclient, write_with_fhirclient

    evaluation = plan_with_fhirclient(client, infusion_date=date(2026, 11, 24))
    written = write_with_fhirclient(client, evaluation, confirmation=Confirmation(...))

The server base is `client.server.base_uri`, the bearer token the one fhirclient holds
(`client.server.auth.access_token`), the HTTP session `client.server.session` and the patient
`client.patient_id` (see smart_app/fhir/fhirclient_link.py). The reads and writes are the app's
own (FhirGateway and service), so every check of the CLI and the web app applies.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from smart_app import clock, service
from smart_app.errors import InputError
from smart_app.fhir.fhirclient_link import gateway_for, patient_of
from smart_app.fhir.gateway import FhirGateway, Limits
from smart_app.fhir.written import Confirmation, Strategy, Written
from smart_app.rules.policy import DEFAULT_POLICY, Policy

if TYPE_CHECKING:
    from fhirclient.client import FHIRClient


def plan_with_fhirclient(
    client: FHIRClient,
    *,
    infusion_date: dt.date,
    on: dt.date | None = None,
    policy: Policy = DEFAULT_POLICY,
) -> service.Evaluation:
    """Read the client's patient from its server and build the plan (on: today by default)."""
    patient_id = patient_of(client)
    return service.evaluate(
        _gateway(client, policy=policy),
        patient_id,
        on=clock.today() if on is None else on,
        infusion_date=infusion_date,
        policy=policy,
    )


def write_with_fhirclient(
    client: FHIRClient,
    evaluation: service.Evaluation,
    *,
    confirmation: Confirmation,
    strategy: Strategy = Strategy.AUTO,
    policy: Policy = DEFAULT_POLICY,
) -> list[Written]:
    """Write a plan read through this client back to its server; what became of each resource.

    Raises WriteBlocked when the plan may not be written, WriteBackError when nothing was
    written and WriteIncomplete when the server applied part of it or its answer was lost.
    """
    patient_id = patient_of(client)
    gateway = _gateway(client, policy=policy)
    if evaluation.record.patient_id != patient_id:
        raise InputError("nothing written: the plan is for another patient than the client's")
    if evaluation.record.base_url is not None and evaluation.record.base_url != gateway.base_url:
        raise InputError("nothing written: the plan was read from another server than the client's")
    return service.write(gateway, evaluation, confirmation, strategy=strategy)


def _gateway(client: FHIRClient, *, policy: Policy) -> FhirGateway:
    """The client's gateway, reading answers no larger than the policy's bound."""
    return gateway_for(client, limits=Limits(max_answer_bytes=policy.bundle_max_bytes))
