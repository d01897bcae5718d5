"""The follow-up page's view model from the rules' types: the Task groups, the open consult, the
result before an alerting one and the kit as stated, from the same helpers as the command's JSON.

The follow-ups are the sandbox's patients on the plan the app wrote (an in-memory chart, no
server), read on the sandbox's fixed date.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from smart_app import render_followup, service
from smart_app.fhir.plan_state import KitWritten
from smart_app.followup_shown import TASK_GROUPS, kit_shown, previous_shown
from smart_app.rules.followup import FollowUp, TaskView
from smart_app.rules.model import ActivityKind, TaskState
from smart_app.web.followup_view import OPEN_CONSULT_ITEM, follow_up_view
from tests.fhir.test_followup_write import _fresh_chart
from tests.smartsandbox import TODAY


def _following(pid: str) -> service.Following:
    """A sandbox patient on the app's plan, followed up today."""
    following = service.follow_record(_fresh_chart(pid).read_patient(pid), on=TODAY)
    assert following is not None
    return following


@pytest.fixture(scope="module")
def injured() -> service.Following:
    """Day 15 with an acute liver injury alert (results compared with baseline and previous)."""
    return _following("zs-day-15-liver-injury")


def test_the_task_groups_are_the_commands_in_the_same_order(injured: service.Following) -> None:
    found = injured.followup
    view = follow_up_view(found)
    data = render_followup.followup_data(found)
    assert list(view.tasks) == [s.value for s in TASK_GROUPS] == list(data["tasks"])
    for state, views in view.tasks.items():
        assert [v.task.reference for v in views] == [t["reference"] for t in data["tasks"][state]]
        assert all(v.state.value == state for v in views)
    assert sum(len(v) for v in view.tasks.values()) == len(found.tasks) > 0


def test_an_alerts_previous_result_is_shown_unless_it_is_the_baseline(
    injured: service.Following,
) -> None:
    view = follow_up_view(injured.followup)
    assert view.alerts, "the scenario raises an alert"
    data = render_followup.followup_data(injured.followup)
    for shown, alert in zip(view.alerts, data["alerts"], strict=True):
        for row, json_row in zip(shown.results, alert["results"], strict=True):
            assert row.previous == previous_shown(row.seen)
            assert (row.previous is None) == (json_row["previous"] is None)
    seen = view.alerts[0].results[0].seen
    as_baseline = dataclasses.replace(seen, previous=seen.baseline)
    assert previous_shown(as_baseline) is None
    assert previous_shown(dataclasses.replace(seen, baseline=None)) is seen.previous


def _with_task(found: FollowUp, view: TaskView) -> FollowUp:
    return dataclasses.replace(found, tasks=(*found.tasks, view))


def test_the_open_consult_is_the_overdue_one_before_a_due_one(injured: service.Following) -> None:
    found = injured.followup
    assert follow_up_view(found).open_consult is None
    task = found.tasks[0].task
    consult = dataclasses.replace(task, item=OPEN_CONSULT_ITEM, kind=ActivityKind.CONSULT)
    later = dataclasses.replace(consult, window_start=task.window_start.replace(day=1))
    due = _with_task(found, TaskView(consult, TaskState.DUE))
    assert follow_up_view(due).open_consult == consult
    both = _with_task(due, TaskView(later, TaskState.OVERDUE))
    assert follow_up_view(both).open_consult == later
    done = _with_task(found, TaskView(consult, TaskState.DONE))
    assert follow_up_view(done).open_consult is None


def test_the_kit_states_no_zero_or_missing_quantity() -> None:
    kit = KitWritten(
        reference="MedicationRequest/k",
        status="active",
        ndc="71894-123-03",
        description="kit",
        dose_volume_ml=Decimal(0),
        pump_rate_ml_per_h=None,
        total_vials=None,
        kit=None,
    )
    shown = kit_shown(kit)
    assert shown is not None
    assert (shown.dose_volume_ml, shown.pump_rate_ml_per_h, shown.vector_genomes) == (None,) * 3
    assert (shown.vials_5_5_ml, shown.capacity_ml, shown.band_kg) == (None, None, None)
    assert render_followup.kit_data(kit)["dose_volume_ml"] is None  # type: ignore[index]
    stated = kit_shown(dataclasses.replace(kit, dose_volume_ml=Decimal("11.0")))
    assert stated is not None and stated.vector_genomes == Decimal("11.0") * Decimal("2.0e13")
    assert kit_shown(None) is None


def test_the_pre_infusion_view_shows_the_written_kit_with_its_table_row() -> None:
    found = _following("zs-day-10")
    view = follow_up_view(found.followup, kit=found.kit)
    assert found.kit is not None and view.kit is not None
    assert view.kit.ndc == found.kit.ndc
    assert view.kit.band_kg is not None and view.kit.band_kg[0] < view.kit.band_kg[1]
    assert view.lab_draw_days == ()


def test_the_decisions_draw_days_are_the_commands() -> None:
    found = _following("zs-day-28").followup
    assert found.decision is not None
    days = follow_up_view(found).lab_draw_days
    assert days and list(days) == render_followup.followup_data(found)["decision"]["lab_draw_days"]
