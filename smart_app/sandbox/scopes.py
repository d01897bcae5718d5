"""SMART scopes (v1 and v2): parse a grant, then decide whether one FHIR request falls inside it.

Pure: the only outside knowledge is `lookup`, which the gateway passes in to read what is on the
server now (the owner of a resource about to be read by id, updated or deleted).

Rules, in order:
- A request needs a permission for its resource type (or `*`) and its action: c(reate), r(ead),
  u(pdate), d(elete), s(earch). SMART v1 `read` is r+s, `write` is c+u+d, `*` is all five.
- A v2 scope with `?param=value` restrictions grants only searches that carry every one of those
  parameters with the same value; it grants no read by id and no write.
- A `user/` or `system/` permission grants the request for any patient.
- A `patient/` permission grants it only inside the launch patient's compartment:
  `Patient/<ctx>` itself; searches of other types with `patient=<ctx>` (or `subject=Patient/<ctx>`),
  and of Patient with `_id=<ctx>`; reads by id of resources whose `subject`/`patient`/`for`
  reference is `Patient/<ctx>`, or that have none of these (Medication, Practitioner...);
  creates and updates whose `subject`/`patient`/`for` is `Patient/<ctx>`, replacing (update) or
  deleting only resources that are the patient's. A Provenance is the patient's when every
  `target` is a bundle-local `urn:uuid:` (whose entry is checked itself), `Patient/<ctx>`, or a
  resource on the server that is the patient's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from smart_app.fhir.codes import FHIR_ID

Resource = Mapping[str, Any]
Lookup = Callable[[str], list[Resource]]
"""The resources on the server now for a relative URL: `Type/id` (a read) or `Type?query`."""

ACTIONS = "cruds"
V1_ACTIONS = {"read": frozenset("rs"), "write": frozenset("cud"), "*": frozenset(ACTIONS)}
V2_ACTIONS = re.compile(r"c?r?u?d?s?")
READ_ACTIONS = "rs"
RESOURCE_SCOPE = re.compile(r"(patient|user|system)/(\*|[A-Z][A-Za-z]{1,63})\.([a-z*]+)(?:\?(.*))?")
TYPE_NAME = re.compile(r"[A-Z][A-Za-z]{1,63}")
OTHER_SCOPES = frozenset(
    {
        "openid",
        "fhirUser",
        "profile",
        "launch",
        "launch/patient",
        "launch/encounter",
        "offline_access",
        "online_access",
    }
)
VERBS = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}
OWNER_FIELDS = ("subject", "patient", "for")
PATIENT_PARAMS = ("patient", "patient:Patient", "subject:Patient")
"""Search parameters whose value may be a bare patient id."""
SUBJECT_PARAMS = ("subject",)
"""Search parameters whose value must be a typed reference (`Patient/<id>`)."""
METHODS = ("GET", "POST", "PUT", "DELETE")


@dataclass(frozen=True)
class Permission:
    """One resource scope: its level, resource type (or `*`), actions and v2 restrictions."""

    level: str
    resource_type: str
    actions: frozenset[str]
    restrictions: tuple[tuple[str, str], ...] = ()

    def allows(self, access: Access) -> bool:
        """Whether this scope covers the access's type and action (and its restrictions)."""
        if self.resource_type not in ("*", access.resource_type):
            return False
        if access.action not in self.actions:
            return False
        if not self.restrictions:
            return True
        return access.action == "s" and all(pair in access.params for pair in self.restrictions)


@dataclass(frozen=True)
class Grant:
    """What a token may do: its resource permissions and its launch patient (if any)."""

    permissions: tuple[Permission, ...]
    patient: str | None = None

    @classmethod
    def from_scope(cls, scope: str, *, patient: str | None = None) -> Grant:
        """The grant of a space-separated scope string (unknown scopes are ignored)."""
        parsed = (parse_resource_scope(s) for s in scope.split())
        return cls(tuple(p for p in parsed if p is not None), patient)


