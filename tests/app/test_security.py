"""Headers, CSRF, session scoping, secrets never leaking, and no tracebacks for users."""

from __future__ import annotations

import logging
import re

import pytest
from flask.testing import FlaskClient

from tests.app.conftest import PUBLIC_URL, AppFactory, Launcher, https_client
from tests.app.fake_ehr import FakeEhr


def test_csp_and_security_headers(launcher: Launcher) -> None:
    sid = launcher.launch("p1")
    response = launcher.page(sid)
    csp = response.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["frame-ancestors"] == "https://ehr.example.org https://*.ehr.example.org"
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["base-uri"] == "'none'"
    assert directives["form-action"] == "'self'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "X-Frame-Options" not in response.headers
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"


def test_frame_ancestors_default_is_self(make_app: AppFactory) -> None:
    app = make_app(FRAME_ANCESTORS=None)
    csp = https_client(app).get("/healthz").headers["Content-Security-Policy"]
    assert csp.endswith("frame-ancestors 'self'")


def test_error_pages_carry_the_headers_too(client: FlaskClient) -> None:
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert "frame-ancestors" in response.headers["Content-Security-Policy"]


def _csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match
    return match.group(1)


@pytest.mark.requirement("SEC-CSRF-1")
def test_post_without_csrf_token_is_refused(launcher: Launcher, client: FlaskClient) -> None:
    sid = launcher.launch("p1")
    response = client.post(f"/s/{sid}/end")
    assert response.status_code == 400
    assert "not sent by this app session" in response.get_data(as_text=True)
    assert launcher.page(sid).status_code == 200, "the session must survive a forged request"


def test_post_with_wrong_or_foreign_csrf_token_is_refused(launcher: Launcher, client: FlaskClient) -> None:
    sid1, sid2 = launcher.launch("p1"), launcher.launch("p2")
    token2 = _csrf_token(launcher.page(sid2).get_data(as_text=True))
    assert client.post(f"/s/{sid1}/end", data={"csrf_token": "x" * 43}).status_code == 400
    assert client.post(f"/s/{sid1}/end", data={"csrf_token": token2}).status_code == 400
    assert launcher.page(sid1).status_code == 200


def test_cross_origin_post_is_refused_even_with_the_token(launcher: Launcher, client: FlaskClient) -> None:
    sid = launcher.launch("p1")
    token = _csrf_token(launcher.page(sid).get_data(as_text=True))
    response = client.post(
        f"/s/{sid}/end", data={"csrf_token": token}, headers={"Origin": "https://evil.example"}
    )
    assert response.status_code == 400


def test_end_session_with_token(launcher: Launcher, client: FlaskClient) -> None:
    sid = launcher.launch("p1")
    token = _csrf_token(launcher.page(sid).get_data(as_text=True))
    response = client.post(f"/s/{sid}/end", data={"csrf_token": token}, headers={"Origin": PUBLIC_URL})
    assert response.status_code == 200
    assert "Session ended" in response.get_data(as_text=True)
    assert launcher.page(sid).status_code == 401


def test_header_csrf_token_works_for_scripts(launcher: Launcher, client: FlaskClient) -> None:
    sid = launcher.launch("p1")
    token = _csrf_token(launcher.page(sid).get_data(as_text=True))
    assert client.post(f"/s/{sid}/end", headers={"X-CSRF-Token": token}).status_code == 200


def test_every_state_changing_method_is_checked(client: FlaskClient) -> None:
    for method in ("post", "put", "patch", "delete"):
        assert getattr(client, method)("/launch").status_code == 400


@pytest.mark.requirement("SEC-SESSION-1")
def test_two_launches_in_one_browser_never_mix(launcher: Launcher) -> None:
    sid1 = launcher.launch("p1")
    sid2 = launcher.launch("p2")
    assert sid1 != sid2
    page1 = launcher.page(sid1).get_data(as_text=True)
    page2 = launcher.page(sid2).get_data(as_text=True)
    assert "Ada Lovelace" in page1 and "Grace Hopper" not in page1
    assert "Grace Hopper" in page2 and "Ada Lovelace" not in page2
    assert "Penicillin" in page1 and "Penicillin" not in page2
    # interleaved again, after the second launch: the first is unaffected
    assert "Ada Lovelace" in launcher.page(sid1).get_data(as_text=True)


