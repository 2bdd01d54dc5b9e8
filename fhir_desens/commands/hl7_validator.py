"""`fhir-desens hl7-validator`: run the HL7 validator service in the foreground (for --engine hl7)."""

from __future__ import annotations

import argparse

from fhir_desens.commands._ports import port_number

HELP = (
    "Run the HL7 validator's engine (Java, `make java`) with our guide loaded until Ctrl-C; then "
    "FHIR_DESENS_HL7_VALIDATOR=<its URL> fhir-desens validate --engine hl7 FILE reuses it."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port", type=port_number, default=8190, help="port (default: 8190; 0 = any free port)"
    )


def run(args: argparse.Namespace) -> int:
    from fhir_desens.sandbox.java_services import Hl7ValidatorProcess
    from fhir_desens.sandbox.signals import run_until_stopped

    return run_until_stopped(
        Hl7ValidatorProcess(port=args.port),
        "HL7 validator service",
        lambda url: (
            f"HL7 validator service at {url}  (export FHIR_DESENS_HL7_VALIDATOR={url}; Ctrl-C to stop)"
        ),
    )
