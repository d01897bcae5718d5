"""Weight-band dosing: every 0.01 kg weight, the band edges and vector-genome properties."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smart_app.rules import label
from smart_app.rules.dosing import dose_for_weight, kit_for_weight, no_kit_reason

KITS = label.kits()
VG_PER_ML = Decimal("2.0e13")
VG_PER_KG = Decimal("1.1e14")
MIN_KG = Decimal("2.6")
MAX_KG = Decimal("21.0")


def _expected_index(hundredths: int) -> int:
    """Row of Table 1 for a weight in integer hundredths of a kg (0.5 kg bands above 3.0)."""
    return max(0, -(-(hundredths - 300) // 50))


def _ceil_tenth(hundredths: int) -> Decimal:
    return Decimal(-(-hundredths // 10)).scaleb(-1)


def _check_weight(hundredths: int) -> str | None:
    """A description of the first mismatch for this weight, or None when it is dosed right."""
    weight = Decimal(hundredths).scaleb(-2)
    expected_kit = KITS[_expected_index(hundredths)]
    kit = kit_for_weight(weight)
    if kit is None or kit.ndc != expected_kit.ndc:
        return f"{weight} kg: kit {kit and kit.ndc}, expected {expected_kit.ndc}"
    dose = dose_for_weight(weight)
    if dose is None:
        return f"{weight} kg: no dose"
    band_weight = _ceil_tenth(hundredths)
    problems = []
    if dose.kit != expected_kit:
        problems.append(f"dose kit {dose.kit.ndc}")
    if dose.weight_kg != weight:
        problems.append(f"weight_kg {dose.weight_kg}")
    if dose.band_weight_kg != band_weight:
        problems.append(f"band_weight_kg {dose.band_weight_kg} != {band_weight}")
    if not kit.band_low_kg <= dose.band_weight_kg <= kit.band_high_kg:
        problems.append(
            f"band weight {dose.band_weight_kg} outside {kit.band_low_kg}-{kit.band_high_kg}"
        )
    if dose.vector_genomes != kit.dose_volume_ml * VG_PER_ML:
        problems.append(f"vector_genomes {dose.vector_genomes}")
    rate = (kit.dose_volume_ml / (Decimal(60) / Decimal(60))).quantize(
        Decimal("0.1"), rounding=ROUND_HALF_UP
    )
    if dose.pump_rate_ml_per_h != rate:
        problems.append(f"pump rate {dose.pump_rate_ml_per_h} != {rate}")
    if dose.infusion_minutes != 60:
        problems.append(f"infusion_minutes {dose.infusion_minutes}")
    if problems:
        return f"{weight} kg: " + "; ".join(problems)
    return None


def test_every_weight_in_hundredths() -> None:
    weights = range(260, 2101)
    assert len(weights) == 1841
    failures = [msg for h in weights if (msg := _check_weight(h)) is not None]
    assert not failures, f"{len(failures)} weights wrong; first: {failures[0]}"


@pytest.mark.parametrize("weight", ["2.59", "2.5", "21.01", "25", "0", "-3.0"])
def test_outside_label_range_has_no_kit(weight: str) -> None:
    assert kit_for_weight(Decimal(weight)) is None
    assert dose_for_weight(Decimal(weight)) is None


@pytest.mark.parametrize(
    ("weight", "ndc"),
    [
        ("2.6", "71894-120-02"),
        ("3.0", "71894-120-02"),
        ("3.00", "71894-120-02"),
        ("3.01", "71894-121-03"),
        ("3.04", "71894-121-03"),
        ("3.1", "71894-121-03"),
        ("3.5", "71894-121-03"),
        ("3.51", "71894-122-03"),
        ("20.55", "71894-156-14"),
        ("21.0", "71894-156-14"),
        ("21.00", "71894-156-14"),
    ],
)
def test_band_edges(weight: str, ndc: str) -> None:
    kit = kit_for_weight(Decimal(weight))
    assert kit is not None
    assert kit.ndc == ndc
    dose = dose_for_weight(Decimal(weight))
    assert dose is not None
    assert dose.kit.ndc == ndc


def test_gap_weight_rounds_up_not_down() -> None:
    dose = dose_for_weight(Decimal("3.04"))
    assert dose is not None
    assert dose.band_weight_kg == Decimal("3.1")
    assert dose.kit.dose_volume_ml == Decimal("19.3")


def _assert_delivers_label_dose(weight: Decimal) -> None:
    dose = dose_for_weight(weight)
    assert dose is not None, weight
    volume = dose.kit.dose_volume_ml
    assert volume * VG_PER_ML / weight >= VG_PER_KG, weight
    assert (
        dose.kit.vials_5_5_ml * Decimal("5.5") + dose.kit.vials_8_3_ml * Decimal("8.3") >= volume
    ), weight
    assert dose.vector_genomes_per_kg >= VG_PER_KG, weight


@given(
    st.decimals(min_value=MIN_KG, max_value=MAX_KG, places=2, allow_nan=False, allow_infinity=False)
)
def test_property_label_dose_two_places(weight: Decimal) -> None:
    _assert_delivers_label_dose(weight)


@given(
    st.decimals(min_value=MIN_KG, max_value=MAX_KG, places=3, allow_nan=False, allow_infinity=False)
)
def test_property_label_dose_three_places(weight: Decimal) -> None:
    _assert_delivers_label_dose(weight)


@given(
    st.decimals(min_value=MIN_KG, max_value=MAX_KG, places=4, allow_nan=False, allow_infinity=False)
)
def test_property_label_dose_four_places(weight: Decimal) -> None:
    _assert_delivers_label_dose(weight)


@pytest.mark.parametrize("weight", ["3.0", "3.04", "12.3", "21.0"])
def test_explanation_mentions_ndc_and_band(weight: str) -> None:
    dose = dose_for_weight(Decimal(weight))
    assert dose is not None
    kit = dose.kit
    assert kit.ndc in dose.explanation
    assert f"{kit.band_low_kg}-{kit.band_high_kg} kg" in dose.explanation
    assert str(kit.dose_volume_ml) in dose.explanation


def test_no_kit_reason_names_the_weight_and_the_label_range() -> None:
    assert no_kit_reason(Decimal("21.2")).startswith("21.2 kg is outside 2.6-21.0 kg")
    assert "2.6-21.0 kg" in no_kit_reason(None)
    assert "21.2" not in no_kit_reason(None)


@pytest.mark.parametrize(
    ("weight_kg", "vials"),
    [
        ("2.6", "2 x 8.3 mL"),
        ("3.6", "1 x 5.5 mL + 2 x 8.3 mL"),
        ("5.0", "2 x 5.5 mL + 2 x 8.3 mL"),
    ],
)
def test_kit_vials_leave_out_a_size_with_none(weight_kg: str, vials: str) -> None:
    """'2 x 8.3 mL', never '0 x 5.5 mL + 2 x 8.3 mL' (Table 3); the counts add up to the kit's."""
    kit = kit_for_weight(Decimal(weight_kg))
    assert kit is not None
    assert kit.vials == vials
    assert sum(int(part.split(" x ")[0]) for part in vials.split(" + ")) == kit.total_vials