@dataclass(frozen=True)
class Access:
    """One FHIR interaction to authorize."""

    action: str
    resource_type: str
    label: str
    resource_id: str | None = None
    params: tuple[tuple[str, str], ...] = ()
    condition: str | None = None
    resource: Resource | None = None

    @property
    def target(self) -> str | None:
        """The relative URL of the resource(s) this update, delete or read touches."""
        if self.resource_id:
            return f"{self.resource_type}/{self.resource_id}"
        if self.condition:
            return f"{self.resource_type}?{self.condition}"
        return None


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused: HTTP status, OperationOutcome issue code and text."""

    status: int
    code: str
    text: str
    expression: str | None = None


def parse_resource_scope(scope: str) -> Permission | None:
    """A SMART v1 or v2 resource scope, or None when `scope` is not one."""
    match = RESOURCE_SCOPE.fullmatch(scope)
    if not match:
        return None
    level, resource_type, actions, query = match.groups()
    if actions in V1_ACTIONS:
        granted = V1_ACTIONS[actions]
    elif actions and V2_ACTIONS.fullmatch(actions):
        granted = frozenset(actions)
    else:
        return None
    restrictions = tuple(parse_qsl(query, keep_blank_values=True)) if query else ()
    return Permission(level, resource_type, granted, restrictions)


def read_only(scope: str) -> str:
    """The scope with every create, update and delete permission taken out, in the syntax it
    came in (`.*` becomes `.read`, `.cruds` becomes `.rs`); what a user who allows reading only
    grants. Non-resource scopes are kept; a resource scope left with nothing is dropped."""
    out: list[str] = []
    for item in scope.split():
        match = RESOURCE_SCOPE.fullmatch(item)
        if match is None or parse_resource_scope(item) is None:
            out.append(item)
            continue
        level, resource_type, actions, query = match.groups()
        if actions in ("read", "*"):
            kept = "read"
        elif actions == "write":
            kept = ""
        else:
            kept = "".join(a for a in actions if a in READ_ACTIONS)
        if kept:
            out.append(f"{level}/{resource_type}.{kept}" + (f"?{query}" if query else ""))
    return " ".join(out)


def known_scopes(scope: str | None) -> list[str]:
    """The scopes of a request this server understands, in order, without duplicates."""
    out: list[str] = []
    for item in (scope or "").split():
        known = item in OTHER_SCOPES or parse_resource_scope(item) is not None
        if known and item not in out:
            out.append(item)
    return out


def has_scope(scope: str | None, name: str) -> bool:
    """Whether the space-separated scope string holds `name`."""
    return name in (scope or "").split()


def _relative(url: str, fhir_base: str) -> str | None:
    """A request URL relative to the FHIR base, or None when it points at another server."""
    if url.startswith(f"{fhir_base}/"):
        return url[len(fhir_base) + 1 :]
    parts = urlsplit(url)
    if parts.scheme or parts.netloc:
        return None
    return url.lstrip("/")


def _invalid(text: str) -> Refusal:
    """A malformed request."""
    return Refusal(400, "invalid", text)


def parse_request(
    method: str,
    url: str,
    *,
    resource: Any = None,
    extra_params: Iterable[tuple[str, str]] = (),
    fhir_base: str = "",
) -> Access | Refusal:
    """Classify one request (`url` relative to the FHIR base, with its query) as an Access."""
    relative = _relative(url, fhir_base)
    if relative is None:
        return _invalid(f"{url} is not on this FHIR server")
    path, _, query = relative.partition("?")
    segments = path.strip("/").split("/")
    params = tuple(parse_qsl(query, keep_blank_values=True)) + tuple(extra_params)
    label = f"{method} {path}"
    kind = segments[0]
    if not TYPE_NAME.fullmatch(kind):
        return Refusal(400, "not-supported", f"{label}: not a resource type this gateway serves")
    if len(segments) > 1 and not segments[1].startswith("_") and not FHIR_ID.fullmatch(segments[1]):
        return _invalid(f"{label}: {segments[1]!r} is not a FHIR id")
    count = len(segments)
    if method == "GET":
        if count == 1 or (count == 2 and segments[1] == "_history"):
            return Access("s", kind, label, params=params)
        if count == 2 or (count in (3, 4) and segments[2] == "_history"):
            return Access("r", kind, label, resource_id=segments[1])
        if count == 3 and kind == "Patient" and TYPE_NAME.fullmatch(segments[2]):
            return Access("s", segments[2], label, params=(*params, ("patient", segments[1])))
    elif method == "POST":
        if count == 2 and segments[1] == "_search":
            return Access("s", kind, label, params=params)
        if count == 1:
            return _with_resource(Access("c", kind, label), resource)
    elif method == "PUT":
        if count == 1 and query:
            return _with_resource(Access("u", kind, label, condition=query), resource)
        if count == 2:
            return _with_resource(Access("u", kind, label, resource_id=segments[1]), resource)
    elif method == "DELETE":
        if count == 1 and query:
            return Access("d", kind, label, condition=query)
        if count == 2:
            return Access("d", kind, label, resource_id=segments[1])
    return Refusal(400, "not-supported", f"{label}: not supported by the sandbox gateway")


def _with_resource(access: Access, resource: Any) -> Access | Refusal:
    """The access with its body, which must be a resource of the URL's type (and id)."""
    if not isinstance(resource, Mapping):
        return _invalid(f"{access.label}: the body is not a FHIR resource")
    if resource.get("resourceType") != access.resource_type:
        return _invalid(
            f"{access.label}: the body is a {resource.get('resourceType')!r}, "
            f"not a {access.resource_type}"
        )
    if access.resource_id and resource.get("id") != access.resource_id:
        return _invalid(f"{access.label}: the body's id does not match the URL")
    return Access(
        access.action,
        access.resource_type,
        access.label,
        resource_id=access.resource_id,
        params=access.params,
        condition=access.condition,
        resource=resource,
    )


