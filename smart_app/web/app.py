"""The Flask application: settings, server-side sessions, security headers, blueprints, errors."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cachelib.file import FileSystemCache
from flask import Flask, render_template
from flask_session import Session
from jinja2 import ChoiceLoader, FileSystemLoader
from werkzeug.exceptions import HTTPException

from smart_app.cds import routes as cds_routes
from smart_app.config import WebSettings, web_settings
from smart_app.errors import (
    ConfigError,
    FhirError,
    InputError,
    LaunchError,
    SessionExpired,
    SmartAppError,
)
from smart_app.rules.dosing import sci
from smart_app.web import (
    context,
    documents,
    followup,
    launch,
    plan,
    request_context,
    security,
    words,
)
from smart_app.web.state import EXTENSION, WebState

LAUNCH_PAGE_DIR = Path(__file__).resolve().parents[2]
"""The project's top level, where launch.html lives."""

SESSION_HOURS = 8


def build_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The app for `config` overrides (tests, the sandbox) on top of SMART_APP_* settings."""
    overrides = dict(config or {})
    state = overrides.pop("STATE", None)
    if state is None:
        state = WebState(settings=web_settings(os.environ, **overrides.pop("SETTINGS", {})))
    settings = state.settings
    app = Flask("smart_app.web", root_path=str(Path(__file__).parent))
    launch_dir = settings.launch_page or LAUNCH_PAGE_DIR
    app.jinja_loader = ChoiceLoader([app.jinja_loader, FileSystemLoader(str(launch_dir))])
    app.config.from_mapping(
        SECRET_KEY=settings.secret_key,
        **_session_store(settings),
        SESSION_PERMANENT=True,
        PERMANENT_SESSION_LIFETIME=SESSION_HOURS * 3600,
        SESSION_COOKIE_NAME="zolgensma_smart_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        SESSION_COOKIE_SAMESITE="None" if settings.secure_cookies else "Lax",
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    app.config.from_mapping(overrides)
    app.extensions[EXTENSION] = state
    Session(app)
    security.install(app, settings)
    request_context.install(app)
    app.jinja_env.globals["csrf_token"] = context.csrf_token
    app.jinja_env.filters["sci"] = sci
    app.jinja_env.filters.update(words.FILTERS)
    app.register_blueprint(launch.bp)
    app.register_blueprint(plan.bp)
    app.register_blueprint(followup.bp)
    app.register_blueprint(documents.bp)
    cds_routes.init_app(app, settings)
    _errors(app)
    logging.getLogger("authlib").setLevel(logging.WARNING)
    return app


def _session_store(settings: WebSettings) -> dict[str, Any]:
    """Files here (one instance); Redis when several instances share sessions."""
    if settings.session_redis_url:
        try:
            import redis
        except ImportError:
            raise ConfigError("SMART_APP_SESSION_REDIS_URL needs `pip install redis`") from None
        return {
            "SESSION_TYPE": "redis",
            "SESSION_REDIS": redis.Redis.from_url(settings.session_redis_url),
        }
    settings.session_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = FileSystemCache(str(settings.session_dir), threshold=2000, mode=0o600)
    return {"SESSION_TYPE": "cachelib", "SESSION_CACHELIB": store}


def _errors(app: Flask) -> None:
    """Every failure becomes a page with a message a clinician or an operator can act on."""

    def page(title: str, message: str, status: int) -> tuple[str, int]:
        return render_template("error.html", title=title, message=message), status

    @app.errorhandler(LaunchError)
    def _launch(exc: LaunchError) -> tuple[str, int]:
        app.logger.warning("launch refused: %s", exc)
        return page("Launch refused", str(exc), 400)

    @app.errorhandler(SessionExpired)
    def _expired(exc: SessionExpired) -> tuple[str, int]:
        return page("Session ended", str(exc), 401)

    @app.errorhandler(FhirError)
    def _fhir(exc: FhirError) -> tuple[str, int]:
        app.logger.warning("FHIR server error: %s", type(exc).__name__)
        return page("The EHR's FHIR server did not answer as expected", str(exc), 502)

    @app.errorhandler(InputError)
    def _input(exc: InputError) -> tuple[str, int]:
        return page("Check the input", str(exc), 400)

    @app.errorhandler(SmartAppError)
    def _other(exc: SmartAppError) -> tuple[str, int]:
        return page("Something went wrong", str(exc), 500)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> tuple[str, int]:
        return page(exc.name, exc.description or "", exc.code or 500)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[str, int]:
        app.logger.error("unexpected error: %s", type(exc).__name__)
        return page("Something went wrong", "An unexpected error; nothing was written.", 500)
