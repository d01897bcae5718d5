"""The sandbox EHR's SMART authorization server, in three parts: `store` (launches, codes and
tokens in memory, as digests), `grants` (authlib's code and refresh grants, PKCE, client
authentication, id_token; `SandboxOAuth`) and `routes` (the discovery, authorize and token views
as a blueprint, and the EHR forms' CSRF token). The EHR registers `oauth_blueprint(oauth)`."""

from smart_app.sandbox.oauth.grants import SandboxOAuth
from smart_app.sandbox.oauth.routes import READ_ONLY, csrf_ok, csrf_token, oauth_blueprint
from smart_app.sandbox.oauth.store import LaunchContext, SandboxStore

__all__ = [
    "READ_ONLY",
    "LaunchContext",
    "SandboxOAuth",
    "SandboxStore",
    "csrf_ok",
    "csrf_token",
    "oauth_blueprint",
]
