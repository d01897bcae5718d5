"""The zolgensma-smart command line: plan and dose, exit codes, messages and determinism."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any

import pytest
import responses

from smart_app.cli import EXIT_INPUT, EXIT_OK, EXIT_SERVER, main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "infant-eligible.json"
PLAN_ARGS = ["--on", "2026-11-20", "--infusion-date", "2026-11-24"]
LB_KG = Decimal("0.45359237")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """main(argv) -> (exit code, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def plan_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code, out, err = run(capsys, "plan", *argv)
    assert (code, err) == (EXIT_OK, "")
    return json.loads(out)


def example() -> dict[str, Any]:
    return json.loads(EXAMPLE.read_text(encoding="utf-8"))


def resource(data: dict[str, Any], rid: str) -> dict[str, Any]:
    return next(e["resource"] for e in data["entry"] if e["resource"].get("id") == rid)


def write(tmp_path: Path, data: Any, name: str = "bundle.json") -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return str(path)


def assert_input_error(code: int, out: str, err: str, fragment: str = "") -> None:
    """Exit 2, nothing on stdout, one line on stderr naming the problem, no traceback."""
    assert code == EXIT_INPUT
    assert out == ""
    assert err.startswith("zolgensma-smart: error: ")
    assert err.endswith("\n")
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert fragment in err


def finding_codes(data: dict[str, Any]) -> list[str]:
    return [f["code"] for f in data["eligibility"]["findings"]]


# plan ------------------------------------------------------------------------------------------


def test_plan_example_json_shape_and_values(capsys: pytest.CaptureFixture[str]) -> None:
    data = plan_json(capsys, "--bundle", str(EXAMPLE), *PLAN_ARGS)
    assert data["evaluated_on"] == "2026-11-20"
    assert data["infusion_date"] == "2026-11-24"
    assert data["patient"]["id"] == "infant-eligible"
    assert data["patient"]["birth_date"] == "2026-06-10"

    eligibility = data["eligibility"]
    assert eligibility["status"] == "eligible"
    assert eligibility["findings"], "an eligible plan still carries info findings"
    for finding in eligibility["findings"]:
        assert {"code", "severity", "message", "section", "evidence"} <= finding.keys()
        assert finding["severity"] == "info"
        assert isinstance(finding["evidence"], list)

    dose = data["dose"]
    for key in (
        "weight_kg",
        "band_kg",
        "kit_ndc",
        "dose_volume_ml",
        "vials_5_5_ml",
        "vials_8_3_ml",
        "total_vials",
        "vector_genomes",
        "infusion_minutes",
        "pump_rate_ml_per_h",
    ):
        assert key in dose, key
    assert dose["weight_kg"] == 6.12
    assert dose["band_kg"] == [6.1, 6.5]
    assert dose["kit_ndc"] == "71894-127-05"
    assert dose["dose_volume_ml"] == 35.8
    assert dose["total_vials"] == dose["vials_5_5_ml"] + dose["vials_8_3_ml"]
    # 2 x 5.5 mL + 3 x 8.3 mL = 35.9 mL holds the 35.8 mL dose.
    assert dose["vials_5_5_ml"] * 5.5 + dose["vials_8_3_ml"] * 8.3 >= dose["dose_volume_ml"]
    # 35.8 mL at 2.0e13 vg/mL.
    assert dose["vector_genomes"] == 358 * 2 * 10**12
    assert dose["infusion_minutes"] == 60
    assert dose["pump_rate_ml_per_h"] == 35.8

    pred = data["prednisolone"]
    for key in ("dose_mg_per_day", "volume_ml_per_day", "start_date", "full_dose_through"):
        assert key in pred, key
    assert pred["dose_mg_per_day"] == 6.1  # 1 mg/kg/day x 6.12 kg
    assert pred["start_date"] == "2026-11-23"
    assert pred["full_dose_through"] == "2026-12-22"
    assert pred["liver_check_date"] == "2026-12-22"
    assert pred["taper"]

    schedule = data["schedule"]
    assert schedule
    for item in schedule:
        assert {"date", "activity", "tests"} <= item.keys()
    dates = [item["date"] for item in schedule]
    assert dates == sorted(dates)
    infusion = [i for i in schedule if i["kind"] == "infusion"]
    assert [i["date"] for i in infusion] == ["2026-11-24"]


def test_infusion_date_defaults_to_the_day_after_on(capsys: pytest.CaptureFixture[str]) -> None:
    data = plan_json(capsys, "--bundle", str(EXAMPLE), "--on", "2026-11-20")
    assert data["evaluated_on"] == "2026-11-20"
    assert data["infusion_date"] == "2026-11-21"
    assert data["prednisolone"]["start_date"] == "2026-11-20"


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_same_input_gives_identical_output(capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    argv = ["plan", "--bundle", str(EXAMPLE), *PLAN_ARGS, "--format", fmt]
    first = run(capsys, *argv)
    second = run(capsys, *argv)
    assert first[0] == EXIT_OK
    assert first == second
    assert first[1].encode("utf-8") == second[1].encode("utf-8")


def test_text_format(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "plan", "--bundle", str(EXAMPLE), *PLAN_ARGS, "--format", "text")
    assert (code, err) == (EXIT_OK, "")
    assert "ELIGIBILITY: ELIGIBLE" in out
    assert "71894-127-05" in out
    assert "Patient/infant-eligible" in out
    assert out.endswith("\n")
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


def test_not_eligible_patient_still_exits_0(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = example()
    resource(data, "infant-eligible")["birthDate"] = "2024-06-10"
    out = plan_json(capsys, "--bundle", write(tmp_path, data), *PLAN_ARGS)
    assert out["eligibility"]["status"] == "not-eligible"
    assert "age-not-under-2" in finding_codes(out)


def test_titer_code_option_recognises_a_local_code(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = example()
    resource(data, "aav9")["code"] = {
        "coding": [{"system": "http://lab.example/codes", "code": "VV-7", "display": "Vector Ab"}]
    }
    path = write(tmp_path, data)
    without = plan_json(capsys, "--bundle", path, *PLAN_ARGS)
    assert "anti-aav9-titer-missing" in finding_codes(without)
    assert without["eligibility"]["status"] == "incomplete"
    with_code = plan_json(
        capsys, "--bundle", path, *PLAN_ARGS, "--titer-code", "http://lab.example/codes|VV-7"
    )
    assert with_code["eligibility"]["status"] == "eligible"


@pytest.mark.parametrize(
    ("comparator", "status"), [("<", "eligible"), (">", "deferred")], ids=["lt", "gt"]
)
def test_titer_ratio_censoring_end_to_end(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, comparator: str, status: str
) -> None:
    data = example()
    aav9 = resource(data, "aav9")
    del aav9["valueString"]
    aav9["valueRatio"] = {
        "numerator": {"value": 1, "comparator": comparator},
        "denominator": {"value": 50},
    }
    out = plan_json(capsys, "--bundle", write(tmp_path, data), *PLAN_ARGS)
    assert out["eligibility"]["status"] == status


# plan: input errors ----------------------------------------------------------------------------


def _bundle_without_patient() -> dict[str, Any]:
    data = example()
    data["entry"] = [e for e in data["entry"] if e["resource"]["resourceType"] != "Patient"]
    return data


def _bundle_with_two_patients() -> dict[str, Any]:
    data = example()
    data["entry"].append({"resource": {"resourceType": "Patient", "id": "twin"}})
    return data


BAD_BUNDLES = {
    "not-json": ("{this is not json", "not JSON"),
    "array": ("[]", "not a FHIR Bundle"),
    "patient": ('{"resourceType": "Patient", "id": "x"}', "not a FHIR Bundle"),
    "document": ('{"resourceType": "Bundle", "type": "document"}', "Bundle.type"),
    "no-patient": (_bundle_without_patient(), "no Patient"),
    "two-patients": (_bundle_with_two_patients(), "2 Patients"),
}


@pytest.mark.parametrize("case", BAD_BUNDLES, ids=list(BAD_BUNDLES))
def test_unusable_bundle_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, case: str
) -> None:
    content, fragment = BAD_BUNDLES[case]
    code, out, err = run(capsys, "plan", "--bundle", write(tmp_path, content), *PLAN_ARGS)
    assert_input_error(code, out, err, fragment)


def test_missing_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    code, out, err = run(capsys, "plan", "--bundle", str(missing), *PLAN_ARGS)
    assert_input_error(code, out, err, "nope.json")


def test_non_utf8_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"resourceType": "Bundle", "x": "\xe9"}')
    code, out, err = run(capsys, "plan", "--bundle", str(path), *PLAN_ARGS)
    assert_input_error(code, out, err, "UTF-8")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["plan", "--bundle", str(EXAMPLE), "--on", "2026-13-01"], "2026-13-01"),
        (
            ["plan", "--bundle", str(EXAMPLE), "--on", "2026-11-20", "--infusion-date", "tomorrow"],
            "tomorrow",
        ),
        (
            [
                "plan",
                "--bundle",
                str(EXAMPLE),
                "--on",
                "2026-11-20",
                "--infusion-date",
                "2026-11-19",
            ],
            "before the evaluation date",
        ),
        (["frobnicate"], "frobnicate"),
        ([], ""),
        (["plan", *PLAN_ARGS], "--bundle"),
        (["plan", "--bundle", str(EXAMPLE), *PLAN_ARGS, "--titer-code", "no-bar"], "no-bar"),
        (["plan", "--bundle", str(EXAMPLE), *PLAN_ARGS, "--titer-code", "|code"], "|code"),
        (["plan", "--bundle", str(EXAMPLE), *PLAN_ARGS, "--format", "xml"], "xml"),
    ],
    ids=[
        "bad-on-date",
        "bad-infusion-date",
        "infusion-before-on",
        "unknown-subcommand",
        "no-subcommand",
        "no-bundle",
        "titer-code-no-bar",
        "titer-code-no-system",
        "bad-format",
    ],
)
def test_bad_arguments_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert_input_error(code, out, err, fragment)


