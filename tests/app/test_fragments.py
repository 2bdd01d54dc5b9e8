"""The plan page's kept sections (smart_app.fragments, smart_app.planning.sections): a page built from
kept sections is the page rendered afresh, for every patient, draft, role and moment; no patient's,
session's or user's section, CSRF token, URL or clock time reaches another's page."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from markupsafe import Markup

from fhir_desens.client.http import NO_RETRY
from smart_app.app_session import CHART_TTL
from smart_app.fragments import Fragment, hole
from smart_app.page_cache import memo
from smart_app.planning import sections
from smart_app.planning.plan_page import context_for
from tests.app.clinician import ALLERGIST
from tests.app.conftest import AppFactory, Launcher, https_client
from tests.app.fake_ehr import FakeEhr
from tests.app.fake_ehr_chart import ALLERGY_CARBOPLATIN_HIVES, ALLERGY_PENICILLIN_SJS
from tests.app.planner import Planner
from tests.html import table_rows, text_of

# --- holes ---------------------------------------------------------------------------------------


def test_a_hole_is_filled_with_its_value_escaped() -> None:
    part = Fragment.of(f'<p title="{hole("who")}">{hole("what")}</p>')
    assert part.holes == {"who", "what"}
    filled = part.fill({"who": 'a"b', "what": "<script>x</script>"})
    assert filled == '<p title="a&#34;b">&lt;script&gt;x&lt;/script&gt;</p>'
    assert isinstance(filled, Markup)
    assert part.fill({"who": "", "what": Markup("<em>kept</em>")}) == '<p title=""><em>kept</em></p>'


def test_a_hole_without_a_value_fails_rather_than_showing() -> None:
    with pytest.raises(KeyError):
        Fragment.of(f"<p>{hole('csrf_token')}</p>").fill({})


def test_a_hole_the_template_altered_is_refused() -> None:
    with pytest.raises(ValueError, match="altered"):
        Fragment.of(f"<p>{hole('clock').upper()}</p>")
    with pytest.raises(ValueError, match="altered"):
        Fragment.of(f"<p>{hole('clock')[:-1]}</p>")


def test_content_cannot_spell_a_hole() -> None:
    """Another process's marker (another nonce) in a chart's text is text, shown as it is."""
    lookalike = "[hole-" + "0" * 32 + "-csrf_token]"
    assert Fragment.of(f"<p>{lookalike}</p>").fill({}) == f"<p>{lookalike}</p>"
    with pytest.raises(ValueError, match="hole names"):
        hole("CSRF token")


# --- the plan page ---------------------------------------------------------------------------------


def _page(planner: Planner, sid: str, draft_id: str) -> str:
    response = planner.page(sid, draft_id)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def _tokens(html: str) -> set[str]:
    return set(re.findall(r'name="csrf_token" value="([^"]+)"', html))


def _forms(html: str) -> set[str]:
    return set(re.findall(r'<form method="post" action="([^"]+)"', html))


def test_kept_sections_make_the_page_rendered_afresh_for_every_patient_and_draft(
    planner: Planner, app: Flask
) -> None:
    """Two patients with the same drug, dose and protocol; two drafts of one session: pages built from
    kept sections (visited in turn, twice) equal the pages rendered with nothing kept."""
    first = planner.launch("carboplatin-ovarian")
    other = planner.launch("p1")  # Ada Lovelace: another patient, another carboplatin allergy record
    pages = [
        (first, planner.create(first, drug="Carboplatin", target_dose="400", dose_unit="mg")),
        (first, planner.create(first, drug="Carboplatin", target_dose="400", dose_unit="mg")),
        (other, planner.create(other, drug="Carboplatin", target_dose="400", dose_unit="mg")),
    ]
    planner.recalculate(first, pages[1][1], protocol="iv-8-step-2-bag")
    kept = [_page(planner, sid, draft_id) for sid, draft_id in pages + pages]
    with app.app_context():
        fragments = memo("fragments")
        assert fragments.hits > 0, "the second visits used kept sections"
        fragments.clear()
    for (sid, draft_id), html in zip(pages + pages, kept, strict=True):
        assert html == _page(planner, sid, draft_id)  # afresh (nothing kept for this draft yet)
        with app.app_context():
            memo("fragments").clear()
        assert _tokens(html) == {planner.csrf(sid)}
        assert _forms(html) and all(f"/s/{sid}/plan/{draft_id}" in action for action in _forms(html))
    assert len(table_rows(kept[0], "steps")) == 12 and len(table_rows(kept[1], "steps")) == 8
    assert "Ada Lovelace" in kept[2] and "Ada Lovelace" not in kept[0]
    allergy_sections = [
        text_of(html.split('id="allergy-heading"')[1].split("</section>")[0]) for html in kept
    ]
    assert allergy_sections[0] != allergy_sections[2]  # each patient's own allergy records


def test_clock_times_are_the_requests_own(planner: Planner, ehr: FakeEhr) -> None:
    sid = planner.launch("carboplatin-ovarian")
    draft_id = planner.create(sid)
    before = table_rows(_page(planner, sid, draft_id), "steps")
    ehr.clock.advance(37 * 60)
    after_html = _page(planner, sid, draft_id)
    after = table_rows(after_html, "steps")
    assert [row[:7] for row in before] == [row[:7] for row in after]  # the same plan
    assert before[0][7] == "08:00 +0 min" and after[0][7] == "08:37 +0 min"  # "if started now", per request
    assert "hole-" not in after_html


def test_a_role_that_changes_the_section_has_its_own(make_app: AppFactory, ehr: FakeEhr) -> None:
    """The same contraindicated draft seen by an allergist and by another clinician: the override form
    asks the non-allergist for a co-signer, the allergist not, whichever was shown first."""
    app = make_app(SMART_CLIENT_OPTIONS={"retry": NO_RETRY})
    planner = Planner(Launcher(https_client(app), ehr), ehr, app)
    sid = planner.launch("sjs-sulfonamide")
    draft_id = planner.create(sid, target_dose="800", dose_unit="mg")
    with app.test_request_context():
        context = context_for(sid, draft_id)
        shown = sections.Shown({"page_url": "/page", "csrf_token": "token"})

        def allergy_section(allergist: bool) -> str:
            return text_of(
                sections.allergy_match(
                    shown,
                    context.draft,
                    context.computed,
                    context.assessment,
                    context.session.chart_key("allergies"),
                    user_is_allergist=allergist,
                    allergists=(),
                )
            )

        other, allergist, other_again = allergy_section(False), allergy_section(True), allergy_section(False)
    assert "an allergist must co-sign" in other and "an allergist must co-sign" not in allergist
    assert other_again == other
    # and through the pages: an allergist's session shows the allergist's form
    ehr.add_resource(ALLERGIST)
    allergist_sid = planner.launch("sjs-sulfonamide")
    allergist_draft = planner.create(allergist_sid, target_dose="800", dose_unit="mg")
    assert "an allergist must co-sign" not in text_of(_page(planner, allergist_sid, allergist_draft))
    assert "an allergist must co-sign" in text_of(_page(planner, sid, draft_id))


# --- the kept page ---------------------------------------------------------------------------------


def _kept_pages(app: Flask) -> int:
    """Plan pages kept whole (smart_app.planning.plan_page.render_plan), besides their sections."""
    with app.app_context():
        return sum(1 for name, _ in memo("fragments")._entries if name == "plan page")


def _afresh(planner: Planner, app: Flask, sid: str, draft_id: str) -> str:
    with app.app_context():
        memo("fragments").clear()
    return _page(planner, sid, draft_id)


def _summary(html: str) -> str:
    """The "Before signing" summary: outside every section, so only the kept page holds it."""
    return text_of(html.split('id="summary-heading"')[1].split("</section>")[0])


def test_an_edited_draft_shows_on_its_kept_page(planner: Planner, app: Flask) -> None:
    sid = planner.launch("carboplatin-ovarian")
    draft_id = planner.create(sid)
    first = _page(planner, sid, draft_id)
    assert _kept_pages(app) == 1 and _page(planner, sid, draft_id) == first  # kept, and served again
    assert "12 steps" in _summary(first)
    assert planner.recalculate(sid, draft_id, protocol="iv-8-step-2-bag").status_code == 303
    edited = _page(planner, sid, draft_id)
    assert "8 steps" in _summary(edited) and "12 steps" not in _summary(edited)
    assert len(table_rows(edited, "steps")) == 8
    assert _kept_pages(app) == 2  # another content, another page
    assert edited == _afresh(planner, app, sid, draft_id)


def test_a_changed_allergy_list_shows_on_the_kept_page(planner: Planner, ehr: FakeEhr, app: Flask) -> None:
    """State outside the draft: the allergy list, read again once CHART_TTL has passed, now records
    Stevens-Johnson syndrome with carboplatin; the page kept before must not be served: no worksheet,
    no signing."""
    sid = planner.launch("carboplatin-ovarian")
    draft_id = planner.create(sid)
    before = _page(planner, sid, draft_id)
    assert _page(planner, sid, draft_id) == before and _kept_pages(app) == 1
    assert "Sign and send orders" in before and "contraindicated" not in text_of(before)
    sjs = dict(ALLERGY_CARBOPLATIN_HIVES, id="carbo-sjs", reaction=ALLERGY_PENICILLIN_SJS["reaction"])
    ehr.allergies["carboplatin-ovarian"].append(
        dict(sjs, patient={"reference": "Patient/carboplatin-ovarian"})
    )
    ehr.clock.advance(CHART_TTL + 1)
    after = _page(planner, sid, draft_id)
    assert "No worksheet and no orders: desensitization is contraindicated" in text_of(after)
    assert "Sign and send orders" not in after and 'id="steps"' not in after
    assert after == _afresh(planner, app, sid, draft_id)


def test_two_sessions_never_see_each_others_kept_page(planner: Planner, app: Flask) -> None:
    """The same patient, drug, dose and protocol in two app sessions: each page holds its own session's
    token and URLs only, whichever was kept first, and equals its page rendered afresh."""
    first, second = planner.launch("carboplatin-ovarian"), planner.launch("carboplatin-ovarian")
    drafts = {sid: planner.create(sid) for sid in (first, second)}
    pages = {sid: _page(planner, sid, draft_id) for sid, draft_id in drafts.items()}
    pages_again = {sid: _page(planner, sid, draft_id) for sid, draft_id in drafts.items()}
    assert pages_again == pages and _kept_pages(app) == 2
    for sid, other in ((first, second), (second, first)):
        assert _tokens(pages[sid]) == {planner.csrf(sid)} and planner.csrf(other) not in pages[sid]
        assert other not in pages[sid] and drafts[other] not in pages[sid]
        assert all(f"/s/{sid}/plan/{drafts[sid]}" in action for action in _forms(pages[sid]))
    for sid, draft_id in drafts.items():
        assert pages[sid] == _afresh(planner, app, sid, draft_id)
