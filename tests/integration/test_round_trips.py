"""FHIR round trips: the whole journey (launch -> patient page -> plan -> sign -> bedside -> outcome) run
over HTTP against the app in its own process (gunicorn, as deployed) and the sandbox EHR, with the FHIR
requests of each stage counted in the sandbox gateway's log. Counts, never times
(``benchmarks/bench_round_trips.py`` prints the same figures).

The launch reads nothing. The patient page reads the Patient, the allergy list and the signed plans in
one batch Bundle, sent together with the read of the signed-in user and (once per app process) the
CapabilityStatement: one round trip. The start form reads the chart and the signed plans in another
batch (the sandbox lists ``batch`` in its CapabilityStatement), once per draft: the form's POST and the
worksheet reuse it. Token to first worksheet: two sequential round trips.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fhir_desens.commands.demo import demo_stack
from fhir_desens.course.planning_chart import read_planning
from fhir_desens.errors import ConfigurationError
from fhir_desens.sandbox.request_log import LoggedRequest, sequential_depth
from fhir_desens.sandbox.server import Sandbox
from smart_app.app_session import app_session
from tests.conftest import in_ci
from tests.integration import test_app_launch as launch_tests
from tests.integration.test_app_launch import ehr_launch
from tests.journey import PATIENT, Journey

sandbox = launch_tests.sandbox
make_app = launch_tests.make_app

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def journey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journey]:
    folder = tmp_path_factory.mktemp("round-trips")
    clock = folder / "clock"
    clock.write_text("", "utf-8")
    environment = {
        "FHIR_DESENS_SESSION_URL": f"sqlite:///{folder / 'sessions.sqlite3'}",
        "FHIR_DESENS_BEDSIDE_CLOCK_FILE": str(clock),
        "FHIR_DESENS_LOG_LEVEL": "WARNING",
    }
    try:
        with demo_stack(environment=environment, serve_args=["--server", "gunicorn"]) as stack:
            walk = Journey(stack.sandbox, stack.app_url, stack.client_id, Path(clock))
            walk.run()
            yield walk
    except ConfigurationError as error:
        if in_ci():
            pytest.fail(f"CI=true but the demo stack cannot run: {error}")
        pytest.skip(f"demo stack unavailable: {error}")


def kinds(entries: list[LoggedRequest]) -> list[str]:
    return [str(entry) for entry in entries]


def test_token_to_worksheet_round_trips(journey: Journey) -> None:
    counts = journey.counts()
    assert counts["launch"] == (0, 0)  # the callback reads nothing from the FHIR server
    # at the same time: the CapabilityStatement (once per app process), the signed-in user (fhirUser),
    # and the Patient, the allergy list and the signed plans in one batch
    assert sorted(kinds(journey.requests["patient page"])) == [
        "GET metadata CapabilityStatement 200",
        "GET read Practitioner 200",
        "POST bundle - 200",
    ]
    # sent together: one round trip (two only if this loaded machine delayed a thread past another's
    # answer; benchmarks/bench_round_trips.py prints the depth measured)
    assert counts["patient page"][0] == 3 and counts["patient page"][1] <= 2
    # the start form: the whole chart and the signed plans in one batch; its POST and the worksheet
    # (other active plans of the drug) read nothing
    assert kinds(journey.requests["plan"]) == ["POST bundle - 200"]
    assert counts["plan"] == (1, 1)
    assert sum(counts[stage][1] for stage in ("launch", "patient page", "plan")) <= 3  # issue 16's aim


def test_the_capability_statement_is_read_once_per_app(journey: Journey) -> None:
    everything = [entry for entries in journey.requests.values() for entry in entries]
    assert [str(e) for e in everything].count("GET metadata CapabilityStatement 200") == 1


def test_the_rest_of_the_journey_stays_within_its_counts(journey: Journey) -> None:
    counts = journey.counts()
    assert counts["sign"][0] <= 9
    assert counts["outcome"][0] <= 2  # the allergy list and the record to update
    # a 12-step session: each entry sends what it recorded (at most a few writes per entry), plus the
    # pre-start checklist's reads of the chart (weight, premedications, consent)
    assert counts["bedside"][0] <= 180


def test_sequential_depth_counts_overlapping_requests_once() -> None:
    def entry(start: float, end: float) -> LoggedRequest:
        return LoggedRequest("GET", "read", "Patient", 200, start, end)

    assert sequential_depth([]) == 0
    assert sequential_depth([entry(0, 1), entry(1, 2), entry(2, 3)]) == 3
    assert sequential_depth([entry(0, 2), entry(0.5, 1.5), entry(1, 3), entry(3, 4)]) == 2


def test_the_batch_read_equals_the_search_by_search_read(sandbox: Sandbox, make_app) -> None:
    app = make_app("symmetric")
    sid = ehr_launch(sandbox, app, PATIENT)
    with app.app.test_request_context():
        session = app_session(sid)
        mark = sandbox.fhir_requests.mark()
        batched = read_planning(session.client, session.smart, batch=True)
        batch_requests = sandbox.fhir_requests.since(mark)
        mark = sandbox.fhir_requests.mark()
        one_by_one = read_planning(session.client, session.smart, batch=False)
        single_requests = sandbox.fhir_requests.since(mark)
    assert batched == one_by_one
    assert batched.orders and batched.body and batched.conditions is not None and batched.plans is not None
    assert kinds(batch_requests) == ["POST bundle - 200"]
    assert len(single_requests) >= 5
