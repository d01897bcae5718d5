"""The web app against the real FHIR server as an open server: pages, CSRF, escaping, writes."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient

from smart_app import create_app
from smart_app.config import ClientType, Registration, web_settings
from smart_app.fhir.written import Strategy
from smart_app.sandbox.patients import SyntheticPatient, synthetic_patients, transaction_bundle
from smart_app.web.state import WebState
from tests import fhirserver
from tests.smartsandbox import field

pytestmark = pytest.mark.integration
ALL_SERVERS = True

TODAY = dt.date(2026, 11, 21)
NOW = dt.datetime(2026, 11, 21, 10, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
PATIENTS = {p.patient_id: p for p in synthetic_patients(today=TODAY)}


def _app(fhir_server: str, tmp_path: Path, **registered: Any) -> Flask:
    """The app with the test server registered as an open server and a fixed clock."""
    registration = Registration(
        iss=fhir_server, name="test server", client_type=ClientType.OPEN, **registered
    )
    settings = web_settings(
        {},
        public_url="http://127.0.0.1:5000",
        secret_key="k" * 40,
        registrations={fhir_server: registration},
        session_dir=tmp_path / "sessions",
        frame_ancestors=("'self'", "https://ehr.example.org"),
    )
    state = WebState(settings=settings, today=lambda: TODAY, now=lambda: NOW)
    return create_app({"STATE": state, "TESTING": True})


@pytest.fixture
def client(fhir_server: str, tmp_path: Path) -> FlaskClient:
    """A browser-like client of a fresh app."""
    return _app(fhir_server, tmp_path).test_client()


def _open(client: FlaskClient, fhir_server: str, patient_id: str) -> tuple[str, str]:
    """Open a patient from launch.html; return the plan URL and the page."""
    token = field(client.get("/launch.html").text, "csrf_token")
    answer = client.post(
        "/open", data={"csrf_token": token, "iss": fhir_server, "patient": patient_id}
    )
    assert answer.status_code == 303, answer.text
    url = answer.headers["Location"]
    page = client.get(url)
    assert page.status_code == 200, page.text
    return url, page.text


def _write_form(page: str, **extra: Any) -> dict[str, Any]:
    """The write form's fields as the page rendered them."""
    form = {
        "csrf_token": field(page, "csrf_token"),
        "fingerprint": field(page, "fingerprint"),
        "infusion_date": field(page, "infusion_date"),
    }
    form.update(extra)
    return form


def _count(fhir_server: str, kind: str, patient_id: str) -> int:
    """How many resources of a type the server holds for a patient."""
    _, bundle = fhirserver.http_json(
        "GET", f"{fhir_server}/{kind}?patient={patient_id}&_summary=count"
    )
    return int(bundle.get("total", 0))


def test_unknown_iss_is_refused_without_any_outbound_request(client: FlaskClient) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as fake:
        answer = client.get("/launch?iss=https://evil.example.org/fhir&launch=abc")
        assert answer.status_code == 400
        assert "not registered" in answer.text
        assert len(fake.calls) == 0


def test_open_server_cannot_be_used_for_a_smart_launch(
    client: FlaskClient, fhir_server: str
) -> None:
    answer = client.get(f"/launch?iss={fhir_server}&launch=abc")
    assert answer.status_code == 400
    assert "not registered as a SMART server" in answer.text


