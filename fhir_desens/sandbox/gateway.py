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

Every request the gateway answers is recorded in :attr:`FhirGateway.requests` (a :class:`RequestLog`:
method, interaction, resource type, status, start and end; never ids, queries or bodies), so tests and
``benchmarks/bench_round_trips.py`` can count an app's FHIR round trips and their sequential depth.

Known limits: ``PATCH`` and type-level ``_history`` are refused under ``patient/`` scopes (the result
cannot be checked before it is written, or constrained); operations other than ``$validate`` are refused.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import requests
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Request, Response

from fhir_desens.client.http import new_session
from fhir_desens.sandbox import compartment
from fhir_desens.sandbox.scopes import ScopeSet
from fhir_desens.sandbox.stores import TokenRecord
from fhir_desens.sandbox.vendors import VendorProfile, VendorRefusal, profile_named

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json; charset=utf-8"
SMART_OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
FORWARDED_REQUEST_HEADERS = (
    "Accept",
    "Content-Type",
    "If-Match",
    "If-None-Match",
    "If-None-Exist",
    "If-Modified-Since",
    "Prefer",
)
FORWARDED_RESPONSE_HEADERS = ("Content-Type", "ETag", "Last-Modified", "Location", "Content-Location")
#: HAPI's paging parameter: its next/previous links are ``[base]?_getpages=<search id>&...``.
PAGE_PARAMETER = "_getpages"
INTERACTION_PERMISSION = {
    "create": "c",
    "read": "r",
    "vread": "r",
    "history-instance": "r",
    "update": "u",
    "patch": "u",
    "delete": "d",
    "search-type": "s",
    "history-type": "s",
    "search-system": "s",
}


class Denied(Exception):
    """A request the gateway refuses: rendered as an OperationOutcome."""

    def __init__(self, status: int, code: str, diagnostics: str, *, bearer_error: str | None = None) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.code = code
        self.diagnostics = diagnostics
        self.bearer_error = bearer_error


@dataclass(frozen=True)
class Interaction:
    """A classified FHIR REST request."""

    kind: str  # create, read, vread, ..., transaction, batch, operation
    resource_type: str | None
    resource_id: str | None = None
    conditional: bool = False
    operation: str | None = None


