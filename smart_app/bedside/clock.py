"""The bedside's clock: real time, or for end-to-end tests a clock the test moves.

``FHIR_DESENS_BEDSIDE_CLOCK_FILE=<path>`` makes the bedside read "now" from that file (an ISO 8601 time
with its offset, or epoch seconds; an empty file means real time), so a browser test runs a whole session at realistic 15-minute steps
without waiting: it writes the next time into the file and the app, in another process, takes every
entry's time, the countdown and the reminders from it. Only the bedside uses it: SMART tokens, sessions
and the outbox's retry back-off keep real time. A deployment must never set it: the app refuses it
unless its public URL is a loopback address, says so in the log at start-up, and the flowsheet shows
"Test clock" on every page.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from fhir_desens.client.smart import is_loopback
from fhir_desens.errors import ConfigurationError

log = logging.getLogger(__name__)
VARIABLE = "FHIR_DESENS_BEDSIDE_CLOCK_FILE"


class FileClock:
    """Epoch seconds read from a file at every call (the test changes it between requests)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self()  # unreadable or malformed: refuse to start rather than fail at the bedside

    def __call__(self) -> float:
        try:
            text = self.path.read_text("utf-8").strip()
        except OSError as error:
            raise ConfigurationError(f"{VARIABLE}: cannot read {self.path} ({error.strerror})") from None
        if not text:
            return time.time()
        try:
            return float(text)
        except ValueError:
            pass
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ConfigurationError(
                f"{VARIABLE}: {self.path} holds {text[:40]!r}, not epoch seconds or an ISO 8601 time"
            ) from None
        if moment.tzinfo is None:
            raise ConfigurationError(f"{VARIABLE}: the time in {self.path} has no offset")
        return moment.timestamp()


def bedside_clock(path: str | None, public_url: str, fallback: Callable[[], float]) -> Callable[[], float]:
    """The test clock when ``path`` is set (loopback deployments only), else ``fallback``."""
    if not path:
        return fallback
    if not is_loopback(urlsplit(public_url).hostname):
        raise ConfigurationError(
            f"{VARIABLE} is for tests only and needs a loopback FHIR_DESENS_PUBLIC_URL (this is {public_url})"
        )
    log.warning("bedside: the TEST CLOCK is on (%s): bedside times come from a file", VARIABLE)
    return FileClock(Path(path))