def test_deeply_nested_json_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write(tmp_path, "[" * 100_000 + "]" * 100_000)
    code, out, err = run(capsys, "plan", "--bundle", path, *PLAN_ARGS)
    assert_input_error(code, out, err, "nested too deeply")


def test_malformed_status_does_not_crash(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = example()
    resource(data, "weight")["status"] = ["final"]
    code, out, err = run(capsys, "plan", "--bundle", write(tmp_path, data), *PLAN_ARGS)
    assert code == EXIT_OK, err
    codes = {f["code"] for f in json.loads(out)["eligibility"]["findings"]}
    assert "weight-missing" in codes  # the malformed weight was skipped, not guessed
    assert "result-unreadable" in codes  # and named


# plan --policy ---------------------------------------------------------------------------------


def test_policy_file_makes_weight_stale(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('version = "strict-weights"\nweight_max_age_days = 3\n', encoding="utf-8")
    # The example's weight is from 2026-11-18: 6 days before the 2026-11-24 infusion.
    data = plan_json(capsys, "--bundle", str(EXAMPLE), *PLAN_ARGS, "--policy", str(policy))
    assert "weight-stale" in finding_codes(data)
    assert data["eligibility"]["status"] == "incomplete"
    assert data["dose"] is None
    assert data["prednisolone"] is None
    assert data["policy_version"] == "strict-weights"


def test_policy_weight_limit_is_inclusive(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("weight_max_age_days = 6\n", encoding="utf-8")
    data = plan_json(capsys, "--bundle", str(EXAMPLE), *PLAN_ARGS, "--policy", str(policy))
    assert "weight-stale" not in finding_codes(data)
    assert data["dose"]["kit_ndc"] == "71894-127-05"


def test_example_policy_file_reproduces_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    default = run(capsys, "plan", "--bundle", str(EXAMPLE), *PLAN_ARGS)
    with_file = run(
        capsys,
        "plan",
        "--bundle",
        str(EXAMPLE),
        *PLAN_ARGS,
        "--policy",
        str(ROOT / "examples" / "policy.toml"),
    )
    assert default == with_file


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("weight_max_age_dayz = 3\n", "weight_max_age_dayz"),
        ("weight_max_age_days = \n", "not valid TOML"),
        ('weight_max_age_days = "3"\n', "weight_max_age_days"),
        ("taper_mg_per_kg_per_day = [0.5]\ntaper_step_days = [14]\n", "28 days"),
    ],
    ids=["unknown-key", "invalid-toml", "wrong-type", "unsafe-taper"],
)
def test_bad_policy_file_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, fragment: str
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(text, encoding="utf-8")
    code, out, err = run(
        capsys, "plan", "--bundle", str(EXAMPLE), *PLAN_ARGS, "--policy", str(policy)
    )
    assert_input_error(code, out, err, fragment)


def test_missing_policy_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    code, out, err = run(
        capsys, "plan", "--bundle", str(EXAMPLE), *PLAN_ARGS, "--policy", str(missing)
    )
    assert_input_error(code, out, err, "missing.toml")


# dose ------------------------------------------------------------------------------------------


def dose_rows(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, Any]]:
    code, out, err = run(capsys, "dose", *argv, "--format", "json")
    assert (code, err) == (EXIT_OK, "")
    return json.loads(out)


