# ruff: noqa: S105, S106 - fake secrets and env-variable names, not credentials
"""Web settings (SMART_APP_* env) and the EHR registrations file ([[server]] tables)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import ECKey, RSAKey

from smart_app.config import (
    ClientType,
    Registration,
    WebSettings,
    _order_mode,
    load_registrations,
    registrations_from,
    web_settings,
)
from smart_app.errors import ConfigError, InputError
from smart_app.fhir.written import OrderMode, Strategy
from smart_app.rules.policy import DEFAULT_POLICY
from tests.builders import toml_table, write_file

ISS = "https://ehr.example.org/fhir"
REDIRECT = "https://planner.example.org/callback"
SECRET_VALUE = "client-secret-value-0123456789"
SECRET_KEY = "k" * 32
PUBLIC_SERVER = f"""
[[server]]
iss = "{ISS}/"
name = "Example EHR"
client_id = "planner"
redirect_uri = "{REDIRECT}"
"""


def server(**values: Any) -> dict[str, Any]:
    """One valid [[server]] table with changes (None removes a key)."""
    return toml_table({"iss": ISS, "client_id": "planner", "redirect_uri": REDIRECT}, values)


def one(env: dict[str, str] | None = None, **values: Any) -> Registration:
    found = registrations_from({"server": [server(**values)]}, env=env)
    assert len(found) == 1
    return next(iter(found.values()))


@pytest.fixture(scope="module")
def rsa_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "planner-1"})


@pytest.fixture
def private_key_file(tmp_path: Path, rsa_key: RSAKey) -> Path:
    return write_file(tmp_path, json.dumps(rsa_key.as_dict(private=True)), "planner.jwk.json")


# --- ClientType / Registration --------------------------------------------------------------


def test_client_types() -> None:
    assert {c.value for c in ClientType} == {
        "public",
        "confidential-secret",
        "confidential-jwt",
        "open",
    }
    assert ClientType("confidential-jwt") is ClientType.CONFIDENTIAL_JWT


def test_registration_defaults() -> None:
    reg = Registration(iss=ISS, name="EHR", client_type=ClientType.OPEN)
    assert (reg.client_id, reg.redirect_uri, reg.scopes, reg.client_secret) == ("", "", "", "")
    assert reg.private_jwk is None
    assert reg.jwt_alg == "RS384"


# --- load_registrations ---------------------------------------------------------------------


def test_load_a_public_server_keyed_by_iss_without_trailing_slash(tmp_path: Path) -> None:
    found = load_registrations(write_file(tmp_path, PUBLIC_SERVER), env={})
    assert found == {
        ISS: Registration(
            iss=ISS,
            name="Example EHR",
            client_type=ClientType.PUBLIC,
            client_id="planner",
            redirect_uri=REDIRECT,
        )
    }


def test_load_several_servers(tmp_path: Path) -> None:
    text = (
        PUBLIC_SERVER
        + """
[[server]]
iss = "http://127.0.0.1:8080/fhir"
client_type = "open"

