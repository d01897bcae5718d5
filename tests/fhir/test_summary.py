"""Who signs the letter, from the chart: a HumanName as a signature line, the NPI, and what a
PractitionerRole's references display."""

from __future__ import annotations

from typing import Any

import pytest

from smart_app.fhir import summary

NPI = {"system": summary.NPI_SYSTEM, "value": "1234567893"}


@pytest.mark.parametrize(
    ("names", "shown"),
    [
        (
            [{"prefix": ["Dr."], "given": ["Dana", "J."], "family": "Lee", "suffix": ["MD"]}],
            "Dr. Dana J. Lee, MD",
        ),
        ([{"given": ["Dana"], "family": "Lee"}], "Dana Lee"),
        ([{"family": "Lee", "suffix": ["MD", "PhD"]}], "Lee, MD, PhD"),
        ([{"prefix": ["Dr."], "family": "Lee"}], "Dr. Lee"),
        ([{"text": " Dana  Lee, MD ", "family": "Ignored"}], "Dana Lee, MD"),
        ([{"given": ["  Dana "], "family": " Lee  "}], "Dana Lee"),
    ],
)
def test_a_name_is_prefix_given_family_then_suffixes_or_its_text(
    names: list[dict[str, Any]], shown: str
) -> None:
    assert summary.human_name(names) == shown


def test_the_official_name_wins_then_the_usual_one_and_old_names_never() -> None:
    usual = {"use": "usual", "given": ["Dee"], "family": "Lee"}
    official = {"use": "official", "given": ["Dana"], "family": "Lee"}
    old = {"use": "old", "given": ["Dana"], "family": "Smith"}
    assert summary.human_name([old, usual, official]) == "Dana Lee"
    assert summary.human_name([old, {"given": ["Any"]}, usual]) == "Dee Lee"
    assert summary.human_name([old, {"use": "maiden", "family": "Smith"}]) == ""


@pytest.mark.parametrize(
    "names",
    [None, [], "Dr. Lee", [{}], [{"given": "Dana"}], [{"given": [3], "family": 4}], [None]],
)
def test_no_usable_name_is_an_empty_string(names: Any) -> None:
    assert summary.human_name(names) == ""


def test_an_empty_name_gives_way_to_the_next_one() -> None:
    assert summary.human_name([{"use": "official", "text": " "}, {"family": "Lee"}]) == "Lee"


def test_a_name_is_cut_at_its_bound() -> None:
    assert len(summary.human_name([{"text": "x" * 500}])) == summary.MAX_NAME_CHARS


def test_the_npi_is_the_ten_digits_under_its_system() -> None:
    other = {"system": "https://ehr.example.org/staff", "value": "0000000001"}
    assert summary.npi({"identifier": [other, NPI]}) == "1234567893"
    assert summary.npi({"identifier": [other]}) == ""
    assert summary.npi({"identifier": [{"system": summary.NPI_SYSTEM, "value": "12345"}]}) == ""
    assert summary.npi({"identifier": [{"system": summary.NPI_SYSTEM, "value": 1234567893}]}) == ""
    assert summary.npi({"identifier": "1234567893"}) == ""
    assert summary.npi({}) == ""


def test_a_practitioner_signs_with_its_name_and_npi() -> None:
    practitioner = {
        "resourceType": "Practitioner",
        "id": "dr-lee",
        "identifier": [NPI],
        "name": [{"prefix": ["Dr."], "given": ["Dana"], "family": "Lee", "suffix": ["MD"]}],
    }
    assert summary.signer(practitioner) == summary.Signer(
        name="Dr. Dana Lee, MD", npi="1234567893", organization=""
    )


def test_a_practitioner_role_signs_with_what_its_references_display() -> None:
    role = {
        "resourceType": "PractitionerRole",
        "practitioner": {"reference": "Practitioner/dr-lee", "display": "Dr. Dana Lee"},
        "organization": {"reference": "Organization/1", "display": "Children's Neuromuscular"},
        "identifier": [NPI],
    }
    assert summary.signer(role) == summary.Signer(
        name="Dr. Dana Lee", npi="", organization="Children's Neuromuscular"
    )
    bare = {"resourceType": "PractitionerRole", "practitioner": {"reference": "Practitioner/1"}}
    assert summary.signer(bare) == summary.Signer()


def test_anything_else_signs_nothing() -> None:
    patient = {"resourceType": "Patient", "name": [{"family": "Okafor"}], "identifier": [NPI]}
    assert summary.signer(patient) == summary.Signer()
