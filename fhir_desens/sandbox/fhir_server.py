"""The development FHIR R4 server process (Node) and bulk validation, driven from Python.

``fhir_server/server.cjs`` is Medplum's in-memory FHIR engine behind a small HTTP server of ours (see
``fhir_server/README.md`` for what it does and does not do). :class:`FhirServerProcess` starts it on a
port (0 = any free port), waits for its "listening" line and stops it (SIGTERM, then SIGKILL). The
child also exits by itself when this process dies: it watches its stdin, which we hold open.

:func:`validate_resources` validates many resources in one ``node validate.cjs`` run, against R4 and
optionally a profile from a folder of StructureDefinitions.

Node 20 and the npm packages (``make node``) are required; their absence is a ConfigurationError
that says how to fix it.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Self

from fhir_desens.errors import ConfigurationError, FhirFormatError, FhirServerError, InputError
from fhir_desens.io.json import dumps, loads

__all__ = [
    "BASE_PATH",
    "SERVER_DIR",
    "FhirServerProcess",
    "find_node",
    "serve",
    "validate_resources",
]

logger = logging.getLogger(__name__)

SERVER_DIR: Final = Path(__file__).resolve().parent / "fhir_server"
BASE_PATH: Final = "/fhir/R4"
MIN_NODE_MAJOR: Final = 20
_INSTALL_HINT: Final = "install Node.js 20 and run `make node` (npm ci in fhir_desens/sandbox/fhir_server)"


def find_node() -> str:
    """The ``node`` executable (``FHIR_DESENS_NODE`` overrides PATH), checked to be Node >= 20."""
    node = os.environ.get("FHIR_DESENS_NODE") or shutil.which("node")
    if not node:
        raise ConfigurationError(f"node was not found on PATH: {_INSTALL_HINT}")
    try:
        version = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=20, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        raise ConfigurationError(f"cannot run {node} --version ({exc}): {_INSTALL_HINT}") from None
    try:
        major = int(version.lstrip("v").split(".")[0])
    except ValueError:
        raise ConfigurationError(f"unrecognised node version {version!r}: {_INSTALL_HINT}") from None
    if major < MIN_NODE_MAJOR:
        raise ConfigurationError(f"node {version} is too old (need {MIN_NODE_MAJOR}+): {_INSTALL_HINT}")
    return node


def _check_installed() -> None:
    for package in ("core", "definitions", "fhir-router"):
        if not (SERVER_DIR / "node_modules" / "@medplum" / package / "package.json").is_file():
            raise ConfigurationError(f"the FHIR server's npm packages are not installed: {_INSTALL_HINT}")


def _profiles_arg(profiles_dir: str | os.PathLike[str] | None) -> list[str]:
    if profiles_dir is None:
        return []
    path = Path(profiles_dir)
    if not path.is_dir():
        raise InputError("profiles", f"{path} is not a folder")
    return ["--profiles", str(path.resolve())]


def _stop(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, wait, then SIGKILL; always reaps the child."""
    if process.poll() is None:
        try:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)
        except ProcessLookupError:  # pragma: no cover - exited between poll and signal
            pass
    if process.stdin is not None and not process.stdin.closed:
        process.stdin.close()


