"""Configuration: defaults, then ``FHIR_DESENS_*`` environment variables, then the test mapping.

Outside testing the app refuses to start (:class:`ConfigurationError`, naming the variable) without
a secret key, a SMART client id, the allowed EHR issuers and its public URL. Every variable is
documented in docs/configuration.md.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fhir_desens.client.smart import is_loopback
from fhir_desens.errors import ConfigurationError
from fhir_desens.protocol.model import MAX_OVERFILL_FRACTION
from fhir_desens.protocol.preparation import DEFAULT_MIN_DRAW_ML, DEFAULT_OVERFILL_ML

ENV_PREFIX = "FHIR_DESENS_"

#: name -> (default, kind). The environment variable is ENV_PREFIX + name.
VARIABLES: dict[str, tuple[Any, str]] = {
    "SECRET_KEY": (None, "str"),
    "SMART_CLIENT_ID": (None, "str"),
    "SMART_CLIENT_SECRET": (None, "str"),
    "SMART_PRIVATE_KEY": (None, "str"),
    "SMART_KEY_ID": (None, "str"),
    "SMART_SIGNING_ALG": (None, "str"),
    "ALLOWED_ISS": ((), "list"),
    "PUBLIC_URL": (None, "str"),
    "FRAME_ANCESTORS": (("'self'",), "list"),
    "SESSION_URL": (None, "str"),
    "SESSION_TTL": (8 * 3600, "int"),
    "STATE_TTL": (600, "int"),
    "HTTP_TIMEOUT": (10.0, "float"),
    "STYLE_TIMEOUT": (3.0, "float"),
    "LOG_LEVEL": ("INFO", "str"),
    "PROTOCOL_LIBRARY": (None, "str"),
    "RECORD_URL": (None, "str"),
    "ALLERGY_WRITE": (("auto",), "list"),
    "BEDSIDE_WRITE_TYPES": (
        None,
        "str",
    ),  # resource types the bedside may write to the EHR; empty: as offered
    "BEDSIDE_CLOCK_FILE": (None, "str"),  # tests only (smart_app/bedside/clock.py)
    # seconds between the background sender's rounds (smart_app/bedside/sender.py); 0: no background sending
    "BEDSIDE_SEND_INTERVAL": (5.0, "float"),
    # Practitioners who may override a contraindication as allergists (OVERRIDE-1), besides those whose
    # Practitioner qualification or PractitionerRole names allergy/immunology: "Practitioner/<id>" or ids.
    "ALLERGISTS": ((), "list"),
    "TIME_ZONE": (None, "str"),
    "DOSE_TOLERANCE_PERCENT": ("5", "str"),
    # The steps (mL/h) the site's infusion pumps are programmed in; plans run at rates the pump takes.
    "PUMP_RESOLUTION_ML_H": ("0.1", "str"),
    # What the site's bags really hold over their label, per bag size: "250=25, 100=10" (mL=mL).
    "BAG_OVERFILL_ML": (None, "list"),
    # The smallest volume the pharmacy sheet asks to be drawn into a syringe for a bag (mL); a smaller or
    # finer stock volume is drawn from an intermediate dilution (INV-26).
    "MIN_DRAW_ML": (None, "str"),
}

MIN_SECRET_LENGTH = 32
DEFAULT_PUMP_RESOLUTION = Decimal("0.1")
MAX_PUMP_RESOLUTION = Decimal(10)
_ORIGIN = re.compile(r"^(https?)://[A-Za-z0-9.\-]+(:\d{1,5})?$|^https?://\*\.[A-Za-z0-9.\-]+(:\d{1,5})?$")
_SOURCE_KEYWORDS = ("'self'", "'none'")


@dataclass(frozen=True)
class Settings:
    """Validated settings the app's services use."""

    testing: bool
    secret_key: str
    client_id: str
    client_secret: str | None
    private_key: str | dict[str, Any] | None
    key_id: str | None
    signing_alg: str | None
    allowed_iss: tuple[str, ...]
    public_url: str
    frame_ancestors: tuple[str, ...]
    session_url: str | None
    session_ttl: int
    state_ttl: int
    http_timeout: float
    style_timeout: float
    #: a file or directory of protocol libraries imported next to the built-ins (read at app start)
    protocol_library: str | None = None
    #: the bedside record's database (and the outcome tasks'): sqlite:///path or postgresql://...
    record_url: str | None = None
    #: per EHR, how the outcome may be written: (normalized iss or "*", auto|update|note|none, r4|millennium|None)
    allergy_write: tuple[tuple[str, str, str | None], ...] = (("*", "auto", None),)

    def allergy_write_for(self, iss: str) -> tuple[str, str | None]:
        """The allergy write setting and update flavor for this EHR (its own entry, else the default)."""
        base = normalize_base(iss)
        for server, setting, flavor in self.allergy_write:
            if server == base:
                return setting, flavor
        for server, setting, flavor in self.allergy_write:
            if server == "*":
                return setting, flavor
        return "auto", None

    allergists: tuple[str, ...] = ()  # "Practitioner/<id>" of configured allergists (OVERRIDE-1)
    #: the site's IANA time zone for clock times (None: the server's local zone)
    time_zone: str | None = None
    #: a target dose further than this from the therapeutic order needs an acknowledged reason
    dose_tolerance_percent: Decimal = Decimal(5)
    #: the site's pump resolution (mL/h) new plans are computed at; None: exact rates
    pump_resolution_ml_h: Decimal | None = DEFAULT_PUMP_RESOLUTION
    #: overfill per labelled bag size (mL -> mL) for the pharmacy sheet and labels: the defaults with the
    #: site's own values (``BAG_OVERFILL_ML``) over them
    bag_overfill_ml: Mapping[Decimal, Decimal] = field(default_factory=lambda: dict(DEFAULT_OVERFILL_ML))
    #: the smallest volume drawn into a syringe for a bag (``MIN_DRAW_ML``, INV-26)
    min_draw_ml: Decimal = DEFAULT_MIN_DRAW_ML

    @property
    def zone(self) -> tzinfo:
        if self.time_zone:
            return ZoneInfo(self.time_zone)
        local = datetime.now().astimezone().tzinfo
        return local if local is not None else ZoneInfo("UTC")

    @property
    def redirect_uri(self) -> str:
        return self.public_url + "/callback"

    @property
    def launch_url(self) -> str:
        return self.public_url + "/launch"

    @property
    def jwks_url(self) -> str:
        return self.public_url + "/.well-known/jwks.json"

    @property
    def public_origin(self) -> str:
        parts = urlsplit(self.public_url)
        return f"{parts.scheme}://{parts.netloc}"


