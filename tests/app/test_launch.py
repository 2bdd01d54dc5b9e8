"""/launch and /callback through the Flask test client and the fake EHR."""

from __future__ import annotations

import re
from urllib.parse import urlencode, urlsplit

import pytest
from flask.testing import FlaskClient

from tests.app.conftest import PUBLIC_URL, AppFactory, Launcher, https_client
from tests.app.fake_ehr import AUTHORIZE, FHIR_BASE, TOKEN, FakeEhr, authorize_params
from tests.html import text_of


@pytest.mark.requirement("SMART-AUTH-1")
def test_ehr_launch_redirects_to_the_authorization_endpoint(launcher: Launcher, ehr: FakeEhr) -> None:
    launch = ehr.new_launch("p1")
    response = launcher.get("/launch?" + urlencode({"iss": FHIR_BASE, "launch": launch}))
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(AUTHORIZE + "?")
    params = authorize_params(location)
    assert params["aud"] == FHIR_BASE
    assert params["launch"] == launch
    assert params["redirect_uri"] == PUBLIC_URL + "/callback"
    assert params["client_id"] == "desens-app"
    assert params["code_challenge_method"] == "S256"
    assert len(params["state"]) >= 43
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "iss",
    [
        "https://evil.example.com/fhir",
        "https://ehr.example.org/fhir.evil.example.com",
        "https://ehr.example.org/fhir/../other",
        "https://ehr.example.org.evil.example.com/fhir",
        "http://ehr.example.org/fhir",
        "https://user@ehr.example.org/fhir",
        "javascript:alert(1)",
        "not a url",
        "https://ehr.example.org/fhir?x=1",
        "https://ehr.example.org/fhir#frag",
        "https://ehr.example.org\\@evil.example.com/fhir",
        "https://ehr.example.org:8443/fhir",
        "//ehr.example.org/fhir",
    ],
)
def test_disallowed_iss_is_refused_and_never_contacted(launcher: Launcher, ehr: FakeEhr, iss: str) -> None:
    response = launcher.get("/launch?" + urlencode({"iss": iss, "launch": "abc"}))
    assert response.status_code == 400
    assert "not on the list" in response.get_data(as_text=True)
    assert ehr.requests == [], "no request may reach a non-allowed EHR (not even discovery)"


def test_allowed_iss_matches_after_normalisation(launcher: Launcher, ehr: FakeEhr) -> None:
    response = launcher.get(
        "/launch?" + urlencode({"iss": "HTTPS://EHR.example.org:443/fhir/", "launch": "x"})
    )
    assert response.status_code == 302


def test_disallowed_iss_answers_json_to_machines(client: FlaskClient, ehr: FakeEhr) -> None:
    response = client.get("/launch?iss=https://evil.example.com/fhir", headers={"Accept": "application/json"})
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "InputError" and "iss" in body["message"]


def test_launch_param_without_iss_is_refused(client: FlaskClient, ehr: FakeEhr) -> None:
    assert client.get("/launch?launch=abc").status_code == 400
    assert ehr.requests == []


def test_standalone_launch_with_one_allowed_ehr(launcher: Launcher) -> None:
    response = launcher.get("/launch")
    assert response.status_code == 302
    params = authorize_params(response.headers["Location"])
    assert "launch" not in params
    assert "launch/patient" in params["scope"].split()


def test_standalone_launch_with_several_ehrs_offers_a_choice(make_app: AppFactory, ehr: FakeEhr) -> None:
    app = make_app(ALLOWED_ISS=[FHIR_BASE, "https://other.example.org/fhir"])
    response = https_client(app).get("/launch")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert '<label for="iss">' in html and 'name="iss"' in html
    assert ehr.requests == []


@pytest.mark.requirement("SMART-STATE-2")
def test_callback_with_wrong_state(launcher: Launcher, ehr: FakeEhr) -> None:
    query = ehr.approve(launcher.start())
    response = launcher.callback({**query, "state": query["state"][:-2] + "xx"})
    assert response.status_code == 400
    assert "unknown, expired or was already used" in response.get_data(as_text=True)
    assert not ehr.sent_to(TOKEN)


def test_callback_without_state(launcher: Launcher, ehr: FakeEhr) -> None:
    query = ehr.approve(launcher.start())
    response = launcher.callback({"code": query["code"]})
    assert response.status_code == 400
    assert not ehr.sent_to(TOKEN)


@pytest.mark.requirement("SMART-STATE-2")
def test_callback_with_expired_state(launcher: Launcher, ehr: FakeEhr, app) -> None:
    query = ehr.approve(launcher.start())
    ehr.clock.advance(app.extensions["fhir_desens"].settings.state_ttl + 1)
    response = launcher.callback(query)
    assert response.status_code == 400
    assert not ehr.sent_to(TOKEN)


