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
from smart_app.fhir import codes, summary
from smart_app.fhir.read import facts_from_bundle
from smart_app.rules import label
from smart_app.rules.eligibility import UNBLOCK_ADVICE
from smart_app.rules.model import Plan, Status
from smart_app.rules.plan import build_plan
from smart_app.sandbox.patients import synthetic_patients
from smart_app.web import checklist, present, words
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


def _plan(patient_id: str) -> Plan:
    """A synthetic patient's plan, built offline (the type the pages' view models take)."""
    patient = next(p for p in synthetic_patients(today=TODAY) if p.patient_id == patient_id)
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in patient.resources],
    }
    facts = facts_from_bundle(json.loads(json.dumps(bundle), parse_float=Decimal))
    return build_plan(facts, on=TODAY, infusion_date=patient.infusion_date)


def test_timeline_places_every_dated_item_inside_the_drawing() -> None:
    plan = _plan("zs-eligible-4-2kg")
    timeline = present.timeline(plan)
    assert timeline is not None and plan.steroids is not None
    inside = min(m.x for m in timeline.marks) >= present.LEFT_PX - 1
    assert inside and max(m.x for m in timeline.marks) <= timeline.width - present.RIGHT_PX + 1
    assert len(timeline.bars) == 1 + len(plan.steroids.taper)
    infusion = [m for m in timeline.marks if m.tone == "infusion"]
    shown = words.clinical_date(plan.infusion_date)
    assert len(infusion) == 1 and infusion[0].title.startswith(f"{shown} (infusion day)")
    assert shown in [t.label.text for t in timeline.ticks if t.label]  # the layout: test_timeline


def test_no_timeline_without_a_course() -> None:
    assert present.timeline(_plan("zs-weight-missing")) is None


def _plan_page(patient_id: str, tmp_path: Path) -> str:
    """The plan template rendered for a synthetic patient, blocked from writing (no form)."""
    patient = next(p for p in synthetic_patients(today=TODAY) if p.patient_id == patient_id)
    entries = [{"resource": r} for r in patient.resources]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    facts = facts_from_bundle(json.loads(json.dumps(bundle), parse_float=Decimal))
    plan = build_plan(facts, on=TODAY, infusion_date=patient.infusion_date)
    data = render.plan_data(plan)
    settings = web_settings(
        {}, secret_key="k" * 40, session_dir=tmp_path / "sessions", registrations={}
    )
    app = create_app({"STATE": WebState(settings=settings), "TESTING": True})
    status = Status(data["eligibility"]["status"])
    listed = checklist.build(plan, facts)
    advice = UNBLOCK_ADVICE.get(status, "")
    page = {
        "context_id": "c1",
        "launched": LaunchContext(iss="http://127.0.0.1:1/fhir", patient=data["patient"]["id"]),
        "banner": summary.banner([], data["patient"]["id"]),
        "show_banner": False,
        "plan": plan,
        "boxed_warning": label.BOXED_WARNING,
        "status": status.value,
        "writable": False,
        "review": [],
        "blocking": [],
        "advice": advice,
        "unblock": checklist.unblock(plan, facts, advice=advice, latest=TODAY),
        "checklist": listed,
        "checklist_reason": checklist.reason(listed, status),
        "timeline": None,
        "write_rows": [],
        "write_groups": [],
        "fingerprint": render.fingerprint(data),
        "order_mode": "proposal",
        "truncated": False,
        "date_min": TODAY.isoformat(),
        "date_max": TODAY.isoformat(),
    }
    with app.test_request_context("/p/c1/"):
        return render_template("plan.html", **page)


@pytest.mark.parametrize("patient_id", ["zs-eligible-4-2kg", "zs-weight-missing"])
def test_every_plan_page_shows_the_boxed_warning_after_the_status(
    patient_id: str, tmp_path: Path
) -> None:
    page = _plan_page(patient_id, tmp_path)
    warning = label.BOXED_WARNING
    box = page.index('id="boxed-warning"')
    assert page.index('id="status-h"') < box < page.index('id="checklist-h"')
    assert f'<h2 id="boxed-warning-h">{warning.title}</h2>' in page
    for text in (*warning.says, *warning.before_infusion, *warning.after_infusion):
        assert f"<li>{escape(text)}</li>" in page[box:], text
    assert "<h3>Before infusion</h3>" in page and "<h3>After infusion</h3>" in page
    assert "USPI Boxed Warning; 5.1" in page
    assert "style=" not in page and "<script" not in page  # the CSP allows neither


