"""Signing orders over HTTP (Flask test client + the in-process fake EHR, charts from fixtures/):
"Sign and send orders", idempotency, refusals and failures with what was written, the signed plan
pages, the patient page list and "Copy this plan"."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import TestResponse

from fhir_desens.course.copy import draft_fields_from_signed
from fhir_desens.course.sign import SIGNED_KIND
from fhir_desens.course.sign_errors import OrdersNotPermitted
from fhir_desens.fhir import canonical as c
from fhir_desens.fhir.apply import OVERRIDE_NOTE
from fhir_desens.protocol.report import plan_dict
from smart_app.app_session import CHART_TTL
from smart_app.orders import views as orders_blueprint
from smart_app.orders.signed import load_signed_plan
from smart_app.planning.drafts import PlanDraft, plan_for
from smart_app.planning.views import render_plan_page
from tests.app.clinician import Clinician
from tests.app.conftest import Launcher
from tests.app.fake_ehr import FHIR_BASE, FakeEhr
from tests.html import alerts, input_value, selected_value, start_form_values, text_of

SIGN_BUTTON = "Sign and send orders"
DOSE_REASON = "Dose reduced by the oncologist after the last creatinine clearance"
BOTH_INTENDED = "Second course planned for next week, first one stays for today"


class Signer(Clinician):
    """Plays the clinician: launch, start a plan from the chart's defaults, sign, open signed plans."""

    def plan(self, sid: str, start: dict[str, str] | None = None, **changes: str) -> str:
        """A draft from the start form's defaults (the chart's first drug) and ``start``, then protocol
        changes."""
        html = self.client.get(f"/s/{sid}/plan/new").get_data(as_text=True)
        form = {"csrf_token": self.csrf(sid), **start_form_values(html), **(start or {})}
        response = self.client.post(f"/s/{sid}/plan/new", data=form)
        assert response.status_code == 303, text_of(response.get_data(as_text=True))[:1500]
        draft_id = response.headers["Location"].rsplit("/", 1)[1]
        if changes:
            self.recalculate(sid, draft_id, **changes)
        return draft_id

    def recalculate(self, sid: str, draft_id: str, **changes: str) -> None:
        html = self.client.get(f"/s/{sid}/plan/{draft_id}").get_data(as_text=True)
        form = {
            "csrf_token": self.csrf(sid),
            "action": "recalculate",
            "protocol": selected_value(html, "protocol"),
        }
        for name in ("final_rate", "bag_volume"):
            if f'id="{name}"' in html:
                form[name] = input_value(html, name)
        for name in ("diluent", "closing"):
            if f'<select id="{name}"' in html:
                form[name] = selected_value(html, name)
        form.update(changes)
        response = self.client.post(f"/s/{sid}/plan/{draft_id}", data=form)
        assert response.status_code == 303, alerts(response.get_data(as_text=True))

    def post(self, sid: str, draft_id: str, **fields: str) -> TestResponse:
        return self.client.post(f"/s/{sid}/plan/{draft_id}", data={"csrf_token": self.csrf(sid), **fields})

    def sign(self, sid: str, draft_id: str, csrf: str | None = None) -> TestResponse:
        token = self.csrf(sid) if csrf is None else csrf
        return self.client.post(f"/s/{sid}/plan/{draft_id}/sign", data={"csrf_token": token})

    def signed_id(self, response: TestResponse, sid: str) -> str:
        assert response.status_code == 303, alerts(response.get_data(as_text=True))
        match = re.fullmatch(
            rf"/s/{sid}/orders/([A-Za-z0-9\-.]+)\?sent=(?:1|again)", response.headers["Location"]
        )
        assert match, response.headers["Location"]
        return match.group(1)

    def transactions(self) -> int:
        return sum(1 for r in self.ehr.requests if r.method == "POST" and r.url.rstrip("/") == FHIR_BASE)

    def count(self, kind: str) -> int:
        """Resources this app wrote (the fixtures hold orders of their own)."""
        return len(self.signed(kind))

    def signed(self, kind: str) -> list[dict[str, Any]]:
        system = {
            "RequestGroup": c.ID_SESSION,
            "MedicationRequest": c.ID_STEP_ORDER,
            "Medication": c.ID_SOLUTION,
        }
        return [
            r
            for r in self.ehr.orders_of(kind)
            if kind == "Provenance" or any(i.get("system") == system[kind] for i in r.get("identifier") or [])
        ]


@pytest.fixture
def signer(launcher: Launcher, ehr: FakeEhr, app: Flask) -> Signer:
    return Signer(launcher, ehr, app)


def _nothing_written(signer: Signer) -> None:
    assert (signer.count("RequestGroup"), signer.count("MedicationRequest"), signer.count("Medication")) == (
        0,
        0,
        0,
    )


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
    assert "Signed plan: Penicillin G benzathine 1,296,700 units" in page and "1296700" not in page


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
    _nothing_written(signer)


