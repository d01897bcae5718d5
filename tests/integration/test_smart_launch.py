"""SMART App Launch end to end: the sandbox EHR (launcher, authorization server, FHIR gateway)
in front of the real FHIR server, and the app, all on loopback (the `smart_sandbox` fixture).

A `requests.Session` plays the browser: it holds the EHR's cookie and the app's cookie (their
names differ; cookies ignore ports). The app's server-side session store is read (and, for the
refresh tests, edited) through cachelib, exactly as Flask-Session keeps it.
"""

from __future__ import annotations

import copy
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import pytest
import requests
from cachelib.file import FileSystemCache

from smart_app.fhir import codes
from smart_app.sandbox import run
from tests.smartsandbox import Hop, field, follow, query

pytestmark = pytest.mark.integration

APP_COOKIE = "zolgensma_smart_session"
SESSION_PREFIX = "session:"
PRACTITIONER = f"Practitioner/{run.PRACTITIONER_ID}"

READ_PATIENT = "zs-eligible-4-2kg"
"""Only read in this module (other tests may write to it: nothing here depends on its plans)."""
STANDALONE_PATIENT = "zs-eligible-gap-6030g"
"""Picked in the standalone patient picker; only read."""
LOG_WRITE_PATIENT = "zs-eligible-band-edge-5-0kg"
"""Written once, by the token-leak test."""
WRITE_PATIENT = "zs-eligible-10-8kg-14mo"
"""Written once, by the write-through-the-gateway test."""
OTHER_PATIENT = "zs-weight-missing"
"""Never launched here: the target of writes that must be refused."""

Browsers = Callable[[], requests.Session]


# --- the browser, the app's session store, the launch driver ------------------------------------


@pytest.fixture
def browsers() -> Iterator[Browsers]:
    """A factory of fresh browsers, each recording every response it receives; closed after."""
    opened: list[requests.Session] = []

    def new() -> requests.Session:
        browser = requests.Session()
        seen: list[requests.Response] = []
        browser.seen = seen  # type: ignore[attr-defined]
        browser.hooks["response"].append(lambda r, *_, **__: seen.append(r))
        opened.append(browser)
        return browser

    yield new
    for browser in opened:
        browser.close()


@pytest.fixture
def browser(browsers: Browsers) -> requests.Session:
    """One browser."""
    return browsers()


class SessionStore:
    """The app's Flask-Session store (cachelib FileSystemCache under <work_dir>/sessions)."""

    def __init__(self, directories: list[Path]) -> None:
        """Caches over every candidate sessions directory (normally exactly one)."""
        assert directories, "no sessions directory of the sandbox under the pytest base temp"
        self.caches = [
            FileSystemCache(str(d), threshold=2000, mode=0o600, default_timeout=0)
            for d in directories
        ]

    @staticmethod
    def sid(browser: requests.Session) -> str:
        """The app's session id: the value of its cookie in this browser."""
        value = browser.cookies.get(APP_COOKIE)
        assert value, "the browser holds no app session cookie"
        return value

    def _find(self, sid: str) -> tuple[FileSystemCache, dict[str, Any]]:
        for cache in self.caches:
            data = cache.get(SESSION_PREFIX + sid)
            if isinstance(data, dict):
                return cache, data
        raise AssertionError(f"no server-side session for id {sid[:6]}...")

    def data(self, browser: requests.Session) -> dict[str, Any]:
        """The server-side session of this browser."""
        return self._find(self.sid(browser))[1]

    def put(self, browser: requests.Session, name: str, value: Any) -> None:
        """Set one value of this browser's server-side session (between requests)."""
        sid = self.sid(browser)
        cache, data = self._find(sid)
        assert cache.set(SESSION_PREFIX + sid, {**data, name: value}, timeout=8 * 3600)

    def holds(self, sid: str) -> bool:
        """Whether a server-side session is stored under this id."""
        return any(isinstance(c.get(SESSION_PREFIX + sid), dict) for c in self.caches)

    def contexts(self, browser: requests.Session) -> dict[str, dict[str, Any]]:
        """The launch contexts open in this browser's session."""
        return dict(self.data(browser).get("contexts") or {})

    def context(self, browser: requests.Session, context_id: str) -> dict[str, Any]:
        """One launch context."""
        contexts = self.contexts(browser)
        assert context_id in contexts, "the launch context is not in the session"
        return contexts[context_id]

    def change_context(self, browser: requests.Session, context_id: str, **changes: Any) -> None:
        """Rewrite fields of a stored launch context (between requests, as the app would)."""
        sid = self.sid(browser)
        cache, data = self._find(sid)
        assert context_id in data["contexts"]
        data["contexts"][context_id] = {**data["contexts"][context_id], **changes}
        assert cache.set(SESSION_PREFIX + sid, data, timeout=8 * 3600)


