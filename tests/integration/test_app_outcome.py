"""The outcome pages end to end against the real sandbox EHR: a finished session in the app's bedside record,
the tolerance window and the finished session on the patient page, the preview, the confirmation, what was
written on the FHIR server; a read-only launch gives a task; an epic-like launch a clinical note.

Flask's test client plays the browser (as in test_app_launch.py); the app makes real HTTP calls to the
sandbox, whose FHIR server is read directly to check what was written.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta
from typing import Any

import pytest

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.course.bedside.record import BedsideRecord
from fhir_desens.course.draft import plan_for
from fhir_desens.protocol.library import builtin_protocols
from fhir_desens.sandbox.server import Sandbox
from tests.bedside_session import VITALS, Bedside, carboplatin_draft
from tests.html import text_of
from tests.integration import test_app_launch as launch_tests
from tests.integration.test_app_launch import AppUnderTest, _local, _no_redirect, authorize, finish, page
from tests.integration.test_app_sign_orders import recalculate, start

sandbox = launch_tests.sandbox_on_each_server
make_app = launch_tests.make_app

pytestmark = pytest.mark.integration

PATIENT = "carboplatin-ovarian"

AUDIT = "the audit entry saying who wrote it and when"  # the Provenance, as the result page names it


def launch(sandbox: Sandbox, app: AppUnderTest, vendor: str = "permissive") -> str:
    launched = _no_redirect(sandbox.launch_url(PATIENT, app=app.client_id, vendor=vendor))
    assert launched.status_code == 302, launched.text
    response = app.client.get(_local(launched.headers["Location"]))
    assert response.status_code == 302
    return finish(app, authorize(response.headers["Location"]))


def patient_ref(sandbox: Sandbox) -> str:
    return f"Patient/{sandbox.summary.patients[PATIENT].id}"


def visit(sandbox: Sandbox) -> str:
    """A real Encounter for the session: a server that checks references (HAPI) refuses a note whose
    encounter it does not hold."""
    with FhirClient(sandbox.backend_url) as backend:
        return backend.create(
            {
                "resourceType": "Encounter",
                "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "subject": {"reference": patient_ref(sandbox)},
            }
        ).reference


def finished_session(app: AppUnderTest, sandbox: Sandbox) -> str:
    """A completed carboplatin session with a mild reaction at step 11, in the app's own bedside record."""
    services = app.app.extensions["fhir_desens"]
    record = BedsideRecord(services.record_store(), builtin_protocols(), services.now)
    bedside = Bedside(record_to=record, patient=patient_ref(sandbox))
    bedside.reaction_at_step_11(visit(sandbox))
    return bedside.session_id


def csrf(app: AppUnderTest, sid: str) -> str:
    return str(app.store.get("session", sid)["csrf"])


def our_notes(sandbox: Sandbox, allergy_id: str) -> list[str]:
    with FhirClient(sandbox.backend_url) as backend:
        resource = backend.read("AllergyIntolerance", allergy_id).resource
    return [n["text"] for n in resource.get("note", []) if "Ref RDD-" in n["text"]]


def carboplatin_allergy(sandbox: Sandbox) -> dict[str, Any]:
    with FhirClient(sandbox.backend_url) as backend:
        records = backend.search_all("AllergyIntolerance", {"patient": patient_ref(sandbox)})
    return next(r for r in records if "arboplatin" in str(r.get("code")))


