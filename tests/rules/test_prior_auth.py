"""The prior-authorization packet: criteria with evidence agreeing with the plan, billing facts,
the 10- to 11-digit NDC, and the draft letter of medical necessity with its placeholders."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from smart_app.errors import InputError, PolicyError
from smart_app.fhir import codes
from smart_app.fhir.read import facts_from_bundle
from smart_app.rules import label
from smart_app.rules.model import (
    Comparator,
    Evidence,
    FindingCode,
    LabTest,
    PatientFacts,
    Plan,
    Status,
    Titer,
)
from smart_app.rules.plan import build_plan
from smart_app.rules.policy import DEFAULT_POLICY, Policy
from smart_app.rules.prior_auth import (
    ICD10CM_SYSTEM,
    KEYS,
    SNOMED_SYSTEM,
    CriterionStatus,
    Packet,
    age_text,
    ndc_11,
    prior_auth_packet,
)
from smart_app.rules.prior_auth_letter import QUOTES, Letter, letter
from tests.builders import baseline_lab, measurement
from tests.builders import eligible as eligibility_base
from tests.conftest import SEED_LABEL

C = CriterionStatus
ON = dt.date(2026, 11, 20)
INFUSION = dt.date(2026, 11, 24)
SMA_G120 = Evidence(
    "Condition/sma",
    "SMA type 1",
    date=dt.date(2026, 6, 20),
    display="SMA type 1",
    codings=(
        (ICD10CM_SYSTEM, "G12.0", "Infantile spinal muscular atrophy, type I [Werdnig-Hoffman]"),
        (SNOMED_SYSTEM, "5262007", "Spinal muscular atrophy"),
    ),
)
SMN2 = measurement("smn2", "2", "{copies}", dt.date(2026, 8, 20))
NUSINERSEN = Evidence(
    "MedicationAdministration/spinraza-1",
    "MedicationAdministration completed: Spinraza 12 mg/5 mL intrathecal",
    date=dt.date(2026, 10, 1),
    display="nusinersen (SPINRAZA)",
)


def eligible(**changes: Any) -> PatientFacts:
    """test_eligibility's eligible 5-month-old, with a coded SMA Condition and SMN2 copies."""
    base = eligibility_base(sma_conditions=(SMA_G120,), smn2_copies=(SMN2,))
    return dataclasses.replace(base, **changes)


def packet_of(
    facts: PatientFacts, *, infusion: dt.date = INFUSION, policy: Policy = DEFAULT_POLICY
) -> tuple[Packet, Plan]:
    """The packet for the facts' plan on ON."""
    plan = build_plan(facts, on=ON, infusion_date=infusion, policy=policy)
    return prior_auth_packet(facts, plan, policy=policy), plan


def states(packet: Packet) -> dict[str, CriterionStatus]:
    """Each criterion's status by key."""
    return {c.key: c.status for c in packet.criteria}


def letter_of(
    packet: Packet,
    plan: Plan,
    *,
    patient_name: str = "Ada Test",
    prescriber_name: str = "Dr. Lee",
    organization: str = "Clinic",
) -> Letter:
    """The draft letter, signed on ON, with the usual names unless given."""
    return letter(
        packet,
        plan,
        patient_name=patient_name,
        prescriber_name=prescriber_name,
        organization=organization,
        signed_on=ON,
    )


# The criteria ---------------------------------------------------------------------------------


