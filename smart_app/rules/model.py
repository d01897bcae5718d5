"""Frozen value types the clinical rules take and return: facts in, findings and a plan out."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum, StrEnum


class LabTest(StrEnum):
    """Laboratory tests the label asks for at baseline and after infusion."""

    AST = "AST"
    ALT = "ALT"
    BILIRUBIN_TOTAL = "total bilirubin"
    ALBUMIN = "albumin"
    PT = "PT"
    PTT = "PTT"
    INR = "INR"
    CREATININE = "creatinine"
    HEMOGLOBIN = "hemoglobin"
    PLATELETS = "platelets"
    TROPONIN_I = "troponin I"


CANONICAL_UNIT: dict[LabTest, str] = {
    LabTest.AST: "U/L",
    LabTest.ALT: "U/L",
    LabTest.BILIRUBIN_TOTAL: "mg/dL",
    LabTest.ALBUMIN: "g/dL",
    LabTest.PT: "s",
    LabTest.PTT: "s",
    LabTest.INR: "{INR}",
    LabTest.CREATININE: "mg/dL",
    LabTest.HEMOGLOBIN: "g/dL",
    LabTest.PLATELETS: "10*3/uL",
    LabTest.TROPONIN_I: "ng/mL",
}
"""The UCUM unit every lab value (and its upper limit of normal) is normalised to."""


class Severity(Enum):
    """How much a finding weighs; the order of members is the order of severity."""

    NOT_ELIGIBLE = "not-eligible"
    DEFERRED = "deferred"
    INCOMPLETE = "incomplete"
    NEEDS_REVIEW = "needs-review"
    INFO = "info"

    @property
    def rank(self) -> int:
        """0 for the most severe."""
        return list(Severity).index(self)


class Status(StrEnum):
    """Overall eligibility: the most severe finding present decides it."""

    NOT_ELIGIBLE = "not-eligible"
    DEFERRED = "deferred"
    INCOMPLETE = "incomplete"
    NEEDS_REVIEW = "needs-review"
    ELIGIBLE = "eligible"


class FindingCode(StrEnum):
    """Every finding the rules can raise; the app's local code system."""

    # not-eligible
    AGE_NOT_UNDER_2 = "age-not-under-2"
    WEIGHT_OUTSIDE_LABEL_RANGE = "weight-outside-label-range"
    PRIOR_ONASEMNOGENE = "prior-onasemnogene"
    # deferred
    PRETERM_BEFORE_TERM_AGE = "preterm-before-term-age"
    ANTI_AAV9_TITER_ELEVATED = "anti-aav9-titer-elevated"
    ACTIVE_INFECTION = "active-infection"
    # incomplete
    BIRTH_DATE_MISSING = "birth-date-missing"
    WEIGHT_MISSING = "weight-missing"
    WEIGHT_STALE = "weight-stale"
    GESTATIONAL_AGE_MISSING = "gestational-age-missing"
    ANTI_AAV9_TITER_MISSING = "anti-aav9-titer-missing"
    ANTI_AAV9_TITER_AMBIGUOUS = "anti-aav9-titer-ambiguous"
    BASELINE_LAB_MISSING = "baseline-lab-missing"
    SMN1_BIALLELIC_NOT_CONFIRMED = "smn1-biallelic-not-confirmed"
    SEARCHES_EMPTY = "searches-empty"
    # needs-review
    LIVER_FUNCTION_ELEVATED = "liver-function-elevated"
    HEPATIC_IMPAIRMENT = "hepatic-impairment"
    WEIGHT_DISCREPANCY = "weight-discrepancy"
    ADVANCED_SMA = "advanced-sma"
    ULN_FALLBACK_USED = "uln-fallback-used"
    RESULT_UNREADABLE = "result-unreadable"
    STEROID_START_PASSED = "steroid-start-passed"
    MEDICATION_UNRESOLVED = "medication-unresolved"
    SEARCH_TRUNCATED = "search-truncated"
    # info
    LIVE_VACCINE_CAUTION = "live-vaccine-caution"
    WEIGHT_BETWEEN_BANDS = "weight-between-bands"
    SMA_DIAGNOSIS_NOT_RECORDED = "sma-diagnosis-not-recorded"
    SMN2_COPY_NUMBER = "smn2-copy-number"
    CAREGIVER_COUNSELING = "caregiver-counseling"


class Comparator(StrEnum):
    """How a reported value relates to the true value."""

    EQ = "="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="


class UlnSource(StrEnum):
    """Where an upper limit of normal came from."""

    REPORTED = "reported"
    FALLBACK = "fallback"
    NONE = "none"


