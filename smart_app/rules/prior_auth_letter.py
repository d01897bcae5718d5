"""The letter of medical necessity, drafted from the packet and the plan for the prescriber."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from smart_app.errors import InputError
from smart_app.rules.model import FindingCode, LabTest, Plan, ScheduleItem, Status
from smart_app.rules.monitoring import LIVER_PANEL
from smart_app.rules.prior_auth import Criterion, CriterionStatus, Packet, age_text

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")


@dataclass(frozen=True)
class Quote:
    """Words quoted from the prescribing information, with the section they are in."""

    text: str
    section: str


INDICATION = Quote(
    "ZOLGENSMA is an adeno-associated virus (AAV) vector-based gene therapy indicated for the "
    "treatment of pediatric patients less than 2 years of age with spinal muscular atrophy (SMA) "
    "with bi-allelic mutations in the survival motor neuron 1 (SMN1) gene.",
    "1",
)
TREATED_AGE = Quote(
    "The mean age of the 21 patients at the time of treatment was 3.9 months (range, 0.5 to 5.9 "
    "months).",
    "14",
)
SURVIVAL = Quote(
    "As of the March 2019 data cutoff, 19 patients were alive without permanent ventilation "
    "(i.e., event-free survival)",
    "14",
)
SITTING = Quote(
    "10 of the 21 patients (47.6%) achieved the ability to sit without support for ≥ 30 seconds "
    "between 9.2 and 16.9 months of age",
    "14",
)
NATURAL_HISTORY = Quote(
    "Based on the natural history of the disease, patients who met the study entry criteria "
    "would not be expected to attain the ability to sit without support, and only approximately "
    "25% of these patients would be expected to survive (i.e., being alive without permanent "
    "ventilation) beyond 14 months of age.",
    "14",
)
QUOTES = (INDICATION, TREATED_AGE, SURVIVAL, SITTING, NATURAL_HISTORY)
"""Every quotation the letter makes: each is the label's text word for word (tested)."""

PLAN_STATUS = {
    Status.NOT_ELIGIBLE: "is not eligible",
    Status.DEFERRED: "is deferred",
    Status.INCOMPLETE: "is incomplete",
    Status.NEEDS_REVIEW: "waits for the clinician's review",
    Status.ELIGIBLE: "is eligible",
}
"""A plan's status in the notice's words."""
PRESENTATION = (
    "prescriber: the clinical presentation: symptom onset, motor function (e.g. CHOP-INTEND), "
    "respiratory and feeding status"
)
THERAPY_PLAN = (
    "prescriber: the plan for this therapy around the infusion (payer criteria vary: some "
    "require stopping it, some allow a bridge until the infusion)"
)


@dataclass(frozen=True)
class Paragraph:
    """One paragraph of the letter under its heading."""

    key: str
    heading: str
    text: str


@dataclass(frozen=True)
class Letter:
    """A draft letter of medical necessity: every bracketed placeholder listed, never guessed."""

    title: str
    notice: str
    """For the prescriber, not the payer: a draft, from the chart as of a date; what to check."""
    addressee: str
    subject: str
    salutation: str
    paragraphs: tuple[Paragraph, ...]
    closing: tuple[str, ...]
    """The signature block, one line each."""
    placeholders: tuple[str, ...]
    """Every bracketed item in the letter ('[SMN2 copy number: not recorded]'), in order."""
    draft: bool = True

    @property
    def text(self) -> str:
        """The whole letter as plain text, paragraphs separated by blank lines."""
        body = [f"{p.heading}\n{p.text}" for p in self.paragraphs]
        parts = [
            self.title,
            self.notice,
            self.addressee,
            self.subject,
            self.salutation,
            *body,
            "\n".join(self.closing),
        ]
        return "\n\n".join(parts)

    def paragraph(self, key: str) -> Paragraph:
        """The paragraph with this key; KeyError when there is none."""
        for paragraph in self.paragraphs:
            if paragraph.key == key:
                return paragraph
        raise KeyError(key)


