"""The follow-up view over a real SMART launch: routing, CSRF and change checks on its writes,
the abnormal day-30 branch with its consult, re-confirming, and escaping."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape
from typing import Any

import pytest
import requests

from smart_app.fhir import codes
from smart_app.sandbox import run
from tests.integration.test_smart_launch import Launched, ehr_launch, upstream_search
from tests.smartsandbox import field

pytestmark = pytest.mark.integration

ABNORMAL = "zs-day-28-alt-3x"
"""Decided once, by the abnormal-branch test (the browser test decides zs-day-28)."""
TAPERING = "zs-day-45-taper"
"""Only read here."""
PLANNING = "zs-aav9-titer-1-100"
"""No plan: only read."""


@pytest.fixture
def browser() -> Iterator[requests.Session]:
    """A fresh browser (cookies of the EHR and the app)."""
    with requests.Session() as session:
        yield session


def _form(page: str, form_id: str) -> dict[str, Any]:
    """The CSRF token and fingerprint of one of the follow-up page's forms."""
    match = re.search(rf'id="{form_id}".*?name="fingerprint" value="([^"]*)"', page, re.S)
    assert match, f"no {form_id} in the page"
    return {"csrf_token": field(page, "csrf_token"), "fingerprint": unescape(match.group(1))}


def _own(sandbox: run.Sandbox, kind: str, patient: str) -> list[dict[str, Any]]:
    """The app's resources of one type for a patient."""
    return upstream_search(
        sandbox, f"{kind}?patient={patient}&identifier={codes.APP_IDENTIFIER}|&_count=200"
    )


def _counts(sandbox: run.Sandbox, patient: str) -> dict[str, int]:
    """How many of each written type the patient has."""
    kinds = ("MedicationRequest", "Task", "ServiceRequest", "CarePlan")
    counts = {kind: len(_own(sandbox, kind, patient)) for kind in kinds}
    counts["Provenance"] = len(upstream_search(sandbox, "Provenance?_count=500"))
    return counts


def _followup_url(launched: Launched) -> str:
    """The follow-up routes of this launch."""
    return f"{launched.plan_url}followup"


def test_a_patient_on_a_plan_opens_on_the_follow_up_and_the_planning_view_stays_reachable(
    smart_sandbox: run.Sandbox, browser: requests.Session
) -> None:
    launched = ehr_launch(browser, smart_sandbox, TAPERING)
    assert 'id="where-h"' in launched.page
    assert "Day 45 after infusion" in launched.page
    assert "Taper step 2 of 2" in launched.page
    assert 'id="status-h"' not in launched.page
    planning = browser.get(f"{launched.plan_url}?view=plan", timeout=60)
    assert planning.status_code == 200
    assert 'id="status-h"' in planning.text
    assert "already has an active ZOLGENSMA plan" in planning.text
    assert "/followup/" in planning.text


def test_a_patient_without_a_plan_gets_the_plan_page_and_the_follow_up_url_redirects(
    smart_sandbox: run.Sandbox, browser: requests.Session
) -> None:
    launched = ehr_launch(browser, smart_sandbox, PLANNING)
    assert 'id="status-h"' in launched.page
    assert 'id="where-h"' not in launched.page
    answer = browser.get(f"{_followup_url(launched)}/", allow_redirects=False, timeout=60)
    assert answer.status_code == 303
    assert answer.headers["Location"].endswith("/?view=plan")


