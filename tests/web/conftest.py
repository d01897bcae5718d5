"""Fixtures the offline web tests share: a fresh planner app and its test client."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.web.planner_app import planner_app


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    """A fresh app (tests/web/planner_app.py), sessions under the test's tmp_path."""
    return planner_app(tmp_path)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """The app's test client (a module may define its own `app` or `client` instead)."""
    return app.test_client()
