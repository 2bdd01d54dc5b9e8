"""Issue 13 in a real browser: after a completed session, the tolerance window on the patient page, then the
outcome previewed, confirmed and written to the allergy record, inside the EHR frame.

The completed session is recorded in the app's own bedside record (the database the running app reads),
as the bedside pages would have; the allergy record is then read on the FHIR server itself.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
from playwright.sync_api import expect

from fhir_desens.commands.demo import DemoStack
from fhir_desens.course.bedside.record import BedsideRecord
from fhir_desens.course.bedside.store import open_record_store
from fhir_desens.course.draft import plan_for
from fhir_desens.protocol.library import builtin_protocols
from tests.bedside_session import Bedside, carboplatin_draft
from tests.e2e.conftest import Chart

PATIENT = "carboplatin-ovarian"


def completed_session(stack: DemoStack, record_url: str) -> str:
    store = open_record_store(record_url)
    try:
        record = BedsideRecord(store, builtin_protocols(), lambda: datetime.now(UTC))
        patient = f"Patient/{stack.sandbox.summary.patients[PATIENT].id}"
        bedside = Bedside(record_to=record, patient=patient)
        bedside.reaction_at_step_11()
        return bedside.session_id
    finally:
        store.close()


def ceftriaxone_session_three_days_ago(stack: DemoStack, record_url: str) -> None:
    """A completed ceftriaxone session whose 48 h window has closed (beta-lactam: continuous dosing)."""
    store = open_record_store(record_url)
    try:
        record = BedsideRecord(store, builtin_protocols(), lambda: datetime.now(UTC))
        patient = f"Patient/{stack.sandbox.summary.patients[PATIENT].id}"
        draft = dataclasses.replace(
            carboplatin_draft(patient), drug="ceftriaxone", drug_rxnorm=("2193",), target="2 g"
        )
        plan = plan_for(draft, builtin_protocols())
        bedside = Bedside(plan=plan, draft=draft, record_to=record, patient=patient)
        bedside.now = datetime.now(UTC) - timedelta(days=3)
        bedside.reaction_at_step_11(next_dose="continuous")
    finally:
        store.close()


def allergy_notes(stack: DemoStack) -> list[str]:
    patient = stack.sandbox.summary.patients[PATIENT].id
    response = requests.get(
        f"{stack.sandbox.backend_url}/AllergyIntolerance",
        params={"patient": f"Patient/{patient}"},
        headers={"Accept": "application/fhir+json"},
        timeout=30,
    )
    response.raise_for_status()
    return [
        note["text"]
        for entry in response.json().get("entry", [])
        for note in entry["resource"].get("note", [])
        if "Ref RDD-" in note.get("text", "")
    ]


def test_after_a_completed_session_the_tolerance_window_shows_and_the_outcome_reaches_the_chart(
    stack: DemoStack, record_url: str, open_chart: Callable[..., Chart], screenshot_dir: Path
) -> None:
    chart = open_chart(PATIENT)
    completed_session(stack, record_url)
    chart.frame.goto(chart.frame.url)  # the patient page again, as after the session
    app = chart.app

    tolerance = app.get_by_role("table").filter(has_text="Tolerance is temporary")
    expect(app.get_by_role("heading", name="Tolerance after desensitization")).to_be_visible()
    row = tolerance.get_by_role("row").filter(has_text="carboplatin")
    expect(row).to_contain_text("Re-desensitization required")
    expect(row).to_contain_text("the app's own record (last step of the desensitization)")
    expect(row).to_contain_text("IV 12-step, 3-bag rapid desensitization")  # the protocol to use
    chart.page.screenshot(path=str(screenshot_dir / "outcome-patient-page.png"), full_page=True)

    notes_before = len(allergy_notes(stack))
    app.get_by_role("link", name="Bring the outcome to the chart").last.click()
    expect(
        app.get_by_role("heading", name=re.compile(r"^Bring the outcome to the chart: carboplatin"))
    ).to_be_visible()
    expect(app.get_by_text("Update the allergy record.", exact=False)).to_be_visible()
    expect(app.locator("blockquote.outcome-note")).to_contain_text("Tolerated carboplatin 400 mg via 12-step")
    chart.page.screenshot(path=str(screenshot_dir / "outcome-preview.png"), full_page=True)

    app.get_by_role("button", name="Confirm and write to the chart").click()
    expect(app.get_by_role("heading", name="The outcome is in the chart")).to_be_visible()
    expect(app.get_by_role("status")).to_contain_text("Written: note on the carboplatin allergy record")
    expect(app.locator(".support-references")).to_contain_text("AllergyIntolerance/")
    chart.page.screenshot(path=str(screenshot_dir / "outcome-result.png"), full_page=True)
    assert len(allergy_notes(stack)) == notes_before + 1
    print(f"outcome screenshots: {screenshot_dir}")


def test_a_dose_given_after_desensitization_is_recorded_on_the_patient_page_and_reopens_the_window(
    stack: DemoStack, record_url: str, open_chart: Callable[..., Chart], screenshot_dir: Path
) -> None:
    chart = open_chart(PATIENT)
    ceftriaxone_session_three_days_ago(stack, record_url)
    chart.frame.goto(chart.frame.url)
    app = chart.app
    tolerance = app.get_by_role("table").filter(has_text="Tolerance is temporary")
    row = tolerance.get_by_role("row").filter(has_text="ceftriaxone")
    expect(row).to_contain_text("Re-desensitization required: more than 48 h without a dose")

    form = app.get_by_role("form", name="Record a dose given after desensitization")
    form.get_by_label("Drug").select_option(label="ceftriaxone")
    # a typo first: the form comes back as typed, the message under the field, nothing recorded
    form.get_by_label("Dose").fill("2 gm")
    form.get_by_role("button", name="Record the dose").click()
    form = app.get_by_role("form", name="Record a dose given after desensitization")
    dose = form.get_by_label("Dose")
    expect(dose).to_have_value("2 gm")
    expect(dose).to_have_attribute("aria-invalid", "true")
    expect(form.locator("#dose-amount-error")).to_contain_text("Dose: ")
    expect(form.get_by_label("Drug")).to_have_value(re.compile(r".+"))
    chart.page.screenshot(path=str(screenshot_dir / "outcome-dose-refused.png"), full_page=True)
    dose.fill("2 g")  # the time field is prefilled with now, in the site's zone
    form.get_by_role("button", name="Record the dose").click()

    row = app.get_by_role("table").filter(has_text="Tolerance is temporary").get_by_role("row")
    row = row.filter(has_text="ceftriaxone")
    expect(row).to_contain_text("Tolerance can be assumed until")
    expect(row).to_contain_text("from the app's own record (2 g given after desensitization, recorded by")
    expect(
        app.get_by_role("list", name="Doses given after desensitization, recorded in this app")
    ).to_contain_text("ceftriaxone 2 g given")
    chart.page.screenshot(path=str(screenshot_dir / "outcome-dose-recorded.png"), full_page=True)
