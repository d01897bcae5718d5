"""Browser fixtures shared by the new browser tests: headless Debian Chromium, launches, waits."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from smart_app.sandbox.run import Sandbox

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


def wait_for(driver: WebDriver, css: str) -> None:
    """Wait for an element to be present."""
    WebDriverWait(driver, 30).until(ec.presence_of_element_located((By.CSS_SELECTOR, css)))


def launch_into_frame(
    driver: WebDriver, sandbox: Sandbox, patient_id: str, *, ready: str = "#status-h"
) -> None:
    """Press Launch for a patient on the EHR's list and enter the app's iframe."""
    driver.switch_to.default_content()
    driver.get(sandbox.launcher)
    row = driver.find_element(By.XPATH, f"//tr[td/code[text()='{patient_id}']]")
    row.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(driver, "iframe")
    driver.switch_to.frame(driver.find_element(By.TAG_NAME, "iframe"))
    wait_for(driver, ready)


def launch_in_tab(
    driver: WebDriver, sandbox: Sandbox, patient_id: str, *, ready: str = "#status-h"
) -> None:
    """Launch a patient from the EHR's list, then open the app's page in the whole window."""
    launch_into_frame(driver, sandbox, patient_id, ready=ready)
    page = driver.execute_script("return location.href")
    driver.switch_to.default_content()
    driver.get(page)
    wait_for(driver, ready)


def severe_console_entries(driver: WebDriver) -> list[dict]:
    """The browser console's errors since the last call (favicon misses aside)."""
    return [
        e
        for e in driver.get_log("browser")
        if e.get("level") == "SEVERE" and "favicon" not in e["message"]
    ]
