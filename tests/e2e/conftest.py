"""End-to-end fixtures: the whole demo stack on free ports and Debian's headless Chromium (Playwright).

Every test collected under ``tests/e2e`` is marked ``e2e``. Without ``/usr/bin/chromium`` (``make
chromium``), Node or the FHIR server's npm packages the tests are skipped locally and fail when
``CI=true``.

``stack``
    The running :class:`~fhir_desens.commands.demo.DemoStack` for the session: the sandbox EHR at
    ``http://127.0.0.1:PORT`` and the app (gunicorn) at ``http://localhost:PORT``: two sites, so the
    EHR page frames the app as a third party, as a real EHR does.
``browser``
    One Chromium profile for the session (fresh, empty, third-party cookies blocked).
``page``
    A new tab of that browser; on failure a screenshot goes to a temporary folder (path printed).
``open_chart``
    ``open_chart(patient_key, page=None) -> Chart``: through the launcher page, open the patient's chart
    with the app inside the EHR frame, and wait until the app's patient page is in the frame.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Frame, FrameLocator, Page, Playwright, sync_playwright

from fhir_desens.commands.demo import DemoStack, demo_stack
from fhir_desens.errors import ConfigurationError
from tests.conftest import in_ci

_HERE = Path(__file__).resolve().parent

CHROMIUM = Path("/usr/bin/chromium")
#: Headless, no sandbox (containers), and no background traffic to a network that is closed here.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--test-third-party-cookie-phaseout",
]
#: Profile preferences: block third-party cookies (what the cookie settings page writes).
BLOCK_THIRD_PARTY_COOKIES = {"profile": {"cookie_controls_mode": 1, "block_third_party_cookies": True}}
#: An EHR frame about as wide as the app must fit (1024 px) plus the EHR's margins.
VIEWPORT = {"width": 1100, "height": 1000}
TIMEOUT_MS = 15_000

#: The app's pages live under the opaque session path (smart_app/chart/views.py).
SESSION_PATH = re.compile(r"/s/([A-Za-z0-9_-]{43})/")
APP_FRAME = "iframe.app-frame"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


_CALL_FAILED = pytest.StashKey[bool]()
_SCREENSHOTS = pytest.StashKey[list[Path]]()


def _unavailable(reason: str) -> None:
    if in_ci():
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if not CHROMIUM.is_file():
        _unavailable(f"{CHROMIUM} is missing: install Debian's chromium package (`make chromium`, as root)")
    return CHROMIUM


@pytest.fixture(scope="session")
def stack(chromium_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStack]:
    """(Requires Chromium first, so that a machine without it skips before starting anything.)"""
    sessions = tmp_path_factory.mktemp("e2e-app") / "sessions.sqlite3"
    BEDSIDE_CLOCK.append(sessions.with_name("bedside-clock.txt"))
    BEDSIDE_CLOCK[-1].write_text("", "utf-8")  # empty: real time until a test sets it
    environment = {
        "FHIR_DESENS_SESSION_URL": f"sqlite:///{sessions}",
        "FHIR_DESENS_RECORD_URL": record_url_of(sessions),
        "FHIR_DESENS_BEDSIDE_CLOCK_FILE": str(BEDSIDE_CLOCK[-1]),
    }
    _RECORD_URLS.append(environment["FHIR_DESENS_RECORD_URL"])
    with ExitStack() as running:
        try:
            started = running.enter_context(demo_stack(app_host="localhost", environment=environment))
        except ConfigurationError as error:
            _unavailable(f"the demo stack cannot run: {error}")
        yield started


def record_url_of(sessions: Path) -> str:
    """The app's bedside record (and outcome tasks) next to its session store: tests write sessions there."""
    return f"sqlite:///{sessions.with_name('record.sqlite3')}"


@pytest.fixture(scope="session")
def record_url(stack: DemoStack) -> str:
    """The running app's bedside record database (FHIR_DESENS_RECORD_URL)."""
    assert _RECORD_URLS, "the stack fixture sets the record URL"
    return _RECORD_URLS[-1]