def test_a_contraindicated_plan_without_override_is_not_signed(signer: Signer) -> None:
    sid = signer.launch("sjs-sulfonamide")
    draft_id = signer.plan(sid, start={"target_dose": "800", "dose_unit": "mg"})
    response = signer.sign(sid, draft_id)
    assert response.status_code == 409
    assert "contraindicated" in alerts(response.get_data(as_text=True))
    assert signer.transactions() == 0
    _nothing_written(signer)


ALLERGIST = {
    "resourceType": "Practitioner",
    "id": "7",
    "name": [{"family": "Okoro", "given": ["Amara"], "prefix": ["Dr."]}],
    "qualification": [{"code": {"text": "Board certification: Allergy and Immunology"}}],
}


def test_an_override_reason_is_recorded_on_the_orders(signer: Signer) -> None:
    signer.ehr.add_resource(ALLERGIST)  # the signed-in user (Practitioner/7) is an allergist (OVERRIDE-1)
    sid = signer.launch("sjs-sulfonamide")
    draft_id = signer.plan(sid, start={"target_dose": "800", "dose_unit": "mg"})
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


# --- failures: what was written is said truthfully --------------------------------------------------------


def test_timeout_before_the_server_wrote_anything(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    draft_id = signer.plan(sid)
    signer.ehr.transaction_failure = "timeout-before"
    response = signer.sign(sid, draft_id)
    assert response.status_code == 502
    html = response.get_data(as_text=True)
    assert "Nothing was written to the chart." in alerts(html)
    assert "Open the worksheet" in html and "Traceback" not in html
    _nothing_written(signer)
    signer.ehr.transaction_failure = None
    signer.signed_id(signer.sign(sid, draft_id), sid)  # the retry signs
    assert (signer.count("RequestGroup"), signer.count("MedicationRequest")) == (1, 12)


def test_timeout_after_the_server_wrote_everything_is_a_success(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    draft_id = signer.plan(sid)
    signer.ehr.transaction_failure = "timeout-after"
    rg_id = signer.signed_id(signer.sign(sid, draft_id), sid)  # found by its business identifier
    assert rg_id == signer.signed("RequestGroup")[0]["id"]
    signer.ehr.transaction_failure = None
    assert signer.signed_id(signer.sign(sid, draft_id), sid) == rg_id
    assert signer.count("MedicationRequest") == 12


def test_a_partial_write_is_reported_and_completed_by_signing_again(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    draft_id = signer.plan(sid)
    signer.ehr.transaction_failure = "partial"
    signer.ehr.transaction_partial = 6  # RequestGroup, 3 Medications, 2 orders
    response = signer.sign(sid, draft_id)
    assert response.status_code == 502
    message = alerts(response.get_data(as_text=True))
    assert "Part of the plan was written" in message
    assert "2 of 12 medication requests" in message and "3 of 3 solutions" in message
    signer.ehr.transaction_failure = None
    signer.signed_id(signer.sign(sid, draft_id), sid)
    assert (signer.count("RequestGroup"), signer.count("MedicationRequest"), signer.count("Medication")) == (
        1,
        12,
        3,
    )


def test_an_unknown_outcome_is_said_to_be_unknown(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    draft_id = signer.plan(sid)
    signer.ehr.transaction_failure = "timeout-before"
    signer.ehr.orders_search_fails = True
    response = signer.sign(sid, draft_id)
    assert response.status_code == 502
    assert "could not be checked" in alerts(response.get_data(as_text=True))


def test_a_retry_that_fails_early_says_what_an_unconfirmed_first_attempt_wrote(signer: Signer) -> None:
    """Issue 11 "A retry that misinforms": the first attempt wrote all 12 orders but its answer was lost
    and the check could not run; the retry fails before sending (the allergy list cannot be read) and
    says what the chart holds of the first attempt, found by its business identifiers."""
    sid = signer.launch("carboplatin-ovarian")
    draft_id = signer.plan(sid)
    signer.ehr.transaction_failure = "timeout-after"
    signer.ehr.orders_search_fails = True
    first = signer.sign(sid, draft_id)
    assert first.status_code == 502 and "could not be checked" in alerts(first.get_data(as_text=True))
    signer.ehr.transaction_failure = None
    signer.ehr.allergy_search_fails = True
    still_paused = alerts(signer.sign(sid, draft_id).get_data(as_text=True))
    assert "Nothing was written" not in still_paused
    assert "an earlier attempt may be in the chart" in still_paused
    signer.ehr.orders_search_fails = False
    retry = signer.sign(sid, draft_id)
    assert retry.status_code == 503  # the allergy list's failure, as before
    message = alerts(retry.get_data(as_text=True))
    assert "Nothing was written" not in message
    rg_id = signer.signed("RequestGroup")[0]["id"]
    assert (
        f"the orders of an earlier attempt are in the chart: RequestGroup/{rg_id} with 12 medication requests"
        in message
    )
    signer.ehr.allergy_search_fails = False
    assert signer.signed_id(signer.sign(sid, draft_id), sid) == rg_id  # confirmed, never duplicated
    assert (signer.count("RequestGroup"), signer.count("MedicationRequest")) == (1, 12)


def test_a_retry_that_fails_early_after_a_first_attempt_that_wrote_nothing(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    draft_id = signer.plan(sid)
    signer.ehr.transaction_failure = "timeout-before"
    signer.sign(sid, draft_id)
    signer.ehr.transaction_failure = None
    signer.ehr.allergy_search_fails = True
    message = alerts(signer.sign(sid, draft_id).get_data(as_text=True))
    assert (
        "Nothing was written to the chart (an earlier, unconfirmed attempt is not in it either)." in message
    )
    _nothing_written(signer)


@pytest.mark.parametrize(("failure", "status"), [("conflict", 409), ("forbidden", 403), ("unavailable", 502)])
def test_server_refusals_map_to_statuses(signer: Signer, failure: str, status: int) -> None:
    sid = signer.launch("carboplatin-ovarian")
    draft_id = signer.plan(sid)
    signer.ehr.transaction_failure = failure
    response = signer.sign(sid, draft_id)
    assert response.status_code == status
    html = response.get_data(as_text=True)
    assert "Nothing was written to the chart." in alerts(html)
    assert "Open the worksheet" in html and "Traceback" not in html


def test_the_failure_page_stands_when_the_plan_page_cannot_be_read(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    draft_id = signer.plan(sid)
    signer.ehr.transaction_failure = "timeout-before"
    signer.ehr.patients["carboplatin-ovarian-gone"] = signer.ehr.patients.pop("carboplatin-ovarian")
    signer.ehr.clock.advance(CHART_TTL + 1)  # the pages' short cache of the patient has expired
    response = signer.sign(sid, draft_id)
    assert response.status_code == 502
    html = response.get_data(as_text=True)
    assert "The plan page cannot be shown right now" in html
    assert "The orders were not sent" in html and "Nothing was written to the chart." in html
    assert f'href="/s/{sid}/plan/{draft_id}/print"' in html


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
        assert "Prescriber signature" in html and "Practitioner/7" in html
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


# --- the refusal alert says what happened to the orders --------------------------------------------------


def refusal(html: str) -> str:
    found = re.search(r'id="sign-refusal"[^>]*>(.*?)</div>', html, re.S)
    assert found is not None, "no sign refusal alert"
    return text_of(found.group(1))


def test_a_refused_signing_says_the_orders_were_not_sent(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    draft_id = signer.plan(sid)
    signer.ehr.transaction_failure = "forbidden"
    response = signer.sign(sid, draft_id)
    assert response.status_code == 403
    html = response.get_data(as_text=True)
    alert = refusal(html)
    assert alert.startswith("The orders were not sent")
    assert "The EHR refused the orders" in alert and alert.count("Nothing was written to the chart.") == 1
    assert "The change was not made" not in html and "The plan below is unchanged" not in html
    assert 'role="alert" aria-labelledby="sign-refusal-heading"' in html
    assert (
        f'href="/s/{sid}/plan/{draft_id}/print"' in html
        and f'href="/s/{sid}/plan/{draft_id}/pharmacy"' in html
    )
    assert 'id="steps"' in html  # the worksheet is there to print


def test_a_partial_write_is_headed_as_such(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    draft_id = signer.plan(sid)
    signer.ehr.transaction_failure = "partial"
    signer.ehr.transaction_partial = 6
    alert = refusal(signer.sign(sid, draft_id).get_data(as_text=True))
    assert alert.startswith("The orders were only partly written")
    assert "2 of 12 medication requests" in alert and "Nothing was written" not in alert


def test_a_blocked_signing_names_the_blocker(signer: Signer) -> None:
    sid = signer.launch("nka")
    draft_id = signer.plan(sid)  # oxaliplatin: not on the allergy list, not confirmed
    response = signer.sign(sid, draft_id)
    assert response.status_code == 409
    alert = refusal(response.get_data(as_text=True))
    assert alert.startswith("The orders were not sent The plan cannot be signed yet")
    assert "is not on the allergy list" in alert and "Nothing was written to the chart." in alert


def test_the_plan_page_is_rendered_through_its_public_function(app: Flask, signer: Signer) -> None:
    assert orders_blueprint.render_plan_page is render_plan_page
    sid = signer.launch("carboplatin-ovarian")
    draft_id = signer.plan(sid)
    with app.test_request_context():
        html, status = render_plan_page(
            sid, draft_id, status=403, sign_error=OrdersNotPermitted(["patient/Provenance.u"])
        )
    assert status == 403
    assert refusal(html) == (
        "The orders were not sent The EHR did not grant this app permission to write orders (missing: "
        "patient/Provenance.u). Nothing was written to the chart. Print the worksheet and enter the orders "
        "in the EHR. The worksheet and the pharmacy sheet can still be printed ( Print and sign )."
    )


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
    _nothing_written(signer)


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
