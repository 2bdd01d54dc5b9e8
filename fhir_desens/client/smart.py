"""The SMART App Launch 2.x client: discovery, authorization, token exchange, refresh, identity.

Usable without Flask. The flow is a small state machine whose states are plain, serializable
objects, so a web app can keep them in a server-side store:

1. :meth:`SmartClient.discover` reads ``{iss}/.well-known/smart-configuration`` (falling back to the
   CapabilityStatement's ``oauth-uris`` extension) into a :class:`SmartConfiguration`.
2. :meth:`SmartClient.authorize` builds an :class:`AuthorizationRequest` (GET URL, or the fields of a
   POST form when the URL is long) and a :class:`PendingAuthorization` holding ``state`` (256 bits),
   the PKCE S256 ``code_verifier``, the OIDC ``nonce`` and an expiry. Store it keyed by ``state``
   and take it back exactly once.
3. :meth:`SmartClient.complete` checks ``state`` (constant time) and expiry, exchanges the code with
   the verifier and the client's authentication (none, ``client_secret_basic`` or ``private_key_jwt``
   with RS384/ES384), validates the ``id_token`` (signature from ``jwks_uri``, ``iss``, ``aud``,
   ``exp``, ``nonce``) and returns a :class:`SmartSession`.
4. :class:`SmartSession` holds the tokens and launch context. It implements the FHIR client's auth
   interface (``headers()``, ``refresh()``): it refreshes shortly before expiry and when the FHIR
   client reports a 401, keeps the old refresh token when the server returns none, and re-reads the
   granted scope (``can_write`` is false when allergy writes were not granted, ``can_sign_orders``
   when any write of the orders transaction was not).

Token values are never logged and never appear in ``repr``; logs say whether a token exists.
Requirement ids (docs/requirements.md) are cited as ``SMART-*`` in comments.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import quote, urlencode, urljoin, urlsplit

import requests
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, JWKRegistry, KeySet, RSAKey

from fhir_desens.client.http import (
    DEFAULT_RETRY,
    NO_RETRY,
    RETRY_STATUSES,
    RetryPolicy,
    Timeout,
    new_session,
    send,
)
from fhir_desens.client.scopes import GrantedScopes, ScopeNeed, granted_scopes, render_scopes
from fhir_desens.errors import AuthError, ConfigurationError, FhirServerError, TemporaryServerError

__all__ = [
    "DEFAULT_NEEDS",
    "ORDER_WRITES",
    "AuthorizationDenied",
    "AuthorizationRequest",
    "ClientAuth",
    "ClientRegistration",
    "ClientSecretBasic",
    "PendingAuthorization",
    "PrivateKeyJwt",
    "PublicClient",
    "SmartClient",
    "SmartConfiguration",
    "SmartSession",
    "callback_error",
    "load_signing_key",
    "make_pkce_pair",
    "new_state",
    "pkce_challenge",
]

log = logging.getLogger(__name__)

OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
SMART_CAPABILITIES_EXT = "http://fhir-registry.smarthealthit.org/StructureDefinition/capabilities"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

#: What this app asks for by default (docs/fhir-smart.md §1.2), and why:
#:
#: * read the patient, the allergy list, and what planning reads from the chart: active
#:   MedicationRequests and their Medications (the drug to desensitize), Conditions (the indication),
#:   Observations (height and weight for per-m² doses), and the signed plans (RequestGroups);
#: * record on the allergy list (create/update);
#: * sign orders: the $apply transaction creates a RequestGroup, one MedicationRequest per step and
#:   one Medication per solution (conditional creates), and writes its Provenance with PUT to an id
#:   derived from the session (create or update).
#:
#: Servers may grant less: without the allergy write the app does not record allergies
#: (:attr:`SmartSession.can_write`), without the order writes it plans and prints but does not sign
#: (:attr:`SmartSession.can_sign_orders`).
DEFAULT_NEEDS: tuple[ScopeNeed, ...] = (
    ScopeNeed("patient", "Patient", "rs"),
    ScopeNeed("patient", "AllergyIntolerance", "rs"),
    ScopeNeed("patient", "AllergyIntolerance", "cu"),
    ScopeNeed("patient", "MedicationRequest", "crus"),  # u: hold the therapeutic order, discontinue
    ScopeNeed("patient", "Medication", "crs"),
    ScopeNeed("patient", "Condition", "rs"),
    ScopeNeed("patient", "Observation", "rs"),
    ScopeNeed("patient", "RequestGroup", "crus"),  # u: discontinue a plan
    ScopeNeed("patient", "Provenance", "cu"),
    # the outcome write-back (issue 13): search before writing; the clinical note; the tolerance window
    ScopeNeed("patient", "Provenance", "rs"),
    ScopeNeed("patient", "DocumentReference", "crs"),
    ScopeNeed("patient", "MedicationAdministration", "rs"),
    # the bedside record (issue 12): what the EHR accepts of the session, looked up before any resend
    ScopeNeed("patient", "Observation", "c"),
    ScopeNeed("patient", "MedicationAdministration", "cu"),
    ScopeNeed("patient", "Procedure", "crus"),
    ScopeNeed("patient", "AdverseEvent", "crus"),
)

#: The writes of the $apply transaction (see DEFAULT_NEEDS): resource type -> permissions needed.
ORDER_WRITES: tuple[tuple[str, str], ...] = (
    ("RequestGroup", "c"),
    ("MedicationRequest", "c"),
    ("Medication", "c"),
    ("Provenance", "cu"),
)

#: Asymmetric client authentication algorithms a SMART client SHALL support (SMART-ASYM-1).
ASSERTION_ALGORITHMS = ("RS384", "ES384")
#: Signature algorithms accepted on an id_token (never "none", never HMAC).
ID_TOKEN_ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512")
MAX_ASSERTION_LIFETIME = 300  # seconds; SMART: exp no more than five minutes in the future


# ----------------------------------------------------------------------------------------------
# small primitives


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge: BASE64URL(SHA256(ASCII(verifier))) without padding (RFC 7636 §4.2)."""
    return _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def make_pkce_pair() -> tuple[str, str]:
    """A fresh (code_verifier, code_challenge) pair; the verifier has 512 bits of entropy (86 chars)."""
    verifier = secrets.token_urlsafe(64)
    return verifier, pkce_challenge(verifier)


