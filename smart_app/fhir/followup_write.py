"""Follow-up writes, one transaction each: Tasks completed by their results, the day-30 decision,
an alert acknowledged with the Task it calls for; and the kit order read back for the view.

Alerts are recorded as Tasks on the plan's CarePlan, so that the chart read the app already makes
(Task?identifier=<app system>|) brings them back on the next launch:
- acknowledging is a completed Task per alert and day (code `alert-review`, identifier
  `<plan key>/task/alert-review/<alert code>/day<N>`, the results behind the alert as outputs,
  the clinician as owner);
- the consult or repeat-lab Task an alert calls for (rules.alerts.ACTIONS) is a requested Task of
  kind `consult` or `lab-draw` (`<plan key>/task/<kind>/alert-<action>/day<N>`), added to the
  CarePlan; two alerts calling for the same draw share it; a lab draw is completed by its results
  like a scheduled one, a consult is confirmed by hand;
- creating the Task also acknowledges the alert, in the same transaction, with Provenance.
Nothing is sent when the chart already holds all of it; the conditional creates (and the
Provenance keyed by the operations) make a transaction sent twice change nothing.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from smart_app.errors import WriteBlocked
from smart_app.fhir import codes
from smart_app.fhir.gateway import PatientRecord
from smart_app.fhir.plan_bundle import EntryBuilder, steroid_order_body, task_resource
from smart_app.fhir.written import OrderMode
from smart_app.rules import label
from smart_app.rules.followup import ActionState, AlertReview, TaskView, is_alert_task
from smart_app.rules.liver_decision import Decision
from smart_app.rules.model import (
    ActivityKind,
    AlertLevel,
    DecisionBranch,
    LabResult,
    PlannedTask,
    PlanState,
    ScheduleItem,
    SteroidOrder,
    SteroidStep,
    TaskState,
)
from smart_app.rules.monitoring import sections

Resource = dict[str, Any]


@dataclass(frozen=True)
class Confirmed:
    """Who confirmed a follow-up update, when, and how orders are written."""

    recorded: dt.datetime
    fhir_user: str | None = None
    order_mode: OrderMode = OrderMode.PROPOSAL


def _observation(result: LabResult) -> str | None:
    """'Observation/id' for a result read from the server."""
    ref = result.evidence.reference
    return ref if ref.startswith("Observation/") else None


def _outputs(results: Iterable[LabResult]) -> list[Resource]:
    """Task.output entries referencing result Observations."""
    out = []
    for result in results:
        ref = _observation(result)
        if ref and all(o["valueReference"]["reference"] != ref for o in out):
            out.append(
                {
                    "type": {
                        "coding": [{"system": codes.APP_CODES, "code": "lab-result"}],
                        "text": result.test.value,
                    },
                    "valueReference": {"reference": ref},
                }
            )
    return out


class _FollowUpBuilder(EntryBuilder):
    """Entries of one follow-up transaction on an active plan."""

    def __init__(
        self, state: PlanState, record: PatientRecord, patient_id: str, confirmed: Confirmed
    ) -> None:
        if confirmed.recorded.tzinfo is None:
            raise WriteBlocked("the recorded time must carry a time zone")
        super().__init__(
            key=state.plan_key,
            patient_id=patient_id,
            record=record,
            recorded=confirmed.recorded,
            fhir_user=confirmed.fhir_user,
            label_version=label.LABEL_VERSION,
        )
        self.state = state
        self.confirmed = confirmed
        self.by_reference = {
            f"{r.get('resourceType')}/{r.get('id')}": r for r in record.resources if r.get("id")
        }

    def raw(self, reference: str) -> Resource:
        """The server's copy of a resource read with the record."""
        found = self.by_reference.get(reference)
        if found is None:
            raise WriteBlocked(f"nothing written: {reference} is no longer in the chart; reload")
        return copy.deepcopy(dict(found))

    def complete(
        self,
        task: PlannedTask,
        *,
        outputs: list[Resource],
        done_on: dt.date,
        note: str,
        extra: Resource | None = None,
    ) -> str:
        """Mark one open Task completed, with its outputs, a note and any `extra` elements."""
        old = self.raw(task.reference)
        changes: Resource = {
            **(extra or {}),
            "status": "completed",
            "executionPeriod": {"end": done_on.isoformat()},
            "lastModified": self.recorded,
            "note": [*(old.get("note") or []), {"time": self.recorded, "text": note}],
        }
        if outputs:
            changes["output"] = outputs
        if self.user and self.is_practitioner():
            changes["owner"] = self.user
        return self.put(old, changes)

    def further_draws(self, items: Sequence[ScheduleItem]) -> None:
        """New lab-draw Tasks until results are back to baseline, added to the CarePlan."""
        new = []
        for item in items:
            task = task_resource(
                item, self.state.care_plan, patient=self.patient, recorded=self.recorded
            )
            task |= self.requester()
            new.append(self.add(task, item.task_item, profile="zolgensma-task"))
        old = self.raw(self.state.care_plan)
        have = {a.get("reference", {}).get("reference") for a in old.get("activity") or []}
        activity = [*(old.get("activity") or [])]
        activity += [{"reference": {"reference": ref}} for ref in new if ref not in have]
        draws = "; ".join(
            f"day {i.day} ({i.date.isoformat()}): {', '.join(i.tests)}" for i in items
        )
        note = {
            "time": self.recorded,
            "text": f"Further lab draws until results are back to baseline: {draws} (label "
            f"section {sections(i.section for i in items)}).",
        }
        self.put(old, {"activity": activity, "note": [*(old.get("note") or []), note]})