@pytest.mark.requirement("OUT-1")
def test_a_finished_session_is_previewed_confirmed_and_written_once(sandbox: Sandbox, make_app: Any) -> None:
    app = make_app("symmetric")
    sid = launch(sandbox, app)
    session_id = finished_session(app, sandbox)

    patient_page = text_of(page(app, sid))
    assert "Tolerance after desensitization" in patient_page
    assert (
        "Re-desensitization required: platinum compounds are desensitized at every administration."
        in patient_page
    )
    assert (
        "Last dose" in patient_page
        and "the app's own record (last step of the desensitization)" in patient_page
    )
    assert "Bring the outcome to the chart" in patient_page

    preview = app.client.get(f"/s/{sid}/outcome/{session_id}")
    assert preview.status_code == 200
    html = preview.get_data(as_text=True)
    words = text_of(html)
    assert "Update the allergy record." in words
    assert "Nothing has been written yet" in words
    assert "Tolerated carboplatin 400 mg via 12-step rapid desensitization" in words
    assert "Brown grade 1, mild (skin and mucosa) at step 11" in words
    assert "Unchanged: clinical status active" in words
    before = carboplatin_allergy(sandbox)
    notes_before = len(our_notes(sandbox, before["id"]))
    version = re.search(r'name="previewed_version" value="([^"]+)"', html)
    assert version is not None
    form = {"csrf_token": csrf(app, sid), "previewed_version": version.group(1), "allergy": before["id"]}

    written = app.client.post(f"/s/{sid}/outcome/{session_id}", data=form)
    assert written.status_code == 200, text_of(written.get_data(as_text=True))[:2000]
    result = text_of(written.get_data(as_text=True))
    assert "The outcome is in the chart" in result
    # in words first (the walk: "AllergyIntolerance/01a3.../_history/2" told a clinician nothing) ...
    assert re.search(
        r"Written: note on the carboplatin allergy record with the breakthrough reaction, version \d+\.",
        result,
    )
    assert f"Written: {AUDIT}." in result
    words, support = result.split("For your support team:", 1)
    assert "AllergyIntolerance/" not in words.split("What happened, write by write", 1)[1]
    # ... the references still on the page, small, for support
    assert re.search(
        r"carboplatin allergy record with the breakthrough reaction: AllergyIntolerance/[\w-]+/_history/\d+; Provenance: Provenance/",
        support,
    )

    again = text_of(app.client.post(f"/s/{sid}/outcome/{session_id}", data=form).get_data(as_text=True))
    assert "Already in the chart: note on the carboplatin allergy record" in again

    after = carboplatin_allergy(sandbox)
    assert len(our_notes(sandbox, before["id"])) == notes_before + 1  # confirmed twice, written once
    # the patient page says the outcome is in the chart instead of offering to bring it again (the walk)
    finished = text_of(page(app, sid)).split("Finished desensitizations", 1)[1]
    assert "In the chart: written by this app," in finished
    assert re.search(r"carboplatin 400 mg, session of \d+ \w{3} \d{4} \d\d:\d\d \w+, IV 12-step", finished)
    assert "Bring the outcome to the chart" not in finished and "Review the outcome" in finished
    assert after["clinicalStatus"] == before["clinicalStatus"]
    assert after["verificationStatus"] == before["verificationStatus"]
    assert after.get("criticality") == before.get("criticality")


@pytest.mark.requirement("OUT-8")
def test_a_read_only_launch_records_a_task_shown_on_the_patient_page(sandbox: Sandbox, make_app: Any) -> None:
    app = make_app("symmetric", granted_scope="launch openid fhirUser patient/*.rs")
    sid = launch(sandbox, app)
    session_id = finished_session(app, sandbox)

    words = text_of(app.client.get(f"/s/{sid}/outcome/{session_id}").get_data(as_text=True))
    assert "Nothing can be written to this EHR." in words
    assert "Allergy record: keep it active and confirmed" in words  # the copy-ready text

    result = text_of(
        app.client.post(f"/s/{sid}/outcome/{session_id}", data={"csrf_token": csrf(app, sid)}).get_data(
            as_text=True
        )
    )
    assert "The chart was not updated" in result
    assert "Task for the allergist recorded: " in result
    assert (
        "writing clinical notes (DocumentReference create). It stays on the patient page" in result
    )  # one sentence ends, the next starts
    assert result.count("this EHR accepts neither an allergy update nor a clinical note") == 1
    assert "Printable summary: the session record (PDF)" in result
    pdf = app.client.get(f"/s/{sid}/bedside/{session_id}/record.pdf")
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF-")

    html = page(app, sid)
    assert "Tasks for the allergist: the chart was not updated" in text_of(html)
    # which session the task is about (the walk: "carboplatin: <reason>" could not tell two sessions apart)
    assert re.search(r"carboplatin 400 mg, session of \d+ \w{3} \d{4} \d\d:\d\d \w+ :", text_of(html))
    task = re.search(r'action="(/s/[^"]+/outcome/tasks/[^"]+/done)"', html)
    assert task is not None
    done = app.client.post(task.group(1), data={"csrf_token": csrf(app, sid)})
    assert done.status_code == 303
    after_done = text_of(page(app, sid))
    assert "Tasks for the allergist" not in after_done
    assert "In the chart: copied by Dr" in after_done.split("Finished desensitizations", 1)[1]


