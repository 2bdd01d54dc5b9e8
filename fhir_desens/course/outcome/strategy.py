"""Which write the EHR allows for the outcome: update the allergy, write a clinical note, or nothing.

Decided from three things, all of which must agree (bedside.md §4):

* the server's CapabilityStatement: ``rest[mode=server].resource[type].interaction``;
* the scopes granted to this launch (:class:`~fhir_desens.client.scopes.GrantedScopes`);
* the per-server setting (``allergy_write``): ``auto`` (decide from the first two), ``update``, ``note``
  or ``none``. A setting can only narrow what the server and the token allow, never widen it: Epic
  advertises AllergyIntolerance *create* (into a holding tank, no de-duplication), so a site sets
  ``note`` and the outcome goes into a clinical note instead of a second allergy.

Paths, in order of preference: :attr:`WritePath.UPDATE_ALLERGY` (read, change, PUT with If-Match),
:attr:`WritePath.CLINICAL_NOTE` (DocumentReference, never a second AllergyIntolerance),
:attr:`WritePath.NOTHING_WRITABLE` (copy-ready text, printable summary, a task for the allergist).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from fhir_desens.client.scopes import GrantedScopes
from fhir_desens.course.outcome.allergy_change import Flavor
from fhir_desens.errors import ConfigurationError

__all__ = ["ALLERGY_WRITE_SETTINGS", "WriteDecision", "WritePath", "choose_write", "server_interactions"]

#: Accepted values of the per-server setting.
ALLERGY_WRITE_SETTINGS = ("auto", "update", "note", "none")
_CAPABILITY_INTERACTION = {"c": "create", "u": "update", "s": "search-type"}


class WritePath(Enum):
    UPDATE_ALLERGY = "update"
    CLINICAL_NOTE = "note"
    NOTHING_WRITABLE = "none"


@dataclass(frozen=True)
class WriteDecision:
    path: WritePath
    reasons: tuple[str, ...]  # why, in words (shown on the preview)
    flavor: Flavor = Flavor.R4
    provenance: bool = False  # whether a Provenance can be written too
    add_allergy: bool = False  # whether a missing drug can be added to the allergy list


def server_interactions(capabilities: Mapping[str, Any]) -> dict[str, set[str]]:
    """Resource type -> its interaction codes, from the server-mode rest entries of a CapabilityStatement."""
    found: dict[str, set[str]] = {}
    for rest in capabilities.get("rest") or []:
        if not isinstance(rest, Mapping) or rest.get("mode", "server") != "server":
            continue
        for resource in rest.get("resource") or []:
            if not isinstance(resource, Mapping) or not isinstance(resource.get("type"), str):
                continue
            codes = {
                str(item.get("code"))
                for item in resource.get("interaction") or []
                if isinstance(item, Mapping) and item.get("code")
            }
            found.setdefault(resource["type"], set()).update(codes)
    return found


#: what a clinician calls each write the decision weighs (the FHIR name follows in brackets, for support)
_WRITE_WORDS = {
    ("AllergyIntolerance", "update"): "updating allergy records",
    ("AllergyIntolerance", "create"): "adding allergy records",
    ("AllergyIntolerance", "search-type"): "searching allergy records",
    ("DocumentReference", "create"): "writing clinical notes",
    ("DocumentReference", "search-type"): "searching clinical notes",
    ("Provenance", "create"): "writing audit entries",
    ("Provenance", "search-type"): "searching audit entries",
}


def _can(
    interactions: Mapping[str, set[str]], scopes: GrantedScopes, resource_type: str, letter: str
) -> tuple[bool, str]:
    interaction = _CAPABILITY_INTERACTION[letter]
    fhir = f"{resource_type} {interaction}"
    words = _WRITE_WORDS.get((resource_type, interaction), fhir)
    if interaction not in interactions.get(resource_type, set()):
        return False, f"the EHR does not offer {words} ({fhir})"
    if not scopes.allows(resource_type, letter):
        return False, f"this launch was not granted {words} ({fhir})"
    return True, f"the EHR offers {words} and this launch may do it ({fhir})"


def _can_create_once(
    interactions: Mapping[str, set[str]], scopes: GrantedScopes, resource_type: str
) -> tuple[bool, str]:
    """Create, and search first (what makes a second confirmation write nothing)."""
    created, why = _can(interactions, scopes, resource_type, "c")
    if not created:
        return False, why
    searched, why_not = _can(interactions, scopes, resource_type, "s")
    if not searched:
        return False, f"{why_not}, so an earlier write could not be found before writing again"
    return True, why


def _flavor(capabilities: Mapping[str, Any]) -> Flavor:
    software = capabilities.get("software")
    name = str(software.get("name", "")) if isinstance(software, Mapping) else ""
    publisher = str(capabilities.get("publisher", ""))
    text = f"{name} {publisher}".lower()
    return (
        Flavor.MILLENNIUM
        if any(word in text for word in ("millennium", "cerner", "oracle health"))
        else Flavor.R4
    )


def choose_write(
    capabilities: Mapping[str, Any],
    scopes: GrantedScopes,
    setting: str = "auto",
    *,
    flavor: Flavor | None = None,
) -> WriteDecision:
    """The write path for this server, token and setting; ``flavor`` overrides the one read from ``software``."""
    if setting not in ALLERGY_WRITE_SETTINGS:
        raise ConfigurationError(
            f"allergy_write setting {setting!r} is not one of {', '.join(ALLERGY_WRITE_SETTINGS)}"
        )
    interactions = server_interactions(capabilities)
    chosen_flavor = flavor or _flavor(capabilities)
    provenance, _ = _can_create_once(interactions, scopes, "Provenance")
    add_allergy, _ = _can_create_once(interactions, scopes, "AllergyIntolerance")
    reasons: list[str] = []
    if setting == "none":
        return WriteDecision(
            WritePath.NOTHING_WRITABLE, ("the site setting says: write nothing to this EHR",)
        )
    if setting in ("auto", "update"):
        update, why = _can(interactions, scopes, "AllergyIntolerance", "u")
        if update:
            return WriteDecision(WritePath.UPDATE_ALLERGY, (why,), chosen_flavor, provenance, add_allergy)
        reasons.append(f"the allergy cannot be updated: {why}")
    else:
        reasons.append("the site setting says: clinical note instead of an allergy update")
    if setting != "update":
        note, why = _can_create_once(interactions, scopes, "DocumentReference")
        if note:
            reasons.append(f"a clinical note can be written: {why}")
            return WriteDecision(
                WritePath.CLINICAL_NOTE, tuple(reasons), chosen_flavor, provenance, add_allergy
            )
        reasons.append(f"no clinical note either: {why}")
    return WriteDecision(WritePath.NOTHING_WRITABLE, tuple(reasons), chosen_flavor)
