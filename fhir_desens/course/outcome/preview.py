"""The proposed change, shown to the allergist before anything is written.

:func:`prepare` reads the chart (the patient's allergy records for the drug) and returns a
:class:`Preview`: the note, what changes in words and as a JSON diff, the clinical note or the
copy-ready text, whether this outcome is already in the chart, and, when the drug is not on the
allergy list at all, the record that could be added (offered, never automatic). Nothing is written here.

The app keeps only the ids (allergy id and the version previewed) between the preview and the
confirmation; :func:`~fhir_desens.course.outcome.writeback.write_outcome` re-reads and compares.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, tzinfo
from typing import Any

from fhir_desens.client.fhir_rest import FhirClient, Versioned
from fhir_desens.course.outcome.allergy_change import (
    AllergyAdditions,
    Flavor,
    additions_for,
    apply_additions,
    describe_additions,
    has_outcome,
    json_diff,
    new_allergy,
)
from fhir_desens.course.outcome.document import clinical_note, outcome_identifier, summary_text
from fhir_desens.course.outcome.record import SessionOutcome
from fhir_desens.course.outcome.strategy import WriteDecision, WritePath
from fhir_desens.course.outcome.wording import note_text, outcome_marker
from fhir_desens.drugs.tolerance import rule_for
from fhir_desens.errors import InputError
from fhir_desens.fhir.allergy import allergy_from_fhir
from fhir_desens.fhir.chart.drugs import allergen_ref
from fhir_desens.protocol.crossreactivity import DrugRef, match_allergies

__all__ = ["Preview", "find_note", "matching_allergies", "prepare", "with_pdf"]


@dataclass(frozen=True)
class Preview:
    outcome: SessionOutcome
    decision: WriteDecision
    recorded_at: datetime
    note: str  # the note text, ending with its marker
    marker: str
    additions: AllergyAdditions
    copy_text: str  # the copy-ready block (always available)
    allergy: Versioned | None  # the record to update (update path), as previewed
    changed: dict[str, Any] | None  # that record after the change
    words: tuple[str, ...]
    diff: str
    document: dict[str, Any] | None  # the clinical note (note path)
    already_written: bool
    candidates: tuple[str, ...]  # ids of every current allergy record for this drug
    proposed_allergy: dict[str, Any] | None  # offered when the drug is not on the list

    @property
    def drug_on_list(self) -> bool:
        return bool(self.candidates)


def matching_allergies(client: FhirClient, outcome: SessionOutcome) -> list[dict[str, Any]]:
    """The patient's current allergy records for this very drug (same ingredient), most recent first."""
    resources = client.search_all("AllergyIntolerance", {"patient": outcome.patient})
    by_key: dict[str, dict[str, Any]] = {}
    allergens = []
    for resource in resources:
        allergy = allergy_from_fhir(resource)
        if allergy.id and allergy.is_current and not allergy.is_no_known_allergy:
            by_key[allergy.id] = resource
            allergens.append(allergen_ref(allergy, allergy.id))
    drug = DrugRef(
        outcome.drug.text, (outcome.drug.code,) if outcome.drug.system and outcome.drug.code else ()
    )
    matched = [m.allergen.key for m in match_allergies(drug, allergens) if m.kind == "same-drug"]
    found = [by_key[key] for key in dict.fromkeys(matched)]
    return sorted(found, key=lambda r: str((r.get("meta") or {}).get("lastUpdated", "")), reverse=True)


def find_note(client: FhirClient, outcome: SessionOutcome) -> list[dict[str, Any]]:
    """The clinical notes already carrying this outcome's identifier."""
    identifier = outcome_identifier(outcome)
    params = {"identifier": f"{identifier['system']}|{identifier['value']}", "patient": outcome.patient}
    return client.search_all("DocumentReference", params)


def prepare(
    client: FhirClient,
    outcome: SessionOutcome,
    decision: WriteDecision,
    *,
    recorded_at: datetime,
    allergy_id: str | None = None,
    tz: tzinfo | None = None,
    pdf: bytes | None = None,
) -> Preview:
    """Read the chart and propose the change; ``allergy_id`` picks one of several matching records."""
    rule = rule_for(DrugRef(outcome.drug.text))
    marker = outcome_marker(outcome)
    text = note_text(outcome, rule, recorded_at, tz)
    flavor = decision.flavor if decision.path is WritePath.UPDATE_ALLERGY else Flavor.R4
    additions = additions_for(outcome, text, marker, recorded_at, flavor)
    copy_text = summary_text(outcome, text, tz)
    matches = matching_allergies(client, outcome)
    candidates = tuple(str(r["id"]) for r in matches)
    if allergy_id is not None and allergy_id not in candidates:
        raise InputError("allergy", "is not one of this patient's current allergy records for the drug")
    chosen = allergy_id or (candidates[0] if candidates else None)
    proposed = None
    if not candidates and decision.add_allergy:
        proposed = new_allergy(outcome, additions, outcome_identifier(outcome))
    base = Preview(
        outcome=outcome,
        decision=decision,
        recorded_at=recorded_at,
        note=text,
        marker=marker,
        additions=additions,
        copy_text=copy_text,
        allergy=None,
        changed=None,
        words=(),
        diff="",
        document=None,
        already_written=False,
        candidates=candidates,
        proposed_allergy=proposed,
    )
    if decision.path is WritePath.UPDATE_ALLERGY and chosen is not None:
        current = client.read("AllergyIntolerance", chosen)
        done = has_outcome(current.resource, marker)
        changed = None if done else apply_additions(current.resource, additions)
        words = (
            ("This outcome is already on the allergy record: nothing to add.",)
            if done
            else tuple(describe_additions(current.resource, additions, tz))
        )
        diff = "" if changed is None else json_diff(current.resource, changed)
        return replace(
            base,
            allergy=current,
            changed=changed,
            words=words,
            diff=diff,
            document=None,
            already_written=done,
        )
    if decision.path is WritePath.CLINICAL_NOTE:
        document = clinical_note(outcome, copy_text, recorded_at, pdf=pdf)
        done = bool(find_note(client, outcome))
        encounter = (  # the reference itself is on the page for the support team, not in this sentence
            " for the visit the EHR opened the app in"
            if outcome.encounter
            else " (not linked to a visit: the EHR opened the app without one)"
        )
        words = (
            f"Write a clinical note (consult note){encounter} with the text below; the allergy record is not "
            "changed and no second allergy is created.",
        )
        if done:
            words = ("This outcome's clinical note is already in the chart: nothing to add.",)
        return replace(
            base,
            allergy=None,
            changed=None,
            words=words,
            diff="",
            document=document,
            already_written=done,
        )
    words = (
        ("The drug is not on the allergy list: nothing to update.",)
        if decision.path is WritePath.UPDATE_ALLERGY
        else ("Nothing can be written to this EHR: copy the text below into the chart.",)
    )
    return replace(
        base, allergy=None, changed=None, words=words, diff="", document=None, already_written=False
    )


def with_pdf(preview: Preview, pdf: bytes) -> Preview:
    """The preview whose clinical note also carries ``pdf`` (rendered by the app, e.g. the session record).

    Only the clinical-note path has a document; any other preview is returned unchanged.
    """
    if preview.document is None:
        return preview
    document = clinical_note(preview.outcome, preview.copy_text, preview.recorded_at, pdf=pdf)
    return replace(preview, document=document)
