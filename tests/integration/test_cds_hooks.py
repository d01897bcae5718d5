"""The CDS services against the real local FHIR server: patient-view and the order hooks, with
and without prefetch (the same cards; no FHIR request with a full prefetch), and without
fhirServer (prefetch only, else 412)."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from smart_app import create_app, service
from smart_app.cds.discovery import PATIENT_ID, prefetch_templates
from smart_app.config import web_settings
from smart_app.fhir import codes
from smart_app.fhir.gateway import FhirGateway
from smart_app.fhir.written import Confirmation
from smart_app.rules.model import Status
from smart_app.sandbox import run
from smart_app.sandbox.patients import SyntheticPatient, synthetic_patients, transaction_bundle
from smart_app.web.state import WebState
from tests import fhirserver
from tests.cds.contract import check_response, r4_valid
from tests.cds.signing import CdsTestClient
from tests.smartsandbox import NOW, TODAY

pytestmark = pytest.mark.integration

PUBLIC_URL = "http://127.0.0.1:5000"
PATIENTS = {p.patient_id: p for p in synthetic_patients(today=TODAY)}
VIEW = "zolgensma-patient-view"
SELECT = "zolgensma-order-select"
SIGN = "zolgensma-order-sign"
RIGHT_KIT = "71894-123-03"
"""The 4.1-4.5 kg kit: zs-eligible-4-2kg's."""
WRONG_KIT = "71894-120-02"
"""The 2.6-3.0 kg kit."""


# Set-up -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ehr() -> CdsTestClient:
    """The calling EHR's key (one per module: RSA generation is slow)."""
    return CdsTestClient()


def renamed(pid: str) -> SyntheticPatient:
    """A sandbox patient under a fresh id (every id derived from it and every reference)."""
    patient = PATIENTS[pid]
    new = f"{pid}-{uuid.uuid4().hex[:8]}"
    text = re.sub(rf'(?<=["/]){re.escape(pid)}(?=["-])', new, json.dumps(patient.resources))
    return dataclasses.replace(patient, patient_id=new, resources=tuple(json.loads(text)))


@pytest.fixture
def put(fhir_server: str) -> Callable[..., SyntheticPatient]:
    """Load a fresh copy of a sandbox patient (its plan written when it is on one)."""

    def loader(pid: str, *, drop: Callable[[dict[str, Any]], bool] | None = None) -> Any:
        """Load `pid` under a fresh id, without the resources `drop` picks."""
        patient = renamed(pid)
        if drop is not None:
            kept = tuple(r for r in patient.resources if not drop(r))
            patient = dataclasses.replace(patient, resources=kept)
        if patient.in_plan_day is None:
            fhirserver.http_json("POST", fhir_server, transaction_bundle([patient]))
        else:
            run.load(fhir_server, [patient], now=NOW)
        return patient

    return loader


@pytest.fixture
def app(proxy: fhirserver.Proxy, ehr: CdsTestClient, tmp_path: Path) -> Iterator[FlaskClient]:
    """The app with the EHR registered as a CDS client of the proxied server; today fixed."""
    settings = web_settings(
        {},
        public_url=PUBLIC_URL,
        secret_key="k" * 40,
        registrations={},
        session_dir=tmp_path / "sessions",
        cds_clients={ehr.iss: ehr.registration(fhir_servers=(proxy.base,))},
    )
    state = WebState(settings=settings, today=lambda: TODAY, now=lambda: NOW)
    yield create_app({"STATE": state, "TESTING": True}).test_client()


def hook_body(
    hook: str,
    pid: str,
    *,
    server: str | None,
    prefetch: dict[str, Any] | None = None,
    instance: str = "hook-instance-1",
    **context: Any,
) -> dict[str, Any]:
    """A CDS Hooks request body."""
    body: dict[str, Any] = {
        "hook": hook,
        "hookInstance": instance,
        "context": {"userId": f"Practitioner/{run.PRACTITIONER_ID}", "patientId": pid, **context},
    }
    if server is not None:
        body["fhirServer"] = server
        body["fhirAuthorization"] = {
            "access_token": "opaque-fhir-token",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.read",
            "subject": "zolgensma-cds",
        }
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def post(client: FlaskClient, ehr: CdsTestClient, service: str, body: Any) -> Any:
    """POST to a service with a fresh signed JWT for its URL."""
    path = f"/cds-services/{service}"
    return client.post(
        path, json=body, headers={"Authorization": ehr.authorization(aud=PUBLIC_URL + path)}
    )


