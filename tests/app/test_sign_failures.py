"""Signing that fails: timeouts, partial writes, unknown outcomes and server refusals; what was written is
said truthfully, in the refusal alert."""

from __future__ import annotations

import pytest
from flask import Flask

from fhir_desens.course.sign_errors import OrdersNotPermitted
from smart_app.app_session import CHART_TTL
from smart_app.orders import views as orders_blueprint
from smart_app.planning.views import render_plan_page
from tests.app.signer import Signer, assert_nothing_written, refusal
from tests.html import alerts

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
    assert_nothing_written(signer)
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
    assert_nothing_written(signer)


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


# --- the refusal alert says what happened to the orders --------------------------------------------------


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


def test_a_chart_read_that_fails_before_signing_is_told_in_clinical_words(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    draft_id = signer.plan(sid)
    signer.ehr.allergy_search_fails = True  # the EHR answers 503 to the allergy list
    alert = refusal(signer.sign(sid, draft_id).get_data(as_text=True))
    assert "The EHR answered with an error while the app was reading the allergy list." in alert
    assert "/fhir" not in alert and "HTTP 503" not in alert
    assert_nothing_written(signer)
