"""The command line against the real local FHIR server: read, write, re-write, dry run, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smart_app import cli
from tests import fhirserver

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "infant-eligible.json"
FIXTURES = ROOT / "tests" / "fixtures" / "bundles"
DATES = ["--on", "2026-11-20", "--infusion-date", "2026-11-24"]
ACK = ["--acknowledge", "caregiver-counseling", "--acknowledge", "smn2-copy-number"]


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process; return exit code, stdout, stderr."""
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _load(base: str, path: Path, suffix: str) -> str:
    """Load a fixture under ids ending in -suffix."""
    return fhirserver.load_patient(
        base, json.loads(path.read_text(encoding="utf-8")), suffix=suffix
    )


def test_server_mode_prints_the_same_json_as_bundle_mode(
    capsys: pytest.CaptureFixture[str], fhir_server: str, proxy: fhirserver.Proxy
) -> None:
    """Reading from the server gives the plan the Bundle file gives, in one request."""
    patient = _load(fhir_server, EXAMPLE, "samejson")
    code, from_server, err = _run(
        capsys, "plan", "--fhir-base", proxy.base, "--patient", patient, *DATES
    )
    assert (code, err) == (0, "")
    assert len(proxy.calls) == 1
    code, from_file, _ = _run(capsys, "plan", "--bundle", str(EXAMPLE), *DATES)
    assert code == 0
    assert json.loads(from_server.replace("-samejson", "")) == json.loads(from_file)


def test_write_then_write_again(
    capsys: pytest.CaptureFixture[str], fhir_server: str, proxy: fhirserver.Proxy
) -> None:
    """--write lists what it created; the same command again lists only existing resources."""
    patient = _load(fhir_server, EXAMPLE, "cliwrite")
    args = ["plan", "--fhir-base", proxy.base, "--patient", patient, *DATES, "--write", *ACK]
    code, out, err = _run(capsys, *args)
    assert (code, err) == (0, "")
    written = json.loads(out)["written"]
    assert len(written) == 21  # with the 3-month lab draw (5.1; 5.3)
    assert {w["outcome"] for w in written} == {"created"}
    # the read and the CapabilityStatement (for the write's strategy) side by side, then the write
    assert sorted(proxy.calls[:2]) == [("GET", "/fhir/metadata"), ("POST", "/fhir")]
    assert proxy.calls[2:] == [("POST", "/fhir")]
    proxy.reset()
    code, out, _ = _run(capsys, *args)
    assert code == 0
    again = json.loads(out)["written"]
    assert {w["outcome"] for w in again} == {"existing"}
    assert [w["reference"] for w in again] == [w["reference"] for w in written]
    assert len(proxy.calls) == 3


def test_text_format_lists_what_was_written(
    capsys: pytest.CaptureFixture[str], fhir_server: str, proxy: fhirserver.Proxy
) -> None:
    """The text report ends with the WRITTEN section."""
    patient = _load(fhir_server, EXAMPLE, "clitext")
    code, out, _ = _run(
        capsys, "plan", "--fhir-base", proxy.base, "--patient", patient, *DATES,
        "--write", *ACK, "--format", "text",
    )  # fmt: skip
    assert code == 0
    assert "WRITTEN (21 created):" in out
    assert "  created CarePlan/" in out


def test_dry_run_saves_the_bundle_and_sends_nothing(
    capsys: pytest.CaptureFixture[str],
    fhir_server: str,
    proxy: fhirserver.Proxy,
    tmp_path: Path,
) -> None:
    """--dry-run-bundle writes the transaction to a file; only the read reaches the server."""
    patient = _load(fhir_server, EXAMPLE, "dryrun")
    target = tmp_path / "tx.json"
    code, out, _ = _run(
        capsys, "plan", "--fhir-base", proxy.base, "--patient", patient, *DATES,
        "--dry-run-bundle", str(target), *ACK,
    )  # fmt: skip
    assert code == 0
    assert "written" not in json.loads(out)
    bundle = json.loads(target.read_text(encoding="utf-8"))
    assert bundle["type"] == "transaction"
    assert len(bundle["entry"]) == 21
    assert len(proxy.calls) == 1
    assert fhirserver.search(fhir_server, f"CarePlan?patient={patient}") == []


