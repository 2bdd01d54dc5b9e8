"""`fhir-desens demo`: the sandbox EHR (FHIR server, SMART authorization server, launcher) and the app.

The app runs as its own process (``python -m smart_app.serve``) so that nothing in ``fhir_desens``
imports Flask. Fresh secrets are generated for each run and handed to the app through its
environment; they are never printed or written to disk.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import time

from fhir_desens.commands._options import port_number

HELP = "Start the sandbox EHR and the SMART app together and print the URL to open."

CLIENT_ID = "fhir-desens-demo"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--ehr-port", type=port_number, default=8100, help="sandbox EHR port (default 8100)")
    parser.add_argument("--fhir-port", type=port_number, default=8103, help="FHIR server port (default 8103)")
    parser.add_argument("--app-port", type=port_number, default=8200, help="app port (default 8200)")
    parser.add_argument("--check", action="store_true", help="start, check the app answers, then stop")


def _wait_for(url: str, process: subprocess.Popen[bytes], seconds: float = 30.0) -> None:
    import requests

    from fhir_desens.errors import ConfigurationError

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ConfigurationError(f"the app exited with status {process.returncode} before it answered")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            time.sleep(0.2)
    raise ConfigurationError(f"the app did not answer at {url} within {seconds:.0f} s")


def run(args: argparse.Namespace) -> int:
    from fhir_desens.sandbox.server import Sandbox

    app_url = f"http://{args.host}:{args.app_port}"
    with Sandbox(host=args.host, port=args.ehr_port, fhir_port=args.fhir_port) as sandbox:
        client_secret = secrets.token_urlsafe(32)
        sandbox.register_client(
            CLIENT_ID,
            "symmetric",
            [f"{app_url}/callback"],
            launch_url=f"{app_url}/launch",
            name="fhir-desens",
            secret=client_secret,
        )
        ehr_origin = sandbox.issuer.split("/", 3)[:3]
        environment = {
            **os.environ,
            "FHIR_DESENS_SECRET_KEY": secrets.token_urlsafe(48),
            "FHIR_DESENS_SMART_CLIENT_ID": CLIENT_ID,
            "FHIR_DESENS_SMART_CLIENT_SECRET": client_secret,
            "FHIR_DESENS_ALLOWED_ISS": sandbox.fhir_base_url,
            "FHIR_DESENS_PUBLIC_URL": app_url,
            "FHIR_DESENS_FRAME_ANCESTORS": "/".join(ehr_origin),
        }
        command = [sys.executable, "-m", "smart_app.serve", "--host", args.host, "--port", str(args.app_port)]
        app = subprocess.Popen(command, env=environment)
        try:
            _wait_for(f"{app_url}/healthz", app)
            print(f"fhir-desens demo is running. Open the EHR: {sandbox.launcher_url}", flush=True)
            print(
                f"  FHIR (behind SMART): {sandbox.fhir_base_url}    app: {app_url}    Ctrl-C stops",
                flush=True,
            )
            if args.check:
                return 0
            while app.poll() is None:
                time.sleep(0.5)
            print(f"fhir-desens demo: the app stopped (status {app.returncode})", file=sys.stderr)
            return 1
        finally:
            if app.poll() is None:
                app.terminate()
                try:
                    app.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    app.kill()
