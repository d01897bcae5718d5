"""SMART scope parsing and the gateway's decisions (pure: the server is a dict)."""

from __future__ import annotations

from typing import Any

import pytest

from smart_app.sandbox import scopes
from smart_app.sandbox.scopes import Access, Grant, Permission, Refusal

BASE = "http://127.0.0.1:8091/fhir"
CTX = "pat-1"
SERVER: dict[str, dict[str, Any]] = {
    "Observation/mine": {
        "resourceType": "Observation",
        "id": "mine",
        "subject": {"reference": f"Patient/{CTX}"},
    },
    "Observation/theirs": {
        "resourceType": "Observation",
        "id": "theirs",
        "subject": {"reference": "Patient/pat-2"},
    },
    "Medication/kit": {"resourceType": "Medication", "id": "kit"},
    "Task/mine": {"resourceType": "Task", "id": "mine", "for": {"reference": f"Patient/{CTX}"}},
    "CarePlan/theirs": {
        "resourceType": "CarePlan",
        "id": "theirs",
        "subject": {"reference": "Patient/pat-2"},
    },
}


def lookup(url: str) -> list[dict[str, Any]]:
    """The fake server: reads by Type/id; a search matches nothing."""
    found = SERVER.get(url)
    return [found] if found else []


def decide(scope: str, method: str, url: str, resource: Any = None) -> Refusal | None:
    """Parse and authorize one request for a token on patient CTX."""
    access = scopes.parse_request(method, url, resource=resource, fhir_base=BASE)
    if isinstance(access, Refusal):
        return access
    return scopes.authorize(
        Grant.from_scope(scope, patient=CTX), access, lookup=lookup, fhir_base=BASE
    )


def observation(subject: str = f"Patient/{CTX}", **extra: Any) -> dict[str, Any]:
    """An Observation about `subject`."""
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": subject},
        **extra,
    }


# parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("patient/Observation.read", Permission("patient", "Observation", frozenset("rs"))),
        ("patient/Observation.write", Permission("patient", "Observation", frozenset("cud"))),
        ("user/*.*", Permission("user", "*", frozenset("cruds"))),
        ("patient/*.read", Permission("patient", "*", frozenset("rs"))),
        ("patient/Observation.rs", Permission("patient", "Observation", frozenset("rs"))),
        (
            "user/MedicationRequest.cruds",
            Permission("user", "MedicationRequest", frozenset("cruds")),
        ),
        ("patient/Task.c", Permission("patient", "Task", frozenset("c"))),
        ("patient/Task.u", Permission("patient", "Task", frozenset("u"))),
        ("system/Patient.s", Permission("system", "Patient", frozenset("s"))),
        (
            "patient/Observation.rs?category=laboratory",
            Permission("patient", "Observation", frozenset("rs"), (("category", "laboratory"),)),
        ),
    ],
)
def test_parse_scope(scope: str, expected: Permission) -> None:
    """v1 and v2 scopes, with v2 restrictions kept."""
    assert scopes.parse_resource_scope(scope) == expected


@pytest.mark.parametrize(
    "scope",
    [
        "openid",
        "launch/patient",
        "patient/Observation.sr",
        "patient/Observation.xyz",
        "patient/.read",
        "patient/observation.read",
        "group/Observation.read",
        "patient/Observation",
        "patient/Observation.",
        "patient/Observation.rs?%%%=&&",
        "",
        "patient/Obs-ervation.read",
    ],
)
def test_not_resource_scopes(scope: str) -> None:
    """Anything else is not a resource scope (and does not crash)."""
    parsed = scopes.parse_resource_scope(scope)
    assert parsed is None or parsed.restrictions


def test_known_scopes_drop_unknown_and_duplicates() -> None:
    """The scope a client gets: what the server understands, in order."""
    asked = "openid fhirUser launch bogus patient/*.rs patient/*.rs email offline_access"
    assert scopes.known_scopes(asked) == [
        "openid",
        "fhirUser",
        "launch",
        "patient/*.rs",
        "offline_access",
    ]
    assert scopes.known_scopes(None) == []


