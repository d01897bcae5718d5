"""The `zolgensma-smart` command line: plan, write back, follow up after infusion, doses."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from smart_app import clock, render
from smart_app.errors import (
    FhirError,
    InputError,
    SmartAppError,
    WriteBackError,
    WriteBlocked,
    WriteIncomplete,
)
from smart_app.fhir import codes
from smart_app.fhir.read import facts_from_bundle, parse_bundle_json
from smart_app.fhir.units import UnitError, weight_to_kg
from smart_app.options import OrderMode, Strategy
from smart_app.rules.dosing import dose_for_weight, no_kit_reason
from smart_app.rules.model import Plan
from smart_app.rules.plan import build_plan, check_calendar
from smart_app.rules.policy import DEFAULT_POLICY, Policy

if TYPE_CHECKING:
    import threading

    from smart_app.fhir.gateway import FhirGateway
    from smart_app.fhir.written import Written

# `plan --bundle` and `dose` never talk to a server: the gateway (requests), the writers and the
# follow-up code (fhir.resources, pydantic) are imported only on the paths that use them, so
# these two start fast (tests/test_cli_imports.py checks what they import).

EXIT_OK = 0
EXIT_INPUT = 2
EXIT_SERVER = 3
EXIT_NOT_WRITTEN = 4
EXIT_UNKNOWN = 5
TOKEN_ENV = "ZOLGENSMA_SMART_BEARER_TOKEN"  # noqa: S105 - the variable name, not a secret


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
    plan = sub.add_parser("plan", help="evaluate one patient from a Bundle file or a FHIR server")
    source = plan.add_mutually_exclusive_group(required=True)
    source.add_argument("--bundle", type=Path, help="FHIR R4 Bundle JSON file")
    source.add_argument("--fhir-base", metavar="URL", help="FHIR R4 server base URL")
    plan.add_argument("--patient", metavar="ID", help="Patient id on the server (--fhir-base)")
    plan.add_argument(
        "--bearer-token",
        metavar="T",
        help=f"access token for the server (better: set {TOKEN_ENV}, kept out of `ps`)",
    )
    plan.add_argument("--write", action="store_true", help="write the plan back")
    plan.add_argument(
        "--write-strategy",
        type=Strategy,
        choices=list(Strategy),
        default=Strategy.AUTO,
        help="how the write reaches the server: auto (from its CapabilityStatement, default), "
        "transaction, lookup (search, then plain creates) or per-resource (one by one)",
    )
    plan.add_argument(
        "--dry-run-bundle",
        type=Path,
        metavar="FILE",
        help="save the transaction Bundle that --write would send, and send nothing",
    )
    plan.add_argument(
        "--acknowledge",
        action="append",
        default=[],
        metavar="CODE",
        help="finding the clinician acknowledges (repeatable; each needs-review one is needed)",
    )
    plan.add_argument(
        "--order-mode",
        type=OrderMode,
        choices=list(OrderMode),
        default=OrderMode.PROPOSAL,
        help="proposal: draft orders for the prescriber to sign (default); order: active orders",
    )
    plan.add_argument("--fhir-user", metavar="REF", help="the user, e.g. Practitioner/123")
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
    follow = sub.add_parser(
        "followup", help="where a patient on a plan stands: day, phase, Tasks, alerts, decision"
    )
    follow.add_argument("--fhir-base", metavar="URL", required=True, help="FHIR R4 server base URL")
    follow.add_argument("--patient", metavar="ID", required=True, help="Patient id on the server")
    follow.add_argument("--bearer-token", metavar="T", help=f"access token (better: {TOKEN_ENV})")
    follow.add_argument("--on", type=_date, help="follow-up date (default: today)")
    follow.add_argument(
        "--exam-normal",
        action="store_true",
        help="the clinician attests a normal clinical exam (for the day-30 decision preview)",
    )
    follow.add_argument("--format", type=Format, choices=list(Format), default=Format.JSON)
    follow.add_argument("--policy", type=Path, help="TOML file of institution overrides")
    dose = sub.add_parser("dose", help="kit lookup for one or many weights")
    dose.add_argument("weights", nargs="+", metavar="WEIGHT")
    dose.add_argument("--unit", type=WeightUnit, choices=list(WeightUnit), default=WeightUnit.KG)
    dose.add_argument("--format", type=Format, choices=list(Format), default=Format.JSON)
    return parser


def run_plan(args: argparse.Namespace) -> str:
    """Evaluate from a file or a server; with --write or --dry-run-bundle, write or save."""
    policy = _policy(args.policy)
    titer_codes = frozenset(args.titer_code) | codes.DEFAULT_TITER_CODES
    on = args.on or clock.today()
    check_calendar("evaluation date", on)
    infusion = args.infusion_date or on + dt.timedelta(days=1)
    if args.fhir_base is None:
        if args.patient or args.write or args.dry_run_bundle or args.bearer_token:
            raise InputError("--patient, --write, --dry-run-bundle need --fhir-base")
        facts = facts_from_bundle(
            parse_bundle_json(_read_text(args.bundle, policy=policy)), titer_codes=titer_codes
        )
        plan = build_plan(facts, on=on, infusion_date=infusion, policy=policy)
        return _render(plan, args.format, None)
    from smart_app import service
    from smart_app.fhir.written import Confirmation, WriteState

    if not args.patient:
        raise InputError("--fhir-base needs --patient ID")
    if args.write and args.dry_run_bundle:
        raise InputError("give --write or --dry-run-bundle, not both")
    token = args.bearer_token or os.environ.get(TOKEN_ENV) or None
    gateway = _gateway(args.fhir_base, token, policy)
    writing = args.write and args.write_strategy is Strategy.AUTO
    capabilities = prefetch_capabilities(gateway) if writing else None
    evaluation = service.evaluate(
        gateway, args.patient, on=on, infusion_date=infusion, policy=policy, titer_codes=titer_codes
    )
    if capabilities is not None:
        capabilities.join()
    truncated = _note_truncated(evaluation.record.truncated)
    if not (args.write or args.dry_run_bundle):
        return _render(evaluation.plan, args.format, None, truncated=truncated)
    confirmation = Confirmation(
        recorded=clock.now(),
        acknowledged=frozenset(args.acknowledge),
        fhir_user=args.fhir_user,
        order_mode=args.order_mode,
    )
    try:
        if args.dry_run_bundle:
            _save_json(args.dry_run_bundle, service.transaction(evaluation, confirmation))
            return _render(evaluation.plan, args.format, None, truncated=truncated)
        written = service.write(gateway, evaluation, confirmation, strategy=args.write_strategy)
    except (WriteBlocked, WriteBackError) as exc:
        raise NotWritten(
            str(exc), _render(evaluation.plan, args.format, [], truncated=truncated)
        ) from exc
    except WriteIncomplete as exc:
        output = _render(
            evaluation.plan, args.format, list(exc.report.written), truncated=truncated
        )
        unknown = exc.report.state is WriteState.UNKNOWN
        raise NotWritten(
            str(exc), output, exit_code=EXIT_UNKNOWN if unknown else EXIT_NOT_WRITTEN
        ) from exc
    return _render(evaluation.plan, args.format, written, truncated=truncated)


class NotWritten(SmartAppError):
    """The plan was evaluated but not (wholly) written; carries the rendered plan."""

    def __init__(self, message: str, output: str, *, exit_code: int = EXIT_NOT_WRITTEN) -> None:
        super().__init__(message)
        self.output = output
        self.exit_code = exit_code


def _render(
    plan: Plan, fmt: Format, written: list[Written] | None, *, truncated: list[str] | None = None
) -> str:
    """The plan as JSON or text, with what was written when a write was asked for, and the
    searches of a server read cut at the page bound (key `truncated`, only when there are)."""
    rows = None if written is None else [render.written_data(w) for w in written]
    if fmt is Format.TEXT:
        cut = render.truncated_text(truncated or [])
        return render.plan_text(plan) + cut + ("" if rows is None else render.written_text(rows))
    data = render.plan_data(plan)
    if truncated:
        data["truncated"] = truncated
    if rows is not None:
        data["written"] = rows
    return render.to_json(data)


def _note_truncated(searches: list[str]) -> list[str]:
    """Say on stderr when searches were cut at the page bound; return them."""
    if searches:
        sys.stderr.write(
            f"zolgensma-smart: note: {len(searches)} search(es) had more results than the app "
            f"reads; the rest was not seen: {'; '.join(searches)}\n"
        )
    return searches


def prefetch_capabilities(gateway: FhirGateway) -> threading.Thread:
    """Read the server's CapabilityStatement beside the patient's read (started now, joined
    before the write): the write's automatic strategy needs it, and read this way it costs no
    round trip of its own. The gateway keeps it; a server without one is taken as none."""
    import threading

    thread = threading.Thread(target=gateway.capabilities, name="capabilities", daemon=True)
    thread.start()
    return thread


def _gateway(base_url: str, token: str | None, policy: Policy) -> FhirGateway:
    """The server's gateway, reading answers no larger than the policy's bound."""
    from smart_app.fhir.gateway import FhirGateway, Limits

    return FhirGateway(
        base_url, bearer_token=token, limits=Limits(max_answer_bytes=policy.bundle_max_bytes)
    )


def _policy(path: Path | None) -> Policy:
    """The institution's overrides from a TOML file, or the defaults without one."""
    if path is None:
        return DEFAULT_POLICY
    from smart_app.config import load_policy

    return load_policy(path)


