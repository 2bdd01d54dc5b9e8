"""A refused bedside entry names the field as the flowsheet labels it and says what is accepted in words:
a vital sign refused as "heart_rate: ..." made the nurse guess which box was wrong (rule 4: no internal codes)."""

from __future__ import annotations

import re

import pytest
from flask import Flask

from fhir_desens.course.bedside import reactions as rx
from fhir_desens.course.bedside.vitals import MEASURES
from fhir_desens.errors import InputError
from fhir_desens.protocol.display import moment_text
from smart_app.bedside.forms import FIELDS, LISTS
from smart_app.bedside.page import FIELD_WORDS, error_text
from tests.app.conftest import Launcher
from tests.app.fake_ehr import FakeEhr
from tests.app.flowsheet import launched_with_a_bedside_session
from tests.bedside_session import VITALS as VITALS_OK
from tests.bedside_session import Bedside
from tests.html import text_of

VITALS = {"systolic": "120", "diastolic": "80", "heart_rate": "400", "respiratory_rate": "16", "spo2": "98"}


def _post(launcher: Launcher, app: Flask, sid: str, session_id: str, data: dict[str, str], **headers: str):  # type: ignore[no-untyped-def]
    token = str(app.extensions["fhir_desens"].store.get("session", sid)["csrf"])
    return launcher.client.post(
        f"/s/{sid}/bedside/{session_id}", data={"csrf_token": token, **data}, headers=headers
    )


def test_an_impossible_heart_rate_is_refused_as_heart_rate_with_the_range(
    launcher: Launcher, ehr: FakeEhr, app: Flask
) -> None:
    sid, bedside = launched_with_a_bedside_session(launcher, ehr, app)
    bedside.start()
    data = {"kind": "vitals", "entry_id": "vitals-impossible-hr-1", **VITALS}
    response = _post(launcher, app, sid, bedside.session_id, data)
    assert response.status_code == 400
    text = text_of(response.get_data(as_text=True))
    assert "Heart rate: 400 is not a possible heart rate (accepted: 20 to 300 /min)" in text, text[:800]
    assert "heart_rate" not in text
    scripted = _post(
        launcher, app, sid, bedside.session_id, {**data, "entry_id": "vitals-impossible-hr-2"},
        Accept="application/json",
    )  # fmt: skip
    assert scripted.status_code == 400 and scripted.json is not None
    assert scripted.json["message"].startswith("Heart rate: 400") and scripted.json["field"] == "heart_rate"


@pytest.mark.parametrize("field", sorted({f for fs in FIELDS.values() for f in fs} | set(LISTS.values())))
def test_every_posted_bedside_field_has_words(field: str) -> None:
    assert field in FIELD_WORDS and "_" not in FIELD_WORDS[field]
    assert not error_text(InputError(field, "is wrong")).startswith(field + ":")


def test_a_refusal_of_a_field_without_words_never_shows_its_key() -> None:
    assert error_text(InputError("entry_id", "missing or malformed", "a UUID")) == (
        "Missing or malformed (accepted: a UUID)"
    )


def test_the_choices_a_refusal_offers_are_the_form_s_words() -> None:
    with pytest.raises(InputError) as refused:
        rx.choice("type-1", rx.PHENOTYPES, "phenotype")
    assert refused.value.accepted is not None and "Type I-like (IgE / mast cell)" in refused.value.accepted
    assert "type-i;" not in refused.value.accepted and "cytokine-release" not in refused.value.accepted
    assert "Hives (urticaria)" in rx.OFFERED and "abdominal-pain" not in rx.OFFERED
    assert {m.label for m in MEASURES} <= set(FIELD_WORDS.values())


@pytest.mark.parametrize("field", ["checklist", "at", "observation_end", "discharge_vitals", "target", "row"])
def test_the_fields_the_session_refuses_have_words(field: str) -> None:
    assert field in FIELD_WORDS and "_" not in FIELD_WORDS[field]


def test_a_time_refusal_writes_the_earliest_time_as_every_page_does() -> None:
    """ "accepted: 2026-12-02T09:00+00:00 or later" was the record's timestamp, not a time as the pages write it."""
    bedside = Bedside()
    bedside.start()
    with pytest.raises(InputError) as refused:
        bedside.record("vitals", at=bedside.at(-30), **VITALS_OK)
    assert refused.value.field == "at" and refused.value.accepted == f"{moment_text(bedside.now)} or later"
    assert re.fullmatch(r"\d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d \S+ or later", str(refused.value.accepted))


def test_a_resume_refusal_offers_the_options_as_the_radio_buttons_read() -> None:
    refused = InputError("option", "'' is not a resume option here", "back-one-step, stop")
    assert error_text(refused) == (
        "How to continue: '' is not a resume option here (accepted: Go back one step; Stop the desensitization)"
    )


def test_resuming_without_a_choice_asks_for_one_in_words() -> None:
    bedside = Bedside()
    bedside.start()
    bedside.advance(20)
    bedside.mild_reaction_during(3, 5)
    bedside.advance(20)
    bedside.record("resolved")
    with pytest.raises(InputError) as refused:
        bedside.record("resume")
    text = error_text(refused.value)
    assert (
        text.startswith("How to continue: choose how to continue (accepted: ") and "Go back one step" in text
    )
    assert "back-one-step" not in text
