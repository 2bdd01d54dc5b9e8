"""Fixtures shared by every test layer."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def _service_or_skip(start: Any) -> Any:
    """Start a real server; without its binary: skip locally, fail in CI (make services installs it)."""
    from tests.services import ServiceMissing

    try:
        return start()
    except ServiceMissing as missing:
        if in_ci():
            pytest.fail(f"CI=true but {missing}")
        pytest.skip(str(missing))


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis server (Debian's redis-server) on a free port for the whole test session."""
    from tests.services import RedisServer

    server = _service_or_skip(RedisServer().start)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server (Debian's postgresql-15) in a temporary cluster for the whole test session."""
    from tests.services import PostgresServer

    server = _service_or_skip(PostgresServer().start)
    try:
        yield server.url
    finally:
        server.stop()
