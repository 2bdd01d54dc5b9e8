"""The CLI contract: output shapes, exit statuses, one-line errors, no tracebacks, fast start."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from fhir_desens.cli import main


def test_protocols_lists_the_required_ids(capsys):
    assert main(["protocols"]) == 0
    out = capsys.readouterr().out
    for protocol_id in (
        "iv-12-step-3-bag",
        "iv-16-step-4-bag",
        "iv-8-step-2-bag",
        "penicillin-v-oral-wendel",
    ):
        assert protocol_id in out
    assert main(["protocols", "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {"id", "title", "route", "steps", "source"} <= set(listed[0])


def test_plan_json_has_the_documented_shape(capsys):
    assert main(["plan", "--protocol", "iv-12-step-3-bag", "--drug", "carboplatin", "--dose", "400mg",
                 "--final-rate", "75", "--format", "json"]) == 0  # fmt: skip
    plan = json.loads(capsys.readouterr().out)
    assert plan["protocol"]["id"] == "iv-12-step-3-bag" and plan["protocol"]["version"]
    assert plan["target_dose"] == {"value": "400", "unit": "mg"}
    assert set(plan["solutions"][0]) >= {
        "number",
        "concentration",
        "volume_ml",
        "drug_amount",
        "volume_infused_ml",
    }
    assert set(plan["steps"][0]) >= {
        "number",
        "solution",
        "rate_ml_h",
        "minutes",
        "volume_ml",
        "dose",
        "cumulative_dose",
    }
    assert isinstance(plan["total_minutes"], str) and isinstance(plan["steps"][0]["dose"]["value"], str)
    assert plan["steps"][-1]["cumulative_dose"]["value"] == "400"
    assert isinstance(plan["premedications"], list) and isinstance(plan["warnings"], list)


def test_table_worksheet_is_readable(capsys):
    assert main(["plan", "--protocol", "iv-12-step-3-bag", "--drug", "ceftazidime", "--dose", "2g"]) == 0
    out = capsys.readouterr().out
    assert "Total time: 5 h 39 min" in out
    assert "1,845" in out and "1845.362" not in out and "Bag 3 (target)" in out  # the display policy
    assert "every 30 minutes during the final step" in out


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--dose=-5mg"], "--dose"),
        (["--dose", "-5mg"], "--dose"),
        (["--dose", "0mg"], "--dose"),
        (["--dose", "900g"], "--dose"),
        (["--dose", "400"], "--dose"),
        (["--dose", "400 furlongs"], "--dose"),
        (["--dose", "400mg", "--protocol", "nope"], "--protocol"),
        (["--dose", "400mg", "--final-rate", "1500"], "--final-rate"),
        (["--dose", "400mg", "--final-rate", "fast"], "--final-rate"),
        (["--dose", "400mg", "--bag-volume", "-250"], "--bag-volume"),
        (["--dose", "400mg", "--closing", "magic"], "--closing"),
        (["--dose", "400mg", "--bag-volumes", "50,50"], "--bag-volumes"),
        (["--dose", "400mg", "--pump-max", "50"], "--final-rate"),
        (["--dose", "400mg", "--insert-before", "99"], "--insert-before"),
        (
            ["--dose", "1296700 units", "--protocol", "penicillin-v-oral-wendel", "--final-rate", "75"],
            "--final-rate",
        ),
        (["--dose", "400 units", "--protocol", "tmp-smx-oral-hourly"], "--dose"),
    ],
)
def test_bad_input_exits_2_with_one_line_naming_the_argument(capsys, args, field):
    base = ["plan", "--protocol", "iv-12-step-3-bag", "--drug", "carboplatin"]
    # a later --protocol overrides the first (argparse keeps the last value)
    assert main(base + args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert field in err
    assert "Traceback" not in err


def test_entry_point_never_shows_a_traceback():
    result = subprocess.run(
        [sys.executable, "-m", "fhir_desens.cli", "plan", "--protocol", "iv-12-step-3-bag", "--drug", "x",
         "--dose", "1e999mg"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_plan_does_not_import_the_fhir_model_library():
    code = (
        "import sys; from fhir_desens.cli import main; "
        "main(['plan','--protocol','iv-12-step-3-bag','--drug','x','--dose','400mg','--format','json']); "
        "bad = [m for m in sys.modules if m.startswith(('fhir.resources','pydantic','requests','flask','lxml'))]; "
        "sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, check=False).returncode == 0


def _modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code`` (which prints nothing on stderr)."""
    code += "; import sys, json; print(json.dumps(sorted(sys.modules)), file=sys.stderr)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(result.stderr))


