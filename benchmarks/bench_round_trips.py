"""FHIR round trips of one clinician's journey: launch -> patient page -> plan -> sign -> bedside -> outcome.

    .venv/bin/python benchmarks/bench_round_trips.py [--list]

Starts the demo stack (FHIR server, sandbox EHR, the app in its own process), runs the journey of
``tests/journey.py`` over HTTP and prints, per stage, the FHIR requests the app made (counted in the
sandbox gateway's log) and their sequential depth (the longest chain of requests the app waited for one
after another; requests sent concurrently count once). ``--list`` prints each request (method,
interaction, resource type, status; never ids). Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests.journey

from fhir_desens.commands.demo import demo_stack
from tests.journey import Journey


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="print every request of each stage")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-round-trips-") as folder:
        clock = Path(folder) / "clock"
        clock.write_text("", "utf-8")
        environment = {
            "FHIR_DESENS_SESSION_URL": f"sqlite:///{Path(folder) / 'sessions.sqlite3'}",
            "FHIR_DESENS_BEDSIDE_CLOCK_FILE": str(clock),
            "FHIR_DESENS_LOG_LEVEL": "WARNING",
        }
        with demo_stack(environment=environment) as stack:
            journey = Journey(stack.sandbox, stack.app_url, stack.client_id, clock)
            counts = journey.run()
    print("FHIR requests per stage of the journey (requests / sequential depth):")
    for stage, (total, depth) in counts.items():
        print(f"  {stage:<13} {total:4d} / {depth:3d}")
        if args.list:
            for entry in journey.requests[stage]:
                print(f"      {entry}")
    total = sum(n for n, _ in counts.values())
    print(f"  {'whole journey':<13} {total:4d}")


if __name__ == "__main__":
    main()