def missing_scope(grant: Grant, access: Access) -> str:
    """The refusal text for an access no scope covers, naming the scope it needs."""
    level = "patient" if grant.patient else "user"
    v1 = "read" if access.action in "rs" else "write"
    needed = f"{level}/{access.resource_type}"
    return (
        f"{access.label}: the token's scopes do not allow {VERBS[access.action]} on "
        f"{access.resource_type}; it needs {needed}.{access.action} (SMART v1: {needed}.{v1})"
    )


def authorize(grant: Grant, access: Access, *, lookup: Lookup, fhir_base: str) -> Refusal | None:
    """None when the grant allows the access, else why not."""
    permissions = [p for p in grant.permissions if p.allows(access)]
    if not permissions:
        return Refusal(403, "forbidden", missing_scope(grant, access))
    if any(p.level != "patient" for p in permissions):
        return None
    if grant.patient is None:
        return Refusal(
            403, "forbidden", f"{access.label}: patient scopes need a patient in context"
        )
    return _compartment(access, grant.patient, lookup=lookup, fhir_base=fhir_base)


def _patient_refs(patient: str, fhir_base: str) -> frozenset[str]:
    """The ways a reference can name the patient in context."""
    return frozenset({f"Patient/{patient}", f"{fhir_base}/Patient/{patient}"})


def _forbidden(access: Access, text: str) -> Refusal:
    """A refusal of an access outside the patient's compartment."""
    return Refusal(403, "forbidden", f"{access.label}: {text}")


def _compartment(access: Access, patient: str, *, lookup: Lookup, fhir_base: str) -> Refusal | None:
    """None when a patient-scoped access stays inside the launch patient's compartment."""
    if access.action == "s":
        return _search_in_compartment(access, patient, fhir_base)
    if access.resource_type == "Patient":
        if access.action == "c":
            return _forbidden(access, "a patient-scoped token cannot create a Patient")
        if access.resource_id != patient:
            return _forbidden(access, f"only Patient/{patient}, the patient in context")
        return None
    refs = _patient_refs(patient, fhir_base)
    if access.action == "r":
        for found in lookup(f"{access.resource_type}/{access.resource_id}"):
            owners = _owner_refs(found)
            if owners and not set(owners) <= refs:
                return _forbidden(access, f"it belongs to another patient than Patient/{patient}")
        return None
    if access.resource is not None:
        refusal = _write_refusal(
            access, access.resource, patient, lookup=lookup, fhir_base=fhir_base
        )
        if refusal:
            return refusal
    if access.action in ("u", "d") and access.target:
        for found in lookup(access.target):
            if not _is_owned(found, patient, lookup=lookup, fhir_base=fhir_base):
                return _forbidden(
                    access, f"it would change a resource that is not Patient/{patient}'s"
                )
    return None


def _search_in_compartment(access: Access, patient: str, fhir_base: str) -> Refusal | None:
    """None when a patient-scoped search is limited to the patient in context."""
    refs = _patient_refs(patient, fhir_base)
    if access.resource_type == "Patient":
        ids = [v for k, v in access.params if k == "_id" for v in v.split(",")]
        if ids and all(i == patient for i in ids):
            return None
        return _forbidden(access, f"a patient-scoped search of Patient needs _id={patient}")
    values = [
        (k in PATIENT_PARAMS, v)
        for k, raw in access.params
        if k in PATIENT_PARAMS or k in SUBJECT_PARAMS
        for v in raw.split(",")
    ]
    if values and all(v in refs or (bare and v == patient) for bare, v in values):
        return None
    return _forbidden(
        access,
        f"a patient-scoped search of {access.resource_type} needs patient={patient} "
        f"(or subject=Patient/{patient}) and no other patient",
    )