def test_eligible_infant_meets_every_criterion_with_its_evidence() -> None:
    packet, plan = packet_of(eligible())
    assert plan.eligibility.status is Status.ELIGIBLE
    assert tuple(c.key for c in packet.criteria) == KEYS
    assert states(packet) == {key: C.MET for key in KEYS[:-1]} | {"smn-therapy": C.NOTED}
    dx = packet.criterion("diagnosis")
    assert dx.value == "G12.0 Infantile spinal muscular atrophy, type I [Werdnig-Hoffman]"
    assert (dx.date, dx.sources, dx.section) == (dt.date(2026, 6, 20), ("Condition/sma",), "1")
    smn1 = packet.criterion("smn1")
    assert (smn1.value, smn1.date) == (
        "0 copies of SMN1 (bi-allelic deletion)",
        dt.date(2026, 8, 20),
    )
    assert smn1.sources == ("Observation/smn1",)
    smn2 = packet.criterion("smn2")
    assert smn2.value == "2 copies" and "criteria vary" in smn2.note
    age = packet.criterion("age")
    assert age.value == "5 months 14 days on 2026-11-24"
    assert age.date == dt.date(2026, 6, 10) and "2028-06-09" in age.note
    titer = packet.criterion("titer")
    assert (titer.value, titer.date, titer.sources) == (
        "<1:25",
        dt.date(2026, 11, 9),
        ("Observation/titer",),
    )
    weight = packet.criterion("weight-kit")
    assert (
        weight.value == "6.12 kg; kit NDC 71894-127-05 (6.1-6.5 kg band, 2 x 5.5 mL + 3 x 8.3 mL)"
    )
    assert weight.sources == ("Observation/w",)
    labs = packet.criterion("baseline-labs")
    assert labs.missing == () and labs.value.startswith("all 10 current: AST, ALT")
    assert len(labs.sources) == len(DEFAULT_POLICY.baseline_tests)
    advanced = packet.criterion("not-advanced")
    assert advanced.value == "no tracheostomy or permanent ventilation recorded"
    assert "only in the sense that the chart records none" in advanced.note
    assert packet.criterion("smn-therapy").value == "none recorded"
    assert packet.plan_status is Status.ELIGIBLE and packet.blocking == ()


def test_eligible_infant_billing_facts() -> None:
    packet, _ = packet_of(eligible())
    bill = packet.billing
    assert (bill.hcpcs, bill.hcpcs_units) == ("J3399", 1)
    assert (bill.ndc_10, bill.ndc_11, bill.ndc_11_digits) == (
        "71894-127-05",
        "71894-0127-05",
        "71894012705",
    )
    assert bill.icd10 == (("G12.0", "Infantile spinal muscular atrophy, type I [Werdnig-Hoffman]"),)
    assert "per treatment, up to 5x10^15 vector genomes" in bill.hcpcs_descriptor
    assert bill.hcpcs_source.startswith("Institution default")
    assert "1 unit = 1 treatment" in bill.hcpcs_source
    assert "Coding and Billing Guide" in bill.hcpcs_source
    assert "confirm the units with the payer" in bill.hcpcs_source


def test_billing_units_come_from_the_policy() -> None:
    policy = Policy(version="site-2", hcpcs_j3399_units=2)
    packet, _ = packet_of(eligible(), policy=policy)
    assert packet.billing.hcpcs_units == 2
    assert "2 units of J3399" in packet.billing.hcpcs_source
    with pytest.raises(PolicyError, match="hcpcs_j3399_units"):
        Policy(hcpcs_j3399_units=0)


def test_titer_above_1_50_defers_and_is_the_criterion_not_met() -> None:
    high = Titer(
        Decimal(100), Comparator.EQ, dt.date(2026, 11, 9), Evidence("Observation/t", "1:100")
    )
    packet, plan = packet_of(eligible(titers=(high,)))
    assert plan.eligibility.status is Status.DEFERRED
    titer = packet.criterion("titer")
    assert titer.status is C.NOT_MET and titer.value == "1:100"
    assert titer.findings == (FindingCode.ANTI_AAV9_TITER_ELEVATED.value,)
    assert "above 1:50" in titer.note
    assert [k for k, s in states(packet).items() if s is C.NOT_MET] == ["titer"]
    assert [f.code for f in packet.blocking] == [FindingCode.ANTI_AAV9_TITER_ELEVATED]


def test_fever_defers_the_plan_and_the_packet_says_why() -> None:
    fever = measurement("temp", "38.6", "Cel", ON)
    packet, plan = packet_of(eligible(temperatures_c=(fever,)))
    assert plan.eligibility.status is Status.DEFERRED
    assert all(s in (C.MET, C.NOTED) for s in states(packet).values())  # no payer criterion
    assert [f.code for f in packet.blocking] == [FindingCode.ACTIVE_INFECTION]
    drafted = letter_of(packet, plan)
    (notice,) = [p for p in drafted.placeholders if p.startswith("[the plan is deferred")]
    assert "24 Nov 2026" in notice and "38.0" in notice and notice in drafted.notice


def test_missing_genetics_titer_and_diagnosis_are_missing_not_guessed() -> None:
    facts = eligible(smn1_copies=(), smn2_copies=(), titers=(), sma_conditions=())
    packet, plan = packet_of(facts)
    assert plan.eligibility.status is Status.INCOMPLETE
    found = states(packet)
    for key in ("diagnosis", "smn1", "smn2", "titer"):
        assert found[key] is C.MISSING, key
    assert packet.criterion("smn1").value == "no SMN1 copy number (genetic test) recorded"
    assert packet.criterion("smn1").findings == (FindingCode.SMN1_BIALLELIC_NOT_CONFIRMED.value,)
    assert packet.criterion("titer").value == "no anti-AAV9 titer recorded"
    assert packet.criterion("titer").sources == ()
    assert packet.criterion("diagnosis").value == "no spinal muscular atrophy Condition recorded"
    assert packet.billing.icd10 == ()
    assert found["weight-kit"] is C.MET and packet.billing.ndc_11 == "71894-0127-05"


