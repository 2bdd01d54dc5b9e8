"""The allergy write-back's pure parts: the note, the append-only change, the write path, the clinical note."""

from __future__ import annotations

import base64
import copy
import dataclasses
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_desens.client.scopes import GrantedScopes
from fhir_desens.course.outcome.allergy_change import (
    Flavor,
    additions_for,
    apply_additions,
    check_preserved,
    describe_additions,
    guarded_changes,
    has_outcome,
    json_diff,
)
from fhir_desens.course.outcome.document import attachment_hash, clinical_note, summary_text
from fhir_desens.course.outcome.record import CodedText, SessionOutcome
from fhir_desens.course.outcome.strategy import Flavor as StrategyFlavor
from fhir_desens.course.outcome.strategy import WritePath, choose_write
from fhir_desens.course.outcome.wording import note_text, outcome_marker
from fhir_desens.drugs.tolerance import rule_for
from fhir_desens.errors import ConfigurationError, InputError, SafetyViolation
from fhir_desens.protocol.crossreactivity import DrugRef
from tests.unit.outcome_data import RECORDED, allergy, assert_status_kept, hives_at_step_11, outcome


def note_for(o: SessionOutcome) -> str:
    return note_text(o, rule_for(DrugRef(o.drug.text)), RECORDED)


# -- the note ---------------------------------------------------------------------------------------


@pytest.mark.requirement("OUT-2")
def test_the_note_reads_as_the_issue_words_it() -> None:
    text = note_for(outcome())
    assert text.startswith(
        "Tolerated ceftriaxone 2 g via 12-step rapid desensitization on 2 Dec 2026 "
        "(protocol IV 12-step, 3-bag rapid desensitization (BWH/Castells), version 1.0.0). "
        "Tolerance is temporary: re-desensitize after a missed dose of more than 48 h or for each new course. "
        "Breakthrough reaction: none. Recorded by Dr A. Allergist, 2 Dec 2026 14:05 UTC. Ref RDD-"
    )
    assert text.endswith(f"Ref {outcome_marker(outcome())}.")


def test_the_copy_ready_text_and_the_clinical_note_write_dates_as_every_page_does() -> None:
    """One date-time format (display.moment_text): '2 Dec 2026 13:30 UTC', never 'Wed 2 Dec 2026 ...'."""
    text = summary_text(outcome(), note_for(outcome()))
    assert (
        "ended 2 Dec 2026 13:30 UTC" in text and "Recorded by Dr A. Allergist, 2 Dec 2026 14:05 UTC." in text
    )
    assert not any(day in text for day in ("Mon ", "Tue ", "Wed ", "Thu ", "Fri ", "Sat ", "Sun ")), text


@pytest.mark.requirement("OUT-2")
def test_the_note_names_the_breakthrough_reaction_and_its_step() -> None:
    text = note_for(outcome(reactions=(hives_at_step_11(),)))
    assert (
        "for each new course. Breakthrough reaction: grade 1 (mild, skin and mucosa) at step 11. "
        "Onset and signs: step 11 at 12:42 (Urticaria, Pruritus; Intravenous route). Recorded by" in text
    )


@pytest.mark.requirement("OUT-2")
def test_two_reactions_are_named_in_order_of_onset() -> None:
    first = hives_at_step_11()
    second = dataclasses.replace(
        first,
        step=12,
        grade="grade 2 (moderate)",
        severity="moderate",
        onset=first.onset + timedelta(minutes=50),
    )
    text = note_for(outcome(reactions=(second, first)))
    assert (
        "Breakthrough reaction: grade 1 (mild, skin and mucosa) at step 11; grade 2 (moderate) at step 12. "
        "Onset and signs: step 11 at 12:42 (Urticaria, Pruritus; Intravenous route); step 12 at 13:32 "
        "(Urticaria, Pruritus; Intravenous route)." in text
    )


def test_every_administration_drugs_say_so() -> None:
    text = note_for(outcome(drug="carboplatin"))
    assert "Tolerance is temporary: re-desensitize at every administration." in text


def test_a_stopped_session_never_says_tolerated() -> None:
    text = note_for(outcome(completed=False, reactions=(hives_at_step_11(),)))
    assert "Tolerated" not in text
    assert "stopped after step 10 of 12" in text
    assert "tolerance cannot be assumed" in text


def test_the_marker_is_stable_per_session_and_patient() -> None:
    assert outcome_marker(outcome()) == outcome_marker(outcome())
    assert outcome_marker(outcome()) != outcome_marker(outcome(session="session-2"))
    assert outcome_marker(outcome()) != outcome_marker(outcome("Patient/p2"))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"patient": "p1"}, "patient"),
        ({"ended_at": datetime(2026, 12, 2, 13, 30)}, "ended_at"),
        ({"steps_completed": 13}, "steps_completed"),
        ({"completed": True, "steps_completed": 3}, "completed"),
        ({"author": "Patient/x"}, "author"),
    ],
)
def test_a_malformed_outcome_is_refused_naming_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InputError, match=field):
        dataclasses.replace(outcome(), **change)


