"""The app's protocol library, read once at start (so a bad library stops the app, not a clinician)."""

from __future__ import annotations

from collections.abc import Mapping

from flask import Flask, current_app

from fhir_desens.course.library import load_library
from fhir_desens.protocol.library import builtin_protocols
from fhir_desens.protocol.model import Protocol

LIBRARY_EXTENSION = "fhir_desens.protocol_library"

__all__ = ["init_library", "library"]


def init_library(app: Flask, path: str | None) -> None:
    app.extensions[LIBRARY_EXTENSION] = load_library(path)


def library() -> Mapping[str, Protocol]:
    """The app's protocols by id: built-ins, then imported ones."""
    protocols: Mapping[str, Protocol] | None = current_app.extensions.get(LIBRARY_EXTENSION)
    return protocols if protocols is not None else builtin_protocols()