def test_dose_json(capsys: pytest.CaptureFixture[str]) -> None:
    [row] = dose_rows(capsys, "3.04")
    assert row["weight"] == "3.04"
    assert row["unit"] == "kg"
    assert row["weight_kg"] == 3.04
    assert row["reason"] is None
    assert row["dose"]["kit_ndc"] == "71894-121-03"
    assert row["dose"]["band_kg"] == [3.1, 3.5]


def test_dose_defaults_to_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "dose", "3.04")
    assert code == EXIT_OK
    assert json.loads(out)[0]["dose"]["kit_ndc"] == "71894-121-03"


def test_dose_outside_label_range_is_null_with_reason(capsys: pytest.CaptureFixture[str]) -> None:
    rows = dose_rows(capsys, "2.5", "30")
    assert [r["weight"] for r in rows] == ["2.5", "30"]
    for row in rows:
        assert row["dose"] is None
        assert isinstance(row["reason"], str)
        assert "2.6-21.0" in row["reason"]


def test_dose_in_pounds(capsys: pytest.CaptureFixture[str]) -> None:
    [row] = dose_rows(capsys, "11", "--unit", "lb")
    exact = 11 * LB_KG  # 4.98951607 kg
    up = (exact * 10000).to_integral_value(rounding=ROUND_CEILING) / 10000
    assert row["unit"] == "lb"
    assert row["weight_kg"] == float(up)
    assert row["weight_kg"] >= float(exact)
    assert row["dose"]["kit_ndc"] == "71894-124-04"  # 4.6-5.0 kg band