@pytest.fixture
def store(smart_sandbox: run.Sandbox, tmp_path_factory: pytest.TempPathFactory) -> SessionStore:
    """The app's session store of the shared sandbox."""
    base = tmp_path_factory.getbasetemp()
    return SessionStore(sorted(p for p in base.glob("sandbox*/sessions") if p.is_dir()))


@dataclass
class Chart:
    """The EHR's chart page after pressing Launch: the iframe's and the new tab's app URLs."""

    frame_src: str
    tab_src: str


def open_chart(
    browser: requests.Session, ehr_base: str, patient_id: str, *, read_only: bool = False
) -> Chart:
    """Press Launch for a patient on the sandbox's launcher (with the launcher's "read only"
    access chosen, or not); read the chart's two launch URLs."""
    params = {"access": "read-only"} if read_only else {}
    launcher = browser.get(f"{ehr_base}/", params=params, timeout=30)
    assert launcher.status_code == 200
    form = {
        "csrf_token": field(launcher.text, "csrf_token"),
        "client_id": field(launcher.text, "client_id"),
        "patient_id": patient_id,
    }
    if read_only:
        form["access"] = field(launcher.text.split("<table", 1)[1], "access")
    chart = browser.post(f"{ehr_base}/launch", data=form, timeout=30)
    assert chart.status_code == 200, chart.text
    frame = re.search(r'<iframe[^>]* src="([^"]+)"', chart.text)
    tab = re.search(r'<a href="([^"]+)" target="_blank"', chart.text)
    assert frame and tab, chart.text
    return Chart(unescape(frame.group(1)), unescape(tab.group(1)))


@dataclass
class Launched:
    """A finished launch: every hop, the plan page and its launch context id."""

    hops: list[Hop]
    page: str
    plan_url: str
    context_id: str


def plan_context_id(url: str, app_base: str) -> str:
    """The context id of a plan page URL."""
    match = re.fullmatch(rf"{re.escape(app_base)}/p/([A-Za-z0-9_-]+)/", url)
    assert match, url
    return match.group(1)


def finish(browser: requests.Session, url: str, app_base: str) -> Launched:
    """Follow a launch URL (or a callback URL) to the plan page, which must load."""
    hops = follow(browser, url)
    assert hops[-1].status == 200, (hops, browser.last_page)  # type: ignore[attr-defined]
    plan_url = hops[-1].url
    return Launched(hops, browser.last_page, plan_url, plan_context_id(plan_url, app_base))  # type: ignore[attr-defined]


def ehr_launch(
    browser: requests.Session,
    sandbox: run.Sandbox,
    patient_id: str,
    *,
    tab: bool = False,
    read_only: bool = False,
) -> Launched:
    """Launch the app from a patient's chart: in the iframe, or in a new tab."""
    chart = open_chart(browser, sandbox.ehr_base, patient_id, read_only=read_only)
    return finish(browser, chart.tab_src if tab else chart.frame_src, sandbox.app_base)


def callback_url(browser: requests.Session, sandbox: run.Sandbox, patient_id: str) -> str:
    """Launch from the chart up to (not into) the app's /callback; return that URL."""
    chart = open_chart(browser, sandbox.ehr_base, patient_id)
    hops = follow(browser, chart.frame_src, stop_at=f"{sandbox.app_base}/callback")
    assert hops[-1].status == 0, hops
    return hops[-1].url


def with_query(url: str, **changes: str | None) -> str:
    """A URL with query parameters replaced (or removed when None)."""
    parts = urlsplit(url)
    params = {**query(url), **changes}
    return urlunsplit(
        parts._replace(query=urlencode({k: v for k, v in params.items() if v is not None}))
    )


def alert(page: str) -> str:
    """The text of a page's alert section."""
    match = re.search(r'role="alert">(.*?)</section>', page, re.DOTALL)
    assert match, page
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", match.group(1))).strip()


def has_banner(page: str) -> bool:
    """Whether the app's patient banner is on the page."""
    return 'class="banner" aria-label="Patient"' in page


def patient_name(sandbox: run.Sandbox, patient_id: str) -> str:
    """The synthetic patient's display name."""
    return next(p.name for p in sandbox.patients if p.patient_id == patient_id)


def write_form(page: str) -> dict[str, Any]:
    """The plan page's write form, every needs-review finding acknowledged."""
    return {
        "csrf_token": field(page, "csrf_token"),
        "fingerprint": field(page, "fingerprint"),
        "infusion_date": field(page, "infusion_date"),
        "acknowledge": re.findall(r'name="acknowledge" value="([^"]+)"', page),
    }


