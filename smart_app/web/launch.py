"""SMART App Launch views: /launch (EHR and standalone), /callback, launch.html, open servers."""

from __future__ import annotations

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from smart_app.config import ClientType, Registration
from smart_app.errors import LaunchError
from smart_app.fhir.codes import FHIR_ID
from smart_app.web import context, smart
from smart_app.web.state import web_state

bp = Blueprint("launch", __name__)


def _registration(iss: str | None, *, open_server: bool = False) -> Registration:
    """The allowlisted registration for `iss`; anything else is refused before any request."""
    registration = web_state().settings.registrations.get((iss or "").rstrip("/"))
    if registration is None:
        raise LaunchError("this FHIR server is not registered with the app; launch refused")
    if open_server != (registration.client_type is ClientType.OPEN):
        kind = "an open server" if open_server else "a SMART server"
        raise LaunchError(f"{registration.name} is not registered as {kind}")
    return registration


@bp.get("/launch")
def launch() -> Response:
    """EHR launch (iss + launch) or standalone launch (iss only): redirect to authorize."""
    state = web_state()
    registration = _registration(request.args.get("iss"))
    endpoints = smart.discover(registration.iss, http=state.http)
    authorize = smart.authorize_request(
        registration, endpoints, launch=request.args.get("launch") or None
    )
    context.remember_pending(
        authorize.state,
        context.Pending(
            iss=registration.iss,
            code_verifier=authorize.code_verifier,
            nonce=authorize.nonce,
            token_endpoint=endpoints.token,
            issuer=endpoints.issuer,
            jwks_uri=endpoints.jwks_uri,
            created=state.clock(),
            scope=authorize.scope,
        ),
    )
    current_app.logger.info(
        "launch: redirecting to the authorization server of %s", registration.iss
    )
    return redirect(authorize.url, code=302)


@bp.get("/callback")
def callback() -> Response:
    """Check state, exchange the code with the PKCE verifier, open the launch context."""
    state = web_state()
    if request.args.get("error"):
        raise LaunchError(
            f"the EHR refused the launch: {request.args.get('error')}"
            f" {request.args.get('error_description', '')}".strip()
        )
    pending = context.take_pending(request.args.get("state"), now=state.clock())
    code = request.args.get("code")
    if not code:
        raise LaunchError("the EHR's answer has no authorization code")
    registration = _registration(pending.iss)
    grant = smart.exchange_code(
        registration,
        pending.endpoints(),
        code=code,
        code_verifier=pending.code_verifier,
        nonce=pending.nonce,
        http=state.http,
        clock=state.clock,
        requested_scope=pending.scope,
        keys=state.key_sets,
    )
    context_id = context.open_context(
        context.LaunchContext.from_grant(
            grant, iss=pending.iss, token_endpoint=pending.token_endpoint
        )
    )
    context.rotate_session()
    current_app.logger.info("launch: token received from %s", pending.iss)
    return redirect(url_for("plan.show", context_id=context_id), code=303)


@bp.get("/launch.html")
def launch_page() -> str:
    """The standalone-launch page: a registered SMART server, or an open server and a patient."""
    registrations = web_state().settings.registrations.values()
    return render_template(
        "launch.html",
        smart_servers=[r for r in registrations if r.client_type is not ClientType.OPEN],
        open_servers=[r for r in registrations if r.client_type is ClientType.OPEN],
    )


@bp.post("/open")
def open_server() -> Response:
    """Open a patient on an open (no OAuth) server such as the public HAPI sandbox (its CSRF
    token and origin checked before the view: web/security.py)."""
    registration = _registration(request.form.get("iss"), open_server=True)
    patient = request.form.get("patient", "").strip()
    if not FHIR_ID.fullmatch(patient):
        raise LaunchError("enter the patient's FHIR id (letters, digits, '-' and '.')")
    context_id = context.open_context(context.LaunchContext(iss=registration.iss, patient=patient))
    return redirect(url_for("plan.show", context_id=context_id), code=303)
