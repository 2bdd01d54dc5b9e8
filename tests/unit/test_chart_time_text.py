"""Dates and times from the chart are written for people, in the site's zone (docs/display.md)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from fhir_desens.protocol.display import chart_date_text, chart_time_text

PARIS = ZoneInfo("Europe/Paris")


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("2026-10-14T10:22:00-05:00", "14 Oct 2026 17:22 CEST"),  # converted to the site's zone
        ("2026-12-01T08:05:00Z", "1 Dec 2026 09:05 CET"),
        ("2026-10-14", "14 Oct 2026"),
        ("2019", "2019"),  # partial dates stay as written
        ("2019-03", "2019-03"),
        ("2026-10-14T10:22:00", "14 Oct 2026 10:22"),  # no offset: shown as recorded, never shifted
        ("last spring", "last spring"),  # unparseable text is shown, not hidden
        ("2026-13-40", "2026-13-40"),
    ],
)
def test_chart_dates_read_as_people_write_them(value: str, shown: str) -> None:
    assert chart_time_text(value, PARIS) == shown


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("1975-03-02", "2 Mar 1975"),  # a birth date, as every page writes a date
        ("1975", "1975"),  # partial dates stay as written
        ("1975-03", "1975-03"),
        ("1975-02-30", "1975-02-30"),  # not a date: shown, not hidden
    ],
)
def test_chart_dates_without_a_time_read_as_people_write_them(value: str, shown: str) -> None:
    assert chart_date_text(value) == shown
