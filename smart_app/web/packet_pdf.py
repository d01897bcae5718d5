"""The prior-authorization packet as a PDF (fpdf2, core fonts): the same content as the printed
page, rendered to the same bytes for the same packet.

Deterministic: the creation date is the packet's evaluation date, the file identifier is fpdf2's
hash of the content, and nothing else varies, so the same facts give the same document (the
chart write keys the DocumentReference on these bytes). The core fonts cover Latin-1 only:
`pdf_text` maps every other character the app writes (≤ ≥ – — ’ superscripts...) to plain text
from a table, transliterates accented letters outside Latin-1, and shows anything else as
`[U+XXXX]`, never dropping it silently.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from smart_app.fhir.summary import Banner
from smart_app.rules.prior_auth import Criterion, CriterionStatus, Packet
from smart_app.rules.prior_auth_letter import Letter
from smart_app.web import words

TITLE = "Prior-authorization packet"
PRODUCT = "ZOLGENSMA (onasemnogene abeparvovec-xioi) suspension for intravenous infusion"
PAYERS_VARY = (
    "Payer criteria vary: these are the criteria payers commonly ask. Check the payer's own "
    "policy and form; this packet does not replace them."
)

PDF_SAFE = {
    "≤": "<=",
    "≥": ">=",
    "–": "-",
    "—": "-",
    "‑": "-",
    "−": "-",
    "‘": "'",
    "’": "'",
    "“": '"',
    "”": '"',
    "…": "...",
    "•": "-",
    "→": "->",
    "←": "<-",
    "≈": "~",
    "✓": "yes",
    "\u00a0": " ",
    "\u2009": " ",
    "\u202f": " ",
    "\u200b": "",
    "₂": "2",
    "Ł": "L",
    "ł": "l",
    "Đ": "D",
    "đ": "d",
    "ı": "i",
    "Œ": "OE",
    "œ": "oe",
}
"""Characters outside Latin-1 the core fonts cannot show, and the text that stands for them
(× µ ° § ± ³ are Latin-1 and are kept as they are)."""
SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")
SUPERSCRIPT_RUN = re.compile("[⁰¹²³⁴⁵⁶⁷⁸⁹⁻]+")
"""A power written in superscripts ('10¹⁴'), shown as '10^14'."""

STATUS_WORDS = {
    CriterionStatus.MET: "MET",
    CriterionStatus.NOT_MET: "NOT MET",
    CriterionStatus.MISSING: "MISSING",
    CriterionStatus.NOTED: "NOTED",
}
STATUS_FILL = {
    CriterionStatus.MET: (27, 94, 32),
    CriterionStatus.NOT_MET: (138, 28, 28),
    CriterionStatus.MISSING: (122, 79, 0),
    CriterionStatus.NOTED: (68, 68, 68),
}
"""Each status's tag colour (white text on it); the word says it too, for grey printers."""
FONT = "Helvetica"
LINE_MM = 5.0
TAG_MM = 22.0


@dataclass(frozen=True)
class PacketDocument:
    """What the packet shows: the rules' packet, the patient, the letter draft, the prescriber."""

    packet: Packet
    banner: Banner
    letter: Letter
    """The letter of medical necessity, drafted for the prescriber to edit and sign."""
    prescriber: str
    """Who prescribes, as a chart reference ('Practitioner/123'), or '' when none is known."""
    status: str
    """The plan's status on the planned date, in words ('eligible', 'deferred')."""
    reasons: tuple[str, ...] = ()
    """Why the plan is not eligible on that date (the rules' messages)."""
    ready: bool = True
    """False when the plan may not be written on that date: the packet is not ready to send."""


def status_counts(criteria: Sequence[Criterion]) -> list[tuple[CriterionStatus, int]]:
    """How many criteria stand at each status, in the statuses' order (none left out)."""
    counts = [(s, sum(c.status is s for c in criteria)) for s in CriterionStatus]
    return [(status, n) for status, n in counts if n]


def file_name(key: str) -> str:
    """The PDF's file name: what it is and a piece of its hash, never the patient's name or id."""
    return f"zolgensma-prior-authorization-packet-{key[:12]}.pdf"


def description(packet: Packet) -> str:
    """What the filed document is, in one sentence (DocumentReference.description)."""
    counts = ", ".join(f"{n} {s.value}" for s, n in status_counts(packet.criteria))
    return (
        f"ZOLGENSMA prior-authorization packet for an infusion planned on "
        f"{packet.infusion_date.isoformat()}, built from the chart on "
        f"{packet.evaluated_on.isoformat()}: criteria checklist with evidence ({counts}), "
        "billing facts, and a letter of medical necessity drafted for the prescriber to edit "
        "and sign (not signed)."
    )


