"""The request's view of an app session (smart_app.app_session): the signed-in user's name, the short
cache of the chart reads every page makes, and one session load per request."""

from __future__ import annotations

import re
from typing import Any

import pytest

from smart_app.app_session import CHART_TTL
from smart_app.paper.sheets import UNREADABLE_SIGNER
from tests.app.fake_ehr import FHIR_BASE, FakeEhr
from tests.app.signer import Signer, refusal
from tests.html import text_of

PRACTITIONER = {
    "resourceType": "Practitioner",
    "id": "7",
    "name": [
        {"use": "usual", "text": "Amara"},
        {"use": "official", "family": "Okoro", "given": ["Amara", "N."], "prefix": ["Dr."], "suffix": ["MD"]},
    ],
}
NAME = "Dr. Amara N. Okoro, MD"
FULL_URL = FHIR_BASE + "/Practitioner/7"
SJS = {
    "manifestation": [
        {
            "coding": [
                {
                    "system": "http://snomed.info/sct",
                    "code": "73442001",
                    "display": "Stevens-Johnson syndrome",
                }
            ]
        }
    ],
    "severity": "severe",
}


def reads(ehr: FakeEhr, kind: str) -> int:
    return sum(
        1 for r in ehr.requests if r.method == "GET" and r.url.split("?")[0].startswith(f"{FHIR_BASE}/{kind}")
    )


def prescriber(html: str) -> str:
    found = re.search(r"<dt>Prescriber</dt><dd>(.*?)</dd>", html, re.S)
    assert found is not None
    assert '<span class="fill-line" aria-hidden="true"></span>' in found.group(1)  # the handwritten signature
    return text_of(found.group(1))


# --- the signed-in user's name -----------------------------------------------------------------------------


def test_the_signed_in_users_name_is_shown_and_read_once(signer: Signer) -> None:
    signer.ehr.add_resource(PRACTITIONER)
    sid = signer.launch("carboplatin-ovarian")
    assert "user" not in signer.store.get("session", sid)  # the callback reads nothing from the EHR
    assert reads(signer.ehr, "Practitioner") == 0
    patient_page = signer.launcher.page(sid).get_data(as_text=True)  # reads it with its own batch
    assert signer.store.get("session", sid)["user"] == {"reference": "Practitioner/7", "name": NAME}
    assert f"Signed in as {NAME}" in text_of(patient_page)
    draft_id = signer.plan(sid)
    plan_page = signer.client.get(f"/s/{sid}/plan/{draft_id}").get_data(as_text=True)
    assert f"as one transaction, signed by {NAME}." in text_of(plan_page)
    for sheet in ("print", "pharmacy"):
        assert (
            prescriber(signer.client.get(f"/s/{sid}/plan/{draft_id}/{sheet}").get_data(as_text=True)) == NAME
        )
    rg_id = signer.signed_id(signer.sign(sid, draft_id), sid)
    signed_page = signer.client.get(f"/s/{sid}/orders/{rg_id}").get_data(as_text=True)
    assert f"Signed by {NAME}" in text_of(signed_page)
    assert prescriber(signer.client.get(f"/s/{sid}/orders/{rg_id}/print").get_data(as_text=True)) == NAME
    # the name travels with the orders, for readers whose grant cannot read Practitioner/7
    person = {"reference": "Practitioner/7", "display": NAME}
    assert signer.signed("RequestGroup")[0]["author"] == person
    assert all(order["requester"] == person for order in signer.signed("MedicationRequest"))
    assert signer.signed("Provenance")[0]["agent"][0]["who"] == person
    assert reads(signer.ehr, "Practitioner") == 1  # by the patient page; kept in the session record
    for html in (patient_page, plan_page, signed_page):
        assert FULL_URL not in html


