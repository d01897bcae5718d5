"""A Plan as JSON text and as a readable summary for a pharmacist (its JSON form is in
smart_app.plan_json; the write rows in smart_app.report, the digest in smart_app.digest: all
re-exported here)."""

from __future__ import annotations

import textwrap
from typing import Any

from smart_app.digest import fingerprint as fingerprint
from smart_app.jsontext import dumps_indented
from smart_app.plan_json import boxed_warning_data as boxed_warning_data
from smart_app.plan_json import dose_data as dose_data
from smart_app.plan_json import evidence_data as evidence_data
from smart_app.plan_json import finding_data as finding_data
from smart_app.plan_json import iso_day as iso_day
from smart_app.plan_json import plan_data as plan_data
from smart_app.report import report_data as report_data
from smart_app.report import written_data as written_data
from smart_app.rules import label
from smart_app.rules.dosing import between_bands, no_kit_reason, sci
from smart_app.rules.model import Dose, Evidence, Plan, SteroidCourse


def to_json(data: Any) -> str:
    """Stable, human-diffable JSON text with a trailing newline (json.dumps(indent=2)'s text)."""
    return dumps_indented(data) + "\n"


def wrap(text: str, indent: int) -> str:
    """Wrap to 96 columns under a hanging indent."""
    pad = " " * indent
    return textwrap.fill(text, width=96, initial_indent=pad, subsequent_indent=pad)


def truncated_text(searches: list[str]) -> str:
    """A paragraph naming the searches cut at the page bound ('' when none were)."""
    if not searches:
        return ""
    listed = "; ".join(searches)
    return (
        wrap(
            f"TRUNCATED: {len(searches)} search(es) had more results than the app reads; the "
            f"rest (the oldest, where sorted by date) was not seen: {listed}",
            0,
        )
        + "\n"
    )


def _evidence_line(e: Evidence) -> str:
    """'Observation/x: 1:25 (2026-11-01)'."""
    value = f"{e.value} {e.unit}".strip()
    when = f" ({e.date})" if e.date else ""
    return f"{e.reference}: {value}{when}" if value else f"{e.reference}{when}"


def plan_text(plan: Plan) -> str:
    """A readable summary: status and reasons first, then dose, steroids, schedule."""
    out = [f"ZOLGENSMA plan for Patient/{plan.patient_id}"]
    if plan.birth_date:
        out.append(
            f"  born {plan.birth_date}; {plan.age_days_on_infusion} days old on the infusion day; "
            f"last labeled infusion day {plan.last_labeled_infusion_date}"
        )
    out.append(f"  evaluated {plan.evaluated_on} for infusion on {plan.infusion_date}")
    out.append(f"  {plan.label_version}; {plan.policy_version}")
    out.append("")
    out.extend(_boxed_warning_text(label.BOXED_WARNING))
    out.append("")
    out.append(f"ELIGIBILITY: {plan.eligibility.status.value.upper()}")
    for f in plan.eligibility.findings:
        out.append(f"  [{f.severity.value}] {f.code.value} (section {f.section})")
        out.append(wrap(f.message, 6))
        out.extend(wrap(f"evidence: {_evidence_line(e)}", 6) for e in f.evidence)
    out.append("")
    out.extend(_dose_text(plan.dose))
    out.append("")
    out.extend(_steroid_text(plan.steroids))
    out.append("")
    out.append("SCHEDULE (day 0 = infusion; HCP Day = day + 2)")
    for i in plan.schedule:
        flags = " [institution default]" if i.institution_default else ""
        out.append(f"  {i.date}  day {i.day:>3}  HCP Day {i.hcp_day:>3}  {i.kind.value}{flags}")
        out.append(wrap(f"{i.activity} (section {i.section})", 6))
        if i.conditional:
            out.append(wrap(f"if: {i.conditional}", 6))
    out.append("")
    out.append("CAREGIVER COUNSELING (section 17)")
    for c in plan.counseling:
        out.append(wrap(f"- {c.topic}: {c.text}", 2))
    return "\n".join(out) + "\n"


