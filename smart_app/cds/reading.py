"""The chart for a CDS request: the prefetched answers, the rest from fhirServer in one batch."""

from __future__ import annotations

import requests

from smart_app.cds.discovery import answers_by_url
from smart_app.cds.request import CdsNoData, HookRequest
from smart_app.errors import FhirError
from smart_app.fhir.gateway import FhirGateway, FhirNoServer, NoServerGateway, PatientRecord


def gateway_for(request: HookRequest, *, session: requests.Session) -> FhirGateway:
    """The request's FHIR server with its token, or a gateway that never sends without one."""
    if request.fhir_server is None:
        return NoServerGateway()
    return FhirGateway(request.fhir_server, bearer_token=request.access_token, session=session)


def read_record(request: HookRequest, *, session: requests.Session) -> PatientRecord:
    """Everything the rules read for the request's patient, searched without date floors as
    the prefetch templates are; CdsNoData when part of it cannot be had."""
    gateway = gateway_for(request, session=session)
    prefetched = answers_by_url(request.prefetch, request.patient_id)
    try:
        return gateway.read_patient(request.patient_id, prefetched=prefetched)
    except FhirNoServer as exc:
        raise CdsNoData(
            f"the prefetch does not hold everything the service reads and the request names no "
            f"fhirServer ({exc})"
        ) from None
    except FhirError as exc:
        raise CdsNoData(f"the FHIR server did not give the data the service reads: {exc}") from None
