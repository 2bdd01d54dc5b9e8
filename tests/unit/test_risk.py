"""Protocol suggestion from the BWH high-risk criteria, the route and the drug."""

import pytest

from fhir_desens.errors import InputError
from fhir_desens.protocol.crossreactivity import DrugRef
from fhir_desens.protocol.library import builtin_protocols
from fhir_desens.protocol.risk import RiskAnswers, route_kind, suggest_protocol

LIBRARY = builtin_protocols()
CARBOPLATIN = DrugRef("Carboplatin", ("40048",))


def test_standard_risk_iv_gets_the_12_step_protocol_and_the_rule_is_cited():
    answers = RiskAnswers(
        grade=2, hypotension_or_hypoxia=False, cardiac_or_beta_blocker=False, fev1_below_80=False
    )
    suggestion = suggest_protocol(answers, CARBOPLATIN, "intravenous", LIBRARY)
    assert suggestion.status == "standard" and suggestion.unknown == ()
    assert suggestion.protocol_id == "iv-12-step-3-bag"
    assert not suggestion.high_risk
    assert any("Standard risk" in r and "FEV1 below 80%" in r for r in suggestion.reasons)
    assert suggestion.alternatives[0] == "iv-16-step-4-bag"
    assert "iv-12-step-3-bag" not in suggestion.alternatives
    assert set(suggestion.alternatives) <= set(LIBRARY)
    # oral protocols written for other drugs are not offered for carboplatin
    assert not {"aspirin-aerd-90-min", "tmp-smx-oral-hourly", "penicillin-v-oral-wendel"} & set(
        suggestion.alternatives
    )


@pytest.mark.parametrize(
    ("answers", "says"),
    [
        (RiskAnswers(grade=3), "Brown grade 3"),
        (RiskAnswers(grade=1, hypotension_or_hypoxia=True), "hypotension or hypoxia"),
        (RiskAnswers(grade=2, cardiac_or_beta_blocker=True), "beta-blocker"),
        (RiskAnswers(grade=2, fev1_below_80=True), "FEV1 is below 80%"),
    ],
)
def test_each_high_risk_criterion_alone_gives_the_16_step_protocol(answers, says):
    suggestion = suggest_protocol(answers, DrugRef("paclitaxel"), "IV", LIBRARY)
    assert suggestion.protocol_id == "iv-16-step-4-bag"
    assert suggestion.high_risk
    assert any(says in r for r in suggestion.reasons)
    assert any("intensive care" in r for r in suggestion.reasons)
    assert suggestion.alternatives[0] == "iv-12-step-3-bag"


def test_every_finding_is_listed_once():
    answers = RiskAnswers(3, hypotension_or_hypoxia=True, cardiac_or_beta_blocker=True, fev1_below_80=True)
    reasons = suggest_protocol(answers, CARBOPLATIN, "intravenous", LIBRARY).reasons
    assert len([r for r in reasons if r.startswith(("The index", "The patient", "FEV1"))]) == 4


def test_a_missing_grade_is_standard_risk_but_the_user_is_asked_for_it():
    suggestion = suggest_protocol(RiskAnswers(), CARBOPLATIN, "intravenous", LIBRARY)
    assert suggestion.protocol_id == "iv-12-step-3-bag"
    assert any("grade" in r and "not given" in r for r in suggestion.reasons)


@pytest.mark.parametrize(
    ("drug", "route", "expected"),
    [
        (DrugRef("Aspirin 325 mg oral tablet", ("1191",)), "oral", "aspirin-aerd-90-min"),
        (DrugRef("acetylsalicylic acid"), None, "aspirin-aerd-90-min"),
        (DrugRef("Sulfamethoxazole / trimethoprim", ("198335", "10831")), "oral", "tmp-smx-oral-hourly"),
        (DrugRef("Bactrim DS"), "PO", "tmp-smx-oral-hourly"),
        (DrugRef("Penicillin V"), "oral", "penicillin-v-oral-wendel"),
        (DrugRef("amoxicillin", ("723",)), "oral", "penicillin-v-oral-wendel"),
        (DrugRef("Penicillin G benzathine", ("7982",)), "intramuscular", "penicillin-v-oral-wendel"),
    ],
)
def test_drugs_given_by_mouth_get_their_oral_protocol(drug, route, expected):
    suggestion = suggest_protocol(RiskAnswers(grade=1), drug, route, LIBRARY)
    assert suggestion.protocol_id == expected
    assert any(LIBRARY[expected].title in r for r in suggestion.reasons)
    assert "iv-12-step-3-bag" in suggestion.alternatives


def test_an_iv_order_of_a_drug_with_an_oral_protocol_stays_iv_with_the_oral_one_offered():
    suggestion = suggest_protocol(RiskAnswers(grade=2), DrugRef("ampicillin"), "intravenous", LIBRARY)
    assert suggestion.protocol_id == "iv-12-step-3-bag"
    assert "penicillin-v-oral-wendel" in suggestion.alternatives


