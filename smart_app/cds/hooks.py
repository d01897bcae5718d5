"""patient-view: one card for a child under 2 with SMA or an SMN1 result, none for anyone else."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from smart_app import service
from smart_app.cds.cards import (
    STATUS_INDICATOR,
    STATUS_WORDS,
    VIEW_REASONS,
    Card,
    Indicator,
    bullets,
    card,
    md,
    smart_link,
)
from smart_app.errors import PlanStateError
from smart_app.fhir.gateway import PatientRecord
from smart_app.fhir.plan_state import plan_state
from smart_app.fhir.read import facts_from_bundle
from smart_app.rules.eligibility import under_age_limit_on
from smart_app.rules.model import AlertLevel, Finding, PatientFacts, Phase, Severity, Status
from smart_app.rules.policy import Policy
from smart_app.web.words import clinical_date, clinical_text, weight

MAX_FINDINGS_SHOWN = 5
PHASE_WORDS: dict[Phase, str] = {
    Phase.PRE_INFUSION: "before the infusion",
    Phase.FULL_DOSE: "full-dose prednisolone",
    Phase.LIVER_ASSESSMENT_DUE: "day-30 liver assessment due",
    Phase.TAPER: "prednisolone taper",
    Phase.POST_TAPER: "monitoring after the taper",
    Phase.COMPLETE: "monitoring complete",
}


@dataclass(frozen=True)
class CallContext:
    """What every card of one call shares: ids for its uuids, today, the policy, the app URL."""

    service_id: str
    hook_instance: str
    today: dt.date
    policy: Policy
    public_url: str

    def uuid_parts(self, *more: str) -> tuple[str, ...]:
        """The parts a card's uuid is derived from."""
        return (self.service_id, self.hook_instance, *more)

    def earliest_date(self) -> dt.date:
        """The earliest practical infusion date: today + the policy's lead days."""
        return self.today + dt.timedelta(days=self.policy.cds_infusion_lead_days)

    def earliest_words(self) -> str:
        """The earliest practical date with the institution default it comes from."""
        return (
            f"{clinical_date(self.earliest_date())}, the earliest practical date "
            f"({self.policy.cite('cds_infusion_lead_days')})"
        )


def under_two_on(facts: PatientFacts, day: dt.date) -> bool:
    """Under 2 years on `day` (section 1); True when the birth date is unknown (the card then
    says the status is incomplete)."""
    return facts.birth_date is None or under_age_limit_on(facts.birth_date, day)


def is_candidate(facts: PatientFacts) -> bool:
    """A child with SMA on the chart or an SMN1 copy-number result."""
    return bool(facts.sma_conditions or facts.smn1_copies)


def patient_view(record: PatientRecord, ctx: CallContext) -> list[Card]:
    """[] or one card: where the patient stands on the app's active plan, else the status on
    the earliest practical infusion date."""
    facts = facts_from_bundle(record.bundle(), notes=record.notes())
    if not is_candidate(facts):
        return []
    try:
        state = plan_state(record)
    except PlanStateError as exc:
        if not under_two_on(facts, ctx.earliest_date()):
            return []
        return [_unreadable_plan(str(exc), ctx)]
    if state is not None:
        if not under_two_on(facts, state.infusion_date):
            return []
        following = service.follow_record(record, on=ctx.today, policy=ctx.policy)
        return [] if following is None else [_plan_card(following, ctx)]
    infusion = ctx.earliest_date()
    if not under_two_on(facts, infusion):
        return []
    evaluation = service.evaluate_record(
        record, on=ctx.today, infusion_date=infusion, policy=ctx.policy
    )
    return [_eligibility_card(evaluation, ctx)]


def worst_finding(findings: tuple[Finding, ...]) -> Finding | None:
    """The first of the most severe findings."""
    return min(findings, key=lambda f: f.severity.rank, default=None)


def _reason(evaluation: service.Evaluation) -> str:
    """The one-line reason: the first worst finding, or the kit for an eligible patient."""
    plan = evaluation.plan
    if plan.eligibility.status is Status.ELIGIBLE and plan.dose is not None:
        kit = plan.dose.kit
        return f"kit {kit.ndc} ({kit.band_low_kg}-{kit.band_high_kg} kg)"
    worst = worst_finding(plan.eligibility.findings)
    return clinical_text(worst.message) if worst else ""


def _facts_lines(evaluation: service.Evaluation) -> list[str]:
    """Key facts as markdown lines: age, weight and kit, titer, genetics."""
    plan, facts = evaluation.plan, evaluation.facts
    lines = []
    if plan.age_days_on_infusion is not None and plan.last_labeled_infusion_date is not None:
        lines.append(
            f"Age on that date: {plan.age_days_on_infusion} days (last date under 2: "
            f"{clinical_date(plan.last_labeled_infusion_date)})"
        )
    else:
        lines.append("Birth date: not recorded")
    if facts.weights_kg:
        newest = facts.weights_kg[0]
        kit = f" → kit {plan.dose.kit.ndc} ({md(plan.dose.kit.vials)})" if plan.dose else ""
        lines.append(f"Weight: {weight(newest.value)} on {clinical_date(newest.effective)}{kit}")
    else:
        lines.append("Weight: none recorded")
    if facts.titers:
        titer = facts.titers[0]
        lines.append(
            f"Anti-AAV9 titer: {md(titer.evidence.value)} on {clinical_date(titer.effective)}"
        )
    else:
        lines.append("Anti-AAV9 titer: none recorded")
    genes = [f"SMN1 copies {m.value}" for m in facts.smn1_copies[:1]]
    genes += [f"SMN2 copies {m.value}" for m in facts.smn2_copies[:1]]
    if genes:
        lines.append(", ".join(genes))
    return lines


