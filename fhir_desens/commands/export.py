"""`fhir-desens export`: protocols as a FHIR collection Bundle (PlanDefinitions + ActivityDefinitions)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fhir_desens.protocol.model import Protocol

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


def chosen_protocols(ids: list[str] | None, files: list[str]) -> list[Protocol]:
    """``--protocol`` ids (default: all) from the built-in library, or from ``files`` (Bundles or packages,
    validated first) when any are given; a protocol id found twice in the files is refused."""
    from fhir_desens.errors import InputError
    from fhir_desens.protocol.library import builtin_protocols, get_protocol

    if not files:
        return [get_protocol(p) for p in ids] if ids else list(builtin_protocols().values())
    from fhir_desens.commands._options import protocols_from_file

    available: dict[str, Protocol] = {}
    for path in files:
        for protocol in protocols_from_file(path):
            if protocol.id in available:
                raise InputError(
                    "--protocol-file", f"protocol {protocol.id} is in more than one file", "one each"
                )
            available[protocol.id] = protocol
    return [get_protocol(p, available) for p in ids] if ids else list(available.values())


def run(args: argparse.Namespace) -> int:
    from fhir_desens.fhir.plandefinition import library_bundle
    from fhir_desens.io.formats import write_resource

    files = [args.protocol_file] if args.protocol_file is not None else []
    protocols = chosen_protocols(args.protocol, files)
    write_output(write_resource(library_bundle(protocols), args.format), args.out)
    return 0
