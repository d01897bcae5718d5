"""The sandbox EHR as a CDS Hooks 2.0 client, against a recording stand-in CDS service and a real
sekmet server: the signed JWT, prefetch, fhirAuthorization, cards on the chart, the order flow,
failures that leave the chart working, and the markdown subset."""

from __future__ import annotations

import copy
import json
import logging
import re
import time
import uuid
from dataclasses import replace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import KeySet

from smart_app.sandbox.cds_cards import markdown_html, parse_cards
from smart_app.sandbox.cds_client import EhrCdsClient, Hook, ServiceToken, fill_template
from smart_app.sandbox.ehr import create_ehr
from smart_app.sandbox.settings import LauncherPatient
from tests import fhirserver
from tests.sandbox.fake_cds import FakeCds
from tests.sandbox.test_oauth import FHIR, PUBLIC, launch_via_page, make_settings

NDC = "http://hl7.org/fhir/sid/ndc"
WRONG_NDC = "71894-120-02"
RIGHT_NDC = "71894-122-03"
SERVERS = pytest.mark.integration
"""Tests with the stand-in CDS service and sekmet (the markdown and parsing tests need none)."""


def _ehr(fhir_base: str, patient_id: str, services_url: str) -> Flask:
    """The sandbox EHR whose app names `services_url` as its CDS services."""
    settings = make_settings(fhir_base, (LauncherPatient(patient_id, "Ada Example", None, "x"),))
    client = replace(settings.clients[0], cds_services_url=services_url)
    return create_ehr(replace(settings, clients=(client,)))


@pytest.fixture
def ehr(fhir_base: str, two_patients: tuple[str, str], cds: FakeCds) -> Flask:
    """The sandbox EHR calling the stand-in service."""
    return _ehr(fhir_base, two_patients[0], cds.base)


def _card(**changes: Any) -> dict[str, Any]:
    """A valid info card."""
    card = {
        "uuid": str(uuid.uuid4()),
        "summary": "Eligible for ZOLGENSMA on 2026-12-01",
        "indicator": "info",
        "detail": "**Kit** 71894-122-03\n- titer *1:25*\n- <script>alert(1)</script>",
        "source": {"label": "ZOLGENSMA prescribing information", "url": "https://example.org/pi"},
        "links": [
            {
                "label": "Open the ZOLGENSMA planner",
                "url": "http://127.0.0.1:8092/launch",
                "type": "smart",
            },
            {"label": "Bad link", "url": "javascript:alert(1)", "type": "absolute"},
        ],
    }
    card.update(changes)
    return card


def _chart(client: FlaskClient, patient_id: str) -> str:
    """Open the patient's chart from the launcher; its HTML."""
    return launch_via_page(client, patient_id)[2]


