"""A desensitization session at the bedside, folded from its append-only entries (pure: no I/O).

``fold(plan, entries)`` replays the entries of one session into a
:class:`~fhir_desens.course.bedside.state.SessionState`;
``accept(plan, entries, new, now)`` is the store's check: it refuses an entry that does not fit the state
(times out of order, an impossible vital sign, a dose above the target, a second screen acting on a state
that moved on) with an :class:`~fhir_desens.errors.InputError` naming the field, or a
:class:`~fhir_desens.errors.ConflictError` when the session has moved on.

Entry kinds (``data`` always carries ``at``, the actual time, ISO 8601 with offset):

``session-start``   the signed plan it runs (``patient``, ``encounter``, ``request_group``,
                    ``step_requests`` {protocol step: MedicationRequest reference}, ``beta_blocker``,
                    ``peak_flow``)
``checklist``       ``item`` (consent, iv-access, emergency-kit, beta-blocker-held, premedication) and,
                    for a premedication, ``name`` and ``dose``
``vitals``          see :mod:`~fhir_desens.course.bedside.vitals`; the first set is the baseline
``step-start``      ``row`` (the schedule row) and ``rate_ml_h`` (the rate programmed)
``step-stop``       ``row``; optionally ``volume_ml`` read from the pump
``symptom-check``   ``row`` and ``symptoms`` (``["none"]`` is a value)
``reaction``        ``symptoms``, ``grade``, ``phenotype``: pauses the running step
``treatment``       ``treatment``, ``dose``
``resolved``        the reaction's symptoms resolved
``resume``          ``option`` (an engine resume option) and, after a moderate or severe reaction,
                    ``allergist`` (who signed off)
``complete``        ``outcome`` (completed or stopped), ``reason``, ``observation_end``,
                    ``next_dose`` (continuous or re-desensitize)
``entered-in-error`` ``target`` (an entry id) and ``reason``: voids a vitals, symptom-check,
                    checklist or treatment entry (never a step time: those shape what follows)

This module checks an entry's time and dispatches it by kind; the session start, checklist, vitals,
completion and corrections are applied here, the step entries in :mod:`~fhir_desens.course.bedside.steps`
and the reaction entries in :mod:`~fhir_desens.course.bedside.reaction_entries`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from fhir_desens.course.bedside import next_dose as nd
from fhir_desens.course.bedside import reaction_entries, steps
from fhir_desens.course.bedside import reactions as rx
from fhir_desens.course.bedside.entries import Entry, NewEntry
from fhir_desens.course.bedside.resume import plan_rows
from fhir_desens.course.bedside.state import CHECKLIST_WORDS, SessionState, VitalsRecord
from fhir_desens.course.bedside.vitals import parse_vitals
from fhir_desens.errors import ConflictError, InputError
from fhir_desens.protocol import display as shown
from fhir_desens.protocol.calculate import Plan
from fhir_desens.protocol.display import moment_text
from fhir_desens.protocol.model import TargetKind

CLOCK_SKEW = timedelta(minutes=5)  # an entry may not be dated later than now + this
VOIDABLE = frozenset({"vitals", "symptom-check", "checklist", "treatment"})
CHECKLIST_ITEMS = (
    "consent",
    "iv-access",
    "emergency-kit",
    "beta-blocker-held",
    "one-to-one-nurse",  # recorded when confirmed; not required to start (the chart cannot tell)
    "premedication",
)
#: How long before the session start a premedication may be recorded.
PREMEDICATION_BEFORE = timedelta(hours=24)


def parse_time(value: object, field_name: str = "at") -> datetime:
    if not isinstance(value, str) or not value.strip():
        raise InputError(field_name, "is required", "a date and time, e.g. 2026-12-02T10:15:00+00:00")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InputError(
            field_name, f"'{value}' is not a date and time", "ISO 8601 with a time zone"
        ) from None
    if parsed.tzinfo is None:
        raise InputError(field_name, "has no time zone", "ISO 8601 with an offset, e.g. +00:00")
    return parsed


# -- applying entries -------------------------------------------------------------------------------------------
def apply(state: SessionState, entry: Entry | NewEntry, now: datetime | None = None) -> None:
    """Apply one entry to ``state`` (in place); raise when it does not fit."""
    data = dict(entry.data)
    if entry.kind == "entered-in-error":
        _void(state, data)
        return
    at = parse_time(data.get("at"))
    _check_time(state, entry.kind, data, at, now)
    handler = HANDLERS.get(entry.kind)
    if handler is None:
        raise InputError("kind", f"unknown entry kind '{entry.kind}'", ", ".join(sorted(HANDLERS)))
    handler(state, entry, data, at)
    state.authors.add(entry.author)


def _check_time(
    state: SessionState, kind: str, data: dict[str, Any], at: datetime, now: datetime | None
) -> None:
    """Refuse an entry dated in the future, before the session started, or after it closed."""
    if now is not None and at > now + CLOCK_SKEW:
        raise InputError("at", "is in the future", f"a time before {moment_text(now + CLOCK_SKEW)}")
    if kind != "session-start":
        if state.started_at is None:
            raise ConflictError("the session has not been started")
        if state.completion is not None:
            raise ConflictError("the session is closed; corrections are entered-in-error entries")
        earliest = state.started_at
        if kind == "checklist" and data.get("item") == "premedication":
            earliest -= PREMEDICATION_BEFORE  # premedications are often given before the session is opened
        if at < earliest:
            raise InputError(
                "at",
                "is before the session started"
                if earliest == state.started_at
                else "is too long before the session",
                f"{moment_text(earliest)} or later",
            )


def _start(state: SessionState, entry: Entry | NewEntry, data: dict[str, Any], at: datetime) -> None:
    if state.started_at is not None:
        raise ConflictError("this session was started already")
    state.session_id, state.started_at = entry.session_id, at
    state.context = {k: v for k, v in data.items() if k != "at"}
    # the premedications step 1 waits for: the protocol's own, less any signed as not to be given
    # because the allergy list rules it out (PLAN-PREMED-1: recording it as given would be false)
    withheld = set((state.context.get("draft") or {}).get("premedications_withheld") or ())
    state.context.setdefault(
        "premedications",
        [p.drug for p in state.plan.premedications if p.condition is None and p.drug not in withheld],
    )
    state.rows = plan_rows(state.plan)


def _checklist(state: SessionState, entry: Entry | NewEntry, data: dict[str, Any], at: datetime) -> None:
    item = data.get("item")
    if item not in CHECKLIST_ITEMS:
        accepted = "; ".join(CHECKLIST_WORDS.get(i, i) for i in CHECKLIST_ITEMS)
        raise InputError("item", f"'{item}' is not a checklist item", accepted)
    record = {
        "entry_id": entry.entry_id,
        "at": at,
        "author": entry.author,
        **{k: v for k, v in data.items() if k != "at"},
    }
    if item == "premedication":
        if not str(data.get("name") or "").strip():
            raise InputError("name", "the premedication given is required", "the drug's name")
        state.premedications.append(record)
    else:
        state.checklist[str(item)] = record


def _vitals(state: SessionState, entry: Entry | NewEntry, data: dict[str, Any], at: datetime) -> None:
    signs = parse_vitals(data)
    if state.vitals and at < state.vitals[-1].at:
        raise InputError(
            "at",
            "is earlier than the previous set of vital signs",
            f"{moment_text(state.vitals[-1].at)} or later",
        )
    baseline = state.baseline.signs if state.baseline else None
    current = (
        state.running.row.number
        if state.running
        else (state.segments[-1].row.number if state.segments else None)
    )
    state.vitals.append(VitalsRecord(entry.entry_id, at, signs, signs.flags(baseline), entry.author, current))


def _complete(state: SessionState, entry: Entry | NewEntry, data: dict[str, Any], at: datetime) -> None:
    if state.running is not None or state.open_reaction is not None:
        raise ConflictError("a step is running or a reaction is open; stop it first")
    outcome = rx.choice(data.get("outcome"), {"completed": "", "stopped": ""}, "outcome")
    unit = state.plan.dose_unit
    if (
        outcome == "completed"
        and state.plan.protocol.target_kind is TargetKind.CUMULATIVE
        and state.delivered != state.target
    ):
        raise InputError(
            "outcome",
            f"only {shown.given_of_target_text(state.delivered, state.target, unit)} was given",
            "stopped (with the reason), or finish the remaining steps",
        )
    if outcome == "stopped" and not str(data.get("reason") or "").strip():
        raise InputError("reason", "is required when the session stopped early", "why it stopped")
    last_end = max((s.ended_at for s in state.segments if s.ended_at), default=state.started_at)
    assert last_end is not None
    observation_end = parse_time(data.get("observation_end"), "observation_end")
    if observation_end < last_end:
        raise InputError(
            "observation_end",
            "is before the last step ended",
            f"{moment_text(last_end)} or later",
        )
    if not any(v.at >= last_end for v in state.vitals):
        raise InputError(
            "discharge_vitals", "record a set of vital signs after the last step", "a vitals entry"
        )
    next_dose = rx.choice(data.get("next_dose"), {"continuous": "", "re-desensitize": ""}, "next_dose")
    if isinstance(entry, NewEntry):  # a stored record is read as the drug's rule says (next_dose.words)
        nd.check(state, next_dose)
    state.completion = {
        "entry_id": entry.entry_id, "outcome": outcome, "reason": data.get("reason"), "at": at,
        "observation_end": observation_end, "next_dose": next_dose, "next_dose_note": data.get("next_dose_note"),
        "author": entry.author,
    }  # fmt: skip


def _void(state: SessionState, data: dict[str, Any]) -> None:
    target = str(data.get("target") or "")
    if not str(data.get("reason") or "").strip():
        raise InputError("reason", "is required for a correction", "why the entry is wrong")
    if target in state.voided:
        raise ConflictError("that entry is already marked entered-in-error")
    state.voided.add(target)


HANDLERS = {
    "session-start": _start,
    "checklist": _checklist,
    "vitals": _vitals,
    "step-start": steps.step_start,
    "step-stop": steps.step_stop,
    "symptom-check": steps.symptom_check,
    "reaction": reaction_entries.reaction,
    "treatment": reaction_entries.treatment,
    "resolved": reaction_entries.resolved,
    "resume": reaction_entries.resume,
    "complete": _complete,
}


def fold(plan: Plan, entries: Sequence[Entry | NewEntry]) -> SessionState:
    """The session as its entries say, corrections applied (voided entries are skipped)."""
    voided = {str(e.data.get("target")) for e in entries if e.kind == "entered-in-error"}
    state = SessionState(plan)
    for entry in entries:
        if entry.entry_id in voided:
            continue
        apply(state, entry)
    state.voided = voided
    return state


def accept(plan: Plan, entries: Sequence[Entry], new: NewEntry, now: datetime) -> None:
    """The store's check: refuse ``new`` unless it fits the session as recorded so far."""
    if new.kind == "entered-in-error":
        target = next((e for e in entries if e.entry_id == str(new.data.get("target"))), None)
        if target is None or target.kind not in VOIDABLE:
            raise InputError(
                "target",
                "only vital signs, symptom checks, checklist items and treatments can be corrected",
                "an entry id of one of those",
            )
        try:
            fold(plan, [*entries, new])
        except (InputError, ConflictError) as error:
            raise InputError(
                "target", f"later entries rely on it ({error})", "record the right value as a new entry"
            ) from None
        return
    state = fold(plan, entries)
    apply(state, new, now)


__all__ = ["accept", "apply", "fold", "parse_time"]
