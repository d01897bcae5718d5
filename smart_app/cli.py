"""The `zolgensma-smart` command line: plan from a FHIR Bundle, kit lookup by weight."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from typing import NoReturn

from smart_app import render
from smart_app.config import load_policy
from smart_app.errors import InputError, SmartAppError
from smart_app.fhir import codes
from smart_app.fhir.read import facts_from_bundle, parse_bundle_json
from smart_app.fhir.units import UnitError, weight_to_kg
from smart_app.rules.dosing import dose_for_weight, no_kit_reason
from smart_app.rules.plan import build_plan
from smart_app.rules.policy import DEFAULT_POLICY

EXIT_OK = 0
EXIT_INPUT = 2


class Format(StrEnum):
    """Output formats."""

    JSON = "json"
    TEXT = "text"


class WeightUnit(StrEnum):
    """Units the dose command accepts, with their UCUM codes."""

    KG = "kg"
    G = "g"
    LB = "lb"

    @property
    def ucum(self) -> str:
        """The UCUM code."""
        return {"kg": "kg", "g": "g", "lb": "[lb_av]"}[self.value]


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so every input error takes one path."""

    def error(self, message: str) -> NoReturn:
        """Turn a usage error into an InputError."""
        raise InputError(message)


def _date(text: str) -> dt.date:
    """An ISO date argument."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _titer_code(text: str) -> tuple[str, str]:
    """A SYSTEM|CODE argument."""
    system, bar, code = text.rpartition("|")
    if not bar or not system or not code:
        raise argparse.ArgumentTypeError(f"{text!r} is not SYSTEM|CODE")
    return system, code


def _parser() -> _Parser:
    """The argument parser for both commands."""
    parser = _Parser(prog="zolgensma-smart", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    plan = sub.add_parser("plan", help="evaluate one patient's FHIR Bundle")
    plan.add_argument("--bundle", type=Path, required=True, help="FHIR R4 Bundle JSON file")
    plan.add_argument("--on", type=_date, help="evaluation date (default: today)")
    plan.add_argument("--infusion-date", type=_date, help="planned infusion (default: --on + 1)")
    plan.add_argument("--format", type=Format, choices=list(Format), default=Format.JSON)
    plan.add_argument("--policy", type=Path, help="TOML file of institution overrides")
    plan.add_argument(
        "--titer-code",
        type=_titer_code,
        action="append",
        default=[],
        metavar="SYSTEM|CODE",
        help="a local code for the anti-AAV9 titer (repeatable)",
    )
    dose = sub.add_parser("dose", help="kit lookup for one or many weights")
    dose.add_argument("weights", nargs="+", metavar="WEIGHT")
    dose.add_argument("--unit", type=WeightUnit, choices=list(WeightUnit), default=WeightUnit.KG)
    dose.add_argument("--format", type=Format, choices=list(Format), default=Format.JSON)
    return parser


def _today() -> dt.date:
    """The local calendar date; the only clock read, here at the edge."""
    return dt.datetime.now(dt.UTC).astimezone().date()


def run_plan(args: argparse.Namespace) -> str:
    """Read the bundle, build the plan, render it."""
    try:
        text = args.bundle.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise InputError(f"cannot read {args.bundle}: {reason}") from exc
    policy = load_policy(args.policy) if args.policy else DEFAULT_POLICY
    facts = facts_from_bundle(
        parse_bundle_json(text),
        titer_codes=frozenset(args.titer_code) | codes.DEFAULT_TITER_CODES,
    )
    on = args.on or _today()
    infusion = args.infusion_date or on + dt.timedelta(days=1)
    plan = build_plan(facts, on=on, infusion_date=infusion, policy=policy)
    if args.format is Format.TEXT:
        return render.plan_text(plan)
    return render.to_json(render.plan_data(plan))


def _weight(text: str, unit: WeightUnit) -> Decimal:
    """A positive weight argument in kg."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise InputError(f"weight {text!r} is not a number") from None
    if not value.is_finite() or value <= 0:
        raise InputError(f"weight {text!r} must be a positive number")
    try:
        return weight_to_kg(value, unit.ucum)
    except UnitError as exc:
        raise InputError(f"weight {text!r}: {exc}") from None


def run_dose(args: argparse.Namespace) -> str:
    """Look up the kit for each weight; weights outside the label get no kit, not an error."""
    rows = []
    for text in args.weights:
        kg = _weight(text, args.unit)
        dose = render.dose_data(dose_for_weight(kg))
        reason = None if dose else no_kit_reason(kg)
        rows.append(
            {
                "weight": text,
                "unit": args.unit.value,
                "weight_kg": float(kg),
                "dose": dose,
                "reason": reason,
            }
        )
    if args.format is Format.JSON:
        return render.to_json(rows)
    return render.dose_table(rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: exit 0 when it evaluated, 2 with a one-line message when input is unusable."""
    try:
        args = _parser().parse_args(argv)
        output = run_plan(args) if args.command == "plan" else run_dose(args)
    except SmartAppError as exc:
        sys.stderr.write(f"zolgensma-smart: error: {exc}\n")
        return EXIT_INPUT
    sys.stdout.write(output)
    return EXIT_OK
