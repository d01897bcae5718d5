"""The app as the offline web tests launch it: one registered EHR, the sandbox's fixed clock."""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from smart_app import create_app
from smart_app.config import ClientType, Registration, web_settings
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
