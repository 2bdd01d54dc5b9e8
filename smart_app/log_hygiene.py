"""Every log line of the app process: no session id, token or patient identifier, no forged lines.

Installed once as the process's log-record factory, so it covers Flask's own ``Exception on
/s/<sid>/patient`` lines, werkzeug's access log and every library, not only our loggers. The
message is formatted, then session paths, token-like query values, bearer tokens and patient
references are replaced, and control characters are escaped (a value from a request cannot start
a new, forged line).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fhir_desens.boundary.text import log_value

_SESSION_PATH = re.compile(r"/s/[A-Za-z0-9_\-]{16,}")
_SECRET_PARAMETER = re.compile(
    r"\b(access_token|refresh_token|id_token|code|state|launch|session|sid|token|client_secret)=[^&\s\"']+",
    re.IGNORECASE,
)
_BEARER = re.compile(r"\bBearer\s+[A-Za-z0-9._~+/=\-]+", re.IGNORECASE)
_PATIENT = re.compile(r"\bPatient/[A-Za-z0-9\-.]{1,64}")
_MAX_LINE = 4000


def redact(message: str) -> str:
    """The message safe for a log line (see the module docstring)."""
    text = _SESSION_PATH.sub("/s/<session>", message)
    text = _SECRET_PARAMETER.sub(lambda m: f"{m.group(1)}=<redacted>", text)
    text = _BEARER.sub("Bearer <redacted>", text)
    text = _PATIENT.sub("Patient/<id>", text)
    return log_value(text, limit=_MAX_LINE)


def install() -> None:
    """Make every new log record's message redacted and escaped (idempotent)."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "redacting", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            record.msg, record.args = redact(record.getMessage()), None
        except Exception:  # a message that cannot be formatted is left to logging's own handling
            return record
        return record

    factory.redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
