"""Shared argument parsing for plan-like commands: text in, domain values out, InputError on bad input."""

from __future__ import annotations

import argparse
import os
from decimal import Decimal

from fhir_desens.boundary.text import form_text
from fhir_desens.errors import InputError
from fhir_desens.protocol.model import ClosingMethod, Protocol
from fhir_desens.protocol.plan import DEFAULT_PUMP_MAX_ML_H, PlanRequest
from fhir_desens.protocol.quantity import Dimension, parse_decimal, parse_quantity, plain

#: Longest drug name accepted ("Trimethoprim-sulfamethoxazole 160 mg/800 mg ..." fits well).
MAX_DRUG_NAME = 200


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--protocol",
        metavar="ID",
        help="protocol id (see `fhir-desens protocols`); with --protocol-file, which of its protocols",
    )
    parser.add_argument(
        "--protocol-file",
        metavar="FILE",
        help="a PlanDefinition Bundle or package (JSON or XML), e.g. from `fhir-desens author`, instead "
        "of a built-in protocol",
    )
    parser.add_argument(
        "--drug", required=True, metavar="NAME", help="the drug to desensitize, e.g. carboplatin"
    )
    parser.add_argument(
        "--dose", metavar="QUANTITY", help="target dose with unit, e.g. 400mg, 2g, 1296700units"
    )
    parser.add_argument("--final-rate", metavar="ML_H", help="final infusion rate in mL/h (protocol default)")
    parser.add_argument("--bag-volume", metavar="ML", help="volume of every bag in mL (protocol default)")
    parser.add_argument("--bag-volumes", metavar="ML,ML,...", help="volume of each bag in mL, e.g. 50,50,250")
    parser.add_argument("--closing", metavar="METHOD", help=", ".join(m.value for m in ClosingMethod))
    parser.add_argument(
        "--bag-fractions", metavar="F,F,...", help="fraction-bags: dose fraction per bag, sum 1"
    )
    parser.add_argument(
        "--concentrations", metavar="C,C,...", help="remainder-step: fixed concentration per bag"
    )
    parser.add_argument(
        "--pump-max", metavar="ML_H", help=f"pump maximum rate (default {plain(DEFAULT_PUMP_MAX_ML_H)})"
    )
    parser.add_argument(
        "--pump-resolution",
        metavar="ML_H",
        help="the steps the pump is programmed in, e.g. 0.1 (every rate is rounded to it and doses follow "
        "exactly); 'exact' keeps unrounded rates (default exact)",
    )
    parser.add_argument(
        "--syringe-volumes",
        action="store_true",
        help="discrete doses: round each volume to the marks of the syringe that measures it "
        "(1 mL: 0.01, 3 mL: 0.1, 5-10 mL: 0.2, 20-60 mL: 1 mL) and compute the dose from it",
    )
    parser.add_argument(
        "--insert-before",
        metavar="N",
        action="append",
        default=[],
        help="insert an intermediate-rate step before protocol step N (repeatable)",
    )


def _measure(text: str, field: str, unit_code: str, dimension: Dimension) -> Decimal:
    quantity = parse_quantity(text, field, default_unit=unit_code)
    if quantity.dimension is not dimension:
        raise InputError(field, f"'{text}' is not a {dimension.value}", f"a number in {unit_code}")
    return quantity.to(unit_code).value


def _list(text: str | None, field: str, parse: type[Decimal] | None = None) -> tuple[Decimal, ...] | None:
    if text is None:
        return None
    parts = [p for p in text.replace(";", ",").split(",") if p.strip()]
    if not parts:
        raise InputError(field, "an empty list", "comma-separated numbers, e.g. 50,50,250")
    return tuple(parse_decimal(p, field) for p in parts)


def _int(text: str, field: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InputError(field, f"'{text}' is not a step number", "a whole number") from None


def protocols_from_file(path: str) -> list[Protocol]:
    """The protocols of an exchange file, validated (our profiles and the arithmetic) before use."""
    from fhir_desens.exchange.library import read_protocols

    if not os.path.exists(path):
        raise InputError("--protocol-file", f"{path} does not exist", "a Bundle or package file")
    protocols = read_protocols(path)
    if not protocols:
        raise InputError("--protocol-file", f"{path} holds no fhir-desens protocol PlanDefinition")
    return protocols


def chosen_protocol(args: argparse.Namespace, extra: dict[str, Protocol] | None = None) -> Protocol:
    """``--protocol ID`` from the library, or the protocol of ``--protocol-file`` (``--protocol`` picks)."""
    from fhir_desens.protocol.library import get_protocol

    path = getattr(args, "protocol_file", None)
    if path is None:
        if args.protocol is None:
            raise InputError("--protocol", "a protocol is required", "--protocol ID or --protocol-file FILE")
        return get_protocol(args.protocol, extra)
    protocols = protocols_from_file(path)
    if args.protocol is None:
        if len(protocols) > 1:
            ids = ", ".join(p.id for p in protocols)
            raise InputError("--protocol", f"{path} holds {len(protocols)} protocols; choose one", ids)
        return protocols[0]
    for protocol in protocols:
        if protocol.id == args.protocol:
            return protocol
    raise InputError(
        "--protocol", f"{path} holds no protocol '{args.protocol}'", ", ".join(p.id for p in protocols)
    )


def plan_request(args: argparse.Namespace, extra: dict[str, Protocol] | None = None) -> PlanRequest:
    protocol = chosen_protocol(args, extra)
    closing = None if args.closing is None else ClosingMethod.parse(args.closing)
    volumes = _list(args.bag_volumes, "--bag-volumes")
    return PlanRequest(
        protocol=protocol,
        drug=form_text(args.drug, "--drug", max_length=MAX_DRUG_NAME),
        target=None if args.dose is None else parse_quantity(args.dose, "--dose"),
        final_rate_ml_h=None
        if args.final_rate is None
        else _measure(args.final_rate, "--final-rate", "mL/h", Dimension.RATE),
        bag_volume_ml=None
        if args.bag_volume is None
        else _measure(args.bag_volume, "--bag-volume", "mL", Dimension.VOLUME),
        bag_volumes_ml=volumes,
        closing=closing,
        bag_fractions=_list(args.bag_fractions, "--bag-fractions"),
        concentrations=_list(args.concentrations, "--concentrations"),
        pump_max_ml_h=DEFAULT_PUMP_MAX_ML_H
        if args.pump_max is None
        else _measure(args.pump_max, "--pump-max", "mL/h", Dimension.RATE),
        insert_before=tuple(
            _int(n, "--insert-before") for item in args.insert_before for n in item.split(",") if n.strip()
        ),
        pump_resolution_ml_h=_pump_resolution(getattr(args, "pump_resolution", None)),
        syringe_volumes=bool(getattr(args, "syringe_volumes", False)),
    )


def _pump_resolution(text: str | None) -> Decimal | None:
    if text is None or text.strip().lower() == "exact":
        return None
    return _measure(text, "--pump-resolution", "mL/h", Dimension.RATE)
