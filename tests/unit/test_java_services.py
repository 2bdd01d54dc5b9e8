"""How the Java services are configured (no Java needed): HAPI's database settings and the CLI's checks."""

from __future__ import annotations

import pytest

from fhir_desens.cli import main
from fhir_desens.errors import ConfigurationError
from fhir_desens.sandbox.java_services import HapiServerProcess, database_settings


def test_the_dialect_follows_the_database_url() -> None:
    assert database_settings("jdbc:postgresql://127.0.0.1:5432/fhir", "hapi") == {
        "spring.datasource.url": "jdbc:postgresql://127.0.0.1:5432/fhir",
        "fhir-desens.hibernate-dialect": "ca.uhn.fhir.jpa.model.dialect.HapiFhirPostgresDialect",
        "spring.datasource.username": "hapi",
    }
    h2 = database_settings("jdbc:h2:file:/tmp/ehr/h2")
    assert h2["fhir-desens.hibernate-dialect"].endswith("HapiFhirH2Dialect")


def test_an_unknown_database_is_refused_without_echoing_its_parameters() -> None:
    with pytest.raises(ConfigurationError) as info:
        database_settings("jdbc:mysql://db/fhir?password=hunter2")
    assert "jdbc:mysql://db/fhir" in str(info.value) and "hunter2" not in str(info.value)


def test_the_password_goes_in_the_environment_never_on_the_command_line() -> None:
    server = HapiServerProcess(
        database_url="jdbc:postgresql://127.0.0.1/fhir", database_user="hapi", database_password="s3cret"
    )
    assert server.environment == {"SPRING_DATASOURCE_PASSWORD": "s3cret"}
    assert not any("s3cret" in arg for arg in server._args)
    assert "--spring.datasource.username=hapi" in server._args


def test_fhir_server_hapi_needs_the_password_variable_it_names(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("NO_SUCH_PASSWORD_VARIABLE", raising=False)
    code = main(
        ["fhir-server", "--engine", "hapi", "--database", "jdbc:postgresql://127.0.0.1/fhir",
         "--database-password-env", "NO_SUCH_PASSWORD_VARIABLE"]
    )  # fmt: skip
    assert code != 0
    assert "NO_SUCH_PASSWORD_VARIABLE is not set" in capsys.readouterr().err
