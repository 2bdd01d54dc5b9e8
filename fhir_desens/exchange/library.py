"""Imported protocols for the app: read exchange files, validate them, return the protocols.

:func:`read_protocols` is what the SMART app uses to offer protocols received from other hospitals.
It runs validation layers 2 and 3 (our profiles, clinical consistency), which need no node, and
refuses the whole input when anything is invalid: a library is used whole or not at all.
"""

from __future__ import annotations

import os
from pathlib import Path

from fhir_desens.errors import ValidationFailed
from fhir_desens.exchange.load import load_path
from fhir_desens.exchange.validate import validate_loaded
from fhir_desens.protocol.model import Protocol

__all__ = ["read_protocols"]

_QUOTED_ERRORS = 3


def read_protocols(path: str | os.PathLike[str]) -> list[Protocol]:
    """The protocols (PlanDefinitions claiming our profile) in a file or a folder of bundles/packages.

    Raises :class:`ValidationFailed` (its ``issues`` are OperationOutcome issues) when any resource
    is invalid, and ``FhirFormatError``/``InputError`` when an input cannot be read.
    """
    source = Path(path)
    report = validate_loaded(load_path(source), structural=None, sources=[str(source)])
    if not report.valid:
        errors = report.errors()
        quoted = "; ".join(f"{issue.location}: {issue.message}" for issue in errors[:_QUOTED_ERRORS])
        more = f" (and {len(errors) - _QUOTED_ERRORS} more)" if len(errors) > _QUOTED_ERRORS else ""
        raise ValidationFailed(
            f"{source}: {len(errors)} validation error(s): {quoted}{more}",
            [issue.outcome_issue() for issue in report.issues],
        )
    return [protocol for _, protocol in report.protocols]
