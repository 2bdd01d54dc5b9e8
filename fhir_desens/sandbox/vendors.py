"""Vendor profiles of the sandbox gateway: what a real EHR would accept for write, per launch.

The app must decide what to write from what the EHR accepts (issue 12, bedside.md 1.5 and 4). The gateway
behaves like one of these, chosen per launch (``/launch?vendor=epic-like`` or
``Sandbox.create_launch(..., vendor=...)``; the access token carries the choice):

``permissive``
    Everything the FHIR server can do (the default).
``epic-like`` (Epic's public R4 catalog)
    MedicationAdministration, Procedure, AdverseEvent, Provenance and Encounter are read/search only;
    AllergyIntolerance, DocumentReference and Observation are create only (no update, no PATCH);
    a vital-sign Observation needs ``status`` final and an open (not finished/cancelled) encounter;
    no conditional create, no transaction or batch.
``millennium-like`` (Oracle Health Millennium R4)
    MedicationAdministration and AdverseEvent are read/search only; Procedure is create only and only
    with ``status`` completed; an update needs ``If-Match`` (412 without) and a stale one answers **409**;
    no PATCH, no conditional create, no transaction or batch. An AllergyIntolerance update follows
    Millennium's documented rules (bedside.md section 4): ``code``, ``patient``, the manifestations of the
    reactions already recorded and the notes already recorded cannot change; a new reaction holds exactly
    one manifestation and nothing but ``manifestation`` and ``severity``; a new note cannot name its
    author or time (both come from the token and the server). Its CapabilityStatement names the software
    ("Oracle Health Millennium"), which is how the app recognises these rules without a site setting.

Refusals are OperationOutcomes: 405 for an interaction the vendor does not offer, 422 for a business rule,
400 for an unsupported header. The CapabilityStatement (``/metadata`` with the launch's token) lists only
what the profile allows.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fhir_desens.errors import InputError

WRITES = ("create", "update", "patch", "delete")
CLOSED_ENCOUNTER_STATUSES = frozenset({"finished", "cancelled", "entered-in-error"})


#: A vendor's business rule: the request body and a read of the server's current resources.
Rule = Callable[[dict[str, Any], Callable[[str], dict[str, Any] | None]], None]


class VendorRefusal(Exception):
    """A request the chosen vendor would refuse (rendered by the gateway as an OperationOutcome)."""

    def __init__(self, status: int, code: str, diagnostics: str) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.code = code
        self.diagnostics = diagnostics


@dataclass(frozen=True)
class VendorProfile:
    name: str
    summary: str
    read_only: frozenset[str] = frozenset()  # no create, update, patch or delete
    create_only: frozenset[str] = frozenset()  # create, but no update, patch or delete
    patch: bool = True
    bundles: bool = True  # transaction and batch
    conditional_create: bool = True
    require_if_match: bool = False
    stale_version_status: int = 412  # what a stale If-Match answers
    create_rules: Mapping[str, Rule] = field(default_factory=dict)
    update_rules: Mapping[str, Rule] = field(default_factory=dict)
    software: Mapping[str, str] | None = None  # CapabilityStatement.software, as the vendor names itself

    def allows(self, kind: str, resource_type: str | None) -> bool:
        """Whether the profile offers this interaction at all (the CapabilityStatement view)."""
        if kind in ("transaction", "batch", "bundle"):
            return self.bundles
        if resource_type is None or kind not in WRITES:
            return True
        if resource_type in self.read_only:
            return False
        if kind == "patch" and not self.patch:
            return False
        return not (resource_type in self.create_only and kind != "create")

    def check(
        self,
        kind: str,
        resource_type: str | None,
        headers: Mapping[str, str],  # the request's headers, names in title case
        body: dict[str, Any] | None,
        fetch: Callable[[str], dict[str, Any] | None],
    ) -> None:
        """Raise VendorRefusal when this vendor would refuse the request."""
        label = f"{self.name}: {kind} of {resource_type}" if resource_type else f"{self.name}: {kind}"
        if not self.allows(kind, resource_type):
            raise VendorRefusal(
                405, "not-supported", f"{label} is not offered by this EHR (read/search only)"
            )
        if kind == "create" and "If-None-Exist" in headers and not self.conditional_create:
            raise VendorRefusal(400, "not-supported", f"{self.name}: conditional create is not supported")
        if kind == "update" and self.require_if_match and "If-Match" not in headers:
            raise VendorRefusal(
                412, "conflict", f"{self.name}: an update needs If-Match with the version read"
            )
        rule = self.rules_for(kind).get(resource_type or "")
        if rule is None or body is None:
            return
        if kind == "update" and not _is_current(resource_type, body, headers.get("If-Match"), fetch):
            return  # a stale update: the server answers the version conflict first, as the EHR does
        rule(body, fetch)

    def rules_for(self, kind: str) -> Mapping[str, Rule]:
        """The business rules this vendor applies to a create or an update (by resource type)."""
        return {"create": self.create_rules, "update": self.update_rules}.get(kind, {})

    def capability(self, statement: dict[str, Any]) -> dict[str, Any]:
        """The CapabilityStatement as this vendor would publish it."""
        result = copy.deepcopy(statement)
        if self.software is not None:
            result["software"] = dict(self.software)
        for rest in result.get("rest") or []:
            if not self.bundles:
                rest["interaction"] = [
                    i for i in rest.get("interaction") or [] if i.get("code") not in ("transaction", "batch")
                ]
            for resource in rest.get("resource") or []:
                resource_type = resource.get("type")
                resource["interaction"] = [
                    i
                    for i in resource.get("interaction") or []
                    if self.allows(_INTERACTION_KIND.get(i.get("code"), i.get("code")), resource_type)
                ]
                if not self.conditional_create:
                    resource["conditionalCreate"] = False
                if not self.patch:
                    resource.pop("conditionalPatch", None)
        return result


def _is_current(
    resource_type: str | None,
    body: Mapping[str, Any],
    if_match: str | None,
    fetch: Callable[[str], dict[str, Any] | None],
) -> bool:
    """Whether ``If-Match`` names the version the server holds now (``W/"3"`` or ``"3"``)."""
    current = fetch(f"{resource_type}/{body.get('id')}")
    if current is None or if_match is None:
        return False
    version = if_match.removeprefix("W/").strip('"')
    return str((current.get("meta") or {}).get("versionId")) == version


_INTERACTION_KIND = {"create": "create", "update": "update", "patch": "patch", "delete": "delete"}


def _epic_vital_sign(observation: dict[str, Any], fetch: Callable[[str], dict[str, Any] | None]) -> None:
    if observation.get("status") != "final":
        raise VendorRefusal(422, "business-rule", "epic-like: Observation.status must be 'final'")
    reference = (observation.get("encounter") or {}).get("reference")
    if not isinstance(reference, str) or not reference:
        raise VendorRefusal(
            422, "business-rule", "epic-like: Observation.encounter (an open encounter) is required"
        )
    encounter = fetch(reference)
    if encounter is None or encounter.get("resourceType") != "Encounter":
        raise VendorRefusal(422, "business-rule", "epic-like: Observation.encounter does not exist")
    if encounter.get("status") in CLOSED_ENCOUNTER_STATUSES:
        raise VendorRefusal(422, "business-rule", "epic-like: the encounter is closed")


def _millennium_procedure(procedure: dict[str, Any], fetch: Callable[[str], dict[str, Any] | None]) -> None:
    if procedure.get("status") != "completed":
        raise VendorRefusal(
            422, "business-rule", "millennium-like: a Procedure can only be created 'completed'"
        )


def _millennium_allergy_update(
    allergy: dict[str, Any], fetch: Callable[[str], dict[str, Any] | None]
) -> None:
    """Millennium's AllergyIntolerance update rules (cerner/fhir.cerner.com, bedside.md section 4)."""
    current = fetch(f"AllergyIntolerance/{allergy.get('id')}")
    if current is None:
        return  # the update itself answers 404
    for name in ("code", "patient"):
        if allergy.get(name) != current.get(name):
            _refuse_allergy_update(f"{name} cannot be modified")
    old_reactions, new_reactions = current.get("reaction") or [], allergy.get("reaction") or []
    for index, reaction in enumerate(new_reactions):
        if index < len(old_reactions):
            if reaction.get("manifestation") != old_reactions[index].get("manifestation"):
                _refuse_allergy_update("reaction.manifestation cannot be modified")
            continue
        if len(reaction.get("manifestation") or []) != 1:
            _refuse_allergy_update("a reaction holds exactly one manifestation")
        extra = sorted(set(reaction) - {"manifestation", "severity"})
        if extra:
            _refuse_allergy_update(f"reaction.{extra[0]} is not supported (manifestation and severity only)")
    old_notes, new_notes = current.get("note") or [], allergy.get("note") or []
    if new_notes[: len(old_notes)] != old_notes:
        _refuse_allergy_update("an existing note cannot be modified")
    for note in new_notes[len(old_notes) :]:
        named = sorted(set(note) & {"authorReference", "authorString", "time"})
        if named:
            _refuse_allergy_update(f"note.{named[0]} cannot be set: it is taken from the token")


