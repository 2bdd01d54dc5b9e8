"""`fhir-desens export`: protocols as a FHIR collection Bundle (PlanDefinitions + ActivityDefinitions)."""

from __future__ import annotations

import argparse
import sys

HELP = "Export protocols as a FHIR R4 collection Bundle in JSON or XML (for exchange between hospitals)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--protocol", action="append", metavar="ID", help="protocol id (repeatable; default: all)"
    )
    parser.add_argument(
        "--protocol-file",
        metavar="FILE",
        help="export the protocols of this Bundle or package (validated first), e.g. to convert JSON to XML",
    )
    parser.add_argument("--format", choices=["json", "xml"], default="json")
    parser.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")


def write_output(data: bytes, out: str | None) -> None:
    """Write to a file (created whole, or not at all) or to standard output."""
    if out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    from fhir_desens.io.files import write_atomically

    write_atomically(data, out)


def run(args: argparse.Namespace) -> int:
    from fhir_desens.fhir.plandefinition import library_bundle
    from fhir_desens.io.formats import write_resource
    from fhir_desens.protocol.library import builtin_protocols, get_protocol

    if args.protocol_file is not None:
        from fhir_desens.commands._options import protocols_from_file

        available = {p.id: p for p in protocols_from_file(args.protocol_file)}
        chosen = [get_protocol(p, available) for p in args.protocol] if args.protocol else None
        protocols = chosen or list(available.values())
    else:
        protocols = (
            [get_protocol(p) for p in args.protocol] if args.protocol else list(builtin_protocols().values())
        )
    write_output(write_resource(library_bundle(protocols), args.format), args.out)
    return 0
