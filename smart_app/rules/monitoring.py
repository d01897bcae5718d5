"""The dated monitoring schedule: baseline, infusion, labs for three months, decision points."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from smart_app.rules import label
from smart_app.rules.arith import add_months
from smart_app.rules.model import ActivityKind, LabTest, ScheduleItem, SteroidCourse
from smart_app.rules.policy import Policy
from smart_app.rules.steroids import daily_dose_mg, volume_ml

LIVER_PANEL: tuple[LabTest, ...] = (
    LabTest.AST,
    LabTest.ALT,
    LabTest.BILIRUBIN_TOTAL,
    LabTest.PT,
    LabTest.INR,
)
"""Sections 2.3 and 5.1: the liver tests repeated after infusion."""

WEEKLY_DAYS = (7, 14, 21, 28)
"""'Weekly for the first month' after infusion (infusion = day 0)."""

LAB_ORDER = tuple(LabTest)
"""The lab tests in the order a draw lists them."""

MONITORING_MONTHS = 3
"""Section 5.1: liver function 'for at least 3 months after ZOLGENSMA infusion'; sections 2.3
and 5.3: platelets 'every other week for the second and third months'."""


def three_months_after(infusion_date: dt.date) -> dt.date:
    """The date monitoring reaches 3 calendar months after infusion (2026-11-30 -> 2027-02-28)."""
    return add_months(infusion_date, months=MONITORING_MONTHS)


@dataclass(frozen=True)
class _Stream:
    """One repeating monitoring requirement before it is merged into draws by date."""

    days: tuple[int, ...]
    tests: tuple[LabTest, ...]
    section: str
    weekly: bool
    institution_default: bool = False
    conditional: str = ""
    opens_on_date: bool = False
    """The draw is not on time before its date (the 3-month draw)."""


@dataclass(frozen=True)
class LiverDays:
    """Liver panels after the day-30 check: weekly ones, then every-other-week ones."""

    weekly: tuple[int, ...]
    biweekly: tuple[int, ...] = ()
    conditional: str = "weekly while the corticosteroid taper lasts (longer if the taper is)"


def taper_liver_days(*, taper_first_day: int, taper_days: int) -> LiverDays:
    """Weekly through a taper starting on `taper_first_day`, then every other week for a month."""
    taper_end = taper_first_day + taper_days - 1
    weekly = tuple(range(taper_first_day + 6, taper_end + 1, 7))
    if not weekly or weekly[-1] != taper_end:
        weekly = (*weekly, taper_end)
    return LiverDays(weekly=weekly, biweekly=(taper_end + 14, taper_end + 28))


def default_liver_days(policy: Policy) -> LiverDays:
    """The liver panels of a taper that starts the day after the day-30 check (the plan)."""
    return taper_liver_days(
        taper_first_day=label.STEROID_FULL_DOSE_DAYS - 1, taper_days=sum(policy.taper_step_days)
    )


def _streams(policy: Policy, liver: LiverDays) -> tuple[_Stream, ...]:
    """Every lab requirement after infusion, from the label and the institution's defaults."""
    return (
        _Stream(WEEKLY_DAYS, LIVER_PANEL, "2.3; 5.1", weekly=True),
        _Stream(liver.weekly, LIVER_PANEL, "2.3; 5.1", weekly=True, conditional=liver.conditional),
        _Stream(
            liver.biweekly,
            LIVER_PANEL,
            "2.3; 5.1",
            weekly=False,
            conditional="every other week for a month after an unremarkable end of taper",
        ),
        _Stream(WEEKLY_DAYS, (LabTest.PLATELETS,), "2.3; 5.3", weekly=True),
        _Stream(
            (42, 56, 70, 84),
            (LabTest.PLATELETS,),
            "2.3; 5.3",
            weekly=False,
            conditional="every other week in months 2 and 3, until platelets return to baseline",
        ),
        _Stream(
            policy.troponin_days,
            (LabTest.TROPONIN_I,),
            "5.5",
            weekly=True,
            institution_default=True,
        ),
        _Stream(
            policy.tma_lab_days,
            (LabTest.CREATININE, LabTest.HEMOGLOBIN),
            "5.4",
            weekly=True,
            institution_default=True,
        ),
    )


