"""The tolerance window: per drug rule, per source of the last dose, green / amber / red."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_desens.drugs.tolerance import (
    DoseEvidence,
    DoseSource,
    ToleranceStatus,
    assess,
    maintenance_rules,
    rule_for,
)
from fhir_desens.errors import InputError
from fhir_desens.protocol.crossreactivity import DrugRef

SESSION = DoseSource.APP_RECORD
ADMINISTRATION = DoseSource.EHR_ADMINISTRATION
SCHEDULE = DoseSource.ORDER_SCHEDULE

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
TMP_SMX = DrugRef("Bactrim DS")
CEFTRIAXONE = DrugRef("ceftriaxone 2 g IV")
CARBOPLATIN = DrugRef("carboplatin")


def dose(hours: float, source: DoseSource = SESSION, **extra: str) -> DoseEvidence:
    return DoseEvidence(T0 + timedelta(hours=hours), source, **extra)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


# -- the rules --------------------------------------------------------------------------------


@pytest.mark.requirement("TOL-1")
@pytest.mark.parametrize(
    ("drug", "rule_id", "window"),
    [
        (DrugRef("sulfamethoxazole / trimethoprim"), "tmp-smx", "24 h"),
        (DrugRef("co-trimoxazole 960 mg"), "tmp-smx", "24 h"),
        (DrugRef("piperacillin-tazobactam"), "beta-lactams", "48 h"),
        (DrugRef("Amoxicillin 500 mg"), "beta-lactams", "48 h"),
        (DrugRef("meropenem"), "beta-lactams", "48 h"),
        (DrugRef("aztreonam"), "beta-lactams", "48 h"),
        (DrugRef("oxaliplatin"), "platinum", "every administration"),
        (DrugRef("PACLITAXEL protein-bound"), "taxanes", "every administration"),
        (DrugRef("rituximab"), "monoclonal-antibodies", "every administration"),
        (DrugRef("Trastuzumab 6 mg/kg"), "monoclonal-antibodies", "every administration"),
    ],
)
def test_each_drug_gets_its_rule_from_the_data(drug: DrugRef, rule_id: str, window: str) -> None:
    rule = rule_for(drug)
    assert rule is not None and rule.id == rule_id
    assert rule.window_text == window


@pytest.mark.requirement("TOL-1")
def test_a_drug_without_a_rule_gets_none_and_no_assumption() -> None:
    assert rule_for(DrugRef("vancomycin")) is None
    result = assess(DrugRef("vancomycin"), [dose(0)], at(1))
    assert result.status is ToleranceStatus.UNKNOWN
    assert "ask the allergist" in result.headline


def test_every_rule_names_its_sources_and_a_protocol_in_the_library() -> None:
    from fhir_desens.protocol.library import builtin_protocols

    protocols = builtin_protocols()
    for rule in maintenance_rules():
        assert rule.sources, rule.id
        assert rule.protocol in protocols, rule.id


def test_the_word_mab_inside_a_short_word_is_not_an_antibody() -> None:
    assert rule_for(DrugRef("mab")) is None


# -- a continuous rule from each source ---------------------------------------------------------


@pytest.mark.requirement("TOL-2")
@pytest.mark.requirement("TOL-3")
@pytest.mark.parametrize("source", [SESSION, ADMINISTRATION])
@pytest.mark.parametrize(
    ("hours_later", "status"),
    [
        (1, ToleranceStatus.GREEN),
        (17.9, ToleranceStatus.GREEN),
        (18, ToleranceStatus.AMBER),
        (23.9, ToleranceStatus.AMBER),
        (24, ToleranceStatus.RED),
        (72, ToleranceStatus.RED),
    ],
)
def test_tmp_smx_window_from_a_proven_dose(
    source: DoseSource, hours_later: float, status: ToleranceStatus
) -> None:
    result = assess(TMP_SMX, [dose(0, source, reference="X/1")], at(hours_later))
    assert result.status is status
    assert result.source is source
    assert result.red_from == at(24) and result.amber_from == at(18)
    assert source.value in result.reasons[1]


def test_beta_lactam_window_is_48_hours() -> None:
    result = assess(CEFTRIAXONE, [dose(0, ADMINISTRATION)], at(47))
    assert result.status is ToleranceStatus.AMBER
    assert result.red_from == at(48)
    assert assess(CEFTRIAXONE, [dose(0, ADMINISTRATION)], at(48)).status is ToleranceStatus.RED


def test_red_says_re_desensitization_required_with_the_protocol() -> None:
    result = assess(TMP_SMX, [dose(0)], at(30))
    assert result.re_desensitization_required
    assert result.headline.startswith("Re-desensitization required")
    assert result.protocol == "tmp-smx-oral-hourly"
    assert "Protocol to use: tmp-smx-oral-hourly." in result.reasons


@pytest.mark.requirement("TOL-3")
def test_the_protocol_of_the_last_session_is_suggested_first() -> None:
    result = assess(CEFTRIAXONE, [dose(0)], at(60), last_protocol="iv-16-step-4-bag")
    assert result.protocol == "iv-16-step-4-bag"


@pytest.mark.requirement("TOL-2")
def test_schedule_alone_is_a_plan_never_green() -> None:
    result = assess(TMP_SMX, [dose(0, SCHEDULE, reference="MedicationRequest/9")], at(1))
    assert result.status is ToleranceStatus.AMBER
    assert result.source is SCHEDULE
    assert "plan, not proof" in " ".join(result.reasons)
    assert "Confirm the dose was given" in " ".join(result.reasons)
    assert assess(TMP_SMX, [dose(0, SCHEDULE)], at(25)).status is ToleranceStatus.RED


def test_a_proven_dose_outranks_a_later_scheduled_one() -> None:
    doses = [dose(0, ADMINISTRATION), dose(20, SCHEDULE)]
    result = assess(TMP_SMX, doses, at(22))
    assert result.source is ADMINISTRATION
    assert result.status is ToleranceStatus.AMBER  # from the administration at 0 h, not the plan at 20 h
    assert assess(TMP_SMX, doses, at(25)).status is ToleranceStatus.RED


def test_the_latest_proven_dose_wins_whatever_its_source() -> None:
    doses = [
        dose(0, SESSION, reference="session"),
        dose(20, ADMINISTRATION, reference="MedicationAdministration/5"),
    ]
    result = assess(TMP_SMX, doses, at(25))
    assert result.status is ToleranceStatus.GREEN
    assert result.last_dose is not None and result.last_dose.reference == "MedicationAdministration/5"


def test_at_the_same_time_the_session_record_is_trusted_first() -> None:
    doses = [dose(5, ADMINISTRATION, reference="MA/1"), dose(5, SESSION, reference="S/1")]
    assert assess(TMP_SMX, list(reversed(doses)), at(6)).source is SESSION
    assert assess(TMP_SMX, doses, at(6)).source is SESSION


def test_future_doses_only_count_as_the_next_planned_one() -> None:
    result = assess(TMP_SMX, [dose(0), dose(30, SCHEDULE, reference="MedicationRequest/2")], at(2))
    assert result.status is ToleranceStatus.GREEN
    assert result.next_planned is not None and result.next_planned.at == at(30)
    assert "falls after the window closes" in result.reasons[-1]


def test_no_dose_anywhere_is_unknown_and_says_so() -> None:
    result = assess(TMP_SMX, [], at(0))
    assert result.status is ToleranceStatus.UNKNOWN
    assert "re-desensitization required unless a dose can be confirmed" in result.headline


# -- every administration -------------------------------------------------------------------------


@pytest.mark.requirement("TOL-3")
@pytest.mark.parametrize("hours_later", [0, 1, 24 * 21])
def test_platinum_is_red_for_every_administration(hours_later: float) -> None:
    result = assess(CARBOPLATIN, [dose(0, SESSION, protocol="iv-12-step-3-bag")], at(hours_later))
    assert result.status is ToleranceStatus.RED
    assert "every administration" in result.headline
    assert result.red_from is None


# -- time zones -------------------------------------------------------------------------------------


def test_naive_times_are_refused() -> None:
    with pytest.raises(InputError, match="time zone"):
        DoseEvidence(datetime(2026, 12, 1, 10, 0), SESSION)
    with pytest.raises(InputError, match="now"):
        assess(TMP_SMX, [], datetime(2026, 12, 1, 10, 0))


def test_times_are_shown_in_the_apps_zone() -> None:
    boston = timezone(timedelta(hours=-5), "EST")
    result = assess(TMP_SMX, [dose(0)], at(1), tz=boston)
    assert "05:00 EST" in result.headline  # 10:00 UTC + 24 h = 2 Dec 10:00 UTC = 05:00 EST


# -- properties ---------------------------------------------------------------------------------------

hours = st.floats(min_value=0, max_value=24 * 10, allow_nan=False)


@pytest.mark.requirement("TOL-3")
@given(last=hours, elapsed=st.floats(min_value=0, max_value=24 * 10, allow_nan=False))
def test_the_status_only_worsens_as_time_passes(last: float, elapsed: float) -> None:
    order = [ToleranceStatus.GREEN, ToleranceStatus.AMBER, ToleranceStatus.RED]
    earlier = assess(CEFTRIAXONE, [dose(last)], at(last + elapsed / 2))
    later = assess(CEFTRIAXONE, [dose(last)], at(last + elapsed))
    assert order.index(earlier.status) <= order.index(later.status)


@pytest.mark.requirement("TOL-2")
@given(
    doses=st.lists(st.tuples(hours, st.sampled_from(list(DoseSource))), min_size=1, max_size=6),
    now=hours,
)
def test_never_green_without_a_proven_dose_inside_the_window(
    doses: list[tuple[float, DoseSource]], now: float
) -> None:
    evidence = [dose(h, source) for h, source in doses]
    result = assess(TMP_SMX, evidence, at(now))
    if result.status is ToleranceStatus.GREEN:
        assert any(e.source.is_proof and at(now) - timedelta(hours=24) < e.at <= at(now) for e in evidence)