def test_what_will_be_written_is_grouped_and_counted() -> None:
    def entry(kind: str, *, earlier: bool = False) -> present.WrittenEntry:
        return present.WrittenEntry(kind, "", None, "to be created", kind, "", kind, earlier)

    entries = [
        entry("MedicationRequest"),
        entry("MedicationRequest"),
        entry("CarePlan"),
        *[entry("Task") for _ in range(3)],
        entry("DetectedIssue"),
        entry("Provenance"),
        entry("CarePlan", earlier=True),
    ]
    groups = present.write_groups(entries)
    assert [g.name for g in groups] == [
        "2 orders",
        "1 care plan",
        "3 tasks",
        "1 acknowledged finding",
        "1 provenance record",
        "1 entry of an earlier plan retired",
    ]
    assert sum(len(g.entries) for g in groups) == len(entries)
    assert groups[-1].entries[0].earlier


def test_a_transaction_preview_names_each_entry_before_it_is_sent() -> None:
    plan = _plan("zs-eligible-4-2kg")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {
                    "resourceType": "MedicationRequest",
                    "identifier": [
                        {"system": codes.APP_IDENTIFIER, "value": "k1/medicationrequest/kit"}
                    ],
                },
                "request": {"method": "POST", "url": "MedicationRequest"},
            },
            {
                "resource": {
                    "resourceType": "CarePlan",
                    "status": "revoked",
                    "identifier": [{"system": codes.APP_IDENTIFIER, "value": "k0/careplan"}],
                },
                "request": {"method": "PUT", "url": "CarePlan/old"},
            },
        ],
    }
    rows = present.preview_rows(bundle)
    assert [(r["outcome"], r["item"], r["kind"]) for r in rows] == [
        ("to be created", "medicationrequest/kit", "MedicationRequest"),
        ("to be set to revoked", "careplan", "CarePlan"),
    ]
    entries = present.written_entries(
        rows, plan, order_mode="proposal", earlier=frozenset({"CarePlan/old"})
    )
    assert [e.name for e in entries] == [
        "ZOLGENSMA kit order for the prescriber to sign",
        "Earlier plan's CarePlan retired",
    ]


def test_the_written_entries_are_named_clinically_and_dated_from_the_schedule() -> None:
    plan = _plan("zs-eligible-4-2kg")
    rows = [
        {"reference": "MedicationRequest/k", "outcome": "created", "item": "medicationrequest/kit"},
        {
            "reference": "MedicationRequest/p",
            "outcome": "existing",
            "item": "medicationrequest/prednisolone",
        },
        {"reference": "CarePlan/c", "outcome": "created", "item": "careplan"},
        {"reference": "Task/t", "outcome": "created", "item": "task/lab-draw/day7"},
        {"reference": "Task/b", "outcome": "created", "item": "task/baseline/day-1"},
        {"reference": "Provenance/v", "outcome": "created", "item": "provenance/abc123"},
        {"reference": "CarePlan/old", "outcome": "updated", "item": "careplan"},
    ]
    entries = present.written_entries(
        rows, plan, order_mode="proposal", earlier=frozenset({"CarePlan/old"})
    )
    names = [e.name for e in entries]
    assert names == [
        "ZOLGENSMA kit order for the prescriber to sign",
        "Prednisolone order for the prescriber to sign",
        "Care plan",
        "Task: Lab draw",
        "Task: Baseline checks",
        "Provenance",
        "Earlier plan's CarePlan retired",
    ]
    infusion = plan.infusion_date
    assert entries[0].due == infusion and "3 × 8.3 mL vials" in entries[0].detail
    assert "0 ×" not in entries[0].detail
    assert entries[1].due == infusion - dt.timedelta(days=1)
    assert entries[1].outcome == "already in the chart"
    assert entries[3].due == infusion + dt.timedelta(days=7) and "troponin I" in entries[3].detail
    assert entries[4].due == infusion - dt.timedelta(days=1)
    ordered = present.written_entries(rows[:1], plan, order_mode="order")
    assert ordered[0].name == "ZOLGENSMA kit order (active order)"


def test_the_schedule_table_leaves_the_taper_to_the_course_and_numbers_its_conditions() -> None:
    plan = _plan("zs-eligible-4-2kg")
    rows, conditions = present.schedule_rows(plan)
    kinds = {r.kind for r in rows}
    assert "taper-step" not in kinds and "steroid-end" not in kinds
    assert len(rows) == len(plan.schedule) - 3  # two taper steps and the end of the course
    assert [r.on_time for r in rows if r.kind == "infusion"] == ["that day"]
    assert next(r.on_time for r in rows if r.kind == "lab-draw") == "±1\u00a0day"
    baseline = next(r for r in rows if r.kind == "baseline")
    assert baseline.on_time.startswith("from ")
    numbered = {r.condition for r in rows if r.condition}
    assert numbered == set(range(1, len(conditions) + 1)) and len(set(conditions)) == len(
        conditions
    )
