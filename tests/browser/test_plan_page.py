"""The plan page in Chromium: the decision first, evidence for every criterion, no order-ready
kit on a blocked plan, two screens tall, a bad date kept on the page, a readable confirmation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from smart_app.sandbox import run
from tests.browser.axe import assert_accessible
from tests.browser.conftest import (
    ARTIFACTS,
    launch_in_tab,
    launch_into_frame,
    severe_console_entries,
    wait_for,
)
from tests.smartsandbox import NOW, TODAY

pytestmark = [pytest.mark.browser, pytest.mark.integration]

WIDE_PX = 1400
FRAME_PX = 800
MAX_PLAN_HEIGHT_PX = 2500
NBSP = "\u00a0"


@pytest.fixture(scope="module")
def own_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[run.Sandbox]:
    """A sandbox of this module's own: it writes a plan, which the shared one must not see."""
    with run.running(
        today=TODAY,
        now=NOW,
        work_dir=tmp_path_factory.mktemp("plan-page-sandbox"),
        app_state={"today": lambda: TODAY, "now": lambda: NOW},
    ) as sandbox:
        yield sandbox


@pytest.fixture
def wide(browser: WebDriver) -> Iterator[WebDriver]:
    """The browser at 1400 px wide, put back to the fixture's size afterwards."""
    browser.set_window_size(WIDE_PX, 1000)
    try:
        yield browser
    finally:
        browser.set_window_size(1280, 1900)


def _height(driver: WebDriver) -> int:
    """The page's whole height in CSS pixels."""
    return int(driver.execute_script("return document.documentElement.scrollHeight"))


def _whole_page(driver: WebDriver, name: str, *, width_px: int) -> None:
    """Save the whole page at `width_px` to .artifacts/<name> (the window grown to fit)."""
    ARTIFACTS.mkdir(exist_ok=True)
    driver.set_window_size(width_px, 1000)
    driver.set_window_size(width_px, _height(driver) + 100)
    driver.save_screenshot(str(ARTIFACTS / name))
    driver.set_window_size(width_px, 1000)


def _cells(driver: WebDriver, row_id: str) -> list[str]:
    """The visible text of a checklist row's cells (header cell first)."""
    row = driver.find_element(By.ID, row_id)
    return [c.text for c in row.find_elements(By.CSS_SELECTOR, "th, td")]


def test_a_blocked_plan_shows_no_ndc_as_an_order(wide: WebDriver, own_sandbox: run.Sandbox) -> None:
    """A 2-year-old: not eligible. The kit band is only a collapsed lookup 'not an order'."""
    launch_in_tab(wide, own_sandbox, "zs-age-over-2")
    decision = wide.find_element(By.ID, "decision")
    assert "Not Eligible" in wide.find_element(By.ID, "status-h").text
    assert "Writing is blocked: the plan is not eligible" in decision.text
    assert "Not met: Under 2 years on the infusion date" in decision.text
    assert "no date when this could change" in decision.text
    assert decision.location["y"] < 400  # the decision on the first screen
    lookup = wide.find_element(By.ID, "kit-lookup")
    assert lookup.get_attribute("open") is None
    summary = lookup.find_element(By.TAG_NAME, "summary").text
    assert summary == "Kit lookup for information: not an order"
    body = wide.find_element(By.TAG_NAME, "body").text
    assert "71894-" not in body  # no NDC on the screen until the lookup is opened
    for order_ready in ("dose", "course", "schedule-table", "write-plan", "write-h"):
        assert not wide.find_elements(By.ID, order_ready), order_ready
    assert not wide.find_elements(By.CSS_SELECTOR, "svg.timeline")
    assert wide.find_element(By.ID, "boxed-warning").is_displayed()
    age = _cells(wide, "criterion-age")
    assert age[1] == "not met" and "24 months" in age[2]
    assert "last labelled infusion date 2 Nov 2026" in age[0].replace(NBSP, " ")
    assert_accessible(wide, context="blocked plan (not eligible)")
    _whole_page(wide, "plan-blocked-1400.png", width_px=WIDE_PX)
    _whole_page(wide, "plan-blocked-800.png", width_px=FRAME_PX)
    lookup.find_element(By.TAG_NAME, "summary").click()
    assert "71894-" in lookup.text and "not an order" in lookup.text


