"""The EHR connection of a launch: its context, a live token (refreshed when due), a gateway."""

from __future__ import annotations

from smart_app.errors import SessionExpired
from smart_app.fhir.gateway import FhirGateway
from smart_app.fhir.written import Strategy
from smart_app.web import context, smart
from smart_app.web.state import web_state


def connect(context_id: str) -> tuple[context.LaunchContext, FhirGateway]:
    """The launch context and a gateway with a live token (refreshed when due)."""
    state = web_state()
    launched = context.load_context(context_id)
    if not launched.is_open and smart.needs_refresh(launched.expires_at, now=state.clock()):
        registration = state.settings.registrations.get(launched.iss)
        if not launched.refresh_token or registration is None:
            raise SessionExpired("the EHR session has expired; relaunch the app from the chart")
        grant = smart.refresh(
            registration,
            smart.Endpoints(token=launched.token_endpoint),
            refresh_token=launched.refresh_token,
            previous=launched.grant(),
            clock=state.clock,
        )
        launched = context.LaunchContext.from_grant(
            grant, iss=launched.iss, token_endpoint=launched.token_endpoint
        )
        context.replace_context(context_id, launched)
    gateway = FhirGateway(
        launched.iss, bearer_token=launched.access_token or None, session=state.http
    )
    return launched, gateway


def write_strategy(launched: context.LaunchContext) -> Strategy:
    """The write strategy registered for the launch's server (auto when none is set)."""
    registration = web_state().settings.registrations.get(launched.iss)
    return registration.write_strategy if registration else Strategy.AUTO
