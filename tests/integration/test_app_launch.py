"""The Flask app against the real sandbox EHR (fhir_desens.sandbox): real HTTP, real SMART server.

The test plays the browser: it follows the sandbox's redirects with ``requests`` (no cookies, no
scripts) and talks to the app through Flask's test client, while the app itself makes real HTTP calls
to the sandbox (discovery, token, id_token keys, FHIR gateway).
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from joserfc.jwk import ECKey, RSAKey

from fhir_desens.errors import ConfigurationError
from fhir_desens.sandbox.java_services import expunge_everything
from fhir_desens.sandbox.server import Sandbox
from smart_app import create_app
from tests.conftest import in_ci

pytestmark = pytest.mark.integration

PUBLIC_URL = "http://localhost:8765"
REDIRECT_URI = PUBLIC_URL + "/callback"
LAUNCH_URL = PUBLIC_URL + "/launch"
SECRET = "integration-secret-key-0123456789-abcdefghijkl"
CLIENT_SECRET = "sandbox-client-secret-value-42"


def _running_sandbox(box: Sandbox) -> Iterator[Sandbox]:
    try:
        box.start()
    except ConfigurationError as error:
        if in_ci():
            pytest.fail(f"CI=true but the sandbox EHR cannot run: {error}")
        pytest.skip(f"sandbox EHR unavailable: {error}")
    try:
        yield box
    finally:
        box.stop()


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    """The sandbox EHR on its own Medplum-engine FHIR server, for one test module."""
    yield from _running_sandbox(Sandbox(port=0))


#: The FHIR servers behind :func:`sandbox_on_each_server`.
EHR_BACKENDS = ["medplum", "hapi"]


@pytest.fixture(scope="module", params=EHR_BACKENDS)
def sandbox_on_each_server(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """The sandbox EHR (SMART server and gateway) in front of each FHIR server: Medplum's engine (its
    own, for this module) and HAPI FHIR JPA (the session's one, emptied with ``$expunge`` and seeded
    again, so each module starts from the fixtures alone, as on Medplum). A module uses it with
    ``sandbox = launch_tests.sandbox_on_each_server``."""
    if request.param == "medplum":
        yield from _running_sandbox(Sandbox(port=0))
        return
    hapi = request.getfixturevalue("hapi_server")
    expunge_everything(hapi.url)
    yield from _running_sandbox(Sandbox(port=0, fhir_base_url=hapi.url))


class Clock:
    """Real time plus an adjustable offset (to age launch state without sleeping)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class AppUnderTest:
    app: Flask
    client: FlaskClient
    client_id: str
    clock: Clock

    @property
    def store(self) -> Any:
        return self.app.extensions["fhir_desens"].store

    @property
    def settings(self) -> Any:
        return self.app.extensions["fhir_desens"].settings


@pytest.fixture
def make_app(sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import os

    for name in list(os.environ):
        if name.startswith("FHIR_DESENS_"):
            monkeypatch.delenv(name)
    apps: list[Flask] = []
    counter = iter(range(1000))

    def factory(kind: str = "public", *, granted_scope: str | None = None, **config: Any) -> AppUnderTest:
        client_id = f"desens-{kind}-{next(counter)}-{tmp_path.name[-8:]}"
        clock = Clock()
        values: dict[str, Any] = {
            "TESTING": False,  # the production configuration path
            "SECRET_KEY": SECRET,
            "SMART_CLIENT_ID": client_id,
            "ALLOWED_ISS": [sandbox.fhir_base_url],
            "PUBLIC_URL": PUBLIC_URL,
            "SESSION_URL": f"sqlite:///{tmp_path / (client_id + '.sqlite3')}",
            "CLOCK": clock,
        }
        registration: dict[str, Any] = {"launch_url": LAUNCH_URL, "granted_scope": granted_scope}
        if kind == "symmetric":
            values["SMART_CLIENT_SECRET"] = CLIENT_SECRET
            registration["secret"] = CLIENT_SECRET
        elif kind in ("asymmetric-rs384", "asymmetric-es384"):
            key = RSAKey.generate_key(2048) if kind.endswith("rs384") else ECKey.generate_key("P-384")
            pem = tmp_path / f"{client_id}.pem"
            pem.write_bytes(key.as_pem(private=True))
            values["SMART_PRIVATE_KEY"] = str(pem)
            values["SMART_KEY_ID"] = f"{client_id}-key"
        values.update(config)
        app = create_app(values)
        apps.append(app)
        client = app.test_client()
        if kind.startswith("asymmetric"):
            # register exactly what the app publishes at its JWKS endpoint
            registration["jwks"] = client.get("/.well-known/jwks.json").get_json()
        sandbox_type = "asymmetric" if kind.startswith("asymmetric") else kind
        sandbox.register_client(client_id, sandbox_type, [REDIRECT_URI], **registration)
        return AppUnderTest(app, client, client_id, clock)

    yield factory
    for app in apps:
        sender = getattr(app.extensions.get("fhir_desens_bedside"), "sender", None)
        if sender is not None:
            sender.stop()  # the background sender of the bedside (smart_app/bedside/sender.py)
        app.extensions["fhir_desens"].store.close()


def _no_redirect(url: str, **kwargs: Any) -> requests.Response:
    response = requests.get(url, allow_redirects=False, timeout=30, **kwargs)
    return response


def _local(location: str) -> str:
    """An app URL as the test client's path + query."""
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}" == PUBLIC_URL, location
    return parts.path + ("?" + parts.query if parts.query else "")


