"""Institution defaults in clinical text: each Policy field's rule in plain words, not its name."""

from __future__ import annotations

import dataclasses
import re
from decimal import Decimal

import pytest

from smart_app.rules.policy import DEFAULT_POLICY, PHRASES, Policy

FIELDS = [f.name for f in dataclasses.fields(Policy)]


def test_every_policy_field_has_a_phrase_and_no_phrase_names_a_field() -> None:
    assert set(PHRASES) == set(FIELDS)
    for name in FIELDS:
        said = DEFAULT_POLICY.phrase(name)
        assert "{" not in said and "_" not in said.replace(DEFAULT_POLICY.version, "").replace(
            DEFAULT_POLICY.uln_fallback_version, ""
        ), name
        assert not re.search(r"\b\w+_\w+ =", said), name


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (
            ("liver_injury_bilirubin_uln_multiple", "liver_injury_aminotransferase_uln_multiple"),
            "institution defaults: possible acute liver injury is total bilirubin above 1 × ULN "
            "with raised ALT or AST; the liver injury pattern counts ALT or AST above 2 × ULN as "
            "raised",
        ),
        (
            ("inr_rise_min",),
            "institution default: INR is rising when above its ULN and up 0.2 "
            "or more on the result before",
        ),
        (
            ("platelets_low_10e3_per_ul",),
            "institution default: a platelet count below 150 × 10³/µL is low",
        ),
        (
            ("weekly_window_days",),
            "institution default: a weekly draw is on time up to 1 day either side of its date",
        ),
        (
            ("weight_discrepancy_fraction", "weight_pair_hours"),
            "institution defaults: weights differing by more than 5% disagree; weights taken "
            "within 24 hours of each other, or on one date, are compared",
        ),
        (
            ("term_gestational_age_days",),
            "institution default: full term is 37+0 weeks postmenstrual age",
        ),
        (
            ("bundle_max_bytes",),
            "institution default: files and server answers are read up to 20 MiB",
        ),
        (
            ("taper_mg_per_kg_per_day",),
            "institution default: the taper steps are 0.5 and 0.25 mg/kg/day",
        ),
        (
            ("tma_creatinine_rise_fraction",),
            "institution default: creatinine is rising at 50% or more above its pre-infusion value",
        ),
    ],
)
def test_cite_says_what_the_rule_is(names: tuple[str, ...], expected: str) -> None:
    assert DEFAULT_POLICY.cite(*names) == expected


def test_cite_shows_the_policys_own_values() -> None:
    policy = dataclasses.replace(
        DEFAULT_POLICY,
        platelets_low_10e3_per_ul=Decimal(100),
        weekly_window_days=2,
        bundle_max_bytes=5000,
    )
    assert policy.cite("platelets_low_10e3_per_ul").endswith("below 100 × 10³/µL is low")
    assert "up to 2 days either side" in policy.cite("weekly_window_days")
    assert policy.cite("bundle_max_bytes").endswith("read up to 5000 bytes")


def test_a_field_cited_twice_is_said_once() -> None:
    assert DEFAULT_POLICY.cite("inr_rise_min", "inr_rise_min") == DEFAULT_POLICY.cite(
        "inr_rise_min"
    )
