"""Read a patient from a FHIR server, plan or follow up, write back: shared by CLI and web."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from smart_app.errors import WriteBlocked
from smart_app.fhir import codes
from smart_app.fhir.document_write import Filing, document_bundle
from smart_app.fhir.followup_write import (
    Confirmed,
    alert_bundle,
    completion_bundle,
    decision_bundle,
)
from smart_app.fhir.gateway import FhirGateway, PatientRecord
from smart_app.fhir.plan_bundle import build_transaction
from smart_app.fhir.plan_state import KitWritten, plan_state, written_kit
from smart_app.fhir.read import facts_from_bundle
from smart_app.fhir.transaction import send
from smart_app.fhir.written import Confirmation, Strategy, Written
from smart_app.rules.followup import FollowUp, follow_up
from smart_app.rules.model import AlertCode, FindingCode, PatientFacts, Plan, PlanState
from smart_app.rules.plan import build_plan
from smart_app.rules.policy import DEFAULT_POLICY, Policy
from smart_app.rules.prior_auth import Packet, prior_auth_packet

FOLLOW_UP_READ_FINDINGS = frozenset({FindingCode.SEARCHES_EMPTY, FindingCode.SEARCH_TRUNCATED})
"""What the read could not settle that matters after infusion too (a prior dose does not)."""


@dataclass(frozen=True)
class Evaluation:
    """One patient's record as read, the facts drawn from it and the plan built on them."""

    record: PatientRecord
    facts: PatientFacts
    plan: Plan


def evaluate(
    gateway: FhirGateway,
    patient_id: str,
    *,
    on: dt.date,
    infusion_date: dt.date,
    policy: Policy = DEFAULT_POLICY,
    titer_codes: frozenset[codes.Coding] = codes.DEFAULT_TITER_CODES,
) -> Evaluation:
    """One batch read, then the pure rules."""
    record = gateway.read_patient(patient_id, on=on, policy=policy, titer_codes=titer_codes)
    return evaluate_record(
        record, on=on, infusion_date=infusion_date, policy=policy, titer_codes=titer_codes
    )


def evaluate_record(
    record: PatientRecord,
    *,
    on: dt.date,
    infusion_date: dt.date,
    policy: Policy = DEFAULT_POLICY,
    titer_codes: frozenset[codes.Coding] = codes.DEFAULT_TITER_CODES,
) -> Evaluation:
    """The plan for a record already read."""
    facts = facts_from_bundle(record.bundle(), titer_codes=titer_codes, notes=record.notes())
    plan = build_plan(facts, on=on, infusion_date=infusion_date, policy=policy)
    return Evaluation(record=record, facts=facts, plan=plan)


def transaction(
    evaluation: Evaluation, confirmation: Confirmation, *, validate: bool = True
) -> dict[str, object]:
    """The transaction Bundle that would be sent (for a dry run; unvalidated for a preview)."""
    return build_transaction(
        evaluation.plan, evaluation.facts, evaluation.record, confirmation, validate=validate
    )


def write(
    gateway: FhirGateway,
    evaluation: Evaluation,
    confirmation: Confirmation,
    *,
    strategy: Strategy = Strategy.AUTO,
) -> list[Written]:
    """Write the plan: composed as one transaction, sent by the server's strategy."""
    bundle = build_transaction(evaluation.plan, evaluation.facts, evaluation.record, confirmation)
    return send(gateway, bundle, strategy=strategy)


def packet(evaluation: Evaluation, *, policy: Policy = DEFAULT_POLICY) -> Packet:
    """The prior-authorization packet's criteria and billing facts for an evaluated plan."""
    return prior_auth_packet(evaluation.facts, evaluation.plan, policy=policy)


def file_document(
    gateway: FhirGateway,
    record: PatientRecord,
    filing: Filing,
    *,
    strategy: Strategy = Strategy.AUTO,
) -> list[Written]:
    """File a PDF to the chart: a DocumentReference created once per PDF, with Provenance."""
    bundle = document_bundle(filing, patient_id=record.patient_id, record=record)
    return send(gateway, bundle, strategy=strategy)