def test_session_survives_without_cookies(launcher: Launcher, app) -> None:
    sid = launcher.launch("p1")
    fresh_browser = https_client(app)  # no cookie jar shared with the launching client
    assert fresh_browser.get(f"/s/{sid}/patient").status_code == 200
    assert launcher.client.get_cookie("session") is None


@pytest.mark.parametrize("sid", ["A" * 43, "short", "../../etc/passwd"])
def test_unknown_session_ids(client: FlaskClient, sid: str) -> None:
    response = client.get(f"/s/{sid}/patient")
    assert response.status_code in (401, 404)
    assert "Traceback" not in response.get_data(as_text=True)


def test_session_expires(launcher: Launcher, ehr: FakeEhr, app) -> None:
    sid = launcher.launch("p1")
    ehr.clock.advance(app.extensions["fhir_desens"].settings.session_ttl + 1)
    assert launcher.page(sid).status_code == 401


@pytest.mark.requirement("SEC-TOKENS-1")
def test_tokens_never_reach_pages_cookies_urls_or_logs(
    launcher: Launcher, ehr: FakeEhr, caplog: pytest.LogCaptureFixture, make_app: AppFactory
) -> None:
    caplog.set_level(logging.DEBUG)
    sid = launcher.launch("p1")
    launcher.page(sid)
    ehr.clock.advance(ehr.token_lifetime - 5)
    launcher.page(sid)  # with a refresh
    ehr.fhir_401_once = True
    launcher.page(sid)  # with a 401-triggered refresh
    secrets_seen = {*ehr.tokens, *ehr.refresh_tokens}
    secrets_seen |= {r.form["code_verifier"] for r in ehr.requests if "code_verifier" in r.form}
    secrets_seen |= {r.form["code"] for r in ehr.requests if "code" in r.form}
    assert len(secrets_seen) >= 6
    for response in launcher.responses:
        exposed = response.get_data(as_text=True) + str(response.headers)
        for secret in secrets_seen:
            assert secret not in exposed
        assert not response.headers.getlist("Set-Cookie")
    for record in caplog.records:
        message = record.getMessage()
        for secret in secrets_seen:
            assert secret not in message
    assert "token exchange succeeded" in caplog.text


def test_unexpected_errors_show_no_traceback(
    launcher: Launcher, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sid = launcher.launch("p1")

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("internal detail that must stay on the server")

    monkeypatch.setattr("smart_app.chart.views.load_patient_page", boom)
    response = launcher.page(sid)
    assert response.status_code == 500
    html = response.get_data(as_text=True)
    assert "internal detail" not in html and "Traceback" not in html and "RuntimeError" not in html
    assert "reference" in html
    assert "internal detail" in caplog.text  # logged for the operators
    json_response = launcher.client.get(f"/s/{sid}/patient", headers={"Accept": "application/json"})
    assert json_response.status_code == 500
    assert json_response.get_json()["error"] == "InternalError"


def test_fhir_server_errors_are_readable(launcher: Launcher, ehr: FakeEhr) -> None:
    sid = launcher.launch("p1")
    ehr.patients.clear()
    response = launcher.page(sid)
    assert response.status_code == 404
    assert "Traceback" not in response.get_data(as_text=True)


def test_foreign_allergies_from_a_buggy_server_are_dropped(launcher: Launcher, ehr: FakeEhr) -> None:
    sid = launcher.launch("p2")
    ehr.allergies["p2"] = [{**ehr.allergies["p1"][2], "patient": {"reference": "Patient/p1"}}]
    html = launcher.page(sid).get_data(as_text=True)
    assert "Penicillin" not in html
