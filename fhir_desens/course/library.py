"""The protocol library a deployment plans from: the built-in protocols plus an imported library."""

from __future__ import annotations

from pathlib import Path

from fhir_desens.errors import (
    ConfigurationError,
    DesensError,
)
from fhir_desens.protocol.library import builtin_protocols
from fhir_desens.protocol.model import Protocol

LIBRARY_VARIABLE = "FHIR_DESENS_PROTOCOL_LIBRARY"


def load_library(path: str | None) -> dict[str, Protocol]:
    """The built-in protocols plus those of the imported library; refuses a bad library whole."""
    protocols = dict(builtin_protocols())
    if not path:
        return protocols
    source = Path(path)
    if not source.exists():
        raise ConfigurationError(
            f"{LIBRARY_VARIABLE}: {source} does not exist (a file or a folder is expected)"
        )
    from fhir_desens.exchange.library import read_protocols  # only deployments with a library need it

    try:
        imported = read_protocols(source)
    except (DesensError, OSError, ValueError) as error:
        raise ConfigurationError(f"{LIBRARY_VARIABLE}: {source}: {error}") from None
    if not imported:
        raise ConfigurationError(
            f"{LIBRARY_VARIABLE}: {source}: no protocol (PlanDefinition of our profile) found"
        )
    for protocol in imported:
        if protocol.id in protocols:
            raise ConfigurationError(
                f"{LIBRARY_VARIABLE}: {source}: protocol id '{protocol.id}' is already in the library"
            )
        protocols[protocol.id] = protocol
    return protocols