def test_an_unreadable_user_is_shown_as_type_and_id(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")  # the EHR has no Practitioner/7 to read
    assert "Signed in as Practitioner/7" in text_of(signer.launcher.page(sid).get_data(as_text=True))
    assert signer.store.get("session", sid)["user"] == {"reference": "Practitioner/7", "name": None}
    draft_id = signer.plan(sid)
    plan_page = signer.client.get(f"/s/{sid}/plan/{draft_id}").get_data(as_text=True)
    assert "signed by Practitioner/7." in text_of(plan_page) and FULL_URL not in plan_page
    for sheet in ("print", "pharmacy"):  # a reference is no one to call: the line is left to write on
        assert prescriber(signer.client.get(f"/s/{sid}/plan/{draft_id}/{sheet}").get_data(as_text=True)) == ""
    rg_id = signer.signed_id(signer.sign(sid, draft_id), sid)
    assert signer.signed("RequestGroup")[0]["author"] == {"reference": "Practitioner/7"}  # no name to give
    for sheet in ("print", "pharmacy"):
        html = signer.client.get(f"/s/{sid}/orders/{rg_id}/{sheet}").get_data(as_text=True)
        assert prescriber(html) == UNREADABLE_SIGNER, sheet
        assert "Practitioner/7" not in text_of(html), sheet


def test_without_the_fhir_user_scope_the_user_is_not_read(signer: Signer) -> None:
    signer.ehr.add_resource(PRACTITIONER)
    signer.ehr.withhold_scopes = {"fhirUser"}  # the id_token still names the user
    sid = signer.launch("carboplatin-ovarian")
    assert "Signed in as Practitioner/7" in text_of(signer.launcher.page(sid).get_data(as_text=True))


def _signed_by_another(signer: Signer, author: dict[str, str], requester: dict[str, str]) -> tuple[str, str]:
    """A plan signed in this session, then shown as if another practitioner had signed it: its
    RequestGroup's author and its step orders' requester replaced. (sid, RequestGroup id)."""
    signer.ehr.add_resource(PRACTITIONER)
    sid = signer.launch("carboplatin-ovarian")
    rg_id = signer.signed_id(signer.sign(sid, signer.plan(sid)), sid)
    signer.signed("RequestGroup")[0]["author"] = author
    for order in signer.signed("MedicationRequest"):
        order["requester"] = requester
    return sid, rg_id


def test_another_practitioners_signed_plan_names_them_by_the_orders_display(signer: Signer) -> None:
    """A pharmacist opens a plan signed by a colleague whose Practitioner the app may not read: the
    orders' display names them on the page and both sheets."""
    lena = {"reference": "Practitioner/99", "display": "Dr. Lena Ruiz"}
    sid, rg_id = _signed_by_another(signer, lena, lena)
    html = signer.client.get(f"/s/{sid}/orders/{rg_id}").get_data(as_text=True)
    assert "Signed by Dr. Lena Ruiz" in text_of(html) and "Practitioner/99" not in text_of(html)
    for sheet in ("print", "pharmacy"):
        sheet_html = signer.client.get(f"/s/{sid}/orders/{rg_id}/{sheet}").get_data(as_text=True)
        assert prescriber(sheet_html) == "Dr. Lena Ruiz", sheet
        assert "Signed by Dr. Lena Ruiz at " in text_of(sheet_html), sheet


def test_a_signer_the_ehr_does_not_name_is_said_in_words_never_as_a_reference(signer: Signer) -> None:
    unnamed = {"reference": "Practitioner/99"}
    sid, rg_id = _signed_by_another(signer, unnamed, unnamed)
    html = signer.client.get(f"/s/{sid}/orders/{rg_id}").get_data(as_text=True)
    signed_by = re.search(r"<dt>Signed by</dt><dd>(.*?)</dd>", html, re.S)
    assert signed_by is not None
    assert text_of(signed_by.group(1)) == f"{UNREADABLE_SIGNER} (for your support team: Practitioner/99)"
    assert NAME not in text_of(html).split("Signed in")[0]
    for sheet in ("print", "pharmacy"):
        sheet_html = signer.client.get(f"/s/{sid}/orders/{rg_id}/{sheet}").get_data(as_text=True)
        assert prescriber(sheet_html) == UNREADABLE_SIGNER, sheet
        assert "Practitioner/99" not in sheet_html, sheet
        assert re.search(
            r"Signed by a prescriber whose name is not readable from the EHR \(see the order in the EHR\) at "
            r"[^·]+ · order ",
            text_of(sheet_html),
        ), sheet


def test_the_signers_name_is_taken_from_a_step_order_when_the_group_has_none(signer: Signer) -> None:
    sid, rg_id = _signed_by_another(
        signer, {"reference": "Practitioner/99"}, {"reference": "Practitioner/99", "display": "Dr. Lena Ruiz"}
    )
    sheet_html = signer.client.get(f"/s/{sid}/orders/{rg_id}/pharmacy").get_data(as_text=True)
    assert prescriber(sheet_html) == "Dr. Lena Ruiz"


# --- the chart reads are cached briefly; signing reads afresh ------------------------------------------------


def test_worksheet_reloads_reuse_the_chart_for_a_minute(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    draft_id = signer.plan(sid)
    patients, allergies = reads(signer.ehr, "Patient"), reads(signer.ehr, "AllergyIntolerance")
    for _ in range(3):
        assert signer.client.get(f"/s/{sid}/plan/{draft_id}").status_code == 200
    assert (reads(signer.ehr, "Patient"), reads(signer.ehr, "AllergyIntolerance")) == (patients, allergies)
    signer.ehr.clock.advance(CHART_TTL + 1)
    assert signer.client.get(f"/s/{sid}/plan/{draft_id}").status_code == 200
    assert (reads(signer.ehr, "Patient"), reads(signer.ehr, "AllergyIntolerance")) == (
        patients + 1,
        allergies + 1,
    )


def test_signing_reads_the_allergy_list_afresh(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    draft_id = signer.plan(sid)
    assert "contraindicated" not in text_of(
        signer.client.get(f"/s/{sid}/plan/{draft_id}").get_data(as_text=True)
    )
    (allergy,) = signer.ehr.allergies["carboplatin-ovarian"]
    allergy["reaction"] = [SJS]  # recorded in the EHR meanwhile: the page's cache does not know yet
    assert "Sign and send orders</button>" in signer.client.get(f"/s/{sid}/plan/{draft_id}").get_data(
        as_text=True
    )
    response = signer.sign(sid, draft_id)
    assert response.status_code == 409
    assert "Desensitization is contraindicated" in refusal(response.get_data(as_text=True))
    assert signer.transactions() == 0
    assert "Desensitization is contraindicated" in text_of(
        response.get_data(as_text=True).split("</h1>", 1)[1]
    )


def test_the_patient_page_reads_afresh(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    draft_id = signer.plan(sid)
    (allergy,) = signer.ehr.allergies["carboplatin-ovarian"]
    allergy["reaction"] = [SJS]
    assert "Stevens-Johnson" in text_of(signer.launcher.page(sid).get_data(as_text=True))
    page = signer.client.get(f"/s/{sid}/plan/{draft_id}").get_data(as_text=True)  # the cache was refreshed
    assert "Desensitization is contraindicated" in text_of(page)


def test_ending_the_session_drops_the_cached_chart(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    signer.plan(sid)
    assert signer.store.get("chart-cache", f"{sid}:patient") is not None
    assert signer.client.post(f"/s/{sid}/end", data={"csrf_token": signer.csrf(sid)}).status_code == 200
    assert signer.store.get("chart-cache", f"{sid}:patient") is None
    assert signer.store.get("chart-cache", f"{sid}:allergies") is None


def test_a_request_loads_its_session_once(signer: Signer, monkeypatch: pytest.MonkeyPatch) -> None:
    sid = signer.launch("carboplatin-ovarian")
    draft_id = signer.plan(sid)
    csrf = signer.csrf(sid)
    store = signer.store
    original = store.get
    loads: list[str] = []

    def counting_get(namespace: str, key: str) -> Any:
        if namespace == "session":
            loads.append(key)
        return original(namespace, key)

    monkeypatch.setattr(store, "get", counting_get)
    assert signer.client.get(f"/s/{sid}/plan/{draft_id}").status_code == 200
    assert loads == [sid]
    loads.clear()
    edit = {"csrf_token": csrf, "action": "insert", "insert_before": "5"}
    assert signer.client.post(f"/s/{sid}/plan/{draft_id}", data=edit).status_code == 303  # CSRF check + view
    assert loads == [sid]
    loads.clear()
    assert signer.client.post(f"/s/{sid}/plan/{draft_id}/sign", data={"csrf_token": csrf}).status_code == 303
    assert loads == [sid]