@dataclasses.dataclass(frozen=True)
class Hooks:
    """The app as the EHR calls it: the app's client, the EHR's key, the proxied server the
    EHR registered (in front of the real one), and the loader of sandbox patients."""

    app: FlaskClient
    ehr: CdsTestClient
    proxy: fhirserver.Proxy
    put: Callable[..., SyntheticPatient]

    def post(self, service: str, body: Any) -> Any:
        """POST to a service with a fresh signed JWT for its URL."""
        return post(self.app, self.ehr, service, body)


@pytest.fixture
def hooks(
    app: FlaskClient,
    ehr: CdsTestClient,
    proxy: fhirserver.Proxy,
    put: Callable[..., SyntheticPatient],
) -> Hooks:
    """The app, the EHR, the proxy and the patient loader, together."""
    return Hooks(app, ehr, proxy, put)


def full_prefetch(base: str, pid: str) -> dict[str, Any]:
    """Every prefetch template's answer, as a CDS client would GET it from the server."""
    out = {}
    for key, template in prefetch_templates().items():
        status, answer = fhirserver.http_json("GET", f"{base}/{template.replace(PATIENT_ID, pid)}")
        assert status == 200, (key, answer)
        out[key] = answer
    return out


def cards_of(answer: Any) -> list[dict[str, Any]]:
    """The cards of a 200 answer, checked against the contract."""
    assert answer.status_code == 200, answer.text
    return check_response(answer.get_json())


def kit_order(
    pid: str, ndc: str, *, order_id: str = "draft-kit", day: dt.date | None = None
) -> Any:
    """A draft ZOLGENSMA MedicationRequest for a kit NDC on a date."""
    return {
        "resourceType": "MedicationRequest",
        "id": order_id,
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": codes.NDC, "code": ndc}],
            "text": "Zolgensma kit",
        },
        "subject": {"reference": f"Patient/{pid}"},
        "requester": {"reference": f"Practitioner/{run.PRACTITIONER_ID}"},
        "authoredOn": TODAY.isoformat(),
        "dosageInstruction": [
            {"timing": {"event": [(day or TODAY + dt.timedelta(days=3)).isoformat()]}}
        ],
    }


def prednisolone_order(pid: str) -> dict[str, Any]:
    """A draft prednisolone order by RxNorm."""
    return {
        "resourceType": "MedicationRequest",
        "id": "draft-pred",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": codes.RXNORM, "code": "8638", "display": "prednisolone"}]
        },
        "subject": {"reference": f"Patient/{pid}"},
    }


def drafts(*orders: dict[str, Any]) -> dict[str, Any]:
    """A draftOrders Bundle."""
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": o} for o in orders],
    }


# patient-view -------------------------------------------------------------------------------


def test_patient_view_eligible_same_card_with_and_without_prefetch(
    hooks: Hooks,
) -> None:
    """One info card; read in one batch without prefetch, with no request at all with a full
    prefetch, and from the prefetch alone without fhirServer: the same card each time."""
    patient = hooks.put("zs-eligible-4-2kg")
    pid = patient.patient_id
    hooks.proxy.reset()
    read = cards_of(hooks.post(VIEW, hook_body("patient-view", pid, server=hooks.proxy.base)))
    assert hooks.proxy.calls == [("POST", "/fhir")]
    prefetch = full_prefetch(hooks.proxy.base, pid)
    hooks.proxy.reset()
    given = cards_of(
        hooks.post(VIEW, hook_body("patient-view", pid, server=hooks.proxy.base, prefetch=prefetch))
    )
    assert hooks.proxy.calls == []
    alone = cards_of(
        hooks.post(VIEW, hook_body("patient-view", pid, server=None, prefetch=prefetch))
    )
    assert read == given == alone
    (card,) = read
    tomorrow = TODAY + dt.timedelta(days=1)
    assert card["indicator"] == "info"
    assert card["summary"].startswith("ZOLGENSMA eligible for infusion on 22")
    assert RIGHT_KIT in card["summary"]
    assert "institution default" in card["detail"]
    assert card["source"]["label"] == "ZOLGENSMA prescribing information (rev. 2/2025)"
    (link,) = card["links"]
    assert link["type"] == "smart" and link["url"] == f"{PUBLIC_URL}/launch"
    assert json.loads(link["appContext"]) == {"infusionDate": tomorrow.isoformat()}


