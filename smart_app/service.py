"""Read a patient from a FHIR server, build the plan, write it back: shared by CLI and web."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from smart_app.fhir import codes
from smart_app.fhir.gateway import FhirGateway, PatientRecord
from smart_app.fhir.read import facts_from_bundle
from smart_app.fhir.write import Confirmation, Written, build_transaction, write_plan
from smart_app.rules.model import PatientFacts, Plan
from smart_app.rules.plan import build_plan
from smart_app.rules.policy import DEFAULT_POLICY, Policy


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
    record = gateway.read_patient(patient_id, titer_codes=titer_codes)
    facts = facts_from_bundle(record.bundle(), titer_codes=titer_codes)
    plan = build_plan(facts, on=on, infusion_date=infusion_date, policy=policy)
    return Evaluation(record=record, facts=facts, plan=plan)


def transaction(evaluation: Evaluation, confirmation: Confirmation) -> dict[str, object]:
    """The transaction Bundle that would be sent (for a dry run)."""
    return build_transaction(evaluation.plan, evaluation.facts, evaluation.record, confirmation)


def write(
    gateway: FhirGateway, evaluation: Evaluation, confirmation: Confirmation
) -> list[Written]:
    """Write the plan in one transaction."""
    return write_plan(gateway, evaluation.plan, evaluation.facts, evaluation.record, confirmation)
