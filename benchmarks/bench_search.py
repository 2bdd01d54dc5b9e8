"""Benchmark: searches over thousands of resources on the sandbox FHIR server (issue 11: the
5,000-allergy chart; issue 16: import speed). Prints figures; asserts no time.

    .venv/bin/python benchmarks/bench_search.py [--allergies 5000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests.hostile

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.sandbox.fhir_server import FhirServerProcess
from tests.hostile import plant_allergies


def _load(client: FhirClient, patient: str, count: int) -> float:
    start = time.perf_counter()
    plant_allergies(client, patient, count)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--allergies", type=int, default=5000)
    args = parser.parse_args([] if argv is None else argv)
    with FhirServerProcess(port=0) as server, FhirClient(server.base_url) as client:
        loaded = _load(client, "Patient/many", args.allergies)
        _load(client, "Patient/other", 1000)  # another patient's records the search must skip
        times = []
        for _ in range(5):
            start = time.perf_counter()
            client.search("AllergyIntolerance", {"patient": "Patient/many", "_count": "100"})
            times.append(time.perf_counter() - start)
        start = time.perf_counter()
        every = client.search_all("AllergyIntolerance", {"patient": "Patient/many", "_count": "100"})
        whole = time.perf_counter() - start
    print(f"  Loading {args.allergies:,} allergies in transactions of 500: {loaded:.1f} s")
    print(
        f"  One search page (100 of {args.allergies:,} allergies of one patient, among {args.allergies + 1000:,}): "
        f"median {statistics.median(times) * 1000:.0f} ms"
    )
    print(f"  The whole chart ({len(every):,} allergies, every page): {whole:.2f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
