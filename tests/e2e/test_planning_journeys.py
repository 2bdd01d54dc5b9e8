"""Issue 5 in a real browser: the three planning journeys, inside the EHR frame.

The app is driven only through what a user sees: the labels, buttons, links and roles of
notes/ui-contract.md. What was signed is then checked on the FHIR server itself (its own URL, not the
SMART gateway the app writes through).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from playwright.sync_api import FrameLocator, Locator, Page, expect

from fhir_desens.commands.demo import DemoStack
from tests.e2e.conftest import TIMEOUT_MS, Chart

ORDERS_PAGE = re.compile(r"/s/[A-Za-z0-9_-]{43}/orders/([A-Za-z0-9.-]{1,64})$")
PLAN_PAGE = re.compile(r"/s/[A-Za-z0-9_-]{43}/plan/[^/]+$")
SIGN = "Sign and send orders"


def choose_option(select: Locator, wanted: Callable[[str, str], bool]) -> str:
    """Select the first option for which ``wanted(value, text)`` holds; its text."""
    options: list[list[str]] = select.evaluate("s => Array.from(s.options).map(o => [o.value, o.text])")
    for value, text in options:
        if wanted(value, text):
            select.select_option(value=value)
            return text
    raise AssertionError(f"no such option among {[text for _, text in options]}")


def start_plan(app: FrameLocator, drug_words: tuple[str, ...], dose: str, unit: str = "mg") -> None:
    """Patient page -> "Plan a desensitization" -> the start form -> "Continue"."""
    app.get_by_role("link", name="Plan a desensitization").click()
    drug = app.get_by_role("combobox", name="Drug", exact=True)
    try:
        choose_option(drug, lambda _, text: any(word in text.lower() for word in drug_words))
    except AssertionError:
        choose_option(drug, lambda _, text: text.lower().startswith("other drug"))
        app.get_by_label("Other drug", exact=True).fill(drug_words[0])
    app.get_by_label("Target dose", exact=True).fill(dose)
    app.get_by_role("combobox", name="Dose unit", exact=True).select_option(label=unit)
    app.get_by_role("button", name="Continue").click()
    app.get_by_role("heading", name="Allergy match").wait_for()


def fhir_search(stack: DemoStack, resource_type: str, **params: str) -> list[dict[str, Any]]:
    """Every match on the FHIR server behind the gateway (no authorization there)."""
    url: str | None = f"{stack.sandbox.backend_url}/{resource_type}"
    query: dict[str, str] | None = {**params, "_count": "200"}
    found: list[dict[str, Any]] = []
    while url:
        response = requests.get(url, params=query, headers={"Accept": "application/fhir+json"}, timeout=30)
        response.raise_for_status()
        bundle = response.json()
        found += [entry["resource"] for entry in bundle.get("entry", []) if "resource" in entry]
        url = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)
        query = None
    return found


def signed_orders(stack: DemoStack, patient_key: str) -> tuple[list[str], dict[str, int]]:
    """The patient's RequestGroup ids, and per RequestGroup the number of MedicationRequests of its session."""
    subject = f"Patient/{stack.sandbox.summary.patient_id(patient_key)}"
    found = fhir_search(stack, "RequestGroup", subject=subject)
    groups = [group["id"] for group in found]
    by_session = {group.get("groupIdentifier", {}).get("value"): group["id"] for group in found}
    per_group: dict[str, int] = {}
    for request in fhir_search(stack, "MedicationRequest", subject=subject):
        group_id = by_session.get(request.get("groupIdentifier", {}).get("value"))
        if group_id is not None:
            per_group[group_id] = per_group.get(group_id, 0) + 1
    return groups, per_group


def orders_id(url: str) -> str:
    """The RequestGroup id of an orders page URL (a query string, e.g. ``?sent=1``, is allowed)."""
    match = ORDERS_PAGE.search(urlsplit(url).path)
    assert match, f"not an orders page: {url}"
    return match.group(1)


def sign(chart: Chart) -> str:
    """Click "Sign and send orders"; the signed RequestGroup's id from the orders page."""
    chart.app.get_by_role("button", name=SIGN).click()
    status = chart.app.get_by_role("status").filter(has_text="Orders sent")
    # signing sends one transaction, then holds the therapeutic order: allow for a loaded machine
    expect(status).to_contain_text("Orders sent: 12 medication requests", timeout=TIMEOUT_MS)
    return orders_id(chart.frame.url)


