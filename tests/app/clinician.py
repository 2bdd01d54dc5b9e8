"""A clinician using the app through Flask's test client against the fake EHR (shared by the app tests)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Flask

from tests.app.fake_ehr import FakeEhr

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
