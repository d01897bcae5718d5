"""'Until back to baseline': further weekly draws after the last scheduled one (2.3, 5.1, 5.3).

The plan ends platelet counts at 3 months 'until platelet counts return to baseline' (2.3, 5.3)
and liver tests 'for at least 3 months after ZOLGENSMA infusion, and at other times as clinically
indicated' (5.1). When the newest final results since the last scheduled draw are not back
(platelets below the pre-infusion count or the institution's thrombocytopenia threshold; a liver
test above its ULN), one further weekly draw is proposed; once that one is resulted and still not
back, the next one, and so on.

A censored value counts as back only when its direction makes that certain, and a liver result
without a ULN never does: both keep the draws going, and the reason says why. A last Task the care
team cancelled stops the proposals; liver draws are proposed only after a recorded taper decision
(before it, the liver assessments set the liver draws, 2.1).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from smart_app.rules.labs import display_unit, interpret, newest_final, shown
from smart_app.rules.model import (
    ActivityKind,
    Comparator,
    DecisionBranch,
    LabResult,
    LabTest,
    PatientFacts,
    PlannedTask,
    PlanState,
    ScheduleItem,
    UlnSource,
)
from smart_app.rules.monitoring import LIVER_PANEL, sections
from smart_app.rules.policy import Policy

WEEK = dt.timedelta(days=7)
IGNORED = frozenset({"entered-in-error", "failed"})
"""Task statuses that say nothing about the schedule (a mistake, a draw that did not happen)."""
STOPPED = "cancelled"
"""A last Task the care team cancelled: no further draws are proposed after it."""
PLATELET_WORDS = "'until platelet counts return to baseline' (2.3; 5.3)"
LIVER_WORDS = (
    "'continue to monitor liver function ... for at least 3 months after ZOLGENSMA infusion, and "
    "at other times as clinically indicated' (5.1)"
)


@dataclass(frozen=True)
class _Need:
    """Tests not back at the last scheduled draw, why, and the earliest next draw."""

    tests: tuple[LabTest, ...]
    section: str
    reasons: tuple[str, ...]
    earliest: dt.date
    """A week after the last draw's date and after its newest result."""
    judged_through: dt.date
    """The newest result judged: the next draw's window opens after it."""
    institution_default: bool


def _amount(test: LabTest, value: Decimal) -> str:
    """A limit with its display unit."""
    return f"{value} {display_unit(test)}".strip()


def below(result: LabResult, limit: Decimal) -> bool | None:
    """Whether the true value lies below `limit`; None when a censored value straddles it."""
    value, comparator = result.value, result.comparator
    if comparator is Comparator.EQ:
        return value < limit
    if comparator is Comparator.LT:
        return True if value <= limit else None
    if comparator is Comparator.LE:
        return True if value < limit else None
    return False if value >= limit else None


def above(result: LabResult, limit: Decimal) -> bool | None:
    """Whether the true value lies above `limit`; None when a censored value straddles it."""
    value, comparator = result.value, result.comparator
    if comparator is Comparator.EQ:
        return value > limit
    if comparator is Comparator.GT:
        return True if value >= limit else None
    if comparator is Comparator.GE:
        return True if value > limit else None
    return False if value <= limit else None


def _last_draw(state: PlanState, tests: tuple[LabTest, ...]) -> PlannedTask | None:
    """The latest lab-draw Task with any of `tests`, or None (also when it was cancelled)."""
    found = max(
        (
            t
            for t in state.tasks
            if t.kind is ActivityKind.LAB_DRAW
            and t.status not in IGNORED
            and any(test in t.tests for test in tests)
        ),
        key=lambda t: (t.day, t.window_end),
        default=None,
    )
    return None if found is None or found.status == STOPPED else found


def _earliest(state: PlanState, task: PlannedTask, results: list[LabResult]) -> dt.date:
    """A week after the later of the draw's date and its newest result."""
    due = state.infusion_date + dt.timedelta(days=task.day)
    return max(due, *(r.effective for r in results)) + WEEK


def _below_text(low: bool | None) -> str:
    """How a result stands against a lower limit it is not certainly at or above."""
    return "below" if low else "censored, not certainly at or above"