def test_plan_page_shows_the_decision_the_checklist_the_orders_and_the_schedule_once(
    client: FlaskClient, fhir_server: str, put_patient: Callable[[SyntheticPatient], str]
) -> None:
    patient_id = put_patient(PATIENTS["zs-alt-elevated"])
    _, page = _open(client, fhir_server, patient_id)
    decision = page.split('id="decision"', 1)[1].split("</section>", 1)[0]
    assert "needs review" in decision
    assert "Needs your review: Baseline ALT (120\u00a0U/L)" in decision
    assert 'href="#write-h"' in decision  # the write action is one click from the top
    alt = page.split('id="baseline-ALT"', 1)[1].split("</tr>", 1)[0]
    assert "needs review" in alt and "2.67\u00a0×\u00a0ULN" in alt and "above 2 × ULN" in alt
    assert "Observation/zs-alt-elevated-alt-b-" in alt  # the evidence names its source
    assert "USPI §5.1" in page or "§2.3; 5.1" in page
    assert "Kit NDC" in page and "71894-" in page
    assert "Prednisolone course" in page and "1\u00a0day before infusion" in page
    assert page.count('<svg class="timeline"') == 1 and page.count('id="schedule-table"') == 1
    assert "create (unless already there)" not in page
    drawn = page.split("<svg", 1)[1].split("</svg>", 1)[0]  # the timeline's own words aside
    assert "day -1" not in page.replace(drawn, "").lower() and "day −1" not in page
    assert 'id="ack-liver-function-elevated"' in page
    assert "Write plan to chart" in page
    assert page.index('id="status-h"') < page.index('id="checklist"') < page.index('id="write-h"')


def test_blocked_plan_says_what_would_unblock_it_and_orders_nothing(
    client: FlaskClient, fhir_server: str, put_patient: Callable[[SyntheticPatient], str]
) -> None:
    patient_id = put_patient(PATIENTS["zs-aav9-titer-1-100"])
    url, page = _open(client, fhir_server, patient_id)
    assert "Writing is blocked: the plan is deferred" in page
    assert "repeat anti-AAV9 titer" in page
    assert "Write plan to chart" not in page
    titer = page.split('id="criterion-titer"', 1)[1].split("</tr>", 1)[0]
    assert "not met" in titer and "1:100" in titer and "≤ 1:50" in titer
    kit = PATIENTS["zs-aav9-titer-1-100"]  # 4.9 kg: the 4.6-5.0 kg kit, for information only
    assert kit.expected_status.value == "deferred"
    lookup = page.split('id="kit-lookup"', 1)[1].split("</details>", 1)[0]
    assert "Kit lookup for information: not an order" in lookup and "71894-" in lookup
    assert "71894-" not in page.replace(lookup, "")  # the NDC nowhere else
    for order_ready in ('id="dose"', 'id="course"', 'id="schedule-table"', "<svg", "mL/h"):
        assert order_ready not in page, order_ready
    token = field(client.get("/launch.html").text, "csrf_token")
    form = {"csrf_token": token, "infusion_date": "2026-11-24", "fingerprint": "x"}
    answer = client.post(url + "write", data=form)
    assert answer.status_code == 409
    assert _count(fhir_server, "CarePlan", patient_id) == 0


