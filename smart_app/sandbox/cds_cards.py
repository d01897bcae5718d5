"""CDS Hooks 2.0 cards as the sandbox EHR reads them, and the small markdown subset it renders.

A card that breaks the specification's required fields (uuid aside) is dropped, never shown half;
markdown is escaped first, then only bold, italic, bullets and line breaks become markup.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar
from urllib.parse import urlsplit

from markupsafe import Markup

T = TypeVar("T")


class Indicator(StrEnum):
    """A card's urgency (CDS Hooks 2.0: info, warning, critical)."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def text(self) -> str:
        """The word shown beside the colour."""
        return {"info": "Info", "warning": "Warning", "critical": "Critical"}[self.value]


class ActionType(StrEnum):
    """What a suggestion's action does to the draft orders."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


class LinkType(StrEnum):
    """A card link: a SMART app to launch, or a plain web page."""

    SMART = "smart"
    ABSOLUTE = "absolute"


@dataclass(frozen=True)
class Coding:
    """An override reason (a FHIR Coding)."""

    code: str
    system: str = ""
    display: str = ""

    def as_json(self) -> dict[str, str]:
        """The Coding as the feedback endpoint receives it."""
        out = {"code": self.code}
        if self.system:
            out["system"] = self.system
        if self.display:
            out["display"] = self.display
        return out


@dataclass(frozen=True)
class Action:
    """One change a suggestion makes: create or update a resource, or delete one by id."""

    type: ActionType
    description: str
    resource: Mapping[str, Any] | None = None
    resource_id: str | None = None
    """A relative reference (`MedicationRequest/123`), for delete."""


@dataclass(frozen=True)
class Suggestion:
    """A set of actions the clinician can accept in one click."""

    label: str
    uuid: str
    is_recommended: bool = False
    actions: tuple[Action, ...] = ()


@dataclass(frozen=True)
class Link:
    """A card link: its label, http(s) URL, type and SMART appContext."""

    label: str
    url: str
    type: LinkType
    app_context: str | None = None


@dataclass(frozen=True)
class Card:
    """One card of a service's answer (the service id kept for feedback)."""

    service_id: str
    uuid: str
    summary: str
    indicator: Indicator
    source_label: str
    detail: str = ""
    source_url: str = ""
    suggestions: tuple[Suggestion, ...] = ()
    selection_behavior: str = ""
    override_reasons: tuple[Coding, ...] = ()
    links: tuple[Link, ...] = ()

    @property
    def detail_html(self) -> Markup:
        """The detail as safe HTML (see `markdown_html`)."""
        return markdown_html(self.detail)

    def suggestion(self, uuid: str) -> Suggestion | None:
        """The card's suggestion with this uuid."""
        return next((s for s in self.suggestions if s.uuid and s.uuid == uuid), None)

    def override_reason(self, code: str) -> Coding | None:
        """The card's override reason with this code."""
        return next((r for r in self.override_reasons if r.code == code), None)


@dataclass(frozen=True)
class ParsedCards:
    """The valid cards of an answer and how many were dropped."""

    cards: tuple[Card, ...]
    dropped: int = 0
    system_actions: tuple[Action, ...] = field(default=())


def _text(value: Any) -> str:
    """A string field, or '' when absent or not a string."""
    return value if isinstance(value, str) else ""


def _http_url(value: Any) -> str:
    """An http(s) URL, or '' (no javascript:, data: or relative URLs)."""
    url = _text(value).strip()
    parts = urlsplit(url)
    return url if parts.scheme in ("http", "https") and parts.netloc else ""


def _action(raw: Any) -> Action | None:
    """One action, or None when it is not a valid create/update/delete."""
    if not isinstance(raw, dict):
        return None
    try:
        kind = ActionType(raw.get("type"))
    except ValueError:
        return None
    resource = raw.get("resource")
    resource_id = raw.get("resourceId")
    if isinstance(resource_id, list):  # tolerated: one id in a list
        resource_id = resource_id[0] if len(resource_id) == 1 else None
    if kind is ActionType.DELETE:
        if not isinstance(resource_id, str) or not resource_id:
            return None
        return Action(kind, _text(raw.get("description")), resource_id=resource_id)
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        return None
    return Action(kind, _text(raw.get("description")), resource=resource)


def _suggestion(raw: Any) -> Suggestion | None:
    """One suggestion with its valid actions, or None without a label."""
    if not isinstance(raw, dict) or not _text(raw.get("label")):
        return None
    actions = tuple(a for a in map(_action, raw.get("actions") or []) if a is not None)
    return Suggestion(
        label=raw["label"],
        uuid=_text(raw.get("uuid")),
        is_recommended=raw.get("isRecommended") is True,
        actions=actions,
    )