def test_titer_older_than_the_look_back_is_missing_with_its_source() -> None:
    old = Titer(
        Decimal(25), Comparator.LT, dt.date(2026, 10, 1), Evidence("Observation/old", "<1:25")
    )
    packet, _ = packet_of(eligible(titers=(old,)))
    titer = packet.criterion("titer")
    assert (titer.status, titer.value, titer.sources) == (C.MISSING, "<1:25", ("Observation/old",))
    assert titer.findings == (FindingCode.ANTI_AAV9_TITER_MISSING.value,)


def test_one_smn1_copy_is_missing_as_the_plan_says() -> None:
    packet, _ = packet_of(
        eligible(smn1_copies=(measurement("smn1", "1", "{copies}", dt.date(2026, 8, 20)),))
    )
    smn1 = packet.criterion("smn1")
    assert (smn1.status, smn1.value) == (C.MISSING, "1 copy of SMN1")
    assert "pathogenic variant" in smn1.note


def test_diagnosis_coded_only_unspecified_names_the_codes() -> None:
    unspecified = Evidence(
        "Condition/sma9",
        "SMA",
        codings=((ICD10CM_SYSTEM, "G12.9", "Spinal muscular atrophy, unspecified"),),
    )
    packet, _ = packet_of(eligible(sma_conditions=(unspecified,)))
    dx = packet.criterion("diagnosis")
    assert dx.status is C.MISSING
    assert dx.value == "recorded only as ICD-10-CM G12.9 Spinal muscular atrophy, unspecified"
    assert dx.sources == ("Condition/sma9",)
    assert packet.billing.icd10 == (("G12.9", "Spinal muscular atrophy, unspecified"),)


def test_age_two_or_older_is_not_met() -> None:
    packet, _ = packet_of(eligible(birth_date=dt.date(2024, 11, 24), gestational_age_days=()))
    age = packet.criterion("age")
    assert age.status is C.NOT_MET and age.value == "2 years on 2026-11-24"
    assert age.findings == (FindingCode.AGE_NOT_UNDER_2.value,)


def test_no_birth_date_is_missing() -> None:
    packet, _ = packet_of(eligible(birth_date=None))
    age = packet.criterion("age")
    assert (age.status, age.value, age.date) == (C.MISSING, "no date of birth recorded", None)


def test_weight_outside_the_label_is_not_met_and_has_no_ndc() -> None:
    packet, _ = packet_of(
        eligible(weights_kg=(measurement("w", "2.4", "kg", dt.date(2026, 11, 18)),))
    )
    weight = packet.criterion("weight-kit")
    assert (weight.status, weight.value) == (C.NOT_MET, "2.4 kg; no kit")
    assert (packet.billing.ndc_10, packet.billing.ndc_11) == (None, None)


def test_baseline_labs_missing_are_named() -> None:
    labs = tuple(baseline_lab(t, "1") for t in LabTest if t not in (LabTest.PT, LabTest.INR))
    packet, plan = packet_of(eligible(labs=labs))
    item = packet.criterion("baseline-labs")
    assert item.status is C.MISSING and item.missing == ("PT", "INR")
    assert item.value.startswith("missing: PT, INR; current: AST, ALT")
    assert item.findings == (FindingCode.BASELINE_LAB_MISSING.value,)
    missing = [f for f in plan.eligibility.findings if f.code is FindingCode.BASELINE_LAB_MISSING]
    assert len(missing) == len(item.missing)


def test_troponin_required_by_policy_is_a_baseline_test() -> None:
    policy = Policy(
        version="site-tni", baseline_tests=(*DEFAULT_POLICY.baseline_tests, LabTest.TROPONIN_I)
    )
    labs = tuple(baseline_lab(t, "1") for t in LabTest if t is not LabTest.TROPONIN_I)
    packet, _ = packet_of(eligible(labs=labs), policy=policy)
    assert packet.criterion("baseline-labs").missing == ("troponin I",)


