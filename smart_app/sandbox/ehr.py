"""The sandbox EHR as a Flask app: settings, the factory `create_ehr`, and the launcher pages.

Endpoints (under `public_base`):
- `/` launcher (patients, one Launch button each; `?access=read-only` launches allow reading
  only), `POST /launch`, `/chart/<launch_id>`;
- `/fhir/.well-known/smart-configuration`, `/fhir/metadata`, `/oauth/jwks`,
  `/oauth/authorize`, `/oauth/token` (see oauth.py);
- `/fhir/...`: the authorized pass-through to `fhir_upstream` (see proxy.py).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import Flask, Response, jsonify, redirect, render_template, request, url_for
from joserfc.jwk import RSAKey

from smart_app.sandbox.oauth import READ_ONLY, SandboxOAuth, csrf_ok, csrf_token
from smart_app.sandbox.proxy import Upstream, register_proxy


def new_signing_key() -> RSAKey:
    """A fresh 2048-bit RSA key for RS256 id_tokens, with a thumbprint kid."""
    return RSAKey.generate_key(2048, parameters={"use": "sig", "alg": "RS256"}, auto_kid=True)


EHR_STYLE = {
    "color_background": "#f4f7fb",
    "color_highlight": "#0b5394",
    "color_text": "#16212e",
    "font_family_body": "system-ui, sans-serif",
    "dim_border_radius": "4px",
}
"""The sandbox EHR's SMART style document (served at /smart-style.json)."""


@dataclass(frozen=True)
class SandboxClient:
    """An app registered with the sandbox EHR."""

    client_id: str
    redirect_uris: tuple[str, ...]
    launch_url: str
    """The app's EHR-launch URL, e.g. http://127.0.0.1:8092/launch."""
    client_secret: str | None = field(default=None, repr=False)
    """Confidential-symmetric: client_secret_basic and client_secret_post."""
    jwks: dict[str, Any] | None = None
    """Confidential-asymmetric: the client's public JWK Set, for private_key_jwt."""


@dataclass(frozen=True)
class LauncherPatient:
    """A patient listed on the launcher page."""

    patient_id: str
    name: str
    birth_date: str | None
    scenario: str


@dataclass(frozen=True)
class EhrSettings:
    """Everything the sandbox EHR needs."""

    public_base: str
    """Where the EHR is served, without a trailing slash; the FHIR base is {public_base}/fhir."""
    fhir_upstream: str
    """The real FHIR server's base URL."""
    clients: tuple[SandboxClient, ...]
    patients: tuple[LauncherPatient, ...]
    practitioner_id: str = "sandbox-practitioner"
    """The signed-in EHR user (a Practitioner on the FHIR server)."""
    signing_key: RSAKey = field(default_factory=new_signing_key, repr=False)
    access_token_lifetime_s: int = 3600
    clock: Callable[[], float] = time.time
    smart_style_url: str | None = None

    @property
    def fhir_base(self) -> str:
        """The public FHIR base URL."""
        return f"{self.public_base}/fhir"


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
    oauth.init_app(app)
    register_proxy(
        app,
        upstream=Upstream(base=settings.fhir_upstream, public_base=settings.fhir_base),
        authenticate=oauth.grant_for,
        authorize_url=f"{settings.public_base}/oauth/authorize",
        token_url=oauth.token_endpoint,
    )
    clients = {c.client_id: c for c in settings.clients}
    patients = {p.patient_id: p for p in settings.patients}
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
        """Create the launch ids for a patient and app, then show the chart."""
        if not csrf_ok(request.form.get("csrf_token")):
            return _problem("Form expired", "The launch form expired. Reload the patient list.")
        client = clients.get(request.form.get("client_id", ""))
        patient = patients.get(request.form.get("patient_id", ""))
        if client is None or patient is None:
            return _problem("Unknown patient or app", "Choose a patient from the list.")
        read_only = request.form.get("access") == READ_ONLY
        tab = oauth.create_launch(
            client_id=client.client_id,
            patient_id=patient.patient_id,
            need_patient_banner=True,
            read_only=read_only,
        )
        embedded = oauth.create_launch(
            client_id=client.client_id,
            patient_id=patient.patient_id,
            companion=tab,
            read_only=read_only,
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
        patient = patients.get(found.context.patient)
        tab = oauth.store.launch(found.companion)
        iss = settings.fhir_base
        return render_template(
            "chart.html",
            patient=patient,
            patient_id=found.context.patient,
            client=client,
            frame_src=None if found.used else launch_src(client, iss=iss, launch_id=launch_id),
            tab_src=None
            if tab is None or tab.used
            else launch_src(client, iss=iss, launch_id=tab.launch_id),
        )

    def _problem(title: str, text: str, *, status: int = 400) -> tuple[str, int]:
        """A plain error page."""
        return render_template("error.html", title=title, error=None, text=text), status

    return app
