"""Rendering a Plan: JSON-ready data with real numbers, stable JSON text, readable summary."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from smart_app import render
from smart_app.fhir.read import facts_from_bundle, parse_bundle_json
from smart_app.rules import label
from smart_app.rules.dosing import dose_for_weight
from smart_app.rules.model import Evidence, Measurement, PatientFacts, Plan, Status
from smart_app.rules.plan import build_plan
from tests.conftest import SEED_LABEL

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "infant-eligible.json"
ON = dt.date(2026, 11, 20)
INFUSION = dt.date(2026, 11, 24)


@pytest.fixture(scope="module")
def eligible_plan() -> Plan:
    facts = facts_from_bundle(parse_bundle_json(EXAMPLE.read_text(encoding="utf-8")))
    return build_plan(facts, on=ON, infusion_date=INFUSION)


@pytest.fixture(scope="module")
def not_eligible_plan() -> Plan:
    # Over 2 years old, a weight below the label range and nothing else on record.
    day = dt.date(2026, 11, 18)
    facts = PatientFacts(
        patient_id="older",
        birth_date=dt.date(2024, 5, 1),
        weights_kg=(
            Measurement(Decimal("2.4"), "kg", day, Evidence("Observation/w", "2.4", "kg", day)),
        ),
        prior_gene_therapy=(Evidence("MedicationAdministration/zol", "completed"),),
    )
    return build_plan(facts, on=ON, infusion_date=INFUSION)


def walk(value: Any) -> list[Any]:
    """Every leaf of nested dicts and lists."""
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in walk(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in walk(v)]
    return [value]


def test_plan_data_top_level_keys(eligible_plan: Plan) -> None:
    data = render.plan_data(eligible_plan)
    assert list(data)[:8] == [
        "evaluated_on",
        "infusion_date",
        "patient",
        "boxed_warning",
        "eligibility",
        "dose",
        "prednisolone",
        "schedule",
    ]
    assert {"id", "birth_date"} <= data["patient"].keys()
    assert {"status", "findings"} <= data["eligibility"].keys()
    assert data["evaluated_on"] == "2026-11-20"
    assert data["infusion_date"] == "2026-11-24"
    assert data["eligibility"]["status"] == "eligible"


def test_plan_data_is_plain_json_types(eligible_plan: Plan) -> None:
    data = render.plan_data(eligible_plan)
    for leaf in walk(data):
        assert leaf is None or type(leaf) in (str, int, float, bool), repr(leaf)
    assert json.loads(render.to_json(data)) == data


def test_dose_numbers_are_json_numbers(eligible_plan: Plan) -> None:
    dose = render.plan_data(eligible_plan)["dose"]
    assert dose["dose_volume_ml"] == 35.8
    assert isinstance(dose["dose_volume_ml"], float)
    for key in (
        "vials_5_5_ml",
        "vials_8_3_ml",
        "total_vials",
        "vector_genomes",
        "infusion_minutes",
    ):
        assert type(dose[key]) is int, key
    assert (dose["vials_5_5_ml"], dose["vials_8_3_ml"], dose["total_vials"]) == (2, 3, 5)
    assert dose["weight_kg"] == 6.12
    assert isinstance(dose["pump_rate_ml_per_h"], float)
    text = render.to_json(render.plan_data(eligible_plan))
    assert '"dose_volume_ml": 35.8,' in text
    assert '"total_vials": 5,' in text


def test_prednisolone_numbers_and_dates(eligible_plan: Plan) -> None:
    pred = render.plan_data(eligible_plan)["prednisolone"]
    assert pred["dose_mg_per_day"] == 6.1
    assert pred["start_date"] == "2026-11-23"
    assert pred["full_dose_through"] == "2026-12-22"
    for step in pred["taper"]:
        assert type(step["days"]) is int
        assert isinstance(step["mg_per_kg_per_day"], float)


def test_schedule_dates_are_iso_strings(eligible_plan: Plan) -> None:
    schedule = render.plan_data(eligible_plan)["schedule"]
    assert len(schedule) == len(eligible_plan.schedule)
    for item, source in zip(schedule, eligible_plan.schedule, strict=True):
        assert item["date"] == source.date.isoformat()
        assert item["tests"] == [t.value for t in source.tests]


def test_dose_data_none_without_a_labeled_kit() -> None:
    assert render.dose_data(dose_for_weight(Decimal("2.5"))) is None


def test_dose_data_keeps_integral_decimals_as_ints() -> None:
    data = render.dose_data(dose_for_weight(Decimal(5)))
    assert data is not None
    assert data["weight_kg"] == 5
    assert type(data["weight_kg"]) is int


def test_to_json_ends_with_newline_and_is_stable(eligible_plan: Plan) -> None:
    first = render.to_json(render.plan_data(eligible_plan))
    second = render.to_json(render.plan_data(eligible_plan))
    assert first.endswith("}\n")
    assert not first.endswith("\n\n")
    assert first == second


def test_to_json_keeps_non_ascii() -> None:
    assert render.to_json({"t": "≤1:50"}) == '{\n  "t": "≤1:50"\n}\n'


def test_plan_text_not_eligible_lists_every_finding(not_eligible_plan: Plan) -> None:
    assert not_eligible_plan.eligibility.status is Status.NOT_ELIGIBLE
    codes = [f.code.value for f in not_eligible_plan.eligibility.findings]
    assert {"age-not-under-2", "weight-outside-label-range", "prior-onasemnogene"} <= set(codes)
    text = render.plan_text(not_eligible_plan)
    assert "ELIGIBILITY: NOT-ELIGIBLE" in text
    for code in codes:
        assert f"] {code} (section" in text, code
    assert "DOSE: none" in text
    assert "PREDNISOLONE: not computed" in text
    assert text.endswith("\n")


def test_plan_text_eligible_summary(eligible_plan: Plan) -> None:
    text = render.plan_text(eligible_plan)
    assert text.startswith("ZOLGENSMA plan for Patient/infant-eligible\n")
    assert "ELIGIBILITY: ELIGIBLE" in text
    assert "DOSE: kit NDC 71894-127-05" in text
    assert "2026-11-23 to 2026-12-22" in text
    assert max(len(line) for line in text.splitlines()) <= 110
    assert render.plan_text(eligible_plan) == text


def test_not_eligible_plan_data_has_no_dose(not_eligible_plan: Plan) -> None:
    data = render.plan_data(not_eligible_plan)
    assert data["dose"] is None
    assert data["prednisolone"] is None
    assert data["eligibility"]["status"] == "not-eligible"
    assert [f["code"] for f in data["eligibility"]["findings"]] == [
        f.code.value for f in not_eligible_plan.eligibility.findings
    ]


# The boxed warning on every plan ----------------------------------------------------------


def _quoted() -> list[str]:
    """Every sentence of the short boxed warning."""
    w = label.BOXED_WARNING
    return [*w.says, *w.before_infusion, *w.after_infusion]


def test_the_boxed_warning_quotes_the_label_word_for_word(seeds_dir: Path) -> None:
    source = " ".join((seeds_dir / SEED_LABEL).read_text(encoding="utf-8").split())
    warning = label.BOXED_WARNING
    assert warning.title == "WARNING: SERIOUS LIVER INJURY and ACUTE LIVER FAILURE"
    assert warning.title in source
    for sentence in _quoted():
        # The label's own sentence may go on with a cross-reference before its full stop.
        assert sentence.removesuffix(".") in source, sentence
    assert warning.section == "Boxed Warning; 5.1"
    assert warning.before_infusion and warning.after_infusion


@pytest.mark.parametrize("which", ["eligible_plan", "not_eligible_plan"])
def test_plan_data_carries_the_boxed_warning(which: str, request: pytest.FixtureRequest) -> None:
    data = render.plan_data(request.getfixturevalue(which))
    warning = label.BOXED_WARNING
    assert data["boxed_warning"] == {
        "title": warning.title,
        "says": list(warning.says),
        "before_infusion": list(warning.before_infusion),
        "after_infusion": list(warning.after_infusion),
        "section": "Boxed Warning; 5.1",
    }
    assert "acute liver failure with fatal outcomes" in data["boxed_warning"]["says"][0]
    assert json.loads(render.to_json(data))["boxed_warning"] == data["boxed_warning"]


@pytest.mark.parametrize("which", ["eligible_plan", "not_eligible_plan"])
def test_plan_text_shows_the_boxed_warning_before_the_eligibility(
    which: str, request: pytest.FixtureRequest
) -> None:
    text = render.plan_text(request.getfixturevalue(which))
    heading = "BOXED WARNING: SERIOUS LIVER INJURY and ACUTE LIVER FAILURE (Boxed Warning; 5.1)\n"
    assert heading in text
    assert text.index(heading) < text.index("ELIGIBILITY:")
    flat = " ".join(text.split())
    for sentence in label.BOXED_WARNING.before_infusion:
        assert f"- before infusion: {sentence}" in flat
    for sentence in label.BOXED_WARNING.after_infusion:
        assert f"- after infusion: {sentence}" in flat
    assert max(len(line) for line in text.splitlines()) <= 110
