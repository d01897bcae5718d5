"""order-select and order-sign: cards for each draft ZOLGENSMA order that does not fit the plan."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from smart_app import service
from smart_app.cds import suggestions
from smart_app.cds.cards import ORDER_REASONS, Card, Indicator, bullets, card, md, smart_link
from smart_app.cds.discovery import Hook
from smart_app.cds.hooks import MAX_FINDINGS_SHOWN, CallContext
from smart_app.cds.orders import (
    DraftOrder,
    bundle_medications,
    corticosteroid_on_chart,
    draft_orders,
    medications,
    names_corticosteroid,
    names_zolgensma,
    ndc11,
    order_date,
    ordered_ndc,
)
from smart_app.fhir.gateway import PatientRecord
from smart_app.rules import label
from smart_app.rules.model import Finding, FindingCode, Kit, Plan, Severity
from smart_app.rules.plan import BLOCKING
from smart_app.web.words import clinical_date, clinical_text, weight

TITER_CODES = frozenset(
    {
        FindingCode.ANTI_AAV9_TITER_MISSING,
        FindingCode.ANTI_AAV9_TITER_AMBIGUOUS,
        FindingCode.ANTI_AAV9_TITER_ELEVATED,
    }
)
OWN_CARD_CODES = TITER_CODES | {FindingCode.AGE_NOT_UNDER_2}
"""Findings with a card of their own; every other blocking finding shares one."""


def _kit_for(ndc: str | None) -> Kit | None:
    """The label's kit (Table 3) for an NDC in any format."""
    wanted = ndc11(ndc) if ndc else None
    return next((k for k in label.kits() if ndc11(k.ndc) == wanted), None) if wanted else None


def _selected(drafts: list[DraftOrder], context: Mapping[str, Any]) -> list[DraftOrder]:
    """The drafts order-select names in `selections` (every draft when it names none)."""
    chosen = set(context.get("selections") or [])
    if not chosen:
        return drafts
    return [d for d in drafts if d.reference in chosen]


def order_cards(
    record: PatientRecord, context: Mapping[str, Any], hook: Hook, ctx: CallContext
) -> list[Card]:
    """Cards for each draft ZOLGENSMA order (the selected ones for order-select)."""
    bundle = context["draftOrders"]
    known = {**medications(record.resources), **bundle_medications(bundle)}
    drafts = draft_orders(bundle, known)
    zolgensma = [d for d in drafts if names_zolgensma(d.concept)]
    if hook is Hook.ORDER_SELECT:
        zolgensma = _selected(zolgensma, context)
    steroid = any(names_corticosteroid(d.concept) for d in drafts) or corticosteroid_on_chart(
        record.resources, known
    )
    out: list[Card] = []
    for draft in zolgensma:
        out += _draft_cards(record, draft, hook=hook, steroid=steroid, ctx=ctx)
    return out


class _Checked:
    """One draft ZOLGENSMA order checked against the plan for its date."""

    def __init__(self, record: PatientRecord, draft: DraftOrder, ctx: CallContext) -> None:
        """The plan for the order's date (today when it has passed, the earliest practical
        date when it has none)."""
        self.draft = draft
        self.ctx = ctx
        asked = order_date(draft.resource)
        if asked is None:
            self.date, self.dated = ctx.earliest_date(), md(ctx.earliest_words())
        elif asked < ctx.today:
            self.date = ctx.today
            self.dated = f"today (the order's date {clinical_date(asked)} has passed)"
        else:
            self.date, self.dated = asked, f"the order's date {clinical_date(asked)}"
        evaluation = service.evaluate_record(
            record, on=ctx.today, infusion_date=self.date, policy=ctx.policy
        )
        self.plan: Plan = evaluation.plan
        self.ordered = ordered_ndc(draft.concept)

    def parts(self, check: str) -> tuple[str, ...]:
        """The uuid parts of this order's card for one check."""
        return self.ctx.uuid_parts(self.draft.key, check)

    def link(self) -> dict[str, str]:
        """Open the app on this order's date."""
        return smart_link(
            self.ctx.public_url, infusion_date=self.date, text="Review in the ZOLGENSMA app"
        )

    def findings(self, codes: frozenset[FindingCode] | None = None) -> list[Finding]:
        """Blocking findings, of the given codes (or of none of OWN_CARD_CODES)."""
        return [
            f
            for f in self.plan.eligibility.findings
            if f.severity in BLOCKING
            and (f.code in codes if codes is not None else f.code not in OWN_CARD_CODES)
        ]


def _draft_cards(
    record: PatientRecord, draft: DraftOrder, *, hook: Hook, steroid: bool, ctx: CallContext
) -> list[Card]:
    """Every card one draft ZOLGENSMA order calls for."""
    checked = _Checked(record, draft, ctx)
    cards = [
        c
        for c in (
            _kit_card(checked),
            _findings_card(checked, TITER_CODES, "titer", "anti-AAV9 titer"),
            _findings_card(checked, frozenset({FindingCode.AGE_NOT_UNDER_2}), "age", "age"),
            None if steroid else _steroid_card(checked),
            _findings_card(checked, None, "blocking", "blocking finding"),
            _review_card(checked),
        )
        if c is not None
    ]
    if not cards and hook is Hook.ORDER_SELECT:
        cards.append(_kit_confirmed(checked))
    return cards


