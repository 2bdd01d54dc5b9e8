"""Exchange benchmarks: print figures for the README. Not tests: nothing here asserts a time.

    .venv/bin/python benchmarks/bench_exchange.py [--versions 1000]   (--versions 0: the library only)
        [--server test|hapi|both] [--hapi-url BASE] [--import-only]

* export + validate of the whole built-in library, with Medplum's validator (node; the first call
  starts its process, the next ones reuse it warm: fhir_desens/sandbox/validator_process.py) and
  without it (our profiles + clinical consistency only);
* import of a package of N protocol versions (the built-ins as versions 1.0.0, 1.0.1, ...) into a
  fresh FHIR server process: our validation layers, the server check and the writes, in resources
  per second, with the CPU seconds of this client and of the server process (the wall clock of a
  loaded machine is mostly waiting for a core), then the same import again (nothing written). ``--server hapi`` imports into a fresh
  HAPI FHIR JPA server (``make java``; H2 in memory, started here: 1 to 6 minutes on a loaded machine)
  instead, ``both`` into each; ``--hapi-url`` uses a running HAPI (``fhir-desens fhir-server --engine
  hapi``) whose store must not hold these versions yet. ``fhir-desens import`` also runs Medplum's
  validator first; its cost per resource is the difference between the two library figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.exchange.importer import CREATED, import_resources
from fhir_desens.exchange.load import Loaded, load_bytes
from fhir_desens.exchange.package import build_package
from fhir_desens.exchange.validate import StructuralValidator, medplum_validator, validate_loaded
from fhir_desens.fhir.plandefinition import library_bundle
from fhir_desens.io.formats import write_resource
from fhir_desens.protocol.library import builtin_protocols
from fhir_desens.protocol.model import Protocol
from fhir_desens.sandbox.fhir_server import FhirServerProcess


def seconds(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def median_s(action: Callable[[], object], repeat: int) -> float:
    return statistics.median(seconds(action) for _ in range(repeat))


def versions_of_the_library(count: int) -> list[Protocol]:
    """``count`` protocol versions: the built-ins in turn, as versions 1.0.0, 1.0.1, ..."""
    library = list(builtin_protocols().values())
    return [replace(library[i % len(library)], version=f"1.0.{i // len(library)}") for i in range(count)]


def library_loaded() -> list[Loaded]:
    protocols = list(builtin_protocols().values())
    return load_bytes(write_resource(library_bundle(protocols), "json"), "library.json")


def export_and_validate(structural: StructuralValidator | None) -> object:
    report = validate_loaded(library_loaded(), structural=structural)
    assert report.valid, report.text_lines()
    return report


def cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system) a child process has used so far, from /proc (Linux); 0 elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as file:
            fields = file.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_of_warm_call(validate: Callable[[], object], repeat: int = 5) -> tuple[float, float]:
    """Median CPU seconds of one warm call: (this Python process, the validator's node process)."""
    from fhir_desens.fhir.profiles import default_profiles_dir
    from fhir_desens.sandbox.validator_process import warm_validator

    node = warm_validator(default_profiles_dir(), "enforce")
    python_cpu, node_cpu = [], []
    for _ in range(repeat):
        python_start, node_start = time.process_time(), cpu_seconds(node.pid)
        validate()
        python_cpu.append(time.process_time() - python_start)
        node_cpu.append(cpu_seconds(node.pid) - node_start)
    return statistics.median(python_cpu), statistics.median(node_cpu)


def bench_library() -> None:
    """The whole library's validation, and where its time goes (one warm node process throughout)."""
    loaded = library_loaded()
    resources = [item.resource for item in loaded]
    medplum = medplum_validator()
    cold = seconds(lambda: export_and_validate(medplum))  # starts the validator process
    warm = median_s(lambda: export_and_validate(medplum), 5)  # the same process, definitions loaded
    export = median_s(library_loaded, 5)
    structural = median_s(lambda: medplum(resources), 5)  # one request line per resource, one batch
    without = median_s(lambda: validate_loaded(loaded, structural=None), 5)
    python_cpu, node_cpu = cpu_of_warm_call(lambda: export_and_validate(medplum))
    print(
        f"Export + validate whole library ({len(resources)} resources), Medplum included: first call "
        f"(starts node) {cold * 1000:.0f} ms; warm {warm * 1000:.0f} ms (median of 5)"
    )
    print(
        f"  of which: export + load {export * 1000:.0f} ms; Medplum (JSON to node and back, R4 + our "
        f"profiles) {structural * 1000:.0f} ms; our profile + clinical layers {without * 1000:.0f} ms; "
        f"node start-up and definitions {max(cold - warm, 0) * 1000:.0f} ms (first call only)"
    )
    print(
        f"  CPU of a warm call (less sensitive to a loaded machine): Python {python_cpu * 1000:.0f} ms, "
        f"node {node_cpu * 1000:.0f} ms"
    )
    print(
        f"Export + validate whole library, our profiles + clinical layer only: {(export + without) * 1000:.0f} ms "
        "(median of 5)"
    )
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "library.json")
        with open(path, "wb") as file:
            file.write(write_resource(library_bundle(list(builtin_protocols().values())), "json"))
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "fhir_desens.cli", "validate", path], check=True, stdout=subprocess.DEVNULL
        )
    print(
        f"fhir-desens validate library.json (one process: Python, one node start, validation): "
        f"{(time.perf_counter() - started) * 1000:.0f} ms"
    )


