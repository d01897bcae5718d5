"""A real headless Chromium through the EHR launch: plan page, acknowledge, write, refusals."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from smart_app.fhir import codes
from smart_app.sandbox.run import Sandbox
from tests.smartsandbox import follow

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / ".artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1900",
)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """Debian's Chromium, headless, with a fresh profile (`make test` installs it)."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("chromium and chromedriver are missing: `make test` installs them (Debian)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: WebDriver, css: str) -> None:
    """Wait for an element to be present."""
    WebDriverWait(driver, 30).until(ec.presence_of_element_located((By.CSS_SELECTOR, css)))


def _launch_into_frame(driver: WebDriver, sandbox: Sandbox, patient_id: str) -> None:
    """Press Launch for a patient on the EHR's list and enter the app's iframe."""
    driver.switch_to.default_content()
    driver.get(sandbox.launcher)
    row = driver.find_element(By.XPATH, f"//tr[td/code[text()='{patient_id}']]")
    row.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    _wait(driver, "iframe")
    driver.switch_to.frame(driver.find_element(By.TAG_NAME, "iframe"))
    _wait(driver, "#status-h")


def _server_json(url: str) -> dict:
    """A search on the FHIR server behind the sandbox (the test's own view, no token)."""
    answer = requests.get(url, headers={"Accept": "application/fhir+json"}, timeout=30)
    answer.raise_for_status()
    return answer.json()


def test_ehr_launch_acknowledge_write_lands_on_the_server(
    browser: WebDriver, smart_sandbox: Sandbox
) -> None:
    patient = "zs-alt-elevated"
    _launch_into_frame(browser, smart_sandbox, patient)
    assert "Needs Review" in browser.find_element(By.ID, "status-h").text
    frame_url = browser.execute_script("return location.href")
    assert urlsplit(frame_url).netloc == urlsplit(smart_sandbox.app_base).netloc
    assert "?" not in frame_url  # no code, state or token left in the address
    assert not browser.find_elements(By.CSS_SELECTOR, "section.banner")  # the EHR shows one
    assert browser.find_element(By.CSS_SELECTOR, "svg.timeline").is_displayed()
    ARTIFACTS.mkdir(exist_ok=True)
    browser.switch_to.default_content()
    browser.save_screenshot(str(ARTIFACTS / "ehr-launch-plan.png"))
    browser.switch_to.frame(browser.find_element(By.TAG_NAME, "iframe"))
    browser.find_element(By.ID, "write-plan").click()  # unchecked: the browser refuses
    assert not browser.find_elements(By.ID, "written-h")
    acknowledgements = browser.find_elements(By.CSS_SELECTOR, "input[name=acknowledge]")
    assert [a.get_attribute("value") for a in acknowledgements] == ["liver-function-elevated"]
    for box in acknowledgements:
        box.click()
    browser.find_element(By.ID, "write-plan").click()
    _wait(browser, "#written-h")
    rows = browser.find_elements(By.CSS_SELECTOR, "#written-table tbody tr")
    assert len(rows) >= 18
    plans = _server_json(
        f"{smart_sandbox.fhir_upstream}/CarePlan?patient={patient}"
        f"&identifier={codes.APP_IDENTIFIER}|&status=active"
    )
    assert plans.get("total") == 1
    requests_written = _server_json(
        f"{smart_sandbox.fhir_upstream}/MedicationRequest?patient={patient}&status=draft"
    )
    assert requests_written.get("total") == 2
    issues = _server_json(f"{smart_sandbox.fhir_upstream}/DetectedIssue?patient={patient}")
    assert issues.get("total", 0) >= 1


def test_plan_page_screenshot(browser: WebDriver, smart_sandbox: Sandbox) -> None:
    """The README's picture: an eligible infant in a new tab (with the app's own banner)."""
    browser.switch_to.default_content()
    browser.get(smart_sandbox.launcher)
    row = browser.find_element(By.XPATH, "//tr[td/code[text()='zs-eligible-4-2kg']]")
    row.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    _wait(browser, "iframe")
    browser.get(browser.find_element(By.PARTIAL_LINK_TEXT, "new tab").get_attribute("href"))
    _wait(browser, "#status-h")
    assert "Eligible" in browser.find_element(By.ID, "status-h").text
    assert browser.find_element(By.CSS_SELECTOR, "section.banner").is_displayed()
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "plan-page.png"))
    assert (ARTIFACTS / "plan-page.png").stat().st_size > 10_000


def test_deferred_patient_cannot_be_written(browser: WebDriver, smart_sandbox: Sandbox) -> None:
    patient = "zs-active-infection"
    _launch_into_frame(browser, smart_sandbox, patient)
    assert "Deferred" in browser.find_element(By.ID, "status-h").text
    blocked = browser.find_element(By.CSS_SELECTOR, ".blocked").text
    assert "Writing is blocked: the plan is deferred" in blocked
    assert not browser.find_elements(By.ID, "write-plan")
    plans = _server_json(f"{smart_sandbox.fhir_upstream}/CarePlan?patient={patient}")
    assert plans.get("total") == 0


def test_tampered_and_replayed_state_are_refused(
    browser: WebDriver, smart_sandbox: Sandbox
) -> None:
    """The browser's own session starts a launch; the callback is tampered, then replayed."""
    browser.switch_to.default_content()
    browser.get(smart_sandbox.launcher)
    row = browser.find_element(By.XPATH, "//tr[td/code[text()='zs-eligible-4-2kg']]")
    row.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    _wait(browser, "iframe")
    launch_url = browser.find_element(By.PARTIAL_LINK_TEXT, "new tab").get_attribute("href")
    browser.get(f"{smart_sandbox.app_base}/launch.html")  # gets the app's session cookie
    session = requests.Session()
    for cookie in browser.get_cookies():
        session.cookies.set(cookie["name"], cookie["value"], domain=cookie["domain"])
    hops = follow(session, launch_url, stop_at=f"{smart_sandbox.app_base}/callback")
    callback = hops[-1].url
    state = callback.split("state=", 1)[1].split("&", 1)[0]
    browser.get(callback.replace(state, state[:-4] + "AAAA"))
    assert "Launch refused" in browser.title
    assert "unknown or was already used" in browser.page_source
    browser.get(callback)
    _wait(browser, "#status-h")
    assert "Eligible" in browser.find_element(By.ID, "status-h").text
    browser.get(callback)
    assert "Launch refused" in browser.title


def test_chromium_runs_the_pages_without_console_errors(
    browser: WebDriver, smart_sandbox: Sandbox
) -> None:
    """CSP and markup: no blocked resources or script errors on the plan page."""
    browser.get_log("browser")  # drain what earlier tests left (their refusals are 400s)
    _launch_into_frame(browser, smart_sandbox, "zs-eligible-band-edge-5-0kg")
    entries = browser.get_log("browser")
    severe = [e for e in entries if e.get("level") == "SEVERE" and "favicon" not in e["message"]]
    assert severe == []
