"""What plan pages memoize (smart_app.page_cache, smart_app.planning.computed): computed once per draft
content, never served for another content: an edit, a changed allergy list, another start time."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from flask import Flask

from fhir_desens.protocol.calculate import PlanRequest, compute_plan
from fhir_desens.protocol.library import builtin_protocols
from fhir_desens.protocol.quantity import Quantity
from smart_app.page_cache import Memo, content_key, memo
from smart_app.planning.worksheet import at_start, clock_offsets, clock_times, plan_sheet, worksheet_for
from tests.app.planner import Planner
from tests.html import table_rows

ZONE = ZoneInfo("Europe/Paris")


def test_a_memo_computes_once_per_key_and_keeps_the_most_recent() -> None:
    computed: list[str] = []
    cache: Memo[str] = Memo(size=2)

    def value(key: str) -> str:
        return cache.get(key, lambda: computed.append(key) or key.upper())

    assert [value("a"), value("a"), value("b"), value("c"), value("a")] == ["A", "A", "B", "C", "A"]
    assert computed == ["a", "b", "c", "a"]  # "a" fell out when "c" came in (two kept)
    assert len(cache) == 2 and (cache.hits, cache.misses) == (1, 4)


def test_the_content_key_is_the_content() -> None:
    assert content_key({"a": 1, "b": [1, 2]}) == content_key({"b": [1, 2], "a": 1})
    assert content_key({"a": 1}) != content_key({"a": "1"})
    assert content_key("text") != content_key("text ")


def _plan() -> object:
    return compute_plan(
        PlanRequest(
            protocol=builtin_protocols()["iv-12-step-3-bag"],
            drug="Carboplatin",
            target=Quantity(Decimal(400), "mg"),
        )
    )


def test_one_plan_sheet_serves_every_start_time_unchanged() -> None:
    plan = _plan()
    sheet = plan_sheet(plan)  # type: ignore[arg-type]
    nine = datetime(2027, 1, 15, 9, 0, tzinfo=ZONE)
    first = at_start(sheet, plan, nine)  # type: ignore[arg-type]
    later = at_start(sheet, plan, nine + timedelta(hours=2, seconds=40), planned=True)  # type: ignore[arg-type]
    assert first == worksheet_for(plan, nine)  # type: ignore[arg-type]
    assert first.steps[0].clock == "09:00" and later.steps[0].clock == "11:00"
    assert [s.clock for s in first.steps] != [s.clock for s in later.steps]
    assert first.started_at == "15 Jan 2027 09:00 CET" and later.clock_basis == "from the planned start"
    assert first.timeline_svg is sheet.timeline_svg  # built once
    assert sheet.started_at == "" and sheet.steps[0].clock == "00:00"  # the memoized sheet is untouched


def test_a_reload_recomputes_nothing_and_an_edit_recomputes(planner: Planner, app: Flask) -> None:
    sid = planner.launch("carboplatin-ovarian")
    draft_id = planner.create(sid)
    with app.app_context():
        drafts = memo("computed drafts")
    assert len(table_rows(planner.page(sid, draft_id).get_data(as_text=True), "steps")) == 12
    misses = drafts.misses
    for _ in range(3):
        assert planner.page(sid, draft_id).status_code == 200
    assert drafts.misses == misses  # the same draft: the plan, checks and worksheet were reused
    assert planner.recalculate(sid, draft_id, protocol="iv-8-step-2-bag").status_code == 303
    html = planner.page(sid, draft_id).get_data(as_text=True)
    assert drafts.misses > misses  # another content, computed afresh
    assert len(table_rows(html, "steps")) == 8


def test_clock_times_from_offsets_read_the_wall_clock_as_datetimes_do() -> None:
    """The clock times counted from the plan's offsets (seconds) are the start plus each step's minutes
    (to the second) as datetimes give them: across midnight, with the start's seconds and microseconds,
    on the day summer time ends."""
    plan = _plan()
    offsets = clock_offsets(plan)  # type: ignore[arg-type]
    starts = [
        datetime(2027, 1, 15, 9, 0, tzinfo=ZONE),
        datetime(2027, 1, 15, 23, 47, 59, 999_999, tzinfo=ZONE),
        datetime(2027, 10, 31, 1, 58, 31, 500_000, tzinfo=ZONE),
    ]
    for start in starts:
        times = clock_times(plan, start, offsets=offsets)  # type: ignore[arg-type]
        expected = [
            (start + timedelta(seconds=int((step.start_minute * 60).to_integral_value()))).strftime("%H:%M")
            for step in plan.steps  # type: ignore[attr-defined]
        ]
        assert list(times.steps) == expected
        assert times == clock_times(plan, start)  # type: ignore[arg-type]
    assert clock_times(plan, starts[1]).steps[-1] < "23:47"  # type: ignore[arg-type]  # past midnight
