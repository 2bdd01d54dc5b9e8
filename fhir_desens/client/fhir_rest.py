"""A small FHIR R4 REST client on top of the HTTP policy in :mod:`fhir_desens.client.http`.

Resources travel as plain ``dict`` parsed with :mod:`fhir_desens.io.json`, so decimals are
``Decimal`` both ways (``0.50`` stays ``0.50`` on our side; what the server keeps is its business).

Writes are safe to repeat:

* :meth:`FhirClient.create` takes ``if_none_exist`` (conditional create) and reports whether the
  resource was created (201) or an existing one matched (200);
* :meth:`FhirClient.update` requires an explicit ``if_match`` (the version you read): a stale
  version raises :class:`~fhir_desens.errors.ConflictError`, never a silent overwrite. Pass
  ``if_match=None`` only when overwriting blindly is really intended;
* :meth:`FhirClient.conditional_update` (``PUT Type?search``) is idempotent.

Authentication is pluggable: ``auth`` is any object with ``headers()`` and ``refresh()`` (the SMART
session is one). On a 401 the client calls ``refresh()`` once and retries the request once. Auth
headers are only ever sent to the origin of ``base_url``; a paging link to another origin is refused.

Search by reference with the ``Type/id`` form (:func:`reference`): it works on every server, while
bare ids do not (Medplum, some EHRs).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, Self
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

import requests

from fhir_desens.client.http import (
    DEFAULT_RETRY,
    DEFAULT_TIMEOUT,
    FHIR_JSON,
    RetryPolicy,
    Timeout,
    new_session,
    raise_for_status,
    send,
    url_path,
)
from fhir_desens.errors import (
    AuthError,
    ConfigurationError,
    ConflictError,
    FhirFormatError,
    FhirServerError,
    InputError,
    NotFoundError,
)
from fhir_desens.io.json import dumps_bytes, loads

__all__ = [
    "FhirAuth",
    "FhirClient",
    "SearchParams",
    "Versioned",
    "etag_version",
    "reference",
]

logger = logging.getLogger(__name__)

_TYPE_RE: Final = re.compile(r"[A-Z][A-Za-z]{1,63}")
_ID_RE: Final = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_ETAG_RE: Final = re.compile(r'^\s*(?:W/)?"([^"]*)"\s*$')

#: Search parameters: a mapping (a list value repeats the parameter) or (name, value) pairs.
SearchParams = Mapping[str, str | int | Sequence[str]] | Sequence[tuple[str, str]]


class FhirAuth(Protocol):
    """What the client needs from an authorization provider (e.g. a SMART session)."""

    def headers(self) -> Mapping[str, str]:
        """Headers to add to every request to the FHIR server (usually ``Authorization``)."""
        ...

    def refresh(self) -> bool:
        """Obtain a new access token now; True when the next ``headers()`` carries a new one."""
        ...


@dataclass(frozen=True)
class Versioned:
    """A resource as the server returned it, with its version.

    ``status`` is the HTTP status: for :meth:`FhirClient.create` 201 means created and 200 means a
    conditional create matched an existing resource (:attr:`created`).
    """

    resource: dict[str, Any]
    version_id: str | None
    etag: str | None = None
    last_modified: str | None = None
    location: str | None = None
    status: int = 200

    @property
    def resource_type(self) -> str:
        return str(self.resource.get("resourceType", ""))

    @property
    def id(self) -> str:
        return str(self.resource.get("id", ""))

    @property
    def reference(self) -> str:
        """``Type/id``, for references and reference searches."""
        return reference(self.resource_type, self.id)

    @property
    def created(self) -> bool:
        return self.status == 201


def _check_type(resource_type: str) -> str:
    if not isinstance(resource_type, str) or not _TYPE_RE.fullmatch(resource_type):
        raise InputError("resourceType", f"{resource_type!r} is not a FHIR resource type name")
    return resource_type


def _check_id(resource_id: str, what: str = "id") -> str:
    if not isinstance(resource_id, str) or not _ID_RE.fullmatch(resource_id):
        raise InputError(what, f"{resource_id!r} is not a FHIR id", "1-64 of A-Z a-z 0-9 - .")
    return resource_id


def reference(resource_type: str, resource_id: str) -> str:
    """``Patient/123``: the reference form to store and to search with (``patient=Patient/123``)."""
    return f"{_check_type(resource_type)}/{_check_id(resource_id)}"


def etag_version(etag: str | None) -> str | None:
    """The version in an ETag: ``W/"3"`` → ``3``; None when absent or not an entity tag."""
    if not etag:
        return None
    match = _ETAG_RE.match(etag)
    return match.group(1) if match else None


def _if_match(version: str) -> str:
    inner = etag_version(version)
    value = inner if inner is not None else version
    if not value or '"' in value or any(ch.isspace() for ch in value):
        raise InputError("if_match", f"{version!r} is not a version id")
    return f'W/"{value}"'


def _query(params: SearchParams | str | None) -> list[tuple[str, str]]:
    if params is None:
        return []
    if isinstance(params, str):
        return parse_qsl(params.lstrip("?"), keep_blank_values=True)
    pairs: list[tuple[str, str]] = []
    if isinstance(params, Mapping):
        for name, value in params.items():
            if isinstance(value, str | int):
                pairs.append((name, str(value)))
            else:
                pairs.extend((name, str(item)) for item in value)
    else:
        pairs.extend((str(name), str(value)) for name, value in params)
    return pairs


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port


class FhirClient:
    """FHIR R4 REST over one base URL; see the module documentation for the write-safety rules."""

    def __init__(
        self,
        base_url: str,
        *,
        session: requests.Session | None = None,
        auth: FhirAuth | None = None,
        timeout: Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy = DEFAULT_RETRY,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ConfigurationError(f"FHIR base URL must be an http(s) URL without query, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._origin = _origin(self.base_url)
        self._own_session = session is None
        self._session = session if session is not None else new_session(timeout)
        self._auth = auth
        self._timeout = timeout
        self._retry = retry
        self._sleep = sleep

    # -- lifecycle --------------------------------------------------------------------------------
    def close(self) -> None:
        if self._own_session:
            self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FhirClient({self.base_url!r}, auth={'yes' if self._auth else 'no'})"

    # -- plumbing ---------------------------------------------------------------------------------
    def url(self, *segments: str) -> str:
        """``base/segment/segment``."""
        return "/".join([self.base_url, *segments])

    def _request(
        self,
        method: str,
        url: str,
        context: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Sequence[tuple[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        if _origin(url) != self._origin:
            raise FhirServerError(
                f"{context}: refusing to send a request to {urlsplit(url).scheme}://{urlsplit(url).netloc}, "
                f"which is not the FHIR server's origin (credentials are only sent to {self.base_url})"
            )
        all_headers = {"Accept": FHIR_JSON, **(headers or {})}
        data = None
        if body is not None:
            all_headers["Content-Type"] = f"{FHIR_JSON}; charset=utf-8"
            data = dumps_bytes(body)
        auth_headers = self._auth.headers if self._auth is not None else None

        def attempt() -> requests.Response:
            return send(
                self._session,
                method,
                url,
                headers=all_headers,
                auth_headers=auth_headers,
                params=params,
                data=data,
                timeout=self._timeout,
                policy=self._retry,
                sleep=self._sleep,
            )

        response = attempt()
        if response.status_code == 401 and self._auth is not None:
            response.close()
            logger.info("%s %s -> 401; refreshing the access token once", method, url_path(url))
            if not self._auth.refresh():
                raise AuthError(
                    f"{context}: the FHIR server refused the access token (HTTP 401) and it could not be "
                    "refreshed; launch the app again"
                )
            response = attempt()
        raise_for_status(response, context)
        return response

    def _json(self, response: requests.Response, context: str) -> Any:
        if not response.content:
            return None
        try:
            return loads(response.content, lone_surrogates="replace")  # chart text must stay showable
        except FhirFormatError as exc:
            raise FhirServerError(
                f"{context}: the server sent invalid JSON: {exc}", response.status_code
            ) from None

    def _resource(
        self, response: requests.Response, context: str, expected_type: str | None
    ) -> dict[str, Any]:
        body = self._json(response, context)
        if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
            raise FhirServerError(
                f"{context}: the server did not return a FHIR resource", response.status_code
            )
        if expected_type is not None and body["resourceType"] != expected_type:
            raise FhirServerError(
                f"{context}: expected a {expected_type}, the server returned a {body['resourceType']}",
                response.status_code,
            )
        return body

    def _versioned(self, response: requests.Response, context: str, expected_type: str) -> Versioned:
        etag = response.headers.get("ETag")
        location = response.headers.get("Location") or response.headers.get("Content-Location")
        if not response.content and location:
            # The server ignored "Prefer: return=representation": read what it points at.
            target = urljoin(self.base_url + "/", location)
            path = url_path(target)[len(url_path(self.base_url)) :].strip("/").split("/")
            if len(path) >= 2:
                fetched = self.read(path[0], path[1])
                return Versioned(
                    fetched.resource,
                    fetched.version_id,
                    fetched.etag,
                    fetched.last_modified,
                    location,
                    response.status_code,
                )
        resource = self._resource(response, context, expected_type)
        meta = resource.get("meta")
        version = meta.get("versionId") if isinstance(meta, dict) else None
        if not isinstance(version, str):
            version = etag_version(etag)
        return Versioned(
            resource=resource,
            version_id=version,
            etag=etag,
            last_modified=response.headers.get("Last-Modified"),
            location=location,
            status=response.status_code,
        )

    @staticmethod
    def _type_of(resource: Mapping[str, Any]) -> str:
        if not isinstance(resource, Mapping):
            raise InputError("resource", "must be a FHIR resource (a JSON object)")
        return _check_type(resource.get("resourceType", ""))

    # -- capabilities -----------------------------------------------------------------------------
    def capabilities(self) -> dict[str, Any]:
        """``GET [base]/metadata``: the server's CapabilityStatement."""
        context = "read the CapabilityStatement"
        response = self._request("GET", self.url("metadata"), context)
        return self._resource(response, context, "CapabilityStatement")

    # -- read -------------------------------------------------------------------------------------
    def read(self, resource_type: str, resource_id: str) -> Versioned:
        """``GET [base]/Type/id``; NotFoundError for 404 and 410."""
        ref = reference(resource_type, resource_id)
        context = f"read {ref}"
        response = self._request("GET", self.url(resource_type, resource_id), context)
        return self._versioned(response, context, resource_type)

    def vread(self, resource_type: str, resource_id: str, version_id: str) -> Versioned:
        """``GET [base]/Type/id/_history/vid``."""
        ref = reference(resource_type, resource_id)
        _check_id(version_id, "version_id")
        context = f"read {ref} version {version_id}"
        response = self._request("GET", self.url(resource_type, resource_id, "_history", version_id), context)
        return self._versioned(response, context, resource_type)

    # -- search -----------------------------------------------------------------------------------
    def search(self, resource_type: str, params: SearchParams | None = None) -> dict[str, Any]:
        """``GET [base]/Type?params``: one page, as the searchset Bundle."""
        _check_type(resource_type)
        context = f"search {resource_type}"
        response = self._request("GET", self.url(resource_type), context, params=_query(params))
        return self._resource(response, context, "Bundle")

    def search_all(
        self, resource_type: str, params: SearchParams | None = None, *, max_pages: int = 100
    ) -> list[dict[str, Any]]:
        """Every matching resource, following ``link[rel=next]`` for at most ``max_pages`` pages.

        More pages than that raise :class:`FhirServerError` rather than returning a silently
        truncated list. Next links must stay on the server's origin (credentials are never sent
        elsewhere); relative next links are resolved against the base URL.
        """
        if max_pages < 1:
            raise InputError("max_pages", "must be at least 1")
        return self.rest_of_search(resource_type, self.search(resource_type, params), max_pages=max_pages)

    def rest_of_search(
        self, resource_type: str, bundle: Mapping[str, Any], *, max_pages: int = 100
    ) -> list[dict[str, Any]]:
        """Every resource of a searchset whose first page is ``bundle`` (e.g. a batch entry's), with the
        next pages read as :meth:`search_all` reads them."""
        context = f"search {resource_type}"
        resources: list[dict[str, Any]] = []
        seen: set[str] = set()
        pages = 1
        while True:
            for entry in bundle.get("entry") or []:
                if not isinstance(entry, dict):
                    continue
                search = entry.get("search")
                if isinstance(search, dict) and search.get("mode") == "outcome":
                    continue
                resource = entry.get("resource")
                if isinstance(resource, dict):
                    resources.append(resource)
            next_url = _next_link(bundle)
            if next_url is None:
                return resources
            next_url = urljoin(self.base_url + "/", next_url)
            if next_url in seen:
                raise FhirServerError(f"{context}: the server's next link repeats a page already read")
            seen.add(next_url)
            if pages >= max_pages:
                raise FhirServerError(
                    f"{context}: more than {max_pages} pages of results; narrow the search or raise max_pages"
                )
            if _origin(next_url) != self._origin:
                parts = urlsplit(next_url)
                raise FhirServerError(
                    f"{context}: the next-page link points to another origin ({parts.scheme}://{parts.netloc}); "
                    "refusing to follow it with the FHIR server's credentials"
                )
            response = self._request("GET", next_url, f"{context} (page {pages + 1})")
            bundle = self._resource(response, context, "Bundle")
            pages += 1

    # -- write ------------------------------------------------------------------------------------
    def create(
        self, resource: Mapping[str, Any], *, if_none_exist: SearchParams | str | None = None
    ) -> Versioned:
        """``POST [base]/Type``; with ``if_none_exist`` a conditional create (never retried).

        Returns the stored resource; ``.created`` is False when an existing resource matched.
        A search matching several resources raises :class:`ConflictError` (412).
        """
        resource_type = self._type_of(resource)
        headers = {"Prefer": "return=representation"}
        if if_none_exist is not None:
            condition = urlencode(_query(if_none_exist))
            if not condition:
                raise InputError("if_none_exist", "must not be empty")
            headers["If-None-Exist"] = condition
        context = f"create {resource_type}"
        response = self._request("POST", self.url(resource_type), context, body=resource, headers=headers)
        result = self._versioned(response, context, resource_type)
        logger.debug("%s -> %s %s", context, result.reference, "created" if result.created else "matched")
        return result

    def update(self, resource: Mapping[str, Any], *, if_match: str | None) -> Versioned:
        """``PUT [base]/Type/id`` guarded by ``If-Match: W/"<if_match>"``.

        ``if_match`` is the version id you read (``Versioned.version_id``; an ETag is accepted too).
        A stale version raises :class:`ConflictError` and changes nothing. ``if_match=None`` sends an
        unconditional update (last writer wins): say so explicitly.
        """
        resource_type = self._type_of(resource)
        resource_id = resource.get("id")
        if not isinstance(resource_id, str):
            raise InputError(f"{resource_type}.id", "an update needs the id of the resource to replace")
        ref = reference(resource_type, resource_id)
        headers = {"Prefer": "return=representation"}
        if if_match is not None:
            headers["If-Match"] = _if_match(if_match)
        context = f"update {ref}" + (f" at version {etag_version(headers['If-Match'])}" if if_match else "")
        try:
            response = self._request(
                "PUT", self.url(resource_type, resource_id), context, body=resource, headers=headers
            )
        except ConflictError as exc:
            # R4 says 412 Precondition Failed (Medplum); HAPI FHIR answers 409 Conflict: the same conflict.
            if if_match is None or exc.status not in (409, 412):
                raise
            raise ConflictError(
                f"{ref} has changed on the server since version {etag_version(headers['If-Match'])} "
                f"(HTTP {exc.status}); nothing was written: read it again and reapply the change",
                exc.status,
                exc.outcome,
            ) from None
        return self._versioned(response, context, resource_type)

    def conditional_update(
        self, resource_type: str, search: SearchParams | str, resource: Mapping[str, Any]
    ) -> Versioned:
        """``PUT [base]/Type?search``: update the one match, or create when nothing matches.

        ``.created`` tells which happened; several matches raise :class:`ConflictError` (412).
        """
        _check_type(resource_type)
        if self._type_of(resource) != resource_type:
            raise InputError(
                "resourceType", f"the resource is a {resource['resourceType']}, not a {resource_type}"
            )
        condition = _query(search)
        if not condition:
            raise InputError("search", "a conditional update needs search criteria")
        context = f"conditional update {resource_type}"
        response = self._request(
            "PUT",
            self.url(resource_type),
            context,
            body=resource,
            params=condition,
            headers={"Prefer": "return=representation"},
        )
        return self._versioned(response, context, resource_type)

    def delete(self, resource_type: str, resource_id: str, *, missing_ok: bool = False) -> None:
        """``DELETE [base]/Type/id``; with ``missing_ok`` an absent resource is not an error."""
        ref = reference(resource_type, resource_id)
        try:
            self._request("DELETE", self.url(resource_type, resource_id), f"delete {ref}").close()
        except NotFoundError:
            if not missing_ok:
                raise

    def transaction(self, bundle: Mapping[str, Any]) -> dict[str, Any]:
        """``POST [base]`` a ``transaction`` Bundle; returns the ``transaction-response`` Bundle."""
        return self._bundle(bundle, "transaction")

    def batch(self, bundle: Mapping[str, Any]) -> dict[str, Any]:
        """``POST [base]`` a ``batch`` Bundle; returns the ``batch-response`` (check each entry's status)."""
        return self._bundle(bundle, "batch")

    def _bundle(self, bundle: Mapping[str, Any], kind: str) -> dict[str, Any]:
        if self._type_of(bundle) != "Bundle" or bundle.get("type") != kind:
            raise InputError("Bundle.type", f"expected a Bundle of type {kind}")
        context = f"{kind} of {len(bundle.get('entry') or [])} entries"
        # Medplum returns each entry's resource anyway; HAPI FHIR only when asked to.
        headers = {"Prefer": "return=representation"}
        response = self._request("POST", self.base_url, context, body=bundle, headers=headers)
        result = self._resource(response, context, "Bundle")
        if result.get("type") != f"{kind}-response":
            raise FhirServerError(f"{context}: the server answered a {result.get('type')} Bundle")
        return result

    # -- operations -------------------------------------------------------------------------------
    def validate(
        self, resource: Mapping[str, Any], *, profile: str | Iterable[str] | None = None
    ) -> dict[str, Any]:
        """``POST [base]/Type/$validate[?profile=…]``: the server's OperationOutcome (200 even when invalid)."""
        resource_type = self._type_of(resource)
        profiles = [profile] if isinstance(profile, str) else list(profile or [])
        context = f"validate {resource_type}"
        response = self._request(
            "POST",
            self.url(resource_type, "$validate"),
            context,
            body=resource,
            params=[("profile", p) for p in profiles],
        )
        return self._resource(response, context, "OperationOutcome")


def _next_link(bundle: Mapping[str, Any]) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            url: str = link["url"]
            return url
    return None
