"""A measured figure with how it was measured and its goal; printing and the JSON report."""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any


class Better(StrEnum):
    """Which way a figure improves."""

    LOWER = "lower"
    HIGHER = "higher"


@dataclass(frozen=True)
class Goal:
    """The bound a figure should meet."""

    bound: float
    better: Better = Better.LOWER
    text: str = ""
    """The goal as the issue words it, when more than the bound says."""

    def met(self, value: float) -> bool:
        """Whether `value` meets the bound."""
        return value <= self.bound if self.better is Better.LOWER else value >= self.bound


@dataclass(frozen=True)
class Figure:
    """One measured number."""

    key: str
    title: str
    value: float
    unit: str
    how: str
    """How it was measured, in a sentence."""
    goal: Goal | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    """The raw numbers behind the value (samples, counts, breakdowns)."""

    @property
    def met(self) -> bool | None:
        """Whether the goal is met; None without one."""
        return None if self.goal is None else self.goal.met(self.value)

    def verdict(self) -> str:
        """'goal <= 2: met', 'goal >= 2500: missed by 1200 (48 %)' or ''."""
        if self.goal is None:
            return ""
        sign = "<=" if self.goal.better is Better.LOWER else ">="
        bound = f"goal {sign} {_number(self.goal.bound)} {self.unit}".rstrip()
        if self.met:
            return f"{bound}: met"
        gap = abs(self.value - self.goal.bound)
        share = f" ({gap / self.goal.bound:.0%})" if self.goal.bound else ""
        return f"{bound}: MISSED by {_number(gap)} {self.unit}{share}".rstrip()

    def lines(self) -> list[str]:
        """The figure as printed: value and verdict, then how it was measured."""
        head = f"{self.title}: {_number(self.value)} {self.unit}".rstrip()
        verdict = self.verdict()
        return [
            f"{head}  [{verdict}]" if verdict else head,
            f"    how: {self.how}",
        ]

    def data(self) -> dict[str, Any]:
        """JSON-ready."""
        out = asdict(self)
        out["met"] = self.met
        out["verdict"] = self.verdict()
        return out


def _number(value: float) -> str:
    """A figure as printed: integers plain, others with 3 significant digits or 2 decimals."""
    if float(value).is_integer():
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def median_ms(samples_s: Sequence[float]) -> float:
    """The median of samples in seconds, in milliseconds."""
    return statistics.median(samples_s) * 1000


def percentile_ms(samples_s: Sequence[float], share: float) -> float:
    """The `share` percentile (0..1, nearest rank) of samples in seconds, in milliseconds."""
    ordered = sorted(samples_s)
    if not ordered:
        return 0.0
    rank = max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))
    return ordered[rank] * 1000


class Report:
    """The figures of one run, printed as they come and saved together."""

    def __init__(self, *, machine: dict[str, Any]) -> None:
        """Start empty; `machine` says where it ran."""
        self.machine = machine
        self.figures: list[Figure] = []

    def section(self, title: str) -> None:
        """Print a section heading."""
        self.say(f"\n== {title} ==")

    def add(self, figure: Figure) -> Figure:
        """Record and print a figure."""
        self.figures.append(figure)
        for line in figure.lines():
            self.say(line)
        return figure

    def say(self, line: str) -> None:
        """Print a line of the run's output."""
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def summary(self) -> list[str]:
        """One line per figure with a goal: met or missed."""
        lines = []
        for figure in self.figures:
            if figure.goal is not None:
                lines.append(f"  {'met   ' if figure.met else 'MISSED'}  {figure.title}")
        return lines

    def save(self, path: Path, *, command: str, seconds: float) -> None:
        """Write every figure to a JSON file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "command": command,
            "machine": self.machine,
            "run_seconds": round(seconds, 1),
            "figures": [f.data() for f in self.figures],
        }
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