def normalize_base(url: str) -> str:
    """A FHIR base for comparison: scheme and host lower-cased, default port and trailing '/' dropped."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port
    if (scheme, port) in (("https", 443), ("http", 80)):
        port = None
    netloc = host if port is None else f"{host}:{port}"
    if ":" in host and not host.startswith("["):
        netloc = f"[{host}]" if port is None else f"[{host}]:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


def _check_url(name: str, url: str) -> str:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigurationError(f"{ENV_PREFIX}{name}: {url!r} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"{ENV_PREFIX}{name}: {url!r} must be an absolute http(s) URL")
    if parts.scheme != "https" and not is_loopback(parts.hostname):
        raise ConfigurationError(f"{ENV_PREFIX}{name}: {url!r} must use https (http only on localhost)")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigurationError(
            f"{ENV_PREFIX}{name}: {url!r} must not carry a query, fragment or credentials"
        )
    return url


def _convert(name: str, raw: Any, kind: str) -> Any:
    if raw is None:
        return None
    try:
        if kind == "list":
            if isinstance(raw, str):
                return tuple(item.strip() for item in raw.split(",") if item.strip())
            return tuple(str(item).strip() for item in raw if str(item).strip())
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{ENV_PREFIX}{name}: {raw!r} is not a valid {kind}") from None
    if isinstance(raw, str):
        return raw.strip() or None
    return raw


def gather(test_config: Mapping[str, Any] | None, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Raw values: defaults, overridden by the environment, overridden by the test mapping."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {name: default for name, (default, _) in VARIABLES.items()}
    for name in VARIABLES:
        if ENV_PREFIX + name in env:
            values[name] = env[ENV_PREFIX + name]
    extra: dict[str, Any] = {}
    for key, value in (test_config or {}).items():
        if key in VARIABLES:
            values[key] = value
        else:
            extra[key] = value
    converted = {name: _convert(name, values[name], VARIABLES[name][1]) for name in VARIABLES}
    converted.update(extra)
    return converted


def _read_private_key(value: Any) -> str | dict[str, Any] | None:
    """The key material: inline PEM/JWK (test mapping) or the content of the named file."""
    if value is None or isinstance(value, dict):
        return value
    text = str(value)
    if text.lstrip().startswith(("-----BEGIN", "{")):
        return text
    path = Path(text)
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigurationError(
            f"{ENV_PREFIX}SMART_PRIVATE_KEY: cannot read the key file {text!r} ({error.strerror})"
        ) from None


def build_settings(values: Mapping[str, Any]) -> Settings:
    """Validate; outside testing, missing required values are refused with the variable's name."""
    testing = bool(values.get("TESTING", False))
    missing = [name for name in ("SECRET_KEY", "SMART_CLIENT_ID", "PUBLIC_URL") if not values.get(name)]
    if not values.get("ALLOWED_ISS"):
        missing.append("ALLOWED_ISS")
    if missing and not testing:
        names = ", ".join(ENV_PREFIX + name for name in missing)
        raise ConfigurationError(
            f"refusing to start: {names} {'is' if len(missing) == 1 else 'are'} not set "
            "(see docs/configuration.md)"
        )
    secret_key = values.get("SECRET_KEY") or (secrets.token_urlsafe(48) if testing else "")
    if len(secret_key) < MIN_SECRET_LENGTH and not testing:
        raise ConfigurationError(
            f"{ENV_PREFIX}SECRET_KEY is too short: use at least {MIN_SECRET_LENGTH} random characters "
            '(e.g. python -c "import secrets; print(secrets.token_urlsafe(48))")'
        )
    public_url = _check_url("PUBLIC_URL", values.get("PUBLIC_URL") or "http://localhost").rstrip("/")
    allowed = tuple(normalize_base(_check_url("ALLOWED_ISS", iss)) for iss in values.get("ALLOWED_ISS") or ())
    ancestors = tuple(values.get("FRAME_ANCESTORS") or ("'self'",))
    for source in ancestors:
        if source not in _SOURCE_KEYWORDS and not _ORIGIN.match(source):
            raise ConfigurationError(
                f"{ENV_PREFIX}FRAME_ANCESTORS: {source!r} is not an origin like https://ehr.example.org "
                "(or 'self' / 'none')"
            )
    if "'none'" in ancestors and len(ancestors) > 1:
        raise ConfigurationError(f"{ENV_PREFIX}FRAME_ANCESTORS: 'none' cannot be combined with other sources")
    alg = values.get("SMART_SIGNING_ALG")
    if alg not in (None, "RS384", "ES384"):
        raise ConfigurationError(f"{ENV_PREFIX}SMART_SIGNING_ALG: {alg!r} is not RS384 or ES384")
    if values.get("SMART_KEY_ID") and not values.get("SMART_PRIVATE_KEY"):
        raise ConfigurationError(
            f"{ENV_PREFIX}SMART_KEY_ID is set but {ENV_PREFIX}SMART_PRIVATE_KEY is not: set the key file too"
        )
    for name in ("SESSION_TTL", "STATE_TTL"):
        if int(values[name]) <= 0:
            raise ConfigurationError(f"{ENV_PREFIX}{name}: must be a positive number of seconds")
    for name in ("HTTP_TIMEOUT", "STYLE_TIMEOUT"):
        if float(values[name]) <= 0:
            raise ConfigurationError(f"{ENV_PREFIX}{name}: must be a positive number of seconds")
    return Settings(
        testing=testing,
        secret_key=secret_key,
        client_id=values.get("SMART_CLIENT_ID") or "fhir-desens-test",
        client_secret=values.get("SMART_CLIENT_SECRET"),
        private_key=_read_private_key(values.get("SMART_PRIVATE_KEY")),
        key_id=values.get("SMART_KEY_ID"),
        signing_alg=alg,
        allowed_iss=allowed,
        public_url=public_url,
        frame_ancestors=ancestors,
        session_url=values.get("SESSION_URL"),
        session_ttl=int(values["SESSION_TTL"]),
        state_ttl=int(values["STATE_TTL"]),
        http_timeout=float(values["HTTP_TIMEOUT"]),
        style_timeout=float(values["STYLE_TIMEOUT"]),
        protocol_library=values.get("PROTOCOL_LIBRARY"),
        record_url=values.get("RECORD_URL"),
        allergy_write=_allergy_write(values.get("ALLERGY_WRITE") or ("auto",)),
        allergists=tuple(
            a if "/" in a else f"Practitioner/{a}"
            for a in (str(v).strip() for v in values["ALLERGISTS"])
            if a
        ),
        time_zone=_time_zone(values.get("TIME_ZONE")),
        dose_tolerance_percent=_tolerance(values.get("DOSE_TOLERANCE_PERCENT")),
        pump_resolution_ml_h=_pump_resolution(values.get("PUMP_RESOLUTION_ML_H")),
        bag_overfill_ml=_bag_overfill(values.get("BAG_OVERFILL_ML") or ()),
        min_draw_ml=_min_draw(values.get("MIN_DRAW_ML")),
    )


