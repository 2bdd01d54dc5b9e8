"""The app's registration and one authorization in flight: the authorization request (GET URL or POST
form), the pending state kept server-side until the callback takes it back once, and the callback's
error answer. Part of :mod:`fhir_desens.client.smart`, which re-exports every public name."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

from fhir_desens.client.scopes import ScopeNeed
from fhir_desens.client.smart_auth import ClientAuth, PublicClient
from fhir_desens.client.smart_config import SmartConfiguration
from fhir_desens.client.smart_session import DEFAULT_NEEDS
from fhir_desens.errors import AuthError, ConfigurationError

log = logging.getLogger(__name__)

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
        # the EHR's own explanation when it gives one (its code is shown apart), else its code
        said = (description or error).rstrip(". ")
        super().__init__(f"The EHR's authorization server refused the sign-in: {said}.")
        self.error = error
        self.description = description


def callback_error(params: Mapping[str, str]) -> AuthorizationDenied | None:
    """The OAuth error in callback parameters, if any (values truncated, to be shown escaped)."""
    error = params.get("error")
    if not error:
        return None
    description = params.get("error_description") or None
    return AuthorizationDenied(error[:100], description[:500] if description else None)
