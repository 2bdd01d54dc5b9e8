""" "Copy this plan": a new course with the parameters of a signed one (a signed plan is never edited)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.client.smart import SmartSession
from fhir_desens.course.chart import (
    belongs_to,
    first_page,
    medication_references,
    patient_reference,
)
from fhir_desens.course.draft import CopiedSettings
from fhir_desens.course.readback import SignedPlan, _diluent_key
from fhir_desens.errors import (
    DesensError,
    FhirServerError,
    InputError,
)
from fhir_desens.fhir import canonical as c
from fhir_desens.fhir.allergy import RXNORM
from fhir_desens.fhir.canonical import EXT_CLOSING_METHOD
from fhir_desens.fhir.plandefinition import canonical_url
from fhir_desens.protocol.model import Protocol, ProtocolKind
from fhir_desens.protocol.quantity import (
    Quantity,
    plain,
)

log = logging.getLogger(__name__)


def draft_fields_from_signed(signed: SignedPlan) -> dict[str, Any]:
    """What "Copy this plan" pre-fills, named like the draft's fields and the start form's.

    ``request_group, protocol_id, final_rate_ml_h, bag_volume_ml, closing, drug, drug_rxnorm`` (as
    :class:`~fhir_desens.course.draft.CopiedSettings`), ``diluent`` (a key of ``draft.DILUENTS``, None:
    the protocol's), ``insert_before``, ``indication``, and the dose as prescribed:
    ``target_dose`` (text) and ``dose_unit`` (UCUM code: mg, mg/m2 ...) with ``dose_basis`` (how a
    per-m² dose became the total). Only ``request_group`` when the signed plan does not record its
    parameters.
    """
    parameters = signed.parameters
    if parameters is None:
        return {"request_group": signed.id}
    dose: Quantity = parameters.prescribed_dose or parameters.target_dose
    return {
        "request_group": signed.id,
        "protocol_id": parameters.protocol_id,
        "drug": parameters.drug,
        "drug_rxnorm": tuple(
            code["code"] for code in parameters.drug_codes if code.get("system") == c.RXNORM
        ),
        "indication": signed.indication,
        "target_dose": plain(dose.value),
        "dose_unit": dose.unit,
        "final_rate_ml_h": plain(parameters.final_rate_ml_h)
        if parameters.final_rate_ml_h is not None
        else None,
        "bag_volume_ml": plain(parameters.bag_volume_ml) if parameters.bag_volume_ml is not None else None,
        "diluent": _diluent_key(parameters.diluent),
        "closing": signed.closing,
        "insert_before": parameters.insert_before,
        "dose_basis": parameters.dose_basis,
    }


# --- copying a signed plan ("Copy this plan") -------------------------------------------------------

_RESOURCE_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


class CopySourceNotFound(DesensError):
    """The RequestGroup to copy is not in this patient's chart."""

    exit_code = 2
    http_status = 404

    def __init__(self) -> None:
        super().__init__("The signed plan to copy was not found in this patient's chart.")


def _step_orders(client: FhirClient, group: Mapping[str, Any]) -> list[dict[str, Any]]:
    ids = []
    for action in group.get("action") or []:
        resource = action.get("resource") if isinstance(action, Mapping) else None
        ref = resource.get("reference") if isinstance(resource, Mapping) else None
        if isinstance(ref, str) and ref.startswith("MedicationRequest/") and _RESOURCE_ID.match(ref[18:]):
            ids.append(ref[18:])
    if not ids:
        return []
    return first_page(client, "MedicationRequest", {"_id": ",".join(ids[:100]), "_count": "100"})


def _rates(orders: Iterable[Mapping[str, Any]]) -> list[Decimal]:
    rates = []
    for order in orders:
        for dosage in order.get("dosageInstruction") or []:
            for dose_rate in dosage.get("doseAndRate") or [] if isinstance(dosage, Mapping) else []:
                rate = dose_rate.get("rateQuantity") if isinstance(dose_rate, Mapping) else None
                value = rate.get("value") if isinstance(rate, Mapping) else None
                if isinstance(value, Decimal | int) and not isinstance(value, bool):
                    rates.append(Decimal(value))
    return rates


def _last_medication(client: FhirClient, orders: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    refs = medication_references(orders[-1:])
    if not refs:
        return None
    try:
        return client.read("Medication", refs[0].split("/", 1)[1]).resource
    except FhirServerError:
        return None


def _drug_of(medication: Mapping[str, Any] | None) -> tuple[str | None, tuple[str, ...], str | None]:
    """(drug name, RxNorm codes, bag volume) from the Medication of the last solution."""
    if medication is None:
        return None, (), None
    drug: str | None = None
    codes: tuple[str, ...] = ()
    for ingredient in medication.get("ingredient") or []:
        concept = ingredient.get("itemCodeableConcept") if isinstance(ingredient, Mapping) else None
        if isinstance(concept, Mapping) and ingredient.get("isActive") is not False:
            drug = concept.get("text") if isinstance(concept.get("text"), str) else None
            codes = tuple(
                str(c["code"])
                for c in concept.get("coding") or []
                if isinstance(c, Mapping) and c.get("system") == RXNORM and isinstance(c.get("code"), str)
            )
            break
    amount = medication.get("amount")
    numerator = amount.get("numerator") if isinstance(amount, Mapping) else None
    volume = numerator.get("value") if isinstance(numerator, Mapping) else None
    bag = (
        plain(Decimal(volume)) if isinstance(volume, Decimal | int) and not isinstance(volume, bool) else None
    )
    return drug, codes, bag


def read_copy_source(
    client: FhirClient, smart: SmartSession, request_group_id: str, protocols: Mapping[str, Protocol]
) -> CopiedSettings:
    """The settings of a signed plan of this patient, read back from its RequestGroup and orders."""
    if not _RESOURCE_ID.match(request_group_id):
        raise InputError("copy", "is not a FHIR resource id", "the id of a signed plan (RequestGroup)")
    own = patient_reference(smart)
    try:
        group = client.read("RequestGroup", request_group_id).resource
    except FhirServerError as error:
        if error.status in (404, 410):
            raise CopySourceNotFound() from None
        raise
    if not belongs_to(group, own, "subject"):
        raise CopySourceNotFound()
    canonical = next(iter(group.get("instantiatesCanonical") or []), "")
    url = canonical.partition("|")[0] if isinstance(canonical, str) else ""
    protocol = next((p for p in protocols.values() if canonical_url(p) == url), None)
    closing = next(
        (
            e.get("valueCode")
            for e in group.get("extension") or []
            if isinstance(e, Mapping) and e.get("url") == EXT_CLOSING_METHOD
        ),
        None,
    )
    orders = [o for o in _step_orders(client, group) if belongs_to(o, own, "subject")]
    rates = _rates(orders)
    drug, codes, bag = _drug_of(_last_medication(client, orders)) if orders else (None, (), None)
    uses_final_rate = protocol is not None and protocol.uses_final_rate
    return CopiedSettings(
        request_group=request_group_id,
        protocol_id=protocol.id if protocol is not None else None,
        final_rate_ml_h=plain(max(rates)) if rates and uses_final_rate else None,
        bag_volume_ml=bag if protocol is not None and protocol.kind is ProtocolKind.INFUSION else None,
        closing=closing
        if protocol is not None and closing in {c.value for c in protocol.closing_methods}
        else None,
        drug=drug,
        drug_rxnorm=codes,
    )
