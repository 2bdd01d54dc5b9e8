"""Connecting to a partner's FHIR server: the URL policy and bearer-token authentication.

Server URLs must be https, except on the loopback interface (development servers). A bearer token is
read from an environment variable whose *name* is given on the command line, so the token never
appears in argv (visible to every user of the machine), in logs, in messages or in reprs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.client.smart import is_loopback
from fhir_desens.errors import InputError

__all__ = ["BearerToken", "check_server_url", "open_client", "token_from_environment"]

_TOKEN_OPTION: Final = "--bearer-token-env"  # noqa: S105 - an option name, not a secret


class BearerToken:
    """A fixed access token (:class:`~fhir_desens.client.fhir_rest.FhirAuth`); it cannot be refreshed."""

    def __init__(self, token: str) -> None:
        self._token = token

    def headers(self) -> Mapping[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def refresh(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "BearerToken(<hidden>)"


def check_server_url(url: str, field: str = "--server") -> str:
    """The FHIR base URL if it is https, or http to the loopback interface; InputError otherwise."""
    parts = urlsplit(url)
    accepted = "https://host/path, or http://127.0.0.1:PORT/path for a local server"
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise InputError(field, f"{url!r} is not a FHIR base URL", accepted)
    if parts.username or parts.password:
        raise InputError(field, "credentials do not belong in the URL", f"{_TOKEN_OPTION} VAR")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise InputError(field, f"plain http to {parts.hostname} would expose the traffic", accepted)
    return url


def token_from_environment(variable: str | None) -> BearerToken | None:
    """The token in environment variable ``variable`` (None when no variable is named)."""
    if variable is None:
        return None
    token = os.environ.get(variable, "").strip()
    if not token:
        raise InputError(_TOKEN_OPTION, f"the environment variable {variable} is not set or empty")
    if any(ch.isspace() or not ch.isprintable() for ch in token):
        raise InputError(_TOKEN_OPTION, f"the environment variable {variable} does not hold a single token")
    return BearerToken(token)


def open_client(server: str, *, timeout: float, token_variable: str | None = None) -> FhirClient:
    """A client for a checked server URL, with the token from the environment if one is named."""
    if not timeout > 0:
        raise InputError("--timeout", f"{timeout} seconds", "a number of seconds above 0")
    return FhirClient(
        check_server_url(server),
        auth=token_from_environment(token_variable),
        timeout=(min(timeout, 10.0), timeout),
    )
