"""Issue 4 in a real browser: the EHR launches the app inside its page's frame, third-party cookies blocked.

The launcher (``http://127.0.0.1:PORT``) and the app (``http://localhost:PORT``) are two sites, so the
app in the EHR's iframe is a third party and the browser keeps no cookie for it: the launch and the
session must work from the URL alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Frame, Page, Playwright, expect

from fhir_desens.commands.demo import DemoStack
from tests.e2e.conftest import CHROMIUM_ARGS, SESSION_PATH, Chart, launch_chromium

PROBE = "e2e_probe"
#: Writes a cookie the way a script of the framed app would, then reads what the browser kept.
COOKIE_PROBE = (
    f"() => {{ document.cookie = '{PROBE}=1; SameSite=None; Secure; Path=/'; return document.cookie }}"
)
#: A profile that allows third-party cookies: the control showing the probe can see a kept cookie.
ALLOW_THIRD_PARTY_COOKIES = {"profile": {"cookie_controls_mode": 0, "block_third_party_cookies": False}}
ALLOWING_ARGS = [
    *(arg for arg in CHROMIUM_ARGS if arg != "--test-third-party-cookie-phaseout"),
    "--disable-features=TrackingProtection3pcd,ThirdPartyStoragePartitioning",
]


def _site(url: str) -> str:
    return urlsplit(url).hostname or ""


def test_app_in_ehr_frame_shows_allergies_with_third_party_cookies_blocked(
    stack: DemoStack, open_chart: Callable[..., Chart]
) -> None:
    chart = open_chart("carboplatin-ovarian")

    assert _site(chart.page.url) == "127.0.0.1"
    assert _site(chart.frame.url) == "localhost", "the app must be a third party in the EHR frame"
    assert SESSION_PATH.search(chart.frame.url)
    assert chart.frame.evaluate(COOKIE_PROBE) == "", "the framed app could keep a cookie"
    assert stack.app_url.startswith("http://localhost:")
    assert chart.page.context.cookies(stack.app_url) == []

    row = chart.app.locator("table.allergy-table").get_by_role("row", name=re.compile("Carboplatin"))
    expect(row).to_have_count(1)
    for reaction in ("flushing", "Palmar pruritus", "Chest tightness", "Blood pressure 94/58"):
        expect(row).to_contain_text(reaction)
    expect(row).to_contain_text("moderate")
    expect(row).to_contain_text("No contraindicating reaction recorded")


def test_cookie_probe_sees_cookies_when_the_profile_allows_them(
    stack: DemoStack, playwright_driver: Playwright, tmp_path: Path
) -> None:
    """Control for the test above: the same probe in the same frame keeps its cookie when allowed."""
    browser = launch_chromium(
        playwright_driver, tmp_path / "profile", ALLOW_THIRD_PARTY_COOKIES, ALLOWING_ARGS
    )
    try:
        tab = browser.new_page()
        tab.goto(f"{stack.sandbox.issuer}/ehr?patient=nka&app={stack.client_id}")
        frame_element = tab.locator("iframe.app-frame")
        tab.frame_locator("iframe.app-frame").get_by_role(
            "heading", name="Allergies and intolerances"
        ).wait_for()
        frame = frame_element.element_handle().content_frame()
        assert frame is not None
        assert f"{PROBE}=1" in frame.evaluate(COOKIE_PROBE)
    finally:
        browser.close()


def _patient_shown(frame: Frame) -> str:
    """What the framed app says about its patient: the allergy rows, or the no-known-allergies line."""
    frame.get_by_role("heading", name="Allergies and intolerances").wait_for()
    return frame.locator("main").inner_text()


def test_two_patients_in_two_tabs_do_not_mix(
    open_chart: Callable[..., Chart], new_page: Callable[[], Page]
) -> None:
    first = open_chart("carboplatin-ovarian")
    second = open_chart("nka", new_page())
    assert first.session_id != second.session_id

    for chart in (first, second):  # each tab's app, reloaded after the other launched
        chart.frame.goto(chart.frame.url)
    first_text = _patient_shown(first.frame)
    second_text = _patient_shown(second.frame)

    assert "Carboplatin" in first_text
    assert "No known allergies" not in first_text
    assert "No known allergies" in second_text
    assert "Carboplatin" not in second_text
    assert "Voss-Hartley" in first.frame.content()
    assert "Voss-Hartley" not in second.frame.content()


def test_app_pages_name_the_ehr_as_the_only_frame_ancestor(
    stack: DemoStack, open_chart: Callable[..., Chart], new_page: Callable[[], Page]
) -> None:
    chart = open_chart("carboplatin-ovarian")
    app_page_url = chart.frame.url
    response = chart.page.request.get(app_page_url)
    assert response.ok
    directives = response.headers.get("content-security-policy", "").split("; ")
    assert f"frame-ancestors {stack.sandbox.issuer}" in directives

    # Another site framing the same app page: the browser refuses to render it.
    other_site = "http://other-ehr.test/chart"
    intruder = new_page()
    intruder.route(
        other_site,
        lambda route: route.fulfill(
            content_type="text/html", body=f'<iframe title="app" src="{app_page_url}"></iframe>'
        ),
    )
    intruder.goto(other_site)  # returns after the load event, which waits for the frame
    child = intruder.locator('iframe[title="app"]').element_handle().content_frame()
    assert child is not None
    assert child.url.startswith("chrome-error:"), child.url
    expect(intruder.frame_locator('iframe[title="app"]').get_by_text("Carboplatin")).to_have_count(0)
