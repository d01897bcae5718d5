"""The prior-authorization packet's page and PDF: an eligible infant, a deferred one, and ones
with data missing; the filing form's refusals (nothing is sent to the EHR here).

The chart is the in-memory stand-in of tests/web/test_grants_web.py (the synthetic patients).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import re
from collections.abc import Iterator
from html import unescape
from typing import Any

import pytest
from flask.testing import FlaskClient
from pypdf import PdfReader

from smart_app.errors import FhirError, FhirForbidden, FhirNotFound, FhirUnreachable
from smart_app.fhir import summary
from smart_app.rules.prior_auth import KEYS, CriterionStatus
from smart_app.web import documents, packet_pdf, plan
from tests.fhir.test_followup_write import USER as PLAN_WRITER
from tests.smartsandbox import TODAY, field
from tests.web.planner_app import ISS, launch_context, page_text, serve_through, store_context
from tests.web.test_grants_web import READ_ONLY, ChartGateway, chart_reader

ELIGIBLE = "zs-eligible-4-2kg"
"""4.2 kg, 2 months old: kit 71894-123-03 (11-digit 71894-0123-03), SMA G12.0."""
DEFERRED = "zs-aav9-titer-1-100"
"""Anti-AAV9 titer 1:100, above 1:50."""
LABS_MISSING = "zs-baseline-labs-missing"
"""Baseline PTT (and troponin I, which the default policy does not require) not drawn."""
NO_WEIGHT = "zs-weight-missing"
"""Never weighed: no kit, so no NDC."""
USER = "https://ehr.example.org/fhir/Practitioner/dr-lee"
ON_PLAN = "zs-day-28"
"""A patient whose plan the app wrote, its kit ordered by PLAN_WRITER."""
DR_LEE = {
    "resourceType": "Practitioner",
    "id": "dr-lee",
    "identifier": [{"system": summary.NPI_SYSTEM, "value": "1234567893"}],
    "name": [
        {"use": "old", "family": "Smith"},
        {
            "use": "official",
            "prefix": ["Dr."],
            "given": ["Dana"],
            "family": "Lee",
            "suffix": ["MD"],
        },
    ],
}


class PacketGateway(ChartGateway):
    """The EHR stand-in, also reading single resources: those in `held`, else `refusal`."""

    def __init__(self) -> None:
        super().__init__(chart_reader(ON_PLAN))
        self.held: dict[str, dict[str, Any]] = {}
        self.refusal: FhirError = FhirNotFound("read Practitioner: not found (404)", status=404)
        self.reads: list[str] = []

    def read(self, relative: str) -> dict[str, Any]:
        self.reads.append(relative)
        if relative in self.held:
            return self.held[relative]
        raise self.refusal


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[PacketGateway]:
    """The EHR stand-in: reads the synthetic patients (and no Practitioner unless one is put in
    `held`); anything sent fails the test."""
    fake = PacketGateway()
    serve_through(monkeypatch, fake, plan, documents)
    yield fake


def _launched(
    client: FlaskClient, patient: str, *, scope: str | None = None, user: str = USER
) -> str:
    """A launch in the client's session: an open server, or a token with `scope`."""
    return store_context(client, launch_context(patient, scope=scope, user=user))


def _packet(
    client: FlaskClient, patient: str, *, user: str = USER, **query: str
) -> tuple[str, str, str]:
    """The packet page of a patient: its context id, HTML and visible text."""
    context_id = _launched(client, patient, user=user)
    answer = client.get(f"/p/{context_id}/print/prior-auth", query_string=query)
    assert answer.status_code == 200, answer.text
    return context_id, answer.text, page_text(answer.text)


def _statuses(page: str) -> dict[str, str]:
    """Each criterion's key -> its status, as the page marks it."""
    return dict(re.findall(r'id="criterion-([a-z0-9-]+)" data-status="([a-z ]+)"', page))


def _row(page: str, key: str) -> str:
    """The visible text of one criterion (its row and note)."""
    match = re.search(rf'<tbody [^>]*id="criterion-{key}".*?</tbody>', page, re.S)
    assert match, key
    return page_text(match.group(0))


