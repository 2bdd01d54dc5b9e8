"""A desensitization session at the bedside, folded from its append-only entries (pure: no I/O).

``fold(plan, entries)`` replays the entries of one session into a :class:`SessionState`;
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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from fhir_desens.boundary.numbers import NumberField, parse_number
from fhir_desens.course.bedside import reactions as rx
from fhir_desens.course.bedside.entries import Entry, NewEntry
from fhir_desens.course.bedside.resume import ResumeChoice, Row, plan_rows, resume_choices
from fhir_desens.course.bedside.vitals import VitalSigns, next_due, parse_vitals
from fhir_desens.errors import ConflictError, InputError
from fhir_desens.protocol import display as shown
from fhir_desens.protocol.calculate import SIXTY, Plan
from fhir_desens.protocol.model import ProtocolKind, TargetKind
from fhir_desens.protocol.quantity import add, div, mul, plain, sub, total

#: The numbers typed at the bedside, through the one parser (no NaN, infinity, 1e-400 or 50 digits);
#: the step's own checks (at most the planned rate, within the target) follow.
_RATE = NumberField("rate_ml_h", Decimal("0.01"), Decimal(10_000), "mL/h", minimum_inclusive=True)
_VOLUME = NumberField("volume_ml", Decimal("0.001"), Decimal(10_000), "mL", minimum_inclusive=True)
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
PREMEDICATION_BEFORE = timedelta(
    hours=24
)  # how long before the session start a premedication may be recorded


@dataclass
class Segment:
    """One administration record: one rate run of one schedule row (a new one after every pause)."""

    key: str  # the entry id of the step-start or of the resume that began it
    row: Row
    rate_ml_h: Decimal | None
    started_at: datetime
    author: str
    ended_at: datetime | None = None
    status: str = "in-progress"  # on-hold during a reaction, stopped after one, completed
    volume_ml: Decimal = Decimal(0)
    dose: Decimal = Decimal(0)
    cumulative: Decimal = Decimal(0)


@dataclass
class Reaction:
    entry_id: str
    onset: datetime
    row: Row
    minutes_into_step: Decimal
    volume_so_far: Decimal  # of the step, mL
    dose_so_far: Decimal  # of the session, in the plan's dose unit
    symptoms: tuple[rx.Symptom, ...]
    grade: str
    phenotype: str
    author: str
    segment_key: str | None
    treatments: list[dict[str, Any]] = field(default_factory=list)
    resolved_at: datetime | None = None
    resumed: dict[str, Any] | None = None


@dataclass
class VitalsRecord:
    entry_id: str
    at: datetime
    signs: VitalSigns
    flags: dict[str, str]
    author: str
    row: int | None  # the schedule row running or last run when taken


@dataclass
class SessionState:
    plan: Plan
    session_id: str = ""
    started_at: datetime | None = None
    context: dict[str, Any] = field(default_factory=dict)
    checklist: dict[str, dict[str, Any]] = field(default_factory=dict)
    premedications: list[dict[str, Any]] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    vitals: list[VitalsRecord] = field(default_factory=list)
    symptom_checks: dict[int, dict[str, Any]] = field(default_factory=dict)
    reactions: list[Reaction] = field(default_factory=list)
    completion: dict[str, Any] | None = None
    voided: set[str] = field(default_factory=set)
    authors: set[str] = field(default_factory=set)

    # -- derived ---------------------------------------------------------------------------------------
    @property
    def target(self) -> Decimal:
        return self.plan.target_dose.value

    @property
    def delivered(self) -> Decimal:
        return self.segments[-1].cumulative if self.segments else Decimal(0)

    @property
    def running(self) -> Segment | None:
        last = self.segments[-1] if self.segments else None
        return last if last is not None and last.status == "in-progress" else None

    @property
    def open_reaction(self) -> Reaction | None:
        last = self.reactions[-1] if self.reactions else None
        return last if last is not None and last.resumed is None else None

    @property
    def phase(self) -> str:
        if self.started_at is None:
            return "not-started"
        if self.completion is not None:
            return str(self.completion["outcome"])
        if self.open_reaction is not None:
            return "paused"
        if self.running is not None:
            return "running"
        if not self.segments:
            return "checklist" if self.missing_checklist() else "ready"
        return "observation" if self.next_row() is None else "between-steps"

    def missing_checklist(self) -> list[str]:
        needed = ["consent", "iv-access", "emergency-kit"]
        if self.context.get("beta_blocker"):
            needed.append("beta-blocker-held")
        missing = [item for item in needed if item not in self.checklist]
        baseline = self.baseline
        if baseline is None:
            missing.append("baseline-vitals")
        elif self.context.get("peak_flow") and "peak_flow" not in baseline.signs.values:
            missing.append("baseline-peak-flow")
        given = {p["name"] for p in self.premedications}
        missing += [
            f"premedication: {name}" for name in self.context.get("premedications", []) if name not in given
        ]
        return missing

    @property
    def baseline(self) -> VitalsRecord | None:
        return self.vitals[0] if self.vitals else None

    def finished_rows(self) -> set[int]:
        """Rows that ran (completed, or stopped by a reaction: what follows is the re-plan's rows)."""
        return {s.row.number for s in self.segments if s.status != "in-progress"}

    def next_row(self) -> Row | None:
        done = self.finished_rows()
        last = max(done, default=0)
        return next((r for r in self.rows if r.number > last and r.number not in done), None)

    def row(self, number: int) -> Row | None:
        return next((r for r in self.rows if r.number == number), None)

    @property
    def discrete(self) -> bool:
        """Doses given whole (by mouth): no pump, no rate; a step's minutes are the wait after its dose."""
        return self.plan.protocol.kind is ProtocolKind.DISCRETE

    def given_as(self, row: Row) -> str:
        """What the nurse gives for ``row`` of a discrete protocol, in words: '2.5 mL of Solution 1 (0.1 mg/mL)',
        '0.5 tablet of 81 mg', or the dose itself."""
        solution = next((s for s in self.plan.solutions if s.number == row.solution), None)
        step = row.step
        if step.units is not None and solution is not None and solution.unit_dose is not None:
            strength = shown.dose_text(solution.unit_dose.value, solution.unit_dose.unit)
            return f"{shown.count_text(step.units, solution.unit_name)} of {strength}"
        if step.volume_ml is not None:
            label = solution.label if solution is not None else f"solution {row.solution}"
            return f"{shown.volume_text(step.volume_ml)} of {label}"
        return shown.dose_text(step.dose.value, step.dose.unit)

    def to_deliver(self, row: Row) -> Decimal | None:
        """The volume still to run in ``row`` (the last row carries exactly what remains of the target)."""
        concentration = self.concentration(row.solution)
        if row.step.volume_ml is None or concentration is None:
            return None
        if row is self.rows[-1] and self.plan.protocol.target_kind is TargetKind.CUMULATIVE:
            return div(sub(self.target, self.delivered), concentration)
        return row.step.volume_ml

    def volume_left(self, row: Row, segment: Segment | None = None) -> Decimal | None:
        """What the pump is to infuse for ``row`` (its VTBI), less what earlier segments of it gave."""
        planned = self.to_deliver(row) if segment is None or row is not self.rows[-1] else None
        if planned is None:
            concentration = self.concentration(row.solution)
            if row.step.volume_ml is None or concentration is None:
                return None
            # the last row: exactly what remains of the target when this segment began
            planned = div(sub(self.target, segment.cumulative if segment else self.delivered), concentration)
            return planned if self.plan.protocol.target_kind is TargetKind.CUMULATIVE else row.step.volume_ml
        given = total(s.volume_ml for s in self.segments if s.row is row and s is not segment)
        return sub(planned, given)

    def concentration(self, solution: int) -> Decimal | None:
        found = next((s for s in self.plan.solutions if s.number == solution), None)
        return found.concentration.value if found is not None and found.concentration is not None else None

    def vitals_due(self, now: datetime) -> datetime | None:
        """When the next set of vitals is due while a step runs (None when none is due)."""
        if self.phase not in ("running", "between-steps", "paused"):
            return None
        last = self.vitals[-1].at if self.vitals else None
        final = self.next_row() is None or (self.running is not None and self.running.row is self.rows[-1])
        return next_due(last, final) or now

    def given_order_ids(self) -> set[str]:
        """MedicationRequest ids of the signed step orders that ran (in whole or in part)."""
        requests = self.context.get("step_requests") or {}
        given = set()
        for segment in self.segments:
            reference = str(requests.get(str(segment.row.step.protocol_step)) or "")
            if reference.startswith("MedicationRequest/"):
                given.add(reference.removeprefix("MedicationRequest/"))
        return given

    def resume_options(self) -> dict[str, ResumeChoice | str]:
        reaction = self.open_reaction
        if reaction is None:
            return {}
        return resume_choices(self, reaction)


def minutes_between(start: datetime, end: datetime) -> Decimal:
    """Exact minutes (to the microsecond) from ``start`` to ``end``."""
    delta = end - start
    micro = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    return div(Decimal(micro), Decimal(60_000_000))


# -- parsing helpers -----------------------------------------------------------------------------------------
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


def _row_of(state: SessionState, data: dict[str, Any]) -> Row:
    try:
        number = int(str(data.get("row")))
    except ValueError:
        raise InputError(
            "row", f"'{data.get('row')}' is not a step number", f"1 to {len(state.rows)}"
        ) from None
    row = state.row(number)
    if row is None:
        raise InputError("row", f"there is no step {number} in this session", f"1 to {len(state.rows)}")
    return row


def _segment_amounts(state: SessionState, segment: Segment, end: datetime) -> tuple[Decimal, Decimal]:
    """(volume mL, dose) infused by ``segment`` from its start to ``end`` (exact Decimal).

    The pump runs at the rate until its volume to be infused (what is left of the row) is in: a step
    stopped late has not given more than planned.
    """
    if segment.rate_ml_h is None:  # a discrete dose: given whole at the start
        return segment.row.step.volume_ml or Decimal(0), segment.row.step.dose.value
    minutes = minutes_between(segment.started_at, end)
    volume = div(mul(segment.rate_ml_h, minutes), SIXTY)
    left = state.volume_left(segment.row, segment)
    if left is not None and volume > left:
        volume = left
    concentration = state.concentration(segment.row.solution)
    assert concentration is not None
    return volume, mul(volume, concentration)


# -- applying entries -------------------------------------------------------------------------------------------
def apply(state: SessionState, entry: Entry | NewEntry, now: datetime | None = None) -> None:
    """Apply one entry to ``state`` (in place); raise when it does not fit."""
    data = dict(entry.data)
    if entry.kind == "entered-in-error":
        _void(state, data)
        return
    at = parse_time(data.get("at"))
    if now is not None and at > now + CLOCK_SKEW:
        raise InputError(
            "at", "is in the future", f"a time before {(now + CLOCK_SKEW).isoformat(timespec='minutes')}"
        )
    if entry.kind != "session-start":
        if state.started_at is None:
            raise ConflictError("the session has not been started")
        if state.completion is not None:
            raise ConflictError("the session is closed; corrections are entered-in-error entries")
        earliest = state.started_at
        if entry.kind == "checklist" and data.get("item") == "premedication":
            earliest -= PREMEDICATION_BEFORE  # premedications are often given before the session is opened
        if at < earliest:
            raise InputError(
                "at",
                "is before the session started"
                if earliest == state.started_at
                else "is too long before the session",
                f"{earliest.isoformat(timespec='minutes')} or later",
            )
    handler = HANDLERS.get(entry.kind)
    if handler is None:
        raise InputError("kind", f"unknown entry kind '{entry.kind}'", ", ".join(sorted(HANDLERS)))
    handler(state, entry, data, at)
    state.authors.add(entry.author)


def _start(state: SessionState, entry: Entry | NewEntry, data: dict[str, Any], at: datetime) -> None:
    if state.started_at is not None:
        raise ConflictError("this session was started already")
    state.session_id, state.started_at = entry.session_id, at
    state.context = {k: v for k, v in data.items() if k != "at"}
    state.context.setdefault(
        "premedications", [p.drug for p in state.plan.premedications if p.condition is None]
    )
    state.rows = plan_rows(state.plan)


def _checklist(state: SessionState, entry: Entry | NewEntry, data: dict[str, Any], at: datetime) -> None:
    item = data.get("item")
    if item not in CHECKLIST_ITEMS:
        raise InputError("item", f"'{item}' is not a checklist item", ", ".join(CHECKLIST_ITEMS))
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
            f"{state.vitals[-1].at.isoformat(timespec='minutes')} or later",
        )
    baseline = state.baseline.signs if state.baseline else None
    current = (
        state.running.row.number
        if state.running
        else (state.segments[-1].row.number if state.segments else None)
    )
    state.vitals.append(VitalsRecord(entry.entry_id, at, signs, signs.flags(baseline), entry.author, current))


