"""The outcome as a clinical note (DocumentReference) and as a copy-ready text block.

Where the allergy cannot be updated (Epic: AllergyIntolerance create-only into a holding tank;
athenaPractice: no allergy writes), the outcome goes into a clinical note with the same wording, linked to
the launch encounter: never a second allergy. Where nothing can be written, the same text is shown
ready to copy, with the printable summary.

The note carries the outcome's business identifier (``ID_OUTCOME``), which the write-back searches for
before creating it: writing the outcome twice leaves one note. The plain-text attachment comes first
(Epic reads only the first attachment); a PDF follows when one was rendered (the app renders it: this
layer never imports a renderer). Each attachment carries its ``size`` (bytes) and ``hash`` (the base64 of
its SHA-1, as R4 defines ``Attachment.hash``), so a reader can check what it fetched.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, tzinfo
from typing import Any

from fhir_desens.course.outcome.record import SessionOutcome
from fhir_desens.course.outcome.wording import outcome_id, reaction_summary
from fhir_desens.fhir.canonical import ID_OUTCOME
from fhir_desens.protocol.display import moment_text

__all__ = ["CONSULT_NOTE", "attachment_hash", "clinical_note", "outcome_identifier", "summary_text"]

LOINC = "http://loinc.org"
#: LOINC 11488-4 "Consult note": the allergist's consultation note.
CONSULT_NOTE = {"system": LOINC, "code": "11488-4", "display": "Consult note"}
_CLINICAL_NOTE_CATEGORY = {
    "system": "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category",
    "code": "clinical-note",
    "display": "Clinical Note",
}


def outcome_identifier(outcome: SessionOutcome) -> dict[str, str]:
    return {"system": ID_OUTCOME, "value": outcome_id(outcome)}


def summary_text(outcome: SessionOutcome, note: str, tz: tzinfo | None = None) -> str:
    """The copy-ready block (and the clinical note's text): what happened and what the allergy record says."""
    progress = (
        f"full dose given ({outcome.steps_planned} steps)"
        if outcome.completed
        else f"stopped after step {outcome.steps_completed} of {outcome.steps_planned}"
    )
    lines = [
        "Rapid drug desensitization: outcome for the allergy record",
        f"Drug: {outcome.drug.text} {outcome.dose}",
        f"Protocol: {outcome.protocol_title} (version {outcome.protocol_version})",
        f"Session: {progress}, ended {moment_text(outcome.ended_at, tz)}",
        f"Breakthrough reaction: {reaction_summary(outcome, tz)}",
        "Allergy record: keep it active and confirmed (the tolerance is temporary); add this note:",
        note,
    ]
    return "\n".join(lines) + "\n"


def attachment_hash(data: bytes) -> str:
    """``Attachment.hash`` in R4: the SHA-1 of the data, base64-encoded."""
    return base64.b64encode(hashlib.sha1(data, usedforsecurity=False).digest()).decode("ascii")


def _attachment(content_type: str, data: bytes, title: str, created: str) -> dict[str, Any]:
    return {
        "attachment": {
            "contentType": content_type,
            "data": base64.b64encode(data).decode("ascii"),
            "size": len(data),
            "hash": attachment_hash(data),
            "title": title,
            "creation": created,
        }
    }


def clinical_note(
    outcome: SessionOutcome,
    text: str,
    recorded_at: datetime,
    *,
    pdf: bytes | None = None,
    signed: bool = True,
) -> dict[str, Any]:
    """A DocumentReference carrying ``text`` (and ``pdf``), for the patient and the launch encounter."""
    created = recorded_at.isoformat(timespec="seconds")
    title = f"Rapid drug desensitization: {outcome.drug.text}"
    content = [_attachment("text/plain; charset=utf-8", text.encode("utf-8"), title, created)]
    if pdf is not None:
        content.append(_attachment("application/pdf", pdf, title, created))
    started = outcome.started_at or outcome.ended_at
    context: dict[str, Any] = {
        "period": {
            "start": started.isoformat(timespec="seconds"),
            "end": outcome.ended_at.isoformat(timespec="seconds"),
        }
    }
    if outcome.encounter:
        context["encounter"] = [{"reference": outcome.encounter}]
    document: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "identifier": [outcome_identifier(outcome)],
        "status": "current",
        "docStatus": "final" if signed else "preliminary",
        "type": {"coding": [CONSULT_NOTE], "text": "Allergy consult note: rapid drug desensitization"},
        "category": [{"coding": [_CLINICAL_NOTE_CATEGORY]}],
        "subject": {"reference": outcome.patient},
        "date": created,
        "description": title,
        "content": content,
        "context": context,
    }
    if outcome.author:
        document["author"] = [{"reference": outcome.author}]
    return document
