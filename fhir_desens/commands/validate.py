"""`fhir-desens validate`: structure, our profiles and clinical consistency of exchange files."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fhir_desens.exchange.validate import ValidationReport

HELP = (
    "Validate FHIR files (a resource, a Bundle or a package .tgz; JSON or XML): FHIR R4 structure, "
    "the fhir-desens profiles, and each protocol's doses recomputed. Exit 0 valid, 1 invalid, 2 unusable input."
)
#: A running HL7 validator service (`fhir-desens hl7-validator`), used by --engine hl7 instead of starting one.
VALIDATOR_URL_VARIABLE = "FHIR_DESENS_HL7_VALIDATOR"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="FILE", help="files or folders to validate")
    parser.add_argument(
        "--format", choices=["text", "json"], default="text", help="text lines, or an OperationOutcome"
    )
    parser.add_argument(
        "--engine",
        choices=["medplum", "hl7"],
        default="medplum",
        help="structural validator: Medplum's (Node, default) or the HL7 validator's engine (Java; "
        f"uses the service at ${VALIDATOR_URL_VARIABLE} when set, else starts one, about a minute)",
    )


def run(args: argparse.Namespace) -> int:
    import sys

    from fhir_desens.exchange.validate import medplum_validator, validate_paths
    from fhir_desens.io.json import dumps

    if args.engine == "hl7":
        report = _validate_with_hl7(args.paths)
    else:
        report = validate_paths(args.paths, structural=medplum_validator())
    if args.format == "json":
        sys.stdout.write(dumps(report.operation_outcome(), indent=2) + "\n")
    else:
        sys.stdout.write("\n".join(report.text_lines()) + "\n")
    return report.exit_code


def _validate_with_hl7(paths: list[str]) -> ValidationReport:
    import sys

    from fhir_desens.exchange.validate import validate_paths
    from fhir_desens.sandbox.java_services import Hl7ValidatorProcess, hl7_validator

    url = os.environ.get(VALIDATOR_URL_VARIABLE)
    if url:
        return validate_paths(paths, structural=hl7_validator(url), r4_bindings=False)
    print("starting the HL7 validator service (Java; about a minute) ...", file=sys.stderr)
    with Hl7ValidatorProcess() as service:
        assert service.url is not None
        return validate_paths(paths, structural=hl7_validator(service.url), r4_bindings=False)
