"""The change to an AllergyIntolerance after a desensitization: append-only, and shown before it is written.

What is added (bedside.md §5): a ``note`` for the next clinician; for a breakthrough reaction a
``reaction`` entry and ``lastOccurrence`` (never moved backwards). What is never touched (OUT-1):
``clinicalStatus`` (stays ``active``: a resolved allergy drops out of prescribing decision support),
``verificationStatus``, ``code``, ``criticality`` and ``patient``, nor any existing note or reaction.
:func:`apply_additions` checks that on every change it makes and raises
:class:`~fhir_desens.errors.SafetyViolation` rather than return a change that breaks it.

Oracle Health Millennium (:attr:`Flavor.MILLENNIUM`, bedside.md §4): an update is a full ``PUT`` where a
field left out is erased, so the resource is sent back whole as read; existing notes are sent unchanged
(with their ids); the new note goes without an id (it is then appended), author and time (the server sets
them from the token); a reaction carries exactly one manifestation and a severity, the rest is in the note.

Because the additions are append-only they can be re-applied to a newer version after a conflict
(:mod:`.writeback`), unless someone else changed a guarded element (:func:`guarded_changes`): then the
allergist sees both versions and decides.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from enum import Enum
from typing import Any

from fhir_desens.course.outcome.record import BreakthroughReaction, SessionOutcome
from fhir_desens.errors import SafetyViolation
from fhir_desens.io.json import dumps
from fhir_desens.protocol.display import moment_text

__all__ = [
    "GUARDED",
    "AllergyAdditions",
    "Flavor",
    "additions_for",
    "apply_additions",
    "check_preserved",
    "describe_additions",
    "element_words",
    "guarded_changes",
    "has_outcome",
    "json_diff",
    "new_allergy",
]


#: Elements another user may change that make us stop and show both versions.
def element_words(value: Any) -> str:
    """A guarded element as people read it: a code's text or display, with its code when that says more
    ("Carboplatin (code 40048)", "Active"), a plain value as it is, "not recorded" when absent. For the page
    that compares two versions of the allergy record."""
    if value is None or value == "" or value == {}:
        return "not recorded"
    if not isinstance(value, Mapping):
        return str(value)
    codings = [c for c in value.get("coding") or [] if isinstance(c, Mapping)]
    codes = ", ".join(str(c["code"]) for c in codings if c.get("code"))
    label = str(value.get("text") or next((c["display"] for c in codings if c.get("display")), "") or codes)
    if not label:
        return "not recorded"
    return label if not codes or codes.lower() == label.lower() else f"{label} (code {codes})"


GUARDED: dict[str, str] = {
    "clinicalStatus": "clinical status",
    "verificationStatus": "verification status",
    "code": "substance (code)",
    "criticality": "criticality",
}
_NEVER_TOUCHED = (*GUARDED, "patient")
_APPENDED = ("note", "reaction", "lastOccurrence")


class Flavor(Enum):
    """How the EHR takes an allergy update."""

    R4 = "r4"  # the R4 specification as written
    MILLENNIUM = "millennium"  # Oracle Health Millennium's documented update rules


@dataclass(frozen=True)
class AllergyAdditions:
    """What we append to an allergy record; ``marker`` identifies it inside the note text."""

    note: dict[str, Any]
    reactions: tuple[dict[str, Any], ...]
    last_occurrence: str | None
    marker: str


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="seconds")


def _reaction(reaction: BreakthroughReaction, outcome: SessionOutcome, flavor: Flavor) -> dict[str, Any]:
    if flavor is Flavor.MILLENNIUM:
        return {"manifestation": [reaction.manifestations[0].concept()], "severity": reaction.severity}
    entry: dict[str, Any] = {
        "substance": outcome.drug.concept(),
        "manifestation": [m.concept() for m in reaction.manifestations],
        "description": (
            f"Breakthrough reaction during rapid desensitization ({outcome.protocol_title}): "
            f"{reaction.grade} at step {reaction.step}"
        ),
        "onset": _iso(reaction.onset),
        "severity": reaction.severity,
    }
    if reaction.route is not None:
        entry["exposureRoute"] = reaction.route.concept()
    return entry


def additions_for(
    outcome: SessionOutcome, text: str, marker: str, recorded_at: datetime, flavor: Flavor
) -> AllergyAdditions:
    """The note (``text`` ends with ``marker``) and, for a breakthrough reaction, reactions and last occurrence."""
    if marker not in text:
        raise ValueError("the note text must carry its marker")
    note: dict[str, Any] = {"text": text}
    if flavor is Flavor.R4:
        note["time"] = _iso(recorded_at)
        if outcome.author:
            note["authorReference"] = {"reference": outcome.author}
        elif outcome.author_name:
            note["authorString"] = outcome.author_name
    reactions = tuple(_reaction(r, outcome, flavor) for r in sorted(outcome.reactions, key=lambda r: r.onset))
    last = outcome.last_reaction
    return AllergyAdditions(note, reactions, _iso(last.onset) if last else None, marker)


def has_outcome(resource: Mapping[str, Any], marker: str) -> bool:
    """Whether a note of the resource already carries this outcome's marker."""
    return any(
        isinstance(note, Mapping) and marker in str(note.get("text", ""))
        for note in resource.get("note") or []
    )


