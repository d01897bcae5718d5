"""One exception hierarchy, each carrying a message a clinician or an operator can act on."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from smart_app.fhir.written import WriteReport


class SmartAppError(Exception):
    """Base of every error the app raises on purpose."""


class InputError(SmartAppError):
    """Input the app cannot use: a file, an argument, a bundle."""


class BundleError(InputError):
    """A FHIR Bundle that cannot be read as one patient's record."""


class PolicyError(InputError):
    """An institution policy that is malformed or unsafe."""


class FhirError(SmartAppError):
    """A FHIR server refused a request or could not be reached; carries what it said."""

    def __init__(self, message: str, *, status: int | None = None, outcome: str = "") -> None:
        detail = f" ({outcome})" if outcome else ""
        super().__init__(f"{message}{detail}")
        self.status = status
        self.outcome = outcome


class FhirUnreachable(FhirError):
    """No HTTP answer: connection refused, DNS, TLS or time-out."""


class FhirProtocolError(FhirError):
    """An answer that is not the FHIR JSON asked for."""


class FhirAnswerLost(FhirError):
    """A write was sent but its answer was lost (time-out, reset, unreadable or 5xx): the
    server may or may not have applied it."""


class FhirUnauthorized(FhirError):
    """401: the token is missing, expired or invalid."""


class FhirForbidden(FhirError):
    """403: the token's scopes or the user's rights do not allow this."""


class FhirNotFound(FhirError):
    """404 or 410: the resource or endpoint does not exist (or no longer exists)."""


class FhirUnprocessable(FhirError):
    """422 (or 400): the server rejected the content."""


class FhirConflict(FhirError):
    """409 or 412: someone else changed the resource first."""


class FhirRateLimited(FhirError):
    """429: too many requests, still refused after the bounded retries."""


class FhirServerError(FhirError):
    """5xx: the server failed."""


class PlanStateError(SmartAppError):
    """The app's plan in the chart was changed outside the app and can no longer be followed."""


class WriteBlocked(SmartAppError):
    """The plan may not be written as it stands (not eligible, incomplete, unacknowledged)."""


class WriteBackError(SmartAppError):
    """The write-back transaction failed; nothing was written."""

    def __init__(self, message: str, *, entry: str | None = None) -> None:
        super().__init__(message)
        self.entry = entry


class WriteIncomplete(SmartAppError):
    """A write the server applied in part, or whose outcome is unknown; carries the report."""

    def __init__(self, message: str, *, report: WriteReport) -> None:
        super().__init__(message)
        self.report = report


class ConfigError(InputError):
    """The web app's settings or EHR registrations are unusable."""


class LaunchError(SmartAppError):
    """A SMART launch cannot go on: unknown server, bad state, failed discovery or token."""


class SessionExpired(SmartAppError):
    """The launch context is gone or its token can no longer be refreshed: relaunch."""
