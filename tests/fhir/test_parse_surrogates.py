"""parse_bundle_json's check for half a surrogate pair: the quick look at the text decides
when the walk over the decoded JSON is needed, and never lets one through."""

from __future__ import annotations

import json

import pytest

from smart_app.errors import BundleError
from smart_app.fhir.read import parse_bundle_json

HALF = "not Unicode text"


def bundle_text(display: str, *, ensure_ascii: bool) -> str:
    """A Bundle whose Patient's name text is `display`, as JSON text."""
    data = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "p", "name": [{"text": display}]}}
        ],
    }
    return json.dumps(data, ensure_ascii=ensure_ascii)


@pytest.mark.parametrize(
    "text",
    [
        '{"resourceType": "Bundle", "x": "\\ud800"}',
        '{"resourceType": "Bundle", "x": "\\uDFFF tail"}',
        '{"resourceType": "Bundle", "x": "\\ude00\\ud83d"}',
        '{"resourceType": "Bundle", "\\udbff": 1}',
        '{"resourceType": "Bundle", "x": ["ok", {"y": "\\ud83d"}]}',
        '{"resourceType": "Bundle", "x": "é \\ud800"}',
        '{"resourceType": "Bundle", "x": "\ud800"}',
    ],
    ids=["escape", "upper-case", "reversed-pair", "key", "nested", "non-ascii", "raw"],
)
def test_half_a_pair_is_refused(text: str) -> None:
    """Escaped (any case, in keys, nested, beside other text) or raw in the text: refused."""
    with pytest.raises(BundleError, match=HALF):
        parse_bundle_json(text)


@pytest.mark.parametrize(
    "display",
    ["Ada", "Zoë Ødegård", "😀 emoji", "\\ud800 written out as text", "back\\slash"],
)
@pytest.mark.parametrize("ensure_ascii", [True, False], ids=["escaped", "utf8"])
def test_whole_characters_pass(display: str, *, ensure_ascii: bool) -> None:
    """Paired escapes (an emoji written as \\ud83d\\ude00), non-ASCII text and a backslash
    followed by 'ud800' as text are read, and read as written."""
    data = parse_bundle_json(bundle_text(display, ensure_ascii=ensure_ascii))
    assert data["entry"][0]["resource"]["name"][0]["text"] == display
