"""What a sandbox access token may do: its scopes as permissions, and the patient compartment applied to
the searches and results of a ``patient/`` scope (:mod:`fhir_desens.sandbox.compartment`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from werkzeug.datastructures import MultiDict

from fhir_desens.sandbox import compartment
from fhir_desens.sandbox.interactions import Denied, Interaction
from fhir_desens.sandbox.scopes import ScopeSet
from fhir_desens.sandbox.stores import TokenRecord

log = logging.getLogger(__name__)

Fetch = Callable[[str], dict[str, Any] | None]


def access(token: TokenRecord, resource_type: str, permission: str) -> str | None:
    """``None`` when unrestricted, the patient id when limited to a compartment; Denied if not granted."""
    scope_set = ScopeSet(token.scope)
    granted = scope_set.access(resource_type, permission)
    if granted is None:
        raise Denied(403, "forbidden", f"the granted scopes do not allow '{permission}' on {resource_type}")
    if granted == "unrestricted":
        return None
    if not compartment.is_patient_data(resource_type):
        if permission in ("r", "s"):
            return None  # shared, non-patient data (Medication, Practitioner, ...)
        raise Denied(403, "forbidden", f"patient-level scopes cannot write {resource_type}")
    if not token.context.patient:
        raise Denied(403, "forbidden", "patient-level scopes need a patient in the launch context")
    return token.context.patient


def reads_own_user(token: TokenRecord, interaction: Interaction) -> bool:
    """SMART ``openid fhirUser`` lets the app retrieve the current user: a read of the token's own
    Practitioner, whatever the resource scopes."""
    return (
        interaction.kind in ("read", "vread")
        and interaction.resource_type == "Practitioner"
        and interaction.resource_id is not None
        and interaction.resource_id == token.context.practitioner
        and "fhirUser" in ScopeSet(token.scope)
    )


def constrain(resource_type: str, params: MultiDict[str, str], patient: str) -> None:
    """Keep a search inside the patient compartment (in place)."""
    parameter = compartment.search_parameter(resource_type)
    if resource_type in compartment.RESOLVED_TARGETS or parameter is None:
        return  # filtered after the search instead
    if resource_type == "Patient":
        for key in [k for k in params if k.split(":")[0] == "_id"]:
            for value in params.getlist(key):
                if any(v.strip() != patient for v in value.split(",")):
                    raise Denied(403, "forbidden", "the search names another patient")
            del params[key]
        params["_id"] = patient
        return
    for key in [k for k in params if k.split(":")[0].split(".")[0] == parameter]:
        if "." in key.split(":")[0]:
            continue  # a chained parameter is narrowed by the constraint below
        for value in params.getlist(key):
            for item in value.split(","):
                item = item.strip()
                if compartment.reference_id(item, "Patient") != patient and item != patient:
                    raise Denied(403, "forbidden", "the search names another patient")
        del params[key]
    params[parameter] = f"Patient/{patient}"


def visible(resource: Mapping[str, Any], patient: str, fetch: Fetch) -> bool:
    """Whether ``resource`` may be shown under a ``patient/`` scope for ``patient``."""
    resource_type = str(resource.get("resourceType", ""))
    if resource_type == "OperationOutcome" or not compartment.is_patient_data(resource_type):
        return True
    return compartment.in_compartment(resource, patient, fetch)


def may_see(token: TokenRecord, resource: Any, fetch: Fetch) -> bool:
    """Whether a search result ``resource`` may be shown to ``token`` (its search scope and compartment)."""
    if not isinstance(resource, dict):
        return True
    resource_type = str(resource.get("resourceType", ""))
    if resource_type == "OperationOutcome":
        return True
    try:
        patient = access(token, resource_type, "s")
    except Denied:
        return False
    return patient is None or visible(resource, patient, fetch)


def filter_bundle(bundle: dict[str, Any], patient: str, fetch: Fetch) -> None:
    """Drop the entries of ``bundle`` outside ``patient``'s compartment (in place)."""
    entries = bundle.get("entry") or []
    kept = [
        e
        for e in entries
        if not isinstance(e.get("resource"), dict) or visible(e["resource"], patient, fetch)
    ]
    if len(kept) != len(entries):
        log.warning("gateway removed %d out-of-compartment entries", len(entries) - len(kept))
        bundle["entry"] = kept
        bundle.pop("total", None)


__all__ = ["access", "constrain", "filter_bundle", "may_see", "reads_own_user", "visible"]
