"""FHIR R4 JSON -> PatientFacts: units normalised, withdrawn results dropped, evidence kept."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from smart_app.errors import BundleError
from smart_app.fhir import codes
from smart_app.fhir.codes import Coding
from smart_app.fhir.units import (
    GESTATION_TO_DAYS,
    LAB_TO_CANONICAL,
    TEMPERATURE_TO_CEL,
    UnitError,
    lab_to_canonical,
    to_canonical,
    ucum,
    weight_to_kg,
)
from smart_app.rules.model import (
    Comparator,
    Evidence,
    LabResult,
    LabTest,
    Measurement,
    PatientFacts,
    Titer,
    Unreadable,
)

Resource = Mapping[str, Any]

BUNDLE_TYPES = ("collection", "searchset", "transaction")
OBSERVATION_USABLE = frozenset({"final", "amended", "corrected", "preliminary"})
CONDITION_ACTIVE = frozenset({"active", "recurrence", "relapse"})
VERIFICATION_EXCLUDED = frozenset({"refuted", "entered-in-error"})
ADMINISTRATION_GIVEN = frozenset({"completed", "in-progress", "stopped", "on-hold"})
STATEMENT_GIVEN = frozenset({"active", "completed", "stopped"})
REQUEST_LIVE = frozenset({"active", "completed"})
PROCEDURE_DONE = frozenset({"completed", "in-progress"})
COMPARATORS = {c.value: c for c in Comparator}
TITER_PATTERN = re.compile(r"(<=|>=|≤|≥|<|>)?\s*1\s*:\s*(\d+(?:\.\d+)?)")
TITER_SYMBOLS = {"≤": "<=", "≥": ">="}


class Reading(StrEnum):
    """Observations read besides the lab tests; the value names them in findings."""

    WEIGHT = "body weight"
    GESTATION = "gestational age at birth"
    TEMPERATURE = "body temperature"
    SMN1 = "SMN1 copy number"
    SMN2 = "SMN2 copy number"
    TITER = "anti-AAV9 titer"


READING_CODES: dict[Reading, frozenset[Coding]] = {
    Reading.WEIGHT: codes.WEIGHT,
    Reading.GESTATION: codes.GESTATIONAL_AGE_AT_BIRTH,
    Reading.TEMPERATURE: codes.BODY_TEMPERATURE,
    Reading.SMN1: codes.SMN1_COPIES,
    Reading.SMN2: codes.SMN2_COPIES,
}
PRENATAL_OK = frozenset({Reading.GESTATION, Reading.SMN1, Reading.SMN2})
"""Results that may predate birth: gestation, and prenatal genetic testing."""
MUST_BE_POSITIVE = frozenset({Reading.WEIGHT, Reading.GESTATION})

Kind = Reading | LabTest


def parse_bundle_json(text: str) -> dict[str, Any]:
    """Decode a Bundle's JSON with exact decimals, or raise BundleError saying why not."""
    try:
        data = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise BundleError(f"not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from exc
    except RecursionError as exc:
        raise BundleError("not a FHIR Bundle: JSON nested too deeply") from exc
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        found = data.get("resourceType") if isinstance(data, dict) else type(data).__name__
        raise BundleError(f"not a FHIR Bundle (resourceType is {found!r})")
    return data


def _str(raw: Any) -> str | None:
    """A JSON string, or None for anything else (malformed input never reaches a set lookup)."""
    return raw if isinstance(raw, str) else None


def _dec(raw: Any) -> Decimal | None:
    """A finite Decimal from a JSON number or numeric string, else None."""
    if isinstance(raw, bool) or raw is None:
        return None
    try:
        value = raw if isinstance(raw, Decimal) else Decimal(str(raw))
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def _date(raw: Any) -> dt.date | None:
    """The calendar date of a FHIR date/dateTime/instant as recorded; None if partial or invalid."""
    if not isinstance(raw, str) or not re.match(r"^\d{4}-\d{2}-\d{2}(T.+)?$", raw):
        return None
    try:
        if "T" in raw:
            return dt.datetime.fromisoformat(raw).date()
        return dt.date.fromisoformat(raw)
    except ValueError:
        return None


def _codings(concept: Any) -> list[Mapping[str, Any]]:
    """The codings of a CodeableConcept, tolerating absent or malformed ones."""
    if not isinstance(concept, Mapping):
        return []
    return [c for c in concept.get("coding") or [] if isinstance(c, Mapping)]


def _pairs(concept: Any) -> set[Coding]:
    """(system, code) pairs of a CodeableConcept."""
    return {(str(c.get("system", "")), str(c.get("code", ""))) for c in _codings(concept)}


def _text(concept: Any) -> str:
    """A CodeableConcept's text, else its first display, else its first code."""
    if not isinstance(concept, Mapping):
        return ""
    if concept.get("text"):
        return str(concept["text"])
    for coding in _codings(concept):
        if coding.get("display"):
            return str(coding["display"])
    return next((str(c["code"]) for c in _codings(concept) if c.get("code")), "")


def _all_text(concept: Any) -> str:
    """Text and every display of a CodeableConcept, lower-cased, for text matching."""
    if not isinstance(concept, Mapping):
        return ""
    parts = [str(concept.get("text", ""))] + [str(c.get("display", "")) for c in _codings(concept)]
    return " ".join(parts).lower()


def _status_code(concept: Any) -> str | None:
    """The first code of a status CodeableConcept (Condition.clinicalStatus and friends)."""
    return next((str(c["code"]) for c in _codings(concept) if c.get("code")), None)


def _reference(resource: Resource, full_url: str | None) -> str:
    """'Type/id' for a resource, else its fullUrl, else its type alone."""
    kind = resource.get("resourceType", "Resource")
    if resource.get("id"):
        return f"{kind}/{resource['id']}"
    return full_url or kind


def _recorded(resource: Resource) -> str:
    """An Observation's effective timestamp as recorded."""
    raw = resource.get("effectiveDateTime") or resource.get("effectiveInstant")
    if raw is None and isinstance(resource.get("effectivePeriod"), Mapping):
        raw = resource["effectivePeriod"].get("start") or resource["effectivePeriod"].get("end")
    return raw if isinstance(raw, str) else ""


def _utc(raw: str) -> str:
    """A recorded timestamp in UTC as sortable text ('' when only a date is known)."""
    if "T" not in raw:
        return ""
    try:
        moment = dt.datetime.fromisoformat(raw)
    except ValueError:
        return ""
    if moment.tzinfo is None:
        return moment.isoformat()
    return moment.astimezone(dt.UTC).replace(tzinfo=None).isoformat()


def _effective(resource: Resource) -> dt.date | None:
    """When an Observation was taken: the date of its recorded effective time."""
    return _date(_recorded(resource))


@dataclass
class _Collected:
    """Facts gathered while walking the bundle, before sorting."""

    weights: list[Measurement] = field(default_factory=list)
    gestation: list[Measurement] = field(default_factory=list)
    temperatures: list[Measurement] = field(default_factory=list)
    smn1: list[Measurement] = field(default_factory=list)
    smn2: list[Measurement] = field(default_factory=list)
    labs: list[LabResult] = field(default_factory=list)
    titers: list[Titer] = field(default_factory=list)
    sma: list[Evidence] = field(default_factory=list)
    infections: list[Evidence] = field(default_factory=list)
    advanced: list[Evidence] = field(default_factory=list)
    prior: list[Evidence] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)