def day(value: dt.date) -> str:
    """A date as the app writes it: '24 Nov 2026'."""
    return f"{value.day} {MONTHS[value.month - 1]} {value.year}"


def _dated(text: str) -> str:
    """Text with its ISO dates written as the app writes dates."""
    return ISO_DATE.sub(lambda m: day(dt.date.fromisoformat(m.group(0))), text)


def _quoted(quote: Quote) -> str:
    """'"…"' with the label's words as printed."""
    return f'"{quote.text}"'


def _days_list(days: list[int]) -> str:
    """'7, 14, 21 and 28'."""
    shown = [str(d) for d in days]
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} and {shown[-1]}"


class _Draft:
    """Collects the letter's bracketed placeholders as its sentences are written."""

    def __init__(self) -> None:
        """No placeholder yet."""
        self.holes: list[str] = []

    def hole(self, text: str) -> str:
        """'[text]', remembered once."""
        shown = f"[{text}]"
        if shown not in self.holes:
            self.holes.append(shown)
        return shown

    def not_met(self, item: Criterion) -> str:
        """'[not met: <criterion>: <value>; review before sending]'."""
        return self.hole(f"not met: {item.title}: {_dated(item.value)}; review before sending")

    def name(self, value: str, what: str) -> str:
        """A name as given, or a placeholder for it."""
        return value.strip() or self.hole(what)


def _patient(d: _Draft, packet: Packet, plan: Plan, who: str) -> Paragraph:
    """Who the patient is and how old on the planned date."""
    age = packet.criterion("age")
    if plan.birth_date is None:
        born = d.hole("date of birth: not recorded")
        old = d.hole("age on the planned infusion date: not recorded")
    else:
        born = day(plan.birth_date)
        old = f"{age_text(plan.birth_date, plan.infusion_date)} old"
    text = (
        f"I am writing to request coverage of ZOLGENSMA (onasemnogene abeparvovec-xioi) for my "
        f"patient {who}, date of birth {born}. On the planned infusion date, "
        f"{day(plan.infusion_date)}, {who} will be {old}."
    )
    if age.status is CriterionStatus.NOT_MET:
        text += f" {d.not_met(age)}."
    return Paragraph("patient", "Patient", text)


def _diagnosis(d: _Draft, packet: Packet) -> Paragraph:
    """The diagnosis with its ICD-10-CM code and the genetic evidence."""
    dx, smn1, smn2 = (packet.criterion(k) for k in ("diagnosis", "smn1", "smn2"))
    advanced = packet.criterion("not-advanced")
    if dx.status is CriterionStatus.MET:
        when = f", recorded {day(dx.date)}" if dx.date else ""
        sentences = [f"Diagnosis: spinal muscular atrophy, ICD-10-CM {dx.value}{when}."]
    else:
        recorded = "" if dx.value.startswith("no ") else f"; {dx.value}"
        hole = d.hole(f"ICD-10-CM diagnosis G12.0 or G12.1: not recorded{recorded}")
        sentences = [f"Diagnosis: {hole}."]
    if smn1.status is CriterionStatus.MET:
        when = f", result of {day(smn1.date)}" if smn1.date else ""
        sentences.append(
            f"Genetic testing confirmed bi-allelic SMN1 mutations: {smn1.value}{when}."
        )
    elif smn1.date is None:
        sentences.append(f"Genetic testing: {d.hole('SMN1 genetic test: not recorded')}.")
    else:
        hole = d.hole(
            f"SMN1 genetic test: {smn1.value} ({day(smn1.date)}) does not show a bi-allelic "
            "deletion: attach the genetics report documenting bi-allelic mutations"
        )
        sentences.append(f"Genetic testing: {hole}.")
    if smn2.status is CriterionStatus.MET:
        when = f", result of {day(smn2.date)}" if smn2.date else ""
        sentences.append(f"SMN2 copy number: {smn2.value}{when}.")
    else:
        sentences.append(f"{d.hole('SMN2 copy number: not recorded')}.")
    if advanced.status is CriterionStatus.MET:
        sentences.append("No tracheostomy or permanent ventilation is recorded in the chart.")
    else:
        sentences.append(f"Recorded in the chart: {_dated(advanced.value)}. {d.not_met(advanced)}.")
    sentences.append(f"{d.hole(PRESENTATION)}.")
    return Paragraph("diagnosis", "Diagnosis and genetic testing", " ".join(sentences))


