"""Server-side SVG charts: well-formed, escaped, CSP-safe, geometrically right, one date format,
and no two labels overlapping (each label's box estimated from the SVG the code writes)."""

from __future__ import annotations

import datetime as dt
import random
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from decimal import Decimal
from itertools import combinations, pairwise

import pytest
from markupsafe import Markup

from smart_app.rules.followup import follow_up
from smart_app.web.charts import (
    Chart,
    HLine,
    Note,
    Point,
    PointLabels,
    Series,
    VLine,
    render_svg,
    table,
)
from smart_app.web.followup_charts import follow_up_charts
from smart_app.web.words import clinical_date
from tests.builders import (
    ALT,
    AST,
    CONTINUATION,
    FULL_DOSE,
    INR,
    POLICY,
    PT,
    changed,
    continued,
    day,
    lab,
    normal_labs,
    patient,
    plan,
    tapered,
)

NS = "{http://www.w3.org/2000/svg}"
INFUSION = dt.date(2026, 10, 24)
EVIL = "<script>alert(\"x\")</script> & 'q'"
NBSP = "\u00a0"


def _point(day: int, value: str, note: str = "") -> Point:
    """A result on a day after the fixed infusion date."""
    return Point(day, Decimal(value), INFUSION + dt.timedelta(days=day), note)


def _liver_chart(key: str = "liver") -> Chart:
    """ALT and AST in multiples of ULN with the usual reference lines."""
    alt = Series(
        "ALT",
        (
            _point(-3, "0.5"),
            _point(7, "1.20"),
            _point(14, "2.67", "2.67 x ULN"),
            _point(27, "3.00"),
        ),
    )
    ast = Series("AST", (_point(-3, "0.4"), _point(14, "2")), tone=1)
    return Chart(
        key=key,
        title="Liver enzymes",
        unit="x ULN",
        series=(alt, ast),
        hlines=(HLine(Decimal(2), "2 x ULN", danger=True), HLine(Decimal("0.5"), "baseline")),
        vlines=(VLine(0, "infusion"), VLine(14, "day 14 check")),
    )


def _steroid_chart() -> Chart:
    """Prednisolone dose in mg/day drawn as steps."""
    dose = Series(
        "Prednisolone",
        (_point(-1, "10"), _point(30, "10"), _point(44, "5"), _point(58, "0")),
        tone=2,
        steps=True,
    )
    return Chart(key="steroid", title="Prednisolone", unit="mg/day", series=(dose,))


def _parse(raw: str) -> ET.Element:
    """SVG text parsed as XML, which fails on anything ill-formed."""
    return ET.fromstring(raw)  # noqa: S314 - our own output, not untrusted input


def _svg(chart: Chart, **size: int) -> ET.Element:
    """The rendered chart, parsed."""
    return _parse(str(render_svg(chart, **size)))


def _classes(element: ET.Element) -> set[str]:
    """The element's CSS classes."""
    return set(element.get("class", "").split())


def _with_class(root: ET.Element, name: str, tag: str = "*") -> list[ET.Element]:
    """Elements of a tag (any by default) carrying a CSS class."""
    return [e for e in root.iter(f"{NS}{tag}" if tag != "*" else tag) if name in _classes(e)]


def _day_of(words: str) -> int:
    """The day back from its words: 'infusion day', 'day 7 after infusion', '3 days before...'."""
    text = words.replace(NBSP, " ")
    if text == "infusion day":
        return 0
    if found := re.fullmatch(r"day (\d+) after infusion", text):
        return int(found[1])
    found = re.fullmatch(r"(\d+) days? before infusion", text)
    assert found, words
    return -int(found[1])


def _circles(root: ET.Element, series_name: str) -> dict[int, tuple[float, float]]:
    """Centre of each plotted point of a series, by day (from the point's tooltip)."""
    found = {}
    for group in _with_class(root, "series", "g"):
        for circle in group.iter(f"{NS}circle"):
            title = circle.find(f"{NS}title")
            assert title is not None
            if title.text.startswith(f"{series_name} "):
                day = _day_of(re.search(r"\(([^()]*infusion[^()]*)\)", title.text)[1])
                found[day] = (float(circle.get("cx")), float(circle.get("cy")))
    return found


def _polyline(root: ET.Element, tone: int) -> list[tuple[float, float]]:
    """Vertices of the line of the series drawn in a tone."""
    (group,) = [g for g in _with_class(root, f"series-{tone}", "g") if "series" in _classes(g)]
    line = group.find(f"{NS}polyline")
    assert line is not None
    return [(float(x), float(y)) for x, y in (p.split(",") for p in line.get("points").split())]


