"""The printed documents in Chromium: opened from the plan and follow-up views, printed to PDF by
the browser's own print-to-PDF, and read back from the PDF's text."""

from __future__ import annotations

import base64
import datetime as dt
import io
import shutil
import subprocess
import unicodedata

import pytest
from pypdf import PdfReader
from selenium.webdriver.common.by import By
from selenium.webdriver.common.print_page_options import PrintOptions
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from smart_app.rules import label
from smart_app.sandbox.run import Sandbox
from tests.browser.axe import assert_accessible
from tests.browser.conftest import ARTIFACTS, launch_into_frame, severe_console_entries, wait_for
from tests.smartsandbox import TODAY

pytestmark = [pytest.mark.browser, pytest.mark.integration]

A4_CM = (21.0, 29.7)
LETTER_CM = (21.59, 27.94)
PLANNING = "zs-eligible-4-2kg"
"""4.2 kg: kit 71894-123-03, 24.8 mL at 24.8 mL/h, prednisolone 4.2 mg = 1.4 mL."""
BLOCKED = "zs-age-over-2"
ON_PLAN = "zs-day-28"
"""5.4 kg, infused 28 days ago (the browser test of test_browser.py may decide its taper)."""


def _day(offset: int, *, base: dt.date = TODAY) -> str:
    """A date as the documents print it ('24 Nov 2026')."""
    when = base + dt.timedelta(days=offset)
    return f"{when.day} {when:%b} {when.year}"


def _open_document(driver: WebDriver, document: str) -> None:
    """Click a document's link in the app (it opens a tab of its own) and switch to that tab."""
    before = set(driver.window_handles)
    driver.find_element(By.CSS_SELECTOR, f"a[data-document={document}]").click()
    WebDriverWait(driver, 30).until(lambda d: len(set(d.window_handles) - before) == 1)
    (tab,) = set(driver.window_handles) - before
    driver.switch_to.window(tab)
    wait_for(driver, "#document-h")


def _close_tab(driver: WebDriver, home: str) -> None:
    """Close the document's tab and go back to the EHR's window."""
    driver.close()
    driver.switch_to.window(home)


def _print(driver: WebDriver, name: str, *, page_cm: tuple[float, float] = A4_CM) -> PdfReader:
    """Chromium's print-to-PDF of the current page; the PDF and its first page (PNG, when
    poppler's pdftoppm is installed) are kept under .artifacts/."""
    options = PrintOptions()
    options.page_width, options.page_height = page_cm
    options.background = True
    pdf = base64.b64decode(driver.print_page(options))
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.pdf"
    path.write_bytes(pdf)
    pdftoppm = shutil.which("pdftoppm")
    if pdftoppm:
        first_page = ["-png", "-r", "110", "-f", "1", "-l", "1", "-singlefile"]
        subprocess.run(  # noqa: S603 - Debian's pdftoppm, fixed arguments
            [pdftoppm, *first_page, str(path), str(ARTIFACTS / name)],
            check=True,
            timeout=60,
        )
        assert (ARTIFACTS / f"{name}.png").stat().st_size > 5_000
    return PdfReader(io.BytesIO(pdf))


def _text(reader: PdfReader) -> str:
    """The PDF's text on one line, compatibility forms folded (the 'fi' ligature, no-break
    spaces)."""
    pages = " ".join(page.extract_text() or "" for page in reader.pages)
    return " ".join(unicodedata.normalize("NFKC", pages).split())