class FhirServerProcess:
    """The FHIR server as a child process; use it as a context manager.

    >>> with FhirServerProcess(port=0) as server:      # doctest: +SKIP
    ...     FhirClient(server.base_url).capabilities()

    ``profiles_dir``: a folder of StructureDefinitions (with snapshots) for ``$validate?profile=``.
    ``declared_profiles="enforce"`` also validates writes against loaded profiles in ``meta.profile``.
    ``log_requests`` writes one line per request (method, path, status, time) to the server's stderr,
    which goes to ``stderr`` when ``inherit_stderr`` is set and to a temporary file otherwise (its
    end is quoted if the server dies).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        profiles_dir: str | os.PathLike[str] | None = None,
        *,
        public_url: str | None = None,
        max_body_bytes: int | None = None,
        page_size: int | None = None,
        declared_profiles: str = "ignore",
        log_requests: bool = False,
        inherit_stderr: bool = False,
        startup_timeout: float = 20.0,
        stop_timeout: float = 5.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        if not 0 <= port <= 65535:
            raise InputError("port", f"{port} is out of range", "0-65535, 0 = any free port")
        if declared_profiles not in ("ignore", "enforce"):
            raise InputError("declared_profiles", f"{declared_profiles!r}", "ignore, enforce")
        self.host = host
        self.port = port
        self.profiles_dir = profiles_dir
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.inherit_stderr = inherit_stderr
        args = ["--host", host, "--port", str(port), "--exit-on-stdin-close", *_profiles_arg(profiles_dir)]
        if public_url:
            args += ["--public-url", public_url]
        if max_body_bytes is not None:
            args += ["--max-body-bytes", str(max_body_bytes)]
        if page_size is not None:
            args += ["--page-size", str(page_size)]
        if declared_profiles != "ignore":
            args += ["--declared-profiles", declared_profiles]
        if log_requests:
            args.append("--log-requests")
        self._args = [*args, *extra_args]
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._base_url: str | None = None
        self.startup_seconds: float | None = None
        self.info: dict[str, Any] = {}

    # -- properties -------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """``http://host:port/fhir/R4``; only while running."""
        if self._base_url is None or not self.running:
            raise FhirServerError("the FHIR server process is not running")
        return self._base_url

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> str:
        """Start the server and wait until it listens; returns the base URL."""
        if self._process is not None:
            raise FhirServerError("the FHIR server process was already started")
        node = find_node()
        _check_installed()
        self._workdir = tempfile.TemporaryDirectory(prefix="fhir-desens-server-")
        out_path = Path(self._workdir.name) / "stdout"
        err_path = Path(self._workdir.name) / "stderr"
        started = time.monotonic()
        with out_path.open("wb") as out, err_path.open("wb") as err:
            self._process = subprocess.Popen(
                [node, str(SERVER_DIR / "server.cjs"), *self._args],
                cwd=SERVER_DIR,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=None if self.inherit_stderr else err,
                start_new_session=True,
            )
        self._finalizer = weakref.finalize(self, _stop, self._process, self.stop_timeout)
        try:
            self.info = self._wait_listening(out_path, err_path)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        self._base_url = str(self.info["url"])
        logger.info(
            "FHIR server listening at %s (pid %d, %.2f s)", self._base_url, self.pid, self.startup_seconds
        )
        return self._base_url

    def _wait_listening(self, out_path: Path, err_path: Path) -> dict[str, Any]:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        while True:
            text = out_path.read_text("utf-8", errors="replace")
            if "\n" in text:
                line = text.split("\n", 1)[0]
                try:
                    info = loads(line)
                except FhirFormatError:
                    info = None
                if (
                    isinstance(info, dict)
                    and info.get("event") == "listening"
                    and isinstance(info.get("url"), str)
                ):
                    return info
                raise FhirServerError(f"the FHIR server printed an unexpected first line: {line[:200]!r}")
            code = self._process.poll()
            if code is not None:
                raise FhirServerError(
                    f"the FHIR server exited with status {code} before listening: {self._stderr_tail(err_path)}"
                )
            if time.monotonic() > deadline:
                raise FhirServerError(
                    f"the FHIR server did not start within {self.startup_timeout:.0f} s: "
                    f"{self._stderr_tail(err_path)}"
                )
            time.sleep(0.02)

    def _stderr_tail(self, err_path: Path) -> str:
        if self.inherit_stderr:
            return "see its messages above"
        try:
            text = err_path.read_text("utf-8", errors="replace").strip()
        except OSError:
            text = ""
        return text[-2000:] or "(no message on stderr)"

    def stderr_text(self) -> str:
        """What the server wrote on stderr so far (empty when it is inherited)."""
        if self._workdir is None or self.inherit_stderr:
            return ""
        try:
            return (Path(self._workdir.name) / "stderr").read_text("utf-8", errors="replace")
        except OSError:
            return ""

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to exit (e.g. in the foreground); returns its status."""
        if self._process is None:
            raise FhirServerError("the FHIR server process was not started")
        return self._process.wait(timeout)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``stop_timeout``). Safe to call twice."""
        if self._finalizer is not None:
            self._finalizer()  # runs _stop once
            self._finalizer = None
        elif self._process is not None:
            _stop(self._process, self.stop_timeout)
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None
        self._base_url = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running at {self._base_url}" if self.running else "stopped"
        return f"FhirServerProcess({state})"


def serve(
    host: str = "127.0.0.1", port: int = 8103, profiles_dir: str | os.PathLike[str] | None = None
) -> int:
    """Run the server in the foreground until Ctrl-C or SIGTERM; returns an exit status."""
    from fhir_desens.sandbox.signals import sigterm_as_interrupt

    server = FhirServerProcess(host, port, profiles_dir, log_requests=True, inherit_stderr=True)
    with sigterm_as_interrupt():
        try:
            server.start()
            print(f"FHIR R4 server at {server.base_url}  (in memory; Ctrl-C to stop)", flush=True)
            code = server.wait()
            print(f"the FHIR server exited with status {code}", file=sys.stderr)
            return 1 if code else 0
        except KeyboardInterrupt:
            return 0
        finally:
            server.stop()


def validate_resources(
    resources: Iterable[Mapping[str, Any]],
    profile: str | None = None,
    *,
    profiles_dir: str | os.PathLike[str] | None = None,
    declared: str = "warn",
    timeout: float = 300.0,
) -> list[dict[str, Any]]:
    """Validate resources in one ``node validate.cjs`` run; one OperationOutcome per resource, in order.

    ``profile`` (a canonical, optionally ``|version``) applies to every resource and must be in
    ``profiles_dir``. ``declared`` says what to do with ``meta.profile``: ``ignore``, ``warn`` about
    profiles that are not loaded (default), or ``enforce`` the loaded ones. An outcome has errors when
    an issue has severity ``error`` or ``fatal``.
    """
    if declared not in ("ignore", "warn", "enforce"):
        raise InputError("declared", f"{declared!r}", "ignore, warn, enforce")
    lines: list[str] = []
    for resource in resources:
        request: dict[str, Any] = {"resource": resource}
        if profile is not None:
            request["profile"] = profile
        lines.append(dumps(request))
    if not lines:
        return []
    node = find_node()
    _check_installed()
    command = [node, str(SERVER_DIR / "validate.cjs"), "--declared", declared, *_profiles_arg(profiles_dir)]
    try:
        completed = subprocess.run(
            command,
            input=("\n".join(lines) + "\n").encode("utf-8"),
            capture_output=True,
            cwd=SERVER_DIR,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise FhirServerError(
            f"validation of {len(lines)} resources did not finish within {timeout:.0f} s"
        ) from None
    stderr = completed.stderr.decode("utf-8", errors="replace").strip()
    if completed.returncode != 0:
        raise FhirServerError(f"the validator failed (status {completed.returncode}): {stderr[-2000:]}")
    outcomes = [loads(line) for line in completed.stdout.decode("utf-8").splitlines() if line.strip()]
    if len(outcomes) != len(lines):
        raise FhirServerError(
            f"the validator returned {len(outcomes)} outcomes for {len(lines)} resources: {stderr[-2000:]}"
        )
    return [outcome if isinstance(outcome, dict) else {} for outcome in outcomes]
