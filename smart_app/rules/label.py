"""What the ZOLGENSMA prescribing information (rev. 2/2025) fixes: constants, kits, counseling."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from importlib import resources

from smart_app.rules.model import CounselingPoint, Kit

LABEL_VERSION = "ZOLGENSMA USPI rev. 2/2025"


@dataclass(frozen=True)
class BoxedWarning:
    """The label's boxed warning in short, in its own words: what it says, what it asks."""

    title: str
    says: tuple[str, ...]
    before_infusion: tuple[str, ...]
    after_infusion: tuple[str, ...]
    section: str


BOXED_WARNING = BoxedWarning(
    title="WARNING: SERIOUS LIVER INJURY and ACUTE LIVER FAILURE",
    says=(
        "Cases of acute liver failure with fatal outcomes have been reported. Acute serious liver "
        "injury and elevated aminotransferases can also occur with ZOLGENSMA.",
        "Patients with preexisting liver impairment or acute hepatic viral infection may be at "
        "higher risk of acute serious liver injury/acute liver failure.",
    ),
    before_infusion=(
        "Prior to ZOLGENSMA infusion, assess liver function by clinical examination and "
        "laboratory testing (hepatic aminotransferases [AST and ALT], total bilirubin level, "
        "albumin, prothrombin time, PTT, and INR).",
        "In order to mitigate potential aminotransferase elevations, administer systemic "
        "corticosteroid to all patients before and after ZOLGENSMA infusion.",
    ),
    after_infusion=(
        "Continue to monitor liver function (AST, ALT, total bilirubin, prothrombin time, INR) "
        "for at least 3 months after ZOLGENSMA infusion, and at other times as clinically "
        "indicated.",
    ),
    section="Boxed Warning; 5.1",
)
"""Shown on every plan. The boxed warning's first bullet and section 5.1, quoted (the seed's
copy of the full boxed warning stops after its first bullet)."""

DOSE_VG_PER_KG = Decimal("1.1e14")
"""Section 2.1: 1.1 x 10^14 vector genomes per kg."""

CONCENTRATION_VG_PER_ML = Decimal("2.0e13")
"""Sections 3 and 11: nominal 2.0 x 10^13 vg/mL."""

DOSE_VOLUME_ML_PER_KG = DOSE_VG_PER_KG / CONCENTRATION_VG_PER_ML
"""5.5 mL per kg of the band's upper limit (Table 1, footnote a)."""

INFUSION_MINUTES = 60
"""Section 2.1: slow infusion over 60 minutes, never an IV push or bolus."""
NO_IV_PUSH = "Do not give as an intravenous push or bolus."
"""Section 2.1, as printed on the kit order."""

STEROID_MG_PER_KG_PER_DAY = Decimal(1)
"""Section 2.1: prednisolone-equivalent 1 mg/kg/day."""

STEROID_FULL_DOSE_DAYS = 30
"""Section 2.1: from one day before infusion, for a total of 30 days."""

LIVER_ASSESSMENT_DAY = STEROID_FULL_DOSE_DAYS - 2
"""Days after infusion of the day-30 liver assessment (2.1), the last full-dose day: day 30 of
the manufacturer's day-numbered timeline (Day 1 the day before infusion, Day 2 the infusion)
falls on infusion + 28."""

TAPER_DAYS = 28
"""Section 2.1: taper gradually over the next 28 days (or longer if needed)."""

LIVER_ULN_MULTIPLE = Decimal(2)
"""Sections 2.1, 5.1: ALT/AST < 2 x ULN is unremarkable; > 2 x ULN at baseline was not studied."""

ACUTE_LIVER_INJURY_ULN_MULTIPLE = Decimal(20)
"""Section 5.1: ALT and AST > 20 x ULN were seen in acute serious liver injury."""

LIVER_MONITORING_DAYS = 90
"""Section 5.1: monitor liver function for at least 3 months after infusion."""

ADVICE_LIVER_INJURY: tuple[str, ...] = (
    "Promptly assess and closely monitor.",
    "Suspected acute serious liver injury or acute liver failure: promptly consult a pediatric "
    "gastroenterologist or hepatologist.",
    "Test albumin, PTT and INR.",
    "The corticosteroid may need adjusting: a longer course, a higher dose or a longer taper.",
)
"""Section 5.1 (with 2.1), one point each, as shown on the urgent banner."""
ADVICE_LIVER_WORSENING: tuple[str, ...] = (
    "Promptly assess and closely monitor.",
    "Look for signs of acute illness, such as vomiting or a deterioration in health.",
    "If hepatic injury is suspected, test albumin, PTT and INR.",
    "The corticosteroid may need adjusting: a longer course, a higher dose or a longer taper.",
)
"""Section 5.1 ('promptly assess and closely monitor patients with worsening liver function
test results'), one point each."""
ADVICE_THROMBOCYTOPENIA: tuple[str, ...] = (
    "Monitor platelet counts closely.",
    "Evaluate promptly for hemolytic anemia and kidney dysfunction (signs of TMA, 5.4).",
    "If the findings are consistent with TMA, consult a pediatric hematologist and/or "
    "pediatric nephrologist.",
)
"""Sections 5.3 and 5.4, one point each."""
ADVICE_TMA: tuple[str, ...] = (
    "Consult a pediatric hematologist and/or pediatric nephrologist immediately.",
    "Check blood pressure, bruising, seizures and urine output.",
    "Manage TMA as clinically indicated.",
)
"""Section 5.4, one point each."""
ADVICE_TROPONIN: tuple[str, ...] = (
    "Consider a cardiac evaluation.",
    "Consult a cardiologist as needed.",
)
"""Section 5.5, one point each."""
CONSULT_RULE = (
    "any of ALT, AST, total bilirubin, PT or INR at or above 2 x ULN after the 30-day "
    "corticosteroid period"
)
"""Section 2.1: when the pediatric gastroenterology or hepatology consult is asked for."""
ADVICE_CONSULT = (
    f"Liver function abnormalities persist ({CONSULT_RULE}): promptly consult a pediatric "
    "gastroenterologist or hepatologist."
)
"""Section 2.1 (and 5.1)."""
MANUFACTURER_CONSULT_ADVICE = (
    "The manufacturer's dosing page goes further than the label: 'If liver function "
    "abnormalities are present: Consult a pediatric gastroenterologist or hepatologist' (HCP "
    "dosing page, Day 30). The label (2.1) asks for the consult when abnormalities persist at "
    "or above 2 x ULN after the 30-day period."
)
"""Seed 000, shown where the day-30 assessment is abnormal but nothing reaches 2 x ULN."""
FULL_DOSE_UNTIL_DECISION = (
    "Continue 1 mg/kg/day until the day-30 liver assessment decides the next step (taper, or "
    "continue at full dose); do not stop systemic corticosteroids abruptly (2.1)."
)
"""Section 2.1, on every full-dose prednisolone order."""
STEROID_IV_ALTERNATIVE = (
    "If oral corticosteroid therapy is not tolerated, consider intravenous corticosteroids as "
    "clinically indicated (2.1)."
)
"""Section 2.1, quoted; the label gives no conversion and the app invents none."""