def _pdf_text(data: bytes) -> str:
    """Every page's text, on one line."""
    pages = PdfReader(io.BytesIO(data)).pages
    return " ".join(" ".join((p.extract_text() or "").split()) for p in pages)


def test_an_eligible_infant_meets_every_criterion_with_its_evidence(
    client: FlaskClient, gateway: PacketGateway
) -> None:
    _, page, text = _packet(client, ELIGIBLE)
    statuses = _statuses(page)
    assert list(statuses) == list(KEYS)
    assert {k: v for k, v in statuses.items() if k != "smn-therapy"} == dict.fromkeys(
        KEYS[:-1], "met"
    )
    assert statuses["smn-therapy"] == "noted"
    assert "Prior-authorization packet" in text
    assert "Amara Okafor-Test" in text
    assert "Payer criteria vary" in text
    assert "Not ready to send" not in text
    diagnosis = _row(page, "diagnosis")
    assert "✓ met" in diagnosis and "G12.0" in diagnosis
    assert "Condition/zs-eligible-4-2kg-sma" in diagnosis and "§1" in diagnosis
    titer = _row(page, "titer")
    assert "<1:25" in titer and "Observation/zs-eligible-4-2kg-aav9" in titer
    assert "§2.3, §6.2" in titer
    weight = _row(page, "weight-kit")
    assert "4.2 kg; kit NDC 71894-123-03" in weight
    assert re.search(r"\d{1,2} [A-Z][a-z]{2} \d{4}", weight), "the weight's date"
    assert "payer criteria vary" in _row(page, "smn-therapy")
    # billing facts
    assert "HCPCS J3399 , 1 unit" in text
    assert "Institution default" in page_text(re.search(r'id="hcpcs-source".*?</td>', page)[0])
    assert "NDC, 11-digit (billing) 71894-0123-03" in text
    assert "digits only: 71894012303" in text
    assert "NDC, 10-digit (as on the kit) 71894-123-03" in text
    assert "ICD-10-CM G12.0 Infantile spinal muscular atrophy" in text
    # the letter: a draft for the prescriber
    assert "Letter of medical necessity DRAFT" in text
    assert "DRAFT for the prescriber to review, edit and sign" in text
    assert "I am writing to request coverage of ZOLGENSMA" in text
    assert "[prescriber name]" in text  # a chart reference is no name: left for the prescriber
    assert "Prescriber in the chart: Practitioner/dr-lee" in text
    assert USER not in text
    assert gateway.sent == []


def test_the_page_offers_the_pdf_and_a_filing_form_with_the_csrf_token(
    client: FlaskClient, gateway: PacketGateway
) -> None:
    context_id, page, _ = _packet(client, ELIGIBLE)
    infusion = (TODAY + dt.timedelta(days=1)).isoformat()
    pdf = unescape(re.search(r'<a id="packet-pdf" href="([^"]+)"', page)[1])
    assert pdf == f"/p/{context_id}/print/prior-auth.pdf?infusion_date={infusion}"
    form = re.search(
        r'<form method="post" action="([^"]+)"[^>]*id="file-form">(.*?)</form>', page, re.S
    )
    assert form, "no filing form"
    assert form[1] == f"/p/{context_id}/print/prior-auth/file"
    assert field(form[2], "csrf_token")
    assert field(form[2], "infusion_date") == infusion
    assert re.fullmatch(r"[0-9a-f]{32}", field(form[2], "fingerprint"))
    assert 'id="file-packet"' in form[2]


@dataclasses.dataclass(frozen=True)
class Shortfall:
    """A packet with a criterion not met or missing: how its row and the page say so."""

    patient: str
    key: str
    status: str
    in_row: tuple[str, ...]
    in_text: tuple[str, ...]
    met: tuple[str, ...] = ()
    """Other criteria still met."""
    not_in_text: tuple[str, ...] = ()


