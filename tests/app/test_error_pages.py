"""What people read when something fails (smart_app/errors.py): the advice once, the technical account apart."""

from __future__ import annotations

from flask import Flask

from fhir_desens.errors import TemporaryServerError
from tests.app.conftest import AppFactory, https_client
from tests.html import text_of

TIMED_OUT = "GET /fhir/Patient/3f2a: timed out (ReadTimeout) after 3 attempt(s)"


def _failing(make_app: AppFactory) -> Flask:
    app = make_app()

    @app.get("/test-ehr-silent")
    def silent() -> str:
        raise TemporaryServerError(TIMED_OUT)

    return app


def test_an_ehr_that_does_not_answer_is_said_in_words_with_the_request_for_support_apart(
    make_app: AppFactory,
) -> None:
    """The walk: a hung FHIR server gave "GET /fhir/Patient/<id>: timed out (ReadTimeout) after 3 attempt(s)"
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
