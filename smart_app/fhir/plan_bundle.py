"""Plan -> one idempotent transaction Bundle: orders, CarePlan, Tasks, issues, Provenance.

The Bundle is what the app means to write; fhir/transaction.py sends it by a strategy."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import json
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from pydantic import ValidationError

from smart_app import __version__
from smart_app.errors import WriteBackError, WriteBlocked
from smart_app.fhir import codes, profiles
from smart_app.fhir.gateway import PatientRecord
from smart_app.fhir.written import Confirmation
from smart_app.rules import label
from smart_app.rules.arith import json_number
from smart_app.rules.dosing import sci
from smart_app.rules.model import (
    ActivityKind,
    Finding,
    Kit,
    PatientFacts,
    Plan,
    ScheduleItem,
    Severity,
    SteroidCourse,
)
from smart_app.rules.plan import write_refusal

Resource = dict[str, Any]

TASK_KINDS = frozenset(
    {
        ActivityKind.BASELINE,
        ActivityKind.COUNSELING,
        ActivityKind.LAB_DRAW,
        ActivityKind.LIVER_ASSESSMENT,
        ActivityKind.VIGILANCE,
    }
)
"""Schedule items that become Tasks; the steroid and infusion items are the MedicationRequests."""
OPEN_TASK = frozenset(
    {"draft", "requested", "received", "accepted", "ready", "in-progress", "on-hold"}
)
OPEN_CAREPLAN = frozenset({"draft", "active", "on-hold"})
RETIRED = frozenset({"revoked", "cancelled", "entered-in-error", "stopped"})
ROUTE_IV = {"system": codes.SNOMED, "code": "47625008", "display": "Intravenous route"}
ROUTE_ORAL = {"system": codes.SNOMED, "code": "26643006", "display": "Oral route"}
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
PREDNISOLONE = {"system": RXNORM, "code": "8638", "display": "prednisolone"}
PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
DOSE_RATE_TYPE = "http://terminology.hl7.org/CodeSystem/dose-rate-type"
APP_DEVICE = {
    "type": "Device",
    "identifier": {"system": codes.APP_IDENTIFIER, "value": "device/zolgensma-smart"},
    "display": f"ZOLGENSMA SMART app {__version__}",
}
NO_IDENTIFIER = frozenset({"Provenance"})
"""Types without an identifier element in R4."""
TAG_SEARCHED = frozenset({"Provenance", "DetectedIssue"})
"""Types whose app key is also a meta.tag, matched with _tag: Provenance has no identifier,
and not every server (sekmet among them) can search DetectedIssue by identifier."""
OWN_TYPES = (
    "CarePlan",
    "Task",
    "MedicationRequest",
    "ServiceRequest",
    "DetectedIssue",
    "Provenance",
)
"""Types the app writes; their app identifiers key the conditional creates."""
USER_TYPES = ("Practitioner", "PractitionerRole", "Patient", "RelatedPerson")


def plan_key(plan: Plan) -> str:
    """Deterministic id of a plan: same patient, date, weight, kit, dose and policy -> same key."""
    if plan.dose is None or plan.steroids is None:
        raise WriteBlocked("the plan has no dose: nothing to write")
    parts = (
        plan.patient_id,
        plan.infusion_date.isoformat(),
        _canonical(plan.dose.weight_kg),
        plan.dose.kit.ndc,
        _canonical(plan.steroids.dose_mg_per_day),
        plan.policy_version,
        plan.label_version,
    )
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def check_writable(plan: Plan, confirmation: Confirmation) -> None:
    """Refuse plans that may not be written (rules.plan.write_refusal says why)."""
    refusal = write_refusal(plan, acknowledged=confirmation.acknowledged)
    if refusal:
        raise WriteBlocked(refusal)
    if confirmation.recorded.tzinfo is None:
        raise WriteBlocked("the recorded time must carry a time zone")


class EntryBuilder:
    """The entries of one transaction in the app's conventions: stable identifiers and fullUrls,
    conditional creates, version-checked updates, and a Provenance over them all."""

    def __init__(
        self,
        *,
        key: str,
        patient_id: str,
        record: PatientRecord,
        recorded: dt.datetime,
        fhir_user: str | None,
        label_version: str,
    ) -> None:
        self.key = key
        self.patient = {"reference": f"Patient/{patient_id}"}
        self.recorded = recorded.isoformat(timespec="seconds")
        self.entries: list[Resource] = []
        self.existing = {
            value: r
            for kind in OWN_TYPES
            for r in record.own(kind)
            for value in codes.app_identifier_values(r)
        }
        self.record = record
        self.user = user_reference(fhir_user)
        self.label_version = label_version

    # identity --------------------------------------------------------------------------------

    def identifier(self, item: str) -> dict[str, str]:
        """The app identifier of one item of this plan."""
        return {"system": codes.APP_IDENTIFIER, "value": f"{self.key}/{item}"}

    @staticmethod
    def full_url(identifier: Mapping[str, str]) -> str:
        """A stable urn:uuid for an identifier, so re-sent bundles are byte-identical."""
        name = f"{identifier['system']}|{identifier['value']}"
        return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, name)}"

    def add(self, resource: Resource, item: str, *, profile: str) -> str:
        """Add a conditional create (or a reactivating update); return its fullUrl."""
        ident = self.identifier(item)
        kind = resource["resourceType"]
        meta: Resource = {"profile": [profiles.profile_url(profile)]}
        search_param = "identifier"
        if kind in TAG_SEARCHED:
            meta["tag"] = [{"system": ident["system"], "code": ident["value"]}]
            search_param = "_tag"
        resource = {
            "resourceType": kind,
            "meta": meta,
            **({} if kind in NO_IDENTIFIER else {"identifier": [ident]}),
            **resource,
        }
        full_url = self.full_url(ident)
        old = self.existing.get(ident["value"])
        if old is not None and old.get("id") and str(old.get("status")) in RETIRED:
            resource["id"] = old["id"]
            self.entries.append(
                {
                    "fullUrl": full_url,
                    "resource": resource,
                    "request": {
                        "method": "PUT",
                        "url": f"{kind}/{old['id']}",
                        **if_match(old),
                    },
                }
            )
            return full_url
        search = (
            f"{search_param}={quote(ident['system'], safe=':/')}|{quote(ident['value'], safe='/')}"
        )
        self.entries.append(
            {
                "fullUrl": full_url,
                "resource": resource,
                "request": {"method": "POST", "url": kind, "ifNoneExist": search},
            }
        )
        return full_url

    def put(self, old: Resource, changes: Resource) -> str:
        """Update a resource the server holds, checked against the version read; its reference."""
        updated = {**old, **changes}
        meta = {k: v for k, v in (old.get("meta") or {}).items() if k in ("profile", "tag")}
        updated["meta"] = meta
        if not meta:
            updated.pop("meta")
        reference = f"{old['resourceType']}/{old['id']}"
        self.entries.append(
            {"resource": updated, "request": {"method": "PUT", "url": reference, **if_match(old)}}
        )
        return reference

    def provenance(self, *, activity: str = "CREATE", identity: int | None = None) -> None:
        """Provenance over everything in the transaction; its id hashes the operations (the
        first `identity` entries only, when given: a plan's own, not the retiring updates, so
        re-sending a plan whose old one is already retired matches the same Provenance)."""
        targets = [{"reference": e.get("fullUrl") or e["request"]["url"]} for e in self.entries]
        operations = json.dumps(
            [
                (e["request"]["method"], e["request"]["url"], e.get("fullUrl"))
                for e in self.entries[:identity]
            ]
        )
        digest = hashlib.sha256(operations.encode()).hexdigest()[:12]
        agents: list[Resource] = [
            {
                "type": {"coding": [{"system": PARTICIPANT, "code": "assembler"}]},
                "who": APP_DEVICE,
            }
        ]
        if self.user:
            agents.insert(
                0,
                {"type": {"coding": [{"system": PARTICIPANT, "code": "author"}]}, "who": self.user},
            )
        self.add(
            {
                "resourceType": "Provenance",
                "target": targets,
                "recorded": self.recorded,
                "policy": [f"{codes.APP_BASE}/policy/{quote(self.label_version)}"],
                "activity": {"coding": [{"system": DATA_OPERATION, "code": activity}]},
                "agent": agents,
            },
            f"provenance/{digest}",
            profile="zolgensma-provenance",
        )

    def requester(self) -> Resource:
        """{'requester': user} for a user who can request (not a Patient), else {}."""
        if self.user and self.user["reference"].split("/", 1)[0] != "Patient":
            return {"requester": self.user}
        return {}

    def is_practitioner(self) -> bool:
        """True when the user is a Practitioner or PractitionerRole."""
        return bool(self.user) and self.user["reference"].startswith("Practitioner")

    def bundle(self, *, validate: bool = True) -> Resource:
        """The transaction Bundle, validated against R4B and the app's profiles (unless
        `validate` is False: a preview that is never sent)."""
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": self.entries}
        return validate_bundle(bundle) if validate else bundle


class _Builder(EntryBuilder):
    """Builds the entries of one plan's transaction."""

    def __init__(
        self, plan: Plan, facts: PatientFacts, record: PatientRecord, confirmation: Confirmation
    ) -> None:
        if plan.dose is None or plan.steroids is None:
            raise WriteBlocked("nothing written: the plan has no dose or corticosteroid course")
        super().__init__(
            key=plan_key(plan),
            patient_id=plan.patient_id,
            record=record,
            recorded=confirmation.recorded,
            fhir_user=confirmation.fhir_user,
            label_version=plan.label_version,
        )
        self.plan = plan
        self.dose = plan.dose
        self.course = plan.steroids
        self.facts = facts
        self.confirmation = confirmation

    # resources -------------------------------------------------------------------------------

    def kit_order(self) -> str:
        """The ZOLGENSMA kit MedicationRequest."""
        dose = self.dose
        kit = dose.kit
        instruction = (
            f"Infuse {_num(kit.dose_volume_ml)} mL ({sci(dose.vector_genomes)} vector genomes, "
            f"{sci(label.DOSE_VG_PER_KG, significant=2)} vg/kg at the band's upper weight "
            f"{_num(kit.band_high_kg)} kg) intravenously "
            f"over {dose.infusion_minutes} minutes by syringe pump at "
            f"{_num(dose.pump_rate_ml_per_h)} mL/h on {self.plan.infusion_date.isoformat()}. "
            f"{label.NO_IV_PUSH}"
        )
        return self.add(
            {
                "resourceType": "MedicationRequest",
                **self._order_common(),
                "medicationCodeableConcept": kit_medication(kit),
                "dosageInstruction": [
                    {
                        "sequence": 1,
                        "text": instruction,
                        "timing": {"event": [self.plan.infusion_date.isoformat()]},
                        "route": {"coding": [ROUTE_IV], "text": "intravenous"},
                        "method": {
                            "text": "intravenous infusion by syringe pump over "
                            f"{dose.infusion_minutes} minutes"
                        },
                        "doseAndRate": [
                            {
                                "doseQuantity": _ml(kit.dose_volume_ml),
                                "rateQuantity": {
                                    "value": json_number(dose.pump_rate_ml_per_h),
                                    "unit": "mL/h",
                                    "system": codes.UCUM,
                                    "code": "mL/h",
                                },
                            }
                        ],
                    }
                ],
                "dispenseRequest": {"quantity": kit_vials(kit), "numberOfRepeatsAllowed": 0},
                "note": [{"text": label.NO_IV_PUSH}, {"text": dose.explanation}],
            },
            "medicationrequest/kit",
            profile="zolgensma-kit-order",
        )

    def steroid_order(self) -> str:
        """The prednisolone MedicationRequest for the 30-day full-dose course."""
        then = f". {self._activity(ActivityKind.STEROID_START)}."
        return self.add(
            {
                "resourceType": "MedicationRequest",
                **self._order_common(),
                **steroid_course_order(
                    self.course, text=steroid_course_text(self.course, then=then)
                ),
            },
            "medicationrequest/prednisolone",
            profile="zolgensma-steroid-order",
        )

    def _activity(self, kind: ActivityKind) -> str:
        """The rules' wording of a scheduled activity (its first item of that kind)."""
        return next(i.activity for i in self.plan.schedule if i.kind is kind)

    def _order_common(self) -> Resource:
        """Fields shared by both orders."""
        mode = self.confirmation.order_mode
        common: Resource = {
            "status": mode.status,
            "intent": mode.value,
            "subject": self.patient,
            "authoredOn": self.recorded,
            **self.requester(),
        }
        sma = self._sma_refs()
        if sma:
            common["reasonReference"] = sma
        else:
            common["reasonCode"] = [
                {"text": "5q spinal muscular atrophy (no SMA Condition in the record)"}
            ]
        return common

    def _sma_refs(self) -> list[dict[str, str]]:
        """References to the SMA Conditions read, when they are server references."""
        refs = []
        for evidence in self.facts.sma_conditions:
            ref = _server_reference(evidence.reference)
            if ref and {"reference": ref} not in refs:
                refs.append({"reference": ref})
        return refs

    def task(self, item: ScheduleItem, care_plan: str) -> str:
        """One Task for a scheduled monitoring activity or decision point."""
        task = task_resource(item, care_plan, patient=self.patient, recorded=self.recorded)
        task |= self.requester()
        return self.add(task, item.task_item, profile="zolgensma-task")

    def care_plan(self) -> str:
        """The CarePlan: its fullUrl is needed before its activities exist."""
        return self.full_url(self.identifier("careplan"))

    def care_plan_resource(self, activities: Sequence[str]) -> None:
        """The CarePlan itself, referencing both orders and every Task."""
        plan, course = self.plan, self.course
        resource: Resource = {
            "resourceType": "CarePlan",
            "status": "active",
            "intent": "plan",
            "category": [{"coding": [{"system": codes.APP_CODES, "code": "zolgensma-plan"}]}],
            "title": f"ZOLGENSMA treatment plan: infusion {plan.infusion_date.isoformat()}",
            "description": course.taper_basis,
            "subject": self.patient,
            "period": {
                "start": min(i.date for i in plan.schedule).isoformat(),
                "end": max(i.window_end for i in plan.schedule).isoformat(),
            },
            "created": self.recorded,
            "activity": [{"reference": {"reference": ref}} for ref in activities],
            "note": [
                {
                    "text": f"Label: {plan.label_version}. Institution policy: "
                    f"{plan.policy_version}. Eligibility on {plan.evaluated_on.isoformat()}: "
                    f"{plan.eligibility.status.value}."
                }
            ],
        }
        sma = self._sma_refs()
        if sma:
            resource["addresses"] = sma
        if self.user:
            resource["author"] = self.user
        self.add(resource, "careplan", profile="zolgensma-careplan")

    def detected_issue(self, finding: Finding) -> str:
        """A DetectedIssue for a finding the clinician acknowledged."""
        issue: Resource = {
            "resourceType": "DetectedIssue",
            "status": "final",
            "code": {
                "coding": [{"system": codes.APP_CODES, "code": finding.code.value}],
                "text": finding.code.value,
            },
            "severity": "moderate" if finding.severity is Severity.NEEDS_REVIEW else "low",
            "patient": self.patient,
            "identifiedDateTime": self.recorded,
            "detail": f"{finding.message} (label section {finding.section})",
            "mitigation": [
                {
                    "action": {"text": "Reviewed and acknowledged by the clinician"},
                    "date": self.recorded,
                    **({"author": self.user} if self.user and self.is_practitioner() else {}),
                }
            ],
        }
        implicated = []
        for evidence in finding.evidence:
            ref = _server_reference(evidence.reference)
            if ref and {"reference": ref} not in implicated:
                implicated.append({"reference": ref})
        if implicated:
            issue["implicated"] = implicated
        return self.add(
            issue, f"detectedissue/{finding.code.value}", profile="zolgensma-detectedissue"
        )

    def retire_old(self) -> None:
        """Revoke other plans' CarePlans, cancel their open Tasks and draft orders."""
        wanted = {
            "CarePlan": (OPEN_CAREPLAN, "revoked"),
            "Task": (OPEN_TASK, "cancelled"),
            "MedicationRequest": (frozenset({"draft"}), "cancelled"),
        }
        for kind, (open_statuses, retired) in wanted.items():
            for old in self.record.own(kind):
                values = codes.app_identifier_values(old)
                if any(v.startswith(f"{self.key}/") for v in values):
                    continue
                if str(old.get("status")) not in open_statuses or not old.get("id"):
                    continue
                changes: Resource = {"status": retired}
                if kind == "Task":
                    changes["statusReason"] = {"text": "superseded by a revised ZOLGENSMA plan"}
                self.put(old, changes)