def test_follow_up_writes_need_the_csrf_token_our_origin_and_the_page_that_was_shown(
    smart_sandbox: run.Sandbox, browser: requests.Session
) -> None:
    launched = ehr_launch(browser, smart_sandbox, TAPERING)
    before = _counts(smart_sandbox, TAPERING)
    tasks = _form(launched.page, "tasks-form")
    url = f"{_followup_url(launched)}/tasks"
    no_token = browser.post(url, data={"fingerprint": tasks["fingerprint"]}, timeout=60)
    forged = browser.post(url, data={**tasks, "csrf_token": "forged"}, timeout=60)
    foreign = browser.post(url, data=tasks, headers={"Origin": "https://evil.example"}, timeout=60)
    stale = browser.post(url, data={**tasks, "fingerprint": "0" * 16}, timeout=60)
    assert [no_token.status_code, forged.status_code, foreign.status_code] == [403, 403, 403]
    assert stale.status_code == 409
    assert "nothing was written" in stale.text
    assert _counts(smart_sandbox, TAPERING) == before
    decision = browser.post(
        f"{_followup_url(launched)}/decision", data={**tasks, "exam": "normal"}, timeout=60
    )
    assert decision.status_code == 409  # the taper is decided: nothing is due
    assert "No liver assessment is due" in decision.text
    assert _counts(smart_sandbox, TAPERING) == before


def test_abnormal_day_30_continues_the_full_dose_with_an_urgent_consult_once(
    smart_sandbox: run.Sandbox, browser: requests.Session
) -> None:
    launched = ehr_launch(browser, smart_sandbox, ABNORMAL)
    page = launched.page
    assert "Proposed: continue 1 mg/kg/day" in page
    assert "Consult pediatric gastroenterology or hepatology promptly" in page
    assert "ALT 135 U/L = 3.00 x ULN" in page
    form = _form(page, "decision-form")
    url = f"{_followup_url(launched)}/decision"
    unstated = browser.post(url, data=form, timeout=60)
    assert unstated.status_code == 422
    assert "clinical exam" in unstated.text
    before = _counts(smart_sandbox, ABNORMAL)

    recorded = browser.post(url, data={**form, "exam": "normal"}, timeout=60)
    assert recorded.status_code == 200, recorded.text
    assert "Liver assessment recorded (continue)" in recorded.text
    after = _counts(smart_sandbox, ABNORMAL)
    assert after["ServiceRequest"] == before["ServiceRequest"] + 1
    assert after["MedicationRequest"] == before["MedicationRequest"] + 1
    (consult,) = _own(smart_sandbox, "ServiceRequest", ABNORMAL)
    assert consult["priority"] == "urgent"
    assert consult["code"]["coding"][0]["code"] == "hepatology-consult"
    assert any(r["reference"].endswith("-alt-d28") for r in consult["reasonReference"])
    continued = [
        o
        for o in _own(smart_sandbox, "MedicationRequest", ABNORMAL)
        if any(i["value"].endswith("/continue") for i in o["identifier"])
    ]
    (order,) = continued
    dosage = order["dosageInstruction"][0]
    assert "= 1 mg/kg/day" in dosage["text"]
    assert dosage["timing"]["repeat"]["boundsPeriod"]["start"] == "2026-11-22"
    day70 = [
        t
        for t in _own(smart_sandbox, "Task", ABNORMAL)
        if t["identifier"][0]["value"].endswith("/task/lab-draw/day70")
    ]
    assert {i["valueCodeableConcept"]["text"] for i in day70[0]["input"]} == {"platelets"}

    again = browser.post(url, data={**form, "exam": "normal"}, timeout=60)
    assert again.status_code == 200
    assert "already recorded today: nothing new was written" in again.text
    assert _counts(smart_sandbox, ABNORMAL) == after
    view = browser.get(f"{_followup_url(launched)}/", timeout=60)
    assert 'id="decision"' not in view.text
    assert "Consult pediatric gastroenterology or hepatology promptly" in view.text  # its Task


def test_follow_up_page_escapes_chart_text(
    smart_sandbox: run.Sandbox, browser: requests.Session
) -> None:
    launched = ehr_launch(browser, smart_sandbox, TAPERING)
    page = launched.page
    assert "<script" not in page.lower()
    assert page.count("<svg") == 5
    assert 'style="' not in page