def ehr_launch_to_authorize(sandbox: Sandbox, app: AppUnderTest, patient: str) -> str:
    """The EHR opens the app: sandbox /launch → app /launch → the authorization URL."""
    launched = _no_redirect(sandbox.launch_url(patient, app=app.client_id))
    assert launched.status_code == 302, launched.text
    response = app.client.get(_local(launched.headers["Location"]))
    assert response.status_code == 302, response.get_data(as_text=True)
    location = response.headers["Location"]
    assert location.startswith(sandbox.authorize_url)
    return location


def authorize(location: str) -> dict[str, str]:
    """The browser at the EHR's authorization endpoint (EHR launch: approved without a page)."""
    response = _no_redirect(location)
    assert response.status_code == 302, response.text
    assert response.headers["Location"].startswith(REDIRECT_URI)
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["Location"]).query).items()}


def finish(app: AppUnderTest, query: dict[str, str]) -> str:
    response = app.client.get("/callback?" + urlencode(query))
    assert response.status_code == 303, response.get_data(as_text=True)
    match = re.fullmatch(r"/s/([A-Za-z0-9_-]{43})/patient", urlsplit(response.headers["Location"]).path)
    assert match, response.headers["Location"]
    return match.group(1)


def ehr_launch(sandbox: Sandbox, app: AppUnderTest, patient: str) -> str:
    return finish(app, authorize(ehr_launch_to_authorize(sandbox, app, patient)))


def page(app: AppUnderTest, sid: str) -> str:
    response = app.client.get(f"/s/{sid}/patient")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data(as_text=True)


CLIENT_KINDS = ["public", "symmetric", "asymmetric-rs384", "asymmetric-es384"]


@pytest.mark.parametrize("kind", CLIENT_KINDS)
def test_ehr_launch(sandbox: Sandbox, make_app, kind: str) -> None:
    app = make_app(kind)
    sid = ehr_launch(sandbox, app, "carboplatin-ovarian")
    html = page(app, sid)
    assert "Voss-Hartley" in html
    assert "MRN-1001" in html
    assert "Carboplatin" in html or "carboplatin" in html
    assert "Read-only" not in html
    smart = app.store.get("session", sid)["smart"]
    expected_method = {"public": "none", "symmetric": "client_secret_basic"}.get(kind, "private_key_jwt")
    assert smart["auth_method"] == expected_method
    assert smart["fhir_user"] and "Practitioner/" in smart["fhir_user"]
    assert smart["refresh_token"]


@pytest.mark.parametrize("kind", CLIENT_KINDS)
def test_standalone_launch(sandbox: Sandbox, make_app, kind: str) -> None:
    app = make_app(kind)
    response = app.client.get("/launch")  # one allowed EHR: straight to its sign-in
    assert response.status_code == 302
    picker = _no_redirect(response.headers["Location"])
    assert picker.status_code == 200, picker.text
    pending = re.search(r'name="pending" value="([^"]+)"', picker.text)
    assert pending
    patient_id = sandbox.summary.patient_id("sjs-sulfonamide")
    chosen = requests.post(
        sandbox.authorize_url + "/select",
        data={"pending": pending.group(1), "patient": patient_id},
        allow_redirects=False,
        timeout=30,
    )
    assert chosen.status_code == 302, chosen.text
    query = {k: v[0] for k, v in parse_qs(urlsplit(chosen.headers["Location"]).query).items()}
    html = page(app, finish(app, query))
    assert "Nakamura-Ellis" in html
    assert "Contraindicated" in html  # SJS to sulfamethoxazole


