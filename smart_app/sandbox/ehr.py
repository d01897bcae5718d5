"""The sandbox EHR as a Flask app: the factory `create_ehr` and the launcher pages (its settings
are settings.py's, re-exported here).

Endpoints (under `public_base`):
- `/` launcher (patients, one Launch button each; `?access=read-only` launches allow reading
  only), `POST /launch` (a CDS card's SMART link adds its appContext),
  `/chart/<launch_id>` (with the app's patient-view CDS cards) and its
  "Order ZOLGENSMA" pages `/chart/<launch_id>/orders...` (see cds_views.py);
- `/fhir/.well-known/smart-configuration`, `/fhir/metadata`, `/oauth/jwks`,
  `/oauth/authorize`, `/oauth/token` (the blueprint in oauth/routes.py);
- `/fhir/...`: the authorized pass-through to `fhir_upstream` (see proxy.py).
"""

from __future__ import annotations

import logging
import secrets
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import Flask, Response, jsonify, redirect, render_template, request, url_for

from smart_app.sandbox.cds_views import ChartCds
from smart_app.sandbox.oauth.grants import SandboxOAuth
from smart_app.sandbox.oauth.routes import READ_ONLY, csrf_ok, csrf_token, oauth_blueprint
from smart_app.sandbox.oauth.store import MAX_APP_CONTEXT_CHARS
from smart_app.sandbox.proxy import Upstream, register_proxy
from smart_app.sandbox.settings import (
    EhrSettings,
    LauncherPatient,
    SandboxClient,
    new_cds_key,
    new_signing_key,
)

__all__ = [
    "EHR_STYLE",
    "EhrSettings",
    "LauncherPatient",
    "SandboxClient",
    "create_ehr",
    "launch_src",
    "new_cds_key",
    "new_signing_key",
]

EHR_STYLE = {
    "color_background": "#f4f7fb",
    "color_highlight": "#0b5394",
    "color_text": "#16212e",
    "font_family_body": "system-ui, sans-serif",
    "dim_border_radius": "4px",
}
"""The sandbox EHR's SMART style document (served at /smart-style.json)."""


def launch_src(client: SandboxClient, *, iss: str, launch_id: str) -> str:
    """The app's launch URL with iss and launch added to its query."""
    parts = urlsplit(client.launch_url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), ("iss", iss), ("launch", launch_id)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _origin(url: str) -> str:
    """scheme://host[:port] of a URL."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def create_ehr(settings: EhrSettings) -> Flask:
    """The sandbox EHR's Flask app: launcher, SMART authorization server and FHIR gateway."""
    if not settings.clients:
        raise ValueError("the sandbox EHR needs at least one registered client")
    # authlib logs issued tokens at DEBUG ("Issue token ..."): keep its loggers above that.
    logging.getLogger("authlib").setLevel(logging.WARNING)
    app = Flask(__name__)
    app.secret_key = secrets.token_bytes(32)
    app.config.update(SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_NAME="sandbox_ehr")
    oauth = SandboxOAuth(settings)
    app.register_blueprint(oauth_blueprint(oauth))
    register_proxy(
        app,
        upstream=Upstream(base=settings.fhir_upstream, public_base=settings.fhir_base),
        authenticate=oauth.grant_for,
        authorize_url=f"{settings.public_base}/oauth/authorize",
        token_url=oauth.token_endpoint,
    )
    clients = {c.client_id: c for c in settings.clients}
    patients = {p.patient_id: p for p in settings.patients}
    chart_cds = ChartCds(settings=settings, oauth=oauth, clients=clients)
    frame_origins = " ".join(sorted({_origin(c.launch_url) for c in settings.clients}))
    policy = (
        # the app's launch URL redirects back here (authorize) inside the frame: 'self' too
        f"default-src 'self'; frame-src 'self' {frame_origins}; frame-ancestors 'self'; "
        "object-src 'none'; base-uri 'none'"
    )

    @app.after_request
    def security_headers(response: Response) -> Response:
        """No referrer (codes travel in URLs); HTML pages get a strict CSP."""
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if response.mimetype == "text/html":
            response.headers.setdefault("Content-Security-Policy", policy)
        return response

    @app.get("/smart-style.json")
    def smart_style() -> Response:
        """The EHR's look, for apps that honour smart_style_url."""
        return jsonify(EHR_STYLE)

    @app.get("/")
    def launcher() -> str:
        """The patient list, with a Launch button per patient for the chosen app."""
        client = clients.get(request.args.get("client", ""), settings.clients[0])
        return render_template(
            "launcher.html",
            patients=settings.patients,
            clients=settings.clients,
            client=client,
            read_only=request.args.get("access") == READ_ONLY,
            csrf_token=csrf_token(),
        )

    @app.post("/launch")
    def launch() -> Response | tuple[str, int]:
        """Create the launch ids for a patient and app, then show the chart; a CDS card's
        SMART link also sends its appContext, which both launches carry to the token."""
        if not csrf_ok(request.form.get("csrf_token")):
            return _problem("Form expired", "The launch form expired. Reload the patient list.")
        client = clients.get(request.form.get("client_id", ""))
        patient = patients.get(request.form.get("patient_id", ""))
        if client is None or patient is None:
            return _problem("Unknown patient or app", "Choose a patient from the list.")
        app_context = request.form.get("app_context") or None
        if app_context is not None and len(app_context) > MAX_APP_CONTEXT_CHARS:
            return _problem(
                "Card link refused",
                f"The card's app context is longer than {MAX_APP_CONTEXT_CHARS} characters.",
                status=413,
            )
        read_only = request.form.get("access") == READ_ONLY
        tab = oauth.create_launch(
            client_id=client.client_id,
            patient_id=patient.patient_id,
            need_patient_banner=True,
            read_only=read_only,
            app_context=app_context,
        )
        embedded = oauth.create_launch(
            client_id=client.client_id,
            patient_id=patient.patient_id,
            companion=tab,
            read_only=read_only,
            app_context=app_context,
        )
        return redirect(url_for("chart", launch_id=embedded), code=303)

    @app.get("/chart/<launch_id>")
    def chart(launch_id: str) -> str | tuple[str, int]:
        """The EHR chart: patient banner and the app in an iframe (or a new tab)."""
        found = oauth.store.launch(launch_id)
        if found is None or found.companion is None or found.context.patient is None:
            return _problem(
                "Launch not found", "This launch is unknown or expired. Launch again.", status=404
            )
        client = clients[found.client_id]
        patient_id = found.context.patient
        patient = patients.get(patient_id)
        tab = oauth.store.launch(found.companion)
        iss = settings.fhir_base
        return render_template(
            "chart.html",
            patient=patient,
            patient_id=patient_id,
            client=client,
            frame_src=None if found.used else launch_src(client, iss=iss, launch_id=launch_id),
            tab_src=None
            if tab is None or tab.used
            else launch_src(client, iss=iss, launch_id=tab.launch_id),
            launch_id=launch_id,
            **chart_cds.chart(launch_id, client_id=client.client_id, patient_id=patient_id),
        )

    def _problem(title: str, text: str, *, status: int = 400) -> tuple[str, int]:
        """A plain error page."""
        return render_template("error.html", title=title, error=None, text=text), status

    chart_cds.register(app, problem=_problem)
    return app
