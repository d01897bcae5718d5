"""A double-click on "Write plan" against the real FHIR servers: the second POST shows the first
one's result ("already written") and the server holds one plan, whether the POSTs come one after
the other, at the same time in one process, or at the same time in two (two workers sharing the
session store, where the server's version conflict is read back)."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from smart_app import service
from smart_app.fhir import codes
from smart_app.fhir.gateway import FhirGateway
from smart_app.sandbox.patients import SyntheticPatient
from smart_app.web import plan as plan_view
from smart_app.web.ledger import FileLedger, WriteLedger
from smart_app.web.state import EXTENSION
from tests import fhirserver
from tests.integration.conftest import Server
from tests.integration.test_web_open import PATIENTS, _app, _open, _write_form

pytestmark = pytest.mark.integration
ALL_SERVERS = True

COOKIE = "zolgensma_smart_session"
PATIENT = "zs-eligible-4-2kg"
REPLAN_DATE = "2026-11-25"
"""A second infusion date: writing it retires the first plan (version-checked updates)."""
BARRIER_S = 30.0


@pytest.fixture
def client(fhir_server: str, tmp_path: Path) -> FlaskClient:
    """A browser-like client of a fresh app."""
    return _app(fhir_server, tmp_path).test_client()


@pytest.fixture
def patient_id(put_patient: Callable[[SyntheticPatient], str]) -> str:
    """The plan patient, loaded under fresh ids."""
    return put_patient(PATIENTS[PATIENT])


@dataclass(frozen=True)
class Writes:
    """Every call of service.write (the only way a plan is sent), by patient, in `sent`; and
    the ways a test makes two write POSTs interleave."""

    sent: list[str]
    monkeypatch: pytest.MonkeyPatch

    def both_read_first(self) -> None:
        """Hold each write POST after its chart read until the other one has read too: the
        double-click's interleaving, where both read the chart before either writes. (The wait is
        where the POST plans from the chart it read, not inside the read: the read runs under the
        request context's cached_property, whose lock Python 3.11 shares across requests.)"""
        barrier = threading.Barrier(2, timeout=BARRIER_S)
        real = plan_view._plan
        local = threading.local()

        def plan_then_wait(record: Any, infusion_text: str | None) -> Any:
            planned = real(record, infusion_text)
            first = not getattr(local, "waited", False)  # the first plan of each POST only
            if first and threading.current_thread() is not threading.main_thread():
                local.waited = True
                barrier.wait()
            return planned

        self.monkeypatch.setattr(plan_view, "_plan", plan_then_wait)

    def one_at_a_time(self) -> None:
        """Let one write POST send its plan and have the answer before the other one sends (both
        having read the chart): the second one's look-up finds the first one's plan."""
        lock = threading.Lock()
        real = service.write

        def in_turn(*args: Any, **kw: Any) -> Any:
            with lock:
                return real(*args, **kw)

        self.monkeypatch.setattr(service, "write", in_turn)

    def sends_at_once(self) -> None:
        """Hold each write POST's transaction until the other one's is ready too: both have read
        the chart and looked the plan's keys up before either sends."""
        barrier = threading.Barrier(2, timeout=BARRIER_S)
        real = FhirGateway.transaction
        local = threading.local()

        def wait_then_send(gateway: FhirGateway, bundle: Mapping[str, Any]) -> Any:
            first = not getattr(local, "waited", False)  # the first transaction of each POST only
            if first and threading.current_thread() is not threading.main_thread():
                local.waited = True
                barrier.wait()
            return real(gateway, bundle)

        self.monkeypatch.setattr(FhirGateway, "transaction", wait_then_send)


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> Writes:
    """service.write counted: the plans sent, by patient."""
    sent: list[str] = []
    real = service.write

    def counting(gateway: Any, evaluation: service.Evaluation, *args: Any, **kw: Any) -> Any:
        sent.append(evaluation.plan.patient_id)
        return real(gateway, evaluation, *args, **kw)

    monkeypatch.setattr(service, "write", counting)
    return Writes(sent, monkeypatch)


def clone(client: FlaskClient, app: Flask) -> FlaskClient:
    """A second client of `app` with the same session cookie (another tab, or the same browser
    reaching another worker)."""
    other = app.test_client()
    cookie = client.get_cookie(COOKIE)
    assert cookie is not None
    other.set_cookie(COOKIE, cookie.value)
    return other