def new_state() -> str:
    """An unguessable OAuth ``state``: 256 random bits, URL-safe (SMART requires at least 122)."""
    return secrets.token_urlsafe(32)


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _require_secure(url: str, what: str) -> str:
    """Only https endpoints, except on the loopback interface (the development sandbox)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.netloc:
        return url
    if parts.scheme == "http" and is_loopback(parts.hostname):
        return url
    raise AuthError(f"{what} must be an https URL (got {parts.scheme or 'no'} scheme)")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(v for v in value if isinstance(v, str))
    return ()


# ----------------------------------------------------------------------------------------------
# discovery


@dataclass(frozen=True)
class SmartConfiguration:
    """The parts of a server's SMART configuration the client uses."""

    fhir_base: str
    authorization_endpoint: str
    token_endpoint: str
    issuer: str | None = None
    jwks_uri: str | None = None
    capabilities: tuple[str, ...] = ()
    code_challenge_methods_supported: tuple[str, ...] = ()
    token_endpoint_auth_methods_supported: tuple[str, ...] = ()
    scopes_supported: tuple[str, ...] = ()
    source: Literal["well-known", "metadata"] = "well-known"

    @property
    def supports_v2_scopes(self) -> bool:
        return "permission-v2" in self.capabilities

    @classmethod
    def from_well_known(cls, fhir_base: str, doc: Mapping[str, Any]) -> SmartConfiguration:
        authorize, token = _text(doc.get("authorization_endpoint")), _text(doc.get("token_endpoint"))
        if not authorize or not token:
            raise FhirServerError(
                "the SMART configuration lacks authorization_endpoint or token_endpoint", status=200
            )
        return cls(
            fhir_base=fhir_base,
            authorization_endpoint=authorize,
            token_endpoint=token,
            issuer=_text(doc.get("issuer")),
            jwks_uri=_text(doc.get("jwks_uri")),
            capabilities=_strings(doc.get("capabilities")),
            code_challenge_methods_supported=_strings(doc.get("code_challenge_methods_supported")),
            token_endpoint_auth_methods_supported=_strings(doc.get("token_endpoint_auth_methods_supported")),
            scopes_supported=_strings(doc.get("scopes_supported")),
            source="well-known",
        )

    @classmethod
    def from_capability_statement(cls, fhir_base: str, doc: Mapping[str, Any]) -> SmartConfiguration:
        """SMART 1.0 discovery: ``rest[].security.extension`` oauth-uris and capabilities."""
        if doc.get("resourceType") != "CapabilityStatement":
            raise FhirServerError("the server's /metadata is not a CapabilityStatement", status=200)
        uris: dict[str, str] = {}
        capabilities: list[str] = []
        for rest in doc.get("rest") or []:
            security = rest.get("security") if isinstance(rest, Mapping) else None
            if not isinstance(security, Mapping):
                continue
            for ext in security.get("extension") or []:
                if not isinstance(ext, Mapping):
                    continue
                if ext.get("url") == OAUTH_URIS:
                    for sub in ext.get("extension") or []:
                        if isinstance(sub, Mapping) and _text(sub.get("url")) and _text(sub.get("valueUri")):
                            uris[sub["url"]] = sub["valueUri"]
                elif ext.get("url") == SMART_CAPABILITIES_EXT and _text(ext.get("valueCode")):
                    capabilities.append(ext["valueCode"])
        if "authorize" not in uris or "token" not in uris:
            raise FhirServerError("the CapabilityStatement has no SMART oauth-uris extension", status=200)
        return cls(
            fhir_base=fhir_base,
            authorization_endpoint=uris["authorize"],
            token_endpoint=uris["token"],
            capabilities=tuple(capabilities),
            source="metadata",
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "fhir_base": self.fhir_base,
            "authorization_endpoint": self.authorization_endpoint,
            "token_endpoint": self.token_endpoint,
            "issuer": self.issuer,
            "jwks_uri": self.jwks_uri,
            "capabilities": list(self.capabilities),
            "code_challenge_methods_supported": list(self.code_challenge_methods_supported),
            "token_endpoint_auth_methods_supported": list(self.token_endpoint_auth_methods_supported),
            "scopes_supported": list(self.scopes_supported),
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SmartConfiguration:
        return cls(
            fhir_base=data["fhir_base"],
            authorization_endpoint=data["authorization_endpoint"],
            token_endpoint=data["token_endpoint"],
            issuer=data.get("issuer"),
            jwks_uri=data.get("jwks_uri"),
            capabilities=tuple(data.get("capabilities") or ()),
            code_challenge_methods_supported=tuple(data.get("code_challenge_methods_supported") or ()),
            token_endpoint_auth_methods_supported=tuple(
                data.get("token_endpoint_auth_methods_supported") or ()
            ),
            scopes_supported=tuple(data.get("scopes_supported") or ()),
            source=data.get("source", "well-known"),
        )


# ----------------------------------------------------------------------------------------------
# client authentication


class ClientAuth:
    """How the client authenticates at the token endpoint."""

    #: the ``token_endpoint_auth_methods_supported`` value
    method = "none"

    def apply(
        self, data: dict[str, str], headers: dict[str, str], *, client_id: str, token_url: str, now: float
    ) -> None:
        raise NotImplementedError


class PublicClient(ClientAuth):
    """A public client: no secret, ``client_id`` in the body (SMART-TOKEN-1)."""

    method = "none"

    def apply(
        self, data: dict[str, str], headers: dict[str, str], *, client_id: str, token_url: str, now: float
    ) -> None:
        data["client_id"] = client_id

    def __repr__(self) -> str:
        return "PublicClient()"


class ClientSecretBasic(ClientAuth):
    """A symmetric confidential client: HTTP Basic with the form-encoded id and secret (RFC 6749 §2.3.1)."""

    method = "client_secret_basic"

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ConfigurationError("the SMART client secret is empty")
        self._secret = secret

    def apply(
        self, data: dict[str, str], headers: dict[str, str], *, client_id: str, token_url: str, now: float
    ) -> None:
        pair = f"{quote(client_id, safe='')}:{quote(self._secret, safe='')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")

    def __repr__(self) -> str:
        return "ClientSecretBasic(secret=<hidden>)"


