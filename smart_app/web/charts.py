"""Server-side SVG line charts for lab trends and the steroid dose (no scripts, no inline styles).

Every text is laid out before it is written: the SVG is drawn on the server with no script to
measure text, so each label's box is estimated from its characters and font size, and a label
goes to the first spot where its box meets no other label (rows above the plot for day markers,
along the line for reference lines, around the point for values, with a leader line when moved
away). Dates are written one way, '24 Nov 2026', and days in words.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal, localcontext
from enum import IntEnum, StrEnum

from markupsafe import Markup, escape

from smart_app.web.words import clinical_date, relative_day

__all__ = [
    "Anchor",
    "Box",
    "Chart",
    "HLine",
    "Layout",
    "Marker",
    "MarkerLabel",
    "Note",
    "Placed",
    "Point",
    "PointLabels",
    "Series",
    "Text",
    "VLine",
    "Weight",
    "marker_labels",
    "render_svg",
    "segment_boxes",
    "table",
    "text_width",
]


class PointLabels(StrEnum):
    """Which points of a series carry their value as a label."""

    NONE = "none"
    NEWEST = "newest"
    CHANGES = "changes"
    """Each point whose value differs from the previous one, except a stop at 0 (dose steps)."""


@dataclass(frozen=True)
class Point:
    """One result: days after infusion (x), its value (y), its date and an optional note.

    marker=False makes a bare vertex of the line (the last day of a dose step): no circle, no
    tooltip, no table row.
    """

    day: int
    value: Decimal
    when: dt.date
    note: str = ""
    marker: bool = True


@dataclass(frozen=True)
class Series:
    """A named run of results drawn as one line; steps=True holds each value until the next.

    planned=True draws it lighter and dashed with hollow markers: a plan, not an order.
    """

    name: str
    points: tuple[Point, ...]
    tone: int = 0
    steps: bool = False
    labels: PointLabels = PointLabels.NONE
    planned: bool = False


@dataclass(frozen=True)
class HLine:
    """A dashed horizontal reference line such as a ULN multiple or a baseline."""

    value: Decimal
    label: str
    danger: bool = False
    title: str = ""
    """The tooltip, when it should say more than the label, value and unit."""


@dataclass(frozen=True)
class VLine:
    """A vertical marker on a day such as the infusion or a scheduled check."""

    day: int
    label: str


@dataclass(frozen=True)
class Note:
    """A short text pinned to a spot of the plot, such as 'decision pending' after a dose line."""

    day: int
    value: Decimal
    text: str
    title: str = ""


@dataclass(frozen=True)
class Chart:
    """Everything one chart shows; key is a slug that prefixes the chart's element ids.

    origin is the date of day 0 (the infusion): the day ticks then carry their dates too.
    """

    key: str
    title: str
    unit: str
    series: tuple[Series, ...]
    hlines: tuple[HLine, ...] = ()
    vlines: tuple[VLine, ...] = ()
    x_range: tuple[int, int] | None = None
    y_min: Decimal = Decimal(0)
    notes: tuple[Note, ...] = ()
    origin: dt.date | None = None


KEY = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
TONES = 4
RIGHT_PX = 28
CAPTION_BAND_PX = 22
TOP_PAD_PX = 6
LEGEND_ROW_PX = 18
MARKER_ROW_PX = 15
MIN_PLOT_PX = 40
DAY_TICK = 7
POINT_R = 3.5
NICE = (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5))
EMPTY_TEXT = "No results yet"
GAP_PX = 2.0
"""The least space between two label boxes."""
CLEAR_PX = POINT_R + 1 + GAP_PX + 0.5
"""How far a label keeps from the centre of its own point (clear of the circle's box)."""
LEADER_CLEAR_PX = 4.0
SCAN_STEP_PX = 4.0
"""The first pixels of a leader line, next to its own point, which may touch that point."""
FONT_TICK = 11
FONT_LEGEND = 12
FONT_CAPTION = 11
FONT_MARKER = 11
FONT_HLINE = 11
FONT_VALUE = 11
FONT_NOTE = 11
FONT_EMPTY = 14
ASCENT_EM = 0.8
DESCENT_EM = 0.25
WIDE = frozenset("mwMW%@\u00d7")
"""Characters counted at a full em (DejaVu Sans, Chromium's fallback sans, draws m at 0.97 em)."""
CAPITAL_EM = 0.8
OTHER_EM = 0.64
BOLD_FACTOR = 1.12


def text_width(text: str, *, font_px: float, bold: bool = False) -> float:
    """A text's estimated advance width from its characters: 1 em for m, w and x-sign, 0.8 em for
    other capitals, 0.64 em for anything else, 12% more in bold (no narrower than DejaVu Sans)."""
    ems = sum(1.0 if c in WIDE else CAPITAL_EM if c.isupper() else OTHER_EM for c in text)
    return ems * font_px * (BOLD_FACTOR if bold else 1.0)


@dataclass(frozen=True)
class Box:
    """A rectangle in SVG user units (y grows downwards)."""

    left: float
    top: float
    right: float
    bottom: float

    def overlaps(self, other: Box) -> bool:
        """Whether the two rectangles share any area."""
        return (
            self.left < other.right
            and other.left < self.right
            and self.top < other.bottom
            and other.top < self.bottom
        )

    def grown(self, by: float) -> Box:
        """The rectangle with `by` added on every side."""
        return Box(self.left - by, self.top - by, self.right + by, self.bottom + by)

    def inside(self, other: Box) -> bool:
        """Whether this rectangle lies wholly within the other."""
        return (
            other.left <= self.left
            and self.right <= other.right
            and other.top <= self.top
            and self.bottom <= other.bottom
        )


class Anchor(StrEnum):
    """SVG text-anchor: where x is along the text."""

    START = "start"
    MIDDLE = "middle"
    END = "end"


@dataclass(frozen=True)
class Text:
    """One text at its baseline point, with the size its box is estimated from."""

    x: float
    y: float
    text: str
    font_px: int
    anchor: Anchor = Anchor.MIDDLE
    bold: bool = False

    @property
    def width(self) -> float:
        """Estimated advance width."""
        return text_width(self.text, font_px=self.font_px, bold=self.bold)

    @property
    def box(self) -> Box:
        """The estimated box: ascent above the baseline, descent below."""
        width = self.width
        left = (
            self.x - {Anchor.START: 0.0, Anchor.MIDDLE: width / 2, Anchor.END: width}[self.anchor]
        )
        return Box(
            left,
            self.y - ASCENT_EM * self.font_px,
            left + width,
            self.y + DESCENT_EM * self.font_px,
        )

    def moved(self, *, dx: float = 0.0, dy: float = 0.0) -> Text:
        """The same text shifted."""
        return Text(self.x + dx, self.y + dy, self.text, self.font_px, self.anchor, self.bold)

    def svg(self, css: str = "", *, extra: str = "") -> str:
        """The <text> element; size and weight as presentation attributes (no inline style)."""
        klass = f' class="{css}"' if css else ""
        weight = ' font-weight="700"' if self.bold else ""
        return (
            f'<text{klass} x="{_f(self.x)}" y="{_f(self.y)}" text-anchor="{self.anchor}"'
            f' font-size="{self.font_px}"{weight}{extra}>{escape(self.text)}</text>'
        )


class Weight(IntEnum):
    """How much a taken box matters to a label looking for a place."""

    SOFT = 0
    """A line: a label may lie across one when nothing better is free."""
    FIRM = 1
    """A data point or a leader: covered only by a label that must be shown."""
    HARD = 2
    """Another label: never covered."""


Segment = tuple[float, float, float, float]


@dataclass(frozen=True)
class Placed:
    """A label where the layout put it, and the leader line joining it to its spot, if moved."""

    text: Text
    leader: Segment | None = None


def segment_boxes(segment: Segment, *, half: float = 0.75, step: float = 3.0) -> list[Box]:
    """Thin boxes covering a line segment: one when it is straight, small ones along it else."""
    x1, y1, x2, y2 = segment
    if x1 == x2 or y1 == y2:
        return [Box(min(x1, x2) - half, min(y1, y2) - half, max(x1, x2) + half, max(y1, y2) + half)]
    count = max(1, math.ceil(math.hypot(x2 - x1, y2 - y1) / step))
    boxes = []
    for i in range(count + 1):
        x, y = x1 + (x2 - x1) * i / count, y1 + (y2 - y1) * i / count
        boxes.append(Box(x - half, y - half, x + half, y + half))
    return boxes


@dataclass
class Layout:
    """The boxes taken on one drawing; a label goes to the first candidate spot that is free."""

    bounds: Box
    taken: list[tuple[Box, Weight, object]] = field(default_factory=list)

    def take(self, boxes: Iterable[Box], weight: Weight, owner: object = None) -> None:
        """Reserve boxes (an owner's own boxes never block it)."""
        self.taken.extend((box, weight, owner) for box in boxes)

    def free(self, box: Box, *, avoid: Weight, owner: object = None) -> bool:
        """Inside the bounds, and clear (by GAP_PX) of every box of weight `avoid` or more."""
        if not box.inside(self.bounds):
            return False
        grown = box.grown(GAP_PX)
        return not any(
            weight >= avoid and (owner is None or who is not owner) and grown.overlaps(other)
            for other, weight, who in self.taken
        )

    def fits(self, placed: Placed, *, avoid: Weight, owner: object = None) -> bool:
        """Whether a candidate's text and leader are both free."""
        if not self.free(placed.text.box, avoid=avoid, owner=owner):
            return False
        if placed.leader is None:
            return True
        x1, y1, x2, y2 = placed.leader
        length = math.hypot(x2 - x1, y2 - y1)
        if length <= LEADER_CLEAR_PX:
            return True
        share = LEADER_CLEAR_PX / length  # the leader's first pixels touch its own point
        away = (x1 + (x2 - x1) * share, y1 + (y2 - y1) * share, x2, y2)
        return all(self.free(box, avoid=avoid, owner=owner) for box in segment_boxes(away))

    def place(
        self,
        candidates: Sequence[Placed],
        *,
        loosest: Weight = Weight.HARD,
        owner: object = None,
        force: bool = False,
        near: tuple[float, float] | None = None,
    ) -> Placed | None:
        """The first candidate clear of everything, else of points and labels, else of labels
        (down to `loosest`); taken. With force, the free spot nearest to `near` when no
        candidate is clear, else the first candidate."""
        for avoid in (Weight.SOFT, Weight.FIRM, Weight.HARD):
            if avoid > loosest:
                break
            for candidate in candidates:
                if self.fits(candidate, avoid=avoid, owner=owner):
                    self.keep(candidate, owner=owner)
                    return candidate
        if force and candidates:
            chosen = self.scan(candidates[0].text, near) if near else None
            chosen = chosen or candidates[0]
            self.keep(chosen, owner=owner)
            return chosen
        return None

    def scan(self, text: Text, near: tuple[float, float]) -> Placed | None:
        """The free spot nearest to `near` for a text, on a grid over the whole drawing, joined
        to `near` by a leader line (for a label that must be shown when every usual spot is
        taken); None when the drawing has no room at all."""
        box = text.box
        width, height = box.right - box.left, box.bottom - box.top
        x0, y0 = near
        spots = []
        step = SCAN_STEP_PX
        left = self.bounds.left
        while left + width <= self.bounds.right:
            top = self.bounds.top
            while top + height <= self.bounds.bottom:
                cx, cy = left + width / 2, top + height / 2
                spots.append(((cx - x0) ** 2 + (cy - y0) ** 2, left, top))
                top += step
            left += step
        ordered = sorted(spots)
        for leader_clear in (True, False):  # a leader across a label only when nothing else
            for _distance, left, top in ordered:
                moved = text.moved(dx=left - box.left, dy=top - box.top)
                spot = moved.box
                end = (min(max(x0, spot.left), spot.right), min(max(y0, spot.top), spot.bottom))
                leader = (x0, y0, *end) if math.dist(near, end) > CLEAR_PX else None
                candidate = Placed(moved, leader)
                if (
                    self.fits(candidate, avoid=Weight.HARD)
                    if leader_clear
                    else self.free(spot, avoid=Weight.HARD)
                ):
                    return candidate
        return None

    def keep(self, placed: Placed, *, owner: object = None) -> None:
        """Reserve a placed label (and its leader)."""
        self.take([placed.text.box], Weight.HARD, owner)
        if placed.leader is not None:
            self.take(segment_boxes(placed.leader), Weight.FIRM, owner)


def around(
    x: float, y: float, text: str, *, font_px: int, clear_px: float, prefer_right: bool = True
) -> list[Placed]:
    """Candidate spots for a label of a point at (x, y): beside it, then farther off with a
    leader line, `clear_px` being the point's own radius plus a margin."""
    ascent, descent = ASCENT_EM * font_px, DESCENT_EM * font_px
    mid = y + (ascent - descent) / 2
    c = clear_px
    right = Placed(Text(x + c, mid, text, font_px, Anchor.START))
    left = Placed(Text(x - c, mid, text, font_px, Anchor.END))
    above = Placed(Text(x, y - c - descent, text, font_px))
    below = Placed(Text(x, y + c + ascent, text, font_px))
    above_right = Placed(Text(x + c, y - c - descent, text, font_px, Anchor.START))
    below_right = Placed(Text(x + c, y + c + ascent, text, font_px, Anchor.START))
    above_left = Placed(Text(x - c, y - c - descent, text, font_px, Anchor.END))
    below_left = Placed(Text(x - c, y + c + ascent, text, font_px, Anchor.END))
    near = (
        [right, above, above_right, below_right, below, left, above_left, below_left]
        if prefer_right
        else [above, left, right, below, above_left, above_right, below_left, below_right]
    )
    far = []
    for distance in (14.0, 26.0, 40.0, 56.0):
        top = y - c - distance
        bottom = y + c + distance
        far += [
            Placed(Text(x, top - descent, text, font_px), (x, y - c, x, top)),
            Placed(Text(x, bottom + ascent, text, font_px), (x, y + c, x, bottom)),
            Placed(
                Text(x + c + distance, mid, text, font_px, Anchor.START),
                (x + c, y, x + c + distance - 2, y),
            ),
            Placed(
                Text(x - c - distance, mid, text, font_px, Anchor.END),
                (x - c, y, x - c - distance + 2, y),
            ),
        ]
    return near + far


def render_svg(chart: Chart, *, width_px: int = 640, height_px: int = 250) -> Markup:
    """The chart as an inline SVG element, escaped, deterministic and free of inline styles."""
    if not KEY.fullmatch(chart.key):
        raise ValueError(f"chart key must be a slug of [a-z0-9-], got {chart.key!r}")
    with localcontext() as ctx:
        ctx.prec = 28
        return _render(chart, width_px, height_px)


def table(chart: Chart) -> tuple[list[str], list[list[str]]]:
    """The chart's data as headers and rows: one row per (date, day), one column per series."""
    headers = ["Date", "Day", *(s.name for s in chart.series)]
    keys = sorted({(p.day, p.when) for s in chart.series for p in s.points if p.marker})
    rows = []
    for day, when in keys:
        cells = [clinical_date(when), relative_day(day)]
        for series in chart.series:
            found = [
                p for p in _ordered(series.points) if p.marker and (p.day, p.when) == (day, when)
            ]
            cells.append("; ".join(_cell(p) for p in found))
        rows.append(cells)
    return headers, rows


def _cell(point: Point) -> str:
    """A table cell: the value, and the note in brackets when there is one."""
    text = _num(point.value)
    return f"{text} ({point.note})" if point.note else text


@dataclass(frozen=True)
class _Plot:
    """The drawing area in SVG units and the data ranges mapped onto it."""

    left: float
    right: float
    top: float
    bottom: float
    x_range: tuple[int, int]
    y_ticks: tuple[Decimal, ...]
    y_min: Decimal

    def x(self, day: int) -> float:
        """Horizontal position of a day."""
        lo, hi = self.x_range
        return self.left + (day - lo) * (self.right - self.left) / (hi - lo)

    def y(self, value: Decimal) -> float:
        """Vertical position of a value (larger values are higher, so smaller y)."""
        lo, hi = self.y_min, self.y_ticks[-1]
        return self.bottom - float((value - lo) / (hi - lo)) * (self.bottom - self.top)

    def shows_day(self, day: int) -> bool:
        """Whether a day falls inside the x range."""
        return self.x_range[0] <= day <= self.x_range[1]

    def shows_value(self, value: Decimal) -> bool:
        """Whether a value falls inside the y range."""
        return self.y_min <= value <= self.y_ticks[-1]

    @property
    def box(self) -> Box:
        """The plot area."""
        return Box(self.left, self.top, self.right, self.bottom)


@dataclass(frozen=True)
class Marker:
    """The day markers of one day, drawn as one line with one label."""

    day: int
    label: str
    title: str


@dataclass(frozen=True)
class MarkerLabel:
    """A day marker's label above the plot (y relative to the plot's top) and how high its line
    reaches (relative too)."""

    marker: Marker
    text: Text
    line_top: float
    row: int


def _render(chart: Chart, width_px: int, height_px: int) -> Markup:
    """Lay out and write the SVG (called inside a fixed decimal context)."""
    points = [p for s in chart.series for p in s.points]
    values = [p.value for p in points] + [h.value for h in chart.hlines]
    values += [n.value for n in chart.notes]
    for value in values:
        if not value.is_finite():
            raise ValueError(f"chart {chart.key!r} has a non-finite value {value}")
    x_range = chart.x_range or _default_x_range(chart)
    if x_range[1] <= x_range[0]:
        raise ValueError(f"chart {chart.key!r} has an empty x range {x_range}")
    y_ticks = _y_ticks(chart.y_min, _y_top(chart))
    tick_texts = [_num(t.normalize()) for t in y_ticks]
    left = CAPTION_BAND_PX + max(text_width(t, font_px=FONT_TICK) for t in tick_texts) + 10
    right = width_px - RIGHT_PX
    legend, legend_rows = _legend(chart.series, left=left, right=right)
    markers = _markers(chart, x_range)
    stacked, rows = marker_labels(
        markers,
        x=lambda d: left + (d - x_range[0]) * (right - left) / (x_range[1] - x_range[0]),
        width_px=width_px,
        blocked=[Text(left - 6, 4, tick_texts[-1], FONT_TICK, Anchor.END).box],
    )
    top = TOP_PAD_PX + legend_rows * LEGEND_ROW_PX + rows * MARKER_ROW_PX + (4 if rows else 6)
    bottom = height_px - (54 if chart.origin else 40)
    plot = _Plot(left, right, top, bottom, x_range, y_ticks, chart.y_min)
    if right - left < MIN_PLOT_PX or bottom - top < MIN_PLOT_PX:
        raise ValueError(f"{width_px}x{height_px} px is too small for chart {chart.key!r}")
    key = chart.key
    inner = Layout(plot.box.grown(-1))
    drawn = [(s, _coords(s, plot)) for s in chart.series]
    for _series, (line, circles) in drawn:
        for a, b in itertools.pairwise(line):
            inner.take(segment_boxes((*a, *b)), Weight.SOFT)
        inner.take((_dot(x, y) for x, y, _point in circles), Weight.FIRM)
    hlines = [h for h in chart.hlines if plot.shows_value(h.value)]
    for hline in hlines:
        y = plot.y(hline.value)
        inner.take(segment_boxes((plot.left, y, plot.right, y)), Weight.SOFT, hline)
    for label in stacked:
        x = plot.x(label.marker.day)
        inner.take(segment_boxes((x, plot.top, x, plot.bottom)), Weight.SOFT)
    empty = None
    if not points:
        empty = Text(
            (plot.left + plot.right) / 2,
            (plot.top + plot.bottom) / 2,
            EMPTY_TEXT,
            FONT_EMPTY,
            bold=True,
        )
        inner.take([empty.box], Weight.HARD)
    hline_labels = _hline_labels(hlines, plot, inner)
    notes = [
        (
            note,
            inner.place(
                _note_candidates(note, plot),
                force=True,
                near=(plot.x(note.day), plot.y(note.value)),
            ),
        )
        for note in chart.notes
        if plot.shows_day(note.day) and plot.shows_value(note.value)
    ]
    values_placed = _value_labels(drawn, chart.unit, plot, inner)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width_px} {height_px}"'
        f' role="img" class="chart" aria-labelledby="{key}-title {key}-desc">',
        f'<title id="{key}-title">{escape(chart.title)}</title>',
        f'<desc id="{key}-desc">{escape(_summary(chart))}</desc>',
        f'<defs><clipPath id="{key}-clip"><rect x="{_f(plot.left - 6)}" y="{_f(plot.top - 6)}"'
        f' width="{_f(plot.right - plot.left + 12)}" height="{_f(plot.bottom - plot.top + 12)}"/>'
        "</clipPath></defs>",
        *_axes(chart, plot, tick_texts, height_px, width_px),
        *_hlines_svg(hline_labels, chart.unit, plot),
        *_markers_svg(stacked, plot),
        f'<g class="plot" clip-path="url(#{key}-clip)">',
        *(line for series, shape in drawn for line in _series_svg(series, shape, chart.unit)),
        "</g>",
        *_labels_svg(values_placed, "value-label"),
        *(line for note, placed in notes if placed is not None for line in _note_svg(note, placed)),
        *legend,
    ]
    if empty is not None:
        out.append(empty.svg("empty"))
    out.append("</svg>")
    return Markup("\n".join(out))  # noqa: S704 - every text was escaped where it was written


