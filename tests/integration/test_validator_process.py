"""Medplum's validator kept warm (fhir_desens/sandbox/validator_process.py): one node process answers
many calls with the same outcomes as a one-shot ``validate.cjs`` run, and is started again after it dies."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fhir_desens.errors import ConfigurationError
from fhir_desens.sandbox.fhir_server import validate_resources
from fhir_desens.sandbox.validator_process import ValidatorProcess
from tests.conftest import in_ci

VALID = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1970-01-01"}
INVALID = {"resourceType": "Patient", "id": "p2", "birthDate": "the seventies"}


def errors(outcome: dict) -> list[dict]:
    return [i for i in outcome.get("issue", []) if i.get("severity") in ("error", "fatal")]


@pytest.fixture
def validator() -> Iterator[ValidatorProcess]:
    process = ValidatorProcess()
    try:
        process.validate([VALID])
    except ConfigurationError as error:
        if in_ci():
            pytest.fail(f"CI=true but node cannot run: {error}")
        pytest.skip(str(error))
    yield process
    process.stop()


def test_one_process_answers_every_call_as_a_one_shot_run_does(validator: ValidatorProcess) -> None:
    warm = [validator.validate([VALID, INVALID]) for _ in range(3)]
    one_shot = validate_resources([VALID, INVALID])
    assert validator.starts == 1
    for outcomes in warm:
        assert [len(errors(o)) for o in outcomes] == [len(errors(o)) for o in one_shot]
        assert errors(outcomes[0]) == [] and errors(outcomes[1]) != []
    assert validator.validate([]) == []


def test_a_dead_process_is_started_again(validator: ValidatorProcess) -> None:
    assert validator._process is not None
    validator._process.kill()
    validator._process.wait()
    assert errors(validator.validate([VALID])[0]) == []
    assert validator.starts == 2
