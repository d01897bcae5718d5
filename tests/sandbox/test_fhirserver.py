"""Where the sandbox finds sekmet: $SEKMET_BIN, else PATH, else ./.venv-fhir (no repo path)."""

from __future__ import annotations

from pathlib import Path

import pytest

from smart_app.sandbox import fhirserver
from smart_app.sandbox.fhirserver import SEKMET_ENV, SekmetNotFoundError, find_sekmet


def _fake_sekmet(path: Path, *, executable: bool = True) -> Path:
    """A stand-in sekmet script at path (never run)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 1\n", encoding="utf-8")
    path.chmod(0o755 if executable else 0o644)
    return path


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A working directory, a PATH directory and an explicit file, each with its own sekmet;
    SEKMET_BIN unset, PATH only the (empty until filled) PATH directory."""
    work = tmp_path / "work"
    work.mkdir()
    on_path = tmp_path / "bin"
    on_path.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv(SEKMET_ENV, raising=False)
    monkeypatch.setenv("PATH", str(on_path))
    return {
        "venv": work / ".venv-fhir" / "bin" / "sekmet",
        "path": on_path / "sekmet",
        "env": tmp_path / "elsewhere" / "my-sekmet",
    }


def test_the_environment_variable_comes_first(
    places: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    for place in places.values():
        _fake_sekmet(place)
    monkeypatch.setenv(SEKMET_ENV, str(places["env"]))
    assert find_sekmet() == places["env"]


def test_then_path(places: dict[str, Path]) -> None:
    _fake_sekmet(places["path"])
    _fake_sekmet(places["venv"])
    assert find_sekmet() == places["path"]


def test_then_the_venv_under_the_working_directory(places: dict[str, Path]) -> None:
    _fake_sekmet(places["venv"])
    assert find_sekmet() == places["venv"]


def test_a_relative_environment_value_is_taken_from_the_working_directory(
    places: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_sekmet(places["venv"])
    monkeypatch.setenv(SEKMET_ENV, ".venv-fhir/bin/sekmet")
    found = find_sekmet()
    assert found.is_absolute()
    assert found == places["venv"]


def test_none_found_says_what_to_set(places: dict[str, Path]) -> None:
    _fake_sekmet(places["path"], executable=False)  # not runnable: which() skips it
    with pytest.raises(SekmetNotFoundError) as caught:
        find_sekmet()
    message = str(caught.value)
    assert SEKMET_ENV in message
    assert "PATH" in message
    assert "make venv" in message
    assert "\n" not in message


@pytest.mark.parametrize("executable", [False, None], ids=["not-executable", "missing"])
def test_a_wrong_environment_value_fails_without_falling_back(
    places: dict[str, Path], monkeypatch: pytest.MonkeyPatch, executable: bool | None
) -> None:
    """An explicit setting is not silently replaced by another sekmet."""
    _fake_sekmet(places["path"])
    _fake_sekmet(places["venv"])
    if executable is not None:
        _fake_sekmet(places["env"], executable=executable)
    monkeypatch.setenv(SEKMET_ENV, str(places["env"]))
    with pytest.raises(SekmetNotFoundError, match=f"^{SEKMET_ENV}=.*my-sekmet is not an"):
        find_sekmet()


def test_starting_without_sekmet_fails_before_anything_runs(
    places: dict[str, Path], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(SekmetNotFoundError), fhirserver.sekmet(data):
        pass
    assert list(data.iterdir()) == []


def test_the_module_names_no_repository_path() -> None:
    source = Path(fhirserver.__file__).read_text(encoding="utf-8")
    assert "__file__" not in source
    assert "parents[" not in source
