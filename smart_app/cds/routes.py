"""The CDS Hooks endpoints: discovery, the three services and feedback, answering JSON only."""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from smart_app.cds.auth import CdsUnauthorized, JtiStore, verify_client
from smart_app.cds.discovery import BY_ID, Hook, Service, discovery
from smart_app.cds.feedback import FeedbackItem, parse_feedback
from smart_app.cds.hooks import CallContext, patient_view
from smart_app.cds.order_checks import order_cards
from smart_app.cds.reading import read_record
from smart_app.cds.request import CdsBadRequest, CdsNoData, parse_request
from smart_app.config import CdsClient, WebSettings
from smart_app.errors import InputError, SmartAppError
from smart_app.web.security import csrf_exempt
from smart_app.web.state import web_state

EXTENSION = "zolgensma_cds"
FEEDBACK_KEPT = 500
"""Feedback entries kept in memory (newest), for tests and a quick look; the log has them all."""

log = logging.getLogger("smart_app.cds")
bp = Blueprint("cds", __name__, url_prefix="/cds-services")


@dataclass
class CdsState:
    """What the CDS endpoints keep for the app's lifetime: seen jti values, recent feedback."""

    jtis: JtiStore
    feedback: deque[FeedbackItem] = field(default_factory=lambda: deque(maxlen=FEEDBACK_KEPT))


def init_app(app: Flask, settings: WebSettings) -> None:
    """Register the endpoints with one jti store for the app."""
    app.extensions[EXTENSION] = CdsState(jtis=JtiStore.for_settings(settings))
    app.register_blueprint(bp)


def cds_state() -> CdsState:
    """The current app's CDS state."""
    return current_app.extensions[EXTENSION]


def _error(status: int, message: str) -> tuple[Response, int]:
    """A JSON error answer."""
    return jsonify({"error": message}), status


@bp.before_request
def _limits() -> None:
    """A prefetch may carry a whole chart: read bodies up to the policy's largest Bundle."""
    request.max_content_length = web_state().settings.policy.bundle_max_bytes


@bp.get("")
def services() -> Response:
    """Discovery: public (no PHI), readable by browser-based clients."""
    answer = jsonify(discovery())
    answer.headers["Access-Control-Allow-Origin"] = "*"
    return answer


def _service(service_id: str) -> Service:
    """The service by id, or 404."""
    found = BY_ID.get(service_id)
    if found is None:
        raise _NotAService(service_id)
    return found


class _NotAService(SmartAppError):
    """No service has this id (404)."""


def _client() -> CdsClient:
    """The registered CDS client whose JWT signs this request (CdsUnauthorized if none)."""
    state = web_state()
    return verify_client(
        request.headers.get("Authorization"),
        audience=state.settings.public_url.rstrip("/") + request.path,
        clients=state.settings.cds_clients,
        jtis=cds_state().jtis,
        now_s=state.clock,
    )


def _body() -> Any:
    """The JSON body (CdsBadRequest when it is not JSON)."""
    if not request.is_json:
        raise CdsBadRequest("the request must be JSON (Content-Type: application/json)")
    body = request.get_json(silent=True)
    if body is None:
        raise CdsBadRequest("the request body is not valid JSON")
    return body


@bp.post("/<service_id>")
@csrf_exempt  # a signed JWT authenticates each call, not a session
def call(service_id: str) -> Response:
    """One hook call: the chart from the prefetch and fhirServer, then the service's cards."""
    found = _service(service_id)
    client = _client()
    hook_request = parse_request(_body(), found, client=client)
    state = web_state()
    record = read_record(hook_request, session=state.http)
    ctx = CallContext(
        service_id=found.id,
        hook_instance=hook_request.hook_instance,
        today=state.today(),
        policy=state.settings.policy,
        public_url=state.settings.public_url,
    )
    if found.hook is Hook.PATIENT_VIEW:
        cards = patient_view(record, ctx)
    else:
        cards = order_cards(record, hook_request.context, found.hook, ctx)
    log.info(
        "cds call: service=%s cards=%d fhir_requests=%d", found.id, len(cards), record.requests
    )
    return jsonify({"cards": cards})


@bp.post("/<service_id>/feedback")
@csrf_exempt  # a signed JWT authenticates each call, not a session
def feedback(service_id: str) -> Response:
    """Feedback on cards: logged one line each, without PHI, and kept in memory."""
    found = _service(service_id)
    _client()
    items = parse_feedback(_body(), found.id)
    kept = cds_state().feedback
    for item in items:
        log.info("%s", item.log_line())
        kept.append(item)
    return jsonify({})


@bp.errorhandler(_NotAService)
def _not_found(exc: _NotAService) -> tuple[Response, int]:
    """404 for an unknown service id."""
    return _error(404, f"no CDS service {str(exc)[:64]!r} here; see GET /cds-services")


@bp.errorhandler(CdsUnauthorized)
def _unauthorized(exc: CdsUnauthorized) -> tuple[Response, int]:
    """401 for a missing, invalid or untrusted client JWT."""
    log.warning("cds request refused: %s", exc)
    answer, status = _error(401, str(exc))
    answer.headers["WWW-Authenticate"] = 'Bearer realm="cds-services"'
    return answer, status


@bp.errorhandler(InputError)
def _bad_request(exc: InputError) -> tuple[Response, int]:
    """400 for a request the service cannot take."""
    return _error(400, str(exc))


@bp.errorhandler(CdsNoData)
def _no_data(exc: CdsNoData) -> tuple[Response, int]:
    """412: the data the service needs could not be had (CDS Hooks 2.0)."""
    log.warning("cds call without the data it needs: %s", type(exc).__name__)
    return _error(412, str(exc))


@bp.errorhandler(HTTPException)
def _http(exc: HTTPException) -> tuple[Response, int]:
    """HTTP errors (too large, wrong method) as JSON."""
    return _error(exc.code or 500, exc.description or exc.name)


@bp.errorhandler(SmartAppError)
def _app_error(exc: SmartAppError) -> tuple[Response, int]:
    """An error the app raised on purpose, as JSON."""
    log.error("cds call failed: %s", type(exc).__name__)
    return _error(500, str(exc))


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> tuple[Response, int]:
    """Anything else: no traceback to the client, its type in the log."""
    log.error("cds call failed unexpectedly: %s", type(exc).__name__)
    return _error(500, "an unexpected error in the CDS service")
