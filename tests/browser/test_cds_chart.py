"""A real headless Chromium on the sandbox EHR as a CDS Hooks client: the patient-view card above
the app, a wrong kit ordered, its critical card, the suggestion accepted, signing; axe-core on
both pages."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from smart_app.rules.dosing import kit_for_weight
from smart_app.sandbox.run import Sandbox
from tests.browser.axe import assert_accessible
from tests.browser.conftest import ARTIFACTS, wait_for
from tests.smartsandbox import TODAY

pytestmark = [pytest.mark.browser, pytest.mark.integration]

PATIENT = "zs-eligible-4-2kg"
WRONG_NDC = "71894-120-02"
"""The 2.6-3.0 kg kit, for an infant of 4.2 kg."""
INFUSION = TODAY + dt.timedelta(days=7)


def _right_ndc() -> str:
    """The label's kit for 4.2 kg."""
    kit = kit_for_weight(Decimal("4.2"))
    assert kit is not None
    return kit.ndc


def _open_chart(browser: WebDriver, sandbox: Sandbox, patient_id: str) -> None:
    """Press Launch for the patient on the EHR's list and wait for the chart's cards."""
    browser.switch_to.default_content()
    browser.get(sandbox.launcher)
    row = browser.find_element(By.XPATH, f"//tr[td/code[text()='{patient_id}']]")
    row.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(browser, "iframe")
    wait_for(browser, "section.cds-cards")


def _order_codes(browser: WebDriver) -> list[str]:
    """The codes of the draft orders listed."""
    return [e.text for e in browser.find_elements(By.CSS_SELECTOR, "code.order-code")]


def _kit_requests(sandbox: Sandbox, patient_id: str) -> int:
    """How many MedicationRequests the FHIR server holds for the patient (the test's own view)."""
    answer = requests.get(
        f"{sandbox.fhir_upstream}/MedicationRequest?patient={patient_id}&_summary=count",
        headers={"Accept": "application/fhir+json"},
        timeout=30,
    )
    answer.raise_for_status()
    return int(answer.json().get("total", 0))


def test_patient_view_card_above_the_app(browser: WebDriver, smart_sandbox: Sandbox) -> None:
    """An eligible infant's chart: one card (indicator as colour and word, summary, source, a
    SMART launch button) above the app's frame; no axe violation on the chart page."""
    _open_chart(browser, smart_sandbox, PATIENT)
    cards = browser.find_elements(By.CSS_SELECTOR, "article.cds-card")
    assert len(cards) == 1
    card = cards[0]
    assert "cds-info" in card.get_attribute("class")
    assert card.find_element(By.CSS_SELECTOR, ".badge").text == "Info"
    summary = card.find_element(By.CSS_SELECTOR, ".cds-summary").text
    assert "eligible" in summary.lower()
    assert "prescribing information" in card.find_element(By.CSS_SELECTOR, ".cds-source").text
    assert card.find_element(By.CSS_SELECTOR, "button.smart-link").is_displayed()
    frame = browser.find_element(By.TAG_NAME, "iframe")
    assert card.location["y"] + card.size["height"] <= frame.location["y"]
    assert not browser.find_elements(By.CSS_SELECTOR, ".cds-note")
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "cds-chart.png"))
    assert_accessible(browser, context="sandbox chart with CDS cards")


def test_wrong_kit_card_and_accepting_its_suggestion(
    browser: WebDriver, smart_sandbox: Sandbox
) -> None:
    """Ordering the 2.6-3.0 kg kit for 4.2 kg shows a critical card; accepting its suggestion
    replaces the draft with the right NDC and the card is gone; signing writes nothing."""
    right = _right_ndc()
    before = _kit_requests(smart_sandbox, PATIENT)
    _open_chart(browser, smart_sandbox, PATIENT)
    Select(browser.find_element(By.ID, "ndc")).select_by_value(WRONG_NDC)
    date_input = browser.find_element(By.ID, "infusion_date")
    browser.execute_script("arguments[0].value = arguments[1]", date_input, INFUSION.isoformat())
    assert browser.find_element(By.ID, "prednisolone").is_selected()
    browser.find_element(By.CSS_SELECTOR, ".order-form button[type=submit]").click()
    wait_for(browser, "table.orders")
    assert sorted(_order_codes(browser)) == sorted([WRONG_NDC, "8638"])
    critical = browser.find_elements(By.CSS_SELECTOR, "article.cds-card.cds-critical")
    assert len(critical) == 1
    card = critical[0]
    assert card.find_element(By.CSS_SELECTOR, ".badge").text == "Critical"
    assert right in card.find_element(By.CSS_SELECTOR, ".cds-summary").text
    reasons = card.find_elements(By.CSS_SELECTOR, ".cds-override select option")
    assert reasons
    accept = [b for b in card.find_elements(By.CSS_SELECTOR, "button.accept") if right in b.text]
    assert len(accept) == 1
    assert accept[0].text.startswith("Accept: ")
    assert_accessible(browser, context="sandbox orders with a critical card")
    accept[0].click()
    wait_for(browser, ".order-message")
    assert "Accepted:" in browser.find_element(By.CSS_SELECTOR, ".order-message").text
    codes = _order_codes(browser)
    assert right in codes
    assert WRONG_NDC not in codes
    assert not browser.find_elements(By.CSS_SELECTOR, "article.cds-card.cds-critical")
    summaries = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".cds-summary")]
    assert not [text for text in summaries if WRONG_NDC in text]  # the kit card is gone
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "cds-order-accepted.png"))
    browser.find_element(By.ID, "sign-orders").click()
    wait_for(browser, ".sign .signed")
    sign = browser.find_element(By.CSS_SELECTOR, "section.sign").text
    assert "Signed in the sandbox" in sign
    assert "does not write the order to the FHIR server" in sign
    assert _kit_requests(smart_sandbox, PATIENT) == before