def pdf_text(text: str) -> str:
    """Text the core fonts can show: every character outside Latin-1 mapped, never dropped."""
    text = SUPERSCRIPT_RUN.sub(lambda m: "^" + m.group(0).translate(SUPERSCRIPTS), text)
    out = []
    for char in text:
        if char in PDF_SAFE:
            out.append(PDF_SAFE[char])
        elif ord(char) < 256:
            out.append(char)
        else:
            out.append(_transliterated(char))
    return "".join(out)


def _transliterated(char: str) -> str:
    """A letter outside Latin-1 without its accents ('ő' -> 'o'), or its code point shown."""
    base = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
    if base and all(ord(c) < 256 for c in base):
        return base
    return f"[U+{ord(char):04X}]"


def section_text(section: str) -> str:
    """The label sections as cited ('2.3; 6.2' -> '§2.3, §6.2'); '' for none."""
    parts = [p.strip() for p in section.replace(",", ";").split(";") if p.strip()]
    return ", ".join(p if p.startswith("§") else f"§{p}" for p in parts)


def criterion_date(criterion: Criterion) -> str:
    """The evidence's date as clinicians write it, or ''."""
    return words.clinical_date(criterion.date) if criterion.date else ""


class _Pdf(FPDF):
    """A Letter page with the patient and page number in every footer."""

    def __init__(self, footer_text: str) -> None:
        """A portrait US Letter document in millimetres, with this footer on every page."""
        super().__init__(orientation="P", unit="mm", format="Letter")
        self.footer_text = footer_text

    def footer(self) -> None:
        """Patient, what the document is, and the page of pages, at the foot of each page."""
        self.set_y(-12)
        self.set_font(FONT, size=7.5)
        self.set_text_color(68, 68, 68)
        self.cell(0, 4, pdf_text(f"{self.footer_text} · page {self.page_no()} of {{nb}}"))
        self.set_text_color(0, 0, 0)


def render(document: PacketDocument) -> bytes:
    """The packet as PDF bytes: the same bytes for the same document."""
    packet = document.packet
    banner = document.banner
    footer = (
        f"{TITLE} · {banner.name} · DOB {words.clinical_date(banner.birth_date)} · "
        f"evaluated {words.clinical_date(packet.evaluated_on)}"
    )
    pdf = _Pdf(footer)
    pdf.set_creation_date(dt.datetime.combine(packet.evaluated_on, dt.time(), tzinfo=dt.UTC))
    pdf.set_title(TITLE)
    pdf.set_subject(PRODUCT)
    pdf.set_creator("ZOLGENSMA planner")
    pdf.set_lang("en")
    pdf.set_margins(16, 14, 16)
    pdf.set_auto_page_break(auto=True, margin=16)
    pdf.add_page()
    _header(pdf, document)
    _criteria(pdf, packet.criteria)
    _billing(pdf, packet)
    pdf.ln(3)
    _small(
        pdf,
        f"Built by the ZOLGENSMA planner from the chart on "
        f"{words.clinical_date(packet.evaluated_on)} · {packet.label_version} (§ = its "
        f"sections) · institution defaults {packet.policy_version} · the prescriber decides.",
    )
    _letter(pdf, document.letter)
    return bytes(pdf.output())


def _write(
    pdf: FPDF, text: str, *, size: float = 9.5, style: str = "", indent_mm: float = 0
) -> None:
    """A wrapped paragraph at the left margin (plus `indent_mm`)."""
    pdf.set_font(FONT, style=style, size=size)
    pdf.set_x(pdf.l_margin + indent_mm)
    pdf.multi_cell(
        pdf.epw - indent_mm,
        LINE_MM * size / 10,
        pdf_text(text),
        align="L",
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
    )


def _small(pdf: FPDF, text: str) -> None:
    """A note in small grey type."""
    pdf.set_text_color(68, 68, 68)
    _write(pdf, text, size=8)
    pdf.set_text_color(0, 0, 0)


def _heading(pdf: FPDF, text: str) -> None:
    """A section heading with a rule under it."""
    if pdf.get_y() > pdf.h - 40:
        pdf.add_page()
    pdf.ln(3)
    _write(pdf, text, size=12, style="B")
    y = pdf.get_y() + 0.5
    pdf.set_draw_color(118, 118, 118)
    pdf.line(pdf.l_margin, y, pdf.w - pdf.r_margin, y)
    pdf.ln(2)


def _header(pdf: FPDF, document: PacketDocument) -> None:
    """Product, title, the patient and the plan's date and status."""
    packet = document.packet
    banner = document.banner
    pdf.set_text_color(68, 68, 68)
    _write(pdf, PRODUCT.upper(), size=8)
    pdf.set_text_color(0, 0, 0)
    _write(pdf, TITLE, size=17, style="B")
    pdf.ln(1)
    mrn = f" · MRN {banner.identifier}" if banner.identifier else ""
    _write(pdf, f"Patient: {banner.name}", size=11, style="B")
    _write(
        pdf,
        f"Birth date {words.clinical_date(banner.birth_date)}{mrn} · FHIR id {banner.patient_id}",
    )
    _write(
        pdf,
        f"Planned infusion {words.clinical_date(packet.infusion_date)} · status on that date: "
        f"{document.status} · evaluated {words.clinical_date(packet.evaluated_on)}",
    )
    prescriber = document.prescriber or "not named by the EHR launch"
    _write(pdf, f"Prescriber in the chart: {prescriber}")
    if not document.ready:
        pdf.set_text_color(138, 28, 28)
        _write(pdf, f"NOT READY TO SEND: the plan is {document.status}.", size=11, style="B")
        pdf.set_text_color(0, 0, 0)
    for reason in document.reasons:
        _write(pdf, f"- {words.clinical_text(reason)}", indent_mm=3)
    pdf.ln(1)
    _write(pdf, PAYERS_VARY, size=9, style="I")


