# ruff: noqa: S106 - fake tokens, not credentials
"""A CDS card link's appContext: read from the token response and kept as text through the
launch context and a refresh; its `infusionDate`, checked like a typed date, is the plan page's
default infusion date (anything unreadable is ignored: the default stays tomorrow, and the text is
never shown)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient

from smart_app.web import context, smart
from smart_app.web.plan import context_date
from smart_app.web.state import EXTENSION, WebState
from tests.smartsandbox import TODAY
from tests.web.planner_app import ISS, planner_app, store_context
from tests.web.test_smart import PREVIOUS, TOKEN, clock, exchange, registration, token_response
from tests.web.test_views import FakeGateway, _sandbox_record

TOMORROW = TODAY + dt.timedelta(days=1)
CARD_DAY = TODAY + dt.timedelta(days=3)
PLAN_PATIENT = "zs-eligible-4-2kg"
"""Eligible, 10 weeks old: any date within a year is under the label's age."""
OLDER_PATIENT = "zs-eligible-10-8kg-14mo"
"""Eligible, 14 months old: turns 2 within the year the appContext date may lie in."""
MARKER = "zz-appcontext-marker"
"""Text put in appContext values to check it is never shown or logged."""


def card_context(day: dt.date | str, **more: object) -> str:
    """An appContext as the app's CDS card link writes it."""
    value = day.isoformat() if isinstance(day, dt.date) else day
    return json.dumps({"infusionDate": value, **more})


# --- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "day"),
    [
        (card_context(CARD_DAY), CARD_DAY),
        (card_context(TODAY), TODAY),
        (card_context(TODAY + dt.timedelta(days=365)), TODAY + dt.timedelta(days=365)),
        (card_context(CARD_DAY, note=MARKER, more=[1, {"a": None}]), CARD_DAY),
        (' { "infusionDate" : "' + CARD_DAY.isoformat() + '" } ', CARD_DAY),
    ],
)
def test_context_date_reads_a_good_infusion_date(text: str, day: dt.date) -> None:
    assert context_date(text, today=TODAY) == day


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(None, id="none"),
        pytest.param("", id="empty"),
        pytest.param("{", id="malformed-json"),
        pytest.param('{"infusionDate": "2026-12-01"', id="unterminated-json"),
        pytest.param("infusionDate=2026-12-01", id="not-json"),
        pytest.param('{"infusionDate": "2026-12-01", }', id="trailing-comma"),
        pytest.param("[" * 2000 + "]" * 2000, id="nested-too-deep"),
        pytest.param('"2026-12-01"', id="a-json-string"),
        pytest.param('["2026-12-01"]', id="a-json-list"),
        pytest.param("null", id="json-null"),
        pytest.param("{}", id="no-date"),
        pytest.param('{"infusiondate": "2026-12-01"}', id="wrong-key"),
        pytest.param('{"infusionDate": null}', id="null-date"),
        pytest.param('{"infusionDate": 20261201}', id="number-date"),
        pytest.param('{"infusionDate": ""}', id="empty-date"),
        pytest.param(card_context("tomorrow"), id="a-word"),
        pytest.param(card_context("2026-02-30"), id="no-such-day"),
        pytest.param(card_context("2026-12-01T10:00:00"), id="a-date-time"),
        pytest.param(card_context(f"<script>{MARKER}</script>"), id="markup"),
        pytest.param(card_context(TODAY - dt.timedelta(days=1)), id="yesterday"),
        pytest.param(card_context(TODAY + dt.timedelta(days=366)), id="over-a-year-ahead"),
        pytest.param(card_context("9999-12-31"), id="far-future"),
        pytest.param(card_context(CARD_DAY, pad="x" * smart.MAX_APP_CONTEXT_CHARS), id="too-long"),
    ],
)
def test_context_date_ignores_anything_else(text: str | None) -> None:
    assert context_date(text, today=TODAY) is None


def test_context_date_length_bound_is_inclusive() -> None:
    text = card_context(CARD_DAY, pad="")
    padded = text[:-2] + "x" * (smart.MAX_APP_CONTEXT_CHARS - len(text)) + text[-2:]
    assert len(padded) == smart.MAX_APP_CONTEXT_CHARS
    assert context_date(padded, today=TODAY) == CARD_DAY
    longer = text[:-2] + "x" * (smart.MAX_APP_CONTEXT_CHARS - len(text) + 1) + text[-2:]
    assert context_date(longer, today=TODAY) is None


