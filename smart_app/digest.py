"""A short digest of data a clinician reviewed, compared again when the write is confirmed."""

from __future__ import annotations

from typing import Any

from smart_app.jsontext import dumps_indented


def fingerprint(data: Any) -> str:
    """A short hash of JSON-ready data (its indented JSON text): what the clinician reviewed."""
    import hashlib  # only the web uses it: kept off the command line's start-up

    return hashlib.sha256((dumps_indented(data) + "\n").encode()).hexdigest()[:20]
