"""Post-infusion safety alerts in the newest results (label sections 5.1, 5.3, 5.4, 5.5).

An alert stays while the newest result still meets it: worsening liver tests are judged by the
newest result against the patient's own pre-infusion value, not only against the result before.

Censored values count only where their direction makes the call certain: a result reported
as '< x' or '<= x' never triggers an 'above' or 'rising' rule, and one reported as '> x' or
'>= x' never triggers a 'below' or 'falling' rule. Reference values (baselines, the previous
INR) are taken at face value.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal

from smart_app.rules import label
from smart_app.rules.labs import Interpreted, display_unit, interpret, shown
from smart_app.rules.model import (
    ActivityKind,
    Alert,
    AlertCode,
    AlertCriterion,
    AlertLevel,
    AlertResult,
    Comparator,
    Evidence,
    LabResult,
    LabTest,
    PatientFacts,
    UlnSource,
)
from smart_app.rules.policy import Policy

ONE = Decimal(1)
CENSORED_BELOW = (Comparator.LT, Comparator.LE)
"""The true value lies below the one reported: never 'above' anything for certain."""
CENSORED_ABOVE = (Comparator.GT, Comparator.GE)
"""The true value lies above the one reported: never 'below' anything for certain."""

AMINOTRANSFERASES = (LabTest.ALT, LabTest.AST)
SHOWN_ORDER = (
    LabTest.ALT,
    LabTest.AST,
    LabTest.BILIRUBIN_TOTAL,
    LabTest.PT,
    LabTest.INR,
    LabTest.PLATELETS,
    LabTest.CREATININE,
    LabTest.HEMOGLOBIN,
    LabTest.TROPONIN_I,
)
"""The order an alert lists its results in: ALT and AST first, as the label names them."""
LOW_TESTS = (LabTest.PLATELETS, LabTest.HEMOGLOBIN)
"""Tests that alert when low: a multiple of their upper limit means nothing and is not shown."""
COAGULATION = (LabTest.INR, LabTest.PT)
RISE_FIELD: dict[LabTest, str] = {LabTest.INR: "inr_rise_min", LabTest.PT: "pt_rise_min_s"}
"""The policy field holding each coagulation test's 'rising' minimum."""
TITLES: dict[AlertCode, str] = {
    AlertCode.ACUTE_LIVER_INJURY: "Possible acute serious liver injury",
    AlertCode.LIVER_TESTS_WORSENING: "Worsening liver function tests",
    AlertCode.THROMBOCYTOPENIA: "Low platelet count (thrombocytopenia)",
    AlertCode.TMA_PATTERN: "Findings consistent with thrombotic microangiopathy (TMA)",
    AlertCode.TROPONIN_I_ELEVATED: "Troponin I elevated after infusion",
}
"""What each alert is, in the words of its label section."""
LIVER_TESTS = (LabTest.ALT, LabTest.AST, LabTest.BILIRUBIN_TOTAL, LabTest.PT, LabTest.INR)
"""Section 5.1: the liver function tests monitored after infusion."""
URGENT_FIELD: dict[LabTest, str] = {
    LabTest.ALT: "worsening_urgent_aminotransferase_uln_multiple",
    LabTest.AST: "worsening_urgent_aminotransferase_uln_multiple",
    LabTest.BILIRUBIN_TOTAL: "worsening_urgent_bilirubin_uln_multiple",
    LabTest.PT: "worsening_urgent_coagulation_uln_multiple",
    LabTest.INR: "worsening_urgent_coagulation_uln_multiple",
}
"""The policy field of each liver test's urgent tier (at or above it; PT and INR above it)."""


