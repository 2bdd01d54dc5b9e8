"""The Java parts (``java/``), run as child processes: the HL7 validator service and HAPI FHIR JPA.

Both are built by ``make java`` (Maven) into ``java/<module>/target`` and started here like the
Medplum-engine server: on a port (0 = any free port), waiting for their one JSON "listening" line on
stdout, stopped with SIGTERM (then SIGKILL), and exiting by themselves when this process dies (they
watch their stdin, which we hold open). They start slowly (tens of seconds), so start one per test
session or CLI run, never one per request.

:func:`hl7_validator` turns a running validator service into a structural validator for
:func:`fhir_desens.exchange.validate.validate_loaded` (``fhir-desens validate --engine hl7``).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Self

from fhir_desens.errors import ConfigurationError, FhirFormatError, FhirServerError
from fhir_desens.io.json import dumps, loads
from fhir_desens.sandbox.fhir_server import _stop

__all__ = [
    "JAVA_DIR",
    "HapiServerProcess",
    "Hl7ValidatorProcess",
    "JavaServiceProcess",
    "database_settings",
    "expunge_everything",
    "find_java",
    "guide_package",
    "hl7_validator",
    "java_built",
    "reference_apply",
]

logger = logging.getLogger(__name__)

JAVA_DIR: Final = Path(__file__).resolve().parents[2] / "java"
_BUILD_HINT: Final = (
    "install Java 17 and Maven and run `make java` (builds java/validator and java/hapi-server)"
)
#: Modest heaps: the machine the tests run on has 2 cores and many neighbours.
DEFAULT_HEAP: Final = "-Xmx1g"


def find_java() -> str:
    """The ``java`` executable (``$JAVA_HOME/bin/java`` first), or a ConfigurationError saying how to get it."""
    home = os.environ.get("JAVA_HOME")
    candidate = Path(home) / "bin" / "java" if home else None
    if candidate is not None and candidate.is_file():
        return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise ConfigurationError(f"Java was not found: {_BUILD_HINT}")
    return found


def _classpath(module: str, jar: str) -> str:
    target = JAVA_DIR / module / "target"
    if not (target / jar).is_file() or not (target / "lib").is_dir():
        raise ConfigurationError(f"java/{module} is not built ({target / jar} missing): {_BUILD_HINT}")
    return f"{target / jar}{os.pathsep}{target / 'lib' / '*'}"


def java_built(module: str) -> bool:
    """Whether ``make java`` built a module (``validator`` or ``hapi-server``)."""
    target = JAVA_DIR / module / "target"
    return (target / "lib").is_dir() and any(target.glob("fhir-desens-*.jar"))


class JavaServiceProcess:
    """One Java service as a child process; use it as a context manager."""

    MODULE: str = ""
    JAR: str = ""
    MAIN: str = ""
    NAME: str = "Java service"

    def __init__(
        self, args: Sequence[str] = (), *, heap: str = DEFAULT_HEAP, startup_timeout: float = 600.0
    ) -> None:
        self._args = list(args)
        self.heap = heap
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self.url: str | None = None
        self.startup_seconds: float | None = None
        #: Extra environment variables for the process (e.g. a database password).
        self.environment: dict[str, str] = {}
        self._launched_at = 0.0

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The Java process's id once launched (for CPU figures in benchmarks)."""
        return self._process.pid if self._process is not None else None

    def command(self) -> list[str]:
        return [find_java(), self.heap, "-XX:+UseSerialGC", "-cp", _classpath(self.MODULE, self.JAR), self.MAIN,
                *self._args, "--exit-on-stdin-close"]  # fmt: skip

    def start(self) -> str:
        """Start the service and wait until it is ready; returns its URL."""
        self.launch()
        return self.wait_ready()

    def launch(self) -> None:
        """Start the process without waiting (e.g. while other tests run); then :meth:`wait_ready`."""
        if self._process is not None:
            raise FhirServerError(f"the {self.NAME} was already started")
        command = self.command()
        self._workdir = tempfile.TemporaryDirectory(prefix="fhir-desens-java-")
        out_path, err_path = Path(self._workdir.name) / "stdout", Path(self._workdir.name) / "stderr"
        self._launched_at = time.monotonic()
        with out_path.open("wb") as out, err_path.open("wb") as err:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=err,
                start_new_session=True,
                env={**os.environ, **self.environment},
            )
        self._finalizer = weakref.finalize(self, _stop, self._process, 10.0)

    def wait_ready(self) -> str:
        """Wait for the launched service's readiness line; returns its URL (stops it on failure)."""
        if self.url is not None:
            return self.url
        if self._process is None or self._workdir is None:
            raise FhirServerError(f"the {self.NAME} was not launched")
        directory = Path(self._workdir.name)
        try:
            self.url = self._wait_listening(directory / "stdout", directory / "stderr")
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - self._launched_at
        logger.info("%s ready at %s (%.1f s)", self.NAME, self.url, self.startup_seconds)
        return self.url

    def _wait_listening(self, out_path: Path, err_path: Path) -> str:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        while True:
            for line in out_path.read_text("utf-8", errors="replace").splitlines(keepends=True):
                if not line.startswith('{"event":"listening"') or not line.endswith("\n"):
                    continue  # Spring Boot and HAPI may log on stdout before the line
                try:
                    info = loads(line)
                except FhirFormatError:
                    continue
                if isinstance(info, dict) and isinstance(info.get("url"), str):
                    return str(info["url"])
            code = self._process.poll()
            if code is not None:
                raise FhirServerError(
                    f"the {self.NAME} exited with status {code}: {self._tail(err_path, out_path)}"
                )
            if time.monotonic() > deadline:
                raise FhirServerError(
                    f"the {self.NAME} was not ready within {self.startup_timeout:.0f} s: {self._tail(err_path, out_path)}"
                )
            time.sleep(0.2)

    @staticmethod
    def _tail(*paths: Path) -> str:
        text = "\n".join(p.read_text("utf-8", errors="replace").strip() for p in paths if p.is_file())
        return text.strip()[-3000:] or "(no message)"

    def wait(self) -> int:
        """Block until the service exits (the CLI's foreground mode); its exit status."""
        if self._process is None:
            raise FhirServerError(f"the {self.NAME} is not running")
        return self._process.wait()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL; safe to call twice."""
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None
        self.url = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def guide_package(directory: Path) -> Path:
    """Our guide and protocol library as a FHIR package (``fhir-desens package --include-guide``)."""
    from fhir_desens.exchange.package import DEFAULT_PACKAGE_NAME, package_protocols
    from fhir_desens.fhir.canonical import IG_VERSION
    from fhir_desens.protocol.library import builtin_protocols

    data = package_protocols(
        list(builtin_protocols().values()), name=DEFAULT_PACKAGE_NAME, version=IG_VERSION, include_guide=True
    )
    path = directory / "fhir-desens-guide.tgz"
    path.write_bytes(data)
    return path


class Hl7ValidatorProcess(JavaServiceProcess):
    """The HL7 validator's engine (HAPI FhirInstanceValidator) with our guide loaded, UCUM on, offline."""

    MODULE, JAR, MAIN = "validator", "fhir-desens-validator.jar", "org.fhirdesens.validator.ValidatorService"
    NAME = "HL7 validator service"

    def __init__(self, packages: Sequence[Path] | None = None, *, port: int = 0, **options: Any) -> None:
        self._guide_dir: tempfile.TemporaryDirectory[str] | None = None
        if packages is None:
            self._guide_dir = tempfile.TemporaryDirectory(prefix="fhir-desens-guide-")
            packages = [guide_package(Path(self._guide_dir.name))]
        args = ["--port", str(port)]
        for package in packages:
            args += ["--package", str(package)]
        super().__init__(args, **options)

    def stop(self) -> None:
        super().stop()
        if self._guide_dir is not None:
            self._guide_dir.cleanup()
            self._guide_dir = None


