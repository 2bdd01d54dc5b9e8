"""`fhir-desens import`: validate a protocol file, then write it to a FHIR server without duplicates."""

from __future__ import annotations

import argparse

from fhir_desens.commands.fetch import add_server_arguments

HELP = (
    "Import protocols (a resource, Bundle or package .tgz) into a FHIR server: validate first and write "
    "nothing when invalid; conditional creates on url+version; conflicts and partial failures reported."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="FILE", help="the file (or folder) to import")
    add_server_arguments(parser)
    parser.add_argument("--format", choices=["text", "json"], default="text", help="how to print the report")


def run(args: argparse.Namespace) -> int:
    import sys

    from fhir_desens.exchange.importer import import_resources
    from fhir_desens.exchange.load import load_path
    from fhir_desens.exchange.remote import open_client
    from fhir_desens.exchange.validate import medplum_validator
    from fhir_desens.io.json import dumps

    loaded = load_path(args.path)
    with open_client(args.server, timeout=args.timeout, token_variable=args.bearer_token_env) as client:
        report = import_resources(client, loaded, structural=medplum_validator(), sources=[args.path])
    if args.format == "json":
        sys.stdout.write(dumps(report.as_dict(), indent=2) + "\n")
    else:
        lines = report.validation.text_lines(include_information=False) if not report.validation.valid else []
        sys.stdout.write("\n".join([*lines, *report.text_lines()]) + "\n")
    if report.error is not None:
        print(f"fhir-desens import: {report.error}", file=sys.stderr)
    return report.exit_code