@dataclass(frozen=True)
class _Context:
    """The facts as known on the evaluation date, split at the infusion date."""

    facts: PatientFacts
    infusion_date: dt.date
    on: dt.date
    policy: Policy

    def known(self, test: LabTest) -> tuple[LabResult, ...]:
        """Results of `test` dated on or before the evaluation date, newest first."""
        usable = (r for r in self.facts.labs_for(test) if r.effective <= self.on)
        return tuple(sorted(usable, key=lambda r: r.effective, reverse=True))

    def newest_post(self, test: LabTest) -> LabResult | None:
        """The newest result dated after the infusion date, or None."""
        return next((r for r in self.known(test) if r.effective > self.infusion_date), None)

    def baseline(self, test: LabTest) -> LabResult | None:
        """The newest result dated on or before the infusion date, or None."""
        return next((r for r in self.known(test) if r.effective <= self.infusion_date), None)

    def day(self, result: LabResult) -> int:
        """Days from the infusion date to the result (infusion = day 0)."""
        return (result.effective - self.infusion_date).days

    def in_tma_window(self, result: LabResult) -> bool:
        """Post-infusion and at most `tma_alert_days` after the infusion date."""
        return 0 < self.day(result) <= self.policy.tma_alert_days

    def newest_in_tma_window(self, test: LabTest) -> LabResult | None:
        """The newest result of `test` inside the TMA window, or None."""
        return next((r for r in self.known(test) if self.in_tma_window(r)), None)

    def seen(self, result: LabResult) -> Interpreted:
        """The result against its reported or fallback ULN."""
        return interpret(result, birth_date=self.facts.birth_date)


@dataclass(frozen=True)
class AlertAction:
    """A Task an alert calls for: a consult, or a repeat draw of the tests its advice names."""

    key: str
    """Names the Task across alerts: two alerts asking for the same draw share one Task."""
    kind: ActivityKind
    what: str
    section: str
    within_days: int
    """The Task is due from the day it is created to this many days after."""
    tests: tuple[LabTest, ...] = ()


LIVER_RECHECK = (
    LabTest.ALT,
    LabTest.AST,
    LabTest.BILIRUBIN_TOTAL,
    LabTest.ALBUMIN,
    LabTest.PT,
    LabTest.PTT,
    LabTest.INR,
)
"""Section 5.1: the liver tests again, with 'further testing of albumin, PTT, and INR'."""
_LIVER_TESTS = AlertAction(
    "liver-tests",
    ActivityKind.LAB_DRAW,
    "Repeat liver tests with albumin, PTT and INR",
    "5.1",
    1,
    LIVER_RECHECK,
)
ACTIONS: dict[AlertCode, tuple[AlertAction, ...]] = {
    AlertCode.ACUTE_LIVER_INJURY: (
        AlertAction(
            "hepatology-consult",
            ActivityKind.CONSULT,
            "Consult a pediatric gastroenterologist or hepatologist promptly",
            "5.1",
            1,
        ),
        _LIVER_TESTS,
    ),
    AlertCode.LIVER_TESTS_WORSENING: (_LIVER_TESTS,),
    AlertCode.THROMBOCYTOPENIA: (
        AlertAction(
            "platelets",
            ActivityKind.LAB_DRAW,
            "Repeat the platelet count with hemoglobin and creatinine (signs of TMA)",
            "5.3; 5.4",
            1,
            (LabTest.PLATELETS, LabTest.HEMOGLOBIN, LabTest.CREATININE),
        ),
    ),
    AlertCode.TMA_PATTERN: (
        AlertAction(
            "hematology-nephrology-consult",
            ActivityKind.CONSULT,
            "Consult a pediatric hematologist and/or pediatric nephrologist immediately",
            "5.4",
            0,
        ),
    ),
    AlertCode.TROPONIN_I_ELEVATED: (
        AlertAction(
            "cardiology-consult",
            ActivityKind.CONSULT,
            "Consider a cardiac evaluation: consult a cardiologist",
            "5.5",
            7,
        ),
    ),
}
"""The consult or repeat-lab Task each alert's advice calls for (one button each)."""


@dataclass(frozen=True)
class _Criterion:
    """One triggered rule: the rule in plain words, its source, the results involved."""

    rule: str
    source: str
    results: tuple[AlertResult, ...]


