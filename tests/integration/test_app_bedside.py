"""The bedside flowsheet end to end against the real sandbox EHR (app pages played by Flask's test client):
launch, plan and sign, start the session from the signed plan, run 12 steps with a reaction at step 11
(pause, treat, one step back, finish) on an injected clock, and find the session on the FHIR server;
duplicate posts record once; bad input is refused with the field named; the printable record."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.course.bedside.fhir_map import ID_BEDSIDE_ITEM
from fhir_desens.sandbox.server import Sandbox
from tests.app.test_session_record_pdf import pdftotext_pages
from tests.html import alerts, text_of
from tests.integration import test_app_launch as launch_tests
from tests.integration.test_app_launch import AppUnderTest, ehr_launch
from tests.integration.test_app_sign_orders import csrf, recalculate, sign, signed_id, start
from tests.journey import VITALS

sandbox = launch_tests.sandbox_on_each_server
make_app = launch_tests.make_app

pytestmark = pytest.mark.integration

PATIENT = "carboplatin-ovarian"


class BedsideClock:
    """The bedside's clock, moved by the test (the SMART tokens keep real time)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(second=0, microsecond=0).timestamp() - 8 * 3600

    def __call__(self) -> float:
        return self.now

    def advance(self, minutes: float) -> None:
        self.now += minutes * 60


class Nurse:
    def __init__(self, app: AppUnderTest, sid: str, url: str, clock: BedsideClock) -> None:
        self.app, self.sid, self.url, self.clock = app, sid, url, clock
        self.counter = 0

    def page(self) -> str:
        response = self.app.client.get(self.url)
        assert response.status_code == 200, text_of(response.get_data(as_text=True))[:800]
        return response.get_data(as_text=True)

    def post(self, kind: str, expect: int = 303, entry_id: str | None = None, **fields: Any) -> Any:
        self.counter += 1
        data: dict[str, Any] = {
            "csrf_token": csrf(self.app, self.sid),
            "kind": kind,
            "entry_id": entry_id or f"test-entry-{self.counter:04d}-{id(self)}",
        }
        data.update(fields)
        response = self.app.client.post(self.url, data=data)
        assert response.status_code == expect, (
            kind,
            alerts(response.get_data(as_text=True)) or text_of(response.get_data(as_text=True))[:600],
        )
        return response

    def checklist_done(self) -> None:
        """Consent, IV access, emergency kit, both premedications and baseline vital signs: step 1 may start."""
        for item in ("consent", "iv-access", "emergency-kit"):
            self.post("checklist", item=item)
        for name in ("diphenhydramine", "famotidine"):
            self.post("checklist", item="premedication", name=name, dose="as ordered")
        self.post("vitals", **VITALS)

    def run_step(self, row: int, minutes: float, *, stop: bool = True) -> None:
        html = self.page()
        rate = re.search(r'id="start-rate" name="rate_ml_h" value="([^"]+)"', html)
        assert rate, text_of(html)[:1200]
        self.post("step-start", row=str(row), rate_ml_h=rate.group(1))
        self.clock.advance(minutes / 2)
        self.post("vitals", **VITALS)
        self.clock.advance(minutes / 2)
        if stop:
            self.post("step-stop", row=str(row))
            self.post("symptom-check", row=str(row), symptoms="none")


_SIGNED: dict[int, str] = {}  # sandbox -> the carboplatin plan signed once (one active plan per drug)


def signed_plan(sandbox: Sandbox, app: AppUnderTest, sid: str) -> str:
    """The active carboplatin plan (signed again once a finished session has completed or stopped it)."""
    if id(sandbox) in _SIGNED:
        with FhirClient(sandbox.backend_url) as backend:
            if backend.read("RequestGroup", _SIGNED[id(sandbox)]).resource["status"] != "active":
                del _SIGNED[id(sandbox)]
    if id(sandbox) not in _SIGNED:
        draft_id = start(app, sid)
        recalculate(app, sid, draft_id, final_rate="80", protocol="iv-12-step-3-bag")
        _SIGNED[id(sandbox)] = signed_id(sign(app.client, app, sid, draft_id), sid)
    return _SIGNED[id(sandbox)]


