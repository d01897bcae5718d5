"""A CDS client for tests: an RSA key, its public JWK Set, and signed Authorization headers."""

from __future__ import annotations

import time
import uuid
from typing import Any

from joserfc import jwt
from joserfc.jwk import Key, RSAKey

from smart_app.config import CdsClient

DEFAULT_ISS = "https://ehr.test/cds-client"
LIFETIME_S = 300


class CdsTestClient:
    """An EHR calling CDS services: signs CDS Hooks 2.0 client JWTs with its own RSA key."""

    def __init__(self, *, iss: str = DEFAULT_ISS, kid: str = "cds-test-key") -> None:
        """A fresh 2048-bit RSA key with the given kid."""
        self.iss = iss
        self.kid = kid
        self.key = RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig"})

    @property
    def jwks(self) -> dict[str, Any]:
        """The public JWK Set (what the client serves at its jwks_url)."""
        return {"keys": [self.key.as_dict(private=False)]}

    def registration(self, *, fhir_servers: tuple[str, ...] = (), jwks_url: str = "") -> CdsClient:
        """This client as the app registers it: its JWKS inline, or only its jwks_url."""
        return CdsClient(
            iss=self.iss,
            name="Test CDS client",
            jwks_url=jwks_url,
            jwks=None if jwks_url else self.jwks,
            fhir_servers=tuple(fhir_servers),
        )

    def token(
        self,
        *,
        aud: str,
        iss: str | None = None,
        jti: str | None = None,
        exp_s: float | None = None,
        iat_s: float | None = None,
        alg: str = "RS384",
        kid: str | None = None,
        now_s: float | None = None,
        header: dict[str, Any] | None = None,
        claims: dict[str, Any] | None = None,
        key: Key | None = None,
    ) -> str:
        """A signed JWT (compact); `header`/`claims` add or override fields (None drops one)."""
        now = time.time() if now_s is None else now_s
        iat = now if iat_s is None else iat_s
        issuer = self.iss if iss is None else iss
        body: dict[str, Any] = {
            "iss": issuer,
            "sub": issuer,
            "aud": aud,
            "iat": int(iat),
            "exp": int(iat + LIFETIME_S if exp_s is None else exp_s),
            "jti": str(uuid.uuid4()) if jti is None else jti,
        }
        body.update(claims or {})
        head: dict[str, Any] = {"alg": alg, "typ": "JWT", "kid": self.kid if kid is None else kid}
        head.update(header or {})
        head = {name: value for name, value in head.items() if value is not None}
        body = {name: value for name, value in body.items() if value is not None}
        return jwt.encode(head, body, key or self.key, algorithms=[alg])

    def authorization(self, *, aud: str, **options: Any) -> str:
        """The Authorization header value: "Bearer <jwt>", the JWT as `token` makes it from the
        same options (exp 5 minutes after iat by default)."""
        return f"Bearer {self.token(aud=aud, **options)}"
