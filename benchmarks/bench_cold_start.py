"""CLI cold start: `fhir-desens plan ... --format json` and `fhir-desens --help` against `python -c pass`,
run alternately (so a noisy machine slows all alike) and reported as medians and ratios from one run.

    .venv/bin/python benchmarks/bench_cold_start.py [--rounds 15]

Two settings, each with its own ``python -c pass``:

* **this venv**: the project's development environment. The package is installed editable, and the
  editable install's import hook (a ``.pth`` file) runs at every start of this interpreter, ``python
  -c pass`` included: it imports ``pathlib``, ``re``, ``importlib.util`` and more, about 20 ms of CPU
  here, which the floor and the commands pay alike.
* **bare venv**: a fresh venv without pip or the hook (made in a temporary folder), the source tree on
  ``PYTHONPATH``, as a wheel install of fhir-desens starts ``plan`` and ``--help`` (which need the
  standard library only). Its floor is the interpreter's own start, so the ratio is the stricter one.

The commands run with bytecode caching on (``PYTHONDONTWRITEBYTECODE`` removed from their environment,
the first round writes the ``.pyc`` files), as on an installed machine; with it off every start
recompiles the sources, which measures the compiler rather than the CLI. The CPU time of each run
(user + system) is printed beside the wall clock: on a loaded machine it varies less. With
``--instructions`` each command also runs once under valgrind (``callgrind``, when installed) and its
instruction count is printed with its ratio to ``python -c pass``'s: the same on a busy machine, and
close to the CPU ratio (hash seed fixed for these runs). Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import venv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLAN = ["plan", "--protocol", "iv-12-step-3-bag", "--drug", "x", "--dose", "400mg", "--format", "json"]
#: The installed console script (what a person types), beside the interpreter.
SCRIPT = os.path.join(os.path.dirname(sys.executable), "fhir-desens")
ENVIRONMENT = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
BARE_ENVIRONMENT = {**ENVIRONMENT, "PYTHONPATH": ROOT}


def commands(python: str, script: str) -> dict[str, list[str]]:
    """What is timed with ``python``: the floor first, then the commands."""
    cli = [python, "-m", "fhir_desens.cli"]
    return {
        "python -c pass": [python, "-c", "pass"],
        "fhir-desens plan ... --format json": [*cli, *PLAN],
        "fhir-desens plan (console script)": [script, *PLAN],
        "fhir-desens --help": [*cli, "--help"],
        "fhir-desens apply --help": [*cli, "apply", "--help"],
    }


def bare_script(python: str) -> str:
    """This venv's console script (as pip writes it for any install) beside the bare ``python``."""
    with open(SCRIPT, encoding="utf-8") as file:
        body = file.read().split("\n", 1)[1]
    path = os.path.join(os.path.dirname(python), "fhir-desens")
    with open(path, "w", encoding="utf-8") as file:
        file.write(f"#!{python}\n{body}")
    os.chmod(path, 0o700)  # our own temporary folder: executable by us only
    return path


def timed(command: list[str], environment: dict[str, str]) -> tuple[float, float]:
    """Wall-clock and CPU (user + system) milliseconds of one run of ``command``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=environment, cwd=tempfile.gettempdir())
    wall = (time.perf_counter() - start) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000
    return wall, cpu


def instructions(command: list[str], environment: dict[str, str]) -> int:
    """Instructions one run of ``command`` executes (valgrind's callgrind, its output file discarded)."""
    with tempfile.TemporaryDirectory(prefix="fhir-desens-callgrind-") as folder:
        result = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={folder}/out", *command],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**environment, "PYTHONHASHSEED": "0"},
            cwd=tempfile.gettempdir(),
        )
    collected = re.search(r"Collected : (\d+)", result.stderr)
    if collected is None:
        raise RuntimeError(f"valgrind printed no instruction count for {command}")
    return int(collected.group(1))


def report_instructions(title: str, timed_: dict[str, list[str]], environment: dict[str, str]) -> None:
    counts = {name: instructions(command, environment) for name, command in timed_.items()}
    floor = counts["python -c pass"]
    print(f"  {title}, instructions (callgrind, one run each):")
    for name, count in counts.items():
        print(f"    {name:<36} {count / 1e6:6.1f}M  {count / floor:4.2f}x python -c pass")


def report(title: str, walls: dict[str, list[float]], cpus: dict[str, list[float]]) -> None:
    floor = statistics.median(walls["python -c pass"])
    cpu_floor = statistics.median(cpus["python -c pass"])
    print(f"  {title}:")
    for name in walls:
        wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        print(
            f"    {name:<36} {wall:6.0f} ms  {wall / floor:4.2f}x python -c pass   "
            f"CPU {cpu:5.0f} ms  {cpu / cpu_floor:4.2f}x"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument(
        "--instructions", action="store_true", help="also count each command's instructions (valgrind)"
    )
    args = parser.parse_args(argv)
    if args.instructions and shutil.which("valgrind") is None:
        parser.error("--instructions needs valgrind (apt-get install valgrind)")
    with tempfile.TemporaryDirectory(prefix="fhir-desens-bare-venv-") as folder:
        venv.create(folder, with_pip=False, symlinks=True)
        bare_python = os.path.join(folder, "bin", "python")
        settings = {
            "this venv (editable install)": (commands(sys.executable, SCRIPT), ENVIRONMENT),
            "bare venv (as a wheel install starts)": (
                commands(bare_python, bare_script(bare_python)),
                BARE_ENVIRONMENT,
            ),
        }
        walls = {title: {name: [] for name in timed_} for title, (timed_, _) in settings.items()}
        cpus = {title: {name: [] for name in timed_} for title, (timed_, _) in settings.items()}
        for timed_, environment in settings.values():
            for command in timed_.values():
                timed(command, environment)  # warm the file cache and the bytecode
        for _ in range(args.rounds):
            for title, (timed_, environment) in settings.items():
                for name, command in timed_.items():
                    wall, cpu = timed(command, environment)
                    walls[title][name].append(wall)
                    cpus[title][name].append(cpu)
        print(
            f"CLI cold start (median of {args.rounds} alternating rounds; CPU = user + system of the process):"
        )
        for title in settings:
            report(title, walls[title], cpus[title])
        if args.instructions:
            for title, (timed_, environment) in settings.items():
                report_instructions(title, timed_, environment)


if __name__ == "__main__":
    main()
