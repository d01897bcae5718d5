"""axe-core on every page of the app in Chromium: 0 WCAG 2 A/AA violations."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from smart_app.sandbox import run
from tests.browser.axe import assert_accessible, describe, violations
from tests.browser.conftest import launch_into_frame, severe_console_entries, wait_for
from tests.smartsandbox import NOW, TODAY

pytestmark = [pytest.mark.browser, pytest.mark.integration]

DOCUMENTS = ("pharmacy", "checklist", "handout", "prior-auth")


@pytest.fixture(scope="module")
def own_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[run.Sandbox]:
    """A sandbox of this module's own: it writes a plan, which the shared one must not see."""
    with run.running(
        today=TODAY,
        now=NOW,
        work_dir=tmp_path_factory.mktemp("axe-sandbox"),
        app_state={"today": lambda: TODAY, "now": lambda: NOW},
    ) as sandbox:
        yield sandbox


def test_axe_runs_under_the_apps_csp_and_finds_a_planted_violation(
    browser: WebDriver, own_sandbox: run.Sandbox
) -> None:
    """The CSP allows no inline script, yet WebDriver's script runs axe in the page; and a zero
    means something: an image without alt text planted in the page is reported."""
    browser.switch_to.default_content()
    browser.get(f"{own_sandbox.app_base}/launch.html")
    policy = requests.get(f"{own_sandbox.app_base}/launch.html", timeout=30).headers
    assert "script-src 'self'" in policy["Content-Security-Policy"]
    browser.execute_script(
        "const img = document.createElement('img'); img.src = 'data:,';"
        "document.querySelector('main, body').appendChild(img);"
    )
    found = violations(browser)
    assert [v["id"] for v in found] == ["image-alt"]
    assert "img" in describe(found)
    with pytest.raises(AssertionError, match="1 axe-core violation"):
        assert_accessible(browser, context="planted")


def test_launch_page(browser: WebDriver, own_sandbox: run.Sandbox) -> None:
    browser.get(f"{own_sandbox.app_base}/launch.html")
    assert browser.find_elements(By.TAG_NAME, "h1")
    assert_accessible(browser, context="launch.html")


@pytest.mark.parametrize(
    "patient",
    ["zs-eligible-4-2kg", "zs-alt-elevated", "zs-age-over-2", "zs-weight-missing"],
)
def test_plan_page(browser: WebDriver, own_sandbox: run.Sandbox, patient: str) -> None:
    """Eligible, needs review, not eligible and incomplete (blocked) plans."""
    launch_into_frame(browser, own_sandbox, patient)
    assert_accessible(browser, context=f"plan page of {patient}")


def test_follow_up_page(browser: WebDriver, own_sandbox: run.Sandbox) -> None:
    launch_into_frame(browser, own_sandbox, "zs-day-28", ready="#where-h")
    assert_accessible(browser, context="follow-up of zs-day-28")


def test_follow_up_with_urgent_alert(browser: WebDriver, own_sandbox: run.Sandbox) -> None:
    launch_into_frame(browser, own_sandbox, "zs-day-15-liver-injury", ready="#where-h")
    assert_accessible(browser, context="follow-up of zs-day-15-liver-injury")


@pytest.mark.parametrize("patient", ["zs-eligible-4-2kg", "zs-day-28"])
@pytest.mark.parametrize("document", DOCUMENTS)
def test_printed_documents(
    browser: WebDriver, own_sandbox: run.Sandbox, patient: str, document: str
) -> None:
    """The printed documents (the prior-authorization packet too), for a plan and for a patient
    on one."""
    ready = "#where-h" if patient == "zs-day-28" else "#status-h"
    launch_into_frame(browser, own_sandbox, patient, ready=ready)
    link = browser.find_element(By.CSS_SELECTOR, f"a[data-document={document}]")
    href = link.get_attribute("href")
    browser.switch_to.default_content()
    browser.get(href)  # the link opens a tab of its own
    wait_for(browser, "#document-h")
    assert_accessible(browser, context=f"{document} of {patient}")


def test_prior_auth_packet_filed_to_the_chart(browser: WebDriver, own_sandbox: run.Sandbox) -> None:
    """The packet page after filing its PDF through the sandbox EHR (its scopes, its server)."""
    launch_into_frame(browser, own_sandbox, "zs-eligible-10-8kg-14mo")
    href = browser.find_element(By.CSS_SELECTOR, "a[data-document=prior-auth]").get_attribute(
        "href"
    )
    browser.switch_to.default_content()
    browser.get(href)
    wait_for(browser, "#file-packet")
    browser.find_element(By.ID, "file-packet").click()
    wait_for(browser, "#filed")
    assert "documentreference/prior-auth" in browser.find_element(By.ID, "filed-table").text
    assert_accessible(browser, context="prior-authorization packet, filed")


def test_error_pages(browser: WebDriver, own_sandbox: run.Sandbox) -> None:
    """A session that ended and a refused launch."""
    browser.switch_to.default_content()
    browser.get(f"{own_sandbox.app_base}/p/no-such-context/")
    assert "Session ended" in browser.title
    assert_accessible(browser, context="session ended")
    browser.get(f"{own_sandbox.app_base}/callback?state=unknown&code=x")
    assert "Launch refused" in browser.title
    assert_accessible(browser, context="launch refused")


def test_written_confirmation(browser: WebDriver, own_sandbox: run.Sandbox) -> None:
    """The page after a write (a patient no other test here opens: it is on a plan after)."""
    browser.get_log("browser")
    launch_into_frame(browser, own_sandbox, "zs-eligible-band-edge-5-0kg")
    for box in browser.find_elements(By.CSS_SELECTOR, "input[name=acknowledge]"):
        box.click()
    browser.find_element(By.ID, "write-plan").click()
    wait_for(browser, "#written-h")
    assert_accessible(browser, context="written confirmation")
    assert severe_console_entries(browser) == []
