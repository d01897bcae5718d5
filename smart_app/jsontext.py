"""JSON text byte for byte as `json.dumps(data, indent=2, ensure_ascii=False)` writes it, faster.

Python's json module drops to its pure-Python encoder whenever `indent` is set. Here containers
are walked by one recursive function that appends to a list, and a container holding scalars
only is written by the C encoder with the item separator of its depth. Anything outside plain
JSON types (subclasses, non-string keys, other objects) falls back to `json.dumps` itself, so
the text is the standard library's in every case.
"""

from __future__ import annotations

import json
from json import encoder as _encoder
from typing import Any

INDENT = "  "
KEYS_REMEMBERED = 4096
"""Encoded keys are kept for reuse up to this many (plan JSON has a few dozen)."""
_SCALAR_TYPES = frozenset({str, int, float, bool, type(None)})
_STR_ONLY = frozenset({str})
_encode_str = _encoder.encode_basestring
_INFINITY = float("inf")


class _Fallback(Exception):
    """A value this writer does not handle exactly: let json.dumps write it all."""


def _refuse(value: object) -> object:
    """The C encoder's `default`: anything it cannot write sends the whole text to json.dumps."""
    raise _Fallback(type(value).__name__)


def _leaf_encoder(depth: int) -> Any:
    """The C encoder writing a scalars-only container at `depth` (None without the C module)."""
    if _encoder.c_make_encoder is None:  # pragma: no cover - CPython always has it
        return None
    return _encoder.c_make_encoder(
        None, _refuse, _encode_str, None, ": ", ",\n" + INDENT * depth, False, False, True
    )


class _Writer:
    """Appends the text of one value to a list of chunks."""

    def __init__(self) -> None:
        """Separators and C encoders per depth are made on first use."""
        self.leaves: dict[int, Any] = {}
        self.pads: dict[int, str] = {}
        self.keys: dict[str, str] = {}

    def key(self, key: object) -> str:
        """A key and its separator ('"name": '), remembered for the next dict."""
        if type(key) is not str:
            raise _Fallback("key")
        named = _encode_str(key) + ": "
        if len(self.keys) < KEYS_REMEMBERED:
            self.keys[key] = named
        return named

    def pad(self, depth: int) -> str:
        """A newline and the indentation of `depth`."""
        pad = self.pads.get(depth)
        if pad is None:
            pad = self.pads[depth] = "\n" + INDENT * depth
        return pad

    def leaf(self, value: dict[str, Any] | list[Any] | tuple[Any, ...], depth: int) -> str | None:
        """A scalars-only container's items joined at `depth` (between its brackets), or None."""
        if depth not in self.leaves:
            self.leaves[depth] = _leaf_encoder(depth)
        encode = self.leaves[depth]
        if encode is None:  # pragma: no cover - CPython always has the C encoder
            return None
        return "".join(encode(value, 0))[1:-1]

    def write(self, value: Any, depth: int, out: list[str]) -> None:
        """Append `value` written at nesting `depth`."""
        kind = type(value)
        if kind is str:
            out.append(_encode_str(value))
        elif kind is dict:
            self.mapping(value, depth, out)
        elif kind is list or kind is tuple:
            self.sequence(value, depth, out)
        elif kind in _SCALAR_TYPES:
            out.append(_scalar(value))
        else:
            raise _Fallback(kind.__name__)

    def mapping(self, value: dict[Any, Any], depth: int, out: list[str]) -> None:
        """Append a dict: one key per line, or '{}'."""
        if not value:
            out.append("{}")
            return
        inner = self.pad(depth + 1)
        closing = self.pad(depth) + "}"
        if _STR_ONLY.issuperset(map(type, value)) and _SCALAR_TYPES.issuperset(
            map(type, value.values())
        ):
            items = self.leaf(value, depth + 1)
            if items is not None:
                out.append("{" + inner + items + closing)
                return
        separator = "{" + inner
        following = "," + inner
        keys = self.keys
        append = out.append
        for key, item in value.items():
            named = keys.get(key)
            if named is None:
                named = self.key(key)
            append(separator)
            append(named)
            separator = following
            kind = type(item)
            if kind is str:
                append(_encode_str(item))
            elif kind in _SCALAR_TYPES:
                append(_scalar(item))
            else:
                self.write(item, depth + 1, out)
        append(closing)

    def sequence(self, value: list[Any] | tuple[Any, ...], depth: int, out: list[str]) -> None:
        """Append a list (or tuple): one item per line, or '[]'."""
        if not value:
            out.append("[]")
            return
        inner = self.pad(depth + 1)
        closing = self.pad(depth) + "]"
        if _SCALAR_TYPES.issuperset(map(type, value)):
            items = self.leaf(value, depth + 1)
            if items is not None:
                out.append("[" + inner + items + closing)
                return
        separator = "[" + inner
        following = "," + inner
        for item in value:
            out.append(separator)
            separator = following
            self.write(item, depth + 1, out)
        out.append(closing)


def _scalar(value: int | float | bool | None) -> str:
    """A number, boolean or null as json.dumps writes it (NaN and infinities included)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is int:
        return int.__repr__(value)
    if value != value:
        return "NaN"
    if value == _INFINITY:
        return "Infinity"
    if value == -_INFINITY:
        return "-Infinity"
    return float.__repr__(value)


_WRITER = _Writer()


def dumps_indented(data: Any) -> str:
    """`json.dumps(data, indent=2, ensure_ascii=False)`, the same text, faster for plain JSON."""
    out: list[str] = []
    try:
        _WRITER.write(data, 0, out)
    except (_Fallback, RecursionError):
        return json.dumps(data, indent=2, ensure_ascii=False)
    return "".join(out)
