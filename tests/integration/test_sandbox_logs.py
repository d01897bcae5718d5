"""The sandbox's request logs and request-line bound, on the servers as the sandbox starts them
(the `smart_sandbox` fixture): log lines name routes, never launch ids, codes, states or launch
context ids; a 100 kB query string gets 414 URI Too Long, and the server goes on serving."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import pytest
import requests

from smart_app.sandbox import run
from smart_app.sandbox.serving import MAX_REQUEST_LINE_BYTES, TOO_LONG
from tests.smartsandbox import ehr_launch_url, follow, query

pytestmark = pytest.mark.integration

PATIENT = "zs-eligible-4-2kg"
"""Only read here."""


def with_request_line(base: str, path: str, length: int) -> str:
    """A URL on `base` whose request line (`GET <path>?q=... HTTP/1.1` and CRLF) is `length`
    bytes long."""
    fixed = len(f"GET {path}?q= HTTP/1.1\r\n")
    return f"{base}{path}?q=" + "a" * (length - fixed)


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The sandbox's request log lines."""
    return [r.getMessage() for r in caplog.records if r.name == "smart_app.sandbox"]


def test_request_logs_name_routes_not_launch_ids_codes_or_contexts(
    smart_sandbox: run.Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="smart_app.sandbox")
    sandbox = smart_sandbox
    browser = requests.Session()
    frame_src = ehr_launch_url(browser, sandbox.ehr_base, PATIENT)
    hops = follow(browser, frame_src)
    assert hops[-1].status == 200, hops
    launch_id = query(frame_src)["launch"]
    callback = next(h.url for h in hops if h.url.startswith(f"{sandbox.app_base}/callback"))
    code, state = query(callback)["code"], query(callback)["state"]
    context_id = urlsplit(hops[-1].url).path.split("/")[2]
    assert len(launch_id) >= 16 and len(context_id) >= 16

    logged = lines(caplog)
    ehr_port, app_port = urlsplit(sandbox.ehr_base).port, urlsplit(sandbox.app_base).port
    assert f":{ehr_port} GET /chart/<launch_id> 200" in logged, logged
    assert f":{ehr_port} GET /oauth/authorize 302" in logged
    assert f":{app_port} GET /launch 302" in logged
    assert f":{app_port} GET /callback 303" in logged
    assert f":{app_port} GET /p/<context_id>/ 200" in logged
    for secret in (launch_id, code, state, context_id):
        leaked = [line for line in logged if secret in line]
        assert leaked == [], leaked
    for record in caplog.records:  # nor in any other record of the run (werkzeug, the app)
        text = record.getMessage()
        assert launch_id not in text and code not in text and context_id not in text, text


@pytest.mark.parametrize("where", ["ehr", "app"])
@pytest.mark.parametrize("size", [100_000, MAX_REQUEST_LINE_BYTES + 1])
def test_an_overlong_request_line_gets_414_and_the_server_goes_on(
    smart_sandbox: run.Sandbox,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    where: str,
    size: int,
) -> None:
    caplog.set_level(logging.INFO, logger="smart_app.sandbox")
    base = smart_sandbox.ehr_base if where == "ehr" else smart_sandbox.app_base
    path = "/chart/secret-launch-id" if where == "ehr" else "/launch"
    url = with_request_line(base, path, size)
    answer = requests.get(url, timeout=30)
    assert answer.status_code == 414
    assert "URI Too Long" in answer.text or "Too Long" in answer.reason
    port = urlsplit(base).port
    assert f":{port} - {TOO_LONG} 414" in lines(caplog)
    assert not [line for line in lines(caplog) if "secret-launch-id" in line or "aaaa" in line]
    again = requests.get(f"{base}/{'launch.html' if where == 'app' else ''}", timeout=30)
    assert again.status_code == 200
    errors = capfd.readouterr().err
    assert "Traceback" not in errors and "Exception occurred" not in errors, errors[-2000:]


@pytest.mark.parametrize("where", ["ehr", "app"])
def test_the_bound_is_8_kb_of_request_line(smart_sandbox: run.Sandbox, where: str) -> None:
    base = smart_sandbox.ehr_base if where == "ehr" else smart_sandbox.app_base
    at_bound = with_request_line(
        base, "/smart-style.json" if where == "ehr" else "/launch.html", MAX_REQUEST_LINE_BYTES
    )
    assert requests.get(at_bound, timeout=30).status_code == 200
    assert requests.get(at_bound + "a", timeout=30).status_code == 414
