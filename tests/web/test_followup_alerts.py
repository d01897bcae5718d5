"""The follow-up page's alerts and words, offline: advice in points, acknowledging and creating
the Task an alert calls for (one transaction, idempotent, CSRF and grants checked), standing
vigilance items never overdue, units and dates as clinicians write them, and the kit and dose
before the infusion day.

The chart is the in-memory stand-in of tests/fhir/test_followup_write.py: the sandbox's synthetic
patients with the plan the app wrote, changed only by transactions applied as a FHIR server
would (conditional creates, version checks). The launch context is the real one, kept in the
app's server-side session.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from html import unescape
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from smart_app import service
from smart_app.fhir import codes
from smart_app.fhir.followup_write import alert_bundle
from smart_app.fhir.written import Confirmation, OrderMode
from smart_app.web import context
from smart_app.web.state import EXTENSION
from tests.fhir.test_followup_write import USER, _assert_conforms, _Chart, _fresh_chart, _patient
from tests.smartsandbox import NOW, TODAY, field
from tests.web.planner_app import launch_context, page_text, store_context

LIVER = "zs-day-15-liver-injury"
FULL = "launch openid fhirUser patient/*.cruds"
READ_ONLY = "launch openid fhirUser patient/*.rs"
NBSP = "\u00a0"


class _Counting:
    """The in-memory chart, counting the transactions sent to it."""

    def __init__(self, chart: _Chart) -> None:
        self.chart = chart
        self.sent: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.chart, name)

    def transaction(self, bundle: dict[str, Any]) -> dict[str, Any]:
        self.sent.append(bundle)
        return self.chart.transaction(bundle)


@pytest.fixture
def charts(app: Flask) -> Iterator[dict[str, _Counting]]:
    """One in-memory chart per patient, behind the follow-up routes (the app's gateway factory)."""
    found: dict[str, _Counting] = {}

    def chart_of(launched: context.LaunchContext) -> _Counting:
        if launched.patient not in found:
            found[launched.patient] = _Counting(_fresh_chart(launched.patient))
        return found[launched.patient]

    app.extensions[EXTENSION].gateway_factory = chart_of
    yield found


def _launched(client: FlaskClient, patient: str, scope: str = FULL) -> str:
    """A launch context in the client's session."""
    return store_context(client, launch_context(patient, scope=scope, user=USER))


def _text(html: str) -> str:
    """The page's visible words (planner_app.page_text)."""
    return page_text(html)


def _section(page: str, element_id: str) -> str:
    """The HTML of the <section> with this id."""
    start = page.index(f'id="{element_id}"')
    return page[start : page.index("</section>", start)]


def _alert_form(page: str, code: str) -> dict[str, str]:
    """The hidden fields of one alert's form."""
    form = page[page.index(f'id="alert-{code}-form"') :]
    form = form[: form.index("</form>")]
    fingerprint = re.search(r'name="fingerprint" value="([^"]*)"', form)
    assert fingerprint
    return {
        "csrf_token": field(page, "csrf_token"),
        "fingerprint": unescape(fingerprint.group(1)),
        "alert": code,
    }


def _alert_page(client: FlaskClient, code: str, action: str) -> tuple[str, dict[str, str]]:
    """A fresh launch of the liver-injury patient: the alert form's URL and its fields, with
    `action` chosen."""
    context_id = _launched(client, LIVER)
    page = client.get(f"/p/{context_id}/followup/").text
    return f"/p/{context_id}/followup/alert", {**_alert_form(page, code), "action": action}


def _own_tasks(chart: _Counting) -> dict[str, dict[str, Any]]:
    """The app's Tasks in the chart by identifier value after the plan key."""
    out = {}
    for resource in chart.chart.store.values():
        if resource["resourceType"] != "Task":
            continue
        for value in codes.app_identifier_values(resource):
            out[value.split("/", 1)[1]] = resource
    return out


# --- the alert as shown --------------------------------------------------------------------


def test_the_liver_injury_alert_states_each_result_once_and_the_advice_in_points(
    client: FlaskClient, charts: dict[str, _Counting]
) -> None:
    page = client.get(f"/p/{_launched(client, LIVER)}/followup/").text
    alert = _section(page, "alert-acute-liver-injury")
    text = _text(alert)
    assert "URGENT: Possible acute serious liver injury" in text
    assert text.count("ALT 1020 U/L") == 1  # met by two criteria, stated once
    assert "ALT 1020 U/L (22.67 × ULN), 20 Nov 2026 (day 14 after infusion)" in text
    assert "INR 1.7 (1.31 × ULN)" in text and "{INR}" not in text
    advice = re.findall(
        r"<li>([^<]+)</li>", alert[alert.index('id="alert-acute-liver-injury-advice"') :]
    )
    assert advice[:3] == [
        "Promptly assess and closely monitor.",
        "Suspected acute serious liver injury or acute liver failure: promptly consult a "
        "pediatric gastroenterologist or hepatologist.",
        "Test albumin, PTT and INR.",
    ]
    assert (
        "Institution defaults: possible acute liver injury is total bilirubin above 1 × ULN"
    ) in text
    assert "_uln_multiple" not in page and "inr_rise_min" not in page  # no policy keys
    assert 'id="acknowledge-acute-liver-injury"' in alert
    assert 'id="create-acute-liver-injury-hepatology-consult"' in alert
    assert 'id="create-acute-liver-injury-liver-tests"' in alert
    assert charts[LIVER].sent == []


def test_units_dates_and_standing_items_read_as_clinicians_write_them(
    client: FlaskClient, charts: dict[str, _Counting]
) -> None:
    page = client.get(f"/p/{_launched(client, LIVER)}/followup/").text
    text = _text(page)
    assert "{INR}" not in page and "10*3/uL" not in page and "x 10^3/uL" not in page
    results = _text(page[page.index('id="results"') :])
    assert "20 Nov 2026" in results and "2026-11-20" not in results
    assert "× 10³/µL" in results  # platelets in clinical notation
    assert "≥ 2 × ULN" in results or "> 20 × ULN" in results
    # The day-0 TMA and platelet vigilance window ended yesterday: to confirm, never overdue.
    assert 'id="tasks-overdue"' not in page
    vigilance = _text(
        page[page.index('id="tasks-due"') : page.index("</details>", page.index('id="tasks-due"'))]
    )
    assert "TMA and platelet vigilance" in vigilance
    assert "window ended: confirm" in vigilance
    assert "Infusion 6 Nov 2026" in text and "Today 21 Nov 2026" in text
    assert "signed in as Practitioner/" in text


def test_a_vigilance_item_inside_its_window_is_ongoing(
    client: FlaskClient, charts: dict[str, _Counting]
) -> None:
    page = client.get(f"/p/{_launched(client, 'zs-day-10')}/followup/").text
    assert 'id="tasks-overdue"' not in page
    ongoing = _text(page[page.index('id="tasks-ongoing"') :])
    assert 'id="tasks-ongoing"> Ongoing (1)' in ongoing
    assert "ongoing until 25 Nov 2026" in ongoing
    assert 'value="task/vigilance/day0"' in page  # still ticked by hand in the Task form


# --- acknowledging and creating Tasks --------------------------------------------------------


def test_acknowledging_writes_one_task_with_provenance_and_a_second_click_writes_nothing(
    client: FlaskClient, charts: dict[str, _Counting]
) -> None:
    url, form = _alert_page(client, "acute-liver-injury", "")
    first = client.post(url, data=form)
    assert first.status_code == 200
    chart = charts[LIVER]
    assert len(chart.sent) == 1
    kinds = [e["resource"]["resourceType"] for e in chart.sent[0]["entry"]]
    assert kinds == ["Task", "Provenance"]
    ack = _own_tasks(chart)["task/alert-review/acute-liver-injury/day15"]
    assert ack["status"] == "completed"
    assert ack["code"]["coding"][0]["code"] == "alert-review"
    assert ack["executionPeriod"]["end"] == "2026-11-21"
    assert ack["owner"]["reference"] == USER
    assert {o["valueReference"]["reference"] for o in ack["output"]} >= {
        f"Observation/{LIVER}-alt-d14",
        f"Observation/{LIVER}-tbil-d14",
    }
    notice = _text(_section(first.text, "notice"))
    assert "Possible acute serious liver injury: acknowledged, with Provenance." in notice
    shown = _section(first.text, "alert-acute-liver-injury")
    assert "Acknowledged today" in _text(shown)
    assert 'id="acknowledge-acute-liver-injury"' not in shown
    assert 'urgent-banner acknowledged" role="alert" id="alert-acute-liver-injury"' in first.text
    # the same form again (the page before): nothing is sent, the page says so
    again = client.post(url, data=form)
    assert again.status_code == 200
    assert len(chart.sent) == 1
    assert "already acknowledged today: nothing new was written" in _text(again.text)
    # a later launch the same day shows it acknowledged
    later = client.get(f"/p/{_launched(client, LIVER)}/followup/").text
    assert "Acknowledged today" in _text(_section(later, "alert-acute-liver-injury"))


def test_creating_the_consult_task_acknowledges_adds_it_to_the_care_plan_once(
    client: FlaskClient, charts: dict[str, _Counting]
) -> None:
    url, form = _alert_page(client, "acute-liver-injury", "hepatology-consult")
    answer = client.post(url, data=form)
    assert answer.status_code == 200
    chart = charts[LIVER]
    (bundle,) = chart.sent
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds == ["Task", "Task", "CarePlan", "Provenance"]
    tasks = _own_tasks(chart)
    consult = tasks["task/consult/alert-hepatology-consult/day15"]
    assert consult["status"] == "requested"
    assert consult["priority"] == "urgent"
    assert consult["restriction"]["period"] == {"start": "2026-11-21", "end": "2026-11-22"}
    assert "pediatric gastroenterologist or hepatologist" in consult["description"]
    assert consult["reasonReference"]["reference"].startswith("Observation/")
    assert "task/alert-review/acute-liver-injury/day15" in tasks
    care_plan = next(r for r in chart.chart.store.values() if r["resourceType"] == "CarePlan")
    activity = [a["reference"]["reference"] for a in care_plan["activity"]]
    assert f"Task/{consult['id']}" in activity
    text = _text(answer.text)
    assert "Task created: Consult a pediatric gastroenterologist or hepatologist promptly." in text
    shown = _section(answer.text, "alert-acute-liver-injury")
    assert 'id="create-acute-liver-injury-hepatology-consult"' not in shown
    assert "Task in the chart: Consult a pediatric gastroenterologist" in _text(shown)
    # the consult is listed with the due Tasks, to confirm by hand; not the day-30 consult banner
    assert 'value="task/consult/alert-hepatology-consult/day15"' in answer.text
    assert 'id="open-consult"' not in answer.text
    # clicked again from the old page: nothing new
    again = client.post(url, data=form)
    assert again.status_code == 200
    assert len(chart.sent) == 1
    assert "nothing new was written" in _text(again.text)


def test_the_repeat_lab_task_is_a_lab_draw_shared_by_both_liver_alerts(
    client: FlaskClient, charts: dict[str, _Counting]
) -> None:
    url, form = _alert_page(client, "liver-tests-worsening", "liver-tests")
    answer = client.post(url, data=form)
    assert answer.status_code == 200
    draw = _own_tasks(charts[LIVER])["task/lab-draw/alert-liver-tests/day15"]
    assert [i["valueCodeableConcept"]["text"] for i in draw["input"]] == [
        "ALT",
        "AST",
        "total bilirubin",
        "albumin",
        "PT",
        "PTT",
        "INR",
    ]
    # the other liver alert calls for the same draw: it shows the Task, no second button
    other = _section(answer.text, "alert-acute-liver-injury")
    assert 'id="create-acute-liver-injury-liver-tests"' not in other
    assert "Task in the chart: Repeat liver tests with albumin, PTT and INR" in _text(other)
    assert 'id="create-acute-liver-injury-hepatology-consult"' in other


def test_the_alert_post_checks_csrf_grants_and_what_was_shown(
    client: FlaskClient, charts: dict[str, _Counting]
) -> None:
    url, form = _alert_page(client, "acute-liver-injury", "")
    assert client.post(url, data={**form, "csrf_token": "forged"}).status_code == 403
    stale = client.post(url, data={**form, "fingerprint": "0" * 16})
    assert stale.status_code == 409
    assert "The alert changed since this page was shown: nothing was written" in _text(stale.text)
    gone = client.post(url, data={**form, "alert": "tma-pattern"})
    assert gone.status_code == 409
    assert "no longer raised" in _text(gone.text)
    odd = client.post(url, data={**form, "action": "cardiology-consult"})
    assert odd.status_code == 422
    read_only = _launched(client, LIVER, READ_ONLY)
    refused = client.post(f"/p/{read_only}/followup/alert", data=form)
    assert refused.status_code == 403
    assert "acknowledge a safety alert" in _text(refused.text)
    shown = client.get(f"/p/{read_only}/followup/").text
    assert 'id="alert-acute-liver-injury-form"' not in shown
    assert "Acknowledging alerts is not offered with this launch's access." in _text(shown)
    assert charts[LIVER].sent == []


def test_an_acknowledgement_of_an_earlier_day_offers_acknowledging_again(
    client: FlaskClient, charts: dict[str, _Counting], app: Flask
) -> None:
    chart = _Counting(_fresh_chart(LIVER))
    charts[LIVER] = chart
    following = service.read_followup(chart, LIVER, on=TODAY - dt.timedelta(days=1))
    assert following is not None
    code = following.followup.reviews[0].alert.code
    confirmed = service.Confirmed(recorded=NOW - dt.timedelta(days=1), fhir_user=USER)
    written = service.act_on_alert(chart, following, confirmed, code=code)  # type: ignore[arg-type]
    assert written
    page = client.get(f"/p/{_launched(client, LIVER)}/followup/").text
    shown = _text(_section(page, f"alert-{code.value}"))
    assert "Last acknowledged 20 Nov 2026" in shown
    assert f'id="acknowledge-{code.value}"' in page


# --- before the infusion day: the kit and dose as written ------------------------------------


def test_before_infusion_the_follow_up_shows_the_kit_and_dose_written(
    client: FlaskClient, charts: dict[str, _Counting]
) -> None:
    patient = "zs-eligible-4-2kg"
    spec = _patient(patient)
    chart = _Chart(spec.resources)
    evaluation = service.evaluate(chart, patient, on=TODAY, infusion_date=spec.infusion_date)  # type: ignore[arg-type]
    service.write(
        chart,  # type: ignore[arg-type]
        evaluation,
        Confirmation(recorded=NOW, fhir_user=USER, order_mode=OrderMode.ORDER),
    )
    charts[patient] = _Counting(chart)
    page = client.get(f"/p/{_launched(client, patient)}/followup/").text
    text = _text(page)
    assert "3 days before infusion Infusion 24 Nov 2026" in text and "Day -3" not in text
    assert "HCP Day -1" not in text  # HCP Day 1 is the day before infusion
    assert "Prednisolone today not started yet Starts 23 Nov 2026: 4.2 mg" in text
    assert "Corticosteroid course starts on 23 Nov 2026." in text
    kit = _text(_section(page, "kit"))
    assert "Kit NDC 71894-123-03" in kit
    assert "Vials 3 × 8.3 mL (3 vials, 24.9 mL in all)" in kit
    assert "Dose volume 24.8 mL" in kit
    assert "Pump rate 24.8 mL/h over 60 minutes" in kit
    assert "Vector genomes 4.96 × 10¹⁴ vg" in kit
    assert "dosed on 4.20 kg" in kit
    assert "Order status active (signed)" in kit
    assert "MedicationRequest/" not in kit
    assert 'id="alert-' not in page


@pytest.mark.parametrize(
    ("patient", "code", "action"),
    [
        (LIVER, "acute-liver-injury", "hepatology-consult"),
        (LIVER, "acute-liver-injury", "liver-tests"),
        (LIVER, "liver-tests-worsening", None),
    ],
)
def test_alert_bundles_conform_to_r4b_and_the_apps_profiles(
    patient: str, code: str, action: str | None
) -> None:
    chart = _fresh_chart(patient)
    following = service.read_followup(chart, patient, on=TODAY)  # type: ignore[arg-type]
    assert following is not None
    (review,) = [r for r in following.followup.reviews if r.alert.code.value == code]
    bundle = alert_bundle(
        following.state,
        following.record,
        patient_id=patient,
        review=review,
        action=action,
        on=TODAY,
        confirmed=service.Confirmed(recorded=NOW, fhir_user=USER),
    )
    assert bundle is not None
    _assert_conforms(bundle)
    again = alert_bundle(
        following.state,
        following.record,
        patient_id=patient,
        review=review,
        action=action,
        on=TODAY,
        confirmed=service.Confirmed(recorded=NOW + dt.timedelta(minutes=5), fhir_user=USER),
    )
    assert again is not None
    urls = [(e["request"]["method"], e.get("fullUrl")) for e in bundle["entry"]]
    assert urls == [(e["request"]["method"], e.get("fullUrl")) for e in again["entry"]]
