"""Configuration outside the rules: institution policy, web settings (env), EHR registrations."""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from smart_app.errors import ConfigError, PolicyError
from smart_app.options import OrderMode, Strategy
from smart_app.rules.model import LabTest
from smart_app.rules.policy import DEFAULT_POLICY, Policy


def _convert(name: str, raw: Any, default: Any) -> Any:
    """Coerce one TOML value to the type of its default."""
    try:
        if isinstance(default, bool) or isinstance(raw, bool):
            raise TypeError
        if isinstance(default, Decimal):
            if not isinstance(raw, int | float | str):
                raise TypeError
            value = Decimal(str(raw))
            if not value.is_finite():
                raise ValueError
            return value
        if isinstance(default, int):
            if not isinstance(raw, int):
                raise TypeError
            return raw
        if isinstance(default, str):
            if not isinstance(raw, str):
                raise TypeError
            return raw
        if isinstance(default, tuple):
            if not isinstance(raw, list):
                raise TypeError
            if name == "baseline_tests":
                return tuple(LabTest(item) for item in raw)
            sample = default[0] if default else 0
            return tuple(_convert(name, item, sample) for item in raw)
    except (TypeError, ValueError, InvalidOperation) as exc:
        raise PolicyError(f"policy: {name} = {raw!r} is not a valid value") from exc
    raise PolicyError(f"policy: {name} cannot be set from a file")


def load_policy(path: Path) -> Policy:
    """Read a TOML file of overrides on top of the defaults."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PolicyError(f"policy: cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise PolicyError(f"policy: {path} is not UTF-8 text") from exc
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"policy: {path} is not valid TOML: {exc}") from exc
    fields = {f.name: f for f in dataclasses.fields(Policy)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise PolicyError(f"policy: unknown setting(s) {', '.join(unknown)} in {path}")
    overrides = {
        name: _convert(name, raw, getattr(DEFAULT_POLICY, name)) for name, raw in data.items()
    }
    return dataclasses.replace(DEFAULT_POLICY, **overrides)


class ClientType(StrEnum):
    """How the app authenticates to one EHR's authorization server."""

    PUBLIC = "public"
    CONFIDENTIAL_SECRET = "confidential-secret"  # noqa: S105 - a client type, not a secret
    CONFIDENTIAL_JWT = "confidential-jwt"
    OPEN = "open"  # an open FHIR server (e.g. the public HAPI sandbox): no OAuth at all


@dataclass(frozen=True)
class Registration:
    """One allowed FHIR base (`iss`) and the client the app is registered as there."""

    iss: str
    name: str
    client_type: ClientType
    client_id: str = ""
    redirect_uri: str = ""
    scopes: str = ""  # empty: the app derives them from the server's capabilities
    client_secret: str = field(default="", repr=False)
    private_jwk: Mapping[str, Any] | None = field(default=None, repr=False)
    jwt_alg: str = "RS384"
    write_strategy: Strategy = Strategy.AUTO
    """How writes reach this server; auto chooses from its CapabilityStatement."""


@dataclass(frozen=True)
class CdsClient:
    """An EHR allowed to call the app's CDS Hooks services: its JWT issuer and signing keys."""

    iss: str
    """The `iss` of the client's JWTs (CDS Hooks 2.0: the client's own URL)."""
    name: str
    jwks_url: str = ""
    """Where its public JWK Set is served (a `jku` in the JWT header must equal it)."""
    jwks: Mapping[str, Any] | None = None
    """Or its JWK Set itself (from a file)."""
    fhir_servers: tuple[str, ...] = ()
    """The FHIR bases its requests may name as fhirServer: the service sends fhirAuthorization
    tokens only there."""


@dataclass(frozen=True)
class WebSettings:
    """Everything the web app needs that is not a clinical rule."""

    public_url: str
    secret_key: str = field(repr=False)
    registrations: Mapping[str, Registration]
    session_dir: Path
    frame_ancestors: tuple[str, ...] = ("'self'",)
    policy: Policy = DEFAULT_POLICY
    order_mode: OrderMode = OrderMode.PROPOSAL
    launch_page: Path | None = None
    session_redis_url: str = field(default="", repr=False)
    cds_clients: Mapping[str, CdsClient] = field(default_factory=dict)
    """EHRs allowed to call the CDS Hooks services, by JWT issuer ([[cds_client]] tables)."""

    @property
    def secure_cookies(self) -> bool:
        """Cookies are Secure (and SameSite=None, for EHR iframes) when served over https."""
        return self.public_url.lower().startswith("https://")


_REGISTRATION_KEYS = {
    "iss",
    "name",
    "client_type",
    "client_id",
    "redirect_uri",
    "scopes",
    "client_secret_env",
    "private_key_file",
    "jwt_alg",
    "write_strategy",
}