def completion_bundle(
    state: PlanState,
    record: PatientRecord,
    *,
    patient_id: str,
    views: Sequence[TaskView],
    manual: Sequence[PlannedTask] = (),
    proposed: Sequence[ScheduleItem] = (),
    confirmed: Confirmed,
) -> Resource:
    """One transaction completing every resulted Task (and those the clinician ticked) and
    creating the further draws proposed until results are back to baseline."""
    builder = _FollowUpBuilder(state, record, patient_id, confirmed)
    for view in views:
        if view.state is not TaskState.RESULTED:
            continue
        dates = sorted(r.effective for r in view.matches)
        late = (
            f" Late: drawn after the window closed on {view.task.window_end}." if view.late else ""
        )
        builder.complete(
            view.task,
            outputs=_outputs(view.matches),
            done_on=dates[-1],
            note=f"Completed by the results dated {_dates(dates)}.{late}",
        )
    for task in manual:
        if not task.is_open or task.tests:
            raise WriteBlocked(f"nothing written: {task.item} cannot be confirmed by hand")
        builder.complete(
            task,
            outputs=[],
            done_on=confirmed.recorded.date(),
            note="Confirmed done by the clinician.",
        )
    if proposed:
        builder.further_draws(proposed)
    if not builder.entries:
        raise WriteBlocked("nothing to update: no open Task has its results yet")
    builder.provenance(activity="UPDATE")
    return builder.bundle()


def _dates(dates: Iterable[dt.date]) -> str:
    """Distinct dates, comma-separated, in order."""
    return ", ".join(sorted({d.isoformat() for d in dates}))


def _order_text(step: SteroidStep, *, weight_kg: str, what: str, strength: str) -> str:
    """The dosage text of a decision's prednisolone order."""
    return (
        f"Prednisolone (or equivalent) {step.dose_mg_per_day} mg ({step.volume_ml_per_day} mL "
        f"of {strength}) by mouth once daily = {step.mg_per_kg_per_day} mg/kg/day for "
        f"{weight_kg} kg, {step.start.isoformat()} to {step.end.isoformat()} ({step.days} days). "
        f"{what}"
    )


