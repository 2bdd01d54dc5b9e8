"""The whole outcome journey in the app under each vendor profile (permissive, millennium-like, epic-like):
the finished session on the patient page, the preview with the note worded exactly as issue 13 asks, the
confirmation twice (one note), and a drug missing from the allergy list offered and added once.

Flask's test client plays the browser; the app talks to the real sandbox (gateway with the launch's vendor
profile, real FHIR server), whose server is read directly to check what was written.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
from typing import Any

import pytest

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.course.bedside.record import BedsideRecord
from fhir_desens.course.draft import plan_for
from fhir_desens.fhir.canonical import ID_OUTCOME
from fhir_desens.protocol.library import builtin_protocols
from fhir_desens.sandbox.server import Sandbox
from tests.bedside_session import Bedside, carboplatin_draft
from tests.html import text_of
from tests.integration import test_app_launch as launch_tests
from tests.integration.test_app_launch import AppUnderTest, _local, _no_redirect, authorize, finish, page
from tests.integration.test_app_outcome import (
    PATIENT,
    carboplatin_allergy,
    csrf,
    finished_session,
    launch,
    our_notes,
    patient_ref,
    visit,
)

sandbox = launch_tests.sandbox
make_app = launch_tests.make_app

pytestmark = pytest.mark.integration

VENDORS = ["permissive", "millennium-like", "epic-like"]
#: a drug absent from the carboplatin patient's allergy list, one per vendor (the sandbox is shared)
ABSENT = {"permissive": "ceftriaxone", "millennium-like": "cefazolin", "epic-like": "cefepime"}
NOTE = re.compile(
    r"Tolerated carboplatin 400 mg via 12-step rapid desensitization on \d{1,2} \w{3} \d{4} "
    r"\(protocol IV 12-step, 3-bag rapid desensitization \(BWH/Castells\), version [\d.]+\)\. "
    r"Tolerance is temporary: re-desensitize at every administration\. "
    r"Breakthrough reaction: Brown grade 1, mild \(skin and mucosa\) at step 11\. "
    r"Onset and signs: step 11 at \d\d:\d\d \([^)]*\)\. "
    r"Recorded by .+?, \d{1,2} \w{3} \d{4} \d\d:\d\d \w+\. Ref RDD-[0-9a-f]{12}\."
)


def notes_of_outcome(sandbox: Sandbox) -> list[dict[str, Any]]:
    with FhirClient(sandbox.backend_url) as backend:
        return backend.search_all("DocumentReference", {"patient": patient_ref(sandbox)})


def text_of_note(document: dict[str, Any]) -> str:
    """The clinical note's plain-text attachment (the first one)."""
    return base64.b64decode(document["content"][0]["attachment"]["data"]).decode("utf-8")


def ours(documents: list[dict[str, Any]], marker: str) -> list[dict[str, Any]]:
    return [
        d
        for d in documents
        if any(i.get("system") == ID_OUTCOME for i in d.get("identifier", [])) and marker in text_of_note(d)
    ]


def confirm(app: AppUnderTest, sid: str, session_id: str, **extra: str) -> str:
    html = app.client.get(f"/s/{sid}/outcome/{session_id}").get_data(as_text=True)
    form = {"csrf_token": csrf(app, sid), **extra}
    for name in ("previewed_version", "allergy"):
        found = re.search(rf'name="{name}" value="([^"]*)"', html)
        if found:
            form[name] = found.group(1)
    response = app.client.post(f"/s/{sid}/outcome/{session_id}", data=form)
    assert response.status_code == 200, text_of(response.get_data(as_text=True))[:2000]
    return text_of(response.get_data(as_text=True))


@pytest.mark.requirement("OUT-2", "OUT-4", "OUT-6")
@pytest.mark.parametrize("vendor", VENDORS)
def test_the_outcome_journey_under_each_vendor_profile(sandbox: Sandbox, make_app: Any, vendor: str) -> None:
    app = make_app("symmetric")
    sid = launch(sandbox, app, vendor=vendor)
    session_id = finished_session(app, sandbox)
    assert "Bring the outcome to the chart" in text_of(page(app, sid))

    preview = text_of(app.client.get(f"/s/{sid}/outcome/{session_id}").get_data(as_text=True))
    note = NOTE.search(preview)
    assert note is not None, preview[:3000]
    marker = note.group(0).rsplit("Ref ", 1)[1].rstrip(".")
    update = vendor != "epic-like"
    assert ("Update the allergy record." if update else "Write a clinical note.") in preview
    before = carboplatin_allergy(sandbox)
    notes_before = len(our_notes(sandbox, before["id"]))

    first, second = confirm(app, sid, session_id), confirm(app, sid, session_id)
    assert "The outcome is in the chart" in first and "The outcome is in the chart" in second
    after = carboplatin_allergy(sandbox)
    for element in ("clinicalStatus", "verificationStatus", "criticality", "code"):
        assert after.get(element) == before.get(element)
    if update:
        assert "Written: note on the carboplatin allergy record with the breakthrough reaction" in first
        assert "Already in the chart: note on the carboplatin allergy record" in second
        assert len(our_notes(sandbox, before["id"])) == notes_before + 1  # twice -> one note
        assert after["note"][-1]["text"] == note.group(0)  # the note as previewed, word for word
    else:
        assert "Written: clinical note." in first and "clinical note: DocumentReference/" in first
        assert "Already in the chart: clinical note" in second
        assert len(our_notes(sandbox, before["id"])) == notes_before  # the allergy record is untouched
        [document] = ours(notes_of_outcome(sandbox), marker)  # twice -> one clinical note
        assert note.group(0) in text_of_note(document)