def _claims(authorization: str, jwks: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of a Bearer JWT, verified with the EHR's JWK Set."""
    scheme, _, token = authorization.partition(" ")
    assert scheme == "Bearer"
    decoded = jwt.decode(token, KeySet.import_key_set(jwks), algorithms=["RS384"])
    return decoded.header, decoded.claims


# the signed JWT, the request, prefetch ------------------------------------------------------


@SERVERS
def test_calls_carry_the_ehr_signed_jwt(
    ehr: Flask, cds: FakeCds, two_patients: tuple[str, str]
) -> None:
    """Discovery and the hook call each carry a fresh RS384 JWT the EHR's JWKS verifies."""
    client = ehr.test_client()
    _chart(client, two_patients[0])
    jwks = client.get("/oauth/jwks").get_json()
    cds_key = next(k for k in jwks["keys"] if k["alg"] == "RS384")
    seen_jtis = set()
    for call, audience in (
        (cds.last(""), cds.base),
        (cds.last("svc-patient-view"), f"{cds.base}/svc-patient-view"),
    ):
        header, claims = _claims(call["authorization"], jwks)
        assert header["alg"] == "RS384"
        assert header["kid"] == cds_key["kid"]
        assert header["jku"] == f"{PUBLIC}/oauth/jwks"
        assert claims["iss"] == PUBLIC
        assert claims["sub"] == "sandbox-ehr"
        assert claims["aud"] == audience
        assert claims["exp"] - claims["iat"] == 300
        assert abs(claims["iat"] - time.time()) < 60
        assert uuid.UUID(claims["jti"]).version == 4
        seen_jtis.add(claims["jti"])
    assert len(seen_jtis) == 2
    # the id_token key does not verify CDS JWTs
    id_token_only = {"keys": [k for k in jwks["keys"] if k["alg"] == "RS256"]}
    with pytest.raises(Exception):  # noqa: B017 - joserfc's "no matching key" error
        _claims(cds.last("")["authorization"], id_token_only)


@SERVERS
def test_the_hook_request_and_prefetch_from_the_server(
    ehr: Flask, cds: FakeCds, two_patients: tuple[str, str], fhir_base: str
) -> None:
    """patient-view: hook, context, fhirServer, a working read-only fhirAuthorization, and the
    prefetch read from the FHIR server (null when the read fails, left out when unfillable)."""
    mine, other = two_patients
    client = ehr.test_client()
    _chart(client, mine)
    body = cds.last("svc-patient-view")["body"]
    assert body["hook"] == "patient-view"
    assert uuid.UUID(body["hookInstance"])
    assert body["context"] == {"userId": "Practitioner/sandbox-practitioner", "patientId": mine}
    assert body["fhirServer"] == FHIR
    authorization = body["fhirAuthorization"]
    assert authorization["token_type"] == "Bearer"  # noqa: S105 - the type, not a secret
    assert 0 < authorization["expires_in"] <= 300
    assert authorization["scope"] == "patient/*.rs"
    assert authorization["subject"] == "zolgensma-planner"
    assert authorization["patient"] == mine
    prefetch = body["prefetch"]
    assert set(prefetch) == {"patient", "weights", "user", "missing"}  # no encounter in context
    assert prefetch["patient"]["resourceType"] == "Patient"
    assert prefetch["patient"]["id"] == mine
    weights = prefetch["weights"]
    assert weights["type"] == "searchset"
    assert weights["entry"]
    for entry in weights["entry"]:
        assert entry["resource"]["code"]["coding"][0]["code"] == "29463-7"
        assert entry["resource"]["subject"]["reference"].endswith(f"Patient/{mine}")
    assert prefetch["user"] is None  # no such Practitioner on the server
    assert prefetch["missing"] is None
    assert fhir_base not in json.dumps(body)  # the upstream URL never shows
    bearer = {"Authorization": f"Bearer {authorization['access_token']}"}
    assert client.get(f"/fhir/Patient/{mine}", headers=bearer).status_code == 200
    assert client.get(f"/fhir/Patient/{other}", headers=bearer).status_code == 403
    write = client.post(
        "/fhir/Observation",
        data=json.dumps(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "x"},
                "subject": {"reference": f"Patient/{mine}"},
            }
        ),
        content_type="application/fhir+json",
        headers=bearer,
    )
    assert write.status_code == 403


def test_fill_template_quotes_values_and_refuses_unknown_tokens() -> None:
    """Tokens become URL-safe values; a template with an unknown token is not filled."""
    values = {"context.patientId": "a b&c", "userPractitionerId": "p1"}
    assert fill_template("Patient/{{context.patientId}}", values) == "Patient/a%20b%26c"
    assert fill_template("X?u={{ userPractitionerId }}", values) == "X?u=p1"
    assert fill_template("X?e={{context.encounterId}}", values) is None


@SERVERS
def test_discovery_is_cached(ehr: Flask, cds: FakeCds, two_patients: tuple[str, str]) -> None:
    """Two charts, one discovery request."""
    client = ehr.test_client()
    _chart(client, two_patients[0])
    _chart(client, two_patients[0])
    assert [c["path"] for c in cds.calls].count("") == 1
    assert [c["path"] for c in cds.calls].count("svc-patient-view") == 2