@dataclass(frozen=True)
class _Arm:
    """One laboratory arm of the TMA pattern: triggered, not triggered, or not checkable."""

    criterion: _Criterion | None = None
    gap: str = ""


def _result(
    ctx: _Context,
    result: LabResult,
    *,
    previous: LabResult | None = None,
    baseline: LabResult | None = None,
    note: str = "",
) -> AlertResult:
    """A result with its day, its multiple of ULN (and the fallback ULN when one was used)."""
    seen = ctx.seen(result)
    return AlertResult(
        result=result,
        day=ctx.day(result),
        multiple_of_uln=None if result.test in LOW_TESTS else seen.multiple_of_uln,
        fallback_uln=seen.uln if seen.source is UlnSource.FALLBACK else None,
        previous=previous,
        baseline=baseline,
        note=note,
    )


def _change(newest: LabResult, previous: LabResult) -> str:
    """'up 0.7', 'down 250 U/L', 'unchanged': the change from the result before."""
    delta = newest.value - previous.value
    unit = display_unit(newest.test)
    if delta == 0:
        return "unchanged"
    return f"{'up' if delta > 0 else 'down'} {abs(delta)}{' ' + unit if unit else ''}"


def describe(seen: AlertResult) -> str:
    """'ALT 1020 U/L = 22.67 x ULN on 2026-11-20 (day 14), pre-infusion 24 U/L on 2026-11-01,
    up 932 U/L from 88 U/L on 2026-11-13': one result and what it was compared with."""
    result = seen.result
    text = f"{result.test} {shown(result)}"
    if seen.multiple_of_uln is not None:
        text += f" = {seen.multiple_of_uln} x ULN"
    text += f" on {result.effective} (day {seen.day})"
    if seen.fallback_uln is not None:
        unit = display_unit(result.test)
        text += f" (fallback ULN {seen.fallback_uln}{' ' + unit if unit else ''})"
    if seen.baseline is not None:
        text += f", pre-infusion {shown(seen.baseline)} on {seen.baseline.effective}"
    if seen.previous is not None and seen.previous is not seen.baseline:
        before = seen.day - (result.effective - seen.previous.effective).days
        text += (
            f", {_change(result, seen.previous)} from {shown(seen.previous)} on "
            f"{seen.previous.effective} (day {before})"
        )
    if seen.note:
        text += f" ({seen.note})"
    return text


def _above(seen: Interpreted, multiple: Decimal) -> bool:
    """Strictly above `multiple` x a known, positive ULN, and not censored from above."""
    return (
        seen.uln is not None
        and seen.uln > 0
        and seen.result.comparator not in CENSORED_BELOW
        and seen.exceeds(multiple)
    )


def _unique(evidence: Iterable[Evidence]) -> tuple[Evidence, ...]:
    """Evidence in first-seen order without repeats."""
    return tuple(dict.fromkeys(evidence))


def _merged(criteria: Iterable[_Criterion]) -> tuple[AlertResult, ...]:
    """Every result of the criteria once, in SHOWN_ORDER, with every comparison made."""
    found: dict[str, AlertResult] = {}
    for criterion in criteria:
        for seen in criterion.results:
            key = seen.result.evidence.reference
            old = found.get(key)
            if old is None:
                found[key] = seen
                continue
            found[key] = replace(
                old,
                previous=old.previous or seen.previous,
                baseline=old.baseline or seen.baseline,
                note=old.note or seen.note,
            )
    order = {test: n for n, test in enumerate(SHOWN_ORDER)}
    return tuple(sorted(found.values(), key=lambda r: order.get(r.result.test, len(order))))


