"""`fhir-desens plan`: compute an exact desensitization plan for one target dose."""

from __future__ import annotations

import argparse
import json

from fhir_desens.commands._options import add_plan_arguments

HELP = "Compute a desensitization plan: solutions, steps, doses, times (table or exact JSON)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_plan_arguments(parser)
    parser.add_argument("--format", choices=["table", "json"], default="table")


def run(args: argparse.Namespace) -> int:
    from fhir_desens.commands._options import plan_request
    from fhir_desens.protocol.calculate import compute_plan
    from fhir_desens.protocol.report import plan_dict, worksheet

    plan = compute_plan(plan_request(args))
    if args.format == "json":
        print(json.dumps(plan_dict(plan), indent=2, ensure_ascii=False))
    else:
        print(worksheet(plan), end="")
    return 0
