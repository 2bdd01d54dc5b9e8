"""At 1024 px (an EHR frame) the vital-sign labels wrapped away from their boxes: "Heart rate (/min)" at the end
of one line, its box at the start of the next, next to another label. Each label now sits on the row of its own
input (smart_app/static/app.css, .vitals-form). Checked in headless Chromium at 1024 px; the screenshot is kept
in the test's temporary folder to look at."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from fhir_desens.course.bedside.vitals import MEASURES
from tests.app.conftest import Launcher
from tests.app.fake_ehr import FakeEhr
from tests.app.flowsheet import flowsheet, launched_with_a_bedside_session
from tests.bedside_session import Bedside

CHROMIUM = Path("/usr/bin/chromium")
CSS = Path(__file__).parents[2] / "smart_app" / "static" / "app.css"


def _playwright() -> Any:
    """Playwright's sync API with Debian's Chromium, or the test skipped saying what is missing."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium package (`make chromium`)")
    return pytest.importorskip("playwright.sync_api")


@contextmanager
def _flowsheet_at_1024_px(
    sync_api: Any, launcher: Launcher, sid: str, bedside: Bedside, tmp_path: Path
) -> Iterator[Any]:
    """A Chromium tab 1024 px wide on the flowsheet page, its stylesheet inlined (no server to fetch it from)."""
    html = flowsheet(launcher, sid, bedside).replace(
        "</head>", f"<style>{CSS.read_text('utf-8')}</style></head>", 1
    )
    (tmp_path / "flowsheet.html").write_text(html, "utf-8")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        tab = browser.new_page(viewport={"width": 1024, "height": 900})
        tab.goto((tmp_path / "flowsheet.html").as_uri())
        yield tab
        browser.close()


def _assert_label_beside_its_box(tab: Any, input_id: str, name: str) -> None:
    """The label for ``input_id`` sits on the row of its box, to its left."""
    label = tab.locator(f"label[for='{input_id}']").bounding_box()
    box = tab.locator(f"#{input_id}").bounding_box()
    assert label is not None and box is not None
    label_middle = label["y"] + label["height"] / 2
    assert box["y"] <= label_middle <= box["y"] + box["height"], (name, label, box)
    assert label["x"] + label["width"] <= box["x"], (name, label, box)


def test_each_vital_sign_label_sits_beside_its_input_at_1024_px(
    launcher: Launcher, ehr: FakeEhr, app: Flask, tmp_path: Path
) -> None:
    sync_api = _playwright()
    sid, bedside = launched_with_a_bedside_session(launcher, ehr, app)
    bedside.start()
    with _flowsheet_at_1024_px(sync_api, launcher, sid, bedside, tmp_path) as tab:
        form = tab.locator("form.vitals-form")
        form.screenshot(path=str(tmp_path / "vitals-1024.png"))
        print(f"vitals form at 1024 px: {tmp_path / 'vitals-1024.png'}")
        for measure in MEASURES:
            if measure.field == "peak_flow":
                continue  # asked only when the plan asks for peak flow
            _assert_label_beside_its_box(tab, f"v-{measure.field}", measure.field)


def test_a_time_label_stays_with_its_box_in_the_reaction_forms_at_1024_px(
    launcher: Launcher, ehr: FakeEhr, app: Flask, tmp_path: Path
) -> None:
    """The treatment form ended a line on "Time (if not now)" and put its box on the next."""
    sync_api = _playwright()
    sid, bedside = launched_with_a_bedside_session(launcher, ehr, app)
    bedside.start()
    bedside.mild_reaction_during(2, 5)
    with _flowsheet_at_1024_px(sync_api, launcher, sid, bedside, tmp_path) as tab:
        tab.screenshot(path=str(tmp_path / "reaction-1024.png"), full_page=True)
        print(f"flowsheet after a reaction at 1024 px: {tmp_path / 'reaction-1024.png'}")
        for field in ("treatment-time", "resolved-time", "vitals-time"):
            _assert_label_beside_its_box(tab, field, field)
