"""Credentials out of server text: the token in any case or in part, and bearer-looking values."""

from __future__ import annotations

import re
import string

MASK = "[redacted]"
MIN_PART = 12
"""A run of this many characters of the token, or more, is the token in part."""
B64TOKEN = r"[A-Za-z0-9\-._~+/]+=*"
"""RFC 6750 b64token: what a bearer token is made of."""
SCHEME_VALUE = re.compile(rf"\b(Bearer|Basic|DPoP)(\s+)({B64TOKEN})", re.IGNORECASE)
"""A credential after an HTTP authentication scheme ("Authorization: Bearer ...")."""
NAMED_VALUE = re.compile(
    r"((?:access_token|refresh_token|id_token|client_secret|client_assertion|authorization)"
    r"""["']?\s*[:=]\s*["']?)([^"'\s&,;}\]]+)""",
    re.IGNORECASE,
)
"""A credential by its name in JSON, a form or a header ("access_token": "...")."""
ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
"""Lower case that keeps every index (str.lower may not: 'İ' becomes two characters)."""


def redact(text: str, *, secret: str | None = None) -> str:
    """`text` without the secret (in any case, or any run of MIN_PART of its characters) and
    without any value that looks like a credential (after Bearer/Basic, or named
    access_token, refresh_token, id_token, client_secret, client_assertion or Authorization)."""
    if not text:
        return text
    if secret:
        text = _without_secret(text, secret)
    text = SCHEME_VALUE.sub(_scheme_value, text)
    return NAMED_VALUE.sub(lambda m: m.group(1) + _masked(m.group(2)), text)


def _without_secret(text: str, secret: str) -> str:
    """Every case-insensitive occurrence of the secret, and of each run of MIN_PART or more of
    its characters, replaced by the mask."""
    text = re.sub(re.escape(secret), MASK, text, flags=re.IGNORECASE)
    if len(secret) <= MIN_PART:
        return text
    folded, parts = text.translate(ASCII_LOWER), _parts(secret)
    covered = [False] * len(text)
    for start in range(len(folded) - MIN_PART + 1):
        if folded[start : start + MIN_PART] in parts:
            covered[start : start + MIN_PART] = [True] * MIN_PART
    if not any(covered):
        return text
    out: list[str] = []
    for index, char in enumerate(text):
        if not covered[index]:
            out.append(char)
        elif index == 0 or not covered[index - 1]:
            out.append(MASK)
    return "".join(out)


def _parts(secret: str) -> frozenset[str]:
    """Every MIN_PART-character run of the secret, lower-cased: a text shares a run of MIN_PART
    or more characters with it exactly where its MIN_PART-character windows are among these."""
    folded = secret.translate(ASCII_LOWER)
    return frozenset(folded[i : i + MIN_PART] for i in range(len(folded) - MIN_PART + 1))


def _scheme_value(match: re.Match[str]) -> str:
    """The scheme kept, its value masked when it looks like a credential."""
    return match.group(1) + match.group(2) + _masked(match.group(3))


def _masked(value: str) -> str:
    """The mask for a value that looks like a credential; a plain word is kept ("Bearer
    token", "authorization failed")."""
    if value.startswith(MASK[:-1]):
        return value
    plain_word = value.isalpha() and len(value) < 20
    return value if plain_word or len(value) < 8 else MASK
