"""The prior-authorization packet filed to a real FHIR server through the web routes: the PDF's
text holds the key facts, the DocumentReference is written once with its Provenance and the
PDF's hash and size, and the CSRF check refuses a POST without the token."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import io
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from flask.testing import FlaskClient
from pypdf import PdfReader

from smart_app.fhir import codes, summary
from smart_app.fhir.document_write import DOCUMENT_ITEM, pdf_key
from smart_app.fhir.gateway import FhirGateway
from smart_app.web import context, documents
from tests import fhirserver
from tests.smartsandbox import TODAY, field
from tests.web.planner_app import ISS, page_text, planner_app, serve_through, store_context

pytestmark = pytest.mark.integration
ALL_SERVERS = True

USER = "Practitioner/dr-lee"
INFUSION = TODAY + dt.timedelta(days=3)


@dataclasses.dataclass
class Filed:
    """One launch of the packet against the server: the client, its URLs and the patient."""

    client: FlaskClient
    base: str
    patient: str
    page_url: str
    pdf_url: str
    file_url: str

    def page(self) -> str:
        """The packet page's HTML."""
        answer = self.client.get(self.page_url, query_string={"infusion_date": INFUSION})
        assert answer.status_code == 200, answer.text
        return answer.text

    def form(self) -> dict[str, str]:
        """The filing form's fields, as the page gives them."""
        page = self.page()
        return {name: field(page, name) for name in ("csrf_token", "fingerprint", "infusion_date")}


@pytest.fixture
def filed(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fhir_server: str,
    load: Callable[[str], str],
) -> Filed:
    """The web app reading and writing the real server, for a freshly loaded eligible infant."""
    patient = load("infant-eligible")
    serve_through(monkeypatch, FhirGateway(fhir_server), documents)
    client = planner_app(tmp_path).test_client()
    launched = dataclasses.replace(context.LaunchContext(iss=ISS, patient=patient), fhir_user=USER)
    context_id = store_context(client, launched)
    base = f"/p/{context_id}/print/prior-auth"
    return Filed(client, fhir_server, patient, base, f"{base}.pdf", f"{base}/file")


def _documents(base: str, patient: str) -> list[dict[str, Any]]:
    """The app's DocumentReferences for a patient, straight from the server."""
    return [
        r
        for r in fhirserver.search(base, f"DocumentReference?subject=Patient/{patient}&_count=50")
        if any(i.get("system") == codes.APP_IDENTIFIER for i in r.get("identifier", []))
    ]


def _provenances(base: str, target: str) -> list[dict[str, Any]]:
    """The Provenances whose targets name `target` (Type/id)."""
    return [
        p
        for p in fhirserver.search(base, "Provenance?_count=500")
        if any(t.get("reference") == target for t in p.get("target", []))
    ]


def _pdf_text(data: bytes) -> str:
    """Every page's text, on one line."""
    pages = PdfReader(io.BytesIO(data)).pages
    return " ".join(" ".join((p.extract_text() or "").split()) for p in pages)


def test_the_pdf_holds_the_criteria_and_billing_facts(filed: Filed) -> None:
    answer = filed.client.get(filed.pdf_url, query_string={"infusion_date": INFUSION})
    assert answer.status_code == 200
    assert answer.mimetype == "application/pdf"
    text = _pdf_text(answer.data)
    for title in (
        "SMA diagnosis (ICD-10-CM G12.0 / G12.1)",
        "Bi-allelic SMN1 mutations confirmed by genetic test",
        "Anti-AAV9 antibody titer at or below 1:50",
        "Weight and kit NDC",
        "No prior ZOLGENSMA",
    ):
        assert f"MET {title}" in text, title
    assert "NOTED Concurrent SMN-targeted therapy" in text
    assert "NOT MET" not in text and "MISSING" not in text
    assert "HCPCS J3399: 1 unit" in text
    assert re.search(r"NDC \(11-digit, billing\): 71894-\d{4}-\d{2}", text)
    assert re.search(r"ICD-10-CM G12\.[01]", text)
    planned = f"{INFUSION.day} {INFUSION:%b} {INFUSION.year}"
    assert f"Planned infusion {planned}" in text
    assert "DRAFT: Letter of medical necessity" in text


def test_filing_writes_the_document_once_with_its_provenance(filed: Filed) -> None:
    form = filed.form()
    pdf = filed.client.get(filed.pdf_url, query_string={"infusion_date": INFUSION}).data
    assert form["fingerprint"] == pdf_key(pdf), "the page files the PDF it offers"

    first = filed.client.post(filed.file_url, data=form)
    assert first.status_code == 200, page_text(first.text)
    shown = page_text(first.text)
    assert "Filed to the chart." in shown
    assert re.search(r"documentreference/prior-auth created DocumentReference/\S+", shown)
    assert re.search(r"provenance/[0-9a-f]+ created Provenance/\S+", shown)

    (document,) = _documents(filed.base, filed.patient)
    reference = f"DocumentReference/{document['id']}"
    identifier = {"system": codes.APP_IDENTIFIER, "value": f"{pdf_key(pdf)}/{DOCUMENT_ITEM}"}
    assert identifier in document["identifier"]
    assert document["status"] == "current"
    assert document["docStatus"] == "preliminary"
    assert document["subject"] == {"reference": f"Patient/{filed.patient}"}
    assert document["author"] == [{"reference": USER}]
    assert document["type"]["text"] == "Prior authorization packet"
    assert {"system": codes.APP_CODES, "code": "prior-authorization-packet"}.items() <= (
        document["type"]["coding"][0].items()
    )
    (content,) = document["content"]
    attachment = content["attachment"]
    assert attachment["contentType"] == "application/pdf"
    assert base64.b64decode(attachment["data"]) == pdf
    assert attachment["size"] == len(pdf)
    assert (
        attachment["hash"]
        == base64.b64encode(hashlib.sha1(pdf, usedforsecurity=False).digest()).decode()
    )
    assert attachment["creation"].startswith(TODAY.isoformat())
    assert attachment["title"].endswith(".pdf") and "Okafor" not in attachment["title"]
    (provenance,) = _provenances(filed.base, reference)
    assert provenance["agent"][0]["who"] == {"reference": USER}
    assert provenance["activity"]["coding"][0]["code"] == "CREATE"

    again = filed.client.post(filed.file_url, data=filed.form())
    assert again.status_code == 200, page_text(again.text)
    shown = page_text(again.text)
    assert f"documentreference/prior-auth already in the chart {reference}" in shown
    assert "created" not in re.search(r'id="filed-table".*?</table>', again.text, re.S)[0]
    assert [d["id"] for d in _documents(filed.base, filed.patient)] == [document["id"]]
    assert len(_provenances(filed.base, reference)) == 1
    search = f"{codes.APP_IDENTIFIER}|{identifier['value']}"
    found = fhirserver.search(
        filed.base, f"DocumentReference?identifier={quote(search, safe='|:/')}"
    )
    assert [r["id"] for r in found] == [document["id"]]


