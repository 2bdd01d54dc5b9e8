"""Issue 9 in a real browser, inside the EHR frame: sign then discontinue; a second active plan for
the same drug refused; the summary before signing; the signed plan page at 1024 px.

What the app did is checked on the FHIR server itself (its own URL, not the gateway)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from fhir_desens.commands.demo import DemoStack
from fhir_desens.fhir import canonical as c
from fhir_desens.protocol.display import date_text
from tests.e2e.conftest import TIMEOUT_MS, Chart
from tests.e2e.test_planning_journeys import SIGN, fhir_search, orders_id, start_plan

REASON = "Oncology changed the regimen at this morning's review"


def active_plans(stack: DemoStack, patient_key: str) -> list[str]:
    subject = f"Patient/{stack.sandbox.summary.patient_id(patient_key)}"
    return [g["id"] for g in fhir_search(stack, "RequestGroup", subject=subject) if g["status"] == "active"]


def sign_and_wait(chart: Chart) -> str:
    chart.app.get_by_role("button", name=SIGN).click()
    expect(chart.app.get_by_role("status").filter(has_text="Orders sent")).to_be_visible(timeout=TIMEOUT_MS)
    return orders_id(chart.frame.url)


@pytest.mark.requirement("ORDER-DC-1")
@pytest.mark.requirement("ORDER-SUM-1")
def test_sign_then_discontinue(
    stack: DemoStack, open_chart: Callable[..., Chart], new_page: Callable[[], Page]
) -> None:
    chart = open_chart("vancomycin-mrsa")
    app = chart.app
    start_plan(app, ("vancomycin",), "1750")
    # ORDER-TIME-1: a planned start in the site's zone (the demo sets Europe/Paris): clock times say so
    zone = app.get_by_label(re.compile(r"^Planned start \((CET|CEST)\)$"))
    tomorrow = chart.frame.evaluate("() => new Date(Date.now() + 86400000).toISOString().slice(0, 10)")
    zone.fill(f"{tomorrow} 09:00")  # typed as the field asks, YYYY-MM-DD HH:MM (text, never the locale's)
    app.get_by_role("button", name="Set start time").click()
    shown = date_text(date.fromisoformat(tomorrow))  # pages write dates one way: "4 Dec 2026"
    expect(app.get_by_text(re.compile(rf"Step 1 at {shown} 09:00 (CET|CEST)"))).to_be_visible()
    plan_page = new_page()
    plan_page.set_viewport_size({"width": 1024, "height": 900})
    plan_page.goto(chart.frame.url)
    Path("/tmp/orders-e2e-screens").mkdir(exist_ok=True)
    plan_page.screenshot(path="/tmp/orders-e2e-screens/plan-1024.png", full_page=True)
    summary = app.get_by_role("region", name="Before signing")
    expect(summary).to_contain_text(re.compile("vancomycin", re.I))
    expect(summary).to_contain_text("steps")
    group_id = sign_and_wait(chart)
    assert group_id in active_plans(stack, "vancomycin-mrsa")

    # the signed plan at 1024 px: no horizontal scrolling; look at it
    wide = new_page()
    wide.set_viewport_size({"width": 1024, "height": 900})
    wide.goto(chart.frame.url)
    expect(wide.get_by_role("heading", name="Discontinue this plan")).to_be_visible()
    scroll_width, client_width = wide.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert scroll_width <= client_width, (scroll_width, client_width)
    shots = Path("/tmp/orders-e2e-screens")
    shots.mkdir(exist_ok=True)
    wide.screenshot(path=str(shots / "signed-plan-1024.png"), full_page=True)

    # a reason that says nothing is refused, a real one discontinues
    app.get_by_label("Reason for discontinuing").fill("x" * 30)
    app.get_by_role("button", name="Discontinue the plan").click()
    expect(app.get_by_role("alert").filter(has_text="Reason for discontinuing")).to_be_visible()
    assert group_id in active_plans(stack, "vancomycin-mrsa")
    chart.frame.wait_for_load_state()
    app.get_by_label("Reason for discontinuing").fill(REASON)
    expect(app.get_by_label("Reason for discontinuing")).to_have_value(REASON)
    app.get_by_role("button", name="Discontinue the plan").click()
    expect(app.get_by_role("status").filter(has_text="The plan is discontinued")).to_be_visible(
        timeout=TIMEOUT_MS
    )
    expect(app.get_by_text("Do not give these orders")).to_be_visible()
    wide.goto(chart.frame.url)
    wide.screenshot(path=str(shots / "discontinued-1024.png"), full_page=True)
    assert group_id not in active_plans(stack, "vancomycin-mrsa")
    subject = f"Patient/{stack.sandbox.summary.patient_id('vancomycin-mrsa')}"
    steps = [  # this patient's step orders (one plan): identified by the step-order system
        o
        for o in fhir_search(stack, "MedicationRequest", subject=subject)
        if any(ident.get("system") == c.ID_STEP_ORDER for ident in o.get("identifier", []))
    ]
    assert steps and {o["status"] for o in steps} <= {"cancelled", "stopped"}

    # the patient page lists it under Discontinued
    app.get_by_role("link", name="Back to the patient").click()
    discontinued = app.locator(".lifecycle-revoked")
    expect(discontinued).to_contain_text("discontinued")


@pytest.mark.requirement("ORDER-DUP-1")
def test_a_second_active_plan_for_the_same_drug_is_refused(
    stack: DemoStack, open_chart: Callable[..., Chart]
) -> None:
    chart = open_chart("rituximab-lymphoma")
    app = chart.app
    start_plan(app, ("rituximab",), "800")
    first = sign_and_wait(chart)
    app.get_by_role("link", name="Back to the patient").click()
    start_plan(app, ("rituximab",), "800")
    expect(app.get_by_role("heading", name=re.compile("Another active plan for"))).to_be_visible()
    expect(app.get_by_role("button", name=SIGN)).to_be_disabled()
    expect(app.locator("#sign-blockers")).to_contain_text(f"RequestGroup/{first}")
    assert active_plans(stack, "rituximab-lymphoma") == [first]