def _eligibility_card(evaluation: service.Evaluation, ctx: CallContext) -> Card:
    """The status on the earliest practical infusion date, its reason and key facts."""
    plan = evaluation.plan
    status = plan.eligibility.status
    date = clinical_date(plan.infusion_date)
    reason = _reason(evaluation)
    worst = worst_finding(plan.eligibility.findings)
    weighty = [f for f in plan.eligibility.findings if f.severity is not Severity.INFO]
    shown = sorted(weighty, key=lambda f: f.severity.rank)[:MAX_FINDINGS_SHOWN]
    findings = [
        f"**{f.severity.value}**: {md(clinical_text(f.message))} (section {f.section})"
        for f in shown
    ]
    detail = "\n\n".join(
        part
        for part in (
            f"**Status: {STATUS_WORDS[status]}** for an infusion on {md(ctx.earliest_words())}.",
            bullets(_facts_lines(evaluation)),
            "**Findings**\n\n" + bullets(findings) if findings else "",
            "Open the ZOLGENSMA app to choose another date, review each finding and write the "
            "plan.",
        )
        if part
    )
    section = worst.section if worst and status is not Status.ELIGIBLE else "1"
    return card(
        uuid_parts=ctx.uuid_parts("eligibility"),
        summary=f"ZOLGENSMA {STATUS_WORDS[status]} for infusion on {date}: {reason}",
        indicator=STATUS_INDICATOR[status],
        detail=detail,
        section=section,
        reasons=VIEW_REASONS,
        links=[
            smart_link(
                ctx.public_url, infusion_date=plan.infusion_date, text="Plan in the ZOLGENSMA app"
            )
        ],
    )


def _plan_card(following: service.Following, ctx: CallContext) -> Card:
    """Day, phase and any alert of a patient on the app's plan."""
    up = following.followup
    alerts = sorted(up.alerts, key=lambda a: a.level is not AlertLevel.URGENT)
    if any(a.level is AlertLevel.URGENT for a in alerts):
        indicator = Indicator.CRITICAL
    elif alerts:
        indicator = Indicator.WARNING
    else:
        indicator = Indicator.INFO
    infusion = clinical_date(up.infusion_date)
    if up.day < 0:
        where = f"infusion on {infusion} (in {-up.day} days)"
    else:
        where = f"day {up.day} after infusion ({PHASE_WORDS[up.phase]})"
    summary = f"ZOLGENSMA plan: {where}"
    if alerts:
        summary += f". {alerts[0].level.value.capitalize()}: {alerts[0].title or alerts[0].message}"
    lines = [
        f"Infusion: {infusion}; today is day {up.day} (manufacturer's day {up.hcp_day})",
        f"Phase: {PHASE_WORDS[up.phase]}",
        md(clinical_text(up.course_text)),
    ]
    alert_lines = [
        f"**{a.level.value}** (section {a.section}): {md(clinical_text(a.message))}"
        + (f" {md(a.advice[0])}" if a.advice else "")
        for a in alerts
    ]
    findings = [md(clinical_text(f.message)) for f in up.findings[:MAX_FINDINGS_SHOWN]]
    detail = "\n\n".join(
        part
        for part in (
            bullets(lines),
            "**Alerts**\n\n" + bullets(alert_lines) if alert_lines else "",
            "**Open items**\n\n" + bullets(findings) if findings else "",
        )
        if part
    )
    return card(
        uuid_parts=ctx.uuid_parts("plan", following.state.plan_key),
        summary=summary,
        indicator=indicator,
        detail=detail,
        section=alerts[0].section if alerts else "2.1",
        reasons=VIEW_REASONS,
        links=[
            smart_link(
                ctx.public_url,
                infusion_date=following.state.infusion_date,
                text="Follow up in the ZOLGENSMA app",
            )
        ],
    )


def _unreadable_plan(message: str, ctx: CallContext) -> Card:
    """The app's plan is in the chart but was changed outside the app."""
    return card(
        uuid_parts=ctx.uuid_parts("plan-unreadable"),
        summary="ZOLGENSMA plan in the chart cannot be followed: review it in the app",
        indicator=Indicator.WARNING,
        detail=md(message),
        section="2.1",
        reasons=VIEW_REASONS,
        links=[
            smart_link(
                ctx.public_url, infusion_date=ctx.earliest_date(), text="Open the ZOLGENSMA app"
            )
        ],
    )
