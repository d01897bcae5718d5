"""`make demo`: the FHIR server, the SMART sandbox EHR and the app on loopback, patients loaded."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import secrets
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from werkzeug.serving import BaseWSGIServer, make_server

from smart_app import clock, create_app, service
from smart_app.config import CdsClient, ClientType, Registration, web_settings
from smart_app.errors import WriteBlocked
from smart_app.fhir.followup_write import Confirmed
from smart_app.fhir.gateway import FhirGateway
from smart_app.fhir.written import Confirmation, OrderMode
from smart_app.rules import label
from smart_app.rules.policy import Policy
from smart_app.sandbox.ehr import create_ehr
from smart_app.sandbox.fhirserver import free_port, sekmet
from smart_app.sandbox.patients import SyntheticPatient, synthetic_patients, transaction_bundle
from smart_app.sandbox.serving import QuietHandler
from smart_app.sandbox.settings import EhrSettings, LauncherPatient, SandboxClient
from smart_app.web.state import WebState

CLIENT_ID = "zolgensma-smart"
PRACTITIONER_ID = "sandbox-practitioner"


class _Deferred:
    """A WSGI callable whose application is set once the server's port is known."""

    app: Any = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        """Delegate to the application."""
        return self.app(environ, start_response)


@dataclass(frozen=True)
class Sandbox:
    """Where everything runs."""

    fhir_upstream: str
    ehr_base: str
    app_base: str
    patients: tuple[SyntheticPatient, ...]

    @property
    def iss(self) -> str:
        """The FHIR base the app is launched with."""
        return f"{self.ehr_base}/fhir"

    @property
    def launcher(self) -> str:
        """The page a person opens first."""
        return f"{self.ehr_base}/"


def _serve(host: str, port: int) -> tuple[BaseWSGIServer, _Deferred]:
    """A threaded server bound now, its application given later."""
    target = _Deferred()
    server = make_server(host, port, target, threaded=True, request_handler=QuietHandler)
    return server, target


def practitioner() -> dict[str, Any]:
    """The sandbox's signed-in clinician."""
    return {
        "resourceType": "Practitioner",
        "id": PRACTITIONER_ID,
        "name": [{"given": ["Sam"], "family": "Sandbox-Neurologist", "prefix": ["Dr."]}],
    }


LOAD_CHUNK = 40
"""Resources per loading transaction (servers cap the updates in one: Medplum at 50)."""


def load(fhir_base: str, patients: Sequence[SyntheticPatient], *, now: dt.datetime) -> None:
    """Load every patient in transactions of LOAD_CHUNK resources, then write the plans of
    those already on one."""
    bundle = transaction_bundle(patients)
    bundle["entry"].append(
        {
            "fullUrl": f"{fhir_base}/Practitioner/{PRACTITIONER_ID}",
            "resource": practitioner(),
            "request": {"method": "PUT", "url": f"Practitioner/{PRACTITIONER_ID}"},
        }
    )
    entries = bundle["entry"]
    for start in range(0, len(entries), LOAD_CHUNK):  # Medplum takes 50 updates at most
        chunk = {**bundle, "entry": entries[start : start + LOAD_CHUNK]}
        response = requests.post(
            fhir_base, json=chunk, headers={"Content-Type": "application/fhir+json"}, timeout=120
        )
        response.raise_for_status()
    gateway = FhirGateway(fhir_base, bearer_token=None)
    for patient in patients:
        if patient.in_plan_day is None:
            continue
        on = patient.infusion_date - dt.timedelta(days=1)
        evaluation = service.evaluate(
            gateway, patient.patient_id, on=on, infusion_date=patient.infusion_date
        )
        recorded = dt.datetime.combine(on, dt.time(9), tzinfo=now.tzinfo)
        confirmation = Confirmation(
            recorded=recorded,
            fhir_user=f"Practitioner/{PRACTITIONER_ID}",
            order_mode=OrderMode.ORDER,
        )
        service.write(gateway, evaluation, confirmation)
        _replay_followup(gateway, patient, now=now)


def _replay_followup(gateway: FhirGateway, patient: SyntheticPatient, *, now: dt.datetime) -> None:
    """What the care team did on earlier launches: baseline and counseling confirmed on the eve
    of infusion; past day 28, that day's Tasks confirmed and the taper decided; past day 90,
    every resulted Task confirmed."""
    day = patient.in_plan_day or 0
    infusion = patient.infusion_date

    def confirmed(on: dt.date) -> Confirmed:
        """The sandbox clinician's confirmation at 09:00 that day."""
        return Confirmed(
            recorded=dt.datetime.combine(on, dt.time(9), tzinfo=now.tzinfo),
            fhir_user=f"Practitioner/{PRACTITIONER_ID}",
            order_mode=OrderMode.ORDER,
        )

    def confirm_tasks(on: dt.date, manual: frozenset[str] = frozenset()) -> None:
        """Complete the Tasks resulted by `on` (and the named manual ones)."""
        following = service.read_followup(gateway, patient.patient_id, on=on)
        if following is None:
            return
        with contextlib.suppress(WriteBlocked):
            service.complete_tasks(gateway, following, confirmed(on), manual_items=manual)

    eve = infusion - dt.timedelta(days=1)
    confirm_tasks(eve, frozenset({"task/counseling/day-1"}))
    if day > label.LIVER_ASSESSMENT_DAY:
        check = infusion + dt.timedelta(days=label.LIVER_ASSESSMENT_DAY)
        confirm_tasks(check, frozenset({"task/vigilance/day0"}))
        following = service.read_followup(gateway, patient.patient_id, on=check, exam_normal=True)
        if following is not None and following.followup.decision is not None:
            service.record_decision(gateway, following, confirmed(check))
    if day >= label.LIVER_MONITORING_DAYS:
        confirm_tasks(infusion + dt.timedelta(days=day))


