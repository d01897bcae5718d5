"""How writes are made, as chosen in configuration: enums with no dependencies of their own."""

from __future__ import annotations

from enum import StrEnum


class OrderMode(StrEnum):
    """How orders are written: a proposal for the prescriber to sign, or an active order."""

    PROPOSAL = "proposal"
    ORDER = "order"

    @property
    def status(self) -> str:
        """MedicationRequest.status."""
        return "draft" if self is OrderMode.PROPOSAL else "active"


class Strategy(StrEnum):
    """How a prepared write reaches a server (issue: servers differ in what they accept)."""

    AUTO = "auto"
    """Chosen from the server's CapabilityStatement."""
    TRANSACTION = "transaction"
    """One transaction with conditional creates: for servers that take them whole."""
    LOOKUP = "lookup"
    """One search for the app's identifiers, then plain creates and version-checked updates:
    in one transaction where the server takes one, else in batches."""
    PER_RESOURCE = "per-resource"
    """Ordered creates and updates one by one, for servers without transactions or batches."""