def test_patient_view_statuses_give_their_indicators(
    hooks: Hooks,
) -> None:
    """Deferred and incomplete patients get a warning with the blocking finding as the reason."""
    for pid, words in (("zs-aav9-titer-1-100", "deferred"), ("zs-weight-missing", "incomplete")):
        patient = hooks.put(pid)
        assert patient.expected_status in (Status.DEFERRED, Status.INCOMPLETE)
        body = hook_body("patient-view", patient.patient_id, server=hooks.proxy.base)
        (card,) = cards_of(hooks.post(VIEW, body))
        assert card["indicator"] == "warning", card
        assert card["summary"].startswith(f"ZOLGENSMA {words} for infusion on"), card["summary"]


def test_patient_view_no_card_without_sma_or_over_two(
    hooks: Hooks,
) -> None:
    """No SMA Condition and no SMN1 result: no card; a child already 2 on the date: no card."""

    def sma_or_smn1(resource: dict[str, Any]) -> bool:
        """The SMA Condition and the SMN1 result."""
        return resource["id"].endswith(("-sma", "-smn1"))

    plain = hooks.put("zs-eligible-4-2kg", drop=sma_or_smn1)
    over_two = hooks.put("zs-age-over-2")
    for pid in (plain.patient_id, over_two.patient_id):
        answer = hooks.post(VIEW, hook_body("patient-view", pid, server=hooks.proxy.base))
        assert cards_of(answer) == []


def test_patient_view_on_a_plan_shows_day_phase_and_alert(
    hooks: Hooks,
) -> None:
    """Day 10 of a plan: info with day and phase; day 15 with acute liver injury: critical."""
    calm = hooks.put("zs-day-10")
    (card,) = cards_of(
        hooks.post(VIEW, hook_body("patient-view", calm.patient_id, server=hooks.proxy.base))
    )
    assert card["indicator"] == "info"
    assert "day 10 after infusion" in card["summary"]
    assert "full-dose prednisolone" in card["summary"]
    injured = hooks.put("zs-day-15-liver-injury")
    prefetch = full_prefetch(hooks.proxy.base, injured.patient_id)
    hooks.proxy.reset()
    (card,) = cards_of(
        hooks.post(
            VIEW,
            hook_body("patient-view", injured.patient_id, server=None, prefetch=prefetch),
        )
    )
    assert hooks.proxy.calls == []
    assert card["indicator"] == "critical"
    assert "day 15 after infusion" in card["summary"]
    assert "Urgent" in card["summary"]


def test_no_fhir_server_and_part_of_the_prefetch_missing_is_412(
    hooks: Hooks,
) -> None:
    """Without fhirServer the service reads nothing itself: a missing (or null) key is 412."""
    patient = hooks.put("zs-eligible-4-2kg")
    prefetch = full_prefetch(hooks.proxy.base, patient.patient_id)
    prefetch["labs"] = None
    answer = hooks.post(
        VIEW,
        hook_body("patient-view", patient.patient_id, server=None, prefetch=prefetch),
    )
    assert answer.status_code == 412
    assert "fhirServer" in answer.get_json()["error"]
    del prefetch["labs"]
    hooks.proxy.reset()
    answer = hooks.post(
        VIEW,
        hook_body("patient-view", patient.patient_id, server=hooks.proxy.base, prefetch=prefetch),
    )
    assert answer.status_code == 200
    assert len(hooks.proxy.calls) == 1, "only the missing search is read, in one batch"


def test_fhir_server_not_registered_for_the_client_is_400(hooks: Hooks, fhir_server: str) -> None:
    """The token is never sent to a server the client did not register (the server itself,
    not the proxy the client registered, receives nothing)."""
    body = hook_body("patient-view", "anyone", server="https://elsewhere.example/fhir")
    answer = hooks.post(VIEW, body)
    assert answer.status_code == 400
    assert "fhirServer" in answer.get_json()["error"]
    answer = hooks.post(VIEW, hook_body("patient-view", "anyone", server=fhir_server))
    assert answer.status_code == 400
    assert hooks.proxy.calls == []


# order-select / order-sign ------------------------------------------------------------------