def test_dose_in_grams(capsys: pytest.CaptureFixture[str]) -> None:
    [row] = dose_rows(capsys, "3040", "--unit", "g")
    assert row["weight_kg"] == 3.04
    assert row["dose"]["kit_ndc"] == "71894-121-03"


def test_dose_many_weights_one_row_each_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    weights = ["12.5", "3.04", "2.5", "6.12", "21"]
    rows = dose_rows(capsys, *weights)
    assert [r["weight"] for r in rows] == weights
    ndcs = [r["dose"]["kit_ndc"] if r["dose"] else None for r in rows]
    assert ndcs[1] == "71894-121-03"
    assert ndcs[2] is None
    assert ndcs[3] == "71894-127-05"
    assert ndcs[0] is not None
    assert ndcs[4] is not None
    assert len(set(ndcs)) == len(ndcs)


def test_dose_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "dose", "3.04", "2.5", "6.12", "--format", "text")
    assert (code, err) == (EXIT_OK, "")
    lines = out.splitlines()
    assert len(lines) == 4
    assert "NDC" in lines[0]
    assert "weight" in lines[0]
    assert "3.04 kg" in lines[1]
    assert "71894-121-03" in lines[1]
    assert "2.5 kg" in lines[2]
    assert "2.6-21.0" in lines[2]
    assert "71894-127-05" in lines[3]
    assert out.endswith("\n")


