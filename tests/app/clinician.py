"""A clinician using the app through Flask's test client against the fake EHR (shared by the app tests)."""

from __future__ import annotations

from typing import Any

from flask import Flask

from tests.app.conftest import Launcher
from tests.app.fake_ehr import FakeEhr


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
