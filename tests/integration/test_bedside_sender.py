"""The background sender against the real sandbox EHR with its FHIR server paused: entries recorded while the
EHR is down wait in the app (the page says how many), and once it is back the app's background thread
sends them without any further page request (the nurse closed the page): nothing missing, nothing twice."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.sandbox.fhir_server import FhirServerProcess
from fhir_desens.sandbox.server import Sandbox
from tests.fault_proxy import DroppingProxy
from tests.html import alerts, text_of
from tests.integration import test_app_launch as launch_tests
from tests.integration.test_app_bedside import PATIENT, VITALS, BedsideClock, Nurse, signed_plan
from tests.integration.test_app_launch import ehr_launch
from tests.integration.test_app_sign_orders import csrf
from tests.integration.test_bedside_outbox import on_server

pytestmark = pytest.mark.integration

make_app = launch_tests.make_app
WAIT_LIMIT = 90.0  # seconds: a liveness bound for the background thread, not a timing assertion


@pytest.fixture(scope="module")
def proxy(fhir_server: FhirServerProcess) -> Iterator[DroppingProxy]:
    running = DroppingProxy(fhir_server.base_url).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def sandbox(proxy: DroppingProxy) -> Iterator[Sandbox]:
    """The sandbox EHR whose FHIR server sits behind the proxy (``proxy.paused`` takes it down)."""
    yield from launch_tests._running_sandbox(Sandbox(port=0, fhir_base_url=proxy.base_url))


def _until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_LIMIT
    while not condition():
        assert time.monotonic() < deadline, f"the background sender did not finish: {what}"
        time.sleep(0.2)


def test_entries_recorded_while_the_ehr_is_down_reach_it_after_the_page_is_closed(
    sandbox: Sandbox, proxy: DroppingProxy, make_app: Any, tmp_path: Path, fhir_server: FhirServerProcess
) -> None:
    clock = BedsideClock()
    app = make_app(
        "symmetric",
        RECORD_URL=f"sqlite:///{tmp_path / 'bedside.sqlite3'}",
        BEDSIDE_CLOCK=clock,
        BEDSIDE_SEND_INTERVAL=0.2,
    )
    sid = ehr_launch(sandbox, app, PATIENT)
    rg_id = signed_plan(sandbox, app, sid)
    bedside = app.app.extensions["fhir_desens_bedside"]

    started = app.client.post(
        f"/s/{sid}/orders/{rg_id}/bedside",
        data={"csrf_token": csrf(app, sid), "entry_id": "sender-start-0001"},
    )
    assert started.status_code == 303, alerts(started.get_data(as_text=True))
    nurse = Nurse(app, sid, started.headers["Location"], clock)
    session = nurse.url.rsplit("/", 1)[1]

    proxy.paused = True  # the EHR goes down, and the app worker is a fresh one that never asked it anything
    bedside.statements.clear()
    try:
        nurse.checklist_done()
        text = text_of(nurse.page())
        assert "latest entries wait until the EHR can be reached" in text, text[:1500]
        assert "also after this page is closed" in text
        assert bedside.store.is_dirty(session)
    finally:
        proxy.paused = False
    clock.advance(10)  # past the retry time; the nurse's page is closed: no request from here on
    _until(lambda: not bedside.status(session).waiting, "the entries recorded while the EHR was down")

    nurse.clock.advance(20)
    nurse.post("step-start", row="1", rate_ml_h=_rate(nurse.page()))  # sent at once (the EHR is up)
    proxy.paused = True  # down again mid-step: these are queued in the ledger, their sends fail
    try:
        nurse.clock.advance(7)
        nurse.post("vitals", **VITALS)
        nurse.clock.advance(8)
        nurse.post("step-stop", row="1")
        nurse.post("symptom-check", row="1", symptoms="none")
        text = text_of(nurse.page())
        waiting = re.search(r"(\d+) entries waiting to reach the chart", text)
        assert waiting and int(waiting.group(1)) >= 5, text[:1500]  # five vital signs and the step at least
    finally:
        proxy.paused = False
    rounds = bedside.sender.rounds
    clock.advance(10)
    _until(lambda: not bedside.status(session).waiting, "the entries recorded during step 1")
    assert bedside.sender.rounds > rounds

    status = bedside.status(session)
    assert status.unsent == 0 and not status.not_in_ehr, [(r.item_key, r.state) for r in status.not_in_ehr]
    with FhirClient(fhir_server.base_url) as backend:
        counts = on_server(backend, session)
    rows = [r for r in bedside.store.outbox(session) if r.resource_type != "Provenance"]
    assert set(counts.values()) == {1}, {k: v for k, v in counts.items() if v != 1}  # nothing twice
    assert len(counts) == len(rows)  # nothing missing
    assert any("/ma/" in key for key in counts) and any("/obs/" in key for key in counts)


def _rate(html: str) -> str:
    found = re.search(r'id="start-rate" name="rate_ml_h" value="([^"]+)"', html)
    assert found, text_of(html)[:1200]
    return found.group(1)
