"""The bedside record as the app uses it: start a session from a signed plan, record entries (checked
against the session as recorded), read a session back, list a patient's sessions.

The plan is never stored as numbers: the session-start entry keeps the signed plan's parameters (its
draft) and every read recomputes the plan through the engine, as signed plans are read back elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from fhir_desens.course.bedside.entries import Entry, NewEntry
from fhir_desens.course.bedside.session import accept, fold
from fhir_desens.course.bedside.state import SessionState
from fhir_desens.course.bedside.store import Appended, RecordStore
from fhir_desens.course.bedside.summary import SessionSummary, summarize
from fhir_desens.course.draft import PlanDraft, plan_for
from fhir_desens.errors import ConflictError, DesensError, InputError
from fhir_desens.protocol.calculate import Plan
from fhir_desens.protocol.model import Protocol

Clock = Callable[[], datetime]


class SessionNotFound(DesensError):
    exit_code = 2
    http_status = 404

    def __init__(self) -> None:
        super().__init__("no bedside session with that id")


def plan_of_start(start: Mapping[str, Any], protocols: Mapping[str, Protocol]) -> Plan:
    """The session's plan, recomputed from the signed plan's parameters in its session-start entry."""
    draft = start.get("draft")
    if not isinstance(draft, Mapping):
        raise InputError("draft", "the session-start entry has no plan parameters")
    return plan_for(PlanDraft.from_dict(draft), protocols)


def start_entry(
    *,
    entry_id: str,
    session_id: str,
    author: str,
    at: datetime,
    draft: PlanDraft,
    request_group: str,
    step_requests: Mapping[int, str],
    encounter: str | None,
    beta_blocker: bool = False,
    peak_flow: bool = False,
    plan_session: str | None = None,
) -> NewEntry:
    """The first entry of a session: which signed plan it runs, and what the checklist must cover."""
    return NewEntry(
        entry_id,
        session_id,
        "session-start",
        {
            "at": at.isoformat(),
            "patient": draft.patient,
            "encounter": encounter,
            "request_group": request_group,
            "plan_session": plan_session,  # the signed RequestGroup's session identifier
            "step_requests": {str(k): v for k, v in step_requests.items()},
            "draft": draft.to_dict(),
            "beta_blocker": beta_blocker,
            "peak_flow": peak_flow,
        },
        author,
    )


class BedsideRecord:
    """Sessions over a :class:`RecordStore` and the protocol library."""

    def __init__(self, store: RecordStore, protocols: Mapping[str, Protocol], clock: Clock) -> None:
        self.store = store
        self.protocols = protocols
        self.clock = clock

    def record(self, new: NewEntry) -> Appended:
        """Append ``new`` once, checked against the session as recorded (InputError / ConflictError)."""

        def check(entries: Sequence[Entry], candidate: NewEntry) -> None:
            if candidate.kind == "session-start":
                if entries:
                    raise ConflictError("this session was started already")
                plan = plan_of_start(candidate.data, self.protocols)
            else:
                if not entries:
                    raise SessionNotFound()
                plan = plan_of_start(entries[0].data, self.protocols)
            accept(plan, entries, candidate, self.clock())

        return self.store.append(new, check)

    def load(self, session_id: str) -> SessionState:
        entries = self.store.entries(session_id)
        if not entries or entries[0].kind != "session-start":
            raise SessionNotFound()
        return fold(plan_of_start(entries[0].data, self.protocols), entries)

    def entries(self, session_id: str) -> list[Entry]:
        return self.store.entries(session_id)

    def patient_sessions(self, patient: str) -> list[SessionSummary]:
        """Every session of ``patient`` (``Patient/<id>``), newest first."""
        summaries = [summarize(self.load(s)) for s in self.store.session_ids(patient)]
        return sorted(summaries, key=lambda s: s.started_at.isoformat() if s.started_at else "", reverse=True)


__all__ = ["BedsideRecord", "SessionNotFound", "plan_of_start", "start_entry"]
