"""What every page of a hostile chart (issue 11) is checked for, in the in-process walk
(``tests/app/test_hostile_charts.py``) and on the real sandbox server
(``tests/integration/test_app_hostile_charts.py``): no 5xx, no traceback, and no direction override or
invisible character shown (screening would not have seen it). Also the 5,000-allergy chart, planted on
a FHIR server by ``tests/integration/test_hostile_chart_server.py`` and ``benchmarks/bench_search.py``."""

from __future__ import annotations

import re
from typing import Any

from fhir_desens.client.fhir_rest import FhirClient

#: Direction overrides and isolates, zero-width characters, word joiner, BOM, and lone surrogates.
UNSAFE = re.compile("[\u202a-\u202e\u2066-\u2069\u200b-\u200f\u2060\ufeff\ud800-\udfff]")
HUNDRED_KB = "Premedication and observation notes. " * 2800  # about 100 kB
#: The pages of one plan (draft or signed) after its URL: the page, both sheets and their PDFs.
PLAN_PAGES = ("", "/print", "/pharmacy", "/worksheet.pdf", "/pharmacy.pdf")


def page_problems(name: str, response: Any) -> list[str]:
    """What is wrong with one answer of the app (a Werkzeug test response), named by ``name``."""
    problems = []
    if response.status_code >= 500:
        problems.append(f"{name}: HTTP {response.status_code}")
    body = response.get_data()
    if b"Traceback" in body:
        problems.append(f"{name}: a traceback")
    if response.mimetype == "text/html" and UNSAFE.search(body.decode("utf-8")):
        problems.append(f"{name}: shows a direction or invisible character")
    return problems


def allergy(n: int, patient: str) -> dict[str, Any]:
    """An active medication AllergyIntolerance of ``patient`` to "Drug n"."""
    return {
        "resourceType": "AllergyIntolerance",
        "patient": {"reference": patient},
        "category": ["medication"],
        "code": {"text": f"Drug {n}"},
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                    "code": "active",
                }
            ]
        },
    }


def plant_allergies(client: FhirClient, patient: str, count: int) -> None:
    """``count`` allergies of ``patient`` on the server, in transactions of 500."""
    for first in range(0, count, 500):
        entries = [
            {"resource": allergy(n, patient), "request": {"method": "POST", "url": "AllergyIntolerance"}}
            for n in range(first, min(count, first + 500))
        ]
        client.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})
