"""`fhir-desens author`: a hospital's own table (CSV) to a protocol Bundle, every stated value re-verified."""

from __future__ import annotations

import argparse
from decimal import Decimal

HELP = (
    "Author a protocol from a CSV table: doses recomputed exactly, stated doses and cumulative totals "
    "checked; writes a FHIR Bundle (PlanDefinition + ActivityDefinitions). Exit 0 written, 1 stated "
    "values disagree (nothing written), 2 unusable input."
)
MAX_TABLE_BYTES = 1024 * 1024


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("table", metavar="TABLE.csv", help="the table: a header row, then one row per step")
    parser.add_argument("--id", required=True, metavar="ID", help="protocol id, e.g. amiodarone-iv-11-dose")
    parser.add_argument("--title", required=True, metavar="TEXT")
    parser.add_argument("--drug", required=True, metavar="NAME", help="the drug the table is written for")
    parser.add_argument("--route", required=True, choices=["oral", "iv"])
    parser.add_argument("--interval", metavar="MINUTES", help="minutes between discrete doses")
    parser.add_argument(
        "--scaling",
        choices=["fixed", "proportional"],
        help="fixed: the table's doses are the doses (discrete tables); proportional: scaled to the "
        "target (infusion tables). Default by the table's kind",
    )
    parser.add_argument(
        "--bag-volumes", metavar="LABEL=ML,...", help="prepared volume of each bag, e.g. A=100,B=100"
    )
    parser.add_argument(
        "--solutions",
        metavar="FILE",
        help="CSV of how bags are prepared: solution, bag_ml, overfill_ml, remove_ml, drug, drug_ml",
    )
    parser.add_argument("--source", metavar="TEXT", help="citation of the table (printed on every plan)")
    parser.add_argument(
        "--diluent",
        metavar="TEXT",
        help="what the bags or dilutions are made up in, e.g. 'NS or D5W' (every sheet)",
    )
    parser.add_argument("--version", default="1.0.0", metavar="V")
    parser.add_argument("--format", choices=["json", "xml"], default="json")
    parser.add_argument("--out", metavar="FILE", help="write to FILE (created whole or not at all)")


def _read_text(path: str, field: str) -> str:
    from pathlib import Path

    from fhir_desens.errors import InputError

    file = Path(path)
    try:
        if not file.is_file():
            raise InputError(field, f"{path} is not a regular file", "a CSV file")
        if file.stat().st_size > MAX_TABLE_BYTES:
            raise InputError(field, f"{path} is larger than {MAX_TABLE_BYTES} bytes", "a table of steps")
        return file.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(field, f"{path} is not UTF-8 text", "a CSV file saved as UTF-8") from None
    except OSError as error:
        raise InputError(field, f"cannot read {path}: {error.strerror or error}") from None


def _bag_volumes(text: str | None) -> dict[str, Decimal]:
    from fhir_desens.errors import InputError
    from fhir_desens.protocol.quantity import parse_decimal

    volumes: dict[str, Decimal] = {}
    if text is None:
        return volumes
    for part in (p.strip() for p in text.split(",")):
        label, equals, value = part.partition("=")
        if not equals or not label.strip() or not value.strip():
            raise InputError("--bag-volumes", f"'{part}' is not LABEL=ML", "e.g. A=100,B=100,C=250")
        volume = parse_decimal(value, "--bag-volumes")
        if volume <= 0:
            raise InputError("--bag-volumes", f"bag {label.strip()}: {value} mL is not above 0")
        volumes[label.strip()] = volume
    return volumes


def _checked_id(text: str) -> str:
    import re

    from fhir_desens.errors import InputError

    if not re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", text):
        raise InputError("--id", f"'{text}' is not a FHIR id", "letters, digits, '-' and '.', up to 64")
    return text


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from fhir_desens.authoring.build import AuthorOptions, author_protocol
    from fhir_desens.authoring.table import read_preparations, read_table
    from fhir_desens.boundary.text import form_text
    from fhir_desens.commands.export import write_output
    from fhir_desens.errors import InputError
    from fhir_desens.fhir.plandefinition import library_bundle
    from fhir_desens.io.formats import write_resource
    from fhir_desens.protocol.quantity import parse_decimal

    name = Path(args.table).name
    rows = read_table(_read_text(args.table, "TABLE.csv"), name)
    preparations = {}
    if args.solutions is not None:
        preparations = read_preparations(_read_text(args.solutions, "--solutions"), Path(args.solutions).name)
    interval = None if args.interval is None else parse_decimal(args.interval, "--interval")
    if interval is not None and interval <= 0:
        raise InputError("--interval", f"{args.interval} minutes is not above 0")
    title = form_text(args.title, "--title", max_length=200)
    drug = form_text(args.drug, "--drug", max_length=100)
    source = None if args.source is None else form_text(args.source, "--source", max_length=500)
    diluent = None if args.diluent is None else form_text(args.diluent, "--diluent", max_length=100)
    for field, value in (("--title", title), ("--drug", drug), ("--source", source), ("--diluent", diluent)):
        if value == "":
            raise InputError(field, "is empty", "a line of text")
    options = AuthorOptions(
        id=_checked_id(args.id),
        title=title,
        drug=drug,
        route=args.route,
        interval_minutes=interval,
        scaling=args.scaling,
        bag_volumes_ml=_bag_volumes(args.bag_volumes),
        preparations=preparations,
        source=source,
        diluent=diluent,
        version=args.version,
        table_name=name,
    )
    authored = author_protocol(rows, options)
    write_output(write_resource(library_bundle([authored.protocol]), args.format), args.out)
    if args.out is not None:
        print(
            f"{args.out}: protocol {authored.protocol.id} ({len(rows)} steps; the table's doses sum to "
            f"{authored.total})",
            file=sys.stderr,
        )
    return 0
