"""The drug against the patient's allergy list: matches, contraindications, and what blocks signing (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fhir_desens.course.draft import PlanDraft
from fhir_desens.course.drug_review import DrugReview
from fhir_desens.fhir.allergy import Allergy
from fhir_desens.fhir.chart.drugs import allergen_ref
from fhir_desens.protocol.crossreactivity import AllergyMatch, DrugRef, match_allergies
from fhir_desens.protocol.model import Premedication
from fhir_desens.protocol.screening import Coding, Manifestation, ScreeningResult, screen_reactions


def _manifestations(allergy: Allergy) -> list[Manifestation]:
    found: list[Manifestation] = []
    for reaction in allergy.reactions:
        for concept in reaction.manifestations:
            codings = tuple(Coding(c.system, c.code, c.display) for c in concept.codings)
            found.append(Manifestation(text=concept.text, codings=codings))
        if reaction.description:
            found.append(Manifestation(text=reaction.description))
    return found


def screen(allergy: Allergy) -> ScreeningResult | None:
    """Screen drug allergies (and allergies of unrecorded category) for contraindicating reactions."""
    if allergy.is_drug or not allergy.categories:
        return screen_reactions(_manifestations(allergy))
    return None


@dataclass(frozen=True)
class MatchedAllergy:
    allergy: Allergy
    match: AllergyMatch
    screening: ScreeningResult | None

    @property
    def contraindicated(self) -> bool:
        return self.screening is not None and self.screening.contraindicated


@dataclass(frozen=True)
class Assessment:
    """The drug against the allergy list: matches, contraindication, documentation gap."""

    drug: str
    matched: tuple[MatchedAllergy, ...]
    allergy_list_read: bool  # False: the grant does not allow reading it (nothing could be checked)

    @property
    def unlisted(self) -> bool:
        """The drug is not on the allergy list (or the list could not be read)."""
        return not self.matched

    @property
    def contraindicated(self) -> bool:
        return any(m.contraindicated for m in self.matched)

    @property
    def contraindication_reasons(self) -> tuple[str, ...]:
        reasons: list[str] = []
        for matched in self.matched:
            if matched.screening is not None and matched.contraindicated:
                reasons.extend(r for r in matched.screening.reasons if r not in reasons)
        return tuple(reasons)


def _screenable(allergy: Allergy) -> bool:
    if not allergy.is_current or allergy.is_no_known_allergy or allergy.is_no_information:
        return False
    return allergy.is_drug or not allergy.categories


def assess(drug: DrugRef, allergies: Sequence[Allergy] | None) -> Assessment:
    """Match the drug against the current drug allergies and screen the matched ones (pure)."""
    if allergies is None:
        return Assessment(drug.name, (), allergy_list_read=False)
    by_key = {f"a{index}": allergy for index, allergy in enumerate(allergies) if _screenable(allergy)}
    refs = [allergen_ref(allergy, key) for key, allergy in by_key.items()]
    matched = tuple(
        MatchedAllergy(by_key[m.allergen.key], m, screen(by_key[m.allergen.key]))
        for m in match_allergies(drug, refs)
        if m.allergen.key in by_key
    )
    return Assessment(drug.name, matched, allergy_list_read=True)


def premedication_allergies(
    premedications: Sequence[Premedication], allergies: Sequence[Allergy] | None
) -> dict[str, str]:
    """PLAN-PREMED-1: each of the protocol's premedications the allergy list rules out, matched as the
    planned drug is (same ingredient or a documented cross-reactive class), with the allergy in words:
    {"aspirin": "allergy to Aspirin (and other COX-1 inhibiting NSAIDs)"}. One rule for the plan page,
    signing and the bedside checklist; empty when the list could not be read."""
    ruled_out: dict[str, str] = {}
    for premedication in premedications:
        matched = assess(DrugRef(premedication.drug), allergies).matched
        if matched:
            ruled_out[premedication.drug] = f"allergy to {matched[0].allergy.substance_display}"
    return ruled_out


def premedication_blocker(draft: PlanDraft, ruled_out: Mapping[str, str]) -> str | None:
    """Signing waits until the allergist has acknowledged every premedication the allergy list rules out
    (the protocol's premedications are not the app's orders: the acknowledgement tells the nurse not to
    give it and is recorded on the signed plan)."""
    pending = [name for name in ruled_out if name not in draft.premedications_withheld]
    if not pending:
        return None
    listed = "; ".join(f"{name}, because of the {ruled_out[name]}" for name in pending)
    return (
        f"The allergy list rules out a premedication of this protocol: {listed}. Acknowledge that it is not "
        "to be given (order an alternative separately if one is needed) first."
    )


def signing_blockers(
    draft: PlanDraft,
    assessment: Assessment,
    can_write: bool,
    review: DrugReview | None = None,
    premedications_ruled_out: Mapping[str, str] | None = None,
) -> list[str]:
    """Why this draft may not be signed yet (empty: it may be signed); ``review``: the drug checks;
    ``premedications_ruled_out``: :func:`premedication_allergies` of the plan."""
    reasons: list[str] = [] if review is None else review.blockers(draft.uncoded_confirmed)
    premedication = premedication_blocker(draft, premedications_ruled_out or {})
    if premedication:
        reasons.append(premedication)
    if assessment.contraindicated and not (draft.override_reason and draft.override_authority):
        reasons.append(
            "Desensitization is contraindicated by a matched allergy: an expert override with its reason is needed."
        )
    if assessment.unlisted and not draft.unlisted_confirmed:
        if assessment.allergy_list_read:
            reasons.append(
                f"{draft.drug} is not on the allergy list: confirm the desensitization (and update the allergy "
                "record) first."
            )
        else:
            reasons.append(
                "The allergy list could not be read, so the drug could not be checked against it: confirm first."
            )
    if not can_write:
        reasons.append(
            "The EHR did not grant this app permission to write orders: print the worksheet and order it in the EHR."
        )
    return reasons
