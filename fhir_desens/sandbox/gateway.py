"""The sandbox FHIR gateway: a reverse proxy in front of the FHIR server that acts like a SMART resource server.

* ``GET /metadata`` is public; the CapabilityStatement gains the SMART ``oauth-uris`` extension (SMART 1).
* Every other request needs ``Authorization: Bearer <access token>`` issued by the sandbox (401 with
  ``WWW-Authenticate: Bearer`` otherwise) and a granted scope for the interaction (403 otherwise):
  create ``c``, read/vread/instance history ``r``, update/patch ``u``, delete ``d``, search and type
  history ``s``; v1 scopes count as their v2 equivalents (``read`` = ``rs``, ``write`` = ``cud``).
* A permission that only a ``patient/`` scope grants is limited to the token's patient compartment
  (:mod:`fhir_desens.sandbox.compartment`): reads of other patients' resources are 403; searches get
  ``patient=Patient/<id>`` (or ``_id`` for Patient) added, a different patient in the query is 403, and
  results are filtered again; writes must stay in the compartment and name no other patient; transaction
  and batch entries are checked one by one. Resource types that are not patient data (Medication,
  Practitioner ...) may be read and searched with a ``patient/`` scope but not written, with one
  exception: a bundle may create one (with a ``patient/<Type>.c`` scope) when a patient-data entry of the
  same bundle references it by its ``fullUrl`` (the Medications of a session's orders: compounded for
  this patient). References between entries (``urn:uuid:``) are resolved inside the bundle, so a
  Provenance whose targets are created by the same transaction is checked against those targets.
* A token granted ``fhirUser`` may read its own user's Practitioner (the ``fhirUser`` resource) without a
  Practitioner scope (SMART: ``openid fhirUser`` is permission to retrieve the current user).
* Further pages of a search at the FHIR base (HAPI's ``?_getpages=`` links) are checked entry by entry
  against the token's search scopes and compartment, like the search itself.
* Absolute URLs of the backend (Location, Bundle links, fullUrl, references) are rewritten to the gateway
  base, and the gateway base in request bodies back to the backend base.

Every request the gateway answers is recorded in :attr:`FhirGateway.requests` (a
:class:`~fhir_desens.sandbox.request_log.RequestLog`:
method, interaction, resource type, status, start and end; never ids, queries or bodies), so tests and
``benchmarks/bench_round_trips.py`` can count an app's FHIR round trips and their sequential depth.

The parts: :mod:`~fhir_desens.sandbox.interactions` (what a request is, refusals),
:mod:`~fhir_desens.sandbox.access` (scopes and the compartment), :mod:`~fhir_desens.sandbox.bundles`
(transactions and batches), :mod:`~fhir_desens.sandbox.backend` (the FHIR server behind, URL rewriting),
:mod:`~fhir_desens.sandbox.request_log`; this module routes a request through them.

Known limits: ``PATCH`` and type-level ``_history`` are refused under ``patient/`` scopes (the result
cannot be checked before it is written, or constrained); operations other than ``$validate`` are refused.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Request, Response

from fhir_desens.sandbox import compartment
from fhir_desens.sandbox.access import access, constrain, filter_bundle, may_see, reads_own_user, visible
from fhir_desens.sandbox.backend import Backend
from fhir_desens.sandbox.bundles import transaction
from fhir_desens.sandbox.interactions import (
    INTERACTION_PERMISSION,
    Denied,
    Interaction,
    classify,
    outcome_response,
)
from fhir_desens.sandbox.request_log import LoggedRequest, RequestLog
from fhir_desens.sandbox.scopes import ScopeSet
from fhir_desens.sandbox.stores import TokenRecord
from fhir_desens.sandbox.vendors import VendorProfile, VendorRefusal, profile_named

log = logging.getLogger(__name__)

SMART_OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
#: HAPI's paging parameter: its next/previous links are ``[base]?_getpages=<search id>&...``.
PAGE_PARAMETER = "_getpages"


class FhirGateway:
    """The WSGI-level handler for everything under the gateway's FHIR base."""

    def __init__(
        self,
        backend_base_url: str,
        public_base_url: str,
        resolve_token: Callable[[str], TokenRecord | None],
        *,
        authorize_url: str,
        token_url: str,
    ) -> None:
        self.backend = Backend(backend_base_url, public_base_url)
        self.resolve_token = resolve_token
        self.authorize_url = authorize_url
        self.token_url = token_url
        self.requests = RequestLog()

    def security_extension(self) -> dict[str, Any]:
        """``CapabilityStatement.rest.security`` for SMART 1 clients (the oauth-uris extension)."""
        return {
            "extension": [
                {
                    "url": SMART_OAUTH_URIS,
                    "extension": [
                        {"url": "authorize", "valueUri": self.authorize_url},
                        {"url": "token", "valueUri": self.token_url},
                    ],
                }
            ],
            "service": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                            "code": "SMART-on-FHIR",
                        }
                    ],
                    "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)",
                }
            ],
        }

    # -- entry point ----------------------------------------------------------------------------------
    def __call__(self, request: Request, path: str) -> Response:
        started = time.monotonic()
        response = self._answer(request, path)
        try:
            interaction = classify(request.method, path.strip("/"))
            kind, resource_type = interaction.kind, interaction.resource_type
        except Denied:
            kind, resource_type = "invalid", None
        if path.strip("/") == "metadata":
            kind, resource_type = "metadata", "CapabilityStatement"
        self.requests.add(
            LoggedRequest(
                request.method, kind, resource_type, response.status_code, started, time.monotonic()
            )
        )
        return response

    def _answer(self, request: Request, path: str) -> Response:
        try:
            if path.strip("/") == "metadata":
                return self._metadata(request)
            token = self._authenticate(request)
            return self._dispatch(request, path.strip("/"), token)
        except Denied as denied:
            headers: dict[str, str] = {}
            if denied.status == 401:
                challenge = 'Bearer realm="fhir-desens sandbox"'
                if denied.bearer_error:
                    challenge += f', error="{denied.bearer_error}"'
                headers["WWW-Authenticate"] = challenge
            if denied.status >= 500:
                log.warning("gateway error %s: %s", denied.status, denied.diagnostics)
            return outcome_response(denied.status, denied.code, denied.diagnostics, headers)

    def _metadata(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            raise Denied(405, "not-supported", "use GET for /metadata")
        response = self.backend.send("GET", "metadata", params=list(request.args.items(multi=True)))
        capability = self.backend.ok_json_object(response)
        if capability is None:
            return self.backend.relay(response)
        rest = capability.setdefault("rest", [{"mode": "server"}])
        if not rest:
            rest.append({"mode": "server"})
        for item in rest:
            if item.get("mode", "server") == "server":
                item["security"] = self.security_extension()
        vendor = self._vendor_of_bearer(request)
        if vendor is not None:
            capability = vendor.capability(capability)
        return self.backend.relay(response, capability, replace_body=True)

    def _vendor_of_bearer(self, request: Request) -> VendorProfile | None:
        """The vendor profile of the launch whose token came with a (public) metadata request."""
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        token = self.resolve_token(value.strip()) if scheme.lower() == "bearer" and value.strip() else None
        return profile_named(token.context.vendor) if token is not None else None

    def _authenticate(self, request: Request) -> TokenRecord:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Denied(401, "login", "an access token is required (Authorization: Bearer)")
        token = self.resolve_token(value.strip())
        if token is None:
            raise Denied(401, "login", "the access token is invalid or expired", bearer_error="invalid_token")
        return token

    def _dispatch(self, request: Request, path: str, token: TokenRecord) -> Response:
        interaction = classify(request.method, path)
        vendor = profile_named(token.context.vendor)
        self._vendor_check(vendor, request, interaction)
        response = self._route(request, path, interaction, token)
        if (
            vendor.stale_version_status != 412
            and response.status_code == 412
            and "If-Match" in request.headers
            and interaction.kind in ("update", "patch", "delete")
        ):
            response.status_code = vendor.stale_version_status  # Millennium answers a stale version 409
        return response

    def _vendor_check(self, vendor: VendorProfile, request: Request, interaction: Interaction) -> None:
        body: dict[str, Any] | None = None
        if interaction.resource_type in vendor.rules_for(interaction.kind):
            body = self.backend.read_body(request)
        kind = interaction.kind
        if kind == "bundle":
            kind = "transaction"
        try:
            headers = {name.title(): value for name, value in request.headers.items()}
            vendor.check(kind, interaction.resource_type, headers, body, self.backend.fetch)
        except VendorRefusal as refusal:
            raise Denied(refusal.status, refusal.code, refusal.diagnostics) from refusal

    def _route(self, request: Request, path: str, interaction: Interaction, token: TokenRecord) -> Response:
        if interaction.kind == "bundle":
            return transaction(request, token, self.backend)
        if interaction.kind == "operation":
            return self._operation(request, path, interaction, token)
        if interaction.kind == "search-system" and request.args.get(PAGE_PARAMETER):
            return self._page(request, token)
        if interaction.kind in ("search-system", "history-system"):
            if ScopeSet(token.scope).access("*", "s") != "unrestricted":
                raise Denied(403, "forbidden", "system-wide search needs a user/*.s (or user/*.read) scope")
            return self.backend.relay(
                self.backend.send("GET", path, params=list(request.args.items(multi=True)))
            )
        assert interaction.resource_type is not None
        if reads_own_user(token, interaction):
            return self._forward(request, path)
        permission = INTERACTION_PERMISSION[interaction.kind]
        patient = access(token, interaction.resource_type, permission)
        if interaction.kind == "search-type":
            return self._search(request, interaction.resource_type, patient)
        if patient is None or not compartment.is_patient_data(interaction.resource_type):
            return self._forward(request, path)
        return self._compartment_request(request, path, interaction, patient)

    def _forward(self, request: Request, path: str) -> Response:
        body = request.get_data() if request.method in ("POST", "PUT", "PATCH") else None
        if body and "json" in request.headers.get("Content-Type", ""):
            with contextlib.suppress(ValueError):
                body = json.dumps(self.backend.to_backend(json.loads(body))).encode()
        response = self.backend.send(
            request.method,
            path,
            params=list(request.args.items(multi=True)),
            body=body,
            headers=self.backend.request_headers(request),
        )
        return self.backend.relay(response)

    def _search(self, request: Request, resource_type: str, patient: str | None) -> Response:
        if request.method == "POST":
            params = MultiDict(request.form.items(multi=True))
            params.update(request.args.items(multi=True))
        else:
            params = MultiDict(request.args.items(multi=True))
        if patient is not None and compartment.is_patient_data(resource_type):
            constrain(resource_type, params, patient)
            response = self.backend.get_for(request, resource_type, list(params.items(multi=True)))
            bundle = self.backend.ok_json_object(response)
            if bundle is not None:
                filter_bundle(bundle, patient, self.backend.fetch)
                return self.backend.relay(response, bundle, replace_body=True)
            return self.backend.relay(response)
        response = self.backend.get_for(request, resource_type, list(params.items(multi=True)))
        return self.backend.relay(response)

    def _page(self, request: Request, token: TokenRecord) -> Response:
        """A further page of a search (HAPI's next links, ``[base]?_getpages=<id>&...``): its entries are
        checked like the first page's, each against the token's search scope and compartment."""
        response = self.backend.get_for(request, "")
        bundle = self.backend.ok_json_object(response)
        if bundle is None:
            return self.backend.relay(response)
        entries = bundle.get("entry") or []
        kept = [e for e in entries if may_see(token, e.get("resource"), self.backend.fetch)]
        if len(kept) != len(entries):
            log.warning(
                "gateway removed %d entries of a page the token may not see", len(entries) - len(kept)
            )
            bundle["entry"] = kept
            bundle.pop("total", None)
        return self.backend.relay(response, bundle, replace_body=True)

    # -- instance-level and writes under a patient/ scope ------------------------------------------------
    def _compartment_request(
        self, request: Request, path: str, interaction: Interaction, patient: str
    ) -> Response:
        kind = interaction.kind
        resource_type = interaction.resource_type
        assert resource_type is not None
        if kind in ("patch", "history-type"):
            raise Denied(
                403, "forbidden", f"{kind} is not available with patient-level scopes in the sandbox"
            )
        if resource_type == "Patient" and interaction.resource_id and interaction.resource_id != patient:
            raise Denied(403, "forbidden", "the resource belongs to another patient")
        if kind in ("read", "vread", "history-instance"):
            return self._compartment_read(request, path, patient)
        return self._compartment_write(request, path, interaction, patient)

    def _compartment_read(self, request: Request, path: str, patient: str) -> Response:
        """A read, vread or instance history under a patient/ scope: refused when it shows another patient."""
        response = self.backend.get_for(request, path)
        data = self.backend.ok_json_object(response)
        if data is None:
            return self.backend.relay(response)
        resources = (
            [e.get("resource") for e in data.get("entry") or [] if isinstance(e.get("resource"), dict)]
            if data.get("resourceType") == "Bundle"
            else [data]
        )
        if not all(visible(r, patient, self.backend.fetch) for r in resources):
            raise Denied(403, "forbidden", "the resource belongs to another patient")
        return self.backend.relay(response, data, replace_body=True)

    def _compartment_write(
        self, request: Request, path: str, interaction: Interaction, patient: str
    ) -> Response:
        """A create, update or delete under a patient/ scope: it must stay in (and name only) the compartment."""
        kind = interaction.kind
        resource_type = interaction.resource_type
        assert resource_type is not None
        params = MultiDict(request.args.items(multi=True))
        if interaction.conditional:
            constrain(resource_type, params, patient)
        elif interaction.resource_id:
            existing = self.backend.fetch(f"{resource_type}/{interaction.resource_id}")
            if existing is not None and not visible(existing, patient, self.backend.fetch):
                raise Denied(403, "forbidden", "the resource belongs to another patient")
        headers = self.backend.request_headers(request)
        body: bytes | None = None
        if kind in ("create", "update"):
            resource = self.backend.read_body(request)
            if resource.get("resourceType") != resource_type:
                raise Denied(400, "invalid", f"the body is not a {resource_type}")
            if not compartment.writable_by(resource, patient, self.backend.fetch):
                raise Denied(403, "forbidden", "the resource is not in the patient's compartment")
            body = json.dumps(resource).encode("utf-8")
            if kind == "create" and "If-None-Exist" in headers:
                condition = MultiDict(parse_qsl(headers["If-None-Exist"].lstrip("?"), keep_blank_values=True))
                constrain(resource_type, condition, patient)
                headers["If-None-Exist"] = urlencode(list(condition.items(multi=True)))
        response = self.backend.send(
            request.method, path, params=list(params.items(multi=True)), body=body, headers=headers
        )
        data = self.backend.json_of(response)
        matched = isinstance(data, dict) and data.get("resourceType") == resource_type
        if matched and not visible(data, patient, self.backend.fetch):
            raise Denied(403, "forbidden", "the matched resource belongs to another patient")
        return self.backend.relay(response)

    # -- operations ---------------------------------------------------------------------------------------
    def _operation(
        self, request: Request, path: str, interaction: Interaction, token: TokenRecord
    ) -> Response:
        if interaction.operation != "$validate" or request.method != "POST":
            raise Denied(403, "forbidden", "the sandbox gateway only forwards the $validate operation")
        resource_type = interaction.resource_type
        if resource_type is None:
            body = self.backend.read_body(request)
            if body.get("resourceType") == "Parameters":
                resource = next(
                    (p.get("resource") for p in body.get("parameter") or [] if p.get("name") == "resource"),
                    None,
                )
                resource_type = resource.get("resourceType") if isinstance(resource, dict) else None
            else:
                resource_type = body.get("resourceType")
        if not isinstance(resource_type, str):
            raise Denied(400, "invalid", "$validate needs a resource")
        scope_set = ScopeSet(token.scope)
        if scope_set.access(resource_type, "c") is None and scope_set.access(resource_type, "u") is None:
            raise Denied(403, "forbidden", f"$validate on {resource_type} needs a create or update scope")
        return self._forward(request, path)
