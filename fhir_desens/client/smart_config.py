"""SMART discovery: the server's SMART configuration (``.well-known/smart-configuration``, else the
CapabilityStatement's ``oauth-uris``) and the small primitives of the flow (PKCE S256, ``state``, the
https-or-loopback rule). Part of :mod:`fhir_desens.client.smart`, which re-exports every public name."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from fhir_desens.errors import AuthError, FhirServerError

log = logging.getLogger(__name__)

OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
SMART_CAPABILITIES_EXT = "http://fhir-registry.smarthealthit.org/StructureDefinition/capabilities"

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