# --- the token response, the launch context, a refresh -------------------------------------


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    """HTTP faked (the EHR's token endpoint)."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def test_exchange_keeps_the_app_context_as_text(rsps: responses.RequestsMock) -> None:
    sent = card_context(CARD_DAY, note=MARKER)
    rsps.post(TOKEN, json=token_response(appContext=sent))
    assert exchange().app_context == sent


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        {"infusionDate": "2026-12-01"},
        ["2026-12-01"],
        42,
        "x" * (smart.MAX_APP_CONTEXT_CHARS + 1),
    ],
)
def test_exchange_ignores_an_unusable_app_context(
    rsps: responses.RequestsMock, value: object
) -> None:
    rsps.post(TOKEN, json=token_response(appContext=value))
    assert exchange().app_context is None


def test_the_launch_context_carries_the_app_context_both_ways() -> None:
    grant = dataclasses.replace(PREVIOUS, app_context=card_context(CARD_DAY))
    launched = context.LaunchContext.from_grant(grant, iss=ISS, token_endpoint=TOKEN)
    assert launched.app_context == card_context(CARD_DAY)
    assert launched.grant().app_context == card_context(CARD_DAY)
    stored = context.LaunchContext.from_stored(dataclasses.asdict(launched))
    assert stored.app_context == card_context(CARD_DAY)
    without = {k: v for k, v in dataclasses.asdict(launched).items() if k != "app_context"}
    assert context.LaunchContext.from_stored(without).app_context == ""


def test_refresh_keeps_the_app_context(rsps: responses.RequestsMock) -> None:
    rsps.post(TOKEN, json={"access_token": "ACCESS-NEW", "token_type": "Bearer"})
    grant = smart.refresh(
        registration(),
        smart.Endpoints(token=TOKEN),
        refresh_token="REFRESH-OLD",
        previous=dataclasses.replace(PREVIOUS, app_context=card_context(CARD_DAY)),
        clock=clock,
    )
    assert grant.app_context == card_context(CARD_DAY)


# --- the plan page ---------------------------------------------------------------------------


@pytest.fixture
def fake() -> FakeGateway:
    """The fake EHR with two eligible infants of the sandbox."""
    return FakeGateway({p: _sandbox_record(p) for p in (PLAN_PATIENT, OLDER_PATIENT)})


@pytest.fixture
def app(tmp_path: Path, fake: FakeGateway) -> Flask:
    """The app with the fake EHR behind every launch."""
    built = planner_app(tmp_path)
    state: WebState = built.extensions[EXTENSION]
    state.gateway_factory = lambda launched: fake
    return built


def _open(client: FlaskClient, app_context: str, *, patient: str = PLAN_PATIENT) -> str:
    """A launch with this appContext, in the session; its context id."""
    launched = dataclasses.replace(
        context.LaunchContext(iss=ISS, patient=patient), app_context=app_context
    )
    return store_context(client, launched)


def _date_field(page: str) -> str:
    """The plan page's planned infusion date (its date field's value)."""
    match = re.search(
        r'<input id="infusion_date" name="infusion_date" type="date" value="([^"]*)"', page
    )
    assert match, "no date field on the plan page"
    return match.group(1)


def test_the_plan_page_defaults_to_the_card_date(client: FlaskClient) -> None:
    answer = client.get(f"/p/{_open(client, card_context(CARD_DAY))}/")
    assert answer.status_code == 200
    assert _date_field(answer.text) == CARD_DAY.isoformat()
    assert 'aria-invalid="true"' not in answer.text


def test_a_date_in_the_url_wins_over_the_card_date(client: FlaskClient) -> None:
    context_id = _open(client, card_context(CARD_DAY))
    later = TODAY + dt.timedelta(days=9)
    answer = client.get(f"/p/{context_id}/", query_string={"infusion_date": later.isoformat()})
    assert answer.status_code == 200
    assert _date_field(answer.text) == later.isoformat()


@pytest.mark.parametrize(
    "app_context",
    [
        "{",
        card_context(f"{MARKER}-not-a-date"),
        card_context(TODAY - dt.timedelta(days=2), note=MARKER),
        card_context(TODAY + dt.timedelta(days=400), note=MARKER),
        card_context(CARD_DAY, note=MARKER * 400),
    ],
    ids=["malformed", "not-a-date", "past", "over-a-year", "too-long"],
)
def test_an_unreadable_app_context_leaves_tomorrow_and_is_never_shown(
    client: FlaskClient, app_context: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    answer = client.get(f"/p/{_open(client, app_context)}/")
    assert answer.status_code == 200
    assert _date_field(answer.text) == TOMORROW.isoformat()
    assert 'aria-invalid="true"' not in answer.text
    assert MARKER not in answer.text
    assert MARKER not in caplog.text


def test_a_card_date_the_plan_refuses_leaves_tomorrow_without_a_message(
    client: FlaskClient,
) -> None:
    """Within a year, but after the older infant's last day under 2: no error, tomorrow."""
    late = TODAY + dt.timedelta(days=360)
    answer = client.get(f"/p/{_open(client, card_context(late), patient=OLDER_PATIENT)}/")
    assert answer.status_code == 200
    assert _date_field(answer.text) == TOMORROW.isoformat()
    assert 'aria-invalid="true"' not in answer.text
    assert late.isoformat() not in answer.text
