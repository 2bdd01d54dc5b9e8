"""`fhir-desens validate`: structure, our profiles and clinical consistency of exchange files."""

from __future__ import annotations

import argparse

HELP = (
    "Validate FHIR files (a resource, a Bundle or a package .tgz; JSON or XML): FHIR R4 structure, "
    "the fhir-desens profiles, and each protocol's doses recomputed. Exit 0 valid, 1 invalid, 2 unusable input."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="FILE", help="files or folders to validate")
    parser.add_argument(
        "--format", choices=["text", "json"], default="text", help="text lines, or an OperationOutcome"
    )


def run(args: argparse.Namespace) -> int:
    import sys

    from fhir_desens.exchange.validate import medplum_validator, validate_paths
    from fhir_desens.io.json import dumps

    report = validate_paths(args.paths, structural=medplum_validator())
    if args.format == "json":
        sys.stdout.write(dumps(report.operation_outcome(), indent=2) + "\n")
    else:
        sys.stdout.write("\n".join(report.text_lines()) + "\n")
    return report.exit_code
