"""The plan's lifecycle over HTTP (Flask test client + the in-process fake EHR, versioned like a real
one): discontinue, one active plan per drug, the therapeutic order's hold, the dose tolerance, the
planned start in the site's time zone, and the summary before signing."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask

from tests.app.conftest import AppFactory, Launcher, https_client
from tests.app.fake_ehr import FakeEhr
from tests.app.signer import BOTH_INTENDED, DOSE_REASON, Signer
from tests.html import alerts, text_of

ORDER = "MedicationRequest/carboplatin-ovarian.medreq-carboplatin"
REASON = "Patient declined further cycles after discussion with the oncologist"


def _order(signer: Signer) -> dict[str, Any]:
    return signer.ehr.stored[("MedicationRequest", ORDER.split("/")[1])]


def _discontinue(signer: Signer, sid: str, rg_id: str, reason: str = REASON, **extra: str) -> Any:
    return signer.client.post(
        f"/s/{sid}/orders/{rg_id}/discontinue",
        data={"csrf_token": signer.csrf(sid), "discontinue_reason": reason, **extra},
    )


def _signed_plan(signer: Signer, sid: str) -> str:
    return signer.signed_id(signer.sign(sid, signer.plan(sid)), sid)


# --- discontinue ------------------------------------------------------------------------------------


@pytest.mark.requirement("ORDER-DC-1")
def test_discontinue_revokes_the_plan_and_cancels_its_orders_in_one_transaction(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    rg_id = _signed_plan(signer, sid)
    before = signer.transactions()
    response = _discontinue(signer, sid, rg_id)
    assert response.status_code == 303
    assert response.headers["Location"] == f"/s/{sid}/orders/{rg_id}?done=discontinued"
    assert signer.transactions() == before + 1
    [group] = signer.signed("RequestGroup")
    assert group["status"] == "revoked"
    assert any(REASON in n["text"] and n["text"].startswith("Discontinued: ") for n in group["note"])
    orders = signer.signed("MedicationRequest")
    assert {o["status"] for o in orders} == {"cancelled"}  # nothing was given yet
    assert all(REASON in o["statusReason"]["text"] for o in orders)
    provenance = [
        p
        for p in signer.ehr.orders_of("Provenance")
        if p.get("activity", {}).get("coding", [{}])[0].get("code") == "UPDATE"
    ]
    assert len(provenance) == 1 and REASON in provenance[0]["reason"][0]["text"]
    page = text_of(signer.client.get(response.headers["Location"]).get_data(as_text=True))
    assert "The plan is discontinued" in page and "Do not give these orders" in page
    assert "Discontinue the plan" not in page


@pytest.mark.requirement("ORDER-DC-1")
def test_discontinuing_twice_writes_nothing_and_says_so(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    rg_id = _signed_plan(signer, sid)
    _discontinue(signer, sid, rg_id)
    after_first = signer.transactions()
    again = _discontinue(signer, sid, rg_id)
    assert again.headers["Location"].endswith("done=already-discontinued")
    assert signer.transactions() == after_first
    assert "already discontinued" in text_of(
        signer.client.get(again.headers["Location"]).get_data(as_text=True)
    )


@pytest.mark.parametrize("reason", ["", "xxxxxxxxxxxxxxxxxxxxxxxxx", "stop"])
def test_discontinue_needs_a_reason_that_says_something(signer: Signer, reason: str) -> None:
    sid = signer.launch("carboplatin-ovarian")
    rg_id = _signed_plan(signer, sid)
    before = signer.transactions()
    response = _discontinue(signer, sid, rg_id, reason)
    assert response.status_code == 400
    assert "Reason for discontinuing" in alerts(response.get_data(as_text=True))
    assert signer.transactions() == before
    assert signer.signed("RequestGroup")[0]["status"] == "active"


def test_a_plan_changed_meanwhile_is_not_overwritten(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    rg_id = _signed_plan(signer, sid)
    signer.ehr.changed_meanwhile.add(f"RequestGroup/{rg_id}")
    response = _discontinue(signer, sid, rg_id)
    assert response.status_code == 409
    assert "changed in the EHR" in alerts(response.get_data(as_text=True))
    assert signer.signed("RequestGroup")[0]["status"] == "active"
    assert {o["status"] for o in signer.signed("MedicationRequest")} == {"active"}


@pytest.mark.requirement("ORDER-LIST-1")
def test_the_patient_page_lists_active_and_discontinued_plans_apart(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    first = _signed_plan(signer, sid)
    _discontinue(signer, sid, first)
    second = _signed_plan(signer, sid)  # allowed: the first one is discontinued
    html = signer.client.get(f"/s/{sid}/patient").get_data(as_text=True)
    active = html[html.index('id="plans-active"') : html.index('id="plans-revoked"')]
    revoked = html[html.index('id="plans-revoked"') :]
    assert f"/orders/{second}" in active and f"/orders/{first}" not in active
    assert f"/orders/{first}" in revoked and "discontinued" in text_of(revoked)


# --- one active plan per drug ---------------------------------------------------------------------------


@pytest.mark.requirement("ORDER-DUP-1")
def test_a_second_active_plan_for_the_same_drug_is_refused(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    first = _signed_plan(signer, sid)
    draft_id = signer.plan(sid)
    page = signer.client.get(f"/s/{sid}/plan/{draft_id}").get_data(as_text=True)
    assert "Another active plan for" in text_of(page) and f"/orders/{first}" in page
    assert 'disabled aria-describedby="sign-blockers"' in page
    response = signer.sign(sid, draft_id)
    assert response.status_code == 409
    assert f"RequestGroup/{first}" in alerts(response.get_data(as_text=True))
    assert signer.count("RequestGroup") == 1
    # confirming with a meaningless reason is refused; a real one lets it through, recorded
    assert (
        signer.post(sid, draft_id, action="confirm-duplicate", duplicate_reason="x" * 30).status_code == 400
    )
    assert (
        signer.post(sid, draft_id, action="confirm-duplicate", duplicate_reason=BOTH_INTENDED).status_code
        == 303
    )
    second = signer.signed_id(signer.sign(sid, draft_id), sid)
    group = next(g for g in signer.signed("RequestGroup") if g["id"] == second)
    assert any(BOTH_INTENDED in n["text"] for n in group["note"])


@pytest.mark.requirement("ORDER-DUP-1")
def test_the_worksheet_reuses_the_start_forms_read_and_signing_searches_afresh(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    draft_id = signer.plan(sid)
    mark = len(signer.ehr.requests)
    page = signer.client.get(f"/s/{sid}/plan/{draft_id}").get_data(as_text=True)
    searched = [r.url for r in signer.ehr.requests[mark:] if "/fhir/RequestGroup" in r.url]
    assert searched == []  # the signed plans were read with the start form's chart
    assert "Another active plan for" not in text_of(page)
    # meanwhile another clinician signs a plan for the same drug: the worksheet read does not know it,
    # signing does (it searches afresh before anything is written)
    other = signer.launcher.launch("carboplatin-ovarian")
    first = _signed_plan(signer, other)
    response = signer.sign(sid, draft_id)
    assert response.status_code == 409
    assert f"RequestGroup/{first}" in alerts(response.get_data(as_text=True))
    assert signer.count("RequestGroup") == 1
    # and the worksheet shows it from now on (the refused signing dropped the page's read)
    page = signer.client.get(f"/s/{sid}/plan/{draft_id}").get_data(as_text=True)
    assert "Another active plan for" in text_of(page) and f"/orders/{first}" in page


# --- the therapeutic order ---------------------------------------------------------------------------------


@pytest.mark.requirement("ORDER-HOLD-1")
def test_signing_puts_the_therapeutic_order_on_hold_naming_the_plan(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    draft_id = signer.plan(sid)
    page = text_of(signer.client.get(f"/s/{sid}/plan/{draft_id}").get_data(as_text=True))
    assert "On signing, this order is put on hold" in page and "Before signing" in page
    rg_id = signer.signed_id(signer.sign(sid, draft_id), sid)
    order = _order(signer)
    assert order["status"] == "on-hold" and f"RequestGroup/{rg_id}" in order["statusReason"]["text"]
    assert order["meta"]["versionId"] == "2"  # one versioned update
    [group] = signer.signed("RequestGroup")
    assert group["basedOn"] == [{"reference": ORDER}]
    shown = text_of(signer.client.get(f"/s/{sid}/orders/{rg_id}").get_data(as_text=True))
    assert "is on hold for this plan" in shown
    # discontinuing offers to release it
    response = _discontinue(signer, sid, rg_id, release_hold="yes")
    assert response.headers["Location"].endswith("done=discontinued-released")
    assert _order(signer)["status"] == "active" and "statusReason" not in _order(signer)


@pytest.mark.requirement("ORDER-HOLD-1")
def test_an_order_changed_meanwhile_is_not_held_and_the_page_asks(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    draft_id = signer.plan(sid)
    signer.ehr.changed_meanwhile.add(ORDER)
    rg_id = signer.signed_id(signer.sign(sid, draft_id), sid)
    assert _order(signer)["status"] == "active"
    html = signer.client.get(f"/s/{sid}/orders/{rg_id}").get_data(as_text=True)
    assert "The standard-rate order is still active" in alerts(html)
    assert "Put the standard-rate order on hold" in html
    held = signer.client.post(f"/s/{sid}/orders/{rg_id}/hold", data={"csrf_token": signer.csrf(sid)})
    assert held.status_code == 303 and _order(signer)["status"] == "on-hold"


def test_keeping_the_order_active_needs_a_reason_and_is_recorded(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    draft_id = signer.plan(sid)
    keep = "Standard-rate infusion continues on another day, pharmacy informed"
    assert signer.post(sid, draft_id, action="keep-order", keep_order_reason="ok").status_code == 400
    assert signer.post(sid, draft_id, action="keep-order", keep_order_reason=keep).status_code == 303
    signer.signed_id(signer.sign(sid, draft_id), sid)
    assert _order(signer)["status"] == "active"
    [group] = signer.signed("RequestGroup")
    assert any(keep in n["text"] and ORDER in n["text"] for n in group["note"])


def test_when_the_order_may_not_be_changed_the_page_says_it_is_still_active(
    make_app: AppFactory, ehr: FakeEhr
) -> None:
    app = make_app()
    signer = Signer(Launcher(https_client(app), ehr), ehr, app)
    ehr.narrow_scopes = {"patient/MedicationRequest.crus": "patient/MedicationRequest.crs"}
    sid = signer.launch("carboplatin-ovarian")
    rg_id = signer.signed_id(signer.sign(sid, signer.plan(sid)), sid)
    assert _order(signer)["status"] == "active"
    html = signer.client.get(f"/s/{sid}/orders/{rg_id}").get_data(as_text=True)
    assert "The standard-rate order is still active" in alerts(html)
    assert "in the EHR (this app may not change orders there)" in text_of(html)


@pytest.mark.requirement("ORDER-DOSE-1")
def test_a_ten_fold_dose_is_not_signable_without_an_acknowledged_reason(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    draft_id = signer.plan(sid, start={"target_dose": "440"})  # 10 % above the 400 mg order
    html = signer.client.get(f"/s/{sid}/plan/{draft_id}").get_data(as_text=True)
    assert "differs from the active order (400 mg) by 10 %" in text_of(html)
    response = signer.sign(sid, draft_id)
    assert response.status_code == 409 and "acknowledge the difference" in alerts(
        response.get_data(as_text=True)
    )
    assert signer.count("RequestGroup") == 0
    unticked = signer.post(sid, draft_id, action="acknowledge-dose", dose_reason=DOSE_REASON)
    assert unticked.status_code == 400
    signer.post(sid, draft_id, action="acknowledge-dose", dose_acknowledged="yes", dose_reason=DOSE_REASON)
    signer.signed_id(signer.sign(sid, draft_id), sid)
    [group] = signer.signed("RequestGroup")
    assert any(DOSE_REASON in n["text"] for n in group["note"])


def test_a_dose_within_the_configured_tolerance_signs(make_app: AppFactory, ehr: FakeEhr) -> None:
    app = make_app(DOSE_TOLERANCE_PERCENT="15")
    signer = Signer(Launcher(https_client(app), ehr), ehr, app)
    sid = signer.launch("carboplatin-ovarian")
    signer.signed_id(signer.sign(sid, signer.plan(sid, start={"target_dose": "440"})), sid)


# --- time -----------------------------------------------------------------------------------------------------


@pytest.fixture
def zoned(make_app: AppFactory, ehr: FakeEhr) -> Signer:
    app: Flask = make_app(
        TIME_ZONE="America/New_York"
    )  # the fake EHR's clock: 2027-01-15 08:00 UTC = 03:00 EST
    return Signer(Launcher(https_client(app), ehr), ehr, app)


@pytest.mark.requirement("ORDER-TIME-1")
def test_a_planned_start_in_the_site_zone_times_the_steps_and_the_orders(zoned: Signer) -> None:
    sid = zoned.launch("carboplatin-ovarian")
    draft_id = zoned.plan(sid)
    assert zoned.post(sid, draft_id, action="schedule", planned_start="2027-01-15T09:00").status_code == 303
    page = text_of(zoned.client.get(f"/s/{sid}/plan/{draft_id}").get_data(as_text=True))
    assert "Planned start (EST)" in page and "15 Jan 2027 09:00 EST" in page
    assert "Clock times from the planned start (15 Jan 2027 09:00 EST" in page
    rg_id = zoned.signed_id(zoned.sign(sid, draft_id), sid)
    orders = sorted(zoned.signed("MedicationRequest"), key=lambda o: o["dosageInstruction"][0]["sequence"])
    first = orders[0]["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"]
    assert first["start"] == "2027-01-15T09:00:00-05:00"
    last = orders[-1]["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"]
    assert last["start"] > first["start"] and last["end"] > last["start"]
    shown = text_of(zoned.client.get(f"/s/{sid}/orders/{rg_id}").get_data(as_text=True))
    assert "Planned start 15 Jan 2027 09:00 EST" in shown


@pytest.mark.requirement("ORDER-TIME-1")
def test_the_planned_start_field_reads_as_the_app_writes_times_not_the_browsers_locale(zoned: Signer) -> None:
    """A datetime-local field showed the browser's own format (12/03/2026, 02:30 PM in a US browser)."""
    sid = zoned.launch("carboplatin-ovarian")
    draft_id = zoned.plan(sid)
    assert zoned.post(sid, draft_id, action="schedule", planned_start="2027-01-15 09:30").status_code == 303
    html = zoned.client.get(f"/s/{sid}/plan/{draft_id}").get_data(as_text=True)
    [field] = re.findall(r'<input[^>]*id="planned_start"[^>]*>', html)
    assert 'type="text"' in field and 'value="2027-01-15 09:30"' in field and "datetime-local" not in field
    assert 'placeholder="YYYY-MM-DD HH:MM"' in field
    assert "Date and 24-hour time, e.g. 2027-01-16 09:00." in text_of(html)
    assert "Step 1 at 15 Jan 2027 09:30 EST" in text_of(html)


