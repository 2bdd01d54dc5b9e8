"""What the sandbox EHR knows about its people: patients and practitioners read from the FHIR server.

It is also the authorization server's :class:`~fhir_desens.sandbox.oauth.ContextProvider` (default user,
latest encounter of a patient).
"""

from __future__ import annotations

import logging
from typing import Any

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.errors import DesensError
from fhir_desens.sandbox.pages import PatientChoice, PractitionerChoice
from fhir_desens.sandbox.seed import SeedSummary, human_name

log = logging.getLogger(__name__)

MAX_LISTED = 200


class Directory:
    def __init__(self, client: FhirClient, summary: SeedSummary) -> None:
        self.client = client
        self.summary = summary

    def _first_page(self, resource_type: str) -> list[dict[str, Any]]:
        """One page of resources (the launcher lists at most MAX_LISTED; fixtures are always added)."""
        try:
            bundle = self.client.search(resource_type, {"_count": str(MAX_LISTED)})
        except DesensError as error:
            log.warning("cannot list %s resources: %s", resource_type, type(error).__name__)
            return []
        return [
            e["resource"]
            for e in bundle.get("entry") or []
            if isinstance(e.get("resource"), dict) and e["resource"].get("id")
        ]

    def patients(self) -> list[PatientChoice]:
        """Fixture patients first (in key order), then other patients of the first page."""
        keys = {seeded.id: seeded.key for seeded in self.summary.patients.values()}
        choices = {
            str(r["id"]): PatientChoice(
                str(r["id"]), human_name(r), keys.get(str(r["id"])), r.get("birthDate"), r.get("gender")
            )
            for r in self._first_page("Patient")
        }
        for seeded in self.summary.patients.values():
            choices.setdefault(seeded.id, PatientChoice(seeded.id, seeded.display, seeded.key))
        return sorted(choices.values(), key=lambda p: (p.key is None, p.key or "", p.name))

    def practitioners(self) -> list[PractitionerChoice]:
        """Fixture practitioners first (in fixture order), then others of the first page."""
        choices = {
            seeded.id: PractitionerChoice(seeded.id, seeded.display)
            for seeded in self.summary.practitioners.values()
        }
        for resource in self._first_page("Practitioner"):
            choices.setdefault(
                str(resource["id"]), PractitionerChoice(str(resource["id"]), human_name(resource))
            )
        return list(choices.values())

    def patient(self, key_or_id: str) -> PatientChoice | None:
        patient_id = self.summary.patient_id(key_or_id)
        resource = self._read("Patient", patient_id)
        if resource is None:
            return None
        key = next((s.key for s in self.summary.patients.values() if s.id == patient_id), None)
        return PatientChoice(
            patient_id, human_name(resource), key, resource.get("birthDate"), resource.get("gender")
        )

    def practitioner(self, key_or_id: str) -> PractitionerChoice | None:
        seeded = self.summary.practitioners.get(key_or_id)
        practitioner_id = seeded.id if seeded else key_or_id
        resource = self._read("Practitioner", practitioner_id)
        if resource is None:
            return None
        return PractitionerChoice(practitioner_id, human_name(resource))

    def encounter_of(self, encounter_id: str, patient_id: str) -> bool:
        resource = self._read("Encounter", encounter_id)
        if resource is None:
            return False
        subject = (resource.get("subject") or {}).get("reference", "")
        return isinstance(subject, str) and subject.split("/")[-2:] == ["Patient", patient_id]

    def _read(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        if not resource_id or "/" in resource_id or "?" in resource_id:
            return None
        try:
            return self.client.read(resource_type, resource_id).resource
        except DesensError:
            return None

    # -- ContextProvider ------------------------------------------------------------------------------
    def default_practitioner(self) -> str | None:
        if self.summary.practitioners:
            return next(iter(self.summary.practitioners.values())).id
        choices = self.practitioners()
        return choices[0].id if choices else None

    def latest_encounter(self, patient_id: str) -> str | None:
        try:
            bundle = self.client.search(
                "Encounter", {"patient": f"Patient/{patient_id}", "_sort": "-date", "_count": "1"}
            )
        except DesensError as error:
            log.warning("cannot search encounters: %s", type(error).__name__)
            return None
        for entry in bundle.get("entry") or []:
            resource = entry.get("resource")
            if (
                isinstance(resource, dict)
                and resource.get("resourceType") == "Encounter"
                and resource.get("id")
            ):
                return str(resource["id"])
        return None
