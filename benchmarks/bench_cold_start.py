"""CLI cold start: `fhir-desens plan ... --format json` and `fhir-desens --help` against `python -c pass`,
run alternately (so a noisy machine slows all alike) and reported as medians and ratios from one run.

    .venv/bin/python benchmarks/bench_cold_start.py [--rounds 15]

The commands run with bytecode caching on (``PYTHONDONTWRITEBYTECODE`` removed from their environment,
the first round writes the ``.pyc`` files), as on an installed machine; with it off every start
recompiles the sources, which measures the compiler rather than the CLI. The CPU time of each run
(user + system) is printed beside the wall clock: on a loaded machine it varies less. Prints figures,
asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

PLAN = ["plan", "--protocol", "iv-12-step-3-bag", "--drug", "x", "--dose", "400mg", "--format", "json"]
#: The installed console script (what a person types), beside the interpreter.
SCRIPT = os.path.join(os.path.dirname(sys.executable), "fhir-desens")
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "fhir-desens plan ... --format json": [sys.executable, "-m", "fhir_desens.cli", *PLAN],
    "  the same, by the console script": [SCRIPT, *PLAN],
    "fhir-desens --help": [sys.executable, "-m", "fhir_desens.cli", "--help"],
    "fhir-desens apply --help": [sys.executable, "-m", "fhir_desens.cli", "apply", "--help"],
}


ENVIRONMENT = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(command: list[str]) -> tuple[float, float]:
    """Wall-clock and CPU (user + system) milliseconds of one run of ``command``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=ENVIRONMENT)
    wall = (time.perf_counter() - start) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000
    return wall, cpu


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    walls: dict[str, list[float]] = {name: [] for name in COMMANDS}
    cpus: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for command in COMMANDS.values():
        timed(command)  # warm the file cache and the bytecode
    for _ in range(args.rounds):
        for name, command in COMMANDS.items():
            wall, cpu = timed(command)
            walls[name].append(wall)
            cpus[name].append(cpu)
    floor = statistics.median(walls["python -c pass"])
    cpu_floor = statistics.median(cpus["python -c pass"])
    print(f"CLI cold start (median of {args.rounds} alternating rounds; CPU = user + system of the process):")
    for name in COMMANDS:
        wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        print(
            f"  {name:<36} {wall:6.0f} ms  {wall / floor:4.2f}x python -c pass   "
            f"CPU {cpu:5.0f} ms  {cpu / cpu_floor:4.2f}x"
        )


if __name__ == "__main__":
    main()
