"""Transaction and batch Bundles through the sandbox gateway: every entry is authorized like the request it
stands for, searches and conditions are kept in the patient compartment, and the results outside it are
withheld.

References between entries (``urn:uuid:`` fullUrls) are resolved inside the bundle (:class:`BundleLinks`),
so a Provenance whose targets are created by the same transaction is checked against those targets, and a
bundle may create shared data (a Medication) that one of its patient-data entries references.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit

from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Request, Response

from fhir_desens.sandbox import compartment
from fhir_desens.sandbox.access import access, constrain, filter_bundle, visible
from fhir_desens.sandbox.backend import Backend
from fhir_desens.sandbox.interactions import INTERACTION_PERMISSION, Denied, Interaction, classify
from fhir_desens.sandbox.scopes import ScopeSet
from fhir_desens.sandbox.stores import TokenRecord


def transaction(request: Request, token: TokenRecord, backend: Backend) -> Response:
    """POST a transaction or batch Bundle to the FHIR base, each entry authorized first."""
    bundle = backend.read_body(request)
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") not in ("transaction", "batch"):
        raise Denied(400, "invalid", "POST to the FHIR base takes a transaction or batch Bundle")
    entries = bundle.get("entry") or []
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise Denied(400, "structure", "Bundle.entry must be an array of objects")
    local = BundleLinks(entries, backend.fetch)
    compartment_entries: set[int] = set()
    for index, entry in enumerate(entries):
        if check_entry(index, entry, token, backend, local):
            compartment_entries.add(index)
    response = backend.send(
        "POST", "", body=json.dumps(bundle).encode("utf-8"), headers=backend.request_headers(request)
    )
    result = backend.json_of(response)
    if compartment_entries and isinstance(result, dict):
        patient = token.context.patient
        assert patient is not None
        _withhold(result, compartment_entries, patient, backend)
        return backend.relay(response, result, replace_body=True)
    return backend.relay(response)


def _withhold(result: dict[str, Any], compartment_entries: set[int], patient: str, backend: Backend) -> None:
    """Remove from a transaction-response what a compartment-limited entry may not show (in place)."""
    for index, entry in enumerate(result.get("entry") or []):
        resource = entry.get("resource")
        if index in compartment_entries and isinstance(resource, dict):
            if resource.get("resourceType") == "Bundle":
                filter_bundle(resource, patient, backend.fetch)
            elif not visible(resource, patient, backend.fetch):
                entry.pop("resource")
                entry["response"] = {"status": "403 Forbidden"}


def check_entry(
    index: int, entry: Mapping[str, Any], token: TokenRecord, backend: Backend, local: BundleLinks
) -> bool:
    """Authorize one bundle entry (in place for search URLs); True when it is compartment-limited."""
    where = f"entry {index}"
    request = entry.get("request")
    if not isinstance(request, dict) or not isinstance(request.get("url"), str):
        raise Denied(400, "invalid", f"{where} has no request.url")
    split = urlsplit(backend.relative(request["url"]))
    method = str(request.get("method", "")).upper()
    try:
        interaction = classify(method, split.path)
    except Denied as denied:
        raise Denied(denied.status, denied.code, f"{where}: {denied.diagnostics}") from denied
    if interaction.kind not in INTERACTION_PERMISSION or interaction.resource_type is None:
        raise Denied(403, "forbidden", f"{where}: {interaction.kind} is not allowed in a bundle")
    if interaction.kind == "create" and local.shared_create(entry, interaction.resource_type):
        if ScopeSet(token.scope).access(interaction.resource_type, "c") is None:
            raise Denied(
                403,
                "forbidden",
                f"{where}: the granted scopes do not allow 'c' on {interaction.resource_type}",
            )
        return False  # shared data created for this bundle's patient-data entries
    try:
        patient = access(token, interaction.resource_type, INTERACTION_PERMISSION[interaction.kind])
    except Denied as denied:
        raise Denied(denied.status, denied.code, f"{where}: {denied.diagnostics}") from denied
    if patient is None or not compartment.is_patient_data(interaction.resource_type):
        return False
    _check_compartment_entry(where, entry, split, interaction, patient, backend, local)
    return True


def _check_compartment_entry(
    where: str,
    entry: Mapping[str, Any],
    split: SplitResult,
    interaction: Interaction,
    patient: str,
    backend: Backend,
    local: BundleLinks,
) -> None:
    """Keep an entry limited to ``patient``'s compartment inside it (its search or condition narrowed in
    place; what it reads or writes checked)."""
    request = entry["request"]
    resource_type = interaction.resource_type
    assert resource_type is not None
    if interaction.kind in ("patch", "history-type"):
        raise Denied(403, "forbidden", f"{where}: {interaction.kind} is not available with patient scopes")
    if resource_type == "Patient" and interaction.resource_id and interaction.resource_id != patient:
        raise Denied(403, "forbidden", f"{where}: the resource belongs to another patient")
    if interaction.kind == "search-type" or interaction.conditional:
        params = MultiDict(parse_qsl(split.query, keep_blank_values=True))
        constrain(resource_type, params, patient)
        request["url"] = f"{split.path}?{urlencode(list(params.items(multi=True)))}"
    elif interaction.resource_id and interaction.kind != "create":
        existing = backend.fetch(f"{resource_type}/{interaction.resource_id}")
        if existing is not None and not visible(existing, patient, backend.fetch):
            raise Denied(403, "forbidden", f"{where}: the resource belongs to another patient")
    if interaction.kind in ("create", "update"):
        resource = entry.get("resource")
        if not isinstance(resource, dict) or resource.get("resourceType") != resource_type:
            raise Denied(400, "invalid", f"{where}: the resource is not a {resource_type}")
        if not compartment.writable_by(resource, patient, local.resolve):
            raise Denied(403, "forbidden", f"{where}: the resource is not in the patient's compartment")
        if interaction.kind == "create" and isinstance(request.get("ifNoneExist"), str):
            condition = MultiDict(parse_qsl(request["ifNoneExist"].lstrip("?"), keep_blank_values=True))
            constrain(resource_type, condition, patient)
            request["ifNoneExist"] = urlencode(list(condition.items(multi=True)))


class BundleLinks:
    """What the entries of one transaction/batch say about each other (``urn:uuid:`` fullUrls)."""

    def __init__(self, entries: list[dict[str, Any]], fetch: Callable[[str], dict[str, Any] | None]) -> None:
        self._fetch = fetch
        self._by_full_url: dict[str, dict[str, Any]] = {
            e["fullUrl"]: e["resource"]
            for e in entries
            if isinstance(e.get("fullUrl"), str) and isinstance(e.get("resource"), dict)
        }
        self._from_patient_data: set[str] = set()
        for entry in entries:
            resource, request = entry.get("resource"), entry.get("request")
            method = str(request.get("method", "")).upper() if isinstance(request, dict) else ""
            if not isinstance(resource, dict) or method not in ("POST", "PUT"):
                continue
            if compartment.is_patient_data(str(resource.get("resourceType", ""))):
                self._from_patient_data |= set(_references(resource))

    def resolve(self, reference: str) -> dict[str, Any] | None:
        """A bundle entry's resource for its fullUrl, else the stored resource."""
        if reference in self._by_full_url:
            return self._by_full_url[reference]
        return self._fetch(reference)

    def shared_create(self, entry: Mapping[str, Any], resource_type: str) -> bool:
        """A create of shared (non-patient) data that a patient-data entry of this bundle references."""
        full_url = entry.get("fullUrl")
        return (
            not compartment.is_patient_data(resource_type)
            and isinstance(full_url, str)
            and full_url.startswith("urn:uuid:")
            and full_url in self._from_patient_data
        )


def _references(node: Any) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        if isinstance(node.get("reference"), str):
            found.append(node["reference"])
        for value in node.values():
            found += _references(value)
    elif isinstance(node, list):
        for item in node:
            found += _references(item)
    return found


__all__ = ["BundleLinks", "check_entry", "transaction"]
