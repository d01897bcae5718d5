"""The printed documents: the pharmacy verification sheet, the infusion-day checklist, the
caregiver handout and the prior-authorization packet (a page, its PDF, and the PDF filed to the
chart), each a page of its own with a print stylesheet."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum

from flask import Blueprint, Response, abort, current_app, render_template, request

from smart_app import service
from smart_app.errors import FhirError, WriteBackError, WriteBlocked, WriteIncomplete
from smart_app.fhir import codes, summary
from smart_app.fhir.document_write import Filing, pdf_key
from smart_app.fhir.gateway import FhirGateway, PatientRecord
from smart_app.fhir.plan_state import KitWritten, plan_state, written_kit
from smart_app.fhir.read import facts_from_bundle
from smart_app.report import report_data, written_data
from smart_app.rules import label, prior_auth_letter
from smart_app.rules.arith import add_months
from smart_app.rules.model import (
    ActivityKind,
    Kit,
    LabTest,
    Measurement,
    PatientFacts,
    PlanState,
    Status,
    SteroidRole,
)
from smart_app.rules.plan import dosing_weight, may_write
from smart_app.rules.policy import Policy
from smart_app.rules.prior_auth import CriterionStatus
from smart_app.service import Evaluation, evaluate_record
from smart_app.web import context, grants, packet_pdf
from smart_app.web.connection import write_strategy
from smart_app.web.plan import _infusion_date
from smart_app.web.request_context import current
from smart_app.web.state import web_state

bp = Blueprint("documents", __name__, url_prefix="/p/<context_id>/print")


class Document(StrEnum):
    """The documents a team prints."""

    PHARMACY = "pharmacy"
    CHECKLIST = "checklist"
    HANDOUT = "handout"


TITLES = {
    Document.PHARMACY: "Pharmacy verification sheet",
    Document.CHECKLIST: "Infusion-day checklist",
    Document.HANDOUT: "Caring for your child after ZOLGENSMA",
}
"""Each document's title, as printed."""


class Source(StrEnum):
    """Where a document's plan comes from."""

    PLAN = "plan"
    """Built from the chart now, not yet written (or blocked)."""
    WRITTEN = "written"
    """The app's active plan, as written to the chart."""


MONITORING_KINDS = frozenset({ActivityKind.LAB_DRAW, ActivityKind.LIVER_ASSESSMENT})
"""The dated checks a caregiver brings the child back for."""
AREAS = (
    (
        "liver",
        frozenset(
            {
                LabTest.AST,
                LabTest.ALT,
                LabTest.BILIRUBIN_TOTAL,
                LabTest.ALBUMIN,
                LabTest.PT,
                LabTest.PTT,
                LabTest.INR,
            }
        ),
    ),
    ("platelets", frozenset({LabTest.PLATELETS})),
    ("kidneys and red blood cells", frozenset({LabTest.CREATININE, LabTest.HEMOGLOBIN})),
    ("heart (troponin I)", frozenset({LabTest.TROPONIN_I})),
)
"""What a blood test looks at, in the words of a caregiver handout."""


@dataclass(frozen=True)
class WeightShown:
    """The weight the plan is dosed on, with its date and as entered."""

    kg: Decimal
    on: dt.date | None
    entered: str
    reference: str


@dataclass(frozen=True)
class KitShown:
    """The kit and the infusion: label Tables 1 and 3, section 2.1."""

    kit: Kit
    dose_volume_ml: Decimal
    pump_rate_ml_per_h: Decimal
    vector_genomes: Decimal
    infusion_minutes: int


@dataclass(frozen=True)
class SteroidRow:
    """One dated period of daily prednisolone."""

    start: dt.date
    end: dt.date
    what: str
    mg_per_kg_per_day: Decimal
    mg_per_day: Decimal
    ml_per_day: Decimal
    planned: bool = False
    """A taper drawn in advance: it starts only if the day-30 liver check is normal."""


@dataclass(frozen=True)
class Check:
    """One dated monitoring item: a blood draw or the day-30 liver check."""

    date: dt.date
    day: int
    kind: ActivityKind
    tests: frozenset[LabTest]
    done: bool = False


@dataclass(frozen=True)
class Visit:
    """What happens on one monitoring date, in a caregiver's words."""

    date: dt.date
    day: int
    areas: tuple[str, ...]
    liver_check: bool
    done: bool