# the chart ----------------------------------------------------------------------------------


@SERVERS
def test_the_chart_shows_the_cards_above_the_app(
    ehr: Flask, cds: FakeCds, two_patients: tuple[str, str]
) -> None:
    """Indicator as text, summary, escaped markdown detail, source, the smart link as a launch
    button; a javascript: link and an invalid card are not shown."""
    cds.answers["svc-patient-view"] = lambda _: (
        200,
        {"cards": [_card(), {"summary": "no indicator", "source": {"label": "x"}}]},
    )
    html = _chart(ehr.test_client(), two_patients[0])
    cards_at = html.index('class="cds-card cds-info"')
    assert cards_at < html.index("<iframe")
    card = html[cards_at : html.index("</article>", cards_at)]
    assert ">Info<" in card
    assert "Eligible for ZOLGENSMA on 2026-12-01" in card
    assert "<strong>Kit</strong> 71894-122-03" in card
    assert "<li>titer <em>1:25</em></li>" in card
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in card
    assert "<script>" not in html
    assert 'href="https://example.org/pi"' in card
    assert "ZOLGENSMA prescribing information" in card
    assert "javascript:" not in html
    assert "Bad link" not in html
    launch_form = re.search(r'<form method="post" action="/launch"[^>]*>(.*?)</form>', card, re.S)
    assert launch_form
    assert 'name="patient_id" value="' + two_patients[0] in launch_form.group(1)
    assert "Open the ZOLGENSMA planner</button>" in launch_form.group(1)
    assert "1 card(s) from Test patient-view were not valid" in html
    assert "style=" not in html


@pytest.mark.parametrize(
    ("status", "answer", "note"),
    [
        (500, {"error": "boom"}, "answered HTTP 500"),
        (200, {"no": "cards"}, "sent an unreadable answer"),
        (401, {}, "answered HTTP 401"),
    ],
)
@SERVERS
def test_a_failing_service_leaves_the_chart_working(
    ehr: Flask,
    cds: FakeCds,
    two_patients: tuple[str, str],
    status: int,
    answer: Any,
    note: str,
) -> None:
    """The chart still frames the app, with a short note instead of cards."""
    cds.answers["svc-patient-view"] = lambda _: (status, answer)
    html = _chart(ehr.test_client(), two_patients[0])
    assert "<iframe" in html
    assert "CDS service did not answer" in html
    assert note in html


@SERVERS
def test_an_unreachable_service_leaves_the_chart_working(
    fhir_base: str, two_patients: tuple[str, str]
) -> None:
    """Nothing listens at the CDS URL: the chart says so and frames the app."""
    dead = f"http://127.0.0.1:{fhirserver.free_port()}/cds-services"
    html = _chart(_ehr(fhir_base, two_patients[0], dead).test_client(), two_patients[0])
    assert "<iframe" in html
    assert "CDS service did not answer (its discovery failed)." in html


@SERVERS
def test_a_slow_service_times_out(
    cds: FakeCds, fhir_base: str, two_patients: tuple[str, str]
) -> None:
    """A service slower than the read timeout gives a note, not a hang."""
    cds.delay_s = 1.5
    client = EhrCdsClient(
        services_url=cds.base,
        public_base=PUBLIC,
        fhir_upstream=fhir_base,
        key=make_settings(fhir_base, ()).cds_key,
        issue_token=lambda _: ServiceToken("t", 60, "patient/*.rs"),
        service_client_id="app",
        timeout_s=(1.0, 0.5),
    )
    started = time.monotonic()
    answer = client.call(
        Hook.PATIENT_VIEW, context={"patientId": two_patients[0]}, patient_id=two_patients[0]
    )
    assert time.monotonic() - started < 1.4
    assert answer.cards == ()
    assert answer.notes == ("CDS service did not answer: Test patient-view took too long.",)


