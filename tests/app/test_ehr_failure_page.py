"""A page the EHR cannot serve: the clinician reads what the app was doing in words, the support team
the request apart, and never a path or an exception name in the message."""

from __future__ import annotations

import pytest

from tests.app.signer import Signer
from tests.html import text_of


@pytest.mark.parametrize("page", ["patient", "plan/new"])
def test_a_failed_chart_read_is_told_in_clinical_words_with_details_for_the_administrator(
    signer: Signer, page: str
) -> None:
    sid = signer.launch("carboplatin-ovarian")
    signer.ehr.allergy_search_fails = True  # the EHR answers 503 to the allergy list
    response = signer.client.get(f"/s/{sid}/{page}")
    assert response.status_code == 503
    html = response.get_data(as_text=True)
    message = html.split('<p class="hint">', 1)[0]
    assert "The EHR answered with an error while the app was reading the allergy list." in text_of(message)
    assert "HTTP 503" not in message and "AllergyIntolerance" not in message
    assert "For your support team: search AllergyIntolerance: HTTP 503" in text_of(html)


def test_the_json_answer_keeps_the_request_for_the_calling_program(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    signer.ehr.allergy_search_fails = True
    body = signer.client.get(f"/s/{sid}/patient", headers={"Accept": "application/json"}).get_json()
    assert body["message"].startswith("The EHR answered with an error")
    assert body["detail"].startswith("search AllergyIntolerance: HTTP 503")
