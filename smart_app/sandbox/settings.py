"""The sandbox EHR's settings: registered apps, launcher patients and keys (imports nothing of the
sandbox, so the EHR, its authorization server and its CDS client all share it without a cycle)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from joserfc.jwk import RSAKey

CDS_JWT_ALG = "RS384"
"""The algorithm of the EHR's CDS Hooks client JWTs (signed with EhrSettings.cds_key)."""


def new_signing_key() -> RSAKey:
    """A fresh 2048-bit RSA key for RS256 id_tokens, with a thumbprint kid."""
    return RSAKey.generate_key(2048, parameters={"use": "sig", "alg": "RS256"}, auto_kid=True)


def new_cds_key() -> RSAKey:
    """A fresh 2048-bit RSA key for RS384 CDS Hooks client JWTs, with a thumbprint kid."""
    return RSAKey.generate_key(2048, parameters={"use": "sig", "alg": CDS_JWT_ALG}, auto_kid=True)


@dataclass(frozen=True)
class SandboxClient:
    """An app registered with the sandbox EHR."""

    client_id: str
    redirect_uris: tuple[str, ...]
    launch_url: str
    """The app's EHR-launch URL, e.g. http://127.0.0.1:8092/launch."""
    client_secret: str | None = field(default=None, repr=False)
    """Confidential-symmetric: client_secret_basic and client_secret_post."""
    jwks: dict[str, Any] | None = None
    """Confidential-asymmetric: the client's public JWK Set, for private_key_jwt."""
    cds_services_url: str = ""
    """The app's CDS Hooks base (discovery), e.g. http://127.0.0.1:8092/cds-services; the chart
    calls its services when set."""


@dataclass(frozen=True)
class LauncherPatient:
    """A patient listed on the launcher page."""

    patient_id: str
    name: str
    birth_date: str | None
    scenario: str


@dataclass(frozen=True)
class EhrSettings:
    """Everything the sandbox EHR needs."""

    public_base: str
    """Where the EHR is served, without a trailing slash; the FHIR base is {public_base}/fhir."""
    fhir_upstream: str
    """The real FHIR server's base URL."""
    clients: tuple[SandboxClient, ...]
    patients: tuple[LauncherPatient, ...]
    practitioner_id: str = "sandbox-practitioner"
    """The signed-in EHR user (a Practitioner on the FHIR server)."""
    signing_key: RSAKey = field(default_factory=new_signing_key, repr=False)
    cds_key: RSAKey = field(default_factory=new_cds_key, repr=False)
    """Signs the EHR's CDS Hooks client JWTs (RS384), published beside signing_key."""
    access_token_lifetime_s: int = 3600
    clock: Callable[[], float] = time.time
    smart_style_url: str | None = None

    @property
    def fhir_base(self) -> str:
        """The public FHIR base URL."""
        return f"{self.public_base}/fhir"
