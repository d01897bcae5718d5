"""A reader that never crashes: mutated fixture bundles through the whole command line.

Each case takes a fixture bundle, deletes or replaces one to three random elements (seeded, so
every failure names a reproducible case) and runs `zolgensma-smart plan` in-process (JSON, and
text for every fifth case). Whatever the mutation, the command exits 0 or 2 without an
exception, prints text a UTF-8 stdout can take, and a JSON plan with a dose was dosed on the
value of a weight Observation that is usable (status final, amended, corrected or preliminary;
no comparator; a kg, g, lb or oz unit) and whose subject references this patient.

`make fuzz` (or MUTATION_CASES=20000) runs more cases than `make test`'s 2,000.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from smart_app.cli import EXIT_INPUT, EXIT_OK, main
from smart_app.fhir import codes
from tests.test_findings import BASE_EXAMPLE, BUNDLES, DATES, INFUSION, ON

SEED = 20261120
CASES = int(os.environ.get("MUTATION_CASES", "2000"))
MAX_MUTATIONS = 3

BIG_INT = "@@big-int@@"
BIG_EXPONENT = "@@big-exponent@@"
TINY_EXPONENT = "@@tiny-exponent@@"
RAW_NUMBERS = {
    BIG_INT: "9" * 5000,
    BIG_EXPONENT: "1e999999999999999999",
    TINY_EXPONENT: "1e-999999999999999999",
}
"""Numbers json.dumps cannot write (a 5,000-digit integer, exponents past any context)."""

PID = "@@patient-id@@"
"""Stands for the fixture's own Patient id in the strings below."""
STRINGS = (
    "",
    " ",
    "kg",
    "g",
    "[lb_av]",
    "lb",
    "[oz_av]",
    "stone",
    "mg/dL",
    "U/L",
    "<",
    "<=",
    ">",
    "ad",
    "final",
    "preliminary",
    "cancelled",
    "entered-in-error",
    "active",
    "resolved",
    "refuted",
    "Patient",
    f"Patient/{PID}",
    "Patient/someone-else",
    f"Patient/{PID}/_history/1",
    f"http://other.example/fhir/Patient/{PID}",
    f"http://ehr.example/fhir/Patient/{PID}",
    "urn:uuid:6c1f",
    "29463-7",
    "1742-6",
    codes.LOINC,
    codes.UCUM,
    codes.SNOMED,
    codes.ICD10CM,
    "K74.6",
    "J21.9",
    "2026-11-18",
    "2026-11-18T10:00:00Z",
    "2026-11-18T10:00:00",
    "2026-11",
    "2026-02-30",
    "9999-12-31",
    "9999-12-31T23:59:59-14:00",
    "0001-01-01",
    "0001-01-01T00:00:00+14:00",
    "1:50",
    "<1:25",
    "NaN",
    "Infinity",
    "1e999999999",
    "\u0000",
    "\U0001f642",
    "\ud800 half a surrogate pair",
    BIG_INT,
    BIG_EXPONENT,
    TINY_EXPONENT,
)
NUMBERS = (0, 1, -1, 2, 6, 6.1, 8.4, 21, -0.5, 0.0001, 1e308, 2**63, 10**30)
WEIGHT_CODES = {code for _, code in codes.WEIGHT}
USABLE_STATUSES = {"final", "amended", "corrected", "preliminary"}
KG_PER_UNIT = {
    "kg": Decimal(1),
    "kilogram": Decimal(1),
    "kilograms": Decimal(1),
    "g": Decimal("0.001"),
    "gram": Decimal("0.001"),
    "grams": Decimal("0.001"),
    "[lb_av]": Decimal("0.45359237"),
    "lb": Decimal("0.45359237"),
    "lbs": Decimal("0.45359237"),
    "pound": Decimal("0.45359237"),
    "pounds": Decimal("0.45359237"),
    "[oz_av]": Decimal("0.45359237") / 16,
    "oz": Decimal("0.45359237") / 16,
    "ounce": Decimal("0.45359237") / 16,
    "ounces": Decimal("0.45359237") / 16,
}
"""Weight units by their definitions (1 lb = 0.45359237 kg), independent of smart_app.units."""

ElementPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Case:
    """One mutated bundle: where it came from and what was done to it."""

    number: int
    fixture: str
    mutations: tuple[str, ...]
    data: Any

    @property
    def text_format(self) -> bool:
        """Every fifth case prints text (its dose is not checked); the others print JSON."""
        return self.number % 5 == 4


@cache
def _fixtures() -> tuple[tuple[str, str], ...]:
    """(name, JSON text) of every fixture bundle and the eligible example."""
    paths = [*sorted(BUNDLES.glob("*.json")), BASE_EXAMPLE]
    return tuple((p.stem, p.read_text(encoding="utf-8")) for p in paths)


def _paths(node: Any, path: ElementPath = ()) -> Iterator[ElementPath]:
    """The path of every element below `node` (object members and array items)."""
    items: Any = ()
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    for key, child in items:
        yield (*path, key)
        yield from _paths(child, (*path, key))


def _random_value(rng: random.Random, patient_id: str, depth: int = 0) -> Any:
    """A random JSON value: a tricky string or number, a literal, or a small array or object."""
    roll = rng.random()
    if roll < 0.35:
        return rng.choice(STRINGS).replace(PID, patient_id)
    if roll < 0.55:
        return rng.choice(NUMBERS)
    if roll < 0.65:
        return rng.choice((None, True, False))
    if roll < 0.72:
        return "".join(rng.choice("aZ09 /:.-_é") for _ in range(rng.randint(1, 12)))
    if depth >= 2:
        return rng.choice(([], {}))
    if roll < 0.86:
        return [_random_value(rng, patient_id, depth + 1) for _ in range(rng.randint(0, 3))]
    keys = ("reference", "coding", "value", "code", "unit", "text", "system", "start")
    return {
        rng.choice(keys): _random_value(rng, patient_id, depth + 1)
        for _ in range(rng.randint(0, 3))
    }


def _mutate(data: Any, rng: random.Random, patient_id: str) -> tuple[str, ...]:
    """Delete or replace 1-3 random elements of `data` in place; say what was done."""
    done = []
    for _ in range(rng.randint(1, MAX_MUTATIONS)):
        paths = list(_paths(data))
        if not paths:
            break
        path = rng.choice(paths)
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        where = "/".join(map(str, path))
        if rng.random() < 0.4:
            del parent[path[-1]]
            done.append(f"delete {where}")
        else:
            value = _random_value(rng, patient_id)
            parent[path[-1]] = value
            done.append(f"set {where} = {json.dumps(value)[:60]}")
    return tuple(done)


def _patient_id(text: str) -> str:
    """The Patient id of an unmutated fixture."""
    bundle = json.loads(text)
    (patient,) = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    ]
    return str(patient["id"])


