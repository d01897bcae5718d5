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
from smart_app.web import context
from smart_app.web.state import WebState
from tests.smartsandbox import NOW, TODAY

ISS = "https://ehr.example.org/fhir"


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


def store_context(client: FlaskClient, launched: context.LaunchContext) -> str:
    """Put a launch context in the client's session, as a launch would; its context id."""
    with client.session_transaction() as session:
        contexts = dict(session.get("contexts") or {})
        context_id = f"ctx{len(contexts)}"
        contexts[context_id] = dataclasses.asdict(launched)
        session["contexts"] = contexts
    return context_id


def serve_through(monkeypatch: pytest.MonkeyPatch, gateway: Any, *modules: ModuleType) -> None:
    """Every page of these web modules reads and writes through `gateway`, not HTTP."""

    def connect(context_id: str) -> tuple[context.LaunchContext, Any]:
        return context.load_context(context_id), gateway

    for module in modules:
        monkeypatch.setattr(module, "connect", connect)


def page_text(html: str) -> str:
    """A page's visible words on one line: no tags or scripts, entities decoded, no-break
    spaces as spaces."""
    body = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", html, flags=re.S)
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", body)).replace("\u00a0", " ").split())
