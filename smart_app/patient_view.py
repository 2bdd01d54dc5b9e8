"""What the patient page shows: the banner and the allergy list, read through the SMART session.

Thin glue: FHIR reading lives in :mod:`fhir_desens.fhir.allergy`, the contraindication rules in
:mod:`fhir_desens.protocol.screening`, HTTP in :class:`fhir_desens.client.fhir_rest.FhirClient`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

from fhir_desens.client.fhir_rest import FhirClient, reference
from fhir_desens.client.smart import SmartSession
from fhir_desens.errors import AuthError
from fhir_desens.fhir.allergy import Allergy, allergy_from_fhir, sort_for_display
from fhir_desens.protocol.screening import Coding, Manifestation, ScreeningResult, screen_reactions

log = logging.getLogger(__name__)

MRN_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0203"


@dataclass(frozen=True)
class PatientBanner:
    name: str
    sex: str | None
    birth_date: str | None
    mrn: str | None


@dataclass(frozen=True)
class AllergyRow:
    allergy: Allergy
    screening: ScreeningResult | None

    @property
    def contraindicated(self) -> bool:
        return self.screening is not None and self.screening.contraindicated


@dataclass(frozen=True)
class AllergyList:
    rows: tuple[AllergyRow, ...]
    no_known: tuple[Allergy, ...] = ()
    no_information: tuple[Allergy, ...] = ()
    hidden: tuple[Allergy, ...] = field(default=())

    @property
    def state(self) -> str:
        """``allergies``, ``nka`` (only "no known allergy" statements) or ``none`` (nothing recorded)."""
        if self.rows:
            return "allergies"
        if self.no_known:
            return "nka"
        return "none"

    @property
    def conflicting(self) -> bool:
        """A "no known allergy" statement next to recorded allergies: worth a warning."""
        return bool(self.rows and self.no_known)

    @property
    def contraindicated_count(self) -> int:
        return sum(1 for row in self.rows if row.contraindicated)


def _name(patient: Mapping[str, Any]) -> str:
    names = [n for n in patient.get("name") or [] if isinstance(n, dict)]
    if not names:
        return "(name not recorded)"
    chosen = next((n for u in ("official", "usual") for n in names if n.get("use") == u), names[0])
    if isinstance(chosen.get("text"), str) and chosen["text"].strip():
        return str(chosen["text"]).strip()
    given = [g for g in chosen.get("given") or [] if isinstance(g, str)]
    family = chosen.get("family") if isinstance(chosen.get("family"), str) else ""
    text = " ".join([*given, family]).strip()
    return text or "(name not recorded)"


def _mrn(patient: Mapping[str, Any]) -> str | None:
    for identifier in patient.get("identifier") or []:
        if not isinstance(identifier, dict) or not isinstance(identifier.get("value"), str):
            continue
        type_ = identifier.get("type")
        codings = type_.get("coding") if isinstance(type_, dict) else None
        for coding in codings or []:
            if isinstance(coding, dict) and coding.get("code") == "MR":
                return str(identifier["value"])
    return None


def banner_from_patient(patient: Mapping[str, Any]) -> PatientBanner:
    gender = patient.get("gender")
    birth = patient.get("birthDate")
    return PatientBanner(
        name=_name(patient),
        sex=gender.capitalize() if isinstance(gender, str) else None,
        birth_date=birth if isinstance(birth, str) else None,
        mrn=_mrn(patient),
    )


def _manifestations(allergy: Allergy) -> list[Manifestation]:
    found: list[Manifestation] = []
    for reaction in allergy.reactions:
        for concept in reaction.manifestations:
            codings = tuple(Coding(c.system, c.code, c.display) for c in concept.codings)
            found.append(Manifestation(text=concept.text, codings=codings))
        if reaction.description:
            found.append(Manifestation(text=reaction.description))
    return found


def screen(allergy: Allergy) -> ScreeningResult | None:
    """Screen drug allergies (and allergies of unrecorded category) for contraindicating reactions."""
    if allergy.is_drug or not allergy.categories:
        return screen_reactions(_manifestations(allergy))
    return None


def build_allergy_list(resources: Iterable[Mapping[str, Any]]) -> AllergyList:
    rows: list[Allergy] = []
    hidden: list[Allergy] = []
    no_known: list[Allergy] = []
    no_info: list[Allergy] = []
    for resource in resources:
        if resource.get("resourceType") != "AllergyIntolerance":
            continue
        allergy = allergy_from_fhir(resource)
        if allergy.is_entered_in_error:
            hidden.append(allergy)
        elif allergy.is_no_known_allergy:
            if allergy.clinical_status in (None, "active") and not allergy.is_refuted:
                no_known.append(allergy)
        elif allergy.is_no_information:
            no_info.append(allergy)
        else:
            rows.append(allergy)
    return AllergyList(
        rows=tuple(AllergyRow(a, screen(a)) for a in sort_for_display(rows)),
        no_known=tuple(no_known),
        no_information=tuple(no_info),
        hidden=tuple(hidden),
    )


@dataclass(frozen=True)
class PatientPage:
    banner: PatientBanner
    allergies: AllergyList
    can_write: bool
    can_read_allergies: bool


def _belongs_to(resource: Mapping[str, Any], own: str) -> bool:
    patient = resource.get("patient")
    ref = patient.get("reference") if isinstance(patient, Mapping) else None
    return isinstance(ref, str) and (ref == own or ref.endswith("/" + own))


def load_patient_page(smart: SmartSession, *, http: requests.Session, timeout: float) -> PatientPage:
    """Read the launch patient and their allergy list from the EHR."""
    if not smart.patient:
        raise AuthError(
            "the EHR did not give this launch a patient context; open the app from a patient's chart"
        )
    client = FhirClient(smart.fhir_base, session=http, auth=smart, timeout=(min(5.0, timeout), timeout))
    patient = client.read("Patient", smart.patient).resource
    can_read = smart.granted.can_read("AllergyIntolerance")
    resources: list[dict[str, Any]] = []
    if can_read:
        resources = client.search_all(
            "AllergyIntolerance", {"patient": reference("Patient", smart.patient), "_count": "100"}
        )
    own = reference("Patient", smart.patient)
    foreign = [r for r in resources if not _belongs_to(r, own)]
    if foreign:  # a server bug must never show another patient's allergies
        log.warning("dropped %d AllergyIntolerance resources of another patient", len(foreign))
        resources = [r for r in resources if _belongs_to(r, own)]
    return PatientPage(
        banner=banner_from_patient(patient),
        allergies=build_allergy_list(resources),
        can_write=smart.can_write,
        can_read_allergies=can_read,
    )
