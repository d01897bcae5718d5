"""The rules package stays pure: standard library and smart_app only, no I/O clients, no clock."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import smart_app.rules

RULES_DIR = Path(smart_app.rules.__file__).resolve().parent
MODULES = sorted(RULES_DIR.rglob("*.py"))

FORBIDDEN_TOP_LEVEL = {
    "flask",
    "requests",
    "httpx",
    "fhirclient",
    "fhir",
    "fhir_resources",
    "urllib",
    "socket",
    "http",
    "sqlite3",
    "subprocess",
    "time",
}
FORBIDDEN_PACKAGES = ("smart_app.fhir", "smart_app.web")
CLOCK_ATTRIBUTES = {"today", "now", "utcnow"}


def _package_of(path: Path) -> str:
    relative = path.relative_to(RULES_DIR.parent.parent).with_suffix("")
    return ".".join(relative.parts[:-1])


def _imported_modules(path: Path) -> list[str]:
    """Every absolute module name a file imports, relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(path).split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base)
                if node.module:
                    names.append(f"{prefix}.{node.module}")
                else:
                    names.extend(f"{prefix}.{alias.name}" for alias in node.names)
            else:
                assert node.module is not None
                names.append(node.module)
                names.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _clock_calls(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute):
            owner = func.value.id if isinstance(func.value, ast.Name) else ""
            if func.attr in CLOCK_ATTRIBUTES or (func.attr == "time" and owner == "time"):
                found.append(f"line {node.lineno}: {ast.unparse(func)}()")
        elif isinstance(func, ast.Name) and func.id in CLOCK_ATTRIBUTES | {"time"}:
            found.append(f"line {node.lineno}: {func.id}()")
    return found


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(RULES_DIR)) for p in paths]


def test_rules_modules_found() -> None:
    names = {p.name for p in MODULES}
    expected = {"dosing.py", "steroids.py", "monitoring.py", "eligibility.py", "plan.py"}
    assert expected <= names


@pytest.mark.parametrize("path", MODULES, ids=_ids(MODULES))
def test_no_forbidden_imports(path: Path) -> None:
    bad = [
        name
        for name in _imported_modules(path)
        if name.split(".")[0] in FORBIDDEN_TOP_LEVEL
        or any(name == pkg or name.startswith(pkg + ".") for pkg in FORBIDDEN_PACKAGES)
    ]
    assert not bad, f"{path.name} imports {bad}"


@pytest.mark.parametrize("path", MODULES, ids=_ids(MODULES))
def test_only_stdlib_or_smart_app_imports(path: Path) -> None:
    bad = [
        name
        for name in _imported_modules(path)
        if name.split(".")[0] not in sys.stdlib_module_names and name.split(".")[0] != "smart_app"
    ]
    assert not bad, f"{path.name} imports {bad}"


@pytest.mark.parametrize("path", MODULES, ids=_ids(MODULES))
def test_no_clock_calls(path: Path) -> None:
    calls = _clock_calls(path)
    assert not calls, f"{path.name} reads the clock: {calls}"


def test_detectors_catch_violations(tmp_path: Path) -> None:
    """The AST checks above would notice a violation."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import datetime as dt\n"
        "import time\n"
        "from http import client\n"
        "from smart_app.fhir import reader\n"
        "import numpy\n"
        "x = dt.date.today()\n"
        "y = dt.datetime.now()\n"
        "z = time.time()\n",
        encoding="utf-8",
    )
    names = set(_imported_modules(sample))
    assert {"time", "http.client", "smart_app.fhir", "numpy"} <= names
    assert "numpy" not in sys.stdlib_module_names
    assert len(_clock_calls(sample)) == 3