def cases(count: int, *, seed: int = SEED) -> Iterator[Case]:
    """`count` mutated bundles, the same ones for the same seed."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible sequence of cases, not a secret
    fixtures = _fixtures()
    for number in range(count):
        name, text = fixtures[number % len(fixtures)]
        data = json.loads(text)
        mutations = _mutate(data, rng, _patient_id(text))
        yield Case(number, name, mutations, data)


def _text(data: Any) -> str:
    """JSON text of a mutated bundle, with the numbers json.dumps cannot write put in."""
    text = json.dumps(data)  # \u escapes: a lone surrogate cannot be written as UTF-8
    for marker, number in RAW_NUMBERS.items():
        text = text.replace(json.dumps(marker), number)
    return text


def run_cli(path: Path, fixture: str, *, text: bool = False) -> tuple[int, str, str]:
    """`zolgensma-smart plan --bundle path` in-process: (exit code, stdout, stderr)."""
    on, infusion = DATES.get(fixture, (ON, INFUSION))
    out, err = io.StringIO(), io.StringIO()
    argv = ["plan", "--bundle", str(path), "--on", str(on), "--infusion-date", str(infusion)]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*argv, "--format", "text" if text else "json"])
    return code, out.getvalue(), err.getvalue()


# The oracle: which weights a dose may come from ---------------------------------------------


def _get(node: Any, *keys: str | int) -> Any:
    """node[k1][k2]..., or None where the path does not exist."""
    for key in keys:
        if isinstance(node, dict) and isinstance(key, str):
            node = node.get(key)
        elif isinstance(node, list) and isinstance(key, int) and key < len(node):
            node = node[key]
        else:
            return None
    return node


def _resources(data: Any) -> list[tuple[Any, dict[str, Any]]]:
    """(fullUrl, resource) of every entry that holds a resource object."""
    entries = _get(data, "entry")
    if not isinstance(entries, list):
        return []
    return [
        (e.get("fullUrl"), e["resource"])
        for e in entries
        if isinstance(e, dict) and isinstance(e.get("resource"), dict)
    ]


def _patient_refs(data: Any) -> set[str]:
    """The references that name the bundle's one Patient: Patient/<id> and its fullUrl."""
    patients = [(u, r) for u, r in _resources(data) if r.get("resourceType") == "Patient"]
    if len(patients) != 1:
        return set()
    url, patient = patients[0]
    pid = patient.get("id")
    if not isinstance(pid, str) or not pid:
        pid = url.rsplit("/", 1)[-1] if isinstance(url, str) else None
    refs = {f"Patient/{pid}"} if pid else set()
    return refs | ({url} if isinstance(url, str) and url else set())


def _is_number(value: Any) -> bool:
    """A JSON number (not a boolean)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _one_of(value: Any, allowed: set[str]) -> bool:
    """A string among `allowed` (anything else, hashable or not, is not)."""
    return isinstance(value, str) and value in allowed


def usable_weights_kg(data: Any) -> set[Decimal]:
    """Every kg value a dose may rest on: usable weight Observations about this patient."""
    refs = _patient_refs(data)
    out: set[Decimal] = set()
    for _, r in _resources(data):
        codings = _get(r, "code", "coding")
        is_weight = isinstance(codings, list) and any(
            isinstance(c, dict)
            and c.get("system") == codes.LOINC
            and _one_of(c.get("code"), WEIGHT_CODES)
            for c in codings
        )
        q = r.get("valueQuantity")
        if (
            r.get("resourceType") != "Observation"
            or not is_weight
            or not _one_of(r.get("status"), USABLE_STATUSES)
            or not _one_of(_get(r, "subject", "reference"), refs)
            or not isinstance(q, dict)
            or q.get("comparator") is not None
            or not _is_number(q.get("value"))
        ):
            continue
        for unit in (q.get("code"), q.get("unit")):
            if isinstance(unit, str) and unit.strip().lower() in KG_PER_UNIT:
                out.add(Decimal(str(q["value"])) * KG_PER_UNIT[unit.strip().lower()])
    return out


@dataclass(frozen=True)
class Outcome:
    """How one case ended: the exit code (None for an exception) and what is wrong, if anything."""

    code: int | None
    dosed: bool
    problem: str | None


def judge(case: Case, code: int, out: str, err: str) -> Outcome:
    """Check one case's exit code, output and dose."""
    if code not in (EXIT_OK, EXIT_INPUT):
        return Outcome(code, False, f"exit {code}: {err.strip()}")
    if code == EXIT_INPUT:
        if out or err.count("\n") != 1 or not err.startswith("zolgensma-smart: error: "):
            return Outcome(code, False, f"exit 2 without exactly one error line: {err!r}")
        return Outcome(code, False, None)
    if case.text_format:
        return Outcome(code, "DOSE: kit" in out, None)
    dose = json.loads(out)["dose"]
    if dose is None:
        return Outcome(code, False, None)
    dosed = Decimal(str(dose["weight_kg"]))
    allowed = usable_weights_kg(case.data)
    if not any(abs(dosed - kg) <= Decimal("0.001") for kg in allowed):
        problem = f"dosed on {dosed} kg; usable weights of this patient: {sorted(allowed)}"
        return Outcome(code, True, problem)
    return Outcome(code, True, None)