def test_wrong_kit_gives_a_critical_card_whose_suggestion_orders_the_right_kit(
    hooks: Hooks,
) -> None:
    """4.2 kg ordered the 2.6-3.0 kg kit: critical; the suggestion deletes the draft and creates
    the 4.1-4.5 kg kit's order, the patient, requester and date copied from the draft."""
    pid = hooks.put("zs-eligible-4-2kg").patient_id
    day = TODAY + dt.timedelta(days=3)
    orders = drafts(kit_order(pid, WRONG_KIT, day=day), prednisolone_order(pid))
    for service_id, hook in ((SELECT, "order-select"), (SIGN, "order-sign")):
        extra = {"selections": ["MedicationRequest/draft-kit"]} if hook == "order-select" else {}
        body = hook_body(hook, pid, server=hooks.proxy.base, draftOrders=orders, **extra)
        (card,) = cards_of(hooks.post(service_id, body))
        assert card["indicator"] == "critical"
        assert RIGHT_KIT in card["summary"] and WRONG_KIT in card["summary"]
        (suggestion,) = card["suggestions"]
        assert card["selectionBehavior"] == "at-most-one"
        delete, create = suggestion["actions"]
        assert delete == {
            "type": "delete",
            "description": delete["description"],
            "resourceId": "MedicationRequest/draft-kit",
        }
        new = create["resource"]
        assert create["type"] == "create"
        assert new["medicationCodeableConcept"]["coding"][0]["code"] == RIGHT_KIT
        assert new["status"] == "draft"
        assert new["subject"] == {"reference": f"Patient/{pid}"}
        assert new["requester"] == {"reference": f"Practitioner/{run.PRACTITIONER_ID}"}
        assert new["dosageInstruction"][0]["timing"] == {"event": [day.isoformat()]}
        assert new["dispenseRequest"]["quantity"]["value"] == 3
        r4_valid(new)


@pytest.mark.parametrize("ndc", ["71894-0123-03", "71894012303", "7189412303", RIGHT_KIT])
def test_the_right_kit_in_any_format_raises_nothing_at_signing(
    hooks: Hooks,
    ndc: str,
) -> None:
    """The right kit (any NDC format) with prednisolone ordered: no card at signing; at
    selection one info card confirming the kit."""
    pid = hooks.put("zs-eligible-4-2kg").patient_id
    orders = drafts(kit_order(pid, ndc), prednisolone_order(pid))
    signed = hooks.post(
        SIGN, hook_body("order-sign", pid, server=hooks.proxy.base, draftOrders=orders)
    )
    assert cards_of(signed) == []
    selected = hooks.post(
        SELECT, hook_body("order-select", pid, server=hooks.proxy.base, draftOrders=orders)
    )
    (card,) = cards_of(selected)
    assert card["indicator"] == "info" and RIGHT_KIT in card["summary"]


def test_missing_prednisolone_gives_a_warning_with_its_order(
    hooks: Hooks,
) -> None:
    """No prednisolone drafted or on the chart: a warning whose suggestion creates the 30-day
    1 mg/kg/day order from the day before the infusion, same cards with a full prefetch."""
    pid = hooks.put("zs-eligible-4-2kg").patient_id
    day = TODAY + dt.timedelta(days=3)
    body = hook_body(
        "order-sign",
        pid,
        server=hooks.proxy.base,
        draftOrders=drafts(kit_order(pid, RIGHT_KIT, day=day)),
    )
    (card,) = cards_of(hooks.post(SIGN, body))
    assert card["indicator"] == "warning"
    assert "prednisolone" in card["summary"]
    (suggestion,) = card["suggestions"]
    (action,) = suggestion["actions"]
    order = action["resource"]
    assert action["type"] == "create"
    assert order["medicationCodeableConcept"]["coding"][0]["code"] == "8638"
    bounds = order["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"]
    assert bounds == {
        "start": (day - dt.timedelta(days=1)).isoformat(),
        "end": (day + dt.timedelta(days=28)).isoformat(),
    }
    doses = {
        d["type"]["coding"][0]["code"]: d["doseQuantity"]
        for d in order["dosageInstruction"][0]["doseAndRate"]
    }
    assert doses["ordered"]["value"] == 4.2 and doses["ordered"]["unit"] == "mg"
    r4_valid(order)
    prefetched = dict(body, prefetch=full_prefetch(hooks.proxy.base, pid))
    hooks.proxy.reset()
    assert cards_of(hooks.post(SIGN, prefetched)) == [card]
    assert hooks.proxy.calls == []