TITER_MAX_DENOMINATOR = Decimal(50)
"""Section 6.2: trials required anti-AAV9 titers of <= 1:50; > 1:50 not evaluated."""

AGE_LIMIT_YEARS = 2
"""Section 1: pediatric patients less than 2 years of age."""

LIVE_VACCINE_MG_PER_DAY = Decimal(20)
LIVE_VACCINE_MG_PER_KG_PER_DAY = Decimal(2)
"""Section 7: >= 2 weeks of daily 20 mg or 2 mg/kg prednisone-equivalent is immunosuppressive."""

LIVE_VACCINE_MIN_DAYS = 14

NDC_LABELER = "71894"
"""Novartis Gene Therapies' NDC labeler code, first segment of every ZOLGENSMA kit (Table 3)."""


@cache
def kits() -> tuple[Kit, ...]:
    """Table 1 (dose volume) joined with Table 3 (kit, vials, NDC), lightest band first."""
    text = resources.files("smart_app.rules").joinpath("kits.csv").read_text(encoding="utf-8")
    return tuple(
        Kit(
            band_low_kg=Decimal(row["band_low_kg"]),
            band_high_kg=Decimal(row["band_high_kg"]),
            dose_volume_ml=Decimal(row["dose_volume_ml"]),
            vials_5_5_ml=int(row["vials_5_5_ml"]),
            vials_8_3_ml=int(row["vials_8_3_ml"]),
            total_vials=int(row["total_vials"]),
            ndc=row["ndc"],
        )
        for row in csv.DictReader(io.StringIO(text))
    )


MIN_WEIGHT_KG = Decimal("2.6")
MAX_WEIGHT_KG = Decimal("21.0")
"""Table 1 covers 2.6 kg to 21.0 kg; outside it there is no labeled kit."""


TOPIC_NAMES = {
    "liver": "serious liver injury",
    "vaccination": "vaccinations",
    "infection": "infections",
    "platelets": "low platelets",
    "tma": "thrombotic microangiopathy",
    "tumor": "the risk of tumors",
    "vector-shedding": "vector in diapers and stools",
    "infusion-reaction": "infusion reactions",
}
"""Each counseling topic in the words a caregiver hears (section 17)."""

COUNSELING: tuple[CounselingPoint, ...] = (
    CounselingPoint(
        "liver",
        "ZOLGENSMA can raise liver enzymes and cause acute serious liver injury, liver failure "
        "and death. Your child takes an oral steroid before and after the infusion and has "
        "regular blood tests. Call at once for yellow skin or eyes, a missed or vomited steroid "
        "dose, or less alertness. If your child cannot take or keep down the oral steroid, the "
        "care team may give it intravenously.",
        "17; 5.1",
    ),
    CounselingPoint(
        "vaccination",
        "Ask the care team whether vaccinations need to move around the steroid course. "
        "Influenza and RSV prophylaxis are recommended and vaccinations should be up to date "
        "before the infusion.",
        "17; 7",
    ),
    CounselingPoint(
        "infection",
        "An infection (cold, flu, gastroenteritis, ear infection, bronchiolitis) before or after "
        "the infusion can be more serious. Wash hands, limit contacts, and call for cough, "
        "wheeze, sneezing, runny nose, sore throat or fever.",
        "17; 5.2",
    ),
    CounselingPoint(
        "platelets",
        "Platelets can drop, mostly in the first two weeks. Seek care for unexpected bruising or "
        "bleeding.",
        "17; 5.3",
    ),
    CounselingPoint(
        "tma",
        "Thrombotic microangiopathy can occur, mostly in the first two weeks. Seek care at once "
        "for unexpected bruising or bleeding, seizures, or less urine.",
        "17; 5.4",
    ),
    CounselingPoint(
        "tumor",
        "There is a theoretical risk of tumors with AAV therapies. Report any tumor to the care "
        "team and to Novartis Gene Therapies (1-833-828-3947).",
        "17; 5.6",
    ),
    CounselingPoint(
        "vector-shedding",
        "For one month after the infusion, seal used diapers in a bag before the trash and wash "
        "hands after contact with body waste.",
        "17",
    ),
    CounselingPoint(
        "infusion-reaction",
        "Reactions can occur during and after the infusion: rash, hives, vomiting, trouble "
        "breathing, changes in heart rate or blood pressure. Seek care at once.",
        "17; 5.7",
    ),
)
