"""The clinician signing plans through the app (shared by the app tests): start a plan from the chart's
defaults, sign it, read what was written."""

from __future__ import annotations

import re
from typing import Any

from werkzeug.test import TestResponse

from fhir_desens.fhir import canonical as c
from tests.app.clinician import Clinician
from tests.app.fake_ehr import FHIR_BASE
from tests.html import alerts, start_form_values, text_of

DOSE_REASON = "Dose reduced by the oncologist after the last creatinine clearance"
BOTH_INTENDED = "Second course planned for next week, first one stays for today"


class Signer(Clinician):
    """Plays the clinician: launch, start a plan from the chart's defaults, sign, open signed plans."""

    def plan(self, sid: str, start: dict[str, str] | None = None, **changes: str) -> str:
        """A draft from the start form's defaults (the chart's first drug) and ``start``, then protocol
        changes."""
        html = self.client.get(f"/s/{sid}/plan/new").get_data(as_text=True)
        form = {"csrf_token": self.csrf(sid), **start_form_values(html), **(start or {})}
        response = self.client.post(f"/s/{sid}/plan/new", data=form)
        assert response.status_code == 303, text_of(response.get_data(as_text=True))[:1500]
        draft_id = response.headers["Location"].rsplit("/", 1)[1]
        if changes:
            self.recalculate(sid, draft_id, **changes)
        return draft_id

    def recalculate(self, sid: str, draft_id: str, **changes: str) -> TestResponse:
        response = super().recalculate(sid, draft_id, **changes)
        assert response.status_code == 303, alerts(response.get_data(as_text=True))
        return response

    def sign(self, sid: str, draft_id: str, csrf: str | None = None) -> TestResponse:
        token = self.csrf(sid) if csrf is None else csrf
        return self.client.post(f"/s/{sid}/plan/{draft_id}/sign", data={"csrf_token": token})

    def signed_id(self, response: TestResponse, sid: str) -> str:
        assert response.status_code == 303, alerts(response.get_data(as_text=True))
        match = re.fullmatch(
            rf"/s/{sid}/orders/([A-Za-z0-9\-.]+)\?sent=(?:1|again)", response.headers["Location"]
        )
        assert match, response.headers["Location"]
        return match.group(1)

    def transactions(self) -> int:
        return sum(1 for r in self.ehr.requests if r.method == "POST" and r.url.rstrip("/") == FHIR_BASE)

    def count(self, kind: str) -> int:
        """Resources this app wrote (the fixtures hold orders of their own)."""
        return len(self.signed(kind))

    def signed(self, kind: str) -> list[dict[str, Any]]:
        system = {
            "RequestGroup": c.ID_SESSION,
            "MedicationRequest": c.ID_STEP_ORDER,
            "Medication": c.ID_SOLUTION,
        }
        return [
            r
            for r in self.ehr.orders_of(kind)
            if kind == "Provenance" or any(i.get("system") == system[kind] for i in r.get("identifier") or [])
        ]


def assert_nothing_written(signer: Signer) -> None:
    assert (signer.count("RequestGroup"), signer.count("MedicationRequest"), signer.count("Medication")) == (
        0,
        0,
        0,
    )


def refusal(html: str) -> str:
    found = re.search(r'id="sign-refusal"[^>]*>(.*?)</div>', html, re.S)
    assert found is not None, "no sign refusal alert"
    return text_of(found.group(1))