def test_advanced_sma_and_prior_zolgensma_are_not_met() -> None:
    trach = Evidence(
        "Procedure/trach", "Tracheostomy", date=dt.date(2026, 10, 2), display="Tracheostomy"
    )
    given = Evidence(
        "MedicationAdministration/zol",
        "MedicationAdministration completed: ZOLGENSMA kit",
        date=dt.date(2026, 9, 1),
    )
    packet, _ = packet_of(eligible(advanced_sma=(trach,), prior_gene_therapy=(given,)))
    advanced = packet.criterion("not-advanced")
    assert (advanced.status, advanced.value, advanced.sources) == (
        C.NOT_MET,
        "Tracheostomy",
        ("Procedure/trach",),
    )
    assert advanced.findings == (FindingCode.ADVANCED_SMA.value,)
    prior = packet.criterion("no-prior-zolgensma")
    assert prior.status is C.NOT_MET and prior.sources == ("MedicationAdministration/zol",)
    assert prior.date == dt.date(2026, 9, 1)


def test_concurrent_nusinersen_is_noted_with_medication_and_date() -> None:
    later = dataclasses.replace(
        NUSINERSEN, reference="MedicationRequest/later", date=ON + dt.timedelta(days=3)
    )
    packet, plan = packet_of(eligible(smn_therapies=(NUSINERSEN, later)))
    therapy = packet.criterion("smn-therapy")
    assert therapy.status is C.NOTED
    assert therapy.value == (
        "nusinersen (SPINRAZA): MedicationAdministration completed: Spinraza 12 mg/5 mL "
        "intrathecal (2026-10-01)"
    )
    assert therapy.sources == ("MedicationAdministration/spinraza-1",)
    assert "payer criteria vary" in therapy.note and "bridge" in therapy.note
    assert plan.eligibility.status is Status.ELIGIBLE  # named, not judged
    drafted = letter_of(packet, plan)
    treatment = drafted.paragraph("treatment").text
    assert "SMN-targeted therapy on record: nusinersen (SPINRAZA)" in treatment
    assert "(1 Oct 2026)" in treatment
    assert any("plan for this therapy" in p for p in drafted.placeholders)


def test_packet_refuses_a_plan_for_someone_else_or_another_policy() -> None:
    facts = eligible()
    plan = build_plan(facts, on=ON, infusion_date=INFUSION)
    with pytest.raises(InputError, match="Patient/p"):
        prior_auth_packet(dataclasses.replace(facts, patient_id="q"), plan)
    with pytest.raises(InputError, match="policy"):
        prior_auth_packet(facts, plan, policy=Policy(version="other"))


@pytest.mark.parametrize(
    ("birth", "on", "expected"),
    [
        (dt.date(2026, 6, 10), dt.date(2026, 11, 24), "5 months 14 days"),
        (dt.date(2026, 6, 10), dt.date(2026, 7, 10), "1 month"),
        (dt.date(2026, 1, 31), dt.date(2026, 3, 1), "1 month 1 day"),
        (dt.date(2026, 11, 24), dt.date(2026, 11, 24), "0 days"),
        (dt.date(2024, 11, 23), dt.date(2026, 11, 24), "2 years 1 day"),
    ],
)
def test_age_in_calendar_months_and_days(birth: dt.date, on: dt.date, expected: str) -> None:
    assert age_text(birth, on) == expected


# NDC ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ten", "eleven"),
    [
        ("71894-120-02", "71894-0120-02"),  # 5-3-2, the ZOLGENSMA kits
        ("1234-5678-90", "01234-5678-90"),  # 4-4-2
        ("12345-6789-1", "12345-6789-01"),  # 5-4-1
        ("12345-6789-01", "12345-6789-01"),  # already 5-4-2
        (" 71894-156-14 ", "71894-0156-14"),
    ],
)
def test_ndc_10_to_11(ten: str, eleven: str) -> None:
    assert ndc_11(ten) == eleven


@pytest.mark.parametrize(
    "bad", ["7189412002", "71894-120", "123-4567-890", "12345-678-9", "7189a-120-02", "1-2-3", ""]
)
def test_ndc_that_is_no_10_digit_layout_is_refused(bad: str) -> None:
    with pytest.raises(InputError, match="NDC"):
        ndc_11(bad)


def test_every_kit_ndc_converts_by_padding_the_product_code() -> None:
    for kit in label.kits():
        labeler, product, package = kit.ndc.split("-")
        assert ndc_11(kit.ndc) == f"{labeler}-0{product}-{package}"
        assert len(ndc_11(kit.ndc).replace("-", "")) == 11


