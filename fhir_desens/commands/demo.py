"""`fhir-desens demo`: the sandbox EHR (FHIR server, SMART authorization server, launcher) and the app.

The app runs as its own process (``python -m smart_app.serve``) so that nothing in ``fhir_desens``
imports Flask. Fresh secrets are generated for each run and handed to the app through its
environment; they are never printed or written to disk.

:func:`demo_stack` starts the same stack for end-to-end tests and the load benchmark (free ports, the
app on another host name so that the EHR frames it as a third party, extra server options).
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fhir_desens.commands._ports import port_number

if TYPE_CHECKING:
    from fhir_desens.sandbox.server import Sandbox

HELP = "Start the sandbox EHR and the SMART app together and print the URL to open."

CLIENT_ID = "fhir-desens-demo"


SANDBOX_TIME_ZONE = "Europe/Paris"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--ehr-port", type=port_number, default=8100, help="sandbox EHR port (default 8100)")
    parser.add_argument("--fhir-port", type=port_number, default=8103, help="FHIR server port (default 8103)")
    parser.add_argument("--app-port", type=port_number, default=8200, help="app port (default 8200)")
    parser.add_argument("--check", action="store_true", help="start, check the app answers, then stop")


@dataclass(frozen=True)
class DemoStack:
    """A running demo: the sandbox EHR (with its FHIR server) and the app process registered with it."""

    sandbox: Sandbox
    app_url: str
    app: subprocess.Popen[bytes]
    client_id: str


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


def _free_port(host: str) -> int:
    """A port free right now (the app's public URL must be known before the app process binds it)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def demo_stack(
    *,
    host: str = "127.0.0.1",
    ehr_port: int = 0,
    fhir_port: int = 0,
    app_port: int = 0,
    app_host: str | None = None,
    serve_args: Sequence[str] = (),
    environment: Mapping[str, str] | None = None,
) -> Iterator[DemoStack]:
    """Start the FHIR server, the sandbox EHR and the app (``python -m smart_app.serve``); stop them on exit.

    Ports 0 mean any free port. ``app_host`` is the host name in the app's public URL (default
    ``host``); e.g. ``localhost`` while the EHR is ``127.0.0.1`` puts the app on another site, as a
    real EHR frames a third-party app. ``serve_args`` are passed to ``smart_app.serve`` (e.g.
    ``["--workers", "2"]``) and ``environment`` adds or overrides ``FHIR_DESENS_*`` variables.
    """
    from fhir_desens.sandbox.server import Sandbox

    port = app_port or _free_port(host)
    app_url = f"http://{app_host or host}:{port}"
    with Sandbox(host=host, port=ehr_port, fhir_port=fhir_port) as sandbox:
        client_secret = secrets.token_urlsafe(32)
        sandbox.register_client(
            CLIENT_ID,
            "symmetric",
            [f"{app_url}/callback"],
            launch_url=f"{app_url}/launch",
            name="fhir-desens",
            secret=client_secret,
        )
        ehr_origin = "/".join(sandbox.issuer.split("/", 3)[:3])
        app_environment = {
            **os.environ,
            "FHIR_DESENS_SECRET_KEY": secrets.token_urlsafe(48),
            "FHIR_DESENS_SMART_CLIENT_ID": CLIENT_ID,
            "FHIR_DESENS_SMART_CLIENT_SECRET": client_secret,
            "FHIR_DESENS_ALLOWED_ISS": sandbox.fhir_base_url,
            "FHIR_DESENS_PUBLIC_URL": app_url,
            "FHIR_DESENS_FRAME_ANCESTORS": ehr_origin,
            # the sandbox site keeps its clock in a named zone (clock times and the orders' timing)
            "FHIR_DESENS_TIME_ZONE": os.environ.get("FHIR_DESENS_TIME_ZONE", SANDBOX_TIME_ZONE),
            **(environment or {}),
        }
        command = [sys.executable, "-m", "smart_app.serve", "--host", host, "--port", str(port), *serve_args]
        app = subprocess.Popen(command, env=app_environment)
        try:
            _wait_for(f"{app_url}/healthz", app)
            yield DemoStack(sandbox=sandbox, app_url=app_url, app=app, client_id=CLIENT_ID)
        finally:
            _stop(app)


def run(args: argparse.Namespace) -> int:
    from fhir_desens.sandbox.signals import sigterm_as_interrupt

    with (
        sigterm_as_interrupt(),
        demo_stack(
            host=args.host, ehr_port=args.ehr_port, fhir_port=args.fhir_port, app_port=args.app_port
        ) as stack,
    ):
        print(f"fhir-desens demo is running. Open the EHR: {stack.sandbox.launcher_url}", flush=True)
        print(
            f"  FHIR (behind SMART): {stack.sandbox.fhir_base_url}    app: {stack.app_url}    Ctrl-C stops",
            flush=True,
        )
        if args.check:
            return 0
        while stack.app.poll() is None:
            time.sleep(0.5)
        print(f"fhir-desens demo: the app stopped (status {stack.app.returncode})", file=sys.stderr)
        return 1