# classification ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url", "action", "kind", "ident"),
    [
        ("GET", "Observation?patient=x", "s", "Observation", None),
        ("GET", "Observation/abc", "r", "Observation", "abc"),
        ("GET", "Observation/abc/_history/2", "r", "Observation", "abc"),
        ("GET", "Observation/abc/_history", "r", "Observation", "abc"),
        ("GET", "Observation/_history", "s", "Observation", None),
        ("GET", "Patient/x/Observation", "s", "Observation", None),
        ("POST", "Observation/_search", "s", "Observation", None),
        ("DELETE", "Observation/abc", "d", "Observation", "abc"),
        ("DELETE", "Observation?identifier=a|b", "d", "Observation", None),
        ("GET", f"{BASE}/Observation/abc", "r", "Observation", "abc"),
    ],
)
def test_parse_request(method: str, url: str, action: str, kind: str, ident: str | None) -> None:
    """Method and URL shape give the action."""
    access = scopes.parse_request(method, url, fhir_base=BASE)
    assert isinstance(access, Access)
    assert (access.action, access.resource_type, access.resource_id) == (action, kind, ident)


def test_compartment_search_carries_the_patient() -> None:
    """Patient/x/Observation is a search of Observation with patient=x."""
    access = scopes.parse_request("GET", "Patient/x/Observation?code=1", fhir_base=BASE)
    assert isinstance(access, Access)
    assert ("patient", "x") in access.params


@pytest.mark.parametrize(
    ("method", "url", "resource"),
    [
        ("GET", "metadata", None),
        ("GET", "$export", None),
        ("GET", "Patient/x/$everything", None),
        ("PATCH", "Observation/x", None),
        ("POST", "Observation/x", None),
        ("PUT", "Observation", {"resourceType": "Observation"}),
        ("POST", "Observation", None),
        ("POST", "Observation", ["not", "a", "resource"]),
        ("POST", "Observation", {"resourceType": "Patient"}),
        ("PUT", "Observation/a", {"resourceType": "Observation", "id": "b"}),
        ("GET", "Observation/bad id!", None),
        ("GET", "http://elsewhere.example/fhir/Observation/x", None),
    ],
)
def test_unsupported_or_malformed_requests(method: str, url: str, resource: Any) -> None:
    """Shapes the gateway does not serve, and bodies that do not match the URL: 400."""
    refusal = scopes.parse_request(method, url, resource=resource, fhir_base=BASE)
    assert isinstance(refusal, Refusal)
    assert refusal.status == 400


# scope checks -----------------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["patient/Observation.rs", "patient/Observation.read"])
def test_read_with_v1_or_v2_scope(scope: str) -> None:
    """.rs and .read both read and search."""
    assert decide(scope, "GET", "Observation/mine") is None
    assert decide(scope, "GET", f"Observation?patient={CTX}") is None


def test_v2_letters_are_separate() -> None:
    """.r reads but does not search; .s searches but does not read."""
    assert decide("patient/Observation.r", "GET", "Observation/mine") is None
    assert decide("patient/Observation.r", "GET", f"Observation?patient={CTX}") is not None
    assert decide("patient/Observation.s", "GET", f"Observation?patient={CTX}") is None
    assert decide("patient/Observation.s", "GET", "Observation/mine") is not None


def test_create_needs_c_and_names_the_scope() -> None:
    """A read-only grant cannot create; the refusal names the missing scope."""
    refusal = decide(
        "patient/*.rs",
        "POST",
        "MedicationRequest",
        {
            "resourceType": "MedicationRequest",
            "subject": {"reference": f"Patient/{CTX}"},
        },
    )
    assert refusal is not None
    assert refusal.status == 403
    assert "patient/MedicationRequest.c" in refusal.text
    assert "patient/MedicationRequest.write" in refusal.text


