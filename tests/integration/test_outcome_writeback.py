"""The allergy write-back against each real FHIR server (Medplum's engine, HAPI FHIR JPA): each write path,
conflicts, idempotency, failures.

A competing user is a second real client writing to the same server between our read and our PUT; a
failing server is a small HTTP relay in front of the real one that answers 500 to one kind of request.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from fhir_desens.client.fhir_rest import FhirClient, Versioned
from fhir_desens.client.scopes import GrantedScopes
from fhir_desens.course.outcome.last_dose import ehr_doses
from fhir_desens.course.outcome.preview import prepare
from fhir_desens.course.outcome.record import SessionOutcome
from fhir_desens.course.outcome.strategy import WriteDecision, choose_write
from fhir_desens.course.outcome.tasks import MemoryTaskBook
from fhir_desens.course.outcome.writeback import StepStatus, WriteReport, write_outcome
from fhir_desens.drugs.tolerance import DoseSource, ToleranceStatus, assess
from fhir_desens.protocol.crossreactivity import DrugRef
from tests.fault_proxy import failing_relay as relay_failing
from tests.unit.outcome_data import RECORDED, allergy, assert_status_kept, hives_at_step_11, outcome

ALL_SCOPES = GrantedScopes("patient/*.cruds")

AUDIT = "the audit entry saying who wrote it and when"  # the Provenance, as the result page names it


@pytest.fixture
def patient(server_client: FhirClient, unique_system: str) -> str:
    created = server_client.create(
        {
            "resourceType": "Patient",
            "identifier": [{"system": unique_system, "value": "1"}],
            "name": [{"family": "Test"}],
        }
    )
    return created.reference


def decision(client: FhirClient, setting: str = "auto") -> WriteDecision:
    return choose_write(client.capabilities(), ALL_SCOPES, setting)


def write(
    client: FhirClient, o: SessionOutcome, tasks: MemoryTaskBook, setting: str = "auto", **options: Any
) -> WriteReport:
    preview = prepare(client, o, decision(client, setting), recorded_at=RECORDED)
    return write_outcome(client, preview, tasks=tasks, now=RECORDED, **options)


def ours(resource: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [n for n in resource.get("note", []) if "Ref RDD-" in n.get("text", "")]


def provenances(client: FhirClient, target: str) -> list[dict[str, Any]]:
    return client.search_all("Provenance", {"target": target})


# -- update path ------------------------------------------------------------------------------------------


@pytest.mark.requirement("OUT-1")
def test_the_note_is_appended_with_if_match_and_attested_on_the_new_version(
    server_client: FhirClient, patient: str
) -> None:
    before = server_client.create(allergy(patient))
    o = outcome(patient, reactions=(hives_at_step_11(),))
    preview = prepare(server_client, o, decision(server_client), recorded_at=RECORDED)
    assert preview.allergy is not None and preview.allergy.id == before.id
    assert preview.words[0].startswith("Add a note: “Tolerated ceftriaxone 2 g")
    assert "+" in preview.diff

    report = write_outcome(server_client, preview, tasks=MemoryTaskBook(), now=RECORDED)

    assert report.complete and report.chart_updated
    after = server_client.read("AllergyIntolerance", before.id)
    assert after.version_id != before.version_id
    assert_status_kept(before.resource, after.resource)
    assert len(ours(after.resource)) == 1
    assert after.resource["reaction"][-1]["manifestation"][0]["coding"][0]["code"] == "126485001"
    assert after.resource["lastOccurrence"].startswith("2026-12-02T12:42:00")
    target = f"{after.reference}/_history/{after.version_id}"
    assert [s.status for s in report.steps] == [StepStatus.WRITTEN, StepStatus.WRITTEN]
    assert report.steps[0].reference == target
    assert len(provenances(server_client, target)) == 1


@pytest.mark.requirement("OUT-6")
def test_writing_the_same_outcome_twice_leaves_one_note_and_one_provenance(
    server_client: FhirClient, patient: str
) -> None:
    created = server_client.create(allergy(patient))
    tasks = MemoryTaskBook()
    first = write(server_client, outcome(patient), tasks)
    second_preview = prepare(server_client, outcome(patient), decision(server_client), recorded_at=RECORDED)
    assert second_preview.already_written
    second = write_outcome(server_client, second_preview, tasks=tasks, now=RECORDED)

    assert [s.status for s in second.steps] == [StepStatus.ALREADY_THERE, StepStatus.ALREADY_THERE]
    after = server_client.read("AllergyIntolerance", created.id)
    assert len(ours(after.resource)) == 1
    assert_status_kept(created.resource, after.resource)
    assert first.steps[0].reference == second.steps[0].reference
    assert len(provenances(server_client, str(first.steps[0].reference))) == 1
    assert tasks.tasks_for(patient) == []


class RacingClient(FhirClient):
    """A client whose first PUT is preceded by another user's write (a real one, to the same server)."""

    def __init__(self, base_url: str, before_first_update: Callable[[], None]) -> None:
        super().__init__(base_url)
        self._hook: Callable[[], None] | None = before_first_update
        self.updates = 0

    def update(self, resource: Mapping[str, Any], *, if_match: str | None) -> Versioned:
        self.updates += 1
        if self._hook is not None:
            hook, self._hook = self._hook, None
            hook()
        return super().update(resource, if_match=if_match)


