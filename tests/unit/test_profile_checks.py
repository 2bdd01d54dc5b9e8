"""The Python side of our implementation guide: profile_checks, the UCUM check, and the committed files.

``profile_checks`` enforces what Medplum's validator misses (constraints below the top level, code
bindings, our extensions' content, UCUM, ``subjectCanonical``, references between steps). Every
check here has a passing and a failing case. The last part lints the committed StructureDefinitions
(the structural rules of ElementDefinition/StructureDefinition that Medplum does not evaluate).
No node needed, except for the test comparing our code tables with the R4 value sets.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_desens.fhir import canonical as c
from fhir_desens.fhir import profiles as p
from fhir_desens.fhir.apply import ApplyContext, apply_plan
from fhir_desens.fhir.plandefinition import (
    activity_definitions_from_protocol,
    library_bundle,
    plan_definition_from_protocol,
)
from fhir_desens.fhir.profiles import checks
from fhir_desens.fhir.profiles.element_index import frozen
from fhir_desens.io import json as fjson
from fhir_desens.protocol.calculate import PlanRequest, compute_plan
from fhir_desens.protocol.library import builtin_protocols
from fhir_desens.protocol.model import ClosingMethod, Evidence, ProtocolKind, ReactionRule, TargetKind
from fhir_desens.protocol.quantity import Quantity
from tests.conftest import REPO_ROOT, in_ci

PROFILES_DIR = REPO_ROOT / "profiles"
EXAMPLES_DIR = PROFILES_DIR / "examples"
AUTHORED = datetime(2026, 11, 23, 8, 30, tzinfo=timezone(timedelta(hours=-5)))


def load(name: str) -> dict[str, Any]:
    return fjson.load_path(EXAMPLES_DIR / name)


def errors(resource: Any, profile: str | None = None) -> list[dict[str, Any]]:
    return [i for i in p.profile_checks(resource, profile) if i["severity"] == "error"]


def texts(issues: list[dict[str, Any]]) -> str:
    return "\n".join(f"{i['expression'][0]}: {i['details']['text']}" for i in issues)


@pytest.fixture(scope="module")
def protocol_example() -> dict[str, Any]:
    return load("PlanDefinition-carboplatin-12-step-3-bag.json")


@pytest.fixture(scope="module")
def order_example() -> dict[str, Any]:
    return load("MedicationRequest-example-session-1-step-1.json")


@pytest.fixture(scope="module")
def session_example() -> dict[str, Any]:
    return load("RequestGroup-example-session-1.json")


@pytest.fixture(scope="module")
def activity_example() -> dict[str, Any]:
    return load("ActivityDefinition-carboplatin-12-step-3-bag-step-1.json")


def plan_bundle(protocol_id: str) -> dict[str, Any]:
    protocol = builtin_protocols()[protocol_id]
    target = None if protocol.fixed_doses else Quantity(Decimal(400), "mg")
    # a drug-specific protocol gives its own drug (DRUG-PROD-1); oral penicillin V declares no drug list
    default = "penicillin V potassium" if protocol_id == "penicillin-v-oral-wendel" else "carboplatin"
    plan = compute_plan(PlanRequest(protocol, (protocol.drugs or (default,))[0], target))
    return apply_plan(plan, ApplyContext("Patient/p1", "Practitioner/a1", authored=AUTHORED))


# --- what passes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(EXAMPLES_DIR.glob("*.json")), ids=lambda path: path.stem)
def test_every_example_passes_the_python_checks(path: Path) -> None:
    resource = fjson.load_path(path)
    assert resource["meta"]["profile"][0] in {spec.url for spec in p.PROFILES}
    assert p.profile_checks(resource) == []


@pytest.mark.parametrize("protocol", list(builtin_protocols().values()), ids=lambda protocol: protocol.id)
def test_the_mapping_of_every_builtin_protocol_passes(protocol) -> None:
    for resource in (plan_definition_from_protocol(protocol), *activity_definitions_from_protocol(protocol)):
        assert p.profile_checks(fjson.loads(fjson.dumps(resource))) == [], resource["id"]


@pytest.mark.parametrize("protocol_id", list(builtin_protocols()))
def test_the_apply_bundle_of_every_builtin_protocol_passes(protocol_id: str) -> None:
    bundle = fjson.loads(fjson.dumps(plan_bundle(protocol_id)))
    assert p.profile_checks(bundle) == []


# --- what fails (each a constraint Medplum does not enforce, unless noted) ------------------------

Damage = Callable[[dict[str, Any]], object]


def _step(resource: dict[str, Any], n: int) -> dict[str, Any]:
    step: dict[str, Any] = resource["action"][0]["action"][n]
    return step


def _settings(resource: dict[str, Any]) -> dict[str, Any]:
    return next(e for e in resource["extension"] if e["url"] == c.EXT_PROTOCOL_SETTINGS)


def _sub(extension: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in extension["extension"] if s["url"] == name)


PROTOCOL_DAMAGE: list[tuple[str, Damage, str, str]] = [
    (
        "no settings (Medplum catches it too)",
        lambda r: r.__setitem__(
            "extension", [e for e in r["extension"] if e["url"] != c.EXT_PROTOCOL_SETTINGS]
        ),
        "desens-protocol extension:settings: 0 value(s), at least 1 required",
        "PlanDefinition",
    ),
    (
        "relationship outside after-end | before-start",
        lambda r: _step(r, 3)["relatedAction"][0].__setitem__("relationship", "concurrent"),
        "'concurrent' is not in " + p.VS_STEP_RELATIONSHIP,
        "PlanDefinition.action[0].action[3].relatedAction[0].relationship",
    ),
    (
        "a step without the step extension",
        lambda r: _step(r, 2).pop("extension"),
        "action.action.extension:step: 0 value(s), at least 1 required",
        "PlanDefinition.action[0].action[2]",
    ),
    (
        "a step without its ActivityDefinition",
        lambda r: _step(r, 0).pop("definitionCanonical"),
        "action.action.definition[x]: 0 value(s), at least 1 required",
        "PlanDefinition.action[0].action[0]",
    ),
    (
        "a step timing that is not a Duration",
        lambda r: _step(r, 0).__setitem__("timingPeriod", {"start": "2026-01-01"}),
        "timingPeriod is not allowed here (use timingDuration)",
        "PlanDefinition.action[0].action[0].timingPeriod",
    ),
    (
        "a step with sub-actions",
        lambda r: _step(r, 0).__setitem__("action", [{"title": "x"}]),
        "action.action.action: 1 value(s), at most 0 allowed",
        "PlanDefinition.action[0].action[0]",
    ),
    (
        "an unknown protocol kind",
        lambda r: _sub(_settings(r), "kind").__setitem__("valueCode", "bolus"),
        "desens-protocol-settings extension:kind.value[x]: 'bolus' is not in " + c.VS_PROTOCOL_KIND,
        "PlanDefinition.extension[0].extension[0].valueCode",
    ),
    (
        "an unknown closing code",
        lambda r: _sub(_settings(r), "defaultClosing").__setitem__("valueCode", "half-bag"),
        "'half-bag' is not in " + c.VS_CLOSING_METHOD,
        "PlanDefinition.extension[0]",
    ),
    (
        "a misspelt sub-extension (closed slicing)",
        lambda r: _settings(r)["extension"].append({"url": "bagvolume", "valueString": "250"}),
        "unknown entry 'bagvolume'",
        "PlanDefinition.extension[0].extension[",
    ),
    (
        "a required sub-extension missing",
        lambda r: _settings(r).__setitem__(
            "extension", [s for s in _settings(r)["extension"] if s["url"] != "evidence"]
        ),
        "desens-protocol-settings extension:evidence: 0 value(s), at least 1 required",
        "PlanDefinition.extension[0]",
    ),
    (
        "a sub-extension with the wrong value type",
        lambda r: _sub(_settings(r), "route").__setitem__(
            "valueCode", _sub(_settings(r), "route").pop("valueString")
        ),
        "valueCode is not allowed here (use valueString)",
        "PlanDefinition.extension[0].extension[1].valueCode",
    ),
    (
        "a bag volume in litres",
        lambda r: _sub(_settings(r), "bagVolume")["valueQuantity"].update(
            {"value": 0.25, "code": "L", "unit": "L"}
        ),
        "does not match the required",
        "PlanDefinition.extension[0].extension[",
    ),
    (
        "a premedication offset in a non-UCUM unit",
        lambda r: next(e for e in r["extension"] if e["url"] == c.EXT_PREMEDICATION)["extension"][4][
            "valueDuration"
        ].__setitem__("code", "mins"),
        "'mins' is not a UCUM code",
        "valueDuration.code",
    ),
    (
        "the step extension on the PlanDefinition itself (wrong context)",
        lambda r: r["extension"].append(copy.deepcopy(_step(r, 0)["extension"][0])),
        "extension desens-step is not allowed on PlanDefinition",
        "PlanDefinition.extension[",
    ),
    (
        "an unknown fhir-desens extension",
        lambda r: r["extension"].append({"url": c.structure_definition("desens-typo"), "valueCode": "x"}),
        "unknown fhir-desens extension",
        "PlanDefinition.extension[",
    ),
    (
        "relatedAction to a step that does not exist",
        lambda r: _step(r, 5)["relatedAction"][0].__setitem__("actionId", "step-99"),
        "relatedAction.actionId 'step-99' names no action of this group",
        "PlanDefinition.action[0].action[5].relatedAction[0]",
    ),
    (
        "a step using an undefined solution",
        lambda r: _sub(_step(r, 0)["extension"][0], "solution").__setitem__("valuePositiveInt", 7),
        "step uses solution 7, which the protocol does not define",
        "PlanDefinition.action[0].action[0]",
    ),
    (
        "two solutions with the same number",
        lambda r: r["extension"].insert(1, copy.deepcopy(r["extension"][1])),
        "duplicate solution numbers",
        "PlanDefinition.extension",
    ),
    (
        "R4B-only subjectCanonical on a step",
        lambda r: _step(r, 0).__setitem__("subjectCanonical", "http://example.org/x"),
        "subjectCanonical is R4B-only",
        "PlanDefinition.action[0].action[0].subjectCanonical",
    ),
]


@pytest.mark.parametrize(
    ("damage", "message", "where"),
    [case[1:] for case in PROTOCOL_DAMAGE],
    ids=[case[0] for case in PROTOCOL_DAMAGE],
)
def test_a_damaged_protocol_fails(protocol_example, damage: Damage, message: str, where: str) -> None:
    resource = copy.deepcopy(protocol_example)
    damage(resource)
    found = errors(resource)
    assert any(message in i["details"]["text"] and where in i["expression"][0] for i in found), texts(found)


ORDER_DAMAGE: list[tuple[str, Damage, str]] = [
    (
        "no groupIdentifier (Medplum catches it too)",
        lambda r: r.pop("groupIdentifier"),
        "groupIdentifier: 0 value(s)",
    ),
    (
        "a groupIdentifier of another system",
        lambda r: r["groupIdentifier"].__setitem__("system", "urn:example:x"),
        "groupIdentifier: ",
    ),
    (
        "no step-order identifier",
        lambda r: r["identifier"][0].__setitem__("system", "urn:x"),
        "identifier:stepOrder",
    ),
    (
        "no step duration",
        lambda r: r["dosageInstruction"][0]["timing"]["repeat"].pop("duration"),
        "dosageInstruction.timing.repeat.duration: 0 value(s)",
    ),
    (
        "a duration unit outside units-of-time",
        lambda r: r["dosageInstruction"][0]["timing"]["repeat"].__setitem__("durationUnit", "minutes"),
        "'minutes' is not in " + p.VS_UNITS_OF_TIME,
    ),
    (
        "a dose without UCUM system",
        lambda r: r["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"].pop("system"),
        "dose[x].system: 0 value(s)",
    ),
    (
        "a dose in mcg (not UCUM)",
        lambda r: r["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"].__setitem__("code", "mcg"),
        "'mcg' is not a UCUM code",
    ),
    (
        "a dose range instead of a dose quantity",
        lambda r: r["dosageInstruction"][0]["doseAndRate"][0].__setitem__(
            "doseRange",
            r["dosageInstruction"][0]["doseAndRate"][0].pop("doseQuantity") and {"low": {"value": 1}},
        ),
        "doseRange is not allowed here (use doseQuantity)",
    ),
    ("intent plan (Medplum catches it too)", lambda r: r.__setitem__("intent", "plan"), 'intent: "plan"'),
]


@pytest.mark.parametrize(
    ("damage", "message"), [case[1:] for case in ORDER_DAMAGE], ids=[case[0] for case in ORDER_DAMAGE]
)
def test_a_damaged_step_order_fails(order_example, damage: Damage, message: str) -> None:
    resource = copy.deepcopy(order_example)
    damage(resource)
    assert any(message in i["details"]["text"] for i in errors(resource)), texts(errors(resource))


SESSION_DAMAGE: list[tuple[str, Damage, str]] = [
    (
        "a closing code outside the value set",
        lambda r: r["extension"][0].__setitem__("valueCode", "half-bag"),
        "'half-bag'",
    ),
    (
        "two closing methods",
        lambda r: r["extension"].append(copy.deepcopy(r["extension"][0])),
        "at most 1 allowed",
    ),
    ("an action without its order", lambda r: r["action"][4].pop("resource"), "action.resource: 0 value(s)"),
    (
        "an unknown relationship",
        lambda r: r["action"][1]["relatedAction"][0].__setitem__("relationship", "after"),
        "'after' is not in",
    ),
    ("no session identifier", lambda r: r.pop("identifier"), "identifier:session: 0 value(s)"),
]


@pytest.mark.parametrize(
    ("damage", "message"), [case[1:] for case in SESSION_DAMAGE], ids=[case[0] for case in SESSION_DAMAGE]
)
def test_a_damaged_session_fails(session_example, damage: Damage, message: str) -> None:
    resource = copy.deepcopy(session_example)
    damage(resource)
    assert any(message in i["details"]["text"] for i in errors(resource)), texts(errors(resource))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: r.__setitem__("kind", "ServiceRequest"), 'kind: "ServiceRequest"'),
        (lambda r: r["dosage"][0].pop("timing"), "dosage.timing: 0 value(s)"),
        (lambda r: r.__setitem__("dosage", r["dosage"] * 2), "dosage: 2 value(s), at most 1"),
    ],
    ids=["kind", "no timing", "two dosages"],
)
def test_a_damaged_step_activity_fails(activity_example, damage: Damage, message: str) -> None:
    resource = copy.deepcopy(activity_example)
    damage(resource)
    assert any(message in i["details"]["text"] for i in errors(resource)), texts(errors(resource))


def test_settings_and_closing_extensions_that_disagree_are_a_warning(protocol_example) -> None:
    resource = copy.deepcopy(protocol_example)
    _settings(resource)["extension"].append({"url": "closingMethod", "valueCode": "fraction-bags"})
    issues = p.profile_checks(resource)
    assert [i["severity"] for i in issues] == ["warning"]
    assert "differ" in issues[0]["details"]["text"]


# --- which profiles apply -------------------------------------------------------------------------


def test_profiles_come_from_meta_or_from_the_argument(protocol_example) -> None:
    resource = copy.deepcopy(protocol_example)
    resource.pop("meta")
    resource.pop("publisher")
    assert errors(resource) == []  # no profile declared: only the profile-independent checks
    assert "publisher: 0 value(s)" in texts(errors(resource, c.PROFILE_PROTOCOL))
    assert "publisher: 0 value(s)" in texts(errors(resource, c.PROFILE_PROTOCOL + "|" + c.IG_VERSION))


def test_a_profile_for_another_type_or_not_ours_is_an_error(order_example) -> None:
    assert "is for PlanDefinition, not MedicationRequest" in texts(errors(order_example, c.PROFILE_PROTOCOL))
    assert "not a fhir-desens profile" in texts(
        errors(order_example, "http://example.org/StructureDefinition/x")
    )


def test_extensions_are_checked_without_any_profile(session_example) -> None:
    resource = copy.deepcopy(session_example)
    resource.pop("meta")
    resource["extension"][0]["valueCode"] = "half-bag"
    assert "'half-bag'" in texts(errors(resource))


def test_bundle_entries_are_checked_with_their_own_profiles() -> None:
    bundle = fjson.loads(fjson.dumps(plan_bundle("iv-12-step-3-bag")))
    bundle["entry"][0]["resource"]["intent"] = "plan"
    found = errors(bundle)
    assert found
    assert found[0]["expression"][0] == "Bundle.entry[0].resource.intent"
    library = fjson.loads(fjson.dumps(library_bundle(list(builtin_protocols().values()))))
    assert p.profile_checks(library) == []


JUNK_KEYS = ["resourceType", "extension", "url", "action", "meta", "profile", "valueCode", "valueQuantity", "system",
             "code", "relatedAction", "actionId", "entry", "resource", "identifier", "timingDuration",
             "dosageInstruction", "doseAndRate", "doseQuantity", "valuePositiveInt"]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(
                st.sampled_from(JUNK_KEYS),
                children,
                max_size=4,
            )
        ),
        max_leaves=12,
    )
)
def test_profile_checks_never_raise(junk: Any) -> None:
    p.profile_checks(junk)
    if isinstance(junk, dict):
        for resource_type in ("PlanDefinition", "RequestGroup", "MedicationRequest", "Bundle"):
            p.profile_checks({**junk, "resourceType": resource_type}, None)
            p.profile_checks(
                {**junk, "resourceType": resource_type, "meta": {"profile": [s.url for s in p.PROFILES]}}
            )


# --- UCUM ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    ["mg", "g", "ug", "mL", "L", "mL/h", "min", "h", "[iU]", "[iU]/mL", "mg/mL", "ug/mL", "{unit}", "{bag}",
     "mg/kg", "mg/m2", "10*3/uL", "/min", "mg/(kg.d)", "%", "mL/min/{1.73_m2}", "1", "kg.m-2", "U/L", "mmol/L"],
)  # fmt: skip
def test_ucum_codes_we_accept(code: str) -> None:
    assert p.ucum_problem(code) is None


@pytest.mark.parametrize(
    "code",
    ["mcg", "units", "IU", "hr", "mL/hr", "cc", "", "mg/", "(mg", "mg mL", "mg//mL", "ml/h ", "mg)", "./mg"],
)
def test_ucum_codes_we_refuse(code: str) -> None:
    assert p.ucum_problem(code) is not None


# --- terminology ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "enum"),
    [
        (c.CS_CLOSING_METHOD, ClosingMethod),
        (c.CS_PROTOCOL_KIND, ProtocolKind),
        (c.CS_TARGET_KIND, TargetKind),
        (c.CS_EVIDENCE, Evidence),
        (c.CS_REACTION_RULE, ReactionRule),
    ],
)
def test_code_systems_are_the_engine_enums(url: str, enum: Any) -> None:
    spec = next(cs for cs in p.CODE_SYSTEMS if cs.url == url)
    assert [k.code for k in spec.concepts] == [member.value for member in enum]


def test_dose_dimensions_of_every_protocol_are_in_the_code_system() -> None:
    codes = p.value_set_codes(p.VS_DOSE_DIMENSION)
    assert codes == {"mass", "activity"}
    assert {d.value for proto in builtin_protocols().values() for d in proto.dose_dimensions} <= codes


def test_every_value_set_and_binding_is_ours_or_known() -> None:
    for spec in p.VALUE_SETS:
        assert p.value_set_codes(spec.url), spec.url
    bindings = [
        e["binding"]["valueSet"]
        for elements in [
            *(s.elements for s in p.PROFILES),
            *(p.extension_differential(x) for x in p.EXTENSIONS),
        ]
        for e in elements
        if "binding" in e
    ]
    assert bindings
    assert all(p.value_set_codes(url) for url in bindings)


def test_hl7_code_tables_match_the_r4_definitions() -> None:
    valuesets = p.default_definitions_dir() / "valuesets.json"
    if not valuesets.is_file():
        if in_ci():
            pytest.fail(f"CI=true but {valuesets} is missing (make node)")
        pytest.skip(f"{valuesets} is absent: run `make node`")
    bundle = json.loads(valuesets.read_text("utf-8"))
    code_systems = {
        e["resource"]["url"]: e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "CodeSystem"
    }
    value_set = next(e["resource"] for e in bundle["entry"] if e["resource"].get("url") == p.VS_UNITS_OF_TIME)
    listed = {k["code"] for inc in value_set["compose"]["include"] for k in inc.get("concept", [])}
    assert listed == p.HL7_VALUE_SET_CODES[p.VS_UNITS_OF_TIME]
    relationship = code_systems[p.ACTION_RELATIONSHIP]
    displays = {k["code"]: k["display"] for k in relationship["concept"]}
    step = next(vs for vs in p.VALUE_SETS if vs.url == p.VS_STEP_RELATIONSHIP)
    assert {k.code: k.display for k in step.codes} == {k: displays[k] for k in ("after-end", "before-start")}


# --- the committed StructureDefinitions, linted ---------------------------------------------------------


def committed(kind: str) -> list[dict[str, Any]]:
    return [json.loads(path.read_text("utf-8")) for path in sorted(PROFILES_DIR.glob(f"{kind}-*.json"))]


def test_the_committed_guide_lists_exactly_our_artifacts() -> None:
    urls = {sd["url"] for sd in committed("StructureDefinition")}
    assert urls == {s.url for s in p.PROFILES} | {x.url for x in p.EXTENSIONS}
    assert {cs["url"] for cs in committed("CodeSystem")} == {s.url for s in p.CODE_SYSTEMS}
    assert {vs["url"] for vs in committed("ValueSet")} == {s.url for s in p.VALUE_SETS}
    for url in (c.VS_CLOSING_METHOD, c.VS_PROTOCOL_KIND, c.VS_REACTION_GRADE, c.VS_REACTION_PHENOTYPE):
        assert url in {vs["url"] for vs in committed("ValueSet")}
    package = json.loads((PROFILES_DIR / "package.json").read_text("utf-8"))
    assert (package["name"], package["version"], package["canonical"], package["fhirVersions"]) == (
        c.IG_PACKAGE_NAME,
        c.IG_VERSION,
        c.CANONICAL_BASE,
        ["4.0.1"],
    )
    index = json.loads((PROFILES_DIR / ".index.json").read_text("utf-8"))
    assert {f["filename"] for f in index["files"]} == {
        path.name for path in PROFILES_DIR.glob("*-*.json") if not path.name.startswith(".")
    }


@pytest.mark.parametrize("sd", committed("StructureDefinition"), ids=lambda sd: sd["id"])
def test_structure_definitions_are_well_formed(sd: dict[str, Any]) -> None:
    assert (sd["fhirVersion"], sd["version"], sd["status"], sd["publisher"], sd["derivation"]) == (
        "4.0.1",
        c.IG_VERSION,
        "active",
        "fhir-desens",
        "constraint",
    )
    snapshot = sd["snapshot"]["element"]
    ids = [e["id"] for e in snapshot]
    assert len(ids) == len(set(ids)), "sdf-16: unique ids"
    assert snapshot[0]["path"] == sd["type"] and "type" not in snapshot[0]
    assert not {"label", "code", "requirements"} & set(snapshot[0]), "sdf-9"
    by_id = {e["id"]: e for e in snapshot}
    declared = {m["identity"] for m in sd.get("mapping", [])}
    for element in snapshot:
        assert element["path"] == ".".join(s.split(":")[0] for s in element["id"].split(".")), element["id"]
        assert element["path"].startswith(sd["type"]), "sdf-8"
        assert {"definition", "min", "max"} <= set(element), f"sdf-3: {element['id']}"
        assert element["min"] <= (float("inf") if element["max"] == "*" else int(element["max"])), "eld-2"
        fixed = [k for k in element if k.startswith(("fixed", "pattern"))]
        assert not fixed or len(element.get("type", [])) == 1, f"eld-6/7: {element['id']}"
        assert not ("contentReference" in element and "type" in element), "eld-5"
        assert {m["identity"] for m in element.get("mapping", [])} <= declared
        assert not any(
            t["code"] == "Meta" for t in element.get("type", []) if element["path"].endswith("value[x]")
        )
        last = element["id"].rsplit(".", 1)[-1]
        if ":" in last:
            assert element["sliceName"] == last.split(":")[1]
            sliced = by_id[element["id"].rsplit(":", 1)[0]]
            assert "slicing" in sliced, f"{element['id']}: slice of an unsliced element"
            if element.get("type", [{}])[0].get("profile"):  # an extension slice: Medplum needs its url
                assert by_id[element["id"] + ".url"]["fixedUri"] == element["type"][0]["profile"][0]
        if element.get("binding", {}).get("valueSet", "").startswith(c.CANONICAL_BASE):
            assert p.value_set_codes(element["binding"]["valueSet"]), element["id"]
        for t in element.get("type", []):
            for url in [*t.get("profile", []), *t.get("targetProfile", [])]:
                if url.startswith(c.CANONICAL_BASE):
                    assert (PROFILES_DIR / f"StructureDefinition-{url.rsplit('/', 1)[1]}.json").is_file()
    for diff in sd["differential"]["element"]:
        target = by_id[diff["id"]]
        for key, value in diff.items():
            if key != "constraint":
                assert target[key] == value, f"{diff['id']}.{key}"
    order = [ids.index(d["id"]) for d in sd["differential"]["element"]]
    assert order == sorted(order), "the differential is in snapshot order"
    if sd["type"] == "Extension":
        assert sd["context"]
        assert by_id["Extension.url"]["fixedUri"] == sd["url"]


def test_every_extension_is_used_in_context_by_an_example() -> None:
    used: set[str] = set()
    for path in EXAMPLES_DIR.glob("*.json"):
        text = path.read_text("utf-8")
        used |= {x.url for x in p.EXTENSIONS if f'"url": "{x.url}"' in text}
    assert used == {x.url for x in p.EXTENSIONS}


# --- each distinct extension is checked once (a package repeats them in every version) ------------


def test_the_same_damaged_extension_at_two_places_is_reported_at_each(
    protocol_example: dict[str, Any],
) -> None:
    resource = copy.deepcopy(protocol_example)
    for n in (1, 4):
        step_extension = next(e for e in _step(resource, n)["extension"] if e["url"] == c.EXT_STEP)
        step_extension["extension"].append({"url": "unknown-sub", "valueString": "x"})
    first = [i["expression"][0] for i in errors(resource)]
    assert len(first) == 2 and first[0].startswith("PlanDefinition.action[0].action[1].extension[")
    assert first[1].startswith("PlanDefinition.action[0].action[4].extension[")
    again = errors(resource)  # from the cache now: fresh issues, same places
    assert again == errors(copy.deepcopy(resource)) and [i["expression"][0] for i in again] == first
    again[0]["details"]["text"] = "changed by a caller"
    assert errors(resource)[0]["details"]["text"] != "changed by a caller"


def test_an_extension_that_differs_in_one_value_is_checked_again(protocol_example: dict[str, Any]) -> None:
    resource = copy.deepcopy(protocol_example)
    assert errors(resource) == []
    quantity = next(
        node
        for node, _expression, _path in checks._walk(resource, "PlanDefinition", "")
        if node.get("system") == c.UCUM and ".extension" in _expression
    )
    quantity["code"] = "mcgg"
    assert "'mcgg' is not a UCUM code" in texts(errors(resource))


def test_cache_keys_keep_types_and_spellings_apart() -> None:
    keys = {frozen(v) for v in (Decimal("1.0"), Decimal("1"), "1.0", "1", 1, 1.0, True, None)}
    assert len(keys) == 8
    assert frozen({"a": [1, {"b": "x"}]}) == frozen({"a": [1, {"b": "x"}]})
