"""Server-side SVG line charts for post-infusion lab trends (no scripts, no inline styles)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal, localcontext

from markupsafe import Markup, escape

__all__ = ["Chart", "HLine", "Point", "Series", "VLine", "render_svg", "table"]


@dataclass(frozen=True)
class Point:
    """One result: days after infusion (x), its value (y), its date and an optional note."""

    day: int
    value: Decimal
    when: dt.date
    note: str = ""


@dataclass(frozen=True)
class Series:
    """A named run of results drawn as one line; steps=True holds each value until the next."""

    name: str
    points: tuple[Point, ...]
    tone: int = 0
    steps: bool = False


@dataclass(frozen=True)
class HLine:
    """A dashed horizontal reference line such as a ULN multiple or a baseline."""

    value: Decimal
    label: str
    danger: bool = False


@dataclass(frozen=True)
class VLine:
    """A vertical marker on a day such as the infusion or a scheduled check."""

    day: int
    label: str


@dataclass(frozen=True)
class Chart:
    """Everything one chart shows; key is a slug that prefixes the chart's element ids."""

    key: str
    title: str
    unit: str
    series: tuple[Series, ...]
    hlines: tuple[HLine, ...] = ()
    vlines: tuple[VLine, ...] = ()
    x_range: tuple[int, int] | None = None
    y_min: Decimal = Decimal(0)


KEY = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
TONES = 4
LEFT_PX = 60
RIGHT_PX = 16
BOTTOM_PX = 40
LEGEND_ROW_PX = 16
VLINE_LABEL_PX = 18
MIN_PLOT_PX = 40
DAY_TICK = 7
MIN_TICK_GAP_PX = 28
POINT_R = "3.5"
NICE = (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5))
EMPTY_TEXT = "No results yet"


def render_svg(chart: Chart, *, width_px: int = 640, height_px: int = 220) -> Markup:
    """The chart as an inline SVG element, escaped, deterministic and free of inline styles."""
    if not KEY.fullmatch(chart.key):
        raise ValueError(f"chart key must be a slug of [a-z0-9-], got {chart.key!r}")
    with localcontext() as ctx:
        ctx.prec = 28
        return _render(chart, width_px, height_px)


def table(chart: Chart) -> tuple[list[str], list[list[str]]]:
    """The chart's data as headers and rows: one row per (day, date), one column per series."""
    headers = ["Day", "Date", *(s.name for s in chart.series)]
    keys = sorted({(p.day, p.when) for s in chart.series for p in s.points})
    rows = []
    for day, when in keys:
        cells = [str(day), when.isoformat()]
        for series in chart.series:
            found = [p for p in _ordered(series.points) if (p.day, p.when) == (day, when)]
            cells.append("; ".join(_cell(p) for p in found))
        rows.append(cells)
    return headers, rows


def _cell(point: Point) -> str:
    """A table cell: the value, and the note in brackets when there is one."""
    text = _num(point.value)
    return f"{text} ({point.note})" if point.note else text


def _render(chart: Chart, width_px: int, height_px: int) -> Markup:
    """Lay out and write the SVG (called inside a fixed decimal context)."""
    points = [p for s in chart.series for p in s.points]
    for value in [p.value for p in points] + [h.value for h in chart.hlines]:
        if not value.is_finite():
            raise ValueError(f"chart {chart.key!r} has a non-finite value {value}")
    legend, legend_rows = _legend(chart.series, width_px)
    top = 6 + legend_rows * LEGEND_ROW_PX + VLINE_LABEL_PX
    plot = _Plot(
        left=LEFT_PX,
        right=width_px - RIGHT_PX,
        top=top,
        bottom=height_px - BOTTOM_PX,
        x_range=chart.x_range or _default_x_range(chart),
        y_ticks=_y_ticks(chart.y_min, _y_top(chart)),
        y_min=chart.y_min,
    )
    if plot.right - plot.left < MIN_PLOT_PX or plot.bottom - plot.top < MIN_PLOT_PX:
        raise ValueError(f"{width_px}x{height_px} px is too small for chart {chart.key!r}")
    if plot.x_range[1] <= plot.x_range[0]:
        raise ValueError(f"chart {chart.key!r} has an empty x range {plot.x_range}")
    key = chart.key
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width_px} {height_px}"'
        f' role="img" class="chart" aria-labelledby="{key}-title {key}-desc">',
        f'<title id="{key}-title">{escape(chart.title)}</title>',
        f'<desc id="{key}-desc">{escape(_summary(chart))}</desc>',
        f'<defs><clipPath id="{key}-clip"><rect x="{_f(plot.left - 6)}" y="{_f(plot.top - 6)}"'
        f' width="{_f(plot.right - plot.left + 12)}" height="{_f(plot.bottom - plot.top + 12)}"/>'
        "</clipPath></defs>",
        *_axes(chart, plot, height_px),
        *_hlines(chart, plot),
        *_vlines(chart, plot),
        f'<g class="plot" clip-path="url(#{key}-clip)">',
        *(line for series in chart.series for line in _series(series, chart.unit, plot)),
        "</g>",
        *legend,
    ]
    if not points:
        out.append(
            f'<text class="empty" x="{_f((plot.left + plot.right) / 2)}"'
            f' y="{_f((plot.top + plot.bottom) / 2)}" text-anchor="middle">{EMPTY_TEXT}</text>'
        )
    out.append("</svg>")
    return Markup("\n".join(out))  # noqa: S704 - every text was escaped where it was written


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


