"""The follow-up's common ground: the steroid orders that still stand, prose dates, findings."""

from __future__ import annotations

import datetime as dt

from smart_app.rules.model import (
    Evidence,
    Finding,
    FollowUpCode,
    PlanState,
    Severity,
    SteroidOrder,
)

LIVE_ORDER = frozenset({"active", "draft", "completed", "on-hold"})
"""Order statuses that still describe the course (retired ones are ignored)."""


def live_orders(state: PlanState) -> tuple[SteroidOrder, ...]:
    """Orders that still describe the course, by start date."""
    orders = [o for o in state.steroid_orders if o.status in LIVE_ORDER]
    return tuple(sorted(orders, key=lambda o: (o.start, o.step, o.item)))


def covering_order(orders: tuple[SteroidOrder, ...], day: dt.date) -> SteroidOrder | None:
    """The order covering a date; a later-starting one wins an overlap (a taper after a bridge)."""
    found = [o for o in orders if o.start <= day <= o.end]
    return found[-1] if found else None


def prose_date(date: dt.date) -> str:
    """A date as the follow-up view writes it in prose: '24 Nov 2026'."""
    return f"{date.day} {date:%b} {date.year}"


def follow_up_finding(
    code: FollowUpCode, severity: Severity, message: str, section: str, *ev: Evidence
) -> Finding:
    """A finding of the follow-up."""
    return Finding(code, severity, message, section, tuple(ev))
