"""The charts in Chromium: no two labels overlap as the browser draws them (its own text boxes),
the layout's width estimate is never narrower than the font, axe-core passes; screenshots of the
charts and the timeline at 1400 px and 800 px land in .artifacts/."""

from __future__ import annotations

from itertools import combinations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from smart_app.sandbox.run import Sandbox
from tests.browser.axe import assert_accessible
from tests.browser.conftest import ARTIFACTS, launch_in_tab, severe_console_entries, wait_for
from tests.web.test_charts import estimated_width

pytestmark = [pytest.mark.browser, pytest.mark.integration]

WIDTHS = (1400, 800)
MEASURE = """
return [...document.querySelectorAll(arguments[0])].map(svg => ({
  name: svg.getAttribute('aria-labelledby'),
  scale: svg.getBoundingClientRect().width / svg.viewBox.baseVal.width,
  texts: [...svg.querySelectorAll('text')].map(t => {
    const r = t.getBoundingClientRect();
    return {text: t.textContent, left: r.left, top: r.top, right: r.right, bottom: r.bottom,
            size: parseFloat(t.getAttribute('font-size')),
            bold: t.getAttribute('font-weight') === '700',
            length: t.getComputedTextLength()};
  }),
}));
"""
OVERLAP_TOLERANCE_PX = 0.5
"""Chromium's text boxes are the font's full line box (ascent and descent), a little taller than
the glyphs the layout reserves room for: boxes may touch, not overlap."""


def _measured(driver: WebDriver, css: str) -> list[dict]:
    """Each SVG's texts as Chromium lays them out (screen boxes, computed lengths)."""
    found = driver.execute_script(MEASURE, css)
    assert found, f"no {css} on the page"
    return found


def _overlapping(texts: list[dict]) -> list[tuple[str, str]]:
    """Pairs of texts whose boxes, as drawn, overlap by more than the tolerance."""
    t = OVERLAP_TOLERANCE_PX
    return [
        (a["text"], b["text"])
        for a, b in combinations(texts, 2)
        if min(a["right"], b["right"]) - max(a["left"], b["left"]) > t
        and min(a["bottom"], b["bottom"]) - max(a["top"], b["top"]) > t
    ]


def _check(driver: WebDriver, css: str) -> int:
    """No overlap in any SVG matching css, and every text no wider than the layout assumed."""
    count = 0
    for svg in _measured(driver, css):
        assert _overlapping(svg["texts"]) == [], svg["name"]
        for text in svg["texts"]:
            wide = estimated_width(text["text"], text["size"], bold=text["bold"])
            assert text["length"] <= wide + 0.5, (svg["name"], text["text"], text["length"], wide)
        count += 1
    return count


def _shots(driver: WebDriver, css: str, name: str, width: int) -> None:
    """Screenshots of each element matching css to .artifacts/<name>-<n>-<width>.png."""
    ARTIFACTS.mkdir(exist_ok=True)
    for n, element in enumerate(driver.find_elements(By.CSS_SELECTOR, css), start=1):
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
        element.screenshot(str(ARTIFACTS / f"{name}-{n}-{width}.png"))


@pytest.mark.parametrize("width", WIDTHS)
def test_plan_timeline_labels_do_not_overlap(
    browser: WebDriver, smart_sandbox: Sandbox, width: int
) -> None:
    browser.set_window_size(width, 1000)
    try:
        launch_in_tab(browser, smart_sandbox, "zs-eligible-4-2kg")
        wait_for(browser, "svg.timeline")
        assert _check(browser, "svg.timeline") == 1
        texts = {t["text"] for t in _measured(browser, "svg.timeline")[0]["texts"]}
        assert {"today", "infusion", "day-30 liver check"} <= texts
        _shots(browser, "svg.timeline", "timeline", width)
        assert_accessible(browser, context=f"plan page at {width} px")
        assert severe_console_entries(browser) == []
    finally:
        browser.set_window_size(1280, 1900)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("patient", ["zs-day-28", "zs-day-10", "zs-day-15-liver-injury"])
def test_follow_up_chart_labels_do_not_overlap(
    browser: WebDriver, smart_sandbox: Sandbox, patient: str, width: int
) -> None:
    browser.set_window_size(width, 1000)
    try:
        launch_in_tab(browser, smart_sandbox, patient, ready="#where-h")
        wait_for(browser, "#charts svg.chart")
        assert _check(browser, "#charts svg.chart") == 5
        dose = browser.find_element(By.CSS_SELECTOR, "#chart-steroid-dose svg")
        labels = [t.text for t in dose.find_elements(By.CSS_SELECTOR, ".vline text")]
        if patient == "zs-day-28":
            assert "day-30 liver check \u00b7 today" in labels  # today on the check: one label
        if patient == "zs-day-10":  # before the decision: the planned taper, no stop at day 29
            assert dose.find_elements(By.CSS_SELECTOR, "g.series.planned circle")
            notes = [t.text for t in dose.find_elements(By.CSS_SELECTOR, ".note text")]
            assert notes == ["decision pending"]
        for table in browser.find_elements(By.CSS_SELECTOR, "#charts table.chart-table"):
            headers = [
                th.get_attribute("textContent") for th in table.find_elements(By.TAG_NAME, "th")
            ]
            assert headers[:2] == ["Date", "Day"]
        _shots(browser, "#charts figure svg.chart", f"charts-{patient}", width)
        assert_accessible(browser, context=f"follow-up of {patient} at {width} px")
        assert severe_console_entries(browser) == []
    finally:
        browser.set_window_size(1280, 1900)