def _platelets(
    facts: PatientFacts, state: PlanState, *, on: dt.date, policy: Policy
) -> _Need | None:
    """Platelets below the pre-infusion count or the threshold at the last scheduled draw."""
    test = LabTest.PLATELETS
    last = _last_draw(state, (test,))
    result = newest_final(facts, test, start=last.window_start, end=on) if last else None
    if last is None or result is None:
        return None
    baseline = next((r for r in facts.labs_for(test) if r.effective <= state.infusion_date), None)
    threshold = policy.platelets_low_10e3_per_ul
    parts = []
    if baseline is not None and (low := below(result, baseline.value)) is not False:
        parts.append(
            f"{_below_text(low)} the pre-infusion count {shown(baseline)} on {baseline.effective}"
        )
    by_threshold_only = not parts
    if (low := below(result, threshold)) is not False:
        parts.append(
            f"{_below_text(low)} {_amount(test, threshold)} "
            f"({policy.cite('platelets_low_10e3_per_ul')})"
        )
    if not parts:
        return None
    if baseline is None:
        parts.append(f"no pre-infusion platelet count on or before {state.infusion_date}")
    return _Need(
        tests=(test,),
        section="2.3; 5.3",
        reasons=(
            f"platelets {shown(result)} on {result.effective}: {'; '.join(parts)}",
            PLATELET_WORDS,
        ),
        earliest=_earliest(state, last, [result]),
        judged_through=result.effective,
        institution_default=by_threshold_only,
    )


def _taper_recorded(state: PlanState) -> bool:
    """The newest recorded liver assessment decided the taper."""
    latest = state.latest_decision
    return latest is not None and latest.branch is DecisionBranch.TAPER


def _liver(facts: PatientFacts, state: PlanState, *, on: dt.date, policy: Policy) -> _Need | None:
    """A liver test above its ULN (or not judgeable) at the last scheduled liver draw."""
    last = _last_draw(state, LIVER_PANEL)
    if last is None or not _taper_recorded(state):
        return None
    tests = tuple(t for t in LIVER_PANEL if t in last.tests)
    results = [newest_final(facts, t, start=last.window_start, end=on) for t in tests]
    found = [r for r in results if r is not None]
    if len(found) < len(tests):
        return None
    reasons = []
    for result in found:
        seen = interpret(result, birth_date=facts.birth_date)
        if seen.uln is None:
            reasons.append(
                f"{result.test} {shown(result)} on {result.effective} has no ULN, reported or "
                "configured: it cannot be shown to be normal"
            )
            continue
        high = above(result, seen.uln)
        if high is not False:
            verb = "above" if high else "censored, not certainly at or below"
            source = (
                "reported"
                if seen.source is UlnSource.REPORTED
                else policy.cite("uln_fallback_version")
            )
            reasons.append(
                f"{result.test} {shown(result)} on {result.effective} {verb} its ULN "
                f"{_amount(result.test, seen.uln)} ({source})"
            )
    if not reasons:
        return None
    return _Need(
        tests=tests,
        section="2.3; 5.1",
        reasons=(*reasons, LIVER_WORDS),
        earliest=_earliest(state, last, found),
        judged_through=max(r.effective for r in found),
        institution_default=False,
    )


def _item(state: PlanState, date: dt.date, needs: list[_Need], *, policy: Policy) -> ScheduleItem:
    """One proposed weekly draw for the needs falling on `date`."""
    tests = tuple(t for t in LabTest if any(t in n.tests for n in needs))
    day = (date - state.infusion_date).days
    opens = max(n.judged_through for n in needs) + dt.timedelta(days=1)
    slack = dt.timedelta(days=policy.weekly_window_days)
    return ScheduleItem(
        date=date,
        day=day,
        kind=ActivityKind.LAB_DRAW,
        activity=f"Lab draw, day {day}: {', '.join(tests)} (until back to baseline)",
        tests=tests,
        section=sections(n.section for n in needs),
        window_start=max(date - slack, opens),
        window_end=date + slack,
        institution_default=all(n.institution_default for n in needs),
        conditional="; ".join(r for n in needs for r in n.reasons),
    )


def proposed_draws(
    facts: PatientFacts, state: PlanState, *, on: dt.date, policy: Policy
) -> tuple[ScheduleItem, ...]:
    """Further weekly draws proposed on `on` while platelets or liver tests are not back, one per
    date, each on a day no live lab-draw Task holds (its identifier stays unique)."""
    needs = [
        n
        for n in (
            _platelets(facts, state, on=on, policy=policy),
            _liver(facts, state, on=on, policy=policy),
        )
        if n is not None
    ]
    by_date: dict[dt.date, list[_Need]] = {}
    for need in needs:
        by_date.setdefault(max(need.earliest, on), []).append(need)
    taken = {
        t.day
        for t in state.tasks
        if t.kind is ActivityKind.LAB_DRAW and (t.is_open or t.status == "completed")
    }
    items = []
    for wanted in sorted(by_date):
        date = wanted
        while (date - state.infusion_date).days in taken:
            date += dt.timedelta(days=1)
        taken.add((date - state.infusion_date).days)
        items.append(_item(state, date, by_date[wanted], policy=policy))
    return tuple(items)