def steroid_order_body(
    *,
    start: dt.date,
    end: dt.date,
    mg_per_day: Decimal,
    ml_per_day: Decimal,
    concentration_mg_per_ml: Decimal,
    text: str,
) -> Resource:
    """Medication, dosage and dispense of a once-daily oral prednisolone order."""
    days = (end - start).days + 1
    return {
        "medicationCodeableConcept": {
            "coding": [PREDNISOLONE],
            "text": f"prednisolone oral solution {_num(concentration_mg_per_ml)} mg/mL",
        },
        "dosageInstruction": [
            {
                "sequence": 1,
                "text": text,
                **oral_once_daily(start, end),
                "doseAndRate": [
                    {
                        "type": _dose_type("ordered"),
                        "doseQuantity": {
                            "value": json_number(mg_per_day),
                            "unit": "mg",
                            "system": codes.UCUM,
                            "code": "mg",
                        },
                    },
                    {"type": _dose_type("calculated"), "doseQuantity": _ml(ml_per_day)},
                ],
            }
        ],
        "dispenseRequest": {
            "quantity": _ml(ml_per_day * days),
            "expectedSupplyDuration": {
                "value": days,
                "unit": "days",
                "system": codes.UCUM,
                "code": "d",
            },
        },
    }


def oral_once_daily(start: dt.date, end: dt.date) -> Resource:
    """The timing and route of a dosage taken by mouth once a day from `start` to `end`."""
    return {
        "timing": {
            "repeat": {
                "boundsPeriod": {"start": start.isoformat(), "end": end.isoformat()},
                "frequency": 1,
                "period": 1,
                "periodUnit": "d",
            }
        },
        "route": {"coding": [ROUTE_ORAL], "text": "oral"},
    }


