"""Authored protocols travel: author -> export -> import into the real FHIR server -> fetch -> plan.

Each table of ``tests/unit/tables`` is authored under an id of this test only, exported (as XML, so
the format conversion is exercised too), imported with the CLI into the session's real FHIR server
process, fetched back with the CLI, and planned from the fetched file: the doses, cumulative totals
and times must be identical to the plan of the authored file.
"""

from __future__ import annotations

import json
import tarfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from fhir_desens.cli import main
from fhir_desens.fhir import canonical as c

TABLES = Path(__file__).parents[1] / "unit" / "tables"
SOURCE = ["--source", "Test table written for fhir-desens"]
CASES = {
    "amiodarone": (
        [
            "amiodarone_style_iv.csv", "--drug", "amiodarone", "--route", "iv", "--interval", "30",
            "--solutions", str(TABLES / "amiodarone_style_solutions.csv"),
        ],
        ["--drug", "amiodarone"],
    ),
    "ampicillin": (
        [
            "ampicillin_style_iv.csv", "--drug", "ampicillin", "--route", "iv", "--interval", "15",
            "--bag-volumes", "1=50,2=50,3=250",
        ],
        ["--drug", "ampicillin", "--dose", "2000mg"],
    ),
    "fixed-infusion": (
        [
            "proportional_infusion.csv", "--drug", "penicillin G", "--route", "iv", "--scaling", "fixed",
            "--bag-volumes", "1=250,2=250,3=250",
        ],
        ["--drug", "penicillin G"],
    ),
    "proportional": (
        [
            "proportional_infusion.csv", "--drug", "carboplatin", "--route", "iv",
            "--bag-volumes", "1=250,2=250,3=250",
        ],
        ["--drug", "carboplatin", "--dose", "400mg"],
    ),
}  # fmt: skip


def plan_of(path: Path, arguments: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["plan", "--protocol-file", str(path), *arguments, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def doses(plan: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    return [
        (s["dose"]["value"], s["cumulative_dose"]["value"], s["minutes"], s["volume_ml"] or "")
        for s in plan["steps"]
    ]


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_authored_protocol_survives_export_import_fetch_and_plans_identically(
    case: str, fhir_base_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table, plan_arguments = CASES[case]
    protocol_id = f"authored-{case}-{uuid.uuid4().hex[:8]}"
    authored = tmp_path / "authored.json"
    arguments = [str(TABLES / table[0]), *table[1:], "--id", protocol_id, "--title", f"Authored {case}"]
    assert main(["author", *arguments, *SOURCE, "--out", str(authored)]) == 0
    capsys.readouterr()
    assert main(["validate", str(authored)]) == 0  # every layer, Medplum's validator included
    assert capsys.readouterr().out.startswith("valid: ")
    exported = tmp_path / "exported.xml"
    assert main(["export", "--protocol-file", str(authored), "--format", "xml", "--out", str(exported)]) == 0
    assert exported.read_bytes().startswith(b"<")

    assert main(["import", str(exported), "--server", fhir_base_url]) == 0
    assert "created" in capsys.readouterr().out
    assert main(["import", str(exported), "--server", fhir_base_url]) == 0  # idempotent
    fetched = tmp_path / "fetched.json"
    url = c.plan_definition(protocol_id)
    assert main(["fetch", "--server", fhir_base_url, "--url", url, "--out", str(fetched)]) == 0

    before, after = plan_of(authored, plan_arguments, capsys), plan_of(fetched, plan_arguments, capsys)
    assert doses(after) == doses(before)
    assert after["target_dose"] == before["target_dose"]
    assert after["solutions"] == before["solutions"]  # concentrations, volumes and preparations
    assert after["protocol"]["id"] == protocol_id


def test_an_authored_protocol_whose_dilutions_do_not_terminate_imports_twice_without_a_conflict(
    fhir_base_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The walk: a table whose doses sum to 403.148 mg makes each bag's dilution an exact quotient with 50
    digits; the JavaScript server keeps a double, so a second import met "the server's copy differs at
    extension[1].extension[2].valueDecimal" (exit 6) where it must find every resource already present."""
    protocol_id = f"authored-uneven-{uuid.uuid4().hex[:8]}"
    authored = tmp_path / "authored.json"
    table = [str(TABLES / "uneven_total_infusion.csv"), "--drug", "carboplatin", "--route", "iv"]
    bags = ["--bag-volumes", "1=250,2=250,3=250", "--id", protocol_id, "--title", "Uneven total"]
    assert main(["author", *table, *bags, *SOURCE, "--out", str(authored)]) == 0
    assert "0.00992191453262821594" in authored.read_text("utf-8")  # bag 1: 0.016 x 250 / 403.148, exactly
    assert main(["import", str(authored), "--server", fhir_base_url]) == 0
    capsys.readouterr()
    assert main(["import", str(authored), "--server", fhir_base_url]) == 0
    again = capsys.readouterr().out
    assert "0 created, 13 already present, 0 conflict" in again, again


def test_an_authored_protocol_is_packaged_and_the_package_imports(
    fhir_base_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The walk: `fhir-desens package` took only built-in protocols, so a hospital could not publish the
    protocol it authored from its own table as a package."""
    protocol_id = f"authored-packaged-{uuid.uuid4().hex[:8]}"
    authored = tmp_path / "authored.json"
    table, _ = CASES["ampicillin"]
    arguments = [str(TABLES / table[0]), *table[1:], "--id", protocol_id, "--title", "Packaged"]
    assert main(["author", *arguments, *SOURCE, "--out", str(authored)]) == 0
    package = tmp_path / "hospital.tgz"
    assert main(["package", "--out", str(package), "--protocol-file", str(authored)]) == 0
    with tarfile.open(package) as archive:
        names = archive.getnames()
    assert f"package/PlanDefinition-{protocol_id}.json" in names
    assert not any("iv-12-step-3-bag" in name for name in names)  # only the file's protocols
    capsys.readouterr()
    assert main(["import", str(package), "--server", fhir_base_url]) == 0
    assert "complete:" in capsys.readouterr().out

    twice = ["--protocol-file", str(authored), "--protocol-file", str(authored)]
    assert main(["package", "--out", str(tmp_path / "twice.tgz"), *twice]) == 2
    assert f"protocol {protocol_id} is in more than one file" in capsys.readouterr().err
    assert not (tmp_path / "twice.tgz").exists()
