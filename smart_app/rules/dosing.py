"""Weight-band dosing: label Table 1 (dose volume) and Table 3 (kit), section 2.1."""

from __future__ import annotations

from decimal import Decimal

from smart_app.rules import label
from smart_app.rules.arith import ceil_to, floor_int, round_half_up
from smart_app.rules.model import Dose, Kit


def band_weight_kg(weight_kg: Decimal) -> Decimal:
    """The weight the band is looked up with: rounded UP to 0.1 kg.

    Table 1 computes each band's volume at its upper limit so that every patient in the band
    receives at least 1.1e14 vg/kg; a weight between printed bands (3.04 kg) therefore belongs
    to the next band up (3.1-3.5 kg), never the one below.
    """
    return ceil_to(weight_kg)


def in_label_range(weight_kg: Decimal) -> bool:
    """True when Table 1 has a kit for this weight (2.6 kg to 21.0 kg inclusive)."""
    return label.MIN_WEIGHT_KG <= weight_kg <= label.MAX_WEIGHT_KG


def between_bands(weight_kg: Decimal) -> bool:
    """True for a weight in the labeled range that no printed band contains (3.0 < w < 3.1)."""
    return in_label_range(weight_kg) and not any(
        kit.band_low_kg <= weight_kg <= kit.band_high_kg for kit in label.kits()
    )


def no_kit_reason(weight_kg: Decimal | None) -> str:
    """Why there is no labeled kit: no usable weight, or a weight outside Table 1."""
    limits = f"{label.MIN_WEIGHT_KG}-{label.MAX_WEIGHT_KG} kg"
    if weight_kg is None:
        return f"no current weight in the labeled {limits} range (Table 1)"
    return f"{weight_kg} kg is outside {limits}: no labeled kit (Table 1)"


def kit_for_weight(weight_kg: Decimal) -> Kit | None:
    """The labeled kit for a weight, or None outside 2.6-21.0 kg."""
    if not in_label_range(weight_kg):
        return None
    lookup = band_weight_kg(weight_kg)
    for kit in label.kits():
        if kit.band_low_kg <= lookup <= kit.band_high_kg:
            return kit
    return None


def dose_for_weight(weight_kg: Decimal) -> Dose | None:
    """The full ZOLGENSMA dose for a weight, or None when no labeled kit applies."""
    kit = kit_for_weight(weight_kg)
    if kit is None:
        return None
    lookup = band_weight_kg(weight_kg)
    vector_genomes = kit.dose_volume_ml * label.CONCENTRATION_VG_PER_ML
    per_kg = vector_genomes / weight_kg
    rate = round_half_up(kit.dose_volume_ml * 60 / label.INFUSION_MINUTES)
    if between_bands(weight_kg):
        why = (
            f"Weight {weight_kg} kg lies between printed bands; it is rounded up to {lookup} kg "
            f"and falls in the {kit.band_low_kg}-{kit.band_high_kg} kg band."
        )
    else:
        why = f"Weight {weight_kg} kg is in the {kit.band_low_kg}-{kit.band_high_kg} kg band."
    why += (
        f" Dose volume {kit.dose_volume_ml} mL is computed at the band's upper limit "
        f"({kit.band_high_kg} kg x 5.5 mL/kg, Table 1 footnote a) = "
        f"{sci(vector_genomes)} vg, i.e. {sci(per_kg)} vg/kg for this patient "
        f"(label dose 1.1e14 vg/kg). Kit {kit.ndc}: {kit.vials} vials (Table 3)."
    )
    return Dose(
        weight_kg=weight_kg,
        band_weight_kg=lookup,
        kit=kit,
        vector_genomes=int(vector_genomes),
        vector_genomes_per_kg=Decimal(floor_int(per_kg)),
        infusion_minutes=label.INFUSION_MINUTES,
        pump_rate_ml_per_h=rate,
        explanation=why,
    )


def sci(value: Decimal | int, *, significant: int = 3) -> str:
    """Significant figures (3 by default) in e-notation: 3.86e14."""
    mantissa, exponent = f"{value:.{significant - 1}e}".split("e")
    return f"{mantissa}e{int(exponent)}"
