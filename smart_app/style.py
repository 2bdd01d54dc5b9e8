"""The EHR's ``smart_style_url``: fetched server-side, cached by URL, reduced to safe CSS values.

SMART App Launch (``scopes-and-launch-context.md``, "Styling") lets the EHR hand the app a JSON
style document. The URL is a version key, so it is cached by URL. Only the documented properties
are used, and only values that match strict patterns (colors, lengths, font family names) are kept;
they become CSS custom properties, so raw CSS from the EHR is never injected into a page.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import requests

from fhir_desens.client.http import NO_RETRY, send
from fhir_desens.errors import DesensError

log = logging.getLogger(__name__)

MAX_STYLE_BYTES = 64 * 1024

_COLOR = re.compile(
    r"^(#[0-9a-fA-F]{3,4}|#[0-9a-fA-F]{6}|#[0-9a-fA-F]{8}"
    r"|rgba?\(\s*\d{1,3}%?\s*,\s*\d{1,3}%?\s*,\s*\d{1,3}%?\s*(,\s*(0|1|0?\.\d+)\s*)?\)"
    r"|[a-zA-Z]{3,20})$"
)
_LENGTH = re.compile(r"^(0|\d{1,4}(\.\d{1,3})?(px|em|rem|%|pt))$")
_FONT = re.compile(r"^[A-Za-z0-9 ,\-]{1,200}$")

#: SMART style property -> (CSS custom property, validator)
PROPERTIES: dict[str, tuple[str, re.Pattern[str]]] = {
    "color_background": ("--ehr-color-background", _COLOR),
    "color_error": ("--ehr-color-error", _COLOR),
    "color_highlight": ("--ehr-color-highlight", _COLOR),
    "color_modal_backdrop": ("--ehr-color-modal-backdrop", _COLOR),
    "color_success": ("--ehr-color-success", _COLOR),
    "color_text": ("--ehr-color-text", _COLOR),
    "dim_border_radius": ("--ehr-border-radius", _LENGTH),
    "dim_font_size": ("--ehr-font-size", _LENGTH),
    "dim_spacing_size": ("--ehr-spacing", _LENGTH),
    "font_family_body": ("--ehr-font-body", _FONT),
    "font_family_heading": ("--ehr-font-heading", _FONT),
}


def sanitize_style(doc: object) -> tuple[tuple[str, str], ...]:
    """(custom property, value) pairs for the valid, known properties of a style document."""
    if not isinstance(doc, dict):
        return ()
    pairs: list[tuple[str, str]] = []
    for name, (css_name, pattern) in PROPERTIES.items():
        value = doc.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and name.startswith("dim_"):
            value = f"{value}px"
        if not isinstance(value, str):
            continue
        value = value.strip()
        if name.startswith("font_"):
            value = value.replace('"', "").replace("'", "")  # quotes are not needed and not allowed
        if pattern.match(value):
            pairs.append((css_name, value))
    return tuple(pairs)


class StyleCache:
    """Fetch-once-per-URL cache of sanitized style documents (failures cached briefly too)."""

    def __init__(
        self,
        http: requests.Session,
        *,
        timeout: float = 3.0,
        ttl: float = 3600.0,
        failure_ttl: float = 60.0,
        max_entries: int = 64,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._timeout = timeout
        self._ttl = ttl
        self._failure_ttl = failure_ttl
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, tuple[tuple[str, str], ...]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, url: str | None) -> tuple[tuple[str, str], ...]:
        if not url or not url.startswith(("https://", "http://")):
            return ()
        now = self._clock()
        with self._lock:
            entry = self._entries.get(url)
            if entry and entry[0] > now:
                self._entries.move_to_end(url)
                return entry[1]
        style, ok = self._fetch(url)
        with self._lock:
            self._entries[url] = (now + (self._ttl if ok else self._failure_ttl), style)
            self._entries.move_to_end(url)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return style

    def _fetch(self, url: str) -> tuple[tuple[tuple[str, str], ...], bool]:
        try:
            response = send(
                self._http,
                "GET",
                url,
                headers={"Accept": "application/json"},
                timeout=(min(self._timeout, 3.0), self._timeout),
                policy=NO_RETRY,
            )
        except (DesensError, requests.RequestException, ValueError) as error:  # styling is optional
            log.info("smart_style_url not fetched (%s)", type(error).__name__)
            return (), False
        if response.status_code != 200 or len(response.content) > MAX_STYLE_BYTES:
            log.info(
                "smart_style_url not used (HTTP %s, %d bytes)", response.status_code, len(response.content)
            )
            return (), False
        try:
            doc = response.json()
        except ValueError:
            log.info("smart_style_url is not JSON")
            return (), False
        return sanitize_style(doc), True
