"""The session record as a PDF (issue 12 §4, issue 10 §3): a 12-step session with a reaction at step 11,
rendered by ``smart_app.paper.record.session_record_pdf`` and read back with pdftotext page by page:
the patient's name, MRN and "page X of Y" on every page; every step as given with its times, rates and
doses; the vital signs; the reaction with its treatment and decision; who recorded; the outcome."""

from __future__ import annotations

import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from flask import Flask

from fhir_desens.protocol import display as shown
from smart_app.chart.page import PatientBanner
from smart_app.paper.record import session_record_pdf
from tests.app.test_paper_pdf import too_precise
from tests.bedside_session import NURSE, Bedside

BANNER = PatientBanner(name="Ada Lovelace", sex="female", birth_date="1815-12-10", mrn="MRN-0001")


def pdftotext_pages(pdf: bytes) -> list[str]:
    """Each page's text (pdftotext -layout), whitespace collapsed."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "record.pdf"
        path.write_bytes(pdf)
        text = subprocess.run(
            ["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True, text=True
        ).stdout
    return [" ".join(page.split()) for page in text.split("\f") if page.strip()]


@pytest.fixture
def session_pages(make_app: object) -> tuple[Bedside, list[str]]:
    app: Flask = make_app(TIME_ZONE="Europe/Paris")  # type: ignore[operator]
    session = Bedside()
    session.reaction_at_step_11()
    with app.test_request_context("/"):
        pdf = session_record_pdf(
            session.state,
            session.entries,
            BANNER,
            printed_at=datetime(2026, 12, 2, 16, 0, tzinfo=UTC),
            names={NURSE: "Nurse Nora Nightingale"},
        )
    assert pdf.startswith(b"%PDF")
    return session, pdftotext_pages(pdf)


def test_every_page_carries_the_patient_and_page_x_of_y(session_pages: tuple[Bedside, list[str]]) -> None:
    _, pages = session_pages
    assert len(pages) >= 2
    for number, text in enumerate(pages, start=1):
        assert "Ada Lovelace" in text and "MRN-0001" in text and "1815-12-10" in text, number
        assert f"page {number} of {len(pages)}" in text, number
        assert "Session record: completed" in text, number


def test_the_record_has_every_step_vitals_the_reaction_who_and_the_outcome(
    session_pages: tuple[Bedside, list[str]],
) -> None:
    session, pages = session_pages
    text = "\n".join(pages)
    state = session.state
    # the heading facts: site-zone times (Paris is UTC+1 in December), the outcome and the dose
    assert "2 Dec 2026 09:00 CET" in text  # started 08:00 UTC
    assert "Outcome: completed" in text and "400 mg of 400 mg" in text
    assert "a new desensitization (platinum compounds are desensitized at every administration)" in text
    assert "Discharge vital signs" in text and "BP 122/78" in text
    # every step as given: its start and stop in the site's zone, the rate run, its cumulative dose
    paris = ZoneInfo("Europe/Paris")
    assert len(state.segments) == 14  # 12 steps, step 11 paused by the reaction, step 10 again, 12
    for segment in state.segments:
        assert segment.ended_at is not None
        for moment in (segment.started_at, segment.ended_at):
            assert moment.astimezone(paris).strftime("%H:%M") in text, (segment.row.number, moment)
        assert shown.dose_number(segment.cumulative) in text, segment.row.number
    assert "09:20 09:35" in text  # step 1 started 08:20 UTC and ran 15 min
    assert "Step 10 again" in text and "Step 12" in text
    # vital signs with who took them, by name
    assert text.count("Nurse Nora Nightingale") >= 10
    # the reaction, its treatment and the decision
    assert "Reaction 1: mild, at 2 Dec 2026" in text and "Itching" in text
    assert "Grade (Brown): mild" in text and "Phenotype: Type I-like" in text
    assert "diphenhydramine 50 mg IV at 2 Dec 2026" in text and "6 min into step 11" in text
    assert "Decision: Go back one step at 2 Dec 2026" in text
    assert "Allergist sign-off: not needed after a mild reaction" in text
    assert "Premedication diphenhydramine" in text and "Consent signed" in text
    # no number with more digits than the display policy; no raw ISO timestamps or internal keys
    assert too_precise(text) == []
    assert "T08:" not in text and "+00:00" not in text and "step_requests" not in text
