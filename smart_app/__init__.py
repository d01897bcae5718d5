"""ZOLGENSMA SMART-on-FHIR planner: eligibility, kit dosing, steroid course and monitoring."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

__version__ = "0.1.0"


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The Flask application factory (imported lazily so the CLI starts without Flask)."""
    from smart_app.web.app import build_app

    return build_app(config)