@dataclass(frozen=True)
class Evidence:
    """A fact's source: the resource it came from and the value as recorded there."""

    reference: str
    value: str
    unit: str = ""
    date: dt.date | None = None
    display: str = ""
    recorded: str = ""
    """The timestamp exactly as the source recorded it, when it had one."""
    codings: tuple[tuple[str, str, str], ...] = ()
    """(system, code, display) of the concept it was read from, where the reader keeps them (the
    SMA Conditions: their ICD-10-CM codes go on a prior-authorization claim)."""


@dataclass(frozen=True)
class Measurement:
    """A numeric value in a canonical unit (named in `unit`) with its evidence."""

    value: Decimal
    unit: str
    effective: dt.date
    evidence: Evidence
    taken_at: dt.datetime | None = None
    """The moment it was taken, in UTC, when the source recorded a time (else only the date)."""


@dataclass(frozen=True)
class LabResult:
    """A laboratory result normalised to its test's canonical unit."""

    test: LabTest
    value: Decimal
    effective: dt.date
    evidence: Evidence
    reported_uln: Decimal | None = None
    comparator: Comparator = Comparator.EQ
    final: bool = True
    """False for a preliminary result: usable for decisions, not to complete a Task."""

    @property
    def unit(self) -> str:
        """The canonical UCUM unit of `value` and `reported_uln`."""
        return CANONICAL_UNIT[self.test]


@dataclass(frozen=True)
class Titer:
    """An anti-AAV9 antibody titer 1:`denominator`, possibly censored by `comparator`."""

    denominator: Decimal | None
    comparator: Comparator
    effective: dt.date
    evidence: Evidence


@dataclass(frozen=True)
class Unreadable:
    """A resource that looked relevant but could not be used, and why."""

    what: str
    reason: str
    evidence: Evidence


@dataclass(frozen=True)
class PatientFacts:
    """Everything the rules know about one patient; lists are newest first."""

    patient_id: str
    birth_date: dt.date | None
    weights_kg: tuple[Measurement, ...] = ()
    gestational_age_days: tuple[Measurement, ...] = ()
    labs: tuple[LabResult, ...] = ()
    titers: tuple[Titer, ...] = ()
    temperatures_c: tuple[Measurement, ...] = ()
    smn1_copies: tuple[Measurement, ...] = ()
    smn2_copies: tuple[Measurement, ...] = ()
    sma_conditions: tuple[Evidence, ...] = ()
    active_infections: tuple[Evidence, ...] = ()
    advanced_sma: tuple[Evidence, ...] = ()
    prior_gene_therapy: tuple[Evidence, ...] = ()
    liver_conditions: tuple[Evidence, ...] = ()
    """Active Conditions in the app's liver-disease value set (section 8.6)."""
    smn_therapies: tuple[Evidence, ...] = ()
    """SMN-targeted therapy given, taken or ordered (nusinersen, risdiplam): named in the
    prior-authorization packet, never judged (payer criteria vary)."""
    unreadable: tuple[Unreadable, ...] = ()
    read_findings: tuple[Finding, ...] = ()
    """What the reading itself could not settle: medications it could not follow, searches that
    came back empty or were cut short (built where the facts are, from the record's notes)."""

    def labs_for(self, test: LabTest) -> tuple[LabResult, ...]:
        """Results of one test, newest first."""
        return tuple(lab for lab in self.labs if lab.test is test)


class FollowUpCode(StrEnum):
    """What the follow-up needs and the chart does not say (never written as DetectedIssues)."""

    LIVER_PANEL_MISSING = "liver-panel-missing"
    ULN_MISSING = "uln-missing"
    WEIGHT_MISSING = "follow-up-weight-missing"
    WEIGHT_STALE = "follow-up-weight-stale"
    WEIGHT_DISCREPANCY = "follow-up-weight-discrepancy"
    DECISION_AFTER_FULL_DOSE = "decision-after-full-dose-ended"
    INFUSION_NOT_RECORDED = "infusion-not-recorded"
    NO_STEROID_ORDER = "no-steroid-order-today"
    STEROID_ORDER_ENDING = "steroid-order-ending"


@dataclass(frozen=True)
class Finding:
    """One reason behind a status, with the label section and evidence."""

    code: FindingCode | FollowUpCode
    severity: Severity
    message: str
    section: str
    evidence: tuple[Evidence, ...] = ()


@dataclass(frozen=True)
class Eligibility:
    """The status on the infusion date and every finding behind it."""

    status: Status
    findings: tuple[Finding, ...]

    def codes(self) -> set[FindingCode]:
        """The finding codes present."""
        return {finding.code for finding in self.findings}


