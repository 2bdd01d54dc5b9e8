"""An oral plan names the order it stands in for without a rate: aspirin by mouth has a "standard-dose
order", an infusion a "standard-rate order" (signed page, its lifecycle messages, the finished flowsheet)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
from flask import Flask, render_template

from fhir_desens.course.draft import plan_for
from fhir_desens.course.readback import INFUSED_ORDER, ORAL_ORDER, order_name
from fhir_desens.protocol.library import builtin_protocols
from smart_app.bedside import page
from tests.app.signer import Signer
from tests.bedside_session import VITALS, Bedside, aspirin_draft, carboplatin_draft
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


def _penicillin_session(next_dose: str) -> Bedside:
    """Oral penicillin V given for an order of penicillin G benzathine, all 14 doses, then completed."""
    draft = dataclasses.replace(
        carboplatin_draft(),
        drug="Penicillin G benzathine",  # the order's drug; the protocol gives penicillin V by mouth
        drug_rxnorm=(),
        target="2400000 [iU]",
        protocol_id="penicillin-v-oral-wendel",
        final_rate_ml_h=None,
        bag_volume_ml=None,
    )
    bedside = Bedside(plan=plan_for(draft, builtin_protocols()), draft=draft)
    bedside.start()
    for row in bedside.state.rows:
        bedside.run_row(row.number)
    bedside.advance(30)
    bedside.record("vitals", **VITALS)
    bedside.record("complete", outcome="completed", observation_end=bedside.at(), next_dose=next_dose)
    return bedside


def _finished(app: Flask, bedside: Bedside) -> str:
    held = SimpleNamespace(group_status="completed", held_for_this_plan=True, therapeutic_order=None)
    with app.test_request_context():
        html = render_template(
            "_bedside_finished.html",
            state=bedside.state,
            in_ehr=held,
            closing=None,
            sid="S" * 43,
            csrf_token="t",
            p=page,
        )
    return text_of(html)


def test_the_benzathine_order_is_due_after_an_oral_penicillin_session(app: Flask) -> None:
    """Walk 9: after oral penicillin V the held benzathine order read "release it when the next dose is to
    be given as a standard dose", though its first dose follows the 30-minute observation at once."""
    bedside = _penicillin_session("continuous")
    assert page.ordered_drug_follows(bedside.state) == "penicillin G benzathine"
    shown = _finished(app, bedside)
    assert (
        "The order of penicillin G benzathine follows this desensitization without a break in dosing" in shown
    )
    assert "its first dose is due as soon as the observation after the last dose is over" in shown
    assert "release it when the next dose is to be given" not in shown


def test_a_plan_of_the_ordered_drug_keeps_the_next_dose_words(app: Flask) -> None:
    aspirin = aspirin_draft()
    oral = Bedside(plan=plan_for(aspirin, builtin_protocols()), draft=aspirin)
    assert page.ordered_drug_follows(oral.state) is None
    assert page.ordered_drug_follows(Bedside().state) is None
    new_course = _finished(app, _penicillin_session("re-desensitize"))
    assert "The next dose is a new desensitization" in new_course and "follows this" not in new_course