class PrivateKeyJwt(ClientAuth):
    """An asymmetric confidential client: a signed JWT assertion (RS384 or ES384) per token request."""

    method = "private_key_jwt"

    def __init__(self, key: RSAKey | ECKey, *, kid: str, alg: str) -> None:
        if alg not in ASSERTION_ALGORITHMS:
            raise ConfigurationError(f"the client assertion algorithm must be RS384 or ES384, not {alg!r}")
        if alg == "RS384" and not isinstance(key, RSAKey):
            raise ConfigurationError("RS384 needs an RSA private key")
        if alg == "ES384" and not (isinstance(key, ECKey) and key.curve_name == "P-384"):
            raise ConfigurationError("ES384 needs an EC private key on curve P-384")
        if not key.is_private:
            raise ConfigurationError("the SMART signing key is a public key; a private key is required")
        if isinstance(key, RSAKey) and key.raw_value.key_size < 2048:
            raise ConfigurationError("the RSA signing key must have at least 2048 bits")
        self._key = key
        self.kid = kid
        self.alg = alg

    def assertion(self, *, client_id: str, token_url: str, now: float) -> str:
        """The ``client_assertion`` JWT: iss = sub = client_id, aud = token URL, exp ≤ 5 min, unique jti."""
        issued = int(now)
        claims = {
            "iss": client_id,
            "sub": client_id,
            "aud": token_url,
            "iat": issued,
            "exp": issued + MAX_ASSERTION_LIFETIME,
            "jti": str(uuid.uuid4()),
        }
        header = {"alg": self.alg, "kid": self.kid, "typ": "JWT"}
        return jwt.encode(header, claims, self._key, algorithms=[self.alg])

    def apply(
        self, data: dict[str, str], headers: dict[str, str], *, client_id: str, token_url: str, now: float
    ) -> None:
        data["client_assertion_type"] = JWT_BEARER
        data["client_assertion"] = self.assertion(client_id=client_id, token_url=token_url, now=now)

    def public_jwk(self) -> dict[str, Any]:
        """The public half as a JWK (for the app's JWKS endpoint)."""
        jwk = dict(self._key.as_dict(private=False))
        jwk.update({"kid": self.kid, "alg": self.alg, "use": "sig", "key_ops": ["verify"]})
        return jwk

    def __repr__(self) -> str:
        return f"PrivateKeyJwt(kid={self.kid!r}, alg={self.alg!r})"


