"""App CPU per page, one client at a time: the worksheet (GET of a draft's plan page) and the patient
page, as the app reports them in ``Server-Timing`` (smart_app/timing.py: ``app`` wall time, ``cpu`` the
request thread's CPU). No concurrency, so no queueing: this is the app's own cost per page; the wall
time also includes the page's FHIR requests to the sandbox EHR on this machine.

    .venv/bin/python benchmarks/bench_pages.py [--requests 200]

Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))  # load_app: the launch and the start form

from load_app import PATIENT, Target, smart_launch, start_plan

from fhir_desens.commands.demo import demo_stack

TIMING = re.compile(r"(app|cpu);dur=([0-9.]+)")


def timings(http: requests.Session, url: str, count: int) -> tuple[list[float], list[float]]:
    app, cpu = [], []
    for _ in range(count):
        response = http.get(url, timeout=60)
        response.raise_for_status()
        found = dict(TIMING.findall(response.headers.get("Server-Timing", "")))
        app.append(float(found["app"]))
        cpu.append(float(found["cpu"]))
    return app, cpu


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="GETs of each page (default 200)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-pages-") as folder:
        environment = {
            "FHIR_DESENS_SESSION_URL": f"sqlite:///{Path(folder) / 'sessions.sqlite3'}",
            "FHIR_DESENS_LOG_LEVEL": "WARNING",
        }
        serve = ["--server", "gunicorn", "--workers", "1", "--threads", "1"]
        with demo_stack(serve_args=serve, environment=environment) as stack, requests.Session() as http:
            patient_page = smart_launch(http, Target(stack.sandbox, stack.client_id), PATIENT)
            worksheet = start_plan(http, patient_page)
            pages = {"worksheet": worksheet, "patient page": patient_page}
            results = {name: timings(http, url, args.requests) for name, url in pages.items()}
    print(f"App time per page, one client, {args.requests} GETs each (medians; Server-Timing):")
    for name, (app, cpu) in results.items():
        print(
            f"  {name:<13} CPU {statistics.median(cpu):5.2f} ms (p90 {statistics.quantiles(cpu, n=10)[-1]:.2f}), "
            f"in the app {statistics.median(app):6.2f} ms (with its FHIR requests)"
        )


if __name__ == "__main__":
    main()