SHORTFALLS = {
    "deferred-titer-not-met": Shortfall(
        DEFERRED,
        "titer",
        "not met",
        in_row=("✗ not met", "1:100"),
        in_text=(
            "Not ready to send",
            "The plan is deferred",
            "[not met: Anti-AAV9 antibody titer at or below 1:50: 1:100",
            "To complete before signing",
        ),
        met=("diagnosis", "smn1", "age"),
    ),
    "baseline-labs-missing": Shortfall(
        LABS_MISSING,
        "baseline-labs",
        "missing",
        in_row=("? missing", "missing: PTT;"),
        in_text=("Not ready to send", "baseline laboratory tests: not recorded"),
        met=("weight-kit",),
    ),
    "no-weight-no-kit-no-ndc": Shortfall(
        NO_WEIGHT,
        "weight-kit",
        "missing",
        in_row=(),
        in_text=(
            "No kit is chosen",
            "HCPCS J3399",
            "[NDC: no kit until a current weight is recorded]",
        ),
        not_in_text=("71894-",),
    ),
}


@pytest.mark.parametrize("case", list(SHORTFALLS.values()), ids=list(SHORTFALLS))
def test_a_criterion_not_met_or_missing_is_marked_and_named(
    client: FlaskClient, gateway: PacketGateway, case: Shortfall
) -> None:
    _, page, text = _packet(client, case.patient)
    statuses = _statuses(page)
    assert statuses[case.key] == case.status
    assert {key: statuses[key] for key in case.met} == dict.fromkeys(case.met, "met")
    row = _row(page, case.key)
    assert [words for words in case.in_row if words not in row] == []
    assert [words for words in case.in_text if words not in text] == []
    assert [words for words in case.not_in_text if words in text] == []


def test_the_pdf_is_a_deterministic_attachment_that_names_neither_patient_nor_id(
    client: FlaskClient, gateway: PacketGateway
) -> None:
    context_id = _launched(client, ELIGIBLE)
    first = client.get(f"/p/{context_id}/print/prior-auth.pdf")
    second = client.get(f"/p/{context_id}/print/prior-auth.pdf")
    assert first.status_code == 200
    assert first.mimetype == "application/pdf"
    assert first.data.startswith(b"%PDF-")
    assert first.data == second.data, "the same facts give the same bytes"
    disposition = first.headers["Content-Disposition"]
    assert re.fullmatch(
        r'attachment; filename="zolgensma-prior-authorization-packet-[0-9a-f]{12}\.pdf"',
        disposition,
    )
    assert "Okafor" not in disposition and ELIGIBLE not in disposition
    assert first.headers["Cache-Control"] == "no-store"
    text = _pdf_text(first.data)
    assert "Prior-authorization packet" in text
    assert "Amara Okafor-Test" in text
    assert "Payer criteria vary" in text
    assert "J3399" in text and "71894-0123-03" in text and "G12.0" in text
    assert text.count("MET") >= 9 and "NOTED" in text
    infusion = TODAY + dt.timedelta(days=1)
    assert f"Planned infusion {infusion.day} {infusion:%b} {infusion.year}" in text
    assert "DRAFT: Letter of medical necessity" in text
    assert ">= 30 seconds" in text  # the label's ≥, in characters the core fonts have


def test_another_infusion_date_makes_another_pdf(
    client: FlaskClient, gateway: PacketGateway
) -> None:
    context_id = _launched(client, ELIGIBLE)
    url = f"/p/{context_id}/print/prior-auth.pdf"
    later = (TODAY + dt.timedelta(days=6)).isoformat()
    assert client.get(url).data != client.get(url, query_string={"infusion_date": later}).data


def test_the_plan_page_links_to_the_packet(client: FlaskClient, gateway: PacketGateway) -> None:
    context_id = _launched(client, ELIGIBLE)
    page = client.get(f"/p/{context_id}/").text
    href = unescape(re.search(r'<a data-document="prior-auth" href="([^"]+)"', page)[1])
    assert href.startswith(f"/p/{context_id}/print/prior-auth")
    assert client.get(href).status_code == 200


def test_a_read_only_launch_gets_no_filing_form_and_a_post_is_refused(
    client: FlaskClient, gateway: PacketGateway
) -> None:
    context_id = _launched(client, ELIGIBLE, scope=READ_ONLY)
    page = client.get(f"/p/{context_id}/print/prior-auth").text
    assert 'id="file-form"' not in page
    assert "Filing to the chart is not offered" in page_text(page)
    assert "DocumentReference" in page_text(page)
    csrf = "t" * 43
    with client.session_transaction() as session:
        session["csrf"] = csrf  # a valid token: the grants refuse, not the CSRF check
    answer = client.post(
        f"/p/{context_id}/print/prior-auth/file", data={"csrf_token": csrf, "fingerprint": "0"}
    )
    assert answer.status_code == 403
    assert "Nothing was filed" in page_text(answer.text)
    assert gateway.sent == []


