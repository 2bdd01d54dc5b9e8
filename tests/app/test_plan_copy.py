""" "Copy this plan": a signed plan carries its settings into a new draft and recomputes to the same
worksheet."""

from __future__ import annotations

import json
import re
import uuid
from decimal import Decimal
from typing import Any

from fhir_desens.fhir.apply import ApplyContext, apply_plan
from fhir_desens.io.json import dumps
from fhir_desens.protocol.report import plan_dict
from smart_app.planning.drafts import PlanDraft, plan_for
from tests.app.fake_ehr import FakeEhr
from tests.app.planner import Planner, engine_plan
from tests.app.signer import DOSE_REASON, Signer
from tests.html import (
    alerts,
    input_value,
    selected_text,
    selected_value,
    table_rows,
    text_of,
)

# --- copy a signed plan ------------------------------------------------------------------------------


def _sign_in_fake_ehr(ehr: FakeEhr, patient: str, *, parameters: bool = True, **options: Any) -> str:
    """Store the resources of a signed plan (as $apply writes them) in the fake EHR; the RequestGroup id.

    ``parameters=False`` drops the recorded plan parameters (a plan signed by an older version).
    """
    plan = engine_plan("iv-12-step-3-bag", "400 mg", **options)
    rxnorm = {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "40048"}
    bundle = apply_plan(plan, ApplyContext(patient=f"Patient/{patient}", drug_codes=(rxnorm,)))
    ids = {e["fullUrl"]: f"{e['resource']['resourceType']}/{uuid.uuid4().hex[:12]}" for e in bundle["entry"]}
    for entry in bundle["entry"]:
        text = dumps(entry["resource"])  # Decimals as JSON numbers
        for urn, ref in ids.items():
            text = text.replace(urn, ref)
        resource = json.loads(text)
        resource["id"] = ids[entry["fullUrl"]].split("/")[1]
        if resource["resourceType"] == "RequestGroup" and not parameters:
            resource["extension"] = [e for e in resource["extension"] if "plan-parameters" not in e["url"]]
        if resource["resourceType"] in ("RequestGroup", "MedicationRequest", "Medication"):
            ehr.add_resource(resource)
    return next(ref.split("/")[1] for ref in ids.values() if ref.startswith("RequestGroup/"))


def test_copy_this_plan_carries_the_protocol_settings(planner: Planner, ehr: FakeEhr) -> None:
    sid = planner.launch("carboplatin-ovarian")
    group = _sign_in_fake_ehr(
        ehr,
        "carboplatin-ovarian",
        final_rate_ml_h=Decimal(75),
        bag_volume_ml=Decimal(100),
        insert_before=(12,),
    )
    html = planner.start_form(sid, f"?copy={group}").get_data(as_text=True)
    assert f"(signed plan {group})" in text_of(html)
    # the date it was signed, written for people in the site's zone ("2 Dec 2026 19:50 CET")
    assert re.search(r"Copying the plan signed on \d{1,2} [A-Z][a-z]{2} 20\d\d \d\d:\d\d", text_of(html))
    assert "Everything it recorded is carried over" in text_of(html)
    assert "signed without a record" not in text_of(html)
    assert f'<input type="hidden" name="copy" value="{group}">' in html
    assert selected_text(html, "drug") == "Carboplatin"
    assert input_value(html, "target_dose") == "400", "the current order's dose"
    draft_id = planner.create(sid, copy=group)
    draft = planner.draft(sid, draft_id)
    assert draft["copied_from"] == group
    assert (draft["protocol_id"], draft["final_rate_ml_h"], draft["bag_volume_ml"]) == (
        "iv-12-step-3-bag",
        "75",
        "100",
    )
    assert draft["insert_before"] == [12]
    page = planner.page(sid, draft_id).get_data(as_text=True)
    assert "Copied from signed plan" in text_of(page)
    assert len(table_rows(page, "steps")) == 13