@dataclass(frozen=True)
class Sheet:
    """What every printed document shows, from a plan built now or from the plan as written."""

    source: Source
    order_ready: bool
    status: str
    reasons: tuple[str, ...]
    infusion_date: dt.date
    infusion_given: bool
    weight: WeightShown | None
    kit: KitShown | None
    concentration_mg_per_ml: Decimal
    steroids: tuple[SteroidRow, ...]
    liver_check: dt.date | None
    checks: tuple[Check, ...]
    prescriber: str = ""
    """The written kit order's requester ('Practitioner/123'); '' for a plan not yet written."""
    decided_on: dt.date | None = None
    """When the day-30 liver assessment was recorded (a written plan), else None."""

    @property
    def full_dose(self) -> SteroidRow | None:
        """The first full-dose period (1 mg/kg/day from the day before infusion)."""
        return self.steroids[0] if self.steroids else None

    @property
    def steroid_start(self) -> dt.date:
        """The day the prednisolone starts: the day before infusion (2.1)."""
        return self.infusion_date - dt.timedelta(days=1)

    @property
    def visits(self) -> tuple[Visit, ...]:
        """The monitoring dates, one per day, with what the blood test looks at."""
        days = sorted({c.date for c in self.checks})
        shown = []
        for day in days:
            same = [c for c in self.checks if c.date == day]
            tests = frozenset().union(*(c.tests for c in same))
            shown.append(
                Visit(
                    date=day,
                    day=min(c.day for c in same),
                    areas=tuple(name for name, kinds in AREAS if tests & kinds),
                    liver_check=any(c.kind is ActivityKind.LIVER_ASSESSMENT for c in same),
                    done=all(c.done for c in same),
                )
            )
        return tuple(shown)

    @property
    def shedding_until(self) -> dt.date:
        """One month after infusion: the end of the nappy and hand-hygiene precautions (17)."""
        return add_months(self.infusion_date, months=1)


def _weight_shown(measurement: Measurement | None) -> WeightShown | None:
    """A weight with its date and the value as entered ('6030 g')."""
    if measurement is None:
        return None
    evidence = measurement.evidence
    entered = f"{evidence.value} {evidence.unit}".strip() if evidence.value else ""
    return WeightShown(measurement.value, measurement.effective, entered, evidence.reference)


def from_plan(evaluation: Evaluation, *, on: dt.date) -> Sheet:
    """The documents' view of a plan built now (not written yet, or blocked)."""
    plan = evaluation.plan
    status = plan.eligibility.status
    ready = may_write(plan)
    reasons = tuple(
        f.message
        for f in plan.eligibility.findings
        if f.severity.value == status.value and status is not Status.ELIGIBLE
    )
    policy = web_state().settings.policy
    weight = dosing_weight(evaluation.facts, on=on, infusion_date=plan.infusion_date, policy=policy)
    kit = None
    if plan.dose is not None:
        dose = plan.dose
        kit = KitShown(
            kit=dose.kit,
            dose_volume_ml=dose.kit.dose_volume_ml,
            pump_rate_ml_per_h=dose.pump_rate_ml_per_h,
            vector_genomes=Decimal(dose.vector_genomes),
            infusion_minutes=dose.infusion_minutes,
        )
    steroids: list[SteroidRow] = []
    course = plan.steroids
    if course is not None:
        steroids.append(
            SteroidRow(
                course.start_date,
                course.full_dose_through,
                "full dose",
                label.STEROID_MG_PER_KG_PER_DAY,
                course.dose_mg_per_day,
                course.volume_ml_per_day,
            )
        )
        for number, step in enumerate(course.taper, start=1):
            steroids.append(
                SteroidRow(
                    step.start,
                    step.end,
                    f"lower dose, step {number} of {len(course.taper)}",
                    step.mg_per_kg_per_day,
                    step.dose_mg_per_day,
                    step.volume_ml_per_day,
                    planned=True,
                )
            )
    checks = tuple(
        Check(i.date, i.day, i.kind, frozenset(i.tests))
        for i in plan.schedule
        if i.kind in MONITORING_KINDS and i.day > 0
    )
    return Sheet(
        source=Source.PLAN,
        order_ready=ready,
        status=status.value.replace("-", " "),
        reasons=reasons,
        infusion_date=plan.infusion_date,
        infusion_given=False,
        weight=_weight_shown(weight) if ready else None,
        kit=kit if ready else None,
        concentration_mg_per_ml=(
            course.concentration_mg_per_ml if course else policy.concentration_mg_per_ml
        ),
        steroids=tuple(steroids) if ready else (),
        liver_check=course.liver_check_date if course and ready else None,
        checks=checks if ready else (),
    )


