"""What the patient page shows: the banner and the allergy list, read through the SMART session.

Thin glue: FHIR reading lives in :mod:`fhir_desens.fhir.allergy`, the contraindication rules in
:mod:`fhir_desens.protocol.screening`, HTTP in :class:`fhir_desens.client.fhir_rest.FhirClient`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fhir_desens.boundary.text import chart_text
from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.client.smart import SmartSession
from fhir_desens.course.assessment import screen
from fhir_desens.course.chart import patient_reference
from fhir_desens.errors import AuthError
from fhir_desens.fhir.allergy import Allergy, allergy_from_fhir, sort_for_display
from fhir_desens.protocol.display import chart_date_text
from fhir_desens.protocol.screening import ScreeningResult

if TYPE_CHECKING:
    from smart_app.app_session import AppSession

log = logging.getLogger(__name__)

MRN_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0203"


@dataclass(frozen=True)
class PatientBanner:
    name: str
    sex: str | None
    birth_date: str | None  # as people read it ("2 Mar 1975", display.chart_date_text)
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


MAX_NAME = 200


def person_name(resource: Mapping[str, Any], *, titles: bool = False) -> str | None:
    """The official (else usual, else first) HumanName of a Patient, Practitioner ...; ``titles`` adds
    its prefixes and suffixes ("Dr. Amara Okoro, MD"). None when no name is recorded. Chart text made
    safe once (:func:`~fhir_desens.boundary.text.chart_text`: no direction overrides, invisible
    characters or lone surrogates in a banner)."""
    text = _person_name(resource, titles=titles)
    return chart_text(text, limit=MAX_NAME) or None if text else None


def _person_name(resource: Mapping[str, Any], *, titles: bool) -> str | None:
    names = [n for n in resource.get("name") or [] if isinstance(n, dict)]
    if not names:
        return None
    chosen = next((n for u in ("official", "usual") for n in names if n.get("use") == u), names[0])
    if isinstance(chosen.get("text"), str) and chosen["text"].strip():
        return " ".join(str(chosen["text"]).split())

    def words(key: str) -> list[str]:
        return [w.strip() for w in chosen.get(key) or [] if isinstance(w, str) and w.strip()]

    family = str(chosen["family"]).strip() if isinstance(chosen.get("family"), str) else ""
    text = " ".join([*(words("prefix") if titles else []), *words("given"), family]).strip()
    if titles and text and words("suffix"):
        text += ", " + ", ".join(words("suffix"))
    return text or None


def _name(patient: Mapping[str, Any]) -> str:
    return person_name(patient) or "(name not recorded)"


def _mrn(patient: Mapping[str, Any]) -> str | None:
    for identifier in patient.get("identifier") or []:
        if not isinstance(identifier, dict) or not isinstance(identifier.get("value"), str):
            continue
        type_ = identifier.get("type")
        codings = type_.get("coding") if isinstance(type_, dict) else None
        for coding in codings or []:
            if isinstance(coding, dict) and coding.get("code") == "MR":
                return chart_text(str(identifier["value"]), limit=64)
    return None


def banner_from_patient(patient: Mapping[str, Any]) -> PatientBanner:
    gender = patient.get("gender")
    birth = patient.get("birthDate")
    return PatientBanner(
        name=_name(patient),
        sex=chart_text(gender, limit=20).capitalize() if isinstance(gender, str) else None,
        birth_date=chart_date_text(chart_text(birth, limit=30)) if isinstance(birth, str) else None,
        mrn=_mrn(patient),
    )


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


def load_patient_page(session: AppSession) -> PatientPage:
    """The launch patient and their allergy list, read afresh from the EHR (this also refreshes the
    planning pages' short cache, see smart_app.app_session)."""
    smart = session.smart
    if not smart.patient:
        raise AuthError(
            "the EHR did not give this launch a patient context; open the app from a patient's chart"
        )
    patient = session.patient(fresh=True)
    resources = session.allergy_resources(fresh=True)
    return PatientPage(
        banner=banner_from_patient(patient),
        allergies=build_allergy_list(resources or []),
        can_write=smart.can_write,
        can_read_allergies=resources is not None,
    )


def read_banner(client: FhirClient, smart: SmartSession) -> tuple[PatientBanner, dict[str, Any]]:
    """The launch patient's banner and Patient resource, read from the EHR (uncached: see app_session)."""
    patient_reference(smart)
    assert smart.patient is not None
    resource = client.read("Patient", smart.patient).resource
    return banner_from_patient(resource), resource