def test_copy_of_a_plan_without_recorded_parameters(planner: Planner, ehr: FakeEhr) -> None:
    """Read back from the RequestGroup and its orders: protocol, closing, final rate, bag volume."""
    sid = planner.launch("carboplatin-ovarian")
    group = _sign_in_fake_ehr(
        ehr, "carboplatin-ovarian", parameters=False, final_rate_ml_h=Decimal(70), bag_volume_ml=Decimal(200)
    )
    form = text_of(planner.start_form(sid, f"?copy={group}").get_data(as_text=True))
    assert "signed without a record of its settings" in form and "could not be read back" in form
    draft = planner.draft(sid, planner.create(sid, copy=group))
    assert (draft["protocol_id"], draft["final_rate_ml_h"], draft["bag_volume_ml"], draft["closing"]) == (
        "iv-12-step-3-bag",
        "70",
        "200",
        "reduced-final-bag",
    )


def test_copying_another_patients_plan_is_not_found(planner: Planner, ehr: FakeEhr) -> None:
    ehr.load_fixture("nka")
    group = _sign_in_fake_ehr(ehr, "nka")
    sid = planner.launch("carboplatin-ovarian")
    assert planner.start_form(sid, f"?copy={group}").status_code == 404
    assert planner.start_form(sid, "?copy=not%20an%20id").status_code == 400


# --- "Copy this plan" carries every parameter ---------------------------------------------------------------


def prefilled(signer: Signer, sid: str, query: str) -> dict[str, str]:
    """The start form exactly as pre-filled (what "Continue" posts without a change)."""
    html = signer.client.get(f"/s/{sid}/plan/new{query}").get_data(as_text=True)
    form = {
        "csrf_token": signer.csrf(sid),
        "drug": selected_value(html, "drug"),
        "other_drug": input_value(html, "other_drug"),
        "target_dose": input_value(html, "target_dose"),
        "dose_unit": selected_value(html, "dose_unit"),
        "indication": input_value(html, "indication"),
        "height_cm": input_value(html, "height_cm"),
        "weight_kg": input_value(html, "weight_kg"),
        "grade": selected_value(html, "grade"),
    }
    copy = re.search(r'<input type="hidden" name="copy" value="([^"]+)"', html)
    if copy:
        form["copy"] = copy.group(1)
    return form


def copy_of(signer: Signer, sid: str, rg_id: str) -> str:
    response = signer.client.post(f"/s/{sid}/plan/new", data=prefilled(signer, sid, f"?copy={rg_id}"))
    assert response.status_code == 303, alerts(response.get_data(as_text=True))
    return response.headers["Location"].rsplit("/", 1)[1]


def worksheet_tables(signer: Signer, sid: str, draft_id: str) -> tuple[str, str, str]:
    html = signer.client.get(f"/s/{sid}/plan/{draft_id}").get_data(as_text=True)
    tables = [re.search(rf'<table[^>]*id="{t}".*?</table>', html, re.S) for t in ("solutions", "steps")]
    facts = re.search(r'<section class="worksheet".*?</dl>', html, re.S)
    assert all(tables) and facts, text_of(html)[:2000]
    return tuple(text_of(m.group(0)) for m in (*tables, facts))  # type: ignore[union-attr, return-value]


def recomputed(signer: Signer, sid: str, draft_id: str) -> dict[str, Any]:
    with signer.app.app_context():
        return plan_dict(plan_for(PlanDraft.from_dict(signer.store.get("draft", f"{sid}:{draft_id}"))))


