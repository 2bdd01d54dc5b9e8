"""The chart as the course reads it, through a SMART session's token: the patient, the signer, the
encounter, the allergy list, the active orders and body measurements (no Flask)."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests

from fhir_desens.client.fhir_rest import FhirClient, reference
from fhir_desens.client.smart import ORDER_WRITES, SmartSession
from fhir_desens.errors import (
    AuthError,
    FhirServerError,
    ForbiddenError,
)
from fhir_desens.fhir import canonical as c
from fhir_desens.fhir.allergy import Allergy, allergy_from_fhir
from fhir_desens.fhir.chart.drugs import DrugCandidate
from fhir_desens.fhir.chart.measurements import BodyMeasurements, Measurement
from fhir_desens.protocol.display import chart_date_text
from fhir_desens.protocol.quantity import (
    display,
)

log = logging.getLogger(__name__)

FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
PRACTITIONER = re.compile(r"(?:^|/)(Practitioner/[A-Za-z0-9\-.]{1,64})$")
LOCATION = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?/?$")
LOINC = "http://loinc.org"
HEIGHT_LOINC = "8302-2"
WEIGHT_LOINC = "29463-7"
ORDER_STATUSES = "active,on-hold,draft"
MAX_MEDICATION_READS = 20
MAX_TEXT = 200
MAX_INDICATION = 500
MAX_NUMBER_TEXT = 24
_REFERENCE = {kind: re.compile(kind + r"/[A-Za-z0-9\-.]{1,64}") for kind in ("Medication", "Condition")}


def belongs_to(resource: Mapping[str, Any], own: str, element: str = "patient") -> bool:
    """Whether ``resource.<element>`` (patient or subject) references ``own`` ("Patient/<id>")."""
    patient = resource.get(element)
    ref = patient.get("reference") if isinstance(patient, Mapping) else None
    return isinstance(ref, str) and (ref == own or ref.endswith("/" + own))


# --- the SMART session and its FHIR client -----------------------------------------------------------


def missing_order_scopes(smart: SmartSession) -> list[str]:
    """The writes of the orders transaction the token lacks, as v2 scopes, for the message (whether
    signing is allowed is :attr:`SmartSession.can_sign_orders`, the one rule)."""
    granted = smart.granted
    missing = []
    for resource_type, letters in ORDER_WRITES:
        absent = "".join(letter for letter in letters if not granted.allows(resource_type, letter))
        if absent:
            missing.append(f"patient/{resource_type}.{absent}")
    return missing


@contextmanager
def open_client(smart: SmartSession) -> Iterator[FhirClient]:
    """A FHIR client with the session's token, HTTP session, timeout and retry policy."""
    options: dict[str, Any] = {}
    if smart.client is not None:
        options = {"session": smart.client.http, "timeout": smart.client.timeout, "retry": smart.client.retry}
    with FhirClient(smart.fhir_base, auth=smart, **options) as client:
        yield client


def patient_reference(smart: SmartSession) -> str:
    if not smart.patient:
        raise AuthError(
            "the EHR did not give this launch a patient context; open the app from a patient's chart"
        )
    return reference("Patient", smart.patient)


def practitioner_reference(smart: SmartSession) -> str | None:
    """The signer: the session's fhirUser when it is a Practitioner of this FHIR server."""
    user = smart.fhir_user or ""
    match = PRACTITIONER.search(user)
    if match is None:
        return None
    if "://" in user and not user.startswith(smart.fhir_base.rstrip("/") + "/"):
        return None  # a Practitioner of another server cannot be referenced from this chart
    return match.group(1)


def encounter_reference(smart: SmartSession) -> str | None:
    value = smart.encounter or ""
    value = value.removeprefix("Encounter/")
    return f"Encounter/{value}" if FHIR_ID.match(value) else None


# --- reading the chart for planning --------------------------------------------------------------------------


def fhir_client(smart: SmartSession, *, http: requests.Session, timeout: float) -> FhirClient:
    return FhirClient(smart.fhir_base, session=http, auth=smart, timeout=(min(5.0, timeout), timeout))


def own_resources(resources: list[dict[str, Any]], own: str, element: str, kind: str) -> list[dict[str, Any]]:
    """Drop resources of another patient (a server bug must never mix charts)."""
    kept = [r for r in resources if belongs_to(r, own, element)]
    if len(kept) != len(resources):
        log.warning("dropped %d %s resources of another patient", len(resources) - len(kept), kind)
    return kept


def allergy_search(own: str) -> dict[str, str]:
    """The AllergyIntolerance search of :func:`search_allergies` (for a batch)."""
    return {"patient": own, "_count": "100"}


