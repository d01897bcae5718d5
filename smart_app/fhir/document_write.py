"""A printed document filed to the chart: one transaction of a DocumentReference holding the PDF
and a Provenance over it.

The DocumentReference is keyed by the PDF itself: its app identifier is a SHA-256 of the bytes,
and it is created with `ifNoneExist` on that identifier, so filing the same document twice
creates it once (the PDF is rendered deterministically from the facts, so the same facts give
the same bytes). Its `docStatus` is `preliminary`: the packet holds a letter of medical
necessity that is a draft until the prescriber edits and signs it; `status` is `current` (the
reference itself is in force). The attachment carries the size and the base64 SHA-1 hash FHIR
defines for `Attachment.hash`, so a reader can check what it fetched.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fhir.resources.R4B.documentreference import DocumentReference
from pydantic import ValidationError

from smart_app.errors import WriteBackError, WriteBlocked
from smart_app.fhir import codes
from smart_app.fhir.gateway import PatientRecord
from smart_app.fhir.plan_bundle import EntryBuilder, validate_bundle

Resource = dict[str, Any]

PDF = "application/pdf"
DOCUMENT_ITEM = "documentreference/prior-auth"
"""The item name of the packet's DocumentReference (its identifier ends with it)."""
PRIOR_AUTH_TYPE = {
    "coding": [
        {
            "system": codes.APP_CODES,
            "code": "prior-authorization-packet",
            "display": "Prior authorization packet",
        }
    ],
    "text": "Prior authorization packet",
}
KEY_HEX_DIGITS = 32
"""How much of the PDF's SHA-256 names the document (128 bits)."""


@dataclass(frozen=True)
class Filing:
    """A PDF to file in the chart, what it is called, and who files it when."""

    pdf: bytes
    title: str
    description: str
    created_on: dt.date
    """The date the document's facts were evaluated on (Attachment.creation)."""
    recorded: dt.datetime
    """When the clinician confirmed the filing (DocumentReference.date, Provenance.recorded)."""
    fhir_user: str | None = None
    label_version: str = ""

    @property
    def key(self) -> str:
        """The document's app key: a SHA-256 of the PDF bytes (pdf_key)."""
        return pdf_key(self.pdf)


def pdf_key(pdf: bytes) -> str:
    """The app key a PDF is filed under: its SHA-256, hex, shortened to 128 bits."""
    return hashlib.sha256(pdf).hexdigest()[:KEY_HEX_DIGITS]


def attachment(filing: Filing) -> Resource:
    """The PDF as an Attachment: inline base64 data, its size and base64 SHA-1 hash (the hash
    FHIR R4 defines for Attachment.hash: an integrity check, not a security control)."""
    sha1 = hashlib.sha1(filing.pdf, usedforsecurity=False).digest()
    return {
        "contentType": PDF,
        "language": "en",
        "data": base64.b64encode(filing.pdf).decode("ascii"),
        "size": len(filing.pdf),
        "hash": base64.b64encode(sha1).decode("ascii"),
        "title": filing.title,
        "creation": filing.created_on.isoformat(),
    }


class _DocumentBuilder(EntryBuilder):
    """The entries of one document filing: the DocumentReference, then its Provenance."""

    def document(self, filing: Filing) -> str:
        """A conditional create of the DocumentReference on its app identifier; its fullUrl.

        Written without the app's profiles (none is defined for documents): the R4B model
        checks it before anything is sent."""
        ident = self.identifier(DOCUMENT_ITEM)
        full_url = self.full_url(ident)
        resource: Resource = {
            "resourceType": "DocumentReference",
            "identifier": [ident],
            "status": "current",
            "docStatus": "preliminary",
            "type": PRIOR_AUTH_TYPE,
            "subject": self.patient,
            "date": self.recorded,
            "description": filing.description,
            "content": [{"attachment": attachment(filing)}],
        }
        if self.user:
            resource["author"] = [self.user]
        search = f"identifier={quote(ident['system'], safe=':/')}|{quote(ident['value'], safe='/')}"
        self.entries.append(
            {
                "fullUrl": full_url,
                "resource": resource,
                "request": {"method": "POST", "url": "DocumentReference", "ifNoneExist": search},
            }
        )
        return full_url


def document_bundle(filing: Filing, *, patient_id: str, record: PatientRecord) -> Resource:
    """The transaction that files the PDF: a DocumentReference and a Provenance (validated)."""
    if not filing.pdf.startswith(b"%PDF-"):
        raise WriteBlocked("nothing written: the document is not a PDF")
    if filing.recorded.tzinfo is None:
        raise WriteBlocked("the recorded time must carry a time zone")
    builder = _DocumentBuilder(
        key=filing.key,
        patient_id=patient_id,
        record=record,
        recorded=filing.recorded,
        fhir_user=filing.fhir_user,
        label_version=filing.label_version,
    )
    builder.document(filing)
    builder.provenance()
    document, *rest = builder.entries
    checked = validate_bundle({"resourceType": "Bundle", "type": "transaction", "entry": rest})
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{**document, "resource": _valid_document(document["resource"])}]
        + checked["entry"],
    }


def _valid_document(resource: Resource) -> Resource:
    """The DocumentReference checked against the R4B model, as clean JSON."""
    try:
        parsed = DocumentReference.model_validate(resource)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        raise WriteBackError(
            f"nothing written: the DocumentReference is not valid FHIR R4: {first['msg']}"
            + (f" at {where}" if where else ""),
            entry="entry 0 (DocumentReference)",
        ) from None
    return json.loads(parsed.model_dump_json(exclude_none=True))