def test_a_copy_recomputes_to_the_same_worksheet(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    draft_id = signer.plan(sid, final_rate="60", bag_volume="200", diluent="ns")
    assert signer.post(sid, draft_id, action="insert", insert_before="9").status_code == 303
    signer.recalculate(sid, draft_id, closing="truncated-final-step")
    original = signer.store.get("draft", f"{sid}:{draft_id}")
    assert (original["final_rate_ml_h"], original["bag_volume_ml"], original["diluent"]) == (
        "60",
        "200",
        "ns",
    )
    assert (original["closing"], original["insert_before"]) == ("truncated-final-step", [9])
    rg_id = signer.signed_id(signer.sign(sid, draft_id), sid)

    copy_id = copy_of(signer, sid, rg_id)
    copied = signer.store.get("draft", f"{sid}:{copy_id}")
    for name in (
        "drug",
        "drug_rxnorm",
        "indication",
        "target",
        "protocol_id",
        "final_rate_ml_h",
        "bag_volume_ml",
        "diluent",
        "closing",
        "insert_before",
    ):
        assert copied[name] == original[name], name
    assert copied["copied_from"] == rg_id
    assert recomputed(signer, sid, copy_id) == recomputed(signer, sid, draft_id)
    assert worksheet_tables(signer, sid, copy_id) == worksheet_tables(signer, sid, draft_id)


def test_a_copy_of_a_per_m2_plan_keeps_the_prescribed_dose(signer: Signer) -> None:
    sid = signer.launch("rituximab-lymphoma")
    draft_id = signer.plan(sid, start={"target_dose": "375", "dose_unit": "mg/m2"})
    original = signer.store.get("draft", f"{sid}:{draft_id}")
    assert original["dose_per_m2"] == "375 mg/m²" and original["dose_basis"]
    rg_id = signer.signed_id(signer.sign(sid, draft_id), sid)

    form = prefilled(signer, sid, f"?copy={rg_id}")
    assert (form["target_dose"], form["dose_unit"]) == ("375", "mg/m2")
    html = signer.client.get(f"/s/{sid}/plan/new?copy={rg_id}").get_data(as_text=True)
    assert "The signed plan: 375 mg/m² × 2.14 m² = " in text_of(html)
    copy_id = copy_of(signer, sid, rg_id)
    copied = signer.store.get("draft", f"{sid}:{copy_id}")
    assert (copied["target"], copied["dose_per_m2"], copied["dose_basis"]) == (
        original["target"],
        original["dose_per_m2"],
        original["dose_basis"],
    )
    assert recomputed(signer, sid, copy_id) == recomputed(signer, sid, draft_id)


def test_a_copy_keeps_the_signed_drug_when_the_chart_names_it_otherwise(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    draft_id = signer.plan(sid, start={"drug": "other", "other_drug": "Paraplatin (carboplatin)"})
    rg_id = signer.signed_id(signer.sign(sid, draft_id), sid)
    html = signer.client.get(f"/s/{sid}/plan/new?copy={rg_id}").get_data(as_text=True)
    select = re.search(r'<select id="drug".*?</select>', html, re.S)
    assert select is not None
    chosen = re.search(r"<option[^>]*selected[^>]*>(.*?)</option>", select.group(0), re.S)
    assert chosen is not None and text_of(chosen.group(1)) == "Paraplatin (carboplatin)"
    copy_id = copy_of(signer, sid, rg_id)
    assert signer.store.get("draft", f"{sid}:{copy_id}")["drug"] == "Paraplatin (carboplatin)"
    assert recomputed(signer, sid, copy_id) == recomputed(signer, sid, draft_id)


def test_a_copy_says_when_the_current_order_has_another_dose(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    draft_id = signer.plan(sid, start={"target_dose": "350"})
    signer.post(sid, draft_id, action="acknowledge-dose", dose_acknowledged="yes", dose_reason=DOSE_REASON)
    rg_id = signer.signed_id(signer.sign(sid, draft_id), sid)
    html = signer.client.get(f"/s/{sid}/plan/new?copy={rg_id}").get_data(as_text=True)
    assert input_value(html, "target_dose") == "350"
    assert "is for 400 mg; the signed plan was for 350 mg (filled in)" in text_of(html)