@pytest.mark.requirement("OUT-9")
@pytest.mark.parametrize("vendor", VENDORS)
def test_a_drug_absent_from_the_allergy_list_is_offered_and_added_once(
    sandbox: Sandbox, make_app: Any, vendor: str
) -> None:
    app = make_app("symmetric")
    sid = launch(sandbox, app, vendor=vendor)
    drug = ABSENT[vendor]
    services = app.app.extensions["fhir_desens"]
    record = BedsideRecord(services.record_store(), builtin_protocols(), services.now)
    draft = dataclasses.replace(
        carboplatin_draft(patient_ref(sandbox)), drug=drug, drug_rxnorm=(), target="2 g"
    )
    bedside = Bedside(
        plan=plan_for(draft, builtin_protocols()), draft=draft, record_to=record, patient=patient_ref(sandbox)
    )
    bedside.reaction_at_step_11(visit(sandbox))

    preview = text_of(app.client.get(f"/s/{sid}/outcome/{bedside.session_id}").get_data(as_text=True))
    assert f"{drug} is not on the allergy list" in preview
    assert f"Add {drug} to the allergy list" in preview
    with FhirClient(sandbox.backend_url) as backend:
        count = len(backend.search_all("AllergyIntolerance", {"patient": patient_ref(sandbox)}))

    first = confirm(app, sid, bedside.session_id, add_allergy="yes")
    second = confirm(app, sid, bedside.session_id, add_allergy="yes")
    assert f"Written: {drug} added to the allergy list." in first
    assert f"{drug} added to the allergy list: AllergyIntolerance/" in first  # for support, small
    # the second time the drug is on the list with our note on it: nothing is written again
    assert "Already in the chart:" in second and "Written:" not in second
    with FhirClient(sandbox.backend_url) as backend:
        records = backend.search_all("AllergyIntolerance", {"patient": patient_ref(sandbox)})
    assert len(records) == count + 1  # added once
    [added] = [r for r in records if drug in str(r.get("code"))]
    assert added["clinicalStatus"]["coding"][0]["code"] == "active"
    assert added["verificationStatus"]["coding"][0]["code"] == "confirmed"
    assert added["note"][0]["text"].startswith(
        f"Tolerated {drug} 2,000 mg via 12-step rapid desensitization on "
    )


@pytest.mark.requirement("OUT-5")
def test_the_clinical_note_carries_the_session_record_pdf_with_its_size_and_hash(
    sandbox: Sandbox, make_app: Any
) -> None:
    app = make_app("symmetric")
    encounter = visit(sandbox)  # a real Encounter, the launch's context
    launched = _no_redirect(
        sandbox.launch_url(
            PATIENT, app=app.client_id, vendor="epic-like", encounter=encounter.split("/", 1)[1]
        )
    )
    response = app.client.get(_local(launched.headers["Location"]))
    sid = finish(app, authorize(response.headers["Location"]))
    assert f"Encounter/{app.store.get('session', sid)['smart']['encounter']}" == encounter
    services = app.app.extensions["fhir_desens"]
    record = BedsideRecord(services.record_store(), builtin_protocols(), services.now)
    bedside = Bedside(record_to=record, patient=patient_ref(sandbox), encounter=encounter)
    bedside.reaction_at_step_11()

    preview = text_of(app.client.get(f"/s/{sid}/outcome/{bedside.session_id}").get_data(as_text=True))
    assert "as a PDF, the session record" in preview
    result = confirm(app, sid, bedside.session_id)
    assert "Written: clinical note." in result and "clinical note: DocumentReference/" in result
    assert "could not be made into a PDF" not in result
    reference = re.search(r"DocumentReference/([\w-]+)/_history", result)
    assert reference is not None
    with FhirClient(sandbox.backend_url) as backend:  # read back from the FHIR server itself
        document = backend.read("DocumentReference", reference.group(1)).resource

    text, pdf = (c["attachment"] for c in document["content"])
    assert text["contentType"].startswith("text/plain")
    assert pdf["contentType"] == "application/pdf"
    data = base64.b64decode(pdf["data"])
    assert data.startswith(b"%PDF-") and len(data) > 2000
    assert pdf["size"] == len(data)
    assert (
        pdf["hash"] == base64.b64encode(hashlib.sha1(data, usedforsecurity=False).digest()).decode()
    )  # R4: base64 SHA-1
    assert text["size"] == len(base64.b64decode(text["data"]))
    assert pdf["title"] == "Rapid drug desensitization: carboplatin"
    assert document["context"]["encounter"] == [{"reference": encounter}]  # the launch encounter
    assert document["subject"] == {"reference": patient_ref(sandbox)}
    assert document["status"] == "current" and document["docStatus"] == "final"

    again = confirm(app, sid, bedside.session_id)  # already there: no PDF rendered, nothing written
    assert "Already in the chart: clinical note" in again
    [ours_only] = ours(notes_of_outcome(sandbox), text_of_note(document).rsplit("Ref ", 1)[1][:16])
    assert ours_only["id"] == document["id"]