def _instant(value: Any) -> datetime | date | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            return None
    return parsed if parsed.tzinfo is not None else parsed.date()


def _later(ours: str, theirs: Any) -> bool:
    """Whether our lastOccurrence is not earlier than the recorded one (never move it backwards)."""
    recorded, mine = _instant(theirs), _instant(ours)
    if recorded is None or mine is None:
        return recorded is None
    if isinstance(recorded, datetime) and isinstance(mine, datetime):
        return mine >= recorded
    as_date = mine.date() if isinstance(mine, datetime) else mine
    recorded_date = recorded.date() if isinstance(recorded, datetime) else recorded
    return as_date >= recorded_date


def apply_additions(resource: Mapping[str, Any], additions: AllergyAdditions) -> dict[str, Any]:
    """The resource with our additions appended: everything read is kept (full PUT), nothing else changes."""
    if resource.get("resourceType") != "AllergyIntolerance":
        raise ValueError("not an AllergyIntolerance")
    changed = copy.deepcopy(dict(resource))
    changed["note"] = [*(resource.get("note") or []), copy.deepcopy(additions.note)]
    if additions.reactions:
        changed["reaction"] = [*(resource.get("reaction") or []), *copy.deepcopy(list(additions.reactions))]
    if additions.last_occurrence and _later(additions.last_occurrence, resource.get("lastOccurrence")):
        changed["lastOccurrence"] = additions.last_occurrence
    check_preserved(resource, changed)
    return changed


