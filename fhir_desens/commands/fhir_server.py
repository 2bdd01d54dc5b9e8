"""`fhir-desens fhir-server`: run the development FHIR R4 server in the foreground."""

from __future__ import annotations

import argparse

from fhir_desens.commands._options import port_number

HELP = "Run the in-memory development FHIR R4 server (Medplum engine, Node 20) until Ctrl-C."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument(
        "--port", type=port_number, default=8103, help="port (default: 8103; 0 = any free port)"
    )
    parser.add_argument(
        "--profiles",
        metavar="DIR",
        default=None,
        help="folder of StructureDefinitions (with snapshots) for $validate?profile=",
    )


def run(args: argparse.Namespace) -> int:
    from fhir_desens.sandbox.fhir_server import serve

    return serve(args.host, args.port, args.profiles)