@pytest.mark.requirement("OUT-5")
def test_an_epic_like_launch_writes_a_clinical_note_not_an_allergy(sandbox: Sandbox, make_app: Any) -> None:
    app = make_app("symmetric")
    sid = launch(sandbox, app, vendor="epic-like")
    session_id = finished_session(app, sandbox)
    with FhirClient(sandbox.backend_url) as backend:
        allergies_before = len(backend.search_all("AllergyIntolerance", {"patient": patient_ref(sandbox)}))

    words = text_of(app.client.get(f"/s/{sid}/outcome/{session_id}").get_data(as_text=True))
    assert "Write a clinical note." in words
    result = text_of(
        app.client.post(f"/s/{sid}/outcome/{session_id}", data={"csrf_token": csrf(app, sid)}).get_data(
            as_text=True
        )
    )
    assert "Written: clinical note." in result and "clinical note: DocumentReference/" in result
    assert f"Not written: {AUDIT}: this EHR does not accept it." in result
    with FhirClient(sandbox.backend_url) as backend:
        assert (
            len(backend.search_all("AllergyIntolerance", {"patient": patient_ref(sandbox)}))
            == allergies_before
        )


def test_an_update_the_ehr_refuses_after_its_statement_promised_it_ends_in_a_task_then_a_note(
    sandbox: Sandbox, make_app: Any
) -> None:
    """The walk: the app read the EHR's CapabilityStatement while it offered AllergyIntolerance update
    (a permissive launch); the EHR then refused the update (an epic-like launch: 405). The allergist got an
    error page saying "try again later"; now a task, and the next preview reads the statement again."""
    app = make_app("symmetric")
    text_of(page(app, launch(sandbox, app)))  # the statement is read (and kept) while update is offered
    sid = launch(sandbox, app, vendor="epic-like")
    session_id = finished_session(app, sandbox)
    html = app.client.get(f"/s/{sid}/outcome/{session_id}").get_data(as_text=True)
    assert "Update the allergy record." in text_of(html)  # from the statement read before
    version = re.search(r'name="previewed_version" value="([^"]+)"', html)
    allergy = re.search(r'name="allergy" value="([^"]+)"', html)
    assert version is not None and allergy is not None
    form = {"csrf_token": csrf(app, sid), "previewed_version": version.group(1), "allergy": allergy.group(1)}

    refused = app.client.post(f"/s/{sid}/outcome/{session_id}", data=form)
    assert refused.status_code == 200
    words = text_of(refused.get_data(as_text=True))
    assert "The chart was not updated" in words
    assert (
        "the EHR refused the update (HTTP 405): epic-like: update of AllergyIntolerance is not offered"
        in words
    )
    assert "METHOD NOT ALLOWED" not in words  # the EHR's own words, not the HTTP plumbing
    assert "Task for the allergist recorded" in words

    again = text_of(app.client.get(f"/s/{sid}/outcome/{session_id}").get_data(as_text=True))
    assert "Write a clinical note." in again and "Update the allergy record." not in again


def test_another_patients_session_is_not_found(sandbox: Sandbox, make_app: Any) -> None:
    app = make_app("symmetric")
    sid = launch(sandbox, app)
    services = app.app.extensions["fhir_desens"]
    record = BedsideRecord(services.record_store(), builtin_protocols(), services.now)
    other = Bedside(record_to=record, patient="Patient/someone-else")
    other.reaction_at_step_11()
    assert app.client.get(f"/s/{sid}/outcome/{other.session_id}").status_code == 404


@pytest.mark.requirement("OUT-10")
def test_the_next_course_starts_from_the_last_session_with_a_change_to_take_or_leave(
    sandbox: Sandbox, make_app: Any
) -> None:
    app = make_app("symmetric")
    sid = launch(sandbox, app)
    finished_session(app, sandbox)
    draft_id = start(app, sid)
    recalculate(app, sid, draft_id, protocol="iv-12-step-3-bag")  # the last session's protocol

    html = app.client.get(f"/s/{sid}/plan/{draft_id}").get_data(as_text=True)
    words = text_of(html)
    assert "From the last session" in words
    assert "breakthrough reaction: Brown grade 1, mild (skin and mucosa) at step 11" in words
    assert (
        "Re-desensitization required: platinum compounds are desensitized at every administration." in words
    )
    assert (
        "from the app's own record (last step of the desensitization)" in words
    )  # the last dose and where it is recorded
    assert "Protocol to use: IV 12-step, 3-bag rapid desensitization (BWH/Castells)." in words
    assert "Suggested change: Add an intermediate step before step 11" in words
    assert "Also possible: Switch to IV 16-step, 4-bag rapid desensitization" in words
    take = re.search(r'<input type="hidden" name="insert_before" value="(\d+)">', html)
    assert take is not None and take.group(1) == "11"

    taken = app.client.post(
        f"/s/{sid}/plan/{draft_id}",
        data={"csrf_token": csrf(app, sid), "action": "insert", "insert_before": take.group(1)},
    )
    assert taken.status_code == 303
    after = text_of(app.client.get(f"/s/{sid}/plan/{draft_id}").get_data(as_text=True))
    assert "Remove inserted step 11" in after  # the suggestion was taken: step 11 is now the inserted one
    assert "Taken: this plan includes the suggested change." in after  # not offered twice


