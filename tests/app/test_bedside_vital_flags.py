"""Vital signs out of range are flagged in words, in the table and when they are recorded (walk session 8:
a reaction's heart rate 104, respiratory rate 22 and SpO2 94 carried no flag, though the README promises range
flags; the first ranges let heart rate to 120, respiratory rate to 24 and SpO2 down to 92 % pass)."""

from __future__ import annotations

import re
from decimal import Decimal

from flask import Flask
from hypothesis import given
from hypothesis import strategies as st

from fhir_desens.course.bedside.vitals import MEASURES, Measure, VitalSigns, flag_words, parse_vitals
from tests.app.conftest import Launcher
from tests.app.fake_ehr import FakeEhr
from tests.app.flowsheet import flowsheet, launched_with_step_one_running, post_entry
from tests.bedside_session import VITALS
from tests.html import text_of

DURING_THE_REACTION = {**VITALS, "systolic": "108", "diastolic": "66", "heart_rate": "104",
                       "respiratory_rate": "22", "spo2": "94"}  # fmt: skip


def test_the_walks_reaction_vitals_are_each_flagged_and_baseline_values_are_not() -> None:
    signs = parse_vitals(DURING_THE_REACTION)
    assert signs.flags(parse_vitals(VITALS)) == {
        "heart_rate": "high",
        "respiratory_rate": "high",
        "spo2": "low",
    }
    assert parse_vitals(VITALS).flags() == {}
    assert flag_words("heart_rate", "high") == "high, above 100 /min"
    assert flag_words("respiratory_rate", "high") == "high, above 20 /min"
    assert flag_words("spo2", "low") == "low, below 95 %"


@given(st.sampled_from([m for m in MEASURES if m.field != "diastolic"]), st.integers(-30, 30))
def test_a_value_is_flagged_exactly_when_it_is_outside_its_expected_range(
    field: Measure, offset: int
) -> None:
    """BED-14: outside the expected range -> flagged, the words naming the limit passed."""
    low, high = field.expected
    value = (high if offset > 0 else low) + Decimal(offset) / 10
    signs = VitalSigns({field.field: value})
    flag = signs.flags().get(field.field)
    assert (flag is not None) == (value < low or value > high)
    if flag is not None:
        limit = high if value > high else low
        assert f"{limit} {field.unit_text}" in flag_words(field.field, flag)


def test_the_table_and_the_confirmation_say_which_values_are_out_of_range(
    launcher: Launcher, ehr: FakeEhr, app: Flask
) -> None:
    sid, bedside = launched_with_step_one_running(launcher, ehr, app)
    bedside.advance(5)
    response = post_entry(launcher, app, sid, bedside, kind="vitals", entry_id="vitals-reaction-1",
                          **DURING_THE_REACTION)  # fmt: skip
    assert response.status_code == 303
    assert "recorded=vitals-reaction-1" in response.headers["Location"]
    page = launcher.get(response.headers["Location"].split("#")[0]).get_data(as_text=True)
    [confirmation] = re.findall(r'id="vitals-recorded">(.*?)</div>', page, re.S)
    words = text_of(confirmation)
    assert "Out of the expected range" in words
    assert "Heart rate 104 /min: high, above 100 /min" in words
    assert "Respiratory rate 22 /min: high, above 20 /min" in words
    assert "Oxygen saturation 94 %: low, below 95 %" in words
    assert "Systolic" not in words  # 108 is within range

    table = text_of(page[page.index('id="vitals-table-heading"') :])
    assert "Flagged in words when outside: " in table and "heart rate 50 to 100 /min" in table
    assert (
        re.search(r"104 high\b", table) and re.search(r"22 high\b", table) and re.search(r"94 low\b", table)
    )
    # a set in range is confirmed as such, and the flowsheet without the confirmation shows none
    response = post_entry(launcher, app, sid, bedside, kind="vitals", entry_id="vitals-normal-1", **VITALS)
    page = launcher.get(response.headers["Location"].split("#")[0]).get_data(as_text=True)
    assert "recorded; all within the expected ranges" in text_of(page)
    assert 'id="vitals-recorded"' not in flowsheet(launcher, sid, bedside)
