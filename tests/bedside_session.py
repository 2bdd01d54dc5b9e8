"""A scripted 12-step carboplatin session for the bedside tests (injected clock, no I/O)."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fhir_desens.course.bedside.entries import Entry, NewEntry
from fhir_desens.course.bedside.record import BedsideRecord, start_entry
from fhir_desens.course.bedside.session import accept, fold
from fhir_desens.course.bedside.state import SessionState
from fhir_desens.course.draft import PlanDraft, plan_for
from fhir_desens.protocol.calculate import Plan
from fhir_desens.protocol.library import builtin_protocols

NURSE = "Practitioner/nurse-1"
ALLERGIST = "Practitioner/allergist-1"
START = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
VITALS = {
    "systolic": "122",
    "diastolic": "78",
    "heart_rate": "76",
    "respiratory_rate": "14",
    "spo2": "98",
    "temperature": "36.8",
}


def carboplatin_draft(patient: str = "Patient/p1") -> PlanDraft:
    return PlanDraft(
        draft_id="d1", patient=patient, drug="carboplatin", drug_rxnorm=("40048",), indication=None,
        target="400 mg", dose_basis=None, protocol_id="iv-12-step-3-bag", final_rate_ml_h="80",
        bag_volume_ml="250", diluent=None, closing=None, insert_before=(), risk={},
        unlisted_confirmed=False, override_reason=None, copied_from=None, created_at=0.0,
    )  # fmt: skip


def carboplatin_plan() -> Plan:
    return plan_for(carboplatin_draft(), builtin_protocols())


def aspirin_draft(patient: str = "Patient/p1") -> PlanDraft:
    """An oral plan (aspirin in AERD, 325 mg): no pump rate, no bag."""
    return dataclasses.replace(
        carboplatin_draft(patient),
        drug="aspirin",
        drug_rxnorm=("1191",),
        target="325 mg",
        protocol_id="aspirin-aerd-90-min",
        final_rate_ml_h=None,
        bag_volume_ml=None,
    )


@dataclass
class Bedside:
    """Entries recorded in memory, each checked exactly as the store checks them."""

    plan: Plan = field(default_factory=carboplatin_plan)
    session_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    now: datetime = START
    entries: list[Entry] = field(default_factory=list)
    record_to: BedsideRecord | None = None  # record through a real store instead of in memory
    patient: str = "Patient/p1"
    #: another drug's draft (``plan`` must be planned from it); carboplatin by default
    draft: PlanDraft | None = None
    encounter: str = "Encounter/e1"  # the launch encounter the session is started in

    def at(self, minutes: float = 0) -> str:
        return (self.now + timedelta(minutes=minutes)).isoformat()

    def record(self, kind: str, author: str = NURSE, **data: Any) -> NewEntry:
        data.setdefault("at", self.now.isoformat())
        return self.submit(NewEntry(str(uuid.uuid4()), self.session_id, kind, data, author))

    def submit(self, new: NewEntry) -> NewEntry:
        if self.record_to is not None:
            self.record_to.clock = lambda: self.now
            self.record_to.record(new)
            self.entries = self.record_to.entries(self.session_id)
            return new
        kind, author, data = new.kind, new.author, dict(new.data)
        accept(self.plan, self.entries, new, self.now)
        self.entries.append(
            Entry(len(self.entries) + 1, new.entry_id, new.session_id, kind, dict(data), author, self.now)
        )
        return new

    def advance(self, minutes: float) -> None:
        self.now += timedelta(minutes=minutes)

    @property
    def state(self) -> SessionState:
        return fold(self.plan, self.entries)

    def start(self, encounter: str | None = None, step_requests: dict[int, str] | None = None) -> None:
        encounter = encounter or self.encounter
        self.submit(
            start_entry(
                entry_id=str(uuid.uuid4()), session_id=self.session_id, author=NURSE, at=self.now,
                draft=self.draft or carboplatin_draft(self.patient), request_group="RequestGroup/rg1",
                step_requests=step_requests or {n: f"MedicationRequest/mr{n}" for n in range(1, 13)},
                encounter=encounter,
            )
        )  # fmt: skip
        for item in ("consent", "iv-access", "emergency-kit"):
            self.record("checklist", item=item)
        for name in ("diphenhydramine", "famotidine"):
            self.record("checklist", item="premedication", name=name, dose="as ordered")
        self.record("vitals", **VITALS)

    def run_row(self, row: int, minutes: float | None = None, *, stop: bool = True) -> None:
        state = self.state
        step = state.row(row)
        assert step is not None
        self.record("step-start", row=row, rate_ml_h=str(step.step.rate_ml_h))
        length = float(step.step.minutes) if minutes is None else minutes
        if stop and minutes is None and step is state.rows[-1]:
            length += 1  # the pump stops at its volume to be infused; the nurse stops the step after
        if length >= 15:
            self.advance(length / 2)
            self.record("vitals", **VITALS)
            self.advance(length - length / 2)
        else:
            self.advance(length)
        if stop:
            self.record("step-stop", row=row)
            self.record("symptom-check", row=row, symptoms=["none"])

    def mild_reaction_during(self, row: int, minutes: float) -> None:
        """The rows before ``row`` as planned, then a mild type I reaction (itching) ``minutes`` into
        ``row``; the pump is paused, nothing decided yet."""
        for earlier in range(1, row):
            self.run_row(earlier)
        self.run_row(row, minutes, stop=False)
        self.record("reaction", symptoms=["itching"], grade="mild", phenotype="type-i")

    def reaction_at_step_11(self, encounter: str | None = None, next_dose: str = "re-desensitize") -> None:
        """Steps 1-10 as planned, a mild reaction 6 min into step 11, one step back, finish (carboplatin's
        next dose is a new desensitization; "continuous" fits a drug whose tolerance lasts while dosed)."""
        self.start(encounter)
        self.advance(20)
        for row in range(1, 11):
            self.run_row(row)
        self.run_row(11, 6, stop=False)
        self.record("reaction", symptoms=["itching", "wheal"], grade="mild", phenotype="type-i")
        self.advance(2)
        self.record("treatment", treatment="antihistamine-h1", dose="diphenhydramine 50 mg IV")
        self.advance(18)
        self.record("resolved")
        self.advance(2)
        self.record("resume", option="back-one-step")
        state = self.state
        for row in state.rows[11:]:
            self.run_row(row.number)
        self.advance(30)
        self.record("vitals", **VITALS)
        self.record("complete", outcome="completed", observation_end=self.at(), next_dose=next_dose)
