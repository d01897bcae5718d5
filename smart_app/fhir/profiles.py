"""A small checker of resources against the app's StructureDefinitions (differential only).

Per element: cardinality, fixed[x] (equality) and pattern[x] (FHIR pattern semantics). Slicing
by `pattern` or `value` discriminators (path `$this` or a child path): a slice's cardinality
counts the items its discriminator values select, its constraints apply to those items only,
and `closed` slicing refuses items that fit no slice. Other discriminator types are refused
when the profiles load (the app's profiles use none).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from importlib import resources
from typing import Any

from smart_app.fhir import codes

PROFILE_BASE = f"{codes.APP_BASE}/StructureDefinition"
PATTERN_PREFIXES = ("fixed", "pattern")


def profile_url(name: str) -> str:
    """The canonical URL of one of the app's profiles."""
    return f"{PROFILE_BASE}/{name}"


@functools.cache
def conformance() -> dict[str, dict[str, Any]]:
    """Every JSON resource in fhir_profiles/, by canonical URL."""
    out = {}
    for item in resources.files("fhir_profiles").iterdir():
        if item.name.endswith(".json"):
            data = json.loads(item.read_text(encoding="utf-8"))
            out[data["url"]] = data
    return out


@functools.cache
def structure_definitions() -> dict[str, dict[str, Any]]:
    """The app's StructureDefinitions, by canonical URL."""
    return {
        url: r for url, r in conformance().items() if r["resourceType"] == "StructureDefinition"
    }


def _children(node: Any, name: str) -> list[Any]:
    """Values of element `name` under a node; choice names ending in [x] match any type."""
    if not isinstance(node, Mapping):
        return []
    if name.endswith("[x]"):
        stem = name[:-3]
        values = [
            v
            for k, v in node.items()
            if k.startswith(stem) and k[len(stem) : len(stem) + 1].isupper()
        ]
    else:
        values = [node[name]] if name in node else []
    flat: list[Any] = []
    for value in values:
        flat.extend(value if isinstance(value, list) else [value])
    return flat


def _nodes(resource: Mapping[str, Any], path: list[str]) -> list[Any]:
    """All nodes at a path below the resource root."""
    nodes: list[Any] = [resource]
    for name in path:
        nodes = [child for node in nodes for child in _children(node, name)]
    return nodes


def _matches(value: Any, pattern: Any) -> bool:
    """FHIR pattern semantics: every field of the pattern is present with the same value."""
    if isinstance(pattern, Mapping):
        return isinstance(value, Mapping) and all(
            _matches(value.get(k), v) for k, v in pattern.items()
        )
    if isinstance(pattern, list):
        items = value if isinstance(value, list) else []
        return all(any(_matches(item, p) for item in items) for p in pattern)
    return value == pattern


Element = Mapping[str, Any]
DISCRIMINATORS = frozenset({"pattern", "value"})


def _steps(element_id: str) -> list[tuple[str, str | None]]:
    """An element id below the root as (name, slice name or None) steps."""
    out = []
    for part in element_id.split(".")[1:]:
        name, _, slice_name = part.partition(":")
        out.append((name, slice_name or None))
    return out


def _constraints(element: Element) -> list[tuple[str, Any]]:
    """The element's fixed[x] and pattern[x] values."""
    return [
        (key, value)
        for key, value in element.items()
        if key.startswith(PATTERN_PREFIXES) and key != "fixed"
    ]


def _fits(value: Any, key: str, expected: Any) -> bool:
    """A value against one fixed[x] (equality) or pattern[x] (pattern semantics)."""
    return value == expected if key.startswith("fixed") else _matches(value, expected)


