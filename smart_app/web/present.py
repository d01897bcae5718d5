"""View models for the pages: the plan timeline and the EHR style."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Bar:
    """A horizontal bar on the timeline (a steroid dose period)."""

    x: float
    width: float
    label: str
    title: str
    tone: str


@dataclass(frozen=True)
class Mark:
    """A dated event on the timeline."""

    x: float
    row: int
    label: str
    title: str
    tone: str


@dataclass(frozen=True)
class Tick:
    """A date tick on the axis."""

    x: float
    label: str


@dataclass(frozen=True)
class Timeline:
    """Geometry of the plan's timeline, in SVG user units."""

    width: int
    height: int
    bars: tuple[Bar, ...]
    marks: tuple[Mark, ...]
    ticks: tuple[Tick, ...]
    rows: tuple[str, ...]


LEFT_PX = 150
RIGHT_PX = 60
ROW_PX = 34
TOP_PX = 30
WIDTH_PX = 960
ROW_OF_KIND = {
    "infusion": 0,
    "steroid-start": 1,
    "liver-assessment": 1,
    "taper-step": 1,
    "steroid-end": 1,
    "lab-draw": 2,
    "baseline": 3,
    "counseling": 3,
    "vigilance": 3,
}
ROWS = ("Infusion", "Prednisolone", "Lab draws", "Other tasks")


def timeline(plan: Mapping[str, Any]) -> Timeline | None:
    """The course and the monitoring schedule laid out on one date axis."""
    schedule = plan.get("schedule") or []
    course = plan.get("prednisolone")
    if not schedule or not course:
        return None
    infusion = dt.date.fromisoformat(plan["infusion_date"])
    days = [int(item["day"]) for item in schedule]
    first, last = min([*days, -1]), max([*days, 0])
    span = max(last - first, 1)

    def x(day: int) -> float:
        return round(LEFT_PX + (day - first) * (WIDTH_PX - LEFT_PX - RIGHT_PX) / span, 1)

    def day_of(text: str) -> int:
        return (dt.date.fromisoformat(text) - infusion).days

    full_start, full_end = day_of(course["start_date"]), day_of(course["full_dose_through"])
    bars = [
        Bar(
            x(full_start),
            x(full_end + 1) - x(full_start),
            f"{course['dose_mg_per_day']} mg/day",
            f"full dose {course['dose_mg_per_day']} mg/day, {course['start_date']} to "
            f"{course['full_dose_through']}",
            "full",
        )
    ]
    for step in course.get("taper") or []:
        start, end = day_of(step["start"]), day_of(step["end"])
        bars.append(
            Bar(
                x(start),
                x(end + 1) - x(start),
                f"{step['dose_mg_per_day']}",
                f"taper {step['mg_per_kg_per_day']} mg/kg/day = {step['dose_mg_per_day']} mg/day,"
                f" {step['start']} to {step['end']} (if the day-30 liver check allows)",
                "taper",
            )
        )
    marks = [
        Mark(
            x(int(item["day"])),
            ROW_OF_KIND.get(item["kind"], 3),
            f"day {item['day']}",
            f"{item['date']} (day {item['day']}): {item['activity']}",
            item["kind"],
        )
        for item in schedule
        if item["kind"] not in ("taper-step", "steroid-end")
    ]
    ticks = [
        Tick(x(day), f"{infusion + dt.timedelta(days=day):%d %b} (d{day})")
        for day in range(0, last + 1, 14 if span > 60 else 7)
    ]
    height = TOP_PX + ROW_PX * len(ROWS) + 30
    return Timeline(WIDTH_PX, height, tuple(bars), tuple(marks), tuple(ticks), ROWS)


COLOR = r"#[0-9a-fA-F]{3,8}"
FONT = r"[A-Za-z0-9 ,'\"-]{1,120}"
SIZE = r"\d{1,3}(\.\d+)?(px|em|rem)"
STYLE_KEYS = {
    "color_background": ("--ehr-background", COLOR),
    "color_text": ("--ehr-text", COLOR),
    "color_highlight": ("--ehr-highlight", COLOR),
    "color_error": ("--ehr-error", COLOR),
    "color_success": ("--ehr-success", COLOR),
    "font_family_body": ("--ehr-font-body", FONT),
    "font_family_heading": ("--ehr-font-heading", FONT),
    "dim_border_radius": ("--ehr-radius", SIZE),
    "dim_font_size": ("--ehr-font-size", SIZE),
}
"""SMART style keys the app honours, each with the only value shape it accepts."""


def style_css(style: Mapping[str, Any]) -> str:
    """CSS custom properties from a SMART style document; anything unexpected is dropped."""
    lines = [
        f"  {var}: {style[key]};"
        for key, (var, pattern) in STYLE_KEYS.items()
        if isinstance(style.get(key), str) and re.fullmatch(pattern, style[key])
    ]
    return ":root {\n" + "\n".join(lines) + "\n}\n" if lines else ""