[[server]]
iss = "https://other.example.org/r4"
name = "Other"
client_type = "public"
client_id = "planner-2"
redirect_uri = "https://planner.example.org/callback"
scopes = "launch openid fhirUser patient/*.read"
jwt_alg = "ES384"
"""
    )
    found = load_registrations(write_file(tmp_path, text), env={})
    assert list(found) == [ISS, "http://127.0.0.1:8080/fhir", "https://other.example.org/r4"]
    open_server = found["http://127.0.0.1:8080/fhir"]
    assert open_server.client_type is ClientType.OPEN
    assert open_server.name == "http://127.0.0.1:8080/fhir"  # defaults to the iss
    assert open_server.client_id == ""
    other = found["https://other.example.org/r4"]
    assert other.scopes == "launch openid fhirUser patient/*.read"
    assert other.jwt_alg == "ES384"


def test_an_empty_file_has_no_registrations(tmp_path: Path) -> None:
    assert load_registrations(write_file(tmp_path, ""), env={}) == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[server]\n", "not valid TOML"),
        ('server = "x"\n', "expected only \\[\\[server\\]\\] tables"),
        ("[other]\nkey = 1\n", "expected only \\[\\[server\\]\\] tables"),
        (PUBLIC_SERVER + "colour = 'blue'\n", "unknown key\\(s\\) colour"),
    ],
    ids=["bad-toml", "server-not-tables", "unknown-table", "unknown-key"],
)
def test_load_refuses_a_malformed_file(tmp_path: Path, text: str, message: str) -> None:
    path = write_file(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_registrations(path, env={})
    assert str(path) in str(caught.value)


def test_load_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_registrations(tmp_path / "absent.toml", env={})


def test_load_refuses_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "servers.toml"
    path.write_bytes(b'[[server]]\niss = "\xff"\n')
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_registrations(path, env={})


def test_config_error_is_an_input_error() -> None:
    assert issubclass(ConfigError, InputError)


# --- registrations_from: every rule ---------------------------------------------------------


def test_unknown_keys_are_named() -> None:
    with pytest.raises(ConfigError, match=r"server\[0\]: unknown key\(s\) client_secret, colour"):
        registrations_from({"server": [server(colour="blue", client_secret="x")]})


@pytest.mark.parametrize(
    "values",
    [
        {"client_id": 12},
        {"jwt_alg": 384},
        {"scopes": ["launch", "openid"]},
        {"name": True},
        {"iss": {"url": ISS}},
    ],
    ids=["int-id", "int-alg", "list-scopes", "bool-name", "table-iss"],
)
def test_every_value_must_be_a_string(values: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="every value must be a string"):
        registrations_from({"server": [server(**values)]})


def test_a_server_entry_must_be_a_table() -> None:
    with pytest.raises(ConfigError, match=r"server\[1\] is not a table"):
        registrations_from({"server": [server(), "https://x.example.org"]})


@pytest.mark.parametrize("kind", ["confidential", "PUBLIC", "jwt", ""])
def test_a_bad_client_type_lists_the_choices(kind: str) -> None:
    with pytest.raises(ConfigError, match="client_type must be one of") as caught:
        one(client_type=kind)
    for choice in ClientType:
        assert choice.value in str(caught.value)


@pytest.mark.parametrize("kind", ["public", "confidential-secret", "confidential-jwt"])
@pytest.mark.parametrize("missing", ["client_id", "redirect_uri"])
def test_oauth_clients_need_an_id_and_a_redirect(kind: str, missing: str) -> None:
    with pytest.raises(ConfigError, match=f"{missing} is required for a {kind} client"):
        one(client_type=kind, **{missing: None})


@pytest.mark.parametrize("missing", ["client_id", "redirect_uri"])
def test_an_empty_client_id_or_redirect_is_missing(missing: str) -> None:
    with pytest.raises(ConfigError, match=f"{missing} is required"):
        one(**{missing: ""})


def test_an_open_server_needs_no_client() -> None:
    reg = one(client_type="open", client_id=None, redirect_uri=None)
    assert reg.client_type is ClientType.OPEN
    assert (reg.client_id, reg.redirect_uri) == ("", "")


@pytest.mark.parametrize("strategy", list(Strategy))
def test_a_registration_may_set_the_write_strategy(strategy: Strategy) -> None:
    """write_strategy overrides the choice from the server's CapabilityStatement."""
    assert one(write_strategy=strategy.value).write_strategy is strategy


def test_the_write_strategy_defaults_to_auto() -> None:
    assert one().write_strategy is Strategy.AUTO


def test_an_unknown_write_strategy_lists_the_choices() -> None:
    with pytest.raises(ConfigError, match="write_strategy must be one of auto, transaction"):
        one(write_strategy="bulk")


def test_a_duplicate_iss_is_refused() -> None:
    with pytest.raises(ConfigError, match=f"{re.escape(ISS)} is registered twice"):
        registrations_from({"server": [server(), server(iss=f"{ISS}/", name="again")]})


@pytest.mark.parametrize(
    "iss",
    [
        "http://ehr.example.org/fhir",
        "http://10.0.0.5/fhir",
        "http://localhost.example.org/fhir",
        "http://127.0.0.1.nip.io/fhir",
    ],
)
def test_plain_http_iss_is_refused_off_loopback(iss: str) -> None:
    with pytest.raises(ConfigError, match="plain http is allowed on loopback only"):
        one(iss=iss)


@pytest.mark.parametrize(
    "iss", ["http://127.0.0.1:8080/fhir", "http://localhost/fhir", "http://[::1]:9000/fhir"]
)
def test_plain_http_iss_is_accepted_on_loopback(iss: str) -> None:
    assert one(iss=iss).iss == iss


@pytest.mark.parametrize(
    "iss",
    [
        "",
        "ehr.example.org/fhir",
        "/fhir",
        "ftp://ehr.example.org/fhir",
        "https:///fhir",
        f"{ISS}?tenant=7",
    ],
    ids=["empty", "no-scheme", "relative", "ftp", "no-host", "query"],
)
def test_iss_must_be_an_absolute_http_url_without_query(iss: str) -> None:
    with pytest.raises(ConfigError, match="is not an absolute http\\(s\\) URL"):
        one(iss=iss)


