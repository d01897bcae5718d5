"""The day-30 (or a repeat) liver assessment: when it is due and what it proposes (2.1; 2.3).

Day 30 in the manufacturer's numbering is infusion + `label.LIVER_ASSESSMENT_DAY` (28).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from smart_app.rules import label
from smart_app.rules.course import covering_order, follow_up_finding, live_orders, prose_date
from smart_app.rules.eligibility import (
    current,
    weight_shown,
    weights_disagree,
    weights_together,
)
from smart_app.rules.labs import Interpreted, interpret
from smart_app.rules.model import (
    DecisionBranch,
    Finding,
    FollowUpCode,
    LabResult,
    LabTest,
    Measurement,
    PatientFacts,
    PlanState,
    ScheduleItem,
    Severity,
    SteroidOrder,
    SteroidRole,
    SteroidStep,
)
from smart_app.rules.monitoring import (
    LIVER_PANEL,
    LiverDays,
    lab_draws,
    taper_liver_days,
)
from smart_app.rules.plan import dosing_weight
from smart_app.rules.policy import Policy
from smart_app.rules.steroids import daily_dose_mg, taper_steps, volume_ml

NORMAL_TESTS = (LabTest.BILIRUBIN_TOTAL, LabTest.PT, LabTest.INR)
"""Section 2.1: these must be normal (at or below ULN) for an unremarkable assessment."""

AMINOTRANSFERASES = (LabTest.ALT, LabTest.AST)
"""Section 2.1: ALT and AST are unremarkable below 2 x ULN (the others at or below 1 x)."""


@dataclass(frozen=True)
class Decision:
    """The proposed day-30 (or repeat) liver assessment decision."""

    key: str
    branch: DecisionBranch | None
    """None while a required result, ULN or weight is missing (see `findings`)."""
    labs_unremarkable: bool
    exam_normal: bool | None
    reasons: tuple[str, ...]
    findings: tuple[Finding, ...]
    consult: bool
    consult_results: tuple[LabResult, ...]
    """The liver panel results (ALT, AST, total bilirubin, PT, INR) at or above 2 x ULN behind
    the consult."""
    panel: tuple[Interpreted, ...]
    weight: Measurement | None
    previous_mg_per_day: Decimal
    full_dose_mg_per_day: Decimal | None
    steps: tuple[SteroidStep, ...]
    draws: tuple[ScheduleItem, ...]
    """The lab draws after the decision day under this decision (Tasks to create or keep)."""
    after_day: int
    """Draws up to this day are history; later open Tasks are replaced by `draws`."""
    end_order: SteroidOrder | None = None
    """A continuation order that the taper ends early (its end is moved to the taper's eve)."""
    concentration_mg_per_ml: Decimal = Decimal(3)
    """The oral solution strength the volumes were calculated with."""
    manufacturer_advice: str = ""
    """The manufacturer's advice where it goes further than the label (a consult below 2 x ULN)."""

    @property
    def writable(self) -> bool:
        """A branch, a current weight, and for the taper an attested normal exam."""
        if self.branch is None or self.full_dose_mg_per_day is None:
            return False
        return self.branch is DecisionBranch.CONTINUE or self.exam_normal is True


def _first_panel_start(state: PlanState, policy: Policy) -> dt.date:
    """The first day a result counts for the day-30 assessment."""
    check = state.infusion_date + dt.timedelta(days=label.LIVER_ASSESSMENT_DAY)
    return check - dt.timedelta(days=policy.weekly_window_days)


def _continuation_end(orders: tuple[SteroidOrder, ...]) -> dt.date | None:
    """The last day of full-dose treatment ordered so far (full dose or continuation)."""
    full = [o.end for o in orders if o.role is not SteroidRole.TAPER_STEP]
    return max(full, default=None)


def decision_due(state: PlanState, facts: PatientFacts, *, on: dt.date, policy: Policy) -> bool:
    """The day-30 check is due, or a continued full dose has new results or is ending."""
    latest = state.latest_decision
    if latest is None:
        return on >= _first_panel_start(state, policy)
    if latest.branch is DecisionBranch.TAPER:
        return False
    end = _continuation_end(live_orders(state))
    if end is not None and on >= end - dt.timedelta(days=policy.weekly_window_days):
        return True
    return all(_newest(facts, test, after=latest.decided_on, on=on) for test in LIVER_PANEL)


def _newest(facts: PatientFacts, test: LabTest, *, after: dt.date, on: dt.date) -> LabResult | None:
    """The newest result of a test dated after `after` (exclusive) and on or before `on`."""
    return next((r for r in facts.labs_for(test) if after < r.effective <= on), None)


def _judge_panel(
    facts: PatientFacts, *, since: dt.date, on: dt.date, since_why: str = ""
) -> tuple[list[Interpreted], list[str], list[Finding], bool, list[LabResult]]:
    """Interpret the newest liver panel since `since`: (panel, reasons, findings, ok, and the
    results at or above 2 x ULN, any of ALT, AST, total bilirubin, PT, INR, that call for the
    consult of section 2.1)."""
    panel: list[Interpreted] = []
    reasons: list[str] = []
    findings: list[Finding] = []
    consult: list[LabResult] = []
    before = since - dt.timedelta(days=1)
    for test in LIVER_PANEL:
        result = _newest(facts, test, after=before, on=on)
        if result is None:
            findings.append(
                follow_up_finding(
                    FollowUpCode.LIVER_PANEL_MISSING,
                    Severity.INCOMPLETE,
                    f"No {test} result since {prose_date(since)}{since_why}: the liver assessment "
                    "needs ALT, AST, total bilirubin, PT and INR.",
                    "2.1; 2.3",
                )
            )
            continue
        seen = interpret(result, birth_date=facts.birth_date)
        panel.append(seen)
        if seen.uln is None:
            findings.append(
                follow_up_finding(
                    FollowUpCode.ULN_MISSING,
                    Severity.INCOMPLETE,
                    f"{test} {result.value} {result.unit} on {prose_date(result.effective)} has no "
                    "upper limit of normal and none is configured: it cannot be judged.",
                    "2.1",
                    result.evidence,
                )
            )
            continue
        shown = f"{test} {result.value} {result.unit} = {seen.multiple_of_uln} x ULN"
        at_least_2x = seen.reaches(label.LIVER_ULN_MULTIPLE)
        if at_least_2x:
            reasons.append(f"{shown} on {prose_date(result.effective)} (not below 2 x ULN)")
            consult.append(result)
        elif test not in AMINOTRANSFERASES and seen.exceeds(Decimal(1)):
            reasons.append(f"{shown} on {prose_date(result.effective)} (above normal)")
    ok = not reasons and not findings
    return panel, reasons, findings, ok, consult


def _weight(
    facts: PatientFacts, *, on: dt.date, policy: Policy
) -> tuple[Measurement | None, list[Finding]]:
    """The weight for the new steroid dose: the newest one, recent enough (infants grow); weights
    taken together that disagree are chosen as the plan chooses them, never by record order."""
    newest = current(facts.weights_kg, on=on)
    if newest is None:
        return None, [
            follow_up_finding(
                FollowUpCode.WEIGHT_MISSING,
                Severity.INCOMPLETE,
                "No body weight: weigh the infant before the steroid dose is set.",
                "2.1",
            )
        ]
    age = (on - newest.effective).days
    if age > policy.weight_max_age_days:
        return None, [
            follow_up_finding(
                FollowUpCode.WEIGHT_STALE,
                Severity.INCOMPLETE,
                f"The newest weight ({newest.value} kg on {prose_date(newest.effective)}) is "
                f"{age} days old, "
                f"over {policy.weight_max_age_days} ({policy.cite('weight_max_age_days')}): "
                "re-weigh before the steroid dose is set.",
                "2.1",
                newest.evidence,
            )
        ]
    chosen = dosing_weight(facts, on=on, infusion_date=on, policy=policy) or newest
    together = weights_together(facts, on=on, policy=policy)
    if not weights_disagree(together, policy=policy):
        return chosen, []
    shown = " and ".join(weight_shown(m) for m in sorted(together, key=lambda m: -m.value))
    return chosen, [
        follow_up_finding(
            FollowUpCode.WEIGHT_DISCREPANCY,
            Severity.NEEDS_REVIEW,
            f"Weights taken together disagree: {shown} "
            f"({policy.cite('weight_discrepancy_fraction', 'weight_pair_hours')}). The steroid "
            f"dose is set on the heavier, {chosen.value} kg, as the plan's dose is: confirm it, "
            "or re-weigh the infant or mark the wrong weight entered-in-error.",
            "2.1",
            *(m.evidence for m in together),
        )
    ]


def _step(
    weight_kg: Decimal, *, start: dt.date, days: int, mg_per_kg: Decimal, policy: Policy
) -> SteroidStep:
    """One dosing period on the given weight."""
    dose = daily_dose_mg(weight_kg, mg_per_kg)
    return SteroidStep(
        start=start,
        end=start + dt.timedelta(days=days - 1),
        mg_per_kg_per_day=mg_per_kg,
        dose_mg_per_day=dose,
        volume_ml_per_day=volume_ml(dose, concentration_mg_per_ml=policy.concentration_mg_per_ml),
    )


def decide(
    facts: PatientFacts,
    state: PlanState,
    *,
    on: dt.date,
    policy: Policy,
    exam_normal: bool | None = None,
) -> Decision:
    """The liver assessment: taper when unremarkable and the exam is normal, else continue."""
    orders = live_orders(state)
    latest = state.latest_decision
    since = (
        _first_panel_start(state, policy)
        if latest is None
        else latest.decided_on + dt.timedelta(days=1)
    )
    since_why = (
        f" (the day-30 window opens {policy.weekly_window_days} day(s) before infusion + "
        f"{label.LIVER_ASSESSMENT_DAY}, {policy.cite('weekly_window_days')})"
        if latest is None
        else ", the day after the last decision"
    )
    panel, reasons, findings, labs_ok, consult = _judge_panel(
        facts, since=since, on=on, since_why=since_why
    )
    if exam_normal is False:
        reasons.append("the clinical exam is not normal")
    weight, weight_findings = _weight(facts, on=on, policy=policy)
    findings += weight_findings
    branch: DecisionBranch | None = None
    if reasons:
        branch = DecisionBranch.CONTINUE
    elif labs_ok:
        branch = DecisionBranch.TAPER
    full_end = _continuation_end(orders) or state.infusion_date + dt.timedelta(
        days=label.LIVER_ASSESSMENT_DAY
    )
    previous = next(
        (o.mg_per_day for o in reversed(orders) if o.role is not SteroidRole.TAPER_STEP),
        Decimal(0),
    )
    full_dose = daily_dose_mg(weight.value, label.STEROID_MG_PER_KG_PER_DAY) if weight else None
    if on > full_end:
        findings.append(
            follow_up_finding(
                FollowUpCode.DECISION_AFTER_FULL_DOSE,
                Severity.NEEDS_REVIEW,
                f"The last full-dose prednisolone order ended on {prose_date(full_end)}, "
                f"{(on - full_end).days}"
                " day(s) before this decision: confirm what was given since; the orders of this "
                f"decision start on {prose_date(full_end + dt.timedelta(days=1))}, the first "
                "uncovered day, so that no day goes uncovered. Never stop corticosteroids "
                "abruptly.",
                "2.1",
            )
        )
    steps: tuple[SteroidStep, ...] = ()
    liver: LiverDays | None = None
    end_order: SteroidOrder | None = None
    day_of = (on - state.infusion_date).days
    if branch is DecisionBranch.TAPER and weight is not None:
        full_dose_end = max(
            (o.end for o in orders if o.role is SteroidRole.FULL_DOSE),
            default=state.infusion_date + dt.timedelta(days=label.LIVER_ASSESSMENT_DAY),
        )
        first = min(max(full_dose_end, on), full_end) + dt.timedelta(days=1)
        steps = taper_steps(weight.value, first_day=first, policy=policy)
        liver = taper_liver_days(
            taper_first_day=(first - state.infusion_date).days,
            taper_days=sum(policy.taper_step_days),
        )
        running = covering_order(orders, on)
        if (
            running is not None
            and running.role is SteroidRole.CONTINUATION
            and running.end >= first
        ):
            end_order = running
    elif branch is DecisionBranch.CONTINUE and weight is not None:
        first = full_end + dt.timedelta(days=1)
        if on >= full_end - dt.timedelta(days=policy.weekly_window_days):
            steps = (
                _step(
                    weight.value,
                    start=first,
                    days=policy.continuation_days,
                    mg_per_kg=label.STEROID_MG_PER_KG_PER_DAY,
                    policy=policy,
                ),
            )
        start = steps[0].start if steps else on + dt.timedelta(days=1)
        last = steps[-1].end if steps else full_end
        start_day = (start - state.infusion_date).days
        end_day = (last - state.infusion_date).days
        liver = LiverDays(
            weekly=tuple(range(start_day + 6, end_day + 1, 7)) or (max(end_day, start_day),),
            conditional="weekly while 1 mg/kg/day continues, until ALT and AST are < 2 x ULN "
            "and the rest is normal",
        )
    draws: tuple[ScheduleItem, ...] = ()
    after_day = max(day_of, label.LIVER_ASSESSMENT_DAY)
    if liver is not None:
        draws = tuple(
            d
            for d in lab_draws(state.infusion_date, policy=policy, liver=liver)
            if d.day > after_day
        )
    key = f"{on.isoformat()}-{branch.value if branch else 'undecided'}"
    return Decision(
        key=key,
        branch=branch,
        labs_unremarkable=labs_ok,
        exam_normal=exam_normal,
        reasons=tuple(reasons),
        findings=tuple(findings),
        consult=bool(consult) and state.consult is None,
        consult_results=tuple(consult),
        panel=tuple(panel),
        weight=weight,
        previous_mg_per_day=previous,
        full_dose_mg_per_day=full_dose,
        steps=steps,
        draws=draws,
        after_day=after_day,
        end_order=end_order,
        concentration_mg_per_ml=policy.concentration_mg_per_ml,
        manufacturer_advice=label.MANUFACTURER_CONSULT_ADVICE
        if branch is DecisionBranch.CONTINUE and not consult
        else "",
    )
