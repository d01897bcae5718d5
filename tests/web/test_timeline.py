"""The plan page's timeline: every label placed where it meets no other (boxes estimated from the
SVG the template writes), today, the infusion and the day-30 liver check marked, one date format."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import xml.etree.ElementTree as ET
from itertools import combinations
from pathlib import Path

import pytest
from jinja2 import Environment, FileSystemLoader

from smart_app.rules.model import Plan
from smart_app.sandbox.patients import synthetic_patients
from smart_app.web import present
from smart_app.web.words import clinical_date
from tests.web.test_charts import NS, assert_no_overlap, text_boxes
from tests.web.test_present import TODAY, _plan

TEMPLATES = Path(__file__).resolve().parents[2] / "smart_app" / "web" / "templates"
NBSP = "\u00a0"


def _render(plan: Plan) -> ET.Element:
    """The timeline template rendered for a plan and parsed as XML (fails if ill-formed)."""
    timeline = present.timeline(plan)
    assert timeline is not None
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True)
    raw = env.get_template("_timeline.html").render(timeline=timeline)
    assert "style=" not in raw and "<script" not in raw
    return ET.fromstring(raw[raw.index("<svg") :])  # noqa: S314 - our own template's output


def _today(plan: Plan, day: int) -> Plan:
    """The plan as if evaluated `day` days from its infusion."""
    return dataclasses.replace(plan, evaluated_on=plan.infusion_date + dt.timedelta(days=day))


def _events(root: ET.Element) -> dict[str, tuple[float, ET.Element]]:
    """Each event's label text: its line's x and its group."""
    found = {}
    for group in root.iter(f"{NS}g"):
        if "event" in group.get("class", "").split():
            found[group.find(f"{NS}text").text] = (float(group.find(f"{NS}line").get("x1")), group)
    return found


def _circles(root: ET.Element) -> list[tuple[float, float, float, str]]:
    """Every mark: centre, radius and tooltip."""
    found = []
    for group in root.iter(f"{NS}g"):
        if "mark" in group.get("class", "").split():
            circle = group.find(f"{NS}circle")
            x, y, r = (float(circle.get(k)) for k in ("cx", "cy", "r"))
            found.append((x, y, r, group.find(f"{NS}title").text))
    return found


@pytest.fixture(scope="module")
def eligible() -> Plan:
    """The eligible 4.2 kg infant's plan (evaluated 3 days before infusion)."""
    return _plan("zs-eligible-4-2kg")


def test_the_timeline_marks_today_the_infusion_and_the_day_30_check(eligible: Plan) -> None:
    root = _render(eligible)
    events = _events(root)
    assert set(events) == {"today", "infusion", "day-30 liver check"}
    assert events["today"][0] < events["infusion"][0] < events["day-30 liver check"][0]
    infusion = eligible.infusion_date
    title = events["infusion"][1].find(f"{NS}title").text
    assert title == f"ZOLGENSMA infusion: {clinical_date(infusion)} (infusion day)"
    check = events["day-30 liver check"][1].find(f"{NS}title").text
    assert check.endswith(f"(day{NBSP}28 after infusion)")
    assert_no_overlap(root)


@pytest.mark.parametrize(
    ("day", "labels"),
    [
        (-1, {"today", "infusion", "day-30 liver check"}),  # infusion a day after the steroid
        (0, {"infusion \u00b7 today", "day-30 liver check"}),
        (1, {"today", "infusion", "day-30 liver check"}),
        (27, {"infusion", "today", "day-30 liver check"}),
        (28, {"infusion", "day-30 liver check \u00b7 today"}),
        (-25, {"infusion", "day-30 liver check"}),  # too long before: not drawn
    ],
)
def test_labels_never_overlap_wherever_today_falls(eligible: Plan, day: int, labels: set) -> None:
    root = _render(_today(eligible, day))
    assert set(_events(root)) == labels
    boxes = assert_no_overlap(root)
    events = _events(root)
    if {"today", "infusion"} <= set(events) and abs(day) == 1:  # side by side, each by its line
        named = {b.text: b for b in boxes}
        left, right = ("today", "infusion") if day < 0 else ("infusion", "today")
        assert named[left].right <= named[right].left
        assert named[left].right <= events[right][0] and events[left][0] <= named[right].left


