"""`fhir-desens fhir-server`: run the development FHIR R4 server in the foreground."""

from __future__ import annotations

import argparse

HELP = "Run the in-memory development FHIR R4 server (Medplum engine, Node 20) until Ctrl-C."


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range (0-65535, 0 = any free port): {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=8103, help="port (default: 8103; 0 = any free port)")
    parser.add_argument(
        "--profiles",
        metavar="DIR",
        default=None,
        help="folder of StructureDefinitions (with snapshots) for $validate?profile=",
    )


def run(args: argparse.Namespace) -> int:
    from fhir_desens.sandbox.fhir_server import serve

    return serve(args.host, args.port, args.profiles)
