"""What a write did, as JSON-ready rows: the command's WRITTEN section, the pages' write report
and the rows the web's ledger stores."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from smart_app.fhir.written import WriteReport, Written


def written_data(written: Written) -> dict[str, str]:
    """One resource of a write as JSON: its reference, outcome, item and the server's words."""
    row = {"reference": written.reference, "outcome": written.outcome.value}
    if written.item:
        row["item"] = written.item
    if written.detail:
        row["detail"] = written.detail
    return row


def report_data(report: WriteReport, message: str) -> dict[str, Any]:
    """A partial or unknown write for the page: its state, the message and every entry."""
    return {
        "state": report.state.value,
        "strategy": report.strategy.value,
        "read_back": report.read_back,
        "message": message,
        "rows": [written_data(w) for w in report.written],
    }