def _kit(d: _Draft, packet: Packet, plan: Plan, who: str) -> str:
    """The weight, the kit and its NDC, or what is missing for them."""
    weight = packet.criterion("weight-kit")
    dose = plan.dose
    if dose is not None and weight.status is CriterionStatus.MET:
        kit = dose.kit
        when = f" on {day(weight.date)}" if weight.date else ""
        return (
            f"{who} weighed {dose.weight_kg} kg{when}; the {kit.band_low_kg}-{kit.band_high_kg} "
            f"kg weight band takes kit NDC {kit.ndc} (11-digit billing form "
            f"{packet.billing.ndc_11}), {kit.vials} (label Table 1 and Table 3)."
        )
    if weight.status is CriterionStatus.NOT_MET:
        return d.not_met(weight) + "."
    return d.hole(f"weight and kit: {_dated(weight.value)}; a current weight is needed") + "."


def _before_infusion(d: _Draft, packet: Packet) -> list[str]:
    """The titer, the baseline labs, prior ZOLGENSMA and other SMN-targeted therapy."""
    titer, labs = packet.criterion("titer"), packet.criterion("baseline-labs")
    prior, therapy = packet.criterion("no-prior-zolgensma"), packet.criterion("smn-therapy")
    out = []
    if titer.status is CriterionStatus.MET and titer.date:
        out.append(
            f"The baseline anti-AAV9 antibody titer is {titer.value} ({day(titer.date)}), at or "
            "below 1:50 (label sections 2.3 and 6.2)."
        )
    elif titer.status is CriterionStatus.NOT_MET:
        out.append(d.not_met(titer) + ".")
    elif titer.date is None:
        out.append(d.hole("anti-AAV9 antibody titer: not recorded") + ".")
    elif FindingCode.ANTI_AAV9_TITER_AMBIGUOUS.value in titer.findings:
        out.append(
            d.hole(
                f"anti-AAV9 antibody titer: '{titer.value}' ({day(titer.date)}) cannot be placed "
                "at or below 1:50: an end-point titer is needed"
            )
            + "."
        )
    else:
        out.append(
            d.hole(
                f"anti-AAV9 antibody titer: not recorded within the look-back (the newest, "
                f"{titer.value}, is from {day(titer.date)})"
            )
            + "."
        )
    if labs.status is CriterionStatus.MET:
        drawn = f" (drawn from {day(labs.date)})" if labs.date else ""
        out.append(
            f"The baseline laboratory tests are current{drawn} (label sections 2.1 and 2.3)."
        )
    else:
        missing = ", ".join(labs.missing) or _dated(labs.value)
        out.append(d.hole(f"baseline laboratory tests: not recorded: {missing}") + ".")
    if prior.status is CriterionStatus.MET:
        out.append("No prior ZOLGENSMA is recorded.")
    elif prior.status is CriterionStatus.NOT_MET:
        out.append(d.not_met(prior) + ".")
    else:
        out.append(
            d.hole("prior ZOLGENSMA: a medication on record could not be read; confirm none") + "."
        )
    if therapy.value == "none recorded":
        out.append("No other SMN-targeted therapy (nusinersen, risdiplam) is recorded.")
    else:
        out.append(f"SMN-targeted therapy on record: {_dated(therapy.value)}.")
        out.append(d.hole(THERAPY_PLAN) + ".")
    return out