def picker_form(page: str) -> dict[str, list[str]]:
    """The hidden fields of the EHR's patient picker (the authorization request and CSRF)."""
    form: dict[str, list[str]] = {}
    for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page):
        form.setdefault(unescape(name), []).append(unescape(value))
    assert "csrf_token" in form and "state" in form, page
    return form


def scope_set(scope: str) -> set[str]:
    """A space-separated scope string as a set."""
    return set(scope.split())


def grants_write(scopes: set[str], resource_type: str) -> bool:
    """Whether a patient-level scope lets the app create `resource_type` (SMART v1 or v2)."""
    for scope in scopes:
        kind, _, actions = scope.partition(".")
        if kind == f"patient/{resource_type}" and (actions in ("write", "*") or "c" in actions):
            return True
    return False


def bearer(token: str) -> dict[str, str]:
    """FHIR JSON headers with a bearer token."""
    return {
        "Authorization": f"Bearer {token}",
        "Accept": "application/fhir+json",
        "Content-Type": "application/fhir+json",
    }


def upstream_search(sandbox: run.Sandbox, path: str) -> list[dict[str, Any]]:
    """Search the real FHIR server directly (no gateway, no token)."""
    answer = requests.get(
        f"{sandbox.fhir_upstream}/{path}", headers={"Accept": "application/fhir+json"}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    return [e["resource"] for e in answer.json().get("entry") or []]


# --- 1. the full EHR launch ---------------------------------------------------------------------


def test_ehr_launch_in_the_iframe_goes_through_authorize_and_callback_to_the_plan(
    smart_sandbox: run.Sandbox, browser: requests.Session, store: SessionStore
) -> None:
    sandbox = smart_sandbox
    chart = open_chart(browser, sandbox.ehr_base, READ_PATIENT)
    launch_id = query(chart.frame_src)["launch"]
    assert query(chart.frame_src)["iss"] == sandbox.iss
    launched = finish(browser, chart.frame_src, sandbox.app_base)
    hops = launched.hops
    assert len(hops) == 4, hops

    assert hops[0].url == chart.frame_src
    assert hops[0].status == 302
    assert hops[0].location and hops[0].location.startswith(f"{sandbox.ehr_base}/oauth/authorize?")
    asked = query(hops[0].location)
    assert asked["response_type"] == "code"
    assert asked["client_id"] == run.CLIENT_ID
    assert asked["redirect_uri"] == f"{sandbox.app_base}/callback"
    assert asked["code_challenge_method"] == "S256"
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", asked["code_challenge"])  # base64url(SHA-256)
    assert len(asked["state"]) >= 32
    assert asked.get("nonce")
    assert asked["aud"] == sandbox.iss
    assert asked["launch"] == launch_id
    assert asked["scope"].startswith("launch openid fhirUser ")
    scopes = scope_set(asked["scope"])
    assert {"launch", "openid", "fhirUser"} <= scopes
    assert "launch/patient" not in scopes  # the EHR gives the patient: no picker
    assert grants_write(scopes, "MedicationRequest")
    assert grants_write(scopes, "CarePlan")

    assert hops[1].url == hops[0].location
    assert hops[1].status == 302
    assert hops[1].location and hops[1].location.startswith(f"{sandbox.app_base}/callback?")
    answered = query(hops[1].location)
    assert answered["state"] == asked["state"]
    assert answered.get("code")
    assert "error" not in answered

    assert hops[2].status == 303
    assert hops[3].status == 200
    assert hops[3].url == urljoin(hops[2].url, hops[2].location or "")

    page = launched.page
    assert patient_name(sandbox, READ_PATIENT) in page
    assert "Eligibility on" in page
    assert not has_banner(page), "the EHR shows its own banner around the iframe"
    assert 'aria-label="Patient"' not in page
    # fhirUser from the verified id_token
    assert f"signed in as {PRACTITIONER}" in page  # the user by reference, not as a URL
    assert f"{sandbox.iss}/{PRACTITIONER}" not in page

    context = store.context(browser, launched.context_id)
    assert context["patient"] == READ_PATIENT
    assert context["iss"] == sandbox.iss
    assert context["need_patient_banner"] is False
    assert context["fhir_user"] == f"{sandbox.iss}/{PRACTITIONER}"
    assert context["access_token"] and context["refresh_token"]
    assert context["expires_at"] > time.time()


def test_ehr_launch_in_a_new_tab_shows_the_patient_banner(
    smart_sandbox: run.Sandbox, browser: requests.Session, store: SessionStore
) -> None:
    launched = ehr_launch(browser, smart_sandbox, READ_PATIENT, tab=True)
    assert has_banner(launched.page)
    banner = launched.page.split('aria-label="Patient"', 1)[1].split("</section>", 1)[0]
    assert patient_name(smart_sandbox, READ_PATIENT) in banner
    assert READ_PATIENT in banner
    assert store.context(browser, launched.context_id)["need_patient_banner"] is True


def test_a_launch_id_is_single_use(smart_sandbox: run.Sandbox, browser: requests.Session) -> None:
    chart = open_chart(browser, smart_sandbox.ehr_base, READ_PATIENT)
    finish(browser, chart.frame_src, smart_sandbox.app_base)
    again = follow(browser, chart.frame_src)
    assert again[-1].status == 400, again
    assert not any(h.location and "/p/" in h.location for h in again)


# --- 2. state ----------------------------------------------------------------------------------


def test_callback_without_state_is_refused(
    smart_sandbox: run.Sandbox, browser: requests.Session
) -> None:
    url = callback_url(browser, smart_sandbox, READ_PATIENT)
    answer = browser.get(with_query(url, state=None), allow_redirects=False, timeout=30)
    assert answer.status_code == 400
    assert "no state" in answer.text
    assert "Location" not in answer.headers


def test_callback_with_a_state_never_issued_is_refused(
    smart_sandbox: run.Sandbox, browser: requests.Session, store: SessionStore
) -> None:
    url = callback_url(browser, smart_sandbox, READ_PATIENT)
    forged = with_query(url, state=secrets.token_urlsafe(32))
    answer = browser.get(forged, allow_redirects=False, timeout=30)
    assert answer.status_code == 400
    assert "unknown" in answer.text
    assert "Location" not in answer.headers
    assert store.contexts(browser) == {}


def test_the_genuine_callback_works_once_and_a_replay_is_refused(
    smart_sandbox: run.Sandbox, browser: requests.Session, store: SessionStore
) -> None:
    url = callback_url(browser, smart_sandbox, READ_PATIENT)
    first = browser.get(url, allow_redirects=False, timeout=30)
    assert first.status_code == 303, first.text
    assert len(store.contexts(browser)) == 1
    replay = browser.get(url, allow_redirects=False, timeout=30)
    assert replay.status_code == 400
    assert "already used" in replay.text
    assert "Location" not in replay.headers
    assert len(store.contexts(browser)) == 1


def test_state_is_bound_to_the_browser_session_that_started_the_launch(
    smart_sandbox: run.Sandbox, browsers: Browsers, store: SessionStore
) -> None:
    victim, attacker = browsers(), browsers()
    url = callback_url(victim, smart_sandbox, READ_PATIENT)
    stolen = attacker.get(url, allow_redirects=False, timeout=30)
    assert stolen.status_code == 400
    assert "unknown" in stolen.text
    assert "Location" not in stolen.headers
    assert store.contexts(attacker) == {}
    # the attempt spent neither the state nor the code: the launching browser still finishes
    finish(victim, url, smart_sandbox.app_base)


def test_a_session_cookie_planted_before_the_launch_reaches_nothing_after_it(
    smart_sandbox: run.Sandbox, browsers: Browsers, store: SessionStore
) -> None:
    """Session fixation: an attacker gets a session id from the app (a launch it never
    finishes) and plants it in the victim's browser; the victim launches from the EHR. The
    callback gives the victim a new session id and deletes the old one: the planted cookie
    reaches neither the victim's launch context nor its CSRF token; the victim's flow works."""
    sandbox = smart_sandbox
    attacker, victim = browsers(), browsers()
    bogus = f"{sandbox.app_base}/launch?" + urlencode({"iss": sandbox.iss, "launch": "bogus"})
    assert attacker.get(bogus, allow_redirects=False, timeout=30).status_code == 302
    planted = store.sid(attacker)
    known_csrf = secrets.token_urlsafe(32)  # as if a form had shown it to the attacker
    store.put(attacker, "csrf", known_csrf)
    assert store.holds(planted) and store.data(attacker)["pending"]
    for cookie in list(attacker.cookies):
        if cookie.name == APP_COOKIE:
            victim.cookies.set_cookie(copy.copy(cookie))
    assert store.sid(victim) == planted

    launched = ehr_launch(victim, sandbox, READ_PATIENT)
    assert patient_name(sandbox, READ_PATIENT) in launched.page
    assert store.sid(victim) != planted
    assert not store.holds(planted)
    assert store.context(victim, launched.context_id)["patient"] == READ_PATIENT
    assert field(launched.page, "csrf_token") != known_csrf

    stolen = attacker.get(launched.plan_url, timeout=30)
    assert stolen.status_code == 401
    assert patient_name(sandbox, READ_PATIENT) not in stolen.text
    assert "Eligibility on" not in stolen.text
    assert not store.holds(planted)  # the attacker's request did not bring it back
    # the victim goes on: the page reloads and a second launch keeps the first one open
    assert victim.get(launched.plan_url, timeout=30).status_code == 200
    second = ehr_launch(victim, sandbox, READ_PATIENT, tab=True)
    assert {launched.context_id, second.context_id} <= set(store.contexts(victim))
    assert victim.get(launched.plan_url, timeout=30).status_code == 200


# --- 3. errors from the EHR --------------------------------------------------------------------


def test_an_error_answer_from_the_ehr_is_shown_and_opens_nothing(
    smart_sandbox: run.Sandbox, browser: requests.Session, store: SessionStore
) -> None:
    url = callback_url(browser, smart_sandbox, READ_PATIENT)
    state = query(url)["state"]
    error_url = f"{smart_sandbox.app_base}/callback?" + urlencode(
        {"error": "access_denied", "state": state}
    )
    answer = browser.get(error_url, allow_redirects=False, timeout=30)
    assert answer.status_code == 400
    assert "access_denied" in answer.text
    assert "Location" not in answer.headers
    assert store.contexts(browser) == {}


def test_cancel_in_the_patient_picker_comes_back_as_access_denied(
    smart_sandbox: run.Sandbox, browser: requests.Session, store: SessionStore
) -> None:
    sandbox = smart_sandbox
    hops = follow(browser, f"{sandbox.app_base}/launch?" + urlencode({"iss": sandbox.iss}))
    assert hops[-1].status == 200 and hops[-1].url.startswith(f"{sandbox.ehr_base}/oauth/authorize")
    form = picker_form(browser.last_page)  # type: ignore[attr-defined]
    denied = browser.post(
        f"{sandbox.ehr_base}/oauth/authorize",
        data={**form, "decision": "deny"},
        allow_redirects=False,
        timeout=30,
    )
    assert denied.status_code == 302
    location = denied.headers["Location"]
    assert location.startswith(f"{sandbox.app_base}/callback?")
    assert query(location)["error"] == "access_denied"
    assert query(location)["state"] == form["state"][0]
    answer = browser.get(location, allow_redirects=False, timeout=30)
    assert answer.status_code == 400
    assert "access_denied" in answer.text
    assert store.contexts(browser) == {}


# --- 4. tokens stay on the server --------------------------------------------------------------


def test_tokens_never_reach_urls_cookies_pages_or_logs(
    smart_sandbox: run.Sandbox,
    browser: requests.Session,
    store: SessionStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    sandbox = smart_sandbox
    launched = ehr_launch(browser, sandbox, LOG_WRITE_PATIENT)
    reload = browser.get(launched.plan_url, timeout=30)
    assert reload.status_code == 200
    written = browser.post(f"{launched.plan_url}write", data=write_form(reload.text), timeout=60)
    assert written.status_code == 200, written.text
    assert "Plan written to the chart" in written.text

    context = store.context(browser, launched.context_id)
    secrets_ = {"access token": context["access_token"], "refresh token": context["refresh_token"]}
    for what, value in secrets_.items():
        assert isinstance(value, str) and len(value) >= 32, what

    seen: list[requests.Response] = browser.seen  # type: ignore[attr-defined]
    assert len(seen) >= 6
    for response in seen:
        places = {
            "URL": response.url,
            "request URL": response.request.url or "",
            "request headers": repr(dict(response.request.headers)),
            "response headers": repr(dict(response.headers)),
            "page": response.text,
        }
        for what, value in secrets_.items():
            for where, text in places.items():
                assert value not in text, f"the {what} is in a {where}: {response.url[:60]}"
    for cookie in browser.cookies:
        for what, value in secrets_.items():
            assert value not in (cookie.value or ""), f"the {what} is in cookie {cookie.name}"

    records = caplog.records
    assert any(r.name.startswith("smart_app") for r in records), "no app log was captured"
    for record in records:
        text = f"{record.getMessage()} {record.exc_text or ''}"
        for what, value in secrets_.items():
            assert value not in text, f"the {what} is in a log record of {record.name}"

    # the app's cookie is an opaque session id, HttpOnly
    sid = browser.cookies.get(APP_COOKIE)
    assert sid and "." not in sid and len(sid) <= 64
    assert re.fullmatch(r"[A-Za-z0-9_-]+", sid)
    app_cookies = [
        c for c in browser.cookies if c.name == APP_COOKIE and c.domain.startswith("127.0.0.1")
    ]
    assert app_cookies and all(c.has_nonstandard_attr("HttpOnly") for c in app_cookies)
    set_cookies = [
        r.headers["Set-Cookie"]
        for r in seen
        if r.url.startswith(sandbox.app_base) and APP_COOKIE in r.headers.get("Set-Cookie", "")
    ]
    assert set_cookies and all("HttpOnly" in h for h in set_cookies)


# --- 5. refresh --------------------------------------------------------------------------------


def test_an_expired_access_token_is_refreshed_with_the_rotating_refresh_token(
    smart_sandbox: run.Sandbox, browser: requests.Session, store: SessionStore
) -> None:
    sandbox = smart_sandbox
    launched = ehr_launch(browser, sandbox, READ_PATIENT)
    before = store.context(browser, launched.context_id)
    store.change_context(browser, launched.context_id, expires_at=0.0)

    page = browser.get(launched.plan_url, timeout=30)
    assert page.status_code == 200, page.text
    assert patient_name(sandbox, READ_PATIENT) in page.text

    after = store.context(browser, launched.context_id)
    assert after["access_token"] and after["access_token"] != before["access_token"]
    assert after["refresh_token"] and after["refresh_token"] != before["refresh_token"]
    assert after["expires_at"] > time.time() + 60
    for kept in ("patient", "iss", "fhir_user", "need_patient_banner", "token_endpoint"):
        assert after[kept] == before[kept], kept

    # the new access token works at the EHR's FHIR gateway
    read = requests.get(
        f"{sandbox.iss}/Patient/{READ_PATIENT}", headers=bearer(after["access_token"]), timeout=30
    )
    assert read.status_code == 200, read.text
    # rotation: the refresh token presented is now spent
    reused = requests.post(
        f"{sandbox.ehr_base}/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": before["refresh_token"],
            "client_id": run.CLIENT_ID,
        },
        timeout=30,
    )
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"


def test_a_refused_refresh_ends_the_session_with_401(
    smart_sandbox: run.Sandbox, browser: requests.Session, store: SessionStore
) -> None:
    launched = ehr_launch(browser, smart_sandbox, READ_PATIENT)
    store.change_context(
        browser,
        launched.context_id,
        refresh_token="bogus",  # noqa: S106
        expires_at=0.0,
    )
    page = browser.get(launched.plan_url, timeout=30)
    assert page.status_code == 401
    message = alert(page.text)
    assert message.startswith("Session ended")
    assert "relaunch" in message.lower(), message
    assert "bogus" not in page.text
    assert "Eligibility on" not in page.text


# --- 6. standalone launch ----------------------------------------------------------------------


def test_standalone_launch_picks_the_patient_at_the_ehr_and_shows_the_banner(
    smart_sandbox: run.Sandbox, browser: requests.Session, store: SessionStore
) -> None:
    sandbox = smart_sandbox
    start = browser.get(f"{sandbox.app_base}/launch.html", timeout=30)
    assert start.status_code == 200
    assert f'<option value="{sandbox.iss}">' in start.text

    hops = follow(browser, f"{sandbox.app_base}/launch?" + urlencode({"iss": sandbox.iss}))
    assert [h.status for h in hops] == [302, 200], hops
    assert hops[1].url.startswith(f"{sandbox.ehr_base}/oauth/authorize?")
    asked = query(hops[1].url)
    assert "launch" not in asked
    assert asked["code_challenge_method"] == "S256" and asked["aud"] == sandbox.iss
    scopes = scope_set(asked["scope"])
    assert {"launch/patient", "openid", "fhirUser"} <= scopes
    assert "launch" not in scopes
    picker = browser.last_page  # type: ignore[attr-defined]
    assert "Choose a patient" in picker
    assert f'value="{STANDALONE_PATIENT}"' in picker

    form = picker_form(picker)
    assert form["state"] == [asked["state"]]
    chosen = browser.post(
        f"{sandbox.ehr_base}/oauth/authorize",
        data={**form, "patient_choice": STANDALONE_PATIENT, "decision": "allow"},
        allow_redirects=False,
        timeout=30,
    )
    assert chosen.status_code == 302, chosen.text
    location = chosen.headers["Location"]
    assert location.startswith(f"{sandbox.app_base}/callback?")
    assert query(location)["state"] == asked["state"]
    assert query(location).get("code")

    launched = finish(browser, location, sandbox.app_base)
    assert [h.status for h in launched.hops] == [303, 200]
    assert has_banner(launched.page)
    banner = launched.page.split('aria-label="Patient"', 1)[1].split("</section>", 1)[0]
    assert patient_name(sandbox, STANDALONE_PATIENT) in banner
    assert STANDALONE_PATIENT in banner
    context = store.context(browser, launched.context_id)
    assert context["patient"] == STANDALONE_PATIENT
    assert context["need_patient_banner"] is True


# --- 7. a write through the EHR's gateway ------------------------------------------------------


def test_a_confirmed_plan_is_written_through_the_gateway_with_the_user_as_author(
    smart_sandbox: run.Sandbox, browser: requests.Session
) -> None:
    sandbox = smart_sandbox
    assert not [
        c
        for c in upstream_search(sandbox, f"CarePlan?patient={WRITE_PATIENT}")
        if any(i.get("system") == codes.APP_IDENTIFIER for i in c.get("identifier") or [])
    ], "the patient already has a plan: another test wrote to it"
    launched = ehr_launch(browser, sandbox, WRITE_PATIENT)
    assert "Write plan to chart" in launched.page
    written = browser.post(f"{launched.plan_url}write", data=write_form(launched.page), timeout=60)
    assert written.status_code == 200, written.text
    assert "Plan written to the chart" in written.text

    plans = [
        c
        for c in upstream_search(sandbox, f"CarePlan?patient={WRITE_PATIENT}")
        if c.get("status") == "active"
        and any(i.get("system") == codes.APP_IDENTIFIER for i in c.get("identifier") or [])
    ]
    assert len(plans) == 1
    assert plans[0]["subject"]["reference"] == f"Patient/{WRITE_PATIENT}"
    assert plans[0].get("author", {}).get("reference") == PRACTITIONER

    references = re.findall(r"<code>(Provenance/[A-Za-z0-9.-]+)", written.text)
    assert len(references) == 1, written.text
    answer = requests.get(
        f"{sandbox.fhir_upstream}/{references[0]}",
        headers={"Accept": "application/fhir+json"},
        timeout=30,
    )
    assert answer.status_code == 200
    provenance = answer.json()
    authors = [
        a["who"].get("reference")
        for a in provenance["agent"]
        if any(c.get("code") == "author" for c in a.get("type", {}).get("coding", []))
    ]
    assert authors == [PRACTITIONER]
    targets = {t["reference"] for t in provenance["target"]}
    assert f"CarePlan/{plans[0]['id']}" in {t.split("/_history/")[0] for t in targets}


# --- 8. scopes enforced by the EHR -------------------------------------------------------------


def test_the_ehr_refuses_fhir_requests_outside_the_grant(
    smart_sandbox: run.Sandbox, browser: requests.Session, store: SessionStore
) -> None:
    sandbox = smart_sandbox
    launched = ehr_launch(browser, sandbox, READ_PATIENT)
    token = store.context(browser, launched.context_id)["access_token"]
    marker = secrets.token_hex(8)

    own = requests.get(f"{sandbox.iss}/Patient/{READ_PATIENT}", headers=bearer(token), timeout=30)
    assert own.status_code == 200  # the token is good: what follows is refused for scope
    other = requests.get(
        f"{sandbox.iss}/Patient/{OTHER_PATIENT}", headers=bearer(token), timeout=30
    )
    assert other.status_code == 403

    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:test:smart-launch", "value": marker}],
        "name": [{"family": "Created-By-Token"}],
    }
    created = requests.post(
        f"{sandbox.iss}/Patient", json=patient, headers=bearer(token), timeout=30
    )
    assert created.status_code == 403, created.text
    assert created.json()["resourceType"] == "OperationOutcome"

    order = {
        "resourceType": "MedicationRequest",
        "identifier": [{"system": "urn:test:smart-launch", "value": marker}],
        "status": "draft",
        "intent": "proposal",
        "medicationCodeableConcept": {"text": "prednisolone"},
        "subject": {"reference": f"Patient/{OTHER_PATIENT}"},
    }
    refused = requests.post(
        f"{sandbox.iss}/MedicationRequest", json=order, headers=bearer(token), timeout=30
    )
    assert refused.status_code == 403, refused.text
    assert f"Patient/{OTHER_PATIENT}" in refused.text

    anonymous = requests.post(
        f"{sandbox.iss}/MedicationRequest",
        json=order,
        headers={"Content-Type": "application/fhir+json"},
        timeout=30,
    )
    assert anonymous.status_code == 401
    assert "Bearer" in anonymous.headers.get("WWW-Authenticate", "")

    assert (
        upstream_search(sandbox, f"MedicationRequest?identifier=urn:test:smart-launch|{marker}")
        == []
    )
    assert upstream_search(sandbox, f"Patient?identifier=urn:test:smart-launch|{marker}") == []


