"""Signing a plan over HTTP (Flask test client + the fake EHR): one transaction, idempotent, read-only once
signed, refused without permission or an override; requests that are not allowed."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

from fhir_desens.course.sign import SIGNED_KIND
from fhir_desens.fhir.apply import OVERRIDE_NOTE
from tests.app.clinician import ALLERGIST
from tests.app.signer import BOTH_INTENDED, Signer, assert_nothing_written, refusal
from tests.html import alerts, text_of

# --- signing ----------------------------------------------------------------------------------------------


def test_a_signed_oral_plan_is_written_in_oral_words_and_grouped_numbers(signer: Signer) -> None:
    sid = signer.launch("penicillin-pregnancy")
    rg_id = signer.signed_id(signer.sign(sid, signer.plan(sid)), sid)
    (group,) = signer.signed("RequestGroup")
    texts = [n["text"] for n in group["note"]] + [a.get("description", "") for a in group["action"]]
    for request in signer.signed("MedicationRequest"):
        texts += [d["text"] for d in request["dosageInstruction"]]
    texts += [m["code"]["text"] for m in signer.signed("Medication")]
    joined = " | ".join(texts)
    for iv in ("infuse", "Infuse", "mL/h", " bag", "Bag "):
        assert iv not in joined, iv
    assert "Give by mouth 0.1 mL of solution 1 (100 units)" in joined and "1,296,700 units" in joined
    page = text_of(signer.client.get(f"/s/{sid}/orders/{rg_id}").get_data(as_text=True))
    given = "Penicillin V potassium (given for the order of penicillin G benzathine) 1,296,700 units"
    assert f"Signed plan: {given}" in page and "1296700" not in page


def test_a_per_kg_dose_is_rounded_before_planning_and_its_calculation_is_on_the_plan_and_the_orders(
    signer: Signer,
) -> None:
    sid = signer.launch("vancomycin-mrsa")
    draft_id = signer.plan(sid, {"target_dose": "15", "dose_unit": "mg/kg", "weight_kg": "116.68"})
    draft = signer.store.get("draft", f"{sid}:{draft_id}")
    calculation = "15 mg/kg × 116.7 kg = 1,750.5 mg → 1,751 mg (rounded half-up to 1 mg)"
    assert draft["target"] == "1751 mg" and draft["dose_per_m2"] == "15 mg/kg"
    assert calculation in text_of(signer.client.get(f"/s/{sid}/plan/{draft_id}").get_data(as_text=True))
    signer.signed_id(signer.sign(sid, draft_id), sid)
    (group,) = signer.signed("RequestGroup")
    assert any(n["text"].startswith(f"Dose: {calculation}. Weight 116.7 kg") for n in group["note"])
    doses = [
        Decimal(str(d["doseAndRate"][0]["doseQuantity"]["value"]))
        for r in signer.signed("MedicationRequest")
        for d in r["dosageInstruction"]
    ]
    assert sum(doses) == Decimal(1751)


def test_a_signed_per_m2_plan_states_its_calculation_and_orders_the_rounded_dose(signer: Signer) -> None:
    sid = signer.launch("rituximab-lymphoma")
    start = {"target_dose": "375", "dose_unit": "mg/m2", "height_cm": "182", "weight_kg": "91"}
    draft_id = signer.plan(sid, start)
    rg_id = signer.signed_id(signer.sign(sid, draft_id), sid)
    (group,) = signer.signed("RequestGroup")
    notes = [n["text"] for n in group["note"]]
    assert any(
        n.startswith("Dose: 375 mg/m² × 2.14 m² = 802.5 mg → 803 mg (rounded half-up to 1 mg). BSA 2.14 m²")
        for n in notes
    ), notes
    assert "803 mg" in notes[0] and "804.3" not in " ".join(notes)
    doses = [
        Decimal(str(s["doseAndRate"][0]["doseQuantity"]["value"]))
        for r in signer.signed("MedicationRequest")
        for s in r["dosageInstruction"]
    ]
    assert sum(doses) == Decimal(803)  # the orders add up to the rounded dose, exactly
    page = text_of(signer.client.get(f"/s/{sid}/orders/{rg_id}").get_data(as_text=True))
    assert "802.5 mg → 803 mg" in page


def test_sign_writes_one_transaction_and_shows_the_signed_plan(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    draft_id = signer.plan(sid, final_rate="75")
    rg_id = signer.signed_id(signer.sign(sid, draft_id), sid)
    assert signer.transactions() == 1
    assert (signer.count("RequestGroup"), signer.count("MedicationRequest"), signer.count("Medication")) == (
        1,
        12,
        3,
    )
    (group,) = signer.signed("RequestGroup")
    assert group["id"] == rg_id and group["subject"] == {"reference": "Patient/carboplatin-ovarian"}
    assert group["author"]["reference"] == "Practitioner/7"  # the session's fhirUser signs
    (provenance,) = signer.signed("Provenance")
    assert provenance["agent"][0]["who"] == {"reference": "Practitioner/7"}
    assert provenance["target"][0] == {"reference": f"RequestGroup/{rg_id}"}

    response = signer.client.get(f"/s/{sid}/orders/{rg_id}?sent=1")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    status = re.search(r'role="status"[^>]*>(.*?)</p>', html, re.S)
    assert status and "Orders sent: 12 medication requests" in text_of(status.group(1))
    # the plan orders the steps only: the premedications it lists are to be ordered in the EHR (walk session 8)
    [premedications] = re.findall(r'id="premedications-to-order">(.*?)</p>', html, re.S)
    assert text_of(premedications).startswith("Premedications are not ordered by this plan")
    assert "diphenhydramine 25 mg IV, 20 min before step 1" in text_of(premedications)
    assert "Solutions" in html and "Steps" in html  # the worksheet, rebuilt by the engine
    assert text_of(html).count("Step ") >= 12
    # planned at the site's pump resolution, recorded on the plan, recomputed to the same programmed rates
    parameters = next(e for e in group["extension"] if e["url"].endswith("desens-plan-parameters"))
    [resolution] = [x["valueQuantity"] for x in parameters["extension"] if x["url"] == "pumpResolution"]
    assert Decimal(str(resolution["value"])) == Decimal("0.1") and resolution["code"] == "mL/h"
    assert "Rates as programmed, in steps of 0.1 mL/h" in text_of(html) and "1.9" in text_of(html)
    assert f'href="/s/{sid}/plan/new?copy={rg_id}">Copy this plan' in html
    assert f'href="/s/{sid}/orders/{rg_id}/print"' in html
    # read-only: nothing to edit; the one form is the lifecycle's "Discontinue" (ORDER-DC-1)
    forms = re.findall(r'<form[^>]*action="([^"]+)"', html.split("<main", 1)[1])
    assert forms == [f"/s/{sid}/orders/{rg_id}/discontinue"]


def test_a_double_submit_or_a_reload_never_writes_a_second_set(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    draft_id = signer.plan(sid)
    first = signer.signed_id(signer.sign(sid, draft_id), sid)
    second = signer.signed_id(signer.sign(sid, draft_id), sid)
    assert first == second
    assert signer.transactions() == 1  # the per-draft marker short-circuits the repeat
    signer.store.delete(SIGNED_KIND, f"{sid}:{draft_id}")  # e.g. another app instance without the marker
    third = signer.signed_id(signer.sign(sid, draft_id), sid)
    assert third == first and signer.transactions() == 2
    assert (signer.count("RequestGroup"), signer.count("MedicationRequest")) == (1, 12)  # ifNoneExist matched


def test_a_copy_is_a_new_set_of_orders(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    first = signer.signed_id(signer.sign(sid, signer.plan(sid)), sid)
    next_course = signer.plan(sid)  # same values: a second active plan must be confirmed (ORDER-DUP-1)
    signer.post(sid, next_course, action="confirm-duplicate", duplicate_reason=BOTH_INTENDED)
    second = signer.signed_id(signer.sign(sid, next_course), sid)
    assert first != second
    assert (signer.count("RequestGroup"), signer.count("MedicationRequest")) == (2, 24)


def test_a_signed_plan_is_read_only_and_signing_it_again_writes_nothing(signer: Signer) -> None:
    """ORDER-RO-1: a signed plan is read-only (a new course is a copy); re-signing it says when it
    was sent and writes nothing."""
    sid = signer.launch("carboplatin-ovarian")
    draft_id = signer.plan(sid)
    rg_id = signer.signed_id(signer.sign(sid, draft_id), sid)
    edit = signer.post(sid, draft_id, action="recalculate", protocol="iv-12-step-3-bag", final_rate="60")
    assert edit.status_code == 400
    html = edit.get_data(as_text=True)
    assert "read-only" in alerts(html) and "Copy this plan" in alerts(html)
    assert "Open the worksheet" in html and "This plan was signed on" in text_of(html)
    again = signer.sign(sid, draft_id)
    assert again.headers["Location"] == f"/s/{sid}/orders/{rg_id}?sent=again"
    shown = text_of(signer.client.get(again.headers["Location"]).get_data(as_text=True))
    assert "already sent on" in shown and "nothing was written again" in shown
    assert signer.transactions() == 1


def test_without_write_scope_nothing_is_sent(signer: Signer) -> None:
    signer.ehr.withhold_scopes = {"patient/Medication.crs", "patient/Provenance.cu"}
    sid = signer.launch("carboplatin-ovarian")
    draft_id = signer.plan(sid)
    page = signer.client.get(f"/s/{sid}/plan/{draft_id}").get_data(as_text=True)
    assert "permission to write orders" in text_of(page)
    response = signer.sign(sid, draft_id)  # a tampered or stale form: refused all the same
    assert response.status_code == 403
    html = response.get_data(as_text=True)
    message = alerts(html)
    assert "did not grant this app permission to write orders" in message
    assert "patient/Medication.c" in message and "patient/Provenance.cu" in message
    assert "Nothing was written" in message
    assert "Open the worksheet" in html and "Open the pharmacy sheet" in html
    assert signer.transactions() == 0
    assert_nothing_written(signer)


def test_a_contraindicated_plan_without_override_is_not_signed(signer: Signer) -> None:
    sid = signer.launch("sjs-sulfonamide")
    draft_id = signer.plan(sid, start={"target_dose": "800", "dose_unit": "mg"})
    response = signer.sign(sid, draft_id)
    assert response.status_code == 409
    assert "contraindicated" in alerts(response.get_data(as_text=True))
    assert signer.transactions() == 0
    assert_nothing_written(signer)


def test_an_override_reason_is_recorded_on_the_orders(signer: Signer) -> None:
    signer.ehr.add_resource(ALLERGIST)  # the signed-in user (Practitioner/7) is an allergist (OVERRIDE-1)
    sid = signer.launch("sjs-sulfonamide")
    draft_id = signer.plan(sid, start={"target_dose": "400", "dose_unit": "mg"})
    reason = "Allergist: the SJS record names another drug; HIV prophylaxis is essential."
    assert signer.post(sid, draft_id, action="override", override_reason=reason).status_code == 303
    page = signer.client.get(f"/s/{sid}/plan/{draft_id}").get_data(as_text=True)
    if "I confirm desensitization" in page:
        signer.post(sid, draft_id, action="confirm-unlisted", confirm_unlisted="yes")
    rg_id = signer.signed_id(signer.sign(sid, draft_id), sid)
    (group,) = signer.signed("RequestGroup")
    [note] = [n["text"] for n in group["note"] if n["text"].startswith(OVERRIDE_NOTE)]
    assert (
        "Stevens-Johnson syndrome" in note and "Overridden by an allergist" in note and note.endswith(reason)
    )
    (provenance,) = signer.signed("Provenance")
    assert provenance["reason"] == [{"text": note}]
    html = signer.client.get(f"/s/{sid}/orders/{rg_id}").get_data(as_text=True)
    assert "Contraindication overridden." in text_of(html) and reason in text_of(html)
    listed = signer.client.get(f"/s/{sid}/patient").get_data(as_text=True)
    assert "contraindication overridden" in text_of(listed) and "Stevens-Johnson syndrome" in text_of(listed)


# --- requests that are not allowed ---------------------------------------------------------------------------


def test_sign_needs_the_sessions_csrf_token(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    draft_id = signer.plan(sid)
    assert signer.sign(sid, draft_id, csrf="forged").status_code == 400
    assert signer.transactions() == 0


def test_a_draft_of_another_session_is_not_found(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    draft_id = signer.plan(sid)
    other = signer.launch("carboplatin-ovarian")
    assert signer.sign(other, draft_id).status_code == 404
    assert signer.sign(sid, "A" * 22).status_code == 404
    assert signer.transactions() == 0


def test_a_signed_plan_of_another_patient_is_not_found(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    rg_id = signer.signed_id(signer.sign(sid, signer.plan(sid)), sid)
    other = signer.launch("nka")
    assert signer.client.get(f"/s/{other}/orders/{rg_id}").status_code == 404
    assert signer.client.get(f"/s/{sid}/orders/no-such-plan").status_code == 404
    assert signer.client.get(f"/s/{sid}/orders/bad%20id").status_code == 404


# --- one rule for the sign button and for signing ----------------------------------------------------------


def test_a_grant_without_provenance_update_cannot_sign(signer: Signer) -> None:
    signer.ehr.narrow_scopes = {"patient/Provenance.cu": "patient/Provenance.c"}
    sid = signer.launch("carboplatin-ovarian")
    draft_id = signer.plan(sid)
    page = signer.client.get(f"/s/{sid}/plan/{draft_id}").get_data(as_text=True)
    assert re.search(r"<button type=\"submit\" disabled[^>]*>Sign and send orders</button>", page)
    assert "permission to write orders" in text_of(page)
    response = signer.sign(sid, draft_id)
    assert response.status_code == 403
    assert "(missing: patient/Provenance.u)" in refusal(response.get_data(as_text=True))
    assert signer.transactions() == 0
    assert_nothing_written(signer)


SANDBOX_PATIENTS = sorted(
    p.stem for p in (Path(__file__).resolve().parents[2] / "fixtures" / "patients").glob("*.json")
)


@pytest.mark.parametrize("patient", SANDBOX_PATIENTS)
def test_every_sandbox_patients_signed_orders_read_by_the_display_policy(
    signer: Signer, patient: str
) -> None:
    """The FHIR texts of each sandbox patient's default plan, as signed: every number within the policy."""
    from fhir_desens.protocol.library import builtin_protocols
    from tests.unit.test_fhir_text_display import _problems

    sid = signer.launch(patient)
    html = signer.client.get(f"/s/{sid}/plan/new").get_data(as_text=True)
    if "Sign" not in html and 'id="drug"' not in html:
        pytest.skip(f"{patient}: no plan can be started")
    try:
        draft_id = signer.plan(sid)
    except AssertionError:
        pytest.skip(f"{patient}: the start form refuses the chart's defaults")
    response = signer.sign(sid, draft_id)
    if response.status_code != 303:
        pytest.skip(f"{patient}: signing needs a decision first ({response.status_code})")
    titles = [p.title for p in builtin_protocols().values()]
    texts: list[str] = []
    (group,) = signer.signed("RequestGroup")
    texts += [n["text"] for n in group["note"]] + [a.get("description", "") for a in group["action"]]
    for request in signer.signed("MedicationRequest"):
        texts += [d.get("text", "") for d in request["dosageInstruction"]]
    texts += [m["code"]["text"] for m in signer.signed("Medication")]
    places = 1  # the app plans at the default pump resolution, 0.1 mL/h
    problems = []
    for text in texts:
        for title in titles:
            text = text.replace(title, "the protocol")
        problems += _problems(text, places)
    assert problems == []