def _step_start(state: SessionState, entry: Entry | NewEntry, data: dict[str, Any], at: datetime) -> None:
    row = _row_of(state, data)
    phase = state.phase
    if phase == "checklist":
        raise InputError(
            "checklist", "is not complete: " + ", ".join(state.missing_checklist()), "every item recorded"
        )
    if phase in ("running", "paused"):
        raise ConflictError(
            f"step {state.segments[-1].row.number} is still {'running' if phase == 'running' else 'paused'}"
        )
    expected = state.next_row()
    if expected is None or row.number != expected.number:
        raise ConflictError(f"the next step is {expected.number if expected else 'none'}, not {row.number}")
    previous_end = state.segments[-1].ended_at if state.segments else None
    if previous_end is not None and at < previous_end:
        raise InputError(
            "at",
            "is before the previous step stopped",
            f"{previous_end.isoformat(timespec='minutes')} or later",
        )
    rate = _rate(row, data)
    state.segments.append(Segment(entry.entry_id, row, rate, at, entry.author, cumulative=state.delivered))


def _rate(row: Row, data: dict[str, Any]) -> Decimal | None:
    planned = row.step.rate_ml_h
    if planned is None:
        return None
    raw = data.get("rate_ml_h")
    rate = planned if raw in (None, "") else parse_number(str(raw), _RATE)
    if rate <= 0 or rate > planned:
        raise InputError(
            "rate_ml_h",
            f"{plain(rate)} mL/h is not allowed for this step",
            f"more than 0 and at most the planned {plain(planned)} mL/h",
        )
    return rate


