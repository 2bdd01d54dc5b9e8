"""The outcome write-back's report speaks to a clinician in words and keeps the FHIR references for the
support team (walk session 8: "Written: note on the allergy record (AllergyIntolerance/01a3.../_history/2)",
"Provenance (Provenance/c7b4... for ...)")."""

from __future__ import annotations

from fhir_desens.course.outcome.strategy import WritePath
from fhir_desens.course.outcome.write_report import StepStatus, WriteReport, WriteStep

ALLERGY = "AllergyIntolerance/01a3f2/_history/2"
PROVENANCE = f"Provenance/c7b4e9 for {ALLERGY}"


def test_a_written_allergy_note_is_said_with_its_drug_and_version_and_no_reference() -> None:
    step = WriteStep("note on the carboplatin allergy record", StepStatus.WRITTEN, ALLERGY)
    assert step.sentence == "Written: note on the carboplatin allergy record, version 2."
    assert step.support == f"note on the carboplatin allergy record: {ALLERGY}"


def test_the_provenance_is_called_an_audit_entry() -> None:
    step = WriteStep("Provenance", StepStatus.WRITTEN, PROVENANCE)
    assert step.sentence == "Written: the audit entry saying who wrote it and when."
    assert step.support == f"Provenance: {PROVENANCE}"
    failed = WriteStep(
        "Provenance of the new record", StepStatus.NOT_OFFERED, detail="this EHR does not accept it"
    )
    assert (
        failed.sentence
        == "Not written: the audit entry saying who added it and when: this EHR does not accept it."
    )
    assert failed.support is None


def test_a_first_version_and_a_clinical_note_carry_no_version_words() -> None:
    added = WriteStep(
        "carboplatin added to the allergy list", StepStatus.WRITTEN, "AllergyIntolerance/9/_history/1"
    )
    note = WriteStep("clinical note", StepStatus.WRITTEN, "DocumentReference/d1/_history/3")
    assert added.sentence == "Written: carboplatin added to the allergy list."
    assert note.sentence == "Written: clinical note."


def test_the_report_lists_every_reference_for_support_and_none_in_its_sentences() -> None:
    report = WriteReport(
        WritePath.UPDATE_ALLERGY,
        (
            WriteStep("note on the carboplatin allergy record", StepStatus.WRITTEN, ALLERGY),
            WriteStep("Provenance", StepStatus.WRITTEN, PROVENANCE),
        ),
        copy_text="",
    )
    assert not any("/" in line for line in report.sentences)
    assert report.support_lines == [
        f"note on the carboplatin allergy record: {ALLERGY}",
        f"Provenance: {PROVENANCE}",
    ]
