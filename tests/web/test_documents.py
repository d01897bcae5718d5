"""The printed documents' routes: a plan built now, a blocked plan, the plan as written.

The chart comes from the in-memory stand-in of tests/web/test_grants_web.py (the synthetic
patients; for a patient on a plan, the offline chart with the plan written by the app), so
"nothing was sent" is checked, not assumed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterator
from html import unescape

import pytest
from flask.testing import FlaskClient

from smart_app import service
from smart_app.fhir.followup_write import Confirmed
from smart_app.fhir.written import OrderMode
from smart_app.rules import label
from smart_app.rules.arith import add_months
from smart_app.rules.model import ActivityKind, LabTest
from smart_app.web import context, documents, followup, plan
from tests.fhir.test_followup_write import USER, _fresh_chart
from tests.smartsandbox import NOW, TODAY
from tests.web.planner_app import ISS, page_text, serve_through, store_context
from tests.web.test_grants_web import ChartGateway, chart_reader

ON_PLAN = "zs-day-28"
ELIGIBLE = "zs-eligible-4-2kg"
"""4.2 kg: kit 71894-123-03 (0 x 5.5 mL + 3 x 8.3 mL), 24.8 mL at 24.8 mL/h, 4.2 mg = 1.4 mL."""
DOCUMENTS = ("pharmacy", "checklist", "handout")


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[ChartGateway]:
    """The EHR stand-in behind the pages and the documents."""
    fake = ChartGateway(chart_reader(ON_PLAN))
    serve_through(monkeypatch, fake, plan, followup, documents)
    yield fake


def _launched(client: FlaskClient, patient: str, *, user: str = "") -> str:
    """A launch context on an open server in the client's session."""
    launched = dataclasses.replace(context.LaunchContext(iss=ISS, patient=patient), fhir_user=user)
    return store_context(client, launched)


def _text(page: str) -> str:
    """The page's visible words (planner_app.page_text)."""
    return page_text(page)


def _get(client: FlaskClient, context_id: str, document: str, **query: str) -> tuple[int, str]:
    answer = client.get(f"/p/{context_id}/print/{document}", query_string=query)
    return answer.status_code, answer.text


def test_the_pharmacy_sheet_of_an_eligible_plan_has_every_fact_to_verify(
    client: FlaskClient, gateway: ChartGateway
) -> None:
    context_id = _launched(
        client, ELIGIBLE, user="https://ehr.example.org/fhir/Practitioner/dr-lee"
    )
    status, page = _get(client, context_id, "pharmacy")
    assert status == 200
    text = _text(page)
    assert "Pharmacy verification sheet" in text
    assert "Amara Okafor-Test" in text and ELIGIBLE in text
    assert "not yet written to the chart" in text
    assert "NOT AN ORDER" not in text
    assert "Weight 4.20 kg, weighed" in text
    assert "Weight band 4.1–4.5 kg" in text
    assert "Kit NDC 71894-123-03" in text
    assert "Vials 3 × 8.3 mL = 3 vials" in text and "0 × 5.5" not in text
    assert "Kit capacity 24.9 mL at least" in text
    assert "Dose volume 24.8 mL" in text
    assert "Vector genomes 4.96 × 10¹⁴ vg" in text
    assert "Pump rate 24.8 mL/h over 60 minutes" in text
    assert "do not give as an intravenous push or bolus" in text
    assert "4.2 mg = 1.4 mL by mouth once daily (1 mg/kg/day)" in text
    assert "institution's usual strength" in text
    assert "Prescriber Practitioner/dr-lee" in text  # a chart reference, not the URL
    assert "https://ehr.example.org/fhir/Practitioner" not in text
    assert label.BOXED_WARNING.title in text
    assert "<form" not in page
    assert gateway.sent == []


@pytest.mark.parametrize("patient", ["zs-age-over-2", "zs-weight-missing", "zs-active-infection"])
def test_a_blocked_plans_pharmacy_sheet_says_it_is_not_an_order_and_shows_no_kit(
    client: FlaskClient, gateway: ChartGateway, patient: str
) -> None:
    context_id = _launched(client, patient)
    status, page = _get(client, context_id, "pharmacy")
    assert status == 200
    text = _text(page)
    assert "NOT AN ORDER: do not dispense" in text
    assert "This sheet is not an order" in text
    assert f"NDC {label.NDC_LABELER}" not in text and "71894-" not in text
    assert "mL/h" not in text and "mg = " not in text
    assert label.BOXED_WARNING.title in text
    for other in ("checklist", "handout"):
        status, page = _get(client, context_id, other)
        assert status == 200
        assert "mL/h" not in _text(page) and "Monitoring dates" not in _text(page)


def test_the_blocked_sheet_names_the_reason(client: FlaskClient, gateway: ChartGateway) -> None:
    context_id = _launched(client, "zs-age-over-2")
    text = _text(_get(client, context_id, "pharmacy")[1])
    assert "The plan is not eligible" in text
    assert re.search(r"Second birthday is \d{1,2} [A-Z][a-z]{2} \d{4}, on or before", text)