def at_once(posts: list[Callable[[], TestResponse]]) -> list[TestResponse]:
    """Run the POSTs in threads at the same time; their answers in order."""
    answers: list[TestResponse | None] = [None] * len(posts)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            answers[index] = posts[index]()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(posts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert all(a is not None for a in answers)
    return [a for a in answers if a is not None]


def apart(
    fhir_server: str, tmp_path: Path, patient_id: str
) -> tuple[FlaskClient, FlaskClient, str, dict[str, Any]]:
    """A plan written, then two app instances in one browser session whose write ledgers differ
    (nothing keeps their writes apart); the plan URL and the re-plan's write form."""
    one = _app(fhir_server, tmp_path).test_client()
    url, page = written_first(one, fhir_server, patient_id)
    other = _app(fhir_server, tmp_path)
    other.extensions[EXTENSION].writes = WriteLedger(FileLedger(tmp_path / "another-ledger"))
    return one, clone(one, other), url, _write_form(page)


def read_back_as_existing(answers: list[TestResponse], fhir_server: str, patient_id: str) -> None:
    """Both pages written; the second created nothing and shows every entry as already there;
    the server holds one active plan (and the first one, retired)."""
    assert [a.status_code for a in answers] == [200, 200], [a.text[-900:] for a in answers]
    for answer in answers:
        assert "refused the plan" not in answer.text
    created = sorted(counts(a.text)[0] for a in answers)
    assert created[0] == 0 < created[1]  # the second wrote nothing new
    first = next(a for a in answers if counts(a.text)[0] > 0)
    second = next(a for a in answers if counts(a.text)[0] == 0)
    assert counts(second.text) == (0, sum(counts(first.text)), 0)
    assert len(active_plans(fhir_server, patient_id)) == 1
    assert len(app_plans(fhir_server, patient_id)) == 2


def table(page: str) -> str:
    """The written page's table of what was written."""
    return page.split('id="written-table"', 1)[1].split("</table>", 1)[0]


def counts(page: str) -> tuple[int, int, int]:
    """Created, already there, updated: the written page's summary."""
    found = re.search(r"(\d+) created, (\d+) already there, (\d+) updated", page)
    assert found, page
    return int(found.group(1)), int(found.group(2)), int(found.group(3))


def report_rows(page: str) -> list[tuple[str, str]]:
    """Outcome and the server's words for each row of a partial write's report table."""
    body = page.split('id="write-report-table"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r'<tr class="outcome-([^"]+)">(.*?)</tr>', body, re.S)
    return [(outcome, re.findall(r"<td>(.*?)</td>", cells, re.S)[-1]) for outcome, cells in rows]


def app_plans(fhir_server: str, patient_id: str) -> list[dict[str, Any]]:
    """The app's CarePlans for a patient on the server."""
    _, bundle = fhirserver.http_json("GET", f"{fhir_server}/CarePlan?patient={patient_id}")
    plans = [e["resource"] for e in bundle.get("entry") or []]
    return [
        p
        for p in plans
        if any(i.get("system") == codes.APP_IDENTIFIER for i in p.get("identifier") or [])
    ]


def active_plans(fhir_server: str, patient_id: str) -> list[dict[str, Any]]:
    """The app's active CarePlans for a patient on the server."""
    return [p for p in app_plans(fhir_server, patient_id) if p.get("status") == "active"]


def sent_once(writes: Writes, fhir_server: str, patient_id: str) -> None:
    """The plan was sent once, and the server holds one active plan for the patient."""
    assert writes.sent == [patient_id]
    assert len(active_plans(fhir_server, patient_id)) == 1


def written_first(client: FlaskClient, fhir_server: str, patient_id: str) -> tuple[str, str]:
    """Write the plan for the default date; return the plan URL and the re-plan page (another
    date, whose write retires the first plan)."""
    url, page = _open(client, fhir_server, patient_id)
    assert client.post(url + "write", data=_write_form(page)).status_code == 200
    replan = client.get(url + f"?view=plan&infusion_date={REPLAN_DATE}")
    assert replan.status_code == 200, replan.text
    return url, replan.text


def test_two_posts_in_a_row_write_once_and_the_second_shows_the_first(
    client: FlaskClient, fhir_server: str, patient_id: str, writes: Writes
) -> None:
    url, page = _open(client, fhir_server, patient_id)
    form = _write_form(page)
    first = client.post(url + "write", data=form)
    second = client.post(url + "write", data=form)
    assert first.status_code == 200, first.text
    assert "Plan written to the chart" in first.text and 'id="already-written"' not in first.text
    assert second.status_code == 200, second.text
    assert "Plan already written to the chart" in second.text
    assert "nothing was sent again" in second.text
    assert table(second.text) == table(first.text)
    assert counts(first.text)[0] > 0 and counts(second.text) == counts(first.text)
    sent_once(writes, fhir_server, patient_id)


def test_two_posts_at_once_in_one_process_write_once(
    client: FlaskClient, fhir_server: str, patient_id: str, writes: Writes
) -> None:
    """Both read the chart before either writes (the interleaving that made the second one's
    version-checked updates fail with 412 and show a 502); the second waits for the first and
    shows its result."""
    url, page = written_first(client, fhir_server, patient_id)
    writes.sent.clear()
    form = _write_form(page)
    app = client.application
    tab = clone(client, app)
    writes.both_read_first()
    answers = at_once(
        [lambda: client.post(url + "write", data=form), lambda: tab.post(url + "write", data=form)]
    )
    assert [a.status_code for a in answers] == [200, 200], [a.text[-600:] for a in answers]
    already = [a for a in answers if 'id="already-written"' in a.text]
    assert len(already) == 1
    fresh = next(a for a in answers if a is not already[0])
    assert "Plan written to the chart" in fresh.text
    assert table(already[0].text) == table(fresh.text)
    sent_once(writes, fhir_server, patient_id)
    assert len(app_plans(fhir_server, patient_id)) == 2  # the first one, retired


