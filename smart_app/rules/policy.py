"""Institution defaults: choices the label leaves open, documented and overridable from TOML."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from itertools import pairwise

from smart_app.errors import PolicyError
from smart_app.rules import label
from smart_app.rules.model import LabTest

MIN_TAPER_MG_PER_KG = Decimal("0.1")
"""The smallest taper step: 0.3 mg = 0.1 mL of 15 mg/5 mL at the lightest labeled weight."""

ALL_BASELINE_TESTS: tuple[LabTest, ...] = (
    LabTest.AST,
    LabTest.ALT,
    LabTest.BILIRUBIN_TOTAL,
    LabTest.ALBUMIN,
    LabTest.PT,
    LabTest.PTT,
    LabTest.INR,
    LabTest.CREATININE,
    LabTest.HEMOGLOBIN,
    LabTest.PLATELETS,
    LabTest.TROPONIN_I,
)
"""Every test the app can ask for at baseline."""

THREE_MONTHS_MAX_DAYS = 92
"""The longest 3 calendar months (section 5.1: liver monitoring for at least 3 months)."""
MAX_SEARCH_DAYS = 3660
"""Ten years: the widest date floor on a server search."""

LABEL_BASELINE_TESTS: tuple[LabTest, ...] = tuple(
    test for test in ALL_BASELINE_TESTS if test is not LabTest.TROPONIN_I
)
"""Sections 2.1 and 2.3 (rev. 2/2025): liver function, creatinine and a blood count. Troponin I
left the baseline list in 2/2025; a policy may still require it (section 5.5)."""


@dataclass(frozen=True)
class Policy:
    """Every number the rules use that the label does not fix, with its default."""

    version: str = "institution-defaults-2026.1"
    weight_max_age_days: int = 30
    """A weight older than this before the infusion date is stale."""
    baseline_lab_max_age_days: int = 30
    """A baseline result older than this before the infusion date counts as missing."""
    titer_max_age_days: int = 30
    """An anti-AAV9 titer older than this before the infusion date counts as missing."""
    baseline_tests: tuple[LabTest, ...] = LABEL_BASELINE_TESTS
    """Sections 2.1 and 2.3; add troponin I to require it before infusion (section 5.5)."""
    fever_threshold_c: Decimal = Decimal("38.0")
    fever_lookback_days: int = 3
    """Body temperature at or above the threshold within this many days before evaluation."""
    term_gestational_age_days: int = 259
    """Full term: 37 weeks + 0 days postmenstrual age (section 8.4)."""
    min_gestational_age_days: int = 154
    """Earliest gestational age at birth assumed when none is recorded (22 weeks)."""
    taper_mg_per_kg_per_day: tuple[Decimal, ...] = (Decimal("0.5"), Decimal("0.25"))
    taper_step_days: tuple[int, ...] = (14, 14)
    """The label says only 'gradually over 28 days': 0.5 then 0.25 mg/kg/day, 14 days each."""
    prednisolone_mg: Decimal = Decimal(15)
    prednisolone_per_ml: Decimal = Decimal(5)
    """Oral solution strength: 15 mg per 5 mL."""
    troponin_days: tuple[int, ...] = (7, 14, 21, 28, 56, 84)
    """Troponin I after infusion: weekly in month 1, then monthly through month 3."""
    tma_lab_days: tuple[int, ...] = (7, 14)
    """Creatinine and hemoglobin with the platelets in the two TMA weeks (section 5.4)."""
    weekly_window_days: int = 1
    """A weekly draw is on time this many days either side of its date."""
    biweekly_window_days: int = 3
    """An every-other-week draw is on time this many days either side of its date."""
    uln_fallback_version: str = "pediatric-uln-fallback-2026.1"
    platelets_low_10e3_per_ul: Decimal = Decimal(150)
    """Thrombocytopenia below this count (x 10^3/uL); the label gives no number (5.3)."""
    liver_injury_bilirubin_uln_multiple: Decimal = Decimal(1)
    liver_injury_aminotransferase_uln_multiple: Decimal = Decimal(2)
    """Acute liver injury pattern (5.1): total bilirubin above this x ULN while ALT or AST is
    above that x ULN. The label names the pattern, not the numbers."""
    inr_rise_min: Decimal = Decimal("0.2")
    """'INR rising': above its ULN and up by at least this much on the previous result."""
    pt_rise_min_s: Decimal = Decimal(2)
    """'PT rising' (5.1 'prolonged prothrombin time'): above its ULN and up by at least this many
    seconds on the previous result (about the INR's 0.2 at an ISI near 1)."""
    tma_alert_days: int = 28
    """The TMA pattern is looked for in results this many days after infusion (5.4: 'generally
    within the first two weeks'; kept to four to be safe)."""
    tma_creatinine_rise_fraction: Decimal = Decimal("0.5")
    """Creatinine 'rising': at least this fraction above its pre-infusion baseline (KDIGO 1.5x)."""
    tma_hemoglobin_drop_g_per_dl: Decimal = Decimal(2)
    """Hemoglobin 'falling': at least this far below its pre-infusion baseline."""
    continuation_days: int = 28
    """An abnormal day-30 assessment continues 1 mg/kg/day for this long, reassessed weekly."""
    worsening_urgent_aminotransferase_uln_multiple: Decimal = Decimal(5)
    worsening_urgent_bilirubin_uln_multiple: Decimal = Decimal(2)
    worsening_urgent_coagulation_uln_multiple: Decimal = Decimal(1)
    """Worsening liver tests (5.1: 'promptly assess and closely monitor') are urgent at or above
    these multiples of ULN (ALT/AST, total bilirubin, and above it for PT/INR); a warning below."""
    steroid_end_warning_days: int = 2
    """Warn this many days before the last ordered full-dose day while no decision is recorded."""
    weight_discrepancy_fraction: Decimal = Decimal("0.05")
    weight_pair_hours: int = 24
    """Two weights taken within this many hours (or on one date) that differ by more than this
    fraction, or fall in different kit bands, are a discrepancy (section 2.1)."""
    bundle_max_bytes: int = 20 * 1024 * 1024
    """The largest Bundle file or server answer the app reads."""
    weight_search_days: int = 180
    """A server is asked for weights dated at most this many days before the reading date (at
    least weight_max_age_days, so a stale weight is still named with its date)."""
    lab_search_days: int = 180
    """A server is asked for lab results dated at most this many days before the reading date:
    at least the baseline look-back plus the follow-up period after infusion (followup_days)."""
    temperature_search_days: int = 14
    """A server is asked for body temperatures dated at most this many days before the reading
    date (at least fever_lookback_days)."""
    cds_infusion_lead_days: int = 1
    """The earliest practical infusion date a CDS card evaluates a patient for, in days after
    today, when no infusion date is planned (the plan page's default is tomorrow)."""
    hcpcs_j3399_units: int = 1
    """Units of HCPCS J3399 billed for one ZOLGENSMA treatment (institution default). The HCPCS
    descriptor is 'Injection, onasemnogene abeparvovec-xioi, per treatment, up to 5x10^15 vector
    genomes': 1 unit = 1 treatment. Seed 004 names the manufacturer's Coding and Billing Guide,
    but its text is not among the source documents: confirm the units with the payer."""

    def __post_init__(self) -> None:
        """Refuse a policy with values out of range, or a taper that would stop abruptly."""
        self._check_ranges()
        self._check_taper()
        self._check_search_floors()

    def _check_ranges(self) -> None:
        """Every number finite and in a range where the rules still mean what they say."""
        decimals = {
            "fever_threshold_c": self.fever_threshold_c,
            "prednisolone_mg": self.prednisolone_mg,
            "prednisolone_per_ml": self.prednisolone_per_ml,
        }
        for name, value in decimals.items():
            if not value.is_finite() or value <= 0:
                raise PolicyError(f"policy: {name} must be a positive number, not {value}")
        if not Decimal(37) <= self.fever_threshold_c <= Decimal(40):
            raise PolicyError("policy: fever_threshold_c must lie between 37 and 40 C")
        at_least_one = {
            "weight_max_age_days": self.weight_max_age_days,
            "baseline_lab_max_age_days": self.baseline_lab_max_age_days,
            "titer_max_age_days": self.titer_max_age_days,
            "fever_lookback_days": self.fever_lookback_days,
        }
        for name, days in at_least_one.items():
            if days < 1:
                raise PolicyError(f"policy: {name} must be at least 1 day")
        if not 224 <= self.term_gestational_age_days <= 294:
            raise PolicyError("policy: term_gestational_age_days must lie in 32-42 weeks")
        if not 140 <= self.min_gestational_age_days < self.term_gestational_age_days:
            raise PolicyError("policy: min_gestational_age_days must lie in [20 weeks, term)")
        alert_decimals = {
            "platelets_low_10e3_per_ul": self.platelets_low_10e3_per_ul,
            "liver_injury_bilirubin_uln_multiple": self.liver_injury_bilirubin_uln_multiple,
            "liver_injury_aminotransferase_uln_multiple": (
                self.liver_injury_aminotransferase_uln_multiple
            ),
            "inr_rise_min": self.inr_rise_min,
            "pt_rise_min_s": self.pt_rise_min_s,
            "tma_creatinine_rise_fraction": self.tma_creatinine_rise_fraction,
            "tma_hemoglobin_drop_g_per_dl": self.tma_hemoglobin_drop_g_per_dl,
            "worsening_urgent_aminotransferase_uln_multiple": (
                self.worsening_urgent_aminotransferase_uln_multiple
            ),
            "worsening_urgent_bilirubin_uln_multiple": self.worsening_urgent_bilirubin_uln_multiple,
            "worsening_urgent_coagulation_uln_multiple": (
                self.worsening_urgent_coagulation_uln_multiple
            ),
            "weight_discrepancy_fraction": self.weight_discrepancy_fraction,
        }
        for name, value in alert_decimals.items():
            if not value.is_finite() or value <= 0:
                raise PolicyError(f"policy: {name} must be a positive number, not {value}")
        if not 7 <= self.tma_alert_days <= 90:
            raise PolicyError("policy: tma_alert_days must lie in 7-90 days")
        if not 7 <= self.continuation_days <= 56:
            raise PolicyError("policy: continuation_days must lie in 7-56 days")
        if not 0 <= self.steroid_end_warning_days <= 14:
            raise PolicyError("policy: steroid_end_warning_days must lie in 0-14 days")
        if not 1 <= self.weight_pair_hours <= 72:
            raise PolicyError("policy: weight_pair_hours must lie in 1-72 hours")
        if not 1 <= self.hcpcs_j3399_units <= 99:
            raise PolicyError("policy: hcpcs_j3399_units must lie in 1-99 units")
        if not 0 <= self.cds_infusion_lead_days <= 90:
            raise PolicyError("policy: cds_infusion_lead_days must lie in 0-90 days")
        if not 1024 <= self.bundle_max_bytes <= 1024**3:
            raise PolicyError("policy: bundle_max_bytes must lie in 1 KiB-1 GiB")
        if self.weekly_window_days < 0 or self.biweekly_window_days < 0:
            raise PolicyError("policy: window days cannot be negative")
        for name, days in (
            ("troponin_days", self.troponin_days),
            ("tma_lab_days", self.tma_lab_days),
        ):
            if any(not 1 <= d <= 365 for d in days):
                raise PolicyError(f"policy: {name} must be days 1-365 after infusion")

    def _check_taper(self) -> None:
        """A taper of falling, measurable steps lasting at least 28 days."""
        if len(self.taper_mg_per_kg_per_day) != len(self.taper_step_days):
            raise PolicyError(
                "policy: taper_mg_per_kg_per_day and taper_step_days differ in length"
            )
        if not self.taper_mg_per_kg_per_day:
            raise PolicyError("policy: a taper needs at least one step (never stop abruptly)")
        if sum(self.taper_step_days) < label.TAPER_DAYS:
            raise PolicyError(
                f"policy: the taper must last at least {label.TAPER_DAYS} days (section 2.1)"
            )
        if any(d <= 0 for d in self.taper_step_days):
            raise PolicyError("policy: taper steps must last at least one day")
        doses = self.taper_mg_per_kg_per_day
        if any(not d.is_finite() for d in doses):
            raise PolicyError("policy: taper doses must be numbers")
        if any(not MIN_TAPER_MG_PER_KG <= d < Decimal(1) for d in doses):
            raise PolicyError(
                f"policy: taper doses must lie in [{MIN_TAPER_MG_PER_KG}, 1) mg/kg/day so every "
                "step is a measurable dose at the lightest labeled weight"
            )
        if any(later >= earlier for earlier, later in pairwise(doses)):
            raise PolicyError("policy: taper doses must fall at every step")

    @property
    def followup_days(self) -> int:
        """Days after infusion the follow-up reads results for: 3 calendar months of liver
        monitoring (5.1), the troponin and TMA draws, and the longest steroid course."""
        course = label.STEROID_FULL_DOSE_DAYS + self.continuation_days + sum(self.taper_step_days)
        return max(
            THREE_MONTHS_MAX_DAYS,
            *self.troponin_days,
            *self.tma_lab_days,
            self.tma_alert_days,
            course,
        )

    def _check_search_floors(self) -> None:
        """Every date floor on a server search covers the look-back of the rules reading it."""
        needs = {
            "weight_search_days": (self.weight_max_age_days, "weight_max_age_days"),
            "temperature_search_days": (self.fever_lookback_days, "fever_lookback_days"),
            "lab_search_days": (
                self.baseline_lab_max_age_days + self.followup_days,
                "baseline_lab_max_age_days plus the follow-up period",
            ),
        }
        for name, (least, why) in needs.items():
            days = getattr(self, name)
            if not least <= days <= MAX_SEARCH_DAYS:
                raise PolicyError(
                    f"policy: {name} must lie in {least}-{MAX_SEARCH_DAYS} days (at least {why})"
                )

    def cite(self, *names: str) -> str:
        """'institution default: <the rule in plain words>' for the fields a message relies on
        (PHRASES says each field's rule; no field names reach clinical text)."""
        phrases = "; ".join(self.phrase(name) for name in dict.fromkeys(names))
        return f"institution default{'s' if len(set(names)) > 1 else ''}: {phrases}"

    def phrase(self, name: str) -> str:
        """One field's rule in plain words with its value ('a platelet count below 150 ...')."""
        return PHRASES[name].format(value=_shown(name, getattr(self, name)))

    @property
    def concentration_mg_per_ml(self) -> Decimal:
        """Oral solution concentration in mg/mL."""
        return self.prednisolone_mg / self.prednisolone_per_ml


PHRASES: dict[str, str] = {
    "version": "policy version {value}",
    "weight_max_age_days": "a weight older than {value} is out of date",
    "baseline_lab_max_age_days": (
        "a baseline result older than {value} before the infusion date counts as missing"
    ),
    "titer_max_age_days": (
        "an anti-AAV9 titer older than {value} before the infusion date counts as missing"
    ),
    "baseline_tests": "the baseline tests are {value}",
    "fever_threshold_c": "fever is a body temperature of {value} °C or more",
    "fever_lookback_days": "temperatures taken in the last {value} count",
    "term_gestational_age_days": "full term is {value} postmenstrual age",
    "min_gestational_age_days": (
        "with no gestational age recorded, birth at {value} is assumed at the earliest"
    ),
    "taper_mg_per_kg_per_day": "the taper steps are {value} mg/kg/day",
    "taper_step_days": "the taper steps last {value} days",
    "prednisolone_mg": "the oral prednisolone solution holds {value} mg per measured volume",
    "prednisolone_per_ml": "the measured volume of oral prednisolone solution is {value} mL",
    "troponin_days": "troponin I is drawn on days {value} after infusion",
    "tma_lab_days": (
        "creatinine and hemoglobin are drawn with the platelets on days {value} after infusion"
    ),
    "weekly_window_days": "a weekly draw is on time up to {value} either side of its date",
    "biweekly_window_days": (
        "an every-other-week draw is on time up to {value} either side of its date"
    ),
    "uln_fallback_version": (
        "the pediatric upper limits of normal table {value}, used when a laboratory reports "
        "no range"
    ),
    "platelets_low_10e3_per_ul": "a platelet count below {value} × 10³/µL is low",
    "liver_injury_bilirubin_uln_multiple": (
        "possible acute liver injury is total bilirubin above {value} × ULN with raised ALT or AST"
    ),
    "liver_injury_aminotransferase_uln_multiple": (
        "the liver injury pattern counts ALT or AST above {value} × ULN as raised"
    ),
    "inr_rise_min": "INR is rising when above its ULN and up {value} or more on the result before",
    "pt_rise_min_s": (
        "PT is rising when above its ULN and up {value} s or more on the result before"
    ),
    "tma_alert_days": "the TMA pattern is looked for up to {value} after infusion",
    "tma_creatinine_rise_fraction": (
        "creatinine is rising at {value} or more above its pre-infusion value"
    ),
    "tma_hemoglobin_drop_g_per_dl": (
        "hemoglobin is falling at {value} g/dL or more below its pre-infusion value"
    ),
    "continuation_days": (
        "after an abnormal day-30 assessment 1 mg/kg/day continues for {value}, reassessed weekly"
    ),
    "worsening_urgent_aminotransferase_uln_multiple": (
        "worsening ALT or AST is urgent at {value} × ULN or more"
    ),
    "worsening_urgent_bilirubin_uln_multiple": (
        "worsening total bilirubin is urgent at {value} × ULN or more"
    ),
    "worsening_urgent_coagulation_uln_multiple": (
        "worsening PT or INR is urgent above {value} × ULN"
    ),
    "steroid_end_warning_days": (
        "the app warns {value} before the last ordered full-dose prednisolone day"
    ),
    "weight_discrepancy_fraction": "weights differing by more than {value} disagree",
    "weight_pair_hours": "weights taken within {value} of each other, or on one date, are compared",
    "bundle_max_bytes": "files and server answers are read up to {value}",
    "weight_search_days": "weights are searched for back to {value} before the reading date",
    "lab_search_days": "lab results are searched for back to {value} before the reading date",
    "temperature_search_days": (
        "body temperatures are searched for back to {value} before the reading date"
    ),
    "cds_infusion_lead_days": (
        "without a planned date, the earliest practical infusion date is {value} after today"
    ),
    "hcpcs_j3399_units": (
        "one ZOLGENSMA treatment is billed as {value} unit(s) of HCPCS J3399 (descriptor: 'per "
        "treatment, up to 5x10^15 vector genomes'; confirm with the payer)"
    ),
}
"""Each Policy field's rule in plain words ({value}: the value with its unit), for clinical text:
Policy.cite says 'institution default: <phrase>' instead of a field name."""
GESTATIONAL_FIELDS = frozenset({"term_gestational_age_days", "min_gestational_age_days"})
MIB = 1024 * 1024


def _listed(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _shown(name: str, value: object) -> str:
    """A policy value as a clinician reads it: days and hours counted, fractions as percent,
    gestational ages in weeks+days, sizes in MiB, lists as 'a, b and c'."""
    if isinstance(value, tuple):
        return _listed([str(v) for v in value]) if value else "none"
    if name in GESTATIONAL_FIELDS and isinstance(value, int):
        return f"{value // 7}+{value % 7} weeks"
    if name.endswith("_days") and isinstance(value, int):
        return f"{value} day{'' if value == 1 else 's'}"
    if name.endswith("_hours") and isinstance(value, int):
        return f"{value} hour{'' if value == 1 else 's'}"
    if name.endswith("_fraction") and isinstance(value, Decimal):
        return f"{format((value * 100).normalize(), 'f')}%"
    if name == "bundle_max_bytes" and isinstance(value, int):
        return f"{value // MIB} MiB" if value % MIB == 0 else f"{value} bytes"
    return str(value)


DEFAULT_POLICY = Policy()