#: HAPI's Hibernate dialects, by JDBC URL prefix (H2 is the server's default).
HAPI_DIALECTS: Final = {
    "jdbc:h2:": "ca.uhn.fhir.jpa.model.dialect.HapiFhirH2Dialect",
    "jdbc:postgresql:": "ca.uhn.fhir.jpa.model.dialect.HapiFhirPostgresDialect",
}


def database_settings(url: str, user: str | None = None) -> dict[str, str]:
    """The Spring settings that put HAPI on a database: ``jdbc:h2:file:/path/db`` (a file that outlives
    the process) or ``jdbc:postgresql://host:port/db``. The password is never a setting (it would be on
    the command line): pass it in the environment (:class:`HapiServerProcess` ``database_password``)."""
    dialect = next((d for prefix, d in HAPI_DIALECTS.items() if url.startswith(prefix)), None)
    if dialect is None:
        raise ConfigurationError(
            f"unsupported database URL {url.split('?')[0]!r}: use jdbc:h2:file:PATH or jdbc:postgresql://HOST:PORT/DB"
        )
    settings = {"spring.datasource.url": url, "fhir-desens.hibernate-dialect": dialect}
    if user is not None:
        settings["spring.datasource.username"] = user
    return settings


class HapiServerProcess(JavaServiceProcess):
    """HAPI FHIR JPA (R4); ``url`` is the FHIR base (``http://127.0.0.1:PORT/fhir``).

    In memory (H2) by default; ``database_url`` (with ``database_user``/``database_password``) keeps the
    data in an H2 file or a PostgreSQL database instead (:func:`database_settings`)."""

    MODULE, JAR, MAIN = (
        "hapi-server",
        "fhir-desens-hapi-server.jar",
        "org.fhirdesens.hapi.HapiServerApplication",
    )
    NAME = "HAPI FHIR server"

    def __init__(
        self,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        settings: Mapping[str, str] | None = None,
        database_url: str | None = None,
        database_user: str | None = None,
        database_password: str | None = None,
        **options: Any,
    ) -> None:
        merged = {"server.address": host}
        if database_url is not None:
            merged.update(database_settings(database_url, database_user))
        merged.update(settings or {})
        args = [f"--server.port={port}", *(f"--{key}={value}" for key, value in merged.items())]
        super().__init__(args, **options)
        if database_password is not None:
            self.environment["SPRING_DATASOURCE_PASSWORD"] = database_password


