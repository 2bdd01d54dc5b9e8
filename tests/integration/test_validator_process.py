"""Medplum's validator kept warm (fhir_desens/sandbox/validator_process.py): one node process answers
many calls with the same outcomes as a one-shot ``validate.cjs`` run, and is started again after it dies."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator

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


def _library() -> list[dict]:
    from fhir_desens.exchange.load import load_bytes
    from fhir_desens.fhir.plandefinition import library_bundle
    from fhir_desens.io.formats import write_resource
    from fhir_desens.protocol.library import builtin_protocols

    bundle = write_resource(library_bundle(list(builtin_protocols().values())), "json")
    return [item.resource for item in load_bytes(bundle, "library.json")]


def _changed(resource: dict, change: Callable[[dict], object]) -> dict:
    copied = copy.deepcopy(resource)
    change(copied)
    return copied


def test_the_scripts_shortcuts_give_the_outcomes_of_medplum_as_shipped() -> None:
    """validate.cjs parses each profile once and a resource type's definition when first met; Medplum
    as shipped parses every definition at start-up and a profile again for every resource."""
    from fhir_desens.fhir.profiles import default_profiles_dir

    library = _library()
    plan = next(r for r in library if r["resourceType"] == "PlanDefinition")
    step = next(r for r in library if r["resourceType"] == "ActivityDefinition")
    broken = {  # what only our profiles require, R4 errors, and a contained resource of the profiled type
        "PlanDefinition.url": _changed(plan, lambda r: r.pop("url")),
        "PlanDefinition.action": _changed(plan, lambda r: r.pop("action")),
        "ActivityDefinition.kind": _changed(step, lambda r: r.pop("kind")),
        "ActivityDefinition.dosage": _changed(step, lambda r: r.pop("dosage")),
        "duration": _changed(step, lambda r: r["dosage"][0]["timing"]["repeat"].update(duration="90")),
        "bogus": _changed(step, lambda r: r["dosage"][0].update(bogus=1)),
        "contained": _changed(
            plan, lambda r: r.update(contained=[{"resourceType": "PlanDefinition", "id": "c", "bogus": 1}])
        ),
        "other types inside": _changed(
            step, lambda r: r.update(contained=[INVALID, {"resourceType": "Nope"}])
        ),
        "a Bundle of types not met yet": {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [
                {"resource": VALID},
                {
                    "resource": {
                        "resourceType": "Observation",
                        "status": "final",
                        "code": {"text": "x"},
                        "y": 1,
                    }
                },
                {"resource": {"resourceType": "Medication", "code": {"coding": "not a list"}}},
            ],
        },
        "an unknown type": {"resourceType": "Protocol", "id": "x"},
    }
    folder = default_profiles_dir()
    try:
        with (
            ValidatorProcess(folder, "enforce") as cached,
            ValidatorProcess(folder, "enforce", reference=True) as reference,
            ValidatorProcess(folder, "ignore") as r4_only,
        ):
            outcomes = cached.validate([*library, *broken.values()])
            assert outcomes == reference.validate([*library, *broken.values()])
            without_profiles = r4_only.validate(list(broken.values()))
    except ConfigurationError as error:
        if in_ci():
            pytest.fail(f"CI=true but node cannot run: {error}")
        pytest.skip(str(error))
    assert all(errors(o) == [] for o in outcomes[: len(library)])
    for (where, _), outcome, r4_outcome in zip(
        broken.items(), outcomes[len(library) :], without_profiles, strict=True
    ):
        assert errors(outcome), where
        if where.startswith(("PlanDefinition.", "ActivityDefinition.")):  # our profiles' own rules
            assert [i["expression"] for i in errors(outcome)] == [[where]]
            assert errors(r4_outcome) == []