def _dot(x: float, y: float) -> Box:
    """The box of a point's circle and its stroke."""
    r = POINT_R + 1
    return Box(x - r, y - r, x + r, y + r)


def _default_x_range(chart: Chart) -> tuple[int, int]:
    """Days spanned by the points and vertical lines, at least a week, padded on both sides."""
    days = [p.day for s in chart.series for p in s.points] + [v.day for v in chart.vlines]
    days += [n.day for n in chart.notes]
    lo, hi = (min(days), max(days)) if days else (0, 4 * DAY_TICK)
    hi = max(hi, lo + DAY_TICK)
    pad = max(1, round((hi - lo) / 20))
    return lo - pad, hi + pad


def _y_top(chart: Chart) -> Decimal:
    """Largest value or reference line plus about 10% headroom, never equal to y_min."""
    values = [p.value for s in chart.series for p in s.points] + [h.value for h in chart.hlines]
    values += [n.value for n in chart.notes]
    high = max([*values, chart.y_min])
    if high <= chart.y_min:
        return chart.y_min + (abs(chart.y_min) or Decimal(1))
    return high + (high - chart.y_min) / 10


def _y_ticks(lo: Decimal, top: Decimal) -> tuple[Decimal, ...]:
    """4 to 6 ticks on a 1, 2, 2.5 or 5 x 10^n step from the first multiple at or above lo.

    The last tick is at or above top and becomes the top of the y range.
    """
    exponent = (top - lo).adjusted()
    options = []
    for power in range(exponent - 2, exponent + 2):
        for mantissa in NICE:
            step = mantissa.scaleb(power)
            first = int((lo / step).to_integral_value(rounding=ROUND_CEILING))
            last = int((top / step).to_integral_value(rounding=ROUND_CEILING))
            options.append((last - first + 1, step, first, last))
    fitting = [o for o in options if 4 <= o[0] <= 6]
    _count, step, first, last = (
        min(fitting, key=lambda o: o[1]) if fitting else min(options, key=lambda o: abs(o[0] - 5))
    )
    return tuple(step * k for k in range(first, last + 1))


