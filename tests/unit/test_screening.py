import pytest

from fhir_desens.protocol.screening import SNOMED, Coding, Manifestation, screen_reactions


@pytest.mark.parametrize(
    "manifestation",
    [
        Manifestation("Stevens-Johnson syndrome"),
        Manifestation("SJS after co-trimoxazole"),
        Manifestation(None, (Coding(SNOMED, "73442001", None),)),
        Manifestation(None, (Coding(SNOMED, "768962006", None),)),
        Manifestation(None, (Coding(SNOMED, "702809001", None),)),
        Manifestation("Toxic epidermal necrolysis"),
        Manifestation("TEN"),
        Manifestation("DRESS syndrome"),
        Manifestation("Drug reaction with eosinophilia and systemic symptoms"),
        Manifestation(None, (Coding(SNOMED, "36715001", "Erythema multiforme"),)),
        Manifestation("Exfoliative dermatitis"),
        Manifestation("blistering rash with mucosal erosions"),
        Manifestation("serum sickness-like reaction"),
        Manifestation("Drug-induced hepatitis"),
        Manifestation("acute interstitial nephritis"),
        Manifestation("AGEP"),
    ],
)
def test_severe_delayed_reactions_contraindicate(manifestation):
    result = screen_reactions([manifestation])
    assert result.contraindicated
    assert result.reasons and "contraindicated" in result.reasons[0]


@pytest.mark.parametrize(
    "manifestation",
    [
        Manifestation("Urticaria"),
        Manifestation("Anaphylaxis"),
        Manifestation("flushing and chest tightness"),
        Manifestation("rash for ten days"),  # 'ten' the number is not TEN
        Manifestation("Hives"),
        Manifestation(None, (Coding(SNOMED, "39579001", "Anaphylaxis"),)),
        Manifestation(None, ()),
    ],
)
def test_immediate_reactions_do_not_contraindicate(manifestation):
    assert screen_reactions([manifestation]).contraindicated is False


def test_reasons_name_each_finding_once():
    result = screen_reactions([Manifestation("SJS"), Manifestation("Stevens Johnson"), Manifestation("TEN")])
    assert result.finding_ids == ("sjs", "ten")
    assert len(result.reasons) == 2