def _step_stop(state: SessionState, entry: Entry | NewEntry, data: dict[str, Any], at: datetime) -> None:
    row = _row_of(state, data)
    segment = state.running
    if segment is None or segment.row.number != row.number:
        raise ConflictError(f"step {row.number} is not running")
    if at <= segment.started_at:
        raise InputError(
            "at",
            "is not after the step started",
            f"later than {segment.started_at.isoformat(timespec='minutes')}",
        )
    volume, dose = _segment_amounts(state, segment, at)
    if data.get("volume_ml") not in (None, ""):
        volume = parse_number(str(data["volume_ml"]), _VOLUME)
        concentration = state.concentration(row.solution)
        if volume <= 0 or concentration is None:
            raise InputError("volume_ml", "must be more than 0 mL", "the volume the pump shows as infused")
        dose = mul(volume, concentration)
    _check_target(
        state, segment.cumulative, dose, "at" if data.get("volume_ml") in (None, "") else "volume_ml"
    )
    segment.ended_at, segment.status = at, "completed"
    segment.volume_ml, segment.dose, segment.cumulative = volume, dose, add(segment.cumulative, dose)


def _check_target(state: SessionState, before: Decimal, dose: Decimal, field_name: str) -> None:
    if state.plan.protocol.target_kind is not TargetKind.CUMULATIVE:
        return
    total = add(before, dose)
    if total > state.target:
        unit = state.plan.dose_unit
        raise InputError(
            field_name,
            f"would make the total {plain(total)} {unit}, above the target {plain(state.target)} {unit}",
            "a stop time or volume within the target",
        )


