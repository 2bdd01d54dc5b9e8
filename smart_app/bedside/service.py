"""The bedside record and its outbox for the app: the app's record database (``FHIR_DESENS_RECORD_URL``,
shared with the outcome pages), the EHR's capabilities per server, and sending after each entry.

Sending is tried inside the request (short timeouts, no retries); what did not reach the EHR stays in the
ledger, the page says so, and the background sender (:mod:`smart_app.bedside.sender`) sends it when its
retry time comes, also after the page was closed. One sender at a time per session (a lease in the record
database), whichever thread or app process it runs in.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from flask import Flask, current_app

from fhir_desens.client.capabilities import CapabilityCache
from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.client.http import RetryPolicy
from fhir_desens.client.smart import SmartSession
from fhir_desens.course.bedside.outbox import Outbox, OutboxStatus, ServerCapabilities
from fhir_desens.course.bedside.record import BedsideRecord
from fhir_desens.course.bedside.state import SessionState
from fhir_desens.course.bedside.store import RecordStore
from fhir_desens.course.bedside.summary import SessionSummary
from fhir_desens.errors import DesensError
from smart_app.bedside.clock import FileClock, bedside_clock
from smart_app.bedside.sender import Sender, remember_launch
from smart_app.bedside.write_setting import WriteSetting, effective_capabilities
from smart_app.library import library
from smart_app.services import EXTENSION as SERVICES

log = logging.getLogger(__name__)
EXTENSION = "fhir_desens_bedside"
SEND_TIMEOUT = (2.0, 5.0)
SEND_LEASE = 120.0  # seconds a sender holds a session (longer than any one send with these timeouts)
SYNC_BACKOFF = (5.0, 15.0, 60.0, 300.0)  # when the EHR could not be asked at all (bedside clock seconds)


@dataclass
class Bedside:
    store: RecordStore
    write_setting: WriteSetting  # FHIR_DESENS_BEDSIDE_WRITE_TYPES, per server
    clock: Any
    test_clock: bool = False  # the flowsheet says "Test clock" (smart_app.bedside.clock)
    statements: CapabilityCache = field(default_factory=CapabilityCache)  # the app's (Services.capabilities)
    sender: Sender | None = None  # the background sender (None: sending only inside requests)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), tz=UTC)

    def record(self) -> BedsideRecord:
        return BedsideRecord(self.store, library(), self.now)

    def capabilities(self, client: FhirClient, smart: SmartSession) -> ServerCapabilities:
        """What may be written to this EHR: its CapabilityStatement (cached), the site's setting for it and
        the launch's scopes (smart_app.bedside.write_setting)."""
        return effective_capabilities(
            self.statements.get(client), self.write_setting.for_server(smart.fhir_base), smart.scope
        )

    def outbox(self, capabilities: ServerCapabilities) -> Outbox:
        return Outbox(self.store, capabilities, clock=self.clock)

    def recorded(self, session_id: str, sid: str, ttl: int) -> None:
        """Entries were recorded under launch ``sid``: the session is to be sent (now, or in the background)."""
        self.store.mark_dirty(session_id)
        remember_launch(session_id, sid, ttl)
        if self.sender is not None:
            self.sender.ensure_running()

    def send(self, smart: SmartSession, state: SessionState, wait: float = 0.0) -> OutboxStatus | None:
        """Queue and send what the EHR accepts; None when the EHR could not be asked at all, or another
        sender still has the session after ``wait`` seconds (it sends what this one would have)."""
        holder = uuid.uuid4().hex
        deadline = time.monotonic() + wait
        while not self.store.claim(state.session_id, holder, time.time(), SEND_LEASE):
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)
        try:
            return self._send(smart, state)
        finally:
            self.store.release(state.session_id, holder)

    def _send(self, smart: SmartSession, state: SessionState) -> OutboxStatus | None:
        options: dict[str, Any] = {"timeout": SEND_TIMEOUT, "retry": RetryPolicy(max_attempts=1)}
        if smart.client is not None:
            options["session"] = smart.client.http
        try:
            with FhirClient(smart.fhir_base, auth=smart, **options) as client:
                outbox = self.outbox(self.capabilities(client, smart))
                outbox.sync(state)
                self.store.synced(state.session_id, ok=True)
                return outbox.flush(client, state.session_id)
        except DesensError as error:
            log.warning("bedside: the EHR could not be reached (%s)", type(error).__name__)
            attempts = self.store.sender_attempts(state.session_id)
            wait = SYNC_BACKOFF[min(attempts, len(SYNC_BACKOFF) - 1)]
            self.store.synced(state.session_id, ok=False, next_try=self.clock() + wait)
            return None

    def status(self, session_id: str) -> OutboxStatus:
        status = Outbox(self.store, ServerCapabilities({}), clock=self.clock).status(session_id)
        return replace(status, unqueued=self.store.is_dirty(session_id))


def init_bedside(app: Flask, values: Mapping[str, Any]) -> None:
    """The bedside record lives in the app's record database (``FHIR_DESENS_RECORD_URL``)."""
    shared = app.extensions[SERVICES]
    write_setting = WriteSetting.parse(values.get("BEDSIDE_WRITE_TYPES"))  # a bad value stops the app here
    fallback = values.get("BEDSIDE_CLOCK") or values.get("CLOCK") or time.time
    clock = bedside_clock(values.get("BEDSIDE_CLOCK_FILE"), shared.settings.public_url, fallback)
    interval = float(values.get("BEDSIDE_SEND_INTERVAL") or 0)
    app.extensions[EXTENSION] = Bedside(
        shared.record_store(),
        write_setting,
        clock,
        isinstance(clock, FileClock),
        shared.capabilities,
        Sender(app, interval) if interval > 0 else None,
    )
    app.jinja_env.globals["bedside_sessions"] = _sessions_of_plan
    app.jinja_env.globals["new_entry_id"] = lambda: str(uuid.uuid4())


def _sessions_of_plan(patient: str, request_group: str) -> list[SessionSummary]:
    try:
        return [s for s in bedside().record().patient_sessions(patient) if s.request_group == request_group]
    except DesensError as error:  # a session whose plan no longer computes: listed nowhere rather than crash
        log.warning("bedside sessions unreadable (%s)", type(error).__name__)
        return []


def bedside() -> Bedside:
    found: Bedside = current_app.extensions[EXTENSION]
    return found