def _treatment(d: _Draft, packet: Packet, plan: Plan, who: str) -> Paragraph:
    """ZOLGENSMA, the dose, the kit and its billing facts, the pre-infusion checks."""
    bill = packet.billing
    units = f"{bill.hcpcs_units} unit{'' if bill.hcpcs_units == 1 else 's'}"
    ndc = bill.ndc_11 or d.hole("NDC: no kit until a current weight is recorded")
    codes = "; ".join(f"{code} {display}".strip() for code, display in bill.icd10) or d.hole(
        "ICD-10-CM code: not recorded"
    )
    sentences = [
        "I am prescribing ZOLGENSMA, an adeno-associated virus vector-based gene therapy, as a "
        "single-dose intravenous infusion over 60 minutes at 1.1 × 10^14 vector genomes (vg) per "
        "kg of body weight (label section 2.1).",
        _kit(d, packet, plan, who),
        f"The infusion is planned for {day(plan.infusion_date)}.",
        f"Billing: HCPCS {bill.hcpcs}, {units}; NDC {ndc}; ICD-10-CM {codes}.",
        *_before_infusion(d, packet),
    ]
    return Paragraph("treatment", "Treatment requested", " ".join(sentences))


def _why_now(d: _Draft, plan: Plan, who: str) -> Paragraph:
    """The label's indication and what its clinical studies section reports, quoted."""
    sentences = [f"The prescribing information states: {_quoted(INDICATION)} (section 1)."]
    last = plan.last_labeled_infusion_date
    if last is None:
        sentences.append(d.hole("date of birth: not recorded: the age limit cannot be shown"))
    else:
        sentences.append(
            f"{who} turns 2 on {day(last + dt.timedelta(days=1))}: the last infusion date within "
            f"the indication is {day(last)}; the infusion is planned for "
            f"{day(plan.infusion_date)}."
        )
    sentences.append(
        f"Of Study 1, in 21 infants with infantile-onset SMA, the label reports (section 14): "
        f"{_quoted(TREATED_AGE)} {_quoted(SURVIVAL)}; {_quoted(SITTING)}. It compares these "
        f"with the natural history: {_quoted(NATURAL_HISTORY)}"
    )
    return Paragraph("why-now", "Why now", " ".join(sentences))


def _draw_days(plan: Plan, test: LabTest) -> list[ScheduleItem]:
    """The plan's draws of one test after infusion, in date order (one per day)."""
    seen: dict[int, ScheduleItem] = {}
    for item in plan.schedule:
        if item.day > 0 and test in item.tests:
            seen.setdefault(item.day, item)
    return [seen[k] for k in sorted(seen)]


def _monitoring(d: _Draft, plan: Plan) -> Paragraph:
    """The corticosteroid course and the monitoring after infusion (2.1, 2.3, 5.1, 5.3, 5.5)."""
    course = plan.steroids
    sentences = []
    if course is None:
        sentences.append(
            d.hole(
                "corticosteroid plan: the prednisolone dose needs a current weight in the "
                "labeled range"
            )
            + "."
        )
    else:
        steps = ", then ".join(
            f"{s.mg_per_kg_per_day} mg/kg/day for {s.days} days" for s in course.taper
        )
        conc = course.concentration_mg_per_ml.normalize()
        sentences.append(
            f"Prednisolone (or an equivalent corticosteroid) 1 mg/kg/day, {course.dose_mg_per_day}"
            f" mg once daily ({course.volume_ml_per_day} mL of the {conc:f} mg/mL oral solution at"
            f" {course.weight_kg} kg), starts on {day(course.start_date)}, the day before the "
            f"infusion, and continues for 30 days through {day(course.full_dose_through)} (label "
            f"section 2.1). The liver function assessment on {day(course.liver_check_date)} "
            f"decides what follows: when it is unremarkable, the dose is tapered gradually "
            f"({steps}; institution default); otherwise 1 mg/kg/day continues until the "
            "findings are unremarkable, then tapers. Corticosteroids are not stopped abruptly."
        )
    liver = _draw_days(plan, LabTest.ALT)
    platelets = _draw_days(plan, LabTest.PLATELETS)
    troponin = _draw_days(plan, LabTest.TROPONIN_I)
    parts = []
    if liver:
        panel = ", ".join(t.value for t in LIVER_PANEL)
        parts.append(
            f"liver function ({panel}) on days {_days_list([i.day for i in liver])} after the "
            f"infusion, through {day(liver[-1].date)}: at least 3 months (label sections 2.3 "
            "and 5.1)"
        )
    if platelets:
        parts.append(
            f"platelet counts on days {_days_list([i.day for i in platelets])}, through "
            f"{day(platelets[-1].date)} (label sections 2.3 and 5.3)"
        )
    if troponin:
        parts.append(
            f"troponin I on days {_days_list([i.day for i in troponin])}, through "
            f"{day(troponin[-1].date)} (institution default; label section 5.5)"
        )
    if parts:
        sentences.append(f"Monitoring after the infusion: {'; '.join(parts)}.")
    sentences.append("Caregivers are counseled before the infusion (label section 17).")
    return Paragraph("monitoring", "Corticosteroid and monitoring plan", " ".join(sentences))