def stopped_session(app: AppUnderTest, sandbox: Sandbox) -> None:
    """A carboplatin session stopped after a severe reaction 5 minutes into step 2."""
    services = app.app.extensions["fhir_desens"]
    record = BedsideRecord(services.record_store(), builtin_protocols(), services.now)
    bedside = Bedside(record_to=record, patient=patient_ref(sandbox))
    bedside.start(visit(sandbox))
    bedside.advance(20)
    bedside.run_row(1)
    bedside.run_row(2, 5, stop=False)
    bedside.record("reaction", symptoms=["dyspnea"], grade="severe", phenotype="type-i")
    bedside.advance(20)
    bedside.record("resume", option="stop")
    bedside.advance(30)
    bedside.record("vitals", **VITALS)
    bedside.record(
        "complete", outcome="stopped", reason="severe reaction at step 2", observation_end=bedside.at(),
        next_dose="re-desensitize",
    )  # fmt: skip


def test_after_a_stopped_session_no_page_names_the_last_protocol_alone_as_the_one_to_use(
    sandbox: Sandbox, make_app: Any
) -> None:
    """The walk: "Protocol to use: IV 12-step" stood above "Suggested change: Switch to IV 16-step", and the
    planning page said "Re-desensitization required: Re-desensitization required: ..."."""
    app = make_app("symmetric")
    sid = launch(sandbox, app)
    stopped_session(app, sandbox)

    patient_page = text_of(page(app, sid))
    row = patient_page.split("Protocol to use", 1)[1].split("Finished desensitizations", 1)[0]
    assert "Switch to IV 16-step, 4-bag rapid desensitization for high-risk patients (suggested after" in row
    assert "last session: IV 12-step, 3-bag rapid desensitization (BWH/Castells)" in row

    draft_id = start(app, sid)
    words = text_of(app.client.get(f"/s/{sid}/plan/{draft_id}").get_data(as_text=True))
    assert "Suggested change: Switch to IV 16-step" in words
    assert "Protocol to use: IV 12-step" not in words
    assert "Last session's protocol: IV 12-step, 3-bag rapid desensitization (BWH/Castells); see the" in words
    assert "Re-desensitization required: Re-desensitization required" not in words
    assert "Re-desensitization required: platinum compounds" in words


@pytest.mark.requirement("OUT-7")
def test_a_status_change_after_the_preview_stops_the_write_and_shows_both_versions(
    sandbox: Sandbox, make_app: Any
) -> None:
    app = make_app("symmetric")
    sid = launch(sandbox, app)
    session_id = finished_session(app, sandbox)
    html = app.client.get(f"/s/{sid}/outcome/{session_id}").get_data(as_text=True)
    version = re.search(r'name="previewed_version" value="([^"]+)"', html)
    allergy = re.search(r'name="allergy" value="([^"]+)"', html)
    assert version is not None and allergy is not None
    notes_before = len(our_notes(sandbox, allergy.group(1)))

    with FhirClient(sandbox.backend_url) as backend:  # another user, in the EHR, meanwhile
        current = backend.read("AllergyIntolerance", allergy.group(1))
        changed = dict(current.resource, criticality="low")
        backend.update(changed, if_match=current.version_id)
    try:
        response = app.client.post(
            f"/s/{sid}/outcome/{session_id}",
            data={
                "csrf_token": csrf(app, sid),
                "previewed_version": version.group(1),
                "allergy": allergy.group(1),
            },
        )
        assert response.status_code == 409
        words = text_of(response.get_data(as_text=True))
        assert "Not written: the allergy record was changed by someone else" in words
        assert "Someone changed the allergy record's criticality since you reviewed it" in words
        # both versions side by side, in words (the walk: raw JSON, the sentence four times, "decide..")
        assert "criticality (changed) high low" in words
        assert "clinical status Active Active" in words
        assert "substance (code) Carboplatin (code 40048) Carboplatin (code 40048)" in words
        assert '{"coding"' not in words and "decide.." not in words
        assert words.count("Someone changed the allergy record's criticality since you reviewed it") == 2
        assert "Task for the allergist recorded. It stays on the patient page" in words, words
        assert len(our_notes(sandbox, allergy.group(1))) == notes_before  # nothing written
    finally:
        with FhirClient(sandbox.backend_url) as backend:  # put the shared fixture back
            current = backend.read("AllergyIntolerance", allergy.group(1))
            backend.update(dict(current.resource, criticality="high"), if_match=current.version_id)