def _refuse_allergy_update(why: str) -> None:
    raise VendorRefusal(422, "business-rule", f"millennium-like: AllergyIntolerance update: {why}")


PERMISSIVE = VendorProfile("permissive", "everything the FHIR server can do")
EPIC_LIKE = VendorProfile(
    "epic-like",
    "no MedicationAdministration/Procedure/AdverseEvent/Provenance writes; Observation, AllergyIntolerance "
    "and DocumentReference create only; vitals need status final and an open encounter; "
    "no conditional create, no transaction",
    read_only=frozenset({"MedicationAdministration", "Procedure", "AdverseEvent", "Provenance", "Encounter"}),
    create_only=frozenset({"AllergyIntolerance", "DocumentReference", "Observation"}),
    patch=False,
    bundles=False,
    conditional_create=False,
    create_rules={"Observation": _epic_vital_sign},
)
MILLENNIUM_LIKE = VendorProfile(
    "millennium-like",
    "no MedicationAdministration/AdverseEvent writes; Procedure create only and only completed; "
    "updates need If-Match and a stale one answers 409; no PATCH, no conditional create, no transaction",
    read_only=frozenset({"MedicationAdministration", "AdverseEvent"}),
    create_only=frozenset({"Procedure"}),
    patch=False,
    bundles=False,
    conditional_create=False,
    require_if_match=True,
    stale_version_status=409,
    create_rules={"Procedure": _millennium_procedure},
    update_rules={"AllergyIntolerance": _millennium_allergy_update},
    software={"name": "Oracle Health Millennium (sandbox millennium-like profile)"},
)
PROFILES: dict[str, VendorProfile] = {p.name: p for p in (PERMISSIVE, EPIC_LIKE, MILLENNIUM_LIKE)}


def profile_named(name: str | None) -> VendorProfile:
    """The profile of that name (``None`` or empty: permissive); InputError for an unknown name."""
    if not name:
        return PERMISSIVE
    if name not in PROFILES:
        raise InputError("vendor", f"unknown vendor profile '{name}'", ", ".join(PROFILES))
    return PROFILES[name]


__all__ = [
    "EPIC_LIKE",
    "MILLENNIUM_LIKE",
    "PERMISSIVE",
    "PROFILES",
    "Rule",
    "VendorProfile",
    "VendorRefusal",
    "profile_named",
]
