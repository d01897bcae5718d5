"""The CDS client's signed JWT (CDS Hooks 2.0 'Trusting CDS Clients'): verified, never logged."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from cachelib.base import BaseCache
from cachelib.file import FileSystemCache
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import Key, KeySet

from smart_app.config import CdsClient, WebSettings
from smart_app.errors import ConfigError, SmartAppError

log = logging.getLogger(__name__)

ALGORITHMS = ("RS384", "ES384", "RS256")
"""CDS Hooks 2.0: services SHALL support ES384 and RS384; RS256 is accepted for interoperability.
Never "none" nor a shared-secret HS* algorithm."""
LEEWAY_S = 60
"""Clock skew allowed on exp and iat."""
MAX_LIFETIME_S = 3600
"""A token may not claim to be valid longer than this from now (the spec advises 5 minutes); it
bounds how long a jti must be remembered."""
MAX_TOKEN_CHARS = 16_384
JTI_FILE_THRESHOLD = 20_000
"""Remembered jti files before the file store prunes (expired first)."""


class CdsUnauthorized(SmartAppError):
    """The request's JWT is missing, malformed, expired, for another service or from an unknown
    or untrusted client (answered with 401)."""


class _LockedFileCache(FileSystemCache):
    """A FileSystemCache whose `add` is atomic across processes (an flock on a file in it)."""

    def __init__(self, folder: Path, **options: Any) -> None:
        """The cache in `folder`; its lock file is named like a cachelib temporary file, so the
        cache never counts, prunes or clears it."""
        super().__init__(str(folder), **options)
        self._lock_path = folder / f"add-lock{self._fs_transaction_suffix}"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the exclusive lock shared by every worker on this host."""
        with self._lock_path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def add(self, key: str, value: Any, timeout: Any = None) -> bool:
        """Set `key` only if it is absent, with no other worker in between."""
        with self._locked():
            return bool(super().add(key, value, timeout))


class JtiStore:
    """Seen jti values until they expire, shared by every worker (cachelib or Redis)."""

    def __init__(self, cache: BaseCache) -> None:
        """Remember jti values in `cache` (its `add` must be atomic for several workers)."""
        self.cache = cache

    @classmethod
    def for_settings(cls, settings: WebSettings) -> JtiStore:
        """Redis when sessions are in Redis (several instances), else files beside the
        sessions (one instance, any number of workers)."""
        if settings.session_redis_url:
            try:
                import redis
                from cachelib.redis import RedisCache
            except ImportError:
                raise ConfigError("SMART_APP_SESSION_REDIS_URL needs `pip install redis`") from None
            client = redis.Redis.from_url(settings.session_redis_url)
            return cls(RedisCache(host=client, key_prefix="cds-jti:"))
        settings.session_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        folder = settings.session_dir / "cds-jti"
        return cls(_LockedFileCache(folder, threshold=JTI_FILE_THRESHOLD, mode=0o600))

    def first_use(
        self, *, iss: str, jti: str, expires_at_s: float, now_s: float | None = None
    ) -> bool:
        """True the first time (iss, jti) is seen; False for a replay. The entry is kept until
        the token's exp (+ leeway), after which the token is refused as expired anyway."""
        now = time.time() if now_s is None else now_s
        timeout_s = max(1, math.ceil(expires_at_s - now + LEEWAY_S) + 1)
        digest = hashlib.sha256(f"{iss}\0{jti}".encode()).hexdigest()
        return bool(self.cache.add(f"jti:{digest}", 1, timeout=timeout_s))


@dataclass
class _Fetched:
    """One client's JWK Set and when it was fetched (monotonic seconds)."""

    jwks: dict[str, Any]
    at_s: float


class JwksCache:
    """CDS clients' JWK Sets fetched from their jwks_url, kept for `ttl_s`."""

    def __init__(
        self,
        *,
        http: requests.Session | None = None,
        ttl_s: float = 3600,
        timeout_s: float = 5,
        min_refetch_s: float = 60,
        monotonic_s: Callable[[], float] = time.monotonic,
    ) -> None:
        """Fetch with `http`; refetch (for an unknown kid) at most once per `min_refetch_s`."""
        self.http = http or requests.Session()
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self.min_refetch_s = min_refetch_s
        self.monotonic_s = monotonic_s
        self._fetched: dict[str, _Fetched] = {}
        self._lock = threading.Lock()

    def get(self, url: str, *, refetch: bool = False) -> dict[str, Any]:
        """The JWK Set at `url`: cached unless stale, or `refetch` and not fetched just now."""
        now = self.monotonic_s()
        with self._lock:
            held = self._fetched.get(url)
        if held is not None:
            age_s = now - held.at_s
            if age_s < self.ttl_s and not (refetch and age_s >= self.min_refetch_s):
                return held.jwks
        jwks = self._fetch(url)
        with self._lock:
            self._fetched[url] = _Fetched(jwks, now)
        return jwks

    def _fetch(self, url: str) -> dict[str, Any]:
        """GET the JWK Set (JSON with a "keys" list)."""
        try:
            response = self.http.get(
                url, timeout=self.timeout_s, headers={"Accept": "application/json"}
            )
            response.raise_for_status()
            data = response.json()
        except (requests.RequestException, ValueError) as exc:
            log.warning("CDS client JWK Set %s not fetched: %s", url, type(exc).__name__)
            raise CdsUnauthorized("the CDS client's JWK Set could not be fetched") from None
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            log.warning("CDS client JWK Set %s is not a JWK Set", url)
            raise CdsUnauthorized("the CDS client's JWK Set is not a JWK Set")
        return data


