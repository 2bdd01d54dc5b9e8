"""The state of a bedside session as its entries make it, and what follows from it (pure: no I/O).

:class:`SessionState` is what :func:`~fhir_desens.course.bedside.session.fold` builds: the signed plan's
schedule, each rate run of a step (:class:`Segment`), the vital signs, the reactions and the completion,
with what is derived from them (the phase, the dose given so far, the next step, the volume left to run).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from fhir_desens.course.bedside import reactions as rx
from fhir_desens.course.bedside.resume import ResumeChoice, Row, resume_choices
from fhir_desens.course.bedside.vitals import VitalSigns, next_due
from fhir_desens.protocol import display as shown
from fhir_desens.protocol import report
from fhir_desens.protocol.calculate import Plan
from fhir_desens.protocol.model import ProtocolKind, TargetKind
from fhir_desens.protocol.quantity import div, sub, total


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

    @property
    def by_mouth(self) -> bool:
        """Doses taken by mouth: the IV-access item is then for rescue treatment, not to run the doses."""
        return report.is_oral(self.plan)

    @property
    def premedications_withheld(self) -> frozenset[str]:
        """Premedications signed as not to be given: the allergy list rules them out (PLAN-PREMED-1)."""
        draft: dict[str, Any] = self.context.get("draft") or {}
        return frozenset(str(name) for name in draft.get("premedications_withheld") or ())

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

    def missing_checklist_text(self) -> str:
        """What is still to record before step 1, in words ("signed consent, IV access, ...")."""
        return ", ".join(_checklist_words(item) for item in self.missing_checklist())

    @property
    def baseline(self) -> VitalsRecord | None:
        return self.vitals[0] if self.vitals else None

    def finished_rows(self) -> set[int]:
        """Rows that ran (completed, or stopped by a reaction: what follows is the re-plan's rows)."""
        return {s.row.number for s in self.segments if s.status != "in-progress"}

    def next_row(self) -> Row | None:
        done = self.finished_rows()
        last = max(done, default=0)
        following = next((r for r in self.rows if r.number > last and r.number not in done), None)
        return following if following is not None else self.final_row_short()

    def final_row_short(self) -> Row | None:
        """The last row again when the nurse stopped its infusion before the target was in (stopped early
        by hand, or a pump volume below its volume to be infused): the rest of the dose is still to run
        from the same bag at the same rate. Without it the flowsheet said "All steps given" with 60 mg of
        400 mg given, and completing refused "full dose given" with nothing left to start (walk 9)."""
        last = self.segments[-1] if self.segments else None
        if (
            last is None
            or last.status != "completed"
            or last.row is not self.rows[-1]
            or last.rate_ml_h is None
            or self.plan.protocol.target_kind is not TargetKind.CUMULATIVE
            or self.delivered >= self.target
        ):
            return None
        return last.row

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
        """The volume still to run in ``row``. The last row carries exactly what remains of the target, but
        only once it is next: before that, rows still to run come between, and target less what was given
        so far would count their doses in it too (penicillin V's last step read 16.2 mL, not 8 mL)."""
        concentration = self.concentration(row.solution)
        if row.step.volume_ml is None or concentration is None:
            return None
        if (
            row is self.rows[-1]
            and self.plan.protocol.target_kind is TargetKind.CUMULATIVE
            and row is self.next_row()
        ):
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


__all__ = ["Reaction", "Segment", "SessionState", "VitalsRecord", "minutes_between"]


#: The checklist's items as the nurse reads them (the codes stay in the record).
CHECKLIST_WORDS = {
    "consent": "signed consent",
    "iv-access": "IV access",
    "emergency-kit": "emergency kit at the bedside",
    "beta-blocker-held": "beta-blocker held",
    "one-to-one-nurse": "1:1 nurse",
    "baseline-vitals": "baseline vital signs",
    "baseline-peak-flow": "baseline peak flow",
}


def _checklist_words(item: str) -> str:
    if item.startswith("premedication: "):
        return "premedication " + item.removeprefix("premedication: ")
    return CHECKLIST_WORDS.get(item, item.replace("-", " "))
