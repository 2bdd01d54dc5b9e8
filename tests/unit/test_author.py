"""`fhir-desens author`: hospital tables to protocols, every stated value re-verified (issue 15).

The tables in ``tests/unit/tables/`` were written for these tests from the facts in the clinical
reference (an amiodarone-style 11-dose table from 0.01, 1 and 1.5 mg/mL bags 30 minutes apart, an
18-dose ampicillin-style table, an oral beta-lactam table whose cumulative column lags one row, a
proportional 3-bag infusion table); they are not copies of published tables.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from fhir_desens.authoring.build import AuthorOptions, StatedValuesDisagree, author_protocol
from fhir_desens.authoring.table import TableError, read_preparations, read_table
from fhir_desens.cli import main
from fhir_desens.errors import InputError
from fhir_desens.exchange.validate import validate_paths
from fhir_desens.protocol.model import ProtocolKind
from fhir_desens.protocol.quantity import EXACT, Quantity
from fhir_desens.protocol.stated import agrees

TABLES = Path(__file__).parent / "tables"
AMIODARONE = [
    str(TABLES / "amiodarone_style_iv.csv"),
    "--id", "amiodarone-iv-style", "--title", "IV amiodarone, 11 doses (test table)",
    "--drug", "amiodarone", "--route", "iv", "--interval", "30",
    "--solutions", str(TABLES / "amiodarone_style_solutions.csv"),
    "--source", "Test table written for fhir-desens",
]  # fmt: skip
AMPICILLIN = [
    str(TABLES / "ampicillin_style_iv.csv"),
    "--id", "ampicillin-iv-18", "--title", "IV ampicillin, 18 doses (test table)",
    "--drug", "ampicillin", "--route", "iv", "--interval", "15", "--bag-volumes", "1=50,2=50,3=250",
    "--source", "Test table written for fhir-desens",
]  # fmt: skip
LAGGING = [
    str(TABLES / "beta_lactam_lagging_oral.csv"),
    "--id", "beta-lactam-oral", "--title", "Oral beta-lactam (lagging test table)",
    "--drug", "amoxicillin", "--route", "oral", "--interval", "15",
]  # fmt: skip
PROPORTIONAL = [
    str(TABLES / "proportional_infusion.csv"),
    "--id", "iv-3-bag-table", "--title", "IV 3-bag 12-step (proportional test table)",
    "--drug", "carboplatin", "--route", "iv", "--bag-volumes", "1=250,2=250,3=250",
    "--source", "Test table written for fhir-desens",
]  # fmt: skip


def author(tmp_path: Path, arguments: list[str], name: str = "out.json") -> tuple[int, Path]:
    out = tmp_path / name
    return main(["author", *arguments, "--out", str(out)]), out


def plan_json(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict:  # type: ignore[type-arg]
    capsys.readouterr()
    assert main(["plan", "--protocol-file", str(path), "--format", "json", *extra]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


# --- the four tables of the issue ------------------------------------------------------------------


@pytest.mark.invariant("INV-24")
def test_amiodarone_style_table_is_authored_validated_and_planned_at_its_exact_total(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = author(tmp_path, AMIODARONE)
    assert code == 0 and "the table's doses sum to 149.49 mg" in capsys.readouterr().err
    report = validate_paths([out], structural=None)
    assert report.valid, report.text_lines()
    plan = plan_json(out, capsys, "--drug", "amiodarone")
    assert plan["target_dose"] == {"value": "149.49", "unit": "mg"}
    assert [s["dose"]["value"] for s in plan["steps"]] == [
        "0.01", "0.05", "0.25", "1", "2.5", "5", "10", "15", "27", "39", "49.68",
    ]  # fmt: skip
    assert {s["minutes"] for s in plan["steps"]} == {"30"}
    assert [s["volume_ml"] for s in plan["solutions"]] == ["100", "100", "100"]  # whole bags (INV-21)
    assert plan["solutions"][2]["preparation"] == (
        "remove 13 mL from a 100 mL bag (which holds 110 mL with its overfill), inject 150 mg in 3 mL: 100 mL"
    )
    assert any("overfill" in w and "Solution 3" in w for w in plan["warnings"])  # INV-23

    # A target other than the table's exact total is refused, naming the total (INV-24).
    assert main(["plan", "--protocol-file", str(out), "--drug", "amiodarone", "--dose", "150mg"]) == 2
    assert "the table's doses sum to 149.49 mg" in capsys.readouterr().err


def test_ampicillin_style_cumulative_column_switching_from_four_decimals_to_integers_is_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = author(tmp_path, AMPICILLIN)
    assert code == 0
    assert validate_paths([out], structural=None).valid
    plan = plan_json(out, capsys, "--drug", "ampicillin", "--dose", "2g")
    assert len(plan["steps"]) == 18 and plan["steps"][-1]["cumulative_dose"]["value"] == "2000"
    assert plan["steps"][11]["cumulative_dose"]["value"] == "40.95"  # printed "41": rounded, accepted


def test_a_lagging_cumulative_column_is_refused_with_every_row_named_and_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = author(tmp_path, LAGGING)
    assert code == 1 and not out.exists()
    err = capsys.readouterr().err
    for row, step, stated, computed in (
        (5, 4, "0.35", "0.75"),
        (6, 5, "0.75", "1.55"),
        (7, 6, "1.55", "3.15"),
        (8, 7, "3.15", "6.35"),
        (9, 8, "6.35", "12.75"),
    ):
        assert f"row {row}, step {step}, column cumulative: stated {stated} mg, computed {computed} mg" in err
    assert "5 stated value(s) disagree" in err and "step 9" not in err and "step 3," not in err


def test_proportional_infusion_table_reproduces_itself_at_its_total_and_scales(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = author(tmp_path, PROPORTIONAL)
    assert code == 0
    assert validate_paths([out], structural=None).valid
    at_total = plan_json(out, capsys, "--drug", "carboplatin", "--dose", "100mg")
    assert [s["concentration"]["value"] for s in at_total["solutions"]] == ["0.004", "0.04", "0.396852"]
    assert at_total["steps"][-1]["dose"]["value"] == "92.26809"
    doubled = plan_json(out, capsys, "--drug", "carboplatin", "--dose", "200mg")
    assert [s["concentration"]["value"] for s in doubled["solutions"]] == ["0.008", "0.08", "0.793704"]
    assert doubled["steps"][-1]["cumulative_dose"]["value"] == "200"


def test_an_authored_protocol_is_labelled_an_institutional_table_not_a_published_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The walk: a hospital's own table read "(published-table)" on the worksheet and the plan's header."""
    code, out = author(tmp_path, PROPORTIONAL)
    assert code == 0
    assert validate_paths([out], structural=None).valid  # the code is in the guide's CodeSystem
    assert plan_json(out, capsys, "--drug", "carboplatin", "--dose", "100mg")["protocol"]["evidence"] == (
        "institutional-table"
    )


