"""PLAN-PREMED-1: a premedication of the protocol that the patient's allergy list rules out (aspirin in
aspirin-exacerbated respiratory disease) is flagged on the plan page beside the premedications, and signing
waits for the allergist's acknowledgement, recorded on the signed plan. The pre-start checklist flagged it
already, from the same rule (course.assessment.premedication_allergies)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fhir_desens.course.readback import WITHHELD_NOTE
from tests.app.signer import Signer, assert_nothing_written, refusal
from tests.html import text_of

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "patients"
PATIENT = "carboplatin-ovarian"  # carboplatin's 12-step protocol gives aspirin if flushing occurred


def _with_an_aspirin_allergy(signer: Signer) -> str:
    """The carboplatin patient, with the AERD patient's aspirin allergy on her list too."""
    sid = signer.launch(PATIENT)
    bundle = json.loads((FIXTURES / "aspirin-aerd.json").read_text("utf-8"))
    [aspirin] = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "AllergyIntolerance"
    ]
    aspirin = {**aspirin, "id": "aspirin-allergy", "patient": {"reference": f"Patient/{PATIENT}"}}
    signer.ehr.allergies[PATIENT].append(aspirin)
    return sid


@pytest.mark.invariant("PLAN-PREMED-1")
def test_a_premedication_the_patient_is_allergic_to_is_flagged_and_signing_waits_for_the_allergist(
    signer: Signer,
) -> None:
    sid = _with_an_aspirin_allergy(signer)
    draft_id = signer.plan(sid)
    html = signer.client.get(f"/s/{sid}/plan/{draft_id}").get_data(as_text=True)
    premedications = text_of(html.split('id="premedications-heading"')[1].split("</ul>")[0])
    assert re.search(
        r"aspirin 325 mg PO ?: .*Do not give: allergy to Aspirin \(and other COX-1", premedications
    ), premedications
    assert "Do not give" not in premedications.split("aspirin 325 mg")[0]  # diphenhydramine, famotidine: fine
    assert re.search(r'<button type="submit" disabled[^>]*>Sign and send orders</button>', html)
    assert "The allergy list rules out a premedication of this protocol: aspirin" in text_of(html)

    refused = signer.sign(sid, draft_id)  # the server refuses what the page's disabled button would
    assert refused.status_code in (409, 422), refused.status_code
    assert "rules out a premedication" in refusal(refused.get_data(as_text=True))
    assert_nothing_written(signer)

    unticked = signer.post(sid, draft_id, action="acknowledge-premedications")
    assert unticked.status_code == 400 and "the box is not ticked" in text_of(unticked.get_data(as_text=True))
    assert (
        signer.post(
            sid, draft_id, action="acknowledge-premedications", confirm_premedications="yes"
        ).status_code
        == 303
    )
    html = signer.client.get(f"/s/{sid}/plan/{draft_id}").get_data(as_text=True)
    assert "Acknowledged by" in text_of(html) and "not to be given" in text_of(html)
    assert '<button type="submit">Sign and send orders</button>' in html

    rg_id = signer.signed_id(signer.sign(sid, draft_id), sid)
    (group,) = signer.signed("RequestGroup")
    notes = [n["text"] for n in group.get("note") or []]
    assert any(n.startswith(f"{WITHHELD_NOTE}aspirin; acknowledged by ") for n in notes), notes
    signed = text_of(signer.client.get(f"/s/{sid}/orders/{rg_id}").get_data(as_text=True))
    assert "Premedication not to be given (the allergy list rules it out): aspirin; acknowledged by" in signed


def test_without_such_an_allergy_nothing_is_flagged_or_asked(signer: Signer) -> None:
    sid = signer.launch(PATIENT)
    draft_id = signer.plan(sid)
    html = signer.client.get(f"/s/{sid}/plan/{draft_id}").get_data(as_text=True)
    assert "Do not give" not in html and "rules out a premedication" not in html
    assert '<button type="submit">Sign and send orders</button>' in html