def _alert(
    code: AlertCode,
    level: AlertLevel,
    criteria: list[_Criterion],
    *,
    advice: tuple[str, ...],
    section: str,
    gaps: tuple[str, ...] = (),
    source: str = "",
) -> Alert:
    """One alert: its results each stated once, the rules met and their sources."""
    results = _merged(criteria)
    message = f"{TITLES[code]}: {'; '.join(describe(r) for r in results)}."
    if gaps:
        message += " " + " ".join(gaps)
    evidence = _unique(
        e
        for r in results
        for e in (
            r.result.evidence,
            *([r.baseline.evidence] if r.baseline else []),
            *([r.previous.evidence] if r.previous else []),
        )
    )
    return Alert(
        code,
        level,
        message,
        advice,
        section,
        source or "; ".join(dict.fromkeys(c.source for c in criteria)),
        evidence,
        title=TITLES[code],
        results=results,
        criteria=tuple(AlertCriterion(c.rule, c.source) for c in criteria),
        gaps=gaps,
    )


def _aminotransferases_above(ctx: _Context, multiple: Decimal) -> list[LabResult]:
    """The newest post-infusion ALT and AST that are above `multiple` x ULN."""
    hits = []
    for test in AMINOTRANSFERASES:
        newest = ctx.newest_post(test)
        if newest is not None and _above(ctx.seen(newest), multiple):
            hits.append(newest)
    return hits


def _aminotransferases_20x(ctx: _Context) -> _Criterion | None:
    """Section 5.1: ALT or AST > 20 x ULN, as in the reported acute serious liver injury."""
    multiple = label.ACUTE_LIVER_INJURY_ULN_MULTIPLE
    hits = _aminotransferases_above(ctx, multiple)
    if not hits:
        return None
    return _Criterion(
        f"ALT or AST above {multiple} × ULN, as in the reported cases of acute serious liver "
        "injury",
        f"label section 5.1 describes reported cases with ALT and AST above {multiple} × ULN "
        "(a description, not a label threshold)",
        tuple(_result(ctx, r) for r in hits),
    )


def _bilirubin_with_aminotransferase(ctx: _Context) -> _Criterion | None:
    """Section 5.1 pattern: total bilirubin and ALT or AST both raised (institution numbers)."""
    policy = ctx.policy
    newest = ctx.newest_post(LabTest.BILIRUBIN_TOTAL)
    if newest is None or not _above(ctx.seen(newest), policy.liver_injury_bilirubin_uln_multiple):
        return None
    hits = _aminotransferases_above(ctx, policy.liver_injury_aminotransferase_uln_multiple)
    if not hits:
        return None
    return _Criterion(
        "Total bilirubin raised together with ALT or AST: the label names this pattern, not its "
        "numbers",
        policy.cite(
            "liver_injury_bilirubin_uln_multiple", "liver_injury_aminotransferase_uln_multiple"
        ),
        tuple(_result(ctx, r) for r in (newest, *hits)),
    )


def _rising(ctx: _Context, test: LabTest) -> _Criterion | None:
    """One coagulation test above its ULN and up by its policy minimum on the result before
    (section 5.1 'prolonged prothrombin time'; PT is checked wherever INR is)."""
    known = ctx.known(test)
    if len(known) < 2 or known[0].effective <= ctx.infusion_date:
        return None
    newest, previous = known[0], known[1]
    field = RISE_FIELD[test]
    if not _above(ctx.seen(newest), ONE) or newest.value < previous.value + getattr(
        ctx.policy, field
    ):
        return None
    return _Criterion(
        f"{test} above its ULN and rising",
        ctx.policy.cite(field),
        (_result(ctx, newest, previous=previous),),
    )


def _liver_alert(ctx: _Context) -> Alert | None:
    """Section 5.1: one urgent alert naming every acute liver injury criterion met."""
    checks = (
        _aminotransferases_20x(ctx),
        _bilirubin_with_aminotransferase(ctx),
        *(_rising(ctx, test) for test in COAGULATION),
    )
    met = [c for c in checks if c is not None]
    if not met:
        return None
    return _alert(
        AlertCode.ACUTE_LIVER_INJURY,
        AlertLevel.URGENT,
        met,
        advice=label.ADVICE_LIVER_INJURY,
        section="5.1",
    )