def test_a_reaction_severity_outside_r4_is_refused() -> None:
    with pytest.raises(InputError, match="severity"):
        dataclasses.replace(hives_at_step_11(), severity="grade 2")


# -- the change to the allergy record ------------------------------------------------------------------


def additions(o: SessionOutcome, flavor: Flavor = Flavor.R4):  # type: ignore[no-untyped-def]
    return additions_for(o, note_for(o), outcome_marker(o), RECORDED, flavor)


@pytest.mark.requirement("OUT-1")
def test_a_note_is_appended_and_nothing_else_changes() -> None:
    before = allergy()
    after = apply_additions(before, additions(outcome()))
    assert_status_kept(before, after)
    assert after["note"][:1] == before["note"]
    assert after["note"][1]["text"] == note_for(outcome())
    assert after["note"][1]["time"] == "2026-12-02T14:05:00+00:00"
    assert after["reaction"] == before["reaction"]
    assert "lastOccurrence" not in after
    assert has_outcome(after, outcome_marker(outcome()))
    assert not has_outcome(before, outcome_marker(outcome()))


@pytest.mark.requirement("OUT-1")
def test_a_breakthrough_reaction_adds_a_reaction_and_the_last_occurrence() -> None:
    before = allergy()
    after = apply_additions(before, additions(outcome(reactions=(hives_at_step_11(),))))
    assert_status_kept(before, after)
    added = after["reaction"][1]
    assert [m["coding"][0]["code"] for m in added["manifestation"]] == ["126485001", "418290006"]
    assert added["severity"] == "mild"
    assert added["onset"] == "2026-12-02T12:42:00+00:00"
    assert added["substance"] == {"text": "ceftriaxone"}
    assert added["exposureRoute"]["coding"][0]["code"] == "47625008"
    assert "step 11" in added["description"]
    assert after["lastOccurrence"] == "2026-12-02T12:42:00+00:00"


def test_the_last_occurrence_never_moves_backwards() -> None:
    before = allergy(lastOccurrence="2026-12-03")
    after = apply_additions(before, additions(outcome(reactions=(hives_at_step_11(),))))
    assert after["lastOccurrence"] == "2026-12-03"


@pytest.mark.requirement("OUT-3")
def test_millennium_gets_one_manifestation_per_reaction_and_a_bare_note() -> None:
    before = allergy(note=[{"id": "n1", "text": "old", "authorString": "x", "time": "2020-01-01"}])
    after = apply_additions(before, additions(outcome(reactions=(hives_at_step_11(),)), Flavor.MILLENNIUM))
    assert_status_kept(before, after)
    assert after["note"][0] == before["note"][0]  # existing note sent unchanged, with its id
    assert after["note"][1] == {
        "text": note_for(outcome(reactions=(hives_at_step_11(),)))
    }  # no id, author, time
    assert after["reaction"][1] == {
        "manifestation": [
            {
                "coding": [{"system": "http://snomed.info/sct", "code": "126485001", "display": "Urticaria"}],
                "text": "Urticaria",
            }
        ],
        "severity": "mild",
    }
    # the full PUT sends back every element read (a field left out would be erased)
    assert set(before) <= set(after)


@pytest.mark.requirement("OUT-1")
@pytest.mark.parametrize(
    "tamper",
    [
        lambda r: r.update(clinicalStatus={"coding": [{"code": "resolved"}]}),
        lambda r: r.update(verificationStatus={"coding": [{"code": "refuted"}]}),
        lambda r: r.update(criticality="low"),
        lambda r: r.pop("criticality"),
        lambda r: r.update(code={"text": "cefazolin"}),
        lambda r: r["note"].__setitem__(0, {"text": "edited"}),
        lambda r: r.pop("type"),
        lambda r: r.update(reaction=[]),
    ],
)
def test_any_other_change_is_a_safety_violation(tamper: Any) -> None:
    before = allergy()
    after = copy.deepcopy(before)
    after["note"].append({"text": "ours"})
    tamper(after)
    with pytest.raises(SafetyViolation) as refused:
        check_preserved(before, after)
    assert refused.value.invariant_id == "OUT-1"  # the id for logs and JSON
    assert "OUT-1" not in str(refused.value) and "Nothing was written" in str(
        refused.value
    )  # words for people


