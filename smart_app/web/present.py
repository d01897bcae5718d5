"""View models for the pages: the plan timeline, the EHR style, what a write does."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from smart_app.fhir.transaction import operations
from smart_app.rules.model import ActivityKind, Kit, Plan, ScheduleItem, SteroidCourse
from smart_app.web import charts, words


@dataclass(frozen=True)
class Label:
    """A text of the timeline at its baseline point (its box estimated as charts.py does)."""

    x: float
    y: float
    text: str
    font_px: int
    anchor: str = "middle"
    bold: bool = False


@dataclass(frozen=True)
class Bar:
    """A horizontal bar on the timeline (a steroid dose period); planned: only if allowed."""

    x: float
    width: float
    y: float
    height: float
    label: Label | None
    title: str
    tone: str


@dataclass(frozen=True)
class Mark:
    """A dated event on the timeline, nudged up or down off a neighbour in its row."""

    x: float
    y: float
    row: int
    title: str
    tone: str
    r: float = 4.5


@dataclass(frozen=True)
class Tick:
    """A date tick on the axis; label None where the date would meet its neighbour's."""

    x: float
    label: Label | None


@dataclass(frozen=True)
class Event:
    """A day every row shares (today, infusion, the day-30 liver check): a line and its label."""

    x: float
    y1: float
    y2: float
    label: Label
    title: str
    tone: str


@dataclass(frozen=True)
class Row:
    """A row of the timeline: its name and the y of its line."""

    name: str
    y: float
    label: Label


@dataclass(frozen=True)
class Timeline:
    """Geometry of the plan's timeline, in SVG user units."""

    width: int
    height: int
    bars: tuple[Bar, ...]
    marks: tuple[Mark, ...]
    ticks: tuple[Tick, ...]
    rows: tuple[Row, ...]
    events: tuple[Event, ...] = ()
    left: float = 0.0
    right: float = 0.0


LEFT_PX = 150
RIGHT_PX = 40
ROW_PX = 34
TOP_PAD_PX = 4
WIDTH_PX = 840
MARK_R = 4.5
MARK_NUDGE_PX = MARK_R + 7
FONT_ROW = 12
FONT_TICK = 11
FONT_BAR = 11
TODAY_LOOKBACK_DAYS = 21
"""Today is drawn when it is at most this many days before the first dated item."""
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


def _label(text: charts.Text) -> Label:
    """A laid-out chart text as a timeline label."""
    return Label(text.x, text.y, text.text, text.font_px, str(text.anchor), text.bold)


def _dot(x: float, y: float) -> charts.Box:
    """The box of a mark's circle and its stroke."""
    return charts.Box(x - MARK_R - 1, y - MARK_R - 1, x + MARK_R + 1, y + MARK_R + 1)


def _when(day: dt.date, infusion: dt.date) -> str:
    """'6 Dec 2026 (day 14 after infusion)'."""
    return f"{words.clinical_date(day)} ({words.relative_day((day - infusion).days)})"


def timeline(plan: Plan) -> Timeline | None:
    """The course and the monitoring schedule laid out on one date axis, every label placed
    where it meets no other: today, the infusion and the day-30 liver check as lines across the
    rows with their labels stacked above, dates on the axis (one format), dose labels inside
    their bars, marks of neighbouring days nudged apart."""
    schedule = plan.schedule
    course = plan.steroids
    if not schedule or course is None:
        return None
    infusion = plan.infusion_date

    def day_of(day: dt.date) -> int:
        return (day - infusion).days

    days = [item.day for item in schedule]
    days += [day_of(s.end) + 1 for s in course.taper]
    first, last = min([*days, -1]), max([*days, 0])
    today = day_of(plan.evaluated_on)
    if first - TODAY_LOOKBACK_DAYS <= today < first:
        first = today
    span = max(last - first, 1)
    right_x = WIDTH_PX - RIGHT_PX

    def x(day: int) -> float:
        return round(LEFT_PX + (day - first) * (right_x - LEFT_PX) / span, 1)

    check = course.liver_check_date
    wanted = [(0, "infusion", "infusion", "ZOLGENSMA infusion")]
    wanted.append((day_of(check), "day-30 liver check", "liver-assessment", "day-30 liver check"))
    if first <= today <= last:
        wanted.append((today, "today", "today", "today"))
    by_day: dict[int, list[tuple[str, str, str]]] = {}
    for day, text, tone, what in wanted:
        by_day.setdefault(day, []).append((text, tone, what))
    markers = [
        charts.Marker(
            day,
            " \u00b7 ".join(t for t, _, _ in found),
            f"{', '.join(w for _, _, w in found)}: "
            f"{_when(infusion + dt.timedelta(days=day), infusion)}",
        )
        for day, found in sorted(by_day.items())
    ]
    placed, label_rows = charts.marker_labels(markers, x=x, width_px=WIDTH_PX)
    top = TOP_PAD_PX + label_rows * charts.MARKER_ROW_PX + 6
    rows_bottom = top + ROW_PX * len(ROWS)
    height = rows_bottom + 26
    rows = tuple(
        Row(
            name,
            top + i * ROW_PX + 17,
            Label(8, top + i * ROW_PX + 21, name, FONT_ROW, "start", True),
        )
        for i, name in enumerate(ROWS)
    )
    events = tuple(
        Event(
            x(p.marker.day),
            top + p.line_top,
            rows_bottom,
            _label(p.text.moved(dy=top)),
            p.marker.title,
            by_day[p.marker.day][-1][1] if len(by_day[p.marker.day]) == 1 else "shared",
        )
        for p in placed
    )
    marks = _marks(schedule, rows, x=x, infusion=infusion)
    bars = _bars(course, rows[1].y, marks, [e.x for e in events], x=x, day_of=day_of)
    ticks = _ticks(first, last, infusion, x=x, y=height - 8)
    return Timeline(WIDTH_PX, height, bars, marks, ticks, rows, events, left=LEFT_PX, right=right_x)