def _worsening(ctx: _Context, test: LabTest) -> tuple[AlertResult, bool] | None:
    """One liver test above its ULN and above the pre-infusion value: (result, urgent)."""
    newest = ctx.newest_post(test)
    if newest is None or not _above(seen := ctx.seen(newest), ONE):
        return None
    baseline = ctx.baseline(test)
    if baseline is not None and newest.value <= baseline.value:
        return None
    multiple = getattr(ctx.policy, URGENT_FIELD[test])
    coagulation = test in COAGULATION
    urgent = seen.exceeds(multiple) if coagulation else seen.reaches(multiple)
    previous = next((r for r in ctx.known(test) if r.effective < newest.effective), None)
    notes = [] if baseline is not None else ["no pre-infusion result to compare"]
    if urgent:
        notes.append(f"{'above' if coagulation else 'at or above'} the urgent {multiple} × ULN")
    return _result(ctx, newest, previous=previous, baseline=baseline, note="; ".join(notes)), urgent


def _worsening_alert(ctx: _Context) -> Alert | None:
    """Section 5.1: 'promptly assess and closely monitor patients with worsening liver function
    test results': any liver test above ULN and above the patient's own pre-infusion value."""
    found = [(test, w) for test in LIVER_TESTS if (w := _worsening(ctx, test)) is not None]
    if not found:
        return None
    urgent_tests = [test for test, (_, is_urgent) in found if is_urgent]
    tiers = dict.fromkeys(URGENT_FIELD[t] for t in urgent_tests) or dict.fromkeys(
        URGENT_FIELD.values()
    )
    worse = _listed([str(test) for test, _ in found])
    criteria = [
        _Criterion(
            f"{worse[:1].upper()}{worse[1:]} above ULN and above the pre-infusion value",
            "label section 5.1 ('promptly assess and closely monitor patients with worsening "
            "liver function test results')",
            tuple(r for _, (r, _) in found),
        ),
        _Criterion(
            f"Urgent: {_listed([str(t) for t in urgent_tests])} at the urgent level"
            if urgent_tests
            else "A warning: below the urgent levels",
            ctx.policy.cite(*tiers),
            (),
        ),
    ]
    return _alert(
        AlertCode.LIVER_TESTS_WORSENING,
        AlertLevel.URGENT if urgent_tests else AlertLevel.WARNING,
        criteria,
        advice=label.ADVICE_LIVER_WORSENING,
        section="5.1",
    )


