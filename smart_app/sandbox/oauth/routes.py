"""The sandbox authorization server's views, as a Flask blueprint; the EHR forms' CSRF token.

- `/fhir/.well-known/smart-configuration` and `/fhir/.well-known/openid-configuration`:
  discovery for the FHIR base;
- `/oauth/jwks`: the id_token key (RS256) and the CDS Hooks client key (RS384);
- `/oauth/authorize`: the code (with the patient picker for a standalone `launch/patient`, which
  is CSRF-protected and may allow reading only);
- `/oauth/token`: authorization code and refresh token grants.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import OAuth2Error
from flask import Blueprint, Response, jsonify, render_template, request, session
from flask.blueprints import BlueprintSetupState

from smart_app.sandbox import scopes
from smart_app.sandbox.oauth.grants import (
    ASSERTION_ALGORITHMS,
    AUTH_METHODS,
    GRANT_TYPES,
    SandboxOAuth,
)

CAPABILITIES = [
    "launch-ehr",
    "launch-standalone",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "context-ehr-patient",
    "context-ehr-encounter",
    "context-standalone-patient",
    "context-banner",
    "context-style",
    "sso-openid-connect",
    "permission-offline",
    "permission-online",
    "permission-patient",
    "permission-user",
    "permission-v1",
    "permission-v2",
]
SCOPES_SUPPORTED = [
    *sorted(scopes.OTHER_SCOPES),
    "patient/*.read",
    "patient/*.write",
    "patient/*.*",
    "patient/*.rs",
    "patient/*.cruds",
    "user/*.read",
    "user/*.write",
    "user/*.*",
    "user/*.rs",
    "user/*.cruds",
]
CSRF_KEY = "sandbox_csrf"
READ_ONLY = "read-only"
"""The form value (launcher, picker) that allows the app to read only."""
PICKER_FIELDS = ("csrf_token", "patient_choice", "decision", "access")
"""The picker's own form fields: not carried along as authorization request parameters."""


def csrf_token() -> str:
    """The sandbox's CSRF token for this browser session (created on first use)."""
    token = session.get(CSRF_KEY)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[CSRF_KEY] = token
    return token


def csrf_ok(value: str | None) -> bool:
    """Whether a submitted CSRF token is this browser session's."""
    expected = session.get(CSRF_KEY)
    return (
        isinstance(expected, str)
        and isinstance(value, str)
        and hmac.compare_digest(expected, value)
    )


def smart_configuration(oauth: SandboxOAuth) -> dict[str, Any]:
    """The SMART discovery document (/.well-known/smart-configuration)."""
    base = oauth.settings.public_base
    return {
        "issuer": oauth.fhir_base,
        "jwks_uri": f"{base}/oauth/jwks",
        "authorization_endpoint": f"{base}/oauth/authorize",
        "token_endpoint": oauth.token_endpoint,
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
        "grant_types_supported": list(GRANT_TYPES),
        "scopes_supported": SCOPES_SUPPORTED,
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "capabilities": CAPABILITIES,
    }


def openid_configuration(oauth: SandboxOAuth) -> dict[str, Any]:
    """The OpenID Connect discovery document for the same issuer."""
    return {
        **smart_configuration(oauth),
        "subject_types_supported": ["public"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nonce", "fhirUser"],
    }


def jwks(oauth: SandboxOAuth) -> dict[str, Any]:
    """The public JWK Set that verifies id_tokens (RS256) and CDS Hooks client JWTs (RS384)."""
    public = dict(oauth.settings.signing_key.as_dict(private=False))
    public.update({"kid": oauth.kid, "alg": "RS256", "use": "sig"})
    cds_key = oauth.settings.cds_key
    cds = dict(cds_key.as_dict(private=False))
    cds.update({"kid": cds_key.kid or cds_key.thumbprint(), "alg": "RS384", "use": "sig"})
    return {"keys": [public, cds]}


def oauth_blueprint(oauth: SandboxOAuth) -> Blueprint:
    """The discovery, JWK Set, authorize and token views; registering it on an app also sets up
    authlib there (`SandboxOAuth.init_app`)."""
    blueprint = Blueprint("oauth", __name__)

    @blueprint.record_once
    def set_up_server(state: BlueprintSetupState) -> None:
        """authlib's grants and client authentication, on the app the blueprint joins."""
        oauth.init_app(state.app)

    @blueprint.get("/fhir/.well-known/smart-configuration", endpoint="smart_configuration")
    def smart_configuration_view() -> Response:
        """SMART discovery."""
        return jsonify(smart_configuration(oauth))

    @blueprint.get("/fhir/.well-known/openid-configuration", endpoint="openid_configuration")
    def openid_configuration_view() -> Response:
        """OpenID Connect discovery."""
        return jsonify(openid_configuration(oauth))

    @blueprint.get("/oauth/jwks", endpoint="jwks")
    def jwks_view() -> Response:
        """The public keys."""
        return jsonify(jwks(oauth))

    @blueprint.route("/oauth/authorize", methods=["GET", "POST"])
    def authorize() -> Response | tuple[str, int]:
        """/oauth/authorize: validate, pick a patient if needed, then issue the code."""
        try:
            grant = oauth.server.get_consent_grant(end_user=oauth.user)
        except OAuth2Error as error:
            return _error_page(oauth, error)
        req = grant.request
        if getattr(req, "smart_needs_patient", False):
            if request.method != "POST" or "csrf_token" not in request.form:
                return _picker(oauth, grant)
            if not csrf_ok(request.form.get("csrf_token")):
                return render_template(
                    "error.html",
                    title="Form expired",
                    error="invalid_request",
                    text="The patient picker form expired. Start the app again.",
                ), 400
            if request.form.get("decision") == "deny":
                return oauth.server.create_authorization_response(
                    request=req, grant_user=None, grant=grant
                )
            choice = request.form.get("patient_choice")
            if choice not in {p.patient_id for p in oauth.settings.patients}:
                return _picker(oauth, grant, problem="Choose a patient.")
            req.smart_patient = choice
            req.smart_read_only = request.form.get("access") == READ_ONLY
        return oauth.server.create_authorization_response(
            request=req, grant_user=oauth.user, grant=grant
        )

    @blueprint.post("/oauth/token")
    def token() -> Response:
        """/oauth/token."""
        try:
            return oauth.server.create_token_response()
        except OAuth2Error as error:
            return oauth.server.handle_error_response(None, error)

    return blueprint


def _error_page(oauth: SandboxOAuth, error: OAuth2Error) -> Response | tuple[str, int]:
    """An authorization error: to the client when its redirect URI is known, else a page."""
    if error.redirect_uri:
        return oauth.server.handle_error_response(None, error)
    return render_template(
        "error.html", title="Authorization refused", error=error.error, text=error.description
    ), 400


def _picker(
    oauth: SandboxOAuth, grant: grants.BaseGrant, *, problem: str | None = None
) -> tuple[str, int]:
    """The standalone-launch patient picker, carrying the authorization request along."""
    hidden = [
        (key, value)
        for key in request.values
        if key not in PICKER_FIELDS
        for value in request.values.getlist(key)
    ]
    return render_template(
        "picker.html",
        client_id=grant.request.client.get_client_id(),
        hidden=hidden,
        patients=oauth.settings.patients,
        problem=problem,
        csrf_token=csrf_token(),
    ), (400 if problem else 200)