@pytest.fixture
def nurse(sandbox: Sandbox, make_app: Any, tmp_path: Path) -> Nurse:
    clock = BedsideClock()
    app = make_app("symmetric", RECORD_URL=f"sqlite:///{tmp_path / 'bedside.sqlite3'}", BEDSIDE_CLOCK=clock)
    sid = ehr_launch(sandbox, app, PATIENT)
    rg_id = signed_plan(sandbox, app, sid)
    signed_page = app.client.get(f"/s/{sid}/orders/{rg_id}").get_data(as_text=True)
    assert "Start a session at the bedside" in signed_page
    start_page = app.client.get(f"/s/{sid}/orders/{rg_id}/bedside").get_data(as_text=True)
    assert "Start the session at the bedside" in start_page
    response = app.client.post(
        f"/s/{sid}/orders/{rg_id}/bedside",
        data={
            "csrf_token": csrf(app, sid),
            "entry_id": "start-entry-0001",
            "session_id": "11111111-2222-4333-8444-555555555555",
        },
    )
    assert response.status_code == 303, alerts(response.get_data(as_text=True))
    return Nurse(app, sid, response.headers["Location"], clock)


def test_a_12_step_session_with_a_reaction_at_step_11(sandbox: Sandbox, nurse: Nurse) -> None:
    html = nurse.page()
    assert "Before step 1" in html and "Consent signed" in html
    nurse.checklist_done()
    nurse.clock.advance(20)
    for row in range(1, 11):
        nurse.run_step(row, 15)
    nurse.run_step(11, 6, stop=False)
    nurse.post("reaction", symptoms=["itching", "wheal"], grade="mild", phenotype="type-i")
    html = nurse.page()
    assert "back-one-step" in html and "Record decision" in html
    nurse.clock.advance(2)
    nurse.post("treatment", treatment="antihistamine-h1", dose="diphenhydramine 50 mg IV")
    nurse.clock.advance(18)
    nurse.post("resolved")
    nurse.clock.advance(2)
    nurse.post("resume", option="back-one-step")
    for row, minutes in ((12, 15), (13, 15), (14, 176)):
        nurse.run_step(row, minutes)
    nurse.clock.advance(30)
    nurse.post("vitals", **VITALS)
    nurse.post("complete", outcome="completed", next_dose="re-desensitize")
    html = nurse.page()
    assert "Everything recorded is in the EHR" in html, alerts(html) + text_of(html)[:3000]
    assert "Session completed" in html
    assert "400 mg of 400 mg" in text_of(html)
    # the signed plan is completed in the EHR, each step order closed (versioned updates)
    assert "The signed plan is completed in the EHR" in text_of(html), text_of(html)[:2000]
    rg_id = _SIGNED[id(sandbox)]
    with FhirClient(sandbox.backend_url) as backend:
        group = backend.read("RequestGroup", rg_id).resource
        assert group["status"] == "completed" and group["note"][-1]["text"].startswith(
            "Completed at the bedside"
        )
        statuses = [
            backend.read("MedicationRequest", a["resource"]["reference"].split("/")[1]).resource["status"]
            for a in group["action"]
        ]
        assert statuses == ["completed"] * 12
    again = nurse.app.client.post(nurse.url + "/close-plan", data={"csrf_token": csrf(nurse.app, nurse.sid)})
    assert again.status_code == 200 and "The plan is completed in the EHR" in text_of(
        again.get_data(as_text=True)
    )
    assert "Outcome for the chart" in html

    record = nurse.app.client.get(nurse.url + "/record").get_data(as_text=True)
    assert "Desensitization session record" in record and "Grade (Brown) mild" in text_of(record)
    assert nurse.url + "/record.pdf" in html  # the flowsheet links the PDF
    pdf = nurse.app.client.get(nurse.url + "/record.pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    pages = pdftotext_pages(pdf.get_data())
    for number, page in enumerate(pages, start=1):
        assert "MRN" in page and f"page {number} of {len(pages)}" in page, number
        assert "Session record: completed" in page, number
    everything = "\n".join(pages)
    assert "Grade (Brown): mild" in everything and "diphenhydramine 50 mg IV" in everything
    assert "Outcome: completed" in everything and "400 mg of 400 mg" in everything

    with FhirClient(sandbox.backend_url) as backend:
        session = nurse.url.rsplit("/", 1)[1]
        procedure = backend.search("Procedure", {"identifier": f"{ID_BEDSIDE_ITEM}|{session}/procedure"})[
            "entry"
        ]
        assert len(procedure) == 1 and procedure[0]["resource"]["status"] == "completed"
        # every page (HAPI serves at most 50 entries a page, whatever _count asks)
        administrations = backend.search_all(
            "MedicationAdministration", {"identifier": f"{ID_BEDSIDE_ITEM}|"}
        )
        ours = [a for a in administrations if a["identifier"][0]["value"].startswith(session + "/ma/")]
        assert len(ours) == 14
        observations = backend.search_all("Observation", {"identifier": f"{ID_BEDSIDE_ITEM}|"})
        assert (
            len([o for o in observations if o["identifier"][0]["value"].startswith(session + "/")])
            == 5 * 16  # 16 sets: the BP panel, heart rate, respiratory rate, SpO2, temperature
        )
        events = [
            e
            for e in backend.search_all("AdverseEvent", {})
            if str(e.get("identifier", {}).get("value", "")).startswith(session + "/")
        ]
        assert len(events) == 1
        # the rescue treatments point at the reaction (supportingInformation: R4 refuses it as a reason)
        rescue = [
            a
            for a in administrations
            if a["identifier"][0]["value"].startswith(session + "/") and a.get("supportingInformation")
        ]
        assert rescue and {s.get("reference") for a in rescue for s in a["supportingInformation"]} == {
            f"AdverseEvent/{events[0]['id']}"
        }
        provenance = backend.search("Provenance", {"target": f"Procedure/{procedure[0]['resource']['id']}"})[
            "entry"
        ]
        assert len(provenance) == 1


def test_the_same_post_twice_records_once_and_bad_input_names_the_field(nurse: Nurse) -> None:
    text = text_of(nurse.page())  # the checklist as the chart informs it, each finding with its source
    assert "What the chart says" in text
    assert re.search(r"Weight\s*: [\d.]+ kg, measured 18 Nov 2026 \(\d+ days ago\)", text), text[:2500]
    assert "(source: Observation/" in text
    assert "confirm a working line at the bedside (source: the chart cannot tell)" in text
    assert re.search(
        r"diphenhydramine 25 mg IV\s*: not ordered in the EHR yet \(the signed plan lists it, 20 min before step 1, "
        r"but orders only the steps\): ask the prescriber to order it there",
        text,
    )
    assert "1:1 nurse assigned" in text
    # the launch reads the chart's consents (the walk's sandbox launch said "could not be read": the app
    # asked for no Consent scope); this patient has none on file, and the nurse is told what to do
    assert re.search(r"Consent\s*: no active consent in the chart: check the signed consent form", text), text
    nurse.post("checklist", item="consent", entry_id="double-click-0001")
    nurse.post("checklist", item="consent", entry_id="double-click-0001")  # double click / replay
    html = nurse.page()
    assert html.count("Consent signed:") == 1
    response = nurse.post("vitals", expect=400, **{**VITALS, "heart_rate": "400"})
    assert "Heart rate: 400 is not a possible heart rate" in alerts(response.get_data(as_text=True))
    response = nurse.post("step-start", expect=400, row="1")
    assert "Pre-start checklist: is not complete" in alerts(response.get_data(as_text=True))


def test_under_the_epic_like_profile_only_vitals_reach_the_ehr_and_the_page_says_so(
    sandbox: Sandbox, make_app: Any, tmp_path: Path
) -> None:
    """Signed under a permissive launch (Epic would not take the order transaction either), then run from
    an epic-like launch: vitals are written (open encounter, final), the rest stays in the app, listed."""
    clock = BedsideClock()
    app = make_app("symmetric", RECORD_URL=f"sqlite:///{tmp_path / 'bedside.sqlite3'}", BEDSIDE_CLOCK=clock)
    sid = ehr_launch(sandbox, app, PATIENT)
    rg_id = signed_plan(sandbox, app, sid)

    with FhirClient(sandbox.backend_url) as backend:  # the visit the nurse documents in (Epic needs it open)
        visit = backend.create(
            {
                "resourceType": "Encounter",
                "status": "in-progress",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "subject": {"reference": f"Patient/{sandbox.summary.patient_id(PATIENT)}"},
            }
        )
    launched = launch_tests._no_redirect(
        sandbox.launch_url(PATIENT, app=app.client_id, vendor="epic-like", encounter=visit.id)
    )
    response = app.client.get(launch_tests._local(launched.headers["Location"]))
    epic_sid = launch_tests.finish(app, launch_tests.authorize(response.headers["Location"]))
    started = app.client.post(
        f"/s/{epic_sid}/orders/{rg_id}/bedside",
        data={"csrf_token": csrf(app, epic_sid), "entry_id": "epic-start-0001"},
    )
    assert started.status_code == 303, alerts(started.get_data(as_text=True))
    nurse = Nurse(app, epic_sid, started.headers["Location"], clock)
    nurse.checklist_done()
    nurse.clock.advance(20)
    nurse.run_step(1, 15)
    html = nurse.page()
    text = text_of(html)
    assert "kept in the app only (this EHR does not accept it)" in text
    assert (
        "Procedure: kept in the app only" in text and "MedicationAdministration: kept in the app only" in text
    )
    assert "Observation" not in re.sub(
        r"Observation[^;]*?kept", "", text.split("not in the EHR in all", 1)[1].split("Send now", 1)[0]
    )

    session = nurse.url.rsplit("/", 1)[1]
    with FhirClient(sandbox.backend_url) as backend:
        observations = backend.search_all("Observation", {"identifier": f"{ID_BEDSIDE_ITEM}|"})
        ours = [o for o in observations if o["identifier"][0]["value"].startswith(session + "/")]
        assert len(ours) == 5 * 2  # the baseline set and the one during step 1
        assert all(o["status"] == "final" and "encounter" in o for o in ours)
        procedures = backend.search("Procedure", {"identifier": f"{ID_BEDSIDE_ITEM}|{session}/procedure"})
        assert not procedures.get("entry")


def test_an_app_restart_mid_session_loses_and_doubles_nothing(
    sandbox: Sandbox, nurse: Nurse, make_app: Any, tmp_path: Path
) -> None:
    """The worker that served steps 1-2 goes away; a new app process on the same record database carries
    on, and the entry whose answer was lost in the restart is sent again by the browser: recorded once."""
    nurse.checklist_done()
    nurse.run_step(1, 15)
    nurse.run_step(2, 15, stop=False)
    record_url = f"sqlite:///{tmp_path / 'bedside.sqlite3'}"
    lost = nurse.post("step-stop", entry_id="lost-answer-0001", row="2")  # recorded; the answer never arrived
    assert lost.status_code == 303
    nurse.app.app.extensions["fhir_desens"].record_store().close()  # the old worker is gone

    restarted = make_app("symmetric", RECORD_URL=record_url, BEDSIDE_CLOCK=nurse.clock)
    new_sid = ehr_launch(sandbox, restarted, PATIENT)
    session = nurse.url.rsplit("/", 1)[1]
    again = Nurse(restarted, new_sid, f"/s/{new_sid}/bedside/{session}", nurse.clock)
    again.post("step-stop", entry_id="lost-answer-0001", row="2")  # the browser replays it
    again.post("symptom-check", row="2", symptoms="none")
    again.run_step(3, 15)
    html = again.page()
    rows = re.findall(
        r"<tr><th scope=\"row\">(\d+)</th><td>Step \d+</td>.*?<td>(given|planned|running)</td></tr>",
        html,
    )
    assert [status for _, status in rows[:4]] == ["given", "given", "given", "planned"]
    store = restarted.app.extensions["fhir_desens"].record_store()
    stops = [e for e in store.entries(session) if e.kind == "step-stop"]
    assert [e.data["row"] for e in stops] == ["1", "2", "3"]


def test_a_stopped_session_discontinues_its_plan_and_offers_to_release_the_hold(
    sandbox: Sandbox, nurse: Nurse
) -> None:
    """Stopped after step 2: the plan is revoked with the bedside reason, steps 1-2 stopped, the rest
    cancelled (each a versioned update); a second close writes nothing."""
    nurse.checklist_done()
    nurse.run_step(1, 15)
    nurse.run_step(2, 15, stop=False)
    nurse.post("reaction", symptoms=["dyspnea"], grade="severe", phenotype="type-i")
    nurse.post("treatment", treatment="epinephrine-im", dose="0.5 mg IM")
    nurse.clock.advance(20)
    nurse.post("resume", option="stop")
    nurse.clock.advance(30)
    nurse.post("vitals", **VITALS)
    response = nurse.post("complete", expect=400, outcome="stopped", next_dose="re-desensitize")
    assert "Reason: is required" in alerts(response.get_data(as_text=True))
    nurse.post("complete", outcome="stopped", reason="severe reaction at step 2", next_dose="re-desensitize")
    text = text_of(nurse.page())
    assert "The signed plan is discontinued in the EHR" in text, text[:2500]
    rg_id = _SIGNED[id(sandbox)]
    with FhirClient(sandbox.backend_url) as backend:
        group = backend.read("RequestGroup", rg_id).resource
        assert group["status"] == "revoked"
        assert group["note"][-1]["text"].endswith("Stopped at the bedside: severe reaction at step 2")
        orders = [
            backend.read("MedicationRequest", a["resource"]["reference"].split("/")[1]).resource
            for a in group["action"]
        ]
        assert [o["status"] for o in orders] == ["stopped"] * 2 + ["cancelled"] * 10
        versions = [o["meta"]["versionId"] for o in orders]
    again = nurse.app.client.post(nurse.url + "/close-plan", data={"csrf_token": csrf(nurse.app, nurse.sid)})
    assert "The plan is discontinued (stopped) in the EHR" in text_of(again.get_data(as_text=True))
    with FhirClient(sandbox.backend_url) as backend:
        assert [
            backend.read("MedicationRequest", a["resource"]["reference"].split("/")[1]).resource["meta"][
                "versionId"
            ]
            for a in group["action"]
        ] == versions


def test_the_site_setting_for_this_ehr_decides_what_is_written_and_the_page_says_why(
    sandbox: Sandbox, make_app: Any, tmp_path: Path
) -> None:
    """FHIR_DESENS_BEDSIDE_WRITE_TYPES per server: only Observations to this EHR (which would take everything)."""
    clock = BedsideClock()
    setting = f"{sandbox.fhir_base_url}/=Observation:create; *=none"
    app = make_app(
        "symmetric",
        RECORD_URL=f"sqlite:///{tmp_path / 'bedside.sqlite3'}",
        BEDSIDE_CLOCK=clock,
        BEDSIDE_WRITE_TYPES=setting,
    )
    sid = ehr_launch(sandbox, app, PATIENT)
    rg_id = signed_plan(sandbox, app, sid)
    started = app.client.post(
        f"/s/{sid}/orders/{rg_id}/bedside", data={"csrf_token": csrf(app, sid), "entry_id": "site-start-0001"}
    )
    assert started.status_code == 303, alerts(started.get_data(as_text=True))
    nurse = Nurse(app, sid, started.headers["Location"], clock)
    nurse.post("checklist", item="consent")
    nurse.post("vitals", **VITALS)
    text = text_of(nurse.page())
    assert "Procedure: kept in the app only (this site's setting does not write it to this EHR)" in text, (
        text[:2000]
    )
    session = nurse.url.rsplit("/", 1)[1]
    with FhirClient(sandbox.backend_url) as backend:
        # every page: HAPI serves at most 50 entries a page whatever _count asks
        observations = backend.search_all("Observation", {"identifier": f"{ID_BEDSIDE_ITEM}|"})
        ours = [o for o in observations if o["identifier"][0]["value"].startswith(session)]
        assert len(ours) == 5
        procedures = backend.search("Procedure", {"identifier": f"{ID_BEDSIDE_ITEM}|{session}/procedure"})
        assert not procedures.get("entry")


def test_an_oral_protocol_is_given_by_mouth_dose_by_dose(
    sandbox: Sandbox, make_app: Any, tmp_path: Path
) -> None:
    """Aspirin (AERD, 4 doses 90 min apart): no pump and no rate; each dose is given whole ('0.5 tablet of
    81 mg by mouth'), then the wait; the administrations on the server carry the dose at one time, no rate."""
    clock = BedsideClock()
    app = make_app("symmetric", RECORD_URL=f"sqlite:///{tmp_path / 'bedside.sqlite3'}", BEDSIDE_CLOCK=clock)
    sid = ehr_launch(sandbox, app, "aspirin-aerd")
    draft_id = start(app, sid)
    rg_id = signed_id(sign(app.client, app, sid, draft_id), sid)
    started = app.client.post(
        f"/s/{sid}/orders/{rg_id}/bedside", data={"csrf_token": csrf(app, sid), "entry_id": "oral-start-0001"}
    )
    assert started.status_code == 303, alerts(started.get_data(as_text=True))
    nurse = Nurse(app, sid, started.headers["Location"], clock)
    html = nurse.page()
    for item in ("consent", "iv-access", "emergency-kit"):
        nurse.post("checklist", item=item)
    premeds = re.findall(
        r'<option value="([^"]+)">', html.split('id="premed-name"', 1)[1].split("</select>", 1)[0]
    )
    for name in premeds:
        nurse.post("checklist", item="premedication", name=name, dose="as ordered")
    nurse.post("vitals", **VITALS, peak_flow="420")
    text = text_of(nurse.page())
    assert "give 0.5 tablet of 81 mg (40.5 mg) by mouth, then wait 90 min" in text, text[:2500]
    assert "mL/h" not in text.split("Now", 1)[1].split("Vital signs", 1)[0]
    assert "final dose 325 mg" in text
    for row in range(1, 5):
        nurse.post("step-start", row=str(row))  # given now; no rate
        nurse.clock.advance(45)
        nurse.post("vitals", **VITALS)
        nurse.clock.advance(45)
        nurse.post("step-stop", row=str(row))
        nurse.post("symptom-check", row=str(row), symptoms="none")
    text = text_of(nurse.page())
    assert "325 mg" in text and "1 tablet of 325 mg" in text, text[:3000]
    record = text_of(nurse.app.client.get(nurse.url + "/record").get_data(as_text=True))
    assert "Given by mouth" in record and "0.5 tablet of 81 mg" in record and "Rate run" not in record
    nurse.clock.advance(30)
    nurse.post("vitals", **VITALS)  # discharge vital signs
    nurse.post("complete", outcome="completed", next_dose="continuous")
    session = nurse.url.rsplit("/", 1)[1]
    with FhirClient(sandbox.backend_url) as backend:
        found = backend.search_all("MedicationAdministration", {"identifier": f"{ID_BEDSIDE_ITEM}|"})
        doses = [d for d in found if d["identifier"][0]["value"].startswith(session + "/ma/")]
    assert len(doses) == 4
    assert all("effectiveDateTime" in d and "rateQuantity" not in d["dosage"] for d in doses)
    assert sorted(d["dosage"]["dose"]["value"] for d in doses) == [40.5, 81, 162.5, 325]
    assert {d["dosage"]["route"]["text"] for d in doses} == {"oral"} and {d["status"] for d in doses} == {
        "completed"
    }
