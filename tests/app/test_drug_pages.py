"""Drug knowledge on the planning pages and in the signed orders (DRUG-*, RISK-CHART-*, OVERRIDE-*):
the fake EHR serves the sandbox fixtures; every check is the one signing applies."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fhir_desens.drugs.monograph import monographs
from fhir_desens.drugs.products import resolve_products
from fhir_desens.protocol.library import builtin_protocols
from tests.app.clinician import ALLERGIST
from tests.app.signer import Signer
from tests.html import alerts, input_value, selected_value, start_form_values, text_of

FIXTURES = sorted(p.stem for p in (Path(__file__).parents[2] / "fixtures" / "patients").glob("*.json"))
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def page(signer: Signer, sid: str, draft_id: str) -> str:
    return signer.client.get(f"/s/{sid}/plan/{draft_id}").get_data(as_text=True)


def sign_button_disabled(html: str) -> bool:
    return re.search(r'<button type="submit" disabled[^>]*>Sign and send orders</button>', html) is not None


@pytest.mark.invariant("DRUG-CONC-1")
def test_ten_times_the_carboplatin_dose_cannot_be_signed(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    draft_id = signer.plan(sid, start={"target_dose": "4000", "dose_unit": "mg"})
    html = page(signer, sid, draft_id)
    assert sign_button_disabled(html)
    text = text_of(html)
    assert (
        "Refused: Bag 3 (target) would be 15.87 mg/mL, stronger than the carboplatin stock (10 mg/mL)" in text
    )
    assert "far above any usual dose" in text
    response = signer.sign(sid, draft_id)
    assert response.status_code == 409
    assert "stronger than the carboplatin stock" in alerts(response.get_data(as_text=True))
    assert signer.transactions() == 0


@pytest.mark.invariant("DRUG-DIL-1")
def test_oxaliplatin_in_sodium_chloride_is_refused_and_d5w_is_the_default(signer: Signer) -> None:
    sid = signer.launch("nka")
    draft_id = signer.plan(sid)
    html = page(signer, sid, draft_id)
    assert "Diluent: 5% dextrose (D5W) (as the therapeutic order says)" in text_of(html)
    assert (
        "5% dextrose (D5W)" in text_of(html.split('id="solutions"')[1]) if 'id="solutions"' in html else True
    )
    signer.recalculate(sid, draft_id, diluent="ns")
    html = page(signer, sid, draft_id)
    assert "Refused: oxaliplatin must not be diluted in 0.9% sodium chloride (NS)" in text_of(html)
    assert sign_button_disabled(html)


@pytest.mark.invariant("DRUG-DIL-2")
def test_the_diluent_comes_from_the_order(signer: Signer) -> None:
    sid = signer.launch("paclitaxel-high-risk")
    draft_id = signer.plan(sid)
    html = page(signer, sid, draft_id)
    assert "Diluent: 0.9% sodium chloride (NS) (as the therapeutic order says)" in text_of(html)
    assert "NS or D5W" not in html
    assert "Container: Non-PVC" in text_of(html) and "0.22 micron" in text_of(html)
    pharmacy = signer.client.get(f"/s/{sid}/plan/{draft_id}/pharmacy").get_data(as_text=True)
    assert "0.22 micron" in text_of(pharmacy) and "NS or D5W" not in pharmacy


@pytest.mark.invariant("DRUG-PROD-1")
def test_oral_penicillin_v_orders_are_coded_penicillin_v_and_benzathine_follows(signer: Signer) -> None:
    sid = signer.launch("penicillin-pregnancy")
    draft_id = signer.plan(sid)
    html = page(signer, sid, draft_id)
    assert "penicillin-v-oral-wendel" in selected_value(html, "protocol") or "penicillin V" in text_of(html)
    assert "stays the order to give after the desensitization" in text_of(html)
    if "I confirm desensitization" in html:
        signer.post(sid, draft_id, action="confirm-unlisted", confirm_unlisted="yes")
    signer.signed_id(signer.sign(sid, draft_id), sid)
    for medication in signer.signed("Medication"):
        assert [c["code"] for c in medication["code"]["coding"]] == ["7984"]
        assert medication["code"]["text"].startswith("penicillin V potassium for oral solution")
    assert all("7982" not in str(r) for r in signer.signed("MedicationRequest"))


def test_a_plan_giving_another_drug_than_the_order_names_the_drug_given_with_its_dose(signer: Signer) -> None:
    """Walk 9: "Before signing: Penicillin G benzathine 1,296,700 units", the signed page's heading and the
    RequestGroup's note in the EHR named the ordered benzathine with the penicillin V doses' total."""
    given = "Penicillin V potassium (given for the order of penicillin G benzathine) 1,296,700 units"
    sid = signer.launch("penicillin-pregnancy")
    draft_id = signer.plan(sid)
    html = page(signer, sid, draft_id)
    [summary] = re.findall(r'<h3 id="summary-heading">Before signing</h3>(.*?)</dl>', html, re.S)
    assert given in text_of(summary) and "Penicillin G benzathine 1,296,700" not in text_of(summary)
    if "I confirm desensitization" in html:
        signer.post(sid, draft_id, action="confirm-unlisted", confirm_unlisted="yes")
    rg_id = signer.signed_id(signer.sign(sid, draft_id), sid)
    signed_page = signer.client.get(f"/s/{sid}/orders/{rg_id}").get_data(as_text=True)
    [heading] = re.findall(r'<h1 id="signed-heading">(.*?)</h1>', signed_page, re.S)
    assert text_of(heading) == f"Signed plan: {given}"
    (group,) = signer.signed("RequestGroup")
    assert (
        group["note"][0]["text"]
        == f"Oral penicillin V desensitization (Wendel 1985 / CDC): {given}, 14 steps, 3 h 30 min"
    )


@pytest.mark.invariant("RISK-CHART-1")
def test_the_paclitaxel_patient_is_prefilled_high_risk_with_sources(signer: Signer) -> None:
    sid = signer.launch("paclitaxel-high-risk")
    html = signer.client.get(f"/s/{sid}/plan/new").get_data(as_text=True)
    assert selected_value(html, "grade") == "3"
    for name in ("hypotension_or_hypoxia", "cardiac_or_beta_blocker"):
        assert re.search(rf'name="{name}" value="yes" checked', html), name
    assert re.search(r'name="fev1_below_80" value="" checked', html), "not measured: not known, never no"
    text = text_of(html)
    assert "68/40" in text and "I25.10" in text and "Metoprolol" in text
    # the index reaction named once per answer, then its facts (it was repeated before each fact)
    assert (
        "From the chart: Allergy to Paclitaxel, reaction: severity 'severe'; blood pressure 68/40 (systolic "
        "below 90); SpO2 84% (at or below 92%)" in text
    )
    assert text.casefold().count("allergy to paclitaxel, reaction") == 2  # the grade and hypotension answers
    form = {
        "csrf_token": signer.csrf(sid),
        **start_form_values(html),
        "grade": "3",
        "hypotension_or_hypoxia": "yes",
        "cardiac_or_beta_blocker": "yes",
        "fev1_below_80": "",
    }
    response = signer.client.post(f"/s/{sid}/plan/new", data=form)
    draft_id = response.headers["Location"].rsplit("/", 1)[1]
    plan_html = page(signer, sid, draft_id)
    assert selected_value(plan_html, "protocol") == "iv-16-step-4-bag"
    assert "high risk" in text_of(plan_html) and "Standard risk" not in text_of(plan_html)
    assert "What the chart records for the risk criteria" in plan_html and "Metoprolol" in text_of(plan_html)


@pytest.mark.invariant("RISK-CHART-2")
def test_an_unanswered_criterion_the_chart_points_to_never_gets_the_12_step_protocol(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    draft_id = signer.plan(sid, start={"hypotension_or_hypoxia": "", "grade": "2"})
    html = page(signer, sid, draft_id)
    assert selected_value(html, "protocol") == "iv-16-step-4-bag"
    assert "risk not established" in text_of(html).lower()


@pytest.mark.invariant("DRUG-NAME-1")
def test_a_misspelt_drug_gets_did_you_mean_and_an_uncoded_one_needs_confirmation(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    html = signer.client.get(f"/s/{sid}/plan/new").get_data(as_text=True)
    base = {
        "csrf_token": signer.csrf(sid),
        "drug": "other",
        "target_dose": "400",
        "dose_unit": "mg",
        "grade": "2",
        "hypotension_or_hypoxia": "no",
        "cardiac_or_beta_blocker": "no",
        "fev1_below_80": "no",
        "height_cm": input_value(html, "height_cm"),
        "weight_kg": input_value(html, "weight_kg"),
    }
    refused = signer.client.post(f"/s/{sid}/plan/new", data={**base, "other_drug": "carboplatn"})
    assert refused.status_code == 400
    assert "Did you mean carboplatin?" in alerts(refused.get_data(as_text=True))
    fixed = signer.client.post(f"/s/{sid}/plan/new", data={**base, "other_drug": "carboplatin"})
    assert fixed.status_code == 303
    fixed_page = page(signer, sid, fixed.headers["Location"].rsplit("/", 1)[1])
    assert "Carboplatin" in text_of(fixed_page) and "(same drug)" in text_of(
        fixed_page
    )  # matched on the allergy list

    typed = signer.client.post(
        f"/s/{sid}/plan/new", data={**base, "other_drug": "carboplatn", "accept_name": "yes"}
    )
    assert typed.status_code == 303
    draft_id = typed.headers["Location"].rsplit("/", 1)[1]
    html = page(signer, sid, draft_id)
    assert sign_button_disabled(html)
    assert "planned as an uncoded drug" in text_of(html)
    assert signer.post(sid, draft_id, action="confirm-uncoded", confirm_uncoded="yes").status_code == 303
    assert "I confirm that carboplatn is planned as an uncoded drug" not in page(signer, sid, draft_id)


def _start_and_sign(signer: Signer, key: str) -> tuple[str, str] | None:
    """Start -> plan -> sign a patient with the chart's defaults; None when the chart offers no drug."""
    sid = signer.launch(key)
    html = signer.client.get(f"/s/{sid}/plan/new").get_data(as_text=True)
    if selected_value(html, "drug") == "other":
        return None
    start = {} if input_value(html, "target_dose") else {"target_dose": "800", "dose_unit": "mg"}
    draft_id = signer.plan(sid, start=start)
    html = page(signer, sid, draft_id)
    if "Override the contraindication" in html:
        reason = "Essential therapy, no alternative; reviewed with the treating team today."
        assert signer.post(sid, draft_id, action="override", override_reason=reason).status_code == 303
        html = page(signer, sid, draft_id)
    if "I confirm desensitization" in html:
        signer.post(sid, draft_id, action="confirm-unlisted", confirm_unlisted="yes")
    if 'name="confirm_uncoded"' in html:
        signer.post(sid, draft_id, action="confirm-uncoded", confirm_uncoded="yes")
    rg_id = signer.signed_id(signer.sign(sid, draft_id), sid)
    return sid, rg_id