def test_patient_without_weight_exits_4_and_writes_nothing(
    capsys: pytest.CaptureFixture[str],
    fhir_server: str,
    proxy: fhirserver.Proxy,
    tmp_path: Path,
) -> None:
    """No weight: exit 4, the plan on stdout with an empty written list, the reason on stderr."""
    patient = _load(fhir_server, FIXTURES / "weight-missing.json", "noweight")
    code, out, err = _run(
        capsys, "plan", "--fhir-base", proxy.base, "--patient", patient, *DATES, "--write"
    )
    assert code == cli.EXIT_NOT_WRITTEN
    assert json.loads(out)["written"] == []
    assert err.startswith("zolgensma-smart: not written: nothing written: the plan is incomplete")
    assert "weight-missing" in err
    # the read, and the CapabilityStatement asked for beside it; nothing sent to be written
    assert sorted(proxy.calls) == [("GET", "/fhir/metadata"), ("POST", "/fhir")]
    target = tmp_path / "tx.json"
    code, _, _ = _run(
        capsys, "plan", "--fhir-base", proxy.base, "--patient", patient, *DATES,
        "--dry-run-bundle", str(target),
    )  # fmt: skip
    assert code == cli.EXIT_NOT_WRITTEN
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_server_500_on_write_exits_4_with_a_clear_message(
    capsys: pytest.CaptureFixture[str], fhir_server: str, proxy: fhirserver.Proxy
) -> None:
    """A 500 to the transaction may follow a commit: the app reads back, reports that the
    server holds none of the plan (each entry 'absent'), exits 4 and says a re-run is safe."""
    patient = _load(fhir_server, EXAMPLE, "cli500")
    proxy.fail_next("POST", "/fhir", 500, "disk full", after=1)
    code, out, err = _run(
        capsys, "plan", "--fhir-base", proxy.base, "--patient", patient, *DATES, "--write", *ACK
    )
    assert code == cli.EXIT_NOT_WRITTEN
    written = json.loads(out)["written"]
    assert len(written) == 21
    assert {w["outcome"] for w in written} == {"absent (read back)"}
    assert "disk full" in written[0]["detail"]
    assert err.startswith("zolgensma-smart: not written: nothing was written (21 absent")
    assert "Re-running the write is safe" in err
    assert err.count("\n") == 1
    assert [c for c in proxy.calls if c[0] == "POST"] == [("POST", "/fhir")] * 3
    assert fhirserver.search(fhir_server, f"CarePlan?patient={patient}") == []


def test_server_500_on_read_exits_3(
    capsys: pytest.CaptureFixture[str], fhir_server: str, proxy: fhirserver.Proxy
) -> None:
    """A failing read: exit 3 and the server's text, no plan printed."""
    patient = _load(fhir_server, EXAMPLE, "cliread500")
    proxy.fail_next("POST", "/fhir", 500, "index rebuilding")
    code, out, err = _run(capsys, "plan", "--fhir-base", proxy.base, "--patient", patient, *DATES)
    assert code == cli.EXIT_SERVER
    assert out == ""
    assert (
        err == "zolgensma-smart: FHIR server: batch read: server error (500) (index rebuilding)\n"
    )


