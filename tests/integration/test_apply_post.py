"""The $apply transaction Bundle posted to the real FHIR server: idempotent, then a versioned update.

Posting the same plan twice creates each order once (business identifiers + ``ifNoneExist``; the
Provenance is a PUT to an id derived from the session). The session's RequestGroup is then completed
with ``If-Match``; a second update from the stale version is a conflict that changes nothing.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.errors import ConflictError
from fhir_desens.fhir import canonical as c
from fhir_desens.fhir.apply import ApplyContext, apply_plan
from fhir_desens.protocol.calculate import PlanRequest, compute_plan
from fhir_desens.protocol.library import get_protocol
from fhir_desens.protocol.quantity import Quantity

AUTHORED = datetime(2026, 3, 14, 9, 30, tzinfo=timezone(timedelta(hours=-5)))


def by_identifier(
    client: FhirClient, resource_type: str, system: str, values: list[str]
) -> list[dict[str, Any]]:
    return client.search_all(resource_type, [("identifier", ",".join(f"{system}|{v}" for v in values))])


def test_apply_bundle_posted_twice_then_a_versioned_update(
    server_client: FhirClient, unique_system: str
) -> None:
    patient = server_client.create(
        {"resourceType": "Patient", "identifier": [{"system": unique_system, "value": "1"}]}
    )
    plan = compute_plan(
        PlanRequest(
            get_protocol("iv-12-step-3-bag"), "carboplatin", Quantity(Decimal(400), "mg"), Decimal(75)
        )
    )
    session = uuid.uuid4().hex
    bundle = apply_plan(plan, ApplyContext(patient.reference, session_id=session, authored=AUTHORED))

    first = server_client.transaction(bundle)
    second = server_client.transaction(bundle)
    assert all(e["response"]["status"].startswith("201") for e in first["entry"][:-1])
    assert all(e["response"]["status"].startswith("200") for e in second["entry"])

    [group] = by_identifier(server_client, "RequestGroup", c.ID_SESSION, [session])
    orders = by_identifier(
        server_client, "MedicationRequest", c.ID_STEP_ORDER, [f"{session}-{n}" for n in range(1, 13)]
    )
    medications = by_identifier(
        server_client, "Medication", c.ID_SOLUTION, [f"{session}-{n}" for n in (1, 2, 3)]
    )
    provenances = server_client.search_all("Provenance", {"target": f"RequestGroup/{group['id']}"})
    assert (len(orders), len(medications), len(provenances)) == (12, 3, 1)
    assert sorted(o["dosageInstruction"][0]["sequence"] for o in orders) == list(range(1, 13))
    assert (
        sum(Decimal(o["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"]) for o in orders)
        == 400
    )
    order_refs = {f"MedicationRequest/{o['id']}" for o in orders}
    assert {a["resource"]["reference"] for a in group["action"]} == order_refs
    assert {o["groupIdentifier"]["value"] for o in orders} == {session}
    assert {o["subject"]["reference"] for o in orders} == {patient.reference}

    current = server_client.read("RequestGroup", group["id"])
    completed = server_client.update(
        {**current.resource, "status": "completed"}, if_match=current.version_id or ""
    )
    assert completed.resource["status"] == "completed" and completed.version_id != current.version_id
    with pytest.raises(ConflictError, match="has changed on the server"):
        server_client.update({**current.resource, "status": "revoked"}, if_match=current.version_id or "")
    after = server_client.read("RequestGroup", group["id"])
    assert after.resource["status"] == "completed" and after.version_id == completed.version_id
