"""Unit normalisation: weight, gestational age, temperature, labs, reference ranges -> canonical.

Every expected value is computed here from the unit's definition (1 lb = 0.45359237 kg exactly,
1 oz = 1/16 lb, bilirubin 17.104 umol/L per mg/dL, ...), not copied from smart_app.fhir.units.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import ROUND_CEILING, Decimal
from typing import Any

import pytest

from smart_app.fhir import codes, units
from smart_app.fhir.read import facts_from_bundle, parse_bundle_json
from smart_app.rules.model import CANONICAL_UNIT, LabResult, LabTest, PatientFacts

PATIENT = "p1"
BIRTH = "2026-06-10"
LB_KG = Decimal("0.45359237")
OZ_KG = LB_KG / 16
WEIGHT = "29463-7"


# Bundle builders -------------------------------------------------------------------------------


def bundle(*resources: dict[str, Any], birth_date: str | None = BIRTH) -> dict[str, Any]:
    """A collection Bundle: one Patient, then `resources`."""
    patient: dict[str, Any] = {"resourceType": "Patient", "id": PATIENT}
    if birth_date is not None:
        patient["birthDate"] = birth_date
    entries = [{"fullUrl": f"urn:uuid:{PATIENT}", "resource": patient}]
    entries += [{"resource": r} for r in resources]
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def observation(
    code: str,
    *,
    when: str = "2026-11-16",
    oid: str = "obs",
    system: str = codes.LOINC,
    **fields: Any,
) -> dict[str, Any]:
    """A final Observation about the patient; `fields` adds value[x], referenceRange, ..."""
    obs = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": f"Patient/{PATIENT}"},
        "effectiveDateTime": when,
    }
    obs.update(fields)
    return obs


def qty(value: Any, unit: str | None = None, *, code: str | None = None) -> dict[str, Any]:
    """A Quantity: UCUM-coded when `code` is given, human text only otherwise."""
    q: dict[str, Any] = {"value": value}
    if unit is not None:
        q["unit"] = unit
    if code is not None:
        q["system"] = codes.UCUM
        q["code"] = code
    return q


def read(*resources: dict[str, Any], birth_date: str | None = BIRTH) -> PatientFacts:
    """Serialise and read a bundle the way the CLI does (JSON text, exact decimals)."""
    text = json.dumps(bundle(*resources, birth_date=birth_date))
    return facts_from_bundle(parse_bundle_json(text))


def ceil4(value: Decimal) -> Decimal:
    """`value` rounded up to 0.0001 (0.1 g for kilograms)."""
    return (value * 10000).to_integral_value(rounding=ROUND_CEILING) / 10000


def only_lab(facts: PatientFacts) -> LabResult:
    assert len(facts.labs) == 1, facts.labs
    return facts.labs[0]


# Direct unit helpers ---------------------------------------------------------------------------


def test_ucum_prefers_code_over_text() -> None:
    assert units.ucum("[lb_av]", "kilograms") == "[lb_av]"
    assert units.ucum(None, " Pounds ") == "[lb_av]"
    assert units.ucum(None, None) == "1"


@pytest.mark.parametrize(
    ("code", "text"),
    [(7, None), (None, ["kg"]), ({"code": "kg"}, "kg"), ("kg", 1.5), (True, None)],
    ids=["int-code", "list-unit", "dict-code", "float-unit", "bool-code"],
)
def test_ucum_refuses_a_code_or_unit_that_is_not_a_string(code: Any, text: Any) -> None:
    with pytest.raises(units.UnitError, match="is not a string"):
        units.ucum(code, text)


@pytest.mark.parametrize(
    "value",
    ["1e999999999999999999", "-1e999999999999999999", "1e-999999999999999999", "9" * 5000],
    ids=["huge-exponent", "negative-huge", "tiny", "5000-digits"],
)
def test_absurd_magnitudes_are_unit_errors_not_decimal_overflows(value: str) -> None:
    with pytest.raises(units.UnitError, match="out of any plausible range"):
        units.weight_to_kg(Decimal(value), "[lb_av]")
    with pytest.raises(units.UnitError, match="out of any plausible range"):
        units.plausible(Decimal(value))


@pytest.mark.parametrize("value", ["0", "1e-9", "-1e-9", "1e9", "-1e9", "6.1"])
def test_plausible_keeps_zero_and_values_within_the_bounds(value: str) -> None:
    assert units.plausible(Decimal(value)) == Decimal(value)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1.0000001e9", "9e-10"])
def test_plausible_refuses_non_finite_and_out_of_bounds_values(value: str) -> None:
    with pytest.raises(units.UnitError):
        units.plausible(Decimal(value))


@pytest.mark.parametrize("field", ["code", "unit"])
def test_weight_with_a_unit_that_is_not_a_string_is_unreadable(field: str) -> None:
    quantity = {"value": 6, field: 1000}
    facts = read(observation(WEIGHT, oid="w", valueQuantity=quantity))
    assert facts.weights_kg == ()
    assert [u.evidence.reference for u in facts.unreadable] == ["Observation/w"]
    assert "is not a string" in facts.unreadable[0].reason


def test_unknown_unit_raises_unit_error_naming_it() -> None:
    with pytest.raises(units.UnitError, match="stone"):
        units.weight_to_kg(Decimal(1), "stone")


@pytest.mark.parametrize("test", list(LabTest), ids=lambda t: t.name)
def test_every_canonical_lab_unit_is_accepted_with_factor_one(test: LabTest) -> None:
    canonical = CANONICAL_UNIT[test]
    assert canonical in units.LAB_TO_CANONICAL[test]
    value = Decimal("12.34567")
    assert units.lab_to_canonical(test, value, canonical) == value


# Body weight -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quantity", "expected_kg"),
    [
        (qty(6.12, "kg", code="kg"), Decimal("6.12")),
        (qty(6120, "g", code="g"), Decimal("6.12")),
        (qty(11, "lb", code="[lb_av]"), ceil4(11 * LB_KG)),
        (qty(200, "oz", code="[oz_av]"), ceil4(200 * OZ_KG)),
        (qty(11, "lb"), ceil4(11 * LB_KG)),
        (qty(13.5, "lbs"), ceil4(Decimal("13.5") * LB_KG)),
        (qty(200, "oz"), ceil4(200 * OZ_KG)),
        (qty(6120, "grams"), Decimal("6.12")),
        (qty(6.12, "kilograms"), Decimal("6.12")),
    ],
    ids=["kg", "g", "lb_av", "oz_av", "lb-text", "lbs-text", "oz-text", "grams-text", "kg-text"],
)
def test_weight_units_normalise_to_kg(quantity: dict[str, Any], expected_kg: Decimal) -> None:
    facts = read(observation(WEIGHT, valueQuantity=quantity))
    assert [w.value for w in facts.weights_kg] == [expected_kg]
    assert facts.weights_kg[0].unit == "kg"
    assert facts.unreadable == ()


def test_eleven_pounds_is_4_9896_kg_rounded_up() -> None:
    # 11 x 0.45359237 = 4.98951607 kg: up to 4.9896, never down to 4.9895.
    facts = read(observation(WEIGHT, valueQuantity=qty(11, "lb")))
    assert facts.weights_kg[0].value == Decimal("4.9896")


@pytest.mark.parametrize(
    ("value", "unit", "per_unit"),
    [
        # 10 lb = 4.5359237 kg: half-up would give 4.5359, ceiling gives 4.5360.
        ("10", "[lb_av]", LB_KG),
        # 1 lb = 0.45359237 kg -> 0.4536.
        ("1", "[lb_av]", LB_KG),
        # 22.0462 lb = 9.99998... kg -> 10.0000, not 9.9999.
        ("22.0462", "[lb_av]", LB_KG),
        # 3 oz = 0.085048569375 kg: the 5th decimal is 4, ceiling still goes up.
        ("3", "[oz_av]", OZ_KG),
        # 100 oz = 2.8349523125 kg -> 2.8350.
        ("100", "[oz_av]", OZ_KG),
    ],
)
def test_lb_and_oz_conversions_round_up_at_0_1_gram(
    value: str, unit: str, per_unit: Decimal
) -> None:
    exact = Decimal(value) * per_unit
    facts = read(observation(WEIGHT, valueQuantity={"value": value, "code": unit}))
    got = facts.weights_kg[0].value
    assert got == ceil4(exact)
    assert got >= exact
    assert got - exact < Decimal("0.0001")
    assert got.as_tuple().exponent >= -4


@pytest.mark.parametrize(
    ("value", "unit", "exact", "expected"),
    [
        # Exact conversions of the form x.xxxx1...: half-up would round down, the reader must not.
        ("11", "[lb_av]", Decimal("4.98951607"), Decimal("4.9896")),
        ("63", "[oz_av]", Decimal("1.786019956875"), Decimal("1.7861")),
        ("3000.01", "g", Decimal("3.00001"), Decimal("3.0001")),
        ("2999.99", "g", Decimal("2.99999"), Decimal("3.0000")),
    ],
)
def test_weight_whose_exact_kg_has_a_fifth_decimal_rounds_up(
    value: str, unit: str, exact: Decimal, expected: Decimal
) -> None:
    per_unit = {"[lb_av]": LB_KG, "[oz_av]": OZ_KG, "g": Decimal("0.001")}[unit]
    assert Decimal(value) * per_unit == exact
    facts = read(observation(WEIGHT, valueQuantity={"value": value, "code": unit}))
    assert facts.weights_kg[0].value == expected


def test_unknown_weight_unit_is_unreadable_and_not_used() -> None:
    facts = read(observation(WEIGHT, oid="w-stone", valueQuantity=qty(1, "stone")))
    assert facts.weights_kg == ()
    assert len(facts.unreadable) == 1
    entry = facts.unreadable[0]
    assert entry.what == "body weight"
    assert "stone" in entry.reason
    assert entry.evidence.reference == "Observation/w-stone"


def test_unknown_ucum_weight_code_is_unreadable() -> None:
    facts = read(observation(WEIGHT, valueQuantity=qty(1, "st", code="[stone_av]")))
    assert facts.weights_kg == ()
    assert "[stone_av]" in facts.unreadable[0].reason


@pytest.mark.parametrize(
    ("quantity", "expected_kg"),
    [
        (qty("6.12", "KG"), Decimal("6.12")),
        (qty("6.12", "Kg"), Decimal("6.12")),
        (qty(6120, "G"), Decimal("6.12")),
        (qty(11, "LB"), ceil4(11 * LB_KG)),
        (qty(200, "Ounces"), ceil4(200 * OZ_KG)),
    ],
    ids=["KG", "Kg", "G", "LB", "Ounces"],
)
def test_weight_unit_text_is_case_insensitive(
    quantity: dict[str, Any], expected_kg: Decimal
) -> None:
    facts = read(observation(WEIGHT, valueQuantity=quantity))
    assert [w.value for w in facts.weights_kg] == [expected_kg]
    assert facts.unreadable == ()


def test_zero_weight_is_unreadable() -> None:
    facts = read(observation(WEIGHT, valueQuantity=qty(0, "kg", code="kg")))
    assert facts.weights_kg == ()
    assert "not a plausible value" in facts.unreadable[0].reason


# Gestational age and temperature ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("quantity", "days"),
    [
        (qty(39, "wk", code="wk"), Decimal(273)),
        (qty("36.5", "wk", code="wk"), Decimal("255.5")),
        (qty(250, "d", code="d"), Decimal(250)),
        (qty(35, "weeks"), Decimal(245)),
        (qty(260, "days"), Decimal(260)),
    ],
    ids=["wk", "wk-fraction", "d", "weeks-text", "days-text"],
)
def test_gestational_age_in_days(quantity: dict[str, Any], days: Decimal) -> None:
    facts = read(observation("76516-4", when=BIRTH, valueQuantity=quantity))
    assert [g.value for g in facts.gestational_age_days] == [days]
    assert facts.gestational_age_days[0].unit == "d"


@pytest.mark.parametrize(
    ("quantity", "celsius"),
    [
        (qty("36.8", "Cel", code="Cel"), Decimal("36.8")),
        (qty("100.4", "degF", code="[degF]"), Decimal("38.0")),
        (qty("98.6", "°F"), Decimal(37)),
        (qty(212, "[degF]", code="[degF]"), Decimal(100)),
        (qty("38.2", "°C"), Decimal("38.2")),
    ],
    ids=["Cel", "degF-100.4", "degF-text-98.6", "degF-212", "C-text"],
)
def test_temperature_in_celsius(quantity: dict[str, Any], celsius: Decimal) -> None:
    facts = read(observation("8310-5", valueQuantity=quantity))
    assert [t.value for t in facts.temperatures_c] == [celsius]
    assert facts.temperatures_c[0].unit == "Cel"


# Labs ------------------------------------------------------------------------------------------


LAB_CASES = [
    # (id, LOINC, test, quantity, expected canonical value, tolerance)
    ("alt-U/L", "1742-6", LabTest.ALT, qty(28, "U/L", code="U/L"), 28, 0),
    ("alt-IU/L", "1742-6", LabTest.ALT, qty(28, "IU/L", code="[IU]/L"), 28, 0),
    ("alt-iu-text", "1742-6", LabTest.ALT, qty(28, "IU/L"), 28, 0),
    ("alt-ukat/L", "1742-6", LabTest.ALT, qty("0.75", "ukat/L", code="ukat/L"), 45, 0),
    ("ast-ukat/L", "1920-8", LabTest.AST, qty("0.5", "µkat/L"), 30, 0),
    ("bili-mg/dL", "1975-2", LabTest.BILIRUBIN_TOTAL, qty("0.4", "mg/dL", code="mg/dL"), 0.4, 0),
    (
        "bili-umol/L",
        "1975-2",
        LabTest.BILIRUBIN_TOTAL,
        qty(20, "umol/L", code="umol/L"),
        20 / 17.104,
        0.00005,
    ),
    ("albumin-g/L", "1751-7", LabTest.ALBUMIN, qty(40, "g/L", code="g/L"), 4.0, 0),
    (
        "creatinine-umol/L",
        "2160-0",
        LabTest.CREATININE,
        qty("26.5", "umol/L", code="umol/L"),
        26.5 / 88.42,
        0.00005,
    ),
    ("hgb-g/dL", "718-7", LabTest.HEMOGLOBIN, qty("11.4", "g/dL", code="g/dL"), 11.4, 0),
    ("hgb-g/L", "718-7", LabTest.HEMOGLOBIN, qty(114, "g/L", code="g/L"), 11.4, 0),
    # 1 mmol/L of hemoglobin (monomer, 16.11 kDa) = 1.611 g/dL.
    ("hgb-mmol/L", "718-7", LabTest.HEMOGLOBIN, qty(7, "mmol/L", code="mmol/L"), 7 * 1.611, 1e-9),
    ("plt-10*3/uL", "777-3", LabTest.PLATELETS, qty(318, "10*3/uL", code="10*3/uL"), 318, 0),
    ("plt-10*9/L", "777-3", LabTest.PLATELETS, qty(318, "10*9/L", code="10*9/L"), 318, 0),
    ("plt-/uL", "777-3", LabTest.PLATELETS, qty(318000, "/uL", code="/uL"), 318, 0),
    ("tni-ng/mL", "10839-9", LabTest.TROPONIN_I, qty("0.01", "ng/mL", code="ng/mL"), 0.01, 0),
    ("tni-ng/L", "10839-9", LabTest.TROPONIN_I, qty(12, "ng/L", code="ng/L"), 0.012, 0),
    ("tni-pg/mL", "89579-7", LabTest.TROPONIN_I, qty(35, "pg/mL", code="pg/mL"), 0.035, 0),
    ("pt-s", "5902-2", LabTest.PT, qty("12.5", "s", code="s"), 12.5, 0),
    ("ptt-sec-text", "14979-9", LabTest.PTT, qty(33, "sec"), 33, 0),
    ("inr-{INR}", "6301-6", LabTest.INR, qty("1.1", "{INR}", code="{INR}"), 1.1, 0),
    ("inr-no-unit", "6301-6", LabTest.INR, qty("1.1"), 1.1, 0),
]


@pytest.mark.parametrize(
    ("loinc", "test", "quantity", "expected", "tolerance"),
    [case[1:] for case in LAB_CASES],
    ids=[case[0] for case in LAB_CASES],
)
def test_lab_units_normalise_to_canonical(
    loinc: str, test: LabTest, quantity: dict[str, Any], expected: float, tolerance: float
) -> None:
    lab = only_lab(read(observation(loinc, valueQuantity=quantity)))
    assert lab.test is test
    assert lab.unit == CANONICAL_UNIT[test]
    assert float(lab.value) == pytest.approx(expected, abs=tolerance or 1e-12)


def test_inr_without_value_quantity_unit_is_read_from_value_string() -> None:
    lab = only_lab(read(observation("34714-6", valueString=" 1.2 ")))
    assert lab.test is LabTest.INR
    assert lab.value == Decimal("1.2")


def test_unconvertible_lab_unit_is_unreadable() -> None:
    facts = read(observation("1742-6", valueQuantity=qty(28, "mg/dL", code="mg/dL")))
    assert facts.labs == ()
    assert facts.unreadable[0].what == LabTest.ALT
    assert "mg/dL" in facts.unreadable[0].reason


def test_lab_comparator_is_kept() -> None:
    lab = only_lab(
        read(observation("10839-9", valueQuantity={**qty(10, code="ng/L"), "comparator": "<"}))
    )
    assert lab.comparator.value == "<"
    assert lab.value == Decimal("0.01")


# Reference ranges ------------------------------------------------------------------------------


NORMAL = {"coding": [{"system": codes.REFERENCE_RANGE_MEANING, "code": "normal"}]}
TREATMENT = {"coding": [{"system": codes.REFERENCE_RANGE_MEANING, "code": "treatment"}]}


def age(low: tuple[Any, str] | None = None, high: tuple[Any, str] | None = None) -> dict[str, Any]:
    """A referenceRange.age Range in UCUM age units ('mo', 'a', 'wk', 'd')."""
    out = {}
    if low is not None:
        out["low"] = {"value": low[0], "unit": low[1], "system": codes.UCUM, "code": low[1]}
    if high is not None:
        out["high"] = {"value": high[0], "unit": high[1], "system": codes.UCUM, "code": high[1]}
    return out


def test_reference_range_high_is_the_uln() -> None:
    rng = [{"high": qty(45, "U/L", code="U/L"), "type": NORMAL}]
    lab = only_lab(
        read(observation("1742-6", valueQuantity=qty(28, code="U/L"), referenceRange=rng))
    )
    assert lab.reported_uln == 45


def test_reference_range_high_is_converted_to_canonical_units() -> None:
    rng = [{"low": qty(3, code="umol/L"), "high": qty(20, "umol/L", code="umol/L")}]
    lab = only_lab(
        read(observation("1975-2", valueQuantity=qty(10, code="umol/L"), referenceRange=rng))
    )
    assert lab.reported_uln is not None
    assert float(lab.reported_uln) == pytest.approx(20 / 17.104, abs=0.00005)
    assert float(lab.value) == pytest.approx(10 / 17.104, abs=0.00005)


def test_reference_range_high_without_unit_takes_the_value_unit() -> None:
    rng = [{"high": {"value": 20}}]
    lab = only_lab(
        read(observation("1975-2", valueQuantity=qty(10, code="umol/L"), referenceRange=rng))
    )
    assert float(lab.reported_uln) == pytest.approx(20 / 17.104, abs=0.00005)


def test_reference_range_of_another_type_is_ignored() -> None:
    ranges = [
        {"high": qty(100, code="U/L"), "type": TREATMENT},
        {"high": qty(45, code="U/L"), "type": NORMAL},
    ]
    lab = only_lab(
        read(observation("1742-6", valueQuantity=qty(28, code="U/L"), referenceRange=ranges))
    )
    assert lab.reported_uln == 45


def test_only_a_non_normal_reference_range_gives_no_uln() -> None:
    ranges = [{"high": qty(100, code="U/L"), "type": TREATMENT}]
    lab = only_lab(
        read(observation("1742-6", valueQuantity=qty(28, code="U/L"), referenceRange=ranges))
    )
    assert lab.reported_uln is None


def test_no_reference_range_gives_no_uln() -> None:
    lab = only_lab(read(observation("1742-6", valueQuantity=qty(28, code="U/L"))))
    assert lab.reported_uln is None


def test_reference_range_without_high_gives_no_uln() -> None:
    rng = [{"low": qty(5, code="U/L"), "type": NORMAL}]
    lab = only_lab(
        read(observation("1742-6", valueQuantity=qty(28, code="U/L"), referenceRange=rng))
    )
    assert lab.reported_uln is None


AGE_RANGES = [
    {"high": qty(100, code="U/L"), "type": NORMAL, "age": age(low=(0, "mo"), high=(1, "mo"))},
    {"high": qty(55, code="U/L"), "type": NORMAL, "age": age(low=(1, "mo"), high=(12, "mo"))},
    {"high": qty(35, code="U/L"), "type": NORMAL, "age": age(low=(1, "a"), high=(18, "a"))},
]


@pytest.mark.parametrize(
    ("result_date", "uln"),
    [
        ("2026-06-20", 100),  # 10 days old
        ("2026-11-16", 55),  # 159 days, about 5 months
        ("2027-12-01", 35),  # about 17.7 months = 1.47 years
    ],
)
def test_age_specific_reference_range_matches_age_on_result_date(
    result_date: str, uln: int
) -> None:
    born = dt.date.fromisoformat(BIRTH)
    assert (dt.date.fromisoformat(result_date) - born).days > 0
    obs = observation(
        "1742-6", when=result_date, valueQuantity=qty(28, code="U/L"), referenceRange=AGE_RANGES
    )
    assert only_lab(read(obs)).reported_uln == uln


def test_age_specific_reference_range_order_does_not_matter() -> None:
    obs = observation(
        "1742-6", valueQuantity=qty(28, code="U/L"), referenceRange=list(reversed(AGE_RANGES))
    )
    assert only_lab(read(obs)).reported_uln == 55


def test_age_specific_range_without_birth_date_is_not_used() -> None:
    obs = observation("1742-6", valueQuantity=qty(28, code="U/L"), referenceRange=AGE_RANGES)
    facts = read(obs, birth_date=None)
    assert only_lab(facts).reported_uln is None