def test_a_preterm_infant_gets_a_one_click_re_evaluation_at_term_age(
    client: FlaskClient, fhir_server: str, put_patient: Callable[[SyntheticPatient], str]
) -> None:
    patient_id = put_patient(PATIENTS["zs-preterm-34wk"])
    _, page = _open(client, fhir_server, patient_id)
    assert "Writing is blocked: the plan is deferred" in page
    link = page.split('id="retry-link" href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    assert "infusion_date=2026-11-26" in link  # born 34+0 weeks: 37+0 weeks on 26 Nov 2026
    assert "on that date the rules give: <strong>eligible</strong>" in page
    again = client.get(link)
    assert again.status_code == 200
    assert "Eligibility on 26\u00a0Nov\u00a02026" in again.text
    assert "Write plan to chart" in again.text


def test_needs_review_needs_each_acknowledgement_then_writes_one_transaction(
    client: FlaskClient, fhir_server: str, put_patient: Callable[[SyntheticPatient], str]
) -> None:
    patient_id = put_patient(PATIENTS["zs-alt-elevated"])
    url, page = _open(client, fhir_server, patient_id)
    refused = client.post(url + "write", data=_write_form(page))
    assert refused.status_code == 422
    assert "acknowledge each needs-review finding" in refused.text
    assert _count(fhir_server, "CarePlan", patient_id) == 0
    written = client.post(
        url + "write", data=_write_form(page, acknowledge="liver-function-elevated")
    )
    assert written.status_code == 200, written.text
    assert "Plan written to the chart" in written.text
    table = written.text.split('id="written-table"', 1)[1].split("</table>", 1)[0]
    for name in (
        "ZOLGENSMA kit order for the prescriber to sign",
        "Prednisolone order for the prescriber to sign",
        "Care plan",
        "Task: Lab draw",
        "Task: Day-30 liver assessment",
        "Acknowledged finding",
        "Provenance",
    ):
        assert f'<th scope="row">{name}</th>' in table, name
    assert "Baseline ALT 120 U/L" in table and "29\u00a0Nov\u00a02026" in table  # day 7
    steps = written.text.split('id="next-steps"', 1)[1].split("</section>", 1)[0]
    assert "Sign the kit order and the prednisolone order in the EHR" in steps
    assert "Start prednisolone on 21\u00a0Nov\u00a02026" in steps  # 1 day before 22 Nov
    assert "First lab draw on 29\u00a0Nov\u00a02026" in steps
    assert _count(fhir_server, "CarePlan", patient_id) == 1
    assert _count(fhir_server, "MedicationRequest", patient_id) == 2
    assert _count(fhir_server, "DetectedIssue", patient_id) >= 1
    again = client.post(
        url + "write", data=_write_form(page, acknowledge="liver-function-elevated")
    )
    assert again.status_code == 200  # the first write's result, not sent again
    assert "Plan already written to the chart" in again.text
    assert (
        again.text.split('id="written-table"', 1)[1]
        == written.text.split('id="written-table"', 1)[1]
    )
    assert _count(fhir_server, "CarePlan", patient_id) == 1


def test_the_plan_is_rebuilt_from_the_chart_not_the_form(
    client: FlaskClient, fhir_server: str, put_patient: Callable[[SyntheticPatient], str]
) -> None:
    patient_id = put_patient(PATIENTS["zs-eligible-4-2kg"])
    url, page = _open(client, fhir_server, patient_id)
    form = _write_form(page, weight_kg="20", dose_volume_ml="999")
    # a newer weight arrives in the chart after the page was shown
    weight = next(r for r in PATIENTS["zs-eligible-4-2kg"].resources if r["id"].endswith("-weight"))
    newer = copy.deepcopy(weight)
    newer["id"] = f"late-weight-{patient_id}"
    newer["subject"] = {"reference": f"Patient/{patient_id}"}
    newer["effectiveDateTime"] = TODAY.isoformat()
    newer["valueQuantity"]["value"] = 4.9
    fhirserver.http_json("PUT", f"{fhir_server}/Observation/{newer['id']}", newer)
    answer = client.post(url + "write", data=form)
    assert answer.status_code == 409
    assert "The chart changed since this plan was shown" in answer.text
    assert "4.90\u00a0kg" in answer.text  # the newer weight, as the checklist shows it
    assert _count(fhir_server, "CarePlan", patient_id) == 0


def test_writes_need_the_csrf_token_and_our_origin(
    client: FlaskClient, fhir_server: str, put_patient: Callable[[SyntheticPatient], str]
) -> None:
    patient_id = put_patient(PATIENTS["zs-eligible-4-2kg"])
    url, page = _open(client, fhir_server, patient_id)
    form = _write_form(page)
    missing = {k: v for k, v in form.items() if k != "csrf_token"}
    assert client.post(url + "write", data=missing).status_code == 403
    assert client.post(url + "write", data={**form, "csrf_token": "forged"}).status_code == 403
    foreign = client.post(url + "write", data=form, headers={"Origin": "https://evil.example.org"})
    assert foreign.status_code == 403
    assert client.post("/open", data={"iss": fhir_server, "patient": patient_id}).status_code == 403
    assert _count(fhir_server, "CarePlan", patient_id) == 0
    assert client.post(url + "write", data=form).status_code == 200


def test_script_in_names_and_observation_text_is_rendered_inert(
    client: FlaskClient, fhir_server: str
) -> None:
    evil = "<script>alert(1)</script>"
    bundle = transaction_bundle([PATIENTS["zs-alt-elevated"]])
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "Patient":
            resource["name"] = [
                {"use": "official", "family": evil, "given": ['"><img src=x onerror=alert(2)>']}
            ]
        if resource["resourceType"] == "Observation":
            resource["code"]["text"] = f"ALT {evil}"
    patient_id = fhirserver.load_patient(fhir_server, bundle)
    _, page = _open(client, fhir_server, patient_id)
    assert "<script>alert" not in page
    assert "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_security_headers_and_cookie(client: FlaskClient) -> None:
    answer = client.get("/launch.html")
    csp = answer.headers["Content-Security-Policy"]
    assert "frame-ancestors 'self' https://ehr.example.org" in csp
    assert "script-src 'self'" in csp
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Cache-Control"] == "no-store"
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith("zolgensma_smart_session=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_a_bad_infusion_date_returns_to_the_plan_with_the_error_beside_the_field(
    client: FlaskClient, fhir_server: str, put_patient: Callable[[SyntheticPatient], str]
) -> None:
    patient_id = put_patient(PATIENTS["zs-eligible-4-2kg"])
    url, page = _open(client, fhir_server, patient_id)
    assert 'min="2026-11-21"' in page
    assert 'max="2028-09-12"' in page  # born 13 Sep 2026: the last day under 2 years
    for sent, said in (
        ("tomorrow", "is not a date"),
        ("2026-11-01", "cannot be in the past"),
        ("2028-09-13", "on or before 12\u00a0Sep\u00a02028"),
        ("9999-12-31", "refused"),
    ):
        answer = client.get(url + f"?infusion_date={sent}")
        assert answer.status_code == 400, sent
        assert 'id="status-h"' in answer.text, sent  # the plan page, not a dead end
        error = answer.text.split('id="infusion-date-error"', 1)[1].split("</span>", 1)[0]
        assert said in error, (sent, error)
        field_html = answer.text.split('id="infusion_date"', 1)[1].split(">", 1)[0]
        assert 'aria-describedby="infusion-date-error' in field_html
        assert 'aria-invalid="true"' in field_html
    form = _write_form(page)
    form["infusion_date"] = "2026-11-01"
    refused = client.post(url + "write", data=form)
    assert refused.status_code == 400
    assert "Nothing was written" in refused.text and 'id="infusion-date-error"' in refused.text
    assert _count(fhir_server, "CarePlan", patient_id) == 0


def test_unknown_context_asks_to_relaunch(client: FlaskClient) -> None:
    answer = client.get("/p/not-a-context/")
    assert answer.status_code == 401
    assert "relaunch" in answer.text


def test_a_partial_write_shows_every_entry_and_a_rerun_finishes(
    fhir_server: str,
    proxy: fhirserver.Proxy,
    tmp_path: Path,
    put_patient: Callable[[SyntheticPatient], str],
) -> None:
    """A registration that writes one resource at a time; the server refuses one Task: the
    page says what was written, what failed (the server's words) and what was not sent, and
    that confirming again is safe; it is, and it finishes the plan."""
    client = _app(proxy.base, tmp_path, write_strategy=Strategy.PER_RESOURCE).test_client()
    patient_id = put_patient(PATIENTS["zs-eligible-4-2kg"])
    url, page = _open(client, proxy.base, patient_id)
    proxy.fail_next("POST", "/fhir/Task", 422, "Task.code is required", after=2)
    partial = client.post(url + "write", data=_write_form(page))
    assert partial.status_code == 502
    assert "Partly written" in partial.text
    assert "Re-running the write is safe" in partial.text
    table = partial.text.split('id="write-report-table"', 1)[1].split("</table>", 1)[0]
    assert table.count("<td>failed</td>") == 1
    assert "Task.code is required" in table
    assert table.count("<td>created</td>") >= 3
    assert "<td>not sent</td>" in table
    assert _count(fhir_server, "CarePlan", patient_id) == 1
    page = partial.text
    written = client.post(url + "write", data=_write_form(page))
    assert written.status_code == 200, written.text
    assert "Plan written to the chart" in written.text
    assert _count(fhir_server, "CarePlan", patient_id) == 1
    assert _count(fhir_server, "MedicationRequest", patient_id) == 2