def test_a_two_year_old_gets_a_critical_age_card(
    hooks: Hooks,
) -> None:
    """Age on the order's date 2 years or more: critical, citing section 1."""
    patient = hooks.put("zs-age-over-2")
    pid = patient.patient_id
    orders = drafts(
        kit_order(pid, "71894-139-09", day=patient.infusion_date), prednisolone_order(pid)
    )
    body = hook_body(
        "order-select", pid, server=hooks.proxy.base, draftOrders=orders, selections=[]
    )
    cards = cards_of(hooks.post(SELECT, body))
    age = [c for c in cards if c["source"]["topic"]["code"] == "1"]
    assert [c["indicator"] for c in age] == ["critical"]
    assert "Second birthday" in age[0]["summary"]


def test_orders_that_are_not_zolgensma_raise_nothing(
    hooks: Hooks,
) -> None:
    """Only ZOLGENSMA orders (NDC 71894, or its name) are checked."""
    pid = hooks.put("zs-eligible-4-2kg").patient_id
    body = hook_body(
        "order-sign", pid, server=hooks.proxy.base, draftOrders=drafts(prednisolone_order(pid))
    )
    assert cards_of(hooks.post(SIGN, body)) == []
    by_name = kit_order(pid, RIGHT_KIT)
    by_name["medicationCodeableConcept"] = {"text": "onasemnogene abeparvovec-xioi"}
    body = hook_body(
        "order-sign",
        pid,
        server=hooks.proxy.base,
        draftOrders=drafts(by_name, prednisolone_order(pid)),
    )
    (card,) = cards_of(hooks.post(SIGN, body))
    assert card["indicator"] == "warning" and "names no NDC" in card["summary"]
    create = card["suggestions"][0]["actions"][-1]["resource"]
    assert create["medicationCodeableConcept"]["coding"][0]["code"] == RIGHT_KIT


def test_draft_orders_copied_unchanged(
    hooks: Hooks,
) -> None:
    """The service reads draftOrders only: the request body is not changed by the call."""
    pid = hooks.put("zs-eligible-4-2kg").patient_id
    body = hook_body(
        "order-sign", pid, server=hooks.proxy.base, draftOrders=drafts(kit_order(pid, WRONG_KIT))
    )
    before = copy.deepcopy(body)
    cards_of(hooks.post(SIGN, body))
    assert body == before


def test_logs_hold_no_phi_and_no_token(
    hooks: Hooks,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A call and the feedback on its card log ids and counts only: no patient id, name or
    fhirAuthorization token, even when the clinician's comment names the patient."""
    caplog.set_level(logging.DEBUG)
    patient = hooks.put("zs-eligible-4-2kg")
    body = hook_body("patient-view", patient.patient_id, server=hooks.proxy.base)
    (card,) = cards_of(hooks.post(VIEW, body))
    feedback = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "overrideReason": {
                    "reason": card["overrideReasons"][0],
                    "userComment": f"{patient.name} ({patient.patient_id}) seen today",
                },
                "outcomeTimestamp": "2026-11-21T15:31:00Z",
            }
        ]
    }
    assert hooks.post(f"{VIEW}/feedback", feedback).status_code == 200
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("smart_app")]
    assert any(card["uuid"] in line for line in logged)
    for secret in (patient.patient_id, patient.name.split()[-1], "opaque-fhir-token"):
        assert secret not in caplog.text


def test_a_written_plan_before_infusion_and_its_prednisolone_order(
    hooks: Hooks,
    fhir_server: str,
) -> None:
    """With the app's plan written (as proposals) for an infusion in 3 days: the patient-view
    card says so; a ZOLGENSMA order for the right kit raises nothing at signing, the plan's
    prednisolone order being on the chart."""
    patient = hooks.put("zs-eligible-4-2kg")
    pid = patient.patient_id
    day = TODAY + dt.timedelta(days=3)
    gateway = FhirGateway(fhir_server)
    evaluation = service.evaluate(gateway, pid, on=TODAY, infusion_date=day)
    service.write(gateway, evaluation, Confirmation(recorded=NOW))
    (card,) = cards_of(hooks.post(VIEW, hook_body("patient-view", pid, server=hooks.proxy.base)))
    assert card["indicator"] == "info"
    assert card["summary"] == "ZOLGENSMA plan: infusion on 24 Nov 2026 (in 3 days)"
    assert json.loads(card["links"][0]["appContext"]) == {"infusionDate": day.isoformat()}
    orders = drafts(kit_order(pid, RIGHT_KIT, day=day))
    body = hook_body("order-sign", pid, server=hooks.proxy.base, draftOrders=orders)
    assert cards_of(hooks.post(SIGN, body)) == []
