"""View models for the pages: patient banner, what will be written, the plan timeline."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Resource = Mapping[str, Any]


@dataclass(frozen=True)
class Banner:
    """The patient banner: who this plan is for."""

    name: str
    birth_date: str
    sex: str
    identifier: str
    patient_id: str


def banner(resources: Iterable[Resource], patient_id: str) -> Banner:
    """Name, birth date, sex and the first identifier from the Patient resource."""
    patient = next((r for r in resources if r.get("resourceType") == "Patient"), {})
    names = patient.get("name") or [{}]
    official = next((n for n in names if n.get("use") == "official"), names[0])
    text = official.get("text") or " ".join(
        [*official.get("given", []), official.get("family", "")]
    )
    identifiers = patient.get("identifier") or [{}]
    return Banner(
        name=text.strip() or "(no name recorded)",
        birth_date=patient.get("birthDate") or "not recorded",
        sex=patient.get("gender") or "not recorded",
        identifier=str(identifiers[0].get("value") or ""),
        patient_id=patient_id,
    )


@dataclass(frozen=True)
class WriteRow:
    """One entry of the transaction, as the clinician reads it before confirming."""

    action: str
    resource_type: str
    what: str


def _describe(resource: Resource) -> str:
    """A short human description of a resource the app writes."""
    kind = resource.get("resourceType")
    if kind == "MedicationRequest":
        medication = resource.get("medicationCodeableConcept", {}).get("text", "")
        dosage = (resource.get("dosageInstruction") or [{}])[0].get("text", "")
        return f"{medication}: {dosage}".strip(": ")
    if kind == "CarePlan":
        return str(resource.get("title", "treatment plan"))
    if kind == "Task":
        return str(resource.get("description") or resource.get("code", {}).get("text", ""))
    if kind == "DetectedIssue":
        return f"acknowledged finding: {resource.get('detail') or resource.get('code', {})}"
    if kind == "Provenance":
        return "who confirmed the plan, when, and under which label and policy version"
    return str(kind)


def write_rows(bundle: Resource) -> list[WriteRow]:
    """Every entry of a transaction Bundle: create, update (retire) or reactivate."""
    rows = []
    for entry in bundle.get("entry", []):
        resource = entry.get("resource", {})
        method = entry.get("request", {}).get("method", "")
        status = resource.get("status", "")
        action = f"set to {status}" if method == "PUT" else "create (unless already there)"
        rows.append(WriteRow(action, str(resource.get("resourceType")), _describe(resource)))
    return rows


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