@pytest.mark.invariant("DRUG-PROD-1")
@pytest.mark.parametrize("key", FIXTURES)
def test_every_sandbox_patient_signs_only_the_protocols_products(signer: Signer, key: str) -> None:
    signer.ehr.add_resource(ALLERGIST)
    started = _start_and_sign(signer, key)
    if started is None:
        pytest.skip(f"{key}: the chart offers no drug to plan")
    (group,) = signer.signed("RequestGroup")
    parameters = {e["url"]: e for e in group["extension"][-1]["extension"]}
    protocol = builtin_protocols()[parameters["protocolId"]["valueString"]]
    drug = parameters["drug"]["valueString"]
    codes = tuple(e["valueCoding"]["code"] for k, e in parameters.items() if k == "drugCode")
    products, refused = resolve_products(protocol, drug, codes)
    assert not refused
    allowed = (
        {c.code for s in products.solutions for c in s.product.codes} | {c.code for c in products.given.codes}
        if products
        else set()
    )
    known = {
        c.code for m in monographs().values() for c in (*m.codes, *(c for p in m.products for c in p.codes))
    }
    for medication in signer.signed("Medication"):
        written = {c["code"] for c in medication["code"].get("coding", []) if c.get("system") == RXNORM}
        written |= {
            c["code"]
            for i in medication["ingredient"]
            for c in i["itemCodeableConcept"].get("coding", [])
            if c.get("system") == RXNORM
        }
        assert written <= allowed, (key, written, allowed)
        assert written <= known, "only verified codes are written"
        diluents = [i["itemCodeableConcept"]["text"] for i in medication["ingredient"] if not i["isActive"]]
        assert all(" or " not in d for d in diluents), (key, diluents)
    for order in signer.signed("MedicationRequest"):
        assert "medicationCodeableConcept" not in order  # the step orders name the plan's Medications only


