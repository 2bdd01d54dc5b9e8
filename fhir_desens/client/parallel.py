"""Independent requests sent at the same time, so that a page waits for one round trip, not several.

The patient page needs the EHR's CapabilityStatement (does it take batch Bundles?), the signed-in user
and the chart batch; none depends on the answer of another, so :func:`at_once` sends them together
(one thread each) and returns when all have answered. The calls must not need Flask's request context
(they run in other threads): pass them what they need. Each call handles its own expected errors; an
unexpected exception is raised again in the caller once every call has finished.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["at_once"]

T = TypeVar("T")

#: more than a page ever sends at once; a bound so a bug cannot start threads without end
MAX_AT_ONCE = 8


def at_once(calls: Mapping[str, Callable[[], T]]) -> dict[str, T]:
    """Each call's result by name, the calls run concurrently (a single call runs in this thread)."""
    if len(calls) > MAX_AT_ONCE:
        raise ValueError(f"at most {MAX_AT_ONCE} calls at once")
    if len(calls) <= 1:
        return {name: call() for name, call in calls.items()}
    with ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix="fhir-at-once") as pool:
        futures = {name: pool.submit(call) for name, call in calls.items()}
    return {name: future.result() for name, future in futures.items()}  # all done: the pool was shut down