# --- 9. a read-only grant ------------------------------------------------------------------------

FOLLOWUP_PATIENT = "zs-day-45-taper"
"""On a plan, with Tasks to confirm; only read (here and in test_followup_web.py)."""


def _own_counts(sandbox: run.Sandbox, patient_id: str) -> dict[str, int]:
    """How many of each type the app writes the patient has on the real server."""
    kinds = ("MedicationRequest", "CarePlan", "Task", "DetectedIssue", "ServiceRequest")
    counts = {
        kind: len(upstream_search(sandbox, f"{kind}?patient={patient_id}&_count=500"))
        for kind in kinds
    }
    counts["Provenance"] = len(upstream_search(sandbox, "Provenance?_count=1000"))
    return counts


def current_csrf(browser: requests.Session, launched: Launched) -> str:
    """This browser's CSRF token now, from a page of a launch that shows a form (the token is
    made anew at each launch, when the session id is)."""
    page = browser.get(launched.plan_url, timeout=30)
    assert page.status_code == 200
    return field(page.text, "csrf_token")


def _post_forms(page: str) -> list[str]:
    """The action of every POST form on an app page."""
    return re.findall(r'<form method="post" action="([^"]+)"', page)


def test_a_read_only_grant_shows_the_plan_offers_no_write_and_refuses_one(
    smart_sandbox: run.Sandbox, browser: requests.Session, store: SessionStore
) -> None:
    sandbox = smart_sandbox
    full = ehr_launch(browser, sandbox, READ_PATIENT)
    assert "Write plan to chart" in full.page
    form = write_form(full.page)

    launched = ehr_launch(browser, sandbox, READ_PATIENT, read_only=True)
    asked = query(launched.hops[0].location or "")
    assert grants_write(scope_set(asked["scope"]), "CarePlan")  # the app asked to write
    context = store.context(browser, launched.context_id)
    granted = scope_set(context["scope"])
    assert granted and not [
        s for s in granted if s.startswith("patient/") and "c" in s.split(".")[1]
    ]
    assert not grants_write(granted, "CarePlan")

    page = unescape(launched.page)
    assert "Eligibility on" in page and "Kit NDC" in page
    assert "Write plan to chart" not in page
    assert _post_forms(page) == []
    assert "Writing is not offered with this launch's access." in page
    assert "read-only access, so the app cannot write the plan to the chart" in page

    # the session's CSRF token is made anew at each launch: this browser's current one
    form["csrf_token"] = current_csrf(browser, full)
    before = _own_counts(sandbox, READ_PATIENT)
    refused = browser.post(f"{launched.plan_url}write", data=form, timeout=60)
    assert refused.status_code == 403, refused.text
    message = alert(refused.text)
    assert message.startswith("Not written")
    assert "Nothing was written" in message and "read-only access" in message
    assert _own_counts(sandbox, READ_PATIENT) == before


