"""A reaction stays on the flowsheet after its decision (walk session 8: step 9 then read Symptoms "—", status
"stopped", and its symptoms, grade, treatments and resolution were only in the session record). A nurse taking
over sees each reaction: when, in which step and how far into it, what had been given, symptoms, grade,
phenotype, treatments with their times, resolution, the decision and who signed it off."""

from __future__ import annotations

import re

from flask import Flask

from tests.app.clinician import ALLERGIST as ALLERGIST_USER
from tests.app.conftest import Launcher
from tests.app.fake_ehr import FakeEhr
from tests.app.flowsheet import PATIENT, flowsheet, launched_with_a_bedside_session, post_entry
from tests.bedside_session import Bedside
from tests.html import text_of

ALLERGIST = "Dr. Amara Lindqvist-Okoro, MD"


def _moderate_reaction_at_step_9_decided(bedside: Bedside) -> None:
    """Steps 1-8 as planned, a moderate reaction 5 min into step 9 (09:00 UTC start: site times are CET),
    three treatments, resolved, one step back with the allergist's sign-off."""
    bedside.start()
    bedside.advance(20)
    for row in range(1, 9):
        bedside.run_row(row)
    bedside.run_row(9, 5, stop=False)
    bedside.record("reaction", symptoms=["itching", "dyspnea"], grade="moderate", phenotype="type-i")
    for minutes, treatment, dose in (
        (1, "antihistamine-h1", "diphenhydramine 50 mg IV"),
        (2, "famotidine", "20 mg IV"),
        (3, "methylprednisolone", "125 mg IV"),
    ):
        bedside.advance(minutes)
        bedside.record("treatment", treatment=treatment, dose=dose)
    bedside.advance(15)
    bedside.record("resolved")
    bedside.advance(2)
    bedside.record("resume", option="back-one-step", allergist=ALLERGIST)


