"""Builders the test modules share (instead of a copy in each, or imports from test modules).

- files, tables and FHIR JSON: `write_file`, `toml_table` (a parsed TOML table with changes),
  `searchset`;
- any date: `evidence`, `measurement`, and `Timeline` for results dated by day after an infusion;
- before infusion: `eligible()`, a complete eligible 5-month-old, and `baseline_lab`;
- after infusion: the follow-up scenario around an infusion on 2026-10-24 (day 28 = 2026-11-21,
  the day-30 liver assessment in the manufacturer's numbering): `day`, `lab`, `weight`, `plan`,
  `patient`, `normal_labs`, `tapered`, `continued`, ...
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from smart_app.rules.model import (
    ActivityKind,
    Comparator,
    DecisionBranch,
    Evidence,
    LabResult,
    LabTest,
    Measurement,
    PatientFacts,
    PlannedTask,
    PlanState,
    RecordedDecision,
    ScheduleItem,
    SteroidOrder,
    SteroidRole,
    SteroidStep,
    Titer,
)
from smart_app.rules.monitoring import schedule
from smart_app.rules.policy import DEFAULT_POLICY
from smart_app.rules.steroids import taper_steps

# Files, tables and FHIR JSON --------------------------------------------------------------------


def write_file(folder: Path, text: str, name: str = "registrations.toml") -> Path:
    """`text` written to `folder/name` (UTF-8); its path."""
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def toml_table(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """A TOML table as parsed: `base` with `changes`, a change to None removing the key."""
    raw = {**base, **changes}
    return {key: value for key, value in raw.items() if value is not None}


def searchset(*resources: dict[str, Any], next_url: str | None = None) -> dict[str, Any]:
    """A searchset of `resources`, with a `next` link when given."""
    out: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r} for r in resources],
    }
    if next_url:
        out["link"] = [{"relation": "next", "url": next_url}]
    return out


# Any date ---------------------------------------------------------------------------------------


def evidence(name: str, value: object = "", on: dt.date | None = None) -> Evidence:
    """The evidence of Observation/<name>, with the value as recorded."""
    return Evidence(f"Observation/{name}", str(value), date=on)


def measurement(name: str, value: str, unit: str, on: dt.date) -> Measurement:
    """A measurement in its canonical unit, cited as Observation/<name>."""
    return Measurement(Decimal(value), unit, on, evidence(name, value, on))


@dataclass(frozen=True)
class Timeline:
    """Results dated by day after an infusion (day 0; negative: before), each cited as
    Observation/<test>-d<n>, with the upper limits of normal a laboratory reports."""

    infusion: dt.date
    uln: Mapping[LabTest, Decimal]

    def day(self, n: int) -> dt.date:
        """The date `n` days after infusion (infusion = day 0; negative: before)."""
        return self.infusion + dt.timedelta(days=n)

    def reference(self, test: LabTest, n: int) -> str:
        """The Observation reference `lab` gives a result of `test` on day `n`."""
        return f"Observation/{test.name.lower()}-d{n}"

    def lab(
        self,
        test: LabTest,
        value: str,
        n: int,
        *,
        uln: Decimal | None = None,
        reported: bool = True,
        comparator: Comparator = Comparator.EQ,
        final: bool = True,
    ) -> LabResult:
        """A result on day `n` with its reported ULN (`uln`, else the laboratory's; none when
        not `reported`)."""
        shown = (uln if uln is not None else self.uln.get(test)) if reported else None
        when = self.day(n)
        found = Evidence(self.reference(test, n), value, date=when)
        return LabResult(test, Decimal(value), when, found, shown, comparator, final)


# Before infusion: an eligible infant ------------------------------------------------------------

LAB_DAY = dt.date(2026, 11, 16)
"""The day the eligible infant's baseline results were drawn."""
BASELINE_ULN = {
    LabTest.ALT: Decimal(45),
    LabTest.AST: Decimal(60),
    LabTest.BILIRUBIN_TOTAL: Decimal("1.2"),
}
"""Reported upper limits of normal of the eligible infant's results (the rest: 1000)."""


def baseline_lab(
    test: LabTest, value: str, on: dt.date = LAB_DAY, uln: Decimal | None = None
) -> LabResult:
    """A baseline result cited as Observation/<TEST>, with its reported ULN."""
    reported = uln if uln is not None else BASELINE_ULN.get(test, Decimal(1000))
    return LabResult(test, Decimal(value), on, evidence(test.name, value, on), reported)