def _y_ticks(root: ET.Element) -> list[Decimal]:
    """Y tick labels in the order drawn (bottom to top)."""
    return [Decimal(t.text) for t in _with_class(root, "tick-y", "text")]


# Label boxes, estimated from the SVG alone ----------------------------------------------------


@dataclass(frozen=True)
class TextBox:
    """A drawn text and the rectangle it covers (estimated)."""

    text: str
    left: float
    top: float
    right: float
    bottom: float

    def meets(self, other: TextBox) -> bool:
        """Whether the two rectangles share any area."""
        return (
            self.left < other.right
            and other.left < self.right
            and self.top < other.bottom
            and other.top < self.bottom
        )


def estimated_width(text: str, font_px: float, *, bold: bool) -> float:
    """Width from the characters: 1 em for m, w, x-sign, % and @, 0.8 em for other capitals,
    0.64 em for anything else, 12% more in bold (never narrower than DejaVu Sans draws them)."""
    ems = sum(1.0 if c in "mwMW%@\u00d7" else 0.8 if c.isupper() else 0.64 for c in text)
    return ems * font_px * (1.12 if bold else 1.0)


def text_boxes(root: ET.Element) -> list[TextBox]:
    """Every <text> of an SVG as a box: its size and weight from its attributes, its width from
    its characters, its anchor and its rotation."""
    boxes = []
    for element in root.iter(f"{NS}text"):
        text = element.text or ""
        size = float(element.get("font-size") or "nan")
        assert size == size, f"text {text!r} has no font-size attribute"  # NaN != NaN
        width = estimated_width(text, size, bold=element.get("font-weight") == "700")
        x, y = float(element.get("x")), float(element.get("y"))
        left = x - {"start": 0, "middle": width / 2, "end": width}[element.get("text-anchor")]
        top, bottom = y - 0.8 * size, y + 0.25 * size
        if element.get("transform") == "rotate(-90)":  # (x, y) drawn at (y, -x), reading upwards
            boxes.append(TextBox(text, top, -(left + width), bottom, -left))
        else:
            assert element.get("transform") is None
            boxes.append(TextBox(text, left, top, left + width, bottom))
    return boxes


def overlaps(boxes: list[TextBox]) -> list[tuple[str, str]]:
    """Pairs of texts whose boxes meet."""
    return [(a.text, b.text) for a, b in combinations(boxes, 2) if a.meets(b)]


def assert_no_overlap(root: ET.Element) -> list[TextBox]:
    """No two texts of the SVG meet, and every text lies on the drawing."""
    boxes = text_boxes(root)
    assert overlaps(boxes) == []
    _x, _y, width, height = (float(v) for v in root.get("viewBox").split())
    outside = [b.text for b in boxes if b.left < 0 or b.right > width or b.top < 0]
    assert outside == [] and all(b.bottom <= height for b in boxes)
    return boxes


# The drawing --------------------------------------------------------------------------------


def test_svg_root_title_and_summary() -> None:
    markup = render_svg(_liver_chart(), width_px=700, height_px=240)
    assert isinstance(markup, Markup)
    assert markup.startswith('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 700 240"')
    root = _parse(str(markup))
    assert root.tag == f"{NS}svg"
    assert (root.get("role"), root.get("class")) == ("img", "chart")
    assert root.get("aria-labelledby") == "liver-title liver-desc"
    title, desc = root.find(f"{NS}title"), root.find(f"{NS}desc")
    assert (title.get("id"), title.text) == ("liver-title", "Liver enzymes")
    assert desc.get("id") == "liver-desc"
    assert desc.text == (
        f"ALT x ULN: newest 3.00 on 20{NBSP}Nov{NBSP}2026; "
        f"AST x ULN: newest 2 on 7{NBSP}Nov{NBSP}2026. "
        "Reference lines: baseline at 0.5 x ULN; 2 x ULN at 2 x ULN."
    )


def test_malicious_text_is_escaped_everywhere() -> None:
    chart = Chart(
        key="evil",
        title=EVIL,
        unit=EVIL,
        series=(Series(EVIL, (_point(1, "1", EVIL), _point(8, "2"))),),
        hlines=(HLine(Decimal(1), EVIL),),
        vlines=(VLine(1, EVIL),),
        notes=(Note(8, Decimal(2), EVIL, EVIL),),
    )
    raw = str(render_svg(chart))
    assert "<script" not in raw and 'alert("x")' not in raw and " & " not in raw
    assert "&lt;script&gt;" in raw
    root = _parse(raw)
    assert root.find(f"{NS}title").text == EVIL
    assert root.find(f"{NS}desc").text.startswith(f"{EVIL} {EVIL}: newest 2 on")
    legend = [t.text for g in _with_class(root, "legend-item", "g") for t in g.iter(f"{NS}text")]
    assert legend == [EVIL]
    tooltips = [t.text for t in root.iter(f"{NS}title")]
    assert f"{EVIL} 1 {EVIL} on 25{NBSP}Oct{NBSP}2026 (day{NBSP}1 after infusion), {EVIL}" in (
        tooltips
    )
    texts = [t.text for t in root.iter(f"{NS}text")]
    assert texts.count(EVIL) == 5  # legend, unit caption, hline, vline and note labels
    assert not [e for e in root.iter() if e.tag.startswith(f"{NS}script")]