@dataclass(frozen=True)
class Following:
    """A patient on a plan: the record, the facts, the plan read back and where they stand."""

    record: PatientRecord
    facts: PatientFacts
    state: PlanState
    followup: FollowUp
    kit: KitWritten | None = None
    """The plan's kit order as written (the pre-infusion view shows it)."""


def read_followup(
    gateway: FhirGateway,
    patient_id: str,
    *,
    on: dt.date,
    policy: Policy = DEFAULT_POLICY,
    exam_normal: bool | None = None,
    titer_codes: frozenset[codes.Coding] = codes.DEFAULT_TITER_CODES,
) -> Following | None:
    """One batch read; None when the patient has no active plan of this app."""
    record = gateway.read_patient(patient_id, on=on, policy=policy, titer_codes=titer_codes)
    return follow_record(
        record, on=on, policy=policy, exam_normal=exam_normal, titer_codes=titer_codes
    )


def follow_record(
    record: PatientRecord,
    *,
    on: dt.date,
    policy: Policy = DEFAULT_POLICY,
    exam_normal: bool | None = None,
    titer_codes: frozenset[codes.Coding] = codes.DEFAULT_TITER_CODES,
) -> Following | None:
    """Where a patient stands, from a record already read; None without an active plan."""
    state = plan_state(record)
    if state is None:
        return None
    facts = facts_from_bundle(record.bundle(), titer_codes=titer_codes, notes=record.notes())
    found = follow_up(facts, state, on=on, policy=policy, exam_normal=exam_normal)
    read = tuple(f for f in facts.read_findings if f.code in FOLLOW_UP_READ_FINDINGS)
    found = replace(found, findings=(*read, *found.findings)) if read else found
    kit = written_kit(record, state.plan_key)
    return Following(record=record, facts=facts, state=state, followup=found, kit=kit)


def complete_tasks(
    gateway: FhirGateway,
    following: Following,
    confirmed: Confirmed,
    *,
    manual_items: frozenset[str] = frozenset(),
    strategy: Strategy = Strategy.AUTO,
) -> list[Written]:
    """Complete every resulted Task (and the ticked manual ones) and create the proposed
    further draws, in one transaction."""
    manual = [v.task for v in following.followup.tasks if v.task.item in manual_items]
    bundle = completion_bundle(
        following.state,
        following.record,
        patient_id=following.facts.patient_id,
        views=following.followup.tasks,
        manual=manual,
        proposed=following.followup.proposed,
        confirmed=confirmed,
    )
    return send(gateway, bundle, strategy=strategy)


def decision_transaction(following: Following, confirmed: Confirmed) -> dict[str, object]:
    """The transaction that would record the liver assessment decision."""
    decision = following.followup.decision
    if decision is None:
        raise WriteBlocked("nothing written: no liver assessment decision is due")
    return decision_bundle(
        following.state,
        following.record,
        patient_id=following.facts.patient_id,
        decision=decision,
        on=following.followup.on,
        confirmed=confirmed,
    )


def record_decision(
    gateway: FhirGateway,
    following: Following,
    confirmed: Confirmed,
    *,
    strategy: Strategy = Strategy.AUTO,
) -> list[Written]:
    """Record the decision, composed as one idempotent transaction."""
    return send(gateway, decision_transaction(following, confirmed), strategy=strategy)


def act_on_alert(
    gateway: FhirGateway,
    following: Following,
    confirmed: Confirmed,
    *,
    code: AlertCode,
    action: str | None = None,
    strategy: Strategy = Strategy.AUTO,
) -> list[Written]:
    """Acknowledge an alert for the day and create the Task it calls for (`action`), in one
    idempotent transaction; [] when the chart already holds it all (nothing is sent)."""
    review = next((r for r in following.followup.reviews if r.alert.code is code), None)
    if review is None:
        raise WriteBlocked("nothing written: this alert is no longer raised by the results")
    bundle = alert_bundle(
        following.state,
        following.record,
        patient_id=following.facts.patient_id,
        review=review,
        action=action,
        on=following.followup.on,
        confirmed=confirmed,
    )
    if bundle is None:
        return []
    return send(gateway, bundle, strategy=strategy)