def load_signing_key(
    data: str | bytes | Mapping[str, Any], *, kid: str | None = None, alg: str | None = None
) -> PrivateKeyJwt:
    """A :class:`PrivateKeyJwt` from a PEM private key, a JWK (JSON text or dict) or a JWKS with one key.

    ``alg`` defaults from the key: RSA → RS384, EC P-384 → ES384. ``kid`` defaults to the JWK's own
    ``kid`` or else the RFC 7638 thumbprint.
    """
    key: Any
    try:
        if isinstance(data, Mapping) or (isinstance(data, (str, bytes)) and data.lstrip()[:1] in ("{", b"{")):
            doc = json.loads(data) if isinstance(data, (str, bytes)) else dict(data)
            if "keys" in doc:
                keys = [k for k in doc["keys"] if isinstance(k, Mapping) and "d" in k]
                if len(keys) != 1:
                    raise ConfigurationError("the JWKS must hold exactly one private key")
                doc = dict(keys[0])
            key = JWKRegistry.import_key(doc)
            kid = kid or _text(doc.get("kid"))
        else:
            raw = data.encode() if isinstance(data, str) else data
            try:
                key = RSAKey.import_key(raw)
            except (JoseError, ValueError, TypeError):
                key = ECKey.import_key(raw)
    except ConfigurationError:
        raise
    except (JoseError, ValueError, TypeError, KeyError) as error:
        raise ConfigurationError(
            f"the SMART private key could not be read ({type(error).__name__})"
        ) from None
    if not isinstance(key, (RSAKey, ECKey)):
        raise ConfigurationError("the SMART private key must be an RSA or EC (P-384) key")
    if alg is None:
        alg = "RS384" if isinstance(key, RSAKey) else "ES384"
    return PrivateKeyJwt(key, kid=kid or key.thumbprint(), alg=alg)


# ----------------------------------------------------------------------------------------------
# registration and the pending authorization


@dataclass(frozen=True)
class ClientRegistration:
    """How this app is registered with the EHRs it launches from."""

    client_id: str
    redirect_uri: str
    #: client authentication methods in order of preference; the first the server supports is used.
    #: Empty means a public client.
    auth: tuple[ClientAuth, ...] = ()
    needs: tuple[ScopeNeed, ...] = DEFAULT_NEEDS
    #: identity and refresh scopes added to every request
    extra_scopes: tuple[str, ...] = ("openid", "fhirUser", "online_access")

    def __post_init__(self) -> None:
        if not self.client_id:
            raise ConfigurationError("the SMART client id is empty")
        if not self.redirect_uri:
            raise ConfigurationError("the SMART redirect URI is empty")

    def auth_for(self, method: str) -> ClientAuth:
        for auth in self.auth:
            if auth.method == method:
                return auth
        if method == "none" and not self.auth:
            return PublicClient()
        raise AuthError(f"client authentication method {method!r} is not configured")


@dataclass(frozen=True)
class PendingAuthorization:
    """Everything needed to finish one authorization; keep it server-side, keyed by ``state``."""

    state: str
    code_verifier: str
    nonce: str
    fhir_base: str
    redirect_uri: str
    scope: str
    created_at: float
    expires_at: float
    configuration: SmartConfiguration
    launch: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "code_verifier": self.code_verifier,
            "nonce": self.nonce,
            "fhir_base": self.fhir_base,
            "redirect_uri": self.redirect_uri,
            "scope": self.scope,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "configuration": self.configuration.to_dict(),
            "launch": self.launch,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PendingAuthorization:
        return cls(
            state=data["state"],
            code_verifier=data["code_verifier"],
            nonce=data["nonce"],
            fhir_base=data["fhir_base"],
            redirect_uri=data["redirect_uri"],
            scope=data["scope"],
            created_at=float(data["created_at"]),
            expires_at=float(data["expires_at"]),
            configuration=SmartConfiguration.from_dict(data["configuration"]),
            launch=data.get("launch"),
        )

    def __repr__(self) -> str:
        return f"PendingAuthorization(fhir_base={self.fhir_base!r}, ehr_launch={self.launch is not None})"


@dataclass(frozen=True)
class AuthorizationRequest:
    """Where to send the user: ``GET location``, or ``POST`` ``params`` to ``endpoint`` as a form."""

    endpoint: str
    params: dict[str, str]
    method: Literal["GET", "POST"]
    pending: PendingAuthorization

    @property
    def location(self) -> str:
        separator = "&" if urlsplit(self.endpoint).query else "?"
        return self.endpoint + separator + urlencode(self.params)

    def __repr__(self) -> str:
        return f"AuthorizationRequest(method={self.method!r}, endpoint={self.endpoint!r})"


class AuthorizationDenied(AuthError):
    """The authorization server sent the user back with an OAuth ``error`` (RFC 6749 §4.1.2.1)."""

    http_status = 403

    def __init__(self, error: str, description: str | None) -> None:
        text = f"the EHR's authorization server refused the request: {error}"
        if description:
            text += f" ({description})"
        super().__init__(text)
        self.error = error
        self.description = description


def callback_error(params: Mapping[str, str]) -> AuthorizationDenied | None:
    """The OAuth error in callback parameters, if any (values truncated, to be shown escaped)."""
    error = params.get("error")
    if not error:
        return None
    description = params.get("error_description") or None
    return AuthorizationDenied(error[:100], description[:500] if description else None)