def classify(method: str, path: str) -> Interaction:
    """Classify a request by method and path relative to the FHIR base (``Patient/1/_history``)."""
    method = "GET" if method == "HEAD" else method
    segments = [s for s in path.split("/") if s]
    if not segments:
        if method == "POST":
            return Interaction("bundle", None)
        if method == "GET":
            return Interaction("search-system", None)
        raise Denied(405, "not-supported", f"{method} is not supported on the FHIR base")
    head = segments[0]
    if head.startswith("$"):
        return Interaction("operation", None, operation=head)
    if head == "_history":
        return Interaction("history-system", None)
    if not head[:1].isupper():
        raise Denied(404, "not-found", "not a FHIR resource type")
    if any(s.startswith("$") for s in segments[1:]):
        operation = next(s for s in segments[1:] if s.startswith("$"))
        resource_id = segments[1] if len(segments) == 3 else None
        return Interaction("operation", head, resource_id, operation=operation)
    if len(segments) == 1:
        table = {
            "GET": "search-type",
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete",
        }
        if method not in table:
            raise Denied(405, "not-supported", f"{method} is not supported on a resource type")
        kind = table[method]
        return Interaction(kind, head, conditional=kind in ("update", "patch", "delete"))
    if len(segments) == 2 and segments[1] == "_search" and method == "POST":
        return Interaction("search-type", head)
    if len(segments) == 2 and segments[1] == "_history" and method == "GET":
        return Interaction("history-type", head)
    if len(segments) == 2:
        table = {"GET": "read", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
        if method not in table:
            raise Denied(405, "not-supported", f"{method} is not supported on a resource instance")
        return Interaction(table[method], head, segments[1])
    if len(segments) == 3 and segments[2] == "_history" and method == "GET":
        return Interaction("history-instance", head, segments[1])
    if len(segments) == 4 and segments[2] == "_history" and method == "GET":
        return Interaction("vread", head, segments[1])
    raise Denied(404, "not-found", "unsupported FHIR URL")


@dataclass(frozen=True)
class LoggedRequest:
    """One request the gateway answered, without ids: ``GET search-type AllergyIntolerance 200``."""

    method: str
    kind: str  # the interaction (read, search-type, batch, ...), or "metadata"
    resource_type: str | None
    status: int
    started: float  # time.monotonic()
    ended: float

    def __str__(self) -> str:
        return f"{self.method} {self.kind} {self.resource_type or '-'} {self.status}"


class RequestLog:
    """The requests a gateway answered, in the order they ended (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[LoggedRequest] = []

    def add(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._entries.append(entry)

    def mark(self) -> int:
        """A position to count from (``since(mark)``)."""
        with self._lock:
            return len(self._entries)

    def since(self, mark: int = 0) -> list[LoggedRequest]:
        with self._lock:
            return self._entries[mark:]


def sequential_depth(entries: Sequence[LoggedRequest]) -> int:
    """The longest chain of requests each started after the previous one ended: the round trips a
    client waited for one after another (requests that overlap in time count once)."""
    ordered = sorted(entries, key=lambda e: e.started)
    depth: list[int] = []
    for i, entry in enumerate(ordered):
        before = [depth[j] for j in range(i) if ordered[j].ended <= entry.started]
        depth.append(1 + max(before, default=0))
    return max(depth, default=0)


def outcome_response(
    status: int, code: str, diagnostics: str, headers: Mapping[str, str] | None = None
) -> Response:
    severity = "error" if status >= 400 else "information"
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }
    return Response(json.dumps(body), status=status, headers=dict(headers or {}), content_type=FHIR_JSON)


def _replace_prefix(node: Any, old: str, new: str) -> Any:
    if isinstance(node, str):
        return new + node[len(old) :] if node.startswith(old) else node
    if isinstance(node, list):
        return [_replace_prefix(item, old, new) for item in node]
    if isinstance(node, dict):
        return {key: _replace_prefix(value, old, new) for key, value in node.items()}
    return node


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
        self.backend = backend_base_url.rstrip("/")
        self.public = public_base_url.rstrip("/")
        self.resolve_token = resolve_token
        self.authorize_url = authorize_url
        self.token_url = token_url
        self._local = threading.local()
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

    # -- plumbing -------------------------------------------------------------------------------------
    @property
    def session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = new_session((5.0, 60.0))
            self._local.session = session
        return session

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        url = f"{self.backend}/{path.lstrip('/')}" if path else self.backend
        try:
            return self.session.request(
                method, url, params=params, data=body, headers=dict(headers or {}), allow_redirects=False
            )
        except requests.RequestException as error:
            log.warning("FHIR backend unreachable: %s", type(error).__name__)
            raise Denied(502, "transient", "the sandbox FHIR server is unreachable") from error

    def _fetch(self, reference: str) -> dict[str, Any] | None:
        """GET a referenced resource from the backend (relative or gateway/backend-absolute reference)."""
        for base in (self.public, self.backend):
            if reference.startswith(base + "/"):
                reference = reference[len(base) + 1 :]
        parts = reference.split("/")
        versioned = len(parts) == 4 and parts[2] == "_history"  # a Provenance targets a version
        if (
            (len(parts) != 2 and not versioned)
            or not parts[0][:1].isupper()
            or reference.startswith(("http:", "https:"))
        ):
            return None
        response = self._send("GET", reference, headers={"Accept": "application/fhir+json"})
        if response.status_code != 200:
            return None
        try:
            data = response.json()
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def _to_public(self, data: Any) -> Any:
        return _replace_prefix(data, self.backend, self.public)

    def _relay(
        self, response: requests.Response, body: Any = None, *, replace_body: bool = False
    ) -> Response:
        headers: dict[str, str] = {}
        for name in FORWARDED_RESPONSE_HEADERS:
            value = response.headers.get(name)
            if value is not None:
                headers[name] = self._to_public(value)
        if replace_body:
            content: bytes = json.dumps(self._to_public(body)).encode("utf-8")
        else:
            content = response.content
            if content and "json" in headers.get("Content-Type", ""):
                with contextlib.suppress(ValueError):
                    content = json.dumps(self._to_public(json.loads(content))).encode("utf-8")
        return Response(content, status=response.status_code, headers=headers)

    @staticmethod
    def _json(response: requests.Response) -> Any:
        if "json" not in response.headers.get("Content-Type", "") or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return None

    def _request_headers(self, request: Request) -> dict[str, str]:
        headers = {
            name: request.headers[name] for name in FORWARDED_REQUEST_HEADERS if name in request.headers
        }
        headers.setdefault("Accept", "application/fhir+json")
        return headers

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
        response = self._send("GET", "metadata", params=list(request.args.items(multi=True)))
        capability = self._json(response)
        if response.status_code != 200 or not isinstance(capability, dict):
            return self._relay(response)
        rest = capability.setdefault("rest", [{"mode": "server"}])
        if not rest:
            rest.append({"mode": "server"})
        for item in rest:
            if item.get("mode", "server") == "server":
                item["security"] = self.security_extension()
        vendor = self._vendor_of_bearer(request)
        if vendor is not None:
            capability = vendor.capability(capability)
        return self._relay(response, capability, replace_body=True)

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

    # -- authorization ---------------------------------------------------------------------------------
    def _access(self, token: TokenRecord, resource_type: str, permission: str) -> str | None:
        """``None`` when unrestricted, the patient id when limited to a compartment; Denied if not granted."""
        scope_set = ScopeSet(token.scope)
        access = scope_set.access(resource_type, permission)
        if access is None:
            raise Denied(
                403, "forbidden", f"the granted scopes do not allow '{permission}' on {resource_type}"
            )
        if access == "unrestricted":
            return None
        if not compartment.is_patient_data(resource_type):
            if permission in ("r", "s"):
                return None  # shared, non-patient data (Medication, Practitioner, ...)
            raise Denied(403, "forbidden", f"patient-level scopes cannot write {resource_type}")
        if not token.context.patient:
            raise Denied(403, "forbidden", "patient-level scopes need a patient in the launch context")
        return token.context.patient

    @staticmethod
    def _reads_own_user(token: TokenRecord, interaction: Interaction) -> bool:
        """SMART ``openid fhirUser`` lets the app retrieve the current user: a read of the token's own
        Practitioner, whatever the resource scopes."""
        return (
            interaction.kind in ("read", "vread")
            and interaction.resource_type == "Practitioner"
            and interaction.resource_id is not None
            and interaction.resource_id == token.context.practitioner
            and "fhirUser" in ScopeSet(token.scope)
        )

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
        if interaction.kind == "create" and interaction.resource_type in vendor.create_rules:
            body = self._read_body(request)
        kind = interaction.kind
        if kind == "bundle":
            kind = "transaction"
        try:
            names = {name.title() for name in request.headers.keys()}  # noqa: SIM118 (Headers)
            vendor.check(kind, interaction.resource_type, names, body, self._fetch)
        except VendorRefusal as refusal:
            raise Denied(refusal.status, refusal.code, refusal.diagnostics) from refusal

    def _route(self, request: Request, path: str, interaction: Interaction, token: TokenRecord) -> Response:
        if interaction.kind == "bundle":
            return self._bundle(request, token)
        if interaction.kind == "operation":
            return self._operation(request, path, interaction, token)
        if interaction.kind == "search-system" and request.args.get(PAGE_PARAMETER):
            return self._page(request, token)
        if interaction.kind in ("search-system", "history-system"):
            if ScopeSet(token.scope).access("*", "s") != "unrestricted":
                raise Denied(403, "forbidden", "system-wide search needs a user/*.s (or user/*.read) scope")
            return self._relay(self._send("GET", path, params=list(request.args.items(multi=True))))
        assert interaction.resource_type is not None
        if self._reads_own_user(token, interaction):
            return self._forward(request, path)
        permission = INTERACTION_PERMISSION[interaction.kind]
        patient = self._access(token, interaction.resource_type, permission)
        if interaction.kind == "search-type":
            return self._search(request, interaction.resource_type, patient)
        if patient is None or not compartment.is_patient_data(interaction.resource_type):
            return self._forward(request, path)
        return self._compartment_request(request, path, interaction, patient)

    def _forward(self, request: Request, path: str) -> Response:
        body = request.get_data() if request.method in ("POST", "PUT", "PATCH") else None
        if body and "json" in request.headers.get("Content-Type", ""):
            with contextlib.suppress(ValueError):
                body = json.dumps(_replace_prefix(json.loads(body), self.public, self.backend)).encode()
        response = self._send(
            request.method,
            path,
            params=list(request.args.items(multi=True)),
            body=body,
            headers=self._request_headers(request),
        )
        return self._relay(response)

    def _read_body(self, request: Request) -> dict[str, Any]:
        try:
            data = json.loads(request.get_data() or b"null")
        except ValueError as error:
            raise Denied(400, "structure", "the request body is not JSON") from error
        if not isinstance(data, dict):
            raise Denied(400, "structure", "the request body is not a FHIR resource")
        result: dict[str, Any] = _replace_prefix(data, self.public, self.backend)
        return result

    # -- search -----------------------------------------------------------------------------------------
    def _constrain(self, resource_type: str, params: MultiDict[str, str], patient: str) -> None:
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

    def _search(self, request: Request, resource_type: str, patient: str | None) -> Response:
        if request.method == "POST":
            params = MultiDict(request.form.items(multi=True))
            params.update(request.args.items(multi=True))
        else:
            params = MultiDict(request.args.items(multi=True))
        if patient is not None and compartment.is_patient_data(resource_type):
            self._constrain(resource_type, params, patient)
            response = self._send(
                "GET",
                resource_type,
                params=list(params.items(multi=True)),
                headers=self._request_headers(request),
            )
            bundle = self._json(response)
            if response.status_code == 200 and isinstance(bundle, dict):
                self._filter_bundle(bundle, patient)
                return self._relay(response, bundle, replace_body=True)
            return self._relay(response)
        response = self._send(
            "GET",
            resource_type,
            params=list(params.items(multi=True)),
            headers=self._request_headers(request),
        )
        return self._relay(response)

    def _page(self, request: Request, token: TokenRecord) -> Response:
        """A further page of a search (HAPI's next links, ``[base]?_getpages=<id>&...``): its entries are
        checked like the first page's, each against the token's search scope and compartment."""
        response = self._send(
            "GET", "", params=list(request.args.items(multi=True)), headers=self._request_headers(request)
        )
        bundle = self._json(response)
        if response.status_code != 200 or not isinstance(bundle, dict):
            return self._relay(response)
        entries = bundle.get("entry") or []
        kept = [e for e in entries if self._may_see(token, e.get("resource"))]
        if len(kept) != len(entries):
            log.warning(
                "gateway removed %d entries of a page the token may not see", len(entries) - len(kept)
            )
            bundle["entry"] = kept
            bundle.pop("total", None)
        return self._relay(response, bundle, replace_body=True)

    def _may_see(self, token: TokenRecord, resource: Any) -> bool:
        if not isinstance(resource, dict):
            return True
        resource_type = str(resource.get("resourceType", ""))
        if resource_type == "OperationOutcome":
            return True
        try:
            patient = self._access(token, resource_type, "s")
        except Denied:
            return False
        return patient is None or self._visible(resource, patient)

    def _visible(self, resource: Mapping[str, Any], patient: str) -> bool:
        resource_type = str(resource.get("resourceType", ""))
        if resource_type == "OperationOutcome" or not compartment.is_patient_data(resource_type):
            return True
        return compartment.in_compartment(resource, patient, self._fetch)

    def _filter_bundle(self, bundle: dict[str, Any], patient: str) -> None:
        entries = bundle.get("entry") or []
        kept = [
            e
            for e in entries
            if not isinstance(e.get("resource"), dict) or self._visible(e["resource"], patient)
        ]
        if len(kept) != len(entries):
            log.warning("gateway removed %d out-of-compartment entries", len(entries) - len(kept))
            bundle["entry"] = kept
            bundle.pop("total", None)

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
            response = self._send("GET", path, params=list(request.args.items(multi=True)),
                                  headers=self._request_headers(request))  # fmt: skip
            data = self._json(response)
            if response.status_code == 200 and isinstance(data, dict):
                resources = (
                    [
                        e.get("resource")
                        for e in data.get("entry") or []
                        if isinstance(e.get("resource"), dict)
                    ]
                    if data.get("resourceType") == "Bundle"
                    else [data]
                )
                if not all(self._visible(r, patient) for r in resources):
                    raise Denied(403, "forbidden", "the resource belongs to another patient")
                return self._relay(response, data, replace_body=True)
            return self._relay(response)
        params = MultiDict(request.args.items(multi=True))
        if interaction.conditional:
            self._constrain(resource_type, params, patient)
        elif interaction.resource_id:
            existing = self._fetch(f"{resource_type}/{interaction.resource_id}")
            if existing is not None and not self._visible(existing, patient):
                raise Denied(403, "forbidden", "the resource belongs to another patient")
        headers = self._request_headers(request)
        body: bytes | None = None
        if kind in ("create", "update"):
            resource = self._read_body(request)
            if resource.get("resourceType") != resource_type:
                raise Denied(400, "invalid", f"the body is not a {resource_type}")
            if not compartment.writable_by(resource, patient, self._fetch):
                raise Denied(403, "forbidden", "the resource is not in the patient's compartment")
            body = json.dumps(resource).encode("utf-8")
            if kind == "create" and "If-None-Exist" in headers:
                condition = MultiDict(parse_qsl(headers["If-None-Exist"].lstrip("?"), keep_blank_values=True))
                self._constrain(resource_type, condition, patient)
                headers["If-None-Exist"] = urlencode(list(condition.items(multi=True)))
        response = self._send(
            request.method, path, params=list(params.items(multi=True)), body=body, headers=headers
        )
        data = self._json(response)
        matched = isinstance(data, dict) and data.get("resourceType") == resource_type
        if matched and not self._visible(data, patient):
            raise Denied(403, "forbidden", "the matched resource belongs to another patient")
        return self._relay(response)

    # -- operations ---------------------------------------------------------------------------------------
    def _operation(
        self, request: Request, path: str, interaction: Interaction, token: TokenRecord
    ) -> Response:
        if interaction.operation != "$validate" or request.method != "POST":
            raise Denied(403, "forbidden", "the sandbox gateway only forwards the $validate operation")
        resource_type = interaction.resource_type
        if resource_type is None:
            body = self._read_body(request)
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

    # -- transaction / batch ------------------------------------------------------------------------------
    def _bundle(self, request: Request, token: TokenRecord) -> Response:
        bundle = self._read_body(request)
        if bundle.get("resourceType") != "Bundle" or bundle.get("type") not in ("transaction", "batch"):
            raise Denied(400, "invalid", "POST to the FHIR base takes a transaction or batch Bundle")
        entries = bundle.get("entry") or []
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise Denied(400, "structure", "Bundle.entry must be an array of objects")
        local = BundleLinks(entries, self._fetch)
        compartment_entries: set[int] = set()
        for index, entry in enumerate(entries):
            if self._check_entry(index, entry, token, local):
                compartment_entries.add(index)
        response = self._send(
            "POST", "", body=json.dumps(bundle).encode("utf-8"), headers=self._request_headers(request)
        )
        result = self._json(response)
        if compartment_entries and isinstance(result, dict):
            patient = token.context.patient
            assert patient is not None
            for index, entry in enumerate(result.get("entry") or []):
                resource = entry.get("resource")
                if index in compartment_entries and isinstance(resource, dict):
                    if resource.get("resourceType") == "Bundle":
                        self._filter_bundle(resource, patient)
                    elif not self._visible(resource, patient):
                        entry.pop("resource")
                        entry["response"] = {"status": "403 Forbidden"}
            return self._relay(response, result, replace_body=True)
        return self._relay(response)

    def _check_entry(
        self, index: int, entry: Mapping[str, Any], token: TokenRecord, local: BundleLinks | None = None
    ) -> bool:
        """Authorize one bundle entry (in place for search URLs); True when it is compartment-limited."""
        local = local or BundleLinks([], self._fetch)
        where = f"entry {index}"
        request = entry.get("request")
        if not isinstance(request, dict) or not isinstance(request.get("url"), str):
            raise Denied(400, "invalid", f"{where} has no request.url")
        url: str = request["url"]
        for base in (self.public, self.backend):
            if url.startswith(base + "/"):
                url = url[len(base) + 1 :]
        split = urlsplit(url)
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
            patient = self._access(token, interaction.resource_type, INTERACTION_PERMISSION[interaction.kind])
        except Denied as denied:
            raise Denied(denied.status, denied.code, f"{where}: {denied.diagnostics}") from denied
        if patient is None or not compartment.is_patient_data(interaction.resource_type):
            return False
        resource_type = interaction.resource_type
        if interaction.kind in ("patch", "history-type"):
            raise Denied(
                403, "forbidden", f"{where}: {interaction.kind} is not available with patient scopes"
            )
        if resource_type == "Patient" and interaction.resource_id and interaction.resource_id != patient:
            raise Denied(403, "forbidden", f"{where}: the resource belongs to another patient")
        if interaction.kind == "search-type" or interaction.conditional:
            params = MultiDict(parse_qsl(split.query, keep_blank_values=True))
            self._constrain(resource_type, params, patient)
            request["url"] = f"{split.path}?{urlencode(list(params.items(multi=True)))}"
        elif interaction.resource_id and interaction.kind != "create":
            existing = self._fetch(f"{resource_type}/{interaction.resource_id}")
            if existing is not None and not self._visible(existing, patient):
                raise Denied(403, "forbidden", f"{where}: the resource belongs to another patient")
        if interaction.kind in ("create", "update"):
            resource = entry.get("resource")
            if not isinstance(resource, dict) or resource.get("resourceType") != resource_type:
                raise Denied(400, "invalid", f"{where}: the resource is not a {resource_type}")
            if not compartment.writable_by(resource, patient, local.resolve):
                raise Denied(403, "forbidden", f"{where}: the resource is not in the patient's compartment")
            if interaction.kind == "create" and isinstance(request.get("ifNoneExist"), str):
                condition = MultiDict(parse_qsl(request["ifNoneExist"].lstrip("?"), keep_blank_values=True))
                self._constrain(resource_type, condition, patient)
                request["ifNoneExist"] = urlencode(list(condition.items(multi=True)))
        return True


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
