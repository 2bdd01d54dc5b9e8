"""Medplum's validator kept warm: one ``node validate.cjs`` process serves every validation of this
Python process.

Starting ``validate.cjs`` loads Medplum's R4 definitions and our profiles, which costs about a second
(R4's resource definitions are read from a trimmed cache and parsed when a resource of the type first
comes); the script parses each profile once (Medplum alone parses it again for every resource), so
the validation itself is a few milliseconds a resource. A
:class:`ValidatorProcess` starts it once and sends it resources line by line (the script answers one
OperationOutcome line per request line), so a test session, an import and every file of one CLI call
share one process. :func:`warm_validator` keeps one per (profiles folder, declared-profile mode) for
the life of this process; they stop when it exits (the script also exits when its stdin closes).

A process that dies or stops answering is reported as :class:`FhirServerError` and started again on
the next call.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import queue
import subprocess
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any, Self

from fhir_desens.errors import FhirServerError, InputError
from fhir_desens.io.json import dumps, loads
from fhir_desens.sandbox.fhir_server import SERVER_DIR, _check_installed, _profiles_arg, find_node

DEFAULT_TIMEOUT = 300.0


class ValidatorProcess:
    """``validate(resources, profile)``: one OperationOutcome per resource, in order (thread-safe)."""

    def __init__(
        self,
        profiles_dir: str | os.PathLike[str] | None = None,
        declared: str = "warn",
        *,
        timeout: float = DEFAULT_TIMEOUT,
        reference: bool = False,
    ) -> None:
        if declared not in ("ignore", "warn", "enforce"):
            raise InputError("declared", f"{declared!r}", "ignore, warn, enforce")
        self.profiles_dir, self.declared, self.timeout = profiles_dir, declared, timeout
        # True: Medplum as shipped (every R4 definition read whole and indexed at start-up, each profile
        # parsed again for every resource): slow, the reference the tests compare the shortcuts with
        self.reference = reference
        self._process: subprocess.Popen[bytes] | None = None
        self._lines: queue.Queue[bytes] = queue.Queue()
        self._lock = threading.Lock()
        self.starts = 0  # how many node processes this object has started (1 when it stayed warm)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        """The node process's id while one runs (benchmarks read its CPU time)."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _start(self) -> subprocess.Popen[bytes]:
        _check_installed()
        command = [find_node(), str(SERVER_DIR / "validate.cjs"), "--declared", self.declared]
        command += _profiles_arg(self.profiles_dir)
        if self.reference:
            command.append("--as-shipped")
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=SERVER_DIR,
        )
        self._lines = queue.Queue()
        assert process.stdout is not None
        threading.Thread(target=_pump, args=(process.stdout, self._lines), daemon=True).start()
        self._process = process
        self.starts += 1
        return process

    def stop(self) -> None:
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None and not process.stdin.closed:
            with contextlib.suppress(OSError):  # OSError: it has already gone (broken pipe)
                process.stdin.close()  # the script ends when its input does
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def validate(
        self, resources: Iterable[Mapping[str, Any]], profile: str | None = None
    ) -> list[dict[str, Any]]:
        requests = [dumps({"resource": r, **({"profile": profile} if profile else {})}) for r in resources]
        if not requests:
            return []
        with self._lock:
            if self._process is not None and not self.running:
                self._stop()  # it died since the last call: close its pipes, start another
            process = self._process if self._process is not None else self._start()
            assert process.stdin is not None
            try:
                process.stdin.write(("\n".join(requests) + "\n").encode("utf-8"))
                process.stdin.flush()
                return [self._answer() for _ in requests]
            except (OSError, FhirServerError) as error:
                self._stop()  # the next call starts a fresh process
                if isinstance(error, FhirServerError):
                    raise
                raise FhirServerError(f"the validator process failed ({type(error).__name__})") from None

    def _answer(self) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=self.timeout)
        except queue.Empty:
            raise FhirServerError(f"the validator did not answer within {self.timeout:.0f} s") from None
        if not line:
            raise FhirServerError("the validator process exited")
        outcome = loads(line.decode("utf-8"))
        return outcome if isinstance(outcome, dict) else {}


def _pump(stream: IO[bytes], lines: queue.Queue[bytes]) -> None:
    """Every line the script writes, then b"" when it exits."""
    with stream:  # closed here, by its only reader
        for line in iter(stream.readline, b""):
            if line.strip():
                lines.put(line)
    lines.put(b"")


_WARM: dict[tuple[str, str], ValidatorProcess] = {}
_WARM_LOCK = threading.Lock()


def warm_validator(
    profiles_dir: str | os.PathLike[str] | None = None, declared: str = "warn"
) -> ValidatorProcess:
    """This process's validator for (``profiles_dir``, ``declared``), started on first use."""
    key = (str(Path(profiles_dir).resolve()) if profiles_dir is not None else "", declared)
    with _WARM_LOCK:
        found = _WARM.get(key)
        if found is None:
            found = _WARM[key] = ValidatorProcess(profiles_dir, declared)
        return found


@atexit.register
def _stop_all() -> None:
    for validator in list(_WARM.values()):
        validator.stop()
