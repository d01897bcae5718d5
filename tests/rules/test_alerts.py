"""Post-infusion alerts: each criterion at the value where it flips, and what never counts."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import pytest

from smart_app.rules import label
from smart_app.rules.alerts import post_infusion_alerts
from smart_app.rules.model import (
    Alert,
    AlertCode,
    AlertLevel,
    Comparator,
    LabResult,
    LabTest,
    PatientFacts,
)
from smart_app.rules.policy import DEFAULT_POLICY, Policy
from tests.builders import Timeline

INFUSION = dt.date(2026, 11, 1)
ON = dt.date(2026, 12, 15)
BIRTH = dt.date(2026, 6, 10)
ULN: dict[LabTest, Decimal] = {
    LabTest.ALT: Decimal(45),
    LabTest.AST: Decimal(60),
    LabTest.BILIRUBIN_TOTAL: Decimal("1.2"),
    LabTest.INR: Decimal("1.1"),
    LabTest.PT: Decimal("14.0"),
    LabTest.CREATININE: Decimal("0.5"),
    LabTest.TROPONIN_I: Decimal("0.04"),
}

ALT = LabTest.ALT
AST = LabTest.AST
BILI = LabTest.BILIRUBIN_TOTAL
INR = LabTest.INR
PT = LabTest.PT
CREAT = LabTest.CREATININE
HGB = LabTest.HEMOGLOBIN
PLT = LabTest.PLATELETS
TNI = LabTest.TROPONIN_I

LIVER = AlertCode.ACUTE_LIVER_INJURY
WORSE = AlertCode.LIVER_TESTS_WORSENING
THROMBO = AlertCode.THROMBOCYTOPENIA
TMA = AlertCode.TMA_PATTERN
TROPONIN = AlertCode.TROPONIN_I_ELEVATED


TWENTY_X_SOURCE = (
    "label section 5.1 describes reported cases with ALT and AST above 20 × ULN "
    "(a description, not a label threshold)"
)
LIVER_PATTERN_SOURCE = (
    "institution defaults: possible acute liver injury is total bilirubin above 1 × ULN with "
    "raised ALT or AST; the liver injury pattern counts ALT or AST above 2 × ULN as raised"
)
INR_SOURCE = (
    "institution default: INR is rising when above its ULN and up 0.2 or more on the result before"
)


ALERTS = Timeline(INFUSION, ULN)
"""The days after infusion of these tests, and their results."""
day = ALERTS.day
ref = ALERTS.reference
lab = ALERTS.lab


BASELINE: tuple[LabResult, ...] = (
    lab(ALT, "30", -4),
    lab(AST, "40", -4),
    lab(BILI, "0.5", -4),
    lab(INR, "1.0", -4),
    lab(CREAT, "0.3", -4),
    lab(HGB, "12.0", -4),
    lab(PLT, "310", -4),
    lab(TNI, "0.01", -4),
)
"""Unremarkable pre-infusion results."""


def facts(*labs: LabResult, birth_date: dt.date | None = BIRTH) -> PatientFacts:
    """A patient with these results, newest first as the reader delivers them."""
    ordered = tuple(sorted(labs, key=lambda r: r.effective, reverse=True))
    return PatientFacts(patient_id="p", birth_date=birth_date, labs=ordered)


def alerts(
    *labs: LabResult,
    on: dt.date = ON,
    policy: Policy = DEFAULT_POLICY,
    birth_date: dt.date | None = BIRTH,
) -> tuple[Alert, ...]:
    """Alerts for the baseline panel plus `labs`."""
    return post_infusion_alerts(
        facts(*BASELINE, *labs, birth_date=birth_date),
        infusion_date=INFUSION,
        on=on,
        policy=policy,
    )


def codes(
    *labs: LabResult,
    on: dt.date = ON,
    policy: Policy = DEFAULT_POLICY,
    birth_date: dt.date | None = BIRTH,
) -> tuple[AlertCode, ...]:
    """The alert codes, in the order returned."""
    return tuple(a.code for a in alerts(*labs, on=on, policy=policy, birth_date=birth_date))


def only(code: AlertCode, found: tuple[Alert, ...]) -> Alert:
    """The one alert with `code`."""
    matching = [a for a in found if a.code is code]
    assert len(matching) == 1, [a.code for a in found]
    return matching[0]


def test_unremarkable_results_give_no_alerts() -> None:
    normal = (
        lab(ALT, "40", 7),
        lab(AST, "55", 7),
        lab(BILI, "1.0", 7),
        lab(INR, "1.1", 7),
        lab(CREAT, "0.35", 7),
        lab(HGB, "11.5", 7),
        lab(PLT, "250", 7),
        lab(TNI, "0.04", 7),
    )
    assert alerts(*normal) == ()


def test_no_results_at_all_give_no_alerts() -> None:
    found = post_infusion_alerts(
        PatientFacts(patient_id="p", birth_date=BIRTH),
        infusion_date=INFUSION,
        on=ON,
        policy=DEFAULT_POLICY,
    )
    assert found == ()


# 5.1 (a): ALT or AST > 20 x ULN ------------------------------------------------------------


@pytest.mark.parametrize(
    ("test", "value", "fires"),
    [
        (ALT, "900", False),  # exactly 20 x 45
        (ALT, "900.45", True),  # 20.01 x ULN
        (AST, "1200", False),  # exactly 20 x 60
        (AST, "1200.6", True),  # 20.01 x ULN
    ],
)
def test_aminotransferase_above_20_x_uln(test: LabTest, value: str, fires: bool) -> None:
    assert (LIVER in codes(lab(test, value, 7))) is fires


def test_aminotransferase_alert_names_value_multiple_date_and_label_source() -> None:
    alert = only(LIVER, alerts(lab(ALT, "1020", 19)))
    assert "ALT 1020 U/L = 22.67 x ULN on 2026-11-20" in alert.message
    assert alert.level is AlertLevel.URGENT
    assert alert.section == "5.1"
    assert alert.advice == label.ADVICE_LIVER_INJURY
    assert alert.source == TWENTY_X_SOURCE
    assert alert.title == "Possible acute serious liver injury"
    assert [c.rule for c in alert.criteria] == [
        "ALT or AST above 20 × ULN, as in the reported cases of acute serious liver injury"
    ]
    assert [e.reference for e in alert.evidence] == [ref(ALT, 19)]


def test_both_aminotransferases_above_20_x_uln_are_both_listed() -> None:
    alert = only(LIVER, alerts(lab(ALT, "1020", 7), lab(AST, "1500", 7)))
    assert "ALT 1020 U/L = 22.67 x ULN" in alert.message
    assert "AST 1500 U/L = 25.00 x ULN" in alert.message
    assert [e.reference for e in alert.evidence] == [ref(ALT, 7), ref(AST, 7)]


# 5.1 (b): total bilirubin with ALT or AST -----------------------------------------------------


@pytest.mark.parametrize(
    ("bilirubin", "test", "amino", "fires"),
    [
        ("1.3", ALT, "91", True),
        ("1.2", ALT, "91", False),  # bilirubin exactly 1 x ULN
        ("1.3", ALT, "90", False),  # ALT exactly 2 x ULN
        ("1.3", AST, "121", True),
        ("1.3", AST, "120", False),  # AST exactly 2 x ULN
    ],
)
def test_bilirubin_with_aminotransferase_pattern(
    bilirubin: str, test: LabTest, amino: str, fires: bool
) -> None:
    found = codes(lab(BILI, bilirubin, 7), lab(test, amino, 7))
    assert (LIVER in found) is fires


def test_bilirubin_pattern_message_and_institution_source() -> None:
    alert = only(LIVER, alerts(lab(BILI, "2.4", 7), lab(AST, "150", 7)))
    assert "total bilirubin 2.4 mg/dL = 2.00 x ULN on 2026-11-08" in alert.message
    assert "AST 150 U/L = 2.50 x ULN on 2026-11-08" in alert.message
    assert alert.source == LIVER_PATTERN_SOURCE
    assert "liver_injury" not in alert.source  # plain words, no policy field names
    assert {e.reference for e in alert.evidence} == {ref(BILI, 7), ref(AST, 7)}


def test_raised_bilirubin_alone_is_not_the_acute_pattern_but_is_worsening() -> None:
    assert codes(lab(BILI, "5.0", 7), lab(ALT, "40", 7)) == (WORSE,)


# 5.1 (c): INR rising -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "fires"),
    [
        ("1.2", True),  # above ULN 1.1 and exactly 0.2 above baseline 1.0
        ("1.19", False),  # above ULN, but up only 0.19
        ("1.5", True),
    ],
)
def test_inr_rise_against_baseline(value: str, fires: bool) -> None:
    assert (LIVER in codes(lab(INR, value, 7))) is fires


def test_inr_rise_at_or_below_uln_does_not_fire() -> None:
    baseline_low = lab(INR, "0.8", -2)  # newer than BASELINE's 1.0
    assert codes(baseline_low, lab(INR, "1.1", 7)) == ()  # up 0.3 but exactly 1 x ULN


def test_inr_rise_is_measured_from_the_previous_result_not_the_baseline() -> None:
    # 1.4 is 0.4 above the baseline 1.0 but only 0.1 above the day-7 result: not 'rising' for
    # the acute pattern, but still worsening against the patient's own baseline.
    assert codes(lab(INR, "1.3", 7), lab(INR, "1.4", 14)) == (WORSE,)
    assert codes(lab(INR, "1.3", 7), lab(INR, "1.4", 14), on=day(13)) == (LIVER, WORSE)


def test_inr_without_an_earlier_result_cannot_be_rising_but_is_worsening_without_a_baseline() -> (
    None
):
    found = post_infusion_alerts(
        facts(lab(INR, "2.0", 7)), infusion_date=INFUSION, on=ON, policy=DEFAULT_POLICY
    )
    alert = only(WORSE, found)
    assert [a.code for a in found] == [WORSE]
    assert "no pre-infusion result to compare" in alert.message


def test_inr_message_and_evidence_name_both_results() -> None:
    alert = only(LIVER, alerts(lab(INR, "1.5", 7)))
    assert "INR 1.5 = 1.36 x ULN on 2026-11-08 (day 7), up 0.5 from 1.0 on 2026-10-28" in (
        alert.message
    )
    assert alert.source == INR_SOURCE
    (seen,) = alert.results
    assert seen.previous is not None and seen.previous.evidence.reference == ref(INR, -4)
    assert [e.reference for e in alert.evidence] == [ref(INR, 7), ref(INR, -4)]


def test_every_liver_criterion_in_one_alert_without_duplicate_evidence() -> None:
    found = alerts(lab(ALT, "1020", 7), lab(BILI, "1.8", 7), lab(INR, "1.6", 7))
    alert = only(LIVER, found)
    assert alert.source == f"{TWENTY_X_SOURCE}; {LIVER_PATTERN_SOURCE}; {INR_SOURCE}"
    assert alert.message.count("ALT 1020") == 1  # met by two criteria, stated once
    assert len(alert.criteria) == 3
    assert [r.result.test for r in alert.results] == [ALT, BILI, INR]
    assert "total bilirubin 1.8 mg/dL = 1.50 x ULN" in alert.message
    assert "INR 1.6 = 1.45 x ULN" in alert.message
    references = [e.reference for e in alert.evidence]
    assert references == [ref(ALT, 7), ref(BILI, 7), ref(INR, 7), ref(INR, -4)]
    assert len(references) == len(set(references))


# 5.3 thrombocytopenia -------------------------------------------------------------------------


@pytest.mark.parametrize(("count", "fires"), [("150", False), ("149", True), ("149.9", True)])
def test_platelets_below_threshold(count: str, fires: bool) -> None:
    # Day 35: outside the TMA window, so thrombocytopenia is the only possible alert.
    assert codes(lab(PLT, count, 35)) == ((THROMBO,) if fires else ())


def test_thrombocytopenia_message_names_count_unit_date_and_baseline() -> None:
    alert = only(THROMBO, alerts(lab(PLT, "95", 35)))
    assert "95 x 10^3/uL on 2026-12-06" in alert.message
    assert [c.rule for c in alert.criteria] == ["Platelet count below 150 × 10³/µL"]
    assert "pre-infusion 310 x 10^3/uL on 2026-10-28" in alert.message
    assert alert.level is AlertLevel.URGENT
    assert alert.section == "5.3"
    assert alert.advice == label.ADVICE_THROMBOCYTOPENIA
    assert alert.source == "institution default: a platelet count below 150 × 10³/µL is low"
    assert [e.reference for e in alert.evidence] == [ref(PLT, 35), ref(PLT, -4)]


def test_thrombocytopenia_without_baseline_says_so() -> None:
    found = post_infusion_alerts(
        facts(lab(PLT, "95", 35)), infusion_date=INFUSION, on=ON, policy=DEFAULT_POLICY
    )
    alert = only(THROMBO, found)
    assert "no baseline platelet count" in alert.message
    assert [e.reference for e in alert.evidence] == [ref(PLT, 35)]


# 5.4 TMA pattern ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("creatinine", "tma"),
    [("0.45", True), ("0.44", False)],  # baseline 0.3 x 1.5 = 0.45
)
def test_tma_by_creatinine_rise(creatinine: str, tma: bool) -> None:
    found = codes(lab(PLT, "90", 7), lab(CREAT, creatinine, 7), lab(HGB, "11.5", 7))
    assert found == ((THROMBO, TMA) if tma else (THROMBO,))


@pytest.mark.parametrize(
    ("hemoglobin", "tma"),
    [("10.0", True), ("10.1", False)],  # baseline 12.0 - 2
)
def test_tma_by_hemoglobin_drop(hemoglobin: str, tma: bool) -> None:
    found = codes(lab(PLT, "90", 7), lab(CREAT, "0.3", 7), lab(HGB, hemoglobin, 7))
    assert found == ((THROMBO, TMA) if tma else (THROMBO,))


def test_tma_needs_low_platelets() -> None:
    assert codes(lab(PLT, "150", 7), lab(CREAT, "0.9", 7), lab(HGB, "8.0", 7)) == ()


def test_tma_alert_message_source_and_evidence() -> None:
    found = alerts(lab(PLT, "90", 7), lab(CREAT, "0.6", 7), lab(HGB, "9.5", 7))
    alert = only(TMA, found)
    assert alert.level is AlertLevel.URGENT
    assert alert.section == "5.4"
    assert alert.advice == label.ADVICE_TMA
    assert "platelets 90 x 10^3/uL on 2026-11-08 (day 7)" in alert.message
    assert "creatinine 0.6 mg/dL = 1.20 x ULN on 2026-11-08 (day 7), pre-infusion 0.3 mg/dL" in (
        alert.message
    )
    assert "hemoglobin 9.5 g/dL on 2026-11-08 (day 7), pre-infusion 12.0 g/dL" in alert.message
    assert alert.source == (
        "institution defaults: a platelet count below 150 × 10³/µL is low; the TMA pattern is "
        "looked for up to 28 days after infusion; institution default: creatinine is rising at "
        "50% or more above its pre-infusion value; institution default: hemoglobin is falling "
        "at 2 g/dL or more below its pre-infusion value"
    )
    assert [e.reference for e in alert.evidence] == [
        ref(PLT, 7),
        ref(CREAT, 7),
        ref(CREAT, -4),
        ref(HGB, 7),
        ref(HGB, -4),
    ]


@pytest.mark.parametrize(("platelet_day", "tma"), [(28, True), (29, False)])
def test_tma_only_within_tma_alert_days(platelet_day: int, tma: bool) -> None:
    found = codes(lab(PLT, "90", platelet_day), lab(CREAT, "0.9", 7), lab(HGB, "11.5", 7))
    assert found == ((THROMBO, TMA) if tma else (THROMBO,))


def test_creatinine_rise_after_the_window_does_not_make_a_tma_pattern() -> None:
    found = codes(
        lab(PLT, "90", 10),
        lab(CREAT, "0.3", 7),
        lab(CREAT, "0.9", 35),
        lab(HGB, "11.5", 7),
        on=day(40),
    )
    assert found == (THROMBO,)


def test_tma_arms_that_cannot_be_checked_are_named() -> None:
    no_baseline = [r for r in BASELINE if r.test is not HGB]
    found = post_infusion_alerts(
        facts(*no_baseline, lab(PLT, "90", 7), lab(HGB, "9.0", 7)),
        infusion_date=INFUSION,
        on=ON,
        policy=DEFAULT_POLICY,
    )
    assert [a.code for a in found] == [THROMBO]
    message = found[0].message
    assert "TMA pattern not checkable by creatinine: no post-infusion creatinine" in message
    assert "TMA pattern not checkable by hemoglobin: no baseline hemoglobin" in message


def test_checkable_arms_and_late_low_platelets_add_no_gap_note() -> None:
    checked = only(THROMBO, alerts(lab(PLT, "90", 7), lab(CREAT, "0.3", 7), lab(HGB, "12", 7)))
    late = only(THROMBO, alerts(lab(PLT, "90", 35)))
    assert "not checkable" not in checked.message
    assert "not checkable" not in late.message


def test_missing_arm_note_appears_alongside_a_tma_alert() -> None:
    found = alerts(lab(PLT, "90", 7), lab(CREAT, "0.9", 7))
    assert [a.code for a in found] == [THROMBO, TMA]
    assert "not checkable by hemoglobin: no post-infusion hemoglobin" in found[0].message


# 5.5 troponin I --------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "fires"), [("0.04", False), ("0.041", True)])
def test_troponin_above_uln(value: str, fires: bool) -> None:
    assert codes(lab(TNI, value, 7)) == ((TROPONIN,) if fires else ())


def test_troponin_alert_is_a_warning_with_label_source() -> None:
    alert = only(TROPONIN, alerts(lab(TNI, "0.09", 7)))
    assert alert.level is AlertLevel.WARNING
    assert alert.section == "5.5"
    assert alert.advice == label.ADVICE_TROPONIN
    assert alert.source == "label section 5.5 (above the reference range)"
    assert "troponin I 0.09 ng/mL = 2.25 x ULN on 2026-11-08" in alert.message
    assert [c.rule for c in alert.criteria] == ["Troponin I above the reference range"]
    assert [e.reference for e in alert.evidence] == [ref(TNI, 7)]


# What never counts ---------------------------------------------------------------------------


def test_results_after_the_evaluation_date_are_ignored() -> None:
    late = (lab(ALT, "1020", 19), lab(PLT, "90", 19), lab(TNI, "0.5", 19))
    assert codes(*late, on=day(18)) == ()
    assert codes(*late, on=day(19)) == (LIVER, WORSE, THROMBO, TROPONIN)


def test_baseline_results_are_not_post_infusion() -> None:
    # Abnormal on the infusion day itself: still baseline.
    abnormal = (
        lab(ALT, "1020", 0),
        lab(BILI, "3.0", 0),
        lab(PLT, "90", 0),
        lab(TNI, "0.5", 0),
    )
    assert codes(*abnormal) == ()


def test_nothing_is_post_infusion_before_the_infusion() -> None:
    assert codes(lab(ALT, "1020", 7), lab(PLT, "90", 7), on=day(-1)) == ()


def test_older_abnormal_result_superseded_by_newer_normal_one() -> None:
    older = (lab(ALT, "1020", 7), lab(PLT, "90", 7), lab(TNI, "0.5", 7), lab(INR, "1.6", 7))
    newer = (lab(ALT, "40", 14), lab(PLT, "200", 14), lab(TNI, "0.02", 14))
    # The day-14 INR equals day 7's: no longer 'rising', but still above ULN and baseline.
    assert codes(*older, *newer, lab(INR, "1.6", 14)) == (WORSE,)
    assert codes(*older, *newer, lab(INR, "1.0", 14)) == ()
    assert codes(*older, *newer, on=day(13)) == (LIVER, WORSE, THROMBO, TROPONIN)


def test_unknown_uln_cannot_trigger() -> None:
    unknown = (lab(ALT, "1020", 7, reported=False), lab(TNI, "0.5", 7, reported=False))
    assert codes(*unknown, birth_date=None) == ()


def test_fallback_uln_applies_when_age_is_known() -> None:
    # Age 151 days on 2026-11-08: fallback ALT ULN 50 U/L, troponin I 0.04 ng/mL.
    unknown = (lab(ALT, "1020", 7, reported=False), lab(TNI, "0.5", 7, reported=False))
    found = alerts(*unknown)
    assert [a.code for a in found] == [LIVER, WORSE, TROPONIN]
    assert (
        "ALT 1020 U/L = 20.40 x ULN on 2026-11-08 (day 7) (fallback ULN 50 U/L)" in found[0].message
    )


def test_zero_uln_cannot_trigger() -> None:
    assert codes(lab(ALT, "1020", 7, uln=Decimal(0))) == ()


@pytest.mark.parametrize("comparator", [Comparator.LT, Comparator.LE])
def test_censored_below_never_triggers_an_above_rule(comparator: Comparator) -> None:
    censored = (
        lab(ALT, "1020", 7, comparator=comparator),
        lab(TNI, "0.5", 7, comparator=comparator),
        lab(INR, "2.0", 7, comparator=comparator),
        lab(BILI, "3.0", 7, comparator=comparator),
        lab(AST, "200", 7),
    )
    # Only the uncensored AST can be worsening; the censored values count for nothing.
    assert codes(*censored) == (WORSE,)
    assert [e.reference for e in only(WORSE, alerts(*censored)).evidence] == [
        ref(AST, 7),
        ref(AST, -4),
    ]
    assert codes(lab(PLT, "90", 7), lab(CREAT, "0.9", 7, comparator=comparator)) == (THROMBO,)


def test_censored_value_above_the_limit_still_triggers() -> None:
    found = alerts(lab(ALT, "1020", 7, comparator=Comparator.GT))
    assert "ALT >1020 U/L = 22.67 x ULN" in only(LIVER, found).message


@pytest.mark.parametrize("comparator", [Comparator.GT, Comparator.GE])
def test_censored_above_never_triggers_a_below_rule(comparator: Comparator) -> None:
    assert codes(lab(PLT, "90", 7, comparator=comparator)) == ()
    found = codes(
        lab(PLT, "90", 7), lab(CREAT, "0.3", 7), lab(HGB, "8.0", 7, comparator=comparator)
    )
    assert found == (THROMBO,)


def test_platelets_censored_below_still_count_as_low() -> None:
    alert = only(THROMBO, alerts(lab(PLT, "20", 35, comparator=Comparator.LT)))
    assert "<20 x 10^3/uL" in alert.message


# Policy ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "labs", "default", "overridden"),
    [
        (
            {"platelets_low_10e3_per_ul": Decimal(100)},
            (lab(PLT, "120", 35),),
            (THROMBO,),
            (),
        ),
        (
            {"liver_injury_bilirubin_uln_multiple": Decimal(2)},
            (lab(BILI, "1.8", 7), lab(ALT, "200", 7)),
            (LIVER, WORSE),
            (WORSE,),
        ),
        (
            {"liver_injury_aminotransferase_uln_multiple": Decimal(5)},
            (lab(BILI, "1.8", 7), lab(ALT, "200", 7)),
            (LIVER, WORSE),
            (WORSE,),
        ),
        ({"inr_rise_min": Decimal("0.1")}, (lab(INR, "1.15", 7),), (WORSE,), (LIVER, WORSE)),
        (
            {"tma_alert_days": 7},
            (lab(PLT, "90", 10), lab(CREAT, "0.9", 7)),
            (THROMBO, TMA),
            (THROMBO,),
        ),
        (
            {"tma_creatinine_rise_fraction": Decimal("0.2")},
            (lab(PLT, "90", 7), lab(CREAT, "0.36", 7)),
            (THROMBO,),
            (THROMBO, TMA),
        ),
        (
            {"tma_hemoglobin_drop_g_per_dl": Decimal(1)},
            (lab(PLT, "90", 7), lab(CREAT, "0.3", 7), lab(HGB, "11.0", 7)),
            (THROMBO,),
            (THROMBO, TMA),
        ),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) else None,
)
def test_policy_overrides_change_the_outcome(
    changes: dict[str, object],
    labs: tuple[LabResult, ...],
    default: tuple[AlertCode, ...],
    overridden: tuple[AlertCode, ...],
) -> None:
    policy = dataclasses.replace(DEFAULT_POLICY, **changes)
    assert codes(*labs) == default
    assert codes(*labs, policy=policy) == overridden


def test_policy_values_appear_in_the_sources() -> None:
    policy = dataclasses.replace(
        DEFAULT_POLICY, platelets_low_10e3_per_ul=Decimal(100), inr_rise_min=Decimal("0.1")
    )
    found = alerts(lab(PLT, "90", 35), lab(INR, "1.15", 7), policy=policy)
    assert only(THROMBO, found).source == (
        "institution default: a platelet count below 100 × 10³/µL is low"
    )
    assert only(LIVER, found).source == (
        "institution default: INR is rising when above its ULN and up 0.1 or more on the result "
        "before"
    )


# Order and determinism -----------------------------------------------------------------------


def test_urgent_before_warning_then_code_order() -> None:
    everything = (
        lab(TNI, "0.5", 7),
        lab(PLT, "90", 7),
        lab(CREAT, "0.9", 7),
        lab(ALT, "1020", 7),
    )
    found = alerts(*everything)
    assert [a.code for a in found] == [LIVER, WORSE, THROMBO, TMA, TROPONIN]
    assert [a.level for a in found] == [AlertLevel.URGENT] * 4 + [AlertLevel.WARNING]


def test_same_facts_give_the_same_alerts_whatever_order_the_labs_come_in() -> None:
    # The day-14 ALT supersedes the day-7 one only if results are taken newest first.
    labs = (
        *BASELINE,
        lab(TNI, "0.5", 7),
        lab(PLT, "90", 7),
        lab(ALT, "1020", 7),
        lab(ALT, "40", 14),
    )
    newest_first = facts(*labs)
    shuffled = dataclasses.replace(newest_first, labs=tuple(reversed(newest_first.labs)))
    first = post_infusion_alerts(newest_first, infusion_date=INFUSION, on=ON, policy=DEFAULT_POLICY)
    again = post_infusion_alerts(shuffled, infusion_date=INFUSION, on=ON, policy=DEFAULT_POLICY)
    assert first == again
    assert [a.code for a in first] == [THROMBO, TROPONIN]


# 5.1 worsening liver tests ---------------------------------------------------------------------


def test_issue_example_alt_and_ast_ten_times_uln_on_day_14_is_urgent() -> None:
    # Day 7 was 0.67 x ULN: nothing rose 'against the previous result' by a set amount, but
    # the newest values are far above ULN and above the pre-infusion values.
    found = alerts(lab(ALT, "30", 7), lab(AST, "40", 7), lab(ALT, "450", 14), lab(AST, "600", 14))
    alert = only(WORSE, found)
    assert alert.level is AlertLevel.URGENT
    assert "ALT 450 U/L = 10.00 x ULN on 2026-11-15 (day 14)" in alert.message
    assert "pre-infusion 30 U/L on 2026-10-28" in alert.message
    assert "up 420 U/L from 30 U/L on 2026-11-08" in alert.message
    assert "AST 600 U/L = 10.00 x ULN" in alert.message
    assert "worsening ALT or AST is urgent at 5 × ULN or more" in alert.source
    assert alert.source.startswith("label section 5.1 ('promptly assess and closely monitor")
    assert LIVER not in [a.code for a in found]  # below 20 x ULN, no bilirubin


def test_issue_example_bilirubin_two_and_a_half_times_uln_alone_is_urgent() -> None:
    alert = only(WORSE, alerts(lab(BILI, "3.0", 14), lab(ALT, "30", 14), lab(AST, "40", 14)))
    assert alert.level is AlertLevel.URGENT
    assert "total bilirubin 3.0 mg/dL = 2.50 x ULN" in alert.message
    assert "worsening total bilirubin is urgent at 2 × ULN or more" in alert.source
    assert [e.reference for e in alert.evidence] == [ref(BILI, 14), ref(BILI, -4)]


def test_issue_example_inr_that_stays_high_keeps_its_urgent_alert() -> None:
    day_7 = alerts(lab(INR, "1.8", 7), on=day(7))
    assert [a.code for a in day_7] == [LIVER, WORSE]
    day_14 = alerts(lab(INR, "1.8", 7), lab(INR, "1.9", 14), on=day(14))
    assert [a.code for a in day_14] == [WORSE]  # rise from day 7 is only 0.1
    alert = only(WORSE, day_14)
    assert alert.level is AlertLevel.URGENT
    assert "INR 1.9 = 1.73 x ULN on 2026-11-15 (day 14)" in alert.message
    assert "pre-infusion 1.0" in alert.message
    assert "up 0.1 from 1.8 on 2026-11-08" in alert.message


@pytest.mark.parametrize(
    ("test", "value", "fires"),
    [
        (ALT, "45", False),  # exactly ULN
        (ALT, "45.1", True),  # just above ULN, above baseline 30
        (BILI, "1.2", False),
        (BILI, "1.21", True),
        (INR, "1.1", False),
        (INR, "1.11", True),
        (PT, "14.0", False),
        (PT, "14.1", True),
    ],
)
def test_worsening_starts_just_above_uln(test: LabTest, value: str, fires: bool) -> None:
    baseline = (lab(PT, "12.0", -4),)
    assert (WORSE in codes(*baseline, lab(test, value, 7))) is fires


@pytest.mark.parametrize(("value", "fires"), [("50", False), ("49.9", False), ("50.1", True)])
def test_worsening_needs_the_value_above_the_pre_infusion_value(value: str, fires: bool) -> None:
    # The baseline itself was above ULN (50 U/L against 45): flat is not worsening.
    assert (WORSE in codes(lab(ALT, "50", -2), lab(ALT, value, 7))) is fires


@pytest.mark.parametrize(
    ("test", "value", "level"),
    [
        (ALT, "224", AlertLevel.WARNING),  # 4.98 x ULN
        (ALT, "225", AlertLevel.URGENT),  # exactly 5 x ULN
        (AST, "299", AlertLevel.WARNING),
        (AST, "300", AlertLevel.URGENT),
        (BILI, "2.39", AlertLevel.WARNING),
        (BILI, "2.4", AlertLevel.URGENT),  # exactly 2 x ULN
        (INR, "1.11", AlertLevel.URGENT),  # INR/PT above ULN: urgent
        (PT, "14.1", AlertLevel.URGENT),
    ],
)
def test_worsening_severity_tiers(test: LabTest, value: str, level: AlertLevel) -> None:
    alert = only(WORSE, alerts(lab(PT, "12.0", -4), lab(test, value, 7)))
    assert alert.level is level


def test_a_warning_cites_every_tier_it_stayed_below() -> None:
    alert = only(WORSE, alerts(lab(ALT, "100", 7)))
    assert alert.level is AlertLevel.WARNING
    assert alert.criteria[-1].rule == "A warning: below the urgent levels"
    assert alert.source.endswith(
        "institution defaults: worsening ALT or AST is urgent at 5 × ULN or more; "
        "worsening total bilirubin is urgent at 2 × ULN or more; "
        "worsening PT or INR is urgent above 1 × ULN"
    )


def test_falling_but_still_above_baseline_and_uln_keeps_the_alert_and_says_so() -> None:
    alert = only(WORSE, alerts(lab(ALT, "400", 7), lab(ALT, "150", 14)))
    assert alert.level is AlertLevel.WARNING
    assert "down 250 U/L from 400 U/L on 2026-11-08" in alert.message
    assert codes(lab(ALT, "400", 7), lab(ALT, "40", 14)) == ()


def test_worsening_advice_is_section_5_1_in_short_points() -> None:
    alert = only(WORSE, alerts(lab(ALT, "100", 7)))
    assert alert.advice == label.ADVICE_LIVER_WORSENING
    assert alert.advice[0] == "Promptly assess and closely monitor."
    assert any("albumin, PTT and INR" in point for point in alert.advice)
    assert any("higher dose" in point for point in alert.advice)
    assert all(len(point) <= 100 for point in alert.advice)
    assert alert.section == "5.1"


@pytest.mark.parametrize("advice", [a for a in dir(label) if a.startswith("ADVICE_")])
def test_label_advice_is_short_points_each_a_sentence(advice: str) -> None:
    points = getattr(label, advice)
    if advice == "ADVICE_CONSULT":  # the decision's consult note, one sentence
        assert isinstance(points, str)
        return
    assert isinstance(points, tuple) and len(points) >= 2
    assert all(p.endswith(".") and len(p) <= 130 for p in points)


def test_policy_tiers_change_the_level() -> None:
    policy = dataclasses.replace(
        DEFAULT_POLICY, worsening_urgent_aminotransferase_uln_multiple=Decimal(2)
    )
    assert only(WORSE, alerts(lab(ALT, "100", 7))).level is AlertLevel.WARNING
    alert = only(WORSE, alerts(lab(ALT, "100", 7), policy=policy))
    assert alert.level is AlertLevel.URGENT
    assert "worsening ALT or AST is urgent at 2 × ULN or more" in alert.source


@pytest.mark.parametrize(("value", "fires"), [("16.0", True), ("15.9", False)])
def test_pt_rising_is_checked_like_inr_in_the_acute_pattern(value: str, fires: bool) -> None:
    # PT baseline 14.0 = ULN; up by pt_rise_min_s = 2 s to above ULN.
    found = alerts(lab(PT, "14.0", -1), lab(test=PT, value=value, n=7))
    assert (LIVER in [a.code for a in found]) is fires
    if fires:
        alert = only(LIVER, found)
        assert "PT 16.0 s = 1.14 x ULN on 2026-11-08 (day 7), up 2.0 s from 14.0 s" in (
            alert.message
        )
        assert alert.source == (
            "institution default: PT is rising when above its ULN and up 2 s or more on the "
            "result before"
        )


def test_twenty_times_uln_is_described_as_reported_cases_not_a_label_threshold() -> None:
    alert = only(LIVER, alerts(lab(AST, "1500", 7)))
    assert "not a label threshold" in alert.source
    assert "reported cases" in alert.criteria[0].rule
