"""The allergy write-back through the sandbox gateway's vendor profiles (permissive, millennium-like, epic-like).

Real launch -> authorize -> token against the sandbox's authorization server; the write path is decided from
the gateway's CapabilityStatement (as the launch's vendor publishes it) and the granted scopes, then written
through the gateway to the real FHIR server.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from fhir_desens.client.fhir_rest import FhirClient, Versioned
from fhir_desens.client.scopes import GrantedScopes
from fhir_desens.course.outcome.allergy_change import Flavor
from fhir_desens.course.outcome.preview import find_note, prepare
from fhir_desens.course.outcome.record import SessionOutcome
from fhir_desens.course.outcome.strategy import WriteDecision, WritePath, choose_write
from fhir_desens.course.outcome.tasks import MemoryTaskBook
from fhir_desens.course.outcome.writeback import StepStatus, WriteReport, write_outcome
from fhir_desens.errors import ConflictError
from fhir_desens.exchange.remote import BearerToken
from fhir_desens.sandbox.fhir_server import FhirServerProcess
from fhir_desens.sandbox.server import Sandbox
from tests.fault_proxy import failing_relay as relay_failing
from tests.integration.test_sandbox_gateway import obtain_token
from tests.unit.outcome_data import RECORDED, assert_status_kept, hives_at_step_11, outcome

PATIENT = "carboplatin-ovarian"  # allergic to carboplatin
WRITE_SCOPE = "openid fhirUser patient/AllergyIntolerance.cruds patient/DocumentReference.cruds patient/Provenance.cruds"
READ_SCOPE = "openid fhirUser patient/*.rs"

AUDIT = "the audit entry saying who wrote it and when"  # the Provenance, as the result page names it


class RacingClient(FhirClient):
    """Our client, with another user's write (through the same gateway) just before its first PUT."""

    def __init__(self, base_url: str, auth: BearerToken, before_first_update: Callable[[], None]) -> None:
        super().__init__(base_url, auth=auth)
        self._hook: Callable[[], None] | None = before_first_update
        self.refusals: list[int | None] = []

    def update(self, resource: Mapping[str, Any], *, if_match: str | None) -> Versioned:
        if self._hook is not None:
            hook, self._hook = self._hook, None
            hook()
        try:
            return super().update(resource, if_match=if_match)
        except ConflictError as error:
            self.refusals.append(error.status)
            raise


@pytest.fixture(scope="module")
def sandbox(fhir_server: FhirServerProcess) -> Iterator[Sandbox]:
    with Sandbox(fhir_base_url=fhir_server.base_url) as running:
        yield running


@pytest.fixture(scope="module")
def patient(sandbox: Sandbox) -> str:
    return f"Patient/{sandbox.summary.patients[PATIENT].id}"


def launch(sandbox: Sandbox, vendor: str, scope: str = WRITE_SCOPE) -> tuple[BearerToken, GrantedScopes]:
    token = obtain_token(sandbox, scope, PATIENT, vendor=vendor)
    return BearerToken(token["access_token"]), GrantedScopes(token["scope"])


def carboplatin(patient: str, **options: Any) -> SessionOutcome:
    return outcome(
        patient, session=f"s-{uuid.uuid4().hex[:8]}", drug="carboplatin", encounter=None, **options
    )


def allergy_records(sandbox: Sandbox, patient: str) -> list[dict[str, Any]]:
    with FhirClient(sandbox.backend_url) as backend:
        return backend.search_all("AllergyIntolerance", {"patient": patient})


def run(client: FhirClient, decision: WriteDecision, o: SessionOutcome, tasks: MemoryTaskBook) -> WriteReport:
    preview = prepare(client, o, decision, recorded_at=RECORDED)
    return write_outcome(client, preview, tasks=tasks, now=RECORDED)


@pytest.mark.requirement("OUT-4")
@pytest.mark.parametrize("vendor", ["permissive", "millennium-like"])
def test_update_vendors_get_the_note_appended_with_if_match(
    sandbox: Sandbox, patient: str, vendor: str
) -> None:
    auth, scopes = launch(sandbox, vendor)
    with FhirClient(sandbox.fhir_base_url, auth=auth) as client:
        decision = choose_write(client.capabilities(), scopes)  # no site setting: the server names itself
        assert decision.path is WritePath.UPDATE_ALLERGY
        assert decision.flavor is (Flavor.MILLENNIUM if vendor == "millennium-like" else Flavor.R4)
        o = carboplatin(patient, reactions=(hives_at_step_11(),))
        preview = prepare(client, o, decision, recorded_at=RECORDED)
        assert preview.allergy is not None
        before = preview.allergy
        report = write_outcome(client, preview, tasks=MemoryTaskBook(), now=RECORDED)
        after = client.read("AllergyIntolerance", before.id)

    assert report.chart_updated
    assert_status_kept(before.resource, after.resource)
    assert after.resource["note"][: len(before.resource.get("note", []))] == before.resource.get("note", [])
    assert after.resource["note"][-1]["text"].startswith("Tolerated carboplatin 2 g")
    reaction = after.resource["reaction"][-1]
    if vendor == "millennium-like":
        assert len(reaction["manifestation"]) == 1 and set(reaction) == {"manifestation", "severity"}
        assert set(after.resource["note"][-1]) == {"text"}
    else:
        assert len(reaction["manifestation"]) == 2
    assert report.steps[1].status is (StepStatus.WRITTEN if decision.provenance else StepStatus.NOT_OFFERED)