def reference_apply(
    resources: Sequence[Mapping[str, Any]], plan_url: str, subject: str, *, timeout: float = 300.0
) -> dict[str, Any]:
    """The Clinical Reasoning ``PlanDefinition/$apply`` (cqf-fhir-cr, the engine of HAPI's CR module;
    ``java/cr-apply``) of the PlanDefinition ``plan_url`` among ``resources`` (its ActivityDefinitions
    and the Patient ``subject`` too): the R4 CarePlan it returns. One JVM per call (about 20 s)."""
    command = [find_java(), DEFAULT_HEAP, "-XX:+UseSerialGC", "-cp",
               _classpath("cr-apply", "fhir-desens-cr-apply.jar"), "org.fhirdesens.crapply.ReferenceApply"]  # fmt: skip
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
    with tempfile.TemporaryDirectory(prefix="fhir-desens-cr-") as directory:
        path = Path(directory) / "bundle.json"
        path.write_bytes(dumps(bundle).encode("utf-8"))
        done = subprocess.run(
            [*command, str(path), plan_url, subject], capture_output=True, timeout=timeout, check=False
        )
    if done.returncode != 0:
        raise FhirServerError(f"the reference $apply failed: {done.stderr.decode(errors='replace')[-1500:]}")
    result = loads(done.stdout)
    if not isinstance(result, dict):
        raise FhirFormatError("the reference $apply did not print a resource")
    return result


