"""CDS Hooks feedback: accepted suggestions and overridden cards, checked and logged without PHI."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from smart_app.cds.request import CdsBadRequest

MAX_ITEMS = 100
CODE = re.compile(r"[A-Za-z0-9\-.]{1,64}")
"""An override reason's code as logged: a FHIR code of the app's kind, nothing free-text."""


class Outcome(StrEnum):
    """What the clinician did with a card."""

    ACCEPTED = "accepted"
    OVERRIDDEN = "overridden"


@dataclass(frozen=True)
class FeedbackItem:
    """One feedback entry, only the parts that hold no PHI (no user comment)."""

    service_id: str
    card: str
    outcome: Outcome
    accepted: tuple[str, ...]
    reason: str
    """The override reason's code, or ''."""
    at: dt.datetime

    def log_line(self) -> str:
        """One line for the log: ids, outcome and reason code only."""
        return (
            f"cds feedback: service={self.service_id} card={self.card} "
            f"outcome={self.outcome.value} suggestions={','.join(self.accepted) or '-'} "
            f"reason={self.reason or '-'}"
        )


def _uuid(value: Any, what: str) -> str:
    """A UUID in canonical form, or CdsBadRequest (so nothing else reaches the log)."""
    if isinstance(value, str):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    raise CdsBadRequest(f"{what} must be a UUID")


def _timestamp(value: Any, where: str) -> dt.datetime:
    """outcomeTimestamp as an aware datetime."""
    try:
        when = dt.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise CdsBadRequest(f"{where}.outcomeTimestamp must be an ISO timestamp with a zone")
    return when


def _reason(value: Any, where: str) -> str:
    """The override reason's code ('' without one); its comment is never kept."""
    if value is None:
        return ""
    if not isinstance(value, dict):
        raise CdsBadRequest(f"{where}.overrideReason must be a JSON object")
    coding = value.get("reason")
    if coding is None:
        return ""
    code = coding.get("code") if isinstance(coding, dict) else None
    if not isinstance(code, str) or not CODE.fullmatch(code):
        raise CdsBadRequest(f"{where}.overrideReason.reason.code must be a code")
    return code


def _item(raw: Any, index: int, service_id: str) -> FeedbackItem:
    """One feedback entry checked."""
    where = f"feedback[{index}]"
    if not isinstance(raw, dict):
        raise CdsBadRequest(f"{where} must be a JSON object")
    try:
        outcome = Outcome(raw.get("outcome"))
    except ValueError:
        raise CdsBadRequest(f"{where}.outcome must be 'accepted' or 'overridden'") from None
    accepted_raw = raw.get("acceptedSuggestions") or []
    if not isinstance(accepted_raw, list):
        raise CdsBadRequest(f"{where}.acceptedSuggestions must be a list")
    accepted = tuple(
        _uuid(s.get("id") if isinstance(s, dict) else None, f"{where}.acceptedSuggestions id")
        for s in accepted_raw
    )
    if outcome is Outcome.ACCEPTED and not accepted:
        raise CdsBadRequest(f"{where}: an accepted outcome needs acceptedSuggestions")
    return FeedbackItem(
        service_id=service_id,
        card=_uuid(raw.get("card"), f"{where}.card"),
        outcome=outcome,
        accepted=accepted,
        reason=_reason(raw.get("overrideReason"), where),
        at=_timestamp(raw.get("outcomeTimestamp"), where),
    )


def parse_feedback(body: Any, service_id: str) -> list[FeedbackItem]:
    """The feedback entries of a request body, each checked."""
    items = body.get("feedback") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise CdsBadRequest("the body must be {'feedback': [...]} with at least one entry")
    if len(items) > MAX_ITEMS:
        raise CdsBadRequest(f"at most {MAX_ITEMS} feedback entries per request")
    return [_item(raw, i, service_id) for i, raw in enumerate(items)]
