"""The plan page's allergy match and screening: unlisted drugs, contraindications and the allergist's
override, a grant that cannot sign."""

from __future__ import annotations

import re

from tests.app.clinician import ALLERGIST
from tests.app.fake_ehr import FakeEhr
from tests.app.planner import Planner
from tests.html import table_rows, text_of

# --- allergy match and screening ---------------------------------------------------------------


def test_matched_allergy_is_shown(planner: Planner) -> None:
    sid = planner.launch("carboplatin-ovarian")
    html = planner.page(sid, planner.create(sid)).get_data(as_text=True)
    section = text_of(html.split('id="allergy-heading"')[1].split("</section>")[0])
    assert "Carboplatin (same drug)" in section
    assert "is not on the allergy list" not in html
    assert "Desensitization is contraindicated" not in html


def test_unlisted_drug_needs_confirmation(planner: Planner) -> None:
    sid = planner.launch("nka")
    draft_id = planner.create(sid)
    html = planner.page(sid, draft_id).get_data(as_text=True)
    warning = re.search(r'<p class="message warning" role="alert">(.*?)</p>', html, re.S)
    assert warning is not None and "is not on the allergy list" in text_of(warning.group(1))
    assert "Oxaliplatin" in text_of(warning.group(1))
    assert (
        '<label for="confirm_unlisted">I confirm desensitization for a drug the allergy list does not record</label>'
        in html
    )
    assert len(table_rows(html, "steps")) == 12, "the worksheet shows before confirmation"
    assert re.search(r"<button type=\"submit\" disabled[^>]*>Sign and send orders</button>", html)
    assert "is not on the allergy list: confirm" in text_of(html)

    refused = planner.post(sid, draft_id, action="confirm-unlisted")
    assert refused.status_code == 400
    assert "I confirm desensitization" in text_of(refused.get_data(as_text=True))
    assert planner.draft(sid, draft_id)["unlisted_confirmed"] is False

    assert planner.post(sid, draft_id, action="confirm-unlisted", confirm_unlisted="yes").status_code == 303
    html = planner.page(sid, draft_id).get_data(as_text=True)
    assert "Confirmed: desensitization for a drug the allergy list does not record." in text_of(html)
    assert '<button type="submit">Sign and send orders</button>' in html
    assert planner.draft(sid, draft_id)["unlisted_confirmed"] is True
    assert planner.writes() == []


def test_sjs_patient_is_blocked_until_an_expert_override(planner: Planner) -> None:
    sid = planner.launch("sjs-sulfonamide")
    draft_id = planner.create(sid, target_dose="800", dose_unit="mg")
    html = planner.page(sid, draft_id).get_data(as_text=True)
    block = re.search(r'<div class="message danger contraindication" role="alert">(.*?)</div>', html, re.S)
    assert block is not None
    assert text_of(block.group(1)).startswith("Desensitization is contraindicated")
    assert "Stevens-Johnson syndrome" in text_of(block.group(1))
    assert 'id="steps"' not in html and 'id="worksheet-heading"' not in html
    assert "Sign and send orders" not in html
    assert '<label for="override_reason">Override reason</label>' in html
    assert re.search(r'<button type="submit" class="danger">Override the contraindication</button>', html)

    before = planner.draft(sid, draft_id)
    edit = planner.post(sid, draft_id, action="insert", insert_before="2")
    assert edit.status_code == 400, "no edits while contraindicated"
    assert "desensitization is contraindicated" in text_of(edit.get_data(as_text=True))
    reason = "Sole effective PJP prophylaxis; allergist and transplant team agree after review."
    for meaningless, says in (
        ("because", "is only 7 characters long"),
        ("xxxxxxxxxxxxxxxxxxxxxxxxx", "is mostly one repeated character"),
        ("asdf asdf asdf asdf asdf asdf", "has fewer than 3 different words"),
    ):
        refused = planner.post(sid, draft_id, action="override", override_reason=meaningless)
        assert refused.status_code == 400
        assert f"Override reason: {says}" in text_of(refused.get_data(as_text=True))
    not_allergist = planner.post(sid, draft_id, action="override", override_reason=reason)
    assert not_allergist.status_code == 400, "OVERRIDE-1: the signed-in user is not an allergist"
    assert "only an allergist may override" in text_of(not_allergist.get_data(as_text=True))
    assert planner.draft(sid, draft_id) == before
    assert "Sign and send orders" not in planner.page(sid, draft_id).get_data(as_text=True)
    assert planner.writes() == []


def test_an_allergist_overrides_and_the_contraindication_is_named_everywhere(planner: Planner) -> None:
    planner.ehr.add_resource(ALLERGIST)  # the fake EHR's signed-in user is Practitioner/7
    sid = planner.launch("sjs-sulfonamide")
    draft_id = planner.create(sid, target_dose="800", dose_unit="mg")
    reason = "Sole effective PJP prophylaxis; allergist and transplant team agree after review."
    assert planner.post(sid, draft_id, action="override", override_reason=reason).status_code == 303
    draft = planner.draft(sid, draft_id)
    assert draft["override_reason"] == reason
    assert draft["overridden"].startswith("Stevens-Johnson syndrome")
    assert "allergist" in draft["override_authority"]
    html = planner.page(sid, draft_id).get_data(as_text=True)
    assert "Contraindication overridden: Stevens-Johnson syndrome" in text_of(html) and reason in text_of(
        html
    )
    assert "Desensitization is contraindicated" in text_of(html), "the contraindication stays visible"
    assert 'id="steps"' in html
    for sheet in ("print", "pharmacy"):
        printed = planner.client.get(f"/s/{sid}/plan/{draft_id}/{sheet}").get_data(as_text=True)
        assert "Contraindication overridden: Stevens-Johnson syndrome" in text_of(printed), sheet
        assert reason in text_of(printed)
    assert planner.writes() == []


def test_read_only_grant_disables_signing_with_the_reason(planner: Planner, ehr: FakeEhr) -> None:
    ehr.withhold_scopes = {"patient/RequestGroup.crus"}
    sid = planner.launch("carboplatin-ovarian")
    html = planner.page(sid, planner.create(sid)).get_data(as_text=True)
    assert re.search(r"<button type=\"submit\" disabled[^>]*>Sign and send orders</button>", html)
    assert "did not grant this app permission to write orders" in text_of(html)
    assert "Open the worksheet" in html