class _Reader:
    """Walks one patient's resources and sorts what it finds into facts."""

    def __init__(
        self,
        *,
        patient_id: str,
        patient_refs: frozenset[str],
        birth_date: dt.date | None,
        titer_codes: frozenset[Coding],
        medications: Mapping[str, Resource],
    ) -> None:
        """Remember who the patient is and what counts as a titer."""
        self.patient_id = patient_id
        self.patient_refs = patient_refs
        self.birth_date = birth_date
        self.titer_codes = titer_codes
        self.medications = medications
        self.got = _Collected()

    def unreadable(self, what: str, reason: str, evidence: Evidence) -> None:
        """Record a relevant resource that cannot be used."""
        self.got.unreadable.append(Unreadable(what, reason, evidence))

    def about_patient(self, resource: Resource, ref: str) -> bool:
        """False (and recorded) when a resource names a different patient."""
        subject = resource.get("subject") or resource.get("patient")
        target = _str(subject.get("reference")) if isinstance(subject, Mapping) else None
        if (
            not target
            or target in self.patient_refs
            or target.endswith(f"/Patient/{self.patient_id}")
        ):
            return True
        self.unreadable(
            resource.get("resourceType", "Resource"), f"it refers to {target}", Evidence(ref, "")
        )
        return False

    def add(self, resource: Resource, full_url: str | None) -> None:
        """Dispatch one resource by type."""
        ref = _reference(resource, full_url)
        handler = {
            "Observation": self.observation,
            "Condition": self.condition,
            "Procedure": self.procedure,
            "Device": self.device,
            "MedicationAdministration": self.medication_use,
            "MedicationStatement": self.medication_use,
            "MedicationRequest": self.medication_use,
        }.get(str(resource.get("resourceType")))
        if handler is not None and self.about_patient(resource, ref):
            handler(resource, ref)

    # Observations -------------------------------------------------------------------------

    def observation(self, obs: Resource, ref: str) -> None:
        """Classify an Observation by code and read its value."""
        if _str(obs.get("status")) not in OBSERVATION_USABLE or "dataAbsentReason" in obs:
            return
        kind = self._observation_kind(obs)
        if kind is None:
            return
        effective = _effective(obs)
        base = Evidence(ref, "", "", effective, _text(obs.get("code")), _recorded(obs))
        if effective is None:
            self.unreadable(kind, "it has no full effective date", base)
            return
        if self.birth_date and effective < self.birth_date and kind not in PRENATAL_OK:
            self.unreadable(kind, f"it is dated {effective}, before the birth date", base)
            return
        if kind is Reading.TITER:
            self.got.titers.append(self._titer(obs, base, effective))
            return
        quantity = _quantity(obs)
        if quantity is None:
            self.unreadable(kind, "it has no numeric value", base)
            return
        value, unit, comparator, (shown, recorded_unit) = quantity
        evidence = replace(base, value=shown, unit=recorded_unit)
        if value < 0 or (value == 0 and kind in MUST_BE_POSITIVE):
            self.unreadable(kind, f"{shown} is not a plausible value", evidence)
            return
        try:
            self._store(kind, obs, value, unit, comparator, evidence, effective)
        except UnitError as exc:
            self.unreadable(kind, str(exc), evidence)

    def _observation_kind(self, obs: Resource) -> Kind | None:
        """What an Observation is, by code (or by 'AAV9' in its text for the titer)."""
        pairs = _pairs(obs.get("code"))
        for reading, wanted in READING_CODES.items():
            if pairs & wanted:
                return reading
        for test, wanted in codes.LABS.items():
            if pairs & wanted:
                return test
        if pairs & self.titer_codes or codes.TITER_TEXT in _all_text(obs.get("code")):
            return Reading.TITER
        return None

    def _store(
        self,
        kind: Kind,
        obs: Resource,
        value: Decimal,
        unit: str,
        comparator: Comparator,
        evidence: Evidence,
        effective: dt.date,
    ) -> None:
        """Normalise a numeric value and file it under its kind."""
        if isinstance(kind, LabTest):
            canonical = lab_to_canonical(kind, value, unit)
            uln = self._uln(obs, kind, unit, effective)
            final = _str(obs.get("status")) != "preliminary"
            self.got.labs.append(
                LabResult(kind, canonical, effective, evidence, uln, comparator, final=final)
            )
        elif kind in (Reading.SMN1, Reading.SMN2):
            if value != value.to_integral_value():
                raise UnitError(f"{value} copies")
            bucket = self.got.smn1 if kind is Reading.SMN1 else self.got.smn2
            bucket.append(Measurement(value, "{copies}", effective, evidence))
        elif kind is Reading.WEIGHT:
            kg = weight_to_kg(value, unit)
            self.got.weights.append(Measurement(kg, "kg", effective, evidence))
        elif kind is Reading.GESTATION:
            days = to_canonical(value, unit, GESTATION_TO_DAYS)
            self.got.gestation.append(Measurement(days, "d", effective, evidence))
        elif kind is Reading.TEMPERATURE:
            celsius = to_canonical(value, unit, TEMPERATURE_TO_CEL)
            self.got.temperatures.append(Measurement(celsius, "Cel", effective, evidence))

    def _uln(
        self, obs: Resource, test: LabTest, value_unit: str, effective: dt.date
    ) -> Decimal | None:
        """The reported upper limit of normal for the patient's age, in canonical units."""
        for rng in obs.get("referenceRange") or []:
            if not isinstance(rng, Mapping) or not isinstance(rng.get("high"), Mapping):
                continue
            meaning = _pairs(rng.get("type"))
            if meaning and (codes.REFERENCE_RANGE_MEANING, "normal") not in meaning:
                continue
            if not _age_matches(rng.get("age"), self.birth_date, effective):
                continue
            high = rng["high"]
            value = _dec(high.get("value"))
            if value is None:
                continue
            unit = (
                ucum(high.get("code"), high.get("unit"))
                if (high.get("code") or high.get("unit"))
                else value_unit
            )
            try:
                return to_canonical(value, unit, LAB_TO_CANONICAL[test])
            except UnitError:
                continue
        return None

    @staticmethod
    def _titer(obs: Resource, base: Evidence, effective: dt.date) -> Titer:
        """Read an anti-AAV9 titer from valueString, valueRatio, valueQuantity or valueInteger."""
        if "valueString" in obs:
            raw = str(obs["valueString"])
            matches = TITER_PATTERN.findall(raw)
            evidence = replace(base, value=raw)
            if len(matches) != 1:
                return Titer(None, Comparator.EQ, effective, evidence)
            symbol, number = matches[0]
            comparator = COMPARATORS[TITER_SYMBOLS.get(symbol, symbol or "=")]
            return Titer(Decimal(number), comparator, effective, evidence)
        if isinstance(obs.get("valueRatio"), Mapping):
            return _titer_ratio(obs["valueRatio"], base, effective)
        quantity = _quantity(obs)
        if quantity is None:
            return Titer(None, Comparator.EQ, effective, base)
        value, _, comparator, (shown, unit) = quantity
        evidence = replace(base, value=shown, unit=unit)
        return Titer(value if value >= 1 else None, comparator, effective, evidence)

    # Conditions, procedures, devices, medications -------------------------------------------

    def condition(self, cond: Resource, ref: str) -> None:
        """SMA diagnosis, active infections and markers of advanced SMA."""
        if _status_code(cond.get("verificationStatus")) in VERIFICATION_EXCLUDED:
            return
        concept = cond.get("code")
        pairs = _pairs(concept)
        evidence = Evidence(
            ref,
            _text(concept),
            date=_date(cond.get("onsetDateTime") or cond.get("recordedDate")),
            display=_text(concept),
        )
        if pairs & codes.SMA:
            self.got.sma.append(evidence)
        clinical = _status_code(cond.get("clinicalStatus"))
        active = clinical in CONDITION_ACTIVE or (clinical is None and not _abated(cond))
        if not active:
            return
        if _is_infection(pairs):
            self.got.infections.append(evidence)
        if _is_advanced(concept):
            self.got.advanced.append(evidence)

    def procedure(self, proc: Resource, ref: str) -> None:
        """Tracheostomy and the like: markers of advanced SMA."""
        if _str(proc.get("status")) in PROCEDURE_DONE and _is_advanced(proc.get("code")):
            when = _date(proc.get("performedDateTime")) or _date(
                (proc.get("performedPeriod") or {}).get("start")
            )
            self.got.advanced.append(
                Evidence(ref, _text(proc.get("code")), date=when, display=_text(proc.get("code")))
            )

    def device(self, device: Resource, ref: str) -> None:
        """A tracheostomy tube or home ventilator in use."""
        if _str(device.get("status")) in ("inactive", "entered-in-error"):
            return
        names = " ".join(
            str(n.get("name", "")) for n in device.get("deviceName") or [] if isinstance(n, Mapping)
        )
        concept = dict(device.get("type") or {})
        concept["text"] = f"{concept.get('text', '')} {names}".strip()
        if _is_advanced(concept):
            self.got.advanced.append(Evidence(ref, concept["text"], display=concept["text"]))

    def medication_use(self, med: Resource, ref: str) -> None:
        """A ZOLGENSMA administration, statement or order already on record."""
        kind = med.get("resourceType")
        allowed = {
            "MedicationAdministration": ADMINISTRATION_GIVEN,
            "MedicationStatement": STATEMENT_GIVEN,
            "MedicationRequest": REQUEST_LIVE,
        }[kind]
        if _str(med.get("status")) not in allowed:
            return
        if kind == "MedicationRequest" and codes.app_identifier_values(med):
            return
        concept = med.get("medicationCodeableConcept")
        reference = med.get("medicationReference")
        if isinstance(reference, Mapping):
            target = self.medications.get(str(reference.get("reference")))
            concept = (target or {}).get("code") or {"text": reference.get("display", "")}
        if is_zolgensma(concept):
            when = _date(
                med.get("effectiveDateTime")
                or med.get("authoredOn")
                or (med.get("effectivePeriod") or {}).get("start")
            )
            self.got.prior.append(
                Evidence(
                    ref,
                    f"{kind} {med.get('status')}: {_text(concept)}",
                    date=when,
                    display=_text(concept),
                )
            )


