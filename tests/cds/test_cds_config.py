"""[[cds_client]] tables in the registrations file: parsed, checked, and in the web settings."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import RSAKey

from smart_app.config import (
    cds_clients_from,
    load_cds_clients,
    load_registrations,
    web_settings,
)
from smart_app.errors import ConfigError
from tests.builders import toml_table, write_file

ISS = "https://ehr.example.org/cds"
JWKS_URL = "https://ehr.example.org/cds/jwks.json"
FHIR = "https://ehr.example.org/fhir"
SECRET = "s" * 40
SERVER = """
[[server]]
iss = "http://127.0.0.1:8091/fhir"
client_type = "public"
client_id = "planner"
redirect_uri = "http://127.0.0.1:8092/callback"
"""
CDS_CLIENT = f"""
[[cds_client]]
name = "Example EHR"
iss = "{ISS}"
jwks_url = "{JWKS_URL}"
fhir_servers = ["{FHIR}/", "http://127.0.0.1:8091/fhir"]
"""


def table(**changes: Any) -> dict[str, Any]:
    """One valid [[cds_client]] table with changes (None removes a key)."""
    return toml_table({"iss": ISS, "name": "Example EHR", "jwks_url": JWKS_URL}, changes)


@pytest.fixture(scope="module")
def public_jwks() -> dict[str, Any]:
    """A public JWK Set."""
    key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    return {"keys": [key.as_dict(private=False)]}


def test_a_cds_client_with_a_jwks_url(tmp_path: Path) -> None:
    clients = load_cds_clients(write_file(tmp_path, SERVER + CDS_CLIENT))
    assert list(clients) == [ISS]
    client = clients[ISS]
    assert client.name == "Example EHR"
    assert client.jwks_url == JWKS_URL
    assert client.jwks is None
    assert client.fhir_servers == (FHIR, "http://127.0.0.1:8091/fhir")


def test_the_servers_of_the_same_file_still_load(tmp_path: Path) -> None:
    path = write_file(tmp_path, SERVER + CDS_CLIENT)
    assert list(load_registrations(path, env={})) == ["http://127.0.0.1:8091/fhir"]


def test_jwks_file_is_relative_to_the_toml(tmp_path: Path, public_jwks: dict[str, Any]) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "ehr.json").write_text(json.dumps(public_jwks), encoding="utf-8")
    text = CDS_CLIENT.replace(f'jwks_url = "{JWKS_URL}"', 'jwks_file = "keys/ehr.json"')
    client = load_cds_clients(write_file(tmp_path, text))[ISS]
    assert client.jwks == public_jwks
    assert client.jwks_url == ""


def test_name_defaults_to_the_iss_and_fhir_servers_to_none() -> None:
    client = cds_clients_from({"cds_client": [table(name=None)]})[ISS]
    assert client.name == ISS
    assert client.fhir_servers == ()


def test_a_file_without_cds_clients_has_none(tmp_path: Path) -> None:
    assert load_cds_clients(write_file(tmp_path, SERVER)) == {}


def test_the_example_file_registers_the_sandbox_ehr() -> None:
    example = Path(__file__).parents[2] / "examples" / "registrations.toml"
    client = load_cds_clients(example)["http://127.0.0.1:8091"]
    assert client.jwks_url == "http://127.0.0.1:8091/oauth/jwks"
    assert client.fhir_servers == ("http://127.0.0.1:8091/fhir",)
    assert "http://127.0.0.1:8091/fhir" in load_registrations(example, env={})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"colour": "blue"}, "unknown key(s) colour"),
        ({"iss": None}, "iss (the issuer of the client's JWTs) is required"),
        ({"iss": ""}, "iss (the issuer of the client's JWTs) is required"),
        ({"iss": " https://x.test"}, "iss (the issuer"),
        ({"iss": 7}, "iss must be a string"),
        ({"name": ["x"]}, "name must be a string"),
        ({"jwks_url": None}, "set exactly one of jwks_url and jwks_file"),
        ({"jwks_file": "k.json"}, "set exactly one of jwks_url and jwks_file"),
        ({"jwks_url": "http://ehr.example.org/jwks"}, "plain http is allowed on loopback only"),
        ({"jwks_url": "jwks.json"}, "jwks_url 'jwks.json' is not an absolute http(s) URL"),
        ({"fhir_servers": FHIR}, "fhir_servers must be a list of FHIR base URLs"),
        ({"fhir_servers": [FHIR, 3]}, "fhir_servers must be a list of FHIR base URLs"),
        ({"fhir_servers": ["ftp://x/fhir"]}, "fhir_servers 'ftp://x/fhir' is not an absolute"),
    ],
)
def test_a_bad_table_is_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape("here: cds_client[0]")) as caught:
        cds_clients_from({"cds_client": [table(**changes)]}, where="here")
    assert message in str(caught.value)


def test_a_client_registered_twice_is_refused() -> None:
    with pytest.raises(ConfigError, match=re.escape(f"CDS client {ISS} is registered twice")):
        cds_clients_from({"cds_client": [table(), table(name="again")]})


def test_cds_client_must_be_tables(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape("must be [[cds_client]] tables")):
        load_cds_clients(write_file(tmp_path, 'cds_client = "x"\n'))
    with pytest.raises(ConfigError, match=re.escape("cds_client[0] is not a table")):
        cds_clients_from({"cds_client": ["x"]})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the JWK Set"),
        ("{not json", "cannot read the JWK Set"),
        ('{"keys": []}', "is not a JWK Set"),
        ('[{"kty": "RSA"}]', "is not a JWK Set"),
        ('{"keys": [{"kty": "RSA", "n": "x", "e": "AQAB"}]}', "needs a kty and a kid"),
    ],
)
def test_a_bad_jwks_file_is_refused(tmp_path: Path, content: str | None, message: str) -> None:
    if content is not None:
        (tmp_path / "k.json").write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(message)):
        cds_clients_from(
            {"cds_client": [table(jwks_url=None, jwks_file="k.json")]}, folder=tmp_path
        )


def test_a_private_jwks_file_is_refused(tmp_path: Path) -> None:
    key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    private = {"keys": [key.as_dict(private=True)]}
    (tmp_path / "k.json").write_text(json.dumps(private), encoding="utf-8")
    with pytest.raises(ConfigError, match="holds a private key"):
        cds_clients_from(
            {"cds_client": [table(jwks_url=None, jwks_file="k.json")]}, folder=tmp_path
        )


def test_load_refuses_a_missing_or_bad_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_cds_clients(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_cds_clients(write_file(tmp_path, "[[cds_client]\n"))


def test_web_settings_read_cds_clients_from_the_registrations_file(tmp_path: Path) -> None:
    path = write_file(tmp_path, SERVER + CDS_CLIENT)
    env = {"SMART_APP_SECRET_KEY": SECRET, "SMART_APP_REGISTRATIONS": str(path)}
    settings = web_settings(env)
    assert list(settings.cds_clients) == [ISS]
    assert list(settings.registrations) == ["http://127.0.0.1:8091/fhir"]


def test_web_settings_without_a_registrations_file_have_no_cds_clients() -> None:
    assert web_settings({"SMART_APP_SECRET_KEY": SECRET}).cds_clients == {}


def test_a_bad_cds_client_stops_the_settings(tmp_path: Path) -> None:
    path = write_file(tmp_path, SERVER + CDS_CLIENT.replace("jwks_url", "jwks_uri"))
    env = {"SMART_APP_SECRET_KEY": SECRET, "SMART_APP_REGISTRATIONS": str(path)}
    with pytest.raises(ConfigError, match=re.escape("unknown key(s) jwks_uri")):
        web_settings(env)