@pytest.mark.parametrize("chart", [_liver_chart(), _steroid_chart()], ids=["liver", "steroid"])
def test_no_inline_style_no_script_no_external_url(chart: Chart) -> None:
    raw = str(render_svg(chart))
    root = _parse(raw)
    assert all("style" not in element.attrib for element in root.iter())
    assert not [e for e in root.iter() if e.tag in (f"{NS}style", f"{NS}script")]
    assert re.findall(r"https?:[^\s\"'<>]*", raw) == ["http://www.w3.org/2000/svg"]
    assert re.search(r"\bstyle\s*=|<style|<script|\bon[a-z]+\s*=|javascript:", raw) is None
    local_refs = re.findall(r"url\(([^)]*)\)", raw)
    assert local_refs and all(ref.startswith(f"#{chart.key}-") for ref in local_refs)


def test_larger_value_is_drawn_higher() -> None:
    alt = _circles(_svg(_liver_chart()), "ALT")
    assert set(alt) == {-3, 7, 14, 27}
    assert alt[27][1] < alt[14][1] < alt[7][1] < alt[-3][1]
    assert alt[-3][0] < alt[7][0] < alt[14][0] < alt[27][0]


def test_reference_line_sits_at_a_point_of_the_same_value() -> None:
    root = _svg(_liver_chart())
    ast = _circles(root, "AST")  # AST is 2 on day 14, the danger line is at 2
    (danger,) = _with_class(root, "hline-danger", "g")
    assert "hline" in _classes(danger)
    line = danger.find(f"{NS}line")
    assert float(line.get("y1")) == float(line.get("y2")) == ast[14][1]
    assert line.get("stroke-dasharray")
    assert [t.text for t in danger.iter(f"{NS}text")] == ["2 x ULN"]
    (label,) = danger.iter(f"{NS}text")
    assert float(label.get("x")) > ast[14][0]  # near the right end
    assert abs(float(label.get("y")) - ast[14][1]) < 16  # on its line, above or below
    (plain,) = [g for g in _with_class(root, "hline", "g") if "hline-danger" not in _classes(g)]
    assert float(plain.find(f"{NS}line").get("y1")) == _circles(root, "ALT")[-3][1]


def test_vertical_line_sits_on_the_day_of_a_point() -> None:
    root = _svg(_liver_chart())
    vlines = {g.find(f"{NS}text").text: g for g in _with_class(root, "vline", "g")}
    assert set(vlines) == {"infusion", "day 14 check"}
    check = vlines["day 14 check"].find(f"{NS}line")
    assert float(check.get("x1")) == float(check.get("x2")) == _circles(root, "ALT")[14][0]
    label = vlines["day 14 check"].find(f"{NS}text")
    assert float(label.get("y")) < float(check.get("y2"))  # label above the plot
    infusion = float(vlines["infusion"].find(f"{NS}line").get("x1"))
    assert _circles(root, "ALT")[-3][0] < infusion < _circles(root, "ALT")[7][0]


def test_step_line_holds_each_value_until_the_next_point() -> None:
    root = _svg(_steroid_chart())
    c = _circles(root, "Prednisolone")
    assert [c[d][1] for d in (-1, 30)] == [c[-1][1]] * 2 and c[44][1] < c[58][1]
    expected = [c[-1], c[30], (c[44][0], c[30][1]), c[44], (c[58][0], c[44][1]), c[58]]
    assert _polyline(root, 2) == expected
    for (x0, y0), (x1, y1) in pairwise(expected):
        assert (x0 == x1) != (y0 == y1)  # every segment is horizontal or vertical


def test_a_vertex_without_marker_extends_the_line_but_has_no_circle_or_row() -> None:
    held = Point(29, Decimal(5), INFUSION + dt.timedelta(days=29), marker=False)
    chart = Chart(
        key="held",
        title="t",
        unit="mg/day",
        series=(Series("dose", (_point(-1, "5"), held), steps=True),),
    )
    root = _svg(chart)
    circles = _circles(root, "dose")
    assert set(circles) == {-1}
    line = _polyline(root, 0)
    assert len(line) == 2 and line[0][1] == line[1][1] == circles[-1][1]  # held, no drop
    assert table(chart)[1] == [[f"23{NBSP}Oct{NBSP}2026", f"1{NBSP}day before infusion", "5"]]