def other_user_edits(
    client: FhirClient, allergy_id: str, change: Callable[[dict[str, Any]], None]
) -> Callable[[], None]:
    def edit() -> None:
        current = client.read("AllergyIntolerance", allergy_id)
        changed = dict(current.resource)
        change(changed)
        client.update(changed, if_match=current.version_id)

    return edit


@pytest.mark.requirement("OUT-7")
def test_a_stale_version_is_re_read_and_our_additions_re_applied(
    server_client: FhirClient, server_base_url: str, patient: str
) -> None:
    created = server_client.create(allergy(patient))

    def add_note(resource: dict[str, Any]) -> None:
        resource["note"] = [*resource["note"], {"text": "Pharmacist: patient on day 3 of ceftriaxone."}]

    with RacingClient(server_base_url, other_user_edits(server_client, created.id, add_note)) as racing:
        report = write(racing, outcome(patient), MemoryTaskBook())
        assert racing.updates == 2  # the first PUT met 412 and changed nothing; the second went through

    assert report.complete
    after = server_client.read("AllergyIntolerance", created.id)
    texts = [n["text"] for n in after.resource["note"]]
    assert texts[1] == "Pharmacist: patient on day 3 of ceftriaxone."  # the other user's note is kept
    assert len(ours(after.resource)) == 1 and texts[2].startswith("Tolerated")
    assert_status_kept(created.resource, after.resource)


@pytest.mark.requirement("OUT-7")
def test_someone_elses_status_change_stops_the_write_and_shows_both_versions(
    server_client: FhirClient, server_base_url: str, patient: str
) -> None:
    created = server_client.create(allergy(patient))

    def resolve(resource: dict[str, Any]) -> None:
        resource["clinicalStatus"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                    "code": "inactive",
                }
            ]
        }

    tasks = MemoryTaskBook()
    with RacingClient(server_base_url, other_user_edits(server_client, created.id, resolve)) as racing:
        report = write(racing, outcome(patient), tasks)

    assert report.conflict is not None
    assert report.conflict.changed == ("clinical status",)
    assert report.conflict.previewed["clinicalStatus"]["coding"][0]["code"] == "active"
    assert report.conflict.current["clinicalStatus"]["coding"][0]["code"] == "inactive"
    assert "Nothing was written" in report.sentences[0]
    after = server_client.read("AllergyIntolerance", created.id)
    assert ours(after.resource) == []  # nothing of ours, and their change stands
    assert after.resource["clinicalStatus"]["coding"][0]["code"] == "inactive"
    assert after.resource["criticality"] == "high"
    assert [t.drug for t in tasks.tasks_for(patient)] == ["ceftriaxone"]


# -- a server failing halfway ------------------------------------------------------------------------------


@pytest.fixture
def failing_relay(server_base_url: str) -> Iterator[Callable[..., str]]:
    """``start(method, resource_type, status=500)`` -> a base URL relaying to the real server, but answering
    ``status`` to that."""
    servers: list[Any] = []

    def start(method: str, resource_type: str, status: int = 500) -> str:
        base, server = relay_failing(server_base_url, method, resource_type, status)
        servers.append(server)
        return base

    try:
        yield start
    finally:
        for server in servers:
            server.shutdown()