def check_preserved(before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
    """OUT-1: raise SafetyViolation unless ``after`` only appends to ``before``."""
    for element in _NEVER_TOUCHED:
        if before.get(element) != after.get(element):
            raise SafetyViolation(
                "OUT-1", f"the change would alter AllergyIntolerance.{element}", _kept(element)
            )
    for element in set(before) | set(after):
        if element not in _APPENDED and element != "meta" and before.get(element) != after.get(element):
            raise SafetyViolation(
                "OUT-1", f"the change would alter or drop AllergyIntolerance.{element}", _kept(element)
            )
    for element in ("note", "reaction"):
        old, new = list(before.get(element) or []), list(after.get(element) or [])
        if new[: len(old)] != old:
            raise SafetyViolation(
                "OUT-1", f"the change would alter an existing AllergyIntolerance.{element}", _kept(element)
            )


def _kept(element: str) -> str:
    """OUT-1 in words for the allergist: what the record says is only ever added to."""
    what = {**GUARDED, "patient": "patient", "note": "notes", "reaction": "reactions"}.get(element, element)
    return (
        f"Nothing was written: this change would alter what the allergy record already says ({what}). "
        "The outcome only adds to the record; reload the page and review it again."
    )


def guarded_changes(previewed: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The guarded elements (in words) that differ between the version previewed and the current one."""
    return [words for element, words in GUARDED.items() if previewed.get(element) != current.get(element)]


def _concept_text(concept: Any) -> str:
    if not isinstance(concept, Mapping):
        return "(not recorded)"
    if isinstance(concept.get("text"), str):
        return str(concept["text"])
    for coding in concept.get("coding") or []:
        if isinstance(coding, Mapping):
            return str(coding.get("display") or coding.get("code") or "(no display)")
    return "(not recorded)"


def _value_text(element: str, value: Any) -> str:
    """Statuses by their code ("active"), the substance by its text, criticality as it is."""
    if element in ("clinicalStatus", "verificationStatus") and isinstance(value, Mapping):
        for coding in value.get("coding") or []:
            if isinstance(coding, Mapping) and coding.get("code"):
                return str(coding["code"])
    if element == "criticality":
        return str(value)
    return _concept_text(value)


def _when(value: Any, tz: tzinfo | None) -> str:
    parsed = _instant(value)
    if isinstance(parsed, datetime):
        return moment_text(parsed, tz)
    return str(value)


def describe_additions(
    resource: Mapping[str, Any], additions: AllergyAdditions, tz: tzinfo | None = None
) -> list[str]:
    """The change in words, for the preview (what is added, and what stays as it is)."""
    lines = [f"Add a note: “{additions.note['text']}”"]
    for reaction in additions.reactions:
        seen = ", ".join(_concept_text(m) for m in reaction.get("manifestation") or [])
        lines.append(f"Add a reaction: {seen} ({reaction.get('severity')}).")
    if additions.last_occurrence:
        if _later(additions.last_occurrence, resource.get("lastOccurrence")):
            lines.append(f"Set the last occurrence to {_when(additions.last_occurrence, tz)}.")
        else:
            lines.append(
                f"Keep the last occurrence {_when(resource.get('lastOccurrence'), tz)} (it is later)."
            )
    kept = ", ".join(
        f"{words} {_value_text(element, resource.get(element))}"
        for element, words in GUARDED.items()
        if resource.get(element) is not None
    )
    lines.append(
        f"Unchanged: {kept or 'status, verification, code and criticality'}; existing notes and reactions."
    )
    return lines


def json_diff(
    before: Mapping[str, Any], after: Mapping[str, Any], *, name: str = "AllergyIntolerance"
) -> str:
    """A unified diff of the two resources as indented JSON (what the preview shows)."""
    old = dumps(before, indent=2).splitlines()
    new = dumps(after, indent=2).splitlines()
    return "\n".join(difflib.unified_diff(old, new, f"{name} (now)", f"{name} (after)", lineterm=""))


def new_allergy(
    outcome: SessionOutcome, additions: AllergyAdditions, identifier: Mapping[str, str]
) -> dict[str, Any]:
    """A new allergy record for a drug that is not on the list (offered, never automatic).

    ``active`` + ``confirmed``: the patient is allergic and stays at risk; the desensitization note and any
    breakthrough reaction come with it.
    """
    resource: dict[str, Any] = {
        "resourceType": "AllergyIntolerance",
        "identifier": [dict(identifier)],
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                    "code": "active",
                }
            ]
        },
        "verificationStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                    "code": "confirmed",
                }
            ]
        },
        "type": "allergy",
        "category": ["medication"],
        "code": outcome.drug.concept(),
        "patient": {"reference": outcome.patient},
        "note": [copy.deepcopy(additions.note)],
    }
    if outcome.author:
        resource["recorder"] = {"reference": outcome.author}
    if additions.reactions:
        resource["reaction"] = copy.deepcopy(list(additions.reactions))
    if additions.last_occurrence:
        resource["lastOccurrence"] = additions.last_occurrence
    return resource