def test_unreachable_server_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing listening: exit 3 and a one-line message naming the host."""
    port = fhirserver.free_port()
    code, out, err = _run(
        capsys, "plan", "--fhir-base", f"http://127.0.0.1:{port}/fhir", "--patient", "p1", *DATES
    )
    assert code == cli.EXIT_SERVER
    assert out == ""
    assert err == (
        f"zolgensma-smart: FHIR server: batch read: cannot reach 127.0.0.1:{port} "
        "(ConnectionError)\n"
    )


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [
        (["--bundle", str(EXAMPLE), "--write"], cli.EXIT_INPUT, "need --fhir-base"),
        (["--fhir-base", "http://127.0.0.1:9/fhir"], cli.EXIT_INPUT, "needs --patient"),
        (["--fhir-base", "ftp://x/fhir", "--patient", "p"], cli.EXIT_INPUT, "not an http(s) URL"),
        (["--bundle", str(EXAMPLE), "--fhir-base", "http://x/fhir"], cli.EXIT_INPUT, "not allowed"),
        (
            ["--fhir-base", "http://127.0.0.1:9/fhir", "--patient", "../x"],
            cli.EXIT_INPUT,
            "is not a FHIR id",
        ),
    ],
)
def test_bad_arguments_exit_with_one_line(
    capsys: pytest.CaptureFixture[str], args: list[str], exit_code: int, message: str
) -> None:
    """Argument mistakes: their exit code, one line, no request."""
    code, out, err = _run(capsys, "plan", *args, *DATES)
    assert code == exit_code
    assert out == ""
    assert message in err
    assert err.count("\n") == 1


def test_example_transaction_loads_the_example_patient(
    capsys: pytest.CaptureFixture[str], fhir_server: str
) -> None:
    """examples/infant-eligible.transaction.json (the README's upload) holds the same record."""
    transaction = json.loads(
        (ROOT / "examples" / "infant-eligible.transaction.json").read_text(encoding="utf-8")
    )
    collection = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert [e["resource"] for e in transaction["entry"]] == [
        e["resource"] for e in collection["entry"]
    ]
    status, answer = fhirserver.http_json("POST", fhir_server, transaction)
    assert status == 200
    assert {e["response"]["status"][:3] for e in answer["entry"]} <= {"200", "201"}
    code, from_server, _ = _run(
        capsys, "plan", "--fhir-base", fhir_server, "--patient", "infant-eligible", *DATES
    )
    code_file, from_file, _ = _run(capsys, "plan", "--bundle", str(EXAMPLE), *DATES)
    assert (code, code_file) == (0, 0)
    assert json.loads(from_server) == json.loads(from_file)


def test_dry_run_into_a_missing_directory_exits_2(
    capsys: pytest.CaptureFixture[str], fhir_server: str, tmp_path: Path
) -> None:
    """A dry-run target that cannot be written: exit 2, one line, no stray temporary file."""
    patient = _load(fhir_server, EXAMPLE, "drybad")
    target = tmp_path / "missing" / "tx.json"
    code, _, err = _run(
        capsys, "plan", "--fhir-base", fhir_server, "--patient", patient, *DATES,
        "--dry-run-bundle", str(target),
    )  # fmt: skip
    assert code == cli.EXIT_INPUT
    assert err == f"zolgensma-smart: error: cannot write {target}: No such file or directory\n"
    assert list(tmp_path.iterdir()) == []


def test_write_strategy_option_sends_one_resource_at_a_time(
    capsys: pytest.CaptureFixture[str], fhir_server: str, proxy: fhirserver.Proxy
) -> None:
    """--write-strategy per-resource: no transaction; each resource is its own create, in
    reference order (the orders, the CarePlan, its Tasks, the CarePlan completed, Provenance)."""
    patient = _load(fhir_server, EXAMPLE, "cliperres")
    args = ["plan", "--fhir-base", proxy.base, "--patient", patient, *DATES, "--write", *ACK]
    code, out, err = _run(capsys, *args, "--write-strategy", "per-resource")
    assert (code, err) == (0, "")
    written = json.loads(out)["written"]
    assert {w["outcome"] for w in written} == {"created"}
    writes = [call for call in proxy.calls if call[0] in ("POST", "PUT")]
    assert writes[:2] == [("POST", "/fhir"), ("POST", "/fhir")]  # the read, the look-up
    creates = [path for method, path in writes[2:] if method == "POST"]
    assert len(creates) == len(written)
    assert creates[-1] == "/fhir/Provenance"
    assert creates.index("/fhir/CarePlan") < creates.index("/fhir/Task")
    (completed,) = [path for method, path in writes if method == "PUT"]
    assert completed.startswith("/fhir/CarePlan/")
    proxy.reset()
    code, out, _ = _run(capsys, *args, "--write-strategy", "per-resource")
    assert code == 0
    assert {w["outcome"] for w in json.loads(out)["written"]} == {"existing"}
    assert [c for c in proxy.calls if c[0] != "GET"] == [("POST", "/fhir"), ("POST", "/fhir")]


def test_partial_write_exits_4_and_lists_every_entry(
    capsys: pytest.CaptureFixture[str], fhir_server: str, proxy: fhirserver.Proxy
) -> None:
    """One create refused mid-way: exit 4; the JSON lists what was created, what failed (with
    the server's words) and what was not sent; stderr says a re-run is safe; a re-run finishes."""
    patient = _load(fhir_server, EXAMPLE, "clipartial")
    proxy.fail_next("POST", "/fhir/Task", 422, "Task.code is required", after=2)
    args = ["plan", "--fhir-base", proxy.base, "--patient", patient, *DATES, "--write", *ACK]
    code, out, err = _run(capsys, *args, "--write-strategy", "per-resource")
    assert code == cli.EXIT_NOT_WRITTEN
    outcomes = [w["outcome"] for w in json.loads(out)["written"]]
    assert outcomes.count("failed") == 1
    # sent in reference order: 2 orders, 2 DetectedIssues, the CarePlan (its Tasks to come),
    # 2 Tasks; the third Task is refused and nothing after it is sent
    assert outcomes.count("created") == 7
    assert outcomes.count("not sent") == len(outcomes) - 8
    (failed,) = [w for w in json.loads(out)["written"] if w["outcome"] == "failed"]
    assert failed["item"].startswith("task/")
    assert "Task.code is required" in failed["detail"]
    assert err.startswith("zolgensma-smart: not written: the server applied part of the write")
    assert "Re-running the write is safe" in err
    code, out, err = _run(capsys, *args, "--write-strategy", "per-resource")
    assert (code, err) == (0, "")
    again = [w["outcome"] for w in json.loads(out)["written"]]
    assert again.count("existing") == 6
    assert again.count("updated") == 1  # the CarePlan, completed with every Task
    assert "failed" not in again


def test_unknown_outcome_exits_5(
    capsys: pytest.CaptureFixture[str], fhir_server: str, proxy: fhirserver.Proxy
) -> None:
    """The answer to the transaction is lost and the read-back fails too: exit 5, 'unknown'."""
    patient = _load(fhir_server, EXAMPLE, "cliunknown")
    proxy.fault_next("POST", "/fhir", fhirserver.FaultMode.DROP_AFTER, after=1)
    proxy.fail_next("POST", "/fhir", 500, "overloaded")
    code, out, err = _run(
        capsys, "plan", "--fhir-base", proxy.base, "--patient", patient, *DATES, "--write", *ACK
    )
    assert code == cli.EXIT_UNKNOWN
    assert {w["outcome"] for w in json.loads(out)["written"]} == {"unknown"}
    assert "the outcome is unknown" in err
    assert "Re-running the write is safe" in err