def expunge_everything(base_url: str, *, timeout: float = 120.0) -> None:
    """Empty a HAPI FHIR JPA test server (``POST [base]/$expunge`` with ``expungeEverything``): every
    resource and its history goes. Our server allows it (``fhir-desens.expunge``, on by default)."""
    import requests

    parameters = {
        "resourceType": "Parameters",
        "parameter": [{"name": "expungeEverything", "valueBoolean": True}],
    }
    try:
        response = requests.post(
            f"{base_url.rstrip('/')}/$expunge",
            data=dumps(parameters).encode("utf-8"),
            headers={"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"},
            timeout=timeout,
        )
    except requests.RequestException as error:
        raise FhirServerError(f"the HAPI FHIR server at {base_url} did not answer: {error}") from None
    if response.status_code != 200:
        raise FhirServerError(f"$expunge was refused ({response.status_code}): {response.text[:300]}")


#: What the HL7 engine says that is not about our content, shown as information with the reason
#: (docs/validation.md, "The HL7 engine's known limitations"): (text in the issue, why).
HL7_ENGINE_LIMITATIONS: Final = (
    (
        "Unable to resolve package id hl7.fhir.r4.core",
        "validating a StructureDefinition regenerates its snapshot, which needs the hl7.fhir.r4.core "
        "package; it cannot be fetched offline (the snapshot itself is checked by the resources using it)",
    ),
    (
        "Error in constraint 'tim-",
        "R4 types Timing.repeat as Element, so the engine cannot evaluate its tim-* invariants on a "
        "profile's snapshot element (they are evaluated on every instance)",
    ),
    (
        "Constraint failed: drt-1",
        "a pattern[x] Duration (UCUM system and code, no value) is checked as if it were an instance",
    ),
    ("dom-6", "narrative is optional; our resources are exchanged as data"),
    (
        "CodeSystem is unknown and can't be validated",
        "RxNorm and SNOMED CT codes cannot be checked offline (no terminology server)",
    ),
)


def _known_limitation(issue: Mapping[str, Any]) -> str | None:
    text = str((issue.get("details") or {}).get("text") or "")
    if "pattern" not in str(issue.get("expression") or "") and "drt-1" in text:
        return None  # drt-1 on an instance is a real error
    return next((why for marker, why in HL7_ENGINE_LIMITATIONS if marker in text), None)


def _annotate(outcome: Mapping[str, Any]) -> dict[str, Any]:
    """Known limitations become information issues saying why; everything else is kept as is."""
    issues = []
    for issue in outcome.get("issue") or []:
        why = _known_limitation(issue) if isinstance(issue, Mapping) else None
        if why is not None:
            text = f"HL7-engine limitation ({why}): {(issue.get('details') or {}).get('text')}"
            issue = {**issue, "severity": "information", "details": {"text": text}}
        issues.append(issue)
    return {**outcome, "issue": issues}


def hl7_validator(url: str, *, timeout: float = 120.0) -> Any:
    """A structural validator (resources in, OperationOutcomes out) backed by a running validator service."""
    import requests

    def validate(resources: Sequence[Mapping[str, Any]]) -> Sequence[Mapping[str, Any]]:
        outcomes = []
        with requests.Session() as session:
            for resource in resources:
                try:
                    response = session.post(
                        f"{url.rstrip('/')}/validate",
                        data=dumps(resource).encode("utf-8"),
                        headers={"Content-Type": "application/fhir+json"},
                        timeout=timeout,
                    )
                except requests.RequestException as error:
                    raise FhirServerError(
                        f"the HL7 validator service at {url} did not answer: {error}"
                    ) from None
                if response.status_code != 200:
                    raise FhirServerError(
                        f"the HL7 validator service answered {response.status_code}: {response.text[:300]}"
                    )
                outcomes.append(_annotate(loads(response.content)))
        return outcomes

    return validate
