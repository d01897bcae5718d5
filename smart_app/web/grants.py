"""The SMART scopes a launch was granted, and which of the app's writes they allow.

Pure: a scope string in, answers out. SMART v2 resource scopes (`patient/Task.cu`,
`user/*.cruds`, `system/...`) and v1 ones (`patient/Task.write`, `patient/*.*`, `.read`) are
understood; v1 `read` is read + search, `write` is create + update + delete, `*` all five.
A v2 scope with `?param=value` restrictions is counted for nothing here: it may narrow the
resources it covers, so the app cannot be sure a write would be accepted. Unknown scopes are
ignored, never an error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum


class Action(StrEnum):
    """One SMART v2 permission letter."""

    CREATE = "c"
    READ = "r"
    UPDATE = "u"
    DELETE = "d"
    SEARCH = "s"

    @property
    def verb(self) -> str:
        """The plain word for the action."""
        return self.name.lower()


ACTION_ORDER = "cruds"
V1_ACTIONS = {
    "read": frozenset({Action.READ, Action.SEARCH}),
    "write": frozenset({Action.CREATE, Action.UPDATE, Action.DELETE}),
    "*": frozenset(Action),
}
V2_ACTIONS = re.compile(r"c?r?u?d?s?")
RESOURCE_SCOPE = re.compile(r"(patient|user|system)/(\*|[A-Z][A-Za-z]{1,63})\.([a-z*]+)(\?.*)?")
WRITE = frozenset({Action.CREATE, Action.UPDATE})
READ_BACK = frozenset({Action.READ, Action.SEARCH})
ANY_WRITE = frozenset({Action.CREATE, Action.UPDATE, Action.DELETE})


@dataclass(frozen=True)
class Rule:
    """One unrestricted resource scope: its resource type (or `*`) and actions."""

    resource_type: str
    actions: frozenset[Action]


def parse_scope(scope: str) -> Rule | None:
    """One scope as a Rule; None for a non-resource, malformed or restricted scope."""
    match = RESOURCE_SCOPE.fullmatch(scope)
    if match is None:
        return None
    _, resource_type, actions, restriction = match.groups()
    if restriction is not None:
        return None
    if actions in V1_ACTIONS:
        return Rule(resource_type, V1_ACTIONS[actions])
    if actions and V2_ACTIONS.fullmatch(actions):
        return Rule(resource_type, frozenset(Action(letter) for letter in actions))
    return None


@dataclass(frozen=True)
class Grants:
    """What a launch may do on the FHIR server, from its granted scopes."""

    rules: tuple[Rule, ...] = ()
    unlimited: bool = False
    """An open server (no token): the app holds no scopes and the server alone decides."""
    scope: str = ""

    @classmethod
    def parse(cls, scope: str) -> Grants:
        """The grants of a space-separated scope string (the token response's `scope`)."""
        rules = (parse_scope(item) for item in scope.split())
        return cls(tuple(r for r in rules if r is not None), scope=" ".join(scope.split()))

    @classmethod
    def everything(cls) -> Grants:
        """No scopes to honour (an open server)."""
        return cls(unlimited=True)

    def allowed(self, resource_type: str) -> frozenset[Action]:
        """Every action the grants allow on one resource type."""
        if self.unlimited:
            return frozenset(Action)
        found: set[Action] = set()
        for rule in self.rules:
            if rule.resource_type in ("*", resource_type):
                found |= rule.actions
        return frozenset(found)

    def allows(self, resource_type: str, *actions: Action) -> bool:
        """Whether every one of `actions` is allowed on the resource type."""
        return set(actions) <= self.allowed(resource_type)

    @property
    def read_only(self) -> bool:
        """No create, update or delete on any resource type."""
        return not self.unlimited and not any(rule.actions & ANY_WRITE for rule in self.rules)

    def missing(self, needs: Mapping[str, frozenset[Action]]) -> dict[str, frozenset[Action]]:
        """For each resource type in `needs`, the needed actions not granted (only the gaps)."""
        gaps = {kind: wanted - self.allowed(kind) for kind, wanted in needs.items()}
        return {kind: gap for kind, gap in gaps.items() if gap}


def writable_types(scope: str, types: Iterable[str]) -> frozenset[str]:
    """Of `types`, those the scope lets the app both create and update."""
    grants = Grants.parse(scope)
    return frozenset(kind for kind in types if grants.allows(kind, *WRITE))


class Write(Enum):
    """The app's confirmed writes, each with what it needs and a plain name."""

    PLAN = "write the plan to the chart"
    DECISION = "record the day-30 liver assessment decision"
    TASKS = "record completed Tasks"
    ALERT = "acknowledge a safety alert or create the Task it calls for"
    DOCUMENT = "file the prior-authorization packet to the chart"

    @property
    def needs(self) -> dict[str, frozenset[Action]]:
        """Resource type -> actions the write needs: create and update what it writes, and
        read and search them (the app finds its earlier resources by identifier)."""
        return {kind: WRITE | READ_BACK for kind in WRITE_TYPES[self]}


WRITE_TYPES: dict[Write, tuple[str, ...]] = {
    Write.PLAN: ("MedicationRequest", "CarePlan", "Task", "DetectedIssue", "Provenance"),
    Write.DECISION: ("MedicationRequest", "ServiceRequest", "Task", "CarePlan", "Provenance"),
    Write.TASKS: ("Task", "CarePlan", "Provenance"),
    Write.ALERT: ("Task", "CarePlan", "Provenance"),
    Write.DOCUMENT: ("DocumentReference", "Provenance"),
}
"""The resource types each write creates or updates (fhir/plan_bundle.py,
fhir/followup_write.py, fhir/document_write.py)."""


def _gaps_text(gaps: Mapping[str, frozenset[Action]]) -> str:
    """'create and update Task, CarePlan; search Provenance': the gaps grouped by actions."""
    groups: dict[tuple[Action, ...], list[str]] = {}
    for kind, gap in gaps.items():
        key = tuple(sorted(gap, key=lambda a: ACTION_ORDER.index(a.value)))
        groups.setdefault(key, []).append(kind)
    parts = []
    for actions, kinds in groups.items():
        verbs = [a.verb for a in actions]
        said = verbs[0] if len(verbs) == 1 else f"{', '.join(verbs[:-1])} and {verbs[-1]}"
        parts.append(f"{said} {', '.join(kinds)}")
    return "; ".join(parts)


@dataclass(frozen=True)
class Refusal:
    """Why a write cannot be offered with these grants."""

    write: Write
    gaps: dict[str, frozenset[Action]]
    read_only: bool
    scope: str

    @property
    def message(self) -> str:
        """What the app cannot do, why, and what would let it: plain words, one paragraph."""
        if self.read_only:
            why = f"The EHR gave this launch read-only access, so the app cannot {self.write.value}"
        else:
            why = f"The EHR did not give this launch the access it needs to {self.write.value}"
        return (
            f"{why}: it would need permission to {_gaps_text(self.gaps)}. Relaunch the app and "
            "allow it to write to the chart, or ask the EHR's administrator for these permissions."
        )


def refusal(grants: Grants, write: Write) -> Refusal | None:
    """None when the grants allow the write; else what is missing, to say so."""
    gaps = grants.missing(write.needs)
    if not gaps:
        return None
    return Refusal(write=write, gaps=gaps, read_only=grants.read_only, scope=grants.scope)