def test_refresh_before_expiry_and_on_401(sandbox: Sandbox, make_app) -> None:
    app = make_app("symmetric")
    sid = ehr_launch(sandbox, app, "carboplatin-ovarian")
    record = app.store.get("session", sid)
    first_token = record["smart"]["access_token"]
    # 1. the token is about to expire: refreshed before use
    record["smart"]["expires_at"] = app.clock() + 5
    app.store.put("session", sid, record, ttl=600)
    page(app, sid)
    second = app.store.get("session", sid)["smart"]
    assert second["access_token"] != first_token
    # 2. the EHR refuses the token (401): refreshed once, the page still works
    record = app.store.get("session", sid)
    record["smart"]["access_token"] = "revoked-token"
    app.store.put("session", sid, record, ttl=600)
    page(app, sid)
    third = app.store.get("session", sid)["smart"]
    assert third["access_token"] not in ("revoked-token", second["access_token"])


def test_expired_state_is_refused(sandbox: Sandbox, make_app) -> None:
    app = make_app()
    query = authorize(ehr_launch_to_authorize(sandbox, app, "nka"))
    app.clock.offset = app.settings.state_ttl + 5
    response = app.client.get("/callback?" + urlencode(query))
    assert response.status_code == 400
    assert "expired" in response.get_data(as_text=True)


def test_replayed_state_is_refused(sandbox: Sandbox, make_app) -> None:
    app = make_app()
    query = authorize(ehr_launch_to_authorize(sandbox, app, "nka"))
    finish(app, query)
    response = app.client.get("/callback?" + urlencode(query))
    assert response.status_code == 400


def test_wrong_iss_is_refused_and_never_contacted(make_app) -> None:
    app = make_app()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        response = app.client.get(
            "/launch?" + urlencode({"iss": f"http://127.0.0.1:{port}/fhir", "launch": "abc"})
        )
        assert response.status_code == 400
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected


def test_token_without_write_scope_makes_the_app_read_only(sandbox: Sandbox, make_app) -> None:
    app = make_app(granted_scope="patient/*.rs")
    sid = ehr_launch(sandbox, app, "carboplatin-ovarian")
    html = page(app, sid)
    assert "Read-only: the EHR did not grant write access" in html
    assert "Voss-Hartley" in html


def test_two_concurrent_launches_for_different_patients(sandbox: Sandbox, make_app) -> None:
    app = make_app("symmetric")
    first = ehr_launch_to_authorize(sandbox, app, "carboplatin-ovarian")
    second = ehr_launch_to_authorize(sandbox, app, "sjs-sulfonamide")
    second_query = authorize(second)
    first_query = authorize(first)
    sid_b = finish(app, second_query)
    sid_a = finish(app, first_query)
    page_a, page_b = page(app, sid_a), page(app, sid_b)
    assert "Voss-Hartley" in page_a and "Nakamura-Ellis" not in page_a
    assert "Nakamura-Ellis" in page_b and "Voss-Hartley" not in page_b
    assert "Contraindicated" in page_b and "Contraindicated" not in page_a


def test_entered_in_error_and_nka_fixtures(sandbox: Sandbox, make_app) -> None:
    app = make_app()
    edge = page(app, ehr_launch(sandbox, app, "allergy-status-edge"))
    table = edge.split("<table", 1)[1].split("</table>", 1)[0]
    assert "eftriaxone" not in table  # entered in error: hidden from the list...
    assert "entered in error" in edge  # ...and mentioned in the hidden-records note
    nka = page(app, ehr_launch(sandbox, app, "nka"))
    assert "No known allergies." in nka


def test_need_patient_banner_false(sandbox: Sandbox, make_app) -> None:
    app = make_app()
    launched = _no_redirect(sandbox.launch_url("nka", app=app.client_id, need_patient_banner="false"))
    response = app.client.get(_local(launched.headers["Location"]))
    html = page(app, finish(app, authorize(response.headers["Location"])))
    assert 'class="patient-banner"' not in html
    assert "Adeyemi-Brandt" in html  # still in the print-only line
