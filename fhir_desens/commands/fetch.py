"""`fhir-desens fetch`: pull a protocol from a partner hospital's FHIR server, validated before it is saved."""

from __future__ import annotations

import argparse

HELP = (
    "Fetch a protocol (PlanDefinition by canonical url, newest version unless --version) and its step "
    "ActivityDefinitions from a FHIR server; validate them; write a collection Bundle."
)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"out of range (above 0, at most 3600 seconds): {text}")
    return value


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """--server, --timeout and --bearer-token-env, shared with `import`."""
    parser.add_argument(
        "--server",
        required=True,
        metavar="URL",
        help="FHIR base URL (https; http only to 127.0.0.1/localhost)",
    )
    parser.add_argument(
        "--timeout", type=_seconds, default=30.0, metavar="S", help="seconds per request (30)"
    )
    parser.add_argument(
        "--bearer-token-env",
        metavar="VAR",
        help="name of the environment variable holding an access token (the token never goes on the command line)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_server_arguments(parser)
    parser.add_argument(
        "--url", required=True, metavar="CANONICAL", help="the PlanDefinition's canonical url"
    )
    parser.add_argument("--version", metavar="V", help="the version (default: the newest on the server)")
    parser.add_argument("--format", choices=["json", "xml"], default="json")
    parser.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")


def run(args: argparse.Namespace) -> int:
    import sys

    from fhir_desens.commands.export import write_output
    from fhir_desens.errors import ValidationFailed
    from fhir_desens.exchange.fetch import describe_issues, fetch_protocol
    from fhir_desens.exchange.remote import open_client
    from fhir_desens.exchange.validate import medplum_validator
    from fhir_desens.io.formats import write_resource

    with open_client(args.server, timeout=args.timeout, token_variable=args.bearer_token_env) as client:
        try:
            result = fetch_protocol(client, args.url, args.version, structural=medplum_validator())
        except ValidationFailed as error:
            for line in describe_issues(error.issues):
                print(line, file=sys.stderr)
            raise
    write_output(write_resource(result.bundle, args.format), args.out)
    protocol = result.protocol
    print(
        f"fetched {protocol.id} {protocol.version} ({len(protocol.steps)} steps) from {args.server}: "
        f"{result.report.summary()}",
        file=sys.stderr,
    )
    return 0
