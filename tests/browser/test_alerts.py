"""A real headless Chromium on the follow-up page: an urgent alert is acknowledged and its consult
Task created (once, even when the form is sent again), both land on the FHIR server, a later
launch shows them, and axe-core finds no violation on the page before and after."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from smart_app.fhir import codes
from smart_app.sandbox.run import Sandbox
from tests.browser.axe import assert_accessible
from tests.browser.conftest import (
    ARTIFACTS,
    launch_in_tab,
    launch_into_frame,
    severe_console_entries,
    wait_for,
)

pytestmark = [pytest.mark.browser, pytest.mark.integration]

PATIENT = "zs-day-15-liver-injury"
ALERT = "alert-acute-liver-injury"
CONSULT_ITEM = "/task/consult/alert-hepatology-consult/day15"
ACK_ITEM = "/task/alert-review/acute-liver-injury/day15"


def _tasks(sandbox: Sandbox, suffix: str) -> list[dict[str, Any]]:
    """The app's Tasks of the patient whose identifier ends with `suffix`, from the server."""
    answer = requests.get(
        f"{sandbox.fhir_upstream}/Task?patient={PATIENT}&identifier={codes.APP_IDENTIFIER}|"
        "&_count=200",
        headers={"Accept": "application/fhir+json"},
        timeout=30,
    )
    answer.raise_for_status()
    found = [e["resource"] for e in answer.json().get("entry") or []]
    return [t for t in found if any(i["value"].endswith(suffix) for i in t["identifier"])]


def _screenshots(driver: WebDriver, name: str) -> None:
    """The first screen and the whole follow-up page at 1400 px and at 800 px (the EHR frame's
    width)."""
    ARTIFACTS.mkdir(exist_ok=True)
    for width in (1400, 800):
        driver.set_window_size(width, 1000)
        driver.execute_script("window.scrollTo(0, 0)")
        driver.save_screenshot(str(ARTIFACTS / f"{name}-{width}-top.png"))
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(width, min(height + 140, 6000))
        driver.save_screenshot(str(ARTIFACTS / f"{name}-{width}.png"))
    driver.set_window_size(1280, 1900)


def _click_and_wait(driver: WebDriver, element_id: str) -> None:
    """Press a button that posts the page, and wait for the page that answers."""
    old = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.ID, element_id).click()
    WebDriverWait(driver, 60).until(ec.staleness_of(old))
    wait_for(driver, "#where-h")


def test_an_alert_is_acknowledged_and_its_consult_task_created_once(
    browser: WebDriver, smart_sandbox: Sandbox
) -> None:
    browser.get_log("browser")
    launch_in_tab(browser, smart_sandbox, PATIENT, ready="#where-h")
    assert_accessible(browser, context="follow-up with alerts (in a tab)")
    _screenshots(browser, "followup-liver-injury")
    launch_into_frame(browser, smart_sandbox, PATIENT, ready="#where-h")
    alert = browser.find_element(By.ID, ALERT)
    assert alert.location["y"] < browser.find_element(By.ID, "where").location["y"]
    text = alert.text
    assert "URGENT: Possible acute serious liver injury" in text
    assert text.count("ALT 1020 U/L") == 1
    assert "22.67 × ULN" in text
    assert "liver_injury" not in text and "inr_rise_min" not in text
    advice = [li.text for li in browser.find_elements(By.CSS_SELECTOR, f"#{ALERT}-advice li")]
    assert advice[0] == "Promptly assess and closely monitor."
    assert len(advice) == 4 and all(len(point) <= 130 for point in advice)
    assert "overdue" not in browser.find_element(By.ID, "tasks").text.lower()
    assert_accessible(browser, context="follow-up with alerts (in the EHR frame)")

    _click_and_wait(browser, "acknowledge-acute-liver-injury")
    notice = browser.find_element(By.ID, "notice").text
    assert "Possible acute serious liver injury: acknowledged, with Provenance." in notice
    assert "Acknowledged today" in browser.find_element(By.ID, f"{ALERT}-actions").text
    assert not browser.find_elements(By.ID, "acknowledge-acute-liver-injury")
    (ack,) = _tasks(smart_sandbox, ACK_ITEM)
    assert ack["status"] == "completed"

    form_html = browser.find_element(By.ID, f"{ALERT}-form").get_attribute("outerHTML")
    _click_and_wait(browser, "create-acute-liver-injury-hepatology-consult")
    notice = browser.find_element(By.ID, "notice").text
    assert "Task created: Consult a pediatric gastroenterologist or hepatologist promptly." in (
        notice
    )
    (consult,) = _tasks(smart_sandbox, CONSULT_ITEM)
    assert (consult["status"], consult["priority"]) == ("requested", "urgent")
    assert consult["code"]["coding"][0]["code"] == "consult"
    assert consult["basedOn"][0]["reference"].startswith("CarePlan/")
    assert not browser.find_elements(By.ID, "create-acute-liver-injury-hepatology-consult")
    assert "Task in the chart: Consult a pediatric gastroenterologist" in (
        browser.find_element(By.ID, f"{ALERT}-actions").text
    )
    assert_accessible(browser, context="follow-up after the consult Task (in the EHR frame)")

    # The same form sent a second time (a double click, or the page before): nothing new.
    browser.execute_script(
        "document.getElementById(arguments[0]).insertAdjacentHTML('beforeend', arguments[1]);",
        f"{ALERT}-actions",
        form_html.replace(f'id="{ALERT}-form"', 'id="again-form"').replace(
            'id="create-acute-liver-injury-hepatology-consult"', 'id="again"'
        ),
    )
    _click_and_wait(browser, "again")
    assert "nothing new was written" in browser.find_element(By.ID, "notice").text
    assert len(_tasks(smart_sandbox, CONSULT_ITEM)) == 1
    assert len(_tasks(smart_sandbox, ACK_ITEM)) == 1
    assert severe_console_entries(browser) == []

    # A later launch shows both, recorded on the server.
    launch_in_tab(browser, smart_sandbox, PATIENT, ready="#where-h")
    actions = browser.find_element(By.ID, f"{ALERT}-actions").text
    assert "Acknowledged today" in actions
    assert "Task in the chart: Consult a pediatric gastroenterologist" in actions
    assert_accessible(browser, context="follow-up relaunched in a tab")
    _screenshots(browser, "followup-alert-acknowledged")


def test_standing_vigilance_is_ongoing_or_to_confirm_never_overdue(
    browser: WebDriver, smart_sandbox: Sandbox
) -> None:
    """Day 10: inside the TMA and platelet window; day 28: after it. axe on both pages."""
    launch_in_tab(browser, smart_sandbox, "zs-day-10", ready="#where-h")
    assert not browser.find_elements(By.ID, "tasks-overdue")
    ongoing = browser.find_element(By.ID, "tasks-ongoing").text
    assert "TMA and platelet vigilance" in ongoing
    assert "ongoing until 25 Nov 2026" in ongoing
    assert_accessible(browser, context="follow-up of zs-day-10")
    _screenshots(browser, "followup-day10")
    launch_in_tab(browser, smart_sandbox, "zs-day-28-alt-3x", ready="#where-h")
    for overdue in browser.find_elements(By.ID, "tasks-overdue"):
        assert "vigilance" not in overdue.text.lower()
    assert "window ended: confirm" in browser.find_element(By.ID, "tasks-due").text
    assert browser.find_element(By.ID, "alert-liver-tests-worsening").is_displayed()
    assert_accessible(browser, context="follow-up of zs-day-28-alt-3x")
    _screenshots(browser, "followup-alt3x")