_ALLERGY_WRITE_SETTINGS = ("auto", "update", "note", "none")
_ALLERGY_FLAVORS = ("r4", "millennium")


def _allergy_write(entries: Any) -> tuple[tuple[str, str, str | None], ...]:
    """``auto`` (every EHR) and/or ``https://ehr.example.org/fhir=update:millennium`` (one EHR)."""
    parsed: list[tuple[str, str, str | None]] = []
    accepted = "auto|update|note|none, optionally :r4 or :millennium, optionally preceded by <FHIR base>="
    for entry in entries:
        server, equals, rule = str(entry).strip().rpartition("=")
        setting, _, flavor = rule.strip().partition(":")
        if setting not in _ALLERGY_WRITE_SETTINGS or (flavor and flavor not in _ALLERGY_FLAVORS):
            raise ConfigurationError(f"{ENV_PREFIX}ALLERGY_WRITE: {entry!r} is not understood ({accepted})")
        base = normalize_base(_check_url("ALLERGY_WRITE", server.strip())) if equals else "*"
        parsed.append((base, setting, flavor or None))
    return tuple(parsed)


def _time_zone(name: Any) -> str | None:
    if not name:
        return None
    try:
        ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"{ENV_PREFIX}TIME_ZONE: {name!r} is not an IANA time zone (e.g. Europe/Paris, America/New_York)"
        ) from None
    return str(name)