@pytest.mark.parametrize(
    ("scope", "method", "url", "body"),
    [
        ("patient/Observation.c", "POST", "Observation", observation()),
        ("patient/Observation.write", "POST", "Observation", observation()),
        ("patient/Observation.u", "PUT", "Observation/mine", observation(id="mine")),
        ("patient/Observation.d", "DELETE", "Observation/mine", None),
        ("patient/*.*", "DELETE", "Observation/mine", None),
        (
            "patient/Task.cu",
            "PUT",
            "Task/mine",
            {
                "resourceType": "Task",
                "id": "mine",
                "for": {"reference": f"Patient/{CTX}"},
            },
        ),
    ],
)
def test_writes_with_their_scope(scope: str, method: str, url: str, body: Any) -> None:
    """c, u, d (and v1 write, *) grant create, update and delete in the compartment."""
    assert decide(scope, method, url, body) is None


@pytest.mark.parametrize(
    ("scope", "method", "url", "body"),
    [
        ("patient/Observation.cr", "PUT", "Observation/mine", observation(id="mine")),
        ("patient/Observation.rs", "DELETE", "Observation/mine", None),
        ("patient/Observation.u", "POST", "Observation", observation()),
        ("patient/Condition.cruds", "POST", "Observation", observation()),
    ],
)
def test_writes_without_their_scope(scope: str, method: str, url: str, body: Any) -> None:
    """Each action needs its own letter for the right type."""
    refusal = decide(scope, method, url, body)
    assert refusal is not None
    assert refusal.status == 403


def test_v2_restrictions_only_grant_matching_searches() -> None:
    """`?category=laboratory` grants that search, nothing wider, and never crashes."""
    scope = "patient/Observation.rs?category=laboratory"
    assert decide(scope, "GET", f"Observation?patient={CTX}&category=laboratory") is None
    assert decide(scope, "GET", f"Observation?patient={CTX}") is not None
    assert decide(scope, "GET", "Observation/mine") is not None


# the patient's compartment ----------------------------------------------------------------


def test_patient_scope_reads_only_the_launch_patient() -> None:
    """Patient/<ctx> yes, any other Patient no."""
    assert decide("patient/*.rs", "GET", f"Patient/{CTX}") is None
    refusal = decide("patient/*.rs", "GET", "Patient/pat-2")
    assert refusal is not None and refusal.status == 403


def test_patient_scope_reads_by_id_check_the_owner() -> None:
    """Another patient's Observation is refused; a Medication (no patient) is readable."""
    assert decide("patient/*.rs", "GET", "Observation/theirs") is not None
    assert decide("patient/*.rs", "GET", "Medication/kit") is None
    assert decide("patient/*.rs", "GET", "Observation/gone") is None


@pytest.mark.parametrize(
    "query",
    [
        f"patient={CTX}",
        f"patient=Patient/{CTX}",
        f"patient={BASE}/Patient/{CTX}",
        f"subject=Patient/{CTX}",
        f"subject=Patient%2F{CTX}",
        f"subject:Patient={CTX}",
        f"patient={CTX}&_include=Observation:performer&_count=5",
    ],
)
def test_patient_scope_searches_in_the_compartment(query: str) -> None:
    """Searches pinned to the launch patient pass."""
    assert decide("patient/*.rs", "GET", f"Observation?{query}") is None


@pytest.mark.parametrize(
    "query",
    [
        "",
        "code=1234-5",
        "patient=pat-2",
        f"patient={CTX},pat-2",
        f"patient={CTX}&subject=Patient/pat-2",
        f"subject={CTX}",
        "subject=Group/g1",
    ],
)
def test_patient_scope_searches_outside_the_compartment(query: str) -> None:
    """Searches not pinned to the launch patient alone are refused."""
    refusal = decide("patient/*.rs", "GET", f"Observation?{query}")
    assert refusal is not None and refusal.status == 403


