"""A clinician using the app through Flask's test client against the fake EHR (shared by the app tests)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from flask import Flask
from werkzeug.test import TestResponse

from tests.app.fake_ehr import FakeEhr
from tests.html import input_value

if TYPE_CHECKING:  # conftest imports this module for its fixtures
    from tests.app.conftest import Launcher

ALLERGIST = {
    "resourceType": "Practitioner",
    "id": "7",
    "name": [{"family": "Okoro", "given": ["Amara"], "prefix": ["Dr."]}],
    "qualification": [{"code": {"text": "Board certification: Allergy and Immunology"}}],
}
"""The fake EHR's signed-in user (Practitioner/7) as an allergist, who may override a contraindication."""


class Clinician:
    """Launches for a fixture patient and reads the app's server-side session."""

    def __init__(self, launcher: Launcher, ehr: FakeEhr, app: Flask) -> None:
        self.launcher = launcher
        self.client = launcher.client
        self.ehr = ehr
        self.app = app

    @property
    def store(self) -> Any:
        return self.app.extensions["fhir_desens"].store

    def launch(self, key: str) -> str:
        if key not in self.ehr.patients:
            self.ehr.load_fixture(key)
        return self.launcher.launch(key)

    def csrf(self, sid: str) -> str:
        return str(self.store.get("session", sid)["csrf"])

    def post(self, sid: str, draft_id: str, **fields: str) -> TestResponse:
        """A form posted to a draft's plan page, with the session's CSRF token."""
        return self.client.post(f"/s/{sid}/plan/{draft_id}", data={"csrf_token": self.csrf(sid), **fields})

    def recalculate(self, sid: str, draft_id: str, **changes: str) -> TestResponse:
        """Posts "Recalculate" with the plan page's settings as shown, ``changes`` applied."""
        html = self.client.get(f"/s/{sid}/plan/{draft_id}").get_data(as_text=True)
        form = {"action": "recalculate"}
        for name in ("protocol", "diluent", "closing"):
            found = re.search(rf'<select id="{name}".*?<option value="([^"]*)"[^>]*selected', html, re.S)
            if found:
                form[name] = found.group(1)
        for name in ("final_rate", "bag_volume"):
            if f'id="{name}"' in html:
                form[name] = input_value(html, name)
        return self.post(sid, draft_id, **{**form, **changes})
