"""Server-side SVG lab-trend charts: well-formed, escaped, CSP-safe, geometrically right."""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from decimal import Decimal
from itertools import pairwise

import pytest
from markupsafe import Markup

from smart_app.web.charts import Chart, HLine, Point, Series, VLine, render_svg, table

NS = "{http://www.w3.org/2000/svg}"
INFUSION = dt.date(2026, 10, 24)
EVIL = "<script>alert(\"x\")</script> & 'q'"


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


def _circles(root: ET.Element, series_name: str) -> dict[int, tuple[float, float]]:
    """Centre of each plotted point of a series, by day (from the point's tooltip)."""
    found = {}
    for group in _with_class(root, "series", "g"):
        for circle in group.iter(f"{NS}circle"):
            title = circle.find(f"{NS}title")
            assert title is not None
            if title.text.startswith(f"{series_name} "):
                day = int(re.search(r"\(day (-?\d+)\)", title.text).group(1))
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
    assert desc.text == ("ALT x ULN: newest 3.00 on 2026-11-20; AST x ULN: newest 2 on 2026-11-07.")


def test_malicious_text_is_escaped_everywhere() -> None:
    chart = Chart(
        key="evil",
        title=EVIL,
        unit=EVIL,
        series=(Series(EVIL, (_point(1, "1", EVIL), _point(8, "2"))),),
        hlines=(HLine(Decimal(1), EVIL),),
        vlines=(VLine(1, EVIL),),
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
    assert f"{EVIL} 1 {EVIL} on 2026-10-25 (day 1), {EVIL}" in tooltips
    texts = [t.text for t in root.iter(f"{NS}text")]
    assert texts.count(EVIL) == 4  # legend, unit caption, hline label, vline label
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
    (plain,) = [g for g in _with_class(root, "hline", "g") if "hline-danger" not in _classes(g)]
    assert float(plain.find(f"{NS}line").get("y1")) == _circles(root, "ALT")[-3][1]


def test_vertical_line_sits_on_the_day_of_a_point() -> None:
    root = _svg(_liver_chart())
    vlines = {g.find(f"{NS}text").text: g for g in _with_class(root, "vline", "g")}
    assert set(vlines) == {"infusion", "day 14 check"}
    check = vlines["day 14 check"].find(f"{NS}line")
    assert float(check.get("x1")) == float(check.get("x2")) == _circles(root, "ALT")[14][0]
    label = vlines["day 14 check"].find(f"{NS}text")
    assert float(label.get("y")) < float(check.get("y1"))  # label above the line's top
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
    assert root.find(f"{NS}desc").text == "PLT: no results yet."
    assert not _with_class(_svg(_liver_chart()), "empty")


def test_axes_label_days_every_week_and_carry_the_unit() -> None:
    root = _svg(_liver_chart())
    days = [int(t.text) for t in _with_class(root, "tick-x", "text")]
    assert days[0] <= 0 and days[-1] >= 21 and 0 in days
    assert all(b - a == 7 for a, b in pairwise(days))
    captions = [t.text for t in _with_class(root, "axis-caption", "text")]
    assert captions == ["days after infusion", "x ULN"]


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


def test_point_tooltip_names_value_unit_date_day_and_note() -> None:
    root = _svg(_liver_chart())
    tooltips = [t.text for t in root.iter(f"{NS}title")]
    assert "ALT 2.67 x ULN on 2026-11-07 (day 14), 2.67 x ULN" in tooltips
    assert "ALT 3.00 x ULN on 2026-11-20 (day 27)" in tooltips
    legend = [t.text for g in _with_class(root, "legend-item", "g") for t in g.iter(f"{NS}text")]
    assert legend == ["ALT", "AST"]
    tones = [sorted(_classes(g)) for g in _with_class(root, "series", "g")]
    assert tones == [["series", "series-0"], ["series", "series-1"]]


def test_table_has_a_row_per_day_and_blanks_where_a_series_has_no_result() -> None:
    headers, rows = table(_liver_chart())
    assert headers == ["Day", "Date", "ALT", "AST"]
    assert rows == [
        ["-3", "2026-10-21", "0.5", "0.4"],
        ["7", "2026-10-31", "1.20", ""],
        ["14", "2026-11-07", "2.67 (2.67 x ULN)", "2"],
        ["27", "2026-11-20", "3.00", ""],
    ]
    assert table(Chart(key="e", title="t", unit="u", series=(Series("PLT", ()),))) == (
        ["Day", "Date", "PLT"],
        [],
    )
