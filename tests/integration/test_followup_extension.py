"""At least 3 months, and until back to baseline (boxed warning, 2.3, 5.1, 5.3), against the real
local FHIR server: the plan's last liver and platelet draw falls on the date 3 calendar months
after infusion, the day-30 decision keeps it, and a low last platelet count yields one further
weekly draw that confirming the Task updates writes once (through the service and the web page).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from html import unescape
from typing import Any

import pytest
import requests

from smart_app import service
from smart_app.errors import WriteBackError, WriteBlocked
from smart_app.fhir.gateway import FhirGateway
from smart_app.fhir.written import Outcome
from smart_app.rules.model import DecisionBranch, LabTest
from smart_app.rules.monitoring import three_months_after
from smart_app.sandbox import run
from tests import fhirserver
from tests.integration.test_followup import (
    LIVER_TESTS,
    _by_item,
    _confirmed,
    _counts,
    _follow,
    _snapshot,
    loaded,
)
from tests.integration.test_smart_launch import ehr_launch, upstream_search
from tests.smartsandbox import TODAY, field

pytestmark = pytest.mark.integration

COMPLETE = "zs-day-100-complete"
"""Infused 100 days before TODAY: every draw done, the 3-month one on day 92."""


def _tests(task: dict[str, Any]) -> set[str]:
    """The lab tests a Task asks for."""
    return {i["valueCodeableConcept"]["text"] for i in task.get("input", [])}


def _lab_draw_days(tasks: dict[str, dict[str, Any]], test: str) -> list[int]:
    """The days of the live lab-draw Tasks that include `test`."""
    return sorted(
        int(item.removeprefix("task/lab-draw/day"))
        for item, task in tasks.items()
        if item.startswith("task/lab-draw/") and task["status"] != "cancelled"
        and test in _tests(task)
    )  # fmt: skip


def _lower_platelets(base: str, reference: str, value: int) -> None:
    """Change a platelet count on the server (as a corrected report would)."""
    status, observation = fhirserver.http_json("GET", f"{base}/{reference}")
    assert status == 200, observation
    observation["valueQuantity"]["value"] = value
    status, answer = fhirserver.http_json("PUT", f"{base}/{reference}", observation)
    assert status == 200, answer


# At least 3 months -----------------------------------------------------------------------------


def test_the_plan_ends_with_the_three_month_draw(fhir_server: str) -> None:
    patient = loaded(fhir_server, COMPLETE)
    three_months = three_months_after(patient.infusion_date)
    day = (three_months - patient.infusion_date).days
    assert day > 84
    tasks = _by_item(fhir_server, "Task", patient.patient_id)
    last = tasks[f"task/lab-draw/day{day}"]
    assert last["restriction"]["period"]["start"] == three_months.isoformat()
    assert _tests(last) == LIVER_TESTS | {"platelets"}
    assert "3 months after infusion" in last["description"]
    for test in (*LIVER_TESTS, "platelets"):
        assert _lab_draw_days(tasks, test)[-1] == day, test
    # Resulted on its date and completed by the replayed launch on day 100.
    assert last["status"] == "completed"
    outputs = {o["valueReference"]["reference"] for o in last["output"]}
    assert f"Observation/{patient.patient_id}-plt-d{day}" in outputs


@pytest.mark.parametrize(
    ("pid", "branch"),
    [("zs-day-28", DecisionBranch.TAPER), ("zs-day-28-alt-3x", DecisionBranch.CONTINUE)],
)
def test_the_day_30_decision_keeps_the_three_month_draw(
    pid: str, branch: DecisionBranch, fhir_server: str
) -> None:
    """Both branches regenerate the later draws; the liver panel and platelets still last on
    the 3-month date (a continuation plans weekly liver draws only while it runs)."""
    patient = loaded(fhir_server, pid)
    following = _follow(fhir_server, patient.patient_id, exam_normal=True)
    decision = following.followup.decision
    assert decision is not None
    assert decision.branch is branch
    service.record_decision(FhirGateway(fhir_server), following, _confirmed())
    day = (three_months_after(patient.infusion_date) - patient.infusion_date).days
    tasks = _by_item(fhir_server, "Task", patient.patient_id)
    for test in (*LIVER_TESTS, "platelets"):
        assert _lab_draw_days(tasks, test)[-1] == day, test
    assert tasks[f"task/lab-draw/day{day}"]["status"] == "requested"


# Until back to baseline ------------------------------------------------------------------------


def test_a_low_last_platelet_count_proposes_a_draw_written_once(fhir_server: str) -> None:
    patient = loaded(fhir_server, COMPLETE)
    pid = patient.patient_id
    gateway = FhirGateway(fhir_server)
    assert _follow(fhir_server, pid).followup.proposed == ()
    day = (three_months_after(patient.infusion_date) - patient.infusion_date).days
    _lower_platelets(fhir_server, f"Observation/{pid}-plt-d{day}", 110)

    following = _follow(fhir_server, pid)
    (item,) = following.followup.proposed
    assert (item.date, item.tests) == (TODAY, (LabTest.PLATELETS,))
    assert "platelets 110 x 10^3/uL" in item.conditional
    before = _snapshot(fhir_server, pid)
    written = service.complete_tasks(gateway, following, _confirmed())
    assert [(w.reference.split("/")[0], w.outcome) for w in written] == [
        ("Task", Outcome.CREATED),
        ("CarePlan", Outcome.UPDATED),
        ("Provenance", Outcome.CREATED),
    ]
    tasks = _by_item(fhir_server, "Task", pid)
    new = tasks[f"task/lab-draw/day{item.day}"]
    assert written[0].reference == f"Task/{new['id']}"
    assert new["status"] == "requested"
    assert _tests(new) == {"platelets"}
    assert "until platelet counts return to baseline" in new["description"]
    assert new["restriction"]["period"]["end"] == item.window_end.isoformat()
    (care_plan,) = fhirserver.search(fhir_server, f"CarePlan?patient={pid}")
    assert {"reference": {"reference": f"Task/{new['id']}"}} in care_plan["activity"]
    after = _snapshot(fhir_server, pid)
    assert _counts(after) - _counts(before) == {"Task": 1, "Provenance": 1}

    # Re-confirming: nothing is proposed any more, nothing is written.
    again = _follow(fhir_server, pid)
    assert again.followup.proposed == ()
    with pytest.raises(WriteBlocked, match="nothing to update"):
        service.complete_tasks(gateway, again, _confirmed())
    # The page shown before the first confirmation, confirmed a second time: no second Task.
    try:
        service.complete_tasks(gateway, following, _confirmed())
    except WriteBackError as exc:
        assert "412" in str(exc) or "409" in str(exc), exc
    assert _counts(_snapshot(fhir_server, pid))["Task"] == _counts(after)["Task"]
    items = [i for i in _by_item(fhir_server, "Task", pid) if i.startswith("task/lab-draw/")]
    assert items.count(f"task/lab-draw/day{item.day}") == 1


# The web page ---------------------------------------------------------------------------------


@pytest.fixture
def browser() -> Iterator[requests.Session]:
    """A fresh browser (cookies of the EHR and the app)."""
    with requests.Session() as session:
        yield session


def _tasks_form(page: str) -> dict[str, str]:
    """The CSRF token and fingerprint of the Task confirmation form."""
    match = re.search(r'id="tasks-form".*?name="fingerprint" value="([^"]*)"', page, re.S)
    assert match, "no tasks-form in the page"
    return {"csrf_token": field(page, "csrf_token"), "fingerprint": unescape(match.group(1))}


def _draws(sandbox: run.Sandbox, patient: str) -> list[str]:
    """The identifiers of the patient's lab-draw Tasks on the server."""
    return [
        i["value"]
        for t in upstream_search(sandbox, f"Task?patient={patient}&_count=200")
        for i in t.get("identifier", [])
        if "/task/lab-draw/" in i["value"]
    ]


