"""Signed plans on the patient page and their own pages: print sheets, copy fields, a plan that no longer
recomputes."""

from __future__ import annotations

from flask import Flask

from fhir_desens.course.copy import draft_fields_from_signed
from fhir_desens.fhir import canonical as c
from smart_app.orders.signed import load_signed_plan
from smart_app.paper.sheets import UNREADABLE_SIGNER
from tests.app.signer import Signer
from tests.html import text_of

# --- the patient page, the signed plan pages and "Copy this plan" -------------------------------------------


def test_signed_plans_are_listed_on_the_patient_page(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    page = signer.launcher.page(sid).get_data(as_text=True)
    assert "Signed plans" in page and "No desensitization plan has been signed" in page
    rg_id = signer.signed_id(signer.sign(sid, signer.plan(sid, final_rate="75")), sid)
    page = signer.launcher.page(sid).get_data(as_text=True)
    section = page.split('id="signed-plans-heading"', 1)[1]
    assert f'href="/s/{sid}/orders/{rg_id}"' in section and ">Open<" in section
    assert f'href="/s/{sid}/plan/new?copy={rg_id}"' in section and ">Copy this plan<" in section
    row = text_of(section.split("<tbody>", 1)[1].split("</tr>", 1)[0])
    assert "Carboplatin" in row and "400 mg" in row and "active" in row and "12 steps" in row


def test_signed_plans_are_none_when_unreadable(signer: Signer) -> None:
    signer.ehr.withhold_scopes = {"patient/RequestGroup.crus"}
    sid = signer.launch("carboplatin-ovarian")
    page = signer.launcher.page(sid).get_data(as_text=True)
    assert "The signed plans could not be read from the EHR" in page


def test_print_sheets_of_a_signed_plan(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    rg_id = signer.signed_id(signer.sign(sid, signer.plan(sid)), sid)
    for sheet in ("print", "pharmacy"):
        response = signer.client.get(f"/s/{sid}/orders/{rg_id}/{sheet}")
        assert response.status_code == 200, sheet
        html = response.get_data(as_text=True)
        assert "Prescriber signature" in html and UNREADABLE_SIGNER in html  # the sandbox names no user
        assert f'href="/s/{sid}/orders/{rg_id}">Back to the signed plan' in html


def test_copy_fields_reproduce_the_signed_plan(signer: Signer, app: Flask) -> None:
    sid = signer.launch("carboplatin-ovarian")
    draft_id = signer.plan(sid, final_rate="75", diluent="ns")
    signer.post(sid, draft_id, action="insert", insert_before="9")
    draft = dict(signer.store.get("draft", f"{sid}:{draft_id}"))
    rg_id = signer.signed_id(signer.sign(sid, draft_id), sid)
    _, smart = app.extensions["fhir_desens"].load_session(sid)
    with app.test_request_context():
        signed = load_signed_plan(smart, rg_id)
        fields = draft_fields_from_signed(signed)
    assert signed.worksheet is not None and signed.recompute_problem is None
    assert signed.worksheet.step_count == 13
    assert fields == {
        "request_group": rg_id,
        "protocol_id": draft["protocol_id"],
        "drug": draft["drug"],
        "drug_rxnorm": tuple(draft["drug_rxnorm"]),
        "indication": draft["indication"],
        "target_dose": "400",
        "dose_unit": "mg",
        "final_rate_ml_h": "75",
        "bag_volume_ml": draft["bag_volume_ml"],
        "diluent": "ns",
        "closing": signed.closing,
        "insert_before": (9,),
        "dose_basis": None,
    }


def test_a_signed_plan_that_no_longer_recomputes_shows_the_orders_as_signed(
    signer: Signer, app: Flask
) -> None:
    sid = signer.launch("carboplatin-ovarian")
    rg_id = signer.signed_id(signer.sign(sid, signer.plan(sid)), sid)
    order = signer.signed("MedicationRequest")[3]
    order["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = 999  # edited in the EHR
    html = signer.client.get(f"/s/{sid}/orders/{rg_id}").get_data(as_text=True)
    assert "does not give the signed orders" in text_of(html)
    assert 'id="steps"' not in html  # no worksheet...
    assert text_of(html).count("solution") >= 12  # ...but the orders as the EHR holds them
    assert signer.client.get(f"/s/{sid}/orders/{rg_id}/print").status_code == 409


def test_the_plan_parameters_name_the_identifier_system(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    signer.sign(sid, signer.plan(sid))
    (group,) = signer.signed("RequestGroup")
    assert group["identifier"][0]["system"] == c.ID_SESSION
    assert any(e["url"] == c.EXT_PLAN_PARAMETERS for e in group["extension"])
