"""What people read when something fails (smart_app/errors.py): the advice once, the technical account apart."""

from __future__ import annotations

from flask import Flask

from fhir_desens.errors import TemporaryServerError
from tests.app.conftest import AppFactory, https_client
from tests.html import text_of

TIMED_OUT = (
    "GET /fhir/Patient/3f2a: timed out (connected, but no answer within the read timeout) after 3 attempt(s)"
)
SID = "A" * 43


def _failing(make_app: AppFactory) -> Flask:
    app = make_app()

    @app.get("/test-ehr-silent")
    @app.get(f"/s/{SID}/test-ehr-silent")
    def silent() -> str:
        raise TemporaryServerError(TIMED_OUT)

    return app


def test_an_ehr_that_does_not_answer_is_said_in_words_with_the_request_for_support_apart(
    make_app: AppFactory,
) -> None:
    """The walk: a hung FHIR server gave "GET /fhir/Patient/<id>: timed out (connected, but no answer within the read timeout) after 3 attempt(s)"
    as the page's whole message."""
    response = https_client(_failing(make_app)).get("/test-ehr-silent")
    assert response.status_code == 503
    page = text_of(response.get_data(as_text=True))
    assert "The EHR is not available right now" in page
    assert "The EHR did not answer in time, or answered that it is busy." in page
    assert "Wait a moment and reload the page." in page
    assert f"For your support team: {TIMED_OUT}" in page


def test_machines_get_the_words_and_the_technical_account_apart(make_app: AppFactory) -> None:
    response = https_client(_failing(make_app)).get(
        "/test-ehr-silent", headers={"Accept": "application/json"}
    )
    assert response.status_code == 503
    assert response.get_json() == {
        "error": "TemporaryServerError",
        "message": "The EHR did not answer in time, or answered that it is busy.",
        "detail": TIMED_OUT,
        "status": 503,
    }


def test_a_failing_page_of_a_session_leads_back_to_the_patient(make_app: AppFactory) -> None:
    """The walk: an error page inside the EHR frame had no way back but the browser's."""
    client = https_client(_failing(make_app))
    inside = client.get(f"/s/{SID}/test-ehr-silent").get_data(as_text=True)
    assert f'<a class="button" href="/s/{SID}/patient">Back to the patient</a>' in inside
    outside = client.get("/test-ehr-silent").get_data(as_text=True)
    assert "Back to the patient" not in outside
    ended = client.get(f"/s/{SID}/patient").get_data(as_text=True)  # no such session: open the app again
    assert "Back to the patient" not in ended
