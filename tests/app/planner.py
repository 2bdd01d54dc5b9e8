"""The clinician planning through the app's pages (shared by the app tests), and the engine's plan to
compare the pages with."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from werkzeug.test import TestResponse

from fhir_desens.protocol.calculate import PlanRequest, compute_plan
from fhir_desens.protocol.library import builtin_protocols
from fhir_desens.protocol.quantity import Quantity
from tests.app.clinician import Clinician
from tests.html import option_value, start_form_values, text_of


class Planner(Clinician):
    """Plays the clinician: launch, open the start form, post it, work on the plan page."""

    def start_form(self, sid: str, query: str = "") -> TestResponse:
        return self.client.get(f"/s/{sid}/plan/new{query}")

    def start(self, sid: str, **fields: str) -> TestResponse:
        form = {"csrf_token": self.csrf(sid), **fields}
        return self.client.post(f"/s/{sid}/plan/new", data=form)

    def start_defaults(self, sid: str, **fields: str) -> dict[str, str]:
        """The start form as pre-filled, with ``fields`` changed (drug given as its option text)."""
        html = self.start_form(sid).get_data(as_text=True)
        values = start_form_values(html)
        if "drug" in fields and not fields["drug"].startswith(("c-", "other")):
            fields["drug"] = option_value(html, "drug", fields["drug"])
        values.update(fields)
        return values

    def create(self, sid: str, **fields: str) -> str:
        """Start a plan; returns the draft id."""
        response = self.start(sid, **self.start_defaults(sid, **fields))
        assert response.status_code == 303, text_of(response.get_data(as_text=True))[:2000]
        location = response.headers["Location"]
        assert re.fullmatch(rf"/s/{sid}/plan/[A-Za-z0-9_-]{{22}}", location), location
        return location.rsplit("/", 1)[1]

    def page(self, sid: str, draft_id: str) -> TestResponse:
        return self.client.get(f"/s/{sid}/plan/{draft_id}")

    def draft(self, sid: str, draft_id: str) -> dict[str, Any]:
        return dict(self.store.get("draft", f"{sid}:{draft_id}"))

    def writes(self) -> list[str]:
        """FHIR requests that could change the chart."""
        return [f"{r.method} {r.url}" for r in self.ehr.requests if "/fhir/" in r.url and r.method != "GET"]


def engine_plan(protocol: str, dose: str, **options: Any) -> Any:
    value, unit_code = dose.split()
    return compute_plan(
        PlanRequest(
            protocol=builtin_protocols()[protocol],
            drug="Carboplatin",
            target=Quantity(Decimal(value), unit_code),
            **options,
        )
    )
