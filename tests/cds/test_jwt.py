"""The CDS client's signed JWT: who may call the CDS services, and every way a token is refused."""

from __future__ import annotations

import base64
import importlib.util
import json
import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cachelib.simple import SimpleCache
from joserfc.jwk import ECKey, OctKey
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from smart_app.cds.auth import (
    CdsUnauthorized,
    JtiStore,
    JwksCache,
    verify_client,
)
from smart_app.config import CdsClient, web_settings
from smart_app.errors import ConfigError
from tests import fhirserver
from tests.cds.signing import DEFAULT_ISS, CdsTestClient

AUD = "https://app.test/cds-services/zolgensma-patient-view"
NOW = 1_750_000_000.0
SECRET = "s" * 40


@pytest.fixture(scope="module")
def ehr() -> CdsTestClient:
    """One client key for the module (RSA generation is slow)."""
    return CdsTestClient()


@pytest.fixture
def jtis() -> JtiStore:
    """A fresh in-memory jti store."""
    return JtiStore(SimpleCache())


def verify(
    header: str | None,
    clients: dict[str, CdsClient],
    jtis: JtiStore,
    *,
    audience: str = AUD,
    now_s: float = NOW,
    cache: JwksCache | None = None,
) -> CdsClient:
    """verify_client at a fixed time."""
    return verify_client(
        header,
        audience=audience,
        clients=clients,
        jtis=jtis,
        now_s=lambda: now_s,
        jwks_cache=cache,
    )


def registered(ehr: CdsTestClient, **options: Any) -> dict[str, CdsClient]:
    """The clients mapping with this one registered."""
    return {ehr.iss: ehr.registration(**options)}


def b64(data: dict[str, Any]) -> str:
    """Base64url JSON without padding."""
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def claims(**changes: Any) -> dict[str, Any]:
    """Valid claims for AUD at NOW."""
    body = {
        "iss": DEFAULT_ISS,
        "aud": AUD,
        "iat": int(NOW),
        "exp": int(NOW) + 300,
        "jti": "j-1",
    }
    body.update(changes)
    return body


# --- accepted -------------------------------------------------------------------------------


def test_a_valid_token_names_the_registered_client(ehr: CdsTestClient, jtis: JtiStore) -> None:
    clients = registered(ehr, fhir_servers=("http://127.0.0.1:8091/fhir",))
    client = verify(ehr.authorization(aud=AUD, now_s=NOW), clients, jtis)
    assert client is clients[ehr.iss]
    assert client.fhir_servers == ("http://127.0.0.1:8091/fhir",)


def test_aud_may_be_a_list(ehr: CdsTestClient, jtis: JtiStore) -> None:
    token = ehr.token(aud="x", now_s=NOW, claims={"aud": ["https://other.test", AUD]})
    assert verify(f"Bearer {token}", registered(ehr), jtis).iss == ehr.iss


def test_es384_is_accepted(jtis: JtiStore) -> None:
    key = ECKey.generate_key("P-384", parameters={"kid": "ec-1"})
    client = CdsClient(
        iss="https://ec.test", name="EC", jwks={"keys": [key.as_dict(private=False)]}
    )
    token = CdsTestClient(iss="https://ec.test", kid="ec-1").token(
        aud=AUD, now_s=NOW, alg="ES384", key=key
    )
    assert verify(f"Bearer {token}", {client.iss: client}, jtis) is client


def test_within_the_leeway_exp_and_iat_are_accepted(ehr: CdsTestClient, jtis: JtiStore) -> None:
    late = ehr.authorization(aud=AUD, iat_s=NOW - 400, exp_s=NOW - 30)
    early = ehr.authorization(aud=AUD, iat_s=NOW + 30, exp_s=NOW + 300)
    assert verify(late, registered(ehr), jtis).iss == ehr.iss
    assert verify(early, registered(ehr), jtis).iss == ehr.iss


# --- refused --------------------------------------------------------------------------------