def test_a_plan_that_needs_review_names_what_the_prescriber_acknowledges(
    client: FlaskClient, gateway: ChartGateway
) -> None:
    context_id = _launched(client, "zs-alt-elevated")
    text = _text(_get(client, context_id, "pharmacy")[1])
    assert "Needs review The prescriber acknowledges each finding" in text
    assert "acknowledges each finding before the plan is written" in text
    assert "ALT" in text and "× ULN" in text
    assert "Kit NDC 71894-" in text  # writable once acknowledged: the kit is shown
    assert "NOT AN ORDER" not in text


def test_the_checklist_lists_the_infusion_day_steps_with_the_plans_numbers(
    client: FlaskClient, gateway: ChartGateway
) -> None:
    context_id = _launched(client, ELIGIBLE)
    status, page = _get(client, context_id, "checklist")
    assert status == 200
    text = _text(page)
    ids = re.findall(r'<li class="check" id="check-([a-z]+)"', page)
    assert ids == ["consent", "kit", "prednisolone", "well", "labs", "iv", "syringe", "vitals"]
    assert "Consent" in text and "institution practice" in text
    assert "NDC 71894-123-03, 3 vials" in text and "2–8 °C" in text and "14 days" in text
    infusion = TODAY + dt.timedelta(days=1)
    start = infusion - dt.timedelta(days=1)
    assert f"started {start.day} {start:%b} {start.year} at 4.2 mg (1.4 mL)" in text
    assert "Afebrile and well" in text and "fever" in text
    assert "Baseline labs reviewed" in text and "PTT" in text and "anti-AAV9" in text
    assert "back-up catheter" in text
    assert "24.8 mL drawn" in text and "24.8 mL/h over 60 minutes" in text
    assert "Vitals" in text and "Blood pressure" in text


def test_the_handout_gives_the_dates_doses_and_when_to_call(
    client: FlaskClient, gateway: ChartGateway
) -> None:
    infusion = TODAY + dt.timedelta(days=5)
    context_id = _launched(client, ELIGIBLE)
    status, page = _get(client, context_id, "handout", infusion_date=infusion.isoformat())
    assert status == 200
    text = _text(page)

    def day(offset: int) -> str:
        when = infusion + dt.timedelta(days=offset)
        return f"{when.day} {when:%b} {when.year}"

    assert f"will be given ZOLGENSMA once, into a vein over 1 hour, on {day(0)}" in text
    assert f"{day(-1)} {day(28)} 1.4 mL (4.2 mg)" in text
    assert "only if the doctor says so after the liver check" in text
    assert f"On {day(28)} the doctor checks the liver" in text
    assert "Never stop the medicine suddenly" in text
    assert f"{day(7)} day 7 after infusion blood test: liver, platelets" in text
    assert f"{day(28)} day 28 after infusion Liver check with the doctor" in text
    assert "yellow skin or yellow whites of the eyes" in text
    assert "misses a dose of prednisolone or vomits it up" in text
    assert "less alert" in text and "unexpected bruising or bleeding" in text
    assert "seizure" in text and "less urine" in text
    assert "1-833-828-3947" in text
    one_month = add_months(infusion, months=1)
    assert f"Until {one_month.day} {one_month:%b} {one_month.year}" in text


def test_a_patient_on_a_plan_gets_the_plan_as_written(
    client: FlaskClient, gateway: ChartGateway
) -> None:
    context_id = _launched(client, ON_PLAN, user="Practitioner/dr-lee")
    status, page = _get(client, context_id, "pharmacy")
    assert status == 200
    text = _text(page)
    assert "The plan as written to the chart" in text
    assert "Prescriber Practitioner/sandbox-practitioner" in text  # the order's, not the viewer's
    infusion = TODAY - dt.timedelta(days=28)
    assert f"Infusion given {infusion.day} {infusion:%b} {infusion.year}" in text or (
        f"Infusion date {infusion.day} {infusion:%b} {infusion.year}" in text
    )
    assert "Kit NDC 71894-125-04" in text  # 5.4 kg: the 5.1-5.5 kg band
    assert "Dose volume 30.3 mL" in text
    assert "5.4 mg = 1.8 mL by mouth once daily" in text
    assert "as ordered" in text
    handout = _text(_get(client, context_id, "handout")[1])
    assert "was given ZOLGENSMA" in handout
    day7, day35 = (infusion + dt.timedelta(days=d) for d in (7, 35))
    assert f"{day7.day} {day7:%b} {day7.year} day 7 after infusion" not in handout  # past
    assert f"{day35.day} {day35:%b} {day35.year} day 35 after infusion blood test" in handout
    assert f"Dates before {TODAY.day} {TODAY:%b} {TODAY.year} are left off" in handout
    assert "Liver check with the doctor" in handout
    # a date asked for is ignored: the documents follow the written plan
    later = _text(_get(client, context_id, "pharmacy", infusion_date="2027-01-05")[1])
    assert "Kit NDC 71894-125-04" in later
    assert gateway.sent == []