@SERVERS
def test_no_token_or_jwt_in_the_logs(
    ehr: Flask, cds: FakeCds, two_patients: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """The fhirAuthorization token and the JWTs never reach the logs (even urllib3's DEBUG
    lines); the EHR's CDS log names the service and status, never the patient."""
    caplog.set_level(logging.DEBUG)
    cds.answers["svc-patient-view"] = lambda _: (500, {})
    _chart(ehr.test_client(), two_patients[0])
    call = cds.last("svc-patient-view")
    logged = caplog.text + " ".join(repr(r.args) for r in caplog.records)
    for secret in (
        call["body"]["fhirAuthorization"]["access_token"],
        call["authorization"].split()[1],
        cds.last("")["authorization"].split()[1],
    ):
        assert secret not in logged
    ours = [r for r in caplog.records if r.name == "smart_app.sandbox.cds"]
    assert [r.getMessage() for r in ours] == ["CDS svc-patient-view: HTTP 500"]


# the order form -----------------------------------------------------------------------------


def _kit_ndc(body: dict[str, Any]) -> str | None:
    """The NDC of the ZOLGENSMA draft in a hook request."""
    for entry in body["context"]["draftOrders"]["entry"]:
        coding = entry["resource"]["medicationCodeableConcept"]["coding"][0]
        if coding["system"] == NDC:
            return coding["code"]
    return None


def _order_select(body: dict[str, Any]) -> tuple[int, Any]:
    """A critical card while the wrong kit is drafted, with a replacing suggestion."""
    kit = next(
        e["resource"]
        for e in body["context"]["draftOrders"]["entry"]
        if e["resource"]["medicationCodeableConcept"]["coding"][0]["system"] == NDC
    )
    if _kit_ndc(body) != WRONG_NDC:
        return 200, {"cards": []}
    right = copy.deepcopy(kit)
    del right["id"]
    right["medicationCodeableConcept"]["coding"][0]["code"] = RIGHT_NDC
    return 200, {
        "cards": [
            _card(
                uuid="card-kit",
                summary="Wrong kit for 3.9 kg",
                indicator="critical",
                links=[],
                selectionBehavior="at-most-one",
                overrideReasons=[{"code": "weight-changed", "display": "Weight changed"}],
                suggestions=[
                    {
                        "uuid": "sugg-kit",
                        "label": f"Order kit {RIGHT_NDC}",
                        "isRecommended": True,
                        "actions": [
                            {
                                "type": "delete",
                                "description": "Remove the wrong kit",
                                "resourceId": f"MedicationRequest/{kit['id']}",
                            },
                            {
                                "type": "create",
                                "description": "Order the right kit",
                                "resource": right,
                            },
                        ],
                    }
                ],
            )
        ]
    }


def _form(html: str, action: str) -> dict[str, str]:
    """The hidden fields of the form posting to `action`."""
    match = re.search(
        rf'<form method="post" action="{re.escape(action)}"[^>]*>(.*?)</form>', html, re.S
    )
    assert match, action
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', match.group(1)))


@SERVERS
def test_order_select_accept_override_and_sign(
    ehr: Flask, cds: FakeCds, two_patients: tuple[str, str]
) -> None:
    """Wrong kit -> critical card; accepting its suggestion replaces the draft, sends feedback
    and calls order-select again; signing calls order-sign and writes nothing."""
    mine = two_patients[0]
    cds.answers["svc-order-select"] = _order_select
    cds.answers["svc-order-sign"] = _order_select
    client = ehr.test_client()
    launch_id, _, chart = launch_via_page(client, mine)
    orders_url = f"/chart/{launch_id}/orders"
    form = _form(chart, orders_url)
    assert chart.count('<option value="71894-') == 37
    answer = client.post(
        orders_url,
        data={**form, "ndc": WRONG_NDC, "infusion_date": "2026-12-01", "prednisolone": "yes"},
    )
    assert answer.status_code == 303
    body = cds.last("svc-order-select")["body"]
    drafts = [e["resource"] for e in body["context"]["draftOrders"]["entry"]]
    assert body["context"]["draftOrders"]["type"] == "collection"
    assert [d["status"] for d in drafts] == ["draft", "draft"]
    kit = drafts[0]
    assert body["context"]["selections"] == [f"MedicationRequest/{kit['id']}"]
    assert kit["subject"] == {"reference": f"Patient/{mine}"}
    assert kit["medicationCodeableConcept"]["coding"][0] == {
        "system": NDC,
        "code": WRONG_NDC,
        "display": kit["medicationCodeableConcept"]["text"],
    }
    assert kit["dosageInstruction"][0]["timing"] == {"event": ["2026-12-01"]}
    assert kit["authoredOn"]
    steroid = drafts[1]["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"]
    assert steroid == {"start": "2026-11-30", "end": "2026-12-29"}
    assert drafts[1]["medicationCodeableConcept"]["coding"][0]["code"] == "8638"
    page = client.get(orders_url).get_data(as_text=True)
    assert "Wrong kit for 3.9 kg" in page
    assert ">Critical<" in page
    assert f"Accept: Order kit {RIGHT_NDC}</button>" in page
    assert '<option value="weight-changed">Weight changed</option>' in page
    assert "does not write the order to the FHIR server" in page
    accept = _form(page, f"{orders_url}/accept")
    assert accept["card"] == "card-kit" and accept["suggestion"] == "sugg-kit"
    assert client.post(f"{orders_url}/accept", data=accept).status_code == 303
    feedback = cds.last("svc-order-select/feedback")
    outcome = feedback["body"]["feedback"][0]
    assert outcome["card"] == "card-kit"
    assert outcome["outcome"] == "accepted"
    assert outcome["acceptedSuggestions"] == [{"id": "sugg-kit"}]
    assert outcome["outcomeTimestamp"]
    _claims(feedback["authorization"], client.get("/oauth/jwks").get_json())
    again = cds.last("svc-order-select")["body"]
    assert _kit_ndc(again) == RIGHT_NDC
    new_kit = next(
        e["resource"]["id"]
        for e in again["context"]["draftOrders"]["entry"]
        if e["resource"]["medicationCodeableConcept"]["coding"][0]["system"] == NDC
    )
    assert new_kit != kit["id"]
    assert again["context"]["selections"] == [f"MedicationRequest/{new_kit}"]
    assert len(again["context"]["draftOrders"]["entry"]) == 2
    page = client.get(orders_url).get_data(as_text=True)
    assert "Wrong kit for 3.9 kg" not in page
    assert f"Accepted: Order kit {RIGHT_NDC}." in page
    listed = re.findall(r"<code class=\"order-code\">([^<]*)</code>", page)
    assert listed == [RIGHT_NDC, "8638"]  # the new kit order where the old one stood
    sign = _form(page, f"{orders_url}/sign")
    assert client.post(f"{orders_url}/sign", data=sign).status_code == 303
    sign_body = cds.last("svc-order-sign")["body"]
    assert sign_body["hook"] == "order-sign"
    assert "selections" not in sign_body["context"]
    assert _kit_ndc(sign_body) == RIGHT_NDC
    page = client.get(orders_url).get_data(as_text=True)
    assert "Signed in the sandbox. Nothing was written to the FHIR server." in page


@SERVERS
def test_override_sends_the_reason(ehr: Flask, cds: FakeCds, two_patients: tuple[str, str]) -> None:
    """Overriding a card sends its reason and comment as feedback and sets the card aside."""
    cds.answers["svc-order-select"] = _order_select
    client = ehr.test_client()
    launch_id, _, chart = launch_via_page(client, two_patients[0])
    orders_url = f"/chart/{launch_id}/orders"
    form = {**_form(chart, orders_url), "ndc": WRONG_NDC, "infusion_date": "2026-12-01"}
    client.post(orders_url, data=form)
    page = client.get(orders_url).get_data(as_text=True)
    override = {**_form(page, f"{orders_url}/override"), "reason": "weight-changed"}
    client.post(f"{orders_url}/override", data={**override, "comment": "weighed today"})
    outcome = cds.last("svc-order-select/feedback")["body"]["feedback"][0]
    assert outcome["outcome"] == "overridden"
    assert outcome["overrideReason"] == {
        "reason": {"code": "weight-changed", "display": "Weight changed"},
        "userComment": "weighed today",
    }
    page = client.get(orders_url).get_data(as_text=True)
    assert "Overridden (Weight changed): Wrong kit for 3.9 kg" in page
    assert "Accept: Order kit" not in page


@SERVERS
def test_order_forms_need_csrf_and_a_listed_kit(
    ehr: Flask, cds: FakeCds, two_patients: tuple[str, str]
) -> None:
    """No CSRF token: 400 and no call; an NDC not in the label's table: a message, no call."""
    client = ehr.test_client()
    launch_id, _, chart = launch_via_page(client, two_patients[0])
    orders_url = f"/chart/{launch_id}/orders"
    bad = client.post(orders_url, data={"ndc": WRONG_NDC, "infusion_date": "2026-12-01"})
    assert bad.status_code == 400
    form = _form(chart, orders_url)
    client.post(orders_url, data={**form, "ndc": "12345-678-90", "infusion_date": "2026-12-01"})
    client.post(orders_url, data={**form, "ndc": WRONG_NDC, "infusion_date": "soon"})
    assert not [c for c in cds.calls if c["path"].startswith("svc-order")]
    page = client.get(orders_url).get_data(as_text=True)
    assert "Give the planned infusion date as YYYY-MM-DD." in page
    assert client.get("/chart/unknown/orders").status_code == 404


# cards and markdown -------------------------------------------------------------------------


def test_markdown_escapes_then_formats() -> None:
    """Everything is escaped; only bold, italic, bullets, paragraphs and breaks become tags."""
    html = markdown_html(
        "**Bold** and *it* <img src=x onerror=alert(1)> snake_case_name\n"
        '- one **b**\n* two\nafter\n\npara & "q"'
    )
    assert html == (
        "<p><strong>Bold</strong> and <em>it</em> &lt;img src=x onerror=alert(1)&gt; "
        "snake_case_name</p><ul><li>one <strong>b</strong></li><li>two</li></ul>"
        "<p>after</p><p>para &amp; &quot;q&quot;</p>"
    )
    assert "<img" not in markdown_html("<img src=x>")
    assert markdown_html("a **<b>x</b>**") == "<p>a <strong>&lt;b&gt;x&lt;/b&gt;</strong></p>"
    assert markdown_html("line one\nline two") == "<p>line one<br>line two</p>"
    escaped = markdown_html(r"titer \<1:25, \*not italic\*, a \\ and " + "\ue000 **b**")
    assert escaped == ("<p>titer &lt;1:25, *not italic*, a \\ and  <strong>b</strong></p>")


def test_invalid_cards_and_actions_are_dropped() -> None:
    """Cards without summary, indicator or source label are dropped and counted; actions and
    links that break the spec are left out."""
    parsed = parse_cards(
        {
            "cards": [
                _card(
                    indicator="hard-stop",
                ),
                _card(source={}),
                _card(
                    suggestions=[
                        {
                            "label": "x",
                            "uuid": "s",
                            "actions": [
                                {"type": "delete", "description": "no id"},
                                {"type": "create", "description": "no resource"},
                                {
                                    "type": "update",
                                    "description": "ok",
                                    "resource": {"resourceType": "MedicationRequest", "id": "1"},
                                },
                            ],
                        }
                    ]
                ),
            ]
        },
        service_id="svc",
    )
    assert parsed.dropped == 2
    (card,) = parsed.cards
    assert [a.description for a in card.suggestions[0].actions] == ["ok"]
    assert [link.label for link in card.links] == ["Open the ZOLGENSMA planner"]
    with pytest.raises(ValueError, match="no 'cards' list"):
        parse_cards({"cards": "none"}, service_id="svc")
