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
from dataclasses import dataclass
from decimal import Decimal

from smart_app.rules import label
from smart_app.rules.labs import Interpreted, display_unit, interpret, shown
from smart_app.rules.model import (
    Alert,
    AlertCode,
    AlertLevel,
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
COAGULATION = (LabTest.INR, LabTest.PT)
RISE_FIELD: dict[LabTest, str] = {LabTest.INR: "inr_rise_min", LabTest.PT: "pt_rise_min_s"}
"""The policy field holding each coagulation test's 'rising' minimum."""
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
class _Criterion:
    """One triggered rule: what was seen, where the rule comes from, the results involved."""

    text: str
    source: str
    evidence: tuple[Evidence, ...]


@dataclass(frozen=True)
class _Arm:
    """One laboratory arm of the TMA pattern: triggered, not triggered, or not checkable."""

    criterion: _Criterion | None = None
    gap: str = ""


def _describe(seen: Interpreted) -> str:
    """'ALT 1020 U/L = 22.67 x ULN on 2026-11-20', naming a fallback ULN when one was used."""
    result = seen.result
    text = f"{result.test} {shown(result)} = {seen.multiple_of_uln} x ULN on {result.effective}"
    if seen.source is UlnSource.FALLBACK:
        unit = display_unit(result.test)
        text += f" (fallback ULN {seen.uln}{' ' + unit if unit else ''})"
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


def _aminotransferases_above(ctx: _Context, multiple: Decimal) -> list[Interpreted]:
    """The newest post-infusion ALT and AST that are above `multiple` x ULN."""
    hits = []
    for test in AMINOTRANSFERASES:
        newest = ctx.newest_post(test)
        if newest is not None and _above(seen := ctx.seen(newest), multiple):
            hits.append(seen)
    return hits


def _aminotransferases_20x(ctx: _Context) -> _Criterion | None:
    """Section 5.1: ALT or AST > 20 x ULN, as in the reported acute serious liver injury."""
    multiple = label.ACUTE_LIVER_INJURY_ULN_MULTIPLE
    hits = _aminotransferases_above(ctx, multiple)
    if not hits:
        return None
    return _Criterion(
        f"{' and '.join(_describe(s) for s in hits)}, above {multiple} x ULN, as in the reported "
        "cases of acute serious liver injury the label describes",
        f"label section 5.1 describes reported cases with ALT and AST > {multiple} x ULN "
        "(a description, not a label threshold)",
        tuple(s.result.evidence for s in hits),
    )


def _bilirubin_with_aminotransferase(ctx: _Context) -> _Criterion | None:
    """Section 5.1 pattern: total bilirubin and ALT or AST both raised (institution numbers)."""
    bilirubin_multiple = ctx.policy.liver_injury_bilirubin_uln_multiple
    amino_multiple = ctx.policy.liver_injury_aminotransferase_uln_multiple
    newest = ctx.newest_post(LabTest.BILIRUBIN_TOTAL)
    if newest is None or not _above(bilirubin := ctx.seen(newest), bilirubin_multiple):
        return None
    hits = _aminotransferases_above(ctx, amino_multiple)
    if not hits:
        return None
    return _Criterion(
        f"{_describe(bilirubin)}, above {bilirubin_multiple} x ULN, with "
        f"{' and '.join(_describe(s) for s in hits)}, above {amino_multiple} x ULN",
        f"institution default: liver_injury_bilirubin_uln_multiple = {bilirubin_multiple}, "
        f"liver_injury_aminotransferase_uln_multiple = {amino_multiple}",
        (newest.evidence, *(s.result.evidence for s in hits)),
    )


def _coagulation_rising(ctx: _Context) -> _Criterion | None:
    """Section 5.1 'prolonged prothrombin time': INR or PT above its ULN and up on the result
    before by at least `inr_rise_min` / `pt_rise_min_s` (PT is checked wherever INR is)."""
    found = [c for c in (_rising(ctx, test) for test in COAGULATION) if c is not None]
    if not found:
        return None
    return _Criterion(
        "; ".join(c.text for c in found),
        "; ".join(c.source for c in found),
        _unique(e for c in found for e in c.evidence),
    )


def _rising(ctx: _Context, test: LabTest) -> _Criterion | None:
    """One coagulation test above its ULN and up by its policy minimum on the result before."""
    known = ctx.known(test)
    if len(known) < 2 or known[0].effective <= ctx.infusion_date:
        return None
    newest, previous = known[0], known[1]
    field = RISE_FIELD[test]
    rise_min = getattr(ctx.policy, field)
    seen = ctx.seen(newest)
    if not _above(seen, ONE) or newest.value < previous.value + rise_min:
        return None
    which = "baseline " if previous.effective <= ctx.infusion_date else ""
    unit = display_unit(test)
    return _Criterion(
        f"{_describe(seen)}, up {newest.value - previous.value}{' ' + unit if unit else ''} "
        f"from {which}{shown(previous)} on {previous.effective} (rise >= {rise_min})",
        ctx.policy.cite(field),
        (newest.evidence, previous.evidence),
    )


def _liver_alert(ctx: _Context) -> Alert | None:
    """Section 5.1: one urgent alert naming every acute liver injury criterion met."""
    checks = (_aminotransferases_20x, _bilirubin_with_aminotransferase, _coagulation_rising)
    met = [c for c in (check(ctx) for check in checks) if c is not None]
    if not met:
        return None
    return Alert(
        AlertCode.ACUTE_LIVER_INJURY,
        AlertLevel.URGENT,
        f"Possible acute serious liver injury: {'; '.join(c.text for c in met)}.",
        label.ADVICE_LIVER_INJURY,
        "5.1",
        "; ".join(dict.fromkeys(c.source for c in met)),
        _unique(e for c in met for e in c.evidence),
    )


def _worsening(ctx: _Context, test: LabTest) -> tuple[_Criterion, bool] | None:
    """One liver test above its ULN and above the pre-infusion value: (criterion, urgent)."""
    newest = ctx.newest_post(test)
    if newest is None or not _above(seen := ctx.seen(newest), ONE):
        return None
    baseline = ctx.baseline(test)
    if baseline is not None and newest.value <= baseline.value:
        return None
    field = URGENT_FIELD[test]
    multiple = getattr(ctx.policy, field)
    coagulation = test in COAGULATION
    urgent = seen.exceeds(multiple) if coagulation else seen.reaches(multiple)
    against = (
        f"above its pre-infusion {shown(baseline)} on {baseline.effective}"
        if baseline is not None
        else "with no pre-infusion result to compare"
    )
    text = f"{_describe(seen)} (day {ctx.day(newest)}), above ULN and {against}"
    previous = next((r for r in ctx.known(test) if r.effective < newest.effective), None)
    evidence = [newest.evidence, *([baseline.evidence] if baseline else [])]
    if previous is not None and previous is not baseline:
        trend = "up" if newest.value > previous.value else "not up"
        text += f"; {trend} from {shown(previous)} on day {ctx.day(previous)}"
        evidence.append(previous.evidence)
    if urgent:
        tier = "above" if coagulation else "at or above"
        text += f" ({tier} the urgent tier of {multiple} x ULN)"
    return _Criterion(text, field if urgent else "", tuple(evidence)), urgent


def _worsening_alert(ctx: _Context) -> Alert | None:
    """Section 5.1: 'promptly assess and closely monitor patients with worsening liver function
    test results': any liver test above ULN and above the patient's own pre-infusion value."""
    found = [w for w in (_worsening(ctx, test) for test in LIVER_TESTS) if w is not None]
    if not found:
        return None
    urgent = any(is_urgent for _, is_urgent in found)
    tiers = dict.fromkeys(c.source for c, _ in found if c.source) or dict.fromkeys(
        URGENT_FIELD.values()
    )
    level = "urgent at" if urgent else "a warning below the urgent tiers,"
    source = (
        "label section 5.1 ('promptly assess and closely monitor patients with worsening liver "
        f"function test results'); {level} {ctx.policy.cite(*tiers)}"
    )
    return Alert(
        AlertCode.LIVER_TESTS_WORSENING,
        AlertLevel.URGENT if urgent else AlertLevel.WARNING,
        f"Worsening liver function tests: {'; '.join(c.text for c, _ in found)}.",
        label.ADVICE_LIVER_WORSENING,
        "5.1",
        source,
        _unique(e for c, _ in found for e in c.evidence),
    )


def _gap(ctx: _Context, test: LabTest, baseline: LabResult | None, post: LabResult | None) -> str:
    """Why a TMA arm cannot be checked, or '' when both of its values are present."""
    missing = []
    if baseline is None:
        missing.append(f"no baseline {test} on or before {ctx.infusion_date}")
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
    fraction = ctx.policy.tma_creatinine_rise_fraction
    factor = ONE + fraction
    if post.comparator in CENSORED_BELOW or post.value < baseline.value * factor:
        return _Arm()
    return _Arm(
        _Criterion(
            f"creatinine {shown(post)} on {post.effective} against baseline "
            f"{shown(baseline)} on {baseline.effective} (>= {factor} x baseline)",
            f"tma_creatinine_rise_fraction = {fraction}",
            (post.evidence, baseline.evidence),
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
            f"hemoglobin {shown(post)} on {post.effective} against baseline "
            f"{shown(baseline)} on {baseline.effective} (down "
            f"{baseline.value - post.value} g/dL, >= {drop})",
            f"tma_hemoglobin_drop_g_per_dl = {drop}",
            (post.evidence, baseline.evidence),
        )
    )


def _platelet_alerts(ctx: _Context) -> list[Alert]:
    """Sections 5.3 and 5.4: low platelets, and the TMA pattern when they fall early."""
    threshold = ctx.policy.platelets_low_10e3_per_ul
    newest = ctx.newest_post(LabTest.PLATELETS)
    if newest is None or newest.comparator in CENSORED_ABOVE or not newest.value < threshold:
        return []
    low = (
        f"platelet count {shown(newest)} on {newest.effective} (day {ctx.day(newest)} after "
        f"infusion) is below {threshold} {display_unit(LabTest.PLATELETS)}"
    )
    baseline = ctx.baseline(LabTest.PLATELETS)
    before = (
        f"baseline {shown(baseline)} on {baseline.effective}"
        if baseline is not None
        else "no baseline platelet count"
    )
    arms = (_creatinine_arm(ctx), _hemoglobin_arm(ctx)) if ctx.in_tma_window(newest) else ()
    gaps = [arm.gap for arm in arms if arm.gap]
    alerts = [
        Alert(
            AlertCode.THROMBOCYTOPENIA,
            AlertLevel.URGENT,
            " ".join([f"Thrombocytopenia: {low}; {before}.", *gaps]),
            label.ADVICE_THROMBOCYTOPENIA,
            "5.3",
            f"institution default: platelets_low_10e3_per_ul = {threshold}",
            _unique((newest.evidence, *([baseline.evidence] if baseline else []))),
        )
    ]
    met = [arm.criterion for arm in arms if arm.criterion is not None]
    if met:
        alerts.append(
            Alert(
                AlertCode.TMA_PATTERN,
                AlertLevel.URGENT,
                f"Findings consistent with thrombotic microangiopathy: {low}, with "
                f"{' and '.join(c.text for c in met)}.",
                label.ADVICE_TMA,
                "5.4",
                f"institution default: platelets_low_10e3_per_ul = {threshold}, "
                f"tma_alert_days = {ctx.policy.tma_alert_days}, "
                f"{', '.join(c.source for c in met)}",
                _unique((newest.evidence, *(e for c in met for e in c.evidence))),
            )
        )
    return alerts


def _troponin_alert(ctx: _Context) -> Alert | None:
    """Section 5.5: troponin I above the reference range after infusion."""
    newest = ctx.newest_post(LabTest.TROPONIN_I)
    if newest is None or not _above(seen := ctx.seen(newest), ONE):
        return None
    return Alert(
        AlertCode.TROPONIN_I_ELEVATED,
        AlertLevel.WARNING,
        f"Troponin I elevated after infusion: {_describe(seen)}, above the reference range.",
        label.ADVICE_TROPONIN,
        "5.5",
        "label section 5.5 (above the reference range)",
        (newest.evidence,),
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