class _DecisionBuilder(_FollowUpBuilder):
    """Entries of the liver assessment decision."""

    def __init__(
        self,
        state: PlanState,
        record: PatientRecord,
        patient_id: str,
        confirmed: Confirmed,
        decision: Decision,
        on: dt.date,
    ) -> None:
        super().__init__(state, record, patient_id, confirmed)
        self.decision = decision
        self.on = on
        self.branch = decision.branch or DecisionBranch.CONTINUE
        self.new: list[str] = []

    def _common(self) -> Resource:
        """Status, intent, subject and context shared by the decision's orders."""
        mode = self.confirmed.order_mode
        common: Resource = {
            "status": mode.status,
            "intent": mode.value,
            "subject": self.patient,
            "authoredOn": self.recorded,
            "basedOn": [{"reference": self.state.care_plan}],
            "reasonCode": [
                {"text": f"ZOLGENSMA liver assessment on {self.on.isoformat()} (section 2.1)"}
            ],
        }
        return common | self.requester()

    def assessment(self) -> None:
        """The liver assessment Task, completed with the branch, the results and the reasons."""
        decision = self.decision
        reasons = "; ".join(decision.reasons) or "ALT and AST < 2 x ULN; bilirubin, PT, INR normal"
        exam = "normal (attested)" if decision.exam_normal else "not attested normal"
        outcome = (
            "unremarkable: taper" if self.branch is DecisionBranch.TAPER else "continue 1 mg/kg/day"
        )
        note = f"Liver assessment on {self.on.isoformat()}: {outcome}. Exam {exam}. {reasons}." + (
            f" {label.ADVICE_CONSULT}" if decision.consult else ""
        )
        changes: Resource = {
            "businessStatus": {
                "coding": [{"system": codes.APP_CODES, "code": self.branch.value}],
                "text": outcome,
            },
        }
        outputs = _outputs(seen.result for seen in decision.panel)
        open_check = next(
            (t for t in self.state.tasks if t.kind is ActivityKind.LIVER_ASSESSMENT and t.is_open),
            None,
        )
        if open_check is not None:
            self.complete(open_check, outputs=outputs, done_on=self.on, note=note, extra=changes)
            return
        task: Resource = {
            "resourceType": "Task",
            "status": "completed",
            "intent": "plan",
            "priority": "routine",
            "code": {
                "coding": [{"system": codes.APP_CODES, "code": ActivityKind.LIVER_ASSESSMENT}],
                "text": "Repeat liver assessment while 1 mg/kg/day continues",
            },
            "description": note,
            "for": self.patient,
            "basedOn": [{"reference": self.state.care_plan}],
            "authoredOn": self.recorded,
            "lastModified": self.recorded,
            "restriction": {"period": {"start": self.on.isoformat(), "end": self.on.isoformat()}},
            "executionPeriod": {"end": self.on.isoformat()},
            **changes,
        }
        if outputs:
            task["output"] = outputs
        if self.user and self.is_practitioner():
            task["owner"] = self.user
        self.new.append(
            self.add(task, f"task/liver-assessment/{self.decision.key}", profile="zolgensma-task")
        )

    def orders(self) -> None:
        """The taper steps, or the continued full dose, on the re-read weight."""
        decision = self.decision
        weight = decision.weight
        if weight is None:
            raise WriteBlocked("nothing written: no current weight for the steroid dose")
        strength = f"{format(decision.concentration_mg_per_ml, 'f')} mg/mL"
        total = len(decision.steps)
        for number, step in enumerate(decision.steps, start=1):
            if self.branch is DecisionBranch.TAPER:
                what = (
                    f"Taper step {number} of {total} after an unremarkable liver assessment on "
                    f"{self.on.isoformat()} (section 2.1; steps are an institution default). "
                    "Never stop abruptly."
                )
                item = f"medicationrequest/{decision.key}/taper-{number}"
            else:
                what = (
                    "Continue 1 mg/kg/day: liver function abnormal at the assessment on "
                    f"{self.on.isoformat()}; reassess weekly and taper over 28 days or longer once "
                    "ALT and AST are < 2 x ULN and the rest is normal (section 2.1); with "
                    f"{label.CONSULT_RULE}, promptly consult pediatric gastroenterology or "
                    "hepatology. Do not stop abruptly."
                )
                item = f"medicationrequest/{decision.key}/continue"
            text = _order_text(
                step, weight_kg=format(weight.value, "f"), what=what, strength=strength
            )
            self.new.append(
                self.add(
                    {
                        "resourceType": "MedicationRequest",
                        **self._common(),
                        **steroid_order_body(
                            start=step.start,
                            end=step.end,
                            mg_per_day=step.dose_mg_per_day,
                            ml_per_day=step.volume_ml_per_day,
                            concentration_mg_per_ml=decision.concentration_mg_per_ml,
                            text=text,
                        ),
                        "note": [{"text": what}],
                    },
                    item,
                    profile="zolgensma-steroid-order",
                )
            )
        if decision.end_order is not None and decision.steps:
            self._end_continuation(
                decision.end_order, decision.steps[0].start - dt.timedelta(days=1)
            )

    def _end_continuation(self, order: SteroidOrder, last_day: dt.date) -> None:
        """Move the running continuation's end to the day before the taper starts."""
        old = self.raw(order.reference)
        dosage = copy.deepcopy((old.get("dosageInstruction") or [{}])[0])
        bounds = dosage.setdefault("timing", {}).setdefault("repeat", {})["boundsPeriod"]
        bounds["end"] = last_day.isoformat()
        dosage["text"] = (
            f"{dosage.get('text', '')} Ended on {last_day.isoformat()}: the taper starts the next "
            "day."
        ).strip()
        self.put(old, {"dosageInstruction": [dosage]})

    def draws(self) -> None:
        """Lab-draw Tasks after the decision: keep what still applies, add, update, cancel."""
        desired = {item.day: item for item in self.decision.draws}
        existing = {
            t.day: t
            for t in self.state.tasks
            if t.kind is ActivityKind.LAB_DRAW
            and t.is_open
            and t.day > self.decision.after_day
            and not is_alert_task(t.item)
        }
        for day, item in sorted(desired.items()):
            resource = task_resource(
                item, self.state.care_plan, patient=self.patient, recorded=self.recorded
            )
            old_task = existing.get(day)
            if old_task is None:
                self.new.append(self.add(resource, item.task_item, profile="zolgensma-task"))
            elif (
                old_task.tests != item.tests
                or (old_task.window_start, old_task.window_end)
                != (item.window_start, item.window_end)
                or old_task.description != resource["description"]
            ):
                changes = {
                    k: resource[k]
                    for k in ("code", "description", "restriction", "note", "input")
                    if k in resource
                }
                self.put(self.raw(old_task.reference), changes)
        for day, old_task in sorted(existing.items()):
            if day not in desired:
                self.put(
                    self.raw(old_task.reference),
                    {
                        "status": "cancelled",
                        "statusReason": {
                            "text": f"no longer applies after the liver assessment on "
                            f"{self.on.isoformat()} ({self.branch.value})"
                        },
                    },
                )

    def consult(self) -> None:
        """The pediatric gastroenterology/hepatology consult (section 2.1), and its Task."""
        mode = self.confirmed.order_mode
        evidence = [
            {"reference": ref}
            for result in self.decision.consult_results
            if (ref := _observation(result))
        ]
        request: Resource = {
            "resourceType": "ServiceRequest",
            "status": mode.status,
            "intent": mode.value,
            "priority": "urgent",
            "category": [{"coding": [{"system": codes.APP_CODES, "code": "hepatology-consult"}]}],
            "code": {
                "coding": [{"system": codes.APP_CODES, "code": "hepatology-consult"}],
                "text": "Consult pediatric gastroenterology or hepatology",
            },
            "subject": self.patient,
            "basedOn": [{"reference": self.state.care_plan}],
            "authoredOn": self.recorded,
            "reasonCode": [{"text": "; ".join(self.decision.reasons)}],
            "note": [{"text": f"{label.ADVICE_CONSULT} (label section 2.1; 5.1)"}],
        }
        if evidence:
            request["reasonReference"] = evidence
        request |= self.requester()
        consult = self.add(
            request, "servicerequest/hepatology-consult", profile="zolgensma-consult"
        )
        self.new.append(consult)
        task: Resource = {
            "resourceType": "Task",
            "status": "requested",
            "intent": "plan",
            "priority": "urgent",
            "code": {
                "coding": [{"system": codes.APP_CODES, "code": ActivityKind.CONSULT}],
                "text": "Consult pediatric gastroenterology or hepatology promptly",
            },
            "description": f"{label.ADVICE_CONSULT} Label section 2.1; 5.1.",
            "focus": {"reference": consult},
            "for": self.patient,
            "basedOn": [{"reference": self.state.care_plan}],
            "authoredOn": self.recorded,
            "restriction": {
                "period": {
                    "start": self.on.isoformat(),
                    "end": (self.on + dt.timedelta(days=2)).isoformat(),
                }
            },
        }
        task |= self.requester()
        self.new.append(self.add(task, "task/consult/hepatology", profile="zolgensma-task"))

    def care_plan(self) -> None:
        """The CarePlan gains the new activities and a note of the decision."""
        old = self.raw(self.state.care_plan)
        have = {a.get("reference", {}).get("reference") for a in old.get("activity") or []}
        activity = [*(old.get("activity") or [])]
        activity += [{"reference": {"reference": ref}} for ref in self.new if ref not in have]
        weight = self.decision.weight
        change = ""
        if weight is not None and self.decision.full_dose_mg_per_day is not None:
            change = (
                f" Weight {weight.value} kg on {weight.effective}: 1 mg/kg/day = "
                f"{self.decision.full_dose_mg_per_day} mg (was {self.decision.previous_mg_per_day}"
                " mg)."
            )
        consult = (
            f" Hepatology consult requested (urgent): {label.ADVICE_CONSULT}"
            if self.decision.consult
            else ""
        )
        note = {
            "time": self.recorded,
            "text": f"Liver assessment on {self.on.isoformat()}: {self.branch.value}."
            f"{change}{consult}",
        }
        self.put(old, {"activity": activity, "note": [*(old.get("note") or []), note]})


