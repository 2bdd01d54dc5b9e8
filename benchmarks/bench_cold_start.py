"""CLI cold start: `fhir-desens plan ... --format json` and `fhir-desens --help` against `python -c pass`,
run alternately (so a noisy machine slows all alike) and reported as medians and ratios from one run.

    .venv/bin/python benchmarks/bench_cold_start.py [--rounds 15]

The commands run with bytecode caching on (``PYTHONDONTWRITEBYTECODE`` removed from their environment,
the first round writes the ``.pyc`` files), as on an installed machine; with it off every start
recompiles the sources, which measures the compiler rather than the CLI. Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

PLAN = ["plan", "--protocol", "iv-12-step-3-bag", "--drug", "x", "--dose", "400mg", "--format", "json"]
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "fhir-desens plan ... --format json": [sys.executable, "-m", "fhir_desens.cli", *PLAN],
    "fhir-desens --help": [sys.executable, "-m", "fhir_desens.cli", "--help"],
    "fhir-desens apply --help": [sys.executable, "-m", "fhir_desens.cli", "apply", "--help"],
}


ENVIRONMENT = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=ENVIRONMENT)
    return (time.perf_counter() - start) * 1000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for command in COMMANDS.values():
        timed(command)  # warm the file cache and the bytecode
    for _ in range(args.rounds):
        for name, command in COMMANDS.items():
            times[name].append(timed(command))
    floor = statistics.median(times["python -c pass"])
    print(f"CLI cold start (median of {args.rounds} alternating rounds):")
    for name, found in times.items():
        median = statistics.median(found)
        print(f"  {name:<36} {median:6.0f} ms  {median / floor:4.2f}x python -c pass")


if __name__ == "__main__":
    main()
