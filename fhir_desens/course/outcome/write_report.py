"""The report of one outcome write-back, in words for the clinician and by reference for support.

Each write is a :class:`WriteStep`; its :attr:`~WriteStep.sentence` names the write as a clinician would
("Written: note on the carboplatin allergy record, version 2", "the audit entry saying who wrote it and
when") and its :attr:`~WriteStep.support` keeps the FHIR reference, which the result page shows small ("For
your support team") and tests and support rely on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Any

from fhir_desens.course.outcome.strategy import WritePath
from fhir_desens.course.outcome.tasks import ChartTask

__all__ = ["Conflict", "StepStatus", "WriteReport", "WriteStep"]

#: the writes whose internal name is not what a clinician calls them (the others are said as named)
_PEOPLE_WORDS = {
    "Provenance": "the audit entry saying who wrote it and when",
    "Provenance of the new record": "the audit entry saying who added it and when",
}
_VERSION = re.compile(r"^AllergyIntolerance/[^/]+/_history/([^/\s]+)$")


def _people_words(what: str) -> str:
    return _PEOPLE_WORDS.get(what, what)


def _version_words(reference: str | None) -> str:
    """ ", version 2" for an allergy record written or found at a version after its first; else nothing (a
    clinical note or a new record has one version, and "version 1" tells nobody anything)."""
    found = _VERSION.match(reference or "")
    if found is None or found.group(1) == "1":
        return ""
    return f", version {found.group(1)}"


class StepStatus(Enum):
    """What happened to one write. Values are distinct (equal values would make Enum aliases: a write
    this EHR does not offer would count as a failure); :attr:`words` is what people read."""

    WRITTEN = "written"
    ALREADY_THERE = "already-there"
    FAILED = "failed"
    NOT_ATTEMPTED = "not-attempted"
    NOT_OFFERED = "not-offered"
    RECORDED = "recorded"

    @property
    def words(self) -> str:
        return _STATUS_WORDS[self]


_STATUS_WORDS = {
    StepStatus.WRITTEN: "Written",
    StepStatus.ALREADY_THERE: "Already in the chart",
    StepStatus.FAILED: "Not written",
    StepStatus.NOT_ATTEMPTED: "Not attempted",
    StepStatus.NOT_OFFERED: "Not written",
    StepStatus.RECORDED: "Recorded in the app",
}


@dataclass(frozen=True)
class WriteStep:
    what: str
    status: StepStatus
    reference: str | None = None
    detail: str = ""
    refused: bool = False  # the EHR refused it for good (405/403/422...): what it said it offers may be stale

    @property
    def sentence(self) -> str:
        """For a clinician: what was written in words ("the carboplatin allergy record, version 2"); the
        FHIR reference is for the support team (:attr:`support`)."""
        why = f": {self.detail.rstrip('.')}" if self.detail else ""
        return f"{self.status.words}: {_people_words(self.what)}{_version_words(self.reference)}{why}."

    @property
    def support(self) -> str | None:
        """What the EHR holds, by reference ("Provenance/c7b4... for AllergyIntolerance/01a3.../_history/2")."""
        return f"{self.what}: {self.reference}" if self.reference else None


@dataclass(frozen=True)
class Conflict:
    """Someone else changed a guarded element since the preview: both versions, for the allergist."""

    previewed: dict[str, Any]
    current: dict[str, Any]
    changed: tuple[str, ...]

    @property
    def message(self) -> str:
        return (
            f"Someone changed the allergy record's {', '.join(self.changed)} since you reviewed it. Nothing was "
            "written: compare both versions and decide."
        )


@dataclass(frozen=True)
class WriteReport:
    path: WritePath
    steps: tuple[WriteStep, ...]
    copy_text: str
    conflict: Conflict | None = None
    task: ChartTask | None = None

    @property
    def chart_updated(self) -> bool:
        """Whether the outcome is in the chart (written now or before)."""
        return bool(self.steps) and self.steps[0].status in (StepStatus.WRITTEN, StepStatus.ALREADY_THERE)

    @property
    def refused(self) -> bool:
        """Whether the EHR refused a write for good (its CapabilityStatement may promise more than it does)."""
        return any(step.refused for step in self.steps)

    @property
    def complete(self) -> bool:
        return not any(s.status in (StepStatus.FAILED, StepStatus.NOT_ATTEMPTED) for s in self.steps)

    @property
    def sentences(self) -> list[str]:
        lines = [step.sentence for step in self.steps]  # a conflict is said by its failed step
        if not self.complete and self.conflict is None:
            lines.append("Writing the outcome again adds only what is missing.")
        return lines

    @property
    def support_lines(self) -> list[str]:
        """The references of what the run wrote or found, for the support team (shown small)."""
        return [line for line in (step.support for step in self.steps) if line]
