"""A stand-in CDS Hooks service for the sandbox EHR's client tests: it records every request and
answers as each test tells it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, jsonify, request

TEMPLATES = {
    "patient": "Patient/{{context.patientId}}",
    "weights": "Observation?patient={{context.patientId}}&code=http://loinc.org|29463-7",
    "user": "Practitioner/{{userPractitionerId}}",
    "missing": "Nothing/{{context.patientId}}",
    "encounter": "Encounter/{{context.encounterId}}",
}
Answer = Callable[[dict[str, Any]], tuple[int, Any]]


@dataclass
class FakeCds:
    """A CDS service that records every request and answers as told."""

    base: str = ""
    calls: list[dict[str, Any]] = field(default_factory=list)
    answers: dict[str, Answer] = field(default_factory=dict)
    discovery_status: int = 200
    delay_s: float = 0.0

    def reset(self) -> None:
        """No calls recorded; the default answers."""
        self.calls.clear()
        self.answers.clear()
        self.discovery_status, self.delay_s = 200, 0.0

    def last(self, service_id: str) -> dict[str, Any]:
        """The last call to a service (or its feedback: `<id>/feedback`)."""
        return [c for c in self.calls if c["path"] == service_id][-1]


def service_app(fake: FakeCds) -> Flask:
    """The stand-in service: discovery with TEMPLATES, one service per hook."""
    app = Flask("fake-cds")

    @app.get("/cds-services")
    def discovery() -> Any:
        """The services, recording the request."""
        fake.calls.append(
            {"path": "", "authorization": request.headers.get("Authorization"), "body": None}
        )
        services = [
            {"id": f"svc-{hook}", "hook": hook, "title": f"Test {hook}", "prefetch": TEMPLATES}
            for hook in ("patient-view", "order-select", "order-sign")
        ]
        return jsonify({"services": services}), fake.discovery_status

    @app.post("/cds-services/<path:rest>")
    def call(rest: str) -> Any:
        """A hook call or feedback, recorded, answered as told."""
        body = request.get_json(force=True)
        fake.calls.append(
            {"path": rest, "authorization": request.headers.get("Authorization"), "body": body}
        )
        time.sleep(fake.delay_s)
        if rest.endswith("/feedback"):
            return jsonify({}), 200
        status, answer = fake.answers.get(rest, lambda _: (200, {"cards": []}))(body)
        return jsonify(answer), status

    return app