def _tolerance(raw: Any) -> Decimal:
    try:
        value = Decimal(str(raw if raw is not None else "5").strip())
    except InvalidOperation:
        value = Decimal(-1)
    if not value.is_finite() or not Decimal(0) <= value <= Decimal(100):
        raise ConfigurationError(
            f"{ENV_PREFIX}DOSE_TOLERANCE_PERCENT: {raw!r} is not a percentage from 0 to 100"
        )
    return value


#: the largest minimum draw accepted: a 1 mL syringe's whole (a larger value is a typo)
MAX_MIN_DRAW_ML = Decimal(1)


def _min_draw(raw: Any) -> Decimal:
    """MIN_DRAW_ML: a volume in mL on a 1 mL syringe's 0.01 mL marks, from 0.01 to 1."""
    text = str(raw if raw is not None else DEFAULT_MIN_DRAW_ML).strip()
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal(-1)
    if not value.is_finite() or not Decimal("0.01") <= value <= MAX_MIN_DRAW_ML or value % Decimal("0.01"):
        raise ConfigurationError(
            f"{ENV_PREFIX}MIN_DRAW_ML: {raw!r} is not a volume in mL from 0.01 to {MAX_MIN_DRAW_ML} on 0.01 mL "
            "marks (e.g. 0.1, 0.2)"
        )
    return value


def _bag_overfill(entries: Any) -> dict[Decimal, Decimal]:
    """BAG_OVERFILL_ML: ``<bag mL>=<overfill mL>`` entries over the defaults (overfill at most 25% of the bag)."""
    overfill = dict(DEFAULT_OVERFILL_ML)
    for entry in entries:
        size_text, equals, extra_text = str(entry).partition("=")
        try:
            size, extra = Decimal(size_text.strip()), Decimal(extra_text.strip())
        except InvalidOperation:
            size = extra = Decimal(-1)
        if (
            not equals
            or not (size.is_finite() and extra.is_finite())
            or size <= 0
            or not Decimal(0) <= extra <= size * MAX_OVERFILL_FRACTION
        ):
            raise ConfigurationError(
                f"{ENV_PREFIX}BAG_OVERFILL_ML: {entry!r} is not '<bag size mL>=<overfill mL>' with the overfill "
                f"from 0 to {MAX_OVERFILL_FRACTION * 100:.0f}% of the bag (e.g. 250=25, 100=10)"
            )
        overfill[size] = extra
    return dict(sorted(overfill.items()))


def _pump_resolution(raw: Any) -> Decimal | None:
    """PUMP_RESOLUTION_ML_H: a step in mL/h above 0 and at most 10, or ``exact`` (rates not rounded)."""
    text = str(raw if raw is not None else DEFAULT_PUMP_RESOLUTION).strip()
    if text.lower() == "exact":
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal(-1)
    if not value.is_finite() or not Decimal(0) < value <= MAX_PUMP_RESOLUTION:
        raise ConfigurationError(
            f"{ENV_PREFIX}PUMP_RESOLUTION_ML_H: {raw!r} is not a pump step in mL/h above 0 and at most "
            f"{MAX_PUMP_RESOLUTION} (e.g. 0.1, 1), or 'exact'"
        )
    return value