def _marks(
    schedule: Sequence[ScheduleItem],
    rows: tuple[Row, ...],
    *,
    x: Callable[[int], float],
    infusion: dt.date,
) -> tuple[Mark, ...]:
    """One circle per dated item, nudged up or down when it would touch a neighbour's."""
    marks: list[Mark] = []
    taken: list[charts.Box] = []
    items = [i for i in schedule if i.kind.value not in SHOWN_IN_COURSE]
    for item in sorted(items, key=lambda i: (i.day, i.kind.value)):
        kind = item.kind.value
        row = ROW_OF_KIND.get(kind, 3)
        at = x(item.day)
        spot = next(
            (
                (at + dx, rows[row].y + dy)
                for dx in (0.0, MARK_NUDGE_PX, 2 * MARK_NUDGE_PX, 3 * MARK_NUDGE_PX)
                for dy in (0.0, -MARK_NUDGE_PX, MARK_NUDGE_PX)
                if not any(_dot(at + dx, rows[row].y + dy).overlaps(t) for t in taken)
            ),
            (at, rows[row].y),
        )
        at, y = spot
        box = _dot(at, y)
        taken.append(box)
        marks.append(Mark(at, y, row, f"{_when(item.date, infusion)}: {item.activity}", kind))
    return tuple(marks)


def _bars(
    course: SteroidCourse,
    y: float,
    marks: tuple[Mark, ...],
    lines: list[float],
    *,
    x: Callable[[int], float],
    day_of: Callable[[dt.date], int],
) -> tuple[Bar, ...]:
    """The full-dose bar and the planned taper bars, each with its dose inside when it fits
    clear of the marks and the event lines on it."""
    start, through = course.start_date, course.full_dose_through
    dose = words.number(course.dose_mg_per_day)
    spans = [
        (
            day_of(start),
            day_of(through),
            (f"{dose} mg/day", f"{dose}"),
            f"full dose {dose} mg/day (1 mg/kg/day), {words.clinical_date(start)} to "
            f"{words.clinical_date(through)}",
            "full",
        )
    ]
    for step in course.taper:
        mg = words.number(step.dose_mg_per_day)
        spans.append(
            (
                day_of(step.start),
                day_of(step.end),
                (f"{mg} mg/day", mg),
                f"planned taper {words.number(step.mg_per_kg_per_day)} mg/kg/day = "
                f"{mg} mg/day, {words.clinical_date(step.start)} to "
                f"{words.clinical_date(step.end)} (an institution default; only if the "
                "day-30 liver check allows)",
                "taper",
            )
        )
    dots = [_dot(m.x, m.y) for m in marks]
    dots += [charts.Box(at - 0.5, y - 11, at + 0.5, y + 11) for at in lines]
    bars = []
    for first, last, texts, title, tone in spans:
        left, right = x(first), x(last + 1)
        box = charts.Box(left, y - 11, right, y + 11)
        layout = charts.Layout(box.grown(-1))
        layout.take(dots, charts.Weight.HARD)
        starts = [left + 6] + [d.right + 2 for d in dots if left < d.right < right]
        candidates = [
            charts.Placed(charts.Text(sx, y + 4, text, FONT_BAR, charts.Anchor.START))
            for text in texts
            for sx in starts
        ]
        found = layout.place(candidates, loosest=charts.Weight.HARD)
        label = _label(found.text) if found else None
        bars.append(Bar(left, right - left, y - 11, 22, label, title, tone))
    return tuple(bars)


