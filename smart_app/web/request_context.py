"""The launch a /p/<context_id>/ request is for, loaded once per request as flaskr loads g.user:
the context id taken from the URL, then the launch context, gateway and chart on first use."""

from __future__ import annotations

from typing import Any

from flask import Flask, g

from smart_app.fhir.gateway import FhirGateway, PatientRecord
from smart_app.web import connection, context
from smart_app.web.state import web_state

CONTEXT_ID = "context_id"
"""The URL value naming a launch context (/p/<context_id>/...)."""


class Current:
    """One request's launch: its context id; the context, gateway and chart each loaded at most
    once, when a view first needs them (a CSRF refusal or a 404 loads nothing).

    Cached in plain attributes, not functools.cached_property: on Python 3.11 that holds one
    lock for all instances, which would make concurrent requests wait for each other's reads."""

    def __init__(self, context_id: str) -> None:
        self.context_id = context_id
        self._connected: tuple[context.LaunchContext, FhirGateway] | None = None
        self._record: PatientRecord | None = None

    def _connection(self) -> tuple[context.LaunchContext, FhirGateway]:
        """The launch context (its token refreshed when due) and a gateway with that token."""
        if self._connected is None:
            self._connected = connection.connect(self.context_id)
        return self._connected

    @property
    def launched(self) -> context.LaunchContext:
        """The launch context, its token refreshed when due."""
        return self._connection()[0]

    @property
    def gateway(self) -> FhirGateway:
        """The gateway to the launch's FHIR server."""
        return self._connection()[1]

    @property
    def record(self) -> PatientRecord:
        """The launched patient's chart, read once for this request (with the server's
        CapabilityStatement beside it when the app holds none: connection.prefetch_capabilities)."""
        if self._record is None:
            launched, gateway = self._connection()
            asking = connection.prefetch_capabilities(launched, gateway)
            self._record = read_record(gateway, launched.patient)
            if asking is not None:
                asking.join()
        return self._record

    def reread(self) -> PatientRecord:
        """The chart read again (after a write: what the server now holds), kept as `record`."""
        self._record = read_record(self.gateway, self.launched.patient)
        return self._record

    def stored(self) -> context.LaunchContext:
        """The launch context as kept in the session: no token refresh, no gateway."""
        return context.load_context(self.context_id)


def read_record(gateway: FhirGateway, patient: str) -> PatientRecord:
    """The patient's chart as read today, its searches floored by the web's policy."""
    state = web_state()
    return gateway.read_patient(patient, on=state.today(), policy=state.settings.policy)


def current() -> Current:
    """This request's launch (only within a /p/<context_id>/ request)."""
    found = g.get("current")
    if not isinstance(found, Current):
        raise RuntimeError("not a request for a launch: its URL has no context id")
    return found


def install(app: Flask) -> None:
    """Take the context id out of every URL that has one (views get `current()` instead), and
    put it back into url_for for endpoints that take one, within such a request."""

    @app.url_value_preprocessor
    def _pull(endpoint: str | None, values: dict[str, Any] | None) -> None:
        if values and CONTEXT_ID in values:
            g.current = Current(str(values.pop(CONTEXT_ID)))

    @app.url_defaults
    def _push(endpoint: str, values: dict[str, Any]) -> None:
        found = g.get("current")
        if (
            CONTEXT_ID not in values
            and isinstance(found, Current)
            and app.url_map.is_endpoint_expecting(endpoint, CONTEXT_ID)
        ):
            values[CONTEXT_ID] = found.context_id