def test_plain_line_joins_points_in_day_order_whatever_the_input_order() -> None:
    chart = _liver_chart()
    shuffled = Series("ALT", tuple(reversed(chart.series[0].points)))
    reordered = Chart(**{**chart.__dict__, "series": (shuffled, chart.series[1])})
    root = _svg(reordered)
    alt = _circles(root, "ALT")
    assert _polyline(root, 0) == [alt[d] for d in (-3, 7, 14, 27)]
    assert render_svg(reordered) == render_svg(chart)


def test_output_is_deterministic_and_coordinates_have_one_decimal_at_most() -> None:
    first = str(render_svg(_liver_chart(), width_px=613, height_px=217))
    assert first == str(render_svg(_liver_chart(), width_px=613, height_px=217))
    root = _parse(first)
    numbers = [
        number
        for element in root.iter()
        for name in ("x", "y", "x1", "x2", "y1", "y2", "cx", "cy", "width", "height", "points")
        if name in element.attrib
        for number in re.split(r"[ ,]", element.get(name))
    ]
    assert len(numbers) > 50
    assert all(re.fullmatch(r"-?\d+(\.\d)?", n) for n in numbers), numbers


def test_chart_without_results_still_has_axes_and_says_so() -> None:
    for chart in (
        Chart(key="none", title="Platelets", unit="10^3/uL", series=()),
        Chart(key="none", title="Platelets", unit="10^3/uL", series=(Series("PLT", ()),)),
    ):
        root = _svg(chart)
        assert [t.text for t in _with_class(root, "empty", "text")] == ["No results yet"]
        assert len(_with_class(root, "axis", "line")) == 2
        assert len(_y_ticks(root)) >= 4 and len(_with_class(root, "tick-x", "text")) >= 2
        assert not [c for g in _with_class(root, "series", "g") for c in g.iter(f"{NS}circle")]
        assert not list(root.iter(f"{NS}polyline"))
        assert_no_overlap(root)
    assert root.find(f"{NS}desc").text == "PLT: no results yet."
    assert not _with_class(_svg(_liver_chart()), "empty")


def test_axes_label_days_every_week_and_carry_the_unit() -> None:
    root = _svg(_liver_chart())
    days = [int(t.text) for t in _with_class(root, "tick-x", "text")]
    assert days[0] <= 0 and days[-1] >= 21 and 0 in days
    assert all(b - a == 7 for a, b in pairwise(days))
    captions = [t.text for t in _with_class(root, "axis-caption", "text")]
    assert captions == ["days after infusion", "x ULN"]
    assert not _with_class(root, "tick-date")  # no origin: no dates


def test_with_an_origin_each_day_tick_carries_its_date_in_the_one_format() -> None:
    chart = Chart(**{**_liver_chart().__dict__, "origin": INFUSION})
    root = _svg(chart)
    days = [int(t.text) for t in _with_class(root, "tick-x", "text")]
    dates = [t.text for t in _with_class(root, "tick-date", "text")]
    assert dates == [clinical_date(INFUSION + dt.timedelta(days=d)) for d in days]
    assert f"24{NBSP}Oct{NBSP}2026" in dates  # day 0, never ISO or "24 Oct (d0)"
    assert not [d for d in dates if re.search(r"\d{4}-\d\d|\(d", d)]
    assert_no_overlap(root)


@pytest.mark.parametrize(
    ("y_min", "values"),
    [
        ("0", ["0.5", "1.20", "2.67", "3.00"]),
        ("0", ["250", "310", "180"]),
        ("0", ["10", "10", "5", "0"]),
        ("0", ["7", "7", "7"]),
        ("0", ["0", "0"]),
        ("0", ["0.013"]),
        ("0", ["98765"]),
        ("100", ["150", "420"]),
        ("5", ["5"]),
        ("1.5", ["1.7", "1.9"]),
        ("0", []),
    ],
)
def test_y_ticks_are_nice_and_cover_every_value(y_min: str, values: list[str]) -> None:
    points = tuple(_point(7 * i, v) for i, v in enumerate(values))
    chart = Chart(key="y", title="t", unit="u", series=(Series("s", points),), y_min=Decimal(y_min))
    root = _svg(chart)
    ticks = _y_ticks(root)
    assert 4 <= len(ticks) <= 6
    steps = {b - a for a, b in pairwise(ticks)}
    assert len(steps) == 1
    (step,) = steps
    assert step > 0 and step.scaleb(-step.adjusted()).normalize() in {1, 2, Decimal("2.5"), 5}
    assert ticks[0] >= Decimal(y_min) and all(t % step == 0 for t in ticks)
    assert all(ticks[-1] >= Decimal(v) for v in values)
    tick_ys = [float(t.get("y")) for t in _with_class(root, "tick-y", "text")]
    assert tick_ys == sorted(tick_ys, reverse=True) and len(set(tick_ys)) == len(tick_ys)
    axis_top = min(float(line.get("y1")) for line in _with_class(root, "axis", "line"))
    assert all(y >= axis_top for _, y in _circles(root, "s").values())
    assert_no_overlap(root)


