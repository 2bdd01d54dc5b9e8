"""`fhir-desens package`: protocols as a FHIR NPM package (.tgz) for publishing a protocol library."""

from __future__ import annotations

import argparse

HELP = (
    "Write protocols as a FHIR NPM package (package.tgz: package.json, one file per resource, .index.json)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="FILE.tgz", help="the package file to write")
    parser.add_argument(
        "--protocol", action="append", metavar="ID", help="protocol id (repeatable; default: all)"
    )
    parser.add_argument(
        "--protocol-file",
        action="append",
        default=[],
        metavar="FILE",
        help="package the protocols of this Bundle or package (validated first), e.g. one written by "
        "`fhir-desens author` or `fetch` (repeatable), instead of the built-in library",
    )
    parser.add_argument(
        "--name", default=None, metavar="NAME", help="package name (default fhir-desens.protocols)"
    )
    parser.add_argument("--package-version", default=None, metavar="VERSION", help="package version")
    parser.add_argument(
        "--include-guide",
        action="store_true",
        help="also carry our StructureDefinitions, CodeSystems and ValueSets (else depend on fhir-desens.ig)",
    )


def run(args: argparse.Namespace) -> int:
    from fhir_desens.commands.export import chosen_protocols, write_output
    from fhir_desens.exchange.package import DEFAULT_PACKAGE_NAME, package_protocols
    from fhir_desens.fhir.canonical import IG_VERSION

    protocols = chosen_protocols(args.protocol, args.protocol_file)
    data = package_protocols(
        protocols,
        name=args.name or DEFAULT_PACKAGE_NAME,
        version=args.package_version or IG_VERSION,
        include_guide=args.include_guide,
    )
    write_output(data, args.out)
    return 0
