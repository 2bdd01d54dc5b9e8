"""Issue 9 (drugs) in a real browser, inside the EHR frame: a 10x dose cannot be signed with the
defaults, the paclitaxel patient is pre-filled as high risk, the oral penicillin V protocol signs coded
penicillin V, and a non-allergist cannot override a contraindication."""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import Page, expect

from fhir_desens.commands.demo import DemoStack
from tests.e2e.conftest import APP_FRAME, Chart
from tests.e2e.test_planning_journeys import SIGN, fhir_search, start_plan

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def test_ten_times_the_carboplatin_dose_is_not_signable_with_the_defaults(
    open_chart: Callable[..., Chart],
) -> None:
    chart = open_chart("carboplatin-ovarian")
    app = chart.app
    start_plan(app, ("carboplatin",), "4000")
    refused = app.get_by_role("alert").filter(has_text="stronger than the carboplatin stock")
    expect(refused).to_have_count(1)
    expect(refused).to_contain_text(re.compile(r"Bag \d \(target\) would be 15.87 mg/mL"))
    expect(app.get_by_role("button", name=SIGN)).to_be_disabled()


def test_the_paclitaxel_patient_is_prefilled_as_high_risk(open_chart: Callable[..., Chart]) -> None:
    chart = open_chart("paclitaxel-high-risk")
    app = chart.app
    app.get_by_role("link", name="Plan a desensitization").click()
    hypotension = app.get_by_role("group", name="Hypotension or hypoxia during the index reaction")
    expect(hypotension.get_by_role("radio", name="Yes")).to_be_checked()
    expect(hypotension).to_contain_text("68/40")
    cardiac = app.get_by_role("group", name="Cardiac disease or beta-blocker")
    expect(cardiac.get_by_role("radio", name="Yes")).to_be_checked()
    expect(cardiac).to_contain_text("Metoprolol")
    fev1 = app.get_by_role("group", name="FEV1 below 80%")
    expect(fev1.get_by_role("radio", name="Not known")).to_be_checked()
    app.get_by_role("button", name="Continue").click()
    app.get_by_role("heading", name="Allergy match").wait_for()
    protocol = app.get_by_role("combobox", name="Protocol", exact=True)
    expect(protocol).to_have_value("iv-16-step-4-bag")
    expect(app.locator(".suggestion")).to_contain_text("high risk")
    expect(app.locator(".suggestion")).not_to_contain_text("Standard risk")


def test_the_oral_penicillin_v_protocol_signs_coded_penicillin_v(
    stack: DemoStack, open_chart: Callable[..., Chart]
) -> None:
    chart = open_chart("penicillin-pregnancy")
    app = chart.app
    start_plan(app, ("penicillin",), "2400000", unit="units")
    expect(app.get_by_role("combobox", name="Protocol", exact=True)).to_have_value("penicillin-v-oral-wendel")
    expect(app.locator(".therapeutic-note")).to_contain_text(
        "stays the order to give after the desensitization"
    )
    confirm = app.get_by_label("I confirm desensitization for a drug the allergy list does not record")
    if confirm.count():
        confirm.check()
        app.get_by_role("button", name="Confirm").click()
    app.get_by_role("button", name=SIGN).click()
    expect(app.get_by_role("status").filter(has_text="Orders sent")).to_be_visible(timeout=30_000)
    subject = f"Patient/{stack.sandbox.summary.patient_id('penicillin-pregnancy')}"
    groups = fhir_search(stack, "RequestGroup", subject=subject)
    assert groups
    medications = [
        fhir_search(stack, "Medication", _id=ref.removeprefix("Medication/"))[0]
        for ref in {
            r["medicationReference"]["reference"]
            for r in fhir_search(stack, "MedicationRequest", subject=subject)
            if "medicationReference" in r
        }
    ]
    assert medications
    for medication in medications:
        codes = [c["code"] for c in medication["code"].get("coding", []) if c.get("system") == RXNORM]
        assert codes == ["7984"], medication["code"]


def test_a_non_allergist_cannot_override_a_contraindication(stack: DemoStack, page: Page) -> None:
    page.goto(stack.sandbox.launcher_url)
    page.get_by_label("Patient", exact=True).select_option(value="sjs-sulfonamide")
    practitioner = page.get_by_label("Practitioner (the signed-in user)")
    options = practitioner.evaluate("s => Array.from(s.options).map(o => [o.value, o.text])")
    oncologist = next(value for value, text in options if "Asante-Ritter" in text or "Oncology" in text)
    practitioner.select_option(value=oncologist)
    page.get_by_label("inside the EHR").check()
    page.get_by_role("button", name="Open the chart").click()
    page.wait_for_url(re.compile(r"/ehr\?"))
    chart = Chart(page, page.frame_locator(APP_FRAME))
    app = chart.app
    app.get_by_role("heading", name="Allergies and intolerances").wait_for()
    start_plan(app, ("sulfamethoxazole", "trimethoprim", "tmp-smx"), "400")
    button = app.get_by_role("button", name="Override the contraindication")
    expect(button).to_have_class(re.compile(r"\bdanger\b"))
    app.get_by_label("Override reason", exact=True).fill(
        "PJP prophylaxis is essential and atovaquone failed; the transplant team agrees."
    )
    button.click()
    expect(app.get_by_role("alert").filter(has_text="only an allergist may override")).to_have_count(1)
    expect(app.get_by_role("button", name=SIGN)).to_have_count(0)