def _symptom_check(state: SessionState, entry: Entry | NewEntry, data: dict[str, Any], at: datetime) -> None:
    row = _row_of(state, data)
    symptoms = data.get("symptoms")
    if not isinstance(symptoms, list) or not symptoms:
        raise InputError(
            "symptoms", "is required ('none' is a value)", "none, or " + ", ".join(rx.SYMPTOM_BY_KEY)
        )
    if symptoms != ["none"]:
        rx.symptoms_from([str(s) for s in symptoms])
    state.symptom_checks[row.number] = {
        "entry_id": entry.entry_id,
        "at": at,
        "symptoms": symptoms,
        "author": entry.author,
    }


def _reaction(state: SessionState, entry: Entry | NewEntry, data: dict[str, Any], at: datetime) -> None:
    if state.open_reaction is not None:
        raise ConflictError("a reaction is already being handled; record its treatment and resume decision")
    if not state.segments:
        raise InputError("at", "no step has started yet", "a reaction during or after a step")
    symptoms = rx.symptoms_from([str(s) for s in data.get("symptoms") or []])
    grade = rx.choice(data.get("grade"), rx.GRADES, "grade")
    phenotype = rx.choice(data.get("phenotype"), rx.PHENOTYPES, "phenotype")
    segment = state.segments[-1]
    if segment.status == "in-progress":
        if at < segment.started_at:
            raise InputError(
                "at",
                "is before the running step started",
                f"{segment.started_at.isoformat(timespec='minutes')} or later",
            )
        volume, dose = _segment_amounts(state, segment, at)
        _check_target(state, segment.cumulative, dose, "at")
        segment.ended_at, segment.status = at, "on-hold"
        segment.volume_ml, segment.dose, segment.cumulative = volume, dose, add(segment.cumulative, dose)
    elif segment.ended_at is not None and at < segment.ended_at:
        raise InputError(
            "at",
            "is before the last step stopped",
            f"{segment.ended_at.isoformat(timespec='minutes')} or later",
        )
    assert segment.ended_at is not None
    minutes = minutes_between(segment.started_at, segment.ended_at)
    step_volume = total(s.volume_ml for s in state.segments if s.row.number == segment.row.number)
    state.reactions.append(
        Reaction(
            entry.entry_id,
            at,
            segment.row,
            minutes,
            step_volume,
            state.delivered,
            symptoms,
            grade,
            phenotype,
            entry.author,
            segment.key if segment.status == "on-hold" else None,
        )
    )


