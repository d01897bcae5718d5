"""The faster JSON writer: byte for byte json.dumps(indent=2, ensure_ascii=False), everywhere."""

from __future__ import annotations

import datetime as dt
import json
from collections import OrderedDict
from decimal import Decimal
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smart_app import render
from smart_app.fhir.read import facts_from_bundle, parse_bundle_json
from smart_app.jsontext import dumps_indented
from smart_app.rules.plan import build_plan

ROOT = Path(__file__).resolve().parents[1]
BUNDLES = sorted((ROOT / "tests" / "fixtures" / "bundles").glob("*.json"))
EXAMPLES = sorted((ROOT / "examples").glob("*.json"))
GOLDEN = sorted((ROOT / "tests" / "fixtures").glob("*/*.json"))
ON = dt.date(2026, 11, 20)


def standard(value: Any) -> str:
    """What the standard library writes."""
    return json.dumps(value, indent=2, ensure_ascii=False)


@pytest.mark.parametrize("path", [*EXAMPLES, *BUNDLES], ids=lambda p: p.name)
def test_plan_json_of_every_fixture_is_the_standard_text(path: Path) -> None:
    """The CLI's plan output for every fixture bundle (and the example) is identical."""
    bundle = parse_bundle_json(path.read_text(encoding="utf-8"))
    plan = build_plan(facts_from_bundle(bundle), on=ON, infusion_date=ON + dt.timedelta(days=1))
    data = render.plan_data(plan)
    assert render.to_json(data) == standard(data) + "\n"


@pytest.mark.parametrize("path", GOLDEN + EXAMPLES, ids=lambda p: p.name)
def test_every_fixture_file_is_written_as_the_standard_text(path: Path) -> None:
    """Fixture bundles, golden files and examples as decoded (floats, ints, unicode)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    assert dumps_indented(data) == standard(data)


def test_dose_table_json_is_the_standard_text() -> None:
    """The `dose` command's rows."""
    from smart_app.rules.dosing import dose_for_weight

    rows = [{"weight": w, "dose": render.dose_data(dose_for_weight(Decimal(w)))} for w in "358"]
    assert dumps_indented(rows) == standard(rows)


class Colour(StrEnum):
    """A str subclass (the writer hands these to json.dumps)."""

    RED = "red"


class Level(IntEnum):
    """An int subclass."""

    ONE = 1


@pytest.mark.parametrize(
    "value",
    [
        {},
        [],
        (),
        [[]],
        {"a": {}},
        "text",
        0,
        -1.5,
        None,
        True,
        10**40,
        [float("nan"), float("inf"), -float("inf"), 1e-310, 1e22, 0.1],
        {'é\u2028\n\t"\\': ["\x00", "\x1f", "😀", ()]},
        (1, (2, 3)),
        {7: 2, 2.5: "x", None: 1, True: False},
        {"a": {1: [2]}},
        {"nested": [{"b": []}, [[1, {}]], {"c": {"d": [None]}}]},
        [Colour.RED, {"k": Colour.RED}],
        [Level.ONE, {"k": Level.ONE}],
        OrderedDict([("b", 1), ("a", 2)]),
        {"a": OrderedDict([("x", [1])])},
    ],
)
def test_edge_values_are_the_standard_text(value: Any) -> None:
    """Empty containers, NaN and infinities, escapes, non-string keys, subclasses."""
    assert dumps_indented(value) == standard(value)


def test_unserialisable_values_fail_as_json_dumps_does() -> None:
    """A Decimal (or any object) raises json.dumps' TypeError, not something else."""
    with pytest.raises(TypeError, match="Decimal"):
        dumps_indented({"a": [Decimal("1.5")]})
    with pytest.raises(TypeError, match="Decimal"):
        dumps_indented({"a": Decimal("1.5")})


def test_circular_values_fail_as_json_dumps_does() -> None:
    """A list that contains itself: json.dumps' ValueError."""
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular"):
        dumps_indented(loop)


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
)
KEYS = st.text() | st.integers() | st.booleans() | st.none() | st.floats(allow_nan=False)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=8), inner, max_size=5)
        | st.dictionaries(KEYS, inner, max_size=3)
    ),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None)
@given(VALUES)
def test_any_json_value_is_the_standard_text(value: Any) -> None:
    """Arbitrary nesting of JSON values, tuples and non-string keys: the same text."""
    assert dumps_indented(value) == standard(value)