@pytest.mark.parametrize("weight", ["abc", "-1", "0", "0.0", "NaN", "Infinity", ""])
def test_dose_bad_weight_exits_2(capsys: pytest.CaptureFixture[str], weight: str) -> None:
    code, out, err = run(capsys, "dose", weight)
    assert_input_error(code, out, err, "weight")


def test_dose_one_bad_weight_among_good_ones_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "dose", "3.04", "abc")
    assert_input_error(code, out, err, "'abc'")


def test_dose_without_weight_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "dose")
    assert_input_error(code, out, err)


def test_dose_bad_unit_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "dose", "3", "--unit", "stone")
    assert_input_error(code, out, err, "stone")


@pytest.mark.parametrize("unit", ["g", "lb"])
def test_dose_absurd_weight_does_not_crash(capsys: pytest.CaptureFixture[str], unit: str) -> None:
    code, _, err = run(capsys, "dose", "1e30", "--unit", unit)
    assert code in (EXIT_OK, EXIT_INPUT)
    assert "Traceback" not in err


# python -m smart_app ---------------------------------------------------------------------------


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m smart_app ARGS` the way a user's shell would."""
    return subprocess.run(  # noqa: S603 - fixed interpreter and arguments
        [sys.executable, "-m", "smart_app", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=60,
    )


def test_module_entry_point() -> None:
    done = run_module("dose", "3.04")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["dose"]["kit_ndc"] == "71894-121-03"


def test_module_entry_point_input_error_exit_code() -> None:
    done = run_module("dose", "abc")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip() == "zolgensma-smart: error: weight 'abc' is not a number"


# A command line that never crashes ----------------------------------------------------------


def test_dev_zero_is_refused_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "plan", "--bundle", "/dev/zero", *PLAN_ARGS)
    assert_input_error(code, out, err, "larger than 20971520 bytes")
    assert "institution default: files and server answers are read up to 20 MiB" in err


@pytest.mark.parametrize(("slack", "exit_code"), [(0, EXIT_OK), (-1, EXIT_INPUT)])
def test_bundle_size_bound_comes_from_the_policy(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, slack: int, exit_code: int
) -> None:
    size = EXAMPLE.stat().st_size
    policy = tmp_path / "policy.toml"
    policy.write_text(f"bundle_max_bytes = {size + slack}\n", encoding="utf-8")
    code, out, err = run(
        capsys, "plan", "--bundle", str(EXAMPLE), *PLAN_ARGS, "--policy", str(policy)
    )
    assert code == exit_code
    if exit_code == EXIT_INPUT:
        assert_input_error(
            code, out, err, f"files and server answers are read up to {size - 1} bytes"
        )


@pytest.mark.parametrize(
    ("dates", "fragment"),
    [
        (["--on", "9999-12-31"], "evaluation date 9999-12-31"),
        (["--on", "9999-12-30", "--infusion-date", "9999-12-31"], "evaluation date 9999-12-30"),
        (["--on", "2026-11-20", "--infusion-date", "9999-12-31"], "infusion date 9999-12-31"),
        (["--on", "0001-01-01", "--infusion-date", "0001-01-02"], "evaluation date 0001-01-01"),
    ],
    ids=["on-last-day", "both-at-the-end", "infusion-last-day", "first-days"],
)
def test_dates_past_what_a_schedule_can_hold_exit_2(
    capsys: pytest.CaptureFixture[str], dates: list[str], fragment: str
) -> None:
    code, out, err = run(capsys, "plan", "--bundle", str(EXAMPLE), *dates)
    assert_input_error(code, out, err, fragment)
    assert "outside the dates a schedule can be computed for" in err


def test_followup_on_the_last_day_exits_2_before_any_request(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Port 9 on loopback answers nothing: a request would exit 3, not 2.
    argv = ["followup", "--fhir-base", "http://127.0.0.1:9/fhir", "--patient", "p1"]
    code, out, err = run(capsys, *argv, "--on", "9999-12-31")
    assert_input_error(code, out, err, "follow-up date 9999-12-31")


@pytest.mark.parametrize("command", ["plan", "followup"])
@pytest.mark.parametrize("base", ["http://[::1", "http://ehr.test:70000/fhir"])
def test_malformed_fhir_base_exits_2(
    capsys: pytest.CaptureFixture[str], command: str, base: str
) -> None:
    argv = [command, "--fhir-base", base, "--patient", "p1", "--on", "2026-11-20"]
    code, out, err = run(capsys, *argv)
    assert_input_error(code, out, err, "not a valid URL")


def _example_with_weight(**quantity: Any) -> dict[str, Any]:
    data = example()
    resource(data, "weight")["valueQuantity"].update(quantity)
    return data


def test_5000_digit_weight_is_unreadable_not_a_crash(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = json.dumps(_example_with_weight(value="@@")).replace('"@@"', "6" * 5000)
    data = plan_json(capsys, "--bundle", write(tmp_path, text), *PLAN_ARGS)
    assert data["dose"] is None
    assert {"result-unreadable", "weight-missing"} <= set(finding_codes(data))


def test_weight_below_a_bound_gives_no_dose(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bundle = _example_with_weight(comparator="<", value=6.1)
    data = plan_json(capsys, "--bundle", write(tmp_path, bundle), *PLAN_ARGS)
    assert data["dose"] is None
    unreadable = [f for f in data["eligibility"]["findings"] if f["code"] == "result-unreadable"]
    assert len(unreadable) == 1
    assert "Observation/weight" in unreadable[0]["message"]
    assert "bound" in unreadable[0]["message"]


@pytest.mark.parametrize(
    "subject",
    [None, {"reference": "Patient/someone-else"}, {"reference": "http://other.test/Patient/x"}],
    ids=["missing", "other-patient", "other-server"],
)
def test_weight_not_this_patients_gives_no_dose(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, subject: Any
) -> None:
    bundle = example()
    weight = resource(bundle, "weight")
    del weight["subject"]
    if subject is not None:
        weight["subject"] = subject
    data = plan_json(capsys, "--bundle", write(tmp_path, bundle), *PLAN_ARGS)
    assert data["dose"] is None
    assert {"result-unreadable", "weight-missing"} <= set(finding_codes(data))


def test_server_answer_past_the_bound_exits_3(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("bundle_max_bytes = 1024\n", encoding="utf-8")
    argv = ["plan", "--fhir-base", "http://fhir.test/fhir", "--patient", "p1", *PLAN_ARGS]
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, "http://fhir.test/fhir", body="{" + " " * 2048 + "}")
        code, out, err = run(capsys, *argv, "--policy", str(policy))
    assert (code, out) == (EXIT_SERVER, "")
    assert err == (
        "zolgensma-smart: FHIR server: batch read: the answer is larger than 1024 bytes, "
        "the most the app reads (bundle_max_bytes)\n"
    )


def test_lone_surrogate_exits_2_instead_of_failing_to_print(tmp_path: Path) -> None:
    """Through a real stdout: the text could not be written as UTF-8 at the end."""
    bundle = example()
    resource(bundle, "weight")["code"]["text"] = "\ud800 weight"
    result = run_module("plan", "--bundle", write(tmp_path, bundle), *PLAN_ARGS)
    assert (result.returncode, result.stdout) == (EXIT_INPUT, "")
    assert result.stderr == (
        "zolgensma-smart: error: not Unicode text: a \\u escape names half a surrogate pair\n"
    )