def refused(header: str | None, clients: dict[str, CdsClient], jtis: JtiStore, **kw: Any) -> str:
    """The reason verify_client gives for refusing (it must refuse)."""
    with pytest.raises(CdsUnauthorized) as caught:
        verify(header, clients, jtis, **kw)
    return str(caught.value)


def test_an_expired_token_is_refused(ehr: CdsTestClient, jtis: JtiStore) -> None:
    header = ehr.authorization(aud=AUD, iat_s=NOW - 600, exp_s=NOW - 61)
    assert "expired" in refused(header, registered(ehr), jtis)


def test_a_token_without_exp_is_refused(ehr: CdsTestClient, jtis: JtiStore) -> None:
    token = ehr.token(aud=AUD, now_s=NOW, claims={"exp": None})
    assert "exp" in refused(f"Bearer {token}", registered(ehr), jtis)


def test_a_token_valid_for_hours_is_refused(ehr: CdsTestClient, jtis: JtiStore) -> None:
    header = ehr.authorization(aud=AUD, iat_s=NOW, exp_s=NOW + 7200)
    assert "too far" in refused(header, registered(ehr), jtis)


def test_a_token_issued_in_the_future_is_refused(ehr: CdsTestClient, jtis: JtiStore) -> None:
    header = ehr.authorization(aud=AUD, iat_s=NOW + 120, exp_s=NOW + 300)
    assert "iat is in the future" in refused(header, registered(ehr), jtis)


def test_a_token_without_iat_is_refused(ehr: CdsTestClient, jtis: JtiStore) -> None:
    token = ehr.token(aud=AUD, now_s=NOW, claims={"iat": "yesterday"})
    assert "iat" in refused(f"Bearer {token}", registered(ehr), jtis)


@pytest.mark.parametrize(
    "aud",
    [
        "https://app.test/cds-services/zolgensma-order-sign",
        "https://app.test/cds-services",
        AUD + "/",
    ],
)
def test_a_token_for_another_audience_is_refused(
    ehr: CdsTestClient, jtis: JtiStore, aud: str
) -> None:
    assert "aud" in refused(ehr.authorization(aud=aud, now_s=NOW), registered(ehr), jtis)


def test_a_token_without_aud_is_refused(ehr: CdsTestClient, jtis: JtiStore) -> None:
    token = ehr.token(aud=AUD, now_s=NOW, claims={"aud": None})
    assert "aud" in refused(f"Bearer {token}", registered(ehr), jtis)


def test_an_unknown_issuer_is_refused(ehr: CdsTestClient, jtis: JtiStore) -> None:
    header = ehr.authorization(aud=AUD, now_s=NOW, iss="https://stranger.test")
    assert "not a registered CDS client" in refused(header, registered(ehr), jtis)


def test_no_registered_clients_refuses_everyone(ehr: CdsTestClient, jtis: JtiStore) -> None:
    assert "not a registered" in refused(ehr.authorization(aud=AUD, now_s=NOW), {}, jtis)


def test_a_replayed_jti_is_refused(ehr: CdsTestClient, jtis: JtiStore) -> None:
    header = ehr.authorization(aud=AUD, now_s=NOW)
    verify(header, registered(ehr), jtis)
    assert "replay" in refused(header, registered(ehr), jtis, now_s=NOW + 10)


def test_the_same_jti_in_a_new_token_is_refused(ehr: CdsTestClient, jtis: JtiStore) -> None:
    verify(ehr.authorization(aud=AUD, now_s=NOW, jti="same"), registered(ehr), jtis)
    again = ehr.authorization(aud=AUD, now_s=NOW + 5, jti="same")
    assert "replay" in refused(again, registered(ehr), jtis, now_s=NOW + 5)


def test_a_refused_token_does_not_use_up_its_jti(ehr: CdsTestClient, jtis: JtiStore) -> None:
    wrong = ehr.authorization(aud="https://elsewhere.test", now_s=NOW, jti="kept")
    refused(wrong, registered(ehr), jtis)
    verify(ehr.authorization(aud=AUD, now_s=NOW, jti="kept"), registered(ehr), jtis)