def test_carboplatin_plan_worksheet_print_and_sign_once(
    stack: DemoStack, open_chart: Callable[..., Chart], new_page: Callable[[], Page]
) -> None:
    chart = open_chart("carboplatin-ovarian")
    app = chart.app
    start_plan(app, ("carboplatin",), "400")
    assert PLAN_PAGE.search(urlsplit(chart.frame.url).path), chart.frame.url

    # Protocol: the 12-step, 3-bag protocol at a final rate of 75 mL/h.
    choose_option(
        app.get_by_role("combobox", name="Protocol", exact=True),
        lambda value, text: value == "iv-12-step-3-bag" or text.startswith("IV 12-step, 3-bag rapid"),
    )
    app.get_by_label("Final rate (mL/h)", exact=True).fill("75")
    app.get_by_role("button", name="Recalculate").click()
    expect(app.get_by_label("Final rate (mL/h)", exact=True)).to_have_value(re.compile(r"^75(\.0*)?$"))

    steps_table = app.get_by_role("table", name="Steps")
    steps = steps_table.locator("tbody").get_by_role("row")
    expect(steps).to_have_count(12)
    headers = [" ".join(text.split()) for text in steps_table.locator("thead th").all_inner_texts()]
    rate_column = next(i for i, text in enumerate(headers) if text.lower().startswith("rate"))
    expect(steps.last.locator("th, td").nth(rate_column)).to_have_text(re.compile(r"^\s*75(\.0+)?\s*$"))
    expect(app.get_by_role("table", name="Solutions")).to_be_visible()
    timeline = app.locator("svg[role='img']")
    expect(timeline).to_have_count(1)
    expect(timeline.locator("title")).to_have_count(1)

    # Print: the worksheet page opens on its own and carries the signature line.
    href = app.get_by_role("link", name="Open the worksheet").get_attribute("href")
    assert href
    printed = new_page()
    response = printed.goto(urljoin(chart.frame.url, href))
    assert response is not None
    assert response.status == 200
    expect(printed.get_by_text("Prescriber signature")).to_be_visible()
    expect(printed.locator("body")).to_contain_text("MRN-1001")

    group_id = sign(chart)
    groups, per_group = signed_orders(stack, "carboplatin-ovarian")
    assert groups == [group_id]
    assert per_group == {group_id: 12}

    # Sign again (ORDER-RO-1): the plan page is read-only now; a replayed sign POST (a retry, a second
    # tab) finds the same orders, says when they were sent and writes nothing.
    token = app.locator("form.discontinue-form input[name='csrf_token']").get_attribute("value")
    assert token
    chart.page.evaluate("() => history.back()")  # the frame goes back (page.go_back waits for the top page)
    expect(app.get_by_text("This plan was signed on")).to_be_visible()
    expect(app.get_by_role("button", name=SIGN)).to_have_count(0)
    plan_url = chart.frame.url.split("?", 1)[0].split("#", 1)[0]
    replay = chart.page.request.post(plan_url + "/sign", form={"csrf_token": token}, max_redirects=0)
    assert replay.status == 303, replay.text()
    assert orders_id(replay.headers["location"]) == group_id
    assert replay.headers["location"].endswith("?sent=again")
    again = chart.page.request.get(urljoin(chart.frame.url, replay.headers["location"]))
    assert "already sent on" in again.text()

    assert signed_orders(stack, "carboplatin-ovarian") == ([group_id], {group_id: 12})


def test_stevens_johnson_sulfonamide_plan_is_blocked_with_the_reason(
    open_chart: Callable[..., Chart],
) -> None:
    chart = open_chart("sjs-sulfonamide")
    app = chart.app
    start_plan(app, ("sulfamethoxazole", "trimethoprim", "tmp-smx"), "400")

    block = app.get_by_role("alert").filter(has_text="Desensitization is contraindicated")
    expect(block).to_have_count(1)
    expect(block).to_contain_text(re.compile(r"^\s*Desensitization is contraindicated"))
    expect(block).to_contain_text("Stevens-Johnson")
    expect(app.get_by_role("button", name=SIGN)).to_have_count(0)
    expect(app.get_by_role("table", name="Steps")).to_have_count(0)
    expect(app.get_by_label("Override reason", exact=True)).to_be_visible()
    expect(app.get_by_role("button", name="Override the contraindication")).to_be_visible()


