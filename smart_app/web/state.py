"""What the web app holds for its lifetime: settings, an HTTP session, the clock."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests
from flask import current_app

from smart_app.config import WebSettings

EXTENSION = "zolgensma_smart"


def _today() -> dt.date:
    """The local calendar date: the web edge is where the clock is read."""
    return dt.datetime.now(dt.UTC).astimezone().date()


def _now() -> dt.datetime:
    """The current time with the local offset."""
    return dt.datetime.now(dt.UTC).astimezone().replace(microsecond=0)


@dataclass
class WebState:
    """The app's long-lived collaborators (injectable in tests)."""

    settings: WebSettings
    http: requests.Session = field(default_factory=requests.Session)
    clock: Callable[[], float] = time.time
    today: Callable[[], dt.date] = _today
    now: Callable[[], dt.datetime] = _now


def web_state() -> WebState:
    """The current app's state."""
    return current_app.extensions[EXTENSION]
