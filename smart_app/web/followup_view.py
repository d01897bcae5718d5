"""The follow-up page's view model: the rules' FollowUp as it is, and the few values the page
derives from it (the same helpers, smart_app.followup_shown, give the command's JSON)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from smart_app.fhir.plan_state import KitWritten
from smart_app.followup_shown import (
    KitShown,
    kit_shown,
    lab_draw_days,
    previous_shown,
    task_groups,
)
from smart_app.rules import label
from smart_app.rules.followup import AlertReview, FollowUp, TaskView
from smart_app.rules.model import AlertResult, LabResult, PlannedTask, TaskState

OPEN_CONSULT_ITEM = "task/consult/hepatology"
"""The consult Task a day-30 decision requests when the liver tests stay at 2 x ULN or more."""


@dataclass(frozen=True)
class SeenResult:
    """One result behind an alert, with the result before it when that is not the baseline."""

    seen: AlertResult
    previous: LabResult | None


@dataclass(frozen=True)
class AlertShown:
    """An alert with its acknowledgement and Tasks, and its results as the page lists them."""

    review: AlertReview
    results: tuple[SeenResult, ...]


@dataclass(frozen=True)
class FollowUpView:
    """What the follow-up page shows: the FollowUp (`followup`) and what is derived from it."""

    followup: FollowUp
    alerts: tuple[AlertShown, ...]
    tasks: Mapping[str, tuple[TaskView, ...]]
    """The Tasks by state value ('overdue', 'due', ...), every group present, most urgent first."""
    open_consult: PlannedTask | None
    """The hepatology consult Task due or overdue, if any."""
    kit: KitShown | None
    """The kit order as written, as stated (shown before the infusion day)."""
    lab_draw_days: tuple[int, ...]
    """The lab-draw days under the proposed decision (none without a decision)."""
    iv_alternative: str = label.STEROID_IV_ALTERNATIVE
    """What to give when the oral steroid is not tolerated."""
    consult_rule: str = label.CONSULT_RULE
    """When the label calls for a hepatology consult (shown with a decision that needs one)."""


def follow_up_view(found: FollowUp, *, kit: KitWritten | None = None) -> FollowUpView:
    """The page's view of a follow-up (`kit`: the kit order as written)."""
    groups = task_groups(found.tasks)
    waiting = [*groups[TaskState.OVERDUE], *groups[TaskState.DUE]]
    return FollowUpView(
        followup=found,
        alerts=tuple(
            AlertShown(
                review,
                tuple(SeenResult(seen, previous_shown(seen)) for seen in review.alert.results),
            )
            for review in found.reviews
        ),
        tasks={state.value: tuple(views) for state, views in groups.items()},
        open_consult=next((v.task for v in waiting if v.task.item == OPEN_CONSULT_ITEM), None),
        kit=kit_shown(kit),
        lab_draw_days=tuple(lab_draw_days(found.decision)) if found.decision else (),
    )