def eligible(**changes: object) -> PatientFacts:
    """A complete, eligible 5-month-old; keyword arguments replace fields."""
    facts = PatientFacts(
        patient_id="p",
        birth_date=dt.date(2026, 6, 10),
        weights_kg=(measurement("w", "6.12", "kg", dt.date(2026, 11, 18)),),
        gestational_age_days=(measurement("ga", "273", "d", dt.date(2026, 6, 10)),),
        labs=tuple(baseline_lab(test, "1") for test in LabTest),
        titers=(
            Titer(Decimal(25), Comparator.LT, dt.date(2026, 11, 9), evidence("titer", "<1:25")),
        ),
        smn1_copies=(measurement("smn1", "0", "{copies}", dt.date(2026, 8, 20)),),
        sma_conditions=(Evidence("Condition/sma", "SMA type 1"),),
    )
    return dataclasses.replace(facts, **changes)


# After infusion: the follow-up scenario (infusion 2026-10-24) -----------------------------------

INFUSION = dt.date(2026, 10, 24)

BIRTH = dt.date(2026, 6, 20)

POLICY = DEFAULT_POLICY

ALT = LabTest.ALT

AST = LabTest.AST

BILI = LabTest.BILIRUBIN_TOTAL

PT = LabTest.PT

INR = LabTest.INR

CREAT = LabTest.CREATININE

HGB = LabTest.HEMOGLOBIN

PLT = LabTest.PLATELETS

TNI = LabTest.TROPONIN_I

ALB = LabTest.ALBUMIN

ULN: dict[LabTest, Decimal] = {
    ALT: Decimal(45),
    AST: Decimal(60),
    BILI: Decimal("1.2"),
    PT: Decimal("14.5"),
    INR: Decimal("1.3"),
    TNI: Decimal("0.04"),
    CREAT: Decimal("0.5"),
    LabTest.ALBUMIN: Decimal("5.0"),
    LabTest.PTT: Decimal(45),
}
"""Reported upper limits of normal (platelets and hemoglobin report none)."""

NORMAL: dict[LabTest, str] = {
    ALT: "24",
    AST: "38",
    BILI: "0.4",
    PT: "12.5",
    INR: "1.0",
    PLT: "318",
    TNI: "0.01",
    CREAT: "0.3",
    HGB: "11.8",
    LabTest.ALBUMIN: "4.0",
    LabTest.PTT: "32",
}

TASK_KINDS = (
    ActivityKind.BASELINE,
    ActivityKind.COUNSELING,
    ActivityKind.VIGILANCE,
    ActivityKind.LAB_DRAW,
    ActivityKind.LIVER_ASSESSMENT,
)

WEIGHT_DAYS = tuple(range(-8, 120, 7))
"""Weighed weekly: days -8, -1, 6, 13, 20, 27, 34, ..."""

FOLLOW_UP = Timeline(INFUSION, ULN)
"""Days and results of the follow-up scenario."""
day = FOLLOW_UP.day
lab = FOLLOW_UP.lab


def weight(n: int) -> Measurement:
    """The weight on day `n`: 5.4 kg on the eve of infusion, growing 25 g a day."""
    kg = Decimal("5.4") + Decimal("0.025") * (n + 1)
    return Measurement(kg, "kg", day(n), Evidence(f"Observation/weight-d{n}", str(kg), "kg"))


def items() -> tuple[ScheduleItem, ...]:
    """The scheduled activities that become Tasks."""
    return tuple(i for i in schedule(INFUSION, policy=POLICY) if i.kind in TASK_KINDS)


def draw_items() -> tuple[ScheduleItem, ...]:
    """The scheduled post-infusion lab draws."""
    return tuple(i for i in items() if i.kind is ActivityKind.LAB_DRAW)


def planned(item: ScheduleItem, n: int, status: str = "requested") -> PlannedTask:
    """The Task the plan writer would have created for a scheduled item."""
    return PlannedTask(
        reference=f"Task/t{n}",
        item=f"task/{item.kind.value}/day{item.day}",
        kind=item.kind,
        day=item.day,
        window_start=item.window_start,
        window_end=item.window_end,
        tests=item.tests,
        status=status,
        description=item.activity,
    )


def all_tasks(statuses: dict[str, str] | None = None) -> tuple[PlannedTask, ...]:
    """Every Task of the plan, 'requested' unless `statuses` gives one for its item."""
    given = statuses or {}
    found = []
    for n, item in enumerate(items(), start=1):
        task = planned(item, n)
        found.append(dataclasses.replace(task, status=given.get(task.item, "requested")))
    return tuple(found)


FULL_DOSE = SteroidOrder(
    reference="MedicationRequest/m1",
    item="medicationrequest/prednisolone",
    role=SteroidRole.FULL_DOSE,
    start=day(-1),
    end=day(28),
    mg_per_day=Decimal("5.4"),
    mg_per_kg_per_day=Decimal(1),
    volume_ml_per_day=Decimal("1.8"),
    status="active",
    weight_kg=Decimal("5.4"),
)