def test_guarded_changes_name_status_verification_code_criticality() -> None:
    previewed = allergy()
    assert guarded_changes(previewed, allergy(note=[{"text": "another note"}])) == []
    changed = allergy(criticality="low", clinicalStatus={"coding": [{"code": "inactive"}]})
    assert guarded_changes(previewed, changed) == ["clinical status", "criticality"]


def test_the_preview_words_and_diff_show_what_is_added() -> None:
    before = allergy()
    adds = additions(outcome(reactions=(hives_at_step_11(),)))
    words = describe_additions(before, adds)
    assert words[0].startswith("Add a note: “Tolerated ceftriaxone 2 g")
    assert "Add a reaction: Urticaria, Pruritus (mild)." in words
    assert "Set the last occurrence to 2 Dec 2026 12:42 UTC." in words
    assert words[-1].startswith("Unchanged: clinical status active, verification status confirmed")
    assert "criticality high" in words[-1]
    diff = json_diff(before, apply_additions(before, adds))
    added = [line for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    removed = [line for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    assert any("Tolerated ceftriaxone" in line for line in added)
    assert all(set(line[1:].strip()) <= set("{}[],") for line in removed)  # only brackets move
    assert not any("clinicalStatus" in line or "criticality" in line for line in added + removed)


# property: whatever the record looks like, only note/reaction/lastOccurrence change

codes = st.sampled_from(["active", "inactive", "resolved"])
texts = st.text(min_size=1, max_size=20)


@st.composite
def allergy_records(draw: st.DrawFn) -> dict[str, Any]:
    record = allergy(
        clinicalStatus={"coding": [{"code": draw(codes)}]},
        criticality=draw(st.sampled_from(["low", "high", "unable-to-assess"])),
        note=[{"text": t} for t in draw(st.lists(texts, max_size=3))],
        reaction=[{"manifestation": [{"text": t}]} for t in draw(st.lists(texts, max_size=3))],
    )
    for key in draw(
        st.lists(st.sampled_from(["note", "reaction", "criticality", "type", "category"]), max_size=3)
    ):
        record.pop(key, None)
    if draw(st.booleans()):
        record["lastOccurrence"] = draw(st.sampled_from(["2019-05-01", "2027-01-01T00:00:00Z", "garbage"]))
    return record


@pytest.mark.requirement("OUT-1")
@given(record=allergy_records(), breakthrough=st.booleans(), flavor=st.sampled_from(list(Flavor)))
def test_the_change_only_ever_appends(record: dict[str, Any], breakthrough: bool, flavor: Flavor) -> None:
    o = outcome(reactions=(hives_at_step_11(),) if breakthrough else ())
    after = apply_additions(record, additions(o, flavor))
    for element in set(record) | set(after):
        if element not in ("note", "reaction", "lastOccurrence"):
            assert after.get(element) == record.get(element)
    assert after["note"][: len(record.get("note", []))] == record.get("note", [])
    assert after.get("reaction", [])[: len(record.get("reaction", []))] == record.get("reaction", [])
    assert len(after["note"]) == len(record.get("note", [])) + 1


# -- the write path --------------------------------------------------------------------------------------


def capability(*entries: tuple[str, list[str]], software: str = "test server") -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "software": {"name": software},
        "rest": [
            {
                "mode": "server",
                "resource": [
                    {"type": t, "interaction": [{"code": c} for c in codes]} for t, codes in entries
                ],
            }
        ],
    }


FULL = capability(
    ("AllergyIntolerance", ["read", "update", "create", "search-type"]),
    ("DocumentReference", ["create", "read", "search-type"]),
    ("Provenance", ["create", "read", "search-type"]),
)
EPIC = capability(
    ("AllergyIntolerance", ["read", "create", "search-type"]),
    ("DocumentReference", ["create", "read", "search-type"]),
    ("Provenance", ["read", "search-type"]),
)
WRITE_ALL = GrantedScopes(
    "launch openid fhirUser patient/AllergyIntolerance.cruds patient/DocumentReference.cruds patient/Provenance.cruds"
)


@pytest.mark.requirement("OUT-4")
def test_update_when_offered_and_granted() -> None:
    decision = choose_write(FULL, WRITE_ALL)
    assert decision.path is WritePath.UPDATE_ALLERGY
    assert decision.provenance and decision.add_allergy
    assert decision.flavor is StrategyFlavor.R4
    # in words for the allergist, the FHIR interaction after them for support (OUT-14)
    assert decision.reasons == (
        "the EHR offers updating allergy records and this launch may do it (AllergyIntolerance update)",
    )


@pytest.mark.requirement("OUT-4")
def test_create_only_allergies_get_a_clinical_note_not_a_second_allergy() -> None:
    decision = choose_write(EPIC, WRITE_ALL)
    assert decision.path is WritePath.CLINICAL_NOTE
    assert not decision.provenance
    assert "the EHR does not offer updating allergy records (AllergyIntolerance update)" in " ".join(
        decision.reasons
    )


@pytest.mark.requirement("OUT-4")
def test_update_offered_but_not_granted_falls_back_to_the_note() -> None:
    scopes = GrantedScopes("patient/AllergyIntolerance.rs patient/DocumentReference.crs")
    decision = choose_write(FULL, scopes)
    assert decision.path is WritePath.CLINICAL_NOTE
    assert "this launch was not granted updating allergy records (AllergyIntolerance update)" in " ".join(
        decision.reasons
    )
    assert "a clinical note can be written: the EHR offers writing clinical notes" in " ".join(
        decision.reasons
    )


@pytest.mark.requirement("OUT-6")
def test_a_note_that_cannot_be_searched_for_first_is_not_written() -> None:
    scopes = GrantedScopes("patient/AllergyIntolerance.rs patient/DocumentReference.c")
    decision = choose_write(EPIC, scopes)
    assert decision.path is WritePath.NOTHING_WRITABLE
    assert "could not be found before writing again" in " ".join(decision.reasons)


@pytest.mark.requirement("OUT-4")
def test_nothing_writable() -> None:
    decision = choose_write(FULL, GrantedScopes("patient/*.rs"))
    assert decision.path is WritePath.NOTHING_WRITABLE
    assert choose_write(FULL, WRITE_ALL, "none").path is WritePath.NOTHING_WRITABLE


def test_the_setting_narrows_never_widens() -> None:
    assert choose_write(FULL, WRITE_ALL, "note").path is WritePath.CLINICAL_NOTE
    assert choose_write(EPIC, WRITE_ALL, "update").path is WritePath.NOTHING_WRITABLE
    with pytest.raises(ConfigurationError, match="allergy_write"):
        choose_write(FULL, WRITE_ALL, "always")


def test_millennium_is_recognised_from_the_capability_statement() -> None:
    millennium = capability(("AllergyIntolerance", ["update"]), software="Millennium")
    assert choose_write(millennium, WRITE_ALL).flavor is StrategyFlavor.MILLENNIUM
    assert choose_write(FULL, WRITE_ALL, flavor=StrategyFlavor.MILLENNIUM).flavor is StrategyFlavor.MILLENNIUM


# -- the clinical note and the copy-ready text ---------------------------------------------------------------


@pytest.mark.requirement("OUT-5")
def test_the_clinical_note_carries_text_first_then_pdf_and_the_encounter() -> None:
    o = outcome()
    text = summary_text(o, note_for(o))
    document = clinical_note(o, text, RECORDED, pdf=b"%PDF-1.7 test")
    assert document["identifier"][0]["value"]
    assert document["subject"] == {"reference": "Patient/p1"}
    assert document["context"]["encounter"] == [{"reference": "Encounter/e1"}]
    assert document["context"]["period"] == {
        "start": "2026-12-02T08:00:00+00:00",
        "end": "2026-12-02T13:30:00+00:00",
    }
    first, second = (c["attachment"] for c in document["content"])
    assert first["contentType"].startswith("text/plain")
    assert base64.b64decode(first["data"]).decode() == text
    assert second["contentType"] == "application/pdf"
    assert document["type"]["coding"][0]["code"] == "11488-4"


@pytest.mark.requirement("OUT-5")
def test_each_attachment_carries_its_size_and_sha1_hash_in_base64() -> None:
    o = outcome()
    pdf = b"%PDF-1.7 a small test document\n%%EOF"
    document = clinical_note(o, "the note", RECORDED, pdf=pdf)
    text, pdf_part = (c["attachment"] for c in document["content"])
    assert text["size"] == len(b"the note")
    assert pdf_part["size"] == len(pdf)
    # R4 Attachment.hash: base64 of the SHA-1 (the well-known digest of "abc" checks the encoding)
    assert attachment_hash(b"abc") == "qZk+NkcGgWq6PiVxeFDCbJzQ2J0="
    assert pdf_part["hash"] == attachment_hash(base64.b64decode(pdf_part["data"]))
    assert pdf_part["hash"] != text["hash"]
    assert pdf_part["title"] == text["title"] == "Rapid drug desensitization: ceftriaxone"


def test_the_copy_ready_text_says_keep_active_and_gives_the_note() -> None:
    o = outcome(reactions=(hives_at_step_11(),))
    text = summary_text(o, note_for(o))
    assert "Drug: ceftriaxone 2 g" in text
    assert "keep it active and confirmed" in text
    assert note_for(o) in text


def test_codes_need_their_system() -> None:
    with pytest.raises(InputError):
        CodedText("x", code="1")
    assert CodedText("x").concept() == {"text": "x"}