def _owner_refs(resource: Resource) -> list[str]:
    """The references that tie a resource to a patient (`""` for one that is not literal)."""
    out = []
    for name in OWNER_FIELDS:
        value = resource.get(name)
        for item in value if isinstance(value, list) else [value]:
            if item is None:
                continue
            reference = item.get("reference") if isinstance(item, Mapping) else None
            out.append(reference if isinstance(reference, str) else "")
    return out


def _is_owned(resource: Resource, patient: str, *, lookup: Lookup, fhir_base: str) -> bool:
    """Whether a resource provably belongs to the patient (see the module's rules)."""
    if resource.get("resourceType") == "Patient":
        return resource.get("id") == patient
    if resource.get("resourceType") == "Provenance":
        return _provenance_owned(resource, patient, lookup=lookup, fhir_base=fhir_base)
    owners = _owner_refs(resource)
    return bool(owners) and set(owners) <= _patient_refs(patient, fhir_base)


def _provenance_owned(resource: Resource, patient: str, *, lookup: Lookup, fhir_base: str) -> bool:
    """Whether every target of a Provenance is bundle-local, the patient, or the patient's."""
    targets = resource.get("target")
    if not isinstance(targets, list) or not targets:
        return False
    refs = _patient_refs(patient, fhir_base)
    for target in targets:
        reference = target.get("reference") if isinstance(target, Mapping) else None
        if not isinstance(reference, str) or not reference:
            return False
        if reference.startswith("urn:uuid:") or reference in refs:
            continue
        relative = _relative(reference, fhir_base)
        if relative is None or relative.count("/") != 1 or "?" in relative:
            return False
        kind = relative.partition("/")[0]
        if kind == "Provenance" or not TYPE_NAME.fullmatch(kind):
            return False
        found = lookup(relative)
        if not found or not all(
            _is_owned(f, patient, lookup=lookup, fhir_base=fhir_base) for f in found
        ):
            return False
    return True


def _write_refusal(
    access: Access, resource: Resource, patient: str, *, lookup: Lookup, fhir_base: str
) -> Refusal | None:
    """None when the resource being written belongs to the patient in context."""
    if _is_owned(resource, patient, lookup=lookup, fhir_base=fhir_base):
        return None
    if resource.get("resourceType") == "Provenance":
        return _forbidden(
            access,
            f"a Provenance's targets must be urn:uuid: entries, Patient/{patient} or "
            "resources of that patient",
        )
    others = [r for r in _owner_refs(resource) if r not in _patient_refs(patient, fhir_base)]
    if others and others[0]:
        return _forbidden(access, f"it refers to {others[0]}, not to Patient/{patient}")
    return _forbidden(access, f"it needs a subject, patient or for reference to Patient/{patient}")


def bundle_accesses(bundle: Any, *, fhir_base: str) -> list[tuple[int, Access | Refusal]]:
    """Each entry of a batch or transaction Bundle, classified (or why it cannot be)."""
    if not isinstance(bundle, Mapping) or bundle.get("resourceType") != "Bundle":
        return [(-1, _invalid("POST to the FHIR base needs a batch or transaction Bundle"))]
    if bundle.get("type") not in ("batch", "transaction"):
        return [(-1, _invalid(f"Bundle type {bundle.get('type')!r} is not batch or transaction"))]
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        return [(-1, _invalid("Bundle.entry is not a list"))]
    out: list[tuple[int, Access | Refusal]] = []
    for index, entry in enumerate(entries):
        request = entry.get("request") if isinstance(entry, Mapping) else None
        method = request.get("method") if isinstance(request, Mapping) else None
        url = request.get("url") if isinstance(request, Mapping) else None
        if method not in METHODS or not isinstance(url, str) or not url:
            out.append((index, _invalid("the entry has no supported request.method and url")))
            continue
        out.append(
            (index, parse_request(method, url, resource=entry.get("resource"), fhir_base=fhir_base))
        )
    return out


def authorize_bundle(grant: Grant, bundle: Any, *, lookup: Lookup, fhir_base: str) -> list[Refusal]:
    """Every reason to refuse a batch or transaction; empty when all its entries are granted."""
    refusals = []
    for index, item in bundle_accesses(bundle, fhir_base=fhir_base):
        refusal = (
            item
            if isinstance(item, Refusal)
            else authorize(grant, item, lookup=lookup, fhir_base=fhir_base)
        )
        if refusal is None:
            continue
        if index < 0:
            refusals.append(refusal)
            continue
        refusals.append(
            Refusal(
                refusal.status,
                refusal.code,
                f"Bundle entry {index}: {refusal.text}",
                expression=f"Bundle.entry[{index}]",
            )
        )
    return refusals
