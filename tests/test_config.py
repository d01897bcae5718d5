"""Institution policy files: TOML overrides on the defaults, type checks and unsafe tapers."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from pathlib import Path

import pytest

from smart_app.config import load_policy
from smart_app.errors import InputError, PolicyError
from smart_app.rules.model import LabTest
from smart_app.rules.policy import DEFAULT_POLICY, Policy

ROOT = Path(__file__).resolve().parents[1]


def policy_from(tmp_path: Path, text: str) -> Policy:
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")
    return load_policy(path)


def test_empty_file_is_the_default_policy(tmp_path: Path) -> None:
    assert policy_from(tmp_path, "") == DEFAULT_POLICY


def test_example_policy_file_equals_the_defaults() -> None:
    assert load_policy(ROOT / "examples" / "policy.toml") == DEFAULT_POLICY


def test_overrides_only_what_is_given(tmp_path: Path) -> None:
    policy = policy_from(tmp_path, 'version = "site-7"\nweight_max_age_days = 14\n')
    assert policy.version == "site-7"
    assert policy.weight_max_age_days == 14
    unchanged = {f.name for f in dataclasses.fields(Policy)} - {"version", "weight_max_age_days"}
    for name in unchanged:
        assert getattr(policy, name) == getattr(DEFAULT_POLICY, name), name


@pytest.mark.parametrize("raw", ['"38.5"', "38.5"], ids=["string", "float"])
def test_decimal_override_is_exact(tmp_path: Path, raw: str) -> None:
    policy = policy_from(tmp_path, f"fever_threshold_c = {raw}\n")
    assert isinstance(policy.fever_threshold_c, Decimal)
    assert policy.fever_threshold_c == Decimal("38.5")


def test_decimal_override_from_float_keeps_its_digits(tmp_path: Path) -> None:
    # 0.1 as a binary float is 0.1000000000000000055...; the policy must hold exactly 0.1.
    policy = policy_from(
        tmp_path, "taper_mg_per_kg_per_day = [0.5, 0.25, 0.1]\ntaper_step_days = [10, 10, 10]\n"
    )
    assert policy.taper_mg_per_kg_per_day[-1] == Decimal("0.1")


def test_taper_tuple_overrides(tmp_path: Path) -> None:
    policy = policy_from(
        tmp_path,
        'taper_mg_per_kg_per_day = ["0.5", "0.25", "0.1"]\ntaper_step_days = [10, 10, 10]\n',
    )
    assert policy.taper_mg_per_kg_per_day == (Decimal("0.5"), Decimal("0.25"), Decimal("0.1"))
    assert all(isinstance(d, Decimal) for d in policy.taper_mg_per_kg_per_day)
    assert policy.taper_step_days == (10, 10, 10)
    assert isinstance(policy.taper_step_days, tuple)


def test_int_tuple_and_lab_test_overrides(tmp_path: Path) -> None:
    policy = policy_from(
        tmp_path, 'troponin_days = [7, 28]\nbaseline_tests = ["ALT", "AST", "total bilirubin"]\n'
    )
    assert policy.troponin_days == (7, 28)
    assert policy.baseline_tests == (LabTest.ALT, LabTest.AST, LabTest.BILIRUBIN_TOTAL)


def test_prednisolone_strength_override(tmp_path: Path) -> None:
    policy = policy_from(tmp_path, 'prednisolone_mg = "10"\nprednisolone_per_ml = 1\n')
    assert policy.concentration_mg_per_ml == Decimal(10)


@pytest.mark.parametrize(
    "text",
    [
        'weight_max_age_days = "3"',
        "weight_max_age_days = 3.5",
        "weight_max_age_days = true",
        "weight_max_age_days = [3]",
        'fever_threshold_c = "hot"',
        "fever_threshold_c = true",
        "version = 5",
        "taper_step_days = 28",
        'taper_step_days = ["14", "14"]',
        "taper_step_days = [14.0, 14.0]",
        'taper_mg_per_kg_per_day = ["half", "quarter"]',
        'baseline_tests = ["ALT", "bilirubin"]',
        'baseline_tests = "ALT"',
        "weight_max_age_days = 2026-11-20",
    ],
)
def test_wrong_types_are_refused(tmp_path: Path, text: str) -> None:
    name = text.split(" =")[0]
    with pytest.raises(PolicyError, match=name):
        policy_from(tmp_path, text + "\n")


def test_unknown_keys_are_refused_and_named(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"unknown setting.*steroid_days.*weight_max_days"):
        policy_from(tmp_path, "weight_max_days = 3\nsteroid_days = 30\n")


def test_unknown_table_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="unknown"):
        policy_from(tmp_path, "[taper]\ndays = [14, 14]\n")


@pytest.mark.parametrize(
    ("doses", "days", "fragment"),
    [
        ('["0.5"]', "[14]", "28 days"),
        ('["0.5", "0.25"]', "[10, 10]", "28 days"),
        ('["0.5", "0.25"]', "[14]", "differ in length"),
        ("[]", "[]", "at least one step"),
        ('["0.5", "0.25"]', "[28, 0]", "at least one day"),
        ('["0.25", "0.5"]', "[14, 14]", "fall"),
        ('["0.5", "0.5"]', "[14, 14]", "fall"),
        ('["1", "0.5"]', "[14, 14]", "taper doses"),
        ('["0.5", "0"]', "[14, 14]", "taper doses"),
        ('["0.5", "-0.25"]', "[14, 14]", "taper doses"),
    ],
    ids=[
        "one-step-14-days",
        "total-20-days",
        "length-mismatch",
        "empty",
        "zero-day-step",
        "rising",
        "flat",
        "full-dose-step",
        "zero-dose-step",
        "negative-dose-step",
    ],
)
def test_unsafe_tapers_are_refused(tmp_path: Path, doses: str, days: str, fragment: str) -> None:
    text = f"taper_mg_per_kg_per_day = {doses}\ntaper_step_days = {days}\n"
    with pytest.raises(PolicyError, match=fragment):
        policy_from(tmp_path, text)


def test_taper_of_exactly_28_days_is_accepted(tmp_path: Path) -> None:
    policy = policy_from(tmp_path, 'taper_mg_per_kg_per_day = ["0.5"]\ntaper_step_days = [28]\n')
    assert policy.taper_step_days == (28,)


def test_invalid_toml_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="not valid TOML"):
        policy_from(tmp_path, "weight_max_age_days = = 3\n")


def test_missing_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "absent.toml")


def test_policy_error_is_an_input_error() -> None:
    assert issubclass(PolicyError, InputError)


def test_non_utf8_policy_file_is_a_policy_error(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_bytes(b'version = "caf\xe9"\n')
    with pytest.raises(PolicyError):
        load_policy(path)


@pytest.mark.parametrize(
    "text",
    [
        "prednisolone_per_ml = 0",
        'fever_threshold_c = "NaN"',
        'taper_mg_per_kg_per_day = ["NaN", "0.25"]',
        "weight_max_age_days = -5",
    ],
)
def test_out_of_range_numbers_are_policy_errors(tmp_path: Path, text: str) -> None:
    with pytest.raises(PolicyError):
        policy_from(tmp_path, text + "\n")
