"""The follow-up charts: liver tests as multiples of ULN, platelets, troponin, steroid dose."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from decimal import Decimal

from smart_app.rules import label
from smart_app.rules.followup import FollowUp
from smart_app.rules.labs import interpret
from smart_app.rules.model import LabResult, LabTest, PatientFacts, SteroidOrder
from smart_app.rules.policy import Policy
from smart_app.web.charts import Chart, HLine, Point, Series, VLine

CHECK_DAY = label.STEROID_FULL_DOSE_DAYS - 2


def _results(
    facts: PatientFacts, test: LabTest, *, infusion: dt.date, on: dt.date
) -> list[LabResult]:
    """The newest baseline result and every later one up to `on`, oldest first."""
    known = [r for r in facts.labs_for(test) if r.effective <= on]
    baseline = next((r for r in known if r.effective <= infusion), None)
    after = [r for r in known if r.effective > infusion]
    chosen = ([baseline] if baseline else []) + after
    return sorted(chosen, key=lambda r: r.effective)


MARKERS = (VLine(0, "infusion"), VLine(CHECK_DAY, "day-30 check"))
"""Infusion and the day-30 liver assessment, on every chart."""


def _range(found: FollowUp) -> tuple[int, int]:
    """From a week before infusion to a week after today (at least past the day-30 check)."""
    return (-7, max(found.day + 7, CHECK_DAY + 7))


def _uln_series(
    facts: PatientFacts, tests: Iterable[LabTest], found: FollowUp
) -> tuple[Series, ...]:
    """One series per test, as multiples of its ULN (results without a ULN are left out)."""
    series = []
    for tone, test in enumerate(tests):
        points = []
        for result in _results(facts, test, infusion=found.infusion_date, on=found.on):
            seen = interpret(result, birth_date=facts.birth_date)
            if seen.multiple_of_uln is None:
                continue
            points.append(
                Point(
                    day=(result.effective - found.infusion_date).days,
                    value=seen.multiple_of_uln,
                    when=result.effective,
                    note=f"{result.value} {result.unit}",
                )
            )
        series.append(Series(name=str(test), points=tuple(points), tone=tone))
    return tuple(series)


def _plain(result: LabResult, infusion: dt.date) -> Point:
    """A result as a point in its own unit."""
    return Point(day=(result.effective - infusion).days, value=result.value, when=result.effective)


def _dose_points(orders: Iterable[SteroidOrder], infusion: dt.date) -> tuple[Point, ...]:
    """The daily dose as steps: each order's dose from its start, 0 after the last one ends."""
    points: list[Point] = []
    ordered = sorted(orders, key=lambda o: (o.start, o.step))
    for index, order in enumerate(ordered):
        points.append(
            Point(
                day=(order.start - infusion).days,
                value=order.mg_per_day,
                when=order.start,
                note=f"{order.mg_per_kg_per_day} mg/kg/day",
            )
        )
        following = ordered[index + 1].start if index + 1 < len(ordered) else None
        after = order.end + dt.timedelta(days=1)
        if following is None or following > after:
            points.append(Point(day=(after - infusion).days, value=Decimal(0), when=after))
    return tuple(points)


def follow_up_charts(found: FollowUp, facts: PatientFacts, *, policy: Policy) -> list[Chart]:
    """Every chart of the follow-up view, in reading order."""
    infusion = found.infusion_date
    x_range = _range(found)
    markers = MARKERS
    platelets = _results(facts, LabTest.PLATELETS, infusion=infusion, on=found.on)
    baseline = next((r for r in platelets if r.effective <= infusion), None)
    troponin = _results(facts, LabTest.TROPONIN_I, infusion=infusion, on=found.on)
    troponin_uln = next(
        (
            seen.uln
            for r in reversed(troponin)
            if (seen := interpret(r, birth_date=facts.birth_date)).uln is not None
        ),
        None,
    )
    charts = [
        Chart(
            key="liver-enzymes",
            title="ALT and AST (multiples of the upper limit of normal)",
            unit="x ULN",
            series=_uln_series(facts, (LabTest.ALT, LabTest.AST), found),
            hlines=(HLine(label.LIVER_ULN_MULTIPLE, "2 x ULN", danger=True),),
            vlines=markers,
            x_range=x_range,
        ),
        Chart(
            key="bilirubin-inr",
            title="Total bilirubin, PT and INR (multiples of the upper limit of normal)",
            unit="x ULN",
            series=_uln_series(facts, (LabTest.BILIRUBIN_TOTAL, LabTest.PT, LabTest.INR), found),
            hlines=(HLine(Decimal(1), "ULN", danger=True),),
            vlines=markers,
            x_range=x_range,
        ),
        Chart(
            key="platelets",
            title="Platelets against baseline",
            unit="10^3/uL",
            series=(
                Series(
                    name="platelets", points=tuple(_plain(r, infusion) for r in platelets), tone=0
                ),
            ),
            hlines=(
                *((HLine(baseline.value, f"baseline {baseline.value}"),) if baseline else ()),
                HLine(
                    policy.platelets_low_10e3_per_ul,
                    f"low < {policy.platelets_low_10e3_per_ul}",
                    danger=True,
                ),
            ),
            vlines=markers,
            x_range=x_range,
        ),
        Chart(
            key="troponin",
            title="Troponin I",
            unit="ng/mL",
            series=(
                Series(
                    name="troponin I", points=tuple(_plain(r, infusion) for r in troponin), tone=2
                ),
            ),
            hlines=(HLine(troponin_uln, "ULN", danger=True),) if troponin_uln else (),
            vlines=markers,
            x_range=x_range,
        ),
    ]
    proposed = found.decision.steps if found.decision else ()
    dose_series = [
        Series(
            name="prednisolone ordered",
            points=_dose_points(found.orders, infusion),
            tone=0,
            steps=True,
        )
    ]
    if proposed:
        after = proposed[-1].end + dt.timedelta(days=1)
        steps = [
            Point(
                day=(s.start - infusion).days,
                value=s.dose_mg_per_day,
                when=s.start,
                note=f"{s.mg_per_kg_per_day} mg/kg/day",
            )
            for s in proposed
        ]
        stop = Point(day=(after - infusion).days, value=Decimal(0), when=after)
        dose_series.append(Series(name="proposed", points=(*steps, stop), tone=1, steps=True))
    charts.append(
        Chart(
            key="steroid-dose",
            title="Prednisolone dose (mg/day): full dose, taper steps",
            unit="mg/day",
            series=tuple(dose_series),
            vlines=(*markers, VLine(found.day, "today")),
            x_range=(-7, max(x_range[1], *(p.day + 7 for s in dose_series for p in s.points))),
        )
    )
    return charts