# ----------------------------------------------------------------------------------------------
# the session (token state)


@dataclass
class SmartSession:
    """Tokens and launch context of one authorized launch. Implements the FHIR client auth interface.

    ``to_dict()`` contains the tokens: store it server-side only (the app's store encrypts it).
    """

    fhir_base: str
    token_endpoint: str
    client_id: str
    auth_method: str
    access_token: str | None
    expires_at: float | None
    scope: str
    refresh_token: str | None = None
    token_type: str = "Bearer"  # noqa: S105 - the token type name, not a secret
    patient: str | None = None
    encounter: str | None = None
    fhir_user: str | None = None
    id_token_subject: str | None = None
    need_patient_banner: bool = True
    smart_style_url: str | None = None
    intent: str | None = None
    tenant: str | None = None
    fhir_context: list[dict[str, Any]] = field(default_factory=list)
    issued_at: float = 0.0
    client: SmartClient | None = field(default=None, repr=False, compare=False)
    on_update: Callable[[SmartSession], None] | None = field(default=None, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    # -- scopes ---------------------------------------------------------------------------------
    @property
    def granted(self) -> GrantedScopes:
        return granted_scopes(self.scope)

    @property
    def can_write(self) -> bool:
        """Whether the app may record on the allergy list; false means the app is read-only."""
        return self.granted.can_write("AllergyIntolerance")

    @property
    def can_sign_orders(self) -> bool:
        """Whether every write of the $apply transaction (:data:`ORDER_WRITES`) was granted."""
        granted = self.granted
        return all(
            granted.allows(resource_type, letter)
            for resource_type, letters in ORDER_WRITES
            for letter in letters
        )

    @property
    def has_access_token(self) -> bool:
        return bool(self.access_token)

    @property
    def has_refresh_token(self) -> bool:
        return bool(self.refresh_token)

    def expires_within(self, seconds: float, now: float) -> bool:
        return self.expires_at is not None and self.expires_at - now <= seconds

    # -- the FHIR client auth interface -----------------------------------------------------------
    def headers(self) -> dict[str, str]:
        """``Authorization: Bearer …``, refreshing first when the token is about to expire."""
        client = self.client
        if (
            client is not None
            and self.has_refresh_token
            and self.expires_within(client.refresh_skew, client.now())
        ):
            self.refresh()
        if not self.access_token:
            raise AuthError("no access token for this launch; launch the app again from the EHR")
        return {"Authorization": f"Bearer {self.access_token}"}

    def refresh(self) -> bool:
        """Use the refresh token now; True when a new access token was obtained."""
        if self.client is None:
            return False
        return self.client.refresh(self)

    # -- serialization ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "fhir_base": self.fhir_base,
            "token_endpoint": self.token_endpoint,
            "client_id": self.client_id,
            "auth_method": self.auth_method,
            "access_token": self.access_token,
            "expires_at": self.expires_at,
            "scope": self.scope,
            "refresh_token": self.refresh_token,
            "token_type": self.token_type,
            "patient": self.patient,
            "encounter": self.encounter,
            "fhir_user": self.fhir_user,
            "id_token_subject": self.id_token_subject,
            "need_patient_banner": self.need_patient_banner,
            "smart_style_url": self.smart_style_url,
            "intent": self.intent,
            "tenant": self.tenant,
            "fhir_context": list(self.fhir_context),
            "issued_at": self.issued_at,
        }

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        client: SmartClient | None = None,
        on_update: Callable[[SmartSession], None] | None = None,
    ) -> SmartSession:
        return cls(
            fhir_base=data["fhir_base"],
            token_endpoint=data["token_endpoint"],
            client_id=data["client_id"],
            auth_method=data["auth_method"],
            access_token=data.get("access_token"),
            expires_at=data.get("expires_at"),
            scope=data.get("scope") or "",
            refresh_token=data.get("refresh_token"),
            token_type=data.get("token_type") or "Bearer",
            patient=data.get("patient"),
            encounter=data.get("encounter"),
            fhir_user=data.get("fhir_user"),
            id_token_subject=data.get("id_token_subject"),
            need_patient_banner=bool(data.get("need_patient_banner", True)),
            smart_style_url=data.get("smart_style_url"),
            intent=data.get("intent"),
            tenant=data.get("tenant"),
            fhir_context=list(data.get("fhir_context") or []),
            issued_at=float(data.get("issued_at") or 0.0),
            client=client,
            on_update=on_update,
        )

    def __repr__(self) -> str:
        return (
            f"SmartSession(fhir_base={self.fhir_base!r}, patient={self.patient!r}, scope={self.scope!r}, "
            f"access_token={'<present>' if self.access_token else None}, "
            f"refresh_token={'<present>' if self.refresh_token else None})"
        )


# ----------------------------------------------------------------------------------------------
# the client