@pytest.mark.requirement("OUT-13")
def test_a_dose_given_after_desensitization_is_recorded_once_and_keeps_the_window_open(
    sandbox: Sandbox, make_app: Any
) -> None:
    app = make_app("symmetric")
    sid = launch(sandbox, app)
    services = app.app.extensions["fhir_desens"]
    record = BedsideRecord(services.record_store(), builtin_protocols(), services.now)
    draft = dataclasses.replace(
        carboplatin_draft(patient_ref(sandbox)), drug="ceftriaxone", drug_rxnorm=("2193",), target="2 g"
    )
    session = Bedside(
        plan=plan_for(draft, builtin_protocols()), draft=draft, record_to=record, patient=patient_ref(sandbox)
    )
    session.now = services.now() - timedelta(days=3)  # three days ago: 48 h have passed
    session.reaction_at_step_11()
    finished_session(app, sandbox)  # carboplatin: desensitized at every administration, no dose to record

    html = page(app, sid)
    row = re.search(r'<tr class="tolerance-row tolerance-(\w+)">\s*<th scope="row">ceftriaxone</th>', html)
    assert row is not None and row.group(1) == "red"
    assert "Record a dose given after desensitization" in text_of(html)
    dose_id = re.search(r'name="dose_id" value="([^"]+)"', html)
    choice = re.search(r'<option value="([^"]+)">ceftriaxone</option>', html)
    assert dose_id is not None and choice is not None and choice.group(1) == session.session_id
    assert ">carboplatin</option>" not in html

    given = (services.now() - timedelta(hours=2)).astimezone(services.settings.zone)
    form = {
        "csrf_token": csrf(app, sid),
        "dose_id": dose_id.group(1),
        "session_id": choice.group(1),
        "dose": "2 g",
        "given_at": given.strftime("%Y-%m-%dT%H:%M"),
    }
    for _ in range(2):  # sent twice (a double click, a replay): recorded once
        response = app.client.post(f"/s/{sid}/outcome/doses", data=form)
        assert response.status_code == 303
    assert len(services.dose_book().doses_for(patient_ref(sandbox))) == 1

    after = page(app, sid)
    row = re.search(r'<tr class="tolerance-row tolerance-(\w+)">\s*<th scope="row">ceftriaxone</th>', after)
    assert row is not None and row.group(1) == "green"
    words = text_of(after)
    assert "from the app's own record (2 g given after desensitization, recorded by" in words
    assert "Doses given after desensitization, recorded in this app" in words

    refused = app.client.post(
        f"/s/{sid}/outcome/doses", data={**form, "dose_id": "another-entry-0001", "dose": "2 mL"}
    )
    assert refused.status_code == 400
    assert "The dose was not recorded" in text_of(refused.get_data(as_text=True))
    future = (services.now() + timedelta(hours=3)).astimezone(services.settings.zone)
    refused = app.client.post(
        f"/s/{sid}/outcome/doses",
        data={**form, "dose_id": "another-entry-0002", "given_at": future.strftime("%Y-%m-%dT%H:%M")},
    )
    assert refused.status_code == 400
    assert "is in the future" in text_of(refused.get_data(as_text=True))
    before = (services.now() - timedelta(days=4)).astimezone(services.settings.zone)
    refused = app.client.post(
        f"/s/{sid}/outcome/doses",
        data={**form, "dose_id": "another-entry-0003", "given_at": before.strftime("%Y-%m-%dT%H:%M")},
    )
    assert refused.status_code == 400
    assert "is before the desensitization's last step" in text_of(refused.get_data(as_text=True))
    assert len(services.dose_book().doses_for(patient_ref(sandbox))) == 1

    # recorded by mistake: marked entered in error, kept (struck through), no longer evidence
    in_error = re.search(r'action="(/s/[^"]+/outcome/doses/[^"]+/entered-in-error)"', after)
    assert in_error is not None
    marked = app.client.post(in_error.group(1), data={"csrf_token": csrf(app, sid)})
    assert marked.status_code == 303
    html = page(app, sid)
    row = re.search(r'<tr class="tolerance-row tolerance-(\w+)">\s*<th scope="row">ceftriaxone</th>', html)
    assert row is not None and row.group(1) == "red"
    assert re.search(r"<del>ceftriaxone 2 g given [^<]*\(entered in error by [^<]*\)</del>", html)
    [kept] = services.dose_book().doses_for(patient_ref(sandbox))
    assert kept.in_error
    missing = app.client.post(
        f"/s/{sid}/outcome/doses/no-such-dose-0000/entered-in-error", data={"csrf_token": csrf(app, sid)}
    )
    assert missing.status_code == 404