def test_oral_route_without_an_oral_protocol_falls_back_to_iv_and_says_so():
    suggestion = suggest_protocol(RiskAnswers(grade=2), DrugRef("trimethoprim"), "oral", LIBRARY)
    assert suggestion.protocol_id == "iv-12-step-3-bag"
    assert any("No oral protocol" in r for r in suggestion.reasons)


def test_high_risk_oral_keeps_the_oral_protocol_and_flags_intensive_care():
    answers = RiskAnswers(grade=2, fev1_below_80=True)
    suggestion = suggest_protocol(answers, DrugRef("aspirin", ("1191",)), "oral", LIBRARY)
    assert suggestion.protocol_id == "aspirin-aerd-90-min"
    assert suggestion.high_risk
    assert any("intensive care" in r for r in suggestion.reasons)


def test_only_protocols_in_the_given_library_are_suggested():
    partial = {k: v for k, v in LIBRARY.items() if k not in ("iv-16-step-4-bag", "aspirin-aerd-90-min")}
    suggestion = suggest_protocol(RiskAnswers(grade=3), CARBOPLATIN, "intravenous", partial)
    assert suggestion.protocol_id == "iv-12-step-3-bag"
    assert suggestion.high_risk
    assert any("not in this library" in r for r in suggestion.reasons)
    assert set(suggestion.alternatives) <= set(partial)
    aspirin = suggest_protocol(RiskAnswers(grade=1), DrugRef("aspirin"), "oral", partial)
    assert aspirin.protocol_id == "iv-12-step-3-bag"
    only_one = {"iv-one-solution-rate-escalation": LIBRARY["iv-one-solution-rate-escalation"]}
    assert (
        suggest_protocol(RiskAnswers(1), CARBOPLATIN, None, only_one).protocol_id
        == "iv-one-solution-rate-escalation"
    )


def test_an_imported_oral_protocol_written_for_the_drug_is_offered():
    imported = LIBRARY["aspirin-aerd-90-min"]
    library = {"iv-12-step-3-bag": LIBRARY["iv-12-step-3-bag"], "my-aspirin": imported}
    suggestion = suggest_protocol(RiskAnswers(grade=1), DrugRef("Aspirin 81 mg"), "oral", library)
    assert suggestion.protocol_id == "my-aspirin"


@pytest.mark.parametrize("grade", [0, 4, -1, True, "2", 2.0])
def test_invalid_grades_are_input_errors_naming_grade(grade):
    with pytest.raises(InputError) as caught:
        suggest_protocol(RiskAnswers(grade=grade), CARBOPLATIN, "intravenous", LIBRARY)
    assert caught.value.field == "grade"
    assert "3 (severe)" in (caught.value.accepted or "")


def test_an_empty_library_is_an_input_error():
    with pytest.raises(InputError):
        suggest_protocol(RiskAnswers(grade=1), CARBOPLATIN, "intravenous", {})


@pytest.mark.parametrize(
    ("route", "kind"),
    [
        ("oral", "oral"),
        ("PO", "oral"),
        ("26643006", "oral"),
        ("IV", "intravenous"),
        ("intravenous", "intravenous"),
        ("intramuscular", None),
        (None, None),
        ("", None),
    ],
)
def test_route_kind(route, kind):
    assert route_kind(route) == kind


@pytest.mark.invariant("RISK-CHART-2")
def test_unanswered_criteria_are_unknown_never_standard_risk():
    suggestion = suggest_protocol(RiskAnswers(grade=2), CARBOPLATIN, "intravenous", LIBRARY)
    assert suggestion.unknown == ("hypotension_or_hypoxia", "cardiac_or_beta_blocker", "fev1_below_80")
    assert not any("Standard risk" in r for r in suggestion.reasons)
    assert any("unknown, not 'no'" in r for r in suggestion.reasons)


@pytest.mark.invariant("RISK-CHART-2")
def test_an_unanswered_criterion_the_chart_points_to_never_suggests_the_12_step_protocol():
    suggestion = suggest_protocol(
        RiskAnswers(grade=2, fev1_below_80=False),
        CARBOPLATIN,
        "intravenous",
        LIBRARY,
        ("cardiac_or_beta_blocker",),
    )
    assert suggestion.protocol_id == "iv-16-step-4-bag"
    assert suggestion.status == "not-established" and not suggestion.high_risk
    assert any("Risk not established" in r and "beta-blocker" in r for r in suggestion.reasons)
    answered = suggest_protocol(
        RiskAnswers(2, False, False, False), CARBOPLATIN, "intravenous", LIBRARY, ("cardiac_or_beta_blocker",)
    )
    assert answered.protocol_id == "iv-12-step-3-bag" and answered.status == "standard"