def _day_ticks(plot: _Plot, origin: dt.date | None) -> list[int]:
    """Multiples of 7 days inside the x range, thinned to multiples of 14, 21... until the
    widest tick label (day, and date when the chart has one) fits between two ticks."""
    lo, hi = plot.x_range
    per_day = (plot.right - plot.left) / (hi - lo)
    step = DAY_TICK
    while True:
        days = list(range(-(-lo // step) * step, hi + 1, step))
        widest = max(
            (w for day in days for w in _tick_widths(day, origin)),
            default=0.0,
        )
        if step * per_day >= widest + 3 * GAP_PX or step > hi - lo:
            return days
        step += DAY_TICK


def _tick_widths(day: int, origin: dt.date | None) -> list[float]:
    """Widths of a day tick's labels."""
    widths = [text_width(str(day), font_px=FONT_TICK)]
    if origin is not None:
        widths.append(text_width(_tick_date(day, origin), font_px=FONT_TICK))
    return widths


def _tick_date(day: int, origin: dt.date) -> str:
    """The date under a day tick."""
    return clinical_date(origin + dt.timedelta(days=day))


def _inward(text: Text, *, width_px: int) -> Text:
    """The text shifted sideways so that its box stays on the drawing."""
    box = text.box
    if box.left < 1:
        return text.moved(dx=1 - box.left)
    if box.right > width_px - 1:
        return text.moved(dx=width_px - 1 - box.right)
    return text


def _axes(
    chart: Chart, plot: _Plot, tick_texts: list[str], height_px: int, width_px: int
) -> list[str]:
    """Grid, axis lines, tick labels (day and date) and the two axis captions."""
    out = ['<g class="axes">']
    spacing = (plot.bottom - plot.top) / max(1, len(plot.y_ticks) - 1)
    every = 1 if spacing >= FONT_TICK + 2 * GAP_PX else 2
    for index, (tick, text) in enumerate(zip(plot.y_ticks, tick_texts, strict=True)):
        y = plot.y(tick)
        out.append(
            f'<line class="grid" x1="{_f(plot.left)}" x2="{_f(plot.right)}"'
            f' y1="{_f(y)}" y2="{_f(y)}"/>'
        )
        if index % every == 0:
            label = Text(plot.left - 6, y + 4, text, FONT_TICK, Anchor.END)
            out.append(label.svg("tick tick-y"))
    below = Layout(Box(0, plot.bottom, width_px, height_px))
    for day in _day_ticks(plot, chart.origin):
        x = plot.x(day)
        out.append(
            f'<line class="tick-mark" x1="{_f(x)}" x2="{_f(x)}" y1="{_f(plot.bottom)}"'
            f' y2="{_f(plot.bottom + 4)}"/>'
        )
        texts = [
            (_inward(Text(x, plot.bottom + 17, str(day), FONT_TICK), width_px=width_px), "tick-x")
        ]
        if chart.origin is not None:
            date = Text(x, plot.bottom + 31, _tick_date(day, chart.origin), FONT_TICK)
            texts.append((_inward(date, width_px=width_px), "tick-date"))
        if all(below.free(t.box, avoid=Weight.HARD) for t, _css in texts):  # else the mark alone
            below.take((t.box for t, _css in texts), Weight.HARD)
            out += [t.svg(f"tick {css}") for t, css in texts]
    left, bottom = _f(plot.left), _f(plot.bottom)
    caption = Text((plot.left + plot.right) / 2, height_px - 6, "days after infusion", FONT_CAPTION)
    unit = Text(-(plot.top + plot.bottom) / 2, 14, chart.unit, FONT_CAPTION)
    out += [
        f'<line class="axis" x1="{left}" x2="{left}" y1="{_f(plot.top)}" y2="{bottom}"/>',
        f'<line class="axis" x1="{left}" x2="{_f(plot.right)}" y1="{bottom}" y2="{bottom}"/>',
        caption.svg("axis-caption"),
        unit.svg("axis-caption", extra=' transform="rotate(-90)"'),
        "</g>",
    ]
    return out


def _markers(chart: Chart, x_range: tuple[int, int]) -> list[Marker]:
    """The day markers inside the x range, those of one day joined into one ('day-30 check ·
    today'), by day."""
    by_day: dict[int, list[str]] = {}
    for vline in chart.vlines:
        if x_range[0] <= vline.day <= x_range[1] and vline.label not in by_day.get(vline.day, []):
            by_day.setdefault(vline.day, []).append(vline.label)
    found = []
    for day, labels in sorted(by_day.items()):
        when = (
            f"{clinical_date(chart.origin + dt.timedelta(days=day))}, "
            if chart.origin is not None
            else ""
        )
        found.append(
            Marker(day, " \u00b7 ".join(labels), f"{', '.join(labels)}: {when}{relative_day(day)}")
        )
    return found


def marker_labels(
    markers: list[Marker],
    *,
    x: Callable[[int], float],
    width_px: int,
    blocked: Iterable[Box] = (),
) -> tuple[list[MarkerLabel], int]:
    """Each marker's label in rows above the plot (y relative to the plot's top), row 0 nearest,
    so that no two labels meet, no label covers another marker's line or a `blocked` box (the
    top y tick label); the number of rows used."""
    band = Layout(Box(1, -10_000, width_px - 1, 0))
    band.take(blocked, Weight.HARD)
    xs = {m.day: x(m.day) for m in markers}
    for marker in markers:
        at = xs[marker.day]
        band.take([Box(at - 0.5, -MARKER_ROW_PX, at + 0.5, 0)], Weight.HARD, marker)
    placed: list[MarkerLabel] = []
    for marker in markers:
        at = xs[marker.day]
        chosen = None
        for row in range(len(markers) + 1):
            baseline = -(row * MARKER_ROW_PX) - 4
            for anchor, dx in ((Anchor.MIDDLE, 0.0), (Anchor.END, -3.0), (Anchor.START, 3.0)):
                text = Text(at + dx, baseline, marker.label, FONT_MARKER, anchor, bold=True)
                box = text.box
                line_top = box.bottom + 1 if anchor is Anchor.MIDDLE else box.top
                line = Box(at - 0.5, line_top, at + 0.5, 0)
                if band.free(box, avoid=Weight.HARD, owner=marker) and band.free(
                    line, avoid=Weight.HARD, owner=marker
                ):
                    chosen = MarkerLabel(marker, text, line_top, row)
                    break
            if chosen:
                break
        if chosen is None:  # crowded beyond every row: a row of its own on top, line unjoined
            row = max((p.row for p in placed), default=-1) + 1
            text = Text(at, -(row * MARKER_ROW_PX) - 4, marker.label, FONT_MARKER, bold=True)
            text = _inward(text, width_px=width_px)
            chosen = MarkerLabel(marker, text, 0.0, row)
        band.take([chosen.text.box], Weight.HARD, marker)
        band.take([Box(at - 0.5, chosen.line_top, at + 0.5, 0)], Weight.HARD, marker)
        placed.append(chosen)
    rows = max((p.row for p in placed), default=-1) + 1
    return placed, rows


def _markers_svg(labels: list[MarkerLabel], plot: _Plot) -> list[str]:
    """Vertical day markers with their labels above the plot."""
    out = []
    for label in labels:
        x = _f(plot.x(label.marker.day))
        text = label.text.moved(dy=plot.top)
        out += [
            f'<g class="vline"><title>{escape(label.marker.title)}</title>',
            f'<line x1="{x}" x2="{x}" y1="{_f(plot.top + label.line_top)}"'
            f' y2="{_f(plot.bottom)}"/>',
            text.svg(),
            "</g>",
        ]
    return out


def _hline_labels(hlines: list[HLine], plot: _Plot, layout: Layout) -> list[tuple[HLine, Placed]]:
    """Each reference line's label on its line: at the right end above it if free, else below,
    else farther left; danger lines first."""
    found = []
    for hline in sorted(hlines, key=lambda h: (not h.danger, -h.value, h.label)):
        y = plot.y(hline.value)
        width = text_width(hline.label, font_px=FONT_HLINE, bold=hline.danger)
        candidates = []
        x = plot.right - 4
        while x - width >= plot.left + 4:
            for dy in (-4.0, ASCENT_EM * FONT_HLINE + 3):
                text = Text(x, y + dy, hline.label, FONT_HLINE, Anchor.END, bold=hline.danger)
                candidates.append(Placed(text))
            x -= max(width / 2, 12.0)
        placed = layout.place(candidates, force=True, near=(plot.right - width / 2, y), owner=hline)
        if placed is not None:
            found.append((hline, placed))
    return found


def _hlines_svg(labels: list[tuple[HLine, Placed]], unit: str, plot: _Plot) -> list[str]:
    """Dashed reference lines with their labels."""
    out = []
    for hline, placed in sorted(labels, key=lambda p: (p[0].value, p[0].label)):
        y = plot.y(hline.value)
        tone = "hline hline-danger" if hline.danger else "hline"
        title = hline.title or " ".join(
            t for t in (f"{hline.label}:", _num(hline.value), unit) if t
        )
        out += [
            f'<g class="{tone}"><title>{escape(title)}</title>',
            f'<line x1="{_f(plot.left)}" x2="{_f(plot.right)}" y1="{_f(y)}" y2="{_f(y)}"'
            ' stroke-dasharray="6 4"/>',
            placed.text.svg(),
            "</g>",
        ]
    return out


Shape = tuple[list[tuple[float, float]], list[tuple[float, float, Point]]]


def _coords(series: Series, plot: _Plot) -> Shape:
    """The line's vertices (stepped when asked) and each marker's centre."""
    points = _ordered(series.points)
    coords = [(plot.x(p.day), plot.y(p.value)) for p in points]
    if series.steps:
        coords = [
            c
            for i, (x, y) in enumerate(coords)
            for c in ([(x, coords[i - 1][1]), (x, y)] if i else [(x, y)])
        ]
    line = [c for i, c in enumerate(coords) if not i or _pair(c) != _pair(coords[i - 1])]
    circles = [(plot.x(p.day), plot.y(p.value), p) for p in points if p.marker]
    return line, circles


def _pair(c: tuple[float, float]) -> str:
    """A vertex as written."""
    return f"{_f(c[0])},{_f(c[1])}"


def _series_svg(series: Series, shape: Shape, unit: str) -> list[str]:
    """One series: its line and a circle with a tooltip per point."""
    line, circles = shape
    planned = " planned" if series.planned else ""
    out = [f'<g class="series series-{series.tone % TONES}{planned}">']
    if len(line) > 1:
        joined = " ".join(_pair(c) for c in line)
        out.append(f'<polyline class="line" fill="none" points="{joined}"/>')
    for x, y, point in circles:
        text = " ".join(t for t in (series.name, _num(point.value), unit) if t)
        text += f" on {clinical_date(point.when)} ({relative_day(point.day)})"
        if point.note:
            text += f", {point.note}"
        out.append(
            f'<circle cx="{_f(x)}" cy="{_f(y)}" r="{POINT_R}">'
            f"<title>{escape(text)}</title></circle>"
        )
    out.append("</g>")
    return out


def _labelled(
    series: Series, circles: list[tuple[float, float, Point]]
) -> list[tuple[float, float, Point]]:
    """The markers of a series that carry their value."""
    if series.labels is PointLabels.NEWEST:
        return circles[-1:]
    if series.labels is PointLabels.CHANGES:
        found, last = [], None
        for x, y, point in circles:
            if point.value != last and point.value != 0:
                found.append((x, y, point))
            last = point.value
        return found
    return []


def _value_labels(
    drawn: list[tuple[Series, Shape]], unit: str, plot: _Plot, layout: Layout
) -> list[tuple[str, Placed]]:
    """Value labels beside the points that carry one, newest first; a label that finds no spot
    clear of points and other labels is left out (the tooltip and the table still give it)."""
    wanted = [
        (series, x, y, point)
        for series, (_line, circles) in drawn
        for x, y, point in _labelled(series, circles)
    ]
    wanted.sort(key=lambda w: (-w[3].day, w[0].tone, w[0].name))
    placed = []
    for series, x, y, point in wanted:
        candidates = around(
            x, y, _num(point.value), font_px=FONT_VALUE, clear_px=CLEAR_PX, prefer_right=True
        )
        found = layout.place(candidates, loosest=Weight.FIRM)
        if found is not None:
            placed.append((f"series-{series.tone % TONES}", found))
    return placed


def _labels_svg(labels: list[tuple[str, Placed]], css: str) -> list[str]:
    """Value labels (with their leader lines) in their series' tone."""
    out = []
    for tone, placed in labels:
        out.append(f'<g class="{css} {tone}">')
        if placed.leader is not None:
            x1, y1, x2, y2 = placed.leader
            out.append(
                f'<line class="leader" x1="{_f(x1)}" y1="{_f(y1)}" x2="{_f(x2)}" y2="{_f(y2)}"/>'
            )
        out.append(placed.text.svg())
        out.append("</g>")
    return out


def _note_candidates(note: Note, plot: _Plot) -> list[Placed]:
    """Spots for a note: to the right of its point first."""
    x, y = plot.x(note.day), plot.y(note.value)
    return around(x, y, note.text, font_px=FONT_NOTE, clear_px=CLEAR_PX, prefer_right=True)


def _note_svg(note: Note, placed: Placed) -> list[str]:
    """A note, its leader line when it was moved off its spot, and its tooltip."""
    out = ['<g class="note">']
    if note.title:
        out.append(f"<title>{escape(note.title)}</title>")
    if placed.leader is not None:
        x1, y1, x2, y2 = placed.leader
        out.append(
            f'<line class="leader" x1="{_f(x1)}" y1="{_f(y1)}" x2="{_f(x2)}" y2="{_f(y2)}"/>'
        )
    out += [placed.text.svg(), "</g>"]
    return out


def _legend(series: tuple[Series, ...], *, left: float, right: float) -> tuple[list[str], int]:
    """Swatch and name per series across the top, wrapping onto more rows when needed."""
    out = []
    x, row = left, 0
    for item in series:
        width = 30 + text_width(item.name, font_px=FONT_LEGEND) + 16
        if out and x + width > right:
            x, row = left, row + 1
        y = TOP_PAD_PX + row * LEGEND_ROW_PX + 7
        planned = " planned" if item.planned else ""
        label = Text(x + 28, y + 4, item.name, FONT_LEGEND, Anchor.START)
        out.append(
            f'<g class="legend-item series-{item.tone % TONES}{planned}">'
            f'<line class="line" x1="{_f(x)}" x2="{_f(x + 22)}" y1="{_f(y)}" y2="{_f(y)}"/>'
            f'<circle cx="{_f(x + 11)}" cy="{_f(y)}" r="{POINT_R}"/>{label.svg()}</g>'
        )
        x += width
    rows = row + 1 if out else 0
    return (['<g class="legend">', *out, "</g>"] if out else []), rows


def _summary(chart: Chart) -> str:
    """Each series' newest value and date, the reference lines, the notes (the SVG's desc)."""
    parts = []
    for series in chart.series:
        shown = [p for p in series.points if p.marker]
        if not shown:
            parts.append(f"{series.name}: no results yet")
            continue
        newest = _ordered(tuple(shown))[-1]
        label = " ".join(t for t in (series.name, chart.unit) if t)
        parts.append(f"{label}: newest {_num(newest.value)} on {clinical_date(newest.when)}")
    text = "; ".join(parts) + "." if parts else f"{EMPTY_TEXT}."
    lines = [
        " ".join(t for t in (f"{h.label} at", _num(h.value), chart.unit) if t)
        for h in sorted(chart.hlines, key=lambda h: (h.value, h.label))
    ]
    if lines:
        text += f" Reference lines: {'; '.join(lines)}."
    for note in chart.notes:
        text += f" {note.text.capitalize()} from {relative_day(note.day)}"
        text += f": {note.title}" if note.title else "."
    return text


def _ordered(points: tuple[Point, ...]) -> list[Point]:
    """Points by day, then date, then value, so any input order draws the same chart."""
    return sorted(points, key=lambda p: (p.day, p.when, p.value, p.note, p.marker))


def _num(value: Decimal) -> str:
    """A decimal as plain digits with the scale it was given (ticks are normalized first)."""
    return "0" if value == 0 and value.is_signed() else format(value, "f")


def _f(value: float) -> str:
    """A coordinate with at most one decimal and no trailing .0 or negative zero."""
    text = f"{value:.1f}".removesuffix(".0")
    return "0" if text == "-0" else text