def test_a_missing_iss_is_refused() -> None:
    with pytest.raises(ConfigError, match="iss"):
        one(iss=None)


@pytest.mark.parametrize(
    ("redirect", "message"),
    [
        ("http://planner.example.org/callback", "plain http"),
        ("https://planner.example.org/callback?x=1", "not an absolute"),
        ("/callback", "not an absolute"),
    ],
)
def test_the_redirect_uri_is_checked_too(redirect: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"redirect_uri.*{message}"):
        one(redirect_uri=redirect)


def test_iss_trailing_slashes_are_stripped() -> None:
    assert one(iss=f"{ISS}//").iss == ISS


def test_the_error_names_the_file_and_the_server(tmp_path: Path) -> None:
    text = PUBLIC_SERVER + '\n[[server]]\niss = "http://ehr2.example.org"\nclient_type = "open"\n'
    path = write_file(tmp_path, text)
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: server\[1\]: iss"):
        load_registrations(path, env={})


# --- confidential-secret --------------------------------------------------------------------


def test_confidential_secret_reads_the_named_variable() -> None:
    reg = one(
        {"PLANNER_SECRET": SECRET_VALUE},
        client_type="confidential-secret",
        client_secret_env="PLANNER_SECRET",
    )
    assert reg.client_type is ClientType.CONFIDENTIAL_SECRET
    assert reg.client_secret == SECRET_VALUE


@pytest.mark.parametrize(
    ("env", "values"),
    [
        ({}, {"client_secret_env": "PLANNER_SECRET"}),
        ({"PLANNER_SECRET": ""}, {"client_secret_env": "PLANNER_SECRET"}),
        ({"PLANNER_SECRET": SECRET_VALUE}, {}),
        ({"": SECRET_VALUE}, {"client_secret_env": ""}),
    ],
    ids=["unset", "empty", "no-client-secret-env", "empty-name"],
)
def test_confidential_secret_fails_without_a_secret(
    env: dict[str, str], values: dict[str, str]
) -> None:
    with pytest.raises(ConfigError, match="client_secret_env"):
        one(env, client_type="confidential-secret", **values)


def test_load_registrations_reads_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLANNER_TEST_SECRET", SECRET_VALUE)
    text = PUBLIC_SERVER.replace(
        'client_id = "planner"',
        'client_id = "planner"\nclient_type = "confidential-secret"\n'
        'client_secret_env = "PLANNER_TEST_SECRET"',
    )
    reg = load_registrations(write_file(tmp_path, text))[ISS]
    assert reg.client_secret == SECRET_VALUE


def test_load_registrations_env_argument_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLANNER_TEST_SECRET", SECRET_VALUE)
    text = PUBLIC_SERVER.replace(
        'client_id = "planner"',
        'client_id = "planner"\nclient_type = "confidential-secret"\n'
        'client_secret_env = "PLANNER_TEST_SECRET"',
    )
    with pytest.raises(ConfigError, match="client_secret_env"):
        load_registrations(write_file(tmp_path, text), env={})


def test_a_public_client_ignores_the_secret() -> None:
    reg = one({"PLANNER_SECRET": SECRET_VALUE}, client_secret_env="PLANNER_SECRET")
    assert reg.client_secret == ""


# --- confidential-jwt -----------------------------------------------------------------------


def test_confidential_jwt_reads_the_private_jwk(private_key_file: Path, rsa_key: RSAKey) -> None:
    reg = one(client_type="confidential-jwt", private_key_file=str(private_key_file))
    assert reg.client_type is ClientType.CONFIDENTIAL_JWT
    assert reg.private_jwk == rsa_key.as_dict(private=True)
    assert reg.jwt_alg == "RS384"


def test_confidential_jwt_accepts_an_ec_key(tmp_path: Path) -> None:
    key = ECKey.generate_key("P-384")
    path = write_file(tmp_path, json.dumps(key.as_dict(private=True)), "ec.json")
    reg = one(client_type="confidential-jwt", private_key_file=str(path), jwt_alg="ES384")
    assert reg.private_jwk is not None
    assert reg.private_jwk["kty"] == "EC"
    assert reg.jwt_alg == "ES384"


def test_confidential_jwt_refuses_a_public_only_key(tmp_path: Path, rsa_key: RSAKey) -> None:
    path = write_file(tmp_path, json.dumps(rsa_key.as_dict(private=False)), "public.json")
    with pytest.raises(ConfigError, match="is not a private JWK"):
        one(client_type="confidential-jwt", private_key_file=str(path))