def steroid_course_text(course: SteroidCourse, *, then: str) -> str:
    """The dosage text of the full-dose prednisolone course: dose, volume, mg/kg/day, weight
    and dates, then `then` (what the course starts with) and the label's full-dose rule."""
    days = (course.full_dose_through - course.start_date).days + 1
    return (
        f"Prednisolone (or equivalent) {_num(course.dose_mg_per_day)} mg "
        f"({_num(course.volume_ml_per_day)} mL of {_num(course.concentration_mg_per_ml)} mg/mL) "
        f"by mouth once daily = {_num(label.STEROID_MG_PER_KG_PER_DAY)} mg/kg/day "
        f"for {_num(course.weight_kg)} kg, "
        f"{course.start_date.isoformat()} to {course.full_dose_through.isoformat()} "
        f"({days} days){then} {label.FULL_DOSE_UNTIL_DECISION}"
    )


def steroid_course_order(course: SteroidCourse, *, text: str) -> Resource:
    """Medication, dosage, dispense and taper note of the full-dose course's order."""
    return {
        **steroid_order_body(
            start=course.start_date,
            end=course.full_dose_through,
            mg_per_day=course.dose_mg_per_day,
            ml_per_day=course.volume_ml_per_day,
            concentration_mg_per_ml=course.concentration_mg_per_ml,
            text=text,
        ),
        "note": [{"text": course.taper_basis}],
    }