def test_ten_percent_headroom_above_the_highest_value_or_line() -> None:
    chart = Chart(
        key="plt",
        title="Platelets",
        unit="10^3/uL",
        series=(Series("PLT", (_point(0, "300"),)),),
        hlines=(HLine(Decimal(380), "baseline 380"),),
    )
    ticks = _y_ticks(_svg(chart))
    assert ticks[-1] >= Decimal(418) and ticks[0] == 0


def test_ids_are_prefixed_by_the_key_so_charts_can_share_a_page() -> None:
    ids = {}
    for key in ("alt-ast", "platelets"):
        root = _svg(_liver_chart(key))
        found = [e.get("id") for e in root.iter() if "id" in e.attrib]
        assert len(found) == len(set(found)) >= 2
        assert all(i.startswith(f"{key}-") for i in found)
        assert set(root.get("aria-labelledby").split()) <= set(found)
        ids[key] = set(found)
    assert not ids["alt-ast"] & ids["platelets"]


@pytest.mark.parametrize("key", ["", "Liver", "a b", 'x"y', "a_b", "-a", "<k>"])
def test_key_must_be_a_slug(key: str) -> None:
    with pytest.raises(ValueError, match="slug"):
        render_svg(Chart(key=key, title="t", unit="u", series=()))


def test_point_tooltip_names_value_unit_date_day_in_words_and_note() -> None:
    root = _svg(_liver_chart())
    tooltips = [t.text for t in root.iter(f"{NS}title")]
    assert f"ALT 2.67 x ULN on 7{NBSP}Nov{NBSP}2026 (day{NBSP}14 after infusion), 2.67 x ULN" in (
        tooltips
    )
    assert f"ALT 0.5 x ULN on 21{NBSP}Oct{NBSP}2026 (3{NBSP}days before infusion)" in tooltips
    assert not [t for t in tooltips if re.search(r"\d{4}-\d\d-\d\d|\(day -?\d", t)]
    legend = [t.text for g in _with_class(root, "legend-item", "g") for t in g.iter(f"{NS}text")]
    assert legend == ["ALT", "AST"]
    tones = [sorted(_classes(g)) for g in _with_class(root, "series", "g")]
    assert tones == [["series", "series-0"], ["series", "series-1"]]


def test_table_has_a_row_per_date_with_the_day_in_words_and_blanks_where_none() -> None:
    headers, rows = table(_liver_chart())
    assert headers == ["Date", "Day", "ALT", "AST"]
    assert rows == [
        [f"21{NBSP}Oct{NBSP}2026", f"3{NBSP}days before infusion", "0.5", "0.4"],
        [f"31{NBSP}Oct{NBSP}2026", f"day{NBSP}7 after infusion", "1.20", ""],
        [f"7{NBSP}Nov{NBSP}2026", f"day{NBSP}14 after infusion", "2.67 (2.67 x ULN)", "2"],
        [f"20{NBSP}Nov{NBSP}2026", f"day{NBSP}27 after infusion", "3.00", ""],
    ]
    assert table(Chart(key="e", title="t", unit="u", series=(Series("PLT", ()),))) == (
        ["Date", "Day", "PLT"],
        [],
    )


def test_the_newest_value_and_each_dose_change_are_labelled_beside_their_point() -> None:
    alt = Series("ALT", (_point(0, "1"), _point(7, "2.5")), labels=PointLabels.NEWEST)
    dose = Series(
        "dose",
        (_point(-1, "5.4"), _point(29, "2.7"), _point(43, "1.4"), _point(57, "0")),
        tone=1,
        steps=True,
        labels=PointLabels.CHANGES,
    )
    for series, wanted in ((alt, {7: "2.5"}), (dose, {-1: "5.4", 29: "2.7", 43: "1.4"})):
        root = _svg(Chart(key="v", title="t", unit="u", series=(series,)))
        circles = _circles(root, series.name)
        labels = [t for g in _with_class(root, "value-label", "g") for t in g.iter(f"{NS}text")]
        assert sorted(t.text for t in labels) == sorted(wanted.values())
        for label in labels:
            (near,) = [d for d, v in wanted.items() if v == label.text]
            x, y = circles[near]
            assert abs(float(label.get("x")) - x) < 20 and abs(float(label.get("y")) - y) < 20
        assert_no_overlap(root)