@pytest.mark.invariant("DRUG-LAST-1")
def test_tmp_smx_ending_with_a_ds_tablet_for_an_ss_order_is_warned_with_both_components(
    signer: Signer,
) -> None:
    signer.ehr.add_resource(ALLERGIST)
    sid = signer.launch("sjs-sulfonamide")  # the on-hold order is SMX/TMP SS 400/80 mg, one tablet
    draft_id = signer.plan(sid, start={"target_dose": "400", "dose_unit": "mg"})
    reason = "Essential PJP prophylaxis, no alternative; reviewed with the transplant team today."
    assert signer.post(sid, draft_id, action="override", override_reason=reason).status_code == 303
    text = text_of(page(signer, sid, draft_id))
    assert "SMX/TMP 800/160 mg" in text and "SMX/TMP 400/80 mg" in text
    assert "above the ordered dose" in text
    assert (
        "Doses on this plan are of sulfamethoxazole (SMX/TMP 5:1); the last dose is SMX/TMP 800/160 mg."
        in text
    )
    printed = text_of(signer.client.get(f"/s/{sid}/plan/{draft_id}/pharmacy").get_data(as_text=True))
    assert "the last dose is SMX/TMP 800/160 mg" in printed


def test_the_plan_page_groups_the_digits_of_large_doses(signer: Signer) -> None:
    """Walk 9: the plan heading read "Penicillin G benzathine 2400000 units" and "ordered dose 2400000 units"
    (the draft keeps the dose as typed text); shown by the display policy like every other dose."""
    sid = signer.launch("penicillin-pregnancy")
    html = page(signer, sid, signer.plan(sid))
    [heading] = re.findall(r'<h1 id="plan-heading">(.*?)</h1>', html, re.S)
    assert re.search(r"\d,\d{3},\d{3} units$", text_of(heading)), heading
    assert re.search(r"ordered dose \d,\d{3},\d{3} units", text_of(html))
    assert not re.search(r"\d{7} units", text_of(html))
