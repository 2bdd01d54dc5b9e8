"""One clinician's whole journey through a running app over HTTP, as a browser without scripts does it:
EHR launch -> patient page -> plan (start form, worksheet) -> sign -> bedside (a 12-step session on the
test clock) -> outcome for the chart.

Used by ``tests/integration/test_round_trips.py`` (the FHIR requests each stage makes, counted in the
sandbox gateway's log), ``tests/integration/test_two_instances.py`` (the same journey through nginx in
front of two app instances) and ``benchmarks/bench_round_trips.py`` (prints the counts).

The app must run with ``FHIR_DESENS_BEDSIDE_CLOCK_FILE`` pointing at :attr:`Journey.clock_file`
(the bedside takes "now" from it; the session is run eight hours in the past so its outcome is final).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests

from fhir_desens.sandbox.request_log import LoggedRequest, sequential_depth
from fhir_desens.sandbox.server import Sandbox
from tests.html import alerts, start_form_values, text_of

PATIENT = "carboplatin-ovarian"
STAGES = ("launch", "patient page", "plan", "sign", "bedside", "outcome")
VITALS = {
    "systolic": "118",
    "diastolic": "74",
    "heart_rate": "72",
    "respiratory_rate": "14",
    "spo2": "98",
    "temperature": "36.7",
}
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_RATE = re.compile(r'id="start-rate" name="rate_ml_h" value="([^"]+)"')


class JourneyError(AssertionError):
    """A page did not answer as the journey expects (the message names the stage)."""


class Journey:
    """``stage(name)`` blocks count the gateway's requests; ``counts[name]`` is (requests, depth)."""

    def __init__(self, sandbox: Sandbox, app_url: str, client_id: str, clock_file: Path) -> None:
        self.sandbox, self.app_url, self.client_id, self.clock_file = sandbox, app_url, client_id, clock_file
        self.http = requests.Session()
        self.requests: dict[str, list[LoggedRequest]] = {}
        self.before_each_request: Callable[[], None] | None = None
        self.served_by: list[str] = []  # X-Upstream of each app response (nginx in front: tests/cluster.py)
        self.sid_url = ""
        self._counter = 0
        self._clock = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=8)

    # -- counting -------------------------------------------------------------------------------------
    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        mark = self.sandbox.fhir_requests.mark()
        yield
        self.requests[name] = self.sandbox.fhir_requests.since(mark)

    def counts(self) -> dict[str, tuple[int, int]]:
        """Per stage: (FHIR requests, sequential depth)."""
        return {name: (len(found), sequential_depth(found)) for name, found in self.requests.items()}

    # -- HTTP -----------------------------------------------------------------------------------------
    def _absolute(self, url: str) -> str:
        return url if "://" in url else urljoin(self.app_url + "/", url.lstrip("/"))

    def get(self, url: str, expect: int = 200) -> str:
        if self.before_each_request:
            self.before_each_request()
        response = self.http.get(self._absolute(url), allow_redirects=False, timeout=60)
        self._served(response)
        if response.status_code != expect:
            raise JourneyError(
                f"GET {urlsplit(url).path[-40:]}: {response.status_code} {alerts(response.text)}"
            )
        return response.text

    def post(self, url: str, data: dict[str, str | list[str]], expect: int = 303) -> str:
        """POST a form with the session's CSRF token; the redirect's Location (or the page)."""
        if self.before_each_request:
            self.before_each_request()
        response = self.http.post(
            self._absolute(url), data={"csrf_token": self.csrf, **data}, allow_redirects=False, timeout=60
        )
        self._served(response)
        if response.status_code != expect:
            raise JourneyError(
                f"POST {urlsplit(url).path[-40:]}: {response.status_code} "
                f"{alerts(response.text) or text_of(response.text)[:400]}"
            )
        return self._absolute(response.headers["Location"]) if expect in (302, 303) else response.text

    csrf = ""

    def _served(self, response: requests.Response) -> None:
        upstream = response.headers.get("X-Upstream")
        if upstream:
            self.served_by.append(upstream.split(",")[-1].strip())  # after a failover: the one that answered

    def _remember_csrf(self, html: str) -> str:
        found = _CSRF.search(html)
        if found:
            self.csrf = found.group(1)
        return html

    # -- the stages -----------------------------------------------------------------------------------
    def launch(self) -> None:
        location = self.sandbox.launch_url(PATIENT, app=self.client_id)
        for step in ("EHR launch", "app launch", "authorize", "callback"):
            response = self.http.get(location, allow_redirects=False, timeout=60)
            self._served(response)
            if response.status_code not in (302, 303):
                raise JourneyError(f"{step}: {response.status_code} {text_of(response.text)[:300]}")
            location = urljoin(response.url, response.headers["Location"])
        if not location.endswith("/patient"):
            raise JourneyError(f"the launch ended at {urlsplit(location).path}")
        self.sid_url = location.removesuffix("/patient")

    def patient_page(self) -> str:
        return self._remember_csrf(self.get(self.sid_url + "/patient"))

    def plan(self) -> str:
        """Start form as the chart pre-fills it, then the worksheet; the worksheet URL."""
        html = self._remember_csrf(self.get(self.sid_url + "/plan/new"))
        worksheet = self.post(self.sid_url + "/plan/new", start_form_values(html))
        self._remember_csrf(self.get(worksheet))
        return worksheet

    def sign(self, worksheet: str) -> str:
        """Sign and send the orders; the signed plan's page URL."""
        signed = self.post(worksheet + "/sign", {})
        self.get(signed)
        return signed.split("?", 1)[0]

    def bedside(self, signed_plan: str) -> str:
        """A whole 12-step session without a reaction, 15 minutes a step; the outcome URL."""
        self.set_clock(self._clock)
        self.get(signed_plan + "/bedside")
        flowsheet = self.post(
            signed_plan + "/bedside", {"entry_id": self._entry(), "session_id": str(uuid.uuid4())}
        )
        flowsheet = flowsheet.split("#", 1)[0]
        for item in ("consent", "iv-access", "emergency-kit"):
            self._entry_post(flowsheet, "checklist", item=item)
        for name in ("diphenhydramine", "famotidine"):
            self._entry_post(flowsheet, "checklist", item="premedication", name=name, dose="as ordered")
        self._entry_post(flowsheet, "vitals", **VITALS)
        self._advance(20)
        for row in range(1, 13):
            html = self.get(flowsheet)
            rate = _RATE.search(html)
            if rate is None:
                raise JourneyError(f"bedside step {row}: no rate field; {text_of(html)[:1500]}")
            self._entry_post(flowsheet, "step-start", row=str(row), rate_ml_h=rate.group(1))
            self._advance(7.5)
            self._entry_post(flowsheet, "vitals", **VITALS)
            self._advance(7.5 if row < 12 else 180)
            self._entry_post(flowsheet, "step-stop", row=str(row))
            self._entry_post(flowsheet, "symptom-check", row=str(row), symptoms="none")
        self._advance(30)
        self._entry_post(flowsheet, "vitals", **VITALS)
        self._entry_post(flowsheet, "complete", outcome="completed", next_dose="re-desensitize")
        html = self.get(flowsheet)
        found = re.search(r'id="outcome-link" href="([^"]+)"', html)
        if found is None:
            raise JourneyError(f"no outcome link on the finished flowsheet: {text_of(html)[:600]}")
        self.set_clock(None)
        return self._absolute(found.group(1).replace("&amp;", "&"))

    def outcome(self, outcome_url: str) -> str:
        return self.get(outcome_url)

    def run(self, after_stage: Callable[[str], None] | None = None) -> dict[str, tuple[int, int]]:
        """The whole journey, stage by stage (``after_stage(name)`` after each); the counts."""
        done = after_stage or (lambda name: None)
        with self.stage("launch"):
            self.launch()
        done("launch")
        with self.stage("patient page"):
            self.patient_page()
        done("patient page")
        with self.stage("plan"):
            worksheet = self.plan()
        done("plan")
        with self.stage("sign"):
            signed = self.sign(worksheet)
        done("sign")
        with self.stage("bedside"):
            outcome = self.bedside(signed)
        done("bedside")
        with self.stage("outcome"):
            self.outcome(outcome)
        done("outcome")
        return self.counts()

    # -- the bedside clock ----------------------------------------------------------------------------
    def set_clock(self, moment: datetime | None) -> None:
        partial = self.clock_file.with_name(self.clock_file.name + ".partial")
        partial.write_text(moment.isoformat() if moment else "", "utf-8")
        partial.replace(self.clock_file)

    def _advance(self, minutes: float) -> None:
        self._clock += timedelta(minutes=minutes)
        self.set_clock(self._clock)

    def _entry(self) -> str:
        self._counter += 1
        return f"journey-{self._counter:04d}-{uuid.uuid4().hex[:8]}"

    def _entry_post(self, flowsheet: str, kind: str, **fields: str) -> None:
        self.post(flowsheet, {"kind": kind, "entry_id": self._entry(), **fields})
