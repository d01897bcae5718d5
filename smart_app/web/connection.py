"""The EHR connection of a launch: its context, a live token (refreshed when due), a gateway."""

from __future__ import annotations

import threading

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
    return launched, gateway_for(launched)


def gateway_for(launched: context.LaunchContext) -> FhirGateway:
    """The gateway to the launch's server with its token (the state's factory when it has one),
    given the server's CapabilityStatement when the state holds it."""
    state = web_state()
    if state.gateway_factory is not None:
        return state.gateway_factory(launched)
    return FhirGateway(
        launched.iss,
        bearer_token=launched.access_token or None,
        session=state.http,
        capabilities=state.capabilities.get(launched.iss),
    )


def prefetch_capabilities(
    launched: context.LaunchContext, gateway: FhirGateway
) -> threading.Thread | None:
    """Ask for the server's CapabilityStatement beside the chart's read (started now, joined
    after it), when a write's strategy needs it and the state holds none (once an hour per
    server): the state keeps it, so that a write sends no request of its own for it. None when
    there is nothing to ask (or the gateway is a stand-in, not an HTTP FhirGateway)."""
    state = web_state()
    if (
        not isinstance(gateway, FhirGateway)
        or write_strategy(launched) not in (Strategy.AUTO, Strategy.LOOKUP)
        or not state.capabilities.wanted(launched.iss)
    ):
        return None
    held, base = state.capabilities, launched.iss

    def fetch() -> None:
        """Ask the gateway (it keeps the answer for this request) and keep it for the next."""
        held.keep(base, gateway.capabilities())

    thread = threading.Thread(target=fetch, name="capabilities", daemon=True)
    thread.start()
    return thread


def write_strategy(launched: context.LaunchContext) -> Strategy:
    """The write strategy registered for the launch's server (auto when none is set)."""
    registration = web_state().settings.registrations.get(launched.iss)
    return registration.write_strategy if registration else Strategy.AUTO
