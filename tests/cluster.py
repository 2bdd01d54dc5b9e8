"""Two app instances behind nginx, sharing one Redis (sessions, launch state, drafts, CSRF tokens) and one
PostgreSQL (the bedside record, its outbox, the outcome tasks): the deployment of docs/deployment.md on
one machine, for ``tests/integration/test_two_instances.py`` and ``benchmarks/load_app.py --instances 2``.

:func:`cluster` starts Debian's ``redis-server``, a throwaway PostgreSQL cluster (tests/services.py),
the sandbox EHR, two ``python -m smart_app.serve --server gunicorn`` processes on free ports with the same
secret key, and ``nginx`` (round robin between them, the next instance when one does not answer). Every
response carries ``X-Upstream`` (the instance's address) so a test can see who served it. All is stopped
and removed on exit.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

from fhir_desens.commands.demo import CLIENT_ID, SANDBOX_TIME_ZONE
from fhir_desens.sandbox.server import Sandbox
from tests.services import PostgresServer, RedisServer, ServiceMissing, free_port, wait_for_port

NGINX_CONFIG = """\
{user}
worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/nginx-error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {folder}/client-body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    upstream fhir_desens {{
{servers}
        keepalive 16;
        keepalive_timeout 60s;  # shorter than the app's (smart_app.serve.KEEPALIVE_SECONDS)
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://fhir_desens;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_next_upstream error timeout http_502 http_503;
            proxy_connect_timeout 2s;
            add_header X-Upstream $upstream_addr always;
        }}
    }}
}}
"""


@dataclass
class AppInstance:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@dataclass
class Cluster:
    sandbox: Sandbox
    url: str  # nginx: the app's public URL
    instances: list[AppInstance]
    client_id: str
    clock_file: Path
    redis_url: str
    postgres_url: str
    folder: Path
    extra: dict[str, str] = field(default_factory=dict)


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        raise ServiceMissing("nginx is not installed (make services installs Debian's package)")
    return found


def _start_app(port: int, environment: Mapping[str, str], workers: int, threads: int) -> AppInstance:
    command = [sys.executable, "-m", "smart_app.serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--server", "gunicorn", "--workers", str(workers), "--threads", str(threads)]
    process = subprocess.Popen(command, env=dict(environment))
    instance = AppInstance(port, process)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the app instance on port {port} exited with status {process.returncode}")
        try:
            if requests.get(f"http://{instance.address}/healthz", timeout=2).status_code == 200:
                return instance
        except requests.RequestException:
            time.sleep(0.2)
    instance.stop()
    raise RuntimeError(f"the app instance on port {port} did not answer /healthz within 60 s")


def _free_port_except(taken: set[int]) -> int:
    while (port := free_port()) in taken:
        pass
    return port


@contextmanager
def _nginx(folder: Path, port: int, upstreams: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    servers = "\n".join(f"        server {address} max_fails=1 fail_timeout=30s;" for address in upstreams)
    user = "user root;" if os.geteuid() == 0 else ""
    config = folder / "nginx.conf"
    config.write_text(NGINX_CONFIG.format(user=user, folder=folder, servers=servers, port=port), "utf-8")
    process = subprocess.Popen(
        [nginx_binary(), "-c", str(config), "-p", str(folder), "-e", str(folder / "nginx-error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        if process.poll() is not None:  # the port answered, but not nginx (it could not bind it)
            raise RuntimeError(f"nginx exited with status {process.returncode}: see {folder}/nginx-error.log")
        yield process
    finally:
        process.terminate()
        process.wait(timeout=15)


@contextmanager
def cluster(
    instances: int = 2, *, workers: int = 1, threads: int = 8, log_level: str = "WARNING"
) -> Iterator[Cluster]:
    """Redis, PostgreSQL, the sandbox EHR, ``instances`` app processes and nginx in front of them."""
    nginx_binary()  # missing: say so before anything starts
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fhir-desens-cluster-")))
        redis = RedisServer().start()
        stack.callback(redis.stop)
        postgres = PostgresServer().start()
        stack.callback(postgres.stop)
        sandbox = stack.enter_context(Sandbox(port=0))
        nginx_port = free_port()
        public_url = f"http://127.0.0.1:{nginx_port}"
        client_secret = secrets.token_urlsafe(32)
        sandbox.register_client(
            CLIENT_ID,
            "symmetric",
            [f"{public_url}/callback"],
            launch_url=f"{public_url}/launch",
            name="fhir-desens",
            secret=client_secret,
        )
        clock = folder / "bedside-clock"
        clock.write_text("", "utf-8")
        environment = {
            **os.environ,
            "FHIR_DESENS_SECRET_KEY": secrets.token_urlsafe(48),  # the same on every instance
            "FHIR_DESENS_SMART_CLIENT_ID": CLIENT_ID,
            "FHIR_DESENS_SMART_CLIENT_SECRET": client_secret,
            "FHIR_DESENS_ALLOWED_ISS": sandbox.fhir_base_url,
            "FHIR_DESENS_PUBLIC_URL": public_url,
            "FHIR_DESENS_FRAME_ANCESTORS": "/".join(sandbox.issuer.split("/", 3)[:3]),
            "FHIR_DESENS_TIME_ZONE": SANDBOX_TIME_ZONE,
            "FHIR_DESENS_SESSION_URL": redis.url,
            "FHIR_DESENS_RECORD_URL": postgres.url,
            "FHIR_DESENS_BEDSIDE_CLOCK_FILE": str(clock),
            "FHIR_DESENS_LOG_LEVEL": log_level,
        }
        apps = []
        taken = {nginx_port}  # free_port() releases its port: never hand nginx's to an instance
        for _ in range(instances):
            port = _free_port_except(taken)
            taken.add(port)
            app = _start_app(port, environment, workers, threads)
            stack.callback(app.stop)
            apps.append(app)
        stack.enter_context(_nginx(folder, nginx_port, [app.address for app in apps]))
        yield Cluster(sandbox, public_url, apps, CLIENT_ID, clock, redis.url, postgres.url, folder)
