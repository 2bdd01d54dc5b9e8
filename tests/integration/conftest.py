"""Fixtures for tests that talk to a real FHIR server process (fhir_desens/sandbox/fhir_server).

Use them from any test under ``tests/integration`` (every test collected here is marked
``integration`` automatically):

``fhir_server``
    Session-wide :class:`~fhir_desens.sandbox.fhir_server.FhirServerProcess` on a free port of
    127.0.0.1, stopped at the end of the session. Its data is shared by every test of the session,
    so give your resources unique identifiers (``unique_system``) and search by them, never by
    "all Patients".
``fhir_base_url``
    ``fhir_server.base_url``, e.g. ``http://127.0.0.1:40123/fhir/R4``.
``fhir_client``
    A fresh :class:`~fhir_desens.client.fhir_rest.FhirClient` on that server (no auth), closed after
    the test.
``fhir_server_factory``
    ``start(**options) -> FhirServerProcess`` for a server of your own (e.g. with
    ``profiles_dir=...``, ``max_body_bytes=...``, ``declared_profiles="enforce"``); every server it
    started is stopped after the test. A start costs about one second.
``unique_system``
    A fresh ``urn:uuid:...`` identifier system to tag a test's resources.
``http``
    A ``requests.Session`` accepting FHIR JSON, for raw-HTTP tests (helpers in ``fhir_wire.py``).

Without Node 20 or the npm packages (``make node``) these fixtures skip the test locally and fail it
when ``CI=true``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.errors import ConfigurationError, FhirServerError
from fhir_desens.sandbox.fhir_server import FhirServerProcess
from tests.conftest import in_ci
from tests.integration.fhir_wire import FHIR_JSON

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)


#: The session's HAPI runs Clinical Reasoning's $apply too (test_reference_apply.py compares it with ours).
SESSION_HAPI_SETTINGS = {"fhir-desens.clinical-reasoning": "true"}

#: HAPI launched as soon as the tests are collected, so that its slow start-up (1-6 min on the shared
#: machine) overlaps the unit and app tests; :func:`hapi_server` waits for it.
_EARLY: dict[str, Any] = {}


def _needs_hapi(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    return "hapi_server" in getattr(item, "fixturenames", ()) or (
        callspec is not None and "hapi" in callspec.params.values()
    )


def pytest_collection_finish(session: pytest.Session) -> None:
    if os.environ.get("FHIR_DESENS_HAPI_URL") or not any(_needs_hapi(i) for i in session.items):
        return
    from fhir_desens.sandbox.java_services import HapiServerProcess, find_java

    try:
        find_java()
        server = HapiServerProcess(settings=SESSION_HAPI_SETTINGS)
        server.launch()
    except ConfigurationError:
        return  # the fixture says why (skip locally, fail in CI)
    _EARLY["hapi"] = server


def _start(server: FhirServerProcess) -> FhirServerProcess:
    try:
        server.start()
    except ConfigurationError as error:
        if in_ci():
            pytest.fail(f"CI=true but the FHIR server cannot run: {error}")
        pytest.skip(f"FHIR server unavailable: {error}")
    return server


@pytest.fixture(scope="session")
def fhir_server() -> Iterator[FhirServerProcess]:
    """The shared FHIR server process (127.0.0.1, free port), for the whole session."""
    server = _start(FhirServerProcess(port=0))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def fhir_base_url(fhir_server: FhirServerProcess) -> str:
    return fhir_server.base_url


@pytest.fixture
def fhir_client(fhir_base_url: str) -> Iterator[FhirClient]:
    """A FhirClient on the shared server, without auth."""
    with FhirClient(fhir_base_url) as client:
        yield client


@pytest.fixture
def fhir_server_factory() -> Iterator[Callable[..., FhirServerProcess]]:
    """Start extra servers with their own options; all are stopped after the test."""
    started: list[FhirServerProcess] = []

    def start(**options: Any) -> FhirServerProcess:
        server = FhirServerProcess(**{"port": 0, **options})
        started.append(server)
        return _start(server)

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def unique_system() -> str:
    """A fresh identifier system: tag your resources with it and search with ``identifier=<system>|``."""
    return f"urn:uuid:{uuid.uuid4()}"


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """A ``requests`` session that accepts FHIR JSON, for raw-HTTP tests (helpers in fhir_wire.py)."""
    with requests.Session() as session:
        session.headers["Accept"] = FHIR_JSON
        yield session


# --- the Java services (java/, built by `make java`) ---------------------------------------------
# The HL7 validator service and HAPI FHIR JPA start slowly (tens of seconds): one of each per session.
# Without Java or without the build they skip locally and fail when CI=true.


def _start_java(service: Any) -> Any:
    from fhir_desens.sandbox.java_services import find_java

    try:
        find_java()
        service.start()
    except ConfigurationError as error:
        if in_ci():
            pytest.fail(f"CI=true but the Java service cannot run: {error}")
        pytest.skip(f"Java service unavailable: {error}")
    return service


@pytest.fixture(scope="session")
def hl7_validator_url() -> Iterator[str]:
    """The HL7 validator service (our guide loaded) for the whole session; its base URL.

    ``FHIR_DESENS_HL7_VALIDATOR=<url>`` reuses a running one (``fhir-desens hl7-validator``)."""
    from fhir_desens.sandbox.java_services import Hl7ValidatorProcess

    if os.environ.get("FHIR_DESENS_HL7_VALIDATOR"):
        yield os.environ["FHIR_DESENS_HL7_VALIDATOR"]
        return

    service = _start_java(Hl7ValidatorProcess())
    try:
        yield service.url
    finally:
        service.stop()


@pytest.fixture(scope="session")
def hapi_server() -> Iterator[Any]:
    """HAPI FHIR JPA (R4, H2 in memory, Clinical Reasoning on) for the whole session (``.url`` is its base).

    ``FHIR_DESENS_HAPI_URL=<base>`` reuses a running one (started with `fhir-desens fhir-server --engine hapi`)."""
    from types import SimpleNamespace

    from fhir_desens.sandbox.java_services import HapiServerProcess

    if os.environ.get("FHIR_DESENS_HAPI_URL"):
        yield SimpleNamespace(url=os.environ["FHIR_DESENS_HAPI_URL"])
        return

    early = _EARLY.pop("hapi", None)
    if early is not None:
        try:
            early.wait_ready()
        except FhirServerError as error:
            if in_ci():
                pytest.fail(f"CI=true but HAPI did not start: {error}")
            pytest.skip(f"HAPI did not start: {error}")
    server = early or _start_java(HapiServerProcess(settings=SESSION_HAPI_SETTINGS))
    try:
        yield server
    finally:
        server.stop()


#: Point the server-parametrised tests at a FHIR server of your own as well (a base URL, no auth).
EXTERNAL_SERVER_VARIABLE = "FHIR_DESENS_TEST_SERVER"
SERVER_KINDS = ["medplum", "hapi", *(["external"] if os.environ.get(EXTERNAL_SERVER_VARIABLE) else [])]


@pytest.fixture(params=SERVER_KINDS)
def server_base_url(request: pytest.FixtureRequest) -> str:
    """The base URL of each FHIR server the contract tests run against: Medplum's engine, HAPI FHIR
    JPA, and ``$FHIR_DESENS_TEST_SERVER`` when set. Tests using it must hold on any FHIR R4 server."""
    if request.param == "medplum":
        return str(request.getfixturevalue("fhir_base_url"))
    if request.param == "hapi":
        return str(request.getfixturevalue("hapi_server").url)
    return os.environ[EXTERNAL_SERVER_VARIABLE]


@pytest.fixture
def server_client(server_base_url: str) -> Iterator[FhirClient]:
    """A FhirClient (no auth) on each server of :func:`server_base_url`."""
    with FhirClient(server_base_url) as client:
        yield client