def _ticks(
    first: int, last: int, infusion: dt.date, *, x: Callable[[int], float], y: float
) -> tuple[Tick, ...]:
    """Weekly ticks from the infusion (every 2, 3... weeks when crowded), each with its date,
    a date left out where it would meet the one before."""
    per_day = (x(last) - x(first)) / max(last - first, 1)
    widest = charts.text_width("30 Sep 2026", font_px=FONT_TICK)
    step = 7
    while step * per_day < widest + 8 and step < 10 * 7:
        step += 7
    lo = -(-first // step) * step
    layout = charts.Layout(charts.Box(0, y - 20, WIDTH_PX, y + 10))
    ticks = []
    for day in range(lo, last + 1, step):
        at = x(day)
        text = charts.Text(at, y, words.clinical_date(infusion + dt.timedelta(days=day)), FONT_TICK)
        box = text.box
        if box.right > WIDTH_PX - 1:
            text = text.moved(dx=WIDTH_PX - 1 - box.right)
        found = layout.place([charts.Placed(text)], loosest=charts.Weight.HARD)
        ticks.append(Tick(at, _label(found.text) if found else None))
    return tuple(ticks)


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


@dataclass(frozen=True)
class WriteGroup:
    """Entries of one write of one kind, counted: '15 tasks'."""

    name: str
    count: int
    entries: tuple[WrittenEntry, ...]


WRITE_KINDS = (
    ("MedicationRequest", "order", "orders"),
    ("CarePlan", "care plan", "care plans"),
    ("Task", "task", "tasks"),
    ("DetectedIssue", "acknowledged finding", "acknowledged findings"),
    ("Provenance", "provenance record", "provenance records"),
)
"""Resource types the plan writes, in the order the summary names them (singular, plural)."""


def _counted(count: int, one: str, many: str) -> str:
    """'1 care plan', '15 tasks'."""
    return f"{count} {one if count == 1 else many}"


def write_groups(entries: Sequence[WrittenEntry]) -> list[WriteGroup]:
    """A write's entries grouped: orders, care plan, tasks, acknowledged findings, provenance;
    then the changes to an earlier plan's entries (retired)."""
    groups = []
    earlier = tuple(e for e in entries if e.earlier)
    own = [e for e in entries if not e.earlier]
    for kind, one, many in WRITE_KINDS:
        mine = tuple(e for e in own if e.kind == kind)
        if mine:
            groups.append(WriteGroup(_counted(len(mine), one, many), len(mine), mine))
    known = {k for k, _, _ in WRITE_KINDS}
    others = tuple(e for e in own if e.kind not in known)
    if others:
        name = _counted(len(others), "other entry", "other entries")
        groups.append(WriteGroup(name, len(others), others))
    if earlier:
        name = _counted(len(earlier), "entry of an earlier plan", "entries of an earlier plan")
        groups.append(WriteGroup(f"{name} retired", len(earlier), earlier))
    return groups


TASK_NAMES = {
    "baseline": "Baseline checks",
    "counseling": "Caregiver counseling",
    "lab-draw": "Lab draw",
    "liver-assessment": "Day-30 liver assessment",
    "vigilance": "TMA and platelet vigilance",
    "consult": "Consult",
}
"""A Task's clinical name by the kind of its scheduled activity."""
OUTCOME_WORDS = {"existing": "already in the chart"}


@dataclass(frozen=True)
class WrittenEntry:
    """One resource of a write as a clinician reads it: what it is, when it is due, and what
    the server did with it."""

    name: str
    detail: str
    due: dt.date | None
    outcome: str
    reference: str
    item: str
    kind: str = ""
    """The resource type."""
    earlier: bool = False
    """An entry of an earlier plan (the write retires it)."""


def vials(kit: Kit) -> str:
    """'3 × 8.3 mL vials', '2 × 5.5 mL + 1 × 8.3 mL vials': a vial size with 0 is left out."""
    parts = [
        f"{n} × {size} mL"
        for n, size in ((kit.vials_5_5_ml, "5.5"), (kit.vials_8_3_ml, "8.3"))
        if n
    ]
    return " + ".join(parts) + (" vial" if kit.total_vials == 1 else " vials")


def written_entries(
    rows: Sequence[Mapping[str, str]],
    plan: Plan,
    *,
    order_mode: str,
    earlier: frozenset[str] = frozenset(),
) -> list[WrittenEntry]:
    """Every resource of a write by its clinical name: the kit order for the prescriber to sign,
    the prednisolone order, the care plan, each Task with its activity and due date, each
    acknowledged finding, the provenance; `earlier` holds references of an earlier plan's
    entries (a write retires them)."""
    tasks = {i.task_item: i for i in plan.schedule}
    findings = {f.code.value: f for f in plan.eligibility.findings}
    signed = " for the prescriber to sign" if order_mode == "proposal" else " (active order)"
    dose, course = plan.dose, plan.steroids
    entries = []
    for row in rows:
        item, reference = row.get("item", ""), row["reference"]
        outcome = OUTCOME_WORDS.get(row["outcome"], row["outcome"])
        kind = row.get("kind") or (reference.split("/", 1)[0] if "/" in reference else "")
        name, detail, due = item or reference, "", None
        if reference in earlier:
            name = f"Earlier plan's {kind or 'entry'} retired"
            detail = item
        elif item == "medicationrequest/kit" and dose is not None:
            name = f"ZOLGENSMA kit order{signed}"
            detail = (
                f"kit NDC {dose.kit.ndc}: {vials(dose.kit)}; "
                f"{words.number(dose.kit.dose_volume_ml)} mL over {dose.infusion_minutes} min "
                f"at {words.number(dose.pump_rate_ml_per_h)} mL/h"
            )
            due = plan.infusion_date
        elif item == "medicationrequest/prednisolone" and course is not None:
            name = f"Prednisolone order{signed}"
            detail = (
                f"{words.number(course.dose_mg_per_day)} mg "
                f"({words.number(course.volume_ml_per_day)} mL) by mouth once "
                "daily for 30 days, from 1 day before infusion"
            )
            due = course.start_date
        elif item == "careplan":
            name = "Care plan"
            detail = "the ZOLGENSMA treatment plan: both orders and every task"
        elif item in tasks:
            task = tasks[item]
            kind_name = task.kind.value
            name = f"Task: {TASK_NAMES.get(kind_name, kind_name)}"
            detail = (
                ", ".join(t.value for t in task.tests)
                if task.kind is ActivityKind.LAB_DRAW
                else task.activity
            )
            due = task.date
        elif item.startswith("detectedissue/"):
            code = item.split("/", 1)[1]
            name = "Acknowledged finding"
            detail = findings[code].message if code in findings else code
        elif item.startswith("provenance/"):
            name = "Provenance"
            detail = "who confirmed the plan, when, under which label and institution defaults"
        entries.append(
            WrittenEntry(
                name, detail, due, outcome, reference, item, kind, earlier=reference in earlier
            )
        )
    return entries


def preview_rows(bundle: Mapping[str, Any]) -> list[dict[str, str]]:
    """The entries of a transaction not yet sent, as rows written_entries names: a create is
    'to be created', an update 'to be set to <status>'."""
    rows = []
    for op in operations(bundle):
        status = str(op.resource.get("status", ""))
        outcome = f"to be set to {status}" if op.method == "PUT" else "to be created"
        reference = op.url if op.method == "PUT" else op.kind
        rows.append({"reference": reference, "outcome": outcome, "item": op.item, "kind": op.kind})
    return rows


@dataclass(frozen=True)
class ScheduleRow:
    """One dated item of the plan as the schedule table shows it."""

    date: dt.date
    day: int
    kind: str
    activity: str
    on_time: str
    """When it is on time, relative to its date: 'that day', '±1 day', 'from 23 Oct 2026'."""
    section: str
    institution_default: bool
    condition: int
    """1-based number of its condition in `conditions`, 0 for none."""


def _on_time(date: dt.date, start: dt.date, end: dt.date) -> str:
    """A due window in the fewest words."""
    before, after = (date - start).days, (end - date).days
    if before == after == 0:
        return "that day"
    if before == after:
        return f"±{before}{words.NBSP}day{'s' if before != 1 else ''}"
    if after == 0:
        return f"from {words.clinical_date(start)}"
    if before == 0:
        return f"until {words.clinical_date(end)}"
    return f"{words.clinical_date(start)} – {words.clinical_date(end)}"


SHOWN_IN_COURSE = frozenset({"taper-step", "steroid-end"})
"""Schedule items the prednisolone course already shows (its taper table)."""


def schedule_rows(plan: Plan) -> tuple[list[ScheduleRow], list[str]]:
    """The schedule table's rows (the taper steps aside: the course shows them) and the distinct
    conditions they refer to by number."""
    conditions: list[str] = []
    rows = []
    for item in plan.schedule:
        if item.kind.value in SHOWN_IN_COURSE:
            continue
        number = 0
        if item.conditional:
            if item.conditional not in conditions:
                conditions.append(item.conditional)
            number = conditions.index(item.conditional) + 1
        rows.append(
            ScheduleRow(
                date=item.date,
                day=item.day,
                kind=item.kind.value,
                activity=item.activity,
                on_time=_on_time(item.date, item.window_start, item.window_end),
                section=item.section,
                institution_default=item.institution_default,
                condition=number,
            )
        )
    return rows, conditions
