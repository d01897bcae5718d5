"""The sandbox EHR's SMART authorization server: authlib grants, client authentication, id_token.

- Authorization code grant only, PKCE required with S256 (`plain` and a missing challenge are
  refused at /oauth/authorize; a missing or wrong verifier is `invalid_grant`). A code is claimed
  the moment it is presented: a second use is refused and revokes the tokens issued from it.
- `aud` must be the FHIR base. `launch` must be a launch id this EHR issued to the same client,
  unused and unexpired; it is spent when the code is issued. Without `launch`, scope
  `launch/patient` shows a patient picker (routes.py); otherwise the signed-in practitioner is
  approved at once.
- A launch (or the picker) may allow reading only: the code, and every token from it, then carry
  the requested scopes without create, update or delete (`scopes.read_only`).
- Refresh tokens only when `offline_access` or `online_access` is granted. They do not expire and
  rotate: every refresh answers a new refresh token and revokes the one presented.
- `id_token` (RS256, `kid` from /oauth/jwks) when `openid` is granted; its `fhirUser` claim when
  `fhirUser` is granted too.
- Clients authenticate with none (public), client_secret_basic, client_secret_post or
  private_key_jwt (RS384 or ES384, each assertion id once).
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any, ClassVar

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, OAuth2Request, grants
from authlib.oauth2.rfc6749.errors import (
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
)
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from smart_app.sandbox import scopes
from smart_app.sandbox.oauth.store import (
    CODE_LIFETIME_S,
    MAX_APP_CONTEXT_CHARS,
    AuthCode,
    EhrUser,
    IssuedToken,
    LaunchContext,
    SandboxStore,
    digest,
)
from smart_app.sandbox.settings import EhrSettings, SandboxClient

AUTH_METHODS = ["none", "client_secret_basic", "client_secret_post", "private_key_jwt"]
ASSERTION_ALGORITHMS = ["RS384", "ES384"]
ASSERTION_MAX_LIFETIME_S = 300
GRANT_TYPES = ("authorization_code", "refresh_token")


class SandboxClientModel(ClientMixin):
    """authlib's view of a registered SandboxClient."""

    def __init__(self, client: SandboxClient) -> None:
        """Wrap a registered client."""
        self.client = client
        methods = set()
        if client.client_secret:
            methods |= {"client_secret_basic", "client_secret_post"}
        if client.jwks:
            methods.add("private_key_jwt")
        self.auth_methods = frozenset(methods or {"none"})

    def __repr__(self) -> str:
        """The client id only (never the secret)."""
        return f"<SandboxClient {self.client.client_id}>"

    def get_client_id(self) -> str:
        """The client id."""
        return self.client.client_id

    def get_default_redirect_uri(self) -> None:
        """None: SMART requires redirect_uri in every authorization request."""
        return None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """The requested scopes this server understands; None (invalid_scope) if none."""
        known = scopes.known_scopes(scope)
        return " ".join(known) if known else None

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        """Exact match against the registered redirect URIs."""
        return redirect_uri in self.client.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        """Constant-time comparison with the registered secret."""
        secret = self.client.client_secret
        return bool(secret) and hmac.compare_digest(secret.encode(), client_secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        """The client's authentication methods: none, the secret ones, or private_key_jwt."""
        return method in self.auth_methods

    def check_response_type(self, response_type: str) -> bool:
        """Only the code flow."""
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        """Authorization code and refresh token."""
        return grant_type in GRANT_TYPES

    @property
    def jwks(self) -> dict[str, Any] | None:
        """The client's public JWK Set (for private_key_jwt)."""
        return self.client.jwks


class SmartAuthorizationServer(AuthorizationServer):
    """authlib's Flask authorization server, with the sandbox attached for the grants."""

    def __init__(self, sandbox: SandboxOAuth) -> None:
        """A server whose clients and tokens live in the sandbox's store."""
        super().__init__(query_client=sandbox.query_client, save_token=sandbox.save_token)
        self.sandbox = sandbox


class SmartCodeGrant(grants.AuthorizationCodeGrant):
    """The authorization code grant on the sandbox's store."""

    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    server: SmartAuthorizationServer

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        """Keep the code with its launch context (spending the EHR launch id)."""
        self.server.sandbox.save_code(code, request)

    def query_authorization_code(self, code: str, client: ClientMixin) -> AuthCode | None:
        """Claim the code for the client (single use)."""
        return self.server.sandbox.store.claim_code(code, client.get_client_id())

    def delete_authorization_code(self, authorization_code: AuthCode) -> None:
        """Nothing: the code was spent when claimed, and is kept to detect replays."""

    def authenticate_user(self, authorization_code: AuthCode) -> EhrUser | None:
        """The practitioner the code was issued to."""
        user = self.server.sandbox.user
        return user if authorization_code.user_id == user.practitioner_id else None


class SmartRefreshGrant(grants.RefreshTokenGrant):
    """The refresh token grant: rotating refresh tokens, same launch context."""

    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True
    server: SmartAuthorizationServer

    def authenticate_refresh_token(self, refresh_token: str) -> IssuedToken | None:
        """The token record of a usable refresh token."""
        return self.server.sandbox.store.refresh(refresh_token)

    def authenticate_user(self, refresh_token: IssuedToken) -> EhrUser | None:
        """The practitioner the token was issued to."""
        user = self.server.sandbox.user
        return user if refresh_token.user_id == user.practitioner_id else None

    def revoke_old_credential(self, refresh_token: IssuedToken) -> None:
        """Revoke the presented refresh token (rotation); refuse a concurrent second use."""
        new = getattr(self.request, "smart_token", None)
        if not self.server.sandbox.store.rotate(refresh_token, new):
            raise InvalidGrantError("The refresh token was already used.")


class S256Challenge(CodeChallenge):
    """PKCE, required for every client, S256 only; verifier failures are invalid_grant."""

    SUPPORTED_CODE_CHALLENGE_METHOD: ClassVar[list[str]] = ["S256"]

    def validate_code_challenge(self, grant: grants.BaseGrant, redirect_uri: Any) -> None:
        """Refuse an authorization request without an S256 code challenge."""
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: missing 'code_challenge'.")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("Only code_challenge_method=S256 is supported.")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: grants.BaseGrant, result: Any) -> None:
        """A missing, malformed or wrong code_verifier is invalid_grant."""
        if not grant.request.form.get("code_verifier"):
            raise InvalidGrantError("Missing 'code_verifier'.")
        try:
            super().validate_code_verifier(grant, result)
        except InvalidRequestError as error:
            raise InvalidGrantError(error.description) from error


class LaunchRequest:
    """Authorization-request checks for SMART: `aud`, and the `launch` id or patient picker."""

    def __init__(self, sandbox: SandboxOAuth) -> None:
        """Checks against this sandbox."""
        self.sandbox = sandbox

    def __call__(self, grant: grants.BaseGrant) -> None:
        """Register on a code grant."""
        grant.register_hook("after_validate_authorization_request_payload", self.validate)

    def validate(self, grant: grants.BaseGrant, result: Any) -> None:
        """Check aud and launch; flag a standalone launch that needs a patient picked."""
        req = grant.request
        data = req.payload.data
        aud = data.get("aud")
        if not isinstance(aud, str) or aud.rstrip("/") != self.sandbox.fhir_base:
            raise InvalidRequestError("'aud' must be this EHR's FHIR base URL.")
        launch_id = data.get("launch")
        if launch_id:
            found = self.sandbox.store.peek_launch(launch_id, req.client.get_client_id())
            if found is None:
                raise InvalidRequestError("Unknown, used or expired 'launch'.")
            req.smart_needs_patient = False
        else:
            req.smart_needs_patient = scopes.has_scope(req.scope, "launch/patient")


class LaunchContextResponse:
    """Adds the launch context (patient, encounter, banner, style, a CDS card link's
    appContext) to token responses."""

    def __init__(self, sandbox: SandboxOAuth) -> None:
        """Context from this sandbox."""
        self.sandbox = sandbox

    def __call__(self, grant: grants.BaseGrant) -> None:
        """Register on a token grant."""
        grant.register_hook("after_create_token_response", self.add_context)

    def add_context(self, grant: grants.BaseGrant, response: tuple[int, Any, Any]) -> None:
        """Put the SMART context fields in the token response."""
        _, token, _ = response
        context = getattr(grant.request, "smart_context", None) or LaunchContext()
        token.update(context.token_fields())
        style = self.sandbox.settings.smart_style_url
        if style:
            token["smart_style_url"] = style


class SmartOpenIDCode(OpenIDCode):
    """OpenID Connect for the code flow: an RS256 id_token with SMART's fhirUser claim."""

    def __init__(self, sandbox: SandboxOAuth) -> None:
        """Signed with the sandbox's key."""
        super().__init__(require_nonce=False)
        self.sandbox = sandbox

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        """Whether the client already used this nonce."""
        return self.sandbox.store.nonce_seen(request.payload.client_id, nonce)

    def resolve_client_private_key(self, client: ClientMixin) -> Any:
        """The sandbox's signing key."""
        return self.sandbox.settings.signing_key

    def get_client_algorithm(self, client: ClientMixin) -> str:
        """RS256."""
        return "RS256"

    def get_encode_header(self, client: ClientMixin) -> dict[str, str]:
        """The JWS header, naming the key published at /oauth/jwks."""
        return {"alg": "RS256", "kid": self.sandbox.kid, "typ": "JWT"}

    def get_client_claims(self, client: ClientMixin) -> dict[str, Any]:
        """iss, aud, iat and exp, on the sandbox's clock."""
        now = int(self.sandbox.settings.clock())
        return {
            "iss": self.sandbox.fhir_base,
            "aud": client.get_client_id(),
            "iat": now,
            "exp": now + self.sandbox.settings.access_token_lifetime_s,
        }

    def generate_user_info(self, user: EhrUser, scope: str) -> dict[str, str]:
        """sub, and fhirUser when granted."""
        info = {"sub": user.practitioner_id}
        if scopes.has_scope(scope, "fhirUser"):
            info["fhirUser"] = self.sandbox.fhir_user
        return info


class PrivateKeyJwt(JWTBearerClientAssertion):
    """SMART's private_key_jwt client authentication (RFC 7523 assertion, RS384 or ES384)."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, sandbox: SandboxOAuth) -> None:
        """Assertions addressed to this sandbox's token endpoint."""
        super().__init__(validate_jti=True, leeway=60)
        self.sandbox = sandbox

    def get_audiences(self) -> list[str]:
        """The token endpoint URL."""
        return [self.sandbox.token_endpoint]

    def validate_jti(self, claims: Any, jti: str) -> bool:
        """Each assertion id once per client."""
        return self.sandbox.store.use_jti(str(claims["sub"]), str(jti), float(claims["exp"]))

    def resolve_client_public_key(self, client: ClientMixin) -> KeySet:
        """The client's registered JWK Set."""
        jwks = getattr(client, "jwks", None)
        if not jwks:
            raise InvalidClientError(description="The client has no registered JWK Set.")
        return KeySet.import_key_set(jwks)

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> Any:
        """Verify the signature (RS384 or ES384 only), then the claims."""
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=ASSERTION_ALGORITHMS)
        except JoseError as error:
            raise InvalidClientError(
                description="The client assertion is not signed with RS384 or ES384 "
                "by a key the client registered."
            ) from error
        self.verify_claims(token.claims)
        exp = token.claims.get("exp")
        if float(exp) > self.sandbox.settings.clock() + ASSERTION_MAX_LIFETIME_S + self.leeway:
            raise InvalidClientError(description="The client assertion expires too late.")
        return token.claims