def _three_month_streams(streams: tuple[_Stream, ...], *, day: int) -> tuple[_Stream, ...]:
    """A draw on the 3-month day for the liver panel and platelets when theirs end before it."""
    needs = (
        (
            LIVER_PANEL,
            "2.3; 5.1",
            "'continue to monitor liver function ... for at least 3 months after ZOLGENSMA "
            "infusion' (5.1)",
        ),
        (
            (LabTest.PLATELETS,),
            "2.3; 5.3",
            "through the third month, 'every other week for the second and third months'",
        ),
    )
    found = []
    for tests, section, conditional in needs:
        last = max(
            (d for s in streams if any(t in s.tests for t in tests) for d in s.days), default=0
        )
        if last < day:
            found.append(
                _Stream(
                    (day,),
                    tests,
                    section,
                    weekly=False,
                    conditional=conditional,
                    opens_on_date=True,
                )
            )
    return tuple(found)


def _join(parts: list[str]) -> str:
    """Distinct non-empty parts in first-seen order, '; '-separated."""
    seen: list[str] = []
    for part in parts:
        for piece in part.split("; "):
            if piece and piece not in seen:
                seen.append(piece)
    return "; ".join(seen)


def sections(parts: Iterable[str]) -> str:
    """Distinct label sections in numeric order: '2.3; 5.1; 5.4; 5.5'."""
    numbers = {n for part in parts for n in part.split("; ")}
    return "; ".join(sorted(numbers, key=lambda n: tuple(int(p) for p in n.split("."))))


def lab_draws(
    infusion_date: dt.date, *, policy: Policy, liver: LiverDays | None = None
) -> tuple[ScheduleItem, ...]:
    """Post-infusion lab draws, one per date, each with the union of tests due that day; the
    liver panel and platelets last on or after the date 3 calendar months after infusion."""
    streams = _streams(policy, liver or default_liver_days(policy))
    three_months = (three_months_after(infusion_date) - infusion_date).days
    streams += _three_month_streams(streams, day=three_months)
    by_day: dict[int, list[_Stream]] = {}
    for stream in streams:
        for day in stream.days:
            by_day.setdefault(day, []).append(stream)
    items = []
    for day in sorted(by_day):
        streams = by_day[day]
        due = {t for s in streams for t in s.tests}
        tests = tuple(t for t in LAB_ORDER if t in due)
        date = infusion_date + dt.timedelta(days=day)
        slack = dt.timedelta(
            days=policy.weekly_window_days
            if any(s.weekly for s in streams)
            else policy.biweekly_window_days
        )
        defaults = [", ".join(s.tests) for s in streams if s.institution_default]
        conditional = _join(
            [f"{', '.join(s.tests)}: {s.conditional}" for s in streams if s.conditional]
        )
        activity = f"Lab draw, day {day}: {', '.join(tests)}"
        opens_on_date = any(s.opens_on_date for s in streams)
        if opens_on_date:
            activity += " (3 months after infusion)"
        if defaults:
            activity += f" ({'; '.join(defaults)} by institution default)"
        items.append(
            ScheduleItem(
                date=date,
                day=day,
                kind=ActivityKind.LAB_DRAW,
                activity=activity,
                tests=tests,
                section=sections(s.section for s in streams),
                window_start=date if opens_on_date else date - slack,
                window_end=date + slack,
                institution_default=all(s.institution_default for s in streams),
                conditional=conditional,
            )
        )
    return tuple(items)


def _item(
    infusion_date: dt.date,
    day: int,
    kind: ActivityKind,
    activity: str,
    section: str,
    *,
    tests: tuple[LabTest, ...] = (),
    window_days: tuple[int, int] = (0, 0),
    conditional: str = "",
    institution_default: bool = False,
) -> ScheduleItem:
    """A dated item `day` days from infusion, due `window_days` (before, after) around it."""
    date = infusion_date + dt.timedelta(days=day)
    return ScheduleItem(
        date=date,
        day=day,
        kind=kind,
        activity=activity,
        tests=tests,
        section=section,
        window_start=date - dt.timedelta(days=window_days[0]),
        window_end=date + dt.timedelta(days=window_days[1]),
        conditional=conditional,
        institution_default=institution_default,
    )