def orders_for(
    steps: tuple[SteroidStep, ...], key: str, role: SteroidRole, *, first: int = 2
) -> tuple[SteroidOrder, ...]:
    """The orders the decision writer creates for `steps`."""
    found = []
    for number, step in enumerate(steps, start=1):
        suffix = f"taper-{number}" if role is SteroidRole.TAPER_STEP else "continue"
        found.append(
            SteroidOrder(
                reference=f"MedicationRequest/m{first + number - 1}",
                item=f"medicationrequest/{key}/{suffix}",
                role=role,
                start=step.start,
                end=step.end,
                mg_per_day=step.dose_mg_per_day,
                mg_per_kg_per_day=step.mg_per_kg_per_day,
                volume_ml_per_day=step.volume_ml_per_day,
                status="active",
                step=number if role is SteroidRole.TAPER_STEP else 0,
            )
        )
    return tuple(found)


def plan(
    *,
    orders: tuple[SteroidOrder, ...] = (FULL_DOSE,),
    tasks: tuple[PlannedTask, ...] | None = None,
    decisions: tuple[RecordedDecision, ...] = (),
    consult: str | None = None,
    administered: bool = True,
) -> PlanState:
    """The plan as read back from the chart."""
    evidence = Evidence("MedicationAdministration/a1", "ZOLGENSMA administered", date=INFUSION)
    return PlanState(
        plan_key="plan-1",
        care_plan="CarePlan/cp1",
        infusion_date=INFUSION,
        infusion_evidence=evidence if administered else None,
        steroid_orders=orders,
        tasks=all_tasks() if tasks is None else tasks,
        decisions=decisions,
        consult=consult,
    )


def tapered(decided: int = 28, taper_first: int = 29) -> PlanState:
    """A TAPER decision recorded on day `decided`, its taper steps ordered from `taper_first`."""
    key = f"{day(decided)}-taper"
    newest = max(d for d in WEIGHT_DAYS if d <= decided)
    steps = taper_steps(weight(newest).value, first_day=day(taper_first), policy=POLICY)
    return plan(
        orders=(FULL_DOSE, *orders_for(steps, key, SteroidRole.TAPER_STEP)),
        tasks=all_tasks({"task/liver-assessment/day28": "completed"}),
        decisions=(
            RecordedDecision(f"task/liver-assessment/{key}", DecisionBranch.TAPER, day(decided)),
        ),
    )


(CONTINUATION,) = orders_for(
    (SteroidStep(day(29), day(56), Decimal(1), Decimal("6.1"), Decimal("2.0")),),
    "2026-11-21-continue",
    SteroidRole.CONTINUATION,
)

CONTINUED = RecordedDecision(
    "task/liver-assessment/2026-11-21-continue", DecisionBranch.CONTINUE, day(28)
)


def continued() -> PlanState:
    """A CONTINUE decision recorded on day 28 and 1 mg/kg/day ordered for days 29-56."""
    return plan(
        orders=(FULL_DOSE, CONTINUATION),
        tasks=all_tasks({"task/liver-assessment/day28": "completed"}),
        decisions=(CONTINUED,),
    )


def normal_labs(*, through: int = 200) -> list[LabResult]:
    """Unremarkable baseline results on day -3 and every scheduled draw up to day `through`."""
    found = [lab(t, NORMAL[t], -3) for t in POLICY.baseline_tests]
    for item in draw_items():
        if item.day <= through:
            found.extend(lab(t, NORMAL[t], item.day) for t in item.tests)
    return found


def changed(labs: list[LabResult], *new: LabResult, drop: tuple[tuple[LabTest, int], ...] = ()):
    """`labs` with `new` replacing any result of the same test and date, and `drop` removed."""
    gone = {(t, day(n)) for t, n in drop} | {(r.test, r.effective) for r in new}
    return [r for r in labs if (r.test, r.effective) not in gone] + list(new)


def patient(
    labs: list[LabResult] | None = None,
    *,
    weights: tuple[int, ...] = WEIGHT_DAYS,
    birth_date: dt.date | None = BIRTH,
) -> PatientFacts:
    """The patient with these results and weights, newest first as the reader delivers them."""
    ordered = sorted(normal_labs() if labs is None else labs, key=lambda r: r.effective)
    return PatientFacts(
        patient_id="p1",
        birth_date=birth_date,
        weights_kg=tuple(weight(n) for n in sorted(weights, reverse=True)),
        labs=tuple(reversed(ordered)),
    )