def test_the_diluent_the_hospital_states_is_on_every_solution_of_the_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The walk: an authored protocol's plan and pharmacy sheet said diluent "-" (author had no --diluent)."""
    code, out = author(tmp_path, [*PROPORTIONAL, "--diluent", "5% dextrose (D5W)"])
    assert code == 0 and validate_paths([out], structural=None).valid
    plan = plan_json(out, capsys, "--drug", "carboplatin", "--dose", "100mg")
    assert [s["diluent"] for s in plan["solutions"]] == ["5% dextrose (D5W)"] * 3
    code, blank = author(tmp_path, [*PROPORTIONAL, "--diluent", "  "], name="blank.json")
    assert code == 2 and "--diluent: is empty" in capsys.readouterr().err and not blank.exists()


# --- exit statuses and what is refused -------------------------------------------------------------


def write(tmp_path: Path, text: str, name: str = "t.csv") -> str:
    path = tmp_path / name
    path.write_text(text, "utf-8")
    return str(path)


BASE = ["--id", "t", "--title", "T", "--drug", "x", "--route", "oral", "--interval", "15"]


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ("step,solution,dose,colour\n1,1,1 mg,red\n", "t.csv row 1, column colour: unknown column 'colour'"),
        # a spreadsheet's own headings: every unknown one at once, each with the column it probably is (the walk)
        (
            "Step;Bag;Concentration (mg/mL);Rate (mL/h);Time (min)\n1;1;0.016 mg/mL;2;15\n",
            "t.csv row 1: unknown columns 'bag' (rename it solution), 'concentration (mg/ml)' (rename it "
            "concentration), 'rate (ml/h)' (rename it rate_ml_h), 'time (min)' (rename it minutes); dose, "
            "concentration and cumulative cells carry their unit",
        ),
        ("step,dose\n1,1 mg\n", "column solution: the required column 'solution' is missing"),
        ("step,solution,dose\n1,1,1 mg\n3,1,2 mg\n", "t.csv row 3, column step: step 3 is out of order"),
        ("step,solution,dose\n1,1,1 mL\n", "t.csv row 2, column dose: '1 mL' is not a dose"),
        ("step,solution,dose\n1,1,5\n", "t.csv row 2, column dose: '5' is not a dose"),
        ("step,solution,concentration\n1,1,1 mg/mL\n", "t.csv row 2, column volume_ml: volume_ml is empty"),
        ("step,solution,concentration,volume_ml\n1,1,1 mg,2\n", "column concentration: '1 mg' is not a concentration"),
        ("step,solution,dose\n1,1,1 mg\n2,1,1 units\n", "t.csv row 3, column dose: activity here, mass"),
        ("step,solution,dose,minutes\n1,1,1 mg,15\n", "t.csv row 2, column minutes"),
        ("Step,Solution,Dose,step\n", "t.csv row 1, column step: the column appears twice"),
        ("", "the table is empty"),
        ("step,solution,dose\n", "the table has a header but no steps"),
    ],
)  # fmt: skip
def test_unusable_tables_exit_2_with_one_line_naming_row_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], table: str, expected: str
) -> None:
    code, out = author(tmp_path, [write(tmp_path, table), *BASE])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert expected in err and err.count("\n") == 1 and "Traceback" not in err


