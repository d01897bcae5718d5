"""The day-30 consult rule, the warning before the steroid order ends, and late decisions.

Label section 2.1: "If liver function abnormalities continue to persist >= 2 x ULN after the
30-day period of systemic corticosteroids, promptly consult a pediatric gastroenterologist or
hepatologist", "Do not stop systemic corticosteroids abruptly", and "If oral corticosteroid
therapy is not tolerated, consider intravenous corticosteroids as clinically indicated".
The patient, plan and helpers are the follow-up scenario of tests/builders.py (infusion 2026-10-24,
full dose ordered through day 28 = 2026-11-21).
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from smart_app.rules import label
from smart_app.rules.followup import follow_up
from smart_app.rules.liver_decision import decide
from smart_app.rules.model import (
    DecisionBranch,
    Evidence,
    FollowUpCode,
    LabTest,
    Measurement,
    PatientFacts,
    Severity,
)
from smart_app.rules.steroids import steroid_course
from tests.builders import (
    ALT,
    AST,
    BILI,
    CONTINUATION,
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

ENDING = FollowUpCode.STEROID_ORDER_ENDING


# The consult follows any liver test at or above 2 x ULN (2.1) ----------------------------------


def test_issue_example_bilirubin_2_5x_uln_at_day_28_continues_with_a_consult() -> None:
    labs = changed(normal_labs(), lab(BILI, "3.0", 28))  # ULN 1.2 mg/dL
    decision = decide(patient(labs), plan(), on=day(28), policy=POLICY, exam_normal=True)
    assert decision.branch is DecisionBranch.CONTINUE
    assert decision.consult is True
    assert [r.test for r in decision.consult_results] == [BILI]
    (reason,) = decision.reasons
    assert "total bilirubin 3.0 mg/dL = 2.50 x ULN" in reason
    assert "not below 2 x ULN" in reason
    assert decision.manufacturer_advice == ""


@pytest.mark.parametrize(
    ("test", "at_2x", "just_below"),
    [(BILI, "2.4", "2.39"), (PT, "29.0", "28.9"), (INR, "2.6", "2.59")],
)
def test_bilirubin_pt_and_inr_consult_at_exactly_2x_uln(
    test: LabTest, at_2x: str, just_below: str
) -> None:
    at = decide(
        patient(changed(normal_labs(), lab(test, at_2x, 28))),
        plan(),
        on=day(28),
        policy=POLICY,
        exam_normal=True,
    )
    assert at.branch is DecisionBranch.CONTINUE
    assert at.consult is True
    assert [r.test for r in at.consult_results] == [test]
    below = decide(
        patient(changed(normal_labs(), lab(test, just_below, 28))),
        plan(),
        on=day(28),
        policy=POLICY,
        exam_normal=True,
    )
    # Still above ULN, so not unremarkable: continue, but the label's consult is not due.
    assert below.branch is DecisionBranch.CONTINUE
    assert below.consult is False
    assert below.consult_results == ()
    assert "(above normal)" in below.reasons[0]


def test_below_2x_but_abnormal_shows_the_manufacturers_further_advice() -> None:
    labs = changed(normal_labs(), lab(INR, "1.5", 28))  # ULN 1.3: abnormal, below 2 x ULN
    decision = decide(patient(labs), plan(), on=day(28), policy=POLICY, exam_normal=True)
    assert decision.branch is DecisionBranch.CONTINUE
    assert decision.consult is False
    assert decision.manufacturer_advice == label.MANUFACTURER_CONSULT_ADVICE
    assert "If liver function abnormalities are present" in decision.manufacturer_advice
    assert "goes further than the label" in decision.manufacturer_advice


def test_an_unremarkable_panel_has_no_consult_and_no_manufacturer_advice() -> None:
    decision = decide(patient(), plan(), on=day(28), policy=POLICY, exam_normal=True)
    assert decision.branch is DecisionBranch.TAPER
    assert decision.consult is False
    assert decision.manufacturer_advice == ""


def test_every_liver_test_at_2x_is_named_behind_the_consult() -> None:
    labs = changed(
        normal_labs(),
        lab(ALT, "90", 28),
        lab(AST, "119", 28),  # 1.98 x ULN: below 2 x ULN, and aminotransferases below it are
        lab(BILI, "2.4", 28),  # unremarkable for the label
        lab(PT, "29.0", 28),
        lab(INR, "2.6", 28),
    )
    decision = decide(patient(labs), plan(), on=day(28), policy=POLICY, exam_normal=True)
    assert decision.consult is True
    assert [r.test for r in decision.consult_results] == [ALT, BILI, PT, INR]


def test_the_consult_rule_is_the_same_words_everywhere() -> None:
    assert label.CONSULT_RULE == (
        "any of ALT, AST, total bilirubin, PT or INR at or above 2 x ULN after the 30-day "
        "corticosteroid period"
    )
    assert label.CONSULT_RULE in label.ADVICE_CONSULT
    course = steroid_course(Decimal("5.4"), infusion_date=day(0), policy=POLICY)
    assert label.CONSULT_RULE in course.taper_basis
    assert "ALT or AST stay" not in course.taper_basis


# Never an uncovered steroid day (2.1) ----------------------------------------------------------


@pytest.mark.parametrize(("n", "warned"), [(25, False), (26, True), (27, True), (28, True)])
def test_warning_from_two_days_before_the_last_full_dose_day(n: int, warned: bool) -> None:
    fu = follow_up(patient(), plan(), on=day(n), policy=POLICY)
    found = [f for f in fu.findings if f.code is ENDING]
    assert bool(found) is warned
    if warned:
        (finding,) = found
        assert finding.severity is Severity.NEEDS_REVIEW
        assert finding.section == "2.1"
        assert "ends on 21 Nov 2026" in finding.message
        assert "do not stop systemic corticosteroids abruptly" in finding.message
        assert (
            "institution default: the app warns 2 days before the last ordered full-dose "
            "prednisolone day"
        ) in finding.message
        assert finding.evidence[0].reference == "MedicationRequest/m1"


def test_warning_says_today_on_the_last_day() -> None:
    fu = follow_up(patient(), plan(), on=day(28), policy=POLICY)
    (finding,) = [f for f in fu.findings if f.code is ENDING]
    assert "(today)" in finding.message
    fu = follow_up(patient(), plan(), on=day(26), policy=POLICY)
    (finding,) = [f for f in fu.findings if f.code is ENDING]
    assert "(in 2 day(s))" in finding.message


def test_no_warning_once_a_taper_is_ordered_after_the_full_dose() -> None:
    for n in (26, 27, 28):
        fu = follow_up(patient(), tapered(decided=27), on=day(n), policy=POLICY)
        assert ENDING not in {f.code for f in fu.findings}


def test_the_warning_returns_as_a_continuation_ends_with_nothing_after_it() -> None:
    assert ENDING not in {
        f.code for f in follow_up(patient(), continued(), on=day(53), policy=POLICY).findings
    }
    fu = follow_up(patient(), continued(), on=day(54), policy=POLICY)
    (finding,) = [f for f in fu.findings if f.code is ENDING]
    assert "ends on 19 Dec 2026" in finding.message
    assert finding.evidence[0].reference == CONTINUATION.reference


def test_the_policy_sets_how_early_the_warning_comes() -> None:
    policy = dataclasses.replace(POLICY, steroid_end_warning_days=5)
    fu = follow_up(patient(), plan(), on=day(23), policy=policy)
    (finding,) = [f for f in fu.findings if f.code is ENDING]
    assert "the app warns 5 days before the last ordered full-dose" in finding.message


def test_a_late_continue_starts_on_the_first_uncovered_day() -> None:
    labs = changed(normal_labs(), lab(ALT, "135", 33))
    decision = decide(patient(labs), plan(), on=day(33), policy=POLICY, exam_normal=True)
    assert decision.branch is DecisionBranch.CONTINUE
    (step,) = decision.steps
    assert step.start == day(29)
    finding = next(f for f in decision.findings if f.code is FollowUpCode.DECISION_AFTER_FULL_DOSE)
    assert "start on 22 Nov 2026, the first uncovered day" in finding.message


def test_a_late_decision_after_a_continuation_starts_the_day_after_it() -> None:
    labs = changed(normal_labs(), lab(ALT, "30", 60), lab(AST, "40", 60))
    for test in (BILI, PT, INR):
        labs = changed(labs, lab(test, {BILI: "0.4", PT: "12.5", INR: "1.0"}[test], 60))
    decision = decide(patient(labs), continued(), on=day(60), policy=POLICY, exam_normal=True)
    assert decision.branch is DecisionBranch.TAPER
    assert decision.steps[0].start == day(57)  # the continuation ran through day 56


def test_a_taper_decided_on_time_still_starts_the_day_after_the_full_dose() -> None:
    decision = decide(patient(), plan(), on=day(28), policy=POLICY, exam_normal=True)
    assert decision.branch is DecisionBranch.TAPER
    assert decision.steps[0].start == day(29)
    assert not [f for f in decision.findings if f.code is FollowUpCode.DECISION_AFTER_FULL_DOSE]


# Oral steroid not tolerated (2.1) -------------------------------------------------------------


def test_the_iv_alternative_is_quoted_in_the_course_and_the_counseling() -> None:
    assert label.STEROID_IV_ALTERNATIVE.startswith(
        "If oral corticosteroid therapy is not tolerated, consider intravenous corticosteroids "
        "as clinically indicated"
    )
    course = steroid_course(Decimal("5.4"), infusion_date=day(0), policy=POLICY)
    assert label.STEROID_IV_ALTERNATIVE in course.taper_basis
    (liver,) = [p for p in label.COUNSELING if p.topic == "liver"]
    assert "intravenously" in liver.text
    assert "mg" not in liver.text.split("intravenously")[0][-60:]  # no invented conversion


# Limits from the policy say so ------------------------------------------------------------------


def test_follow_up_findings_name_the_institution_defaults_they_use() -> None:
    labs = changed(normal_labs(), drop=((ALT, 28),))
    decision = decide(
        patient(labs, weights=(-8,)), plan(), on=day(28), policy=POLICY, exam_normal=True
    )
    messages = {f.code: f.message for f in decision.findings}
    assert (
        "institution default: a weekly draw is on time up to 1 day either side of its date"
        in messages[FollowUpCode.LIVER_PANEL_MISSING]
    )
    assert (
        "institution default: a weight older than 30 days is out of date"
        in (messages[FollowUpCode.WEIGHT_STALE])
    )
    assert not any("_days" in m for m in messages.values())  # no policy field names


# One child, one weight at the day-30 decision too (2.1) -----------------------------------------


def _with_weights(*kg_and_ref: tuple[str, str]) -> PatientFacts:
    """The usual patient, plus weights taken on day 28 (date only)."""
    base = patient()
    extra = tuple(
        Measurement(Decimal(kg), "kg", day(28), Evidence(ref, kg, "kg", day(28)))
        for kg, ref in kg_and_ref
    )
    newest_first = tuple(
        sorted((*extra, *base.weights_kg), key=lambda m: m.effective, reverse=True)
    )
    return dataclasses.replace(base, weights_kg=newest_first)


@pytest.mark.parametrize(
    "weights",
    [
        (("6.1", "Observation/w-a"), ("6.6", "Observation/w-b")),
        (("6.6", "Observation/w-a"), ("6.1", "Observation/w-b")),
    ],
)
def test_disagreeing_weights_at_the_decision_dose_on_the_heavier_and_say_so(
    weights: tuple[tuple[str, str], ...],
) -> None:
    decision = decide(_with_weights(*weights), plan(), on=day(28), policy=POLICY, exam_normal=True)
    assert decision.weight is not None
    assert decision.weight.value == Decimal("6.6")
    assert decision.full_dose_mg_per_day == Decimal("6.6")
    (finding,) = [f for f in decision.findings if f.code is FollowUpCode.WEIGHT_DISCREPANCY]
    assert finding.severity is Severity.NEEDS_REVIEW
    assert "6.6 kg (Observation/w-" in finding.message and "6.1 kg" in finding.message
    assert "institution defaults: weights differing by more than 5% disagree" in finding.message


def test_agreeing_weights_at_the_decision_raise_nothing() -> None:
    facts = _with_weights(("6.10", "Observation/w-a"), ("6.12", "Observation/w-b"))
    decision = decide(facts, plan(), on=day(28), policy=POLICY, exam_normal=True)
    assert not [f for f in decision.findings if f.code is FollowUpCode.WEIGHT_DISCREPANCY]