@pytest.mark.parametrize(
    "content",
    [b"not json", b"\xff\xfe", b'["kty", "d"]', b'{"d": "abc"}'],
    ids=["not-json", "not-utf8", "list", "no-kty"],
)
def test_confidential_jwt_refuses_an_unusable_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "key.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="private JWK"):
        one(client_type="confidential-jwt", private_key_file=str(path))


def test_confidential_jwt_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the private JWK"):
        one(client_type="confidential-jwt", private_key_file=str(tmp_path / "absent.json"))


def test_confidential_jwt_refuses_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the private JWK"):
        one(client_type="confidential-jwt", private_key_file=str(tmp_path))


def test_confidential_jwt_needs_a_key_file() -> None:
    with pytest.raises(ConfigError, match="private_key_file is required"):
        one(client_type="confidential-jwt")


def test_a_public_client_does_not_read_the_key_file(tmp_path: Path) -> None:
    reg = one(private_key_file=str(tmp_path / "absent.json"))
    assert reg.private_jwk is None


# --- repr never shows a credential ----------------------------------------------------------


def test_registration_repr_hides_the_secret() -> None:
    reg = one(
        {"PLANNER_SECRET": SECRET_VALUE},
        client_type="confidential-secret",
        client_secret_env="PLANNER_SECRET",
    )
    assert SECRET_VALUE not in repr(reg)
    assert SECRET_VALUE not in str(reg)
    assert "planner" in repr(reg)


def test_registration_repr_hides_the_private_key(private_key_file: Path, rsa_key: RSAKey) -> None:
    reg = one(client_type="confidential-jwt", private_key_file=str(private_key_file))
    private = rsa_key.as_dict(private=True)
    for part in ("d", "p", "q", "dp", "dq", "qi"):
        assert str(private[part]) not in repr(reg), part
    assert "private_jwk" not in repr(reg)


def test_web_settings_repr_hides_every_credential(
    tmp_path: Path, private_key_file: Path, rsa_key: RSAKey
) -> None:
    text = f"""
[[server]]
iss = "{ISS}"
client_type = "confidential-secret"
client_id = "planner"
redirect_uri = "{REDIRECT}"
client_secret_env = "PLANNER_SECRET"

[[server]]
iss = "https://other.example.org/fhir"
client_type = "confidential-jwt"
client_id = "planner"
redirect_uri = "{REDIRECT}"
private_key_file = "{private_key_file}"
"""
    secret_key = "session-signing-key-" + "z" * 40
    settings = web_settings(
        {
            "SMART_APP_SECRET_KEY": secret_key,
            "SMART_APP_REGISTRATIONS": str(write_file(tmp_path, text)),
            "PLANNER_SECRET": SECRET_VALUE,
        }
    )
    assert len(settings.registrations) == 2
    shown = repr(settings)
    assert secret_key not in shown
    assert SECRET_VALUE not in shown
    assert str(rsa_key.as_dict(private=True)["d"]) not in shown
    assert ISS in shown


# --- web_settings ---------------------------------------------------------------------------


def settings_from(**env: str) -> WebSettings:
    return web_settings({"SMART_APP_SECRET_KEY": SECRET_KEY, **env})


def test_web_settings_defaults() -> None:
    settings = settings_from()
    assert settings.public_url == "http://127.0.0.1:8092"
    assert settings.secret_key == SECRET_KEY
    assert settings.registrations == {}
    assert settings.session_dir == Path(".smart-sessions")
    assert settings.frame_ancestors == ("'self'",)
    assert settings.order_mode is OrderMode.PROPOSAL
    assert settings.policy == DEFAULT_POLICY
    assert settings.launch_page is None
    assert settings.secure_cookies is False


def test_web_settings_public_url_loses_its_trailing_slash() -> None:
    settings = settings_from(SMART_APP_PUBLIC_URL="https://planner.example.org/app/")
    assert settings.public_url == "https://planner.example.org/app"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://planner.example.org", "plain http is allowed on loopback only"),
        ("planner.example.org", "not an absolute"),
        ("https://planner.example.org/?x=1", "not an absolute"),
    ],
)
def test_web_settings_refuses_a_bad_public_url(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"SMART_APP_PUBLIC_URL.*{message}"):
        settings_from(SMART_APP_PUBLIC_URL=url)


@pytest.mark.parametrize(
    ("url", "secure"),
    [
        ("https://planner.example.org", True),
        ("https://planner.example.org:8443/app", True),
        ("http://127.0.0.1:8092", False),
        ("http://localhost:8092", False),
    ],
)
def test_secure_cookies_only_over_https(url: str, secure: bool) -> None:
    assert settings_from(SMART_APP_PUBLIC_URL=url).secure_cookies is secure


