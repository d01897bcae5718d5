"""A real headless Chromium through the EHR launch: plan page, acknowledge, write, refusals."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from smart_app.fhir import codes
from smart_app.sandbox.run import Sandbox
from tests.browser.conftest import ARTIFACTS, launch_into_frame, wait_for
from tests.smartsandbox import follow

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def _server_json(url: str) -> dict:
    """A search on the FHIR server behind the sandbox (the test's own view, no token)."""
    answer = requests.get(url, headers={"Accept": "application/fhir+json"}, timeout=30)
    answer.raise_for_status()
    return answer.json()


def test_ehr_launch_acknowledge_write_lands_on_the_server(
    browser: WebDriver, smart_sandbox: Sandbox
) -> None:
    patient = "zs-alt-elevated"
    launch_into_frame(browser, smart_sandbox, patient)
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
    wait_for(browser, "#written-h")
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
    wait_for(browser, "iframe")
    browser.get(browser.find_element(By.PARTIAL_LINK_TEXT, "new tab").get_attribute("href"))
    wait_for(browser, "#status-h")
    assert "Eligible" in browser.find_element(By.ID, "status-h").text
    assert browser.find_element(By.CSS_SELECTOR, "section.banner").is_displayed()
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "plan-page.png"))
    assert (ARTIFACTS / "plan-page.png").stat().st_size > 10_000


def test_deferred_patient_cannot_be_written(browser: WebDriver, smart_sandbox: Sandbox) -> None:
    patient = "zs-active-infection"
    launch_into_frame(browser, smart_sandbox, patient)
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
    wait_for(browser, "iframe")
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
    wait_for(browser, "#status-h")
    assert "Eligible" in browser.find_element(By.ID, "status-h").text
    browser.get(callback)
    assert "Launch refused" in browser.title


def test_chromium_runs_the_pages_without_console_errors(
    browser: WebDriver, smart_sandbox: Sandbox
) -> None:
    """CSP and markup: no blocked resources or script errors on the plan page."""
    browser.get_log("browser")  # drain what earlier tests left (their refusals are 400s)
    # an eligible infant no test of the shared sandbox writes (a written plan opens the
    # follow-up view instead of the plan page)
    launch_into_frame(browser, smart_sandbox, "zs-eligible-gap-6030g")
    entries = browser.get_log("browser")
    severe = [e for e in entries if e.get("level") == "SEVERE" and "favicon" not in e["message"]]
    assert severe == []


def _frame_screenshot(driver: WebDriver, name: str) -> None:
    """Save the whole EHR window (chart and app frame) to .artifacts/<name>."""
    ARTIFACTS.mkdir(exist_ok=True)
    driver.switch_to.default_content()
    driver.save_screenshot(str(ARTIFACTS / name))
    driver.switch_to.frame(driver.find_element(By.TAG_NAME, "iframe"))


def _app_resources(sandbox: Sandbox, kind: str, patient: str) -> list[dict]:
    """The app's own resources of one type for a patient, from the server behind the sandbox."""
    found = _server_json(
        f"{sandbox.fhir_upstream}/{kind}?patient={patient}&identifier={codes.APP_IDENTIFIER}|"
        "&_count=200"
    )
    return [e["resource"] for e in found.get("entry") or []]