def _quantity(obs: Resource) -> tuple[Decimal, str, Comparator, tuple[str, str]] | None:
    """(value, UCUM unit, comparator, (value as recorded, unit as recorded)) or None."""
    q = obs.get("valueQuantity")
    if isinstance(q, Mapping):
        value = _dec(q.get("value"))
        if value is None:
            return None
        comparator = COMPARATORS.get(str(q.get("comparator", "=")), Comparator.EQ)
        shown = f"{q.get('comparator', '')}{q.get('value')}"
        recorded_unit = str(q.get("unit") or q.get("code") or "")
        return value, ucum(q.get("code"), q.get("unit")), comparator, (shown, recorded_unit)
    for key in ("valueInteger", "valueString"):
        if key in obs:
            value = _dec(str(obs[key]).strip())
            return (value, "1", Comparator.EQ, (str(obs[key]), "")) if value is not None else None
    return None


def _titer_ratio(ratio: Mapping[str, Any], base: Evidence, effective: dt.date) -> Titer:
    """A titer given as a Ratio: numerator 1 (or n), denominator the dilution."""
    num = ratio.get("numerator") if isinstance(ratio.get("numerator"), Mapping) else {}
    den = ratio.get("denominator") if isinstance(ratio.get("denominator"), Mapping) else {}
    n, d = _dec(num.get("value")), _dec(den.get("value"))
    left = f"{num.get('comparator', '')}{num.get('value')}"
    evidence = replace(base, value=f"{left}:{den.get('comparator', '')}{den.get('value')}")
    if n is None or d is None or n <= 0 or d <= 0:
        return Titer(None, Comparator.EQ, effective, evidence)
    # A titer is read by its dilution: "<1:50" and "1:<50" both mean below 1:50, so a
    # comparator on either side applies to the dilution as written, never inverted.
    given = [str(q["comparator"]) for q in (num, den) if q.get("comparator")]
    if len(given) > 1 or (given and given[0] not in COMPARATORS):
        return Titer(None, Comparator.EQ, effective, evidence)
    comparator = COMPARATORS[given[0]] if given else Comparator.EQ
    return Titer(d / n, comparator, effective, evidence)


