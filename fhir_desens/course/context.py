"""What the course needs from its host (the Flask app, a script): one small value passed to every
lifecycle function, so the course never reaches for a web framework's globals."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import tzinfo
from decimal import Decimal
from zoneinfo import ZoneInfo

from fhir_desens.client.smart import SmartSession
from fhir_desens.client.store import SessionStore
from fhir_desens.protocol.model import Protocol

__all__ = ["CourseContext"]


@dataclass(frozen=True)
class CourseContext:
    """The SMART session (FHIR base, token, patient, user), where markers of attempted writes are
    kept (the store, under ``scope``, for ``ttl`` seconds), the protocol library, the clock and the
    site's time zone."""

    smart: SmartSession
    store: SessionStore
    protocols: Mapping[str, Protocol]
    scope: str  # the app session id: markers of one session are never seen by another
    ttl: float
    clock: Callable[[], float] = field(default=time.time)
    #: the site's time zone: clock times shown and written (FHIR_DESENS_TIME_ZONE)
    time_zone: tzinfo = field(default=ZoneInfo("UTC"))
    #: how far (percent) a target dose may differ from the therapeutic order without a reason
    dose_tolerance_percent: Decimal = Decimal(5)
    #: the signed-in user's name as read from the EHR (None: not readable); written beside their reference
    #: on what they sign, so that readers who cannot read that Practitioner still see a person
    user_name: str | None = None
