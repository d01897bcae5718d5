"""View models: the SMART style filter, the banner, the rows of a transaction, the timeline;
the boxed warning on the plan page."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pytest
from flask import render_template
from markupsafe import escape

from smart_app import create_app, render
from smart_app.config import web_settings
from smart_app.fhir import summary
from smart_app.fhir.read import facts_from_bundle
from smart_app.rules import label
from smart_app.rules.eligibility import UNBLOCK_ADVICE
from smart_app.rules.model import Status
from smart_app.rules.plan import build_plan
from smart_app.sandbox.patients import synthetic_patients
from smart_app.web import present
from smart_app.web.context import LaunchContext
from smart_app.web.state import WebState

TODAY = dt.date(2026, 11, 21)


def test_style_keeps_known_keys_with_safe_values() -> None:
    css = present.style_css({"color_highlight": "#0b5394", "dim_border_radius": "4px"})
    assert "--ehr-highlight: #0b5394;" in css
    assert "--ehr-radius: 4px;" in css


@pytest.mark.parametrize(
    "style",
    [
        {"color_highlight": "red; } body { display: none"},
        {"color_text": "#fff;background:url(https://evil.example.org/x)"},
        {"font_family_body": "x</style><script>alert(1)</script>"},
        {"dim_font_size": "expression(alert(1))"},
        {"color_background": 12},
        {"unknown_key": "#ffffff"},
    ],
)
def test_style_drops_anything_else(style: dict) -> None:
    assert present.style_css(style) == ""


def test_banner_prefers_the_official_name_and_says_what_is_missing() -> None:
    patient = {
        "resourceType": "Patient",
        "name": [{"use": "nickname", "given": ["Bee"]}, {"use": "official", "text": "Ada Test"}],
        "identifier": [{"value": "MRN-1"}],
    }
    banner = summary.banner([patient], "p1")
    assert (banner.name, banner.identifier, banner.birth_date) == (
        "Ada Test",
        "MRN-1",
        "not recorded",
    )
    assert summary.banner([], "p2").name == "(no name recorded)"


def _plan_data(patient_id: str) -> dict:
    patient = next(p for p in synthetic_patients(today=TODAY) if p.patient_id == patient_id)
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in patient.resources],
    }
    facts = facts_from_bundle(json.loads(json.dumps(bundle), parse_float=Decimal))
    plan = build_plan(facts, on=TODAY, infusion_date=patient.infusion_date)
    return render.plan_data(plan)


def test_timeline_places_every_dated_item_inside_the_drawing() -> None:
    data = _plan_data("zs-eligible-4-2kg")
    timeline = present.timeline(data)
    assert timeline is not None
    inside = min(m.x for m in timeline.marks) >= present.LEFT_PX - 1
    assert inside and max(m.x for m in timeline.marks) <= timeline.width - present.RIGHT_PX + 1
    assert len(timeline.bars) == 1 + len(data["prednisolone"]["taper"])
    infusion = [m for m in timeline.marks if m.tone == "infusion"]
    assert len(infusion) == 1 and data["infusion_date"] in infusion[0].title
    assert timeline.ticks[0].label.endswith("(d0)")


def test_no_timeline_without_a_course() -> None:
    assert present.timeline(_plan_data("zs-weight-missing")) is None


def _plan_page(data: dict, tmp_path: Path) -> str:
    """The plan template rendered for plan data, blocked from writing (no form, no request)."""
    settings = web_settings(
        {}, secret_key="k" * 40, session_dir=tmp_path / "sessions", registrations={}
    )
    app = create_app({"STATE": WebState(settings=settings), "TESTING": True})
    status = data["eligibility"]["status"]
    page = {
        "context_id": "c1",
        "launched": LaunchContext(iss="http://127.0.0.1:1/fhir", patient=data["patient"]["id"]),
        "banner": summary.banner([], data["patient"]["id"]),
        "show_banner": False,
        "plan": data,
        "status": status,
        "writable": False,
        "review": [],
        "blocking": [],
        "advice": UNBLOCK_ADVICE.get(Status(status), ""),
        "timeline": present.timeline(data),
        "write_rows": [],
        "fingerprint": render.fingerprint(data),
        "order_mode": "proposal",
        "truncated": False,
        "severities": [],
    }
    with app.test_request_context("/p/c1/"):
        return render_template("plan.html", **page)


@pytest.mark.parametrize("patient_id", ["zs-eligible-4-2kg", "zs-weight-missing"])
def test_every_plan_page_shows_the_boxed_warning_after_the_status(
    patient_id: str, tmp_path: Path
) -> None:
    page = _plan_page(_plan_data(patient_id), tmp_path)
    warning = label.BOXED_WARNING
    box = page.index('id="boxed-warning"')
    assert page.index('id="status-h"') < box < page.index('id="write-h"')
    assert f'<h2 id="boxed-warning-h">{warning.title}</h2>' in page
    for text in (*warning.says, *warning.before_infusion, *warning.after_infusion):
        assert f"<li>{escape(text)}</li>" in page[box:], text
    assert "<h3>Before infusion</h3>" in page and "<h3>After infusion</h3>" in page
    assert "USPI Boxed Warning; 5.1" in page
    assert "style=" not in page and "<script" not in page  # the CSP allows neither