def schedule(
    infusion_date: dt.date, *, policy: Policy, steroids: SteroidCourse | None = None
) -> tuple[ScheduleItem, ...]:
    """Every dated activity from baseline to three months after infusion, in date order."""
    lookback = policy.baseline_lab_max_age_days
    full_dose_days = label.STEROID_FULL_DOSE_DAYS
    check_day = label.LIVER_ASSESSMENT_DAY
    dose_text = (
        f" = {steroids.dose_mg_per_day} mg ({steroids.volume_ml_per_day} mL) daily"
        if steroids
        else ""
    )
    items = [
        _item(
            infusion_date,
            -1,
            ActivityKind.BASELINE,
            "Baseline: clinical exam (hydration, nutrition, no infection) and the liver clinical "
            "exam; "
            f"{', '.join(policy.baseline_tests)}; anti-AAV9 antibody titer",
            "2.1; 2.3; 5.1; 6.2",
            tests=policy.baseline_tests,
            window_days=(lookback - 1, 0),
        ),
        _item(
            infusion_date,
            -1,
            ActivityKind.COUNSELING,
            "Caregiver counseling: liver injury signs and steroid adherence, vaccinations, "
            "infection, bruising or bleeding, TMA signs, tumor reporting, vector shedding, "
            "infusion reactions",
            "17",
            window_days=(lookback - 1, 0),
        ),
        _item(
            infusion_date,
            -1,
            ActivityKind.STEROID_START,
            f"Start prednisolone-equivalent 1 mg/kg/day{dose_text}, 24 hours before infusion "
            f"(HCP Day 1); full dose for {full_dose_days} days, through day {check_day}",
            "2.1",
        ),
        _item(
            infusion_date,
            0,
            ActivityKind.INFUSION,
            "ZOLGENSMA infusion over 60 minutes by syringe pump, never IV push or bolus (HCP "
            "Day 2); back-up catheter; no signs of infection; monitor for infusion-related "
            "reactions during and after",
            "2.1; 5.2; 5.7",
        ),
        _item(
            infusion_date,
            0,
            ActivityKind.VIGILANCE,
            "TMA and platelet vigilance, days 0-14: hypertension, bruising, seizures, "
            "decreased urine output; low platelets prompt evaluation for hemolysis and renal "
            "dysfunction",
            "5.3; 5.4",
            window_days=(0, 14),
        ),
        _item(
            infusion_date,
            check_day,
            ActivityKind.LIVER_ASSESSMENT,
            f"Day-30 liver assessment (HCP Day 30, infusion + {check_day}): clinical exam and "
            "ALT, AST, total bilirubin, PT, INR decide the taper",
            "2.1; 2.3; 5.1",
            tests=LIVER_PANEL,
            window_days=(policy.weekly_window_days, policy.weekly_window_days),
        ),
    ]
    items.extend(lab_draws(infusion_date, policy=policy))
    first_taper_day = check_day + 1
    for step_index, (mg_per_kg, days) in enumerate(
        zip(policy.taper_mg_per_kg_per_day, policy.taper_step_days, strict=True)
    ):
        amount = ""
        if steroids is not None:
            mg = daily_dose_mg(steroids.weight_kg, mg_per_kg)
            ml = volume_ml(mg, concentration_mg_per_ml=steroids.concentration_mg_per_ml)
            amount = f" = {mg} mg ({ml} mL)"
        items.append(
            _item(
                infusion_date,
                first_taper_day,
                ActivityKind.TAPER_STEP,
                f"Taper step {step_index + 1}: {mg_per_kg} mg/kg/day{amount} for {days} days "
                "(institution default)",
                "2.1",
                conditional="only after an unremarkable day-30 liver assessment",
                institution_default=True,
            )
        )
        first_taper_day += days
    items.append(
        _item(
            infusion_date,
            first_taper_day,
            ActivityKind.STEROID_END,
            f"Corticosteroid course ends (last taper dose on day {first_taper_day - 1})",
            "2.1",
            conditional="only after an unremarkable day-30 liver assessment and a full taper",
        )
    )
    order = list(ActivityKind)
    return tuple(sorted(items, key=lambda i: (i.date, order.index(i.kind), i.activity)))
