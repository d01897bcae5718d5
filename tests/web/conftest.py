"""Fixtures the offline web tests share: a fresh planner app and its test client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import responses
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


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    """HTTP answers set per test (for the error-handling unit tests only)."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """A requests session, closed after the test."""
    with requests.Session() as session:
        yield session
