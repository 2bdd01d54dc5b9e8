"""Exchange benchmarks: print figures for the README. Not tests: nothing here asserts a time.

    .venv/bin/python benchmarks/bench_exchange.py [--versions 1000]

* export + validate of the whole built-in library, with Medplum's validator (node; the first call
  starts its process, the next ones reuse it warm: fhir_desens/sandbox/validator_process.py) and
  without it (our profiles + clinical consistency only);
* import of a package of N protocol versions (the built-ins as versions 1.0.0, 1.0.1, ...) into a
  fresh FHIR server process: our validation layers, the server check and the writes, in resources
  per second. ``fhir-desens import`` also runs Medplum's validator first; its cost per resource is
  the difference between the two library figures.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import replace

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.exchange.importer import CREATED, import_resources
from fhir_desens.exchange.load import load_bytes
from fhir_desens.exchange.package import build_package
from fhir_desens.exchange.validate import medplum_validator, validate_loaded
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


def export_and_validate(structural: bool) -> object:
    protocols = list(builtin_protocols().values())
    loaded = load_bytes(write_resource(library_bundle(protocols), "json"), "library.json")
    report = validate_loaded(loaded, structural=medplum_validator() if structural else None)
    assert report.valid, report.text_lines()
    return report


def bench_library() -> None:
    count = sum(1 for _ in library_bundle(list(builtin_protocols().values()))["entry"])
    cold = seconds(lambda: export_and_validate(True))  # starts the validator process
    warm = median_s(lambda: export_and_validate(True), 5)  # the same process, definitions loaded
    without = median_s(lambda: export_and_validate(False), 5)
    print(
        f"Export + validate whole library ({count} resources), Medplum included: first call (starts node) "
        f"{cold * 1000:.0f} ms; warm {warm * 1000:.0f} ms (median of 5)"
    )
    print(
        f"Export + validate whole library, our profiles + clinical layer only: {without * 1000:.0f} ms (median of 5)"
    )


def bench_import(versions: int) -> None:
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
    with FhirServerProcess(port=0) as server, FhirClient(server.base_url) as client:
        start = time.perf_counter()
        report = import_resources(client, loaded, structural=None)
        total = time.perf_counter() - start
        assert report.error is None and report.count(CREATED) == len(loaded), report.summary()
        again = seconds(lambda: import_resources(client, loaded, structural=None))
    print(
        f"  Import into a fresh server (our validation layers, server check, {len(loaded):,} conditional creates): "
        f"{total:.1f} s, {len(loaded) / total:,.0f} resources/s"
    )
    print(f"  Importing the same package again (nothing written): {again:.1f} s")


def main(versions: int = 1000) -> None:
    bench_library()
    bench_import(versions)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--versions", type=int, default=1000, help="protocol versions in the imported package"
    )
    main(parser.parse_args().versions)