def kit_medication(kit: Kit) -> Resource:
    """A ZOLGENSMA kit as a medication: its NDC, and its vials in words."""
    text = f"ZOLGENSMA (onasemnogene abeparvovec-xioi) kit {kit.ndc}: {kit.vials} vials"
    return {"coding": [{"system": codes.NDC, "code": kit.ndc, "display": text}], "text": text}


def kit_vials(kit: Kit) -> Resource:
    """The number of vials in a kit, as a UCUM quantity."""
    return {"value": kit.total_vials, "unit": "vial", "system": codes.UCUM, "code": "{vial}"}


def task_resource(
    item: ScheduleItem, care_plan: str, *, patient: Resource, recorded: str
) -> Resource:
    """The Task for one scheduled activity, due within its window."""
    description = item.activity
    if item.conditional:
        description += f" ({item.conditional})"
    description += f". Label section {item.section}."
    if item.institution_default:
        description += " Includes an institution default."
    task: Resource = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "plan",
        "priority": "routine",
        "code": {
            "coding": [{"system": codes.APP_CODES, "code": item.kind.value}],
            "text": item.activity,
        },
        "description": description,
        "for": patient,
        "basedOn": [{"reference": care_plan}],
        "authoredOn": recorded,
        "restriction": {
            "period": {
                "start": item.window_start.isoformat(),
                "end": item.window_end.isoformat(),
            }
        },
        "note": [
            {
                "text": f"Due {item.date.isoformat()}: day {item.day} after infusion "
                f"(HCP Day {item.hcp_day})."
            }
        ],
    }
    if item.tests:
        task["input"] = [
            {
                "type": {"coding": [{"system": codes.APP_CODES, "code": "lab-test"}]},
                "valueCodeableConcept": {
                    "coding": [
                        {"system": system, "code": code}
                        for system, code in sorted(codes.LABS[test])[:1]
                    ],
                    "text": test.value,
                },
            }
            for test in item.tests
        ]
    return task