def _criteria(pdf: FPDF, criteria: Sequence[Criterion]) -> None:
    """Each criterion: its status tag, title and evidence (value, date, source, section, note)."""
    _heading(pdf, "Criteria payers commonly ask, with the evidence")
    _small(pdf, " · ".join(f"{n} {s.value}" for s, n in status_counts(criteria)))
    for criterion in criteria:
        if pdf.get_y() > pdf.h - 36:
            pdf.add_page()
        pdf.ln(1.5)
        top = pdf.get_y()
        pdf.set_font(FONT, style="B", size=8)
        pdf.set_fill_color(*STATUS_FILL[criterion.status])
        pdf.set_text_color(255, 255, 255)
        pdf.cell(TAG_MM, 5, STATUS_WORDS[criterion.status], align="C", fill=True)
        pdf.set_text_color(0, 0, 0)
        pdf.set_xy(pdf.l_margin + TAG_MM + 3, top)
        pdf.set_font(FONT, style="B", size=10)
        pdf.multi_cell(
            pdf.epw - TAG_MM - 3,
            5,
            pdf_text(criterion.title),
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )
        indent = TAG_MM + 3
        for name, text in _evidence(criterion):
            _write(pdf, f"{name}: {text}", size=9, indent_mm=indent)


def _evidence(criterion: Criterion) -> list[tuple[str, str]]:
    """The evidence lines of one criterion that have something to say."""
    lines = [
        ("Value", words.clinical_text(criterion.value) or "none found in the chart"),
        ("Date", criterion_date(criterion)),
        ("Source", ", ".join(criterion.sources)),
        ("Label", section_text(criterion.section)),
        ("Note", words.clinical_text(criterion.note)),
    ]
    return [(name, text) for name, text in lines if text]


def _billing(pdf: FPDF, packet: Packet) -> None:
    """HCPCS code and units, the kit NDC in both forms, the ICD-10-CM codes."""
    billing = packet.billing
    _heading(pdf, "Billing facts")
    units = f"{billing.hcpcs_units} unit{'s' if billing.hcpcs_units != 1 else ''}"
    _write(pdf, f"HCPCS {billing.hcpcs}: {units}", style="B")
    _write(pdf, f"Descriptor: {billing.hcpcs_descriptor}")
    if billing.hcpcs_source:
        _small(pdf, billing.hcpcs_source)
    if billing.ndc_11:
        _write(pdf, f"NDC (11-digit, billing): {billing.ndc_11}", style="B")
        _write(pdf, f"NDC on a claim, digits only: {billing.ndc_11.replace('-', '')}")
        _write(pdf, f"NDC (10-digit, as on the kit): {billing.ndc_10 or 'unknown'}")
    else:
        _write(pdf, "NDC: no kit is chosen (no dosing weight in the label's range).")
    if billing.icd10:
        for code, display in billing.icd10:
            _write(pdf, f"ICD-10-CM {code}: {display}".rstrip(": "))
    else:
        _write(pdf, "ICD-10-CM: no SMA diagnosis (G12.0 / G12.1) recorded in the chart.")


def _letter(pdf: FPDF, letter: Letter) -> None:
    """The letter of medical necessity on a page of its own, marked DRAFT, with its notice,
    paragraphs, signature block and the bracketed items left to complete."""
    pdf.add_page()
    _write(pdf, letter.title, size=13, style="B")
    pdf.ln(1)
    pdf.set_text_color(138, 28, 28)
    _write(pdf, letter.notice, size=9, style="B")
    pdf.set_text_color(0, 0, 0)
    pdf.ln(3)
    for line in (letter.addressee, letter.subject):
        _write(pdf, line, size=10)
    pdf.ln(2)
    _write(pdf, letter.salutation, size=10)
    for paragraph in letter.paragraphs:
        pdf.ln(2)
        _write(pdf, paragraph.heading, size=10, style="B")
        _write(pdf, words.clinical_text(paragraph.text), size=10)
    pdf.ln(4)
    for line in letter.closing:
        _write(pdf, line, size=10)
    if letter.placeholders:
        _heading(pdf, "To complete before signing")
        for hole in letter.placeholders:
            _write(pdf, f"- {hole}", size=9, indent_mm=3)
