"""Requests sent at the same time (fhir_desens.client.parallel) and the CapabilityStatement cache's
"known yet?" answer that lets the patient page send its batch while the statement is read."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from fhir_desens.client.capabilities import CapabilityCache
from fhir_desens.client.parallel import MAX_AT_ONCE, at_once


def test_the_calls_run_at_the_same_time() -> None:
    # each call waits for the others: run one after another, the barrier would break (timeout)
    barrier = threading.Barrier(3, timeout=10)

    def call(value: int) -> int:
        barrier.wait()
        return value

    assert at_once({"a": lambda: call(1), "b": lambda: call(2), "c": lambda: call(3)}) == {
        "a": 1,
        "b": 2,
        "c": 3,
    }


def test_a_single_call_runs_in_this_thread_and_none_is_nothing() -> None:
    assert at_once({"only": threading.current_thread}) == {"only": threading.current_thread()}
    assert at_once({}) == {}


def test_an_unexpected_error_is_raised_after_every_call_finished() -> None:
    finished = threading.Event()

    def slow() -> str:
        finished.wait(0.05)
        finished.set()
        return "done"

    def failing() -> str:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        at_once({"failing": failing, "slow": slow})
    assert finished.is_set()


def test_the_number_of_threads_is_bounded() -> None:
    with pytest.raises(ValueError, match="at most"):
        at_once({str(i): (lambda: None) for i in range(MAX_AT_ONCE + 1)})


class Client:
    base_url = "https://ehr.example.org/fhir"

    def __init__(self, statement: dict[str, Any]) -> None:
        self.statement, self.reads = statement, 0

    def capabilities(self) -> dict[str, Any]:
        self.reads += 1
        return self.statement


BATCH = {
    "resourceType": "CapabilityStatement",
    "rest": [{"mode": "server", "interaction": [{"code": "batch"}]}],
}


def test_batch_known_reads_nothing_and_answers_once_the_statement_is_cached() -> None:
    now = [0.0]
    cache = CapabilityCache(ttl=60, clock=lambda: now[0])
    client = Client(BATCH)
    assert cache.batch_known(client) is None  # type: ignore[arg-type]
    assert client.reads == 0
    assert cache.batch(client) is True  # type: ignore[arg-type]
    assert cache.batch_known(client) is True  # type: ignore[arg-type]
    now[0] = 61.0  # expired: not known any more (the next page reads it again, concurrently)
    assert cache.batch_known(client) is None  # type: ignore[arg-type]
    assert client.reads == 1


def test_a_server_without_batch_is_known_as_such() -> None:
    cache = CapabilityCache()
    client = Client({"resourceType": "CapabilityStatement", "rest": [{"mode": "server"}]})
    assert cache.batch(client) is False  # type: ignore[arg-type]
    assert cache.batch_known(client) is False  # type: ignore[arg-type]
