"""A failed FHIR request in a clinician's words: what the app was doing and whether it may be in the chart."""

from __future__ import annotations

import pytest

from fhir_desens.client.plain_words import doing, plain_failure


@pytest.mark.parametrize(
    ("method", "path", "words"),
    [
        ("GET", "/fhir/AllergyIntolerance", "reading the allergy list"),
        ("GET", "/fhir/Patient/a3c74dd8-dac0", "reading the patient's record"),
        ("GET", "/r4/MedicationRequest/_search", "reading the medication orders"),
        ("PUT", "/fhir/AllergyIntolerance/7", "updating an allergy record"),
        ("POST", "/fhir", "writing to the chart"),
        ("POST", "/fhir/DocumentReference", "writing the clinical notes"),
        ("GET", "/fhir/metadata", "reading what the EHR supports"),
        ("GET", "/fhir/SomethingNew/1", "reading the chart"),
    ],
)
def test_the_request_is_named_in_clinical_words(method: str, path: str, words: str) -> None:
    assert doing(method, path) == words


def test_a_read_that_timed_out_says_what_was_being_read_and_how_often() -> None:
    text = plain_failure("GET", "/fhir/AllergyIntolerance", status=None, timed_out=True, attempts=3)
    assert (
        text == "The EHR did not answer in time while the app was reading the allergy list (tried 3 times)."
    )


def test_a_write_that_timed_out_may_be_in_the_chart() -> None:
    text = plain_failure("POST", "/fhir", status=None, timed_out=True, attempts=1)
    assert text.startswith("The EHR did not answer in time while the app was writing to the chart.")
    assert "may or may not have reached the chart" in text


def test_an_unreachable_ehr_a_server_error_a_refusal_and_a_conflict_are_told_apart() -> None:
    unreachable = plain_failure("GET", "/fhir/Patient/1", status=None, timed_out=False, attempts=3)
    assert unreachable.startswith("The app could not reach the EHR while it was reading the patient's record")
    assert plain_failure("GET", "/fhir/Condition", status=503, timed_out=False, attempts=1) == (
        "The EHR answered with an error while the app was reading the problem list."
    )
    assert plain_failure("PUT", "/fhir/Task/9", status=422, timed_out=False, attempts=1) == (
        "The EHR refused the app's request while it was updating a task."
    )
    conflict = plain_failure("PUT", "/fhir/AllergyIntolerance/7", status=412, timed_out=False, attempts=1)
    assert "did not overwrite it" in conflict and "Reload the page" in conflict


@pytest.mark.parametrize("status", [None, 404, 409, 500])
def test_no_words_carry_the_request_path_or_an_exception_name(status: int | None) -> None:
    text = plain_failure("GET", "/fhir/Patient/a3c74dd8", status=status, timed_out=True, attempts=2)
    assert "/fhir" not in text and "a3c74dd8" not in text and "Timeout" not in text