def test_a_preterm_infant_is_offered_the_term_date_in_one_click(
    browser: WebDriver, own_sandbox: run.Sandbox
) -> None:
    launch_into_frame(browser, own_sandbox, "zs-preterm-34wk")
    assert "Deferred" in browser.find_element(By.ID, "status-h").text
    age = _cells(browser, "criterion-age")
    assert "postmenstrual age 36+3 weeks" in age[2].replace(NBSP, " ")
    assert_accessible(browser, context="deferred preterm plan")
    browser.find_element(By.ID, "retry-link").click()
    wait_for(browser, "#write-plan")
    heading = browser.find_element(By.ID, "status-h").text.replace(NBSP, " ")
    assert heading == "Eligibility on 26 Nov 2026: Eligible"


def test_the_checklist_shows_the_evidence_for_an_eligible_infant(
    wide: WebDriver, own_sandbox: run.Sandbox
) -> None:
    launch_in_tab(wide, own_sandbox, "zs-eligible-4-2kg")
    assert "Eligible" in wide.find_element(By.ID, "status-h").text
    rows = wide.find_elements(By.CSS_SELECTOR, "#criteria tbody tr")
    assert len(rows) == 8
    for row in rows:
        cells = [c.text for c in row.find_elements(By.CSS_SELECTOR, "th, td")]
        assert cells[1] == "met", cells
    weight = _cells(wide, "criterion-weight")
    assert weight[2].startswith("4.20 kg") and "band 4.1–4.5 kg" in weight[2]
    assert weight[3].replace(NBSP, " ") == "19 Nov 2026"
    assert "Observation/zs-eligible-4-2kg-weight" in weight[4]
    titer = _cells(wide, "criterion-titer")
    assert titer[2] == "<1:25" and "≤ 1:50" in titer[0]
    assert titer[3].replace(NBSP, " ") == "5 Nov 2026"
    assert "Observation/zs-eligible-4-2kg-aav9" in titer[4]
    smn1 = _cells(wide, "criterion-smn1")
    assert "SMN1: 0 copies" in smn1[2] and "Observation/zs-eligible-4-2kg-smn1" in smn1[4]
    age = _cells(wide, "criterion-age")
    assert age[2].startswith("2 months") and "12 Sep 2028" in age[0].replace(NBSP, " ")
    alt = _cells(wide, "baseline-ALT")
    assert alt[2].replace(NBSP, " ") == "24 U/L"
    assert alt[3].replace(NBSP, " ") == "17 Nov 2026"
    assert alt[4].replace(NBSP, " ") == "0.53 × ULN" and alt[6] == "within range"
    assert alt[5].replace(NBSP, " ") == "45 U/L (reported)"
    assert "Observation/zs-eligible-4-2kg-alt-b" in alt[7]
    inr = _cells(wide, "baseline-INR")
    assert inr[2] == "1.0"  # INR has no unit
    tests = wide.find_elements(By.CSS_SELECTOR, "#baseline-tests tbody tr")
    assert len(tests) == 10
    assert_accessible(wide, context="eligible plan")


def test_the_eligible_plan_fits_two_screens_with_the_write_action_in_reach(
    wide: WebDriver, own_sandbox: run.Sandbox
) -> None:
    launch_in_tab(wide, own_sandbox, "zs-eligible-4-2kg")
    _whole_page(wide, "plan-eligible-800.png", width_px=FRAME_PX)
    _whole_page(wide, "plan-eligible-1400.png", width_px=WIDE_PX)
    height = _height(wide)
    assert height <= MAX_PLAN_HEIGHT_PX, height
    link = wide.find_element(By.CSS_SELECTOR, "#next-step a[href='#write-h']")
    assert link.location["y"] < 700  # on the first screen
    assert wide.find_element(By.ID, "write-plan").location["y"] < height - 400  # not the bottom
    details = wide.find_element(By.ID, "write-details")
    assert details.get_attribute("open") is None
    summary = wide.find_element(By.ID, "write-summary").text
    assert "2 orders, 1 care plan, 15 tasks, 1 provenance record." in summary
    assert "create (unless already there)" not in wide.page_source
    assert len(wide.find_elements(By.CSS_SELECTOR, "svg.timeline")) == 1
    assert len(wide.find_elements(By.CSS_SELECTOR, "table.schedule")) == 1
    assert "1 day before infusion" in wide.find_element(By.ID, "course").text
    dose = wide.find_element(By.ID, "dose").text.replace(NBSP, " ")
    assert "4.96 × 10¹⁴ vg" in dose and "3 × 8.3 mL vials" in dose and "0 ×" not in dose
    link.click()
    assert wide.execute_script("return location.hash") == "#write-h"