def decision_bundle(
    state: PlanState,
    record: PatientRecord,
    *,
    patient_id: str,
    decision: Decision,
    on: dt.date,
    confirmed: Confirmed,
) -> Resource:
    """One transaction recording the liver assessment decision and everything it changes."""
    if not decision.writable:
        missing = "; ".join(f.message for f in decision.findings) or (
            "attest a normal clinical exam to taper"
        )
        raise WriteBlocked(f"nothing written: the decision cannot be recorded yet: {missing}")
    builder = _DecisionBuilder(state, record, patient_id, confirmed, decision, on)
    builder.assessment()
    builder.orders()
    builder.draws()
    if decision.consult:
        builder.consult()
    builder.care_plan()
    builder.provenance(activity="UPDATE")
    return builder.bundle()


class _AlertBuilder(_FollowUpBuilder):
    """Entries acknowledging one alert and creating the Task it calls for."""

    def __init__(
        self,
        state: PlanState,
        record: PatientRecord,
        patient_id: str,
        confirmed: Confirmed,
        review: AlertReview,
        on: dt.date,
    ) -> None:
        super().__init__(state, record, patient_id, confirmed)
        self.review = review
        self.alert = review.alert
        self.on = on
        self.day = (on - state.infusion_date).days
        self.outputs = _outputs(r.result for r in self.alert.results)

    def has(self, item: str) -> bool:
        """Whether the chart already holds the app's resource of this item (any status)."""
        return self.identifier(item)["value"] in self.existing

    def _reason(self) -> Resource:
        """Why: the alert's title and section, and its first result."""
        reason: Resource = {
            "reasonCode": {"text": f"{self.alert.title} (label section {self.alert.section})"}
        }
        first = next((o["valueReference"] for o in self.outputs), None)
        if first is not None:
            reason["reasonReference"] = first
        return reason

    def acknowledge(self) -> None:
        """The acknowledgement: a completed Task for this alert and day, the results as outputs."""
        if self.review.acknowledged_today or self.has(self.review.item):
            return
        rules = "; ".join(c.rule for c in self.alert.criteria)
        on = self.on.isoformat()
        task: Resource = {
            "resourceType": "Task",
            "status": "completed",
            "intent": "plan",
            "priority": "urgent" if self.alert.level is AlertLevel.URGENT else "routine",
            "code": {
                "coding": [{"system": codes.APP_CODES, "code": ActivityKind.ALERT_REVIEW.value}],
                "text": "Safety alert acknowledged",
            },
            "description": f"{self.alert.title}: acknowledged by the clinician on {on} (day "
            f"{self.day} after infusion). {rules}. Label section {self.alert.section}.",
            "for": self.patient,
            "basedOn": [{"reference": self.state.care_plan}],
            "authoredOn": self.recorded,
            "lastModified": self.recorded,
            "restriction": {"period": {"start": on, "end": on}},
            "executionPeriod": {"end": on},
            "businessStatus": {"text": "acknowledged"},
            "note": [
                {"time": self.recorded, "text": "Reviewed and acknowledged by the clinician."}
            ],
            **self._reason(),
            **self.requester(),
        }
        if self.outputs:
            task["output"] = self.outputs
        if self.user and self.is_practitioner():
            task["owner"] = self.user
        self.add(task, self.review.item, profile="zolgensma-task")

    def action_task(self, action: ActionState) -> None:
        """The consult or repeat-lab Task the alert calls for, added to the CarePlan."""
        if not action.offered or self.has(action.item):
            return
        wanted = action.action
        item = ScheduleItem(
            date=self.on,
            day=self.day,
            kind=wanted.kind,
            activity=wanted.what,
            tests=wanted.tests,
            section=wanted.section,
            window_start=self.on,
            window_end=self.on + dt.timedelta(days=wanted.within_days),
            conditional=f"called for by the alert: {self.alert.title}",
        )
        task = task_resource(
            item, self.state.care_plan, patient=self.patient, recorded=self.recorded
        )
        if wanted.kind is ActivityKind.CONSULT or self.alert.level is AlertLevel.URGENT:
            task["priority"] = "urgent"
        task |= self._reason() | self.requester()
        created = self.add(task, action.item, profile="zolgensma-task")
        old = self.raw(self.state.care_plan)
        activity = [*(old.get("activity") or []), {"reference": {"reference": created}}]
        note = {
            "time": self.recorded,
            "text": f"{wanted.what}, due {self.on.isoformat()} to {item.window_end.isoformat()}: "
            f"called for by the alert '{self.alert.title}' (label section {wanted.section}).",
        }
        self.put(old, {"activity": activity, "note": [*(old.get("note") or []), note]})


def alert_bundle(
    state: PlanState,
    record: PatientRecord,
    *,
    patient_id: str,
    review: AlertReview,
    action: str | None,
    on: dt.date,
    confirmed: Confirmed,
) -> Resource | None:
    """One transaction acknowledging an alert for the day (a completed Task) and, when `action`
    names one, creating the consult or repeat-lab Task it calls for; None when the chart holds
    all of it already (nothing new to write)."""
    builder = _AlertBuilder(state, record, patient_id, confirmed, review, on)
    chosen = None
    if action:
        chosen = next((a for a in review.actions if a.action.key == action), None)
        if chosen is None:
            raise WriteBlocked(f"nothing written: this alert does not call for '{action}'")
    builder.acknowledge()
    if chosen is not None:
        builder.action_task(chosen)
    if not builder.entries:
        return None
    changed = any(e["request"]["method"] == "PUT" for e in builder.entries)
    builder.provenance(activity="UPDATE" if changed else "CREATE")
    return builder.bundle()