AGE_UNITS = {
    "d": "d", "day": "d", "days": "d",
    "wk": "wk", "week": "wk", "weeks": "wk",
    "mo": "mo", "month": "mo", "months": "mo",
    "a": "a", "yr": "a", "year": "a", "years": "a",
}  # fmt: skip


def _completed_age(unit: str, birth: dt.date, on: dt.date) -> int:
    """Age on `on` in completed days, weeks, months or years (as a lab's age bands mean it)."""
    days = (on - birth).days
    if unit == "d":
        return days
    if unit == "wk":
        return days // 7
    months = (on.year - birth.year) * 12 + on.month - birth.month - (on.day < birth.day)
    return months if unit == "mo" else months // 12


def _age_matches(age: Any, birth: dt.date | None, on: dt.date) -> bool:
    """True when a referenceRange.age range is absent or holds the patient's completed age."""
    if not isinstance(age, Mapping):
        return True
    if birth is None:
        return False
    for bound in ("low", "high"):
        q = age.get(bound)
        if not isinstance(q, Mapping):
            continue
        value = _dec(q.get("value"))
        unit = AGE_UNITS.get(str(q.get("code") or q.get("unit") or "a").strip().lower())
        if value is None or unit is None:
            return False
        completed = _completed_age(unit, birth, on)
        if (bound == "low" and completed < value) or (bound == "high" and completed > value):
            return False
    return True