@dataclass(frozen=True)
class Kit:
    """One row of label Tables 1 and 3: a weight band, its dose volume and its kit."""

    band_low_kg: Decimal
    band_high_kg: Decimal
    dose_volume_ml: Decimal
    vials_5_5_ml: int
    vials_8_3_ml: int
    total_vials: int
    ndc: str

    @property
    def capacity_ml(self) -> Decimal:
        """The minimum extractable volume of the whole kit."""
        return self.vials_5_5_ml * Decimal("5.5") + self.vials_8_3_ml * Decimal("8.3")

    @property
    def vials(self) -> str:
        """The vials as a pharmacist writes them: '3 x 8.3 mL', '2 x 5.5 mL + 1 x 8.3 mL' (a
        size with none is left out)."""
        sizes = ((self.vials_5_5_ml, "5.5"), (self.vials_8_3_ml, "8.3"))
        return " + ".join(f"{n} x {size} mL" for n, size in sizes if n)


@dataclass(frozen=True)
class Dose:
    """The ZOLGENSMA dose for a weight: kit, volume, vector genomes and pump rate."""

    weight_kg: Decimal
    band_weight_kg: Decimal
    kit: Kit
    vector_genomes: int
    vector_genomes_per_kg: Decimal
    infusion_minutes: int
    pump_rate_ml_per_h: Decimal
    explanation: str


@dataclass(frozen=True)
class SteroidStep:
    """A period of daily prednisolone-equivalent at one dose."""

    start: dt.date
    end: dt.date
    mg_per_kg_per_day: Decimal
    dose_mg_per_day: Decimal
    volume_ml_per_day: Decimal

    @property
    def days(self) -> int:
        """Days in the step, both ends included."""
        return (self.end - self.start).days + 1


@dataclass(frozen=True)
class SteroidCourse:
    """The corticosteroid course: 30 days at full dose, the day-30 check, the proposed taper."""

    weight_kg: Decimal
    dose_mg_per_day: Decimal
    volume_ml_per_day: Decimal
    concentration_mg_per_ml: Decimal
    start_date: dt.date
    full_dose_through: dt.date
    liver_check_date: dt.date
    taper: tuple[SteroidStep, ...]
    taper_basis: str


class ActivityKind(StrEnum):
    """What a scheduled item asks someone to do."""

    BASELINE = "baseline"
    COUNSELING = "counseling"
    STEROID_START = "steroid-start"
    INFUSION = "infusion"
    LAB_DRAW = "lab-draw"
    LIVER_ASSESSMENT = "liver-assessment"
    TAPER_STEP = "taper-step"
    STEROID_END = "steroid-end"
    VIGILANCE = "vigilance"
    CONSULT = "consult"
    ALERT_REVIEW = "alert-review"
    """A safety alert acknowledged by the clinician (a completed Task per alert and day)."""


@dataclass(frozen=True)
class ScheduleItem:
    """One dated activity of the plan, with its due window and its source."""

    date: dt.date
    day: int
    kind: ActivityKind
    activity: str
    tests: tuple[LabTest, ...]
    section: str
    window_start: dt.date
    window_end: dt.date
    institution_default: bool = False
    conditional: str = ""

    @property
    def hcp_day(self) -> int:
        """The manufacturer's day numbering: Day 1 is the day before infusion, Day 2 infusion."""
        return self.day + 2

    @property
    def task_item(self) -> str:
        """The item its Task is known by, after the plan key ('task/lab-draw/day7')."""
        return f"task/{self.kind.value}/day{self.day}"


@dataclass(frozen=True)
class CounselingPoint:
    """Something the label asks the care team to tell caregivers (section 17)."""

    topic: str
    text: str
    section: str


@dataclass(frozen=True)
class Plan:
    """The whole decision for one patient on one infusion date."""

    patient_id: str
    birth_date: dt.date | None
    evaluated_on: dt.date
    infusion_date: dt.date
    age_days_on_infusion: int | None
    last_labeled_infusion_date: dt.date | None
    eligibility: Eligibility
    dose: Dose | None
    steroids: SteroidCourse | None
    schedule: tuple[ScheduleItem, ...]
    counseling: tuple[CounselingPoint, ...]
    policy_version: str
    label_version: str


# Follow-up after infusion ---------------------------------------------------------------------


class Phase(StrEnum):
    """Where a patient stands on the plan."""

    PRE_INFUSION = "pre-infusion"
    FULL_DOSE = "steroid-full-dose"
    LIVER_ASSESSMENT_DUE = "liver-assessment-due"
    TAPER = "taper"
    POST_TAPER = "post-taper-monitoring"
    COMPLETE = "complete"


