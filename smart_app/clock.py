"""The only clock reads, for the edges (command line, web app, sandbox): never below them."""

from __future__ import annotations

import datetime as dt


def today() -> dt.date:
    """The local calendar date."""
    return dt.datetime.now(dt.UTC).astimezone().date()


def now() -> dt.datetime:
    """The current time with the local offset, to the second."""
    return dt.datetime.now(dt.UTC).astimezone().replace(microsecond=0)
