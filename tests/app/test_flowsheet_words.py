"""The flowsheet in the nurse's words and the worksheet's numbers: no record codes ("iv-access",
"baseline-vitals"), no UCUM codes in the vital-sign labels ("mm[Hg]", "Cel"), and the steps table's
volumes, minutes and rates written as the printed worksheet writes them (docs/display.md)."""

from __future__ import annotations

import re
import uuid

from flask import Flask

from fhir_desens.course.bedside.record import start_entry
from tests.app.conftest import Launcher
from tests.app.fake_ehr import FakeEhr
from tests.app.flowsheet import flowsheet, launched_with_a_bedside_session
from tests.app.test_paper_pdf import too_precise
from tests.bedside_session import NURSE, carboplatin_draft
from tests.html import text_of


def _flowsheet_at_the_checklist(launcher: Launcher, ehr: FakeEhr, app: Flask) -> str:
    sid, bedside = launched_with_a_bedside_session(launcher, ehr, app)
    bedside.submit(
        start_entry(
            entry_id=str(uuid.uuid4()), session_id=bedside.session_id, author=NURSE, at=bedside.now,
            draft=carboplatin_draft(bedside.patient), request_group="RequestGroup/rg1",
            step_requests={n: f"MedicationRequest/mr{n}" for n in range(1, 13)}, encounter=bedside.encounter,
        )
    )  # fmt: skip
    bedside.record("checklist", item="consent")
    return flowsheet(launcher, sid, bedside)


def test_the_checklist_and_the_vital_signs_read_in_words(
    launcher: Launcher, ehr: FakeEhr, app: Flask
) -> None:
    html = _flowsheet_at_the_checklist(launcher, ehr, app)
    text = text_of(html)
    [still] = re.findall(r"Still to record: ([^.]*)\.", text)
    assert still.startswith("IV access, emergency kit at the bedside, baseline vital signs")
    assert "iv-access" not in still and "baseline-vitals" not in still and "premedication:" not in still
    assert "Systolic blood pressure (mmHg)" in text and "Body temperature (°C)" in text
    assert "mm[Hg]" not in text and "(Cel)" not in text


def test_the_steps_table_writes_numbers_as_the_worksheet_does(
    launcher: Launcher, ehr: FakeEhr, app: Flask
) -> None:
    html = _flowsheet_at_the_checklist(launcher, ehr, app)
    rows = re.findall(r"<tr><th scope=\"row\">(\d+)</th>(.*?)</tr>", html, re.S)
    cells = {int(n): re.findall(r"<td[^>]*>(.*?)</td>", body) for n, body in rows}
    # columns: step, bag, rate, minutes, volume, ...; step 2 runs 1.25 mL, the last step 174.375 min
    assert cells[2][1:5] == ["1", "5", "15", "1.3"]
    assert cells[12][3] == "174"


def test_the_resume_options_and_step_statuses_read_as_the_nurse_reads_them(
    launcher: Launcher, ehr: FakeEhr, app: Flask
) -> None:
    """After a reaction the engine's options were written with every digit ("264.0348101186078321... min")
    and the steps with FHIR codes ("on-hold"): now durations, doses and statuses are the display policy's."""
    sid, bedside = launched_with_a_bedside_session(launcher, ehr, app)
    bedside.start()
    bedside.advance(20)
    bedside.mild_reaction_during(11, 6)
    bedside.advance(20)
    bedside.record("resolved")
    text = text_of(flowsheet(launcher, sid, bedside))
    options = text[text.index("Resume (the engine's options") : text.index("Record decision")]
    assert re.search(r"Go back one step : 3 steps, \d h \d\d min, total 400 mg: reaches the target", options)
    assert re.search(r"Stopping leaves 3\d\d\.?\d* mg undelivered", options)
    assert too_precise(options) == [], options
    assert "174.4 min" not in options and re.search(r"\(bag 3, 80 mL/h, 17\d min\)", options)
    html = flowsheet(launcher, sid, bedside)
    statuses = re.findall(
        r"<td>(given|paused by a reaction|paused|running|planned|completed|on-hold)</td></tr>", html
    )
    assert statuses[:12] == ["given"] * 10 + ["paused by a reaction", "planned"]


def test_a_running_step_does_not_read_as_0_mg_given(launcher: Launcher, ehr: FakeEhr, app: Flask) -> None:
    sid, bedside = launched_with_a_bedside_session(launcher, ehr, app)
    bedside.start()
    bedside.advance(20)
    bedside.run_row(1)
    bedside.run_row(2, 7, stop=False)  # step 2 running for 7 minutes
    html = flowsheet(launcher, sid, bedside)
    [row] = re.findall(r"<tr><th scope=\"row\">2</th>(.*?)</tr>", html, re.S)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
    assert cells[-1] == "running" and "0 mg" not in cells and "0" not in cells[7:9], cells


def test_doses_given_in_part_read_with_their_unit_and_the_worksheets_figures(
    launcher: Launcher, ehr: FakeEhr, app: Flask
) -> None:
    """Steps stopped early give doses the worksheet never printed (0.0158666... mg): the flowsheet wrote
    "0.01587 of 400 mg". Every dose the nurse reads is the display policy's, with its unit."""
    sid, bedside = launched_with_a_bedside_session(launcher, ehr, app)
    bedside.start()
    bedside.advance(20)
    bedside.run_row(1, 11)  # stopped after 11 of its 15 minutes: 0.3667 mL of 0.016 mg/mL
    bedside.run_row(2, 7.5, stop=False)
    bedside.record("reaction", symptoms=["itching"], grade="mild", phenotype="type-i")
    text = text_of(flowsheet(launcher, sid, bedside))
    assert "Given so far 0.01587 mg of 400 mg" in text, text[:600]
    assert re.search(r"Reaction at \d\d:\d\d: Step 2, 8 min in", text), text[text.index("Reaction at") :][
        :300
    ]  # whole minutes, as the worksheet's durations
    assert "Given so far: 0.63 mL of this step, 0.01587 mg in all." in text
    assert "0.005867 mg" in text  # step 1's dose and cumulative in the steps table, each with its unit
    assert too_precise(text) == []
