"""A CDS card's SMART link launches the app with its appContext: the chart's card form carries it,
the EHR keeps it on both launches it makes and answers it as `appContext` in the token response;
a launch from the patient list carries none, and an oversized appContext is refused."""

from __future__ import annotations

import json
import re
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from smart_app.sandbox.oauth.grants import SandboxOAuth
from smart_app.sandbox.oauth.store import MAX_APP_CONTEXT_CHARS
from tests.sandbox.fake_cds import FakeCds
from tests.sandbox.test_cds_client import _card, _ehr
from tests.sandbox.test_oauth import (
    CLIENT_ID,
    OAuthSequence,
    authorize,
    exchange,
    launch_via_page,
    make_settings,
    pkce,
    redirect_params,
)

pytestmark = pytest.mark.integration

APP_CONTEXT = json.dumps({"infusionDate": "2026-12-01", "note": "<b>\"quoted\" & 'tagged'</b>"})
"""A card link's appContext with characters the form must escape."""


@pytest.fixture
def ehr(fhir_base: str, two_patients: tuple[str, str], cds: FakeCds) -> Flask:
    """The sandbox EHR calling the stand-in service."""
    return _ehr(fhir_base, two_patients[0], cds.base)


def _smart_link(app_context: str | None) -> dict[str, str]:
    """The card's SMART link to the registered app, with `app_context` when given."""
    link = {"label": "Plan in the app", "url": "http://127.0.0.1:8092/launch", "type": "smart"}
    if app_context is not None:
        link["appContext"] = app_context
    return link


def _card_form(chart: str) -> dict[str, str]:
    """The hidden fields of the card's SMART-link form (posting to /launch)."""
    match = re.search(r'<form method="post" action="/launch"[^>]*>(.*?)</form>', chart, re.S)
    assert match, "no SMART-link form on the chart"
    fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', match.group(1))
    return {name: unescape(value) for name, value in fields}


def _launch_ids(chart: str) -> tuple[str, str]:
    """The launch ids of the chart's iframe and its new-tab link."""
    frame = re.search(r'<iframe[^>]*src="([^"]+)"', chart)
    tab = re.search(r'<a href="([^"]+)" target="_blank"', chart)
    assert frame and tab
    return tuple(  # type: ignore[return-value]
        parse_qs(urlsplit(unescape(m.group(1))).query)["launch"][0] for m in (frame, tab)
    )


def _token(client: FlaskClient, launch_id: str) -> dict[str, object]:
    """authorize (PKCE S256) and token for a launch id: the token response."""
    verifier, challenge = pkce()
    params = redirect_params(authorize(client, launch=launch_id, challenge=challenge))
    answer = exchange(client, params["code"], verifier)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def _card_chart(ehr: Flask, cds: FakeCds, patient_id: str, app_context: str | None) -> str:
    """A chart whose patient-view card has a SMART link with `app_context`; its HTML."""
    cds.answers["svc-patient-view"] = lambda _: (
        200,
        {"cards": [_card(links=[_smart_link(app_context)])]},
    )
    return launch_via_page(ehr.test_client(), patient_id)[2]


def test_a_card_link_carries_its_app_context_into_both_launches_tokens(
    ehr: Flask, cds: FakeCds, two_patients: tuple[str, str]
) -> None:
    client = ehr.test_client()
    cds.answers["svc-patient-view"] = lambda _: (
        200,
        {"cards": [_card(links=[_smart_link(APP_CONTEXT)])]},
    )
    chart = launch_via_page(client, two_patients[0])[2]
    assert "<b>" not in chart
    form = _card_form(chart)
    assert form["app_context"] == APP_CONTEXT
    assert form["client_id"] == CLIENT_ID
    assert form["patient_id"] == two_patients[0]
    answer = client.post("/launch", data=form)
    assert answer.status_code == 303
    embedded, in_tab = _launch_ids(client.get(answer.headers["Location"]).get_data(as_text=True))
    for launch_id in (embedded, in_tab):
        token = _token(client, launch_id)
        assert token["appContext"] == APP_CONTEXT
        assert token["patient"] == two_patients[0]


def test_a_card_link_without_app_context_sends_none(
    ehr: Flask, cds: FakeCds, two_patients: tuple[str, str]
) -> None:
    chart = _card_chart(ehr, cds, two_patients[0], None)
    assert "app_context" not in _card_form(chart)


def test_a_launch_from_the_patient_list_has_no_app_context(
    ehr: Flask, cds: FakeCds, two_patients: tuple[str, str]
) -> None:
    token = OAuthSequence(ehr.test_client(), two_patients[0])().token()
    assert "appContext" not in token


@pytest.mark.parametrize(
    ("length", "status"),
    [(MAX_APP_CONTEXT_CHARS, 303), (MAX_APP_CONTEXT_CHARS + 1, 413)],
    ids=["at-the-limit", "over-the-limit"],
)
def test_an_oversized_app_context_is_refused(
    ehr: Flask, cds: FakeCds, two_patients: tuple[str, str], length: int, status: int
) -> None:
    client = ehr.test_client()
    cds.answers["svc-patient-view"] = lambda _: (
        200,
        {"cards": [_card(links=[_smart_link("x" * length)])]},
    )
    form = _card_form(launch_via_page(client, two_patients[0])[2])
    assert len(form["app_context"]) == length
    answer = client.post("/launch", data=form)
    assert answer.status_code == status
    if status == 413:
        assert "longer than 4096 characters" in answer.get_data(as_text=True)
        assert "x" * 100 not in answer.get_data(as_text=True)


def test_create_launch_refuses_an_oversized_app_context(fhir_base: str) -> None:
    oauth = SandboxOAuth(make_settings(fhir_base, ()))
    with pytest.raises(ValueError, match="appContext longer than"):
        oauth.create_launch(
            client_id=CLIENT_ID, patient_id="p", app_context="x" * (MAX_APP_CONTEXT_CHARS + 1)
        )
    launch_id = oauth.create_launch(client_id=CLIENT_ID, patient_id="p", app_context="{}")
    found = oauth.store.launch(launch_id)
    assert found is not None
    assert found.context.token_fields()["appContext"] == "{}"