def test_secure_cookies_for_an_uppercase_https_scheme() -> None:
    assert settings_from(SMART_APP_PUBLIC_URL="HTTPS://planner.example.org").secure_cookies


@pytest.mark.parametrize("key", ["", "short", "x" * 31])
def test_web_settings_needs_a_long_secret_key(key: str) -> None:
    with pytest.raises(ConfigError, match="SMART_APP_SECRET_KEY"):
        web_settings({"SMART_APP_SECRET_KEY": key})


def test_web_settings_needs_a_secret_key_at_all() -> None:
    with pytest.raises(ConfigError, match="at least 32"):
        web_settings({})


def test_web_settings_accepts_a_32_character_key() -> None:
    assert web_settings({"SMART_APP_SECRET_KEY": "x" * 32}).secret_key == "x" * 32


def test_web_settings_secret_key_override_is_checked_too() -> None:
    with pytest.raises(ConfigError, match="SMART_APP_SECRET_KEY"):
        web_settings({"SMART_APP_SECRET_KEY": SECRET_KEY}, secret_key="short")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("'self'", ("'self'",)),
        (
            "'self' https://ehr.example.org  https://*.epic.example",
            ("'self'", "https://ehr.example.org", "https://*.epic.example"),
        ),
        ("  https://ehr.example.org\t", ("https://ehr.example.org",)),
    ],
    ids=["self", "several", "padded"],
)
def test_frame_ancestors_split_on_whitespace(value: str, expected: tuple[str, ...]) -> None:
    assert settings_from(SMART_APP_FRAME_ANCESTORS=value).frame_ancestors == expected


@pytest.mark.parametrize(
    ("value", "mode"), [("proposal", OrderMode.PROPOSAL), ("order", OrderMode.ORDER)]
)
def test_order_mode_from_the_environment(value: str, mode: OrderMode) -> None:
    assert settings_from(SMART_APP_ORDER_MODE=value).order_mode is mode
    assert _order_mode(value) is mode


@pytest.mark.parametrize("value", ["", "active", "Order", "PROPOSAL", "plan"])
def test_order_mode_otherwise_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="SMART_APP_ORDER_MODE must be proposal or order"):
        _order_mode(value)
    with pytest.raises(ConfigError, match=re.escape(repr(value))):
        settings_from(SMART_APP_ORDER_MODE=value)


def test_session_dir_from_the_environment(tmp_path: Path) -> None:
    assert settings_from(SMART_APP_SESSION_DIR=str(tmp_path)).session_dir == tmp_path


def test_registrations_from_the_named_file(tmp_path: Path) -> None:
    path = write_file(tmp_path, PUBLIC_SERVER)
    settings = settings_from(SMART_APP_REGISTRATIONS=str(path))
    assert list(settings.registrations) == [ISS]
    assert settings.registrations[ISS].client_id == "planner"


def test_registrations_file_secrets_come_from_the_same_env(tmp_path: Path) -> None:
    text = PUBLIC_SERVER.replace(
        'client_id = "planner"',
        'client_id = "planner"\nclient_type = "confidential-secret"\n'
        'client_secret_env = "PLANNER_SECRET"',
    )
    settings = settings_from(
        SMART_APP_REGISTRATIONS=str(write_file(tmp_path, text)), PLANNER_SECRET=SECRET_VALUE
    )
    assert settings.registrations[ISS].client_secret == SECRET_VALUE


def test_a_bad_registrations_file_stops_the_settings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        settings_from(SMART_APP_REGISTRATIONS=str(tmp_path / "absent.toml"))


def test_registrations_override_skips_the_file(tmp_path: Path) -> None:
    reg = Registration(iss=ISS, name="EHR", client_type=ClientType.OPEN)
    settings = web_settings(
        {
            "SMART_APP_SECRET_KEY": SECRET_KEY,
            "SMART_APP_REGISTRATIONS": str(tmp_path / "absent.toml"),
        },
        registrations={ISS: reg},
    )
    assert settings.registrations == {ISS: reg}


def test_keyword_overrides_win_over_the_environment() -> None:
    settings = web_settings(
        {"SMART_APP_SECRET_KEY": SECRET_KEY, "SMART_APP_PUBLIC_URL": "https://a.example.org"},
        public_url="https://b.example.org/",
        order_mode=OrderMode.ORDER,
    )
    assert settings.public_url == "https://b.example.org"
    assert settings.order_mode is OrderMode.ORDER
    assert settings.secure_cookies is True


def test_web_settings_are_frozen() -> None:
    settings = settings_from()
    with pytest.raises(AttributeError):
        settings.secret_key = "x"  # type: ignore[misc]
