"""The sandbox EHR as a context manager: FHIR server, seed data, SMART authorization server, gateway, launcher.

>>> with Sandbox(port=0) as sandbox:                                   # doctest: +SKIP
...     sandbox.register_client("my-app", "public", ["http://127.0.0.1:5000/cb"],
...                             launch_url="http://127.0.0.1:5000/launch")
...     print(sandbox.launch_url("carboplatin-ovarian", app="my-app"))

Everything lives in memory and disappears on exit; the signing key is generated at start.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlencode, urlsplit

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.errors import ConfigurationError, InputError
from fhir_desens.sandbox.app import SandboxApp
from fhir_desens.sandbox.clients import ClientRegistry, SandboxClient, load_clients, make_client
from fhir_desens.sandbox.directory import Directory
from fhir_desens.sandbox.fhir_server import FhirServerProcess
from fhir_desens.sandbox.gateway import FhirGateway
from fhir_desens.sandbox.keys import SigningKeys
from fhir_desens.sandbox.oauth import AuthSettings, SmartAuthorizationServer
from fhir_desens.sandbox.request_log import RequestLog
from fhir_desens.sandbox.seed import SeedSummary, seed
from fhir_desens.sandbox.stores import LaunchContext
from fhir_desens.sandbox.vendors import profile_named

log = logging.getLogger(__name__)


class _PathOnlyRequestHandler(WSGIRequestHandler):
    """Werkzeug's handler, logging the path without the query string (it can carry patient keys)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = urlsplit(getattr(self, "path", "") or "").path
        log.debug("%s %s %s", getattr(self, "command", "-"), path, code)


class _Deferred:
    """A WSGI callable bound after the socket is (so the issuer can contain the chosen port)."""

    def __init__(self) -> None:
        self.app: SandboxApp | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        assert self.app is not None
        return self.app(environ, start_response)