_RECORD_URLS: list[str] = []
#: the running app's bedside clock file (smart_app/bedside/clock.py): the bedside journey moves it
BEDSIDE_CLOCK: list[Path] = []


def set_bedside_clock(moment: datetime | None) -> None:
    """Set the running app's bedside clock (None: back to real time); written whole, then renamed."""
    path = BEDSIDE_CLOCK[-1]
    partial = path.with_name(path.name + ".partial")
    partial.write_text(moment.isoformat() if moment else "", "utf-8")
    partial.replace(path)


def launch_chromium(
    playwright: Playwright,
    profile: Path,
    preferences: dict[str, object] = BLOCK_THIRD_PARTY_COOKIES,
    args: Sequence[str] = CHROMIUM_ARGS,
) -> BrowserContext:
    """Chromium on a fresh profile whose Preferences file is ``preferences``."""
    (profile / "Default").mkdir(parents=True)
    (profile / "Default" / "Preferences").write_text(json.dumps(preferences), "utf-8")
    context = playwright.chromium.launch_persistent_context(
        str(profile), executable_path=str(CHROMIUM), args=list(args), headless=True, viewport=VIEWPORT
    )
    context.set_default_timeout(TIMEOUT_MS)
    return context


@pytest.fixture(scope="session")
def playwright_driver(chromium_path: Path) -> Iterator[Playwright]:
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def browser(
    playwright_driver: Playwright, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrowserContext]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    context = launch_chromium(playwright_driver, profile)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e-screenshots")


@pytest.fixture
def new_page(
    browser: BrowserContext, request: pytest.FixtureRequest, screenshot_dir: Path
) -> Iterator[Callable[[], Page]]:
    """Open tabs (closed after the test); when the test failed, each tab is screenshotted first."""
    pages: list[Page] = []

    def open_tab() -> Page:
        tab = browser.new_page()
        pages.append(tab)
        return tab

    yield open_tab
    failed = request.node.stash.get(_CALL_FAILED, False)
    for number, tab in enumerate(pages, start=1):
        if failed and not tab.is_closed():
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
            path = screenshot_dir / f"{name}-tab{number}.png"
            tab.screenshot(path=str(path), full_page=True)
            request.config.stash.setdefault(_SCREENSHOTS, []).append(path)
            print(f"screenshot of the failed test: {path}")
        if not tab.is_closed():
            tab.close()


@pytest.fixture
def page(new_page: Callable[[], Page]) -> Page:
    return new_page()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    shots = config.stash.get(_SCREENSHOTS, [])
    if shots:
        terminalreporter.section("e2e screenshots of failed tests")
        for path in shots:
            terminalreporter.write_line(str(path))


@dataclass
class Chart:
    """The EHR chart page of one patient with the app in its frame."""

    page: Page
    app: FrameLocator

    @property
    def frame(self) -> Frame:
        handle = self.page.locator(APP_FRAME).element_handle()
        frame = handle.content_frame() if handle else None
        assert frame is not None, "the EHR page has no app frame"
        return frame

    @property
    def session_id(self) -> str:
        match = SESSION_PATH.search(self.frame.url)
        assert match, f"the app frame is not on a session page: {self.frame.url}"
        return match.group(1)


@pytest.fixture
def open_chart(stack: DemoStack, page: Page) -> Callable[..., Chart]:
    def open_(patient: str, tab: Page | None = None) -> Chart:
        tab = tab or page
        tab.goto(stack.sandbox.launcher_url)
        tab.get_by_label("Patient", exact=True).select_option(value=patient)
        tab.get_by_label("inside the EHR").check()
        tab.get_by_role("button", name="Open the chart").click()
        tab.wait_for_url(re.compile(r"/ehr\?"))
        chart = Chart(tab, tab.frame_locator(APP_FRAME))
        chart.app.get_by_role("heading", name="Allergies and intolerances").wait_for()
        return chart

    return open_