def _abated(cond: Resource) -> bool:
    """True when a Condition records an abatement."""
    return any(key.startswith("abatement") for key in cond)


def _is_infection(pairs: set[Coding]) -> bool:
    """Whether a Condition code is in the app's infection value set."""
    for system, code in pairs:
        if system == codes.ICD10CM and code.startswith(codes.INFECTION_ICD10_PREFIXES):
            return True
        if system == codes.SNOMED and code in codes.INFECTION_SNOMED:
            return True
    return False


def _is_advanced(concept: Any) -> bool:
    """Tracheostomy or permanent ventilation, by code or by text."""
    if _pairs(concept) & codes.ADVANCED_SMA_CODES:
        return True
    text = _all_text(concept)
    return any(word in text for word in codes.ADVANCED_SMA_TEXT)


def is_zolgensma(concept: Any) -> bool:
    """An NDC under labeler 71894 or text naming onasemnogene / Zolgensma."""
    for coding in _codings(concept):
        digits = str(coding.get("code", "")).replace("-", "")
        if coding.get("system") == codes.NDC and digits.startswith(codes.ZOLGENSMA_NDC_LABELER):
            return True
    text = _all_text(concept)
    return any(word in text for word in codes.ZOLGENSMA_TEXT)


def _entries(bundle: Mapping[str, Any]) -> list[tuple[str | None, Resource]]:
    """(fullUrl, resource) for each entry of an accepted Bundle type."""
    kind = bundle.get("type")
    if kind not in BUNDLE_TYPES:
        raise BundleError(f"Bundle.type {kind!r} is not one of {', '.join(BUNDLE_TYPES)}")
    out = []
    for entry in bundle.get("entry") or []:
        if isinstance(entry, Mapping) and isinstance(entry.get("resource"), Mapping):
            out.append((entry.get("fullUrl"), entry["resource"]))
    return out