def _boxed_warning_text(warning: label.BoxedWarning) -> list[str]:
    """The boxed warning in short, as lines."""
    out = [f"BOXED {warning.title} ({warning.section})"]
    out.extend(wrap(f"- {text}", 2) for text in warning.says)
    out.extend(wrap(f"- before infusion: {text}", 2) for text in warning.before_infusion)
    out.extend(wrap(f"- after infusion: {text}", 2) for text in warning.after_infusion)
    return out


def _dose_text(dose: Dose | None) -> list[str]:
    """The dose card as lines."""
    if dose is None:
        return [f"DOSE: none ({no_kit_reason(None)})"]
    kit = dose.kit
    rounded = (
        f" (between bands: rounded up to {dose.band_weight_kg} kg)"
        if between_bands(dose.weight_kg)
        else ""
    )
    return [
        f"DOSE: kit NDC {kit.ndc}, band {kit.band_low_kg}-{kit.band_high_kg} kg",
        f"  weight {dose.weight_kg} kg{rounded}",
        f"  {kit.vials} vials = {kit.total_vials} vials ({kit.capacity_ml} mL)",
        f"  dose volume {kit.dose_volume_ml} mL = {sci(dose.vector_genomes)} vg "
        f"({sci(dose.vector_genomes_per_kg)} vg/kg)",
        f"  infuse over {dose.infusion_minutes} min by syringe pump at {dose.pump_rate_ml_per_h} "
        "mL/h; never IV push or bolus",
    ]


def _steroid_text(course: SteroidCourse | None) -> list[str]:
    """The corticosteroid course as lines."""
    if course is None:
        return ["PREDNISOLONE: not computed (no dose)"]
    out = [
        f"PREDNISOLONE 1 mg/kg/day on {course.weight_kg} kg "
        f"(oral solution {course.concentration_mg_per_ml} mg/mL)",
        f"  {course.dose_mg_per_day} mg = {course.volume_ml_per_day} mL once daily, "
        f"{course.start_date} to {course.full_dose_through} (30 days)",
        f"  liver assessment {course.liver_check_date}; if unremarkable, taper:",
    ]
    out.extend(
        f"    {s.start} to {s.end}  {s.mg_per_kg_per_day} mg/kg/day = {s.dose_mg_per_day} mg "
        f"= {s.volume_ml_per_day} mL daily"
        for s in course.taper
    )
    out.append(wrap(course.taper_basis, 2))
    return out


def dose_table(rows: list[dict[str, Any]]) -> str:
    """The dose command's rows as an aligned table, one weight per line."""
    lines = [
        f"{'weight':>10}  {'kg':>8}  {'band kg':>9}  {'NDC':<12}  {'mL':>5}  "
        f"{'vials 5.5+8.3':<13}  {'mL/h':>5}"
    ]
    for row in rows:
        given = f"{row['weight']} {row['unit']}"
        d = row["dose"]
        if d is None:
            lines.append(f"{given:>10}  {row['weight_kg']:>8}  {row['reason']}")
            continue
        band = f"{d['band_kg'][0]}-{d['band_kg'][1]}"
        vials = f"{d['total_vials']} = {d['vials_5_5_ml']} + {d['vials_8_3_ml']}"
        lines.append(
            f"{given:>10}  {row['weight_kg']:>8}  {band:>9}  {d['kit_ndc']:<12}  "
            f"{d['dose_volume_ml']:>5}  {vials:<13}  {d['pump_rate_ml_per_h']:>5}"
        )
    return "\n".join(lines) + "\n"


def written_text(rows: list[dict[str, str]]) -> str:
    """The WRITTEN section of the text report: every entry's outcome, failures with why."""
    if not rows:
        return "\nWRITTEN: nothing\n"
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["outcome"]] = counts.get(row["outcome"], 0) + 1
    summary = ", ".join(f"{n} {o}" for o, n in counts.items())
    width = max(len(o) for o in counts)
    lines = [f"\nWRITTEN ({summary}):"]
    for row in rows:
        line = f"  {row['outcome']:<{width}} {row['reference']}"
        if row.get("detail") and row["outcome"] == "failed":
            line += f"  ({row['detail']})"
        lines.append(line)
    return "\n".join(lines) + "\n"
