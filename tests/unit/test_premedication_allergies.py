"""PLAN-PREMED-1: one rule for the premedications the allergy list rules out (plan page, signing, bedside)."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_desens.course.assessment import assess, premedication_allergies, signing_blockers
from fhir_desens.course.bedside.prestart import allergies_for
from fhir_desens.course.bedside.record import start_entry
from fhir_desens.course.readback import withheld_premedications
from fhir_desens.course.sign import _notes
from fhir_desens.fhir.allergy import allergy_from_fhir
from fhir_desens.protocol.crossreactivity import DrugRef
from fhir_desens.protocol.model import Premedication
from tests.bedside_session import NURSE, Bedside, carboplatin_draft, carboplatin_plan

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
#: substances an allergy list may record, and drugs a protocol may give as premedication
SUBSTANCES = (
    "aspirin",
    "ibuprofen",
    "diphenhydramine",
    "famotidine",
    "montelukast",
    "penicillin V",
    "peanut",
)
PREMEDICATIONS = (
    "aspirin",
    "diphenhydramine",
    "famotidine",
    "montelukast",
    "cetirizine",
    "methylprednisolone",
)


def _allergy(index: int, substance: str, status: str) -> Any:
    return allergy_from_fhir(
        {
            "resourceType": "AllergyIntolerance",
            "id": f"a{index}",
            "clinicalStatus": {"coding": [{"code": status}]},
            "category": ["food" if substance == "peanut" else "medication"],
            "code": {"text": substance},
            "patient": {"reference": "Patient/p1"},
        }
    )


allergy_lists = st.lists(
    st.tuples(st.sampled_from(SUBSTANCES), st.sampled_from(("active", "inactive", "resolved"))), max_size=4
).map(lambda found: [_allergy(i, s, status) for i, (s, status) in enumerate(found)])
premedication_lists = st.lists(st.sampled_from(PREMEDICATIONS), unique=True, max_size=4).map(
    lambda names: tuple(Premedication(n, "1 mg", "PO", Decimal(-30), "30 min before step 1") for n in names)
)


@pytest.mark.invariant("PLAN-PREMED-1")
@given(premedications=premedication_lists, allergies=allergy_lists, acknowledged=st.booleans())
def test_a_ruled_out_premedication_blocks_signing_until_acknowledged(
    premedications: tuple[Premedication, ...], allergies: list[Any], acknowledged: bool
) -> None:
    ruled_out = premedication_allergies(premedications, allergies)
    # exactly the premedications the drug's own allergy matching finds on the list (current drug allergies)
    expected = {p.drug for p in premedications if assess(DrugRef(p.drug), allergies).matched}
    assert set(ruled_out) == expected
    assert all(reason.startswith("allergy to ") for reason in ruled_out.values())
    draft = dataclasses.replace(
        carboplatin_draft(), premedications_withheld=tuple(ruled_out) if acknowledged else ()
    )
    blockers = signing_blockers(draft, assess(DrugRef("carboplatin"), allergies), True, None, ruled_out)
    blocked = any("rules out a premedication" in b for b in blockers)
    assert blocked == (bool(ruled_out) and not acknowledged)
    # the bedside checklist flags the same premedications, by the same rule
    plan = dataclasses.replace(carboplatin_plan(), premedications=premedications)
    assert dict(allergies_for(plan, DrugRef("carboplatin"), allergies).avoid) == ruled_out


def test_an_unread_allergy_list_rules_out_nothing() -> None:
    assert premedication_allergies(carboplatin_plan().premedications, None) == {}


def test_aspirin_in_aerd_is_ruled_out_by_its_class() -> None:
    """An NSAID allergy rules out aspirin (the COX-1 inhibiting NSAID class), not the antihistamines."""
    ruled_out = premedication_allergies(
        carboplatin_plan().premedications, [_allergy(0, "ibuprofen", "active")]
    )
    assert list(ruled_out) == ["aspirin"]


@pytest.mark.invariant("PLAN-PREMED-1")
def test_a_premedication_signed_as_not_to_be_given_is_not_asked_for_before_step_1() -> None:
    """Diphenhydramine is given before step 1 by every IV protocol: for a patient allergic to it the nurse
    could start only by recording it as given. Signed as not to be given, it is not asked for (read back
    from the signed plan's note, as the bedside starts from the signed plan)."""
    draft = dataclasses.replace(
        carboplatin_draft(), premedications_withheld=("diphenhydramine",), premedications_withheld_by="Dr A"
    )
    group = {"note": [{"text": note} for note in _notes(draft)]}
    assert withheld_premedications(group) == ("diphenhydramine",)
    bedside = Bedside(
        draft=dataclasses.replace(draft, premedications_withheld=withheld_premedications(group))
    )
    bedside.submit(
        start_entry(
            entry_id="e1", session_id=bedside.session_id, author=NURSE, at=bedside.now,
            draft=bedside.draft, request_group="RequestGroup/rg1",
            step_requests={n: f"MedicationRequest/mr{n}" for n in range(1, 13)}, encounter="Encounter/e1",
        )
    )  # fmt: skip
    missing = bedside.state.missing_checklist_text()
    assert "famotidine" in missing and "diphenhydramine" not in missing
    assert withheld_premedications({"note": [{"text": "Dose differs from the active order: ..."}]}) == ()