class _Profile:
    """One StructureDefinition's differential, indexed by element id."""

    def __init__(self, sd: Mapping[str, Any]) -> None:
        """Index the elements; refuse slicing the checker cannot evaluate."""
        self.root = sd["type"]
        self.elements: list[Element] = sd["differential"]["element"]
        self.by_id: dict[str, Element] = {e.get("id", e["path"]): e for e in self.elements}
        for element in self.elements:
            element_id = element.get("id", element["path"])
            sliced_id, _, slice_name = element_id.rpartition(":")
            is_slice = ":" in element_id and "." not in slice_name
            if is_slice and "slicing" not in self.by_id.get(sliced_id, {}):
                raise ValueError(f"{sd['url']} {element_id}: a slice of an unsliced element")
            for discriminator in (element.get("slicing") or {}).get("discriminator", []):
                if discriminator.get("type") not in DISCRIMINATORS:
                    raise ValueError(
                        f"{sd['url']} {element['path']}: discriminator type "
                        f"{discriminator.get('type')!r} is not supported"
                    )

    def in_slice(self, item: Any, sliced_id: str, slice_name: str) -> bool:
        """Whether an item of the sliced element fits the slice's discriminator values."""
        slicing = self.by_id[sliced_id].get("slicing") or {}
        slice_id = f"{sliced_id}:{slice_name}"
        for discriminator in slicing.get("discriminator", []):
            path = discriminator["path"]
            target_id = slice_id if path == "$this" else f"{slice_id}.{path}"
            wanted = _constraints(self.by_id.get(target_id, {}))
            values = [item] if path == "$this" else _nodes(item, path.split("."))
            for key, expected in wanted:
                if not any(_fits(value, key, expected) for value in values):
                    return False
        return True

    def slices(self, sliced_id: str) -> list[str]:
        """The slice names declared under a sliced element."""
        prefix = f"{sliced_id}:"
        return [
            element_id[len(prefix) :]
            for element_id in self.by_id
            if element_id.startswith(prefix) and "." not in element_id[len(prefix) :]
        ]

    def members(self, node: Any, prefix: str, step: tuple[str, str | None]) -> list[Any]:
        """The children of a node at one step: all of them, or the slice's only."""
        name, slice_name = step
        children = _children(node, name)
        if slice_name is None:
            return children
        sliced_id = f"{prefix}.{name}"
        return [c for c in children if self.in_slice(c, sliced_id, slice_name)]

    def select(self, resource: Any, steps: list[tuple[str, str | None]]) -> list[Any]:
        """All nodes at the steps below the resource root."""
        nodes, prefix = [resource], self.root
        for step in steps:
            nodes = [child for node in nodes for child in self.members(node, prefix, step)]
            prefix = f"{prefix}.{step[0]}" + (f":{step[1]}" if step[1] else "")
        return nodes


@functools.cache
def _profile(url: str) -> _Profile:
    """The indexed profile of one canonical URL."""
    return _Profile(structure_definitions()[url])


def check(resource: Mapping[str, Any]) -> list[str]:
    """Problems of a resource against the profile in its meta.profile; [] when it conforms."""
    declared = (resource.get("meta") or {}).get("profile") or []
    definitions = structure_definitions()
    known = [definitions[url] for url in declared if url in definitions]
    if not known:
        return [f"{resource.get('resourceType')} declares none of the app's profiles"]
    problems = []
    for sd in known:
        if sd.get("type") != resource.get("resourceType"):
            problems.append(
                f"{sd['url']} is for {sd.get('type')}, not {resource.get('resourceType')}"
            )
            continue
        profile = _profile(sd["url"])
        for element in profile.elements:
            problems.extend(_check_element(resource, element, profile))
    return problems


def _check_element(resource: Mapping[str, Any], element: Element, profile: _Profile) -> list[str]:
    """Cardinality, fixed values, patterns and closed slicing of one differential element."""
    element_id = element.get("id", element["path"])
    steps = _steps(element_id)
    if not steps:
        return []
    prefix = ".".join([profile.root, *(n + (f":{s}" if s else "") for n, s in steps[:-1])])
    parents = profile.select(resource, steps[:-1])
    problems = []
    low = int(element.get("min", 0))
    high = element.get("max", "*")
    for parent in parents:
        count = len(profile.members(parent, prefix, steps[-1]))
        if count < low:
            problems.append(f"{element_id}: {count} present, at least {low} required")
        if high != "*" and count > int(high):
            problems.append(f"{element_id}: {count} present, at most {high} allowed")
    nodes = profile.select(resource, steps)
    for key, expected in _constraints(element):
        for value in nodes:
            if not _fits(value, key, expected):
                problems.append(f"{element_id}: {value!r} does not match {key} {expected!r}")
    if (element.get("slicing") or {}).get("rules") == "closed":
        names = profile.slices(element_id)
        for value in nodes:
            if not any(profile.in_slice(value, element_id, name) for name in names):
                problems.append(f"{element_id}: {value!r} fits none of its slices (closed)")
    return problems
