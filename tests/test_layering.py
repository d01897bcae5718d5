"""The layers stay apart: rules know nothing of the app, config knows no FHIR, web builds no FHIR.

Read from the source with `ast` (every import, at any depth of a module), and for rules and
config also by importing them in a fresh interpreter and listing what got loaded.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import smart_app

PACKAGE = Path(smart_app.__file__).resolve().parent
ROOT = PACKAGE.parent
RULES = sorted((PACKAGE / "rules").rglob("*.py"))
WEB = sorted((PACKAGE / "web").rglob("*.py"))
WEB_PAGES = sorted(
    p for p in (PACKAGE / "web").rglob("*") if p.suffix in {".html", ".js", ".svg"} and p.is_file()
)
RULES_MAY_IMPORT = ("smart_app.rules", "smart_app.errors")
"""The rules' own package, and the app's exception hierarchy: a leaf module (it loads nothing of
the app at run time), so the rules raise the InputError and PolicyError the CLI and web catch."""
THIRD_PARTY_OUTSIDE_RULES = ("flask", "requests", "fhir", "werkzeug", "authlib", "joserfc")
"""Web, HTTP and FHIR model libraries: `fhir` is fhir.resources' top-level package."""


def _module_name(path: Path) -> str:
    """smart_app/rules/plan.py -> smart_app.rules.plan (a package's __init__ -> the package)."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> list[str]:
    """Every absolute module a file imports (relative imports resolved), with `from a import b`
    also giving `a.b`, since b may be a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path) if path.is_relative_to(ROOT) else ""
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            names.append(base)
            names.extend(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def _within(name: str, package: str) -> bool:
    """`name` is `package` or one of its submodules."""
    return name == package or name.startswith(package + ".")


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _loaded_after_import(*modules: str) -> list[str]:
    """The modules a fresh interpreter holds after importing `modules`."""
    code = (
        "import json, sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return json.loads(done.stdout)


# rules ------------------------------------------------------------------------------------


def test_the_rules_modules_are_found() -> None:
    names = {p.name for p in RULES}
    assert {"model.py", "label.py", "followup.py", "liver_decision.py", "course.py"} <= names


@pytest.mark.parametrize("path", RULES, ids=_rel)
def test_rules_import_nothing_of_the_app_outside_rules(path: Path) -> None:
    outside = [
        name
        for name in imported_modules(path)
        if _within(name.split(".")[0], "smart_app")
        and not any(_within(name, allowed) for allowed in RULES_MAY_IMPORT)
    ]
    assert not outside, f"{_rel(path)} imports {outside}"


@pytest.mark.parametrize("path", RULES, ids=_rel)
def test_rules_import_no_web_http_or_fhir_library(path: Path) -> None:
    bad = [n for n in imported_modules(path) if n.split(".")[0] in THIRD_PARTY_OUTSIDE_RULES]
    assert not bad, f"{_rel(path)} imports {bad}"


def test_importing_every_rules_module_loads_nothing_else_of_the_app_or_the_web() -> None:
    rules = [_module_name(p) for p in RULES]
    loaded = _loaded_after_import(*rules)
    app = [m for m in loaded if _within(m.split(".")[0], "smart_app") and m != "smart_app"]
    assert [m for m in app if not any(_within(m, ok) for ok in RULES_MAY_IMPORT)] == []
    assert [m for m in loaded if m.split(".")[0] in THIRD_PARTY_OUTSIDE_RULES] == []


# config -----------------------------------------------------------------------------------


def test_config_does_not_import_fhir() -> None:
    names = imported_modules(PACKAGE / "config.py")
    assert [n for n in names if _within(n, "smart_app.fhir")] == []
    assert [n for n in names if n.split(".")[0] in THIRD_PARTY_OUTSIDE_RULES] == []


def test_importing_config_loads_no_fhir_module() -> None:
    loaded = _loaded_after_import("smart_app.config")
    assert "smart_app.config" in loaded
    assert [m for m in loaded if _within(m, "smart_app.fhir")] == []


def test_the_write_options_are_the_same_enums_from_either_module() -> None:
    from smart_app import options
    from smart_app.fhir import written

    assert written.OrderMode is options.OrderMode
    assert written.Strategy is options.Strategy


# web --------------------------------------------------------------------------------------


def fhir_json_built(path: Path) -> list[str]:
    """Where a module writes a FHIR resource: a dict literal, dict(...) call or item assignment
    with the key 'resourceType' (reading `x["resourceType"]` or `x.get("resourceType")` is fine)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys = [k.value for k in node.keys if isinstance(k, ast.Constant)]
            if "resourceType" in keys:
                found.append(f"line {node.lineno}: a dict with 'resourceType'")
        elif isinstance(node, ast.Call) and any(k.arg == "resourceType" for k in node.keywords):
            found.append(f"line {node.lineno}: a call with resourceType=")
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store):
            key = node.slice
            if isinstance(key, ast.Constant) and key.value == "resourceType":
                found.append(f"line {node.lineno}: ['resourceType'] assigned")
    return found


def test_the_web_modules_are_found() -> None:
    assert {"app.py", "plan.py", "followup.py"} <= {p.name for p in WEB}
    assert WEB_PAGES


@pytest.mark.parametrize("path", WEB, ids=_rel)
def test_web_builds_no_fhir_json(path: Path) -> None:
    built = fhir_json_built(path)
    assert not built, f"{_rel(path)} builds FHIR JSON (move it to smart_app/fhir/): {built}"


CLI_RENDERERS = ("smart_app.render", "smart_app.render_followup")
"""The command line's output modules: the pages render from the rules' types (web/*_view.py)."""


def cli_renderers_imported(path: Path) -> list[str]:
    """The command line's renderers a module imports."""
    return [n for n in imported_modules(path) if any(_within(n, m) for m in CLI_RENDERERS)]


@pytest.mark.parametrize("path", WEB, ids=_rel)
def test_web_does_not_import_the_command_lines_renderers(path: Path) -> None:
    bad = cli_renderers_imported(path)
    assert not bad, f"{_rel(path)} imports {bad} (render from the types, or a neutral module)"


def test_the_renderer_check_notices_an_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from smart_app import render_followup\nfrom smart_app import report\n")
    assert cli_renderers_imported(sample) == ["smart_app.render_followup"]


@pytest.mark.parametrize("path", WEB_PAGES, ids=_rel)
def test_web_pages_and_scripts_build_no_fhir_json(path: Path) -> None:
    assert "resourceType" not in path.read_text(encoding="utf-8", errors="replace")


# sandbox ----------------------------------------------------------------------------------

OUTSIDE_SANDBOX = sorted(
    p for p in PACKAGE.rglob("*.py") if not p.is_relative_to(PACKAGE / "sandbox")
)


@pytest.mark.parametrize("path", OUTSIDE_SANDBOX, ids=_rel)
def test_the_app_does_not_import_the_sandbox(path: Path) -> None:
    """The sandbox is development tooling left out of the wheel: nothing else may need it."""
    bad = [n for n in imported_modules(path) if _within(n, "smart_app.sandbox")]
    assert not bad, f"{_rel(path)} imports {bad} (the wheel has no smart_app.sandbox)"


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of a module graph (each once, from the module where the search met it)."""
    cycles: list[list[str]] = []
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            cycles.append([*trail[trail.index(name) :], name])
            return
        if name in done:
            return
        for target in sorted(graph.get(name, ())):
            visit(target, [*trail, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
    return cycles


def test_the_sandbox_modules_import_no_cycle() -> None:
    """Not even under TYPE_CHECKING (ehr.py and oauth used to import each other)."""
    paths = sorted((PACKAGE / "sandbox").rglob("*.py"))
    names = {_module_name(p): p for p in paths}
    graph = {
        name: {n for n in imported_modules(path) if n in names and n != name}
        for name, path in names.items()
    }
    assert {"smart_app.sandbox.ehr", "smart_app.sandbox.oauth.grants"} <= set(graph)
    assert import_cycles(graph) == []
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


# the detectors ----------------------------------------------------------------------------


def test_the_detectors_notice_violations(tmp_path: Path) -> None:
    """The checks above would fail on code that breaks the layering."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from smart_app.fhir import codes\n"
        "import requests\n"
        "def f(x):\n"
        "    from smart_app.web.words import unit\n"
        "    ok = x['resourceType'], x.get('resourceType')\n"
        "    x['resourceType'] = 'Task'\n"
        "    return {'resourceType': 'Bundle'}, dict(resourceType='Task')\n",
        encoding="utf-8",
    )
    names = imported_modules(sample)
    assert {"smart_app.fhir", "smart_app.fhir.codes", "requests", "smart_app.web.words"} <= set(
        names
    )
    assert len(fhir_json_built(sample)) == 3
    sample.write_text("from smart_app import sandbox\nimport smart_app.sandbox.run\n", "utf-8")
    assert [n for n in imported_modules(sample) if _within(n, "smart_app.sandbox")] == [
        "smart_app.sandbox",
        "smart_app.sandbox.run",
    ]