class SmartClient:
    """Runs the SMART flow for one registered app against any number of EHR FHIR servers."""

    def __init__(
        self,
        registration: ClientRegistration,
        *,
        http: requests.Session | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        clock: Callable[[], float] = time.time,
        state_ttl: float = 600.0,
        refresh_skew: float = 60.0,
        post_threshold: int = 2000,
        discovery_ttl: float = 300.0,
        jwks_ttl: float = 3600.0,
        id_token_leeway: int = 60,
    ) -> None:
        self.registration = registration
        self.http = http if http is not None else new_session()
        self.timeout: Timeout = (min(5.0, timeout), timeout)
        self.retry = retry
        self._clock = clock
        self.state_ttl = state_ttl
        self.refresh_skew = refresh_skew
        self.post_threshold = post_threshold
        self.discovery_ttl = discovery_ttl
        self.jwks_ttl = jwks_ttl
        self.id_token_leeway = id_token_leeway
        self._discovery: dict[str, tuple[float, SmartConfiguration]] = {}
        self._jwks: dict[str, tuple[float, KeySet]] = {}

    def now(self) -> float:
        return self._clock()

    # -- HTTP (through the project's HTTP policy: timeouts, retries of GET only, no redirects) -------
    def _get_json(self, url: str, what: str) -> tuple[int, Any]:
        """GET a JSON document; 408/429/5xx after the policy's retries raise TemporaryServerError."""
        response = send(
            self.http,
            "GET",
            url,
            headers={"Accept": "application/json"},
            timeout=self.timeout,
            policy=self.retry,
        )
        if response.status_code in RETRY_STATUSES or response.status_code >= 500:
            raise TemporaryServerError(f"{what}: HTTP {response.status_code}", status=response.status_code)
        try:
            body = response.json()
        except ValueError:
            body = None
        return response.status_code, body

    def _post_token(
        self, data: dict[str, str], auth: ClientAuth, token_url: str, what: str
    ) -> dict[str, Any]:
        """POST to the token endpoint once (never retried: codes and rotated refresh tokens are single use)."""
        headers = {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"}
        auth.apply(data, headers, client_id=self.registration.client_id, token_url=token_url, now=self.now())
        try:
            response = send(
                self.http,
                "POST",
                token_url,
                headers=headers,
                data=urlencode(data).encode("ascii"),
                timeout=self.timeout,
                policy=NO_RETRY,
                idempotent=False,
            )
        except TemporaryServerError:
            raise AuthError(f"{what}: the token endpoint could not be reached or did not answer") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200 or not isinstance(body, dict):
            error = body.get("error") if isinstance(body, dict) else None
            described = body.get("error_description") if isinstance(body, dict) else None
            detail = f"{error}" if isinstance(error, str) else f"HTTP {response.status_code}"
            if isinstance(described, str) and described:
                detail += f": {described[:300]}"
            raise AuthError(f"{what} was refused by the EHR ({detail})")
        return body

    # -- discovery --------------------------------------------------------------------------------
    def discover(self, fhir_base: str) -> SmartConfiguration:
        """The server's SMART configuration (cached for ``discovery_ttl`` seconds)."""
        cached = self._discovery.get(fhir_base)
        if cached and self.now() - cached[0] < self.discovery_ttl:
            return cached[1]
        base = fhir_base.rstrip("/")
        config: SmartConfiguration | None = None
        status, body = self._get_json(f"{base}/.well-known/smart-configuration", "SMART discovery")
        if status == 200 and isinstance(body, dict):
            try:
                config = SmartConfiguration.from_well_known(fhir_base, body)
            except FhirServerError:
                config = None
        if config is None:
            log.info("no usable .well-known/smart-configuration (HTTP %s); trying /metadata", status)
            status, body = self._get_json(f"{base}/metadata", "SMART discovery (CapabilityStatement)")
            if status != 200 or not isinstance(body, dict):
                raise FhirServerError(
                    "the EHR publishes no SMART configuration (.well-known/smart-configuration or "
                    f"CapabilityStatement oauth-uris; HTTP {status})",
                    status=status,
                )
            config = SmartConfiguration.from_capability_statement(fhir_base, body)
        _require_secure(config.authorization_endpoint, "the authorization endpoint")
        _require_secure(config.token_endpoint, "the token endpoint")
        if config.code_challenge_methods_supported and "S256" not in config.code_challenge_methods_supported:
            raise AuthError("the EHR does not support PKCE with S256, which SMART requires")
        log.info(
            "SMART discovery via %s: v2 scopes %s, %d capabilities",
            config.source,
            "yes" if config.supports_v2_scopes else "no",
            len(config.capabilities),
        )
        self._discovery[fhir_base] = (self.now(), config)
        return config

    # -- authorize --------------------------------------------------------------------------------
    def scope_for(self, configuration: SmartConfiguration, *, ehr_launch: bool) -> str:
        context = ["launch"] if ehr_launch else ["launch/patient"]
        return render_scopes(
            context + list(self.registration.extra_scopes),
            self.registration.needs,
            v2=configuration.supports_v2_scopes,
        )

    def authorize(
        self,
        fhir_base: str,
        *,
        launch: str | None = None,
        configuration: SmartConfiguration | None = None,
    ) -> AuthorizationRequest:
        """Start an authorization: EHR launch when ``launch`` is given, standalone otherwise."""
        config = configuration or self.discover(fhir_base)
        verifier, challenge = make_pkce_pair()
        now = self.now()
        pending = PendingAuthorization(
            state=new_state(),
            code_verifier=verifier,
            nonce=secrets.token_urlsafe(32),
            fhir_base=fhir_base,
            redirect_uri=self.registration.redirect_uri,
            scope=self.scope_for(config, ehr_launch=launch is not None),
            created_at=now,
            expires_at=now + self.state_ttl,
            configuration=config,
            launch=launch,
        )
        params = {
            "response_type": "code",
            "client_id": self.registration.client_id,
            "redirect_uri": pending.redirect_uri,
            "scope": pending.scope,
            "state": pending.state,
            "aud": fhir_base,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "nonce": pending.nonce,
        }
        if launch is not None:
            params["launch"] = launch
        request = AuthorizationRequest(config.authorization_endpoint, params, "GET", pending)
        long_url = len(request.location) > self.post_threshold
        post_ok = "authorize-post" in config.capabilities or not config.capabilities
        if long_url and post_ok:
            request = replace(request, method="POST")
        log.info(
            "authorization request prepared (%s, %s launch)",
            request.method,
            "EHR" if launch else "standalone",
        )
        return request

    # -- callback and token exchange ----------------------------------------------------------------
    def check_state(self, pending: PendingAuthorization, state: str) -> None:
        """Constant-time ``state`` comparison and expiry check (single use is the store's job)."""
        if not hmac.compare_digest(pending.state.encode(), (state or "").encode()):
            raise AuthError("the sign-in response does not match this launch (state mismatch)")
        if self.now() > pending.expires_at:
            raise AuthError("the sign-in took too long and has expired; launch the app again")

    def choose_auth(self, configuration: SmartConfiguration) -> ClientAuth:
        methods = self.registration.auth
        if not methods:
            return PublicClient()
        supported = configuration.token_endpoint_auth_methods_supported
        if not supported:
            return methods[0]
        for auth in methods:
            if auth.method in supported:
                return auth
        raise AuthError(
            "the EHR supports none of this app's client authentication methods "
            f"({', '.join(a.method for a in methods)}; EHR offers {', '.join(supported)})"
        )

    def complete(self, pending: PendingAuthorization, *, code: str, state: str) -> SmartSession:
        """Finish the authorization: check state, exchange the code, validate the id_token."""
        self.check_state(pending, state)
        if not code:
            raise AuthError("the sign-in response has no authorization code")
        config = pending.configuration
        auth = self.choose_auth(config)
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": pending.redirect_uri,
            "code_verifier": pending.code_verifier,
        }
        body = self._post_token(data, auth, config.token_endpoint, "the token exchange")
        session = self._session_from_token_response(body, pending, auth)
        id_token = body.get("id_token")
        if isinstance(id_token, str) and id_token:
            claims = self.validate_id_token(id_token, configuration=config, nonce=pending.nonce)
            session.id_token_subject = _text(claims.get("sub"))
            fhir_user = _text(claims.get("fhirUser")) or _text(claims.get("profile"))
            if fhir_user:
                session.fhir_user = urljoin(pending.fhir_base.rstrip("/") + "/", fhir_user)
        log.info(
            "token exchange succeeded (access token: %s, refresh token: %s, id_token: %s, write access: %s)",
            "yes" if session.has_access_token else "no",
            "yes" if session.has_refresh_token else "no",
            "yes" if id_token else "no",
            "yes" if session.can_write else "no",
        )
        return session

    def _session_from_token_response(
        self, body: Mapping[str, Any], pending: PendingAuthorization, auth: ClientAuth
    ) -> SmartSession:
        access_token = _text(body.get("access_token"))
        if not access_token:
            raise AuthError("the EHR's token response has no access token")
        token_type = _text(body.get("token_type")) or ""
        if token_type.lower() != "bearer":
            raise AuthError(f"the EHR issued a {token_type or 'typeless'} token; SMART requires Bearer")
        now = self.now()
        expires_in = body.get("expires_in")
        # RFC 6749 §5.1: scope is OPTIONAL when identical to the request; SMART says always send it.
        scope = _text(body.get("scope")) or pending.scope
        banner = body.get("need_patient_banner")
        return SmartSession(
            fhir_base=pending.fhir_base,
            token_endpoint=pending.configuration.token_endpoint,
            client_id=self.registration.client_id,
            auth_method=auth.method,
            access_token=access_token,
            expires_at=now + float(expires_in) if isinstance(expires_in, (int, float)) else None,
            scope=scope,
            refresh_token=_text(body.get("refresh_token")),
            token_type="Bearer",  # noqa: S106 - the token type name, not a secret
            patient=_text(body.get("patient")),
            encounter=_text(body.get("encounter")),
            need_patient_banner=banner if isinstance(banner, bool) else True,
            smart_style_url=_text(body.get("smart_style_url")),
            intent=_text(body.get("intent")),
            tenant=_text(body.get("tenant")),
            fhir_context=[c for c in body.get("fhirContext") or [] if isinstance(c, dict)],
            issued_at=now,
            client=self,
        )

    # -- refresh ------------------------------------------------------------------------------------
    def refresh(self, session: SmartSession) -> bool:
        """Exchange the refresh token; True on success. Keeps the old refresh token if none is returned."""
        if not session.refresh_token:
            log.info("refresh not possible: no refresh token")
            return False
        with session._lock:
            auth = self.registration.auth_for(session.auth_method)
            data = {"grant_type": "refresh_token", "refresh_token": session.refresh_token}
            try:
                body = self._post_token(data, auth, session.token_endpoint, "the token refresh")
            except AuthError as error:
                log.warning("token refresh failed: %s", error)
                return False
            access_token = _text(body.get("access_token"))
            if not access_token:
                log.warning("token refresh answered without an access token")
                return False
            now = self.now()
            session.access_token = access_token
            expires_in = body.get("expires_in")
            session.expires_at = now + float(expires_in) if isinstance(expires_in, (int, float)) else None
            session.refresh_token = _text(body.get("refresh_token")) or session.refresh_token
            session.scope = _text(body.get("scope")) or session.scope
            session.issued_at = now
            log.info(
                "token refreshed (new refresh token: %s, write access: %s)",
                "yes" if body.get("refresh_token") else "no, kept the previous one",
                "yes" if session.can_write else "no",
            )
        if session.on_update is not None:
            session.on_update(session)
        return True

    # -- identity ----------------------------------------------------------------------------------
    def _key_set(self, jwks_uri: str, *, force: bool = False) -> KeySet:
        cached = self._jwks.get(jwks_uri)
        if cached and not force and self.now() - cached[0] < self.jwks_ttl:
            return cached[1]
        _require_secure(jwks_uri, "the EHR's jwks_uri")
        status, body = self._get_json(jwks_uri, "fetching the EHR's signing keys")
        if status != 200 or not isinstance(body, dict) or not isinstance(body.get("keys"), list):
            raise AuthError(f"the EHR's jwks_uri did not return a JWK set (HTTP {status})")
        usable = [
            k
            for k in body["keys"]
            if isinstance(k, dict) and k.get("kty") in ("RSA", "EC", "OKP") and k.get("use") in (None, "sig")
        ]
        try:
            keys = KeySet.import_key_set({"keys": usable})
        except (JoseError, ValueError, TypeError) as error:
            raise AuthError(f"the EHR's signing keys could not be read ({type(error).__name__})") from None
        self._jwks[jwks_uri] = (self.now(), keys)
        return keys

    def _oidc_metadata(self, configuration: SmartConfiguration) -> tuple[str | None, str | None]:
        """(issuer, jwks_uri), from the SMART configuration or else OpenID discovery at the FHIR base."""
        if configuration.issuer and configuration.jwks_uri:
            return configuration.issuer, configuration.jwks_uri
        base = configuration.fhir_base.rstrip("/")
        status, body = self._get_json(f"{base}/.well-known/openid-configuration", "OpenID discovery")
        if status == 200 and isinstance(body, dict):
            return (
                configuration.issuer or _text(body.get("issuer")),
                configuration.jwks_uri or _text(body.get("jwks_uri")),
            )
        return configuration.issuer, configuration.jwks_uri

    def validate_id_token(
        self, id_token: str, *, configuration: SmartConfiguration, nonce: str
    ) -> dict[str, Any]:
        """Verify the id_token's signature (jwks_uri), iss, aud, exp, iat and nonce; return its claims."""
        issuer, jwks_uri = self._oidc_metadata(configuration)
        if not issuer or not jwks_uri:
            raise AuthError("the EHR sent an id_token but publishes no issuer/jwks_uri to verify it")
        token = self._decode_signed(id_token, jwks_uri)
        claims = dict(token.claims)
        registry = jwt.JWTClaimsRegistry(
            now=lambda: int(self.now()),
            leeway=self.id_token_leeway,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": self.registration.client_id},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        try:
            registry.validate(claims)
        except JoseError as error:
            raise AuthError(
                f"the EHR's id_token is not valid ({error.error}: {error.description or ''})"
            ) from None
        audience = claims.get("aud")
        if (
            isinstance(audience, list)
            and len(audience) > 1
            and claims.get("azp") != self.registration.client_id
        ):
            raise AuthError("the EHR's id_token has several audiences and no matching azp")
        return claims

    def _decode_signed(self, value: str, jwks_uri: str) -> jwt.Token:
        for force in (False, True):  # retry once with fresh keys: the EHR may have rotated them
            keys = self._key_set(jwks_uri, force=force)
            try:
                return jwt.decode(value, keys, algorithms=list(ID_TOKEN_ALGORITHMS))
            except JoseError as error:
                if force:
                    raise AuthError(
                        f"the EHR's id_token signature could not be verified ({error.error})"
                    ) from None
            except (ValueError, TypeError):
                raise AuthError("the EHR's id_token is malformed") from None
        raise AuthError("the EHR's id_token signature could not be verified")  # pragma: no cover