def test_a_token_without_jti_is_refused(ehr: CdsTestClient, jtis: JtiStore) -> None:
    token = ehr.token(aud=AUD, now_s=NOW, claims={"jti": ""})
    assert "jti" in refused(f"Bearer {token}", registered(ehr), jtis)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "no Authorization header"),
        ("", "no Authorization header"),
        ("Basic dXNlcjpwYXNz", "not a Bearer token"),
        ("Bearer", "not a Bearer token"),
        ("Bearer not-a-jwt", "not a signed JWT"),
        ("Bearer a.b.c", "not a signed JWT"),
        ("Bearer " + "a" * 20_000, "too long"),
    ],
)
def test_a_missing_or_malformed_authorization_is_refused(
    ehr: CdsTestClient, jtis: JtiStore, header: str | None, reason: str
) -> None:
    assert reason in refused(header, registered(ehr), jtis)


def test_an_unsigned_token_is_refused(ehr: CdsTestClient, jtis: JtiStore) -> None:
    head = {"alg": "none", "typ": "JWT", "kid": ehr.kid}
    unsigned = f"{b64(head)}.{b64(claims())}."
    assert "alg must be one of" in refused(f"Bearer {unsigned}", registered(ehr), jtis)


def test_a_token_with_its_signature_removed_is_refused(ehr: CdsTestClient, jtis: JtiStore) -> None:
    token = ehr.token(aud=AUD, now_s=NOW)
    stripped = token.rsplit(".", 1)[0] + "."
    assert "signature" in refused(f"Bearer {stripped}", registered(ehr), jtis)


def test_a_token_with_edited_claims_is_refused(ehr: CdsTestClient, jtis: JtiStore) -> None:
    head, _, signature = ehr.token(aud="https://elsewhere.test", now_s=NOW).split(".")
    forged = f"{head}.{b64(claims())}.{signature}"
    assert "signature" in refused(f"Bearer {forged}", registered(ehr), jtis)


def test_an_hmac_token_keyed_with_the_public_key_is_refused(
    ehr: CdsTestClient, jtis: JtiStore
) -> None:
    secret = OctKey.import_key(json.dumps(ehr.jwks["keys"][0]).encode(), {"kid": ehr.kid})
    token = ehr.token(aud=AUD, now_s=NOW, alg="HS256", key=secret)
    assert "alg must be one of" in refused(f"Bearer {token}", registered(ehr), jtis)


def test_a_token_signed_by_another_key_with_the_same_kid_is_refused(
    ehr: CdsTestClient, jtis: JtiStore
) -> None:
    impostor = CdsTestClient(iss=ehr.iss, kid=ehr.kid)
    header = impostor.authorization(aud=AUD, now_s=NOW)
    assert "signature is not valid" in refused(header, registered(ehr), jtis)


def test_an_unknown_kid_is_refused(ehr: CdsTestClient, jtis: JtiStore) -> None:
    header = ehr.authorization(aud=AUD, now_s=NOW, kid="other-kid")
    assert "no key with the JWT's kid" in refused(header, registered(ehr), jtis)


def test_a_token_without_kid_is_refused(ehr: CdsTestClient, jtis: JtiStore) -> None:
    token = ehr.token(aud=AUD, now_s=NOW, header={"kid": None})
    assert "no kid" in refused(f"Bearer {token}", registered(ehr), jtis)


def test_a_jku_other_than_the_registered_one_is_refused(ehr: CdsTestClient, jtis: JtiStore) -> None:
    clients = {ehr.iss: ehr.registration(jwks_url="https://ehr.test/jwks")}
    token = ehr.token(aud=AUD, now_s=NOW, header={"jku": "https://attacker.test/jwks"})
    assert "jku" in refused(f"Bearer {token}", clients, jtis)


def test_a_jku_with_inline_registered_keys_is_refused(ehr: CdsTestClient, jtis: JtiStore) -> None:
    token = ehr.token(aud=AUD, now_s=NOW, header={"jku": "https://attacker.test/jwks"})
    assert "jku" in refused(f"Bearer {token}", registered(ehr), jtis)


