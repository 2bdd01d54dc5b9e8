"""What a nurse tripped on walking the flowsheet (session 6): hives offered twice under two codes, the pump's
volume to be infused written to 0.01 mL, symptom checks shown as record keys ("abdominal-pain"), and a
reaction's severity preselected as "Mild"."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from flask import Flask

from fhir_desens.course.bedside import reactions as rx
from fhir_desens.course.bedside.record import BedsideRecord
from fhir_desens.course.draft import plan_for
from fhir_desens.errors import InputError
from fhir_desens.protocol.library import builtin_protocols
from tests.app.conftest import Launcher
from tests.app.fake_ehr import FakeEhr
from tests.app.flowsheet import (
    flowsheet,
    launched_with_a_bedside_session,
    launched_with_step_one_running,
    post_entry,
)
from tests.bedside_session import VITALS, Bedside, carboplatin_draft
from tests.html import text_of


def _reaction_form(html: str) -> str:
    [form] = re.findall(r'<section id="reaction".*?</section>', html, re.S)
    return str(form)


def _refused_reaction(launcher: Launcher, app: Flask, sid: str, bedside: Bedside, **fields: str) -> str:
    """The page's words after posting a reaction with itching and ``fields`` (asserted refused: 400)."""
    response = post_entry(launcher, app, sid, bedside, kind="reaction", symptoms="itching", **fields)
    assert response.status_code == 400
    return text_of(response.get_data(as_text=True))


def test_hives_are_one_symptom_with_one_code() -> None:
    labels = [s.label.lower() for s in rx.SYMPTOMS]
    codes = [s.code for s in rx.SYMPTOMS]
    assert len(set(codes)) == len(codes) and len(set(labels)) == len(labels)
    hives = [s for s in rx.SYMPTOMS if "hives" in s.label.lower() or "urticaria" in s.label.lower()]
    assert [(s.key, s.code) for s in hives] == [("urticaria", "126485001")]
    assert "wheal" not in rx.OFFERED


def test_the_reaction_form_offers_hives_once_and_no_preselected_grade(
    launcher: Launcher, ehr: FakeEhr, app: Flask
) -> None:
    sid, bedside = launched_with_step_one_running(launcher, ehr, app)
    form = _reaction_form(flowsheet(launcher, sid, bedside))
    symptoms = re.findall(r'name="symptoms" value="([^"]+)"> ([^<]+)</label>', form)
    assert [label for _, label in symptoms if "ives" in label or "rticaria" in label] == ["Hives (urticaria)"]
    [grade] = re.findall(r'<select id="r-grade" name="grade"[^>]*>(.*?)</select>', form, re.S)
    assert re.search(r"<option value=\"\" selected disabled>", grade)
    assert re.findall(r'value="([^"]*)"', grade) == ["", "mild", "moderate", "severe"]
    assert " required" in re.findall(r'<select id="r-grade"[^>]*>', form)[0]


def test_a_reaction_without_a_grade_is_refused_naming_the_grade(
    launcher: Launcher, ehr: FakeEhr, app: Flask
) -> None:
    sid, bedside = launched_with_step_one_running(launcher, ehr, app)
    text = _refused_reaction(
        launcher, app, sid, bedside, entry_id="reaction-without-grade-1", grade="", phenotype="type-i"
    )
    assert "Not recorded." in text and "Grade (Brown): choose the severity" in text, text[:800]
    assert not bedside.state.reactions


def test_a_session_recorded_with_wheals_still_shows_them_in_words(
    launcher: Launcher, ehr: FakeEhr, app: Flask
) -> None:
    """An older session recorded "wheal" (Wheal (finding) 247472004): it is still read and shown."""
    sid, bedside = launched_with_step_one_running(launcher, ehr, app)
    bedside.record("step-stop", row=1)
    bedside.record("symptom-check", row=1, symptoms=["wheal", "abdominal-pain"])
    bedside.run_row(2, 5, stop=False)
    bedside.record("reaction", symptoms=["itching", "wheal"], grade="mild", phenotype="type-i")
    [reaction] = bedside.state.reactions
    assert [s.code for s in reaction.symptoms] == ["418290006", "247472004"]
    text = text_of(flowsheet(launcher, sid, bedside))
    assert "Itching, Wheals / hives" in text
    assert "Wheals / hives, Abdominal pain" in text and "abdominal-pain" not in text


