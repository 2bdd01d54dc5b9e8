"""The sandbox gateway's log of the requests it answered (method, interaction, resource type, status,
start and end; never ids, queries or bodies): what tests and ``benchmarks/bench_round_trips.py`` count."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LoggedRequest:
    """One request the gateway answered, without ids: ``GET search-type AllergyIntolerance 200``."""

    method: str
    kind: str  # the interaction (read, search-type, batch, ...), or "metadata"
    resource_type: str | None
    status: int
    started: float  # time.monotonic()
    ended: float

    def __str__(self) -> str:
        return f"{self.method} {self.kind} {self.resource_type or '-'} {self.status}"


class RequestLog:
    """The requests a gateway answered, in the order they ended (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[LoggedRequest] = []

    def add(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._entries.append(entry)

    def mark(self) -> int:
        """A position to count from (``since(mark)``)."""
        with self._lock:
            return len(self._entries)

    def since(self, mark: int = 0) -> list[LoggedRequest]:
        with self._lock:
            return self._entries[mark:]


def sequential_depth(entries: Sequence[LoggedRequest]) -> int:
    """The longest chain of requests each started after the previous one ended: the round trips a
    client waited for one after another (requests that overlap in time count once)."""
    ordered = sorted(entries, key=lambda e: e.started)
    depth: list[int] = []
    for i, entry in enumerate(ordered):
        before = [depth[j] for j in range(i) if ordered[j].ended <= entry.started]
        depth.append(1 + max(before, default=0))
    return max(depth, default=0)


__all__ = ["LoggedRequest", "RequestLog", "sequential_depth"]