def _treatment(state: SessionState, entry: Entry | NewEntry, data: dict[str, Any], at: datetime) -> None:
    reaction = state.open_reaction
    if reaction is None:
        raise ConflictError("there is no reaction being handled")
    key = rx.choice(data.get("treatment"), {t.key: t.label for t in rx.TREATMENTS}, "treatment")
    if at < reaction.onset:
        raise InputError(
            "at", "is before the reaction began", f"{reaction.onset.isoformat(timespec='minutes')} or later"
        )
    reaction.treatments.append(
        {
            "entry_id": entry.entry_id,
            "treatment": key,
            "dose": str(data.get("dose") or ""),
            "at": at,
            "author": entry.author,
        }
    )


def _resolved(state: SessionState, entry: Entry | NewEntry, data: dict[str, Any], at: datetime) -> None:
    reaction = state.open_reaction
    if reaction is None:
        raise ConflictError("there is no reaction being handled")
    if at < reaction.onset:
        raise InputError(
            "at", "is before the reaction began", f"{reaction.onset.isoformat(timespec='minutes')} or later"
        )
    reaction.resolved_at = at


def _resume(state: SessionState, entry: Entry | NewEntry, data: dict[str, Any], at: datetime) -> None:
    reaction = state.open_reaction
    if reaction is None:
        raise ConflictError("there is no reaction to resume from")
    options = state.resume_options()
    option = str(data.get("option") or "")
    if option not in options:
        raise InputError("option", f"'{option}' is not a resume option here", ", ".join(options))
    choice = options[option]
    if isinstance(choice, str):
        raise InputError("option", choice, ", ".join(k for k, v in options.items() if not isinstance(v, str)))
    if option != "stop":
        if reaction.resolved_at is None:
            raise InputError(
                "resolved", "record when the symptoms resolved before resuming", "the resolution time"
            )
        if at < reaction.resolved_at:
            raise InputError(
                "at",
                "is before the symptoms resolved",
                f"{reaction.resolved_at.isoformat(timespec='minutes')} or later",
            )
    if (
        reaction.grade in rx.NEEDS_ALLERGIST_TO_RESUME
        and option != "stop"
        and not str(data.get("allergist") or "").strip()
    ):
        raise InputError(
            "allergist",
            f"a {reaction.grade} reaction needs the allergist's sign-off to resume",
            "the signing allergist",
        )
    paused = state.segments[-1]
    if paused.status == "on-hold":
        paused.status = "stopped"
    kept = [r for r in state.rows if r.number <= reaction.row.number]
    state.rows = kept + choice.rows
    reaction.resumed = {
        "entry_id": entry.entry_id,
        "option": option,
        "at": at,
        "author": entry.author,
        "allergist": data.get("allergist"),
    }


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
            f"{plain(state.delivered)} of {plain(state.target)} {unit} were given",
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
            f"{last_end.isoformat(timespec='minutes')} or later",
        )
    if not any(v.at >= last_end for v in state.vitals):
        raise InputError(
            "discharge_vitals", "record a set of vital signs after the last step", "a vitals entry"
        )
    next_dose = rx.choice(data.get("next_dose"), {"continuous": "", "re-desensitize": ""}, "next_dose")
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
    "step-start": _step_start,
    "step-stop": _step_stop,
    "symptom-check": _symptom_check,
    "reaction": _reaction,
    "treatment": _treatment,
    "resolved": _resolved,
    "resume": _resume,
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


__all__ = ["Reaction", "Segment", "SessionState", "VitalsRecord", "accept", "apply", "fold", "parse_time"]