def test_the_pump_volume_to_be_infused_is_written_as_the_steps_table(
    launcher: Launcher, ehr: FakeEhr, app: Flask
) -> None:
    sid, bedside = launched_with_a_bedside_session(launcher, ehr, app)
    bedside.start()
    bedside.run_row(1)
    text = text_of(flowsheet(launcher, sid, bedside))
    # step 2 runs 1.25 mL: the pump takes 0.1 mL (the steps table's "1.3"), not "1.25"
    assert "Next: Step 2" in text and "volume to be infused 1.3 mL" in text, text[:1500]
    assert "1.25 mL" not in text


def test_no_treatment_is_preselected_and_one_is_required(
    launcher: Launcher, ehr: FakeEhr, app: Flask
) -> None:
    """The treatment list opened on "Epinephrine IM": one careless click recorded epinephrine as given."""
    sid, bedside = launched_with_step_one_running(launcher, ehr, app)
    bedside.record("reaction", symptoms=["itching"], grade="mild", phenotype="type-i")
    html = flowsheet(launcher, sid, bedside)
    [select] = re.findall(r'<select id="t-kind" name="treatment"[^>]*>(.*?)</select>', html, re.S)
    assert (
        re.findall(r'value="([^"]*)"', select)[0] == "" and "selected disabled>Choose the treatment" in select
    )
    with pytest.raises(InputError) as refused:
        bedside.record("treatment", dose="diphenhydramine 50 mg IV")
    assert refused.value.field == "treatment" and "Epinephrine IM" in str(refused.value.accepted)
    assert not bedside.state.reactions[0].treatments


def test_a_symptom_box_never_wraps_away_from_its_words() -> None:
    css = (Path(__file__).parents[2] / "smart_app" / "static" / "app.css").read_text("utf-8")
    assert re.search(r"#bedside fieldset label \{[^}]*white-space: nowrap", css)


def test_an_oral_penicillin_flowsheet_says_units_not_the_ucum_code(
    launcher: Launcher, ehr: FakeEhr, app: Flask
) -> None:
    """Penicillin V's flowsheet read "1,296,700 of 1,296,700 [iU]" and "100 [iU]" in every row, and its
    heading named the ordered penicillin G benzathine (an injection) above doses of penicillin V by mouth."""
    ehr.load_fixture("penicillin-pregnancy")
    sid = launcher.launch("penicillin-pregnancy")
    services = app.extensions["fhir_desens"]
    draft = dataclasses.replace(
        carboplatin_draft("Patient/penicillin-pregnancy"),
        drug="Penicillin G benzathine",  # the order's drug; the protocol gives penicillin V by mouth
        drug_rxnorm=(),
        target="2400000 [iU]",
        protocol_id="penicillin-v-oral-wendel",
        final_rate_ml_h=None,
        bag_volume_ml=None,
    )
    bedside = Bedside(
        plan=plan_for(draft, builtin_protocols()),
        draft=draft,
        record_to=BedsideRecord(services.record_store(), builtin_protocols(), services.now),
        patient="Patient/penicillin-pregnancy",
    )
    bedside.start(step_requests={n: f"MedicationRequest/mr{n}" for n in range(1, 15)})
    bedside.run_row(1)
    text = text_of(flowsheet(launcher, sid, bedside))
    assert "[iU]" not in text
    assert "100 units of 1,296,700 units" in text and "100 units" in text
    assert "Stop the infusion" not in text and "Give no further dose." in text  # a dose by mouth: no infusion
    assert (
        "Bedside: Penicillin V potassium (given for the order of penicillin G benzathine) 1,296,700 units"
        in text
    )