@pytest.mark.requirement("OUT-6")
def test_a_500_halfway_reports_exactly_what_was_written_and_a_retry_adds_only_the_rest(
    server_client: FhirClient, patient: str, failing_relay: Callable[[str, str], str]
) -> None:
    created = server_client.create(allergy(patient))
    tasks = MemoryTaskBook()
    with FhirClient(failing_relay("POST", "Provenance")) as failing:
        report = write(failing, outcome(patient), tasks)

    assert [s.status for s in report.steps] == [StepStatus.WRITTEN, StepStatus.FAILED]
    assert report.chart_updated and not report.complete
    assert re.fullmatch(r"Written: note on the \w+ allergy record, version \d+\.", report.sentences[0])
    assert str(report.support_lines[0]).startswith(f"{report.steps[0].what}: AllergyIntolerance/")
    assert report.sentences[1].startswith(f"Not written: {AUDIT}: create Provenance: HTTP 500")
    assert "database unavailable" in report.sentences[1]
    assert report.sentences[-1] == "Writing the outcome again adds only what is missing."
    after = server_client.read("AllergyIntolerance", created.id)
    assert len(ours(after.resource)) == 1
    assert provenances(server_client, str(report.steps[0].reference)) == []

    again = write(server_client, outcome(patient), tasks)
    assert [s.status for s in again.steps] == [StepStatus.ALREADY_THERE, StepStatus.WRITTEN]
    assert (
        again.steps[0].reference == report.steps[0].reference
    )  # the Provenance targets the version we wrote
    assert len(ours(server_client.read("AllergyIntolerance", created.id).resource)) == 1
    assert len(provenances(server_client, str(report.steps[0].reference))) == 1


def test_a_500_on_the_allergy_update_writes_nothing_and_says_so(
    server_client: FhirClient, patient: str, failing_relay: Callable[[str, str], str]
) -> None:
    created = server_client.create(allergy(patient))
    tasks = MemoryTaskBook()
    with FhirClient(failing_relay("PUT", f"AllergyIntolerance/{created.id}")) as failing:
        report = write(failing, outcome(patient), tasks)
    assert [s.status for s in report.steps][:3] == [
        StepStatus.FAILED,
        StepStatus.NOT_ATTEMPTED,
        StepStatus.RECORDED,
    ]
    assert "reading it back shows nothing was added" in report.sentences[0]
    assert report.sentences[1] == f"Not attempted: {AUDIT}: an earlier write failed."
    assert ours(server_client.read("AllergyIntolerance", created.id).resource) == []
    assert len(tasks.tasks_for(patient)) == 1


def test_an_allergy_update_the_ehr_refuses_for_good_is_reported_with_its_reason_and_leaves_a_task(
    server_client: FhirClient, patient: str, failing_relay: Callable[..., str]
) -> None:
    """The walk: an EHR that stopped offering AllergyIntolerance update (its statement read before) answers 405;
    the allergist gets the report and a task, not an error page that says "try again later"."""
    created = server_client.create(allergy(patient))
    tasks = MemoryTaskBook()
    with FhirClient(failing_relay("PUT", f"AllergyIntolerance/{created.id}", 405)) as refusing:
        report = write(refusing, outcome(patient), tasks)
    assert [s.status for s in report.steps][:3] == [
        StepStatus.FAILED,
        StepStatus.NOT_ATTEMPTED,
        StepStatus.RECORDED,
    ]
    assert "the EHR refused the update (HTTP 405)" in report.sentences[0]
    assert "not offered by this EHR" in report.sentences[0]
    assert not report.chart_updated
    assert ours(server_client.read("AllergyIntolerance", created.id).resource) == []
    [task] = tasks.tasks_for(patient)
    assert "the EHR refused the update" in task.reason


# -- clinical note, nothing writable, drug not on the list ---------------------------------------------------


@pytest.mark.requirement("OUT-5")
def test_the_clinical_note_path_writes_one_document_and_no_allergy(
    server_client: FhirClient, patient: str
) -> None:
    created = server_client.create(allergy(patient))
    tasks = MemoryTaskBook()
    first = write(server_client, outcome(patient, encounter=None), tasks, setting="note")
    second = write(server_client, outcome(patient, encounter=None), tasks, setting="note")

    assert [s.status for s in first.steps] == [StepStatus.WRITTEN, StepStatus.WRITTEN]
    assert [s.status for s in second.steps] == [StepStatus.ALREADY_THERE, StepStatus.ALREADY_THERE]
    documents = server_client.search_all("DocumentReference", {"patient": patient})
    assert len(documents) == 1
    assert documents[0]["content"][0]["attachment"]["contentType"].startswith("text/plain")
    after = server_client.read("AllergyIntolerance", created.id)
    assert after.version_id == created.version_id  # the allergy record is untouched
    assert len(server_client.search_all("AllergyIntolerance", {"patient": patient})) == 1


