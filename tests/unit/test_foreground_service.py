"""The foreground loop of `fhir-desens fhir-server --engine hapi` and `fhir-desens hl7-validator`
(fhir_desens/sandbox/signals.py): a real child process stands in for the Java service."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from fhir_desens.sandbox.signals import run_until_stopped


class ChildService:
    """A Python child that sleeps, then exits with ``status``."""

    def __init__(self, status: int, seconds: float) -> None:
        self.code = f"import sys, time; time.sleep({seconds}); sys.exit({status})"
        self.process: subprocess.Popen[bytes] | None = None
        self.stopped = False

    def start(self) -> str:
        self.process = subprocess.Popen([sys.executable, "-c", self.code])
        return "http://127.0.0.1:1/"

    def wait(self) -> int:
        assert self.process is not None
        return self.process.wait()

    def stop(self) -> None:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait()
        self.stopped = True


def test_the_ready_line_then_a_failed_exit_is_status_1_and_says_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    service = ChildService(status=3, seconds=0)
    assert run_until_stopped(service, "test service", lambda url: f"ready at {url}") == 1
    out, err = capsys.readouterr()
    assert out == "ready at http://127.0.0.1:1/\n"
    assert "the test service exited with status 3" in err
    assert service.stopped


def test_a_clean_exit_is_status_0() -> None:
    service = ChildService(status=0, seconds=0)
    assert run_until_stopped(service, "test service", str) == 0
    assert service.stopped


class TerminatedService(ChildService):
    """SIGTERM reaches this process while it waits for the service (as from `kill` or systemd)."""

    def wait(self) -> int:
        os.kill(os.getpid(), signal.SIGTERM)
        return super().wait()


def test_sigterm_stops_the_service_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    service = TerminatedService(status=0, seconds=60)
    previous = signal.getsignal(signal.SIGTERM)
    assert run_until_stopped(service, "test service", str) == 0
    assert service.stopped and service.process is not None and service.process.returncode != 0
    assert signal.getsignal(signal.SIGTERM) == previous  # the handler is put back
    assert "exited" not in capsys.readouterr().err
