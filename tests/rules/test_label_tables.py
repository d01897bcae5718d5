"""Label Tables 1 and 3 as packaged in kits.csv, checked against arithmetic and the source text."""

from __future__ import annotations

import itertools
import re
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

from smart_app.rules import label
from smart_app.rules.model import Kit

KITS = label.kits()
TENTH = Decimal("0.1")
ML_PER_KG = Decimal("5.5")
VIAL_SMALL_ML = Decimal("5.5")
VIAL_LARGE_ML = Decimal("8.3")
VG_PER_ML = Decimal("2.0e13")
VG_PER_KG = Decimal("1.1e14")
NDC_RE = re.compile(r"^71894-(\d{3})-(\d{2})$")

SEED_LABEL = "001_4a21bb1626926527.txt"
SEED_HCP = "000_671695a26f6a3f3d.txt"

# Table 1: "2.6 – 3.0 16.5 " (en dash, trailing space in the extracted text).
TABLE1_RE = re.compile(r"^(\d+\.\d) – (\d+\.\d) (\d+\.\d)[ \t]*$", re.MULTILINE)
# Table 3: "2.6 – 3.0 0 2 2 71894-120-02 ".
TABLE3_RE = re.compile(
    r"^(\d+\.\d) – (\d+\.\d) (\d+) (\d+) (\d+) (71894-\d{3}-\d{2})[ \t]*$", re.MULTILINE
)
# HCP page: two rows glued per line, e.g. "2.6-3.016.5271894-120-0212.1-12.568.8971894-139-09".
HCP_ROW_RE = re.compile(r"(\d+\.\d)-(\d+\.\d)(\d+\.\d)(\d{1,2})(71894-\d{3}-(\d{2}))")


def _half_up_tenth(value: Decimal) -> Decimal:
    return value.quantize(TENTH, rounding=ROUND_HALF_UP)


# --- table shape -------------------------------------------------------------------------


def test_exactly_37_kits() -> None:
    assert len(KITS) == 37


def test_first_and_last_band() -> None:
    assert (KITS[0].band_low_kg, KITS[0].band_high_kg) == (Decimal("2.6"), Decimal("3.0"))
    assert (KITS[-1].band_low_kg, KITS[-1].band_high_kg) == (Decimal("20.6"), Decimal("21.0"))


def test_label_range_constants_match_table() -> None:
    assert label.MIN_WEIGHT_KG == Decimal("2.6") == KITS[0].band_low_kg
    assert label.MAX_WEIGHT_KG == Decimal("21.0") == KITS[-1].band_high_kg


def test_bands_are_contiguous_and_0_4_wide() -> None:
    for previous, kit in itertools.pairwise(KITS):
        assert kit.band_low_kg == previous.band_high_kg + TENTH, kit.ndc
    for kit in KITS:
        assert kit.band_high_kg - kit.band_low_kg == Decimal("0.4"), kit.ndc


def test_ndcs_are_unique() -> None:
    assert len({kit.ndc for kit in KITS}) == len(KITS)


# --- row by row --------------------------------------------------------------------------


@pytest.mark.parametrize(("index", "kit"), list(enumerate(KITS)), ids=[kit.ndc for kit in KITS])
class TestKitRow:
    def test_dose_volume_is_5_5_ml_per_kg_at_band_high(self, index: int, kit: Kit) -> None:
        expected = _half_up_tenth(kit.band_high_kg * ML_PER_KG)
        assert kit.dose_volume_ml == expected

    def test_capacity_covers_dose_volume(self, index: int, kit: Kit) -> None:
        capacity = VIAL_SMALL_ML * kit.vials_5_5_ml + VIAL_LARGE_ML * kit.vials_8_3_ml
        assert capacity >= kit.dose_volume_ml
        assert kit.capacity_ml == capacity

    def test_vial_counts(self, index: int, kit: Kit) -> None:
        assert kit.vials_5_5_ml >= 0
        assert kit.vials_8_3_ml >= 0
        assert kit.vials_5_5_ml + kit.vials_8_3_ml == kit.total_vials
        assert 2 <= kit.total_vials <= 14

    def test_ndc_format(self, index: int, kit: Kit) -> None:
        match = NDC_RE.fullmatch(kit.ndc)
        assert match is not None, kit.ndc
        assert kit.ndc.startswith(f"{label.NDC_LABELER}-")
        assert int(match.group(1)) == 120 + index
        assert match.group(2) == f"{kit.total_vials:02d}"

    def test_vector_genomes_per_kg_at_band_high(self, index: int, kit: Kit) -> None:
        assert kit.dose_volume_ml * VG_PER_ML / kit.band_high_kg >= VG_PER_KG


# --- cross-check against the source documents --------------------------------------------


def _kits_by_band() -> dict[tuple[Decimal, Decimal], Kit]:
    return {(kit.band_low_kg, kit.band_high_kg): kit for kit in KITS}


def test_table_1_matches_prescribing_information(seeds_dir: Path) -> None:
    text = (seeds_dir / SEED_LABEL).read_text(encoding="utf-8")
    rows = [
        (Decimal(low), Decimal(high), Decimal(volume))
        for low, high, volume in TABLE1_RE.findall(text)
    ]
    assert len(rows) == 37, rows
    assert rows == [(k.band_low_kg, k.band_high_kg, k.dose_volume_ml) for k in KITS]


def test_table_3_matches_prescribing_information(seeds_dir: Path) -> None:
    text = (seeds_dir / SEED_LABEL).read_text(encoding="utf-8")
    rows = [
        (Decimal(low), Decimal(high), int(n55), int(n83), int(total), ndc)
        for low, high, n55, n83, total, ndc in TABLE3_RE.findall(text)
    ]
    assert len(rows) == 37, rows
    expected = [
        (k.band_low_kg, k.band_high_kg, k.vials_5_5_ml, k.vials_8_3_ml, k.total_vials, k.ndc)
        for k in KITS
    ]
    assert rows == expected


def test_hcp_page_kit_table_matches(seeds_dir: Path) -> None:
    text = (seeds_dir / SEED_HCP).read_text(encoding="utf-8")
    rows = HCP_ROW_RE.findall(text)
    assert len(rows) == 37, rows
    by_band = _kits_by_band()
    seen = set()
    for low, high, volume, total, ndc, ndc_package in rows:
        band = (Decimal(low), Decimal(high))
        assert band in by_band, f"HCP band {low}-{high} is not in kits.csv"
        kit = by_band[band]
        assert kit.dose_volume_ml == Decimal(volume), ndc
        assert kit.total_vials == int(total) == int(ndc_package), ndc
        assert kit.ndc == ndc
        seen.add(ndc)
    assert seen == {kit.ndc for kit in KITS}