def test_two_posts_at_once_in_two_workers_write_once(
    fhir_server: str, tmp_path: Path, patient_id: str, writes: Writes
) -> None:
    """Two app instances sharing the session store (two gunicorn workers, each with its own
    memory): the claim beside the sessions lets one write and the other show its result."""
    one = _app(fhir_server, tmp_path).test_client()
    url, page = written_first(one, fhir_server, patient_id)
    writes.sent.clear()
    two = clone(one, _app(fhir_server, tmp_path))
    form = _write_form(page)
    writes.both_read_first()
    answers = at_once(
        [lambda: one.post(url + "write", data=form), lambda: two.post(url + "write", data=form)]
    )
    assert [a.status_code for a in answers] == [200, 200], [a.text[-900:] for a in answers]
    assert sorted('id="already-written"' in a.text for a in answers) == [False, True]
    assert table(answers[0].text) == table(answers[1].text)
    sent_once(writes, fhir_server, patient_id)


def test_a_version_conflict_with_a_write_of_the_same_plan_is_read_back_as_existing(
    fhir_server: str, tmp_path: Path, patient_id: str, writes: Writes
) -> None:
    """Two writes of the same plan that nothing kept apart (here: two app instances whose
    ledgers differ) both read the chart, then send one after the other; the second meets a
    version conflict from the first one's write and, the server holding every entry by the
    plan's keys, reports them as already there rather than "the FHIR server refused the plan"
    (502). A server that runs a transaction entry by entry answers 412 per update instead of
    refusing the transaction whole: read back the same way."""
    one, two, url, form = apart(fhir_server, tmp_path, patient_id)
    writes.sent.clear()
    writes.both_read_first()
    writes.one_at_a_time()
    answers = at_once(
        [lambda: one.post(url + "write", data=form), lambda: two.post(url + "write", data=form)]
    )
    assert writes.sent == [patient_id, patient_id]
    read_back_as_existing(answers, fhir_server, patient_id)


def test_two_writes_of_the_same_plan_sent_at_the_same_moment(
    fhir_server: str, server: Server, tmp_path: Path, patient_id: str, writes: Writes
) -> None:
    """Both writes look the plan's keys up before either sends. An atomic server refuses the
    second transaction whole (its updates conflict): read back as existing. A server that runs
    it entry by entry keeps its creates before its updates fail: the page says exactly that (no
    false "written", no "refused") and the server holds the plan twice, which a re-run neither
    adds to nor repairs. A known limit of the look-up's plain creates: the write ledger the
    workers share is what keeps two writes of one launch apart."""
    one, two, url, form = apart(fhir_server, tmp_path, patient_id)
    writes.sent.clear()
    writes.sends_at_once()
    answers = at_once(
        [lambda: one.post(url + "write", data=form), lambda: two.post(url + "write", data=form)]
    )
    assert writes.sent == [patient_id, patient_id]
    if server is not Server.MEDPLUM_ENTRY:
        read_back_as_existing(answers, fhir_server, patient_id)
        return
    assert sorted(a.status_code for a in answers) == [200, 502], [a.text[-900:] for a in answers]
    first = next(a for a in answers if a.status_code == 200)
    second = next(a for a in answers if a.status_code == 502)
    assert "Plan written to the chart" in first.text
    made, there, updated = counts(first.text)
    assert made > 0 and there == 0 and updated > 0
    assert "Partly written" in second.text
    assert "Plan written to the chart" not in second.text
    assert "refused the plan" not in second.text
    assert f"the server applied part of the write ({made} created, {updated} failed)" in second.text
    rows = report_rows(second.text)
    assert sorted(outcome for outcome, _ in rows) == ["created"] * made + ["failed"] * updated
    assert all(said.startswith("412:") for outcome, said in rows if outcome == "failed")
    active = active_plans(fhir_server, patient_id)
    assert len(active) == 2 and len(app_plans(fhir_server, patient_id)) == 3
    assert len({tuple(codes.app_keys(plan)) for plan in active}) == 1  # one plan, held twice
    again = one if answers[0] is second else two  # the instance whose write was partial
    replan = again.get(url + f"?view=plan&infusion_date={REPLAN_DATE}")
    assert replan.status_code == 200, replan.text
    rerun = again.post(url + "write", data=_write_form(replan.text))
    assert rerun.status_code == 200, rerun.text[-900:]
    assert 'id="already-written"' not in rerun.text  # sent again, not the ledger's answer
    assert counts(rerun.text) == (0, made, 0)
    assert len(active_plans(fhir_server, patient_id)) == 2