def test_plan_imports_only_what_it_uses():
    """The cold start (benchmarks/bench_cold_start.py): `plan` reads the one template it plans with and
    imports neither dataclasses (with inspect), typing, datetime, the replan engine nor the FHIR mapping."""
    plan = (
        "from fhir_desens.cli import main; "
        "main(['plan','--protocol','iv-12-step-3-bag','--drug','x','--dose','400mg','--format','json']); "
        "from fhir_desens.protocol.library import _builtin_protocol; "
        "assert _builtin_protocol.cache_info().currsize == 1, 'more than one template read'"
    )
    added = _modules_after(plan) - _modules_after("pass")
    unused = {
        "dataclasses",
        "inspect",
        "typing",
        "datetime",
        "fhir_desens.protocol.replan",
        "fhir_desens.fhir",
    }
    assert "fhir_desens.protocol.calculate" in added
    assert not added & unused


def test_plan_compiles_no_source_text_at_start_up():
    """The cold start: `plan` runs only code read from module files. Compiling source text at run time
    (as ``dataclasses`` and ``namedtuple`` do for each class, and ``@record`` once did for every
    ``__init__``) cost about half a million instructions a class (benchmarks/bench_cold_start.py)."""
    code = (
        "import argparse, decimal, json, sys; compiled = []; "  # decimal's DecimalTuple is a namedtuple
        "sys.addaudithook(lambda event, args: event == 'compile' and compiled.append(str(args[1]))); "
        "from fhir_desens.cli import main; "
        "main(['plan','--protocol','iv-12-step-3-bag','--drug','x','--dose','400mg','--format','json']); "
        "print([name for name in compiled if not name.endswith('.py')], file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stderr.strip() == "[]"


def test_replan_lists_every_option(capsys):
    assert main(["replan", "--protocol", "iv-12-step-3-bag", "--drug", "carboplatin", "--dose", "400mg",
                 "--step", "12", "--minutes", "30", "--format", "json"]) == 0  # fmt: skip
    options = json.loads(capsys.readouterr().out)
    assert options["resume-same-step"]["reaches_target"] is True
    assert options["stop"]["steps"] == []


def test_every_command_is_listed_and_loads_with_its_own_help() -> None:
    """`fhir-desens --help` lists every command without importing them; each loads on its own."""
    import importlib

    from fhir_desens.cli import COMMANDS, build_parser

    listing = build_parser("").format_help()
    for name, (module_name, line) in COMMANDS.items():
        assert name in listing and line in listing
        module = importlib.import_module(module_name)
        assert module.HELP and callable(module.add_arguments) and callable(module.run)
        commands = next(a for a in build_parser(name)._actions if isinstance(a, argparse._SubParsersAction))
        assert commands.choices[name].description == module.HELP


@pytest.mark.parametrize(
    ("where", "refusal"),
    [
        (
            ["--step", "9", "--minutes", "20"],
            "fhir-desens replan: --minutes: step 9 lasts 15 min (accepted: 0 to 15)",
        ),
        (
            ["--step", "40", "--minutes", "1"],
            "fhir-desens replan: --step: there is no step 40 (accepted: 1 to 12)",
        ),
    ],
)
def test_replan_refuses_a_step_or_minute_outside_the_plan_once(capsys, where, refusal):
    """Walk 9: minute 20 of a 15-minute step printed 'not possible' under all five options, exit 0."""
    code = main(
        ["replan", "--protocol", "iv-12-step-3-bag", "--drug", "carboplatin", "--dose", "400mg", *where]
    )
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.strip() == refusal


def test_replan_names_the_delivered_units_in_words(capsys):
    """Walk 9: 'delivered before resuming: 700 [iU]' printed the UCUM code."""
    assert (
        main(["replan", "--protocol", "penicillin-v-oral-wendel", "--drug", "penicillin", "--step", "3"]) == 0
    )
    out = capsys.readouterr().out
    assert "delivered before resuming: 700 units" in out and "[iU]" not in out
