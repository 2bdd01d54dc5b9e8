"""Protocol <-> PlanDefinition: lossless in memory, through FHIR JSON text and through FHIR XML."""

from __future__ import annotations

import copy
from itertools import pairwise

import pytest

from fhir_desens.errors import MappingError
from fhir_desens.fhir import canonical as c
from fhir_desens.fhir.models import try_parse
from fhir_desens.fhir.plandefinition import (
    activity_definitions_from_protocol,
    library_bundle,
    plan_definition_from_protocol,
    protocol_from_plan_definition,
)
from fhir_desens.io import json as fjson
from fhir_desens.io.xml import json_to_xml, xml_to_json
from fhir_desens.protocol.library import builtin_protocols

PROTOCOLS = list(builtin_protocols().values())
IDS = [p.id for p in PROTOCOLS]


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=IDS)
def test_lossless_in_memory_json_and_xml(protocol):
    resource = plan_definition_from_protocol(protocol)
    assert protocol_from_plan_definition(resource) == protocol
    via_json = fjson.loads(fjson.dumps(resource))
    assert protocol_from_plan_definition(via_json) == protocol
    via_xml = xml_to_json(json_to_xml(resource))
    assert protocol_from_plan_definition(via_xml) == protocol


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=IDS)
def test_emitted_resources_parse_with_r4b_models(protocol):
    for resource in (plan_definition_from_protocol(protocol), *activity_definitions_from_protocol(protocol)):
        model, issues = try_parse(fjson.loads(fjson.dumps(resource)))
        assert model is not None, issues
        assert "subjectCanonical" not in fjson.dumps(resource)


def test_steps_are_sequenced_after_end_with_rates_in_ucum():
    protocol = builtin_protocols()["iv-one-solution-rate-escalation"]
    resource = plan_definition_from_protocol(protocol)
    steps = resource["action"][0]["action"]
    assert steps[1]["relatedAction"] == [{"actionId": "step-1", "relationship": "after-end"}]
    assert steps[0]["timingDuration"]["code"] == "min"
    activity = activity_definitions_from_protocol(protocol)[0]
    rate = activity["dosage"][0]["doseAndRate"][0]["rateQuantity"]
    assert (rate["system"], rate["code"], rate["value"]) == (c.UCUM, "mL/h", 5)
    assert steps[0]["definitionCanonical"] == f"{activity['url']}|{activity['version']}"


def test_before_start_chains_are_accepted_on_import():
    protocol = builtin_protocols()["iv-12-step-3-bag"]
    resource = copy.deepcopy(plan_definition_from_protocol(protocol))
    steps = resource["action"][0]["action"]
    for earlier, later in pairwise(steps):
        later.pop("relatedAction")
        earlier["relatedAction"] = [{"actionId": later["id"], "relationship": "before-start"}]
    steps.reverse()  # document order no longer matters: the chain does
    assert protocol_from_plan_definition(resource) == protocol


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: r.pop("url"), "url"),
        (
            lambda r: r.__setitem__(
                "extension", [e for e in r["extension"] if e["url"] != c.EXT_PROTOCOL_SETTINGS]
            ),
            "exactly one",
        ),
        (
            lambda r: r["action"][0]["action"][3].__setitem__(
                "relatedAction", [{"actionId": "step-9", "relationship": "concurrent"}]
            ),
            "relationship",
        ),
        (
            lambda r: r["action"][0]["action"][5].__setitem__(
                "relatedAction", [{"actionId": "nope", "relationship": "after-end"}]
            ),
            "unknown action",
        ),
        (lambda r: r["action"][0]["action"][0]["extension"].clear(), "exactly one"),
        (lambda r: r.__setitem__("resourceType", "ActivityDefinition"), "PlanDefinition"),
    ],
)
def test_broken_plan_definitions_are_refused_with_a_reason(damage, message):
    resource = copy.deepcopy(plan_definition_from_protocol(builtin_protocols()["iv-12-step-3-bag"]))
    damage(resource)
    with pytest.raises(MappingError, match=message):
        protocol_from_plan_definition(resource)


def test_library_bundle_is_a_collection_of_protocols_and_activities():
    bundle = library_bundle(PROTOCOLS)
    assert bundle["type"] == "collection"
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds.count("PlanDefinition") == len(PROTOCOLS)
    assert kinds.count("ActivityDefinition") == sum(len(p.steps) for p in PROTOCOLS)
