"""The patient page: banner, allergy list, contraindication flags, NKA, entered-in-error, styling."""

from __future__ import annotations

import re

import pytest

from tests.app.conftest import AppFactory, Launcher, https_client
from tests.app.fake_ehr import FakeEhr
from tests.app.fake_ehr_chart import ALLERGY_NKA, ALLERGY_PEANUT


def _text(html: str) -> str:
    """Visible text, whitespace collapsed (for order and content assertions)."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


@pytest.fixture
def page_html(launcher: Launcher) -> str:
    response = launcher.page(launcher.launch("p1"))
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_banner(page_html: str) -> None:
    assert '<h1 class="patient-name">Ada Lovelace</h1>' in page_html
    text = _text(page_html)
    assert "Sex Female" in text and "Birth date 2 Jan 1970" in text and "MRN MRN-0001" in text


def test_allergy_list_drugs_first_with_details(page_html: str) -> None:
    text = _text(page_html)
    order = [text.index(name) for name in ("Carboplatin", "Penicillin G", "Peanut")]
    assert order[2] > max(order[:2]), "drug allergies come before the food allergy"
    assert "RxNorm 7980" in text and "RxNorm 40048" in text
    assert "Hives (moderate)" in text
    assert "Stevens-Johnson syndrome (severe)" in text
    assert "active confirmed" in text
    assert '<th scope="col">Substance</th>' in page_html and "<caption>" in page_html
    assert '<th scope="row">' in page_html


def test_contraindication_flag_with_reason(page_html: str) -> None:
    rows = re.findall(r"<tr class=\"([^\"]*)\">(.*?)</tr>", page_html, re.S)
    by_name = {
        ("Penicillin" if "Penicillin G" in body else "Carbo" if "Carboplatin" in body else "Peanut"): (
            cls,
            body,
        )
        for cls, body in rows
        if 'scope="row"' in body
    }
    pen_class, pen_body = by_name["Penicillin"]
    assert "contraindicated" in pen_class
    assert "Contraindicated" in pen_body
    assert re.search(r"Stevens.Johnson", _text(pen_body.split("reasons")[1]), re.I), (
        "the reason names the finding"
    )
    carbo_class, carbo_body = by_name["Carbo"]
    assert "contraindicated" not in carbo_class
    assert "No contraindicating reaction recorded" in carbo_body
    assert "not screened" in by_name["Peanut"][1]
    assert "Desensitization contraindicated" in _text(page_html)  # the summary alert


def test_entered_in_error_records_are_hidden(page_html: str) -> None:
    table = page_html.split("<table", 1)[1].split("</table>", 1)[0]
    assert "Amoxicillin" not in table
    assert '<details class="hidden-records">' in page_html
    assert "<del>Amoxicillin (wrong patient)</del>" in page_html
    assert "1 record entered in error is hidden" in _text(page_html)


def test_no_known_allergies(launcher: Launcher, ehr: FakeEhr) -> None:
    ehr.add_patient("p3", "Nora Known", allergies=[ALLERGY_NKA])
    html = launcher.page(launcher.launch("p3")).get_data(as_text=True)
    assert "No known allergies." in _text(html)
    assert "<table" not in html


def test_no_records_is_not_no_known_allergies(launcher: Launcher) -> None:
    html = launcher.page(launcher.launch("p2")).get_data(as_text=True)
    text = _text(html)
    assert "No allergy records were found" in text
    assert "No known allergies." not in text


def test_nka_next_to_allergies_is_flagged(launcher: Launcher, ehr: FakeEhr) -> None:
    ehr.add_patient("p4", "Con Flict", allergies=[ALLERGY_NKA, ALLERGY_PEANUT])
    text = _text(launcher.page(launcher.launch("p4")).get_data(as_text=True))
    assert "contradicts the allergies below" in text


def test_malicious_patient_name_is_escaped(launcher: Launcher, ehr: FakeEhr) -> None:
    ehr.add_patient(
        "p5",
        "<script>alert(1)</script> <img src=x onerror=alert(2)>",
        allergies=[{**ALLERGY_PEANUT, "code": {"text": "<b onmouseover=alert(3)>nuts</b>"}}],
    )
    html = launcher.page(launcher.launch("p5")).get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html
    assert "<b onmouseover" not in html and "&lt;b onmouseover=alert(3)&gt;" in html


def test_read_only_when_write_scope_not_granted(launcher: Launcher, ehr: FakeEhr) -> None:
    ehr.withhold_scopes = {"patient/AllergyIntolerance.cu"}
    html = launcher.page(launcher.launch("p1")).get_data(as_text=True)
    assert "Read-only: the EHR did not grant write access" in html


def test_full_access_has_no_read_only_badge(page_html: str) -> None:
    assert "Read-only" not in page_html


def test_no_allergy_read_scope_is_explained(launcher: Launcher, ehr: FakeEhr) -> None:
    ehr.withhold_scopes = {"patient/AllergyIntolerance.rs"}
    html = launcher.page(launcher.launch("p1")).get_data(as_text=True)
    assert "did not grant access to the allergy list" in html
    assert not [r for r in ehr.requests if "AllergyIntolerance" in r.url]


def test_banner_hidden_when_the_ehr_shows_its_own(launcher: Launcher, ehr: FakeEhr) -> None:
    ehr.need_patient_banner = False
    html = launcher.page(launcher.launch("p1")).get_data(as_text=True)
    assert 'class="patient-banner"' not in html
    assert 'class="print-only patient-name-print"' in html  # still on paper
    assert "Ada Lovelace" in html


def test_page_is_server_rendered_and_script_free(page_html: str) -> None:
    assert "<script" not in page_html
    assert "<main" in page_html and 'role="banner"' in page_html and 'role="contentinfo"' in page_html
    assert 'lang="en"' in page_html


def test_smart_style_is_applied_safely_and_cached(launcher: Launcher, ehr: FakeEhr) -> None:
    ehr.smart_style_url = "https://ehr.example.org/style.json"
    ehr.style_doc = {
        "color_background": "#edeae3",
        "color_text": "red;} body{display:none",
        "color_highlight": "rgb(0, 92, 173)",
        "dim_font_size": 14,
        "dim_spacing_size": "20px; background:url(https://evil)",
        "font_family_body": '"Helvetica Neue", Arial, sans-serif',
        "font_family_heading": "</style><script>alert(1)</script>",
    }
    sid = launcher.launch("p1")
    first = launcher.page(sid)
    html = first.get_data(as_text=True)
    style = re.search(r'<style nonce="([^"]+)">(.*?)</style>', html, re.S)
    assert style is not None
    nonce, css = style.groups()
    assert f"'nonce-{nonce}'" in first.headers["Content-Security-Policy"]
    assert "--ehr-color-background: #edeae3;" in css
    assert "--ehr-color-highlight: rgb(0, 92, 173);" in css
    assert "--ehr-font-size: 14px;" in css
    assert "--ehr-font-body: Helvetica Neue, Arial, sans-serif;" in css
    assert "display:none" not in html and "evil" not in html and "alert(1)" not in html
    launcher.page(sid)
    assert len([r for r in ehr.requests if r.url.endswith("/style.json")]) == 1


def test_style_failure_does_not_break_the_page(launcher: Launcher, ehr: FakeEhr) -> None:
    ehr.smart_style_url = "https://ehr.example.org/style.json"
    ehr.style_doc = None  # 404
    response = launcher.page(launcher.launch("p1"))
    assert response.status_code == 200
    assert "<style" not in response.get_data(as_text=True)


@pytest.mark.requirement("SMART-REFRESH-1")
def test_token_is_refreshed_and_persisted(launcher: Launcher, ehr: FakeEhr, app) -> None:
    sid = launcher.launch("p1")
    store = app.extensions["fhir_desens"].store
    before = store.get("session", sid)["smart"]["access_token"]
    ehr.clock.advance(ehr.token_lifetime - 10)
    assert launcher.page(sid).status_code == 200
    after = store.get("session", sid)["smart"]["access_token"]
    assert after != before and after in ehr.tokens


def test_401_from_the_ehr_refreshes_once(launcher: Launcher, ehr: FakeEhr) -> None:
    sid = launcher.launch("p1")
    ehr.fhir_401_once = True
    assert launcher.page(sid).status_code == 200
    assert len([r for r in ehr.requests if r.form.get("grant_type") == "refresh_token"]) == 1


def test_expired_token_without_refresh_asks_for_a_new_launch(launcher: Launcher, ehr: FakeEhr) -> None:
    sid = launcher.launch("p1")
    ehr.tokens.clear()
    ehr.refresh_tokens.clear()
    response = launcher.page(sid)
    assert response.status_code == 401
    assert "launch the app again" in response.get_data(as_text=True).lower()


def test_print_styles_exist(make_app: AppFactory) -> None:
    with https_client(make_app()).get("/static/app.css") as response:
        css = response.get_data(as_text=True)
    assert "@media print" in css and "--ehr-color-background" in css
