"""HAPI FHIR JPA on PostgreSQL (Debian's, a throwaway cluster from tests/services.py): what was written is
still there, unchanged, after the server is stopped and started again on the same database.

Two HAPI start-ups (about a minute each, more under load): the one slow test of its kind.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.sandbox.java_services import HapiServerProcess
from tests.integration.conftest import _start_java


@pytest.fixture
def hapi_database(postgres_url: str) -> Iterator[str]:
    """A fresh database in the session's PostgreSQL cluster, as a JDBC URL."""
    import psycopg

    name = f"hapi_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    address = postgres_url.split("@", 1)[1].rsplit("/", 1)[0]  # 127.0.0.1:PORT
    try:
        yield f"jdbc:postgresql://{address}/{name}"
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def on_postgres(jdbc_url: str) -> Any:
    return _start_java(HapiServerProcess(database_url=jdbc_url, database_user="postgres"))


@pytest.mark.timeout(1200)
def test_hapi_on_postgresql_keeps_its_data_across_a_restart(hapi_database: str) -> None:
    patient = {"resourceType": "Patient", "identifier": [{"system": "urn:fhir-desens:pg", "value": "1"}]}
    dose = Decimal("0.1234567890123456")
    server = on_postgres(hapi_database)
    try:
        with FhirClient(server.url) as client:
            created = client.create(patient)
            observation = client.create(
                {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "step dose"},
                    "subject": {"reference": created.reference},
                    "valueQuantity": {"value": dose, "unit": "mg"},
                }
            )
            updated = client.update({**created.resource, "active": True}, if_match=created.version_id)
    finally:
        server.stop()

    again = on_postgres(hapi_database)
    try:
        with FhirClient(again.url) as client:
            read = client.read("Patient", created.id)
            assert read.version_id == updated.version_id == "2" and read.resource["active"] is True
            stored = client.read("Observation", observation.id).resource
            assert str(stored["valueQuantity"]["value"]) == str(dose)
            found = client.search_all("Patient", {"identifier": "urn:fhir-desens:pg|1"})
            assert [p["id"] for p in found] == [created.id]  # the search index came back too
    finally:
        again.stop()