def test_a_bad_date_returns_to_the_plan_with_the_error_beside_the_field(
    browser: WebDriver, own_sandbox: run.Sandbox
) -> None:
    launch_into_frame(browser, own_sandbox, "zs-eligible-10-8kg-14mo")
    field = browser.find_element(By.ID, "infusion_date")
    assert field.get_attribute("min") == TODAY.isoformat()
    assert field.get_attribute("max") > TODAY.isoformat()
    page = browser.execute_script("return location.href").split("?", 1)[0]
    browser.get(f"{page}?view=plan&infusion_date=2026-11-01")  # a past date, sent by hand
    wait_for(browser, "#infusion-date-error")
    error = browser.find_element(By.ID, "infusion-date-error")
    assert "cannot be in the past" in error.text
    field = browser.find_element(By.ID, "infusion_date")
    assert "infusion-date-error" in field.get_attribute("aria-describedby").split()
    assert field.get_attribute("aria-invalid") == "true"
    assert browser.find_element(By.ID, "status-h").is_displayed()  # the plan, not a dead end
    assert browser.find_element(By.ID, "write-plan").is_displayed()
    assert_accessible(browser, context="plan with a bad date")
    ARTIFACTS.mkdir(exist_ok=True)
    browser.switch_to.default_content()
    browser.save_screenshot(str(ARTIFACTS / "plan-bad-date-frame.png"))


def test_the_confirmation_names_each_resource_and_the_next_steps(
    wide: WebDriver, own_sandbox: run.Sandbox
) -> None:
    wide.get_log("browser")
    launch_in_tab(wide, own_sandbox, "zs-eligible-band-edge-5-0kg")
    wide.find_element(By.ID, "write-plan").click()
    wait_for(wide, "#written-h")
    names = [
        r.find_element(By.TAG_NAME, "th").text
        for r in wide.find_elements(By.CSS_SELECTOR, "#written-table tbody tr")
    ]
    assert names[:3] == [
        "ZOLGENSMA kit order for the prescriber to sign",
        "Prednisolone order for the prescriber to sign",
        "Task: Baseline checks",
    ]
    assert "Care plan" in names and names[-1] == "Provenance"
    assert names.count("Task: Lab draw") == 11  # days 7-56 weekly, 70, 84 and 92
    first_draw = wide.find_element(By.XPATH, "//tr[th='Task: Lab draw']").text
    assert "29 Nov 2026" in first_draw.replace(NBSP, " ")  # day 7 after 22 Nov
    steps = wide.find_element(By.ID, "next-steps").text.replace(NBSP, " ")
    assert "Sign the kit order and the prednisolone order in the EHR" in steps
    assert "Start prednisolone on 21 Nov 2026, 1 day before infusion" in steps
    assert "First lab draw on 29 Nov 2026 (day 7 after infusion)" in steps
    assert "MedicationRequest/" in wide.find_element(By.ID, "written-table").text
    assert_accessible(wide, context="written confirmation")
    _whole_page(wide, "plan-written-1400.png", width_px=WIDE_PX)
    _whole_page(wide, "plan-written-800.png", width_px=FRAME_PX)
    assert severe_console_entries(wide) == []


def test_the_favicon_is_an_svg_served_as_one(browser: WebDriver, own_sandbox: run.Sandbox) -> None:
    launch_into_frame(browser, own_sandbox, "zs-eligible-4-2kg")
    icon = browser.find_element(By.CSS_SELECTOR, "link[rel=icon]").get_attribute("href")
    kind = browser.execute_script(
        "return fetch(arguments[0]).then(r => r.headers.get('content-type'))", icon
    )
    assert kind.startswith("image/svg+xml")
