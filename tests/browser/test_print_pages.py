"""The plan page printed from inside the EHR's frame: the patient named, no controls, few pages."""

from __future__ import annotations

import base64
import io

import pytest
from pypdf import PdfReader
from selenium.webdriver.common.print_page_options import PrintOptions
from selenium.webdriver.remote.webdriver import WebDriver

from smart_app.sandbox.run import Sandbox
from tests.browser.conftest import launch_into_frame

pytestmark = [pytest.mark.browser, pytest.mark.integration]

A4_CM = (21.0, 29.7)
MAX_PLAN_PAGES = 4


def _printed_text(driver: WebDriver) -> tuple[int, str]:
    """Chromium's print-to-PDF of the current document: its page count and its text."""
    options = PrintOptions()
    options.page_width, options.page_height = A4_CM
    reader = PdfReader(io.BytesIO(base64.b64decode(driver.print_page(options))))
    text = "\n".join(page.extract_text() for page in reader.pages)
    return len(reader.pages), " ".join(text.split())


def test_the_printed_plan_names_the_patient_and_leaves_out_the_controls(
    browser: WebDriver, smart_sandbox: Sandbox
) -> None:
    """Launched in the EHR (which shows its own banner on screen), the printed plan still names
    the patient; the date picker, the write form and its button are not printed."""
    launch_into_frame(browser, smart_sandbox, "zs-eligible-4-2kg")
    browser.get(browser.execute_script("return location.href"))  # the frame's page on its own
    pages, text = _printed_text(browser)
    assert pages <= MAX_PLAN_PAGES, pages
    assert "DOB" in text and "zs-eligible-4-2kg" in text
    assert "Write plan to chart" not in text
    assert "Re-evaluate" not in text
    assert "Eligibility on" in text
    assert "71894-" in text  # the kit is part of the printed plan
