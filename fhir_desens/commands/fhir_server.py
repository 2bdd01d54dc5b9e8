"""`fhir-desens fhir-server`: run a development FHIR R4 server in the foreground.

``--engine medplum`` (default): Medplum's in-memory engine on Node 20, up in a second.
``--engine hapi``: HAPI FHIR JPA (Java 17, built by ``make java``), up in about a minute; in memory, or
on a database that outlives it (``--database jdbc:h2:file:PATH`` or ``jdbc:postgresql://HOST:PORT/DB``).
"""

from __future__ import annotations

import argparse
import os
import sys

from fhir_desens.commands._ports import port_number

HELP = (
    "Run a development FHIR R4 server until Ctrl-C: Medplum's in-memory engine (default) or HAPI FHIR "
    "JPA (--engine hapi; Java, `make java`)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument(
        "--port", type=port_number, default=None, help="port (default: 8103 medplum, 8180 hapi; 0 = any free)"
    )
    parser.add_argument(
        "--engine",
        choices=["medplum", "hapi"],
        default="medplum",
        help="medplum: in memory, Node 20 (default); hapi: HAPI FHIR JPA, Java 17 (`make java`)",
    )
    parser.add_argument(
        "--profiles",
        metavar="DIR",
        default=None,
        help="medplum: folder of StructureDefinitions (with snapshots) for $validate?profile=",
    )
    hapi = parser.add_argument_group("HAPI FHIR JPA (--engine hapi)")
    hapi.add_argument(
        "--database",
        metavar="JDBC_URL",
        help="keep the data: jdbc:h2:file:PATH or jdbc:postgresql://HOST:PORT/DB (default: in memory)",
    )
    hapi.add_argument("--database-user", metavar="NAME", help="database user (PostgreSQL)")
    hapi.add_argument(
        "--clinical-reasoning",
        action="store_true",
        help="add Clinical Reasoning's PlanDefinition/$apply (cqf-fhir-cr-hapi 4.4.0)",
    )
    hapi.add_argument(
        "--database-password-env",
        metavar="VAR",
        help="environment variable holding the database password (never on the command line)",
    )


def run(args: argparse.Namespace) -> int:
    if args.engine == "hapi":
        return _run_hapi(args)
    from fhir_desens.sandbox.fhir_server import serve

    return serve(args.host, 8103 if args.port is None else args.port, args.profiles)


def _run_hapi(args: argparse.Namespace) -> int:
    from fhir_desens.errors import InputError
    from fhir_desens.sandbox.java_services import HapiServerProcess
    from fhir_desens.sandbox.signals import run_until_stopped

    if args.profiles:
        raise InputError("--profiles", "is for --engine medplum", "load profiles into HAPI with a PUT")
    password = None
    if args.database_password_env:
        password = os.environ.get(args.database_password_env)
        if password is None:
            raise InputError("--database-password-env", f"{args.database_password_env} is not set")
    server = HapiServerProcess(
        port=8180 if args.port is None else args.port,
        host=args.host,
        database_url=args.database,
        database_user=args.database_user,
        database_password=password,
        settings={"fhir-desens.clinical-reasoning": "true"} if args.clinical_reasoning else None,
    )
    where = "in memory" if args.database is None else "on " + args.database.split("?")[0]
    print("starting HAPI FHIR JPA (about a minute) ...", file=sys.stderr, flush=True)
    return run_until_stopped(
        server,
        "HAPI FHIR server",
        lambda url: (
            f"FHIR R4 server (HAPI FHIR JPA) at {url}  ({where}, started in {server.startup_seconds:.0f} s; "
            f"tests: export FHIR_DESENS_HAPI_URL={url}; Ctrl-C to stop)"
        ),
    )