def test_lines_do_not_cross_other_labels(eligible: Plan) -> None:
    for day in (-3, -1, 0, 1, 27, 28, 29):
        root = _render(_today(eligible, day))
        boxes = text_boxes(root)
        for text, (x, group) in _events(root).items():
            line = group.find(f"{NS}line")
            top, bottom = float(line.get("y1")), float(line.get("y2"))
            crossed = [
                b.text
                for b in boxes
                if b.text != text and b.left < x < b.right and b.bottom > top and b.top < bottom
            ]
            assert crossed == [], (day, text)


def test_marks_never_overlap_and_same_day_marks_are_nudged_apart(eligible: Plan) -> None:
    root = _render(eligible)
    circles = _circles(root)
    assert len(circles) == len(
        [i for i in eligible.schedule if i.kind.value not in ("taper-step", "steroid-end")]
    )
    for (x1, y1, r1, t1), (x2, y2, r2, t2) in combinations(circles, 2):
        assert (x1 - x2) ** 2 + (y1 - y2) ** 2 >= (r1 + r2 + 1) ** 2, (t1, t2)
    rows = [
        float(line.get("y1")) for line in root.iter(f"{NS}line") if line.get("class") == "row-line"
    ]
    for _x, y, r, title in circles:  # each stays within its own row's band
        assert min(abs(y - row) for row in rows) + r <= present.ROW_PX / 2, title


def test_dates_are_in_the_one_format_and_days_in_words(eligible: Plan) -> None:
    root = _render(eligible)
    ticks = [t.text for t in root.iter(f"{NS}text") if t.get("class") == "tick-label"]
    infusion = eligible.infusion_date
    assert clinical_date(infusion) in ticks
    assert all(re.fullmatch(rf"\d{{1,2}}{NBSP}[A-Z][a-z]{{2}}{NBSP}\d{{4}}", t) for t in ticks)
    titles = [t.text for t in root.iter(f"{NS}title")]
    assert not [t for t in titles + ticks if re.search(r"\d{4}-\d\d-\d\d|\(d-?\d|Day -1 after", t)]
    assert any(f"(1{NBSP}day before infusion)" in t for t in titles)
    assert any(f"(day{NBSP}7 after infusion)" in t for t in titles)


def test_dose_labels_sit_inside_their_bars_clear_of_the_marks(eligible: Plan) -> None:
    root = _render(eligible)
    boxes = {b.text: b for b in text_boxes(root)}
    bars = [g for g in root.iter(f"{NS}g") if "bar" in g.get("class", "").split()]
    assert eligible.steroids is not None
    assert len(bars) == 1 + len(eligible.steroids.taper)
    for group in bars:
        rect = group.find(f"{NS}rect")
        left, top = float(rect.get("x")), float(rect.get("y"))
        right, bottom = left + float(rect.get("width")), top + float(rect.get("height"))
        label = group.find(f"{NS}text")
        assert label is not None and label.text.startswith(("4.2", "2.1", "1.1"))
        box = boxes[label.text]
        assert left <= box.left and box.right <= right and top <= box.top and box.bottom <= bottom
        for x, y, r, title in _circles(root):
            assert not (box.left - r < x < box.right + r and box.top - r < y < box.bottom + r), (
                title
            )
    taper = [g for g in bars if "bar-taper" in g.get("class", "")]
    assert all("institution default" in g.find(f"{NS}title").text for g in taper)


def test_every_sandbox_plan_timeline_is_free_of_overlaps() -> None:
    drawn = 0
    for patient in synthetic_patients(today=TODAY):
        if patient.infusion_date is None or patient.infusion_date <= TODAY:
            continue
        plan = _plan(patient.patient_id)
        if present.timeline(plan) is None:
            continue
        assert_no_overlap(_render(plan))
        drawn += 1
    assert drawn >= 5