def test_header_names_are_case_insensitive_and_in_any_order(tmp_path: Path) -> None:
    rows = read_table("SOLUTION,Cumulative,DOSE,Step\nA,1 mg,1 mg,1\nA,3.0 mg,2 mg,2\n")
    assert [(r.step, r.solution, r.dose, r.cumulative) for r in rows][1][0] == 2
    authored = author_protocol(rows, AuthorOptions("t", "T", "x", "oral", Decimal(15)))
    assert authored.total.value == 3 and authored.protocol.kind is ProtocolKind.DISCRETE


def test_an_empty_last_infusion_minutes_needs_the_bag_volume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = "step,solution,concentration,rate_ml_h,minutes\n1,1,0.1 mg/mL,10,15\n2,1,0.1 mg/mL,20,\n"
    code, _ = author(
        tmp_path, [write(tmp_path, table), "--id", "t", "--title", "T", "--drug", "x", "--route", "iv"]
    )
    assert code == 2
    assert "row 3, column minutes: the last step runs until bag 1 is empty" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--scaling", "proportional"], "--scaling: a table of discrete doses is planned as written"),
        (["--bag-volumes", "Z=100"], "bag Z is not a solution label"),
        (["--bag-volumes", "1=0.5"], "the steps draw 3 mL from bag 1 of 0.5 mL"),
    ],
)
def test_options_that_do_not_fit_the_table_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], expected: str
) -> None:
    table = write(tmp_path, "step,solution,concentration,volume_ml\n1,1,1 mg/mL,1\n2,1,1 mg/mL,2\n")
    code, out = author(tmp_path, [table, *BASE, *arguments])
    assert code == 2 and not out.exists() and expected in capsys.readouterr().err


def test_a_stated_dose_is_checked_when_derived_and_all_disagreements_are_listed() -> None:
    rows = read_table(
        "step,solution,concentration,volume_ml,dose,cumulative\n1,A,2 mg/mL,1.5,3 mg,3 mg\n2,A,2 mg/mL,2,5 mg,7 mg\n"
    )
    with pytest.raises(StatedValuesDisagree) as raised:
        author_protocol(rows, AuthorOptions("t", "T", "x", "iv", Decimal(30)))
    assert [(d.step, d.column) for d in raised.value.disagreements] == [(2, "dose")]
    assert raised.value.exit_code == 1


def test_a_preparation_that_needs_overfill_but_does_not_state_it_disagrees_with_the_table() -> None:
    rows = read_table("step,solution,concentration,volume_ml\n1,C,1.5 mg/mL,10\n")
    preparations = read_preparations("solution,bag_ml,remove_ml,drug,drug_ml\nC,100,13,150 mg,3\n")
    with pytest.raises(StatedValuesDisagree) as raised:
        author_protocol(rows, AuthorOptions("t", "T", "x", "iv", Decimal(30), preparations=preparations))
    [disagreement] = raised.value.disagreements
    assert disagreement.column == "concentration"
    assert "stated 1.5 mg/mL, computed 1.66666667... mg/mL" in disagreement.line()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("solution,bag_ml,drug,colour\n", "unknown column 'colour'"),
        ("solution,bag_ml,drug,overfill_ml\nC,100,150 mg,40\n", "implausible"),
        ("solution,bag_ml,drug,remove_ml\nC,100,150 mg,100\n", "leaves nothing in the bag"),
        ("solution,bag_ml,drug\nC,100,150 mL\n", "is not a dose"),
    ],
)
def test_unusable_preparations_are_refused(text: str, expected: str) -> None:
    with pytest.raises(TableError, match=expected):
        read_preparations(text)


