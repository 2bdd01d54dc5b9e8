"""Sessions through the real store: the plan recomputed from the signed parameters, retries recorded once,
a patient's sessions summarised for the allergy write-back and the tolerance window."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from fhir_desens.course.bedside.record import BedsideRecord, SessionNotFound
from fhir_desens.course.bedside.store import open_record_store
from fhir_desens.errors import ConflictError
from fhir_desens.protocol.library import builtin_protocols
from tests.bedside_session import START, Bedside


@pytest.fixture(params=["sqlite", "postgresql"])
def record(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BedsideRecord]:
    url = (
        f"sqlite:///{tmp_path / 'b.sqlite3'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    store = open_record_store(url)
    yield BedsideRecord(store, builtin_protocols(), lambda: START)
    store.close()


def test_a_whole_session_through_the_store_and_its_summary(record: BedsideRecord) -> None:
    bedside = Bedside(record_to=record, patient=f"Patient/{Bedside().session_id}")
    bedside.reaction_at_step_11()
    state = record.load(bedside.session_id)
    assert state.phase == "completed" and state.delivered == Decimal(400)
    [summary] = record.patient_sessions(bedside.patient)
    assert summary.completed and summary.protocol_id == "iv-12-step-3-bag"
    assert summary.drug == "carboplatin" and summary.dose == "400 mg" and summary.drug_rxnorm == ("40048",)
    assert (
        summary.steps_planned == 14 and summary.steps_completed == 13
    )  # 12 rows + 2 re-planned, one stopped
    [reaction] = summary.reactions
    assert (
        reaction.grade == "mild"
        and reaction.protocol_step == 11
        and reaction.resume_option == "back-one-step"
    )
    assert {m["code"] for m in reaction.manifestations} == {"418290006", "247472004"}


def test_a_replayed_entry_is_recorded_once(record: BedsideRecord) -> None:
    bedside = Bedside(record_to=record)
    bedside.start()
    entry = bedside.record("checklist", item="consent")
    bedside.submit(entry)  # the browser sent it again after a lost connection
    assert sum(1 for e in record.entries(bedside.session_id) if e.entry_id == entry.entry_id) == 1


def test_entries_for_an_unknown_session_or_a_second_start_are_refused(record: BedsideRecord) -> None:
    bedside = Bedside(record_to=record)
    with pytest.raises(SessionNotFound):
        bedside.record("checklist", item="consent")
    bedside.start()
    with pytest.raises(ConflictError):
        bedside.start()
