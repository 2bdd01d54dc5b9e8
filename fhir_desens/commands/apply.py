"""`fhir-desens apply`: a plan for one patient as the $apply transaction Bundle (orders for the EHR)."""

from __future__ import annotations

import argparse

from fhir_desens.commands._options import add_plan_arguments

HELP = "Compute a plan for a patient and print the FHIR transaction Bundle of orders ($apply)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_plan_arguments(parser)
    parser.add_argument("--patient", required=True, metavar="Patient/ID")
    parser.add_argument(
        "--practitioner", metavar="Practitioner/ID", help="the prescriber who signs the orders"
    )
    parser.add_argument("--encounter", metavar="Encounter/ID")
    parser.add_argument("--session-id", metavar="ID", help="business id of the session (default: derived)")
    parser.add_argument("--format", choices=["json", "xml"], default="json")
    parser.add_argument("--out", metavar="FILE")


def run(args: argparse.Namespace) -> int:
    from fhir_desens.commands._options import plan_request
    from fhir_desens.commands.export import write_output
    from fhir_desens.fhir.apply import ApplyContext, apply_plan
    from fhir_desens.io.formats import write_resource
    from fhir_desens.protocol.calculate import compute_plan

    plan = compute_plan(plan_request(args))
    context = ApplyContext(
        patient=args.patient,
        practitioner=args.practitioner,
        encounter=args.encounter,
        session_id=args.session_id,
    )
    write_output(write_resource(apply_plan(plan, context), args.format), args.out)
    return 0