def test_patient_search_of_patient_needs_the_id() -> None:
    """Patient?_id=<ctx> only."""
    assert decide("patient/*.rs", "GET", f"Patient?_id={CTX}") is None
    assert decide("patient/*.rs", "GET", "Patient?name=Ada") is not None
    assert decide("patient/*.rs", "GET", f"Patient?_id={CTX},pat-2") is not None


def test_user_scope_is_not_limited_to_a_patient() -> None:
    """user/ scopes reach every patient."""
    assert decide("user/*.rs", "GET", "Patient/pat-2") is None
    assert decide("user/*.rs", "GET", "Observation?code=1") is None
    assert decide("user/Observation.c", "POST", "Observation", observation("Patient/pat-2")) is None


def test_patient_scope_without_a_patient_is_refused() -> None:
    """A patient/ scope on a token with no patient in context grants nothing."""
    access = scopes.parse_request("GET", "Observation?patient=x", fhir_base=BASE)
    assert isinstance(access, Access)
    refusal = scopes.authorize(
        Grant.from_scope("patient/*.rs"), access, lookup=lookup, fhir_base=BASE
    )
    assert refusal is not None and "patient in context" in refusal.text


@pytest.mark.parametrize(
    "body",
    [
        observation("Patient/pat-2"),
        {"resourceType": "Observation", "status": "final", "code": {"text": "x"}},
        observation(**{"subject": {"identifier": {"value": CTX}}}),
        {"resourceType": "Task", "for": {"reference": "Patient/pat-2"}},
    ],
)
def test_patient_scope_creates_only_for_the_patient(body: dict[str, Any]) -> None:
    """A create must point subject/patient/for at the launch patient."""
    refusal = decide("patient/*.cruds", "POST", body["resourceType"], body)
    assert refusal is not None and refusal.status == 403


def test_patient_scope_create_of_the_patient_types() -> None:
    """DetectedIssue.patient and Task.for count; creating a Patient never does."""
    assert (
        decide(
            "patient/*.c",
            "POST",
            "DetectedIssue",
            {
                "resourceType": "DetectedIssue",
                "patient": {"reference": f"Patient/{CTX}"},
            },
        )
        is None
    )
    assert (
        decide(
            "patient/*.c",
            "POST",
            "Task",
            {
                "resourceType": "Task",
                "for": {"reference": f"{BASE}/Patient/{CTX}"},
            },
        )
        is None
    )
    assert decide("patient/*.c", "POST", "Patient", {"resourceType": "Patient"}) is not None


def test_patient_scope_cannot_take_over_another_patients_resource() -> None:
    """An update that moves someone else's resource to the patient is refused."""
    refusal = decide("patient/*.cruds", "PUT", "Observation/theirs", observation(id="theirs"))
    assert refusal is not None and refusal.status == 403
    assert decide("patient/*.cruds", "DELETE", "Observation/theirs") is not None
    assert decide("patient/*.cruds", "PUT", "Observation/new", observation(id="new")) is None


@pytest.mark.parametrize(
    ("targets", "allowed"),
    [
        (["urn:uuid:7f1e0000-0000-0000-0000-000000000001"], True),
        ([f"Patient/{CTX}", "Task/mine"], True),
        (["Observation/mine", f"{BASE}/Observation/mine"], True),
        (["CarePlan/theirs"], False),
        (["Observation/missing"], False),
        ([], False),
        (["http://elsewhere.example/fhir/Observation/mine"], False),
    ],
)
def test_provenance_targets(targets: list[str], allowed: bool) -> None:
    """A Provenance is the patient's when each target is bundle-local or the patient's."""
    body = {"resourceType": "Provenance", "target": [{"reference": t} for t in targets]}
    refusal = decide("patient/*.cruds", "POST", "Provenance", body)
    assert (refusal is None) is allowed