@pytest.mark.requirement("SMART-STATE-2")
def test_callback_state_is_single_use(launcher: Launcher, ehr: FakeEhr) -> None:
    query = ehr.approve(launcher.start())
    assert launcher.callback(query).status_code == 303
    replay = launcher.callback(query)
    assert replay.status_code == 400
    assert len(ehr.sent_to(TOKEN)) == 1


def test_error_response_is_shown_clearly_and_escaped(launcher: Launcher, ehr: FakeEhr) -> None:
    params = launcher.start()
    response = launcher.callback(
        {"error": "access_denied", "error_description": "<b>User</b> declined", "state": params["state"]}
    )
    assert response.status_code == 403
    html = response.get_data(as_text=True)
    assert "access_denied" in html
    assert "&lt;b&gt;User&lt;/b&gt; declined" in html
    assert "<b>User</b>" not in html
    assert "Open the app again from the EHR" in html
    # the state was consumed: a later code for it is refused
    assert launcher.callback({"code": "x", "state": params["state"]}).status_code == 400


def test_error_response_with_unknown_state_still_shows_the_error(client: FlaskClient) -> None:
    response = client.get("/callback?error=server_error&state=nope")
    assert response.status_code == 403
    assert "server_error" in response.get_data(as_text=True)


def test_failed_token_exchange_is_an_auth_error_page(launcher: Launcher, ehr: FakeEhr) -> None:
    params = launcher.start()
    query = ehr.approve(params)
    ehr.codes.clear()  # the EHR forgets the code
    response = launcher.callback(query)
    assert response.status_code == 401
    html = response.get_data(as_text=True)
    assert "invalid_grant" in html and "Traceback" not in html


def test_successful_callback_creates_a_session_and_redirects(launcher: Launcher) -> None:
    sid = launcher.launch()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", sid)
    response = launcher.responses[-1]
    assert response.headers["Location"].endswith(f"/s/{sid}/patient")
    assert "code=" not in response.headers["Location"] and "state=" not in response.headers["Location"]
    assert response.headers.getlist("Set-Cookie") == []


def test_long_scope_list_uses_an_auto_submitting_post_form(make_app: AppFactory, ehr: FakeEhr) -> None:
    app = make_app(SMART_CLIENT_OPTIONS={"post_threshold": 50})
    client = https_client(app)
    response = client.get("/launch?" + urlencode({"iss": FHIR_BASE, "launch": ehr.new_launch("p1")}))
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert f'<form id="authorize-form" method="post" action="{AUTHORIZE}"' in html
    assert 'name="code_challenge_method" value="S256"' in html
    assert '<button type="submit">' in html  # works without scripts
    assert "/static/autosubmit.js" in html
    csp = response.headers["Content-Security-Policy"]
    assert "form-action 'self' https://ehr.example.org" in csp
    assert "'unsafe-inline'" not in csp
    # the fields posted by the form complete the flow like the GET redirect does
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html))
    import html as html_lib

    fields = {k: html_lib.unescape(v) for k, v in fields.items()}
    query = ehr.approve(fields)
    done = client.get("/callback?" + urlencode(query))
    assert done.status_code == 303
    assert urlsplit(done.headers["Location"]).path.endswith("/patient")


def test_an_expired_launch_says_so_once_in_words_with_the_ehrs_code_apart(launcher: Launcher) -> None:
    """The walk: a replayed launch read "Not allowed / the EHR's authorization server refused the request:
    invalid_request (launch is unknown, expired or already used)", then the code, then the same explanation."""
    params = launcher.start()
    response = launcher.callback(
        {
            "error": "invalid_request",
            "error_description": "launch is unknown, expired or already used",
            "state": params["state"],
        }
    )
    assert response.status_code == 403
    html = response.get_data(as_text=True)
    page = text_of(html)
    assert "The EHR refused the sign-in" in page and "Not allowed" not in page
    assert "refused the sign-in: launch is unknown, expired or already used." in page
    assert page.count("launch is unknown, expired or already used") == 1
    assert "<code>invalid_request</code>" in html  # the code for the administrator, once
    assert page.count("Open the app again from the EHR") == 1


def test_a_replayed_sign_in_response_says_what_to_do_once(launcher: Launcher, ehr: FakeEhr) -> None:
    query = ehr.approve(launcher.start())
    assert launcher.callback(query).status_code == 303
    page = text_of(launcher.callback(query).get_data(as_text=True))
    assert "unknown, expired or was already used" in page
    assert page.count("Open the app again from the EHR") == 1


def test_an_ehr_not_on_the_list_is_refused_without_naming_a_setting(launcher: Launcher) -> None:
    page = text_of(
        launcher.get("/launch?iss=https://evil.example.com/fhir&launch=abc").get_data(as_text=True)
    )
    assert "not on the list of EHRs this app may be launched from" in page
    assert "FHIR_DESENS" not in page and "your administrator" in page
