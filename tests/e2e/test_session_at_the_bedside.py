"""Issue 12 in a real browser: plan and sign inside the EHR frame, start the session at the bedside, run
12 steps with a reaction at step 11 (pause, treat, one step back, finish) on the flowsheet, and find the
session on the FHIR server and in the printable record.

It runs after the planning journeys (file order) and starts the carboplatin plan they signed (one
active plan per drug), or plans and signs one when run alone. The app's bedside clock is injected
(``FHIR_DESENS_BEDSIDE_CLOCK_FILE``, smart_app/bedside/clock.py): the test moves it 15 minutes per step
and the nurse types no times, so a 7-hour session runs in a minute or two with realistic times. It
starts eight hours ago, so the finished session lies in the past of the real clock the outcome uses.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pdfplumber
from playwright.sync_api import Page, expect

from fhir_desens.commands.demo import SANDBOX_TIME_ZONE, DemoStack
from fhir_desens.course.bedside.fhir_map import ID_BEDSIDE_ITEM
from tests.e2e.conftest import Chart, set_bedside_clock
from tests.e2e.test_planning_journeys import choose_option, fhir_search, sign, start_plan

PATIENT = "carboplatin-ovarian"
VITALS = {
    "Systolic blood pressure (mmHg)": "118",
    "Diastolic blood pressure (mmHg)": "74",
    "Heart rate (/min)": "72",
    "Respiratory rate (/min)": "14",
    "Oxygen saturation (%)": "98",
}

SITE_ZONE = ZoneInfo(os.environ.get("FHIR_DESENS_TIME_ZONE", SANDBOX_TIME_ZONE))  # as the demo stack sets it


class Flowsheet:
    """The nurse at the flowsheet; ``advance`` moves the app's bedside clock (no times are typed)."""

    def __init__(self, tab: Page, start: datetime) -> None:
        self.tab, self.time = tab, start
        set_bedside_clock(start)

    def advance(self, minutes: float) -> None:
        self.time += timedelta(minutes=minutes)
        set_bedside_clock(self.time)

    def submit(self, button: str, section: str | None = None) -> None:
        scope = self.tab.locator(f"section#{section}") if section else self.tab
        with self.tab.expect_navigation():
            scope.get_by_role("button", name=button, exact=True).click()
        errors = self.tab.get_by_role("alert")
        assert errors.count() == 0, errors.all_inner_texts()

    def vitals(self, minutes: float = 0, values: dict[str, str] = VITALS) -> None:
        self.advance(minutes)
        for label, value in values.items():
            self.tab.get_by_label(label, exact=True).fill(value)
        self.submit("Record vital signs")

    def step(self, number: int, minutes: float, *, stop: bool = True, shot: Path | None = None) -> None:
        expect(self.tab.locator("#now")).to_contain_text(f"Next: Step {number}" if number <= 11 else "Next: ")
        self.submit(self.tab.locator("#now button").inner_text())
        # the live clock reads in the site's zone like every time on the page, whatever the browser's zone
        site_time = self.time.astimezone(SITE_ZONE).strftime("%H:%M")
        expect(self.tab.locator("#server-clock")).to_have_text(re.compile("^" + site_time))
        self.vitals(min(minutes / 2, 15))
        if shot is not None:
            self.tab.screenshot(path=str(shot), full_page=True)
        self.advance(minutes - min(minutes / 2, 15))
        if stop:
            self.submit(self.tab.locator("#now button").inner_text())
            self.tab.locator(
                "section", has=self.tab.get_by_role("heading", name=re.compile("^Symptom check"))
            ).get_by_label("None", exact=True).check()
            self.submit("Record symptom check")


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
    # the plan orders the steps only: its premedications are to be ordered in the EHR (walk session 8)
    expect(chart.app.locator("#premedications-to-order")).to_contain_text("diphenhydramine 25 mg IV")
    chart.page.screenshot(path=str(screenshot_dir / "bedside-0-signed.png"), full_page=True)
    chart.app.get_by_role("link", name="Start a session at the bedside").click()
    chart.app.get_by_role("button", name="Start the session at the bedside").wait_for()

    # the flowsheet in its own tab, as wide as an EHR frame (the app needs no cookies: the session is in the URL)
    tab = new_page()
    tab.set_viewport_size({"width": 1024, "height": 900})
    tab.goto(chart.frame.url)
    start = datetime.now().astimezone().replace(second=0, microsecond=0) - timedelta(hours=8)
    try:
        run_the_session(tab, start, screenshot_dir)
    finally:
        set_bedside_clock(None)

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
        len(vitals) == 4 * 17
    )  # 17 sets (one during the reaction): the BP panel, heart rate, respiratory rate, SpO2 (no temperature)
    events = [
        e
        for e in fhir_search(stack, "AdverseEvent")
        if str(e.get("identifier", {}).get("value", "")).startswith(f"{session}/")
    ]
    assert len(events) == 1 and events[0]["suspectEntity"][0]["instance"]["reference"].startswith(
        "MedicationAdministration/"
    )
    assert len(fhir_search(stack, "Provenance", target=f"Procedure/{procedures[0]['id']}")) == 1

    # the session record as PDF (smart_app/paper/record.py); WeasyPrint takes seconds on a loaded 2-core machine
    with tab.expect_download(timeout=60_000) as downloading:
        tab.get_by_role("link", name="Session record (PDF)", exact=True).click()
    with pdfplumber.open(downloading.value.path()) as pdf:
        printed = "\n".join(page.extract_text() or "" for page in pdf.pages)
    for words in ("Reaction", "Decision after the reaction", "Session ended", "mild"):
        assert words in printed, (words, printed[:1500])
    tab.get_by_role("link", name="Session record", exact=True).click()
    expect(tab.get_by_role("heading", name=re.compile("^Desensitization session record"))).to_be_visible()
    expect(tab.locator("main")).to_contain_text("Reaction 1: mild, at ")
    tab.screenshot(path=str(screenshot_dir / "bedside-5-record.png"), full_page=True)
    tab.go_back()
    tab.get_by_role("link", name="Outcome for the chart (allergy record)").click()
    expect(tab.locator("main h1")).to_be_visible()
    tab.screenshot(path=str(screenshot_dir / "bedside-6-outcome.png"), full_page=True)
    print(f"bedside screenshots in {screenshot_dir}")