# Reading the chart ----------------------------------------------------------------------------


def _bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    patient = {"resourceType": "Patient", "id": "p", "birthDate": "2026-06-10"}
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in (patient, *resources)],
    }


def _use(kind: str, rid: str, status: str, text: str, **fields: Any) -> dict[str, Any]:
    return {
        "resourceType": kind,
        "id": rid,
        "status": status,
        "subject": {"reference": "Patient/p"},
        "medicationCodeableConcept": {"text": text},
        **fields,
    }


def test_reader_finds_smn_therapies_by_name_in_live_statuses_only() -> None:
    facts = facts_from_bundle(
        _bundle(
            _use(
                "MedicationAdministration",
                "spin",
                "completed",
                "Spinraza 12 mg/5 mL",
                effectiveDateTime="2026-10-01T09:00:00Z",
            ),
            _use(
                "MedicationRequest",
                "ris",
                "active",
                "Evrysdi oral solution",
                authoredOn="2026-09-01",
            ),
            _use("MedicationStatement", "nus", "not-taken", "nusinersen"),
            _use("MedicationRequest", "amox", "active", "amoxicillin"),
        )
    )
    assert [(e.reference, e.display, e.date) for e in facts.smn_therapies] == [
        ("MedicationAdministration/spin", "nusinersen (SPINRAZA)", dt.date(2026, 10, 1)),
        ("MedicationRequest/ris", "risdiplam (EVRYSDI)", dt.date(2026, 9, 1)),
    ]
    assert facts.smn_therapies[0].value == "MedicationAdministration completed: Spinraza 12 mg/5 mL"
    assert facts.prior_gene_therapy == () and facts.read_findings == ()


def test_reader_finds_an_smn_therapy_by_coding_display() -> None:
    coded = {
        "coding": [
            {"system": codes.NDC, "code": "00000-0000-00", "display": "risdiplam 0.75 MG/ML"}
        ]
    }
    use = _use("MedicationStatement", "s", "active", "")
    use["medicationCodeableConcept"] = coded
    facts = facts_from_bundle(_bundle(use))
    assert [e.display for e in facts.smn_therapies] == ["risdiplam (EVRYSDI)"]


def test_reader_keeps_the_sma_condition_codings() -> None:
    condition = {
        "resourceType": "Condition",
        "id": "sma",
        "subject": {"reference": "Patient/p"},
        "code": {
            "text": "SMA 1",
            "coding": [
                {"system": codes.ICD10CM, "code": "G12.0", "display": "Infantile SMA, type I"},
                {"system": codes.SNOMED, "code": "5262007"},
            ],
        },
        "onsetDateTime": "2026-06-14",
    }
    facts = facts_from_bundle(_bundle(condition))
    (sma,) = facts.sma_conditions
    assert sma.codings == (
        (codes.ICD10CM, "G12.0", "Infantile SMA, type I"),
        (codes.SNOMED, "5262007", ""),
    )
    assert (ICD10CM_SYSTEM, SNOMED_SYSTEM) == (codes.ICD10CM, codes.SNOMED)


# The letter -----------------------------------------------------------------------------------


def test_letter_of_an_eligible_infant_is_a_draft_with_the_facts() -> None:
    packet, plan = packet_of(eligible())
    drafted = letter_of(packet, plan)
    assert drafted.draft and drafted.title.startswith("DRAFT")
    assert drafted.notice.startswith("DRAFT for the prescriber to review, edit and sign")
    assert [p.key for p in drafted.paragraphs] == [
        "patient",
        "diagnosis",
        "treatment",
        "why-now",
        "monitoring",
    ]
    assert "Ada Test, date of birth 10 Jun 2026" in drafted.paragraph("patient").text
    assert "will be 5 months 14 days old" in drafted.paragraph("patient").text
    diagnosis = drafted.paragraph("diagnosis").text
    assert "ICD-10-CM G12.0 Infantile spinal muscular atrophy" in diagnosis
    assert "0 copies of SMN1 (bi-allelic deletion), result of 20 Aug 2026" in diagnosis
    assert "SMN2 copy number: 2 copies" in diagnosis
    treatment = drafted.paragraph("treatment").text
    assert "single-dose intravenous infusion" in treatment and "1.1 × 10^14" in treatment
    assert "kit NDC 71894-127-05 (11-digit billing form 71894-0127-05)" in treatment
    assert "HCPCS J3399, 1 unit" in treatment and "<1:25 (9 Nov 2026)" in treatment
    monitoring = drafted.paragraph("monitoring").text
    assert "6.1 mg once daily" in monitoring and "starts on 23 Nov 2026" in monitoring
    assert "through 22 Dec 2026" in monitoring and "troponin I on days" in monitoring
    assert "at least 3 months" in monitoring
    assert drafted.closing[-3:] == ("Dr. Lee", "Clinic", "Date: 20 Nov 2026")
    # Only what the chart can never hold is left in brackets.
    assert drafted.placeholders == (
        "[health plan: name, address, prior authorization department]",
        "[prescriber: the clinical presentation: symptom onset, motor function (e.g. "
        "CHOP-INTEND), respiratory and feeding status]",
    )
    for hole in drafted.placeholders:
        assert hole in drafted.text


