"""The next dose after a session, as the nurse and the chart read it (docs/requirements.md, tolerance window).

Carboplatin is desensitized at every administration: the completion form offers only a new desensitization,
completion refuses "continuous" (the course layer, whatever posts it), and an older record that says it never
reads "Next dose: continuous" (an internal code, and wrong for the drug). The
outcome for the chart writes the dose by the display policy ("1,000 mg", not "1000 mg")."""

from __future__ import annotations

import dataclasses
import re
import uuid

import pytest
from flask import Flask

from fhir_desens.course.bedside import next_dose as nd
from fhir_desens.course.bedside.entries import NewEntry
from fhir_desens.course.bedside.fhir_map import _procedure_notes
from fhir_desens.course.bedside.record import BedsideRecord
from fhir_desens.course.bedside.summary import summarize
from fhir_desens.course.draft import plan_for
from fhir_desens.drugs.tolerance import rule_for
from fhir_desens.errors import InputError
from fhir_desens.protocol.crossreactivity import DrugRef
from fhir_desens.protocol.library import builtin_protocols
from tests.app.conftest import Launcher
from tests.app.fake_ehr import FakeEhr
from tests.bedside_session import NURSE, VITALS, Bedside, carboplatin_draft
from tests.html import text_of

PATIENT = "carboplatin-ovarian"


def _session(app: Flask, target: str = "400 mg") -> Bedside:
    services = app.extensions["fhir_desens"]
    record = BedsideRecord(services.record_store(), builtin_protocols(), services.now)
    draft = dataclasses.replace(carboplatin_draft(f"Patient/{PATIENT}"), target=target)
    return Bedside(
        plan=plan_for(draft, builtin_protocols()), draft=draft, record_to=record, patient=f"Patient/{PATIENT}"
    )


def _until_observation(bedside: Bedside) -> None:
    bedside.start()
    bedside.advance(20)
    for row in bedside.state.rows:
        bedside.run_row(row.number)
    bedside.advance(30)
    bedside.record("vitals", **VITALS)


def test_carboplatin_completion_offers_only_a_new_desensitization(
    launcher: Launcher, ehr: FakeEhr, app: Flask
) -> None:
    ehr.load_fixture(PATIENT)
    sid = launcher.launch(PATIENT)
    bedside = _session(app)
    _until_observation(bedside)
    html = launcher.get(f"/s/{sid}/bedside/{bedside.session_id}").get_data(as_text=True)
    [select] = re.findall(r'<select id="c-next" name="next_dose">(.*?)</select>', html)
    assert re.findall(r'value="([^"]+)"', select) == ["re-desensitize"]
    assert "Continue on schedule" not in select


def test_a_finished_carboplatin_session_says_the_next_dose_is_a_new_desensitization(
    launcher: Launcher, ehr: FakeEhr, app: Flask
) -> None:
    ehr.load_fixture(PATIENT)
    sid = launcher.launch(PATIENT)
    bedside = _session(app)
    _until_observation(bedside)
    # an older record (written before completion refused it) that says "continuous" for carboplatin
    older = NewEntry(
        str(uuid.uuid4()), bedside.session_id, "complete", _completion(bedside, nd.CONTINUOUS), NURSE
    )
    assert bedside.record_to is not None
    bedside.record_to.store.append(older)  # no check: as it was stored then
    bedside.entries = bedside.record_to.entries(bedside.session_id)
    page = text_of(launcher.get(f"/s/{sid}/bedside/{bedside.session_id}").get_data(as_text=True))
    assert (
        "Next dose: a new desensitization (platinum compounds are desensitized at every administration)"
        in page
    )
    assert "continuous" not in page
    assert "release it when the next dose is to be given at the standard rate" not in page
    record = text_of(launcher.get(f"/s/{sid}/bedside/{bedside.session_id}/record").get_data(as_text=True))
    assert "a new desensitization" in record and "continue dosing on schedule" not in record
    notes = _procedure_notes(bedside.state)
    assert "Next dose: a new desensitization" in notes[-1] and "Continue dosing" not in notes[-1]


def _completion(bedside: Bedside, next_dose: str) -> dict[str, str]:
    return {
        "at": bedside.at(),
        "outcome": "completed",
        "observation_end": bedside.at(),
        "next_dose": next_dose,
    }


def test_completion_refuses_continuous_dosing_for_a_drug_desensitized_at_every_administration() -> None:
    bedside = Bedside()
    _until_observation(bedside)
    with pytest.raises(InputError) as refused:
        bedside.record("complete", **_completion(bedside, nd.CONTINUOUS))
    assert refused.value.field == "next_dose" and refused.value.accepted is not None
    assert refused.value.accepted.startswith(nd.RE_DESENSITIZE)
    assert "carboplatin" in refused.value.problem and "every administration" in refused.value.problem
    assert bedside.state.completion is None
    bedside.record("complete", **_completion(bedside, nd.RE_DESENSITIZE))
    assert bedside.state.completion is not None


def test_completion_accepts_continuous_dosing_when_tolerance_lasts_while_dosed() -> None:
    draft = dataclasses.replace(carboplatin_draft(), drug="ceftriaxone", drug_rxnorm=("2193",), target="2 g")
    bedside = Bedside(plan=plan_for(draft, builtin_protocols()), draft=draft)
    _until_observation(bedside)
    bedside.record("complete", **_completion(bedside, nd.CONTINUOUS))
    state = bedside.state
    assert state.completion is not None and nd.continues(state.completion["next_dose"], nd.rule_of(state))


def test_the_outcome_and_the_session_notes_write_the_dose_by_the_display_policy(
    launcher: Launcher, ehr: FakeEhr, app: Flask
) -> None:
    ehr.load_fixture(PATIENT)
    sid = launcher.launch(PATIENT)
    bedside = _session(app, "1000 mg")
    bedside.reaction_at_step_11()
    assert summarize(bedside.state).dose == "1,000 mg"
    assert "target 1,000 mg; given 1,000 mg." in _procedure_notes(bedside.state)[0]
    preview = text_of(launcher.get(f"/s/{sid}/outcome/{bedside.session_id}").get_data(as_text=True))
    assert "carboplatin 1,000 mg" in preview
    assert "1000 mg" not in preview


def test_the_next_dose_choices_follow_the_drugs_maintenance_rule() -> None:
    carboplatin = rule_for(DrugRef("carboplatin"))
    ceftriaxone = rule_for(DrugRef("ceftriaxone"))
    assert [c.value for c in nd.choices(carboplatin)] == [nd.RE_DESENSITIZE]
    kept, new = nd.choices(ceftriaxone)
    assert (kept.value, new.value) == (nd.CONTINUOUS, nd.RE_DESENSITIZE) and "within 48 h" in kept.label
    # no rule on file: tolerance cannot be assumed, so a new desensitization is preselected
    assert [c.value for c in nd.choices(None)] == [nd.RE_DESENSITIZE, nd.CONTINUOUS]
    assert nd.words(nd.CONTINUOUS, ceftriaxone).startswith("continue dosing on schedule")
    assert nd.words(nd.CONTINUOUS, carboplatin).startswith("a new desensitization")
    assert not nd.continues(nd.CONTINUOUS, carboplatin) and nd.continues(nd.CONTINUOUS, ceftriaxone)
    assert nd.words(None, ceftriaxone) == "—"