@pytest.mark.requirement("OUT-7")
def test_millennium_like_answers_a_stale_version_409_and_the_additions_are_re_applied(
    sandbox: Sandbox, patient: str
) -> None:
    auth, scopes = launch(sandbox, "millennium-like")
    other_auth, _ = launch(sandbox, "millennium-like")
    with FhirClient(sandbox.fhir_base_url, auth=other_auth) as other:
        allergy_id = prepare(
            other, carboplatin(patient), choose_write(other.capabilities(), scopes), recorded_at=RECORDED
        ).candidates[0]

        def nurse_adds_a_note() -> None:
            current = other.read("AllergyIntolerance", allergy_id)
            changed = dict(current.resource)
            changed["note"] = [*changed.get("note", []), {"text": "Nurse: premedication given as ordered."}]
            other.update(changed, if_match=current.version_id)

        with RacingClient(sandbox.fhir_base_url, auth, nurse_adds_a_note) as client:
            decision = choose_write(client.capabilities(), scopes, flavor=Flavor.MILLENNIUM)
            report = run(client, decision, carboplatin(patient), MemoryTaskBook())
            assert client.refusals == [409]
        after = other.read("AllergyIntolerance", allergy_id).resource

    assert report.steps[0].status is StepStatus.WRITTEN
    texts = [n["text"] for n in after["note"]]
    assert texts[-2] == "Nurse: premedication given as ordered." and texts[-1].startswith(
        "Tolerated carboplatin"
    )
    assert after["clinicalStatus"]["coding"][0]["code"] == "active"


@pytest.mark.requirement("OUT-7")
def test_millennium_like_conflicting_status_change_stops_with_both_versions(
    sandbox: Sandbox, patient: str
) -> None:
    auth, scopes = launch(sandbox, "millennium-like")
    with FhirClient(sandbox.backend_url) as backend:
        base = allergy_records(sandbox, patient)[0]
        # a second record of our own: never the seed's identifier (the seed's conditional create must keep
        # matching exactly one record for the other tests of the session)
        twin = {k: v for k, v in base.items() if k not in ("id", "meta", "note", "identifier")}
        twin["identifier"] = [{"system": "urn:fhir-desens:test:outcome", "value": str(uuid.uuid4())}]
        twin["code"] = {"text": "Carboplatin (second record for a conflict test)"}
        created = backend.create(twin)

        def someone_refutes() -> None:
            current = backend.read("AllergyIntolerance", created.id)
            changed = dict(current.resource)
            changed["verificationStatus"] = {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                        "code": "unconfirmed",
                    }
                ]
            }
            backend.update(changed, if_match=current.version_id)

        tasks = MemoryTaskBook()
        with RacingClient(sandbox.fhir_base_url, auth, someone_refutes) as client:
            decision = choose_write(client.capabilities(), scopes, flavor=Flavor.MILLENNIUM)
            preview = prepare(
                client, carboplatin(patient), decision, recorded_at=RECORDED, allergy_id=created.id
            )
            report = write_outcome(client, preview, tasks=tasks, now=RECORDED)
        after = backend.read("AllergyIntolerance", created.id).resource

    assert report.conflict is not None and report.conflict.changed == ("verification status",)
    assert report.conflict.previewed["verificationStatus"] != report.conflict.current["verificationStatus"]
    assert not any("Ref RDD-" in n.get("text", "") for n in after.get("note", []))
    assert len(tasks.tasks_for(patient)) == 1


@pytest.mark.requirement("OUT-5")
def test_epic_like_gets_one_clinical_note_and_never_a_second_allergy(sandbox: Sandbox, patient: str) -> None:
    auth, scopes = launch(sandbox, "epic-like")
    before = len(allergy_records(sandbox, patient))
    o = carboplatin(patient, reactions=(hives_at_step_11(),))
    tasks = MemoryTaskBook()
    with FhirClient(sandbox.fhir_base_url, auth=auth) as client:
        decision = choose_write(client.capabilities(), scopes)
        assert decision.path is WritePath.CLINICAL_NOTE
        assert "the EHR does not offer updating allergy records (AllergyIntolerance update)" in " ".join(
            decision.reasons
        )
        first = run(client, decision, o, tasks)
        second = run(client, decision, o, tasks)
        notes = find_note(client, o)

    assert [s.status for s in first.steps] == [StepStatus.WRITTEN, StepStatus.NOT_OFFERED]
    assert first.steps[1].sentence == f"Not written: {AUDIT}: this EHR does not accept it."
    assert second.steps[0].status is StepStatus.ALREADY_THERE
    assert len(allergy_records(sandbox, patient)) == before  # no second allergy
    assert len(notes) == 1
    assert notes[0]["content"][0]["attachment"]["contentType"].startswith("text/plain")
    assert tasks.tasks_for(patient) == []


