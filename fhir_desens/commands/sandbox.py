"""`fhir-desens sandbox`: run the sandbox EHR (FHIR server, SMART authorization server, gateway, launcher)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from fhir_desens.commands._ports import port_number

HELP = (
    "Run the sandbox EHR until Ctrl-C: seeded FHIR server, SMART authorization server, FHIR gateway and "
    "launcher."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument(
        "--port", type=port_number, default=8100, help="port (default: 8100; 0 = any free port)"
    )
    parser.add_argument(
        "--fhir-port",
        type=port_number,
        default=0,
        help="port of the FHIR server started (default: any free port)",
    )
    parser.add_argument(
        "--fhir-base-url", metavar="URL", help="use this running FHIR server instead of starting one"
    )
    parser.add_argument("--public-url", metavar="URL", help="origin clients use, if not http://HOST:PORT")
    parser.add_argument("--fixtures", metavar="DIR", type=Path, help="fixtures folder (default: ./fixtures)")
    parser.add_argument("--no-seed", action="store_true", help="do not load the fixture patients")
    parser.add_argument(
        "--clients", metavar="FILE", type=Path, help="JSON file of client registrations (see docs)"
    )
    app = parser.add_argument_group("register one app from the command line")
    app.add_argument("--app-client-id", metavar="ID")
    app.add_argument("--app-launch-url", metavar="URL", help="the app's EHR launch URL")
    app.add_argument(
        "--app-redirect-uri",
        metavar="URL",
        action="append",
        default=[],
        help="registered redirect URI (repeatable; default: the launch URL with /launch -> /callback)",
    )
    app.add_argument(
        "--app-type",
        choices=["public", "symmetric", "asymmetric"],
        help="client type (default: asymmetric with --app-jwks-url, symmetric with --app-secret-env, else public)",
    )
    app.add_argument("--app-jwks-url", metavar="URL", help="the app's JWK Set URL (asymmetric client)")
    app.add_argument(
        "--app-secret-env",
        metavar="VAR",
        help="environment variable holding the client secret (symmetric client; never on the command line)",
    )
    app.add_argument("--app-scope", metavar="SCOPES", help="the most the app may be granted")
    app.add_argument("--app-granted-scope", metavar="SCOPES", help="grant exactly these resource scopes")
    parser.add_argument("--json", action="store_true", help="print the URLs as one JSON line")


def _register_app(sandbox: object, args: argparse.Namespace) -> None:
    from fhir_desens.errors import InputError
    from fhir_desens.sandbox.server import Sandbox

    assert isinstance(sandbox, Sandbox)
    if not args.app_client_id:
        if args.app_launch_url:
            raise InputError("--app-client-id", "is required with --app-launch-url")
        return
    redirect_uris = list(args.app_redirect_uri)
    if not redirect_uris:
        launch_url = args.app_launch_url or ""
        if not launch_url.endswith("/launch"):
            raise InputError("--app-redirect-uri", "is required unless --app-launch-url ends with /launch")
        redirect_uris = [launch_url[: -len("/launch")] + "/callback"]
    secret = None
    if args.app_secret_env:
        secret = os.environ.get(args.app_secret_env)
        if not secret:
            raise InputError("--app-secret-env", f"the environment variable {args.app_secret_env} is empty")
    client_type = args.app_type or (
        "asymmetric" if args.app_jwks_url else "symmetric" if secret else "public"
    )
    sandbox.register_client(
        args.app_client_id,
        client_type,
        redirect_uris,
        launch_url=args.app_launch_url,
        scope=args.app_scope,
        granted_scope=args.app_granted_scope,
        secret=secret,
        jwks_url=args.app_jwks_url,
    )


def run(args: argparse.Namespace) -> int:
    import logging

    from fhir_desens.sandbox.server import Sandbox
    from fhir_desens.sandbox.signals import sigterm_as_interrupt

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sandbox = Sandbox(
        host=args.host,
        port=args.port,
        fhir_base_url=args.fhir_base_url,
        fhir_port=args.fhir_port,
        fixtures_dir=args.fixtures,
        seed_data=not args.no_seed,
        public_url=args.public_url,
        clients_file=args.clients,
    )
    _register_app(sandbox, args)
    with sigterm_as_interrupt(), sandbox:
        urls = {
            "launcher": sandbox.launcher_url,
            "fhir_base_url": sandbox.fhir_base_url,
            "smart_configuration": f"{sandbox.fhir_base_url}/.well-known/smart-configuration",
            "authorize": sandbox.authorize_url,
            "token": sandbox.token_url,
            "fhir_backend": sandbox.backend_url,
            "patients": {key: seeded.id for key, seeded in sandbox.summary.patients.items()},
            "clients": [client.client_id for client in sandbox.clients.all()],
        }
        if args.json:
            print(json.dumps(urls), flush=True)
        else:
            print(f"Sandbox EHR launcher   {urls['launcher']}")
            print(f"FHIR base (iss, aud)   {urls['fhir_base_url']}")
            print(f"SMART configuration    {urls['smart_configuration']}")
            print(f"FHIR server (no auth)  {urls['fhir_backend']}")
            print(f"Patients               {', '.join(sorted(urls['patients'])) or '(none)'}")
            print(f"Registered apps        {', '.join(urls['clients']) or '(none)'}")
            print(
                "Scripted launch        GET /launch?patient=KEY&app=CLIENT_ID   (Ctrl-C to stop)", flush=True
            )
        sandbox.serve_until_interrupted()
    return 0