@pytest.mark.parametrize(
    ("stated", "exact", "expected"),
    [
        ("221", "221.1755", True),
        ("221.2", "221.1755", True),
        ("221.17", "221.1755", False),
        ("0.35", "0.75", False),
        ("0.0100", "0.01", True),
        ("41", "40.95", True),
        ("0.13", "0.125", True),  # half-up
        ("0.12", "0.125", False),
        ("0", "0.0001", False),
    ],
)
def test_the_stated_value_rule(stated: str, exact: str, expected: bool) -> None:
    assert agrees(Decimal(stated), Decimal(exact)) is expected


def test_authored_files_feed_apply_replan_and_export_and_xml_round_trips(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, xml = author(tmp_path, [*AMPICILLIN, "--format", "xml"], "authored.xml")
    assert code == 0 and xml.read_bytes().startswith(b"<?xml")
    common = ["--protocol-file", str(xml), "--drug", "ampicillin"]
    capsys.readouterr()
    assert main(["apply", *common, "--patient", "Patient/p1"]) == 0
    orders = json.loads(capsys.readouterr().out)
    requests = [e for e in orders["entry"] if e["resource"]["resourceType"] == "MedicationRequest"]
    assert len(requests) == 18
    assert main(["replan", *common, "--step", "12", "--option", "back-one-step"]) == 0
    assert "reaches target: True" in capsys.readouterr().out
    exported = tmp_path / "exported.json"
    assert main(["export", "--protocol-file", str(xml), "--out", str(exported)]) == 0
    assert plan_json(exported, capsys, "--drug", "ampicillin") == plan_json(
        xml, capsys, "--drug", "ampicillin"
    )


def test_protocol_file_problems_are_unusable_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, first = author(tmp_path, AMPICILLIN, "a.json")
    assert main(["plan", "--protocol-file", str(tmp_path / "missing.json"), "--drug", "x"]) == 2
    assert "--protocol-file" in capsys.readouterr().err
    assert main(["plan", "--protocol-file", str(first), "--protocol", "other", "--drug", "x"]) == 2
    assert "holds no protocol 'other' (accepted: ampicillin-iv-18)" in capsys.readouterr().err
    assert main(["plan", "--drug", "x"]) == 2
    assert "--protocol ID or --protocol-file FILE" in capsys.readouterr().err


def test_semicolon_separated_tables_are_read_and_decimal_commas_refused_naming_the_cell() -> None:
    rows = read_table("step;solution;dose\n1;A;0.5 mg\n2;A;1 mg\n")
    assert [r.dose for r in rows] == [Quantity(Decimal("0.5"), "mg"), Quantity(Decimal(1), "mg")]
    with pytest.raises(TableError, match="row 2, column dose: '0,5 mg' is not a dose"):
        read_table("step;solution;dose\n1;A;0,5 mg\n")


def test_interval_on_an_infusion_table_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = author(tmp_path, [*PROPORTIONAL, "--interval", "15"])
    assert code == 2 and "--interval: infusion rows give their own minutes" in capsys.readouterr().err


def test_validate_reports_a_tampered_preparation(tmp_path: Path) -> None:
    _, out = author(tmp_path, AMIODARONE)
    bundle = json.loads(out.read_text("utf-8"))
    plan_definition = bundle["entry"][0]["resource"]
    solution_c = [e for e in plan_definition["extension"] if e["url"].endswith("desens-solution")][2]
    [drug] = [s for s in solution_c["extension"] if s["url"] == "drugAdded"]
    drug["valueQuantity"]["value"] = 100
    out.write_text(json.dumps(bundle), "utf-8")
    report = validate_paths([out], structural=None)
    assert not report.valid
    assert any(
        "the preparation makes 1 mg/mL, the protocol states 1.5 mg/mL" in i.message for i in report.errors()
    )


@pytest.mark.invariant("INV-24")
def test_a_fixed_infusion_table_is_planned_only_at_its_exact_total(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = author(tmp_path, [*PROPORTIONAL, "--scaling", "fixed"])
    assert code == 0 and validate_paths([out], structural=None).valid
    plan = plan_json(out, capsys, "--drug", "carboplatin")
    assert plan["target_dose"] == {"value": "100", "unit": "mg"} and plan["closing"] == "remainder-step"
    assert [s["concentration"]["value"] for s in plan["solutions"]] == ["0.004", "0.04", "0.396852"]
    assert plan["steps"][-1]["volume_ml"] == "232.5" and plan["steps"][-1]["dose"]["value"] == "92.26809"
    assert main(["plan", "--protocol-file", str(out), "--drug", "carboplatin", "--dose", "400mg"]) == 2
    assert "the table's doses sum to 100 mg, not 400 mg" in capsys.readouterr().err
    assert main(["plan", "--protocol-file", str(out), "--drug", "carboplatin", "--insert-before", "3"]) == 2
    assert "--insert-before: protocol iv-3-bag-table is a fixed table" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("protocol_id", "expected"),
    [
        ("iv-12-step-3-bag", "a fixed table needs a fixed concentration for every solution"),
        ("penicillin-v-oral-wendel", "fixed_table is for infusion protocols"),
    ],
)
def test_fixed_table_is_refused_where_it_cannot_hold(protocol_id: str, expected: str) -> None:
    from fhir_desens.errors import ProtocolDefinitionError
    from fhir_desens.protocol.library import builtin_protocols, protocol_from_dict, protocol_to_dict

    raw = protocol_to_dict(builtin_protocols()[protocol_id])
    raw["fixed_table"] = True
    with pytest.raises(ProtocolDefinitionError, match=expected):
        protocol_from_dict(raw)


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--title", "  "], "--title: is empty"),
        (["--drug", ""], "--drug: is empty"),
        (["--id", "no spaces please"], "--id: 'no spaces please' is not a FHIR id"),
        (["--interval", "0"], "--interval: 0 minutes is not above 0"),
    ],
)
def test_unusable_options_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], expected: str
) -> None:
    code, out = author(tmp_path, [*LAGGING, *arguments])
    assert code == 2 and not out.exists() and expected in capsys.readouterr().err