@contextlib.contextmanager
def running(
    *,
    today: dt.date,
    now: dt.datetime,
    fhir_port: int | None = None,
    ehr_port: int | None = None,
    app_port: int | None = None,
    work_dir: Path | None = None,
    app_state: dict[str, Any] | None = None,
    policy: Policy | None = None,
) -> Iterator[Sandbox]:
    """Start all three on loopback, load the patients, yield where they are; stop on exit
    (`policy`: the app's institution policy, the defaults when None)."""
    with contextlib.ExitStack() as stack:
        base = work_dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        (base / "fhir").mkdir(parents=True, exist_ok=True)
        upstream = stack.enter_context(sekmet(base / "fhir", port=fhir_port))
        patients = synthetic_patients(today=today)
        load(upstream, patients, now=now)
        ehr_server, ehr_target = _serve("127.0.0.1", ehr_port or free_port())
        app_server, app_target = _serve("127.0.0.1", app_port or free_port())
        ehr_base = f"http://127.0.0.1:{ehr_server.server_port}"
        app_base = f"http://127.0.0.1:{app_server.server_port}"
        sandbox = Sandbox(upstream, ehr_base, app_base, patients)
        ehr_target.app = create_ehr(
            EhrSettings(
                public_base=ehr_base,
                fhir_upstream=upstream,
                clients=(
                    SandboxClient(
                        client_id=CLIENT_ID,
                        redirect_uris=(f"{app_base}/callback",),
                        launch_url=f"{app_base}/launch",
                        cds_services_url=f"{app_base}/cds-services",
                    ),
                ),
                patients=tuple(
                    LauncherPatient(
                        patient_id=p.patient_id,
                        name=p.name,
                        birth_date=_birth_date(p),
                        scenario=p.scenario,
                    )
                    for p in patients
                ),
                practitioner_id=PRACTITIONER_ID,
                smart_style_url=f"{ehr_base}/smart-style.json",
            )
        )
        registration = Registration(
            iss=sandbox.iss,
            name="Local SMART sandbox EHR",
            client_type=ClientType.PUBLIC,
            client_id=CLIENT_ID,
            redirect_uri=f"{app_base}/callback",
        )
        settings = web_settings(
            {},
            public_url=app_base,
            secret_key=secrets.token_urlsafe(48),
            registrations={sandbox.iss: registration},
            cds_clients={ehr_base: cds_client(ehr_base)},
            session_dir=base / "sessions",
            frame_ancestors=("'self'", ehr_base),
            **({"policy": policy} if policy is not None else {}),
        )
        state = WebState(settings=settings, **(app_state or {}))
        stack.callback(state.http.close)
        app_target.app = create_app({"STATE": state})
        for server in (ehr_server, app_server):
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            stack.callback(server.server_close)
            stack.callback(server.shutdown)
        yield sandbox


def cds_client(ehr_base: str) -> CdsClient:
    """The sandbox EHR as the app registers it for its CDS Hooks services: its JWTs' issuer, its
    JWK Set URL and its FHIR base (where the service may use fhirAuthorization)."""
    return CdsClient(
        iss=ehr_base,
        name="Local SMART sandbox EHR",
        jwks_url=f"{ehr_base}/oauth/jwks",
        fhir_servers=(f"{ehr_base}/fhir",),
    )


def _birth_date(patient: SyntheticPatient) -> str | None:
    """The Patient resource's birthDate."""
    return next(
        (r.get("birthDate") for r in patient.resources if r.get("resourceType") == "Patient"),
        None,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run until Ctrl-C, printing the launcher URL."""
    parser = argparse.ArgumentParser(prog="python -m smart_app.sandbox", description=__doc__)
    parser.add_argument("--fhir-port", type=int, default=8090)
    parser.add_argument("--ehr-port", type=int, default=8091)
    parser.add_argument("--app-port", type=int, default=8092)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    now = clock.now()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        with running(
            today=now.date(),
            now=now,
            fhir_port=args.fhir_port,
            ehr_port=args.ehr_port,
            app_port=args.app_port,
        ) as sandbox:
            sys.stdout.write(
                f"\nFHIR server (sekmet):  {sandbox.fhir_upstream}\n"
                f"SMART sandbox EHR:     {sandbox.iss}\n"
                f"ZOLGENSMA app:         {sandbox.app_base}/launch.html\n"
                f"CDS Hooks services:    {sandbox.app_base}/cds-services "
                "(the EHR's charts call them)\n\n"
                f"Open the launcher:     {sandbox.launcher}\n"
                f"{len(sandbox.patients)} synthetic patients loaded. Ctrl-C stops everything.\n\n"
            )
            sys.stdout.flush()
            while not stop.wait(0.5):
                pass
    except (OSError, RuntimeError, requests.RequestException) as exc:
        sys.stderr.write(f"sandbox: cannot start: {exc}\n")
        return 1
    sys.stdout.write("stopped.\n")
    return 0
