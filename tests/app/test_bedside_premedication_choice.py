"""The bedside's 'Premedication given' list does not offer as given a premedication signed as not to be given
(PLAN-PREMED-1: the allergy list rules it out): it stays in the list, unselectable, saying why."""

from __future__ import annotations

import dataclasses
import re

from flask import Flask

from fhir_desens.course.draft import plan_for
from fhir_desens.protocol.library import builtin_protocols
from tests.app.conftest import Launcher
from tests.app.fake_ehr import FakeEhr
from tests.app.flowsheet import flowsheet, launched_with_a_bedside_session
from tests.bedside_session import carboplatin_draft
from tests.html import text_of


def _options(html: str) -> dict[str, str]:
    [select] = re.findall(r'<select id="premed-name" name="name"[^>]*>(.*?)</select>', html, re.S)
    return {value: tag for value, tag in re.findall(r'<option value="([^"]+)"([^>]*>[^<]*)</option>', select)}


def test_a_premedication_signed_as_not_to_be_given_cannot_be_chosen_as_given(
    launcher: Launcher, ehr: FakeEhr, app: Flask
) -> None:
    sid, bedside = launched_with_a_bedside_session(launcher, ehr, app)
    draft = dataclasses.replace(carboplatin_draft(bedside.patient), premedications_withheld=("aspirin",))
    bedside.draft, bedside.plan = draft, plan_for(draft, builtin_protocols())
    bedside.start()
    options = _options(flowsheet(launcher, sid, bedside))
    assert " disabled" in options["aspirin"].split(">")[0]
    assert text_of(options["aspirin"].split(">", 1)[1]) == (
        "aspirin: do not give (signed as not to be given: the allergy list rules it out)"
    )
    assert all(" disabled" not in tag.split(">")[0] for name, tag in options.items() if name != "aspirin")
    assert "montelukast" in options and "diphenhydramine" in options
