"""The eligibility checklist: every criterion with its evidence, agreeing with the rules; and
what would unblock a plan, with a date only where the chart gives one."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest

from smart_app.fhir.read import facts_from_bundle
from smart_app.rules.model import FindingCode, PatientFacts, Plan, Severity, Status
from smart_app.rules.plan import build_plan
from smart_app.rules.policy import DEFAULT_POLICY
from smart_app.sandbox.patients import synthetic_patients
from smart_app.web import checklist
from smart_app.web.checklist import State

TODAY = dt.date(2026, 11, 21)
PATIENTS = {p.patient_id: p for p in synthetic_patients(today=TODAY)}
NBSP = "\u00a0"
CRITERIA = ("age", "weight", "smn1", "titer", "term", "infection", "prior", "hepatic")


def _planned(patient_id: str, *, infusion: dt.date | None = None) -> tuple[Plan, PatientFacts]:
    """A synthetic patient's plan on TODAY, for its own infusion date unless one is given."""
    patient = PATIENTS[patient_id]
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in patient.resources],
    }
    facts = facts_from_bundle(json.loads(json.dumps(bundle), parse_float=Decimal))
    plan = build_plan(facts, on=TODAY, infusion_date=infusion or patient.infusion_date)
    return plan, facts


def _list(patient_id: str) -> checklist.Checklist:
    """The checklist of a synthetic patient's plan."""
    plan, facts = _planned(patient_id)
    return checklist.build(plan, facts)


def _plain(text: str) -> str:
    """Text with its no-break spaces as spaces."""
    return text.replace(NBSP, " ")


def test_every_criterion_of_an_eligible_infant_is_met_with_its_evidence() -> None:
    listed = _list("zs-eligible-4-2kg")
    assert [r.key for r in listed.criteria] == list(CRITERIA)
    assert all(r.state is State.MET for r in listed.rows), [
        (r.key, r.state) for r in listed.rows if r.state is not State.MET
    ]
    age = listed.row("age")
    assert _plain(age.value) == "2 months 11 days"  # 72 days old on 24 Nov 2026
    assert age.date == dt.date(2026, 9, 13) and "12 Sep 2028" in _plain(age.rule)
    assert age.sources == ("Patient/zs-eligible-4-2kg",) and age.section == "1"
    weight = listed.row("weight")
    assert (_plain(weight.value), weight.date) == ("4.20 kg", dt.date(2026, 11, 19))
    assert weight.note == "band 4.1–4.5 kg" and weight.sources == (
        "Observation/zs-eligible-4-2kg-weight",
    )
    titer = listed.row("titer")
    assert (titer.value, titer.date) == ("<1:25", dt.date(2026, 11, 5))
    assert titer.rule.startswith("≤ 1:50") and "institution default" in titer.rule
    assert titer.sources == ("Observation/zs-eligible-4-2kg-aav9",)
    assert listed.row("smn1").value == "SMN1: 0 copies" and listed.row("smn1").note == (
        "SMN2: 2 copies"
    )
    assert listed.row("term").value == "born at 39+0 weeks (term)"
    assert _plain(listed.row("infection").value) == "36.8 °C"
    assert listed.row("prior").value == "none on record"
    assert "INR 1.0 (within range)" in listed.row("hepatic").value
    assert [r.key for r in listed.baseline] == [
        f"lab:{t.value}" for t in DEFAULT_POLICY.baseline_tests
    ]
    alt = listed.row("lab:ALT")
    assert (_plain(alt.value), alt.date) == ("24 U/L", dt.date(2026, 11, 17))
    assert _plain(alt.multiple) == "0.53 × ULN" and alt.flag == "within range"
    assert _plain(alt.uln) == "45 U/L (reported)"
    assert _plain(listed.row("lab:INR").value) == "1.0"  # INR has no unit
    assert _plain(listed.row("lab:platelets").value) == "318 10³/µL"
    for low in ("platelets", "hemoglobin", "albumin"):  # a low value is their concern
        assert listed.row(f"lab:{low}").multiple == ""
    assert _plain(listed.row("lab:creatinine").multiple) == "0.48 × ULN"
    assert listed.other == ()  # the counseling finding has a section of its own
    assert checklist.reason(listed, Status.ELIGIBLE) == (
        "All 18 criteria and baseline tests below are met."
    )


def test_an_elevated_alt_is_the_one_row_needing_review() -> None:
    plan, facts = _planned("zs-alt-elevated")
    listed = checklist.build(plan, facts)
    review = [r.key for r in listed.rows if r.state is not State.MET]
    assert review == ["lab:ALT"]
    alt = listed.row("lab:ALT")
    assert alt.state is State.REVIEW
    assert _plain(alt.multiple) == "2.67 × ULN" and alt.flag == "above 2 × ULN"
    assert checklist.reason(listed, plan.eligibility.status) == (
        "Needs your review: Baseline ALT (120\u00a0U/L). 17 of 18 are met."
    )


