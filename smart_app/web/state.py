"""What the web app holds for its lifetime: settings, an HTTP session, the clock."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests
from flask import current_app

import smart_app.clock as wall_clock
from smart_app.config import WebSettings

EXTENSION = "zolgensma_smart"


@dataclass
class WebState:
    """The app's long-lived collaborators (injectable in tests)."""

    settings: WebSettings
    http: requests.Session = field(default_factory=requests.Session)
    clock: Callable[[], float] = time.time
    today: Callable[[], dt.date] = wall_clock.today
    now: Callable[[], dt.datetime] = wall_clock.now


def web_state() -> WebState:
    """The current app's state."""
    return current_app.extensions[EXTENSION]
