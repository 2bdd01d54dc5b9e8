"""Registered SMART clients of the sandbox authorization server.

A client is registered from Python (:meth:`ClientRegistry.register`) or from a JSON file
(:func:`load_clients`)::

    {"clients": [{
        "client_id": "fhir-desens",
        "type": "asymmetric",                      # public | symmetric | asymmetric
        "redirect_uris": ["http://127.0.0.1:5000/callback"],
        "launch_url": "http://127.0.0.1:5000/launch",
        "jwks_url": "http://127.0.0.1:5000/.well-known/jwks.json",   # or "jwks": {...}; "secret" for symmetric
        "scope": "launch openid fhirUser online_access patient/*.cruds user/*.rs",   # the most it may get
        "granted_scope": "patient/*.rs"            # optional: grant exactly these resource scopes
    }]}

Secrets and keys never appear in ``repr`` or logs.
"""

from __future__ import annotations

import hmac
import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from fhir_desens.errors import ConfigurationError, InputError
from fhir_desens.sandbox import scopes

ClientType = Literal["public", "symmetric", "asymmetric"]
CLIENT_TYPES: tuple[ClientType, ...] = ("public", "symmetric", "asymmetric")

AUTH_METHODS: dict[ClientType, str] = {
    "public": "none",
    "symmetric": "client_secret_basic",
    "asymmetric": "private_key_jwt",
}

#: What a client may be granted unless it registers a narrower ceiling.
DEFAULT_SCOPE_CEILING = " ".join([*sorted(scopes.CONTEXT_SCOPES), "patient/*.cruds", "user/*.cruds"])


def _absolute_url(value: object, field_name: str) -> str:
    if not isinstance(value, str) or not value:
        raise InputError(field_name, "must be a non-empty string")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(field_name, f"{value!r} is not an absolute http(s) URL")
    if parts.fragment:
        raise InputError(field_name, "must not contain a fragment")
    return value