def test_day_28_follow_up_decides_the_taper_and_confirms_tasks(
    browser: WebDriver, smart_sandbox: Sandbox
) -> None:
    """The day-28 taper path end to end: follow-up view, charts, decision, Task updates."""
    patient = "zs-day-28"
    browser.get_log("browser")
    launch_into_frame(browser, smart_sandbox, patient, ready="#where-h")
    where = browser.find_element(By.ID, "where-h").text
    assert "Day 28 after infusion" in where
    assert "HCP Day 30" in where
    assert "liver assessment due" in where.lower()
    assert "Proposed: taper over 28 days" in browser.find_element(By.ID, "proposal").text
    change = browser.find_element(By.ID, "dose-change").text
    assert "1 mg/kg/day is now 6.1 mg (was 5.4 mg)" in change
    steps = browser.find_elements(By.CSS_SELECTOR, "#steps tbody tr")
    assert [r.find_elements(By.TAG_NAME, "td")[4].text for r in steps] == ["3.1", "1.5"]
    charts = browser.find_elements(By.CSS_SELECTOR, "#charts figure svg.chart")
    assert len(charts) == 5
    assert all(c.is_displayed() for c in charts)
    assert browser.find_elements(By.CSS_SELECTOR, "#chart-liver-enzymes details table")
    _frame_screenshot(browser, "followup-day28.png")

    browser.find_element(By.ID, "record-decision").click()  # no exam stated: refused
    assert not browser.find_elements(By.ID, "notice")
    browser.find_element(By.ID, "exam-normal").click()
    browser.find_element(By.ID, "record-decision").click()
    wait_for(browser, "#notice")
    assert "Liver assessment recorded (taper)" in browser.find_element(By.ID, "notice").text
    assert not browser.find_elements(By.ID, "decision")  # no longer due
    assert "from 22 Nov 2026" in browser.find_element(By.ID, "where").text

    orders = _app_resources(smart_sandbox, "MedicationRequest", patient)
    tapers = [o for o in orders if any("/taper-" in i["value"] for i in o["identifier"])]
    assert sorted(
        o["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] for o in tapers
    ) == [1.5, 3.1]
    checks = [
        t
        for t in _app_resources(smart_sandbox, "Task", patient)
        if t["code"]["coding"][0]["code"] == "liver-assessment"
    ]
    assert [(t["status"], t["businessStatus"]["coding"][0]["code"]) for t in checks] == [
        ("completed", "taper")
    ]
    assert all(
        o["valueReference"]["reference"].startswith("Observation/") for o in checks[0]["output"]
    )

    resulted = browser.find_elements(By.CSS_SELECTOR, "#tasks-resulted tbody tr")
    assert len(resulted) == 4
    earlier = browser.find_element(By.ID, "notice")  # the decision's notice, still shown
    browser.find_element(By.ID, "confirm-tasks").click()
    WebDriverWait(browser, 30).until(ec.staleness_of(earlier))
    wait_for(browser, "#notice")
    assert "4 Task(s) completed" in browser.find_element(By.ID, "notice").text
    assert not browser.find_elements(By.CSS_SELECTOR, "#tasks-resulted tbody tr")
    day7 = [
        t
        for t in _app_resources(smart_sandbox, "Task", patient)
        if t["identifier"][0]["value"].endswith("/task/lab-draw/day7")
    ]
    assert day7[0]["status"] == "completed"
    assert len(day7[0]["output"]) == len(day7[0]["input"])
    _frame_screenshot(browser, "followup-day28-decided.png")
    severe = [
        e
        for e in browser.get_log("browser")
        if e.get("level") == "SEVERE" and "favicon" not in e["message"]
    ]
    assert severe == []


def test_acute_liver_injury_is_an_urgent_banner(browser: WebDriver, smart_sandbox: Sandbox) -> None:
    """The day-15 patient's ALT 22.7 x ULN with bilirubin up: the 5.1 banner on top."""
    launch_into_frame(browser, smart_sandbox, "zs-day-15-liver-injury", ready="#where-h")
    banner = browser.find_element(By.ID, "alert-acute-liver-injury")
    assert banner.get_attribute("role") == "alert"
    assert "URGENT" in banner.text
    assert "22.67 × ULN" in banner.text
    assert "hepatologist" in banner.text
    assert banner.location["y"] < browser.find_element(By.ID, "where").location["y"]
    _frame_screenshot(browser, "followup-liver-injury.png")
    charts = {
        f.get_attribute("id"): f for f in browser.find_elements(By.CSS_SELECTOR, "#charts figure")
    }
    points = charts["chart-liver-enzymes"].find_elements(By.CSS_SELECTOR, "circle title")
    assert any("22.67" in p.get_attribute("textContent") for p in points)
    page = browser.execute_script("return location.href")
    browser.switch_to.default_content()
    browser.get(page)  # the same view in a tab of its own, whole page
    wait_for(browser, "#charts")
    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1280, height + 120)
    browser.save_screenshot(str(ARTIFACTS / "followup-liver-injury-page.png"))
    browser.set_window_size(1280, 1900)
