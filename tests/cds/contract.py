"""CDS Hooks 2.0 response contract checks shared by the service tests."""

from __future__ import annotations

import importlib
import json
import uuid
from collections.abc import Mapping
from typing import Any

CARD_FIELDS = frozenset(
    {
        "uuid",
        "summary",
        "detail",
        "indicator",
        "source",
        "suggestions",
        "selectionBehavior",
        "overrideReasons",
        "links",
    }
)
INDICATORS = frozenset({"info", "warning", "critical"})
ACTION_TYPES = frozenset({"create", "update", "delete"})


def r4_valid(resource: Mapping[str, Any]) -> None:
    """Raise unless the resource validates as FHIR R4 (fhir.resources R4B models)."""
    kind = resource["resourceType"]
    module = importlib.import_module(f"fhir.resources.R4B.{kind.lower()}")
    getattr(module, kind).model_validate(resource)


def check_card(card: Mapping[str, Any]) -> None:
    """Assert one card meets the CDS Hooks 2.0 card contract."""
    assert set(card) <= CARD_FIELDS, set(card) - CARD_FIELDS
    uuid.UUID(card["uuid"])
    assert isinstance(card["summary"], str) and 0 < len(card["summary"]) < 140, card["summary"]
    assert "\n" not in card["summary"]
    assert card["indicator"] in INDICATORS
    assert isinstance(card["source"]["label"], str) and card["source"]["label"]
    assert isinstance(card.get("detail", ""), str)
    for reason in card.get("overrideReasons", []):
        assert reason["code"] and reason["system"] and reason["display"]
    for link in card.get("links", []):
        assert link["label"] and link["url"].startswith("http")
        assert link["type"] in ("absolute", "smart")
        if "appContext" in link:
            assert link["type"] == "smart" and isinstance(link["appContext"], str)
    if card.get("suggestions"):
        assert card["selectionBehavior"] in ("at-most-one", "any")
        ids = [s["uuid"] for s in card["suggestions"]]
        assert len(set(ids)) == len(ids)
        for suggestion in card["suggestions"]:
            check_suggestion(suggestion)


def check_suggestion(suggestion: Mapping[str, Any]) -> None:
    """Assert one suggestion and its actions meet the contract (resources valid FHIR R4)."""
    assert isinstance(suggestion["label"], str) and suggestion["label"]
    uuid.UUID(suggestion["uuid"])
    assert isinstance(suggestion.get("isRecommended", False), bool)
    for action in suggestion.get("actions", []):
        assert action["type"] in ACTION_TYPES
        assert isinstance(action["description"], str) and action["description"]
        if action["type"] in ("create", "update"):
            r4_valid(action["resource"])
        else:
            reference = action["resourceId"]  # CDS Hooks 2.0: a string, a relative reference
            assert isinstance(reference, str) and reference.count("/") == 1, action


def check_response(answer: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Assert a whole response meets the contract; its cards."""
    assert set(answer) <= {"cards", "systemActions"}
    cards = answer["cards"]
    assert isinstance(cards, list)
    for card in cards:
        check_card(card)
    assert len({c["uuid"] for c in cards}) == len(cards)
    json.dumps(answer)
    return cards