# No two labels overlap, dense cases --------------------------------------------------------


def _dose_chart(n: int, **kwargs: object) -> ET.Element:
    """The follow-up's steroid dose chart on day `n`, parsed."""
    facts = kwargs.pop("facts", None) or patient(normal_labs(through=max(n, 0)))
    state = kwargs.pop("state", None) or plan()
    found = follow_up(facts, state, on=day(n), policy=POLICY)
    charts = {c.key: c for c in follow_up_charts(found, facts, policy=POLICY)}
    return _svg(charts["steroid-dose"])


def _marker_texts(root: ET.Element) -> list[str]:
    """The labels of the day markers."""
    return [g.find(f"{NS}text").text for g in _with_class(root, "vline", "g")]


def test_today_on_the_day_30_check_shares_one_label_and_nothing_overlaps() -> None:
    root = _dose_chart(28)
    assert _marker_texts(root) == ["infusion", "day-30 liver check \u00b7 today"]
    (shared,) = [g for g in _with_class(root, "vline", "g") if "today" in g.find(f"{NS}text").text]
    assert shared.find(f"{NS}title").text == (
        f"day-30 liver check, today: 21{NBSP}Nov{NBSP}2026, day{NBSP}28 after infusion"
    )
    assert_no_overlap(root)


@pytest.mark.parametrize("n", [-1, 1])
def test_today_a_day_from_the_infusion_is_labelled_beside_it(n: int) -> None:
    root = _dose_chart(n)
    assert set(_marker_texts(root)) == {"today", "infusion", "day-30 liver check"}
    boxes = {b.text: b for b in assert_no_overlap(root)}
    today, infusion = boxes["today"], boxes["infusion"]
    assert (today.right <= infusion.left) if n < 0 else (infusion.right <= today.left)
    lines = {g.find(f"{NS}text").text: g.find(f"{NS}line") for g in _with_class(root, "vline", "g")}
    for name in ("today", "infusion"):  # each line reaches up beside its own label
        assert float(lines[name].get("y1")) <= boxes[name].bottom


def test_markers_on_consecutive_days_stack_without_overlap_and_lines_do_not_cross_labels() -> None:
    chart = Chart(
        key="dense",
        title="t",
        unit="u",
        series=(Series("s", tuple(_point(d, str(d % 3 + 1)) for d in range(0, 8))),),
        vlines=tuple(VLine(d, name) for d, name in enumerate(("infusion", "today", "check", "x"))),
        x_range=(-2, 10),
    )
    root = _svg(chart)
    boxes = assert_no_overlap(root)
    labels = {b.text: b for b in boxes if b.text in ("infusion", "today", "check", "x")}
    assert len(labels) == 4
    for group in _with_class(root, "vline", "g"):
        line = group.find(f"{NS}line")
        x, top = float(line.get("x1")), float(line.get("y1"))
        own = group.find(f"{NS}text").text
        crossed = [
            b.text
            for b in labels.values()
            if b.text != own and b.left < x < b.right and b.bottom > top
        ]
        assert crossed == [], own


def test_labels_at_the_edges_stay_on_the_drawing() -> None:
    chart = Chart(
        key="edge",
        title="t",
        unit="mg/day",
        series=(
            Series(
                "a long series name at the edge",
                (_point(0, "9.99"), _point(28, "0.01")),
                labels=PointLabels.CHANGES,
            ),
        ),
        hlines=(HLine(Decimal("9.99"), "top line", danger=True), HLine(Decimal(0), "zero line")),
        vlines=(VLine(0, "a long label on the first day"), VLine(28, "a long label on the last")),
        notes=(Note(28, Decimal("0.01"), "decision pending"),),
        x_range=(0, 28),
        origin=INFUSION,
    )
    for width in (640, 420):
        root = _svg(chart, width_px=width, height_px=260)
        boxes = assert_no_overlap(root)
        assert {"a long label on the first day", "a long label on the last", "top line"} <= {
            b.text for b in boxes
        }
        assert "decision pending" in {b.text for b in boxes}


