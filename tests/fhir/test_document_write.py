"""The transaction that files a PDF: a DocumentReference keyed by the PDF's hash, created once,
and a Provenance over it; validated before anything is sent."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
from typing import Any

import pytest

from smart_app.errors import WriteBackError, WriteBlocked
from smart_app.fhir import codes, profiles
from smart_app.fhir.document_write import DOCUMENT_ITEM, Filing, document_bundle, pdf_key
from smart_app.fhir.gateway import PatientRecord
from smart_app.fhir.transaction import operations

PDF = b"%PDF-1.4\n% a stand-in for the packet\n%%EOF\n"
RECORDED = dt.datetime(2026, 11, 21, 10, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
FILING = Filing(
    pdf=PDF,
    title="zolgensma-prior-authorization-packet-0123456789ab.pdf",
    description="ZOLGENSMA prior-authorization packet",
    created_on=dt.date(2026, 11, 21),
    recorded=RECORDED,
    fhir_user="https://ehr.example.org/fhir/Practitioner/dr-lee",
    label_version="ZOLGENSMA USPI rev. 2/2025",
)
RECORD = PatientRecord(patient_id="p1", resources=[])


def _bundle(filing: Filing = FILING) -> dict[str, Any]:
    return document_bundle(filing, patient_id="p1", record=RECORD)


def test_the_document_is_a_conditional_create_on_the_pdfs_hash() -> None:
    bundle = _bundle()
    document, provenance = bundle["entry"]
    key = hashlib.sha256(PDF).hexdigest()[:32]
    assert pdf_key(PDF) == FILING.key == key
    value = f"{key}/{DOCUMENT_ITEM}"
    assert document["resource"]["identifier"] == [{"system": codes.APP_IDENTIFIER, "value": value}]
    assert document["request"] == {
        "method": "POST",
        "url": "DocumentReference",
        "ifNoneExist": f"identifier={codes.APP_IDENTIFIER}|{value}",
    }
    assert document["fullUrl"].startswith("urn:uuid:")
    assert provenance["resource"]["target"] == [{"reference": document["fullUrl"]}]
    assert provenance["request"]["ifNoneExist"].startswith(f"_tag={codes.APP_IDENTIFIER}|{key}/")
    assert profiles.check(provenance["resource"]) == []
    ops = operations(bundle)
    assert [op.item for op in ops] == [DOCUMENT_ITEM, ops[1].item]
    assert ops[1].item.startswith("provenance/")


def test_the_document_holds_the_pdf_with_its_size_and_sha1() -> None:
    resource = _bundle()["entry"][0]["resource"]
    assert resource["status"] == "current"
    assert resource["docStatus"] == "preliminary"  # the letter is a draft until signed
    assert resource["subject"] == {"reference": "Patient/p1"}
    assert resource["author"] == [{"reference": "Practitioner/dr-lee"}]
    assert resource["type"]["text"] == "Prior authorization packet"
    assert resource["type"]["coding"][0]["code"] == "prior-authorization-packet"
    assert resource["date"] == "2026-11-21T10:30:00-05:00"
    (content,) = resource["content"]
    attachment = content["attachment"]
    assert base64.b64decode(attachment["data"]) == PDF
    assert attachment["size"] == len(PDF)
    sha1 = hashlib.sha1(PDF, usedforsecurity=False).digest()
    assert base64.b64decode(attachment["hash"]) == sha1
    assert attachment["contentType"] == "application/pdf"
    assert attachment["creation"] == "2026-11-21"
    assert attachment["title"] == FILING.title


def test_the_same_pdf_gives_the_same_entries_and_another_pdf_another_key() -> None:
    again = _bundle(dataclasses.replace(FILING, recorded=RECORDED + dt.timedelta(hours=2)))
    first = _bundle()
    assert [e["fullUrl"] for e in again["entry"]] == [e["fullUrl"] for e in first["entry"]]
    assert [e["request"] for e in again["entry"]] == [e["request"] for e in first["entry"]]
    other = _bundle(dataclasses.replace(FILING, pdf=PDF + b" "))
    assert other["entry"][0]["request"] != first["entry"][0]["request"]


def test_no_user_no_author_and_the_app_alone_in_the_provenance() -> None:
    bundle = _bundle(dataclasses.replace(FILING, fhir_user=None))
    assert "author" not in bundle["entry"][0]["resource"]
    agents = bundle["entry"][1]["resource"]["agent"]
    assert [a["type"]["coding"][0]["code"] for a in agents] == ["assembler"]


def test_what_is_not_a_pdf_or_has_no_time_zone_is_refused() -> None:
    with pytest.raises(WriteBlocked, match="not a PDF"):
        _bundle(dataclasses.replace(FILING, pdf=b"<html>"))
    with pytest.raises(WriteBlocked, match="time zone"):
        _bundle(dataclasses.replace(FILING, recorded=RECORDED.replace(tzinfo=None)))


def test_an_invalid_document_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(WriteBackError, match="DocumentReference is not valid FHIR R4"):
        _bundle(dataclasses.replace(FILING, description=""))
