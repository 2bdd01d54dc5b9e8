"""Validation of exchange inputs without node: loading, our profiles, and the clinical layer.

The structural layer (Medplum's validator) is injected here as a fake, to check how its outcomes are
reported; tests/integration/test_exchange.py runs the real one through the CLI.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from fhir_desens.errors import FhirFormatError, ValidationFailed
from fhir_desens.exchange.consistency import agrees, text_statements
from fhir_desens.exchange.library import read_protocols
from fhir_desens.exchange.load import Loaded, load_bytes, load_path
from fhir_desens.exchange.package import package_protocols
from fhir_desens.exchange.validate import ValidationReport, validate_loaded, validate_paths
from fhir_desens.fhir import canonical as c
from fhir_desens.fhir.plandefinition import library_bundle
from fhir_desens.io.formats import Format, write_resource
from fhir_desens.protocol.calculate import PlanRequest, compute_plan
from fhir_desens.protocol.library import builtin_protocols, get_protocol
from fhir_desens.protocol.quantity import Quantity, display

UCUM = c.UCUM


def loaded_library(*protocol_ids: str, fmt: Format = "json") -> list[Loaded]:
    protocols = [get_protocol(p) for p in protocol_ids] or list(builtin_protocols().values())
    return load_bytes(write_resource(library_bundle(protocols), fmt), f"library.{fmt}")


def resource(loaded: Sequence[Loaded], resource_id: str) -> dict[str, Any]:
    return next(item.resource for item in loaded if item.resource.get("id") == resource_id)


def step_extension(plan_definition: dict[str, Any], index: int) -> list[dict[str, Any]]:
    extensions: list[dict[str, Any]] = plan_definition["action"][0]["action"][index]["extension"][0][
        "extension"
    ]
    return extensions


def check(loaded: Sequence[Loaded]) -> ValidationReport:
    return validate_loaded(loaded, structural=None)


def rules(report: ValidationReport, severity: str = "error") -> list[str | None]:
    return [issue.rule for issue in report.issues if issue.severity == severity]


# --- the agreement rule and the statements read from text ---------------------------------------


@pytest.mark.parametrize(
    ("stated", "exact", "expected"),
    [
        ("1845.362", "1845.3618750", True),
        ("1845.36", "1845.3618750", True),
        ("1845.363", "1845.3618750", False),
        ("0.012", "0.0123", True),
        ("0.04", "0.04", True),
        ("0.5", "0.4", False),
        ("0", "0.0001", False),
        ("0", "0", True),
        ("800", "800.0000", True),
        ("801", "800", False),
    ],
)
def test_a_stated_value_agrees_when_it_is_the_exact_value_rounded(
    stated: str, exact: str, expected: bool
) -> None:
    assert agrees(Decimal(stated), Decimal(exact)) is expected


def test_statements_are_read_only_from_anchored_phrases() -> None:
    def kinds(text: str) -> list[tuple[str, str, str]]:
        return [(s.kind, str(s.value), s.unit) for s in text_statements(text, 1, "x", None)]

    assert kinds("Penicillin V 1,000 units/mL 0.1 mL for 15 min") == [
        ("minutes", "15", "min"),
        ("volume", "0.1", "mL"),
    ]
    assert kinds(
        "Double-strength tablet (800 mg sulfamethoxazole / 160 mg trimethoprim) 1 unit(s) for 60 min"
    ) == [
        ("minutes", "60", "min"),
        ("units", "1", "{unit}"),
    ]
    assert kinds("Bag 1 (1:100) at 2 mL/h for 15 min (0.5 mL = 0.04 mg); cumulative dose 0.04 mg") == [
        ("cumulative", "0.04", "mg"),
        ("dose", "0.04", "mg"),
        ("rate", "2", "mL/h"),
        ("minutes", "15", "min"),
        ("volume", "0.5", "mL"),
    ]
    assert kinds("dose: 1,200 units over 1 hour") == [("dose", "1200", "[iU]"), ("minutes", "1", "h")]
    assert kinds("Aspirin 81 mg tablet, 325 mg at the end, 250 mL of saline") == []


# --- loading ------------------------------------------------------------------------------------


def test_the_built_in_library_is_valid_in_json_and_xml() -> None:
    formats: tuple[Format, ...] = ("json", "xml")
    for fmt in formats:
        report = check(loaded_library(fmt=fmt))
        assert report.valid and report.exit_code == 0, report.text_lines()
        assert [i for i in report.issues if i.severity != "information"] == []
        assert {p.id for _, p in report.protocols} == set(builtin_protocols())
        assert all(protocol == get_protocol(protocol.id) for _, protocol in report.protocols)


def test_format_is_sniffed_from_content_not_extension(tmp_path: Path) -> None:
    xml_named_json = tmp_path / "protocol.json"
    xml_named_json.write_bytes(write_resource(library_bundle([get_protocol("aspirin-aerd-90-min")]), "xml"))
    loaded = load_path(xml_named_json)
    assert [item.resource_type for item in loaded] == ["PlanDefinition"] + ["ActivityDefinition"] * 4
    assert loaded[1].location == f"{xml_named_json} entry[1]"


def test_bundle_types_and_single_resources() -> None:
    bundle = library_bundle([get_protocol("aspirin-aerd-90-min")])
    resources = [entry["resource"] for entry in bundle["entry"]]
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": r, "request": {"method": "POST", "url": r["resourceType"]}} for r in resources]
        + [{"request": {"method": "DELETE", "url": "Basic/1"}}],
    }
    searchset = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources]
        + [{"resource": {"resourceType": "OperationOutcome", "issue": []}, "search": {"mode": "outcome"}}],
    }
    for document in (transaction, searchset):
        assert [
            item.resource for item in load_bytes(json.dumps(document, default=str).encode(), "b.json")
        ] == [json.loads(json.dumps(r, default=str), parse_float=Decimal) for r in resources]
    single = load_bytes(write_resource(resources[0]), "pd.json")
    assert len(single) == 1 and single[0].entry is None
    with pytest.raises(FhirFormatError, match="document"):
        load_bytes(b'{"resourceType": "Bundle", "type": "document", "entry": []}', "d.json")


# --- layer 1 (injected) and layer 2 -------------------------------------------------------------


def test_structural_outcomes_are_reported_with_their_location() -> None:
    loaded = loaded_library("aspirin-aerd-90-min")
    seen: list[int] = []

    def fake(resources: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        seen.append(len(resources))
        ok = {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "information", "code": "informational"}],
        }
        bad = {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "error",
                    "code": "structure",
                    "details": {"text": 'Invalid additional property "foo"'},
                    "expression": ["PlanDefinition.foo"],
                }
            ],
        }
        return [bad] + [ok] * (len(resources) - 1)

    report = validate_loaded(loaded, structural=fake)
    assert seen == [5]  # one call for every resource
    [issue] = report.issues
    assert (issue.severity, issue.layer, issue.source, issue.entry) == (
        "error",
        "structure",
        "library.json",
        0,
    )
    assert issue.expression == "PlanDefinition.foo" and "foo" in issue.message
    assert (
        issue.location.startswith("library.json entry[0] PlanDefinition https://") and report.exit_code == 1
    )


def test_an_unknown_element_in_a_profiled_extension_is_an_error() -> None:
    loaded = loaded_library("penicillin-v-oral-wendel")
    pd = resource(loaded, "penicillin-v-oral-wendel")
    step_extension(pd, 2).append({"url": "dose", "valueDecimal": Decimal(3)})
    report = check(loaded)
    [issue] = [i for i in report.issues if i.layer == "profile"]
    assert issue.severity == "error" and "unknown entry 'dose'" in issue.message
    assert issue.expression == "PlanDefinition.action[0].action[2].extension[0].extension[2]"
    assert not report.valid


# --- layer 3: clinical consistency --------------------------------------------------------------


def test_a_stated_step_volume_that_disagrees_is_reported_with_expected_and_stated() -> None:
    loaded = loaded_library("penicillin-v-oral-wendel")
    step3 = resource(loaded, "penicillin-v-oral-wendel-step-3")
    step3["dosage"][0]["doseAndRate"][0]["doseQuantity"]["value"] = Decimal("0.5")
    report = check(loaded)
    [issue] = report.errors()
    assert issue.rule == "stated-value" and issue.layer == "clinical"
    assert (
        issue.resource
        == f"ActivityDefinition {c.activity_definition('penicillin-v-oral-wendel-step-3')}|1.0.0"
    )
    assert issue.expression == "ActivityDefinition.dosage[0].doseAndRate[0].doseQuantity"
    assert (
        "step 3" in issue.message and "stated 0.5 mL" in issue.message and "expected 0.4 mL" in issue.message
    )
    assert issue.entry == 3 and report.exit_code == 1


def test_a_stated_dose_in_units_is_recomputed() -> None:
    loaded = loaded_library("penicillin-v-oral-wendel")
    doses = resource(loaded, "penicillin-v-oral-wendel-step-4")["dosage"][0]["doseAndRate"]
    doses.append({"doseQuantity": {"value": Decimal(800), "unit": "units", "system": UCUM, "code": "[iU]"}})
    assert check(loaded).valid  # 0.8 mL x 1,000 units/mL
    doses[-1]["doseQuantity"]["value"] = Decimal(900)
    [issue] = check(loaded).errors()
    assert "step 4: dose stated 900 units, expected 800 units" in issue.message


def test_a_stated_cumulative_total_in_the_description_is_checked() -> None:
    loaded = loaded_library("penicillin-v-oral-wendel")
    pd = resource(loaded, "penicillin-v-oral-wendel")
    assert "cumulative 1,296,700 units" in pd["description"]
    pd["description"] = pd["description"].replace("1,296,700", "1,296,000")
    [issue] = check(loaded).errors()
    assert issue.expression == "PlanDefinition.description" and "expected 1296700 units" in issue.message


def test_a_broken_invariant_is_reported_by_id() -> None:
    loaded = loaded_library("penicillin-v-oral-wendel")
    pd = resource(loaded, "penicillin-v-oral-wendel")
    step_extension(pd, 5)[1]["valueQuantity"]["value"] = Decimal("0.1")  # 100 units after 1,600
    report = check(loaded)
    assert "INV-04" in rules(report)
    [issue] = [i for i in report.errors() if i.rule == "INV-04"]
    assert (
        "step 6" in issue.message
        and issue.resource is not None
        and issue.resource.startswith("PlanDefinition")
    )


def test_a_rate_above_the_pump_maximum_is_an_invariant_violation() -> None:
    loaded = loaded_library("iv-12-step-3-bag")
    pd = resource(loaded, "iv-12-step-3-bag")
    step_extension(pd, 4)[1]["valueDecimal"] = Decimal(20)  # 20 x 80 mL/h
    assert "INV-06" in rules(check(loaded))


def _state_doses(loaded: Sequence[Loaded], target_mg: int, *, cumulative: bool) -> None:
    """Write the 12-step plan's doses into the step texts, as a partner's worksheet would."""
    protocol = get_protocol("iv-12-step-3-bag")
    plan = compute_plan(PlanRequest(protocol, "ceftazidime", Quantity(Decimal(target_mg), "mg")))
    for step in plan.steps:
        dosage = resource(loaded, f"iv-12-step-3-bag-step-{step.number}")["dosage"][0]
        dosage["text"] = f"dose {display(step.dose.value)} mg" + (
            f", cumulative {display(step.cumulative_dose.value)} mg" if cumulative else ""
        )


def test_infusion_doses_stated_for_a_target_are_recomputed_for_that_target() -> None:
    loaded = loaded_library("iv-12-step-3-bag")
    _state_doses(loaded, 2000, cumulative=True)
    report = check(loaded)
    assert report.valid, report.text_lines()
    dosage = resource(loaded, "iv-12-step-3-bag-step-12")["dosage"][0]
    assert dosage["text"] == "dose 1845.362 mg, cumulative 2000 mg"
    dosage = resource(loaded, "iv-12-step-3-bag-step-7")["dosage"][0]
    dosage["text"] = dosage["text"].replace("dose ", "dose 1")  # 10x too much
    [issue] = check(loaded).errors()
    assert "step 7: dose stated 1" in issue.message and "reference plan for 2000 mg" in issue.message


def test_without_cumulative_totals_the_target_is_the_sum_of_the_stated_doses() -> None:
    loaded = loaded_library("iv-12-step-3-bag")
    _state_doses(loaded, 400, cumulative=False)
    assert check(loaded).valid
    dosage = resource(loaded, "iv-12-step-3-bag-step-2")["dosage"][0]
    dosage["text"] = "dose 0.5 mg"  # 0.02 mg in the 400 mg plan
    assert "stated-value" in rules(check(loaded))


def test_a_target_dependent_value_without_a_stated_target_is_not_compared() -> None:
    loaded = loaded_library("iv-12-step-3-bag")
    resource(loaded, "iv-12-step-3-bag-step-1")["dosage"][0]["text"] = "dose 0.04 mg"
    report = check(loaded)
    assert report.valid
    [note] = [i for i in report.issues if i.rule == "not-compared"]
    assert note.severity == "information" and "does not state" in note.message


def test_a_stated_rate_is_compared_with_the_default_final_rate() -> None:
    loaded = loaded_library("iv-12-step-3-bag")
    rates = resource(loaded, "iv-12-step-3-bag-step-4")["dosage"][0]
    rates["doseAndRate"] = [
        {"rateQuantity": {"value": Decimal(20), "unit": "mL/h", "system": UCUM, "code": "mL/h"}}
    ]
    assert check(loaded).valid  # 1/4 of 80 mL/h
    rates["doseAndRate"][0]["rateQuantity"]["value"] = Decimal(40)
    [issue] = check(loaded).errors()
    assert "step 4: rate stated 40 mL/h, expected 20 mL/h" in issue.message


def test_a_quantity_that_is_not_understood_is_noted_not_compared() -> None:
    loaded = loaded_library("iv-12-step-3-bag")
    dosage = resource(loaded, "iv-12-step-3-bag-step-4")["dosage"][0]
    dosage["doseAndRate"] = [
        {"rateQuantity": {"value": Decimal(2), "unit": "mg/h", "system": UCUM, "code": "mg/h"}}
    ]
    report = check(loaded)
    [note] = [i for i in report.issues if i.rule == "not-compared"]
    assert report.valid and note.severity == "information" and "'mg/h'" in note.message


def test_a_plan_definition_that_does_not_map_is_an_error() -> None:
    loaded = loaded_library("aspirin-aerd-90-min")
    pd = resource(loaded, "aspirin-aerd-90-min")
    pd["extension"] = [e for e in pd["extension"] if e["url"] != c.EXT_PROTOCOL_SETTINGS]
    report = check(loaded)
    assert "mapping" in rules(report) and report.protocols == []


def test_missing_step_activities_are_a_warning() -> None:
    loaded = [
        item for item in loaded_library("aspirin-aerd-90-min") if item.resource_type == "PlanDefinition"
    ]
    report = check(loaded)
    assert report.valid and rules(report, "warning") == ["missing-activity"] * 4


def test_duplicate_canonicals() -> None:
    loaded = loaded_library("aspirin-aerd-90-min")
    twin = Loaded("other.json", copy.deepcopy(loaded[1].resource))
    assert rules(check([*loaded, twin]), "warning") == ["duplicate-canonical"]
    twin.resource["title"] = "something else"
    report = check([*loaded, twin])
    [issue] = report.errors()
    assert (
        issue.rule == "duplicate-canonical"
        and "title" in issue.message
        and "library.json entry[1]" in issue.message
    )


def test_report_as_operation_outcome_and_text() -> None:
    loaded = loaded_library("penicillin-v-oral-wendel")
    resource(loaded, "penicillin-v-oral-wendel-step-3")["dosage"][0]["doseAndRate"][0]["doseQuantity"][
        "value"
    ] = 1
    report = check(loaded)
    outcome = report.operation_outcome()
    [issue] = outcome["issue"]
    assert issue["severity"] == "error" and issue["code"] == "business-rule"
    assert issue["expression"] == ["ActivityDefinition.dosage[0].doseAndRate[0].doseQuantity"]
    assert "library.json entry[3]" in issue["diagnostics"] and "stated-value" in issue["diagnostics"]
    lines = report.text_lines()
    assert lines[0].startswith("error") and lines[-1].startswith("invalid: 15 resource(s)")
    clean = check(loaded_library("aspirin-aerd-90-min")).operation_outcome()
    assert [i["severity"] for i in clean["issue"]] == ["information"]


def test_unusable_inputs_are_fatal_and_the_others_still_validated(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_bytes(write_resource(library_bundle([get_protocol("aspirin-aerd-90-min")])))
    broken = tmp_path / "broken.xml"
    broken.write_text("<PlanDefinition xmlns='http://hl7.org/fhir'><oops")
    missing = tmp_path / "missing.json"
    report = validate_paths([good, broken, missing], structural=None)
    assert [i.severity for i in report.issues] == ["fatal", "fatal"]
    assert report.exit_code == 2 and len(report.resources) == 5 and len(report.protocols) == 1


def test_read_protocols_from_a_folder(tmp_path: Path) -> None:
    (tmp_path / "a.tgz").write_bytes(package_protocols([get_protocol("iv-12-step-3-bag")]))
    (tmp_path / "b.xml").write_bytes(
        write_resource(library_bundle([get_protocol("tmp-smx-oral-hourly")]), "xml")
    )
    (tmp_path / "notes.txt").write_text("ignored")
    protocols = read_protocols(tmp_path)
    assert protocols == [get_protocol("iv-12-step-3-bag"), get_protocol("tmp-smx-oral-hourly")]


def test_read_protocols_refuses_an_invalid_library(tmp_path: Path) -> None:
    loaded = loaded_library("penicillin-v-oral-wendel")
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": i.resource} for i in loaded],
    }
    bundle["entry"][3]["resource"]["dosage"][0]["doseAndRate"][0]["doseQuantity"]["value"] = Decimal("0.5")
    path = tmp_path / "tampered.json"
    path.write_bytes(write_resource(bundle))
    with pytest.raises(ValidationFailed, match="1 validation error") as raised:
        read_protocols(path)
    assert any(issue["severity"] == "error" for issue in raised.value.issues)


def test_import_refuses_what_it_cannot_import_before_touching_the_server() -> None:
    from fhir_desens.client.fhir_rest import FhirClient
    from fhir_desens.exchange.importer import NOT_ATTEMPTED, import_resources

    loaded = loaded_library("aspirin-aerd-90-min")
    patient = Loaded("extra.json", {"resourceType": "Patient", "id": "p"})
    versionless = copy.deepcopy(loaded[1].resource)
    versionless.pop("version")
    with FhirClient("http://127.0.0.1:9/fhir") as nowhere:  # nothing listens there: no request may be sent
        report = import_resources(nowhere, [*loaded, patient, Loaded("x.json", versionless)], structural=None)
    assert isinstance(report.error, ValidationFailed) and report.exit_code == 1
    assert [i.rule for i in report.validation.errors()].count("import") == 2
    assert {item.status for item in report.items} == {NOT_ATTEMPTED} and len(report.items) == 5
