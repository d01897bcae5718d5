"""A small checker of resources against the app's StructureDefinitions (differential only)."""

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
        for element in sd["differential"]["element"]:
            problems.extend(_check_element(resource, element))
    return problems


def _check_element(resource: Mapping[str, Any], element: Mapping[str, Any]) -> list[str]:
    """Cardinality, fixed values and patterns of one differential element."""
    path = element["path"].split(".")[1:]
    if not path:
        return []
    parents = _nodes(resource, path[:-1])
    problems = []
    low = int(element.get("min", 0))
    high = element.get("max", "*")
    for parent in parents:
        count = len(_children(parent, path[-1]))
        if count < low:
            problems.append(f"{element['path']}: {count} present, at least {low} required")
        if high != "*" and count > int(high):
            problems.append(f"{element['path']}: {count} present, at most {high} allowed")
    for key, expected in element.items():
        if not key.startswith(PATTERN_PREFIXES) or key == "fixed":
            continue
        for value in _nodes(resource, path):
            ok = value == expected if key.startswith("fixed") else _matches(value, expected)
            if not ok:
                problems.append(f"{element['path']}: {value!r} does not match {key} {expected!r}")
    return problems
