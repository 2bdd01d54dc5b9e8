"""`fhir-desens demo` as a user runs it: one URL printed, everything up, and nothing left behind on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import requests


def _wait_for_line(process: subprocess.Popen[str], pattern: str, seconds: float = 60) -> re.Match[str]:
    deadline = time.monotonic() + seconds
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        match = re.search(pattern, line)
        if match:
            return match
    raise AssertionError(f"no line matching {pattern!r} (status {process.poll()})")


def _gone(pid: int, seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def _child_pids(pid: int) -> list[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    )
    return [int(p) for p in out.stdout.split()]


def test_demo_serves_the_ehr_and_the_app_and_sigterm_stops_every_process() -> None:
    command = [
        sys.executable,
        "-m",
        "fhir_desens.cli",
        "demo",
        "--ehr-port",
        "0",
        "--fhir-port",
        "0",
        "--app-port",
        "0",
    ]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as process:
        try:
            ehr = _wait_for_line(process, r"Open the EHR: (http://\S+)").group(1)
            app = _wait_for_line(process, r"app: (http://\S+)").group(1)
            assert requests.get(ehr, timeout=10).status_code == 200
            assert requests.get(f"{app}/healthz", timeout=10).status_code == 200
            children = _child_pids(process.pid)
            assert children, "the app and the FHIR server run as child processes"
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
            assert all(_gone(pid) for pid in children), "a child process outlived the demo"
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