class Sandbox:
    """Start with ``with Sandbox() as sandbox:`` (or :meth:`start`/:meth:`stop`).

    ``fhir_base_url``: use an existing FHIR server instead of starting one (``fhir_port``: the port of the
    one started, 0 = any free port). ``public_url``: the origin clients use when it differs from
    ``http://host:port`` (e.g. behind a proxy). Lifetimes are in seconds.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        fhir_base_url: str | None = None,
        fhir_port: int = 0,
        fixtures_dir: Path | None = None,
        seed_data: bool = True,
        public_url: str | None = None,
        clients: Iterable[SandboxClient] = (),
        clients_file: Path | None = None,
        access_token_lifetime: int = 3600,
        code_lifetime: int = 120,
        launch_lifetime: int = 300,
    ) -> None:
        if not 0 <= port <= 65535:
            raise InputError("port", f"{port} is out of range", "0-65535, 0 = any free port")
        self.host = host
        self.port = port
        self.fixtures_dir = fixtures_dir
        self.seed_data = seed_data
        self._public_url = public_url.rstrip("/") if public_url else None
        self._backend_url = fhir_base_url.rstrip("/") if fhir_base_url else None
        self._fhir_port = fhir_port
        self._lifetimes = {
            "access_token_lifetime": access_token_lifetime,
            "code_lifetime": code_lifetime,
            "launch_lifetime": launch_lifetime,
        }
        self.clients = ClientRegistry()
        for client in clients:
            self.clients.add(client)
        if clients_file is not None:
            for client in load_clients(clients_file):
                self.clients.add(client)
        self.keys: SigningKeys | None = None
        self.auth: SmartAuthorizationServer | None = None
        self.app: SandboxApp | None = None
        self.summary = SeedSummary()
        self._fhir_process: FhirServerProcess | None = None
        self._fhir_client: FhirClient | None = None
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._issuer: str | None = None

    # -- URLs -------------------------------------------------------------------------------------------
    @property
    def issuer(self) -> str:
        if self._issuer is None:
            raise ConfigurationError("the sandbox is not running")
        return self._issuer

    @property
    def fhir_base_url(self) -> str:
        """The gateway's FHIR base: ``iss`` of launches and the ``aud`` apps must send."""
        return f"{self.issuer}/fhir"

    @property
    def launcher_url(self) -> str:
        return f"{self.issuer}/"

    @property
    def authorize_url(self) -> str:
        return f"{self.issuer}/auth/authorize"

    @property
    def token_url(self) -> str:
        return f"{self.issuer}/auth/token"

    @property
    def fhir_requests(self) -> RequestLog:
        """What the gateway answered (method, interaction, resource type, timing): for counting round trips."""
        if self.app is None:
            raise ConfigurationError("the sandbox is not running")
        return self.app.gateway.requests

    @property
    def backend_url(self) -> str:
        """The FHIR server behind the gateway (no authorization: for setup and tests only)."""
        if self._backend_url is None:
            raise ConfigurationError("the sandbox is not running")
        return self._backend_url

    def launch_url(
        self, patient: str, *, app: str | None = None, practitioner: str | None = None, **extra: str
    ) -> str:
        """The scripted-launch URL: ``GET`` it (no redirects followed) to get the app's launch redirect."""
        query = {"patient": patient, **({"app": app} if app else {})}
        if practitioner:
            query["practitioner"] = practitioner
        query.update(extra)
        return f"{self.issuer}/launch?{urlencode(query)}"

    # -- clients ------------------------------------------------------------------------------------------
    def register_client(
        self,
        client_id: str,
        client_type: str = "public",
        redirect_uris: Iterable[str] = (),
        *,
        launch_url: str | None = None,
        name: str = "",
        scope: str | None = None,
        granted_scope: str | None = None,
        secret: str | None = None,
        jwks: Mapping[str, Any] | None = None,
        jwks_url: str | None = None,
    ) -> SandboxClient:
        """Register (or replace) a client: ``client_type`` is ``public``, ``symmetric`` or ``asymmetric``.

        ``scope`` is the most the client may be granted (requests are narrowed to it); ``granted_scope``
        makes the server grant exactly these resource scopes whatever was asked.
        """
        client = make_client(
            client_id,
            client_type,
            list(redirect_uris),
            launch_url=launch_url,
            name=name,
            scope=scope,
            granted_scope=granted_scope,
            secret=secret,
            jwks=jwks,
            jwks_url=jwks_url,
        )
        return self.clients.add(client)

    def create_launch(
        self,
        patient: str,
        client_id: str | None = None,
        *,
        practitioner: str | None = None,
        encounter: str | None = None,
        need_patient_banner: bool = True,
        vendor: str = "permissive",
    ) -> str:
        """A launch id directly (what ``/launch`` does, without the redirect); ``vendor`` picks the
        gateway's vendor profile for this launch (permissive, epic-like, millennium-like)."""
        profile_named(vendor)  # an unknown name is refused here rather than at the first request
        if self.auth is None:
            raise ConfigurationError("the sandbox is not running")
        patient_id = self.summary.patient_id(patient)
        practitioner_id = practitioner
        if practitioner and practitioner in self.summary.practitioners:
            practitioner_id = self.summary.practitioners[practitioner].id
        return self.auth.create_launch(
            LaunchContext(patient_id, encounter, practitioner_id, need_patient_banner, client_id, vendor)
        )

    # -- lifecycle ----------------------------------------------------------------------------------------
    def start(self) -> Self:
        if self._server is not None:
            raise ConfigurationError("the sandbox was already started")
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        if self._backend_url is None:
            self._fhir_process = FhirServerProcess(port=self._fhir_port)
            self._backend_url = self._fhir_process.start().rstrip("/")
        self._fhir_client = FhirClient(self._backend_url)
        if self.seed_data:
            self.summary = seed(self._fhir_client, self.fixtures_dir)
        deferred = _Deferred()
        self._server = make_server(
            self.host, self.port, deferred, threaded=True, request_handler=_PathOnlyRequestHandler
        )
        bound_port = self._server.socket.getsockname()[1]
        wildcard = self.host in ("0.0.0.0", "::", "")  # noqa: S104 (comparing, not binding)
        public_host = "127.0.0.1" if wildcard else self.host
        if ":" in public_host:
            public_host = f"[{public_host}]"
        self._issuer = self._public_url or f"http://{public_host}:{bound_port}"
        issuer = self._issuer
        self.keys = SigningKeys()
        directory = Directory(self._fhir_client, self.summary)
        settings = AuthSettings(
            issuer=issuer,
            fhir_base_url=f"{issuer}/fhir",
            authorize_url=f"{issuer}/auth/authorize",
            token_url=f"{issuer}/auth/token",
            smart_style_url=f"{issuer}/smart-style.json",
            **self._lifetimes,
        )
        self.auth = SmartAuthorizationServer(settings, self.clients, self.keys, directory)
        app = SandboxApp(
            issuer=issuer,
            auth=self.auth,
            gateway=FhirGateway(
                self._backend_url,
                settings.fhir_base_url,
                self.auth.resolve,
                authorize_url=settings.authorize_url,
                token_url=settings.token_url,
            ),
            directory=directory,
            clients=self.clients,
            keys=self.keys,
        )
        self.app = app
        deferred.app = app
        self._thread = threading.Thread(target=self._server.serve_forever, name="sandbox-ehr", daemon=True)
        self._thread.start()
        log.info("sandbox EHR at %s (FHIR %s, backend %s)", issuer, settings.fhir_base_url, self._backend_url)

    def stop(self) -> None:
        """Stop the web server and the FHIR server it started. Safe to call twice."""
        if self._server is not None:
            if self._thread is not None:
                self._server.shutdown()
                self._thread.join(timeout=10)
            self._server.server_close()
            self._server = None
            self._thread = None
        if self._fhir_client is not None:
            self._fhir_client.close()
            self._fhir_client = None
        if self._fhir_process is not None:
            self._fhir_process.stop()
            self._fhir_process = None
            self._backend_url = None
        self._issuer = None

    def serve_until_interrupted(self) -> None:
        """Block until Ctrl-C (the CLI's foreground mode)."""
        if self._thread is None:
            raise ConfigurationError("the sandbox is not running")
        try:
            while self._thread.is_alive():
                self._thread.join(timeout=0.5)
        except KeyboardInterrupt:
            return

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running at {self._issuer}" if self._issuer else "stopped"
        return f"Sandbox({state}, {len(self.clients.all())} clients)"