def test_letter_brackets_what_the_chart_does_not_hold() -> None:
    facts = eligible(smn1_copies=(), smn2_copies=(), titers=(), sma_conditions=())
    packet, plan = packet_of(facts)
    drafted = letter_of(packet, plan, patient_name="", prescriber_name=" ", organization="")
    for hole in (
        "[SMN2 copy number: not recorded]",
        "[SMN1 genetic test: not recorded]",
        "[anti-AAV9 antibody titer: not recorded]",
        "[ICD-10-CM diagnosis G12.0 or G12.1: not recorded]",
        "[ICD-10-CM code: not recorded]",
        "[patient name]",
        "[prescriber name]",
        "[organization]",
    ):
        assert hole in drafted.placeholders, hole
        assert hole in drafted.text, hole
    assert any(p.startswith("[the plan is incomplete") for p in drafted.placeholders)
    assert "Genetic testing confirmed" not in drafted.text
    assert "at or below 1:50 (label" not in drafted.text


def test_letter_marks_what_is_not_met() -> None:
    high = Titer(
        Decimal(100), Comparator.EQ, dt.date(2026, 11, 9), Evidence("Observation/t", "1:100")
    )
    packet, plan = packet_of(eligible(titers=(high,)))
    drafted = letter_of(packet, plan)
    assert (
        "[not met: Anti-AAV9 antibody titer at or below 1:50: 1:100; review before sending]"
        in drafted.placeholders
    )


def test_letter_without_a_weight_brackets_kit_and_steroids() -> None:
    packet, plan = packet_of(eligible(weights_kg=()))
    drafted = letter_of(packet, plan)
    assert (
        "[weight and kit: no weight recorded; a current weight is needed]" in drafted.placeholders
    )
    assert any(p.startswith("[corticosteroid plan") for p in drafted.placeholders)
    assert "[NDC: no kit until a current weight is recorded]" in drafted.placeholders


def test_letter_refuses_a_packet_for_another_plan() -> None:
    packet, _ = packet_of(eligible())
    other = build_plan(eligible(), on=ON, infusion_date=INFUSION + dt.timedelta(days=1))
    with pytest.raises(InputError, match="packet"):
        letter_of(packet, other)


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def test_letter_quotes_the_label_word_for_word(seeds_dir: Path) -> None:
    seed = _normal((seeds_dir / SEED_LABEL).read_text(encoding="utf-8"))
    for quote in QUOTES:
        assert _normal(quote.text) in seed, quote.text
    packet, plan = packet_of(eligible())
    why = letter_of(packet, plan).paragraph("why-now").text
    assert all(quote.text in why for quote in QUOTES)
    assert "motor neurons remain" not in why  # nothing the label does not say


def test_weights_that_disagree_keep_the_kit_and_ask_for_review() -> None:
    """The packet's weight is the one the plan doses on, and the plan's review is named."""
    heavier = measurement("w2", "6.70", "kg", dt.date(2026, 11, 18))
    lighter = measurement("w", "6.12", "kg", dt.date(2026, 11, 18))
    packet, plan = packet_of(eligible(weights_kg=(heavier, lighter)))
    assert plan.dose is not None and plan.dose.weight_kg == Decimal("6.70")
    assert plan.eligibility.status is Status.NEEDS_REVIEW
    weight = packet.criterion("weight-kit")
    assert weight.status is C.MET
    assert weight.value.startswith("6.70 kg; kit NDC 71894-128-05")
    assert weight.sources[:2] == ("Observation/w2", "Observation/w")
    assert weight.findings == (FindingCode.WEIGHT_DISCREPANCY.value,)
    assert (
        "The plan asks for the clinician's review: Weights taken together disagree" in weight.note
    )