@dataclass(frozen=True)
class SandboxClient:
    """One registered client; implements Authlib's ``ClientMixin`` protocol."""

    client_id: str
    client_type: ClientType
    redirect_uris: tuple[str, ...]
    launch_url: str | None = None
    name: str = ""
    scope: str = DEFAULT_SCOPE_CEILING
    granted_scope: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    jwks: Mapping[str, Any] | None = field(default=None, repr=False)
    jwks_url: str | None = None

    # -- Authlib ClientMixin ------------------------------------------------------------------------
    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        # SMART requires redirect_uri on every request: no default.
        return None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        if not scope:
            return None
        return scopes.grant(scope, self.scope, self.granted_scope)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        # exact string comparison (no prefix or pattern matching)
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        if self.client_type != "symmetric" or not self.client_secret:
            return False
        return hmac.compare_digest(self.client_secret.encode(), client_secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.token_endpoint_auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")

    # -- sandbox ------------------------------------------------------------------------------------
    @property
    def token_endpoint_auth_method(self) -> str:
        return AUTH_METHODS[self.client_type]

    @property
    def display_name(self) -> str:
        return self.name or self.client_id


def make_client(
    client_id: str,
    client_type: str,
    redirect_uris: Iterable[str],
    *,
    launch_url: str | None = None,
    name: str = "",
    scope: str | None = None,
    granted_scope: str | None = None,
    secret: str | None = None,
    jwks: Mapping[str, Any] | None = None,
    jwks_url: str | None = None,
) -> SandboxClient:
    """Validate registration metadata and build a :class:`SandboxClient` (raises ``InputError``)."""
    if not client_id or not isinstance(client_id, str) or any(c.isspace() for c in client_id):
        raise InputError("client_id", "must be a non-empty string without spaces")
    if client_type not in CLIENT_TYPES:
        raise InputError("type", f"unknown client type {client_type!r}", ", ".join(CLIENT_TYPES))
    uris = tuple(_absolute_url(u, "redirect_uris") for u in redirect_uris)
    if not uris:
        raise InputError("redirect_uris", "at least one redirect URI is required")
    if launch_url is not None:
        _absolute_url(launch_url, "launch_url")
    if client_type == "symmetric":
        if not secret:
            raise InputError("secret", "a symmetric client needs a client secret")
    elif secret:
        raise InputError("secret", f"a {client_type} client has no client secret")
    if client_type == "asymmetric":
        if (jwks is None) == (jwks_url is None):
            raise InputError("jwks", "an asymmetric client registers exactly one of jwks or jwks_url")
        if jwks is not None:
            validate_public_jwks(jwks)
        if jwks_url is not None:
            _absolute_url(jwks_url, "jwks_url")
    elif jwks is not None or jwks_url is not None:
        raise InputError("jwks", f"a {client_type} client has no key set")
    ceiling = DEFAULT_SCOPE_CEILING if scope is None else scope
    return SandboxClient(
        client_id=client_id,
        client_type=client_type,
        redirect_uris=uris,
        launch_url=launch_url,
        name=name,
        scope=" ".join(scopes.split_scope(ceiling)),
        granted_scope=granted_scope,
        client_secret=secret,
        jwks=dict(jwks) if jwks is not None else None,
        jwks_url=jwks_url,
    )


def validate_public_jwks(jwks: Mapping[str, Any]) -> None:
    """A registered JWK Set: asymmetric public keys with ``kty`` and ``kid`` (SMART asymmetric auth)."""
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(keys, list) or not keys:
        raise InputError("jwks", "must be a JWK Set with a non-empty 'keys' array")
    for key in keys:
        if not isinstance(key, Mapping) or key.get("kty") not in ("RSA", "EC") or not key.get("kid"):
            raise InputError("jwks", "every key needs kty RSA or EC and a kid")
        if "d" in key:
            raise InputError("jwks", "register public keys only (a key has a private 'd' member)")


class ClientRegistry:
    """Thread-safe in-memory client store."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[str, SandboxClient] = {}

    def add(self, client: SandboxClient) -> SandboxClient:
        """Register (or replace) a client."""
        with self._lock:
            self._clients[client.client_id] = client
        return client

    def get(self, client_id: str | None) -> SandboxClient | None:
        if not client_id:
            return None
        with self._lock:
            return self._clients.get(client_id)

    def all(self) -> list[SandboxClient]:
        with self._lock:
            return list(self._clients.values())

    def find_by_launch_url(self, launch_url: str) -> SandboxClient | None:
        with self._lock:
            for client in self._clients.values():
                if client.launch_url == launch_url:
                    return client
        return None


def client_from_mapping(data: Mapping[str, Any]) -> SandboxClient:
    """Build a client from one JSON registration object (keys as in the module docstring)."""
    known = {
        "client_id", "type", "redirect_uris", "launch_url", "name", "scope", "granted_scope",
        "secret", "jwks", "jwks_url",
    }  # fmt: skip
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError("client", f"unknown member(s) {', '.join(unknown)}", ", ".join(sorted(known)))
    redirect_uris = data.get("redirect_uris")
    if not isinstance(redirect_uris, list):
        raise InputError("redirect_uris", "must be an array of URLs")
    return make_client(
        str(data.get("client_id", "")),
        str(data.get("type", "")),
        redirect_uris,
        launch_url=data.get("launch_url"),
        name=str(data.get("name", "")),
        scope=data.get("scope"),
        granted_scope=data.get("granted_scope"),
        secret=data.get("secret"),
        jwks=data.get("jwks"),
        jwks_url=data.get("jwks_url"),
    )


def load_clients(path: Path) -> list[SandboxClient]:
    """Read client registrations from a JSON file (``{"clients": [...]}`` or a bare array)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigurationError(f"cannot read client registrations from {path}: {error}") from error
    items = data.get("clients") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise ConfigurationError(f"{path}: expected an object with a 'clients' array, or an array")
    return [client_from_mapping(item) for item in items]
