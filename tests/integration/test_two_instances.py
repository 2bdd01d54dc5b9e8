"""Two app instances behind nginx sharing Redis and PostgreSQL (tests/cluster.py; `make cluster` runs this
file): a whole journey (launch, patient page, plan, sign, a 12-step bedside session, outcome) whose
requests nginx hands to both instances in turn, so the launch state, the session, its CSRF token, the
drafts and the bedside record must be found whichever instance serves a request; then an instance is
stopped mid-session and the clinician carries on on the other, losing nothing.

Needs Debian's nginx, redis-server and postgresql-15 (`make services`); without them the tests skip
locally and fail in CI.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from fhir_desens.client.fhir_rest import FhirClient
from tests.cluster import Cluster, cluster
from tests.conftest import in_ci
from tests.journey import Journey
from tests.services import ServiceMissing

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def two() -> Iterator[Cluster]:
    try:
        with cluster(2) as running:
            yield running
    except ServiceMissing as error:
        if in_ci():
            pytest.fail(f"CI=true but a service is missing: {error}")
        pytest.skip(str(error))


def completed_procedures(running: Cluster) -> list[dict]:
    with FhirClient(running.sandbox.backend_url) as backend:
        found = backend.search_all("Procedure", {"status": "completed", "_count": "100"})
    return [p for p in found if any("bedside" in i.get("system", "") for i in p.get("identifier", []))]


def test_a_whole_journey_served_by_both_instances_in_turn(two: Cluster) -> None:
    journey = Journey(two.sandbox, two.url, two.client_id, two.clock_file)
    before = len(completed_procedures(two))
    journey.run()
    served = Counter(journey.served_by)
    assert set(served) == {i.address for i in two.instances}, served
    assert min(served.values()) >= len(journey.served_by) // 3  # round robin: both take a real share
    # every stage changed instance at least once, POSTs (CSRF, drafts, bedside entries) included
    assert any(a != b for a, b in zip(journey.served_by, journey.served_by[1:], strict=False))
    assert len(completed_procedures(two)) == before + 1  # the session reached the EHR once


def test_each_instance_is_ready_with_redis_and_postgresql(two: Cluster) -> None:
    import requests

    for instance in two.instances:
        response = requests.get(f"http://{instance.address}/readyz", timeout=10)
        assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_stopping_an_instance_mid_session_loses_nothing(two: Cluster) -> None:
    journey = Journey(two.sandbox, two.url, two.client_id, two.clock_file)
    before = len(completed_procedures(two))
    stopped = two.instances[0]

    def stop_after_planning(stage: str) -> None:
        if stage == "plan":
            stopped.stop()
            journey.served_by.clear()

    journey.run(after_stage=stop_after_planning)
    # signing, the whole bedside session and the outcome were served by the other instance
    assert set(journey.served_by) == {two.instances[1].address}
    assert len(completed_procedures(two)) == before + 1
