"""How the sandbox logs a request's route: launch-identifying arguments as placeholders, the
rest as sent, nothing for an unknown path, never the query string."""

from __future__ import annotations

import pytest
from werkzeug.routing import Map, Rule

from smart_app.sandbox.serving import UNROUTED, route_for_log

ROUTES = Map(
    [
        Rule("/chart/<launch_id>", endpoint="chart"),
        Rule("/p/<context_id>/", endpoint="plan"),
        Rule("/p/<context_id>/write", endpoint="write", methods=["POST"]),
        Rule("/fhir/<path:rest>", endpoint="fhir", methods=["GET", "POST", "PUT"]),
        Rule("/static/<path:filename>", endpoint="static"),
        Rule("/codes/<code>/<token>/<state>", endpoint="codes"),
        Rule("/", endpoint="home"),
    ]
)


@pytest.mark.parametrize(
    ("method", "target", "logged"),
    [
        ("GET", "/chart/Zx9-secret-launch?code=abc", "/chart/<launch_id>"),
        ("GET", "/p/ctx-secret/?infusion_date=2026-11-24", "/p/<context_id>/"),
        ("POST", "/p/ctx-secret/write", "/p/<context_id>/write"),
        ("GET", "/fhir/Patient/p1", "/fhir/Patient/p1"),
        ("GET", "/static/app.css?v=1", "/static/app.css"),
        ("GET", "/codes/c1/t1/s1", "/codes/<code>/<token>/<state>"),
        ("GET", "/?launch=abc&iss=x", "/"),
        ("GET", "/chart/a/b-secret", UNROUTED),
        ("DELETE", "/p/ctx-secret/write", UNROUTED),
        ("GET", "/p/ctx-secret", UNROUTED),  # a redirect to the slash: not logged as the path
    ],
)
def test_the_route_is_logged_without_launch_ids_or_queries(
    method: str, target: str, logged: str
) -> None:
    assert route_for_log(ROUTES, method, target) == logged