def test_a_solution_label_must_be_short_and_printable() -> None:
    with pytest.raises(InputError, match="row 2, column solution: 41 characters is too long"):
        read_table("step,solution,dose\n1," + "A" * 41 + ",1 mg\n")
    with pytest.raises(InputError, match="row 2, column solution: contains invisible"):
        read_table("step,solution,dose\n1,A\u202eB,1 mg\n")


def test_a_rounded_table_concentration_is_checked_against_the_recipe_whose_exact_value_is_used() -> None:
    rows = read_table(
        "step,solution,concentration,volume_ml,dose,cumulative\n"
        "1,C,1.67 mg/mL,3,5 mg,5 mg\n2,C,1.67 mg/mL,10,16.67 mg,21.667 mg\n"
    )
    preparations = read_preparations("solution,bag_ml,remove_ml,drug,drug_ml\nC,100,13,150 mg,3\n")
    authored = author_protocol(
        rows, AuthorOptions("t", "T", "x", "iv", Decimal(30), preparations=preparations)
    )
    [solution] = authored.protocol.solutions
    assert solution.concentration is not None and solution.volume_ml == 90
    assert solution.concentration.value == EXACT.divide(Decimal(150), Decimal(90))  # 1.666..., not 1.67
    assert abs(authored.step_doses[0].value - 5) < Decimal("1e-45")  # 3 mL x 150 mg / 90 mL


def test_doses_given_alone_are_prepared_doses_never_tablets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fhir_desens.fhir.plandefinition import plan_definition_from_protocol, protocol_from_plan_definition

    table = write(tmp_path, "step,solution,dose,cumulative\n1,1,0.05 mg,0.05 mg\n2,1,0.1 mg,0.15 mg\n")
    code, out = author(tmp_path, [table, *BASE])
    assert code == 0
    capsys.readouterr()
    assert main(["plan", "--protocol-file", str(out), "--drug", "x"]) == 0
    worksheet = capsys.readouterr().out
    assert "1 prepared dose" in worksheet and "tablet" not in worksheet
    assert main(["apply", "--protocol-file", str(out), "--drug", "x", "--patient", "Patient/p1"]) == 0
    orders = capsys.readouterr().out
    assert "Give by mouth 1 prepared dose (0.05 mg)" in orders and "tablet" not in orders
    rows = read_table("step,solution,dose\n1,1,0.05 mg\n")
    protocol = author_protocol(rows, AuthorOptions("t", "T", "x", "oral", Decimal(15))).protocol
    assert protocol_from_plan_definition(plan_definition_from_protocol(protocol)) == protocol