def search_allergies(
    client: FhirClient, smart: SmartSession, first_page: Mapping[str, Any] | None = None
) -> list[dict[str, Any]] | None:
    """The patient's AllergyIntolerance resources, or None when the grant does not allow reading them
    (uncached: see app_session). ``first_page``: the search's first page when a batch read it."""
    own = patient_reference(smart)
    if not smart.granted.can_read("AllergyIntolerance"):
        return None
    if first_page is not None:
        resources = client.rest_of_search("AllergyIntolerance", first_page)
    else:
        resources = client.search_all("AllergyIntolerance", allergy_search(own))
    return [
        r
        for r in own_resources(resources, own, "patient", "AllergyIntolerance")
        if r.get("resourceType") == "AllergyIntolerance"
    ]


def allergies_of(resources: list[dict[str, Any]] | None) -> list[Allergy] | None:
    return None if resources is None else [allergy_from_fhir(r) for r in resources]


def read_allergies(client: FhirClient, smart: SmartSession) -> list[Allergy] | None:
    """The patient's AllergyIntolerance records, or None when the grant does not allow reading them."""
    return allergies_of(search_allergies(client, smart))


def first_page(client: FhirClient, resource_type: str, params: dict[str, str]) -> list[dict[str, Any]]:
    bundle = client.search(resource_type, params)
    found = []
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        search = entry.get("search") if isinstance(entry, dict) else None
        if isinstance(search, dict) and search.get("mode") == "outcome":
            continue
        if isinstance(resource, dict) and resource.get("resourceType") == resource_type:
            found.append(resource)
    return found


def medication_references(requests_: Iterable[Mapping[str, Any]]) -> list[str]:
    refs: list[str] = []
    for request in requests_:
        ref = request.get("medicationReference")
        value = ref.get("reference") if isinstance(ref, Mapping) else None
        if isinstance(value, str) and _REFERENCE["Medication"].fullmatch(value) and value not in refs:
            refs.append(value)
    return refs[:MAX_MEDICATION_READS]


def condition_references(requests_: Iterable[Mapping[str, Any]]) -> list[str]:
    refs: list[str] = []
    for request in requests_:
        for reason in request.get("reasonReference") or []:
            value = reason.get("reference") if isinstance(reason, Mapping) else None
            if isinstance(value, str) and _REFERENCE["Condition"].fullmatch(value) and value not in refs:
                refs.append(value)
    return refs[:MAX_MEDICATION_READS]


def read_references(client: FhirClient, refs: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Read each "Type/id" reference; one unreadable resource must not hide the rest."""
    found: dict[str, dict[str, Any]] = {}
    for ref in refs:
        resource_type, _, resource_id = ref.partition("/")
        try:
            found[ref] = client.read(resource_type, resource_id).resource
        except FhirServerError as error:  # 404, 410, 5xx: skipped, the rest still shown
            log.warning("could not read a %s: status %s", resource_type, error.status)
        except ForbiddenError:  # e.g. another patient's Condition: skipped, never a blocked page
            log.warning("could not read a %s: not allowed", resource_type)
    return found


@dataclass(frozen=True)
class ChartForPlanning:
    """What the start form is pre-filled from."""

    candidates: tuple[DrugCandidate, ...]
    measurements: BodyMeasurements
    allergies: tuple[Allergy, ...] | None  # None: the grant does not allow reading them
    unavailable: tuple[str, ...] = ()  # what could not be read, for people ("medication orders")
    #: referenced resources that could not be read (other patient, 403, 404), each named with why
    skipped: tuple[str, ...] = ()

    @property
    def not_used(self) -> tuple[str, ...]:
        """What the chart holds but the app did not use, each with its reference and why: future-dated,
        implausible or self-contradicting measurements, unreadable references (never silently)."""
        return self.measurements.notes + self.skipped

    @property
    def height_source(self) -> str | None:
        """'165 cm on 18 Nov 2026': what the chart says, for the form's hint."""
        return _measured(self.measurements.height)

    @property
    def weight_source(self) -> str | None:
        return _measured(self.measurements.weight)


def _measured(measurement: Measurement | None) -> str | None:
    if measurement is None:
        return None
    when = f" on {chart_date_text(measurement.date[:10])}" if measurement.date else ""  # "18 Nov 2026"
    return f"{display(measurement.value, 2)} {measurement.unit}{when}"


def desensitization_step(order: Mapping[str, Any]) -> bool:
    """A step order of a signed plan (ours): part of a plan, never a drug to plan from."""
    return any(
        isinstance(i, Mapping) and i.get("system") == c.ID_STEP_ORDER for i in order.get("identifier") or []
    )


def candidate_key(candidate: DrugCandidate) -> str:
    """A stable option value for a candidate (the chart is read again when the form comes back)."""
    material = "|".join(
        [candidate.source, candidate.order_reference or "", candidate.name, *candidate.rxnorm]
    )
    return "c-" + hashlib.sha256(material.encode()).hexdigest()[:16]
