"""The app's long-lived collaborators, built once per app from the validated settings."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import Flask, current_app, g, has_app_context

from fhir_desens.client.capabilities import CapabilityCache
from fhir_desens.client.http import new_session
from fhir_desens.client.smart import (
    ClientAuth,
    ClientRegistration,
    ClientSecretBasic,
    PrivateKeyJwt,
    SmartClient,
    SmartSession,
    load_signing_key,
)
from fhir_desens.client.store import SessionStore, open_store
from fhir_desens.course.bedside.store import RecordStore, open_record_store
from fhir_desens.course.outcome.dose_store import SqlDoseBook, open_dose_book
from fhir_desens.course.outcome.task_store import SqlTaskBook, open_task_book
from fhir_desens.errors import AuthError
from smart_app.config import Settings, normalize_base
from smart_app.style import StyleCache

EXTENSION = "fhir_desens"


class SessionEnded(AuthError):
    """The opaque session id names no live session (ended, expired, or never issued)."""

    def __init__(self) -> None:
        super().__init__("This app session has ended or expired. Open the app again from the EHR.")


@dataclass
class Services:
    settings: Settings
    store: SessionStore
    smart: SmartClient
    http: requests.Session
    styles: StyleCache
    signing_key: PrivateKeyJwt | None
    clock: Callable[[], float]
    #: the bedside record's database URL (sqlite:///... or postgresql://...), opened on first use
    record_url: str = ""
    #: the EHRs' CapabilityStatements (batch support, writes offered), read once an hour per FHIR base
    capabilities: CapabilityCache = field(default_factory=CapabilityCache, repr=False)
    _record_store: RecordStore | None = field(default=None, repr=False)
    _task_book: SqlTaskBook | None = field(default=None, repr=False)
    _dose_book: SqlDoseBook | None = field(default=None, repr=False)

    # -- the bedside record and the allergist's tasks ----------------------------------------------
    def record_store(self) -> RecordStore:
        if self._record_store is None:
            if self.record_url.startswith("sqlite:///"):  # the default lives in the instance folder
                Path(self.record_url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
            self._record_store = open_record_store(self.record_url)
        return self._record_store

    def task_book(self) -> SqlTaskBook:
        """Tasks for the allergist (the chart was not updated), in the bedside record's database."""
        if self._task_book is None:
            self._task_book = open_task_book(self.record_url)
        return self._task_book

    def dose_book(self) -> SqlDoseBook:
        """Doses given after a desensitization, recorded in the app (the bedside record's database)."""
        if self._dose_book is None:
            self.record_store()  # creates the default database's folder
            self._dose_book = open_dose_book(self.record_url)
        return self._dose_book

    def now(self) -> datetime:
        """The app clock as an aware UTC datetime."""
        return datetime.fromtimestamp(self.clock(), UTC)

    def site_now(self) -> datetime:
        """The current time in the site's zone (``FHIR_DESENS_TIME_ZONE``)."""
        return datetime.fromtimestamp(self.clock(), self.settings.zone)

    # -- issuers ----------------------------------------------------------------------------------
    def allowed_iss(self, iss: str) -> bool:
        """Exact match (after normalizing case, default port and trailing slash) against the allow-list."""
        try:
            parts = urlsplit(iss)
            if parts.scheme not in ("http", "https") or parts.username or parts.password:
                return False
            if parts.query or parts.fragment or "\\" in iss or any(ch.isspace() for ch in iss):
                return False
            return normalize_base(iss) in self.settings.allowed_iss
        except ValueError:
            return False

    # -- sessions ---------------------------------------------------------------------------------
    def new_session(self, smart: SmartSession, *, user: Mapping[str, Any] | None = None) -> str:
        """Store an authorized launch; ``user`` is what the app knows of the signed-in user (app_session)."""
        sid = secrets.token_urlsafe(32)
        now = self.clock()
        record: dict[str, Any] = {
            "smart": smart.to_dict(),
            "csrf": secrets.token_urlsafe(32),
            "created_at": now,
            "expires_at": now + self.settings.session_ttl,
        }
        if user is not None:
            record["user"] = dict(user)
        self.store.put("session", sid, record, ttl=self.settings.session_ttl)
        self.store.purge()  # drop expired launches and sessions (cheap: indexed by expiry)
        return sid

    def session_record(self, sid: str) -> dict[str, Any] | None:
        """The stored record of a live session, read from the store once per request."""
        memo = _request_memo("session_records")
        if memo is not None and sid in memo:
            record: dict[str, Any] | None = memo[sid]
            return record
        record = self.store.get("session", sid)
        if memo is not None:
            memo[sid] = record
        return record

    def load_session(self, sid: str) -> tuple[dict[str, Any], SmartSession]:
        """The record and the SMART session of ``sid`` (once per request: the CSRF check and the
        view share them, and a token refreshed during the request is the one every caller sees)."""
        memo = _request_memo("smart_sessions")
        if memo is not None and sid in memo:
            loaded: tuple[dict[str, Any], SmartSession] = memo[sid]
            return loaded
        record = self.session_record(sid)
        if record is None or not isinstance(record.get("smart"), dict):
            raise SessionEnded()

        def persist(updated: SmartSession) -> None:
            record["smart"] = updated.to_dict()
            self.save_session_record(sid, record)

        smart = SmartSession.from_dict(record["smart"], client=self.smart, on_update=persist)
        if memo is not None:
            memo[sid] = (record, smart)
        return record, smart

    def save_session_record(self, sid: str, record: dict[str, Any]) -> None:
        """Store a live session's changed record (a refreshed token, the signed-in user once read)
        for the rest of its lifetime."""
        remaining = float(record.get("expires_at", 0)) - self.clock()
        if remaining > 0:
            self.store.put("session", sid, record, ttl=remaining)

    def end_session(self, sid: str) -> None:
        self.store.delete("session", sid)
        for name in ("session_records", "smart_sessions"):
            memo = _request_memo(name)
            if memo is not None:
                memo.pop(sid, None)