def _read_text(path: Path, *, policy: Policy) -> str:
    """A UTF-8 file's text, at most policy.bundle_max_bytes long, or a one-line InputError."""
    limit = policy.bundle_max_bytes
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc
    if len(data) > limit:
        raise InputError(
            f"cannot read {path}: it is larger than {limit} bytes "
            f"({policy.cite('bundle_max_bytes')})"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"cannot read {path}: not UTF-8 text") from exc


def _save_json(path: Path, data: object) -> None:
    """Write JSON atomically: a temporary file beside the target, then a rename."""
    import tempfile  # only --dry-run-bundle writes a file: kept off the start-up

    try:
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below, renamed or removed
            "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", delete=False
        )
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror}") from exc
    temporary = Path(handle.name)
    try:
        with handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")
        temporary.replace(path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise InputError(f"cannot write {path}: {exc.strerror}") from exc


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


def run_followup(args: argparse.Namespace) -> str:
    """Read the patient's active plan and results; print where they stand (writes nothing)."""
    from smart_app import render_followup, service

    policy = _policy(args.policy)
    token = args.bearer_token or os.environ.get(TOKEN_ENV) or None
    on = args.on or clock.today()
    check_calendar("follow-up date", on)
    gateway = _gateway(args.fhir_base, token, policy)
    following = service.read_followup(
        gateway, args.patient, on=on, policy=policy, exam_normal=True if args.exam_normal else None
    )
    if following is None:
        raise InputError(
            f"Patient/{args.patient} has no active ZOLGENSMA plan written by this app: "
            "evaluate and write one with `zolgensma-smart plan --write` first"
        )
    truncated = _note_truncated(following.record.truncated)
    if args.format is Format.TEXT:
        return render_followup.followup_text(following.followup) + render.truncated_text(truncated)
    data = render_followup.followup_data(following.followup)
    if truncated:
        data["truncated"] = truncated
    return render.to_json(data)


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
        commands = {"plan": run_plan, "followup": run_followup, "dose": run_dose}
        output = commands[args.command](args)
    except NotWritten as exc:
        sys.stdout.write(exc.output)
        sys.stderr.write(f"zolgensma-smart: not written: {exc}\n")
        return exc.exit_code
    except FhirError as exc:
        sys.stderr.write(f"zolgensma-smart: FHIR server: {exc}\n")
        return EXIT_SERVER
    except SmartAppError as exc:
        sys.stderr.write(f"zolgensma-smart: error: {exc}\n")
        return EXIT_INPUT
    sys.stdout.write(output)
    return EXIT_OK