def test_the_follow_up_page_shows_and_confirms_the_proposed_draw_once(
    smart_sandbox: run.Sandbox, browser: requests.Session
) -> None:
    infusion = TODAY - dt.timedelta(days=100)
    day = (three_months_after(infusion) - infusion).days
    _lower_platelets(smart_sandbox.fhir_upstream, f"Observation/{COMPLETE}-plt-d{day}", 120)
    launched = ehr_launch(browser, smart_sandbox, COMPLETE)
    page = launched.page
    assert 'id="tasks-proposed"' in page
    assert "Lab draw, day 100: platelets (until back to baseline)" in page
    assert "platelets 120 x 10^3/uL" in page
    assert 'id="proposed-note"' in page
    form = _tasks_form(page)
    before = _draws(smart_sandbox, COMPLETE)
    url = f"{launched.plan_url}followup/tasks"
    confirmed = browser.post(url, data=form, timeout=60)
    assert confirmed.status_code == 200, confirmed.text
    assert "0 Task(s) completed and 1 further lab-draw Task(s) created" in confirmed.text
    assert 'id="tasks-proposed"' not in confirmed.text
    after = _draws(smart_sandbox, COMPLETE)
    assert sorted(after) == sorted([*before, f"{before[0].rsplit('/', 1)[0]}/day100"])
    again = browser.post(url, data=form, timeout=60)
    assert again.status_code == 409  # the page changed: the proposal is now a Task
    assert "nothing was written" in again.text
    assert sorted(_draws(smart_sandbox, COMPLETE)) == sorted(after)
