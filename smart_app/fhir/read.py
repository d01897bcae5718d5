"""FHIR R4 JSON -> PatientFacts: units normalised, withdrawn results dropped, evidence kept."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterable, Mapping
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
    plausible,
    to_canonical,
    ucum,
    weight_to_kg,
)
from smart_app.rules.model import (
    Comparator,
    Evidence,
    Finding,
    FindingCode,
    LabResult,
    LabTest,
    Measurement,
    PatientFacts,
    Severity,
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
QUANTITY_COMPARATORS = frozenset({"<", "<=", ">=", ">"})
"""Quantity.comparator codes in FHIR R4; anything else is not a comparator."""
SHOWN_CHARS = 120
"""Recorded values quoted in messages are cut to this many characters."""
JSON_INT_DIGITS = 4000
"""Longer integers are kept as Decimal: Python refuses to convert ~4,300 digits to int."""
SURROGATE = re.compile("[\ud800-\udfff]")
"""An unpaired UTF-16 surrogate, which no UTF-8 output can carry."""
ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")
"""A JSON escape naming a UTF-16 surrogate (paired or not)."""
TITER_PATTERN = re.compile(r"(<=|>=|≤|≥|<|>)?\s*1\s*:\s*(\d+(?:\.\d+)?)")
TITER_SYMBOLS = {"≤": "<=", "≥": ">="}
MEDICATION_USES = frozenset(
    {"MedicationAdministration", "MedicationStatement", "MedicationRequest"}
)
"""Resources that name a medication given, taken or ordered (a prior ZOLGENSMA dose, section 1)."""
FHIR_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(T.+)?$")
"""A full FHIR date, dateTime or instant (a partial date is not one)."""
CODING_STRINGS = ("system", "code", "display")
"""The elements of a Coding the reader uses, each a string when present."""
HISTORY = re.compile(r"/_history/[^/]*$")
"""A version suffix on a reference: Medication/m1/_history/2 is Medication/m1."""
NEWEST_FIRST = "_sort=-date"
"""Searches ordered newest first: a page bound drops only their oldest results."""


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


def _kinds_by_coding() -> dict[Coding, tuple[int, Reading | LabTest]]:
    """(rank, kind) of each coding the reader knows, ranked as READING_CODES then codes.LABS
    list them: an Observation with codes of two kinds is read as the first."""
    table: dict[Coding, tuple[int, Reading | LabTest]] = {}
    for rank, (kind, wanted) in enumerate([*READING_CODES.items(), *codes.LABS.items()]):
        for pair in wanted:
            table.setdefault(pair, (rank, kind))
    return table


KIND_BY_CODING = _kinds_by_coding()
"""One dictionary look-up per coding instead of a set intersection per kind."""
PRENATAL_OK = frozenset({Reading.GESTATION, Reading.SMN1, Reading.SMN2})
"""Results that may predate birth: gestation, and prenatal genetic testing."""
MUST_BE_POSITIVE = frozenset({Reading.WEIGHT, Reading.GESTATION})

Kind = Reading | LabTest


@dataclass(frozen=True)
class ReadNotes:
    """What a read from a server saw besides the resources it returned."""

    searched: tuple[str, ...] = ()
    """Every search sent (relative URLs); the Patient read is not one."""
    empty: tuple[str, ...] = ()
    """Searches that found nothing (an OperationOutcome alone is nothing)."""
    truncated: tuple[str, ...] = ()
    """Searches with more pages than the app reads."""
    refused: tuple[str, ...] = ()
    """Searches the server refused (4xx); each is replaced (the titer by text) or noted."""
    unresolved: tuple[tuple[str, str], ...] = ()
    """(medicationReference, why it could not be read), after the extra read for them."""
    floors: str = ""
    """How far back the dated searches asked, as a clinician reads it ('' for none)."""

    @property
    def all_empty(self) -> bool:
        """True when searches were answered and every one found nothing."""
        answered = set(self.searched) - set(self.refused)
        return bool(answered) and answered <= set(self.empty)


def parse_bundle_json(text: str) -> dict[str, Any]:
    """Decode a Bundle's JSON with exact decimals, or raise BundleError saying why not."""
    try:
        data = json.loads(text, parse_float=Decimal, parse_int=_json_int)
    except json.JSONDecodeError as exc:
        raise BundleError(f"not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from exc
    except RecursionError as exc:
        raise BundleError("not a FHIR Bundle: JSON nested too deeply") from exc
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        found = data.get("resourceType") if isinstance(data, dict) else type(data).__name__
        raise BundleError(f"not a FHIR Bundle (resourceType is {_quoted(found)})")
    if _may_name_surrogate(text) and has_lone_surrogate(data):
        raise BundleError("not Unicode text: a \\u escape names half a surrogate pair")
    return data


def _may_name_surrogate(text: str) -> bool:
    """False when no string decoded from `text` can hold a surrogate: no \\uD800-\\uDFFF
    escape and no surrogate code point in the text itself (checked in C, before walking)."""
    if "\\u" in text and ESCAPED_SURROGATE.search(text):
        return True
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def has_lone_surrogate(data: Any) -> bool:
    """True when a string (or key) of decoded JSON holds an unpaired UTF-16 surrogate.

    JSON's \\uD800 escapes decode to such code points; they cannot be written as UTF-8, so
    the output would fail long after the input was read.
    """
    stack = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if SURROGATE.search(node):
                return True
        elif isinstance(node, Mapping):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def _json_int(text: str) -> int | Decimal:
    """A JSON integer: an int, or a Decimal when it is too long for Python's int conversion."""
    return int(text) if len(text) <= JSON_INT_DIGITS else Decimal(text)


class Malformed(ValueError):
    """An element whose JSON type is not the FHIR type read there; the message names it."""


def _shown(raw: Any) -> str:
    """A short rendering of a recorded value for a message."""
    if isinstance(raw, str):
        text = raw
    elif isinstance(raw, Decimal | int | float) and not isinstance(raw, bool):
        text = str(raw)
    else:
        text = json.dumps(raw, default=str)
    return text if len(text) <= SHOWN_CHARS else f"{text[: SHOWN_CHARS - 3]}..."


def _quoted(raw: Any) -> str:
    """A recorded value for a one-line message: strings quoted, anything long cut short."""
    text = repr(raw) if isinstance(raw, str | None) else _shown(raw)
    return text if len(text) <= SHOWN_CHARS else f"{text[: SHOWN_CHARS - 3]}..."


def _str(raw: Any) -> str | None:
    """A JSON string, or None for anything else (malformed input never reaches a set lookup)."""
    return raw if isinstance(raw, str) else None


def _opt_str(node: Mapping[str, Any], key: str, path: str = "") -> str | None:
    """node[key]: a string, None when absent; anything else is Malformed."""
    raw = node.get(key)
    if raw is None or isinstance(raw, str):
        return raw
    raise Malformed(f"{path or key} is not a string")


def _opt_obj(node: Mapping[str, Any], key: str, path: str = "") -> Mapping[str, Any] | None:
    """node[key]: a JSON object, None when absent; anything else is Malformed."""
    raw = node.get(key)
    if raw is None or type(raw) is dict or isinstance(raw, Mapping):
        return raw
    raise Malformed(f"{path or key} is not an object")


def _objects(node: Mapping[str, Any], key: str, path: str = "") -> list[Mapping[str, Any]]:
    """node[key]: a list of JSON objects, [] when absent; anything else is Malformed."""
    raw = node.get(key)
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise Malformed(f"{path or key} is not a list")
    for i, item in enumerate(raw):
        if type(item) is not dict and not isinstance(item, Mapping):
            raise Malformed(f"{path or key}[{i}] is not an object")
    return raw


def _dec(raw: Any) -> Decimal | None:
    """A finite Decimal from a JSON number or numeric string, else None."""
    if isinstance(raw, bool) or not isinstance(raw, Decimal | int | float | str):
        return None
    try:
        value = Decimal(str(raw)) if isinstance(raw, float) else Decimal(raw)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def _date(raw: Any) -> dt.date | None:
    """The calendar date of a FHIR date/dateTime/instant as recorded; None if partial or invalid."""
    if not isinstance(raw, str) or not FHIR_DATE.match(raw):
        return None
    try:
        if "T" in raw:
            return dt.datetime.fromisoformat(raw).date()
        return dt.date.fromisoformat(raw)
    except ValueError:
        return None


def _concept(node: Mapping[str, Any], key: str, path: str = "") -> Mapping[str, Any] | None:
    """node[key] as a CodeableConcept: an object or absent; anything else is Malformed."""
    raw = node.get(key)
    if raw is None or type(raw) is dict or isinstance(raw, Mapping):
        return raw
    raise Malformed(f"{path or key} is not a CodeableConcept")


def _codings(concept: Mapping[str, Any] | None, path: str = "code") -> list[Mapping[str, Any]]:
    """The codings of a CodeableConcept: [] when absent, Malformed when ill-typed."""
    if concept is None:
        return []
    if not isinstance(concept, Mapping):
        raise Malformed(f"{path} is not a CodeableConcept")
    found = _objects(concept, "coding", f"{path}.coding")
    for i, coding in enumerate(found):
        for key in CODING_STRINGS:
            raw = coding.get(key)
            if raw is not None and not isinstance(raw, str):
                raise Malformed(f"{path}.coding[{i}].{key} is not a string")
    return found


def _pairs(concept: Mapping[str, Any] | None, path: str = "code") -> set[Coding]:
    """(system, code) pairs of a CodeableConcept."""
    return {(c.get("system") or "", c.get("code") or "") for c in _codings(concept, path)}


def _text(concept: Mapping[str, Any] | None, path: str = "code") -> str:
    """A CodeableConcept's text, else its first display, else its first code."""
    codings = _codings(concept, path)
    if concept is None:
        return ""
    text = _opt_str(concept, "text", f"{path}.text")
    if text:
        return text
    for coding in codings:
        if coding.get("display"):
            return str(coding["display"])
    return next((str(c["code"]) for c in codings if c.get("code")), "")


def _all_text(concept: Mapping[str, Any] | None, path: str = "code") -> str:
    """Text and every display of a CodeableConcept, lower-cased, for text matching."""
    codings = _codings(concept, path)
    if concept is None:
        return ""
    parts = [_opt_str(concept, "text", f"{path}.text") or ""]
    parts += [c.get("display") or "" for c in codings]
    return " ".join(parts).lower()


def _status_code(concept: Mapping[str, Any] | None, path: str) -> str | None:
    """The first code of a status CodeableConcept (Condition.clinicalStatus and friends)."""
    return next((str(c["code"]) for c in _codings(concept, path) if c.get("code")), None)


def _reference(resource: Resource, full_url: str | None) -> str:
    """'Type/id' for a resource, else its fullUrl, else its type alone."""
    kind = _str(resource.get("resourceType")) or "Resource"
    if _str(resource.get("id")):
        return f"{kind}/{resource['id']}"
    return full_url or kind


def _recorded(resource: Resource) -> str:
    """An Observation's effective timestamp as recorded ('' when it has none)."""
    raw = _opt_str(resource, "effectiveDateTime") or _opt_str(resource, "effectiveInstant")
    period = _opt_obj(resource, "effectivePeriod")
    if raw is None and period is not None:
        start = _opt_str(period, "start", "effectivePeriod.start")
        raw = start or _opt_str(period, "end", "effectivePeriod.end")
    return raw or ""


def _clock(raw: str) -> dt.datetime | None:
    """A recorded dateTime with a time part as a datetime (zone as recorded); else None."""
    if "T" not in raw or _date(raw) is None:
        return None
    try:
        return dt.datetime.fromisoformat(raw)
    except ValueError:
        return None


def _taken_at(raw: str) -> dt.datetime | None:
    """The UTC moment of a recorded dateTime with a time and zone; None otherwise."""
    moment = _clock(raw)
    if moment is None or moment.tzinfo is None:
        return None
    try:
        return moment.astimezone(dt.UTC)
    except OverflowError:
        return None


def _utc(raw: str) -> str:
    """A recorded timestamp in UTC as sortable text ('' when only a date is known)."""
    moment = _clock(raw)
    if moment is None:
        return ""
    if moment.tzinfo is None:
        return moment.isoformat()
    utc = _taken_at(raw)
    return utc.replace(tzinfo=None).isoformat() if utc else ""


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
    liver: list[Evidence] = field(default_factory=list)
    advanced: list[Evidence] = field(default_factory=list)
    prior: list[Evidence] = field(default_factory=list)
    smn: list[Evidence] = field(default_factory=list)
    unresolved: list[Evidence] = field(default_factory=list)
    """Medication uses whose medicationReference could not be followed (value: the reference)."""
    unreadable: list[Unreadable] = field(default_factory=list)

    def sizes(self) -> dict[str, int]:
        """How long every list is now, to undo what one resource added."""
        return {name: len(found) for name, found in vars(self).items()}

    def undo(self, sizes: Mapping[str, int]) -> None:
        """Drop what was added since `sizes` was taken."""
        for name, size in sizes.items():
            del getattr(self, name)[size:]


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
        self.handlers: dict[str, Callable[[Resource, str], None]] = {
            "Observation": self.observation,
            "Condition": self.condition,
            "Procedure": self.procedure,
            "Device": self.device,
            "MedicationAdministration": self.medication_use,
            "MedicationStatement": self.medication_use,
            "MedicationRequest": self.medication_use,
        }

    def unreadable(self, what: str, reason: str, evidence: Evidence) -> None:
        """Record a relevant resource that cannot be used."""
        self.got.unreadable.append(Unreadable(what, reason, evidence))

    def about_patient(self, resource: Resource, ref: str) -> bool:
        """True when the resource's subject references this patient; else False, and recorded.

        Accepted: 'Patient/<id>' and the Patient's fullUrl in the Bundle (for a record read
        from a server, its absolute URL there). A missing, malformed or foreign subject is
        never used: whose result it is cannot be told.
        """
        kind = _str(resource.get("resourceType")) or "Resource"
        key = "patient" if kind == "Device" else "subject"
        subject = resource.get(key)
        target = _str(subject.get("reference")) if isinstance(subject, Mapping) else None
        if target and target in self.patient_refs:
            return True
        if subject is None:
            reason = f"it has no {key}, so whose it is is unknown"
        elif not target:
            reason = f"its {key} is not a reference to a patient ({_shown(subject)})"
        else:
            reason = f"it refers to {_shown(target)}, not to Patient/{self.patient_id}"
        self.unreadable(kind, reason, Evidence(ref, ""))
        return False

    def add(self, resource: Resource, full_url: str | None) -> None:
        """Dispatch one resource by type; an ill-typed element makes the resource unreadable."""
        ref = _reference(resource, full_url)
        kind = _str(resource.get("resourceType")) or ""
        handler = self.handlers.get(kind)
        if handler is None or not self.about_patient(resource, ref):
            return
        sizes = self.got.sizes()
        try:
            _opt_str(resource, "id")
            handler(resource, ref)
        except Malformed as exc:
            self.got.undo(sizes)
            self.unreadable(kind, f"its {exc}", Evidence(ref, ""))

    # Observations -------------------------------------------------------------------------

    def observation(self, obs: Resource, ref: str) -> None:
        """Classify an Observation by code and read its value."""
        kind = self._observation_kind(obs)
        if kind is None:
            return
        status = _opt_str(obs, "status")
        if status not in OBSERVATION_USABLE or "dataAbsentReason" in obs:
            return
        recorded = _recorded(obs)
        effective = _date(recorded)
        base = Evidence(ref, "", "", effective, _text(obs.get("code")), recorded)
        if effective is None:
            self.unreadable(kind, "it has no full effective date", base)
            return
        if self.birth_date and effective < self.birth_date and kind not in PRENATAL_OK:
            self.unreadable(kind, f"it is dated {effective}, before the birth date", base)
            return
        if kind is Reading.TITER:
            self.got.titers.append(self._titer(obs, base, effective))
            return
        try:
            quantity = _quantity(obs)
        except UnitError as exc:
            self.unreadable(kind, str(exc), base)
            return
        if quantity is None:
            self.unreadable(kind, "it has no numeric value", base)
            return
        value, unit, comparator, (shown, recorded_unit) = quantity
        evidence = replace(base, value=shown, unit=recorded_unit)
        if value < 0 or (value == 0 and kind in MUST_BE_POSITIVE):
            self.unreadable(kind, f"{shown} is not a plausible value", evidence)
            return
        if comparator is not Comparator.EQ and not isinstance(kind, LabTest):
            self.unreadable(kind, f"{shown} {recorded_unit} is a bound, not a value", evidence)
            return
        try:
            self._store(kind, obs, value, unit, comparator, evidence, effective)
        except UnitError as exc:
            self.unreadable(kind, str(exc), evidence)

    def _observation_kind(self, obs: Resource) -> Kind | None:
        """What an Observation is, by code (or by 'AAV9' in its text for the titer)."""
        return _kind(obs, self.titer_codes)

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
            return
        taken_at = _taken_at(evidence.recorded)
        if kind in (Reading.SMN1, Reading.SMN2):
            plausible(value, "copies")
            if value != value.to_integral_value():
                raise UnitError(f"{value} copies is not a whole number")
            bucket = self.got.smn1 if kind is Reading.SMN1 else self.got.smn2
            bucket.append(Measurement(value, "{copies}", effective, evidence, taken_at))
        elif kind is Reading.WEIGHT:
            kg = _plain(weight_to_kg(value, unit))
            self.got.weights.append(Measurement(kg, "kg", effective, evidence, taken_at))
        elif kind is Reading.GESTATION:
            days = to_canonical(value, unit, GESTATION_TO_DAYS)
            self.got.gestation.append(Measurement(days, "d", effective, evidence, taken_at))
        elif kind is Reading.TEMPERATURE:
            celsius = to_canonical(value, unit, TEMPERATURE_TO_CEL)
            self.got.temperatures.append(Measurement(celsius, "Cel", effective, evidence, taken_at))

    def _uln(
        self, obs: Resource, test: LabTest, value_unit: str, effective: dt.date
    ) -> Decimal | None:
        """The reported upper limit of normal for the patient's age, in canonical units."""
        for i, rng in enumerate(_objects(obs, "referenceRange")):
            path = f"referenceRange[{i}]"
            high = _opt_obj(rng, "high", f"{path}.high")
            meaning = _pairs(_concept(rng, "type", f"{path}.type"), f"{path}.type")
            age = _opt_obj(rng, "age", f"{path}.age")
            if high is None:
                continue
            if meaning and (codes.REFERENCE_RANGE_MEANING, "normal") not in meaning:
                continue
            if not _age_matches(age, self.birth_date, effective, path=f"{path}.age"):
                continue
            code = _opt_str(high, "code", f"{path}.high.code")
            text = _opt_str(high, "unit", f"{path}.high.unit")
            value = _dec(high.get("value"))
            if value is None:
                continue
            try:
                unit = ucum(code, text) if (code or text) else value_unit
                return to_canonical(value, unit, LAB_TO_CANONICAL[test])
            except UnitError:
                continue
        return None

    @staticmethod
    def _titer(obs: Resource, base: Evidence, effective: dt.date) -> Titer:
        """Read an anti-AAV9 titer from valueString, valueRatio, valueQuantity or valueInteger."""
        if "valueString" in obs:
            raw = _opt_str(obs, "valueString") or ""
            matches = TITER_PATTERN.findall(raw)
            evidence = replace(base, value=raw)
            if len(matches) != 1:
                return Titer(None, Comparator.EQ, effective, evidence)
            symbol, number = matches[0]
            comparator = COMPARATORS[TITER_SYMBOLS.get(symbol, symbol or "=")]
            return Titer(_plausible_or_none(Decimal(number)), comparator, effective, evidence)
        ratio = _opt_obj(obs, "valueRatio")
        if ratio is not None:
            return _titer_ratio(ratio, base, effective)
        try:
            quantity = _quantity(obs)
        except UnitError:
            quantity = None
        if quantity is None:
            return Titer(None, Comparator.EQ, effective, base)
        value, _, comparator, (shown, unit) = quantity
        evidence = replace(base, value=shown, unit=unit)
        usable = _plausible_or_none(value) if value >= 1 else None
        return Titer(usable, comparator, effective, evidence)

    # Conditions, procedures, devices, medications -------------------------------------------

    def condition(self, cond: Resource, ref: str) -> None:
        """SMA diagnosis, active infections, liver disease and markers of advanced SMA."""
        verification = _status_code(_concept(cond, "verificationStatus"), "verificationStatus")
        concept = _concept(cond, "code")
        pairs = _pairs(concept)
        shown = _text(concept)
        onset = _opt_str(cond, "onsetDateTime") or _opt_str(cond, "recordedDate")
        clinical = _status_code(_concept(cond, "clinicalStatus"), "clinicalStatus")
        advanced = _is_advanced(concept)
        if verification in VERIFICATION_EXCLUDED:
            return
        evidence = Evidence(ref, shown, date=_date(onset), display=shown)
        if pairs & codes.SMA:
            self.got.sma.append(replace(evidence, codings=_coded(concept)))
        active = clinical in CONDITION_ACTIVE or (clinical is None and not _abated(cond))
        if not active:
            return
        if _is_infection(pairs):
            self.got.infections.append(evidence)
        if _is_liver_disease(pairs):
            self.got.liver.append(evidence)
        if advanced:
            self.got.advanced.append(evidence)

    def procedure(self, proc: Resource, ref: str) -> None:
        """Tracheostomy and the like: markers of advanced SMA."""
        concept = _concept(proc, "code")
        if _opt_str(proc, "status") not in PROCEDURE_DONE or not _is_advanced(concept):
            return
        period = _opt_obj(proc, "performedPeriod") or {}
        when = _date(_opt_str(proc, "performedDateTime")) or _date(
            _opt_str(period, "start", "performedPeriod.start")
        )
        shown = _text(concept)
        self.got.advanced.append(Evidence(ref, shown, date=when, display=shown))

    def device(self, device: Resource, ref: str) -> None:
        """A tracheostomy tube or home ventilator in use."""
        if _opt_str(device, "status") in ("inactive", "entered-in-error"):
            return
        names = " ".join(
            _opt_str(n, "name", f"deviceName[{i}].name") or ""
            for i, n in enumerate(_objects(device, "deviceName"))
        )
        kind = _concept(device, "type") or {}
        _codings(kind, "type")
        text = f"{_opt_str(kind, 'text', 'type.text') or ''} {names}".strip()
        if _is_advanced({**kind, "text": text}):
            self.got.advanced.append(Evidence(ref, text, display=text))

    def medication_use(self, med: Resource, ref: str) -> None:
        """A ZOLGENSMA administration, statement or order already on record; an SMN-targeted
        therapy (nusinersen, risdiplam) given, taken or ordered."""
        kind = str(med["resourceType"])
        allowed = {
            "MedicationAdministration": ADMINISTRATION_GIVEN,
            "MedicationStatement": STATEMENT_GIVEN,
            "MedicationRequest": REQUEST_LIVE,
        }[kind]
        status = _opt_str(med, "status")
        if status not in allowed:
            return
        _objects(med, "identifier")
        if kind == "MedicationRequest" and codes.app_identifier_values(med):
            return
        concept, missing = self._medication(med)
        named = _names_zolgensma(concept)
        therapy = _smn_therapy(concept)
        if not named and not therapy and missing is None:
            return
        period = _opt_obj(med, "effectivePeriod") or {}
        when = _date(
            _opt_str(med, "effectiveDateTime")
            or _opt_str(med, "authoredOn")
            or _opt_str(period, "start", "effectivePeriod.start")
        )
        shown = _text(concept, "medication")
        used = f"{kind} {status}: {shown}"
        if therapy:
            self.got.smn.append(Evidence(ref, used, date=when, display=therapy))
        if named:
            self.got.prior.append(Evidence(ref, used, date=when, display=shown))
        elif missing is not None:
            self.got.unresolved.append(Evidence(ref, missing, date=when, display=shown))

    def _medication(self, med: Resource) -> tuple[Mapping[str, Any] | None, str | None]:
        """(the medication's CodeableConcept, None), inline or from the referenced Medication; for
        a reference that cannot be followed, (its display as text, the reference as recorded)."""
        reference = _opt_obj(med, "medicationReference")
        if reference is None:
            return _concept(med, "medicationCodeableConcept"), None
        recorded = _opt_str(reference, "reference", "medicationReference.reference") or ""
        display = _opt_str(reference, "display", "medicationReference.display") or ""
        target = self._referenced(med, recorded)
        if target is None:
            return {"text": display}, recorded
        return _concept(target, "code", "referenced Medication's code") or {"text": display}, None

    def _referenced(self, med: Resource, reference: str) -> Resource | None:
        """The Medication a reference names: contained ('#id'), or read with the record."""
        if not reference:
            return None
        if reference.startswith("#"):
            return next(
                (
                    item
                    for item in _objects(med, "contained")
                    if item.get("resourceType") == "Medication" and item.get("id") == reference[1:]
                ),
                None,
            )
        return self.medications.get(reference) or self.medications.get(HISTORY.sub("", reference))


def _kind(obs: Resource, titer_codes: frozenset[Coding]) -> Kind | None:
    """What an Observation is, by code (or by 'AAV9' in its text for the titer)."""
    concept = _concept(obs, "code")
    pairs = _pairs(concept)
    ranked = [KIND_BY_CODING[pair] for pair in pairs if pair in KIND_BY_CODING]
    if ranked:
        return min(ranked)[1]
    if pairs & titer_codes or codes.TITER_TEXT in _all_text(concept):
        return Reading.TITER
    return None


def titer_date(resource: Resource, titer_codes: frozenset[Coding]) -> dt.date | None:
    """The date of an Observation the reader files as an anti-AAV9 titer (by code, or 'AAV9' in
    its text); None for anything else, or a titer without a full date."""
    if resource.get("resourceType") != "Observation":
        return None
    try:
        titer = _kind(resource, titer_codes | codes.DEFAULT_TITER_CODES) is Reading.TITER
        return _date(_recorded(resource)) if titer else None
    except Malformed:
        return None


def medication_reference(resource: Resource) -> str | None:
    """The literal reference of a medication use's medicationReference; None for an inline
    code, a contained Medication ('#id') or anything that is not a medication use."""
    if resource.get("resourceType") not in MEDICATION_USES:
        return None
    reference = resource.get("medicationReference")
    target = reference.get("reference") if isinstance(reference, Mapping) else None
    if not isinstance(target, str) or not target or target.startswith("#"):
        return None
    return target


def without_version(reference: str) -> str:
    """A reference without its /_history/<version> suffix."""
    return HISTORY.sub("", reference)


def _plain(value: Decimal) -> Decimal:
    """One representation per value, for values compared and shown by value: no trailing zeros
    and no exponent (3.0 and 3 are 3; 6.1200 is 6.12; 3000 stays 3000)."""
    normal = value.normalize()
    exponent = normal.as_tuple().exponent
    return normal.quantize(Decimal(1)) if isinstance(exponent, int) and exponent > 0 else normal


def _plausible_or_none(value: Decimal) -> Decimal | None:
    """`value` when its magnitude is plausible, else None (an unreadable titer)."""
    try:
        return plausible(value)
    except UnitError:
        return None


def _quantity(obs: Resource) -> tuple[Decimal, str, Comparator, tuple[str, str]] | None:
    """(value, UCUM unit, comparator, (value as recorded, unit as recorded)) or None.

    A comparator that is not one of FHIR's, or a unit that is not a string, raises UnitError.
    """
    q = _opt_obj(obs, "valueQuantity")
    if q is not None:
        value = _dec(q.get("value"))
        if value is None:
            return None
        symbol = _opt_str(q, "comparator", "valueQuantity.comparator")
        if symbol is not None and symbol not in QUANTITY_COMPARATORS:
            raise UnitError(f"comparator {_shown(symbol)} is not a FHIR comparator")
        comparator = COMPARATORS[symbol] if symbol else Comparator.EQ
        code = _opt_str(q, "code", "valueQuantity.code")
        text = _opt_str(q, "unit", "valueQuantity.unit")
        shown = f"{symbol or ''}{_shown(q.get('value'))}"
        return value, ucum(code, text), comparator, (shown, text or code or "")
    for key in ("valueInteger", "valueString"):
        raw = obs.get(key)
        if key in obs and (
            isinstance(raw, bool) or not isinstance(raw, int | float | Decimal | str)
        ):
            raise Malformed(f"{key} is not a {'string' if key == 'valueString' else 'number'}")
        if key in obs:
            value = _dec(str(raw).strip())
            return (value, "1", Comparator.EQ, (_shown(raw), "")) if value is not None else None
    return None


def _titer_ratio(ratio: Mapping[str, Any], base: Evidence, effective: dt.date) -> Titer:
    """A titer given as a Ratio: numerator 1 (or n), denominator the dilution."""
    num = _opt_obj(ratio, "numerator", "valueRatio.numerator") or {}
    den = _opt_obj(ratio, "denominator", "valueRatio.denominator") or {}
    num_symbol = _opt_str(num, "comparator", "valueRatio.numerator.comparator")
    den_symbol = _opt_str(den, "comparator", "valueRatio.denominator.comparator")
    n, d = _dec(num.get("value")), _dec(den.get("value"))
    left = f"{num_symbol or ''}{_shown(num.get('value'))}"
    evidence = replace(base, value=f"{left}:{den_symbol or ''}{_shown(den.get('value'))}")
    if n is None or d is None or n <= 0 or d <= 0:
        return Titer(None, Comparator.EQ, effective, evidence)
    if _plausible_or_none(n) is None or _plausible_or_none(d) is None:
        return Titer(None, Comparator.EQ, effective, evidence)
    # A titer is read by its dilution: "<1:50" and "1:<50" both mean below 1:50, so a
    # comparator on either side applies to the dilution as written, never inverted.
    given = [symbol for symbol in (num_symbol, den_symbol) if symbol]
    if len(given) > 1 or (given and given[0] not in QUANTITY_COMPARATORS):
        return Titer(None, Comparator.EQ, effective, evidence)
    comparator = COMPARATORS[given[0]] if given else Comparator.EQ
    return Titer(_plausible_or_none(d / n), comparator, effective, evidence)


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


def _age_matches(
    age: Mapping[str, Any] | None, birth: dt.date | None, on: dt.date, *, path: str
) -> bool:
    """True when a referenceRange.age range is absent or holds the patient's completed age."""
    if age is None:
        return True
    bounds = {bound: _opt_obj(age, bound, f"{path}.{bound}") for bound in ("low", "high")}
    if birth is None:
        return False
    for bound, q in bounds.items():
        if q is None:
            continue
        value = _dec(q.get("value"))
        recorded = _opt_str(q, "code", f"{path}.{bound}.code") or _opt_str(
            q, "unit", f"{path}.{bound}.unit"
        )
        unit = AGE_UNITS.get((recorded or "a").strip().lower())
        if value is None or unit is None:
            return False
        completed = _completed_age(unit, birth, on)
        if (bound == "low" and completed < value) or (bound == "high" and completed > value):
            return False
    return True


def _abated(cond: Resource) -> bool:
    """True when a Condition records an abatement."""
    return any(key.startswith("abatement") for key in cond)


def _in_value_set(
    pairs: set[Coding], icd10_prefixes: tuple[str, ...], snomed: frozenset[str]
) -> bool:
    """Whether any code is under one of the ICD-10-CM prefixes or is one of the SNOMED codes."""
    for system, code in pairs:
        if system == codes.ICD10CM and code.startswith(icd10_prefixes):
            return True
        if system == codes.SNOMED and code in snomed:
            return True
    return False


def _is_infection(pairs: set[Coding]) -> bool:
    """Whether a Condition code is in the app's infection value set."""
    return _in_value_set(pairs, codes.INFECTION_ICD10_PREFIXES, codes.INFECTION_SNOMED)


def _is_liver_disease(pairs: set[Coding]) -> bool:
    """Whether a Condition code is in the app's liver-disease value set (section 8.6)."""
    return _in_value_set(pairs, codes.LIVER_ICD10_PREFIXES, codes.LIVER_SNOMED)


def _is_advanced(concept: Mapping[str, Any] | None) -> bool:
    """Tracheostomy or permanent ventilation, by code or by text."""
    if _pairs(concept) & codes.ADVANCED_SMA_CODES:
        return True
    text = _all_text(concept)
    return any(word in text for word in codes.ADVANCED_SMA_TEXT)


def _names_zolgensma(concept: Mapping[str, Any] | None) -> bool:
    """A ZOLGENSMA NDC (labeler 71894) or name in the concept; Malformed if ill-typed."""
    for coding in _codings(concept, "medication"):
        digits = str(coding.get("code") or "").replace("-", "")
        if coding.get("system") == codes.NDC and digits.startswith(codes.ZOLGENSMA_NDC_LABELER):
            return True
    text = _all_text(concept, "medication")
    return any(word in text for word in codes.ZOLGENSMA_TEXT)


def _smn_therapy(concept: Mapping[str, Any] | None) -> str:
    """The SMN-targeted therapies a medication concept names by text or display ('' for none)."""
    text = _all_text(concept, "medication")
    names = [name for word, name in codes.SMN_THERAPY_TEXT.items() if word in text]
    return ", ".join(dict.fromkeys(names))


def _coded(concept: Mapping[str, Any] | None) -> tuple[tuple[str, str, str], ...]:
    """(system, code, display) of each coding of a concept that has a code."""
    return tuple(
        (str(c.get("system") or ""), str(c["code"]), str(c.get("display") or ""))
        for c in _codings(concept)
        if c.get("code")
    )


def is_zolgensma(concept: Any) -> bool:
    """An NDC under labeler 71894 or text naming onasemnogene / Zolgensma; ill-typed is not."""
    try:
        return _names_zolgensma(concept)
    except Malformed:
        return False


Entry = tuple[str | None, Resource]


def _entries(bundle: Mapping[str, Any]) -> tuple[list[Entry], list[Unreadable]]:
    """(fullUrl, resource) for each entry of an accepted Bundle type; unusable entries named."""
    kind = bundle.get("type")
    if not isinstance(kind, str) or kind not in BUNDLE_TYPES:
        raise BundleError(f"Bundle.type {_quoted(kind)} is not one of {', '.join(BUNDLE_TYPES)}")
    raw = bundle.get("entry")
    if raw is not None and not isinstance(raw, list):
        raise BundleError("Bundle.entry is not a list")
    out: list[Entry] = []
    bad: list[Unreadable] = []
    for i, entry in enumerate(raw or []):
        where = Evidence(f"Bundle.entry[{i}]", "")
        if not isinstance(entry, Mapping):
            bad.append(Unreadable("Bundle entry", "it is not an object", where))
            continue
        resource, url = entry.get("resource"), entry.get("fullUrl")
        if resource is None:
            continue
        if not isinstance(resource, Mapping):
            bad.append(Unreadable("Bundle entry", "its resource is not an object", where))
        elif url is not None and not isinstance(url, str):
            bad.append(Unreadable("Bundle entry", "its fullUrl is not a string", where))
        else:
            out.append((url or None, resource))
    return out, bad


def _patient(entries: Iterable[Entry]) -> Entry:
    """The one Patient in the bundle."""
    patients = [(url, r) for url, r in entries if r.get("resourceType") == "Patient"]
    if not patients:
        raise BundleError("the Bundle has no Patient")
    if len(patients) > 1:
        raise BundleError(f"the Bundle has {len(patients)} Patients; give one patient's record")
    return patients[0]


def _patient_id(patient: Resource, full_url: str | None) -> str:
    """The Patient's id, else the last segment of its fullUrl; BundleError when neither."""
    raw = patient.get("id")
    if raw is not None and not isinstance(raw, str):
        raise BundleError("the Patient's id is not a string")
    patient_id = raw or (full_url or "").rsplit("/", 1)[-1]
    if not patient_id:
        raise BundleError("the Patient has neither an id nor a fullUrl")
    return patient_id


def facts_from_bundle(
    bundle: Mapping[str, Any],
    *,
    titer_codes: frozenset[Coding] = codes.DEFAULT_TITER_CODES,
    notes: ReadNotes | None = None,
) -> PatientFacts:
    """Read one patient's Bundle into the facts the rules take; `notes` (for a record read from
    a server) say what the read saw besides the resources, and become findings here too."""
    entries, bad_entries = _entries(bundle)
    full_url, patient = _patient(entries)
    patient_id = _patient_id(patient, full_url)
    refs = frozenset(r for r in (f"Patient/{patient_id}", full_url) if r)
    recorded_birth = patient.get("birthDate")
    birth = _date(recorded_birth)
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
    reader.got.unreadable.extend(bad_entries)
    if recorded_birth not in (None, "") and birth is None:
        reader.unreadable(
            "birth date",
            f"'{_shown(recorded_birth)}' is not a full date",
            Evidence(f"Patient/{patient_id}", _shown(recorded_birth)),
        )
    for url, resource in entries:
        reader.add(resource, url)
    findings = read_findings(patient_id, reader.got.unresolved, notes)
    return replace(_facts(patient_id, birth, reader.got), read_findings=findings)


def read_findings(
    patient_id: str, unresolved: Iterable[Evidence], notes: ReadNotes | None
) -> tuple[Finding, ...]:
    """Findings on what the reading could not settle: medication references it could not follow
    (a prior ZOLGENSMA dose must not be missed), every search empty, unordered searches cut."""
    why = dict(notes.unresolved) if notes else {}
    found = [
        _unresolved_finding(e, why.get(e.value, ""), live=notes is not None) for e in unresolved
    ]
    if notes is not None and notes.all_empty:
        found.append(
            Finding(
                FindingCode.SEARCHES_EMPTY,
                Severity.INCOMPLETE,
                f"The server returned Patient/{patient_id}, but every one of the "
                f"{len(set(notes.searched) - set(notes.refused))} searches for the patient's "
                "results, conditions and medications came back empty. The chart may hold "
                "nothing yet; more often the server does not support these searches (patient=, "
                "code=, date=) or the SMART scopes granted to the app do not cover Observation, "
                "Condition and the medication resources. Check the server's search support and "
                "the granted scopes before taking any 'missing' finding at its word."
                + (f" The dated searches asked for {notes.floors}." if notes.floors else ""),
                "2.1; 2.3",
                (Evidence(f"Patient/{patient_id}", ""),),
            )
        )
    unordered = [s for s in notes.truncated if NEWEST_FIRST not in s] if notes else []
    if unordered:
        found.append(
            Finding(
                FindingCode.SEARCH_TRUNCATED,
                Severity.NEEDS_REVIEW,
                f"The server holds more than the app reads for {', '.join(unordered)}: these "
                "searches are not ordered by date, so what was left unread may be anything, an "
                "active infection or a prior ZOLGENSMA dose among them. Review these records in "
                "the EHR.",
                "1; 2.1; 5.2",
                tuple(Evidence(search, "") for search in unordered),
            )
        )
    return tuple(found)


def _unresolved_finding(use: Evidence, why: str, *, live: bool) -> Finding:
    """A medication use whose medicationReference could not be followed: it may be ZOLGENSMA."""
    target = use.value
    if not target:
        why = "it is not a literal reference"
    elif target.startswith("#"):
        why = why or f"the resource contains no Medication {target}"
    else:
        why = why or ("the server did not return it" if live else "it is not in the Bundle")
    shown = f"'{_shown(target)}'" if target else "a reference"
    named = f" (shown as '{_shown(use.display)}')" if use.display else ""
    return Finding(
        FindingCode.MEDICATION_UNRESOLVED,
        Severity.NEEDS_REVIEW,
        f"{use.reference} names its medication by {shown}{named}, which could not be read: "
        f"{why}. Whether it records ZOLGENSMA is unknown, and repeat administration has not "
        "been evaluated: check the medication in the EHR before planning an infusion.",
        "1; 6.2",
        (use,),
    )


def _newest(items: list[Any], key: Any) -> tuple[Any, ...]:
    """Items newest first by UTC instant (date-only results by their date), then the key's rest."""
    return tuple(sorted(items, key=key, reverse=True))


def _when(item: Measurement | LabResult | Titer) -> str:
    """Sortable time of a result: its UTC instant, else its date."""
    return _utc(item.evidence.recorded) or item.effective.isoformat()


def _facts(patient_id: str, birth: dt.date | None, got: _Collected) -> PatientFacts:
    """Freeze what was collected, every list newest first."""

    def by_value(m: Measurement | LabResult) -> tuple[str, Decimal, str]:
        """Newest first; at the same moment the larger value first, whatever the resource ids."""
        return (_when(m), m.value, m.evidence.reference)

    def by_time(t: Titer) -> tuple[str, str]:
        """Newest first, then the reference."""
        return (_when(t), t.evidence.reference)

    return PatientFacts(
        patient_id=patient_id,
        birth_date=birth,
        weights_kg=_newest(got.weights, by_value),
        gestational_age_days=_newest(got.gestation, by_value),
        labs=_newest(got.labs, by_value),
        titers=_newest(got.titers, by_time),
        temperatures_c=_newest(got.temperatures, by_value),
        smn1_copies=_newest(got.smn1, by_value),
        smn2_copies=_newest(got.smn2, by_value),
        sma_conditions=tuple(got.sma),
        active_infections=tuple(got.infections),
        liver_conditions=tuple(got.liver),
        advanced_sma=tuple(got.advanced),
        prior_gene_therapy=tuple(got.prior),
        smn_therapies=tuple(got.smn),
        unreadable=tuple(got.unreadable),
    )
