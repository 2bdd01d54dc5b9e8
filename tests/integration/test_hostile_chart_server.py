"""Issue 11 "With 5,000 allergies the patient page fails (503)": the sandbox FHIR server needed 12.7 s
per search page, beyond the app's read timeout. Regression test on the real server process: a chart of
5,000 allergies (among another patient's 500) is read whole, every page, through the app's FHIR client
with its default timeouts and no retries; only this patient's allergies come back. (The figures are
printed by benchmarks/bench_search.py; nothing here asserts a time.)"""

from __future__ import annotations

import uuid

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.client.http import NO_RETRY
from tests.hostile import plant_allergies


def test_with_5000_allergies_the_whole_allergy_list_is_read_within_the_apps_timeouts(
    fhir_base_url: str,
) -> None:
    many, other = f"Patient/many-{uuid.uuid4().hex[:12]}", f"Patient/other-{uuid.uuid4().hex[:12]}"
    with FhirClient(fhir_base_url) as loader:
        plant_allergies(loader, many, 5000)
        plant_allergies(loader, other, 500)
    with FhirClient(fhir_base_url, retry=NO_RETRY) as app_client:  # the app's default timeouts
        found = app_client.search_all("AllergyIntolerance", {"patient": many, "_count": "100"}, max_pages=100)
    assert len(found) == 5000
    assert {a["patient"]["reference"] for a in found} == {many}