def _request_memo(name: str) -> dict[str, Any] | None:
    """A per-request (per app context) dictionary; None outside one."""
    if not has_app_context():
        return None
    memos: dict[str, dict[str, Any]] = g.setdefault("_fhir_desens_memo", {})
    return memos.setdefault(name, {})


def services() -> Services:
    svc: Services = current_app.extensions[EXTENSION]
    return svc


def build_services(app: Flask, settings: Settings, extra: dict[str, Any]) -> Services:
    clock: Callable[[], float] = extra.get("CLOCK") or time.time
    http: requests.Session = extra.get("HTTP_SESSION") or new_session((5.0, settings.http_timeout))
    auth: list[ClientAuth] = []
    signing_key: PrivateKeyJwt | None = None
    if settings.private_key is not None:
        signing_key = load_signing_key(settings.private_key, kid=settings.key_id, alg=settings.signing_alg)
        auth.append(signing_key)
    if settings.client_secret:
        auth.append(ClientSecretBasic(settings.client_secret))
    registration = ClientRegistration(
        client_id=settings.client_id,
        redirect_uri=settings.redirect_uri,
        auth=tuple(auth),
    )
    smart = SmartClient(
        registration,
        http=http,
        timeout=settings.http_timeout,
        clock=clock,
        state_ttl=settings.state_ttl,
        **extra.get("SMART_CLIENT_OPTIONS", {}),
    )
    session_url = settings.session_url or "sqlite:///" + str(Path(app.instance_path) / "sessions.sqlite3")
    store = open_store(session_url, settings.secret_key, clock=clock)
    styles = StyleCache(http, timeout=settings.style_timeout)
    record_url = settings.record_url or "sqlite:///" + str(_beside(session_url, app, "record.sqlite3"))
    return Services(
        settings=settings,
        store=store,
        smart=smart,
        http=http,
        styles=styles,
        signing_key=signing_key,
        clock=clock,
        record_url=record_url,
    )


def _beside(session_url: str, app: Flask, name: str) -> Path:
    """A default file next to an SQLite session store (else in the instance folder)."""
    if session_url.startswith("sqlite:///"):
        return Path(session_url[len("sqlite:///") :]).with_name(Path(session_url).stem + "." + name)
    folder = Path(app.instance_path)
    folder.mkdir(parents=True, exist_ok=True)  # a clean checkout has no instance folder yet
    return folder / name