@pytest.mark.parametrize(
    ("patient_id", "key", "state", "value"),
    [
        ("zs-age-over-2", "age", State.NOT_MET, "24 months 21 days"),
        ("zs-weight-below-label", "weight", State.NOT_MET, "2.45 kg"),
        ("zs-prior-onasemnogene", "prior", State.NOT_MET, "ZOLGENSMA kit"),
        ("zs-preterm-34wk", "term", State.NOT_MET, "born at 34+0 weeks"),
        ("zs-aav9-titer-1-100", "titer", State.NOT_MET, "1:100"),
        ("zs-active-infection", "infection", State.NOT_MET, "RSV bronchiolitis; 38.4 °C"),
        ("zs-birth-date-missing", "age", State.MISSING, "no date of birth recorded"),
        ("zs-weight-missing", "weight", State.MISSING, "no weight recorded"),
        ("zs-weight-stale", "weight", State.MISSING, "4.40 kg"),
        ("zs-gestational-age-missing", "term", State.MISSING, "no gestational age"),
        ("zs-aav9-titer-missing", "titer", State.MISSING, "<1:25"),
        ("zs-aav9-titer-ambiguous", "titer", State.MISSING, ">1:25"),
        ("zs-smn1-one-copy", "smn1", State.MISSING, "SMN1: 1 copy"),
        ("zs-baseline-labs-missing", "lab:PTT", State.MISSING, "no result"),
        ("zs-eligible-gap-6030g", "weight", State.MET, "6030 g (6.03 kg)"),
    ],
)
def test_each_blocking_finding_marks_its_own_row(
    patient_id: str, key: str, state: State, value: str
) -> None:
    """The row agrees with the rules; every other row is met (each patient has one problem)."""
    listed = _list(patient_id)
    row = listed.row(key)
    assert row.state is state, (row.state, row.value)
    assert _plain(row.value).startswith(value), row.value
    others = {r.key for r in listed.rows if r.state is not State.MET} - {key}
    if patient_id == "zs-prior-onasemnogene":  # titer 1:3200 after the dose elsewhere
        assert others == {"titer"}
    elif patient_id == "zs-baseline-labs-missing":  # troponin I is not a label baseline test
        assert others == set()
    else:
        assert others == set(), others


def test_a_stale_weight_says_why_and_names_its_source() -> None:
    weight = _list("zs-weight-stale").row("weight")
    assert weight.date == TODAY - dt.timedelta(days=40)
    assert "too old" in weight.note and "institution default" in weight.note
    assert weight.sources == ("Observation/zs-weight-stale-weight",)


def test_a_between_bands_weight_shows_the_band_it_is_looked_up_in() -> None:
    weight = _list("zs-eligible-gap-6030g").row("weight")
    assert weight.note == "band 6.1–6.5 kg (between printed bands: looked up as 6.1 kg)"


def test_a_preterm_infant_shows_postmenstrual_age_before_term_equivalent() -> None:
    listed = _list("zs-preterm-34wk")
    assert _plain(listed.row("age").value) == "18 days (postmenstrual age 36+4 weeks)"
    assert listed.row("term").note == "36+4 weeks postmenstrual on the infusion date"
    assert listed.gestational_age_days == 238
    plan, facts = _planned("zs-preterm-34wk", infusion=TODAY + dt.timedelta(days=58))
    later = checklist.build(plan, facts).row("age")  # 74 days old, born 6 weeks early
    assert _plain(later.value) == "2 months 13 days (corrected age 1 month 2 days)"


def test_findings_no_row_stands_for_are_kept() -> None:
    """A steroid start already past (infusion tomorrow from yesterday's evaluation) has no row:
    it is listed with the other findings, never dropped."""
    plan, facts = _planned("zs-eligible-4-2kg", infusion=TODAY)
    listed = checklist.build(plan, facts)
    assert [f.code for f in listed.other] == [FindingCode.STEROID_START_PASSED]
    assert "1 other finding below" in checklist.reason(listed, plan.eligibility.status)


def test_the_fingerprint_data_changes_with_the_evidence() -> None:
    plan, facts = _planned("zs-eligible-4-2kg")
    first = checklist.as_data(checklist.build(plan, facts))
    labs = tuple(
        lab if lab.test.value != "ALT" else type(lab)(**{**lab.__dict__, "value": Decimal(30)})
        for lab in facts.labs
    )
    second = checklist.as_data(
        checklist.build(plan, type(facts)(**{**facts.__dict__, "labs": labs}))
    )
    assert first != second and json.dumps(first)


def test_a_preterm_infant_is_offered_the_day_term_age_is_reached() -> None:
    plan, facts = _planned("zs-preterm-34wk")
    assert plan.eligibility.status is Status.DEFERRED
    found = checklist.unblock(plan, facts, advice="wait", latest=TODAY + dt.timedelta(days=365))
    assert found.retry_on == dt.date(2026, 11, 26)  # born 5 Nov at 34+0: 37+0 weeks 21 days on
    assert found.retry_status is Status.ELIGIBLE
    assert [f.code for f in found.blocking] == [FindingCode.PRETERM_BEFORE_TERM_AGE]
    assert found.evaluate_from is None
    late = checklist.unblock(plan, facts, advice="wait", latest=dt.date(2026, 11, 25))
    assert late.retry_on is None  # after the latest date offered: no link


def test_a_fever_gives_a_day_to_evaluate_again_not_an_infusion_date() -> None:
    plan, facts = _planned("zs-active-infection")
    found = checklist.unblock(plan, facts, advice="wait", latest=TODAY + dt.timedelta(days=365))
    assert found.retry_on is None
    assert found.evaluate_from == TODAY + dt.timedelta(days=4)  # fever today, 3-day look-back
    assert "3-day look-back (institution default)" in found.evaluate_why


@pytest.mark.parametrize(
    "patient_id", ["zs-age-over-2", "zs-aav9-titer-1-100", "zs-weight-missing"]
)
def test_no_date_is_invented_where_the_chart_gives_none(patient_id: str) -> None:
    plan, facts = _planned(patient_id)
    found = checklist.unblock(plan, facts, advice="x", latest=TODAY + dt.timedelta(days=365))
    assert (found.retry_on, found.evaluate_from) == (None, None)
    assert found.blocking and all(
        f.severity is Severity(plan.eligibility.status.value) for f in found.blocking
    )
