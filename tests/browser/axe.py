"""axe-core (pinned in tests/browser/package-lock.json) run inside the page a browser test shows."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from selenium.webdriver.remote.webdriver import WebDriver

AXE_JS = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"
WCAG_TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa")

# WebDriver runs this as a function body: it bypasses the page's CSP (no inline script needed).
_RUN = """
const done = arguments[arguments.length - 1];
const options = {iframes: false, runOnly: {type: "tag", values: arguments[0]},
                 resultTypes: ["violations"]};
axe.run(document, options)
  .then(r => done(JSON.stringify({violations: r.violations, version: axe.version})))
  .catch(e => done(JSON.stringify({error: String(e)})));
"""


@functools.cache
def _source() -> str:
    """The axe.min.js that `make node` installs (npm ci in tests/browser)."""
    if not AXE_JS.is_file():
        raise AssertionError(
            f"{AXE_JS} is missing: run `make node` (npm ci --prefix tests/browser)"
        )
    return AXE_JS.read_text(encoding="utf-8")


def violations(driver: WebDriver) -> list[dict]:
    """axe's WCAG 2 A/AA violations in the driver's current browsing context (page or frame)."""
    if not driver.execute_script("return typeof window.axe === 'object'"):
        driver.execute_script(_source())
    driver.set_script_timeout(60)
    answer = json.loads(driver.execute_async_script(_RUN, list(WCAG_TAGS)))
    if "error" in answer:
        raise AssertionError(f"axe-core failed in the page: {answer['error']}")
    return answer["violations"]


def describe(found: list[dict]) -> str:
    """One line per violation (id, impact, help) and one per offending node (target, summary)."""
    lines: list[str] = []
    for violation in found:
        lines.append(f"{violation['id']} ({violation['impact']}): {violation['help']}")
        for node in violation["nodes"]:
            summary = " ".join((node.get("failureSummary") or "").split())
            lines.append(f"    {' '.join(map(str, node['target']))}: {summary[:300]}")
    return "\n".join(lines)


def assert_accessible(driver: WebDriver, *, context: str = "") -> None:
    """Assert axe-core finds no WCAG 2 A/AA violation in the current page; the failure names each
    violation (id, impact) and its nodes."""
    found = violations(driver)
    if found:
        where = context or driver.execute_script("return location.pathname")
        report = describe(found)
        raise AssertionError(f"{len(found)} axe-core violation(s) on {where}:\n{report}")