def test_no_phenotype_is_preselected_and_a_reaction_without_one_is_refused_in_words(
    launcher: Launcher, ehr: FakeEhr, app: Flask
) -> None:
    """The phenotype list opened on "Type I-like": a reaction recorded in a hurry got a phenotype nobody judged."""
    sid, bedside = launched_with_step_one_running(launcher, ehr, app)
    form = _reaction_form(flowsheet(launcher, sid, bedside))
    [select] = re.findall(r'<select id="r-phenotype" name="phenotype"[^>]*>(.*?)</select>', form, re.S)
    assert re.search(r"<option value=\"\" selected disabled>Choose the phenotype", select)
    assert re.findall(r'value="([^"]*)"', select) == ["", *rx.PHENOTYPES]
    assert " required" in re.findall(r'<select id="r-phenotype"[^>]*>', form)[0]
    text = _refused_reaction(
        launcher, app, sid, bedside, entry_id="reaction-without-phenotype-1", grade="mild"
    )
    assert "Not recorded." in text and "Phenotype: choose the kind of reaction" in text, text[:800]
    assert "Type I-like (IgE / mast cell)" in text and "type-i" not in text
    assert not bedside.state.reactions


def test_no_premedication_is_preselected_as_given(launcher: Launcher, ehr: FakeEhr, app: Flask) -> None:
    """The premedication list opened on the first drug: one click recorded diphenhydramine as given."""
    sid, bedside = launched_with_a_bedside_session(launcher, ehr, app)
    bedside.start()
    html = flowsheet(launcher, sid, bedside)
    [tag, select] = re.findall(r'(<select id="premed-name" name="name"[^>]*>)(.*?)</select>', html, re.S)[0]
    assert " required" in tag
    assert re.findall(r'value="([^"]*)"', select)[0] == ""
    assert "selected disabled>Choose the premedication given" in select


def test_a_last_step_stopped_short_offers_the_rest_or_ending_as_stopped(
    launcher: Launcher, ehr: FakeEhr, app: Flask
) -> None:
    """Walk 9: the final step stopped 15 min in read "All steps given" with 60 mg of 400 mg given, and the
    only outcome offered, "full dose given", was refused with nothing left to start."""
    sid, bedside = launched_with_a_bedside_session(launcher, ehr, app)
    bedside.start()
    for row in range(1, 12):
        bedside.run_row(row)
    bedside.run_row(12, 15)
    html = flowsheet(launcher, sid, bedside)
    page = text_of(html)
    assert "All steps given" not in page
    assert "Step 12 stopped before the full dose was in" in page and "Start it again for the rest" in page
    assert re.search(r'name="row" value="12">', html)
    assert "End the session early" in page
    [outcome] = re.findall(r'<select id="c-outcome" name="outcome">(.*?)</select>', html, re.S)
    assert re.findall(r'<option value="([^"]+)"', outcome) == ["stopped"]


def test_a_session_may_end_early_between_steps_without_a_reaction(
    launcher: Launcher, ehr: FakeEhr, app: Flask
) -> None:
    """Walk 9: with the IV line lost (or the patient declining) between steps, the flowsheet offered no way
    to end the session: "Complete the session" appeared only after the last step."""
    sid, bedside = launched_with_a_bedside_session(launcher, ehr, app)
    bedside.start()
    ready = flowsheet(launcher, sid, bedside)
    assert '<details id="end-early"' in ready  # before the first step too (the patient declines)
    for row in range(1, 6):
        bedside.run_row(row)
    html = flowsheet(launcher, sid, bedside)
    [folded] = re.findall(r'<details id="end-early".*?</details>', html, re.S)
    assert "End the session early" in text_of(folded) and "Complete the session" not in text_of(html)
    [outcome] = re.findall(r'<select id="c-outcome" name="outcome">(.*?)</select>', folded, re.S)
    assert re.findall(r'<option value="([^"]+)"', outcome) == ["stopped"]
    assert 'name="reason"' in folded and "End the session as stopped" in folded
    bedside.record("vitals", **VITALS)
    bedside.record("complete", outcome="stopped", reason="IV line lost", observation_end=bedside.at(),
                   next_dose="re-desensitize")  # fmt: skip
    ended = flowsheet(launcher, sid, bedside)
    assert bedside.state.phase == "stopped" and '<details id="end-early"' not in ended