def test_the_filing_post_needs_the_csrf_token_and_the_packet_that_was_shown(
    client: FlaskClient, gateway: PacketGateway
) -> None:
    context_id, page, _ = _packet(client, ELIGIBLE)
    url = f"/p/{context_id}/print/prior-auth/file"
    form = {
        "csrf_token": field(page, "csrf_token"),
        "fingerprint": field(page, "fingerprint"),
        "infusion_date": field(page, "infusion_date"),
    }
    assert client.post(url, data={**form, "csrf_token": ""}).status_code == 403
    assert client.post(url, data={**form, "csrf_token": "forged"}).status_code == 403
    foreign = client.post(url, data=form, headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403
    stale = client.post(url, data={**form, "fingerprint": "0" * 32})
    assert stale.status_code == 409
    assert "The chart changed since this packet was shown" in page_text(stale.text)
    assert gateway.sent == []


def test_pdf_text_maps_what_the_core_fonts_lack_and_drops_nothing() -> None:
    assert packet_pdf.pdf_text("ALT ≤ 2 × ULN, ≥ 30 s") == "ALT <= 2 × ULN, >= 30 s"
    assert packet_pdf.pdf_text("1.1 × 10¹⁴ vg; 254 10³/µL") == "1.1 × 10^14 vg; 254 10^3/µL"
    assert packet_pdf.pdf_text("2–8 °C — don’t “shake”") == '2-8 °C - don\'t "shake"'
    assert packet_pdf.pdf_text("24\u00a0Nov\u00a02026") == "24 Nov 2026"
    assert packet_pdf.pdf_text("Łucja Dvořák") == "Lucja Dvorák"  # á is Latin-1: kept
    assert packet_pdf.pdf_text("脊髄") == "[U+810A][U+9AC4]"
    for text in ("≤≥–—’“”…•→", "¹⁴", "Ωμ"):
        assert packet_pdf.pdf_text(text).encode("latin-1")  # representable, never empty


def test_every_status_has_a_word_and_a_colour() -> None:
    assert set(packet_pdf.STATUS_WORDS) == set(CriterionStatus)
    assert set(packet_pdf.STATUS_FILL) == set(CriterionStatus)
    assert set(documents.STATUS_MARKS) == set(CriterionStatus)


def test_the_label_sections_are_cited_one_by_one() -> None:
    assert packet_pdf.section_text("2.3; 6.2") == "§2.3, §6.2"
    assert packet_pdf.section_text("1") == "§1"
    assert packet_pdf.section_text("") == ""


def _closing(page: str) -> str:
    """The letter's signature block, as the page shows it."""
    match = re.search(r'<p class="letter-closing">(.*?)</p>', page, re.S)
    assert match, "no signature block"
    return page_text(match.group(1).replace("<br>", " | "))


def test_the_letter_is_signed_with_the_name_and_npi_of_the_launchs_practitioner(
    client: FlaskClient, gateway: PacketGateway
) -> None:
    gateway.held["Practitioner/dr-lee"] = DR_LEE
    context_id, page, text = _packet(client, ELIGIBLE)
    assert gateway.reads == ["Practitioner/dr-lee"], "one read, of the launch's user"
    closing = _closing(page)
    assert "Dr. Dana Lee, MD | NPI: 1234567893 | [organization] |" in closing
    assert "[prescriber name]" not in text
    assert "Smith" not in text, "an old name is not used"
    assert "Prescriber in the chart: Practitioner/dr-lee" in text
    pdf = _pdf_text(client.get(f"/p/{context_id}/print/prior-auth.pdf").data)
    assert "Dr. Dana Lee, MD NPI: 1234567893 [organization]" in pdf
    assert "[prescriber name]" not in pdf
    assert gateway.sent == []


def test_a_relative_fhir_user_is_read_on_the_launchs_server(
    client: FlaskClient, gateway: PacketGateway
) -> None:
    gateway.held["Practitioner/dr-lee"] = DR_LEE
    _, page, _ = _packet(client, ELIGIBLE, user="Practitioner/dr-lee")
    assert gateway.reads == ["Practitioner/dr-lee"]
    assert _closing(page).startswith("Sincerely, | | Signature: ")
    assert "| Dr. Dana Lee, MD | NPI: 1234567893 |" in _closing(page)


def test_a_practitioner_role_names_the_signer_and_the_organization(
    client: FlaskClient, gateway: PacketGateway
) -> None:
    gateway.held["PractitionerRole/lee-neuro"] = {
        "resourceType": "PractitionerRole",
        "id": "lee-neuro",
        "practitioner": {"reference": "Practitioner/dr-lee", "display": "Dr. Dana Lee"},
        "organization": {"reference": "Organization/cn", "display": "Children's Neuromuscular"},
    }
    _, page, text = _packet(client, ELIGIBLE, user=f"{ISS}/PractitionerRole/lee-neuro")
    assert gateway.reads == ["PractitionerRole/lee-neuro"], "the role only: one read"
    assert "| Dr. Dana Lee | Children's Neuromuscular | Date:" in _closing(page)
    assert "NPI" not in _closing(page)
    assert "[organization]" not in text and "[prescriber name]" not in text


@pytest.mark.parametrize(
    "refusal",
    [
        FhirForbidden("read Practitioner: forbidden (403)", status=403),
        FhirNotFound("read Practitioner: not found (404)", status=404),
        FhirUnreachable("read Practitioner: cannot reach ehr.example.org (ConnectionError)"),
    ],
    ids=["403", "404", "unreachable"],
)
def test_a_practitioner_that_cannot_be_read_leaves_the_placeholder(
    client: FlaskClient, gateway: PacketGateway, refusal: FhirError
) -> None:
    gateway.refusal = refusal
    context_id, page, _ = _packet(client, ELIGIBLE)
    assert gateway.reads == ["Practitioner/dr-lee"]
    assert "| [prescriber name] | [organization] | Date:" in _closing(page)
    assert "NPI" not in _closing(page)
    assert "[prescriber name]" in page_text(re.search(r'id="letter-holes".*?</ul>', page, re.S)[0])
    answer = client.get(f"/p/{context_id}/print/prior-auth.pdf")
    assert answer.status_code == 200
    assert "[prescriber name]" in _pdf_text(answer.data)


@pytest.mark.parametrize(
    "user",
    [
        "https://other-ehr.example.org/fhir/Practitioner/dr-lee",
        "Patient/zs-eligible-4-2kg",
        "RelatedPerson/mother",
        "Practitioner/not an id",
        "",
    ],
    ids=["another-server", "patient", "related-person", "bad-id", "none"],
)
def test_a_user_that_is_no_practitioner_on_the_launchs_server_is_not_read(
    client: FlaskClient, gateway: PacketGateway, user: str
) -> None:
    gateway.held["Practitioner/dr-lee"] = DR_LEE
    _, page, _ = _packet(client, ELIGIBLE, user=user)
    assert gateway.reads == []
    assert "| [prescriber name] | [organization] | Date:" in _closing(page)


def test_a_written_plan_is_signed_by_its_kit_orders_requester(
    client: FlaskClient, gateway: PacketGateway
) -> None:
    writer = PLAN_WRITER.removeprefix("Practitioner/")
    gateway.held[PLAN_WRITER] = {
        "resourceType": "Practitioner",
        "id": writer,
        "name": [{"given": ["Sam"], "family": "Rivera", "prefix": ["Dr."]}],
    }
    gateway.held["Practitioner/dr-lee"] = DR_LEE
    _, page, text = _packet(client, ON_PLAN)
    assert gateway.reads == [PLAN_WRITER], "the order's prescriber, not the viewer"
    assert "| Dr. Sam Rivera | [organization] |" in _closing(page)
    assert f"Prescriber in the chart: {PLAN_WRITER}" in text
    assert "Dana Lee" not in text