@pytest.mark.requirement("OUT-8")
def test_nothing_writable_gives_the_copy_text_and_records_one_task(
    server_client: FhirClient, patient: str
) -> None:
    created = server_client.create(allergy(patient))
    tasks = MemoryTaskBook()
    report = write(server_client, outcome(patient), tasks, setting="none")
    write(server_client, outcome(patient), tasks, setting="none")

    assert [s.status for s in report.steps] == [StepStatus.RECORDED]
    assert "Allergy record: keep it active and confirmed" in report.copy_text
    [task] = tasks.tasks_for(patient)
    assert task.text == report.copy_text
    assert "write nothing" in task.reason
    assert server_client.read("AllergyIntolerance", created.id).version_id == created.version_id


@pytest.mark.requirement("OUT-9")
def test_a_drug_not_on_the_list_is_offered_and_added_once(server_client: FhirClient, patient: str) -> None:
    server_client.create(allergy(patient, drug="penicillin"))  # a different drug
    o = outcome(patient, reactions=(hives_at_step_11(),))
    preview = prepare(server_client, o, decision(server_client), recorded_at=RECORDED)
    assert not preview.drug_on_list and preview.proposed_allergy is not None
    tasks = MemoryTaskBook()

    declined = write_outcome(server_client, preview, tasks=tasks, now=RECORDED)
    assert [s.status for s in declined.steps] == [StepStatus.RECORDED]
    assert (
        declined.task is not None and "not on the allergy list" in declined.task.reason
    )  # said with the task

    added = write_outcome(server_client, preview, tasks=tasks, now=RECORDED, add_allergy=True)
    again = write_outcome(server_client, preview, tasks=tasks, now=RECORDED, add_allergy=True)
    assert [s.status for s in added.steps] == [StepStatus.WRITTEN, StepStatus.WRITTEN]
    assert again.steps[0].status is StepStatus.ALREADY_THERE
    records = [
        r
        for r in server_client.search_all("AllergyIntolerance", {"patient": patient})
        if r["code"]["text"] == "ceftriaxone"
    ]
    assert len(records) == 1
    assert records[0]["clinicalStatus"]["coding"][0]["code"] == "active"
    assert records[0]["verificationStatus"]["coding"][0]["code"] == "confirmed"
    assert tasks.tasks_for(patient) == []  # adding the drug closed the task


# -- the tolerance window's EHR sources ---------------------------------------------------------------------


@pytest.mark.requirement("TOL-2")
def test_the_last_dose_is_read_from_the_servers_administrations_and_orders(
    server_client: FhirClient, patient: str
) -> None:
    def given(when: str, drug: str = "Ceftriaxone 2 g IV") -> None:
        server_client.create(
            {
                "resourceType": "MedicationAdministration",
                "status": "completed",
                "medicationCodeableConcept": {"text": drug},
                "subject": {"reference": patient},
                "effectiveDateTime": when,
            }
        )

    given("2026-12-01T08:00:00Z")
    given("2026-12-02T08:00:00Z")
    given("2026-12-02T20:00:00Z", drug="Vancomycin 1 g IV")
    given("2026-11-01T08:00:00Z")  # outside the 14 days looked at
    server_client.create(
        {
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "subject": {"reference": patient},
            "medicationCodeableConcept": {"text": "ceftriaxone"},
            "dosageInstruction": [
                {
                    "timing": {
                        "repeat": {
                            "frequency": 1,
                            "period": 1,
                            "periodUnit": "d",
                            "boundsPeriod": {"start": "2026-12-01T08:00:00Z"},
                        }
                    }
                }
            ],
        }
    )
    now = datetime(2026, 12, 3, 7, 0, tzinfo=UTC)
    found = ehr_doses(server_client, patient, DrugRef("ceftriaxone"), now)
    assert found.unavailable == ()
    given_times = sorted(d.at.isoformat() for d in found.doses if d.source is DoseSource.EHR_ADMINISTRATION)
    assert given_times == ["2026-12-01T08:00:00+00:00", "2026-12-02T08:00:00+00:00"]
    assert any(d.source is DoseSource.ORDER_SCHEDULE for d in found.doses)
    result = assess(DrugRef("ceftriaxone"), list(found.doses), now)
    assert result.status is ToleranceStatus.GREEN and result.source is DoseSource.EHR_ADMINISTRATION