def test_a_post_without_the_csrf_token_files_nothing(filed: Filed) -> None:
    form = filed.form()
    missing = {k: v for k, v in form.items() if k != "csrf_token"}
    assert filed.client.post(filed.file_url, data=missing).status_code == 403
    forged = filed.client.post(filed.file_url, data={**form, "csrf_token": "forged"})
    assert forged.status_code == 403
    assert _documents(filed.base, filed.patient) == []


# The letter's signer: the launch's Practitioner, read once -----------------------------------

NPI = "1234567890"
"""An NPI-shaped number (ten digits, its check digit wrong: no real provider's)."""


def _practitioner(base: str) -> str:
    """A Practitioner with a name and an NPI put on the server under a fresh id; its id."""
    pid = f"dr-lee-{uuid.uuid4().hex[:8]}"
    status, _ = fhirserver.http_json(
        "PUT",
        f"{base}/Practitioner/{pid}",
        {
            "resourceType": "Practitioner",
            "id": pid,
            "identifier": [{"system": summary.NPI_SYSTEM, "value": NPI}],
            "name": [{"prefix": ["Dr."], "given": ["Dana"], "family": "Lee", "suffix": ["MD"]}],
        },
    )
    assert status in (200, 201)
    return pid


def _letter_closing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    proxy: fhirserver.Proxy,
    patient: str,
    user: str,
) -> tuple[str, str]:
    """The packet page's signature block and the PDF's text, for a launch by `user`, the app
    reading through the proxy."""
    serve_through(monkeypatch, FhirGateway(proxy.base), documents)
    client = planner_app(tmp_path).test_client()
    launched = dataclasses.replace(context.LaunchContext(iss=ISS, patient=patient), fhir_user=user)
    base = f"/p/{store_context(client, launched)}/print/prior-auth"
    page = client.get(base, query_string={"infusion_date": INFUSION})
    assert page.status_code == 200, page.text
    closing = re.search(r'<p class="letter-closing">(.*?)</p>', page.text, re.S)
    assert closing
    pdf = client.get(f"{base}.pdf", query_string={"infusion_date": INFUSION})
    assert pdf.status_code == 200
    return page_text(closing[1].replace("<br>", " | ")), _pdf_text(pdf.data)


def test_the_letter_is_signed_with_the_practitioners_name_and_npi(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fhir_server: str,
    proxy: fhirserver.Proxy,
    load: Callable[[str], str],
) -> None:
    patient = load("infant-eligible")
    practitioner = _practitioner(fhir_server)
    closing, pdf = _letter_closing(
        tmp_path, monkeypatch, proxy, patient, f"Practitioner/{practitioner}"
    )
    assert f"| Dr. Dana Lee, MD | NPI: {NPI} | [organization] | Date:" in closing
    assert f"Dr. Dana Lee, MD NPI: {NPI}" in pdf
    assert "[prescriber name]" not in pdf
    reads = [c for c in proxy.calls if c == ("GET", f"/fhir/Practitioner/{practitioner}")]
    assert len(reads) == 2, "one read for the page, one for the PDF"
    assert not [c for c in proxy.calls if "Practitioner" in c[1] and c not in reads]


@pytest.mark.parametrize("failure", ["missing", "forbidden", "unreachable"])
def test_a_practitioner_that_cannot_be_read_leaves_the_placeholder(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fhir_server: str,
    proxy: fhirserver.Proxy,
    load: Callable[[str], str],
    failure: str,
) -> None:
    patient = load("infant-eligible")
    practitioner = _practitioner(fhir_server)
    path = f"/fhir/Practitioner/{practitioner}"
    if failure == "missing":
        practitioner = f"absent-{uuid.uuid4().hex[:8]}"
    elif failure == "forbidden":
        for _ in range(2):
            proxy.fail_next("GET", path, 403, "the granted scopes do not cover Practitioner")
    else:
        for _ in range(2):
            proxy.fault_next("GET", path, fhirserver.FaultMode.DROP_AFTER)
    closing, pdf = _letter_closing(
        tmp_path, monkeypatch, proxy, patient, f"Practitioner/{practitioner}"
    )
    assert "| [prescriber name] | [organization] | Date:" in closing
    assert "NPI" not in closing
    assert "[prescriber name]" in pdf and "Dana Lee" not in pdf
    assert not proxy.faults, "each read met its fault"
