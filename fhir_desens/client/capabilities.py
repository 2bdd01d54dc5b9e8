"""The FHIR servers' CapabilityStatements, read once and kept for an hour.

Every bedside post, every outcome page and every start form needs to know what the EHR offers (batch,
which writes per type); a CapabilityStatement changes with the EHR's releases, not between requests, so
the app (``smart_app.services``: one cache per app) reads it at most once per FHIR base per
:data:`TTL_SECONDS`. A statement that cannot be read is not cached (the next request tries again).
The first page of a session that needs it (the patient page) reads it at the same time as its own
batch (:meth:`CapabilityCache.batch_known` says whether the answer is known yet), so reading it
adds no round trip to that page.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.errors import DesensError

log = logging.getLogger(__name__)

TTL_SECONDS = 3600.0


class CapabilityCache:
    """``get(client)``: the CapabilityStatement of ``client``'s server, from the cache when fresh."""

    def __init__(self, ttl: float = TTL_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.clock = ttl, clock
        self._lock = threading.Lock()
        self._statements: dict[str, tuple[float, dict[str, Any]]] = {}

    def get(self, client: FhirClient) -> dict[str, Any]:
        cached = self.cached(client)
        if cached is not None:
            return cached
        statement = client.capabilities()
        with self._lock:
            self._statements[client.base_url] = (self.clock(), statement)
        return statement

    def cached(self, client: FhirClient) -> dict[str, Any] | None:
        """The statement when it is in the cache and fresh; None otherwise (nothing is read)."""
        key = client.base_url
        with self._lock:
            cached = self._statements.get(key)
        if cached is not None and self.clock() - cached[0] < self.ttl:
            return cached[1]
        return None

    def forget(self, client: FhirClient) -> None:
        """Read ``client``'s statement again next time: the server refused what it said it offers."""
        with self._lock:
            self._statements.pop(client.base_url, None)

    def clear(self) -> None:
        with self._lock:
            self._statements.clear()

    def batch(self, client: FhirClient) -> bool:
        """Whether ``client``'s server takes batch Bundles; False when its statement cannot be read."""
        try:
            return supports_batch(self.get(client))
        except DesensError as error:
            log.warning("the CapabilityStatement could not be read (%s)", type(error).__name__)
            return False

    def batch_known(self, client: FhirClient) -> bool | None:
        """Whether ``client``'s server takes batch Bundles, from the cache only; None: not known yet
        (the caller may send its batch while :meth:`batch` reads the statement, and fall back to
        request by request when the batch is refused)."""
        statement = self.cached(client)
        return None if statement is None else supports_batch(statement)


def supports_batch(statement: Mapping[str, Any]) -> bool:
    """Whether the CapabilityStatement lists the ``batch`` system interaction."""
    for rest in statement.get("rest") or []:
        if not isinstance(rest, Mapping) or rest.get("mode", "server") != "server":
            continue
        for interaction in rest.get("interaction") or []:
            if isinstance(interaction, Mapping) and interaction.get("code") == "batch":
                return True
    return False
