"""A CDS card's SMART link, end to end through the real sandbox (sekmet, the sandbox EHR, the app):
the chart's patient-view card, its smart-link form posted to the EHR, the launch followed to the
plan page, whose infusion date is the card's (CDS Hooks appContext via the token response).

The sandbox here is this module's own: its app's policy puts the card's date 3 days ahead
(cds_infusion_lead_days = 3), so it differs from the plan page's own default (tomorrow), which the
shared sandbox's 1-day lead would match whether or not the appContext arrived.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import re
from collections.abc import Iterator
from html import unescape

import pytest
import requests

from smart_app.rules.policy import DEFAULT_POLICY
from smart_app.sandbox import run
from smart_app.web.words import clinical_date
from tests.integration.test_smart_launch import SessionStore, finish
from tests.smartsandbox import NOW, TODAY, field

pytestmark = pytest.mark.integration

LEAD_DAYS = 3
CARD_DAY = TODAY + dt.timedelta(days=LEAD_DAYS)
"""The card's date: today + the policy's lead days."""
TOMORROW = TODAY + dt.timedelta(days=1)
"""The plan page's default without a card."""
PATIENT = "zs-eligible-4-2kg"
"""Eligible, 10 weeks old; only read here."""


@dataclasses.dataclass(frozen=True)
class LeadSandbox:
    """The module's sandbox and its app's session store."""

    sandbox: run.Sandbox
    store: SessionStore


@pytest.fixture(scope="module")
def lead_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LeadSandbox]:
    """A sandbox whose app's policy has cds_infusion_lead_days = 3 (nothing else differs from
    the shared one)."""
    policy = dataclasses.replace(DEFAULT_POLICY, cds_infusion_lead_days=LEAD_DAYS)
    work_dir = tmp_path_factory.mktemp("lead-sandbox")
    with contextlib.ExitStack() as stack:
        sandbox = stack.enter_context(
            run.running(
                today=TODAY,
                now=NOW,
                work_dir=work_dir,
                app_state={"today": lambda: TODAY, "now": lambda: NOW},
                policy=policy,
            )
        )
        yield LeadSandbox(sandbox, SessionStore([work_dir / "sessions"]))


@pytest.fixture
def browser() -> Iterator[requests.Session]:
    """A browser (cookies for the EHR and the app)."""
    with requests.Session() as session:
        yield session


def _chart(browser: requests.Session, ehr_base: str, patient_id: str) -> str:
    """Press Launch for the patient on the EHR's list; the chart page's HTML."""
    launcher = browser.get(f"{ehr_base}/", timeout=30)
    assert launcher.status_code == 200
    form = {
        "csrf_token": field(launcher.text, "csrf_token"),
        "client_id": field(launcher.text, "client_id"),
        "patient_id": patient_id,
    }
    chart = browser.post(f"{ehr_base}/launch", data=form, timeout=30)
    assert chart.status_code == 200, chart.text
    return chart.text


def _card(chart: str) -> str:
    """The chart's one patient-view card (its HTML)."""
    cards = re.findall(r'<article class="cds-card[^"]*".*?</article>', chart, re.S)
    assert len(cards) == 1, chart
    return cards[0]


def _smart_link_form(card: str) -> dict[str, str]:
    """The hidden fields of the card's smart-link form (posting to the EHR's /launch)."""
    match = re.search(r'<form method="post" action="/launch"[^>]*>(.*?)</form>', card, re.S)
    assert match, card
    fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', match.group(1))
    return {name: unescape(value) for name, value in fields}


def _frame_src(chart: str) -> str:
    """The app URL the chart's iframe loads."""
    frame = re.search(r'<iframe[^>]* src="([^"]+)"', chart)
    assert frame, chart
    return unescape(frame.group(1))


def _words(html: str) -> str:
    """HTML's text on one line: entities decoded, any run of spaces (no-break too) as one."""
    return " ".join(unescape(html).split())


def _date_field(page: str) -> str:
    """The plan page's planned infusion date (its date field's value)."""
    match = re.search(
        r'<input id="infusion_date" name="infusion_date" type="date" value="([^"]*)"', page
    )
    assert match, page
    return match.group(1)


def test_the_card_link_opens_the_plan_on_the_cards_date(
    lead_sandbox: LeadSandbox, browser: requests.Session, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sandbox = lead_sandbox.sandbox
    card = _card(_chart(browser, sandbox.ehr_base, PATIENT))
    assert f"for infusion on {_words(clinical_date(CARD_DAY))}" in _words(card)
    form = _smart_link_form(card)
    app_context = form["app_context"]
    assert json.loads(app_context) == {"infusionDate": CARD_DAY.isoformat()}
    assert form["patient_id"] == PATIENT

    chart = browser.post(f"{sandbox.ehr_base}/launch", data=form, timeout=30)
    assert chart.status_code == 200, chart.text
    launched = finish(browser, _frame_src(chart.text), sandbox.app_base)

    assert CARD_DAY != TOMORROW
    assert _date_field(launched.page) == CARD_DAY.isoformat()
    assert f"Eligibility on {_words(clinical_date(CARD_DAY))}" in _words(launched.page)
    assert 'aria-invalid="true"' not in launched.page
    stored = lead_sandbox.store.context(browser, launched.context_id)
    assert stored["app_context"] == app_context
    assert app_context not in caplog.text


def test_a_launch_from_the_patient_list_plans_for_tomorrow(
    lead_sandbox: LeadSandbox, browser: requests.Session
) -> None:
    sandbox = lead_sandbox.sandbox
    launched = finish(
        browser, _frame_src(_chart(browser, sandbox.ehr_base, PATIENT)), sandbox.app_base
    )
    assert _date_field(launched.page) == TOMORROW.isoformat()
    assert lead_sandbox.store.context(browser, launched.context_id)["app_context"] == ""
