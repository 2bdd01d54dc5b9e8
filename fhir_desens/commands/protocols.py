"""`fhir-desens protocols`: list the protocol library."""

from __future__ import annotations

import argparse
import json

HELP = "List the built-in protocols (id, title, route, steps, source)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=["table", "json"], default="table")


def run(args: argparse.Namespace) -> int:
    from fhir_desens.protocol.library import builtin_protocols
    from fhir_desens.protocol.report import protocol_summary

    protocols = list(builtin_protocols().values())
    if args.format == "json":
        summaries = [protocol_summary(p) for p in protocols]
        for summary in summaries:
            summary.pop("definition")
        print(json.dumps(summaries, indent=2, ensure_ascii=False))
        return 0
    width = max(len(p.id) for p in protocols)
    print(f"{'ID'.ljust(width)}  ROUTE  STEPS  EVIDENCE              TITLE / SOURCE")
    for p in protocols:
        source = p.sources[0].citation if p.sources else "-"
        print(
            f"{p.id.ljust(width)}  {p.route.ljust(5)}  {str(len(p.steps)).rjust(5)}  {p.evidence.value.ljust(20)}  {p.title}"
        )
        print(f"{''.ljust(width)}  {''.ljust(5)}  {''.rjust(5)}  {''.ljust(20)}  source: {source[:100]}")
    return 0