def _base_url(text: str, *, what: str) -> str:
    """An absolute http(s) URL without a trailing slash; plain http only on loopback."""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise ConfigError(f"{what} {text!r} is not an absolute http(s) URL")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise ConfigError(f"{what} {text!r}: plain http is allowed on loopback only; use https")
    return text.rstrip("/")


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
JWT_ALGS = ("RS384", "ES384")


def _registration(raw: Mapping[str, Any], *, where: str, env: Mapping[str, str]) -> Registration:
    """One [[server]] table, checked."""
    unknown = sorted(set(raw) - _REGISTRATION_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    if not all(isinstance(value, str) for value in raw.values()):
        raise ConfigError(f"{where}: every value must be a string")
    try:
        client_type = ClientType(raw.get("client_type", "public"))
    except ValueError:
        kinds = ", ".join(c.value for c in ClientType)
        raise ConfigError(f"{where}: client_type must be one of {kinds}") from None
    iss = _base_url(raw.get("iss", ""), what=f"{where}: iss")
    secret, jwk = "", None
    if client_type is not ClientType.OPEN:
        for key in ("client_id", "redirect_uri"):
            if not raw.get(key):
                raise ConfigError(f"{where}: {key} is required for a {client_type} client")
        _base_url(raw["redirect_uri"], what=f"{where}: redirect_uri")
    if client_type is ClientType.CONFIDENTIAL_SECRET:
        name = raw.get("client_secret_env", "")
        secret = env.get(name, "") if name else ""
        if not secret:
            raise ConfigError(f"{where}: set client_secret_env to a variable holding the secret")
    if client_type is ClientType.CONFIDENTIAL_JWT:
        jwk = _private_jwk(raw.get("private_key_file", ""), where=where)
        if raw.get("jwt_alg", "RS384") not in JWT_ALGS:
            raise ConfigError(f"{where}: jwt_alg must be one of {', '.join(JWT_ALGS)} (SMART)")
    return Registration(
        iss=iss,
        name=raw.get("name", iss),
        client_type=client_type,
        client_id=raw.get("client_id", ""),
        redirect_uri=raw.get("redirect_uri", ""),
        scopes=raw.get("scopes", ""),
        client_secret=secret,
        private_jwk=jwk,
        jwt_alg=raw.get("jwt_alg", "RS384"),
        write_strategy=_write_strategy(raw.get("write_strategy", "auto"), where=where),
    )


def _write_strategy(text: str, *, where: str) -> Strategy:
    """A registration's write strategy, checked."""
    try:
        return Strategy(text)
    except ValueError:
        kinds = ", ".join(s.value for s in Strategy)
        raise ConfigError(f"{where}: write_strategy must be one of {kinds}") from None


def _private_jwk(path_text: str, *, where: str) -> dict[str, Any]:
    """The private JWK (JSON) a confidential-jwt client signs its assertions with."""
    if not path_text:
        raise ConfigError(f"{where}: private_key_file is required for a confidential-jwt client")
    try:
        data = json.loads(Path(path_text).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read the private JWK in {path_text}") from exc
    if not isinstance(data, dict) or "kty" not in data or "d" not in data:
        raise ConfigError(f"{where}: {path_text} is not a private JWK")
    return data


def _registrations_toml(path: Path) -> dict[str, Any]:
    """The registrations file, parsed (ConfigError when it cannot be read or is not TOML)."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"registrations: cannot read {path}: {exc.strerror}") from exc
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"registrations: {path} is not valid TOML: {exc}") from exc


def load_registrations(
    path: Path, *, env: Mapping[str, str] | None = None
) -> dict[str, Registration]:
    """Read the TOML file of allowed EHRs: `[[server]]` tables keyed by their `iss`."""
    data = _registrations_toml(path)
    return registrations_from(data, where=str(path), env=os.environ if env is None else env)


def registrations_from(
    data: Mapping[str, Any], *, where: str = "registrations", env: Mapping[str, str] | None = None
) -> dict[str, Registration]:
    """Registrations from already-parsed data (`{"server": [...]}`)."""
    unknown = sorted(set(data) - {"server", "cds_client"})
    servers = data.get("server", [])
    if unknown or not isinstance(servers, list):
        raise ConfigError(f"{where}: expected only [[server]] tables (and [[cds_client]] tables)")
    found: dict[str, Registration] = {}
    for index, raw in enumerate(servers):
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: server[{index}] is not a table")
        registration = _registration(raw, where=f"{where}: server[{index}]", env=env or {})
        if registration.iss in found:
            raise ConfigError(f"{where}: {registration.iss} is registered twice")
        found[registration.iss] = registration
    return found


_CDS_CLIENT_KEYS = {"iss", "name", "jwks_url", "jwks_file", "fhir_servers"}


def load_cds_clients(path: Path) -> dict[str, CdsClient]:
    """Read the `[[cds_client]]` tables of the registrations file, keyed by their `iss`."""
    return cds_clients_from(_registrations_toml(path), where=str(path), folder=path.parent)


def cds_clients_from(
    data: Mapping[str, Any], *, where: str = "registrations", folder: Path = Path()
) -> dict[str, CdsClient]:
    """CDS clients from already-parsed data (`{"cds_client": [...]}`); jwks_file is relative to
    `folder` (the TOML file's)."""
    tables = data.get("cds_client", [])
    if not isinstance(tables, list):
        raise ConfigError(f"{where}: cds_client must be [[cds_client]] tables")
    found: dict[str, CdsClient] = {}
    for index, raw in enumerate(tables):
        here = f"{where}: cds_client[{index}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"{here} is not a table")
        client = _cds_client(raw, where=here, folder=folder)
        if client.iss in found:
            raise ConfigError(f"{where}: CDS client {client.iss} is registered twice")
        found[client.iss] = client
    return found


def _cds_client(raw: Mapping[str, Any], *, where: str, folder: Path) -> CdsClient:
    """One [[cds_client]] table, checked: an iss, exactly one of jwks_url / jwks_file."""
    unknown = sorted(set(raw) - _CDS_CLIENT_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    for key in ("iss", "name", "jwks_url", "jwks_file"):
        if not isinstance(raw.get(key, ""), str):
            raise ConfigError(f"{where}: {key} must be a string")
    iss = raw.get("iss", "")
    if not iss or iss != iss.strip():
        raise ConfigError(f"{where}: iss (the issuer of the client's JWTs) is required")
    jwks_url, jwks_file = raw.get("jwks_url", ""), raw.get("jwks_file", "")
    if bool(jwks_url) == bool(jwks_file):
        raise ConfigError(f"{where}: set exactly one of jwks_url and jwks_file")
    if jwks_url:
        _base_url(jwks_url, what=f"{where}: jwks_url")
    servers = raw.get("fhir_servers", [])
    if not isinstance(servers, list) or not all(isinstance(s, str) for s in servers):
        raise ConfigError(f"{where}: fhir_servers must be a list of FHIR base URLs")
    return CdsClient(
        iss=iss,
        name=raw.get("name") or iss,
        jwks_url=jwks_url,
        jwks=_public_jwks(folder / jwks_file, where=where) if jwks_file else None,
        fhir_servers=tuple(_base_url(s, what=f"{where}: fhir_servers") for s in servers),
    )


def _public_jwks(path: Path, *, where: str) -> dict[str, Any]:
    """A CDS client's public JWK Set (JSON `{"keys": [...]}`) from a file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read the JWK Set in {path}") from exc
    keys = data.get("keys") if isinstance(data, dict) else None
    if not keys or not isinstance(keys, list) or not all(isinstance(k, dict) for k in keys):
        raise ConfigError(f"{where}: {path} is not a JWK Set (a JSON object with keys)")
    if any("kty" not in key or "kid" not in key for key in keys):
        raise ConfigError(f"{where}: every key in {path} needs a kty and a kid")
    if any("d" in key for key in keys):
        raise ConfigError(f"{where}: {path} holds a private key; register the public JWK Set")
    return data


def web_settings(env: Mapping[str, str], **overrides: Any) -> WebSettings:
    """Settings from SMART_APP_* variables, then keyword overrides (tests, the sandbox)."""
    values: dict[str, Any] = {
        "public_url": env.get("SMART_APP_PUBLIC_URL", "http://127.0.0.1:8092"),
        "secret_key": env.get("SMART_APP_SECRET_KEY", ""),
        "session_dir": Path(env.get("SMART_APP_SESSION_DIR", ".smart-sessions")),
        "frame_ancestors": tuple(env.get("SMART_APP_FRAME_ANCESTORS", "'self'").split()),
        "order_mode": _order_mode(env.get("SMART_APP_ORDER_MODE", "proposal")),
        "session_redis_url": env.get("SMART_APP_SESSION_REDIS_URL", ""),
    }
    if "registrations" not in overrides:
        path = env.get("SMART_APP_REGISTRATIONS")
        values["registrations"] = load_registrations(Path(path), env=env) if path else {}
        if "cds_clients" not in overrides:  # the same file's [[cds_client]] tables
            values["cds_clients"] = load_cds_clients(Path(path)) if path else {}
    if "policy" not in overrides and env.get("SMART_APP_POLICY"):
        values["policy"] = load_policy(Path(env["SMART_APP_POLICY"]))
    values.update(overrides)
    values["public_url"] = _base_url(values["public_url"], what="SMART_APP_PUBLIC_URL")
    if len(values["secret_key"]) < 32:
        raise ConfigError("SMART_APP_SECRET_KEY must be set to at least 32 random characters")
    return WebSettings(**values)


def _order_mode(text: str) -> OrderMode:
    """SMART_APP_ORDER_MODE: proposal (draft orders to sign) or order (active orders)."""
    try:
        return OrderMode(text)
    except ValueError:
        raise ConfigError(f"SMART_APP_ORDER_MODE must be proposal or order, not {text!r}") from None