def test_after_the_day_30_decision_the_documents_show_the_taper_as_ordered(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    chart = _fresh_chart(ON_PLAN)
    following = service.read_followup(chart, ON_PLAN, on=TODAY, exam_normal=True)  # type: ignore[arg-type]
    assert following is not None
    confirmed = Confirmed(recorded=NOW, fhir_user=USER, order_mode=OrderMode.PROPOSAL)
    service.record_decision(chart, following, confirmed)  # type: ignore[arg-type]
    fake = ChartGateway(chart.read_patient)
    serve_through(monkeypatch, fake)
    context_id = _launched(client, ON_PLAN)
    pharmacy = _text(_get(client, context_id, "pharmacy")[1])
    assert "full dose 5.4 mg = 1.8 mL" in pharmacy
    assert re.search(r"lower dose, step 1 of 2 [\d.]+ mg = [\d.]+ mL", pharmacy)
    assert "(planned)" not in pharmacy
    handout = _text(_get(client, context_id, "handout")[1])
    today = f"{TODAY.day} {TODAY:%b} {TODAY.year}"
    assert f"The doctor checked the liver on {today}" in handout
    assert "the doctor checks the liver" not in handout
    assert "only if the doctor says so" not in handout
    assert fake.sent == []


def test_an_unknown_document_and_a_bad_date_are_pages_that_say_so(
    client: FlaskClient, gateway: ChartGateway
) -> None:
    context_id = _launched(client, ELIGIBLE)
    status, page = _get(client, context_id, "prescription")
    assert status == 404
    assert "No such document" in _text(page)
    status, page = _get(client, context_id, "pharmacy", infusion_date="yesterday")
    assert status == 400
    assert "not a date" in _text(page)


def test_an_ended_session_is_refused(client: FlaskClient, gateway: ChartGateway) -> None:
    status, page = _get(client, "no-such-context", "handout")
    assert status == 401
    assert "Session ended" in page


@pytest.mark.parametrize("patient", [ELIGIBLE, ON_PLAN])
def test_the_plan_and_follow_up_pages_link_to_each_document(
    client: FlaskClient, gateway: ChartGateway, patient: str
) -> None:
    context_id = _launched(client, patient)
    page = client.get(f"/p/{context_id}/").text
    links = dict(re.findall(r'<a data-document="([a-z]+)" href="([^"]+)"', page))
    assert sorted(links) == sorted(DOCUMENTS)
    for document, href in links.items():
        assert unescape(href).startswith(f"/p/{context_id}/print/{document}")
        assert client.get(unescape(href)).status_code == 200


def test_the_plan_pages_links_carry_the_date_asked_for(
    client: FlaskClient, gateway: ChartGateway
) -> None:
    context_id = _launched(client, ELIGIBLE)
    asked = (TODAY + dt.timedelta(days=6)).isoformat()
    page = client.get(f"/p/{context_id}/", query_string={"infusion_date": asked}).text
    href = unescape(re.search(r'<a data-document="pharmacy" href="([^"]+)"', page)[1])
    assert href.endswith(f"?infusion_date={asked}")


def test_visits_merge_a_day_and_name_what_the_blood_test_looks_at() -> None:
    day = dt.date(2026, 12, 22)
    checks = (
        documents.Check(
            day, 28, ActivityKind.LAB_DRAW, frozenset({LabTest.ALT, LabTest.PLATELETS})
        ),
        documents.Check(day, 28, ActivityKind.LIVER_ASSESSMENT, frozenset({LabTest.INR})),
        documents.Check(
            dt.date(2026, 12, 1),
            7,
            ActivityKind.LAB_DRAW,
            frozenset({LabTest.CREATININE, LabTest.TROPONIN_I}),
            done=True,
        ),
    )
    sheet = dataclasses.replace(_empty_sheet(), checks=checks)
    first, second = sheet.visits
    assert (first.date, first.areas, first.liver_check, first.done) == (
        dt.date(2026, 12, 1),
        ("kidneys and red blood cells", "heart (troponin I)"),
        False,
        True,
    )
    assert (second.areas, second.liver_check, second.done) == (("liver", "platelets"), True, False)


def _empty_sheet() -> documents.Sheet:
    return documents.Sheet(
        source=documents.Source.PLAN,
        order_ready=True,
        status="eligible",
        reasons=(),
        infusion_date=dt.date(2026, 11, 24),
        infusion_given=False,
        weight=None,
        kit=None,
        concentration_mg_per_ml=label.STEROID_MG_PER_KG_PER_DAY * 3,
        steroids=(),
        liver_check=None,
        checks=(),
    )