def test_drug_not_on_the_allergy_list_needs_confirmation_before_signing(
    open_chart: Callable[..., Chart],
) -> None:
    chart = open_chart("nka")
    app = chart.app
    start_plan(app, ("oxaliplatin",), "173")

    expect(app.get_by_role("alert").filter(has_text="is not on the allergy list")).to_have_count(1)
    sign_button = app.get_by_role("button", name=SIGN)
    if sign_button.count():
        expect(sign_button).to_be_disabled()
    app.get_by_label("I confirm desensitization for a drug the allergy list does not record").check()
    app.get_by_role("button", name="Confirm").click()
    expect(app.get_by_role("button", name=SIGN)).to_be_enabled()


def test_a_premedication_the_patient_is_allergic_to_is_flagged_and_acknowledged_before_signing(
    open_chart: Callable[..., Chart], new_page: Callable[[], Page], screenshot_dir: Path
) -> None:
    """PLAN-PREMED-1: carboplatin's 12-step protocol gives aspirin if flushing occurred; the AERD patient
    must not get it. The plan page says so beside the premedications, and signing waits for the allergist."""
    chart = open_chart("aspirin-aerd")
    app = chart.app
    start_plan(app, ("carboplatin",), "400")
    choose_option(
        app.get_by_role("combobox", name="Protocol", exact=True),
        lambda value, text: value == "iv-12-step-3-bag" or text.startswith("IV 12-step, 3-bag rapid"),
    )
    app.get_by_role("button", name="Recalculate").click()
    premedications = app.get_by_role("list", name="Premedications")
    expect(premedications.get_by_role("listitem").filter(has_text="aspirin")).to_contain_text(
        "Do not give: allergy to Aspirin"
    )
    expect(app.locator("#sign-blockers")).to_contain_text(
        "rules out a premedication of this protocol: aspirin"
    )
    wide = new_page()  # the plan page as wide as an EHR frame, to look at
    wide.set_viewport_size({"width": 1024, "height": 900})
    wide.goto(chart.frame.url)
    wide.screenshot(path=str(screenshot_dir / "plan-premedication-allergy-1024.png"), full_page=True)
    app.get_by_label(re.compile(r"^Not to be given: aspirin")).check()
    app.get_by_role("button", name="Acknowledge", exact=True).click()
    expect(app.locator("#premedication-allergies")).to_contain_text("not to be given")
    expect(app.locator("#sign-blockers")).not_to_contain_text("premedication")


def test_planning_with_the_keyboard_alone_in_a_page_1024_px_wide(
    open_chart: Callable[..., Chart], page: Page, new_page: Callable[[], Page]
) -> None:
    chart = open_chart("rituximab-lymphoma")
    app = chart.app
    app.get_by_role("link", name="Plan a desensitization").focus()
    page.keyboard.press("Enter")
    drug = app.get_by_role("combobox", name="Drug", exact=True)
    dose = app.get_by_label("Target dose", exact=True)
    drug.wait_for()

    # From the first field, Tab alone reaches the target dose; typing and Enter submit the form.
    drug.focus()
    for _ in range(12):
        if dose.evaluate("field => field === document.activeElement"):
            break
        page.keyboard.press("Tab")
    else:
        raise AssertionError("Tab never reached the Target dose field")
    page.keyboard.press("Control+A")
    page.keyboard.type("700")
    page.keyboard.press("Enter")
    app.get_by_role("heading", name="Allergy match").wait_for()
    expect(app.get_by_role("table", name="Steps")).to_be_visible()

    # The worksheet fits a 1024 px wide EHR frame: no horizontal scrolling.
    worksheet = new_page()
    worksheet.set_viewport_size({"width": 1024, "height": 800})
    worksheet.goto(chart.frame.url)
    expect(worksheet.get_by_role("table", name="Steps")).to_be_visible()
    scroll_width, client_width = worksheet.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert scroll_width <= client_width, (scroll_width, client_width)