def _written_kit(written: KitWritten | None) -> KitShown | None:
    """The kit order as written (fhir.plan_state.written_kit), with its Table 1 and 3 row."""
    if written is None or written.kit is None:
        return None
    volume = written.dose_volume_ml or written.kit.dose_volume_ml
    pump = written.pump_rate_ml_per_h
    return KitShown(
        kit=written.kit,
        dose_volume_ml=volume,
        pump_rate_ml_per_h=pump if pump is not None else volume * 60 / label.INFUSION_MINUTES,
        vector_genomes=volume * label.CONCENTRATION_VG_PER_ML,
        infusion_minutes=label.INFUSION_MINUTES,
    )


def _written_weight(
    facts: PatientFacts, weight_kg: Decimal | None, before: dt.date
) -> Measurement | None:
    """The chart's weight the written order was dosed on (same value, on or before infusion)."""
    if weight_kg is None:
        return None
    matching = [m for m in facts.weights_kg if m.value == weight_kg and m.effective <= before]
    return max(matching, key=lambda m: m.effective, default=None)


def from_written(
    state: PlanState, record: PatientRecord, *, facts: PatientFacts, policy: Policy
) -> Sheet:
    """The documents' view of the app's active plan, as written to the chart."""
    kit_order = written_kit(record, state.plan_key)
    orders = sorted(
        (o for o in state.steroid_orders if o.status not in ("revoked", "cancelled")),
        key=lambda o: (o.start, o.step),
    )
    tapers = sum(o.role is SteroidRole.TAPER_STEP for o in orders)
    rows = []
    for order in orders:
        what = {
            SteroidRole.FULL_DOSE: "full dose",
            SteroidRole.CONTINUATION: "full dose continued",
            SteroidRole.TAPER_STEP: f"lower dose, step {order.step} of {tapers}",
        }[order.role]
        rows.append(
            SteroidRow(
                order.start,
                order.end,
                what,
                order.mg_per_kg_per_day,
                order.mg_per_day,
                order.volume_ml_per_day,
            )
        )
    first = next((o for o in orders if o.role is SteroidRole.FULL_DOSE), None)
    measured = _written_weight(facts, first.weight_kg if first else None, state.infusion_date)
    weight = _weight_shown(measured)
    if weight is None and first is not None and first.weight_kg is not None:
        weight = WeightShown(first.weight_kg, None, "", "")
    checks = []
    for task in sorted(state.tasks, key=lambda t: (t.window_start, t.day)):
        if task.kind not in MONITORING_KINDS or task.day <= 0:
            continue
        due = state.infusion_date + dt.timedelta(days=task.day)
        due = min(max(due, task.window_start), task.window_end)
        done = task.status == "completed"
        checks.append(Check(due, task.day, task.kind, frozenset(task.tests), done=done))
    liver = next(
        (
            state.infusion_date + dt.timedelta(days=t.day)
            for t in sorted(state.tasks, key=lambda t: t.day)
            if t.kind is ActivityKind.LIVER_ASSESSMENT and t.day > 0
        ),
        None,
    )
    return Sheet(
        source=Source.WRITTEN,
        order_ready=True,
        status="on plan",
        reasons=(),
        infusion_date=state.infusion_date,
        infusion_given=state.infusion_evidence is not None,
        weight=weight,
        kit=_written_kit(kit_order),
        concentration_mg_per_ml=policy.concentration_mg_per_ml,
        steroids=tuple(rows),
        liver_check=liver,
        checks=tuple(checks),
        prescriber=kit_order.requester if kit_order else "",
        decided_on=decision.decided_on if (decision := state.latest_decision) else None,
    )


def sheet_for(record: PatientRecord, *, infusion_text: str | None) -> Sheet:
    """The plan as written when the patient has one; else the plan built from the chart now."""
    state = web_state()
    policy = state.settings.policy
    today = state.today()
    written = plan_state(record)
    if written is not None:
        facts = facts_from_bundle(record.bundle(), notes=record.notes())
        return from_written(written, record, facts=facts, policy=policy)
    infusion = _infusion_date(infusion_text, today=today)
    evaluation = evaluate_record(record, on=today, infusion_date=infusion, policy=policy)
    return from_plan(evaluation, on=today)


def prescriber(launched: context.LaunchContext) -> str:
    """The launch's user as a chart reference ('Practitioner/123'), never a URL; '' if none."""
    user = launched.fhir_user or ""
    return codes.relative_reference(user) or user


@bp.get("/<document>")
def show(document: str) -> str:
    """One printed document for the launched patient: the chart is read once."""
    try:
        kind = Document(document)
    except ValueError:
        abort(404, description="No such document: the pharmacy sheet, checklist or handout.")
    now = current()
    context_id, launched, record = now.context_id, now.launched, now.record
    state = web_state()
    sheet = sheet_for(record, infusion_text=request.args.get("infusion_date"))
    return render_template(
        f"doc_{kind.value}.html",
        context_id=context_id,
        launched=launched,
        document=kind.value,
        title=TITLES[kind],
        banner=summary.banner(record.resources, launched.patient),
        sheet=sheet,
        prescriber=sheet.prescriber or prescriber(launched),
        printed_on=state.today(),
        boxed_warning=label.BOXED_WARNING,
        label_version=label.LABEL_VERSION,
        policy=state.settings.policy,
        truncated=record.truncated,
    )


# The prior-authorization packet ---------------------------------------------------------------

PRIOR_AUTH = "prior-auth"
"""The packet's name in its URLs and in the page's body class."""
STATUS_MARKS = {
    CriterionStatus.MET: "✓",
    CriterionStatus.NOT_MET: "✗",
    CriterionStatus.MISSING: "?",
    CriterionStatus.NOTED: "•",
}
"""A mark beside each criterion's status word (the word says it; the mark is for the eye)."""
NO_NAME = "(no name recorded)"
"""What fhir.summary.banner names a patient without a name (the letter leaves a blank)."""
SIGNER_TYPES = frozenset({"Practitioner", "PractitionerRole"})
"""The prescriber references whose resource is read to name the letter's signer."""


def _signer_reference(reference: str, launched: context.LaunchContext) -> str:
    """'Type/id' of a Practitioner or PractitionerRole on the launch's server (a relative
    reference, or an absolute one under its base); '' for anything else."""
    base = launched.iss.rstrip("/") + "/"
    relative = reference.removeprefix(base).split("/_history/", 1)[0]
    kind, _, rid = relative.partition("/")
    if kind not in SIGNER_TYPES or not codes.FHIR_ID.fullmatch(rid):
        return ""
    return relative


def signer_for(
    gateway: FhirGateway, launched: context.LaunchContext, reference: str
) -> summary.Signer:
    """Who signs the letter: the prescriber's Practitioner (or PractitionerRole), read with one
    GET; nobody when the reference names neither on the launch's server or the read fails
    (refused, not found, unreachable): the letter then keeps its placeholders."""
    relative = _signer_reference(reference, launched)
    if not relative:
        return summary.Signer()
    try:
        return summary.signer(gateway.read(relative))
    except FhirError as exc:
        current_app.logger.info(
            "prescriber not read (%s): the letter keeps its placeholder",
            exc.status or type(exc).__name__,
        )
        return summary.Signer()


@dataclass(frozen=True)
class PacketPage:
    """The packet for one patient and date: what the page and the PDF show, and the PDF."""

    document: packet_pdf.PacketDocument
    sheet: Sheet
    pdf: bytes

    @property
    def key(self) -> str:
        """The PDF's app key (a SHA-256 of its bytes): what the page showed is what is filed."""
        return pdf_key(self.pdf)


def packet_for(
    record: PatientRecord,
    launched: context.LaunchContext,
    *,
    infusion_text: str | None,
    gateway: FhirGateway,
) -> PacketPage:
    """The packet for the plan built from the chart now: for the written plan's date when it is
    still ahead, else for the date asked for (tomorrow by default). The letter's signer is named
    from the prescriber's Practitioner (one more read through `gateway`)."""
    state = web_state()
    policy = state.settings.policy
    today = state.today()
    written = plan_state(record)
    on_plan = written is not None and written.infusion_date >= today
    if on_plan and written is not None:
        infusion = written.infusion_date
    else:
        infusion = _infusion_date(infusion_text, today=today)
    evaluation = evaluate_record(record, on=today, infusion_date=infusion, policy=policy)
    sheet = from_plan(evaluation, on=today)
    if on_plan:
        sheet = replace(sheet, source=Source.WRITTEN)
    kit_order = written_kit(record, written.plan_key) if written is not None else None
    requester = kit_order.requester if kit_order else ""
    signer = requester or prescriber(launched)
    who = signer_for(gateway, launched, requester or launched.fhir_user)
    packet = service.packet(evaluation, policy=policy)
    banner = summary.banner(record.resources, launched.patient)
    drafted = prior_auth_letter.letter(
        packet,
        evaluation.plan,
        patient_name="" if banner.name == NO_NAME else banner.name,
        prescriber_name=who.name,
        organization=who.organization,
        signed_on=today,
        prescriber_npi=who.npi,
    )
    document = packet_pdf.PacketDocument(
        packet=packet,
        banner=banner,
        letter=drafted,
        prescriber=signer,
        status=sheet.status,
        reasons=sheet.reasons,
        ready=sheet.order_ready,
    )
    return PacketPage(document=document, sheet=sheet, pdf=packet_pdf.render(document))


