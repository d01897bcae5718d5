"""Words and numbers as clinicians write them: the pages' Jinja filters."""

from __future__ import annotations

from smart_app.web import words

NBSP = "\u00a0"


def test_clinical_text_rewrites_the_rules_dates_exponents_and_multiples() -> None:
    said = (
        "Second birthday is 2026-11-02, on or before 2026-11-22; at least 1.1e14 vg/kg; "
        "ALT is 2.67 x ULN"
    )
    shown = words.clinical_text(said).replace(NBSP, " ")
    assert shown == (
        "Second birthday is 2 Nov 2026, on or before 22 Nov 2026; at least 1.1 × 10¹⁴ vg/kg; "
        "ALT is 2.67 × ULN"
    )
    assert words.clinical_text(None) == ""
    assert words.clinical_text("version 2026.1 of 2026-13-45") == "version 2026.1 of 2026-13-45"
