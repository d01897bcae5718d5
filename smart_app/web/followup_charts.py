"""The follow-up charts: liver tests as multiples of ULN, platelets, troponin, steroid dose."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from decimal import Decimal

from smart_app.rules import label
from smart_app.rules.followup import FollowUp
from smart_app.rules.labs import interpret
from smart_app.rules.model import (
    DecisionBranch,
    LabResult,
    LabTest,
    PatientFacts,
    SteroidOrder,
    SteroidRole,
    SteroidStep,
)
from smart_app.rules.policy import Policy
from smart_app.rules.steroids import taper_steps
from smart_app.web.charts import Chart, HLine, Note, Point, PointLabels, Series, VLine
from smart_app.web.words import quantity, unit, weight

TIMES_ULN = "\u00d7 ULN"
"""Multiples of the upper limit of normal, as clinicians write them."""


def _results(
    facts: PatientFacts, test: LabTest, *, infusion: dt.date, on: dt.date
) -> list[LabResult]:
    """The newest baseline result and every later one up to `on`, oldest first."""
    known = [r for r in facts.labs_for(test) if r.effective <= on]
    baseline = next((r for r in known if r.effective <= infusion), None)
    after = [r for r in known if r.effective > infusion]
    chosen = ([baseline] if baseline else []) + after
    return sorted(chosen, key=lambda r: r.effective)


MARKERS = (VLine(0, "infusion"), VLine(label.LIVER_ASSESSMENT_DAY, "day-30 liver check"))
"""Infusion and the day-30 liver assessment, on every chart."""


def _range(found: FollowUp) -> tuple[int, int]:
    """From a week before infusion to a week after today (at least past the day-30 check)."""
    return (-7, max(found.day + 7, label.LIVER_ASSESSMENT_DAY + 7))


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
                    note=quantity(result.value, result.unit),
                )
            )
        series.append(
            Series(name=str(test), points=tuple(points), tone=tone, labels=PointLabels.NEWEST)
        )
    return tuple(series)


def _plain(result: LabResult, infusion: dt.date) -> Point:
    """A result as a point in its own unit."""
    return Point(day=(result.effective - infusion).days, value=result.value, when=result.effective)


def _dose_points(orders: Iterable[SteroidOrder], infusion: dt.date) -> tuple[Point, ...]:
    """The daily dose as steps: each order's dose from its start; 0 where no order covers a day
    between two orders and after the last taper step; the line simply ends after the last
    full-dose or continuation order, whose sequel is still to be decided (never drawn as a stop).
    """
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
        day_after = (after - infusion).days
        if following is None and order.role is not SteroidRole.TAPER_STEP:
            points.append(Point(day=day_after, value=order.mg_per_day, when=after, marker=False))
        elif following is None or following > after:
            note = "stopped after the taper" if following is None else "no order"
            points.append(Point(day=day_after, value=Decimal(0), when=after, note=note))
    return tuple(points)


def _step_points(
    steps: Iterable[SteroidStep], infusion: dt.date, *, basis: str = ""
) -> list[Point]:
    """Dose steps (proposed or planned) as points, each at its first day; `basis` says what
    weight the doses were calculated on, when the reader needs telling."""
    return [
        Point(
            day=(s.start - infusion).days,
            value=s.dose_mg_per_day,
            when=s.start,
            note=f"{s.mg_per_kg_per_day} mg/kg/day{basis}",
        )
        for s in steps
    ]


def _end(steps: tuple[SteroidStep, ...], infusion: dt.date, *, stop: bool) -> Point:
    """After the last step: a stop at 0 (a taper's end), or the line held to the step's last day
    (a continuation, whose sequel the next liver check decides)."""
    after = steps[-1].end + dt.timedelta(days=1)
    if stop:
        return Point(
            day=(after - infusion).days, value=Decimal(0), when=after, note="stop after the taper"
        )
    return Point(
        day=(after - infusion).days, value=steps[-1].dose_mg_per_day, when=after, marker=False
    )


PENDING = "decision pending"
PENDING_TITLE = (
    "The liver check decides what follows: taper when it is unremarkable, else continue "
    "1 mg/kg/day (2.1). Never stop abruptly."
)


def _dose_chart(
    found: FollowUp, *, policy: Policy, markers: tuple[VLine, ...], x_range: tuple[int, int]
) -> Chart:
    """The prednisolone dose: what is ordered, what this decision proposes, and what follows
    while the liver check is pending (the planned taper, dashed, when the order gives the weight
    it was dosed on)."""
    infusion = found.infusion_date
    ordered = sorted(found.orders, key=lambda o: (o.start, o.step))
    series = [
        Series(
            name="prednisolone ordered",
            points=_dose_points(ordered, infusion),
            tone=0,
            steps=True,
            labels=PointLabels.CHANGES,
        )
    ]
    notes: list[Note] = []
    decision = found.decision
    proposed = decision.steps if decision else ()
    tapering = bool(ordered) and ordered[-1].role is SteroidRole.TAPER_STEP
    if proposed:
        taper = decision is not None and decision.branch is DecisionBranch.TAPER
        name = "proposed taper (institution default)" if taper else "proposed: full dose continued"
        points = (*_step_points(proposed, infusion), _end(proposed, infusion, stop=taper))
        series.append(
            Series(name=name, points=points, tone=1, steps=True, labels=PointLabels.CHANGES)
        )
        if not taper:
            notes.append(Note(points[-1].day, points[-1].value, PENDING, PENDING_TITLE))
    elif ordered and not tapering:
        last = ordered[-1]
        after = last.end + dt.timedelta(days=1)
        notes.append(Note((after - infusion).days, last.mg_per_day, PENDING, PENDING_TITLE))
        if last.weight_kg is not None:
            steps = taper_steps(last.weight_kg, first_day=after, policy=policy)
            basis = (
                f" on {weight(last.weight_kg)}, the weight the order was dosed on; the decision "
                "doses the taper on the newest weight"
            )
            points = (
                *_step_points(steps, infusion, basis=basis),
                _end(steps, infusion, stop=True),
            )
            series.append(
                Series(
                    name="planned taper (institution default)",
                    points=points,
                    tone=1,
                    steps=True,
                    labels=PointLabels.CHANGES,
                    planned=True,
                )
            )
    days = [p.day for s in series for p in s.points] + [n.day for n in notes]
    return Chart(
        key="steroid-dose",
        title="Prednisolone dose (mg/day): full dose, taper steps",
        unit="mg/day",
        series=tuple(series),
        vlines=(*markers, VLine(found.day, "today")),
        x_range=(x_range[0], max([x_range[1], *(d + 7 for d in days)])),
        notes=tuple(notes),
        origin=infusion,
    )


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
            unit=TIMES_ULN,
            series=_uln_series(facts, (LabTest.ALT, LabTest.AST), found),
            hlines=(HLine(label.LIVER_ULN_MULTIPLE, f"2 {TIMES_ULN}", danger=True),),
            vlines=markers,
            x_range=x_range,
            origin=infusion,
        ),
        Chart(
            key="bilirubin-inr",
            title="Total bilirubin, PT and INR (multiples of the upper limit of normal)",
            unit=TIMES_ULN,
            series=_uln_series(facts, (LabTest.BILIRUBIN_TOTAL, LabTest.PT, LabTest.INR), found),
            hlines=(HLine(Decimal(1), "ULN", danger=True),),
            vlines=markers,
            x_range=x_range,
            origin=infusion,
        ),
        Chart(
            key="platelets",
            title="Platelets against baseline",
            unit=unit("10*3/uL"),
            series=(
                Series(
                    name="platelets",
                    points=tuple(_plain(r, infusion) for r in platelets),
                    tone=0,
                    labels=PointLabels.NEWEST,
                ),
            ),
            hlines=(
                *((HLine(baseline.value, f"baseline {baseline.value}"),) if baseline else ()),
                HLine(
                    policy.platelets_low_10e3_per_ul,
                    f"low < {policy.platelets_low_10e3_per_ul}",
                    danger=True,
                    title=f"Low platelets: below {policy.platelets_low_10e3_per_ul} "
                    f"{unit('10*3/uL')} (an institution default, not a label number)",
                ),
            ),
            vlines=markers,
            x_range=x_range,
            origin=infusion,
        ),
        Chart(
            key="troponin",
            title="Troponin I",
            unit="ng/mL",
            series=(
                Series(
                    name="troponin I",
                    points=tuple(_plain(r, infusion) for r in troponin),
                    tone=2,
                    labels=PointLabels.NEWEST,
                ),
            ),
            hlines=(HLine(troponin_uln, "ULN", danger=True),) if troponin_uln else (),
            vlines=markers,
            x_range=x_range,
            origin=infusion,
        ),
    ]
    charts.append(_dose_chart(found, policy=policy, markers=markers, x_range=x_range))
    return charts
