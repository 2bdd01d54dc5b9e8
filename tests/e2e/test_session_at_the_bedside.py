"""Issue 12 in a real browser: plan and sign inside the EHR frame, start the session at the bedside, run
12 steps with a reaction at step 11 (pause, treat, one step back, finish) on the flowsheet, and find the
session on the FHIR server and in the printable record.

It runs after the planning journeys (file order) and starts the carboplatin plan they signed (one
active plan per drug), or plans and signs one when run alone. The clock is injected through the times the nurse types (recording after the fact): the session starts
eight hours ago and every entry carries its time, so a 7-hour session runs in a minute or two while the
server's own clock (the reference for "not in the future") is real.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from playwright.sync_api import Page, expect

from fhir_desens.commands.demo import DemoStack
from fhir_desens.course.bedside.fhir_map import ID_BEDSIDE_ITEM
from tests.e2e.conftest import Chart
from tests.e2e.test_planning_journeys import choose_option, fhir_search, sign, start_plan

PATIENT = "carboplatin-ovarian"
VITALS = {
    "Systolic blood pressure (mm[Hg])": "118",
    "Diastolic blood pressure (mm[Hg])": "74",
    "Heart rate (/min)": "72",
    "Respiratory rate (/min)": "14",
    "Oxygen saturation (%)": "98",
}


class Flowsheet:
    def __init__(self, tab: Page, start: datetime) -> None:
        self.tab, self.time = tab, start

    def at(self, minutes: float = 0) -> str:
        self.time += timedelta(minutes=minutes)
        return self.time.strftime("%Y-%m-%d %H:%M")

    def submit(self, button: str, section: str | None = None) -> None:
        scope = self.tab.locator(f"section#{section}") if section else self.tab
        with self.tab.expect_navigation():
            scope.get_by_role("button", name=button, exact=True).click()
        errors = self.tab.get_by_role("alert")
        assert errors.count() == 0, errors.all_inner_texts()

    def vitals(self, minutes: float = 0) -> None:
        for label, value in VITALS.items():
            self.tab.get_by_label(label, exact=True).fill(value)
        self.tab.locator("#vitals-time").fill(self.at(minutes))
        self.submit("Record vital signs")

    def step(self, number: int, minutes: float, *, stop: bool = True) -> None:
        expect(self.tab.locator("#now")).to_contain_text("Next: ")
        self.tab.locator("#start-time").fill(self.at())
        self.submit(re.sub(r"^", "", self.tab.locator("#now button").inner_text()))
        self.vitals(minutes / 2)
        if stop:
            self.tab.locator("#stop-time").fill(self.at(minutes / 2))
            self.submit(self.tab.locator("#now button").inner_text())
            self.tab.locator(
                "section", has=self.tab.get_by_role("heading", name=re.compile("^Symptom check"))
            ).get_by_label("None", exact=True).check()
            self.submit("Record symptom check")
        else:
            self.time += timedelta(minutes=minutes / 2)


def test_a_12_step_session_with_a_reaction_at_step_11(
    stack: DemoStack, open_chart: Callable[..., Chart], new_page: Callable[[], Page], screenshot_dir: Path
) -> None:
    chart = open_chart(PATIENT)
    # one active plan per drug: run the plan another journey signed, else plan and sign one here
    signed = chart.app.get_by_role(
        "link", name=re.compile(r"^Open the signed plan of .*Carboplatin", re.IGNORECASE)
    )
    if signed.count():
        signed.first.click()
    else:
        start_plan(chart.app, ("carboplatin",), "400")
        choose_option(
            chart.app.get_by_role("combobox", name="Protocol", exact=True),
            lambda value, text: value == "iv-12-step-3-bag" or text.startswith("IV 12-step, 3-bag rapid"),
        )
        chart.app.get_by_label("Final rate (mL/h)", exact=True).fill("80")
        chart.app.get_by_role("button", name="Recalculate").click()
        sign(chart)
    chart.app.get_by_role("link", name="Start a session at the bedside").click()
    chart.app.get_by_role("button", name="Start the session at the bedside").wait_for()

    # the flowsheet in its own tab, as wide as an EHR frame (the app needs no cookies: the session is in the URL)
    tab = new_page()
    tab.set_viewport_size({"width": 1024, "height": 900})
    tab.goto(chart.frame.url)
    start = datetime.now().astimezone().replace(second=0, microsecond=0) - timedelta(hours=8)
    sheet = Flowsheet(tab, start)
    tab.get_by_label(re.compile("^Started at")).fill(sheet.at())
    sheet.submit("Start the session at the bedside")
    expect(tab.get_by_role("heading", name="Before step 1")).to_be_visible()
    for item in ("Consent signed", "IV access working", "Emergency kit at the bedside"):
        sheet.submit(item)
    for drug in ("diphenhydramine", "famotidine"):
        tab.get_by_label("Drug", exact=True).select_option(value=drug)
        tab.locator("#premed-time").fill(sheet.at(1))
        sheet.submit("Record premedication")
    sheet.vitals(1)
    sheet.at(15)
    for number in range(1, 11):
        sheet.step(number, 15)
    sheet.step(11, 6, stop=False)
    reaction = tab.locator("section#reaction")
    reaction.get_by_label("Itching", exact=True).check()
    reaction.get_by_label("Wheals / hives", exact=True).check()
    tab.locator("#reaction-time").fill(sheet.at())
    sheet.submit("Record reaction (pause)")
    expect(tab.locator("#phase")).to_have_text("paused")
    tab.locator("#treatment-time").fill(sheet.at(2))
    tab.get_by_label("Dose", exact=True).fill("diphenhydramine 50 mg IV")
    sheet.submit("Record treatment")
    tab.locator("#resolved-time").fill(sheet.at(18))
    sheet.submit("Symptoms resolved")
    tab.get_by_role("radio", name=re.compile("^back-one-step")).check()
    sheet.at(2)
    sheet.submit("Record decision")
    for number, minutes in ((12, 15), (13, 15), (14, 200)):  # the pump stops at its volume
        sheet.step(number, minutes)
    sheet.vitals(30)
    tab.locator("#c-end").fill(sheet.at())
    sheet.submit("Complete session")
    expect(tab.locator("#phase")).to_have_text("completed")
    expect(tab.locator("#delivered")).to_have_text(re.compile(r"^400 of 400 mg"))
    tab.screenshot(path=str(screenshot_dir / "bedside-completed.png"), full_page=True)

    session = tab.url.rsplit("/", 1)[1].split("#")[0]
    procedures = fhir_search(stack, "Procedure", identifier=f"{ID_BEDSIDE_ITEM}|{session}/procedure")
    assert len(procedures) == 1 and procedures[0]["status"] == "completed"
    administrations = [
        a
        for a in fhir_search(stack, "MedicationAdministration", identifier=f"{ID_BEDSIDE_ITEM}|")
        if a["identifier"][0]["value"].startswith(f"{session}/ma/")
    ]
    assert len(administrations) == 14
    assert sum(1 for a in administrations if a["status"] == "stopped") == 1
    vitals = [
        o
        for o in fhir_search(stack, "Observation", identifier=f"{ID_BEDSIDE_ITEM}|")
        if o["identifier"][0]["value"].startswith(f"{session}/")
    ]
    assert (
        len(vitals) == 4 * 16
    )  # 16 sets: the BP panel, heart rate, respiratory rate, SpO2 (no temperature typed)
    events = [
        e
        for e in fhir_search(stack, "AdverseEvent")
        if str(e.get("identifier", {}).get("value", "")).startswith(f"{session}/")
    ]
    assert len(events) == 1 and events[0]["suspectEntity"][0]["instance"]["reference"].startswith(
        "MedicationAdministration/"
    )
    assert len(fhir_search(stack, "Provenance", target=f"Procedure/{procedures[0]['id']}")) == 1

    tab.get_by_role("link", name="Session record (print)").click()
    expect(tab.get_by_role("heading", name=re.compile("^Desensitization session record"))).to_be_visible()
    expect(tab.locator("main")).to_contain_text("Grade mild")
    tab.screenshot(path=str(screenshot_dir / "bedside-record.png"), full_page=True)
    print(f"bedside screenshots in {screenshot_dir}")
