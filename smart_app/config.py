"""Configuration outside the rules: institution policy files (TOML); later env and EHRs."""

from __future__ import annotations

import dataclasses
import tomllib
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from smart_app.errors import PolicyError
from smart_app.rules.model import LabTest
from smart_app.rules.policy import DEFAULT_POLICY, Policy


def _convert(name: str, raw: Any, default: Any) -> Any:
    """Coerce one TOML value to the type of its default."""
    try:
        if isinstance(default, bool) or isinstance(raw, bool):
            raise TypeError
        if isinstance(default, Decimal):
            if not isinstance(raw, int | float | str):
                raise TypeError
            value = Decimal(str(raw))
            if not value.is_finite():
                raise ValueError
            return value
        if isinstance(default, int):
            if not isinstance(raw, int):
                raise TypeError
            return raw
        if isinstance(default, str):
            if not isinstance(raw, str):
                raise TypeError
            return raw
        if isinstance(default, tuple):
            if not isinstance(raw, list):
                raise TypeError
            if name == "baseline_tests":
                return tuple(LabTest(item) for item in raw)
            sample = default[0] if default else 0
            return tuple(_convert(name, item, sample) for item in raw)
    except (TypeError, ValueError, InvalidOperation) as exc:
        raise PolicyError(f"policy: {name} = {raw!r} is not a valid value") from exc
    raise PolicyError(f"policy: {name} cannot be set from a file")


def load_policy(path: Path) -> Policy:
    """Read a TOML file of overrides on top of the defaults."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PolicyError(f"policy: cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise PolicyError(f"policy: {path} is not UTF-8 text") from exc
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"policy: {path} is not valid TOML: {exc}") from exc
    fields = {f.name: f for f in dataclasses.fields(Policy)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise PolicyError(f"policy: unknown setting(s) {', '.join(unknown)} in {path}")
    overrides = {
        name: _convert(name, raw, getattr(DEFAULT_POLICY, name)) for name, raw in data.items()
    }
    return dataclasses.replace(DEFAULT_POLICY, **overrides)