def _listed(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _gap(ctx: _Context, test: LabTest, baseline: LabResult | None, post: LabResult | None) -> str:
    """Why a TMA arm cannot be checked, or '' when both of its values are present."""
    missing = []
    if baseline is None:
        missing.append(f"no baseline {test} before infusion")
    if post is None:
        missing.append(
            f"no post-infusion {test} within {ctx.policy.tma_alert_days} days of infusion"
        )
    return f"TMA pattern not checkable by {test}: {' and '.join(missing)}." if missing else ""


def _creatinine_arm(ctx: _Context) -> _Arm:
    """Section 5.4 acute kidney injury: creatinine up by `tma_creatinine_rise_fraction`."""
    baseline = ctx.baseline(LabTest.CREATININE)
    post = ctx.newest_in_tma_window(LabTest.CREATININE)
    if baseline is None or post is None:
        return _Arm(gap=_gap(ctx, LabTest.CREATININE, baseline, post))
    factor = ONE + ctx.policy.tma_creatinine_rise_fraction
    if post.comparator in CENSORED_BELOW or post.value < baseline.value * factor:
        return _Arm()
    return _Arm(
        _Criterion(
            "Creatinine rising above its pre-infusion value (kidney injury)",
            ctx.policy.cite("tma_creatinine_rise_fraction"),
            (_result(ctx, post, baseline=baseline, note=f"at least {factor} × baseline"),),
        )
    )


def _hemoglobin_arm(ctx: _Context) -> _Arm:
    """Section 5.4 hemolytic anemia: hemoglobin down by `tma_hemoglobin_drop_g_per_dl`."""
    baseline = ctx.baseline(LabTest.HEMOGLOBIN)
    post = ctx.newest_in_tma_window(LabTest.HEMOGLOBIN)
    if baseline is None or post is None:
        return _Arm(gap=_gap(ctx, LabTest.HEMOGLOBIN, baseline, post))
    drop = ctx.policy.tma_hemoglobin_drop_g_per_dl
    if post.comparator in CENSORED_ABOVE or post.value > baseline.value - drop:
        return _Arm()
    return _Arm(
        _Criterion(
            "Hemoglobin falling below its pre-infusion value (hemolytic anemia)",
            ctx.policy.cite("tma_hemoglobin_drop_g_per_dl"),
            (
                _result(
                    ctx, post, baseline=baseline, note=f"down {baseline.value - post.value} g/dL"
                ),
            ),
        )
    )


def _platelet_alerts(ctx: _Context) -> list[Alert]:
    """Sections 5.3 and 5.4: low platelets, and the TMA pattern when they fall early."""
    threshold = ctx.policy.platelets_low_10e3_per_ul
    newest = ctx.newest_post(LabTest.PLATELETS)
    if newest is None or newest.comparator in CENSORED_ABOVE or not newest.value < threshold:
        return []
    baseline = ctx.baseline(LabTest.PLATELETS)
    low = _Criterion(
        f"Platelet count below {threshold} × 10³/µL",
        ctx.policy.cite("platelets_low_10e3_per_ul"),
        (
            _result(
                ctx,
                newest,
                baseline=baseline,
                note="" if baseline is not None else "no baseline platelet count",
            ),
        ),
    )
    arms = (_creatinine_arm(ctx), _hemoglobin_arm(ctx)) if ctx.in_tma_window(newest) else ()
    gaps = tuple(arm.gap for arm in arms if arm.gap)
    alerts = [
        _alert(
            AlertCode.THROMBOCYTOPENIA,
            AlertLevel.URGENT,
            [low],
            advice=label.ADVICE_THROMBOCYTOPENIA,
            section="5.3",
            gaps=gaps,
        )
    ]
    met = [arm.criterion for arm in arms if arm.criterion is not None]
    if met:
        early = _Criterion(
            f"Platelet count below {threshold} × 10³/µL within {ctx.policy.tma_alert_days} days "
            "of infusion",
            ctx.policy.cite("platelets_low_10e3_per_ul", "tma_alert_days"),
            (_result(ctx, newest),),
        )
        alerts.append(
            _alert(
                AlertCode.TMA_PATTERN,
                AlertLevel.URGENT,
                [early, *met],
                advice=label.ADVICE_TMA,
                section="5.4",
            )
        )
    return alerts


def _troponin_alert(ctx: _Context) -> Alert | None:
    """Section 5.5: troponin I above the reference range after infusion."""
    newest = ctx.newest_post(LabTest.TROPONIN_I)
    if newest is None or not _above(ctx.seen(newest), ONE):
        return None
    return _alert(
        AlertCode.TROPONIN_I_ELEVATED,
        AlertLevel.WARNING,
        [
            _Criterion(
                "Troponin I above the reference range",
                "label section 5.5 (above the reference range)",
                (_result(ctx, newest),),
            )
        ],
        advice=label.ADVICE_TROPONIN,
        section="5.5",
    )


def _order(alert: Alert) -> tuple[int, int]:
    """Urgent before warning, then the order AlertCode declares."""
    return list(AlertLevel).index(alert.level), list(AlertCode).index(alert.code)


def post_infusion_alerts(
    facts: PatientFacts, *, infusion_date: dt.date, on: dt.date, policy: Policy
) -> tuple[Alert, ...]:
    """Safety alerts in the newest post-infusion results known on `on`, most urgent first."""
    ctx = _Context(facts, infusion_date, on, policy)
    found = [
        _liver_alert(ctx),
        _worsening_alert(ctx),
        *_platelet_alerts(ctx),
        _troponin_alert(ctx),
    ]
    return tuple(sorted((a for a in found if a is not None), key=_order))
