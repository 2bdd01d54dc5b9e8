"""Werkzeug requests as Authlib sees them: the sandbox authorization server's request adapters.

The authorization endpoint reads the query (GET) or the form (POST); the token endpoint reads the form body
only, never the query string (:meth:`~fhir_desens.sandbox.oauth.SmartAuthorizationServer.token`).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from authlib.oauth2.rfc6749 import JsonPayload, JsonRequest, OAuth2Payload, OAuth2Request
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Request


class _Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, params: MultiDict[str, str]) -> None:
        self._params = params

    @property
    def data(self) -> MultiDict[str, str]:
        return self._params

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        values: defaultdict[str, list[str]] = defaultdict(list)
        for key in self._params:
            values[key].extend(self._params.getlist(key))
        return values


class SandboxOAuth2Request(OAuth2Request):  # type: ignore[misc]
    """An ``OAuth2Request`` over parameters taken from a Werkzeug request (or replayed from storage).

    The authorization endpoint reads the query (GET) or the form (POST); the token endpoint reads the form
    body only, never the query string.
    """

    def __init__(
        self,
        method: str,
        uri: str,
        headers: Any,
        params: MultiDict[str, str],
    ) -> None:
        super().__init__(method=method, uri=uri, headers=headers)
        self._params = params
        self.payload = _Payload(params)

    @property
    def args(self) -> MultiDict[str, str]:
        return self._params

    @property
    def form(self) -> MultiDict[str, str]:
        return self._params


class _JsonPayload(JsonPayload):  # type: ignore[misc]
    def __init__(self, request: Request) -> None:
        self._request = request

    @property
    def data(self) -> Any:
        return self._request.get_json(silent=True)


class SandboxJsonRequest(JsonRequest):  # type: ignore[misc]
    def __init__(self, request: Request) -> None:
        super().__init__(request.method, request.url, request.headers)
        self.payload = _JsonPayload(request)


__all__ = ["SandboxJsonRequest", "SandboxOAuth2Request"]