def run_case(case: Case, path: Path) -> Outcome:
    """Run one case and judge it; an exception is the failure looked for."""
    path.write_text(_text(case.data), encoding="utf-8")
    try:
        code, out, err = run_cli(path, case.fixture, text=case.text_format)
        out.encode("utf-8")  # what a real stdout does with the text; stderr backslash-escapes
    except Exception as exc:  # any exception at all is the failure being looked for
        return Outcome(None, False, f"{type(exc).__name__}: {exc}")
    return judge(case, code, out, err)


# Tests ---------------------------------------------------------------------------------------


def test_mutated_bundles_never_crash_and_never_dose_on_an_unusable_weight(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bundle.json"
    failures = []
    exits = {EXIT_OK: 0, EXIT_INPUT: 0}
    dosed = 0
    for case in cases(CASES):
        outcome = run_case(case, path)
        if outcome.problem is not None:
            mutations = "; ".join(case.mutations)
            failures.append(f"case {case.number} ({case.fixture}; {mutations}): {outcome.problem}")
        elif outcome.code is not None:
            exits[outcome.code] += 1
            dosed += outcome.dosed
    assert not failures, f"{len(failures)} of {CASES} cases failed:\n" + "\n".join(failures[:20])
    # The mutations are small: most charts still plan, most plans still dose, some are refused.
    assert exits[EXIT_OK] > exits[EXIT_INPUT] > 0
    assert dosed > exits[EXIT_OK] // 2


def test_cases_are_reproducible_from_the_seed() -> None:
    first = [(c.fixture, c.mutations) for c in cases(50)]
    again = [(c.fixture, c.mutations) for c in cases(50)]
    assert first == again
    assert [(c.fixture, c.mutations) for c in cases(50, seed=SEED + 1)] != first


def test_every_fixture_is_mutated() -> None:
    names = {c.fixture for c in cases(len(_fixtures()))}
    assert names == {name for name, _ in _fixtures()}


def test_the_numbers_json_cannot_write_reach_the_text() -> None:
    text = _text({"value": BIG_INT, "other": [BIG_EXPONENT, TINY_EXPONENT]})
    assert (
        text == f'{{"value": {"9" * 5000}, "other": [1e999999999999999999, 1e-999999999999999999]}}'
    )


# The oracle itself -----------------------------------------------------------------------------


def _weight(**changes: Any) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": codes.LOINC, "code": "29463-7"}]},
        "subject": {"reference": "Patient/p1"},
        "valueQuantity": {"value": 6.1, "unit": "kg", "system": codes.UCUM, "code": "kg"},
    }
    obs.update(changes)
    return obs


def _bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    patient = {"resourceType": "Patient", "id": "p1"}
    entries = [{"fullUrl": "http://ehr.example/fhir/Patient/p1", "resource": patient}]
    return {"entry": entries + [{"resource": r} for r in resources]}


@pytest.mark.parametrize(
    ("changes", "usable"),
    [
        ({}, {Decimal("6.1")}),
        ({"subject": {"reference": "http://ehr.example/fhir/Patient/p1"}}, {Decimal("6.1")}),
        ({"valueQuantity": {"value": 6100, "code": "g"}}, {Decimal("6.1")}),
        ({"status": "preliminary"}, {Decimal("6.1")}),
        ({"status": "entered-in-error"}, set()),
        ({"subject": {"reference": "Patient/p2"}}, set()),
        ({"subject": {"reference": "http://other.example/fhir/Patient/p1"}}, set()),
        ({"subject": None}, set()),
        ({"valueQuantity": {"value": 6.1, "code": "kg", "comparator": "<"}}, set()),
        ({"valueQuantity": {"value": "6.1", "code": "kg"}}, set()),
        ({"valueQuantity": {"value": 6.1, "code": "stone"}}, set()),
        ({"code": {"coding": [{"system": codes.LOINC, "code": "8302-2"}]}}, set()),
    ],
)
def test_the_oracle_names_only_usable_weights_of_this_patient(
    changes: dict[str, Any], usable: set[Decimal]
) -> None:
    assert usable_weights_kg(_bundle(_weight(**changes))) == usable
