"""The FHIR server behind the sandbox gateway, as the gateway talks to it.

Requests go out with the one HTTP policy (:func:`fhir_desens.client.http.new_session`, one session per
thread); an unreachable server is a 502 :class:`~fhir_desens.sandbox.interactions.Denied`. Absolute URLs
are rewritten both ways: the backend base to the gateway's public base in what is relayed back (headers,
Bundle links, fullUrl, references), the public base to the backend base in request bodies.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Mapping
from typing import Any

import requests
from werkzeug.wrappers import Request, Response

from fhir_desens.client.http import new_session
from fhir_desens.sandbox.interactions import Denied

log = logging.getLogger(__name__)

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


def replace_prefix(node: Any, old: str, new: str) -> Any:
    """``node`` (JSON) with every string starting with ``old`` starting with ``new`` instead."""
    if isinstance(node, str):
        return new + node[len(old) :] if node.startswith(old) else node
    if isinstance(node, list):
        return [replace_prefix(item, old, new) for item in node]
    if isinstance(node, dict):
        return {key: replace_prefix(value, old, new) for key, value in node.items()}
    return node


class Backend:
    """The FHIR server at ``base_url``, seen from a gateway serving it at ``public_base_url``."""

    def __init__(self, base_url: str, public_base_url: str) -> None:
        self.base = base_url.rstrip("/")
        self.public = public_base_url.rstrip("/")
        self._local = threading.local()

    @property
    def session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = new_session((5.0, 60.0))
            self._local.session = session
        return session

    def send(
        self,
        method: str,
        path: str,
        *,
        params: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        url = f"{self.base}/{path.lstrip('/')}" if path else self.base
        try:
            return self.session.request(
                method, url, params=params, data=body, headers=dict(headers or {}), allow_redirects=False
            )
        except requests.RequestException as error:
            log.warning("FHIR backend unreachable: %s", type(error).__name__)
            raise Denied(502, "transient", "the sandbox FHIR server is unreachable") from error

    def get_for(
        self, request: Request, path: str, params: list[tuple[str, str]] | None = None
    ) -> requests.Response:
        """GET ``path`` on behalf of ``request``: its forwarded headers, its query unless ``params`` is given."""
        query = list(request.args.items(multi=True)) if params is None else params
        return self.send("GET", path, params=query, headers=self.request_headers(request))

    def relative(self, url: str) -> str:
        """``url`` relative to the FHIR base when it is absolute at the gateway's or the backend's base."""
        for base in (self.public, self.base):
            if url.startswith(base + "/"):
                url = url[len(base) + 1 :]
        return url

    def fetch(self, reference: str) -> dict[str, Any] | None:
        """GET a referenced resource from the backend (relative or gateway/backend-absolute reference)."""
        reference = self.relative(reference)
        parts = reference.split("/")
        versioned = len(parts) == 4 and parts[2] == "_history"  # a Provenance targets a version
        if (
            (len(parts) != 2 and not versioned)
            or not parts[0][:1].isupper()
            or reference.startswith(("http:", "https:"))
        ):
            return None
        response = self.send("GET", reference, headers={"Accept": "application/fhir+json"})
        if response.status_code != 200:
            return None
        try:
            data = response.json()
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def to_public(self, data: Any) -> Any:
        return replace_prefix(data, self.base, self.public)

    def to_backend(self, data: Any) -> Any:
        return replace_prefix(data, self.public, self.base)

    def relay(self, response: requests.Response, body: Any = None, *, replace_body: bool = False) -> Response:
        """The backend's ``response`` as the gateway's (``body`` instead of its own with ``replace_body``)."""
        headers: dict[str, str] = {}
        for name in FORWARDED_RESPONSE_HEADERS:
            value = response.headers.get(name)
            if value is not None:
                headers[name] = self.to_public(value)
        if replace_body:
            content: bytes = json.dumps(self.to_public(body)).encode("utf-8")
        else:
            content = response.content
            if content and "json" in headers.get("Content-Type", ""):
                with contextlib.suppress(ValueError):
                    content = json.dumps(self.to_public(json.loads(content))).encode("utf-8")
        return Response(content, status=response.status_code, headers=headers)

    @staticmethod
    def json_of(response: requests.Response) -> Any:
        """The JSON body of ``response``, or None when it has none."""
        if "json" not in response.headers.get("Content-Type", "") or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return None

    @classmethod
    def ok_json_object(cls, response: requests.Response) -> dict[str, Any] | None:
        """The JSON object of a 200 answer; None for any other answer (relay that one as it is)."""
        data = cls.json_of(response)
        return data if response.status_code == 200 and isinstance(data, dict) else None

    @staticmethod
    def request_headers(request: Request) -> dict[str, str]:
        """The headers of ``request`` that are passed on to the backend."""
        headers = {
            name: request.headers[name] for name in FORWARDED_REQUEST_HEADERS if name in request.headers
        }
        headers.setdefault("Accept", "application/fhir+json")
        return headers

    def read_body(self, request: Request) -> dict[str, Any]:
        """The JSON resource in ``request``'s body, with the backend's base (Denied 400 when not one)."""
        try:
            data = json.loads(request.get_data() or b"null")
        except ValueError as error:
            raise Denied(400, "structure", "the request body is not JSON") from error
        if not isinstance(data, dict):
            raise Denied(400, "structure", "the request body is not a FHIR resource")
        result: dict[str, Any] = self.to_backend(data)
        return result


__all__ = ["Backend", "replace_prefix"]
