"""Benchmarks: print figures for the README. Not tests: nothing here asserts a time.

    .venv/bin/python benchmarks/run_all.py

Measures plans per second for the 12-step protocol (one core) and against its bare-Decimal floor, the
CLI's cold start against ``python -c pass``, export/apply/serialize times of the FHIR layer, the FHIR
round trips of a whole journey, the app's CPU per page, searches, validation and import.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from decimal import Decimal

import bench_cold_start  # benchmarks/ is on sys.path when this file runs as a script
import bench_engine
import bench_exchange
import bench_pages
import bench_round_trips
import bench_search

from fhir_desens.fhir.apply import ApplyContext, apply_plan
from fhir_desens.fhir.plandefinition import library_bundle
from fhir_desens.io.formats import write_resource
from fhir_desens.io.json import dumps
from fhir_desens.protocol.calculate import PlanRequest, compute_plan
from fhir_desens.protocol.library import builtin_protocols, get_protocol
from fhir_desens.protocol.quantity import Quantity


def per_second(action: Callable[[], object], seconds: float = 2.0) -> float:
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        action()
        count += 1
    return count / (time.perf_counter() - start)


def median_ms(action: Callable[[], object], repeat: int = 200) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    twelve = get_protocol("iv-12-step-3-bag")
    sixteen = get_protocol("iv-16-step-4-bag")
    counter = iter(range(10**9))

    def plan_12() -> object:
        dose = Decimal(100 + next(counter) % 900)  # a different dose each time: no caching helps
        return compute_plan(
            PlanRequest(twelve, "carboplatin", Quantity(dose, "mg"), final_rate_ml_h=Decimal(75))
        )

    plan16 = compute_plan(PlanRequest(sixteen, "carboplatin", Quantity(Decimal(400), "mg")))
    context = ApplyContext("Patient/p1", "Practitioner/d1")
    protocols = list(builtin_protocols().values())
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(f"12-step plan (compute + all invariants): {per_second(plan_12):,.0f} plans/s on one core")
    bench_engine.main(
        []
    )  # the engine against its bare-Decimal floor, alternately (benchmarks/bench_engine.py)
    print(
        f"16-step $apply + JSON serialization: {median_ms(lambda: dumps(apply_plan(plan16, context))):.2f} ms (median)"
    )
    print(f"Export whole library ({len(protocols)} protocols) as JSON: "
          f"{median_ms(lambda: write_resource(library_bundle(protocols), 'json'), 50):.1f} ms (median)")  # fmt: skip
    print(
        f"Export whole library as XML: {median_ms(lambda: write_resource(library_bundle(protocols), 'xml'), 20):.1f} ms"
    )
    bench_cold_start.main(
        []
    )  # the CLI against `python -c pass`, alternately (benchmarks/bench_cold_start.py)
    bench_round_trips.main([])  # FHIR requests per stage of a whole journey (benchmarks/bench_round_trips.py)
    bench_pages.main([])  # app CPU per worksheet and patient page, one client (benchmarks/bench_pages.py)
    bench_search.main()  # searches over a 5,000-allergy chart (benchmarks/bench_search.py)
    bench_exchange.main()  # export + validate, import of 1,000 protocol versions (benchmarks/bench_exchange.py)


if __name__ == "__main__":
    main()