LIVER = "zs-day-15-liver-injury"
"""Acute liver injury and worsening liver tests on day 15. Only its worsening alert and the
shared repeat-lab Task are written here (tests/browser/test_alerts.py acts on the other)."""


def _alert_form(page: str, code: str) -> dict[str, Any]:
    """The CSRF token, fingerprint and code of one alert's form."""
    match = re.search(rf'id="alert-{code}-form".*?name="fingerprint" value="([^"]*)"', page, re.S)
    assert match, f"no form for the {code} alert"
    return {
        "csrf_token": field(page, "csrf_token"),
        "fingerprint": unescape(match.group(1)),
        "alert": code,
    }


def _items(sandbox: run.Sandbox, patient: str) -> dict[str, dict[str, Any]]:
    """The app's Tasks of a patient by identifier value after the plan key."""
    return {t["identifier"][0]["value"].split("/", 1)[1]: t for t in _own(sandbox, "Task", patient)}


def test_an_alert_is_acknowledged_and_its_repeat_lab_task_created_once(
    smart_sandbox: run.Sandbox, browser: requests.Session
) -> None:
    launched = ehr_launch(browser, smart_sandbox, LIVER)
    page = launched.page
    alert = page[page.index('id="alert-liver-tests-worsening"') :]
    assert "Worsening liver function tests" in alert
    assert "{INR}" not in page and "worsening_urgent" not in page
    form = _alert_form(page, "liver-tests-worsening")
    url = f"{_followup_url(launched)}/alert"
    before = _counts(smart_sandbox, LIVER)
    forged = browser.post(url, data={**form, "action": "", "csrf_token": "forged"}, timeout=60)
    foreign = browser.post(
        url, data={**form, "action": ""}, headers={"Origin": "https://evil.example"}, timeout=60
    )
    stale = browser.post(url, data={**form, "action": "", "fingerprint": "0" * 16}, timeout=60)
    assert [forged.status_code, foreign.status_code, stale.status_code] == [403, 403, 409]
    assert _counts(smart_sandbox, LIVER) == before

    made = browser.post(url, data={**form, "action": "liver-tests"}, timeout=60)
    assert made.status_code == 200, made.text
    assert "Task created: Repeat liver tests with albumin, PTT and INR." in made.text
    after = _counts(smart_sandbox, LIVER)
    assert after["Task"] == before["Task"] + 2  # the acknowledgement and the draw
    assert after["Provenance"] == before["Provenance"] + 1
    items = _items(smart_sandbox, LIVER)
    ack = items["task/alert-review/liver-tests-worsening/day15"]
    assert (ack["status"], ack["code"]["coding"][0]["code"]) == ("completed", "alert-review")
    draw = items["task/lab-draw/alert-liver-tests/day15"]
    assert draw["status"] == "requested"
    assert {i["valueCodeableConcept"]["text"] for i in draw["input"]} >= {"albumin", "PTT", "INR"}
    (care_plan,) = [
        c for c in _own(smart_sandbox, "CarePlan", LIVER) if c.get("status") == "active"
    ]
    assert f"Task/{draw['id']}" in [a["reference"]["reference"] for a in care_plan["activity"]]

    again = browser.post(url, data={**form, "action": "liver-tests"}, timeout=60)
    assert again.status_code == 200
    assert "nothing new was written" in again.text
    acknowledged_again = browser.post(url, data={**form, "action": ""}, timeout=60)
    assert "already acknowledged today: nothing new was written" in acknowledged_again.text
    assert _counts(smart_sandbox, LIVER) == after

    relaunched = ehr_launch(browser, smart_sandbox, LIVER).page
    shown = relaunched[relaunched.index('id="alert-liver-tests-worsening"') :]
    shown = shown[: shown.index("</section>")]
    assert "Acknowledged today" in shown
    assert 'id="acknowledge-liver-tests-worsening"' not in shown
    assert "Task in the chart: Repeat liver tests with albumin, PTT and INR" in unescape(shown)