class AlertCode(StrEnum):
    """Post-infusion safety signals (label sections 5.1, 5.3, 5.4, 5.5)."""

    ACUTE_LIVER_INJURY = "acute-liver-injury"
    LIVER_TESTS_WORSENING = "liver-tests-worsening"
    THROMBOCYTOPENIA = "thrombocytopenia"
    TMA_PATTERN = "tma-pattern"
    TROPONIN_I_ELEVATED = "troponin-i-elevated"


class AlertLevel(StrEnum):
    """How loudly an alert is shown: urgent is a banner above everything."""

    URGENT = "urgent"
    WARNING = "warning"


@dataclass(frozen=True)
class AlertResult:
    """One result an alert rests on, stated once, with what it was compared with."""

    result: LabResult
    day: int
    """Days after infusion."""
    multiple_of_uln: Decimal | None = None
    fallback_uln: Decimal | None = None
    """The pediatric fallback ULN, when the laboratory reported none."""
    previous: LabResult | None = None
    """The result before it, when the rule looks at the change."""
    baseline: LabResult | None = None
    """The newest pre-infusion result, when the rule compares with it."""
    note: str = ""
    """What else the rule says of it ('at or above the urgent 5 × ULN')."""


@dataclass(frozen=True)
class AlertCriterion:
    """One rule an alert met, in plain words, and where the rule comes from."""

    rule: str
    source: str


@dataclass(frozen=True)
class Alert:
    """A safety signal in the newest results, the label's advice and where its rule comes from."""

    code: AlertCode
    level: AlertLevel
    message: str
    """What was seen, with values, multiples of ULN and dates (each result once)."""
    advice: tuple[str, ...]
    """The label's advice, one short point each."""
    section: str
    source: str
    """'label section 5.1' or 'institution default: <the rule in plain words>'."""
    evidence: tuple[Evidence, ...] = ()
    title: str = ""
    """'Possible acute serious liver injury': what the alert is, without values."""
    results: tuple[AlertResult, ...] = ()
    """The results behind it, each once."""
    criteria: tuple[AlertCriterion, ...] = ()
    """The rules met."""
    gaps: tuple[str, ...] = ()
    """What could not be checked for want of a result."""


class TaskState(StrEnum):
    """A planned Task as of the follow-up date."""

    UPCOMING = "upcoming"
    DUE = "due"
    OVERDUE = "overdue"
    ONGOING = "ongoing"
    """A standing item (vigilance) inside its window: never overdue, ticked by hand."""
    RESULTED = "resulted"
    """Matching final results exist; the Task is completed once the clinician confirms."""
    DONE = "done"


class DecisionBranch(StrEnum):
    """The day-30 liver assessment's outcome (section 2.1)."""

    TAPER = "taper"
    CONTINUE = "continue"


class SteroidRole(StrEnum):
    """What a prednisolone order is in the course."""

    FULL_DOSE = "full-dose"
    CONTINUATION = "continuation"
    TAPER_STEP = "taper-step"


@dataclass(frozen=True)
class SteroidOrder:
    """One of the app's prednisolone orders as found in the chart."""

    reference: str
    item: str
    role: SteroidRole
    start: dt.date
    end: dt.date
    mg_per_day: Decimal
    mg_per_kg_per_day: Decimal
    volume_ml_per_day: Decimal
    status: str
    step: int = 0
    weight_kg: Decimal | None = None
    """The weight the dose was calculated on, when the order states it."""


@dataclass(frozen=True)
class PlannedTask:
    """One of the app's Tasks as found in the chart."""

    reference: str
    item: str
    """The identifier after the plan key, e.g. 'task/lab-draw/day7'."""
    kind: ActivityKind
    day: int
    window_start: dt.date
    window_end: dt.date
    tests: tuple[LabTest, ...]
    status: str
    description: str
    outputs: tuple[str, ...] = ()
    version: str = ""

    @property
    def is_open(self) -> bool:
        """Neither completed nor retired."""
        return self.status not in ("completed", "cancelled", "entered-in-error", "failed")


@dataclass(frozen=True)
class RecordedDecision:
    """A day-30 decision already written to the chart."""

    key: str
    branch: DecisionBranch
    decided_on: dt.date


@dataclass(frozen=True)
class PlanState:
    """The app's active plan for one patient, as read back from the chart (no FHIR JSON)."""

    plan_key: str
    care_plan: str
    infusion_date: dt.date
    infusion_evidence: Evidence | None
    """The ZOLGENSMA administration, when one is recorded; else the date is the planned one."""
    steroid_orders: tuple[SteroidOrder, ...]
    tasks: tuple[PlannedTask, ...]
    decisions: tuple[RecordedDecision, ...] = ()
    consult: str | None = None

    @property
    def latest_decision(self) -> RecordedDecision | None:
        """The newest recorded liver assessment decision, or None."""
        return max(self.decisions, key=lambda d: (d.decided_on, d.key), default=None)