@pytest.mark.requirement("ORDER-TIME-1")
@pytest.mark.parametrize("typed", ["2027-01-14T09:00", "tomorrow", "2029-01-01T09:00"])
def test_a_start_in_the_past_or_far_ahead_is_refused_naming_the_field(zoned: Signer, typed: str) -> None:
    sid = zoned.launch("carboplatin-ovarian")
    draft_id = zoned.plan(sid)
    response = zoned.post(sid, draft_id, action="schedule", planned_start=typed)
    assert response.status_code == 400
    assert "Planned start:" in alerts(response.get_data(as_text=True))


def test_without_a_planned_start_the_orders_carry_no_clock_time(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    signer.signed_id(signer.sign(sid, signer.plan(sid)), sid)
    for order in signer.signed("MedicationRequest"):
        timing = order["dosageInstruction"][0]["timing"]
        assert "boundsPeriod" not in timing["repeat"] and "event" not in timing


HOLD_REASON = "Febrile 38.4 C this morning: hold until the allergist has seen her"


def _hold_step_1(signer: Signer) -> dict[str, Any]:
    """Another user puts step 1's order on hold in the EHR after the plan was signed (and read)."""
    [order] = [o for o in signer.signed("MedicationRequest") if o["identifier"][0]["value"].endswith("-1")]
    order["status"] = "on-hold"
    order["statusReason"] = {"text": HOLD_REASON}
    order["meta"] = {**order.get("meta", {}), "lastUpdated": "2026-12-03T07:55:00+00:00"}
    return order


@pytest.mark.requirement("ORDER-DC-2")
def test_a_step_order_someone_put_on_hold_is_never_cancelled_silently(signer: Signer) -> None:
    """Walk session 8: another user put step 1 on hold after the page was read; "Discontinue the plan"
    cancelled it and nobody was told. Now nothing is written: the nurse is told what is on hold, since when
    and why, and asked; cancelling it too needs the box ticked, and the result says it was done."""
    sid = signer.launch("carboplatin-ovarian")
    rg_id = _signed_plan(signer, sid)
    held = _hold_step_1(signer)
    before = signer.transactions()
    refused = _discontinue(signer, sid, rg_id)
    assert refused.status_code == 409
    html = refused.get_data(as_text=True)
    said = alerts(html)
    assert (
        "Nothing was written" in said
        and "the order of step 1 (put on hold by someone the EHR does not name" in said
    )
    assert HOLD_REASON in said and "3 Dec 2026" in said
    assert signer.transactions() == before
    assert signer.signed("RequestGroup")[0]["status"] == "active" and held["status"] == "on-hold"
    assert REASON in html  # the reason as typed, kept for the second try
    box = re.search(r'<input type="checkbox" id="cancel_held" name="cancel_held" value="([^"]+)">', html)
    assert box is not None and box.group(1) == f"MedicationRequest/{held['id']}"  # the order shown
    assert "Also cancel the order put on hold (step 1)" in text_of(html)

    confirmed = _discontinue(signer, sid, rg_id, cancel_held=box.group(1))
    assert confirmed.status_code == 303
    assert confirmed.headers["Location"] == f"/s/{sid}/orders/{rg_id}?done=discontinued&held=1"
    assert {o["status"] for o in signer.signed("MedicationRequest")} == {"cancelled"}
    page = text_of(signer.client.get(confirmed.headers["Location"]).get_data(as_text=True))
    assert "As you confirmed, the order of step 1, which was on hold in the EHR, was cancelled too." in page


def test_without_any_order_on_hold_discontinue_asks_nothing(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    rg_id = _signed_plan(signer, sid)
    response = _discontinue(signer, sid, rg_id)
    assert response.status_code == 303 and "held=" not in response.headers["Location"]


def test_an_order_put_on_hold_after_the_nurse_was_asked_is_asked_about_again(signer: Signer) -> None:
    """The confirmation names the held orders the page showed: one held since is not cancelled with them."""
    sid = signer.launch("carboplatin-ovarian")
    rg_id = _signed_plan(signer, sid)
    first = _hold_step_1(signer)
    [second] = [o for o in signer.signed("MedicationRequest") if o["identifier"][0]["value"].endswith("-2")]
    second["status"] = "on-hold"  # after the nurse saw step 1 alone
    before = signer.transactions()
    again = _discontinue(signer, sid, rg_id, cancel_held=f"MedicationRequest/{first['id']}")
    assert again.status_code == 409
    assert "the order of step 2" in alerts(again.get_data(as_text=True))
    assert signer.transactions() == before and second["status"] == "on-hold"