def build_transaction(
    plan: Plan,
    facts: PatientFacts,
    record: PatientRecord,
    confirmation: Confirmation,
    *,
    validate: bool = True,
) -> Resource:
    """The one transaction Bundle that writes this plan (raises WriteBlocked); validated against
    R4B and the profiles unless `validate` is False (a preview: what is sent is validated)."""
    check_writable(plan, confirmation)
    builder = _Builder(plan, facts, record, confirmation)
    care_plan = builder.care_plan()
    activities = [builder.kit_order(), builder.steroid_order()]
    activities += [builder.task(i, care_plan) for i in plan.schedule if i.kind in TASK_KINDS]
    builder.care_plan_resource(activities)
    for finding in plan.eligibility.findings:
        if finding.code.value in confirmation.acknowledged:
            builder.detected_issue(finding)
    own = len(builder.entries)
    builder.retire_old()
    builder.provenance(identity=own)
    return builder.bundle(validate=validate)


def validate_bundle(bundle: Resource) -> Resource:
    """Check every resource against the R4B model and the app's profiles; return clean JSON."""
    clean_entries = []
    for index, entry in enumerate(bundle["entry"]):
        resource = entry["resource"]
        where = f"entry {index} ({resource['resourceType']})"
        model = _model(resource["resourceType"])
        try:
            parsed = model.model_validate(resource)
        except ValidationError as exc:
            raise WriteBackError(
                f"nothing written: {where} is not valid FHIR R4: {_first_error(exc)}",
                entry=where,
            ) from None
        clean = json.loads(parsed.model_dump_json(exclude_none=True))
        problems = profiles.check(clean) if _checked(entry) else []
        if problems:
            raise WriteBackError(
                f"nothing written: {where} breaks its profile: {problems[0]}", entry=where
            )
        clean_entries.append({**entry, "resource": clean})
    return {**bundle, "entry": clean_entries}


