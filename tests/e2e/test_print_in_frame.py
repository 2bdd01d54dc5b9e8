"""Print from inside the EHR frame prints the sheet itself (issue 10), in headless Chromium.

The browser's print dialog cannot be seen headless, so ``window.print`` is replaced in every frame
by a recorder (an init script): the test then sees which document was asked to print.
"""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Page, expect

from tests.e2e.conftest import Chart
from tests.e2e.test_planning_journeys import start_plan

RECORD_PRINT = """
window.print = function () {
  window.__printed = (window.__printed || 0) + 1;
};
"""


def test_print_from_the_frame_prints_the_sheet_not_the_ehr_page(
    page: Page, open_chart: Callable[..., Chart]
) -> None:
    page.add_init_script(RECORD_PRINT)
    chart = open_chart("carboplatin-ovarian", page)
    app = chart.app
    start_plan(app, ("carboplatin",), "400")
    app.get_by_role("button", name="Print the worksheet").click()

    sheet = app.frame_locator("#print-frame")
    expect(sheet.get_by_role("heading", name="Rapid drug desensitization worksheet")).to_be_visible()
    expect(sheet.get_by_text("DRAFT - not an order").first).to_be_attached()
    expect(sheet.get_by_role("table", name="Steps")).to_be_attached()
    expect(sheet.get_by_text("Prescriber signature")).to_be_attached()
    printing = next(f for f in page.frames if f.url.endswith("/print"))
    printing.wait_for_function("() => window.__printed === 1")  # the sheet's frame was printed
    assert page.evaluate("() => window.__printed || 0") == 0, "the EHR page was not printed"
    assert chart.frame.evaluate("() => window.__printed || 0") == 0, "the app page was not printed"

    # The PDF download link serves a PDF of the same sheet.
    link = app.get_by_role("link", name="Worksheet (PDF)")
    href = link.get_attribute("href")
    assert href and href.endswith("/worksheet.pdf")
    app_origin = chart.frame.url.split("/s/", 1)[0]
    pdf = page.request.get(app_origin + href)
    assert pdf.status == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.body().startswith(b"%PDF")
