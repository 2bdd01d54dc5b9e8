"""The outbox against a real FHIR server: everything written once, unknown outcomes looked up before any
resend, the server stopped and restarted mid-session, and the epic-like vendor profile."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.client.http import RetryPolicy
from fhir_desens.course.bedside.fhir_map import ID_BEDSIDE_ITEM
from fhir_desens.course.bedside.outbox import Outbox, ServerCapabilities
from fhir_desens.course.bedside.record import BedsideRecord
from fhir_desens.course.bedside.store import RecordStore, open_record_store
from fhir_desens.exchange.remote import BearerToken
from fhir_desens.protocol.library import builtin_protocols
from fhir_desens.sandbox.fhir_server import FhirServerProcess
from fhir_desens.sandbox.server import Sandbox
from tests.bedside_session import START, VITALS, Bedside
from tests.fault_proxy import DroppingProxy


class Clock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RecordStore]:
    opened = open_record_store(f"sqlite:///{tmp_path / 'bedside.sqlite3'}")
    yield opened
    opened.close()


def quick_client(base_url: str, **options: Any) -> FhirClient:
    return FhirClient(base_url, retry=RetryPolicy(max_attempts=1), timeout=(2.0, 10.0), **options)


def on_server(client: FhirClient, session_id: str) -> dict[str, int]:
    """How many resources of each item of this session the server holds (by business identifier)."""
    counts: dict[str, int] = {}
    for resource_type in ("Procedure", "MedicationAdministration", "Observation", "AdverseEvent"):
        if resource_type == "AdverseEvent":  # no identifier search in R4
            bundle = client.search(resource_type, {"_count": "1000"})
        else:
            bundle = client.search(resource_type, {"identifier": f"{ID_BEDSIDE_ITEM}|", "_count": "1000"})
        for entry in bundle.get("entry") or []:
            for identifier in (
                entry["resource"].get("identifier")
                if isinstance(entry["resource"].get("identifier"), list)
                else [entry["resource"]["identifier"]]
            ):
                value = str(identifier.get("value", ""))
                if identifier.get("system") == ID_BEDSIDE_ITEM and value.startswith(session_id + "/"):
                    counts[value] = counts.get(value, 0) + 1
    return counts


def run_session(bedside: Bedside, after_each_step: Callable[[], None]) -> None:
    """The step-11 reaction session, with the outbox synced and flushed after every step."""
    bedside.start()
    after_each_step()
    for row in range(1, 11):
        bedside.run_row(row)
        after_each_step()
    bedside.run_row(11, 6, stop=False)
    bedside.record("reaction", symptoms=["itching", "wheal"], grade="mild", phenotype="type-i")
    after_each_step()
    bedside.advance(2)
    bedside.record("treatment", treatment="antihistamine-h1", dose="diphenhydramine 50 mg IV")
    bedside.advance(18)
    bedside.record("resolved")
    bedside.advance(2)
    bedside.record("resume", option="back-one-step")
    for row in bedside.state.rows[11:]:
        bedside.run_row(row.number)
        after_each_step()
    bedside.advance(30)
    bedside.record("vitals", **VITALS)
    bedside.record("complete", outcome="completed", observation_end=bedside.at(), next_dose="re-desensitize")
    after_each_step()


def test_a_whole_session_reaches_the_server_once(fhir_base_url: str, store: RecordStore) -> None:
    record = BedsideRecord(store, builtin_protocols(), lambda: START)
    bedside = Bedside(record_to=record)
    with quick_client(fhir_base_url) as client:
        outbox = Outbox(store, ServerCapabilities.from_statement(client.capabilities()), Clock())

        def sync() -> None:
            outbox.sync(record.load(bedside.session_id))
            outbox.flush(client, bedside.session_id)

        run_session(bedside, sync)
        sync()  # again: nothing new, nothing doubled
        status = outbox.status(bedside.session_id)
        assert status.unsent == 0 and not status.not_in_ehr, [
            (r.item_key, r.state, r.detail) for r in status.not_in_ehr
        ]
        counts = on_server(client, bedside.session_id)
        assert counts and set(counts.values()) == {1}
        procedure = client.search(
            "Procedure", {"identifier": f"{ID_BEDSIDE_ITEM}|{bedside.session_id}/procedure"}
        )["entry"][0]["resource"]
        assert procedure["status"] == "completed"
        administrations = [k for k in counts if "/ma/" in k or "/premed/" in k or "/rescue/" in k]
        assert len(administrations) == 14 + 2 + 1  # steps and segments, two premedications, one rescue
        one = client.search(
            "MedicationAdministration", {"identifier": f"{ID_BEDSIDE_ITEM}|{administrations[0]}"}
        )
        assert one["entry"][0]["resource"]["partOf"][0]["reference"] == f"Procedure/{procedure['id']}"
        wanted = f"{bedside.session_id}/ae/{bedside.state.reactions[0].entry_id}"
        events = client.search("AdverseEvent", {"_count": "1000"})["entry"]
        [event] = [e["resource"] for e in events if e["resource"]["identifier"]["value"] == wanted]
        assert event["suspectEntity"][0]["instance"]["reference"].startswith("MedicationAdministration/")
        provenance = client.search("Provenance", {"target": f"Procedure/{procedure['id']}"})
        assert len(provenance["entry"]) == 1


def test_a_create_whose_answer_was_lost_is_looked_up_not_sent_again(
    fhir_base_url: str, store: RecordStore
) -> None:
    proxy = DroppingProxy(fhir_base_url).start()
    clock = Clock()
    record = BedsideRecord(store, builtin_protocols(), lambda: START)
    bedside = Bedside(record_to=record)
    try:
        with quick_client(proxy.base_url) as client:
            outbox = Outbox(store, ServerCapabilities.from_statement(client.capabilities()), clock)
            bedside.start()
            proxy.drop_posts = 1000  # every create reaches the server; no answer comes back
            outbox.sync(record.load(bedside.session_id))
            first = outbox.flush(client, bedside.session_id)
            unknown = first.counts.get("unknown", 0)
            assert unknown >= 2  # the Procedure and the baseline vitals at least
            assert proxy.forwarded_posts == unknown
            proxy.drop_posts = 0
            clock.now += 600
            status = outbox.flush(client, bedside.session_id)
            assert status.unsent == 0, status.counts
            found = [
                r for r in store.outbox(bedside.session_id) if r.detail and "unknown outcome" in r.detail
            ]
            assert len(found) == unknown  # looked up by identifier
            rows = [r for r in store.outbox(bedside.session_id) if r.resource_type != "Provenance"]
            assert (
                proxy.forwarded_posts - unknown == len(store.outbox(bedside.session_id)) - unknown
            )  # no re-POST
            counts = on_server(client, bedside.session_id)
            assert set(counts.values()) == {1} and len(counts) == len(rows)
    finally:
        proxy.stop()


def test_the_server_stopped_and_restarted_mid_session(
    fhir_server_factory: Callable[..., FhirServerProcess], store: RecordStore
) -> None:
    server = fhir_server_factory()
    port = int(server.base_url.split(":")[2].split("/")[0])
    clock = Clock()
    record = BedsideRecord(store, builtin_protocols(), lambda: START)
    bedside = Bedside(record_to=record)
    with quick_client(server.base_url) as client:
        outbox = Outbox(store, ServerCapabilities.from_statement(client.capabilities()), clock)
        steps = 0

        def sync() -> None:
            nonlocal steps, server
            steps += 1
            if steps == 4:
                server.stop()  # the EHR goes down after step 3
            if steps == 9:
                server = fhir_server_factory(port=port)  # back (empty: it keeps data in memory)
                clock.now += 600
                outbox.reconcile(client, bedside.session_id)
            outbox.sync(record.load(bedside.session_id))
            outbox.flush(client, bedside.session_id)
            if 4 <= steps < 9:
                assert outbox.status(bedside.session_id).unsent > 0  # kept, shown as not in the EHR
            clock.now += 60

        run_session(bedside, sync)
        clock.now += 600
        outbox.flush(client, bedside.session_id)
        status = outbox.status(bedside.session_id)
        assert status.unsent == 0, status.counts
        counts = on_server(client, bedside.session_id)
        rows = [r for r in store.outbox(bedside.session_id) if r.resource_type != "Provenance"]
        assert set(counts.values()) == {1}
        assert len(counts) == len(rows)  # nothing missing after the restart, nothing doubled


def test_epic_like_writes_only_vitals_and_keeps_the_rest_in_the_app(
    fhir_server: FhirServerProcess, store: RecordStore
) -> None:
    from tests.integration.test_sandbox_gateway import obtain_token

    with Sandbox(fhir_base_url=fhir_server.base_url) as sandbox:
        patient = sandbox.summary.patients["carboplatin-ovarian"].id
        with FhirClient(sandbox.backend_url) as backend:
            encounter = backend.create(
                {
                    "resourceType": "Encounter",
                    "status": "in-progress",
                    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                    "subject": {"reference": f"Patient/{patient}"},
                }
            ).reference
        token = obtain_token(sandbox, "openid fhirUser user/*.cruds", vendor="epic-like")["access_token"]

        record = BedsideRecord(store, builtin_protocols(), lambda: START)
        bedside = Bedside(record_to=record, patient=f"Patient/{patient}")
        with quick_client(sandbox.fhir_base_url, auth=BearerToken(token)) as client:
            statement = client.capabilities()
            outbox = Outbox(store, ServerCapabilities.from_statement(statement), Clock())
            bedside.start(encounter=encounter)
            bedside.run_row(1)
            outbox.sync(record.load(bedside.session_id))
            status = outbox.flush(client, bedside.session_id)
        kept = {r.resource_type for r in status.not_in_ehr if r.state == "app-only"}
        assert kept == {"Procedure", "MedicationAdministration", "Provenance"}
        assert not [r for r in status.not_in_ehr if r.state != "app-only"], [
            (r.item_key, r.state, r.detail) for r in status.not_in_ehr
        ]
        assert status.counts["written"] == len(
            [r for r in store.outbox(bedside.session_id) if r.resource_type == "Observation"]
        )
        with FhirClient(sandbox.backend_url) as backend:
            assert not backend.search(
                "MedicationAdministration", {"identifier": f"{ID_BEDSIDE_ITEM}|{bedside.session_id}/ma/x"}
            ).get("entry")
            observations = backend.search("Observation", {"encounter": encounter})
            assert len(observations.get("entry") or []) >= 5


def test_a_write_the_ehr_refuses_is_kept_with_its_reason_not_shown_as_an_answer_lost(
    fhir_server: FhirServerProcess, store: RecordStore
) -> None:
    """A write the EHR refuses with 403 (the launch's grant, or an EHR changed since its CapabilityStatement
    was cached) is refused for good ("rejected", with the reason), not "sent, answer lost: being checked"
    and looked up again and again: nothing was written."""
    from tests.integration.test_sandbox_gateway import obtain_token

    with Sandbox(fhir_base_url=fhir_server.base_url) as sandbox:
        patient = sandbox.summary.patients["carboplatin-ovarian"].id
        # a launch whose grant leaves out Provenance: the EHR answers its create 403
        scopes = "openid fhirUser " + " ".join(
            f"user/{t}.cruds" for t in ("Procedure", "MedicationAdministration", "Observation", "Patient")
        )
        token = obtain_token(sandbox, scopes)["access_token"]
        record = BedsideRecord(store, builtin_protocols(), lambda: START)
        bedside = Bedside(record_to=record, patient=f"Patient/{patient}")
        every_write = frozenset({"create", "update", "read", "search-type"})
        stale = ServerCapabilities(
            {t: every_write for t in ("Procedure", "MedicationAdministration", "Observation", "Provenance")}
        )
        with quick_client(sandbox.fhir_base_url, auth=BearerToken(token)) as client:
            outbox = Outbox(store, stale, Clock())
            bedside.start()
            bedside.run_row(1)
            outbox.sync(record.load(bedside.session_id))
            status = outbox.flush(client, bedside.session_id)
        states = {(r.resource_type, r.state) for r in status.not_in_ehr}
        refused = {t for t, state in states if state == "rejected"}
        assert "Provenance" in refused, states
        assert not [r for r in status.not_in_ehr if r.state == "unknown"], [
            (r.resource_type, r.detail) for r in status.not_in_ehr
        ]
        assert all(r.detail for r in status.not_in_ehr if r.state == "rejected")
        assert status.unsent == 0


def test_millennium_like_gets_the_procedure_once_completed(
    fhir_server: FhirServerProcess, store: RecordStore
) -> None:
    """Millennium creates Procedures only 'completed' and never updates them: the Procedure waits in the
    ledger until the session is complete and is then created once; administrations stay in the app."""
    from tests.integration.test_sandbox_gateway import obtain_token

    with Sandbox(fhir_base_url=fhir_server.base_url) as sandbox:
        patient = sandbox.summary.patients["carboplatin-ovarian"].id
        token = obtain_token(sandbox, "openid fhirUser user/*.cruds", vendor="millennium-like")[
            "access_token"
        ]

        record = BedsideRecord(store, builtin_protocols(), lambda: START)
        bedside = Bedside(record_to=record, patient=f"Patient/{patient}")
        with quick_client(sandbox.fhir_base_url, auth=BearerToken(token)) as client:
            outbox = Outbox(store, ServerCapabilities.from_statement(client.capabilities()), Clock())
            states: list[str] = []

            def sync() -> None:
                outbox.sync(record.load(bedside.session_id))
                outbox.flush(client, bedside.session_id)
                [procedure] = [r for r in store.outbox(bedside.session_id) if r.resource_type == "Procedure"]
                states.append(procedure.state)

            run_session(bedside, sync)
        assert states[0] == "waiting-final" and states[-1] == "written"
        assert set(states[:-1]) == {"waiting-final"}
        kept = {r.resource_type for r in outbox.status(bedside.session_id).not_in_ehr}
        assert kept == {"MedicationAdministration", "AdverseEvent"}
        with FhirClient(sandbox.backend_url) as backend:
            found = backend.search(
                "Procedure", {"identifier": f"{ID_BEDSIDE_ITEM}|{bedside.session_id}/procedure"}
            )
            assert [e["resource"]["status"] for e in found["entry"]] == ["completed"]
