"""Alert fixtures: a whole FHIR chart read by the reader, then the post-infusion alerts.

tests/fixtures/alerts/liver-tests-worsening.json is examples/infant-eligible.json (infusion planned
2026-11-24) with the issue's three examples added after infusion: ALT 450 U/L and AST 600 U/L on
day 14 after 0.67 x ULN on day 7, total bilirubin 3.0 mg/dL (2.5 x ULN) with normal ALT/AST before,
and INR 1.8 on day 7 then 1.9 on day 14 (PT exactly at its ULN, 14.5 s, on day 14).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from smart_app.fhir.read import facts_from_bundle, parse_bundle_json
from smart_app.rules.alerts import post_infusion_alerts
from smart_app.rules.model import Alert, AlertCode, AlertLevel
from smart_app.rules.policy import DEFAULT_POLICY

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "alerts" / "liver-tests-worsening.json"
INFUSION = dt.date(2026, 11, 24)


def _alerts(on: dt.date) -> dict[AlertCode, Alert]:
    facts = facts_from_bundle(parse_bundle_json(FIXTURE.read_text(encoding="utf-8")))
    found = post_infusion_alerts(facts, infusion_date=INFUSION, on=on, policy=DEFAULT_POLICY)
    return {a.code: a for a in found}


def test_the_worsening_chart_raises_an_urgent_alert_naming_each_test() -> None:
    alerts = _alerts(dt.date(2026, 12, 8))
    alert = alerts[AlertCode.LIVER_TESTS_WORSENING]
    assert alert.level is AlertLevel.URGENT
    for shown in (
        "ALT 450 U/L = 10.00 x ULN on 2026-12-08 (day 14)",
        "AST 600 U/L = 10.00 x ULN on 2026-12-08 (day 14)",
        "total bilirubin 3.0 mg/dL = 2.50 x ULN on 2026-12-08 (day 14)",
        "INR 1.9 = 1.46 x ULN on 2026-12-08 (day 14)",
    ):
        assert shown in alert.message
    assert "PT" not in alert.message  # exactly at its ULN: not above it
    refs = [e.reference for e in alert.evidence]
    assert "Observation/alt-d14" in refs and "Observation/alt" in refs  # newest and baseline


def test_on_day_7_only_the_inr_is_worsening_and_it_is_also_rising() -> None:
    alerts = _alerts(dt.date(2026, 12, 1))
    assert set(alerts) == {AlertCode.ACUTE_LIVER_INJURY, AlertCode.LIVER_TESTS_WORSENING}
    assert "INR 1.8" in alerts[AlertCode.LIVER_TESTS_WORSENING].message
    assert "ALT" not in alerts[AlertCode.LIVER_TESTS_WORSENING].message


def test_before_any_post_infusion_result_nothing_is_raised() -> None:
    assert _alerts(dt.date(2026, 11, 30)) == {}