def _patient(entries: Iterable[tuple[str | None, Resource]]) -> tuple[str | None, Resource]:
    """The one Patient in the bundle."""
    patients = [(url, r) for url, r in entries if r.get("resourceType") == "Patient"]
    if not patients:
        raise BundleError("the Bundle has no Patient")
    if len(patients) > 1:
        raise BundleError(f"the Bundle has {len(patients)} Patients; give one patient's record")
    return patients[0]


def facts_from_bundle(
    bundle: Mapping[str, Any], *, titer_codes: frozenset[Coding] = codes.DEFAULT_TITER_CODES
) -> PatientFacts:
    """Read one patient's Bundle into the facts the rules take."""
    entries = _entries(bundle)
    full_url, patient = _patient(entries)
    patient_id = str(patient.get("id") or (full_url or "").rsplit("/", 1)[-1] or "")
    if not patient_id:
        raise BundleError("the Patient has neither an id nor a fullUrl")
    refs = frozenset(r for r in (f"Patient/{patient_id}", full_url) if r)
    birth = _date(patient.get("birthDate"))
    medications = {}
    for url, resource in entries:
        if resource.get("resourceType") == "Medication":
            medications[_reference(resource, url)] = resource
            if url:
                medications[url] = resource
    reader = _Reader(
        patient_id=patient_id,
        patient_refs=refs,
        birth_date=birth,
        titer_codes=frozenset(titer_codes) | codes.DEFAULT_TITER_CODES,
        medications=medications,
    )
    if patient.get("birthDate") and birth is None:
        reader.unreadable(
            "birth date",
            f"'{patient['birthDate']}' is not a full date",
            Evidence(f"Patient/{patient_id}", str(patient["birthDate"])),
        )
    for url, resource in entries:
        reader.add(resource, url)
    return _facts(patient_id, birth, reader.got)


def _newest(items: list[Any], key: Any) -> tuple[Any, ...]:
    """Items newest first by UTC instant (date-only results by their date), then reference."""
    return tuple(sorted(items, key=key, reverse=True))


def _facts(patient_id: str, birth: dt.date | None, got: _Collected) -> PatientFacts:
    """Freeze what was collected, every list newest first."""

    def by_measure(m: Measurement | LabResult | Titer) -> tuple[str, str]:
        """Newest-first key: UTC instant, else the date, then the reference."""
        return (_utc(m.evidence.recorded) or m.effective.isoformat(), m.evidence.reference)

    return PatientFacts(
        patient_id=patient_id,
        birth_date=birth,
        weights_kg=_newest(got.weights, by_measure),
        gestational_age_days=_newest(got.gestation, by_measure),
        labs=_newest(got.labs, by_measure),
        titers=_newest(got.titers, by_measure),
        temperatures_c=_newest(got.temperatures, by_measure),
        smn1_copies=_newest(got.smn1, by_measure),
        smn2_copies=_newest(got.smn2, by_measure),
        sma_conditions=tuple(got.sma),
        active_infections=tuple(got.infections),
        advanced_sma=tuple(got.advanced),
        prior_gene_therapy=tuple(got.prior),
        unreadable=tuple(got.unreadable),
    )