def test_a_read_only_grant_offers_no_follow_up_write_and_refuses_one(
    smart_sandbox: run.Sandbox, browser: requests.Session
) -> None:
    sandbox = smart_sandbox
    full = ehr_launch(browser, sandbox, FOLLOWUP_PATIENT)
    assert 'id="tasks-form"' in full.page
    fingerprint = re.search(
        r'id="tasks-form".*?name="fingerprint" value="([^"]*)"', full.page, re.DOTALL
    )
    assert fingerprint
    form = {"csrf_token": field(full.page, "csrf_token"), "fingerprint": fingerprint.group(1)}

    launched = ehr_launch(browser, sandbox, FOLLOWUP_PATIENT, read_only=True)
    page = unescape(launched.page)
    assert 'id="where-h"' in page  # the follow-up view, read in full
    assert _post_forms(page) == []
    assert "Confirming Tasks is not offered with this launch's access." in page
    assert "cannot record completed Tasks" in page

    form["csrf_token"] = current_csrf(browser, full)  # made anew at the read-only launch
    before = _own_counts(sandbox, FOLLOWUP_PATIENT)
    refused = browser.post(f"{launched.plan_url}followup/tasks", data=form, timeout=60)
    assert refused.status_code == 403, refused.text
    error = unescape(refused.text.split('id="error"', 1)[1].split("</section>", 1)[0])
    assert "Not written" in error and "Nothing was written" in error
    assert "read-only access" in error
    assert _own_counts(sandbox, FOLLOWUP_PATIENT) == before
