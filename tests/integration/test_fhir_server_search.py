"""The development FHIR server over real HTTP: searches, paging and search parameters."""

from __future__ import annotations

import uuid

import pytest
import requests

from tests.integration.fhir_wire import (
    TIMEOUT,
    allergy,
    issues_text,
    post,
)

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------------------------- search


def test_search_pages_with_links(fhir_base_url: str, http: requests.Session, unique_system: str) -> None:
    for n in range(25):
        identifier = {"system": unique_system, "value": str(n)}
        assert post(
            http, f"{fhir_base_url}/Patient", {"resourceType": "Patient", "identifier": [identifier]}
        ).ok
    url = f"{fhir_base_url}/Patient?identifier={unique_system}|&_count=10"
    seen: list[str] = []
    pages = 0
    while url:
        bundle = http.get(url, timeout=TIMEOUT).json()
        pages += 1
        assert bundle["type"] == "searchset" and bundle["total"] == 25
        links = {link["relation"]: link["url"] for link in bundle["link"]}
        assert links["self"].startswith(f"{fhir_base_url}/Patient?")
        if pages > 1:
            assert "previous" in links
        for entry in bundle["entry"]:
            assert entry["fullUrl"] == f"{fhir_base_url}/Patient/{entry['resource']['id']}"
            assert entry["search"]["mode"] == "match"
            seen.append(entry["resource"]["id"])
        url = links.get("next", "")
    assert pages == 3
    assert len(seen) == 25 == len(set(seen))


def test_default_page_size_is_20(fhir_base_url: str, http: requests.Session, unique_system: str) -> None:
    for n in range(21):
        post(
            http,
            f"{fhir_base_url}/Patient",
            {"resourceType": "Patient", "identifier": [{"system": unique_system, "value": str(n)}]},
        )
    bundle = http.get(
        f"{fhir_base_url}/Patient", params={"identifier": f"{unique_system}|"}, timeout=TIMEOUT
    ).json()
    assert len(bundle["entry"]) == 20 and bundle["total"] == 21
    assert any(link["relation"] == "next" for link in bundle["link"])


def test_unknown_search_parameters_are_an_error_unless_lenient(
    fhir_base_url: str, http: requests.Session
) -> None:
    for query in ("nmae=x", "patient.identifier=a|b", "_include=AllergyIntolerance:patient"):
        response = http.get(f"{fhir_base_url}/AllergyIntolerance?{query}", timeout=TIMEOUT)
        assert response.status_code == 400, query
        assert "handling=lenient" in issues_text(response.json())
    lenient = http.get(
        f"{fhir_base_url}/Patient?nmae=x&_count=1", headers={"Prefer": "handling=lenient"}, timeout=TIMEOUT
    )
    assert lenient.status_code == 200
    assert lenient.headers["X-Ignored-Search-Parameters"] == "nmae"


def test_reference_search_by_type_and_id_and_by_bare_id(fhir_base_url: str, http: requests.Session) -> None:
    pid = post(http, f"{fhir_base_url}/Patient", {"resourceType": "Patient"}).json()["id"]
    assert post(http, f"{fhir_base_url}/AllergyIntolerance", allergy(f"Patient/{pid}")).status_code == 201
    for value in (f"Patient/{pid}", pid):
        bundle = http.get(
            f"{fhir_base_url}/AllergyIntolerance", params={"patient": value}, timeout=TIMEOUT
        ).json()
        assert bundle["total"] == 1, value
    other = http.get(
        f"{fhir_base_url}/AllergyIntolerance", params={"patient": "Patient/none"}, timeout=TIMEOUT
    )
    assert other.json()["total"] == 0


def test_canonical_with_version_search(fhir_base_url: str, http: requests.Session) -> None:
    url = f"http://example.org/fhir-desens/PlanDefinition/{uuid.uuid4()}"
    for version in ("1.0.0", "2.0.0"):
        plan = {"resourceType": "PlanDefinition", "url": url, "version": version, "status": "draft"}
        assert post(http, f"{fhir_base_url}/PlanDefinition", plan).status_code == 201
    both = http.get(f"{fhir_base_url}/PlanDefinition", params={"url": url}, timeout=TIMEOUT).json()
    one = http.get(f"{fhir_base_url}/PlanDefinition", params={"url": f"{url}|2.0.0"}, timeout=TIMEOUT).json()
    assert both["total"] == 2
    assert one["total"] == 1 and one["entry"][0]["resource"]["version"] == "2.0.0"


def test_url_search_matches_the_whole_canonical_not_a_prefix(
    fhir_base_url: str, http: requests.Session
) -> None:
    base = f"http://example.org/fhir-desens/ActivityDefinition/{uuid.uuid4()}/step-1"
    for url in (f"{base}0", f"{base}1"):  # .../step-10 and .../step-11 only
        activity = {"resourceType": "ActivityDefinition", "url": url, "version": "1", "status": "draft"}
        assert post(http, f"{fhir_base_url}/ActivityDefinition", activity).status_code == 201
    for name in ("url", "url:exact"):
        found = http.get(f"{fhir_base_url}/ActivityDefinition", params={name: base}, timeout=TIMEOUT).json()
        assert found["total"] == 0 and "entry" not in found
    paged = http.get(
        f"{fhir_base_url}/ActivityDefinition",
        params={"url": f"{base}0,{base}1", "_count": "1"},
        timeout=TIMEOUT,
    ).json()
    assert paged["total"] == 2 and len(paged["entry"]) == 1
    # If-None-Exist on the shorter url must create, not match .../step-10.
    activity = {"resourceType": "ActivityDefinition", "url": base, "version": "1", "status": "draft"}
    created = http.post(
        f"{fhir_base_url}/ActivityDefinition",
        json=activity,
        headers={"If-None-Exist": f"url={base}&version=1", "Content-Type": "application/fhir+json"},
        timeout=TIMEOUT,
    )
    assert created.status_code == 201 and created.json()["url"] == base
