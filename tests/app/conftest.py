"""Flask test-client fixtures: the app wired to the in-process fake EHR (no sockets)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from fhir_desens.client.http import NO_RETRY
from smart_app import create_app
from tests.app.fake_ehr import FHIR_BASE, Client, FakeEhr, authorize_params
from tests.app.fake_ehr_chart import (
    ALLERGY_CARBOPLATIN_HIVES,
    ALLERGY_ERROR,
    ALLERGY_PEANUT,
    ALLERGY_PENICILLIN_SJS,
)
from tests.app.planner import Planner
from tests.app.signer import Signer

PUBLIC_URL = "https://app.example.org"
CLIENT_ID = "desens-app"
SECRET = "test-secret-key-for-the-app-0123456789abcdef"

AppFactory = Callable[..., Flask]


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's FHIR_DESENS_* environment."""
    import os

    for name in list(os.environ):
        if name.startswith("FHIR_DESENS_"):
            monkeypatch.delenv(name)


@pytest.fixture
def ehr() -> FakeEhr:
    fake = FakeEhr()
    fake.add_client(Client(CLIENT_ID, "public"))
    fake.add_patient(
        "p1",
        "Ada Lovelace",
        allergies=[ALLERGY_PEANUT, ALLERGY_CARBOPLATIN_HIVES, ALLERGY_PENICILLIN_SJS, ALLERGY_ERROR],
        mrn="MRN-0001",
    )
    fake.add_patient("p2", "Grace Hopper", allergies=[], mrn="MRN-0002")
    return fake


@pytest.fixture
def make_app(ehr: FakeEhr, tmp_path: Path) -> Iterator[AppFactory]:
    apps: list[Flask] = []

    def factory(**overrides: Any) -> Flask:
        config: dict[str, Any] = {
            "TESTING": True,
            "SECRET_KEY": SECRET,
            "SMART_CLIENT_ID": CLIENT_ID,
            "ALLOWED_ISS": [FHIR_BASE],
            "PUBLIC_URL": PUBLIC_URL,
            "FRAME_ANCESTORS": ["https://ehr.example.org", "https://*.ehr.example.org"],
            "SESSION_URL": f"sqlite:///{tmp_path / 'sessions.sqlite3'}",
            "HTTP_SESSION": ehr.session(),
            "CLOCK": ehr.clock,
            "SMART_CLIENT_OPTIONS": {"retry": NO_RETRY},
        }
        config.update(overrides)
        app = create_app(config)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.extensions["fhir_desens"].store.close()


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    return make_app()


def https_client(app: Flask) -> FlaskClient:
    """A test client that talks to the app as https://app.example.org (its public URL)."""
    client = app.test_client()
    client.environ_base.update({"wsgi.url_scheme": "https", "HTTP_HOST": urlsplit(PUBLIC_URL).netloc})
    return client


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return https_client(app)


class Launcher:
    """Plays the browser: EHR launch → authorize (the fake EHR approves) → callback → patient page."""

    def __init__(self, client: FlaskClient, ehr: FakeEhr) -> None:
        self.client = client
        self.ehr = ehr
        self.responses: list[TestResponse] = []

    def get(self, url: str, **kwargs: Any) -> TestResponse:
        response = self.client.get(url, **kwargs)
        self.responses.append(response)
        return response

    def start(self, patient: str = "p1") -> dict[str, str]:
        response = self.get(
            "/launch?" + urlencode({"iss": FHIR_BASE, "launch": self.ehr.new_launch(patient)})
        )
        assert response.status_code == 302, response.get_data(as_text=True)
        return authorize_params(response.headers["Location"])

    def callback(self, query: dict[str, str]) -> TestResponse:
        return self.get("/callback?" + urlencode(query))

    def launch(self, patient: str = "p1") -> str:
        """A full launch; returns the session id."""
        query = self.ehr.approve(self.start(patient))
        response = self.callback(query)
        assert response.status_code == 303, response.get_data(as_text=True)
        path = urlsplit(response.headers["Location"]).path
        assert path.startswith("/s/") and path.endswith("/patient")
        return path.split("/")[2]

    def page(self, sid: str) -> TestResponse:
        return self.get(f"/s/{sid}/patient")


@pytest.fixture
def launcher(client: FlaskClient, ehr: FakeEhr) -> Launcher:
    return Launcher(client, ehr)


@pytest.fixture
def planner(launcher: Launcher, ehr: FakeEhr, app: Flask) -> Planner:
    """The clinician on the planning pages."""
    return Planner(launcher, ehr, app)


@pytest.fixture
def signer(launcher: Launcher, ehr: FakeEhr, app: Flask) -> Signer:
    """The clinician who plans and signs."""
    return Signer(launcher, ehr, app)
