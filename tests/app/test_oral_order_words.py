"""An oral plan names the order it stands in for without a rate: aspirin by mouth has a "standard-dose
order", an infusion a "standard-rate order" (signed page, its lifecycle messages, the finished flowsheet)."""

from __future__ import annotations

import pytest

from fhir_desens.course.draft import plan_for
from fhir_desens.course.readback import INFUSED_ORDER, ORAL_ORDER, order_name
from fhir_desens.protocol.library import builtin_protocols
from smart_app.bedside import page
from tests.app.signer import Signer
from tests.bedside_session import Bedside, aspirin_draft
from tests.html import text_of

REASON = "Patient declined further doses after discussion with the allergist"


def test_the_order_name_follows_the_route() -> None:
    assert order_name("oral") == order_name("PO") == ORAL_ORDER == "standard-dose order"
    assert order_name("IV") == order_name(None) == INFUSED_ORDER == "standard-rate order"


@pytest.mark.parametrize(("patient", "start"), [("aspirin-aerd", {}), ("tmp-smx-hiv", {})])
def test_an_oral_plan_speaks_of_its_standard_dose_order(
    signer: Signer, patient: str, start: dict[str, str]
) -> None:
    sid = signer.launch(patient)
    rg_id = signer.signed_id(signer.sign(sid, signer.plan(sid, start)), sid)
    page = text_of(signer.client.get(f"/s/{sid}/orders/{rg_id}").get_data(as_text=True))
    assert "The standard-dose order" in page and "is on hold for this plan" in page, page[:1500]
    assert "Make the standard-dose order" in page
    assert "rate order" not in page and "standard rate" not in page
    response = signer.client.post(
        f"/s/{sid}/orders/{rg_id}/discontinue",
        data={"csrf_token": signer.csrf(sid), "discontinue_reason": REASON, "release_hold": "yes"},
    )
    assert response.headers["Location"].endswith("done=discontinued-released")
    done = text_of(signer.client.get(response.headers["Location"]).get_data(as_text=True))
    assert "The standard-dose order is active again." in done and "rate order" not in done


def test_an_infusion_keeps_its_standard_rate_order(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    rg_id = signer.signed_id(signer.sign(sid, signer.plan(sid)), sid)
    page = text_of(signer.client.get(f"/s/{sid}/orders/{rg_id}").get_data(as_text=True))
    assert "The standard-rate order" in page and "standard-dose" not in page


def test_the_finished_flowsheet_names_the_order_by_the_route() -> None:
    aspirin = aspirin_draft()
    oral = Bedside(plan=plan_for(aspirin, builtin_protocols()), draft=aspirin).state
    infused = Bedside().state
    assert (page.order_name(oral), page.standard_way(oral)) == ("standard-dose order", "as a standard dose")
    assert (page.order_name(infused), page.standard_way(infused)) == (
        "standard-rate order",
        "at the standard rate",
    )