# bundles ----------------------------------------------------------------------------------


def _bundle(*entries: tuple[str, str, Any]) -> dict[str, Any]:
    """A transaction of (method, url, resource) entries."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"request": {"method": m, "url": u}, **({"resource": r} if r else {})}
            for m, u, r in entries
        ],
    }


def test_bundle_refusal_names_every_bad_entry() -> None:
    """Each out-of-scope entry is named, with its index and the scope it needs."""
    bundle = _bundle(
        ("POST", "Observation", observation()),
        (
            "POST",
            "MedicationRequest",
            {
                "resourceType": "MedicationRequest",
                "subject": {"reference": f"Patient/{CTX}"},
            },
        ),
        ("GET", f"Observation?patient={CTX}", None),
        ("DELETE", "Observation/theirs", None),
    )
    grant = Grant.from_scope("patient/Observation.cruds", patient=CTX)
    refusals = scopes.authorize_bundle(grant, bundle, lookup=lookup, fhir_base=BASE)
    assert [r.expression for r in refusals] == ["Bundle.entry[1]", "Bundle.entry[3]"]
    assert "patient/MedicationRequest.c" in refusals[0].text
    assert "entry 1" in refusals[0].text


def test_bundle_in_scope_passes() -> None:
    """A transaction wholly inside the grant has no refusal."""
    bundle = _bundle(
        ("POST", "Observation", observation()),
        (
            "PUT",
            "Task/mine",
            {"resourceType": "Task", "id": "mine", "for": {"reference": f"Patient/{CTX}"}},
        ),
        (
            "POST",
            "Provenance",
            {"resourceType": "Provenance", "target": [{"reference": "Task/mine"}]},
        ),
    )
    grant = Grant.from_scope("patient/*.cruds", patient=CTX)
    assert scopes.authorize_bundle(grant, bundle, lookup=lookup, fhir_base=BASE) == []


@pytest.mark.parametrize(
    "bundle",
    [
        None,
        [],
        {"resourceType": "Observation"},
        {"resourceType": "Bundle", "type": "collection"},
        {"resourceType": "Bundle", "type": "batch", "entry": "nope"},
        {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [{"request": {"method": "PATCH", "url": "X/1"}}],
        },
        {"resourceType": "Bundle", "type": "batch", "entry": [{}, "junk"]},
    ],
)
def test_malformed_bundles_are_refused(bundle: Any) -> None:
    """Not a batch or transaction, or entries without a usable request: refused, no crash."""
    grant = Grant.from_scope("user/*.*")
    refusals = scopes.authorize_bundle(grant, bundle, lookup=lookup, fhir_base=BASE)
    assert refusals
    assert all(r.status == 400 for r in refusals)


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("patient/*.cruds", "patient/*.rs"),
        ("patient/*.*", "patient/*.read"),
        ("patient/*.read patient/*.write", "patient/*.read"),
        ("patient/Task.cu", ""),
        ("patient/Task.crus user/CarePlan.cd", "patient/Task.rs"),
        ("patient/Task.write", ""),
        (
            "patient/Observation.rs?category=laboratory",
            "patient/Observation.rs?category=laboratory",
        ),
        (
            "patient/Observation.crs?category=laboratory",
            "patient/Observation.rs?category=laboratory",
        ),
        (
            "launch openid patient/Patient.rs patient/MedicationRequest.crus online_access",
            "launch openid patient/Patient.rs patient/MedicationRequest.rs online_access",
        ),
        ("launch patient/Task.uc", "launch patient/Task.uc"),  # not a scope: left to the parser
    ],
)
def test_read_only_takes_out_every_write_in_the_syntax_it_came_in(
    scope: str, expected: str
) -> None:
    narrowed = scopes.read_only(scope)
    assert narrowed == expected
    grant = Grant.from_scope(narrowed, patient=CTX)
    assert not [p for p in grant.permissions if p.actions & set("cud")]