def if_match(old: Mapping[str, Any]) -> dict[str, str]:
    """An ifMatch on the version read, so a concurrent change fails the whole transaction."""
    version = (old.get("meta") or {}).get("versionId")
    return {"ifMatch": f'W/"{version}"'} if version else {}


def user_reference(fhir_user: str | None) -> dict[str, str] | None:
    """A Reference for the fhirUser claim (absolute URL or Type/id), when it names a user."""
    if not fhir_user:
        return None
    relative = codes.relative_reference(fhir_user) or fhir_user
    kind = relative.split("/", 1)[0]
    return {"reference": relative} if kind in USER_TYPES and "/" in relative else None


def _server_reference(reference: str) -> str | None:
    """Type/id for a reference that exists on the server (not a bundle-local urn)."""
    if not reference or reference.startswith("urn:"):
        return None
    return codes.relative_reference(reference) or None


def _num(value: Decimal) -> str:
    """A Decimal as plain text with the digits the rules gave it (2.0 mL stays 2.0)."""
    return format(value, "f")


def _canonical(value: Decimal) -> str:
    """One text per value (6.12 = 6.120 = 6120 g in kg), for hashing."""
    return format(value.normalize(), "f")


def _ml(value: Decimal) -> dict[str, Any]:
    """A UCUM millilitre quantity."""
    return {"value": json_number(value), "unit": "mL", "system": codes.UCUM, "code": "mL"}


def _dose_type(code: str) -> dict[str, Any]:
    """A dose-rate-type concept."""
    return {"coding": [{"system": DOSE_RATE_TYPE, "code": code}]}


def _model(resource_type: str) -> Any:
    """The fhir.resources R4B model class of a resource type."""
    module = importlib.import_module(f"fhir.resources.R4B.{resource_type.lower()}")
    return getattr(module, resource_type)


def _first_error(exc: ValidationError) -> str:
    """The first validation error with its location."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    return f"{first['msg']} at {where}" if where else str(first["msg"])


def _checked(entry: Mapping[str, Any]) -> bool:
    """Profiles apply to what the app composes (entries with a urn fullUrl), not to the server's
    own copies it only retires: the EHR may have added to those."""
    return str(entry.get("fullUrl", "")).startswith("urn:uuid:")
