"""The sandbox gateway in front of HAPI FHIR JPA: HAPI's further search pages (``[base]?_getpages=<id>``)
are served to the apps that may see them, and checked entry by entry like the first page.

Before, a patient-scoped app got 403 "system-wide search" for page 2 of its own search, so every list
longer than one page failed on HAPI; and a page is a URL anyone holding it can ask for, so it must not
hand one patient's token another search's entries.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from fhir_desens.sandbox.java_services import expunge_everything
from fhir_desens.sandbox.server import Sandbox
from tests.integration.test_app_launch import _running_sandbox
from tests.integration.test_sandbox_gateway import PATIENT_A, http, obtain_token

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sandbox(hapi_server: Any) -> Iterator[Sandbox]:
    expunge_everything(hapi_server.url)
    yield from _running_sandbox(Sandbox(port=0, fhir_base_url=hapi_server.url))


def pages(url: str, token: str) -> Iterator[dict[str, Any]]:
    while url:
        response = http("GET", url, token)
        assert response.status_code == 200, response.text
        bundle = response.json()
        yield bundle
        url = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), "")


def test_a_patient_app_reads_every_page_of_its_own_search(sandbox: Sandbox) -> None:
    token = obtain_token(sandbox, "patient/*.rs")["access_token"]
    seen = list(pages(f"{sandbox.fhir_base_url}/Observation?_count=1", token))
    assert len(seen) >= 3  # HAPI pages: one entry a page
    links = [link["url"] for b in seen[:-1] for link in b["link"] if link["relation"] == "next"]
    assert links and all(u.startswith(sandbox.fhir_base_url) and "_getpages=" in u for u in links)
    patient = f"Patient/{sandbox.summary.patient_id(PATIENT_A)}"
    subjects = {e["resource"]["subject"]["reference"] for b in seen for e in b.get("entry", [])}
    assert subjects == {patient}


def test_another_searchs_page_shows_a_patient_token_only_its_patient(sandbox: Sandbox) -> None:
    everyone = obtain_token(sandbox, "user/*.rs")["access_token"]
    first = next(pages(f"{sandbox.fhir_base_url}/Patient?_count=2&_sort=_id", everyone))
    [next_page] = [link["url"] for link in first["link"] if link["relation"] == "next"]
    assert len(http("GET", next_page, everyone).json()["entry"]) == 2  # other patients, for a user token

    own = obtain_token(sandbox, "patient/*.rs")["access_token"]
    response = http("GET", next_page, own)
    assert response.status_code == 200
    shown = {e["resource"]["id"] for e in response.json().get("entry", [])}
    assert shown <= {sandbox.summary.patient_id(PATIENT_A)}  # never another patient

    nothing = obtain_token(sandbox, "patient/Observation.rs")["access_token"]
    response = http("GET", next_page, nothing)
    assert response.status_code == 200 and not response.json().get("entry")  # no Patient scope at all