DEFAULT_JWKS_CACHE = JwksCache()


def verify_client(
    authorization: str | None,
    *,
    audience: str,
    clients: Mapping[str, CdsClient],
    jtis: JtiStore,
    now_s: Callable[[], float],
    jwks_cache: JwksCache | None = None,
) -> CdsClient:
    """The registered client whose signed JWT this Authorization header carries, checked: iss
    registered, signature by its JWKS, aud the service URL, exp, iat, jti not seen before."""
    token = _bearer(authorization)
    try:
        signed = jws.extract_compact(token.encode("ascii"))
        header = dict(signed.headers())
        unverified = json.loads(signed.payload)
    except (JoseError, ValueError, TypeError, UnicodeError):
        raise CdsUnauthorized("the Authorization bearer token is not a signed JWT") from None
    alg, kid = _checked_header(header)
    if not isinstance(unverified, dict) or not isinstance(unverified.get("iss"), str):
        raise CdsUnauthorized("the JWT has no iss")
    client = clients.get(unverified["iss"])
    if client is None:
        raise CdsUnauthorized("the JWT's iss is not a registered CDS client")
    if "jku" in header and (not client.jwks_url or header["jku"] != client.jwks_url):
        raise CdsUnauthorized("the JWT's jku is not the client's registered JWK Set URL")
    key = _client_key(client, kid, jwks_cache or DEFAULT_JWKS_CACHE)
    try:
        valid = jws.validate_compact(signed, key, algorithms=[alg])
    except (JoseError, ValueError, TypeError):
        valid = False
    if not valid:
        raise CdsUnauthorized("the JWT's signature is not valid for the client's key")
    now = now_s()
    expires_at_s = _checked_claims(unverified, audience=audience, now=now)
    if not jtis.first_use(
        iss=client.iss, jti=unverified["jti"], expires_at_s=expires_at_s, now_s=now
    ):
        raise CdsUnauthorized("the JWT's jti was already used (replay)")
    return client


def _bearer(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header."""
    if not authorization:
        raise CdsUnauthorized("no Authorization header: a signed JWT is required")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise CdsUnauthorized("the Authorization header is not a Bearer token")
    if len(token) > MAX_TOKEN_CHARS:
        raise CdsUnauthorized("the Authorization bearer token is too long")
    return token


def _checked_header(header: Mapping[str, Any]) -> tuple[str, str]:
    """The JWS header's alg (an allowed asymmetric one) and kid (required)."""
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise CdsUnauthorized(f"the JWT's alg must be one of {', '.join(ALGORITHMS)}")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise CdsUnauthorized("the JWT header has no kid")
    typ = header.get("typ", "JWT")
    if not isinstance(typ, str) or typ.upper() != "JWT":
        raise CdsUnauthorized("the JWT header's typ is not JWT")
    return str(alg), kid


def _client_key(client: CdsClient, kid: str, cache: JwksCache) -> Key:
    """The client's public key with this kid: from its registered JWK Set, or its jwks_url
    (fetched again once if the kid is new: key rotation)."""
    if client.jwks is not None:
        key = _key_by_kid(client.jwks, kid)
    elif client.jwks_url:
        key = _key_by_kid(cache.get(client.jwks_url), kid)
        if key is None:
            key = _key_by_kid(cache.get(client.jwks_url, refetch=True), kid)
    else:
        raise CdsUnauthorized("the CDS client has no registered keys")
    if key is None:
        raise CdsUnauthorized("no key with the JWT's kid in the client's JWK Set")
    return key


def _key_by_kid(jwks: Mapping[str, Any], kid: str) -> Key | None:
    """The key with this kid in a JWK Set, if any."""
    try:
        return KeySet.import_key_set(dict(jwks)).get_by_kid(kid)  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError, KeyError):
        return None


def _checked_claims(claims: Mapping[str, Any], *, audience: str, now: float) -> float:
    """Check aud, exp, iat and jti (after the signature); the token's exp."""
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if audience not in audiences:
        raise CdsUnauthorized("the JWT's aud is not this CDS service's URL")
    exp = _seconds(claims, "exp")
    iat = _seconds(claims, "iat")
    if exp <= now - LEEWAY_S:
        raise CdsUnauthorized("the JWT has expired")
    if exp > now + MAX_LIFETIME_S:
        raise CdsUnauthorized("the JWT's exp is too far in the future")
    if iat > now + LEEWAY_S:
        raise CdsUnauthorized("the JWT's iat is in the future")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise CdsUnauthorized("the JWT has no jti")
    return exp


def _seconds(claims: Mapping[str, Any], name: str) -> float:
    """A required NumericDate claim."""
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CdsUnauthorized(f"the JWT has no valid {name}")
    return float(value)