@pytest.mark.requirement("OUT-8")
@pytest.mark.parametrize("vendor", ["permissive", "epic-like", "millennium-like"])
def test_a_read_only_launch_gives_the_copy_text_and_a_recorded_task(
    sandbox: Sandbox, patient: str, vendor: str
) -> None:
    auth, scopes = launch(sandbox, vendor, READ_SCOPE)
    tasks = MemoryTaskBook()
    with FhirClient(sandbox.fhir_base_url, auth=auth) as client:
        decision = choose_write(client.capabilities(), scopes)
        assert decision.path is WritePath.NOTHING_WRITABLE
        report = run(client, decision, carboplatin(patient), tasks)
    assert [s.status for s in report.steps] == [StepStatus.RECORDED]
    assert "Tolerated carboplatin 2 g" in report.copy_text
    [task] = tasks.tasks_for(patient)
    assert "not granted" in task.reason


# -- a server failing halfway, under each profile ------------------------------------------------------------

HALFWAY = {
    # vendor: (the request that fails, the drug (absent from the list when the allergy is added))
    "permissive": (("POST", "Provenance"), "carboplatin"),
    "millennium-like": (("POST", "Provenance"), "carboplatin"),
    "epic-like": (("POST", "AllergyIntolerance"), "piperacillin"),
}


def our_notes(sandbox: Sandbox, patient: str) -> list[str]:
    return [
        note["text"]
        for record in allergy_records(sandbox, patient)
        for note in record.get("note", [])
        if "Ref RDD-" in note.get("text", "")
    ]


@pytest.mark.requirement("OUT-6")
@pytest.mark.parametrize("vendor", list(HALFWAY))
def test_a_500_halfway_reports_exactly_what_was_written_under_each_profile(
    sandbox: Sandbox, patient: str, vendor: str
) -> None:
    (method, failing_type), drug = HALFWAY[vendor]
    auth, scopes = launch(sandbox, vendor)
    o = outcome(patient, session=f"s-{uuid.uuid4().hex[:8]}", drug=drug, encounter=None)
    tasks = MemoryTaskBook()
    notes_before = len(our_notes(sandbox, patient))
    records_before = len(allergy_records(sandbox, patient))
    relay, server = relay_failing(sandbox.fhir_base_url, method, failing_type)
    try:
        with FhirClient(relay, auth=auth) as failing:
            decision = choose_write(failing.capabilities(), scopes)
            preview = prepare(failing, o, decision, recorded_at=RECORDED)
            first = write_outcome(failing, preview, tasks=tasks, now=RECORDED, add_allergy=True)
    finally:
        server.shutdown()
    with FhirClient(sandbox.fhir_base_url, auth=auth) as client:
        preview = prepare(client, o, choose_write(client.capabilities(), scopes), recorded_at=RECORDED)
        again = write_outcome(client, preview, tasks=tasks, now=RECORDED, add_allergy=True)
        notes = find_note(client, o)

    written, failed, already = StepStatus.WRITTEN, StepStatus.FAILED, StepStatus.ALREADY_THERE
    if vendor == "epic-like":  # the clinical note went in; adding the missing drug failed
        assert [(s.what, s.status) for s in first.steps] == [
            ("clinical note", written),
            ("Provenance", StepStatus.NOT_OFFERED),
            ("piperacillin added to the allergy list", failed),
            ("Provenance of the new record", StepStatus.NOT_OFFERED),
        ]
        assert first.sentences[2].startswith(
            "Not written: piperacillin added to the allergy list: create AllergyIntolerance: HTTP 500"
        )
        assert [s.status for s in again.steps][::2] == [already, written]  # only the rest was added
        assert len(notes) == 1
        assert len(allergy_records(sandbox, patient)) == records_before + 1  # the drug, added once
    else:  # the note went in; its Provenance failed
        assert [(s.what, s.status) for s in first.steps] == [
            ("note on the carboplatin allergy record", written),
            ("Provenance", failed),
        ]
        assert first.sentences[1].startswith(f"Not written: {AUDIT}: create Provenance: HTTP 500")
        assert [s.status for s in again.steps] == [already, written]
        assert again.steps[0].reference == first.steps[0].reference
        assert len(our_notes(sandbox, patient)) == notes_before + 1  # written once
        assert len(allergy_records(sandbox, patient)) == records_before
    assert first.chart_updated and not first.complete
    assert first.sentences[-1] == "Writing the outcome again adds only what is missing."
    assert again.complete
    assert tasks.tasks_for(patient) == []  # the outcome reached the chart: no task
