"""The plan's lifecycle against each real FHIR server (the sandbox EHR's SMART gateway in front of
Medplum's engine, then of HAPI FHIR JPA): sign with a planned start and the therapeutic order held,
one active plan per drug, discontinue in one versioned transaction (idempotent, Provenance), and a
stale version refused."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.errors import ConflictError
from fhir_desens.fhir import canonical as c
from fhir_desens.fhir import lifecycle as fl
from fhir_desens.sandbox.server import Sandbox
from tests.html import alerts, text_of
from tests.integration import test_app_launch as launch_tests
from tests.integration.test_app_launch import AppUnderTest, ehr_launch
from tests.integration.test_app_sign_orders import csrf, on_server, revoke_our_plans, sign, signed_id, start

sandbox = launch_tests.sandbox_on_each_server
make_app = launch_tests.make_app

pytestmark = pytest.mark.integration

PATIENT = "carboplatin-ovarian"
REASON = "Treatment plan changed at the tumour board this morning"


@pytest.fixture
def clinician(sandbox: Sandbox, make_app: Any) -> Iterator[tuple[AppUnderTest, str]]:
    app = make_app("symmetric", TIME_ZONE="Europe/Paris")
    yield app, ehr_launch(sandbox, app, PATIENT)
    revoke_our_plans(sandbox, PATIENT)


def therapeutic_order(sandbox: Sandbox) -> dict[str, Any]:
    patient = f"Patient/{sandbox.summary.patient_id(PATIENT)}"
    with FhirClient(sandbox.backend_url) as backend:
        orders = backend.search_all("MedicationRequest", {"subject": patient})
    [order] = [
        o for o in orders if not any(i.get("system") == c.ID_STEP_ORDER for i in o.get("identifier") or [])
    ]
    return order


@pytest.mark.requirement("ORDER-HOLD-1")
@pytest.mark.requirement("ORDER-TIME-1")
@pytest.mark.requirement("ORDER-DC-1")
def test_sign_holds_the_order_then_discontinue_cancels_and_releases(
    sandbox: Sandbox, clinician: tuple[AppUnderTest, str]
) -> None:
    app, sid = clinician
    token = csrf(app, sid)
    draft_id = start(app, sid)
    scheduled = app.client.post(
        f"/s/{sid}/plan/{draft_id}",
        data={"csrf_token": token, "action": "schedule", "planned_start": "2099-01-15T09:00"},
    )
    assert scheduled.status_code == 400  # more than a year ahead
    tomorrow = (app.app.extensions["fhir_desens"].site_now() + timedelta(days=1)).strftime("%Y-%m-%dT09:00")
    scheduled = app.client.post(
        f"/s/{sid}/plan/{draft_id}",
        data={"csrf_token": token, "action": "schedule", "planned_start": tomorrow},
    )
    assert scheduled.status_code == 303, alerts(scheduled.get_data(as_text=True))

    rg_id = signed_id(sign(app.client, app, sid, draft_id), sid)
    held = on_server(sandbox, rg_id)
    order = therapeutic_order(sandbox)
    assert held["group"]["basedOn"] == [{"reference": f"MedicationRequest/{order['id']}"}]
    assert order["status"] == "on-hold" and f"RequestGroup/{rg_id}" in order["statusReason"]["text"]
    first = min(held["orders"], key=lambda o: o["dosageInstruction"][0]["sequence"])
    bounds = first["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"]
    assert bounds["start"].startswith(tomorrow) and bounds["start"][-6:] in ("+01:00", "+02:00")  # Paris

    response = app.client.post(
        f"/s/{sid}/orders/{rg_id}/discontinue",
        data={"csrf_token": token, "discontinue_reason": REASON, "release_hold": "yes"},
    )
    assert response.status_code == 303, alerts(response.get_data(as_text=True))
    after = on_server(sandbox, rg_id)
    assert after["group"]["status"] == "revoked"
    assert {o["status"] for o in after["orders"]} == {"cancelled"}
    assert all(REASON in o["statusReason"]["text"] for o in after["orders"])
    assert any(REASON in r["text"] for p in after["provenance"] for r in p.get("reason") or [])
    assert therapeutic_order(sandbox)["status"] == "active"
    version = after["group"]["meta"]["versionId"]

    again = app.client.post(
        f"/s/{sid}/orders/{rg_id}/discontinue", data={"csrf_token": token, "discontinue_reason": REASON}
    )
    assert again.headers["Location"].endswith("done=already-discontinued")
    assert on_server(sandbox, rg_id)["group"]["meta"]["versionId"] == version  # nothing written
    page = text_of(app.client.get(again.headers["Location"]).get_data(as_text=True))
    assert "already discontinued" in page and "Do not give these orders" in page


@pytest.mark.requirement("ORDER-DUP-1")
def test_a_second_active_plan_is_refused_until_the_first_is_discontinued(
    sandbox: Sandbox, clinician: tuple[AppUnderTest, str]
) -> None:
    app, sid = clinician
    first = signed_id(sign(app.client, app, sid, start(app, sid)), sid)
    second_draft = start(app, sid)
    refused = sign(app.client, app, sid, second_draft)
    assert refused.status_code == 409
    assert f"RequestGroup/{first}" in alerts(refused.get_data(as_text=True))
    discontinued = app.client.post(
        f"/s/{sid}/orders/{first}/discontinue",
        data={"csrf_token": csrf(app, sid), "discontinue_reason": REASON},
    )
    assert discontinued.status_code == 303
    second = signed_id(sign(app.client, app, sid, second_draft), sid)
    assert second != first


@pytest.mark.requirement("ORDER-DC-1")
def test_the_server_refuses_a_discontinue_built_on_a_stale_version(
    sandbox: Sandbox, clinician: tuple[AppUnderTest, str]
) -> None:
    """The transaction's ifMatch is honoured by the real server: a plan changed meanwhile is not overwritten."""
    app, sid = clinician
    rg_id = signed_id(sign(app.client, app, sid, start(app, sid)), sid)
    with FhirClient(sandbox.backend_url) as backend:
        read = backend.read("RequestGroup", rg_id)
        backend.update({**read.resource, "priority": "stat"}, if_match=read.version_id)  # someone else
        bundle = fl.discontinue_bundle(
            read.resource,
            read.version_id,
            [],
            frozenset(),
            reason=REASON,
            when="2027-01-15T09:00:00+01:00",
            practitioner=None,
            session="s",
        )
        with pytest.raises(ConflictError):
            backend.transaction(bundle)
        assert backend.read("RequestGroup", rg_id).resource["status"] == "active"