def _default_x_range(chart: Chart) -> tuple[int, int]:
    """Days spanned by the points and vertical lines, at least a week, padded on both sides."""
    days = [p.day for s in chart.series for p in s.points] + [v.day for v in chart.vlines]
    lo, hi = (min(days), max(days)) if days else (0, 4 * DAY_TICK)
    hi = max(hi, lo + DAY_TICK)
    pad = max(1, round((hi - lo) / 20))
    return lo - pad, hi + pad


def _y_top(chart: Chart) -> Decimal:
    """Largest value or reference line plus about 10% headroom, never equal to y_min."""
    values = [p.value for s in chart.series for p in s.points] + [h.value for h in chart.hlines]
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


def _day_ticks(plot: _Plot) -> list[int]:
    """Multiples of 7 days inside the x range, thinned to multiples of 14, 21... if crowded."""
    lo, hi = plot.x_range
    per_day = (plot.right - plot.left) / (hi - lo)
    step = DAY_TICK
    while step * per_day < MIN_TICK_GAP_PX:
        step += DAY_TICK
    return list(range(-(-lo // step) * step, hi + 1, step))


def _axes(chart: Chart, plot: _Plot, height_px: int) -> list[str]:
    """Grid, axis lines, tick labels and the two axis captions."""
    out = ['<g class="axes">']
    for tick in plot.y_ticks:
        y = _f(plot.y(tick))
        out.append(
            f'<line class="grid" x1="{_f(plot.left)}" x2="{_f(plot.right)}" y1="{y}" y2="{y}"/>'
        )
        out.append(
            f'<text class="tick tick-y" x="{_f(plot.left - 6)}" y="{_f(plot.y(tick) + 4)}"'
            f' text-anchor="end">{_num(tick.normalize())}</text>'
        )
    for day in _day_ticks(plot):
        x = _f(plot.x(day))
        out.append(
            f'<line class="tick-mark" x1="{x}" x2="{x}" y1="{_f(plot.bottom)}"'
            f' y2="{_f(plot.bottom + 4)}"/>'
        )
        out.append(
            f'<text class="tick tick-x" x="{x}" y="{_f(plot.bottom + 16)}"'
            f' text-anchor="middle">{day}</text>'
        )
    left, bottom = _f(plot.left), _f(plot.bottom)
    out += [
        f'<line class="axis" x1="{left}" x2="{left}" y1="{_f(plot.top)}" y2="{bottom}"/>',
        f'<line class="axis" x1="{left}" x2="{_f(plot.right)}" y1="{bottom}" y2="{bottom}"/>',
        f'<text class="axis-caption" x="{_f((plot.left + plot.right) / 2)}"'
        f' y="{_f(height_px - 6)}" text-anchor="middle">days after infusion</text>',
        f'<text class="axis-caption" transform="rotate(-90)"'
        f' x="{_f(-(plot.top + plot.bottom) / 2)}" y="14" text-anchor="middle">'
        f"{escape(chart.unit)}</text>",
        "</g>",
    ]
    return out


def _hlines(chart: Chart, plot: _Plot) -> list[str]:
    """Dashed reference lines with their label just above the right end."""
    out = []
    for hline in sorted(chart.hlines, key=lambda h: (h.value, h.label)):
        if not plot.shows_value(hline.value):
            continue
        y = plot.y(hline.value)
        tone = "hline hline-danger" if hline.danger else "hline"
        title = " ".join(t for t in (f"{hline.label}:", _num(hline.value), chart.unit) if t)
        out += [
            f'<g class="{tone}"><title>{escape(title)}</title>',
            f'<line x1="{_f(plot.left)}" x2="{_f(plot.right)}" y1="{_f(y)}" y2="{_f(y)}"'
            ' stroke-dasharray="6 4"/>',
            f'<text x="{_f(plot.right - 4)}" y="{_f(y - 4)}" text-anchor="end">'
            f"{escape(hline.label)}</text></g>",
        ]
    return out


def _vlines(chart: Chart, plot: _Plot) -> list[str]:
    """Vertical day markers with their label above the plot."""
    out = []
    for vline in sorted(chart.vlines, key=lambda v: (v.day, v.label)):
        if not plot.shows_day(vline.day):
            continue
        x = _f(plot.x(vline.day))
        anchor = _anchor(plot.x(vline.day), vline.label, plot.right + RIGHT_PX)
        out += [
            f'<g class="vline"><title>{escape(vline.label)} (day {vline.day})</title>',
            f'<line x1="{x}" x2="{x}" y1="{_f(plot.top)}" y2="{_f(plot.bottom)}"/>',
            f'<text x="{x}" y="{_f(plot.top - 5)}" text-anchor="{anchor}">'
            f"{escape(vline.label)}</text></g>",
        ]
    return out


def _anchor(x: float, label: str, width: float) -> str:
    """Centre a label on x unless that would push it past either edge of the drawing."""
    half = len(label) * 3.2
    if x + half > width - 2:
        return "end"
    return "start" if x - half < 2 else "middle"


def _series(series: Series, unit: str, plot: _Plot) -> list[str]:
    """One series: its line (stepped when asked) and a circle with a tooltip per point."""
    points = _ordered(series.points)
    out = [f'<g class="series series-{series.tone % TONES}">']
    coords = [(plot.x(p.day), plot.y(p.value)) for p in points]
    if series.steps:
        coords = [
            c
            for i, (x, y) in enumerate(coords)
            for c in ([(x, coords[i - 1][1]), (x, y)] if i else [(x, y)])
        ]
    pairs = [f"{_f(x)},{_f(y)}" for x, y in coords]
    pairs = [pair for i, pair in enumerate(pairs) if not i or pair != pairs[i - 1]]
    if len(pairs) > 1:
        joined = " ".join(pairs)
        out.append(f'<polyline class="line" fill="none" points="{joined}"/>')
    for point in points:
        text = " ".join(t for t in (series.name, _num(point.value), unit) if t)
        text += f" on {point.when.isoformat()} (day {point.day})"
        if point.note:
            text += f", {point.note}"
        out.append(
            f'<circle cx="{_f(plot.x(point.day))}" cy="{_f(plot.y(point.value))}" r="{POINT_R}">'
            f"<title>{escape(text)}</title></circle>"
        )
    out.append("</g>")
    return out


def _legend(series: tuple[Series, ...], width_px: int) -> tuple[list[str], int]:
    """Swatch and name per series across the top, wrapping onto more rows when needed."""
    out = []
    x, row = float(LEFT_PX), 0
    for item in series:
        width = 30 + len(item.name) * 6.5 + 16
        if out and x + width > width_px - RIGHT_PX:
            x, row = float(LEFT_PX), row + 1
        y = 6 + row * LEGEND_ROW_PX + 7
        out.append(
            f'<g class="legend-item series-{item.tone % TONES}">'
            f'<line class="line" x1="{_f(x)}" x2="{_f(x + 22)}" y1="{_f(y)}" y2="{_f(y)}"/>'
            f'<circle cx="{_f(x + 11)}" cy="{_f(y)}" r="{POINT_R}"/>'
            f'<text x="{_f(x + 28)}" y="{_f(y + 4)}">{escape(item.name)}</text></g>'
        )
        x += width
    rows = row + 1 if out else 0
    return (['<g class="legend">', *out, "</g>"] if out else []), rows


def _summary(chart: Chart) -> str:
    """One sentence: each series' newest value and date."""
    parts = []
    for series in chart.series:
        if not series.points:
            parts.append(f"{series.name}: no results yet")
            continue
        newest = _ordered(series.points)[-1]
        label = " ".join(t for t in (series.name, chart.unit) if t)
        parts.append(f"{label}: newest {_num(newest.value)} on {newest.when.isoformat()}")
    return "; ".join(parts) + "." if parts else f"{EMPTY_TEXT}."


def _ordered(points: tuple[Point, ...]) -> list[Point]:
    """Points by day, then date, then value, so any input order draws the same chart."""
    return sorted(points, key=lambda p: (p.day, p.when, p.value, p.note))


def _num(value: Decimal) -> str:
    """A decimal as plain digits with the scale it was given (ticks are normalized first)."""
    return "0" if value == 0 and value.is_signed() else format(value, "f")


def _f(value: float) -> str:
    """A coordinate with at most one decimal and no trailing .0 or negative zero."""
    text = f"{value:.1f}".removesuffix(".0")
    return "0" if text == "-0" else text