def test_a_client_without_keys_is_refused(ehr: CdsTestClient, jtis: JtiStore) -> None:
    clients = {ehr.iss: CdsClient(iss=ehr.iss, name="no keys")}
    header = ehr.authorization(aud=AUD, now_s=NOW)
    assert "no registered keys" in refused(header, clients, jtis)


def test_reasons_never_carry_the_token(ehr: CdsTestClient, jtis: JtiStore) -> None:
    token = ehr.token(aud="https://elsewhere.test", now_s=NOW)
    reason = refused(f"Bearer {token}", registered(ehr), jtis)
    assert token not in reason
    assert token.split(".")[1] not in reason


# --- keys from a jwks_url served by a real local HTTP server ---------------------------------


class JwksServer:
    """A client's JWK Set served on 127.0.0.1, counting requests; `clients`: the client
    registered by this jwks_url."""

    def __init__(self, ehr: CdsTestClient) -> None:
        self.jwks = ehr.jwks
        self.requests = 0
        self.status = 200
        self.server = make_server("127.0.0.1", 0, self.app)
        self.url = f"http://127.0.0.1:{self.server.server_port}/oauth/jwks"
        self.clients = registered(ehr, jwks_url=self.url)

    @Request.application
    def app(self, request: Request) -> Response:
        """Serve the JWK Set at /oauth/jwks."""
        self.requests += 1
        if request.path != "/oauth/jwks":
            return Response("not found", status=404)
        return Response(json.dumps(self.jwks), status=self.status, mimetype="application/json")


@pytest.fixture
def served(ehr: CdsTestClient) -> Iterator[JwksServer]:
    """The client's JWK Set on a local HTTP server."""
    server = JwksServer(ehr)
    with fhirserver.serving(server.server):
        yield server


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def ticking_cache(**options: Any) -> tuple[JwksCache, Ticks]:
    """A JWKS cache on a clock the test moves (from 0 s), and that clock."""
    ticks = Ticks()
    return JwksCache(http=requests.Session(), monotonic_s=ticks, **options), ticks


def test_keys_are_fetched_from_the_jwks_url_and_cached(
    ehr: CdsTestClient, jtis: JtiStore, served: JwksServer
) -> None:
    cache, ticks = ticking_cache(ttl_s=600)
    for _ in range(3):
        verify(ehr.authorization(aud=AUD, now_s=NOW), served.clients, jtis, cache=cache)
    assert served.requests == 1
    ticks.now_s = 601
    verify(ehr.authorization(aud=AUD, now_s=NOW), served.clients, jtis, cache=cache)
    assert served.requests == 2


def test_the_registered_jku_is_accepted(
    ehr: CdsTestClient, jtis: JtiStore, served: JwksServer
) -> None:
    token = ehr.token(aud=AUD, now_s=NOW, header={"jku": served.url})
    cache = JwksCache(http=requests.Session())
    assert verify(f"Bearer {token}", served.clients, jtis, cache=cache).iss == ehr.iss


def test_a_new_kid_fetches_again_but_not_on_every_request(
    ehr: CdsTestClient, jtis: JtiStore, served: JwksServer
) -> None:
    cache, ticks = ticking_cache(min_refetch_s=60)
    verify(ehr.authorization(aud=AUD, now_s=NOW), served.clients, jtis, cache=cache)
    rotated = CdsTestClient(iss=ehr.iss, kid="rotated")
    served.jwks = {"keys": ehr.jwks["keys"] + rotated.jwks["keys"]}
    header = rotated.authorization(aud=AUD, now_s=NOW)
    refused(header, served.clients, jtis, cache=cache)  # fetched 1 s ago: not again yet
    assert served.requests == 1
    ticks.now_s = 61
    assert verify(header, served.clients, jtis, cache=cache).iss == ehr.iss
    assert served.requests == 2
    refused(ehr.authorization(aud=AUD, now_s=NOW, kid="unknown"), served.clients, jtis, cache=cache)
    assert served.requests == 2


