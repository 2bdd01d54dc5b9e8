"""Real Redis and PostgreSQL servers for the tests: throwaway data directories, free ports, stopped at exit.

`make services` installs Debian's ``redis-server`` and ``postgresql-15`` when they are missing (as root).
PostgreSQL refuses to run as root, so as root the cluster is created and run as the ``postgres`` system
user that Debian's package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


class ServiceMissing(RuntimeError):
    """The server's binary is not installed here."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {seconds:.0f} s")


@dataclass
class RedisServer:
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceMissing("redis-server is not installed (make services installs Debian's package)")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


def _postgres_bin(name: str) -> str:
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    found = candidates[0] if candidates else shutil.which(name)
    if found is None:
        raise ServiceMissing(f"PostgreSQL's {name} is not installed (make services installs postgresql-15)")
    return found


@dataclass
class PostgresServer:
    port: int = field(default_factory=free_port)
    directory: Path | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_owner(self, command: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return command
        return ["runuser", "-u", "postgres", "--", *command]

    def start(self) -> PostgresServer:
        initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
        self.directory = Path(tempfile.mkdtemp(prefix="fhir-desens-pg-"))
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.directory, owner.pw_uid, owner.pw_gid)
        data = self.directory / "data"
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "check": True}
        subprocess.run(
            self._as_owner(
                [initdb, "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"]
            ),
            **quiet,  # type: ignore[call-overload]
        )
        options = f"-p {self.port} -h 127.0.0.1 -k {self.directory} -F"
        subprocess.run(
            self._as_owner(
                [pg_ctl, "-D", str(data), "-o", options, "-l", str(self.directory / "log"), "-w", "start"]
            ),
            **quiet,  # type: ignore[call-overload]
        )
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.directory is None:
            return
        pg_ctl = _postgres_bin("pg_ctl")
        subprocess.run(
            self._as_owner([pg_ctl, "-D", str(self.directory / "data"), "-m", "immediate", "stop"]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory = None
