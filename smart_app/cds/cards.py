"""CDS Hooks 2.0 cards in the app's words: summary, indicator, label source, links, reasons."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any

from smart_app.fhir import codes
from smart_app.rules import label
from smart_app.rules.model import Status

Card = dict[str, Any]

SOURCE_LABEL = "ZOLGENSMA prescribing information (rev. 2/2025)"
SECTION_SYSTEM = f"{codes.APP_BASE}/CodeSystem/zolgensma-label-section"
"""Codes of the label's sections (the card's source topic)."""
OVERRIDE_SYSTEM = f"{codes.APP_BASE}/CodeSystem/cds-override-reason"
"""Codes of the reasons a clinician may give for overriding a card."""
MAX_SUMMARY_CHARS = 139
"""CDS Hooks: a summary of fewer than 140 characters."""
UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, f"{codes.APP_BASE}/cds")
MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")


class Indicator(StrEnum):
    """How urgent a card is (CDS Hooks: info, warning, critical)."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


STATUS_INDICATOR: dict[Status, Indicator] = {
    Status.ELIGIBLE: Indicator.INFO,
    Status.NEEDS_REVIEW: Indicator.WARNING,
    Status.INCOMPLETE: Indicator.WARNING,
    Status.DEFERRED: Indicator.WARNING,
    Status.NOT_ELIGIBLE: Indicator.CRITICAL,
}
STATUS_WORDS: dict[Status, str] = {
    Status.ELIGIBLE: "eligible",
    Status.NEEDS_REVIEW: "needs review",
    Status.INCOMPLETE: "incomplete",
    Status.DEFERRED: "deferred",
    Status.NOT_ELIGIBLE: "not eligible",
}


class OverrideReason(StrEnum):
    """Why a clinician goes ahead without the card's advice (the app's override codes)."""

    WEIGHT_RECHECKED = "weight-rechecked"
    PAYER_APPROVED = "payer-approved"
    CLINICAL_JUDGEMENT = "clinical-judgement"
    WILL_ORDER_LATER = "will-order-later"
    ALREADY_REVIEWED = "already-reviewed"


OVERRIDE_DISPLAY: dict[OverrideReason, str] = {
    OverrideReason.WEIGHT_RECHECKED: "Weight re-checked; the order stands",
    OverrideReason.PAYER_APPROVED: "Approved by the payer as ordered",
    OverrideReason.CLINICAL_JUDGEMENT: "Clinical judgement",
    OverrideReason.WILL_ORDER_LATER: "Will order it separately",
    OverrideReason.ALREADY_REVIEWED: "Already reviewed in the ZOLGENSMA app",
}
ORDER_REASONS = (
    OverrideReason.WEIGHT_RECHECKED,
    OverrideReason.PAYER_APPROVED,
    OverrideReason.CLINICAL_JUDGEMENT,
    OverrideReason.WILL_ORDER_LATER,
)
VIEW_REASONS = (OverrideReason.ALREADY_REVIEWED, OverrideReason.CLINICAL_JUDGEMENT)


def stable_uuid(*parts: str) -> str:
    """A UUID derived from the parts (the same call gives the same card and suggestion ids)."""
    return str(uuid.uuid5(UUID_NAMESPACE, "\x1f".join(parts)))


def clipped(text: str, limit: int = MAX_SUMMARY_CHARS) -> str:
    """`text` on one line, shortened with an ellipsis to at most `limit` characters."""
    line = " ".join(text.split())
    if len(line) <= limit:
        return line
    cut = line[: limit - 1].rsplit(" ", 1)[0].rstrip(" ,;:.")
    return f"{cut}…"


def md(text: Any) -> str:
    """Text from the chart or the rules made safe for GitHub markdown (one line, escaped)."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def bullets(lines: Iterable[str]) -> str:
    """A markdown list of already-escaped lines."""
    return "\n".join(f"- {line}" for line in lines)


def source(section: str) -> dict[str, Any]:
    """The label as the card's source, the section as its topic."""
    return {
        "label": SOURCE_LABEL,
        "topic": {
            "system": SECTION_SYSTEM,
            "code": section,
            "display": f"{label.LABEL_VERSION}, section {section}",
        },
    }


def override_reasons(reasons: Sequence[OverrideReason]) -> list[dict[str, str]]:
    """The reasons as Codings with their display (CDS Hooks requires display)."""
    return [
        {"system": OVERRIDE_SYSTEM, "code": r.value, "display": OVERRIDE_DISPLAY[r]}
        for r in reasons
    ]


def smart_link(public_url: str, *, infusion_date: dt.date, text: str) -> dict[str, str]:
    """A link that launches the app (SMART) with the infusion date the card used."""
    return {
        "label": text,
        "url": f"{public_url.rstrip('/')}/launch",
        "type": "smart",
        "appContext": json.dumps({"infusionDate": infusion_date.isoformat()}),
    }


def card(
    *,
    uuid_parts: Sequence[str],
    summary: str,
    indicator: Indicator,
    detail: str,
    section: str,
    reasons: Sequence[OverrideReason],
    links: Sequence[Mapping[str, str]] = (),
    suggestions: Sequence[Mapping[str, Any]] = (),
) -> Card:
    """One card with every field CDS Hooks requires, and selectionBehavior with suggestions."""
    out: Card = {
        "uuid": stable_uuid(*uuid_parts),
        "summary": clipped(summary),
        "detail": detail,
        "indicator": indicator.value,
        "source": source(section),
        "overrideReasons": override_reasons(reasons),
    }
    if suggestions:
        out["suggestions"] = [dict(s) for s in suggestions]
        out["selectionBehavior"] = "at-most-one"
    if links:
        out["links"] = [dict(link) for link in links]
    return out