def test_many_close_points_and_close_reference_lines_never_overlap() -> None:
    close = tuple(
        Series(
            name,
            tuple(
                _point(d, str(Decimal("0.9") + Decimal(i) / 20 + Decimal(d % 2) / 50))
                for d in range(-3, 29)
            ),
            tone=i,
            labels=PointLabels.NEWEST,
        )
        for i, name in enumerate(("total bilirubin", "PT", "INR", "extra"))
    )
    chart = Chart(
        key="close",
        title="t",
        unit="\u00d7 ULN",
        series=close,
        hlines=(
            HLine(Decimal(1), "ULN", danger=True),
            HLine(Decimal("1.02"), "baseline 1.02"),
            HLine(Decimal("1.05"), "2 \u00d7 ULN", danger=True),
        ),
        vlines=(VLine(0, "infusion"), VLine(28, "day-30 check"), VLine(28, "today")),
        x_range=(-7, 35),
        origin=INFUSION,
    )
    root = _svg(chart)
    boxes = assert_no_overlap(root)
    assert {"ULN", "baseline 1.02", "2 \u00d7 ULN"} <= {b.text for b in boxes}


@pytest.mark.parametrize("seed", range(80))
def test_random_charts_never_overlap(seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - a reproducible test, not a secret
    days = sorted(rng.sample(range(-7, 60), rng.randint(1, 14)))
    top = Decimal(rng.choice(["1", "3", "25", "400", "0.05"]))
    series = tuple(
        Series(
            f"series {i}" * rng.randint(1, 2),
            tuple(_point(d, str(round(top * Decimal(rng.random()), 2))) for d in days),
            tone=i,
            steps=rng.random() < 0.3,
            labels=rng.choice(list(PointLabels)),
            planned=rng.random() < 0.2,
        )
        for i in range(rng.randint(1, 4))
    )
    hlines = tuple(
        HLine(round(top * Decimal(rng.random()), 2), rng.choice(["ULN", "2 × ULN", "low < 150"]))
        for _ in range(rng.randint(0, 3))
    )
    vlines = tuple(
        VLine(rng.randint(-7, 60), rng.choice(["infusion", "today", "day-30 liver check"]))
        for _ in range(rng.randint(0, 4))
    )
    notes = tuple(Note(d, top / 2, "decision pending") for d in rng.sample(days, min(1, len(days))))
    chart = Chart(
        key="r",
        title="t",
        unit=rng.choice(["× ULN", "10³/µL", "mg/day"]),
        series=series,
        hlines=hlines,
        vlines=vlines,
        notes=notes,
        origin=INFUSION if rng.random() < 0.7 else None,
    )
    width = rng.choice([420, 640, 760])
    assert_no_overlap(_svg(chart, width_px=width, height_px=rng.choice([250, 300])))


# The follow-up's dose chart: what comes after the full dose -------------------------------


def _series_points(root: ET.Element, name: str) -> dict[int, float]:
    """A series' marker heights by day."""
    return {d: y for d, (_x, y) in _circles(root, name).items()}


def _axis_bottom(root: ET.Element) -> float:
    """The y of the x axis."""
    return max(float(line.get("y1")) for line in _with_class(root, "axis", "line"))


def _dose(n: int, facts: object = None, state: object = None) -> Chart:
    """The follow-up's steroid dose chart (not drawn)."""
    facts = facts or patient(normal_labs(through=max(n, 0)))
    found = follow_up(facts, state or plan(), on=day(n), policy=POLICY)
    return {c.key: c for c in follow_up_charts(found, facts, policy=POLICY)}["steroid-dose"]


@pytest.mark.parametrize("n", [-1, 10, 20])
def test_before_the_decision_the_dose_never_drops_to_0_and_the_planned_taper_is_drawn(
    n: int,
) -> None:
    chart = _dose(n)
    ordered, planned = chart.series
    assert ordered.name == "prednisolone ordered" and not ordered.planned
    assert [(p.day, p.value, p.marker) for p in ordered.points] == [
        (-1, Decimal("5.4"), True),
        (29, Decimal("5.4"), False),  # held to the order's last day, no stop
    ]
    assert planned.planned and planned.name == "planned taper (institution default)"
    assert [(p.day, p.value) for p in planned.points] == [
        (29, Decimal("2.7")),  # 0.5 mg/kg/day of 5.4 kg
        (43, Decimal("1.4")),  # 0.25 mg/kg/day, rounded half up
        (57, Decimal(0)),
    ]
    assert [(note.day, note.value, note.text) for note in chart.notes] == [
        (29, Decimal("5.4"), "decision pending")
    ]
    root = _svg(chart)
    line = _polyline(root, 0)
    assert line[-1][1] == line[0][1] < _axis_bottom(root)  # the ordered line ends at full dose
    (group,) = [g for g in _with_class(root, "series", "g") if "planned" in _classes(g)]
    assert "series-1" in _classes(group)
    notes = [t.text for g in _with_class(root, "note", "g") for t in g.iter(f"{NS}text")]
    assert notes == ["decision pending"]
    assert root.find(f"{NS}desc").text.endswith(
        f"Decision pending from day{NBSP}29 after infusion: The liver check decides what "
        "follows: taper when it is unremarkable, else continue 1 mg/kg/day (2.1). Never stop "
        "abruptly."
    )
    assert_no_overlap(root)
    headers, rows = table(chart)
    assert headers == ["Date", "Day", "prednisolone ordered", "planned taper (institution default)"]
    assert [r[1] for r in rows] == [
        f"1{NBSP}day before infusion",
        f"day{NBSP}29 after infusion",
        f"day{NBSP}43 after infusion",
        f"day{NBSP}57 after infusion",
    ]


def test_without_the_dosing_weight_on_the_order_only_decision_pending_is_drawn() -> None:
    no_weight = plan(orders=(FULL_DOSE.__class__(**{**FULL_DOSE.__dict__, "weight_kg": None}),))
    chart = _dose(10, state=no_weight)
    assert [s.name for s in chart.series] == ["prednisolone ordered"]
    assert [n.text for n in chart.notes] == ["decision pending"]
    assert all(p.value != 0 for p in chart.series[0].points)


def test_on_day_28_the_proposed_taper_replaces_the_plan_and_ends_in_a_stop() -> None:
    chart = _dose(28)
    assert [s.name for s in chart.series] == [
        "prednisolone ordered",
        "proposed taper (institution default)",
    ]
    assert not chart.notes and not any(s.planned for s in chart.series)
    proposed = chart.series[1]
    assert [p.value for p in proposed.points][-1] == 0 and len(proposed.points) == 3
    assert_no_overlap(_svg(chart))


def test_a_proposed_continuation_is_held_and_the_next_decision_is_pending() -> None:
    facts = patient(changed(normal_labs(through=28), lab(ALT, "90", 28), lab(AST, "80", 28)))
    chart = _dose(28, facts=facts)
    names = [s.name for s in chart.series]
    assert names == ["prednisolone ordered", "proposed: full dose continued"]
    proposed = chart.series[1]
    assert all(p.value != 0 for p in proposed.points)
    assert not proposed.points[-1].marker
    assert [n.text for n in chart.notes] == ["decision pending"]
    assert_no_overlap(_svg(chart))


def test_after_a_taper_is_ordered_the_line_stops_after_the_last_step() -> None:
    chart = _dose(45, state=tapered())
    assert [s.name for s in chart.series] == ["prednisolone ordered"] and not chart.notes
    last = chart.series[0].points[-1]
    assert (last.value, last.marker, last.note) == (Decimal(0), True, "stopped after the taper")
    assert_no_overlap(_svg(chart))


def test_after_a_continuation_is_ordered_the_next_decision_is_pending() -> None:
    chart = _dose(35, facts=patient(normal_labs(through=28)), state=continued())
    ordered = chart.series[0]
    assert ordered.points[-1].value == CONTINUATION.mg_per_day and not ordered.points[-1].marker
    assert [n.text for n in chart.notes] == ["decision pending"]
    assert len(chart.series) == 1  # the continuation order states no dosing weight


def test_every_follow_up_chart_has_dated_ticks_clinical_units_and_no_overlap() -> None:
    facts = patient(
        changed(
            normal_labs(through=28), lab(PT, "16.0", 28), lab(INR, "1.3", 28), lab(ALT, "90", 28)
        )
    )
    found = follow_up(facts, plan(), on=day(28), policy=POLICY)
    charts = follow_up_charts(found, facts, policy=POLICY)
    units = {c.key: c.unit for c in charts}
    assert units["liver-enzymes"] == units["bilirubin-inr"] == "\u00d7 ULN"
    assert units["platelets"] == "10\u00b3/\u00b5L"
    for chart in charts:
        assert chart.origin == day(0)
        root = _svg(chart)
        assert _with_class(root, "tick-date", "text")
        assert_no_overlap(root)
    (platelets,) = [c for c in charts if c.key == "platelets"]
    low = [h for h in platelets.hlines if h.danger]
    assert low and "institution default" in low[0].title


def test_without_any_prednisolone_order_the_dose_chart_says_no_results() -> None:
    chart = _dose(10, state=plan(orders=()))
    assert [s.points for s in chart.series] == [()] and not chart.notes
    root = _svg(chart)
    assert [t.text for t in _with_class(root, "empty", "text")] == ["No results yet"]
    assert_no_overlap(root)