def _rows(html: str) -> dict[str, list[str]]:
    table = html[html.index('id="schedule-heading"') :]
    table = table[: table.index("</table>")]
    return {
        text_of(m.group(1)): [text_of(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", m.group(2), re.S)]
        for m in re.finditer(r'<tr><th scope="row">(\d+)</th>(.*?)</tr>', table, re.S)
    }


def test_a_decided_reaction_stays_on_the_flowsheet_with_everything_a_nurse_taking_over_needs(
    launcher: Launcher, ehr: FakeEhr, app: Flask
) -> None:
    sid, bedside = launched_with_a_bedside_session(launcher, ehr, app)
    _moderate_reaction_at_step_9_decided(bedside)
    [reaction] = bedside.state.reactions
    onset = reaction.onset.astimezone(app.extensions["fhir_desens"].settings.zone).strftime("%H:%M")
    html = flowsheet(launcher, sid, bedside)
    text = text_of(html)

    # the heading facts point to it
    assert re.search(rf"Reactions 1 : moderate, step 9 at {onset}", text), text[:1200]
    # the step's row says what happened in it, in words
    step_9 = _rows(html)["9"]
    assert f"Reaction at {onset}, moderate: Itching, Shortness of breath" in step_9
    assert step_9[-1] == "stopped by a reaction"

    # the reaction itself, after the decision
    section = text_of(html[html.index('id="reactions-recorded"') : html.index('id="schedule-heading"')])
    assert f"Reaction 1: moderate, at {onset} in step 9" in section
    assert f"When {onset}, 5 min into step 9" in section
    assert "(Step 9)" not in section  # the step is not said twice
    assert re.search(r"Given so far \d[\d.]* mL of the step; 4\.4\d* mg in all", section), section
    assert "Symptoms Itching, Shortness of breath" in section
    assert "Grade (Brown) moderate" in section and "Phenotype Type I-like (IgE / mast cell)" in section
    treatments = section[section.index("Treatments") : section.index("Resolved")]
    for words in (
        "H1 antihistamine (e.g. diphenhydramine IV) diphenhydramine 50 mg IV at ",
        "Famotidine IV 20 mg IV at ",
        "Methylprednisolone IV 125 mg IV at ",
    ):
        assert words in treatments, treatments
    assert re.search(r"Resolved \d\d:\d\d", section)
    assert re.search(r"Decision Go back one step at \d\d:\d\d \(", section)
    assert f"Allergist sign-off {ALLERGIST}" in section


def test_an_open_reaction_is_not_shown_twice(launcher: Launcher, ehr: FakeEhr, app: Flask) -> None:
    """While it is handled, its handling section shows it; the record of decided reactions comes after."""
    sid, bedside = launched_with_a_bedside_session(launcher, ehr, app)
    bedside.start()
    bedside.advance(20)
    bedside.mild_reaction_during(3, 4)
    html = flowsheet(launcher, sid, bedside)
    assert 'id="reactions-recorded"' not in html and 'id="handling-heading"' in html
    assert "paused by a reaction" in _rows(html)["3"]


def _flowsheet_after_a_moderate_reaction(launcher: Launcher, ehr: FakeEhr, app: Flask) -> tuple[str, Bedside]:
    sid, bedside = launched_with_a_bedside_session(launcher, ehr, app)
    bedside.start()
    bedside.advance(20)
    for row in range(1, 3):
        bedside.run_row(row)
    bedside.run_row(3, 4, stop=False)
    bedside.record("reaction", symptoms=["dyspnea"], grade="moderate", phenotype="type-i")
    bedside.advance(10)
    bedside.record("resolved")
    return sid, bedside


def _sign_off_box(html: str) -> tuple[str, str]:
    """The allergist box's value and its hint, as the resume form shows them."""
    [box] = re.findall(r'<input id="allergist"[^>]*>', html)
    value = re.search(r'value="([^"]*)"', box)
    [hint] = re.findall(r'<p class="sub" id="allergist-hint">(.*?)</p>', html, re.S)
    return (value.group(1) if value else ""), text_of(hint)


def test_the_allergist_box_says_what_to_enter(launcher: Launcher, ehr: FakeEhr, app: Flask) -> None:
    """Walk session 8: a bare text box; a nurse could not tell whether a name, initials or a code was wanted."""
    sid, bedside = _flowsheet_after_a_moderate_reaction(launcher, ehr, app)
    value, hint = _sign_off_box(flowsheet(launcher, sid, bedside))
    assert value == ""  # the signed-in user is not shown to be an allergist: nobody is offered
    assert "full name of the allergist who agreed to resume" in hint and "recorded as typed" in hint


def test_a_signed_in_allergist_is_offered_and_the_sign_off_is_recorded_as_submitted(
    launcher: Launcher, ehr: FakeEhr, app: Flask
) -> None:
    ehr.add_resource(ALLERGIST_USER)  # the launch's fhirUser, Practitioner/7, qualified in allergy
    sid, bedside = _flowsheet_after_a_moderate_reaction(launcher, ehr, app)
    html = flowsheet(launcher, sid, bedside)
    value, hint = _sign_off_box(html)
    assert value == "Dr. Amara Okoro"
    assert (
        "you are signed in as an allergist (qualification: Board certification: Allergy and Immunology)"
        in hint
    )
    # what is submitted is recorded: another allergist's name typed over the offer
    response = post_entry(launcher, app, sid, bedside, kind="resume", entry_id="resume-1",
                          option="back-one-step", allergist="Dr. Jane Smith (by phone)")  # fmt: skip
    assert response.status_code == 303
    assert bedside.record_to is not None
    [reaction] = bedside.record_to.load(bedside.session_id).reactions
    assert reaction.resumed is not None and reaction.resumed["allergist"] == "Dr. Jane Smith (by phone)"
    assert "Allergist sign-off Dr. Jane Smith (by phone)" in text_of(flowsheet(launcher, sid, bedside))


def test_a_nurse_taking_over_sees_who_recorded_the_reaction_and_decided_by_name(
    launcher: Launcher, ehr: FakeEhr, app: Flask
) -> None:
    """The app may read only the signed-in user's own Practitioner: another user's entries read
    "Practitioner/7" to the nurse taking over. Each user's name is kept with the session when they record."""
    ehr.add_resource(ALLERGIST_USER)  # Practitioner/7, Dr. Amara Okoro, records the reaction and decides
    sid, bedside = _flowsheet_after_a_moderate_reaction(launcher, ehr, app)
    response = post_entry(launcher, app, sid, bedside, kind="resume", entry_id="resume-by-7",
                          option="back-one-step", allergist="Dr. Amara Okoro")  # fmt: skip
    assert response.status_code == 303
    ehr.practitioner_id = "8"  # the next nurse, in a launch of their own
    ehr.add_resource({"resourceType": "Practitioner", "id": "8", "name": [{"text": "Nora Nightingale, RN"}]})
    taking_over = launcher.launch(PATIENT)
    text = text_of(flowsheet(launcher, taking_over, bedside))
    assert "Recording as Nora Nightingale, RN" in text
    assert re.search(r"Decision Go back one step at \d\d:\d\d \(Dr\. Amara Okoro\)", text), text
    assert "Practitioner/7" not in text


def test_a_recorder_whose_name_the_app_never_read_is_said_in_words_not_as_a_reference(
    launcher: Launcher, ehr: FakeEhr, app: Flask
) -> None:
    """The session's first nurse (Practitioner/nurse-1) left no name the app could read: the nurse taking
    over reads "name not readable from the EHR" beside each of their entries, with the reference kept
    small for support, never a bare "Practitioner/nurse-1" where a name belongs."""
    _, bedside = _flowsheet_after_a_moderate_reaction(launcher, ehr, app)
    ehr.practitioner_id = "8"
    ehr.add_resource({"resourceType": "Practitioner", "id": "8", "name": [{"text": "Nora Nightingale, RN"}]})
    text = text_of(flowsheet(launcher, launcher.launch(PATIENT), bedside))
    assert "36.8 name not readable from the EHR (Practitioner/nurse-1)" in text, text
    assert not re.search(r"(?<!\()Practitioner/nurse-1", text), text