def bench_import(versions: int, servers: Sequence[str] = ("test",), hapi_url: str | None = None) -> None:
    protocols = versions_of_the_library(versions)
    start = time.perf_counter()
    resources = [entry["resource"] for entry in library_bundle(protocols)["entry"]]
    for resource in resources:  # a package holds one file per id: give each version its own ids
        resource["id"] = f"{resource['id']}-v{resource['version'].replace('.', '-')}"
    data = build_package(resources, name="bench.protocols")
    build = time.perf_counter() - start
    loaded = load_bytes(data, "bench.tgz")
    print(
        f"Package of {versions} protocol versions: {len(loaded):,} resources, {len(data) / 1e6:.1f} MB, built in {build:.1f} s"
    )
    for kind in servers:
        with (
            _fresh_server(kind, hapi_url) as (base_url, pid),
            FhirClient(base_url, timeout=_TIMEOUT) as client,
        ):
            start, client_cpu, server_cpu = time.perf_counter(), time.process_time(), cpu_seconds(pid)
            report = import_resources(client, loaded, structural=None)
            total = time.perf_counter() - start
            client_cpu, server_cpu = time.process_time() - client_cpu, cpu_seconds(pid) - server_cpu
            assert report.error is None and report.count(CREATED) == len(loaded), report.summary()
            again = seconds(lambda: import_resources(client, loaded, structural=None))
        name = "a fresh test server" if kind == "test" else "HAPI FHIR JPA (H2)"
        name += " (given)" if kind == "hapi" and hapi_url else ""
        print(
            f"  Import into {name} (our validation layers, server check, {len(loaded):,} conditional creates "
            f"in batches): {total:.1f} s, {len(loaded) / total:,.0f} resources/s"
        )
        server_text = f"server {server_cpu:.1f} s" if pid else "server not measured (not started here)"
        print(
            f"    CPU (a loaded machine stretches the wall clock, not these): this client {client_cpu:.1f} s "
            f"(validation included), {server_text}; load average {os.getloadavg()[0]:.1f}"
        )
        print(f"  Importing the same package again (nothing written): {again:.1f} s")


#: Batches of 100 conditional creates may take HAPI longer than the client's default 30 s under load.
_TIMEOUT = (5.0, 300.0)


@contextmanager
def _fresh_server(kind: str, hapi_url: str | None) -> Iterator[tuple[str, int | None]]:
    """The base URL and process id of a test server or HAPI started for this run (or the running
    HAPI given, whose process is not ours: no id)."""
    if kind == "test":
        with FhirServerProcess(port=0) as server:
            yield server.base_url, server.pid
    elif hapi_url:
        yield hapi_url.rstrip("/"), None
    else:
        from fhir_desens.sandbox.java_services import HapiServerProcess

        print("  (starting HAPI FHIR JPA ...)", flush=True)
        with HapiServerProcess() as hapi:
            yield str(hapi.url), hapi.pid


def main(
    versions: int = 1000,
    servers: Sequence[str] = ("test",),
    hapi_url: str | None = None,
    library: bool = True,
) -> None:
    if library:
        bench_library()
    if versions:  # --versions 0: the library figures only
        bench_import(versions, servers, hapi_url)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--versions", type=int, default=1000, help="protocol versions in the imported package"
    )
    parser.add_argument(
        "--server", choices=("test", "hapi", "both"), default="test", help="where to import (default: test)"
    )
    parser.add_argument("--hapi-url", help="a running HAPI FHIR base URL instead of starting one")
    parser.add_argument("--import-only", action="store_true", help="skip the library validation figures")
    args = parser.parse_args()
    chosen = ("test", "hapi") if args.server == "both" else (args.server,)
    main(args.versions, chosen, args.hapi_url, library=not args.import_only)