def _kit_card(checked: _Checked) -> Card | None:
    """The ordered kit against the weight band's kit (label Tables 1 and 3)."""
    dose = checked.plan.dose
    if dose is None:
        return None
    kit = dose.kit
    ordered = checked.ordered
    if ordered is not None and ndc11(ordered) == ndc11(kit.ndc):
        return None
    ordered_kit = _kit_for(ordered)
    if ordered is None:
        what = "names no ZOLGENSMA kit NDC"
        indicator = Indicator.WARNING
    else:
        band = (
            f", the kit for {ordered_kit.band_low_kg}-{ordered_kit.band_high_kg} kg"
            if ordered_kit
            else ", not a kit of the label's Table 3"
        )
        what = f"is for kit {ordered}{band}"
        indicator = Indicator.CRITICAL
    new = suggestions.kit_order(
        checked.draft, dose, patient_id=checked.plan.patient_id, date=checked.date
    )
    offered = (
        [
            suggestions.replace_kit(
                checked.draft, new, uuid_parts=checked.parts("kit"), ordered=ordered or "no NDC"
            )
        ]
        if new
        else []
    )
    detail = "\n\n".join(
        [
            f"The draft order {md(what)}.",
            bullets(
                [
                    f"Dosing weight: {weight(dose.weight_kg)} → band "
                    f"{kit.band_low_kg}-{kit.band_high_kg} kg (Table 1)",
                    f"Kit for that band: **{kit.ndc}** ({md(kit.vials)}), dose volume "
                    f"{kit.dose_volume_ml} mL (Table 3)",
                    f"Checked for {checked.dated}",
                ]
            ),
        ]
    )
    return card(
        uuid_parts=checked.parts("kit"),
        summary=f"ZOLGENSMA kit: {weight(dose.weight_kg)} needs kit {kit.ndc}; the order "
        f"{'names no NDC' if ordered is None else f'is for {ordered}'}",
        indicator=indicator,
        detail=detail,
        section="2.1",
        reasons=ORDER_REASONS,
        links=[checked.link()],
        suggestions=offered,
    )


def _findings_card(
    checked: _Checked, codes: frozenset[FindingCode] | None, check: str, title: str
) -> Card | None:
    """One critical card for blocking findings (of `codes`, or the others)."""
    found = checked.findings(codes)
    if not found:
        return None
    first = found[0]
    more = f" (+{len(found) - 1} more)" if len(found) > 1 else ""
    return card(
        uuid_parts=checked.parts(check),
        summary=f"ZOLGENSMA {title}{more}: {clinical_text(first.message)}",
        indicator=Indicator.CRITICAL,
        detail=f"Checked for {checked.dated}:\n\n{_finding_lines(found)}",
        section=first.section,
        reasons=ORDER_REASONS,
        links=[checked.link()],
    )


def _finding_lines(found: list[Finding]) -> str:
    """The first few findings as a markdown list, and how many more the app shows."""
    lines = [
        f"{md(clinical_text(f.message))} (section {f.section})" for f in found[:MAX_FINDINGS_SHOWN]
    ]
    if len(found) > MAX_FINDINGS_SHOWN:
        lines.append(f"and {len(found) - MAX_FINDINGS_SHOWN} more: open the ZOLGENSMA app")
    return bullets(lines)


def _review_card(checked: _Checked) -> Card | None:
    """One warning card for the findings the clinician must review before the plan."""
    found = [f for f in checked.plan.eligibility.findings if f.severity is Severity.NEEDS_REVIEW]
    if not found:
        return None
    return card(
        uuid_parts=checked.parts("review"),
        summary=f"ZOLGENSMA: review before signing: {clinical_text(found[0].message)}",
        indicator=Indicator.WARNING,
        detail=f"Checked for {checked.dated}:\n\n{_finding_lines(found)}",
        section=found[0].section,
        reasons=ORDER_REASONS,
        links=[checked.link()],
    )


def _steroid_card(checked: _Checked) -> Card:
    """No prednisolone ordered: the label's prophylactic course, offered as a draft order."""
    course = checked.plan.steroids
    new = (
        suggestions.steroid_order(checked.draft, course, patient_id=checked.plan.patient_id)
        if course
        else None
    )
    if course is None:
        detail = (
            "No prednisolone order is in the draft orders or active on the chart. The dose "
            "cannot be calculated without a current weight."
        )
    else:
        detail = (
            "No prednisolone order is in the draft orders or active on the chart. Section 2.1: "
            f"prednisolone 1 mg/kg/day ({course.dose_mg_per_day} mg for "
            f"{weight(course.weight_kg)}) from {clinical_date(course.start_date)}, the day before "
            f"the infusion, for 30 days (to {clinical_date(course.full_dose_through)})."
        )
    return card(
        uuid_parts=checked.parts("prednisolone"),
        summary="ZOLGENSMA needs prednisolone 1 mg/kg/day from the day before the infusion: "
        "none is ordered",
        indicator=Indicator.WARNING,
        detail=detail,
        section="2.1",
        reasons=ORDER_REASONS,
        links=[checked.link()],
        suggestions=[suggestions.add_steroid(new, uuid_parts=checked.parts("prednisolone"))]
        if new
        else [],
    )


def _kit_confirmed(checked: _Checked) -> Card:
    """order-select only: the order fits (kit, titer, age, prednisolone, no blocking finding)."""
    dose = checked.plan.dose
    kit = f"kit {dose.kit.ndc} matches {weight(dose.weight_kg)}" if dose else "no kit to check"
    return card(
        uuid_parts=checked.parts("confirmed"),
        summary=f"ZOLGENSMA order checked: {kit}",
        indicator=Indicator.INFO,
        detail=f"Checked for {checked.dated}: the kit, the anti-AAV9 titer, age and the "
        "prednisolone order raise nothing.",
        section="2.1",
        reasons=ORDER_REASONS,
        links=[checked.link()],
    )
