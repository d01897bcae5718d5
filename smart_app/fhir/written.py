"""What a write is asked to do and what it did: the app-level write types (the options chosen in
configuration, OrderMode and Strategy, live in smart_app.options and are re-exported here)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from smart_app.options import OrderMode, Strategy

__all__ = [
    "Confirmation",
    "OrderMode",
    "Outcome",
    "Strategy",
    "WriteReport",
    "WriteState",
    "Written",
    "references",
]


class Outcome(StrEnum):
    """What the server did with one entry, from its own answer or a read-back."""

    CREATED = "created"
    EXISTING = "existing"
    UPDATED = "updated"
    FAILED = "failed"
    """The server refused this entry; it says why."""
    NOT_SENT = "not sent"
    """Not attempted: an earlier entry failed, or the whole write was refused."""
    UNKNOWN = "unknown"
    """The answer was lost and reading back failed too."""
    PRESENT = "present (read back)"
    """The answer was lost; a read-back found it on the server."""
    ABSENT = "absent (read back)"
    """The answer was lost; a read-back did not find it on the server."""

    @property
    def on_server(self) -> bool | None:
        """True when the server holds it, False when not, None when unknown."""
        if self is Outcome.UNKNOWN:
            return None
        return self in (Outcome.CREATED, Outcome.EXISTING, Outcome.UPDATED, Outcome.PRESENT)


class WriteState(StrEnum):
    """Where a whole write ended."""

    COMPLETE = "complete"
    PARTIAL = "partial"
    NOTHING = "nothing written"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Written:
    """One resource of a write and what became of it."""

    reference: str
    """Type/id on the server, or the request URL when no id came back."""
    outcome: Outcome
    item: str = ""
    """The app's name of the item (its identifier value after the plan key), e.g. 'careplan'."""
    detail: str = ""
    """What the server said about a failed entry."""


@dataclass(frozen=True)
class WriteReport:
    """What one write did, entry by entry, and how it was sent."""

    strategy: Strategy
    written: tuple[Written, ...]
    read_back: bool = False
    """True when the outcomes come from reading the server after a lost answer."""

    @property
    def state(self) -> WriteState:
        """Complete, partial, nothing or unknown, from the entries' outcomes."""
        held = [w.outcome.on_server for w in self.written]
        if any(h is None for h in held):
            return WriteState.UNKNOWN
        if all(held):
            return WriteState.COMPLETE
        applied = (Outcome.CREATED, Outcome.UPDATED, Outcome.PRESENT)
        if any(w.outcome in applied for w in self.written):
            return WriteState.PARTIAL
        return WriteState.NOTHING

    def of(self, *outcomes: Outcome) -> list[Written]:
        """The entries with one of these outcomes."""
        return [w for w in self.written if w.outcome in outcomes]

    def summary(self) -> str:
        """One line: how many entries ended how."""
        counts: dict[Outcome, int] = {}
        for w in self.written:
            counts[w.outcome] = counts.get(w.outcome, 0) + 1
        return ", ".join(f"{n} {o.value}" for o, n in counts.items())


@dataclass(frozen=True)
class Confirmation:
    """What the clinician confirmed, and who and when: the non-clinical inputs of a write."""

    recorded: dt.datetime
    acknowledged: frozenset[str] = frozenset()
    fhir_user: str | None = None
    order_mode: OrderMode = OrderMode.PROPOSAL


def references(written: Sequence[Written]) -> list[str]:
    """The server references of the entries the server holds."""
    return [w.reference for w in written if w.outcome.on_server]