def _notice(d: _Draft, packet: Packet) -> str:
    """What the prescriber must know before signing: a draft, as of when, what holds it back."""
    text = (
        f"DRAFT for the prescriber to review, edit and sign: drafted from the chart as of "
        f"{day(packet.evaluated_on)} ({packet.policy_version}; {packet.label_version}). "
        "Bracketed items are missing from the chart, not met, or need the prescriber's own "
        "words; nothing in them is guessed."
    )
    status = packet.plan_status
    if status is not None and status is not Status.ELIGIBLE:
        reasons = " ".join(f.message for f in packet.blocking)
        text += " " + d.hole(
            f"the plan {PLAN_STATUS[status]} for {day(packet.infusion_date)}: {_dated(reasons)}"
        )
    return text


def letter(
    packet: Packet,
    plan: Plan,
    *,
    patient_name: str,
    prescriber_name: str,
    organization: str,
    signed_on: dt.date,
    prescriber_npi: str = "",
) -> Letter:
    """The draft letter of medical necessity (pure: the names and the date are given); the
    prescriber's NPI is shown under the name when given."""
    if (packet.patient_id, packet.infusion_date) != (plan.patient_id, plan.infusion_date):
        raise InputError(
            f"the packet is for Patient/{packet.patient_id} on {packet.infusion_date}, the plan "
            f"for Patient/{plan.patient_id} on {plan.infusion_date}"
        )
    d = _Draft()
    notice = _notice(d, packet)
    addressee = f"To: {d.hole('health plan: name, address, prior authorization department')}"
    who = d.name(patient_name, "patient name")
    born = day(plan.birth_date) if plan.birth_date else d.hole("date of birth: not recorded")
    ndc = packet.billing.ndc_11 or d.hole("NDC: no kit until a current weight is recorded")
    paragraphs = (
        _patient(d, packet, plan, who),
        _diagnosis(d, packet),
        _treatment(d, packet, plan, who),
        _why_now(d, plan, who),
        _monitoring(d, plan),
    )
    closing = (
        "Sincerely,",
        "",
        "Signature: ______________________________",
        d.name(prescriber_name, "prescriber name"),
        *([f"NPI: {prescriber_npi.strip()}"] if prescriber_npi.strip() else []),
        d.name(organization, "organization"),
        f"Date: {day(signed_on)}",
    )
    return Letter(
        title="DRAFT: Letter of medical necessity: ZOLGENSMA (onasemnogene abeparvovec-xioi)",
        notice=notice,
        addressee=addressee,
        subject=(
            f"Re: {who}, date of birth {born}: prior authorization for ZOLGENSMA, HCPCS "
            f"{packet.billing.hcpcs}, NDC {ndc}"
        ),
        salutation="To whom it may concern:",
        paragraphs=paragraphs,
        closing=closing,
        placeholders=tuple(d.holes),
    )
