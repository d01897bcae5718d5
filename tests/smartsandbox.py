"""The whole local SMART EHR (FHIR server, sandbox EHR, app) for tests, and a launch driver."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from html import unescape
from urllib.parse import parse_qs, urljoin, urlsplit

import requests

TODAY = dt.date(2026, 11, 21)
NOW = dt.datetime(2026, 11, 21, 10, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))


def field(page: str, name: str) -> str:
    """The value of the first input named `name`."""
    match = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert match, f"no {name} field in the page"
    return unescape(match.group(1))


@dataclass
class Hop:
    """One response of a redirect chain."""

    url: str
    status: int
    location: str | None


def follow(session: requests.Session, url: str, *, stop_at: str | None = None) -> list[Hop]:
    """Follow redirects by hand, recording each hop; stop before a URL starting with `stop_at`."""
    hops: list[Hop] = []
    for _ in range(10):
        if stop_at and url.startswith(stop_at):
            hops.append(Hop(url, 0, None))
            return hops
        answer = session.get(url, allow_redirects=False, timeout=30)
        location = answer.headers.get("Location")
        hops.append(Hop(url, answer.status_code, location))
        if answer.status_code not in (301, 302, 303, 307) or not location:
            hops[-1] = Hop(url, answer.status_code, None)
            session.last_page = answer.text  # type: ignore[attr-defined]
            return hops
        url = urljoin(url, location)
    raise AssertionError("too many redirects")


def ehr_launch_url(session: requests.Session, ehr_base: str, patient_id: str) -> str:
    """Press Launch on the sandbox's patient list; return the app URL the chart's iframe loads."""
    launcher = session.get(f"{ehr_base}/", timeout=30).text
    form = {
        "csrf_token": field(launcher, "csrf_token"),
        "client_id": field(launcher, "client_id"),
        "patient_id": patient_id,
    }
    chart = session.post(f"{ehr_base}/launch", data=form, timeout=30)
    match = re.search(r'<iframe[^>]* src="([^"]+)"', chart.text)
    assert match, chart.text
    return unescape(match.group(1))


def query(url: str) -> dict[str, str]:
    """A URL's query parameters."""
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
