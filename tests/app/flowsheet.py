"""The bedside flowsheet through the app (shared by the app tests): a launch with a bedside session recorded
into the app's own record store, and the flowsheet page the nurse sees."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask
from werkzeug.test import TestResponse

from fhir_desens.course.bedside.record import BedsideRecord
from fhir_desens.protocol.library import builtin_protocols
from tests.app.fake_ehr import FakeEhr
from tests.bedside_session import Bedside

if TYPE_CHECKING:
    from tests.app.conftest import Launcher

PATIENT = "carboplatin-ovarian"


def launched_with_a_bedside_session(
    launcher: Launcher, ehr: FakeEhr, app: Flask, patient: str = PATIENT
) -> tuple[str, Bedside]:
    """A launch for ``patient`` (the app session id) and a bedside session recorded into the app's own
    record store, which its flowsheet reads."""
    ehr.load_fixture(patient)
    sid = launcher.launch(patient)
    services = app.extensions["fhir_desens"]
    record = BedsideRecord(services.record_store(), builtin_protocols(), services.now)
    return sid, Bedside(record_to=record, patient=f"Patient/{patient}")


def flowsheet(launcher: Launcher, sid: str, bedside: Bedside) -> str:
    """The flowsheet page's HTML (asserted 200)."""
    response = launcher.get(f"/s/{sid}/bedside/{bedside.session_id}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def launched_with_step_one_running(launcher: Launcher, ehr: FakeEhr, app: Flask) -> tuple[str, Bedside]:
    """:func:`launched_with_a_bedside_session`, started, with step 1 running (not yet stopped)."""
    sid, bedside = launched_with_a_bedside_session(launcher, ehr, app)
    bedside.start()
    bedside.run_row(1, stop=False)
    return sid, bedside


def post_entry(launcher: Launcher, app: Flask, sid: str, bedside: Bedside, **fields: str) -> TestResponse:
    """The flowsheet's form posted with ``fields`` and the app session's CSRF token."""
    token = str(app.extensions["fhir_desens"].store.get("session", sid)["csrf"])
    return launcher.client.post(
        f"/s/{sid}/bedside/{bedside.session_id}", data={"csrf_token": token, **fields}
    )