def test_an_unreachable_jwks_url_is_refused(
    ehr: CdsTestClient, jtis: JtiStore, served: JwksServer
) -> None:
    served.status = 500
    cache = JwksCache(http=requests.Session(), timeout_s=2)
    header = ehr.authorization(aud=AUD, now_s=NOW)
    assert "could not be fetched" in refused(header, served.clients, jtis, cache=cache)


def test_a_jwks_url_answering_something_else_is_refused(
    ehr: CdsTestClient, jtis: JtiStore, served: JwksServer
) -> None:
    served.jwks = {"not": "a key set"}
    header = ehr.authorization(aud=AUD, now_s=NOW)
    reason = refused(header, served.clients, jtis, cache=JwksCache(http=requests.Session()))
    assert "not a JWK Set" in reason


# --- the jti store --------------------------------------------------------------------------


def test_the_jti_store_refuses_a_second_use_per_issuer() -> None:
    store = JtiStore(SimpleCache())
    assert store.first_use(iss="a", jti="1", expires_at_s=NOW + 300, now_s=NOW)
    assert not store.first_use(iss="a", jti="1", expires_at_s=NOW + 300, now_s=NOW)
    assert store.first_use(iss="b", jti="1", expires_at_s=NOW + 300, now_s=NOW)


def test_the_jti_store_keeps_a_jti_until_the_token_expires_plus_leeway() -> None:
    cache = SimpleCache()
    JtiStore(cache).first_use(iss="a", jti="1", expires_at_s=NOW + 300, now_s=NOW)
    ((expires_at, _),) = cache._cache.values()
    assert 300 + 60 <= expires_at - time.time() <= 300 + 60 + 5


def test_the_file_jti_store_is_shared_between_instances(tmp_path: Path) -> None:
    settings = web_settings({}, secret_key=SECRET, session_dir=tmp_path / "sessions")
    first, second = JtiStore.for_settings(settings), JtiStore.for_settings(settings)
    assert first.first_use(iss="a", jti="1", expires_at_s=NOW + 300, now_s=NOW)
    assert not second.first_use(iss="a", jti="1", expires_at_s=NOW + 300, now_s=NOW)
    folder = tmp_path / "sessions" / "cds-jti"
    entries = [p for p in folder.iterdir() if not p.name.endswith(".__wz_cache")]
    assert len(entries) == 2  # the jti and cachelib's file count
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in entries)
    assert [p.name for p in tmp_path.joinpath("sessions").iterdir()] == ["cds-jti"]


def test_the_file_jti_store_is_atomic_across_processes(tmp_path: Path) -> None:
    settings = web_settings({}, secret_key=SECRET, session_dir=tmp_path / "sessions")
    JtiStore.for_settings(settings)
    context = multiprocessing.get_context("fork")
    claims = [(settings.session_dir, f"jti-{n}") for n in range(30) for _ in range(4)]
    with context.Pool(4) as pool:
        firsts = pool.map(_claim, claims, chunksize=1)
    winners = [jti for (_, jti), first in zip(claims, firsts, strict=True) if first]
    assert sorted(winners) == sorted(f"jti-{n}" for n in range(30))


def _claim(args: tuple[Path, str]) -> bool:
    """In a child process: claim a jti in the file store."""
    session_dir, jti = args
    settings = web_settings({}, secret_key=SECRET, session_dir=session_dir)
    store = JtiStore.for_settings(settings)
    return store.first_use(iss="a", jti=jti, expires_at_s=NOW + 300, now_s=NOW)


@pytest.mark.skipif(importlib.util.find_spec("redis") is not None, reason="redis is installed")
def test_a_redis_jti_store_without_the_redis_package_is_a_config_error(tmp_path: Path) -> None:
    settings = web_settings(
        {}, secret_key=SECRET, session_dir=tmp_path, session_redis_url="redis://127.0.0.1:1/0"
    )
    with pytest.raises(ConfigError, match="pip install redis"):
        JtiStore.for_settings(settings)