class SandboxOAuth:
    """The sandbox's authorization server: clients, store, authlib server and its callbacks."""

    def __init__(self, settings: EhrSettings) -> None:
        """An authorization server for these settings (not on an app until init_app)."""
        self.settings = settings
        self.store = SandboxStore(clock=settings.clock)
        self.fhir_base = f"{settings.public_base}/fhir"
        self.token_endpoint = f"{settings.public_base}/oauth/token"
        self.fhir_user = f"{self.fhir_base}/Practitioner/{settings.practitioner_id}"
        self.kid = settings.signing_key.kid or settings.signing_key.thumbprint()
        self.user = EhrUser(settings.practitioner_id)
        self.clients = {c.client_id: SandboxClientModel(c) for c in settings.clients}
        self.server = SmartAuthorizationServer(self)

    # authlib callbacks --------------------------------------------------------------------

    def query_client(self, client_id: str) -> SandboxClientModel | None:
        """A registered client."""
        return self.clients.get(client_id)

    def save_code(self, code: str, request: OAuth2Request) -> None:
        """Keep an issued code and its context; an EHR launch id is spent here."""
        data = request.payload.data
        client_id = request.client.get_client_id()
        launch_id = data.get("launch")
        if launch_id:
            launch = self.store.consume_launch(launch_id, client_id)
            if launch is None:
                raise InvalidRequestError(
                    "Unknown, used or expired 'launch'.", redirect_uri=request.payload.redirect_uri
                )
            context = launch.context
        else:
            picked = getattr(request, "smart_patient", None)
            context = LaunchContext(
                patient=picked,
                need_patient_banner=picked is not None,
                read_only=getattr(request, "smart_read_only", False),
            )
        scope = request.scope or ""
        now = self.settings.clock()
        self.store.save_code(
            AuthCode(
                key=digest(code),
                client_id=client_id,
                redirect_uri=request.payload.redirect_uri,
                scope=scopes.read_only(scope) if context.read_only else scope,
                user_id=request.user.get_user_id(),
                context=context,
                nonce=data.get("nonce") or None,
                code_challenge=data.get("code_challenge"),
                code_challenge_method=data.get("code_challenge_method"),
                auth_time=int(now),
                expires_at=now + CODE_LIFETIME_S,
            )
        )

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        """Keep an issued token (as digests) with the context of its code or refresh token."""
        source = request.authorization_code or request.refresh_token
        context = source.context if source is not None else LaunchContext()
        code_key = None
        if isinstance(source, AuthCode):
            code_key = source.key
        elif isinstance(source, IssuedToken):
            code_key = source.code_key
        refresh = token.get("refresh_token")
        record = IssuedToken(
            access_key=digest(token["access_token"]),
            refresh_key=digest(refresh) if refresh else None,
            client_id=request.client.get_client_id(),
            scope=token.get("scope", ""),
            user_id=request.user.get_user_id(),
            context=context,
            issued_at=self.settings.clock(),
            expires_in=int(token["expires_in"]),
            code_key=code_key,
            clock=self.settings.clock,
        )
        self.store.save_token(record)
        request.smart_context = context
        request.smart_token = record

    def generate_token(
        self,
        grant_type: str,
        client: ClientMixin,
        user: Any = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        """A Bearer token; a refresh token only with offline_access or online_access."""
        offline = scopes.has_scope(scope, "offline_access") or scopes.has_scope(
            scope, "online_access"
        )
        generator = BearerTokenGenerator(
            lambda **_: secrets.token_urlsafe(32),
            lambda **_: secrets.token_urlsafe(48),
            self.settings.access_token_lifetime_s,
        )
        return generator.generate(
            grant_type, client, user, scope, expires_in, include_refresh_token and offline
        )

    # what the gateway and the launcher use ---------------------------------------------

    def grant_for(self, raw_token: str) -> scopes.Grant | None:
        """The scopes and patient of a valid access token, or None."""
        record = self.store.access(raw_token)
        if record is None:
            return None
        return scopes.Grant.from_scope(record.scope, patient=record.context.patient)

    def issue_service_token(
        self, *, client_id: str, patient_id: str, scope: str, lifetime_s: int
    ) -> str:
        """A short-lived access token for a CDS service (`fhirAuthorization`): the patient's
        context, `scope`, no refresh token; stored as a digest like every other token."""
        raw = secrets.token_urlsafe(32)
        self.store.save_token(
            IssuedToken(
                access_key=digest(raw),
                refresh_key=None,
                client_id=client_id,
                scope=scope,
                user_id=self.settings.practitioner_id,
                context=LaunchContext(patient=patient_id, read_only=True),
                issued_at=self.settings.clock(),
                expires_in=lifetime_s,
                code_key=None,
                clock=self.settings.clock,
            )
        )
        return raw

    def create_launch(
        self,
        *,
        client_id: str,
        patient_id: str,
        encounter_id: str | None = None,
        need_patient_banner: bool = False,
        companion: str | None = None,
        read_only: bool = False,
        app_context: str | None = None,
    ) -> str:
        """A new single-use EHR launch id for the client, bound to the patient (and, with
        `read_only`, granting the requested scopes without any write; with `app_context`, a CDS
        card link's appContext, answered as `appContext` in the token response)."""
        if app_context is not None and len(app_context) > MAX_APP_CONTEXT_CHARS:
            raise ValueError(f"appContext longer than {MAX_APP_CONTEXT_CHARS} characters")
        context = LaunchContext(
            patient_id, encounter_id, need_patient_banner, read_only, app_context or None
        )
        return self.store.create_launch(client_id=client_id, context=context, companion=companion)

    def init_app(self, app: Flask) -> None:
        """Set up authlib on the app: the token generator, private_key_jwt and both grants (the
        views are routes.py's blueprint, which calls this when registered)."""
        self.server.init_app(app)
        self.server.register_token_generator("default", self.generate_token)
        self.server.register_client_auth_method("private_key_jwt", PrivateKeyJwt(self))
        self.server.register_grant(
            SmartCodeGrant,
            [
                S256Challenge(required=True),
                SmartOpenIDCode(self),
                LaunchRequest(self),
                LaunchContextResponse(self),
            ],
        )
        self.server.register_grant(SmartRefreshGrant, [LaunchContextResponse(self)])
