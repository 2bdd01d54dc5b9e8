"""`fhir-desens replan`: the remaining plan for each way of resuming after a reaction."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from fhir_desens.commands._options import add_plan_arguments

if TYPE_CHECKING:  # the engine loads only when the command runs (the CLI's start time)
    from fhir_desens.protocol.calculate import Plan
    from fhir_desens.protocol.replan import Interruption

HELP = "After a reaction in step N at minute M: the remaining plan for every resume option."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_plan_arguments(parser)
    parser.add_argument("--step", required=True, metavar="N", help="plan step in which the reaction occurred")
    parser.add_argument("--minutes", default="0", metavar="M", help="minutes into that step (infusions)")
    parser.add_argument("--option", metavar="OPTION", help="only this resume option")
    parser.add_argument("--format", choices=["table", "json"], default="table")


def run(args: argparse.Namespace) -> int:
    from fhir_desens.commands._options import _int, plan_request
    from fhir_desens.protocol.calculate import compute_plan
    from fhir_desens.protocol.display import unit_text
    from fhir_desens.protocol.quantity import display, parse_decimal
    from fhir_desens.protocol.replan import Interruption, Replan, ResumeOption, replan, replan_all
    from fhir_desens.protocol.report import clock_text, dose_text, replan_dict

    plan = compute_plan(plan_request(args))
    interruption = Interruption(_int(args.step, "--step"), parse_decimal(args.minutes, "--minutes"))
    _refuse_outside_the_plan(plan, interruption)
    results: dict[ResumeOption, Replan | str]
    if args.option:
        results = {
            ResumeOption.parse(args.option): replan(plan, interruption, ResumeOption.parse(args.option))
        }
    else:
        results = replan_all(plan, interruption)
    if args.format == "json":
        out = {o.value: (r if isinstance(r, str) else replan_dict(r)) for o, r in results.items()}
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0
    for option, result in results.items():
        print(f"== {option.value}")
        if isinstance(result, str):
            print(f"   not possible: {result}")
            continue
        delivered = f"{dose_text(result.delivered.value)} {unit_text(result.delivered.unit)}"
        print(f"   delivered before resuming: {delivered}")
        for s in result.steps:
            rate = "-" if s.rate_ml_h is None else f"{display(s.rate_ml_h, 2)} mL/h"
            print(
                f"   {s.number:>2}. solution {s.solution}  {rate:>12}  {display(s.minutes, 2):>8} min  "
                f"dose {dose_text(s.dose.value):>12}  cumulative {dose_text(s.cumulative_dose.value):>12}"
            )
        print(
            f"   remaining time: {clock_text(result.total_minutes)}; reaches target: {result.reaches_target}"
        )
        for warning in result.warnings:
            print(f"   ! {warning}")
    return 0


def _refuse_outside_the_plan(plan: Plan, interruption: Interruption) -> None:
    """A step the plan does not have, or a minute outside the step, is the caller's input: refused once
    naming the option (exit 2), not printed as "not possible" under every resume option with exit 0."""
    from fhir_desens.errors import DesensError, InputError
    from fhir_desens.protocol.replan import options_for, replan

    try:
        replan(plan, interruption, options_for(plan)[0])
    except InputError as error:
        if error.field in ("step", "minutes"):
            raise InputError(f"--{error.field}", error.problem, error.accepted) from None
    except DesensError:
        pass  # an option that is not possible here is reported with the others
