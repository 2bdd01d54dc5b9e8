"""An in-process fake EHR (SMART authorization server + FHIR endpoint) behind a requests adapter.

For unit and Flask-test-client tests only: no sockets, no threads. The end-to-end tests use the real
sandbox (fhir_desens.sandbox) instead. It checks what a strict server checks (PKCE S256, redirect_uri,
client authentication of each kind, single-use codes, bearer tokens) and records every request, so
tests can assert on what the client sent, or that nothing was sent at all.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlencode, urlsplit

import requests
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey
from requests.adapters import BaseAdapter

from tests.app.fake_ehr_chart import (
    FIXTURES,
    PLANNING_TYPES,
    identifiers_of,
    in_compartment,
    matches_search,
    rewrite_references,
)

BASE = "https://ehr.example.org"
FHIR_BASE = BASE + "/fhir"
AUTHORIZE = BASE + "/auth/authorize"
TOKEN = BASE + "/auth/token"
JWKS = BASE + "/auth/jwks"
ISSUER = BASE + "/auth"


class FakeClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Recorded:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes

    @property
    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


@dataclass
class Client:
    client_id: str
    kind: str  # public | symmetric | asymmetric
    secret: str | None = None
    public_keys: KeySet | None = None


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    code_challenge: str
    scope: str
    patient: str
    nonce: str | None
    launch: str | None


@dataclass
class FakeEhr:
    clock: FakeClock = field(default_factory=FakeClock)
    clients: dict[str, Client] = field(default_factory=dict)
    patients: dict[str, dict[str, Any]] = field(default_factory=dict)
    allergies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    capabilities: list[str] = field(
        default_factory=lambda: [
            "launch-ehr",
            "launch-standalone",
            "client-public",
            "client-confidential-symmetric",
            "client-confidential-asymmetric",
            "context-ehr-patient",
            "permission-v2",
            "permission-v1",
            "sso-openid-connect",
            "authorize-post",
        ]
    )
    well_known_status: int = 200
    token_lifetime: int = 3600
    #: scopes the server removes from every grant (to test degraded access)
    withhold_scopes: set[str] = field(default_factory=set)
    #: scopes the server grants narrower than asked: requested -> granted
    narrow_scopes: dict[str, str] = field(default_factory=dict)
    refresh_rotates: bool = True
    smart_style_url: str | None = None
    need_patient_banner: bool = True
    style_doc: dict[str, Any] | None = None
    launches: dict[str, str] = field(default_factory=dict)
    codes: dict[str, Grant] = field(default_factory=dict)
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    refresh_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    seen_jti: set[str] = field(default_factory=set)
    fhir_401_once: bool = False
    #: chart resources for planning, by (type, id): MedicationRequest, Medication, Observation, Condition...
    stored: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    #: how the next order transactions fail (see ``orders_transaction``); None: they succeed
    transaction_failure: str | None = None
    transaction_partial: int = 5  # entries written before a "partial" failure
    #: searches by one session's business identifiers fail (503); the list of plans still answers
    orders_search_fails: bool = False
    #: allergy searches fail (503), as when the server is paused between two signing attempts
    allergy_search_fails: bool = False

    def __post_init__(self) -> None:
        self.signing_key = RSAKey.generate_key(2048, parameters={"kid": "ehr-key-1", "use": "sig"})

    # -- setup ------------------------------------------------------------------------------------
    def session(self) -> requests.Session:
        http = requests.Session()
        http.mount(BASE, _Adapter(self))
        return http

    def add_client(self, client: Client) -> None:
        self.clients[client.client_id] = client

    def add_patient(
        self,
        patient_id: str,
        name: str = "Ada Example",
        *,
        allergies: list[dict[str, Any]] | None = None,
        mrn: str = "MRN-1",
    ) -> None:
        given, _, family = name.partition(" ")
        self.patients[patient_id] = {
            "resourceType": "Patient",
            "id": patient_id,
            "name": [{"use": "official", "given": [given], "family": family}],
            "gender": "female",
            "birthDate": "1970-01-02",
            "identifier": [
                {
                    "type": {
                        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]
                    },
                    "value": mrn,
                }
            ],
        }
        self.allergies[patient_id] = [
            {**allergy, "patient": {"reference": f"Patient/{patient_id}"}} for allergy in allergies or []
        ]

    def new_launch(self, patient_id: str) -> str:
        token = secrets.token_urlsafe(12)
        self.launches[token] = patient_id
        return token

    def well_known(self) -> dict[str, Any]:
        return {
            "issuer": ISSUER,
            "jwks_uri": JWKS,
            "authorization_endpoint": AUTHORIZE,
            "token_endpoint": TOKEN,
            "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic", "none"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "scopes_supported": ["openid", "fhirUser", "launch", "launch/patient", "online_access"],
            "response_types_supported": ["code"],
            "capabilities": self.capabilities,
            "code_challenge_methods_supported": ["S256"],
        }

    # -- the user's browser at the authorization endpoint ----------------------------------------------
    def approve(self, params: dict[str, str], *, patient: str | None = None) -> dict[str, str]:
        """What the EHR sends back to redirect_uri after the user approves (query parameters)."""
        client = self.clients.get(params.get("client_id", ""))
        assert client is not None, "unknown client_id"
        assert params["response_type"] == "code"
        assert params["aud"] == FHIR_BASE, params["aud"]
        assert params["code_challenge_method"] == "S256"
        launch = params.get("launch")
        if launch is not None:
            patient = self.launches[launch]
        assert patient is not None, "standalone launch needs a patient picked"
        granted = " ".join(
            self.narrow_scopes.get(s, s) for s in params["scope"].split() if s not in self.withhold_scopes
        )
        code = secrets.token_urlsafe(16)
        self.codes[code] = Grant(
            client_id=client.client_id,
            redirect_uri=params["redirect_uri"],
            code_challenge=params["code_challenge"],
            scope=granted,
            patient=patient,
            nonce=params.get("nonce"),
            launch=launch,
        )
        return {"code": code, "state": params["state"]}

    # -- HTTP -------------------------------------------------------------------------------------
    def handle(
        self, method: str, url: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        self.requests.append(Recorded(method, url, headers, body))
        parts = urlsplit(url)
        path = parts.path
        if path == "/fhir/.well-known/smart-configuration":
            if self.well_known_status != 200:
                return self.well_known_status, {"error": "nope"}, {}
            return 200, self.well_known(), {}
        if path == "/fhir/metadata":
            return 200, self.capability_statement(), {}
        if path == "/auth/jwks":
            return 200, {"keys": [self.signing_key.as_dict(private=False)]}, {}
        if path == "/auth/token" and method == "POST":
            return self.token(headers, body)
        if path == "/style.json":
            return (200, self.style_doc, {}) if self.style_doc is not None else (404, {}, {})
        if path in ("/fhir", "/fhir/") and method == "POST":
            return self.orders_transaction(headers, body)
        if path.startswith("/fhir/"):
            return self.fhir(method, path[len("/fhir/") :], parse_qs(parts.query), headers, body)
        return 404, {"error": "not found"}, {}

    def capability_statement(self) -> dict[str, Any]:
        return {
            "resourceType": "CapabilityStatement",
            "rest": [
                {
                    "mode": "server",
                    "security": {
                        "extension": [
                            {
                                "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                                "extension": [
                                    {"url": "authorize", "valueUri": AUTHORIZE},
                                    {"url": "token", "valueUri": TOKEN},
                                ],
                            }
                        ]
                    },
                }
            ],
        }

    def _client_auth(self, headers: dict[str, str], form: dict[str, str]) -> Client | None:
        auth = headers.get("Authorization", "")
        if auth.startswith("Basic "):
            raw_id, _, raw_secret = base64.b64decode(auth[6:]).decode().partition(":")
            cid, secret = unquote_plus(raw_id), unquote_plus(raw_secret)
            client = self.clients.get(cid)
            if client and client.kind == "symmetric" and secrets.compare_digest(client.secret or "", secret):
                return client
            return None
        if "client_assertion" in form:
            assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            unverified = json.loads(base64.urlsafe_b64decode(form["client_assertion"].split(".")[1] + "=="))
            client = self.clients.get(unverified.get("iss", ""))
            if not client or client.kind != "asymmetric" or client.public_keys is None:
                return None
            token = jwt.decode(form["client_assertion"], client.public_keys, algorithms=["RS384", "ES384"])
            claims = token.claims
            now = self.clock()
            ok = (
                claims["iss"] == claims["sub"] == client.client_id
                and claims["aud"] == TOKEN
                and now < claims["exp"] <= now + 300
                and claims["jti"] not in self.seen_jti
                and token.header.get("kid")
            )
            self.seen_jti.add(claims["jti"])
            return client if ok else None
        client = self.clients.get(form.get("client_id", ""))
        return client if client and client.kind == "public" else None

    def _issue(self, grant: Grant, client: Client, *, scope: str) -> dict[str, Any]:
        access = secrets.token_urlsafe(24)
        self.tokens[access] = {
            "patient": grant.patient,
            "scope": scope,
            "exp": self.clock() + self.token_lifetime,
        }
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
            "scope": scope,
            "patient": grant.patient,
            "need_patient_banner": self.need_patient_banner,
        }
        if self.smart_style_url:
            body["smart_style_url"] = self.smart_style_url
        if "online_access" in scope.split() or "offline_access" in scope.split():
            refresh = secrets.token_urlsafe(24)
            self.refresh_tokens[refresh] = {"grant": grant, "client_id": client.client_id, "scope": scope}
            body["refresh_token"] = refresh
        return body

    def make_id_token(self, grant: Grant, *, overrides: dict[str, Any] | None = None) -> str:
        now = int(self.clock())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "sub": "practitioner-7",
            "aud": grant.client_id,
            "iat": now,
            "exp": now + 300,
            "fhirUser": f"Practitioner/{self.practitioner_id}",
        }
        if grant.nonce:
            claims["nonce"] = grant.nonce
        claims.update(overrides or {})
        return jwt.encode(
            {"alg": "RS256", "kid": "ehr-key-1"}, claims, self.signing_key, algorithms=["RS256"]
        )

    id_token_overrides: dict[str, Any] | None = None

    def token(self, headers: dict[str, str], body: bytes) -> tuple[int, Any, dict[str, str]]:
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        client = self._client_auth(headers, form)
        if client is None:
            return 401, {"error": "invalid_client"}, {}
        if form.get("grant_type") == "authorization_code":
            grant = self.codes.pop(form.get("code", ""), None)
            if grant is None or grant.client_id != client.client_id:
                return 400, {"error": "invalid_grant", "error_description": "unknown or used code"}, {}
            if form.get("redirect_uri") != grant.redirect_uri:
                return 400, {"error": "invalid_grant", "error_description": "redirect_uri mismatch"}, {}
            verifier = form.get("code_verifier", "")
            challenge = (
                base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            )
            if challenge != grant.code_challenge:
                return 400, {"error": "invalid_grant", "error_description": "PKCE verification failed"}, {}
            response = self._issue(grant, client, scope=grant.scope)
            if "openid" in grant.scope.split():
                response["id_token"] = self.make_id_token(grant, overrides=self.id_token_overrides)
            return 200, response, {"Cache-Control": "no-store"}
        if form.get("grant_type") == "refresh_token":
            entry = self.refresh_tokens.get(form.get("refresh_token", ""))
            if entry is None or entry["client_id"] != client.client_id:
                return 400, {"error": "invalid_grant"}, {}
            response = self._issue(entry["grant"], client, scope=entry["scope"])
            if not self.refresh_rotates:
                self.refresh_tokens.pop(response.pop("refresh_token"), None)
            else:
                self.refresh_tokens.pop(form["refresh_token"], None)
            return 200, response, {"Cache-Control": "no-store"}
        return 400, {"error": "unsupported_grant_type"}, {}

    def fhir(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, Any, dict[str, str]]:
        auth = headers.get("Authorization", "")
        token = self.tokens.get(auth[7:]) if auth.startswith("Bearer ") else None
        if self.fhir_401_once:
            self.fhir_401_once = False
            token = None
        if token is None or token["exp"] <= self.clock():
            return (
                401,
                {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "login"}]},
                {},
            )
        segments = path.split("/")
        if method == "PUT" and len(segments) == 2:
            return self.update(segments[0], segments[1], headers, body, token["patient"])
        if segments[0] == "Patient" and len(segments) == 2:
            if segments[1] != token["patient"] or segments[1] not in self.patients:
                return 404, {"resourceType": "OperationOutcome", "issue": []}, {}
            return 200, self.patients[segments[1]], {}
        if segments == ["AllergyIntolerance"]:
            wanted = query.get("patient", [""])[0]
            if wanted != f"Patient/{token['patient']}":
                return 403, {"resourceType": "OperationOutcome", "issue": []}, {}
            if self.allergy_search_fails:
                return 503, {"resourceType": "OperationOutcome", "issue": []}, {}
            entries = [
                {"resource": r, "search": {"mode": "match"}} for r in self.allergies.get(token["patient"], [])
            ]
            return 200, {"resourceType": "Bundle", "type": "searchset", "entry": entries}, {}
        if segments[0] == "Practitioner" and len(segments) == 2 and method == "GET":
            return self.practitioner_read(segments[1], token)
        orders = self.orders_search(method, segments, query, token["patient"])
        if orders is not None:
            return orders
        planning = self.chart_fhir(method, segments, query, token["patient"])
        if planning is not None:
            return planning
        return 404, {"resourceType": "OperationOutcome", "issue": []}, {}

    def practitioner_read(
        self, practitioner_id: str, token: dict[str, Any]
    ) -> tuple[int, Any, dict[str, str]]:
        """The signed-in user's own Practitioner is readable with the ``fhirUser`` scope (as the sandbox
        gateway allows); any other Practitioner is forbidden (no Practitioner scope is granted)."""
        resource = self.stored.get(("Practitioner", practitioner_id))
        own = "fhirUser" in token["scope"].split() and practitioner_id == self.practitioner_id
        if not own:
            return 403, {"resourceType": "OperationOutcome", "issue": []}, {}
        if resource is None:
            return 404, {"resourceType": "OperationOutcome", "issue": []}, {}
        return 200, resource, {}

    #: the id of the signed-in user's Practitioner (the id_token's fhirUser)
    practitioner_id: str = "7"

    # -- chart resources for planning (MedicationRequest, Medication, Observation, Condition ...) ----
    def add_resource(self, resource: dict[str, Any]) -> dict[str, Any]:
        """Store a resource as its next version (``meta.versionId`` 1, 2 ...)."""
        key = (resource["resourceType"], resource["id"])
        previous = self.stored.get(key)
        version = int(((previous or {}).get("meta") or {}).get("versionId", "0")) + 1
        resource = {**resource, "meta": {**(resource.get("meta") or {}), "versionId": str(version)}}
        self.stored[key] = resource
        return resource

    def version_of(self, kind: str, rid: str) -> str | None:
        resource = self.stored.get((kind, rid))
        return None if resource is None else str(resource["meta"]["versionId"])

    #: resource types the app may update (PUT with If-Match), like a permissive EHR
    UPDATABLE = frozenset({"MedicationRequest", "RequestGroup"})
    #: the next PUT of these "Type/id" answers 412 once (changed meanwhile by someone else)
    changed_meanwhile: set[str] = field(default_factory=set)

    def update(
        self, kind: str, rid: str, headers: dict[str, str], body: bytes, patient: str
    ) -> tuple[int, Any, dict[str, str]]:
        """PUT Type/id: guarded by If-Match like a versioned EHR (412 when stale)."""
        current = self.stored.get((kind, rid))
        if kind not in self.UPDATABLE or current is None or not in_compartment(current, f"Patient/{patient}"):
            return 404, {"resourceType": "OperationOutcome", "issue": []}, {}
        wanted = headers.get("If-Match", "")
        stale = f"{kind}/{rid}" in self.changed_meanwhile
        self.changed_meanwhile.discard(f"{kind}/{rid}")
        if stale or (wanted and wanted != f'W/"{self.version_of(kind, rid)}"'):
            return (
                412,
                {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "conflict"}]},
                {},
            )
        stored = self.add_resource({**json.loads(body), "id": rid})
        return 200, stored, {"ETag": f'W/"{stored["meta"]["versionId"]}"'}

    def load_fixture(self, key: str) -> str:
        """Register a sandbox fixture patient (fixtures/patients/<key>.json); returns its patient id (= key).

        urn:uuid references are rewritten to Type/id, ids derived from the business identifiers.
        """
        bundle = json.loads((FIXTURES / f"{key}.json").read_text("utf-8"))
        ids: dict[str, str] = {}
        for entry in bundle["entry"]:
            resource = entry["resource"]
            kind = resource["resourceType"]
            value = (resource.get("identifier") or [{}])[0].get("value", secrets.token_hex(4))
            rid = (
                key
                if kind == "Patient"
                else "".join(c if c.isalnum() or c in "-." else "-" for c in value)[:64]
            )
            ids[entry["fullUrl"]] = f"{kind}/{rid}"
        for entry in bundle["entry"]:
            resource = rewrite_references(entry["resource"], ids)
            resource["id"] = ids[entry["fullUrl"]].split("/", 1)[1]
            kind = resource["resourceType"]
            if kind == "Patient":
                self.patients[key] = resource
            elif kind == "AllergyIntolerance":
                self.allergies.setdefault(key, []).append(resource)
            else:
                self.add_resource(resource)
        self.allergies.setdefault(key, [])
        return key

    def chart_fhir(
        self, method: str, segments: list[str], query: dict[str, list[str]], patient: str
    ) -> tuple[int, Any, dict[str, str]] | None:
        """Reads and the searches planning sends; None for anything else."""
        if method != "GET" or not segments or segments[0] not in PLANNING_TYPES:
            return None
        kind, own = segments[0], f"Patient/{patient}"
        if len(segments) == 2:
            resource = self.stored.get((kind, segments[1]))
            if resource is None or not in_compartment(resource, own):
                return 404, {"resourceType": "OperationOutcome", "issue": []}, {}
            return 200, resource, {}
        wanted = query.get("patient", query.get("subject", [None]))[0]
        if wanted is not None and wanted != own:
            return 403, {"resourceType": "OperationOutcome", "issue": []}, {}
        found = [r for (k, _), r in self.stored.items() if k == kind and in_compartment(r, own)]
        found = [r for r in found if matches_search(r, query)]
        entries = [{"resource": r, "search": {"mode": "match"}} for r in found]
        return 200, {"resourceType": "Bundle", "type": "searchset", "entry": entries}, {}

    # -- signed orders: the $apply transaction and searches by business identifier --------------------
    def _bearer(self, headers: dict[str, str]) -> dict[str, Any] | None:
        auth = headers.get("Authorization", "")
        token = self.tokens.get(auth[7:]) if auth.startswith("Bearer ") else None
        return token if token is not None and token["exp"] > self.clock() else None

    def orders_transaction(self, headers: dict[str, str], body: bytes) -> tuple[int, Any, dict[str, str]]:
        """A transaction with conditional creates (``identifier=`` only) and PUTs, in the patient's
        compartment. ``transaction_failure``: "timeout-before" (nothing written, then a read timeout),
        "timeout-after" (everything written, the answer lost), "partial" (``transaction_partial``
        entries written, then 500), "conflict" (409), "forbidden" (403), "unavailable" (503)."""
        token = self._bearer(headers)
        if token is None:
            return (
                401,
                {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "login"}]},
                {},
            )
        bundle = json.loads(body)
        if not isinstance(bundle, dict) or bundle.get("type") != "transaction":
            # like an EHR without batch support (its CapabilityStatement lists none): the app may send
            # its first batch before it has read the statement, and then reads request by request
            issue = {"severity": "error", "code": "not-supported", "diagnostics": "only transactions"}
            return 400, {"resourceType": "OperationOutcome", "issue": [issue]}, {}
        failure = self.transaction_failure
        if failure == "timeout-before":
            raise requests.ReadTimeout("fake EHR: no answer")
        statuses = {"conflict": 409, "forbidden": 403, "unavailable": 503}
        if failure in statuses:
            issue = {"severity": "error", "code": "processing", "diagnostics": f"fake {failure}"}
            return statuses[failure], {"resourceType": "OperationOutcome", "issue": [issue]}, {}
        entries = bundle.get("entry") or []
        for entry in entries:  # a stale ifMatch fails the whole transaction, nothing written
            wanted = entry["request"].get("ifMatch")
            kind, _, rid = entry["request"]["url"].partition("/")
            stale = f"{kind}/{rid}" in self.changed_meanwhile
            if wanted and (stale or wanted != f'W/"{self.version_of(kind, rid)}"'):
                self.changed_meanwhile.discard(f"{kind}/{rid}")
                issue = {"severity": "error", "code": "conflict", "diagnostics": "version mismatch"}
                return 409, {"resourceType": "OperationOutcome", "issue": [issue]}, {}
        if failure == "partial":
            self._apply_entries(entries[: self.transaction_partial], f"Patient/{token['patient']}")
            return (
                500,
                {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception"}]},
                {},
            )
        answers = self._apply_entries(entries, f"Patient/{token['patient']}")
        if failure == "timeout-after":
            raise requests.ReadTimeout("fake EHR: the answer was lost")
        return 200, {"resourceType": "Bundle", "type": "transaction-response", "entry": answers}, {}

    def _apply_entries(self, entries: list[dict[str, Any]], own: str) -> list[dict[str, Any]]:
        ids: dict[str, str] = {}
        plans: list[tuple[dict[str, Any], str, str, bool]] = []
        for entry in entries:
            resource, request = entry["resource"], entry["request"]
            kind = resource["resourceType"]
            if request["method"] == "PUT":
                rid, existing = request["url"].split("/", 1)[1], None
            else:
                existing = self._by_identifier(kind, request.get("ifNoneExist", ""))
                rid = existing["id"] if existing else secrets.token_hex(8)
            ids[entry["fullUrl"]] = f"{kind}/{rid}"
            plans.append((resource, kind, rid, existing is None and (kind, rid) not in self.stored))
        updates = {
            (e["resource"]["resourceType"], e["request"]["url"].split("/", 1)[1])
            for e in entries
            if e["request"]["method"] == "PUT"
        }
        answers = []
        for resource, kind, rid, created in plans:
            stored = self.stored.get((kind, rid)) if not created else None
            if stored is None or kind == "Provenance" or (kind, rid) in updates:
                stored = {**rewrite_references(resource, ids), "id": rid}
                assert kind == "Medication" or in_compartment(stored, own) or kind == "Provenance", kind
                stored = self.add_resource(stored)
            status = "201 Created" if created else "200 OK"
            answers.append(
                {"resource": stored, "response": {"status": status, "location": f"{kind}/{rid}/_history/1"}}
            )
        return answers

    def _by_identifier(self, kind: str, condition: str) -> dict[str, Any] | None:
        wanted = parse_qs(condition).get("identifier", [""])[0]
        return next((r for r in self.orders_of(kind) if wanted in identifiers_of(r)), None)

    def orders_of(self, kind: str) -> list[dict[str, Any]]:
        return [r for (k, _), r in self.stored.items() if k == kind]

    def orders_search(
        self, method: str, segments: list[str], query: dict[str, list[str]], patient: str
    ) -> tuple[int, Any, dict[str, str]] | None:
        """Searches by business identifier (``identifier=system|value,...``); None for anything else."""
        if method != "GET" or len(segments) != 1 or "identifier" not in query:
            return None
        if segments[0] not in ("RequestGroup", "MedicationRequest", "Medication"):
            return None
        any_value = all(w.endswith("|") for w in ",".join(query["identifier"]).split(","))
        if self.orders_search_fails and not any_value:  # the searches by one session's identifiers
            return 503, {"resourceType": "OperationOutcome", "issue": []}, {}
        wanted = ",".join(query["identifier"]).split(",")  # "system|value", or "system|": any value

        def matches(resource: dict[str, Any]) -> bool:
            held = identifiers_of(resource)
            return any(w in held or (w.endswith("|") and any(h.startswith(w) for h in held)) for w in wanted)

        found = [
            r for r in self.orders_of(segments[0]) if matches(r) and in_compartment(r, f"Patient/{patient}")
        ]
        entries = [{"resource": r, "search": {"mode": "match"}} for r in found]
        return 200, {"resourceType": "Bundle", "type": "searchset", "entry": entries}, {}

    def sent_to(self, prefix: str) -> list[Recorded]:
        return [r for r in self.requests if r.url.startswith(prefix)]


class _Adapter(BaseAdapter):
    def __init__(self, ehr: FakeEhr) -> None:
        super().__init__()
        self.ehr = ehr

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        status, payload, headers = self.ehr.handle(
            request.method or "GET", request.url or "", dict(request.headers), body
        )
        response = requests.Response()
        response.status_code = status
        response.headers.update(headers)
        response.headers.setdefault("Content-Type", "application/json")
        response._content = json.dumps(payload).encode()
        response.url = request.url or ""
        response.request = request
        response.reason = "OK" if status < 400 else "Error"
        return response

    def close(self) -> None:
        pass


def authorize_params(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def rsa_client_key() -> RSAKey:
    return RSAKey.generate_key(2048)


def ec_client_key() -> ECKey:
    return ECKey.generate_key("P-384")


def keyset_of(key: RSAKey | ECKey, kid: str) -> KeySet:
    jwk = key.as_dict(private=False)
    jwk["kid"] = kid
    return KeySet.import_key_set({"keys": [jwk]})


def callback_query(params: dict[str, str]) -> str:
    return urlencode(params)


Handler = Callable[[str, str, dict[str, str], bytes], tuple[int, Any, dict[str, str]]]