def _packet_page(
    context_id: str,
    launched: context.LaunchContext,
    record: PatientRecord,
    page: PacketPage,
    **extra: object,
) -> str:
    """The packet's printed page, with the filing form (or why filing is not offered)."""
    state = web_state()
    return render_template(
        "doc_prior_auth.html",
        context_id=context_id,
        launched=launched,
        document=PRIOR_AUTH,
        title=packet_pdf.TITLE,
        banner=page.document.banner,
        sheet=page.sheet,
        packet=page.document.packet,
        letter=page.document.letter,
        prescriber=page.document.prescriber,
        counts=packet_pdf.status_counts(page.document.packet.criteria),
        status_marks=STATUS_MARKS,
        section_text=packet_pdf.section_text,
        fingerprint=page.key,
        refused=grants.refusal(launched.grants(), grants.Write.DOCUMENT),
        printed_on=state.today(),
        label_version=page.document.packet.label_version,
        policy=state.settings.policy,
        truncated=record.truncated,
        **extra,
    )


@bp.get(f"/{PRIOR_AUTH}")
def prior_auth() -> str:
    """The prior-authorization packet as a printed page, with its PDF and the filing form."""
    now = current()
    context_id, launched, gateway, record = now.context_id, now.launched, now.gateway, now.record
    page = packet_for(
        record, launched, infusion_text=request.args.get("infusion_date"), gateway=gateway
    )
    return _packet_page(context_id, launched, record, page)


@bp.get(f"/{PRIOR_AUTH}.pdf")
def prior_auth_pdf() -> Response:
    """The packet as a PDF download; its file name names neither the patient nor an id."""
    now = current()
    launched, gateway, record = now.launched, now.gateway, now.record
    page = packet_for(
        record, launched, infusion_text=request.args.get("infusion_date"), gateway=gateway
    )
    return Response(
        page.pdf,
        mimetype="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="{packet_pdf.file_name(page.key)}"',
            "Cache-Control": "no-store",
        },
    )


@bp.post(f"/{PRIOR_AUTH}/file")
def prior_auth_file() -> tuple[str, int] | str:
    """File the packet's PDF to the chart: rebuilt from the chart, checked to be the one shown,
    written once (a DocumentReference keyed by the PDF's hash) with its Provenance."""
    state = web_state()
    now = current()
    context_id, launched, gateway, record = now.context_id, now.launched, now.gateway, now.record
    page = packet_for(
        record, launched, infusion_text=request.form.get("infusion_date"), gateway=gateway
    )

    def again(message: str, status: int, **extra: object) -> tuple[str, int]:
        """The packet page again, saying why nothing (or not everything) was filed."""
        return _packet_page(context_id, launched, record, page, error=message, **extra), status

    refused = grants.refusal(launched.grants(), grants.Write.DOCUMENT)
    if refused is not None:
        return again(f"Nothing was filed. {refused.message}", 403)
    if request.form.get("fingerprint") != page.key:
        return again(
            "The chart changed since this packet was shown (new results, a new date or another "
            "user). Nothing was filed: review the packet below and file it again.",
            409,
        )
    packet = page.document.packet
    filing = Filing(
        pdf=page.pdf,
        title=packet_pdf.file_name(page.key),
        description=packet_pdf.description(packet),
        created_on=packet.evaluated_on,
        recorded=state.now(),
        fhir_user=launched.fhir_user or None,
        label_version=packet.label_version,
    )
    try:
        written = service.file_document(gateway, record, filing, strategy=write_strategy(launched))
    except WriteBlocked as exc:
        return again(str(exc), 422)
    except WriteBackError as exc:
        return again(f"The FHIR server refused the packet; nothing was filed. {exc}", 502)
    except WriteIncomplete as exc:
        current_app.logger.warning("packet filing %s", exc.report.state.value)
        return again(str(exc), 502, report=report_data(exc.report, str(exc)))
    current_app.logger.info("packet filed: %d resources", len(written))
    return _packet_page(
        context_id, launched, record, page, filed=[written_data(w) for w in written]
    )
