"""Fixtures shared by every test layer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The third-party FHIR data in ../shared/data: skipped when absent, but never skipped in CI."""
    if not SHARED_DATA.is_dir():
        if in_ci():
            pytest.fail(f"CI=true but the shared data folder {SHARED_DATA} is missing")
        pytest.skip(f"shared data folder {SHARED_DATA} is absent (tests that read it need ../shared/data)")
    return SHARED_DATA


SHARED_DOCS = REPO_ROOT.parent / "shared" / "docs"


@pytest.fixture(scope="session")
def published_cases() -> dict[str, dict[str, object]]:
    """protocol-cases.json from ../shared/docs, numbers as exact Decimals, by case id."""
    import json
    from decimal import Decimal

    path = SHARED_DOCS / "protocol-cases.json"
    if not path.is_file():
        if in_ci():
            pytest.fail(f"CI=true but {path} is missing")
        pytest.skip(f"{path} is absent (the published cases live in ../shared/docs)")
    data = json.loads(path.read_text("utf-8"), parse_float=Decimal)
    return {case["id"]: case for case in data["cases"]}


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT
