"""The bedside's test clock: a file the test moves, refused outside loopback deployments."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fhir_desens.errors import ConfigurationError
from smart_app.bedside.clock import FileClock, bedside_clock


def test_the_clock_reads_the_time_the_test_wrote(tmp_path: Path) -> None:
    path = tmp_path / "clock.txt"
    path.write_text("2026-12-02T08:15:00+01:00", "utf-8")
    clock = bedside_clock(str(path), "http://localhost:8200", time.time)
    assert isinstance(clock, FileClock)
    assert clock() == datetime(2026, 12, 2, 7, 15, tzinfo=UTC).timestamp()
    path.write_text("1700000000.5", "utf-8")
    assert clock() == 1700000000.5
    path.write_text("", "utf-8")  # empty: real time
    assert abs(clock() - time.time()) < 5


def test_no_file_is_real_time_and_a_deployment_cannot_turn_it_on(tmp_path: Path) -> None:
    assert bedside_clock(None, "https://app.example.org", time.time) is time.time
    path = tmp_path / "clock.txt"
    path.write_text("", "utf-8")
    with pytest.raises(ConfigurationError, match="loopback"):
        bedside_clock(str(path), "https://app.example.org", time.time)


@pytest.mark.parametrize("content", ["tomorrow", "2026-12-02T08:15:00"])
def test_a_malformed_clock_file_stops_the_app_at_start(tmp_path: Path, content: str) -> None:
    path = tmp_path / "clock.txt"
    path.write_text(content, "utf-8")
    with pytest.raises(ConfigurationError, match="BEDSIDE_CLOCK_FILE"):
        bedside_clock(str(path), "http://127.0.0.1:8200", time.time)
    with pytest.raises(ConfigurationError, match="cannot read"):
        FileClock(tmp_path / "missing.txt")