def run_the_session(tab: Page, start: datetime, shots: Path) -> None:
    """Start, checklist, 10 steps, a mild reaction 6 minutes into step 11, one step back, finish."""
    sheet = Flowsheet(tab, start)
    sheet.submit("Start the session at the bedside")
    expect(tab.get_by_role("heading", name="Before step 1")).to_be_visible()
    expect(tab.locator("#bedside")).to_contain_text("Test clock")
    for item in ("Consent signed", "IV access working", "Emergency kit at the bedside"):
        sheet.submit(item)
    for drug in ("diphenhydramine", "famotidine"):
        sheet.advance(1)
        tab.get_by_label("Drug", exact=True).select_option(value=drug)
        sheet.submit("Record premedication")
    sheet.vitals(1)
    chart_says = tab.get_by_role("list", name="What the chart says")
    expect(chart_says).to_contain_text("not ordered in the EHR yet (the signed plan lists it")
    expect(chart_says).to_contain_text(
        "Consent: no active consent in the chart: check the signed consent form"
    )
    tab.screenshot(path=str(shots / "bedside-1-ready.png"), full_page=True)
    sheet.advance(15)
    for number in range(1, 11):
        sheet.step(number, 15, shot=shots / "bedside-2-running.png" if number == 4 else None)
    sheet.step(11, 6, stop=False)
    reaction = tab.locator("section#reaction")
    reaction.get_by_label("Itching", exact=True).check()
    reaction.get_by_label("Hives (urticaria)", exact=True).check()
    reaction.get_by_label("Grade (Brown)", exact=True).select_option(value="mild")  # never preselected
    reaction.get_by_label("Phenotype", exact=True).select_option(value="type-i")  # never preselected either
    sheet.submit("Record reaction (pause)")
    expect(tab.locator("#phase")).to_have_text("paused")
    # vital signs during the reaction: each value out of range is said in words when recorded, and in the table
    sheet.vitals(1, {**VITALS, "Heart rate (/min)": "104", "Respiratory rate (/min)": "22"})
    expect(tab.locator("#vitals-recorded")).to_contain_text("Heart rate 104 /min: high, above 100 /min")
    expect(tab.locator("#vitals-recorded")).to_contain_text("Respiratory rate 22 /min: high, above 20 /min")
    tab.screenshot(path=str(shots / "bedside-3a-vitals-flagged.png"), full_page=True)
    sheet.advance(1)
    tab.get_by_label("Treatment given", exact=True).select_option(value="antihistamine-h1")  # no default
    tab.get_by_label("Dose", exact=True).fill("diphenhydramine 50 mg IV")
    sheet.submit("Record treatment")
    sheet.advance(18)
    sheet.submit("Symptoms resolved")
    sheet.advance(2)
    tab.screenshot(path=str(shots / "bedside-3-resume-options.png"), full_page=True)
    tab.get_by_role("radio", name=re.compile("^Go back one step")).check()
    sheet.submit("Record decision")
    # after the decision the reaction stays on the flowsheet: in the facts, its step's row and in full
    expect(tab.locator("#reactions-summary")).to_contain_text("mild, step 11 at")
    recorded = tab.locator("section#reactions-recorded")
    for words in (
        "6 min into step 11",
        "Itching, Hives (urticaria)",
        "diphenhydramine 50 mg IV at",
        "Go back one step",
    ):
        expect(recorded).to_contain_text(words)
    expect(tab.locator("table.flowsheet-table")).to_contain_text("stopped by a reaction")
    tab.screenshot(path=str(shots / "bedside-3b-after-decision.png"), full_page=True)
    for number, minutes in ((12, 15), (13, 15), (14, 200)):  # the pump stops at its volume
        sheet.step(number, minutes)
    sheet.vitals(30)
    sheet.submit("Complete session")
    expect(tab.locator("#phase")).to_have_text("completed")
    expect(tab.locator("#delivered")).to_have_text(re.compile(r"^400 mg of 400 mg"))
    expect(tab.locator("#plan-in-ehr")).to_contain_text("The signed plan is completed in the EHR")
    tab.screenshot(path=str(shots / "bedside-4-completed.png"), full_page=True)
