"""The web app in the sandbox stack: the FHIR server (sekmet), a counting proxy, the sandbox EHR
(its own process) behind a delaying relay, and the app, in this process or under gunicorn.

A `requests.Session` plays the browser (no browser): the EHR's launcher, Launch, then the
app's launch URL followed hop by hop to the plan page.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from werkzeug.serving import WSGIRequestHandler, make_server

from bench.ehr import ehr_process
from bench.relay import Relay, relay
from smart_app import clock, create_app
from smart_app.config import ClientType, Registration, web_settings
from smart_app.fhir.gateway import FhirGateway
from smart_app.sandbox import run
from smart_app.sandbox.fhirserver import background_process, free_port
from smart_app.sandbox.patients import SyntheticPatient, synthetic_patients
from smart_app.web.state import WebState
from tests.fhirserver import Proxy, proxy

APP_CLIENT = "zolgensma-smart"
GUNICORN_CLIENT = "zolgensma-smart-gunicorn"
GUNICORN_WORKERS = 4
"""As docs/operations.md runs it."""
DELAY_S = 0.05
LAUNCH_RUNS = 9
PAGE_RUNS = 15
CONCURRENT = 20
LATENCY_GOAL = 1.2
PAGE_GOAL_MS = 25.0
LAUNCH_TRIPS = 4
"""The fewest round trips to the EHR a launch can make: discovery, authorize, token, read."""


@dataclass
class Timings:
    """Server-side times of the in-process app, per request, and its waits on the FHIR server
    (its gateway's sending and reading of answers: the network and the EHR's own time)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: list[tuple[str, float, float, float]] = field(default_factory=list)
    """(path, seconds in the app, seconds of it waiting on answers from the EHR, CPU seconds
    of the thread that served it)."""
    waits: dict[int, float] = field(default_factory=dict)
    """Per thread: seconds waited on the EHR during the request under way."""

    def add_wait(self, seconds: float) -> None:
        """Add to the current thread's wait (no request under way: ignored)."""
        key = threading.get_ident()
        with self.lock:
            if key in self.waits:
                self.waits[key] += seconds

    @contextlib.contextmanager
    def watching_gateway(self) -> Iterator[None]:
        """Time FhirGateway's network waits (its _send and _body) while in this block."""
        originals = {name: getattr(FhirGateway, name) for name in ("_send", "_body")}

        def timed(original: Callable[..., Any]) -> Callable[..., Any]:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    return original(*args, **kwargs)
                finally:
                    self.add_wait(time.perf_counter() - start)

            return wrapper

        for name, original in originals.items():
            setattr(FhirGateway, name, timed(original))
        try:
            yield
        finally:
            for name, original in originals.items():
                setattr(FhirGateway, name, original)

    def middleware(self, app: Callable[..., Any]) -> Callable[..., Any]:
        """A WSGI wrapper timing each request until the app returns its body."""

        def timed(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            key = threading.get_ident()
            with self.lock:
                self.waits[key] = 0.0
            start, cpu = time.perf_counter(), time.thread_time()
            body = app(environ, start_response)
            seconds, cpu = time.perf_counter() - start, time.thread_time() - cpu
            with self.lock:
                wait = self.waits.pop(key, 0.0)
                self.requests.append((environ.get("PATH_INFO", ""), seconds, wait, cpu))
            return body

        return timed


@dataclass
class Stack:
    """Where everything runs."""

    relay: Relay
    fhir: Proxy
    app_base: str
    gunicorn_base: str
    patients: tuple[SyntheticPatient, ...]
    timings: Timings

    @property
    def ehr(self) -> str:
        """The EHR as everyone reaches it: through the relay."""
        return self.relay.base

    def planning(self) -> list[SyntheticPatient]:
        """Patients not on a plan, whose launch opens the plan page."""
        return [p for p in self.patients if p.in_plan_day is None]


@contextlib.contextmanager
def stack(*, fhir_base: str, work_dir: Path) -> Iterator[Stack]:
    """Load the sandbox's patients, start the proxy, the EHR, the relay and both apps."""
    patients = synthetic_patients(today=clock.today())
    run.load(fhir_base, patients, now=clock.now())
    app_base = f"http://127.0.0.1:{free_port()}"
    gunicorn_base = f"http://127.0.0.1:{free_port()}"
    ehr_port = free_port()
    with contextlib.ExitStack() as exits:
        fhir = exits.enter_context(proxy(fhir_base))
        front = exits.enter_context(relay(f"http://127.0.0.1:{ehr_port}"))
        settings = {
            "port": ehr_port,
            "public_base": front.base,
            "fhir_upstream": fhir.base,
            "practitioner_id": run.PRACTITIONER_ID,
            "clients": [
                {
                    "client_id": client,
                    "redirect_uris": [f"{base}/callback"],
                    "launch_url": f"{base}/launch",
                }
                for client, base in ((APP_CLIENT, app_base), (GUNICORN_CLIENT, gunicorn_base))
            ],
            "patients": [
                {
                    "patient_id": p.patient_id,
                    "name": p.name,
                    "birth_date": _birth_date(p),
                    "scenario": p.scenario,
                }
                for p in patients
            ],
        }
        exits.enter_context(ehr_process(settings, work_dir=work_dir))
        timings = Timings()
        exits.enter_context(timings.watching_gateway())
        exits.enter_context(_in_process_app(app_base, front.base, timings, work_dir=work_dir))
        exits.enter_context(_gunicorn(gunicorn_base, front.base, work_dir=work_dir))
        yield Stack(front, fhir, app_base, gunicorn_base, patients, timings)


def _birth_date(patient: SyntheticPatient) -> str | None:
    """The Patient resource's birthDate."""
    return next(
        (r.get("birthDate") for r in patient.resources if r.get("resourceType") == "Patient"),
        None,
    )


def _registration(iss: str, client_id: str, base: str) -> Registration:
    """The app's registration with the sandbox EHR."""
    return Registration(
        iss=iss,
        name="Local SMART sandbox EHR (bench)",
        client_type=ClientType.PUBLIC,
        client_id=client_id,
        redirect_uri=f"{base}/callback",
    )


class _Quiet(WSGIRequestHandler):
    """No request log lines (the figures are the output)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Nothing."""


@contextlib.contextmanager
def _in_process_app(base: str, ehr: str, timings: Timings, *, work_dir: Path) -> Iterator[None]:
    """The app in this process on werkzeug's threaded server, timed by a WSGI wrapper."""
    iss = f"{ehr}/fhir"
    settings = web_settings(
        {},
        public_url=base,
        secret_key=secrets.token_urlsafe(48),
        registrations={iss: _registration(iss, APP_CLIENT, base)},
        session_dir=work_dir / "sessions",
        frame_ancestors=("'self'", ehr),
    )
    state = WebState(settings=settings)
    app = create_app({"STATE": state})
    app.wsgi_app = timings.middleware(app.wsgi_app)  # type: ignore[method-assign]
    port = int(urlsplit(base).port or 0)
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        state.http.close()


@contextlib.contextmanager
def _gunicorn(base: str, ehr: str, *, work_dir: Path) -> Iterator[None]:
    """The app under gunicorn (the documented command), configured by SMART_APP_* variables."""
    iss = f"{ehr}/fhir"
    registrations = work_dir / "registrations.toml"
    registrations.write_text(
        f'[[server]]\nname = "Local SMART sandbox EHR (bench)"\niss = "{iss}"\n'
        f'client_type = "public"\nclient_id = "{GUNICORN_CLIENT}"\n'
        f'redirect_uri = "{base}/callback"\n',
        encoding="utf-8",
    )
    env = {
        **os.environ,
        "SMART_APP_PUBLIC_URL": base,
        "SMART_APP_SECRET_KEY": secrets.token_urlsafe(48),
        "SMART_APP_REGISTRATIONS": str(registrations),
        "SMART_APP_SESSION_DIR": str(work_dir / "gunicorn-sessions"),
        "SMART_APP_FRAME_ANCESTORS": f"'self' {ehr}",
    }
    gunicorn = Path(sys.executable).with_name("gunicorn")
    with background_process(
        [
            str(gunicorn),
            "--workers",
            str(GUNICORN_WORKERS),
            "--bind",
            base.removeprefix("http://"),
            "--log-level",
            "warning",
            "smart_app:create_app()",
        ],
        ready_url=f"{base}/launch.html",
        log_path=work_dir / "gunicorn.log",
        what="gunicorn",
        env=env,
        stop_timeout_s=20,
    ):
        yield


# --- the browser ---------------------------------------------------------------------------------


def _field(page: str, name: str) -> str:
    """The value of the first input named `name`."""
    match = re.search(rf'name="{name}" value="([^"]*)"', page)
    if not match:
        raise RuntimeError(f"no {name} field in the page")
    return unescape(match.group(1))


@dataclass(frozen=True)
class Hop:
    """One request of a launch: which page, its status and time."""

    page: str
    status: int
    seconds: float


def _page(url: str, stack_ehr: str) -> str:
    """Which page a URL is, for the per-page figures."""
    path = urlsplit(url).path
    if url.startswith(stack_ehr):
        return f"EHR {path}" if not path.startswith("/chart/") else "EHR chart"
    if path.startswith("/p/"):
        return "app plan page (FHIR read)"
    return {"/launch": "app /launch (discovery)", "/callback": "app /callback (token)"}.get(
        path, f"app {path}"
    )


@dataclass
class Launched:
    """A finished launch: its hops, the final page, the seconds from the app's launch URL."""

    hops: list[Hop]
    page_url: str
    page: str
    seconds: float


def open_chart(browser: requests.Session, ehr: str, client_id: str, patient_id: str) -> Hop:
    """The launcher, then Launch for a patient; the chart's iframe URL (in `page`)."""
    start = time.perf_counter()
    launcher = browser.get(f"{ehr}/", params={"client": client_id}, timeout=60)
    launcher.raise_for_status()
    form = {
        "csrf_token": _field(launcher.text, "csrf_token"),
        "client_id": client_id,
        "patient_id": patient_id,
    }
    chart = browser.post(f"{ehr}/launch", data=form, timeout=60)
    chart.raise_for_status()
    match = re.search(r'<iframe[^>]* src="([^"]+)"', chart.text)
    if not match:
        raise RuntimeError("the chart has no app frame")
    return Hop(unescape(match.group(1)), chart.status_code, time.perf_counter() - start)


def follow(browser: requests.Session, url: str, *, ehr: str) -> Launched:
    """Follow a launch URL by hand to the page it ends on; each hop timed."""
    hops: list[Hop] = []
    start = time.perf_counter()
    for _ in range(10):
        hop_start = time.perf_counter()
        answer = browser.get(url, allow_redirects=False, timeout=120)
        hops.append(Hop(_page(url, ehr), answer.status_code, time.perf_counter() - hop_start))
        location = answer.headers.get("Location")
        if answer.status_code in (301, 302, 303, 307) and location:
            url = urljoin(url, location)
            continue
        if answer.status_code != 200:
            raise RuntimeError(f"{_page(url, ehr)} answered {answer.status_code}")
        return Launched(hops, url, answer.text, time.perf_counter() - start)
    raise RuntimeError("too many redirects")


def launch(stack_: Stack, client_id: str, patient_id: str) -> Launched:
    """A whole EHR launch in a fresh browser; times from the app's launch URL."""
    with requests.Session() as browser:
        chart = open_chart(browser, stack_.ehr, client_id, patient_id)
        stack_.relay.take_calls()
        launched = follow(browser, chart.page, ehr=stack_.ehr)
        launched.hops.insert(0, Hop("EHR launcher + Launch + chart", 200, chart.seconds))
        return launched
