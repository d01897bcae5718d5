"""The app as the offline web tests launch it: one registered EHR, the sandbox's fixed clock."""

from __future__ import annotations

import dataclasses
import re
from html import unescape
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from smart_app import create_app
from smart_app.config import ClientType, Registration, web_settings
from smart_app.web import connection, context
from smart_app.web.state import WebState
from tests.smartsandbox import NOW, TODAY

ISS = "https://ehr.example.org/fhir"
TOKEN_URL = "https://ehr.example.org/oauth/token"  # noqa: S105 - a URL, not a credential
"""The registered EHR's token endpoint."""


def planner_app(tmp_path: Path) -> Flask:
    """A fresh app with ISS registered as a public SMART client, sessions under `tmp_path`."""
    registration = Registration(
        iss=ISS,
        name="Example EHR",
        client_type=ClientType.PUBLIC,
        client_id="zolgensma-planner",
        redirect_uri="http://127.0.0.1:5000/callback",
    )
    settings = web_settings(
        {},
        public_url="http://127.0.0.1:5000",
        secret_key="k" * 40,
        registrations={ISS: registration},
        session_dir=tmp_path / "sessions",
    )
    state = WebState(settings=settings, today=lambda: TODAY, now=lambda: NOW, clock=lambda: 1e9)
    return create_app({"STATE": state, "TESTING": True})


def launch_context(
    patient: str, *, scope: str | None = None, user: str = ""
) -> context.LaunchContext:
    """A launch on ISS by `user` (a fhirUser reference): on an open server without `scope`,
    else with a live token granting it (expiring at 2e9 s; the app's clock is 1e9: no refresh)."""
    launched = dataclasses.replace(context.LaunchContext(iss=ISS, patient=patient), fhir_user=user)
    if scope is None:
        return launched
    return dataclasses.replace(
        launched,
        token_endpoint=TOKEN_URL,
        access_token="ACCESS-" + "x" * 40,
        expires_at=2e9,
        scope=scope,
    )


def store_context(client: FlaskClient, launched: context.LaunchContext) -> str:
    """Put a launch context in the client's session, as a launch would; its context id."""
    with client.session_transaction() as session:
        contexts = dict(session.get("contexts") or {})
        context_id = f"ctx{len(contexts)}"
        contexts[context_id] = dataclasses.asdict(launched)
        session["contexts"] = contexts
    return context_id


def serve_through(monkeypatch: pytest.MonkeyPatch, gateway: Any, *pages: ModuleType) -> None:
    """Every page reads and writes through `gateway`, not HTTP: the one place where a launch
    gets its gateway (web/connection.py gateway_for) is replaced, for all pages at once (the
    `pages` a test names are no longer needed)."""
    monkeypatch.setattr(connection, "gateway_for", lambda launched: gateway)


def page_text(html: str) -> str:
    """A page's visible words on one line: no tags or scripts, entities decoded, no-break
    spaces as spaces."""
    body = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", html, flags=re.S)
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", body)).replace("\u00a0", " ").split())
