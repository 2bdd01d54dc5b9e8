"""The background sender: what the bedside recorded reaches the EHR even after the nurse closed the page.

One daemon thread per app process (started on the first bedside entry of that process, so it also runs in
each gunicorn worker after the fork) looks every ``FHIR_DESENS_BEDSIDE_SEND_INTERVAL`` seconds (default 5;
0 = off) for sessions with work to do (:meth:`RecordStore.sessions_to_send`): entries not yet in the ledger
because the EHR could not be asked, or ledger rows whose retry time has come (the outbox's backoff). For
each it loads the launch the entries were recorded under (the app session id is kept, encrypted, in the
session store under the bedside session; its tokens refresh as usual) and sends with
:meth:`Bedside.send`, which takes the session's lease in the record database: one sender at a time, of all
threads and processes, so a create is never sent twice by two senders. Idempotency across failures is the
outbox's (business identifiers looked up before any resend).

When the launch has ended (the app session expired), nothing can be sent until someone opens the session
again; the rows stay in the ledger and the page lists them.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from flask import Flask

from fhir_desens.errors import DesensError

log = logging.getLogger(__name__)
CREDENTIALS = "bedside-sender"  # session-store namespace: bedside session id -> {"sid": app session id}


class Sender:
    """The process's background sender (one per app; restarted in a forked child)."""

    def __init__(self, app: Flask, interval: float) -> None:
        self.app = app
        self.interval = interval
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rounds = 0  # completed rounds (tests wait on it)

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    def ensure_running(self) -> None:
        """Start the thread in this process if it is not running here (after a fork it is not)."""
        if not self.enabled:
            return
        with self._lock:
            if self._pid == os.getpid() and self._thread is not None and self._thread.is_alive():
                return
            self._pid = os.getpid()
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, name="bedside-sender", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)

    def _run(self) -> None:
        failing = False
        while not self._stop.wait(self.interval):
            try:
                self.round()
                failing = False
            except Exception as error:  # the sender must outlive any one failure
                if not failing:  # once per run of failures, not every few seconds
                    log.warning("bedside sender: a round failed (%s); trying again", type(error).__name__)
                failing = True

    def round(self) -> int:
        """Send what is due for every session; how many sessions were looked at."""
        from smart_app.bedside.service import bedside

        with self.app.app_context():
            svc = bedside()
            due = svc.store.sessions_to_send(svc.clock())
            for session_id in due:
                if self._stop.is_set():
                    break
                self._send_one(session_id)
        self.rounds += 1
        return len(due)

    def _send_one(self, session_id: str) -> None:
        from smart_app.bedside.service import bedside
        from smart_app.services import SessionEnded, services

        shared = services()
        credentials: Any = shared.store.get(CREDENTIALS, session_id)
        if not isinstance(credentials, dict) or not isinstance(credentials.get("sid"), str):
            return  # no launch to send with: kept in the ledger, listed on the page
        try:
            _, smart = shared.load_session(credentials["sid"])
        except SessionEnded:
            return
        try:
            svc = bedside()
            svc.send(smart, svc.record().load(session_id))
        except DesensError as error:
            log.warning("bedside sender: session not sent (%s)", type(error).__name__)


def remember_launch(session_id: str, sid: str, ttl: int) -> None:
    """The launch (app session) the background sender sends this bedside session with."""
    from smart_app.services import services

    services().store.put(CREDENTIALS, session_id, {"sid": sid}, ttl=ttl)


__all__ = ["CREDENTIALS", "Sender", "remember_launch"]
