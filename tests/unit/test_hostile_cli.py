"""Careless and hostile command lines (issue 11): exit 2 and one line, never a traceback or a hang.

Each failure the issue lists has a regression test named after it; hypothesis then feeds the CLI
hostile arguments and hostile protocol files.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fhir_desens.cli import main
from fhir_desens.errors import DesensError
from fhir_desens.exchange.load import load_bytes
from fhir_desens.exchange.validate import validate_loaded

PLAN = ["--protocol", "iv-12-step-3-bag", "--dose", "400mg"]


def exit_status(argv: list[str]) -> int:
    """main's return value, or argparse's own exit (status 2, one usage line)."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)


def run(capsys, *argv: str) -> tuple[int, str]:
    """Exit status and what the person reads (errors on stderr; validate's report on stdout)."""
    code = exit_status(list(argv))
    captured = capsys.readouterr()
    return code, captured.err or captured.out


def one_line_exit_2(code: int, err: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    if not err.startswith("fatal"):  # validate prints its report (one finding and a summary) instead
        assert len(err.strip().splitlines()) == 1, err


def test_tracebacks_for_a_control_character_in_apply_drug_with_xml_format(capsys):
    code, err = run(
        capsys, "apply", *PLAN, "--drug", "carbo\x01platin", "--patient", "Patient/1", "--format", "xml"
    )
    one_line_exit_2(code, err)
    assert "--drug" in err and "U+0001" in err


def test_tracebacks_for_a_lone_surrogate_escape_in_json_given_to_validate(capsys, tmp_path):
    file = tmp_path / "p.json"
    file.write_text('{"resourceType": "PlanDefinition", "title": "Carbo \\ud800"}')
    code, err = run(capsys, "validate", str(file))
    one_line_exit_2(code, err)
    assert "surrogate" in err


def test_tracebacks_for_a_lone_surrogate_escape_in_json_given_to_import(capsys, tmp_path):
    file = tmp_path / "p.json"
    file.write_text('{"resourceType": "PlanDefinition", "title": "Carbo \\udfff"}')
    code, err = run(capsys, "import", str(file), "--server", "http://127.0.0.1:9/fhir")
    one_line_exit_2(code, err)


def test_validate_hangs_on_a_fifo(capsys, tmp_path):
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    code, err = run(capsys, "validate", str(fifo))
    one_line_exit_2(code, err)
    assert "pipe" in err


def test_validate_reads_dev_zero_until_memory_runs_out(capsys):
    code, err = run(capsys, "validate", "/dev/zero")
    one_line_exit_2(code, err)
    assert "device" in err


@pytest.mark.parametrize("kind", ["folder", "missing folder", "empty string"])
def test_out_pointing_at_a_folder_a_missing_folder_or_an_empty_string(capsys, tmp_path, kind):
    out = {"folder": str(tmp_path), "missing folder": str(tmp_path / "no" / "x.json"), "empty string": ""}[
        kind
    ]
    code, err = run(capsys, "export", "--out", out)
    one_line_exit_2(code, err)
    assert "--out" in err
    assert list(tmp_path.iterdir()) == []  # no temporary file left beside it


def test_out_is_checked_before_any_work(capsys, tmp_path):
    code, err = run(
        capsys, "apply", *PLAN, "--drug", "carboplatin", "--patient", "Patient/1", "--out", str(tmp_path)
    )
    one_line_exit_2(code, err)
    assert "--out" in err


def test_package_out_never_replaces_a_non_regular_file(capsys, tmp_path):
    fifo = tmp_path / "device-like"
    os.mkfifo(fifo)
    code, err = run(capsys, "package", "--out", str(fifo))
    one_line_exit_2(code, err)
    assert stat.S_ISFIFO(fifo.stat().st_mode)  # still the pipe, not a regular file
    if Path("/dev/full").exists():
        code, err = run(capsys, "package", "--out", "/dev/full")
        one_line_exit_2(code, err)
        assert stat.S_ISCHR(Path("/dev/full").stat().st_mode)


def test_out_is_written_atomically_and_keeps_nothing_else(capsys, tmp_path):
    out = tmp_path / "bundle.json"
    out.write_text("old")
    code, _ = run(capsys, "export", "--protocol", "iv-12-step-3-bag", "--out", str(out))
    assert code == 0
    assert json.loads(out.read_text())["resourceType"] == "Bundle"
    assert [p.name for p in tmp_path.iterdir()] == ["bundle.json"]


def test_null_or_wrongly_typed_protocol_fields_through_validate(capsys, tmp_path):
    document = json.loads(json.dumps(BASE))
    plan = next(e["resource"] for e in document["entry"] if e["resource"]["resourceType"] == "PlanDefinition")
    plan["extension"] = [None, True, {"url": 5}]
    plan["action"] = "x"
    file = tmp_path / "protocol.json"
    file.write_text(json.dumps(document))
    code, _ = run(capsys, "validate", str(file))
    assert code in (1, 2)


def test_the_installed_command_prints_one_line_not_a_traceback(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    result = subprocess.run(
        [sys.executable, "-m", "fhir_desens.cli", "validate", str(fifo)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr


# --- property-based -------------------------------------------------------------------------------

HOSTILE_TEXT = st.text(max_size=30) | st.sampled_from(
    ["\u202e", "\x00", "\ud800", "1e-400", "NaN", "-1", "", " "]
)
CLI_PROPERTY = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
DOCUMENTED = {0, 1, 2, 3}


@CLI_PROPERTY
@given(drug=HOSTILE_TEXT, dose=HOSTILE_TEXT, rate=HOSTILE_TEXT, fmt=st.sampled_from(["json", "xml"]))
def test_hostile_plan_arguments_give_a_documented_exit_and_one_line(capsys, drug, dose, rate, fmt):
    code = exit_status(
        [
            "apply",
            "--protocol",
            "iv-12-step-3-bag",
            "--drug",
            drug,
            "--dose",
            dose,
            "--final-rate",
            rate,
            "--patient",
            "Patient/1",
            "--format",
            fmt,
        ]
    )
    captured = capsys.readouterr()
    assert code in DOCUMENTED, captured.err
    assert "Traceback" not in captured.err
    if code:
        assert len(captured.err.strip().splitlines()) == 1


def _exported() -> dict:
    from fhir_desens.fhir.plandefinition import library_bundle
    from fhir_desens.protocol.library import get_protocol

    return library_bundle([get_protocol("iv-12-step-3-bag")])


BASE = json.loads(json.dumps(_exported(), default=str))


def _paths(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*path, key)
            yield from _paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield (*path, index)
            yield from _paths(value, (*path, index))


PATHS = list(_paths(BASE))
WRONG = st.sampled_from([None, 5, -1, True, "x", "\u202e", [], {}, [1], {"a": None}, 1e300])


@CLI_PROPERTY
@given(
    where=st.lists(st.sampled_from(PATHS), min_size=1, max_size=3),
    values=st.lists(WRONG, min_size=3, max_size=3),
)
# found by this property on 2026-12-03: bag 3's strength extension without its url left a solution
# with no strength at all, which the PlanDefinition reader let through to the engine (an assert)
@example(where=[("entry", 0, "resource", "extension", 3, "extension", 2, "url")], values=[None, None, None])
def test_null_or_wrongly_typed_protocol_fields_give_a_report_not_a_traceback(
    capsys, tmp_path_factory, where, values
):
    document = json.loads(json.dumps(BASE))
    for path, value in zip(where, values, strict=False):
        node = document
        try:
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed this path
    # The clinical reader is what met null and wrongly typed fields; the node structural validator
    # (run by the CLI) is left out here to keep the suite fast.
    try:
        report = validate_loaded(load_bytes(json.dumps(document).encode(), "protocol.json"), structural=None)
    except DesensError:
        return  # refused as unusable input (exit 2)
    assert report.exit_code in DOCUMENTED