def test_the_documents_of_a_plan_print_to_pdf_with_their_key_facts(
    browser: WebDriver, smart_sandbox: Sandbox
) -> None:
    browser.get_log("browser")
    launch_into_frame(browser, smart_sandbox, PLANNING)
    home = browser.current_window_handle
    shown = browser.find_element(By.ID, "infusion_date").get_attribute("value")
    infusion = dt.date.fromisoformat(shown)  # the plan page's date: the documents follow it

    _open_document(browser, "pharmacy")
    assert_accessible(browser, context="pharmacy sheet")
    pharmacy = _print(browser, "doc-pharmacy")
    text = _text(pharmacy)
    assert len(pharmacy.pages) == 1  # one sheet of A4
    assert "Pharmacy verification sheet" in text
    assert "Amara Okafor-Test" in text and PLANNING in text
    assert "Kit NDC 71894-123-03" in text
    assert "Dose volume 24.8 mL" in text
    assert "24.8 mL/h over 60 minutes" in text
    assert "4.2 mg = 1.4 mL by mouth once daily" in text
    assert "Prescriber Practitioner/sandbox-practitioner" in text
    assert label.BOXED_WARNING.title in text
    assert "Back to the patient" not in text  # the toolbar is not printed
    letter = _print(browser, "doc-pharmacy-letter", page_cm=LETTER_CM)
    assert len(letter.pages) == 1  # and of US Letter
    assert "Kit NDC 71894-123-03" in _text(letter)
    _close_tab(browser, home)

    browser.switch_to.frame(browser.find_element(By.TAG_NAME, "iframe"))
    _open_document(browser, "checklist")
    assert_accessible(browser, context="infusion-day checklist")
    checklist = _print(browser, "doc-checklist")
    text = _text(checklist)
    assert len(checklist.pages) == 1
    for item in (
        "Consent",
        "Kit received and stored",
        "Prednisolone given from the day before",
        "Afebrile and well",
        "Baseline labs reviewed",
        "IV access with a back-up line",
        "Vitals",
    ):
        assert item in text, item
    assert "NDC 71894-123-03, 3 vials" in text
    assert f"started {_day(-1, base=infusion)} at 4.2 mg (1.4 mL)" in text
    _close_tab(browser, home)

    browser.switch_to.frame(browser.find_element(By.TAG_NAME, "iframe"))
    _open_document(browser, "handout")
    assert_accessible(browser, context="caregiver handout")
    handout = _print(browser, "doc-handout")
    text = _text(handout)
    assert len(handout.pages) <= 2
    assert f"on {_day(0, base=infusion)}" in text
    assert f"{_day(-1, base=infusion)} {_day(28, base=infusion)} 1.4 mL (4.2 mg)" in text
    assert f"{_day(7, base=infusion)} day 7 after infusion" in text
    assert f"On {_day(28, base=infusion)} the doctor checks the liver" in text
    assert "When to call" in text
    assert "yellow skin or yellow whites of the eyes" in text
    assert "misses a dose of prednisolone or vomits it up" in text
    _close_tab(browser, home)
    assert severe_console_entries(browser) == []


def test_a_blocked_plan_prints_as_not_an_order(browser: WebDriver, smart_sandbox: Sandbox) -> None:
    """The plan page offers no documents for a blocked plan; the address still answers, and
    says plainly that nothing may be dispensed."""
    launch_into_frame(browser, smart_sandbox, BLOCKED)
    assert not browser.find_elements(By.CSS_SELECTOR, "a[data-document]")
    plan_page = browser.execute_script("return location.href").split("?", 1)[0]
    browser.switch_to.default_content()
    browser.get(f"{plan_page}print/pharmacy")
    wait_for(browser, "#document-h")
    assert_accessible(browser, context="blocked pharmacy sheet")
    text = _text(_print(browser, "doc-pharmacy-blocked"))
    assert "NOT AN ORDER: do not dispense" in text
    assert "not eligible" in text
    assert "71894-" not in text and "mL/h" not in text


def test_a_patient_on_a_plan_prints_the_plan_as_written(
    browser: WebDriver, smart_sandbox: Sandbox
) -> None:
    launch_into_frame(browser, smart_sandbox, ON_PLAN, ready="#where-h")
    home = browser.current_window_handle
    infusion = TODAY - dt.timedelta(days=28)
    _open_document(browser, "pharmacy")
    text = _text(_print(browser, "doc-pharmacy-on-plan"))
    assert "The plan as written to the chart" in text
    assert "Kit NDC 71894-125-04" in text
    assert "Dose volume 30.3 mL" in text
    assert "30.3 mL/h" in text
    assert f"5.4 mg = 1.8 mL by mouth once daily (1 mg/kg/day), from {_day(-1, base=infusion)}" in (
        text
    )
    _close_tab(browser, home)
    browser.switch_to.frame(browser.find_element(By.TAG_NAME, "iframe"))
    _open_document(browser, "handout")
    assert_accessible(browser, context="handout on a plan")
    text = _text(_print(browser, "doc-handout-on-plan"))
    assert "was given ZOLGENSMA" in text
    assert f"{_day(35, base=infusion)} day 35 after infusion" in text
    assert f"{_day(7, base=infusion)} day 7 after infusion" not in text
    _close_tab(browser, home)


@pytest.mark.parametrize("width", [1400, 800])
def test_the_links_and_a_document_on_screen(
    browser: WebDriver, smart_sandbox: Sandbox, width: int
) -> None:
    """The print links on the plan and follow-up views and the handout as a page, at 1400 and
    800 px (the EHR frame's width): pictures under .artifacts/ to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    browser.set_window_size(width, 1400)
    try:
        launch_into_frame(browser, smart_sandbox, PLANNING)
        browser.find_element(By.ID, "documents").screenshot(
            str(ARTIFACTS / f"doc-links-plan-{width}.png")
        )
        launch_into_frame(browser, smart_sandbox, ON_PLAN, ready="#where-h")
        links = browser.find_element(By.ID, "documents")
        assert links.is_displayed()
        links.screenshot(str(ARTIFACTS / f"doc-links-followup-{width}.png"))
        home = browser.current_window_handle
        _open_document(browser, "handout")
        overflow = browser.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0  # nothing wider than the window
        browser.save_screenshot(str(ARTIFACTS / f"doc-handout-screen-{width}.png"))
        _close_tab(browser, home)
    finally:
        browser.set_window_size(1280, 1900)