def _link(raw: Any) -> Link | None:
    """One link with an http(s) URL, or None."""
    if not isinstance(raw, dict):
        return None
    url = _http_url(raw.get("url"))
    try:
        kind = LinkType(raw.get("type"))
    except ValueError:
        return None
    if not url or not _text(raw.get("label")):
        return None
    context = raw.get("appContext")
    return Link(raw["label"], url, kind, context if isinstance(context, str) else None)


def _coding(raw: Any) -> Coding | None:
    """One override reason with a code, or None."""
    if not isinstance(raw, dict) or not _text(raw.get("code")):
        return None
    return Coding(raw["code"], _text(raw.get("system")), _text(raw.get("display")))


def _card(raw: Any, *, service_id: str) -> Card | None:
    """One card, or None when summary, indicator or source.label is missing or wrong."""
    if not isinstance(raw, dict):
        return None
    source = raw.get("source")
    try:
        indicator = Indicator(raw.get("indicator"))
    except ValueError:
        return None
    if not _text(raw.get("summary")) or not isinstance(source, dict):
        return None
    if not _text(source.get("label")):
        return None
    return Card(
        service_id=service_id,
        uuid=_text(raw.get("uuid")),
        summary=raw["summary"],
        indicator=indicator,
        source_label=source["label"],
        detail=_text(raw.get("detail")),
        source_url=_http_url(source.get("url")),
        suggestions=_present(map(_suggestion, raw.get("suggestions") or [])),
        selection_behavior=_text(raw.get("selectionBehavior")),
        override_reasons=_present(map(_coding, raw.get("overrideReasons") or [])),
        links=_present(map(_link, raw.get("links") or [])),
    )


def _present(items: Iterable[T | None]) -> tuple[T, ...]:
    """The items that are not None."""
    return tuple(i for i in items if i is not None)


def parse_cards(body: Any, *, service_id: str) -> ParsedCards:
    """The cards of a service's JSON answer; a body without a `cards` list has none."""
    raw_cards = body.get("cards") if isinstance(body, dict) else None
    if not isinstance(raw_cards, list):
        raise ValueError("the answer has no 'cards' list")
    cards = _present(_card(c, service_id=service_id) for c in raw_cards)
    raw_actions = body.get("systemActions") if isinstance(body, dict) else None
    actions = _present(map(_action, raw_actions if isinstance(raw_actions, list) else []))
    return ParsedCards(cards, dropped=len(raw_cards) - len(cards), system_actions=actions)


BULLET = re.compile(r"^\s*[-*+]\s+")
BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|__(?=\S)(.+?)(?<=\S)__")
ITALIC = re.compile(
    r"(?<![*\w])\*(?=\S)(.+?)(?<=\S)\*(?![*\w])|(?<![_\w])_(?=\S)(.+?)(?<=\S)_(?!\w)"
)


BACKSLASHED = re.compile(r"\\([!-/:-@\[-`{-~])")
"""A markdown backslash escape: an ASCII punctuation character meant literally."""
HELD = re.compile("\ue000(\\d+)\ue001")
"""Where a backslash-escaped character waits while bold and italic are found."""


def _inline(line: str) -> str:
    """One escaped line with **bold** and *italic* (or _italic_) made markup; a backslash makes
    the punctuation after it literal (\\* is a star)."""
    held: list[str] = []

    def hold(match: re.Match[str]) -> str:
        """Set a literal character aside."""
        held.append(match.group(1))
        return f"\ue000{len(held) - 1}\ue001"

    text = html.escape(BACKSLASHED.sub(hold, line.replace("\ue000", "").replace("\ue001", "")))
    text = BOLD.sub(lambda m: f"<strong>{m.group(1) or m.group(2)}</strong>", text)
    text = ITALIC.sub(lambda m: f"<em>{m.group(1) or m.group(2)}</em>", text)
    return HELD.sub(lambda m: html.escape(held[int(m.group(1))]), text)


def markdown_html(source: str) -> Markup:
    """A tiny safe markdown subset: everything escaped, then bold, italic, bullet lists (lines
    starting with -, * or +), paragraphs (blank lines), line breaks and backslash escapes."""
    blocks: list[str] = []
    lines: list[str] = []
    items: list[str] = []

    def flush() -> None:
        """Close the paragraph or list being built."""
        if lines:
            blocks.append("<p>" + "<br>".join(lines) + "</p>")
            lines.clear()
        if items:
            blocks.append("<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>")
            items.clear()

    for raw in source.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if not raw.strip():
            flush()
        elif BULLET.match(raw):
            if lines:
                flush()
            items.append(_inline(BULLET.sub("", raw, count=1).strip()))
        else:
            if items:
                flush()
            lines.append(_inline(raw.strip()))
    flush()
    return Markup("".join(blocks))  # noqa: S704 - built only from escaped text and fixed tags
