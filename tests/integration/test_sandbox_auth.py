"""The sandbox SMART authorization server, driven over HTTP like a SMART App Launch 2.x client would.

No mocks: a real Sandbox (Werkzeug + Authlib) in front of the real FHIR server process. The client code
below is deliberately written here from the spec (requests + hashlib + joserfc), independent of the app's
own SMART client.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from fhir_desens.sandbox.fhir_server import FhirServerProcess
from fhir_desens.sandbox.server import Sandbox

pytestmark = pytest.mark.integration

APP = "http://127.0.0.1:9/app"  # never contacted: the tests read the redirects instead of following them
REDIRECT_URI = f"{APP}/callback"
LAUNCH_URL = f"{APP}/launch"
EHR_SCOPE = "launch openid fhirUser online_access patient/AllergyIntolerance.rs patient/Patient.r"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


# -- a minimal, spec-following SMART client ------------------------------------------------------------


def http_get(url: str, **options: Any) -> requests.Response:
    return requests.request("GET", url, timeout=options.pop("timeout", 10), **options)


def http_post(url: str, **options: Any) -> requests.Response:
    return requests.request("POST", url, timeout=options.pop("timeout", 10), **options)


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


class SmartClient:
    """Registered in the sandbox; walks the launch, authorize and token steps and returns raw responses."""

    def __init__(
        self,
        sandbox: Sandbox,
        client_id: str,
        *,
        secret: str | None = None,
        key: RSAKey | ECKey | None = None,
        alg: str | None = None,
    ) -> None:
        self.sandbox = sandbox
        self.client_id = client_id
        self.secret = secret
        self.key = key
        self.alg = alg
        self.config = http_get(f"{sandbox.fhir_base_url}/.well-known/smart-configuration", timeout=10).json()
        self.verifier = ""
        self.state = ""
        self.nonce = ""

    def ehr_launch(self, patient: str = "carboplatin-ovarian", **extra: str) -> dict[str, str]:
        response = http_get(
            self.sandbox.launch_url(patient, app=self.client_id, **extra), allow_redirects=False, timeout=10
        )
        assert response.status_code == 302, response.text
        location = response.headers["Location"]
        assert location.startswith(LAUNCH_URL + "?")
        return query_of(location)

    def authorize(
        self,
        scope: str,
        *,
        launch: str | None = None,
        method: str = "GET",
        **overrides: str | None,
    ) -> requests.Response:
        self.verifier, challenge = pkce_pair()
        self.state = secrets.token_urlsafe(16)
        self.nonce = secrets.token_urlsafe(16)
        params: dict[str, str | None] = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": scope,
            "state": self.state,
            "aud": self.sandbox.fhir_base_url,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "nonce": self.nonce,
        }
        if launch is not None:
            params["launch"] = launch
        params.update(overrides)
        sent = {k: v for k, v in params.items() if v is not None}
        url = self.config["authorization_endpoint"]
        if method == "POST":
            return http_post(url, data=sent, allow_redirects=False, timeout=10)
        return http_get(url, params=sent, allow_redirects=False, timeout=10)

    def code_from(self, response: requests.Response) -> str:
        assert response.status_code == 302, response.text[:500]
        location = response.headers["Location"]
        assert location.startswith(REDIRECT_URI + "?")
        params = query_of(location)
        assert params.get("state") == self.state
        assert "error" not in params, params
        return params["code"]

    def client_auth(self, form: dict[str, str], headers: dict[str, str], **assertion: Any) -> None:
        if self.secret is not None:
            basic = base64.b64encode(f"{self.client_id}:{self.secret}".encode()).decode()
            headers["Authorization"] = f"Basic {basic}"
        elif self.key is not None:
            form["client_assertion_type"] = ASSERTION_TYPE
            form["client_assertion"] = self.assertion(**assertion)
        else:
            form["client_id"] = self.client_id

    def assertion(
        self, *, header: dict[str, Any] | None = None, **claims: Any
    ) -> str:  # the SMART asymmetric authentication JWT
        assert self.key is not None and self.alg is not None
        now = int(time.time())
        body = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.config["token_endpoint"],
            "exp": now + 240,
            "jti": str(uuid.uuid4()),
            **claims,
        }
        head = {"alg": self.alg, "kid": self.key.kid, "typ": "JWT", **(header or {})}
        return jwt.encode(head, body, self.key, algorithms=[self.alg])

    def token(self, code: str, *, verifier: str | None = None, **assertion: Any) -> requests.Response:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": self.verifier if verifier is None else verifier,
        }
        form = {k: v for k, v in form.items() if v != ""}
        headers: dict[str, str] = {}
        self.client_auth(form, headers, **assertion)
        return http_post(self.config["token_endpoint"], data=form, headers=headers, timeout=10)

    def refresh(self, refresh_token: str, scope: str | None = None) -> requests.Response:
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        if scope is not None:
            form["scope"] = scope
        headers: dict[str, str] = {}
        self.client_auth(form, headers)
        return http_post(self.config["token_endpoint"], data=form, headers=headers, timeout=10)

    def full_ehr_launch(self, scope: str = EHR_SCOPE, patient: str = "carboplatin-ovarian") -> dict[str, Any]:
        launch = self.ehr_launch(patient)
        code = self.code_from(self.authorize(scope, launch=launch["launch"]))
        response = self.token(code)
        assert response.status_code == 200, response.text
        token: dict[str, Any] = response.json()
        return token


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox(fhir_server: FhirServerProcess) -> Iterator[Sandbox]:
    with Sandbox(fhir_base_url=fhir_server.base_url) as running:
        yield running


@pytest.fixture(scope="module")
def short_sandbox(fhir_server: FhirServerProcess) -> Iterator[Sandbox]:
    """Launch ids, codes and access tokens that live one second."""
    with Sandbox(
        fhir_base_url=fhir_server.base_url, launch_lifetime=1, code_lifetime=1, access_token_lifetime=1
    ) as running:
        yield running


def register_public(sandbox: Sandbox, **options: Any) -> SmartClient:
    client_id = f"public-{uuid.uuid4().hex[:8]}"
    sandbox.register_client(client_id, "public", [REDIRECT_URI], launch_url=LAUNCH_URL, **options)
    return SmartClient(sandbox, client_id)


@pytest.fixture
def public(sandbox: Sandbox) -> SmartClient:
    return register_public(sandbox)


@pytest.fixture
def symmetric(sandbox: Sandbox) -> SmartClient:
    client_id = f"symmetric-{uuid.uuid4().hex[:8]}"
    secret = secrets.token_urlsafe(32)
    sandbox.register_client(client_id, "symmetric", [REDIRECT_URI], launch_url=LAUNCH_URL, secret=secret)
    return SmartClient(sandbox, client_id, secret=secret)


def make_key(alg: str) -> RSAKey | ECKey:
    kid = f"{alg.lower()}-{uuid.uuid4().hex[:6]}"
    if alg == "RS384":
        return RSAKey.generate_key(2048, parameters={"kid": kid}, private=True)
    return ECKey.generate_key("P-384", parameters={"kid": kid}, private=True)


def register_asymmetric(sandbox: Sandbox, alg: str, *, jwks_url: str | None = None) -> SmartClient:
    key = make_key(alg)
    client_id = f"asymmetric-{uuid.uuid4().hex[:8]}"
    public_jwks = {"keys": [key.as_dict(private=False)]}
    sandbox.register_client(
        client_id,
        "asymmetric",
        [REDIRECT_URI],
        launch_url=LAUNCH_URL,
        jwks=None if jwks_url else public_jwks,
        jwks_url=jwks_url,
    )
    return SmartClient(sandbox, client_id, key=key, alg=alg)


@pytest.fixture(params=["RS384", "ES384"])
def asymmetric(request: pytest.FixtureRequest, sandbox: Sandbox) -> SmartClient:
    return register_asymmetric(sandbox, request.param)


# -- discovery -------------------------------------------------------------------------------------


def test_discovery_document_is_served_at_both_locations_with_cors(sandbox: Sandbox) -> None:
    at_base = http_get(
        f"{sandbox.fhir_base_url}/.well-known/smart-configuration", headers={"Accept": "application/json"}
    )
    at_root = http_get(f"{sandbox.issuer}/.well-known/smart-configuration")
    assert at_base.status_code == at_root.status_code == 200
    assert at_base.headers["Content-Type"].startswith("application/json")
    assert at_base.headers["Access-Control-Allow-Origin"] == "*"
    config = at_base.json()
    assert config == at_root.json()
    assert config["issuer"] == sandbox.issuer
    assert config["authorization_endpoint"] == sandbox.authorize_url
    assert config["token_endpoint"] == sandbox.token_url
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert set(config["token_endpoint_auth_methods_supported"]) >= {"private_key_jwt", "client_secret_basic"}
    assert set(config["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384"}
    assert set(config["grant_types_supported"]) == {"authorization_code", "refresh_token"}
    assert config["response_types_supported"] == ["code"]
    assert {"launch", "launch/patient", "openid", "fhirUser", "offline_access"} <= set(
        config["scopes_supported"]
    )
    assert set(config["capabilities"]) >= {
        "launch-ehr", "launch-standalone", "client-public", "client-confidential-symmetric",
        "client-confidential-asymmetric", "context-ehr-patient", "context-ehr-encounter",
        "context-standalone-patient", "permission-v1", "permission-v2", "permission-patient",
        "permission-user", "sso-openid-connect", "context-banner", "context-style",
        "permission-offline", "permission-online",
    }  # fmt: skip
    jwks = http_get(config["jwks_uri"]).json()
    assert [k["kty"] for k in jwks["keys"]] == ["RSA"]
    assert all("d" not in k and "p" not in k for k in jwks["keys"])  # public members only


def test_metadata_is_public_and_advertises_oauth_uris_for_smart_v1(sandbox: Sandbox) -> None:
    response = http_get(f"{sandbox.fhir_base_url}/metadata")
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    capability = response.json()
    assert capability["resourceType"] == "CapabilityStatement"
    security = capability["rest"][0]["security"]
    (oauth,) = [e for e in security["extension"] if e["url"].endswith("/oauth-uris")]
    uris = {e["url"]: e["valueUri"] for e in oauth["extension"]}
    assert uris == {"authorize": sandbox.authorize_url, "token": sandbox.token_url}
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    assert sandbox.backend_url not in response.text  # rewritten to the gateway base


def test_openid_configuration_matches_the_issuer(sandbox: Sandbox) -> None:
    config = http_get(f"{sandbox.issuer}/.well-known/openid-configuration").json()
    assert config["issuer"] == sandbox.issuer
    assert config["id_token_signing_alg_values_supported"] == ["RS256"]


# -- EHR launch --------------------------------------------------------------------------------------


def verify_id_token(sandbox: Sandbox, client: SmartClient, id_token: str) -> dict[str, Any]:
    jwks = KeySet.import_key_set(http_get(client.config["jwks_uri"]).json())
    claims: dict[str, Any] = jwt.decode(id_token, jwks, algorithms=["RS256"]).claims
    registry = jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": sandbox.issuer},
        aud={"essential": True, "value": client.client_id},
        exp={"essential": True},
        iat={"essential": True},
        sub={"essential": True},
    )
    registry.validate(claims)
    return claims


def test_ehr_launch_gives_patient_encounter_user_banner_style_and_a_verifiable_id_token(
    sandbox: Sandbox, public: SmartClient
) -> None:
    patient_id = sandbox.summary.patients["carboplatin-ovarian"].id
    practitioner = sandbox.summary.practitioners["PR-0001"]
    encounter = http_post(
        f"{sandbox.backend_url}/Encounter",
        json={
            "resourceType": "Encounter",
            "status": "in-progress",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": f"Patient/{patient_id}"},
        },
        headers={"Content-Type": "application/fhir+json"},
    ).json()

    launch = public.ehr_launch(
        "carboplatin-ovarian", practitioner="PR-0001", encounter=encounter["id"], need_patient_banner="false"
    )
    assert launch["iss"] == sandbox.fhir_base_url
    response = public.authorize(EHR_SCOPE, launch=launch["launch"])
    code = public.code_from(response)
    token_response = public.token(code)

    assert token_response.status_code == 200, token_response.text
    assert token_response.headers["Cache-Control"] == "no-store"
    assert token_response.headers["Pragma"] == "no-cache"
    token = token_response.json()
    assert token["token_type"] == "Bearer"
    assert 0 < token["expires_in"] <= 3600
    assert token["scope"].split() == EHR_SCOPE.split()
    assert token["patient"] == patient_id
    assert token["encounter"] == encounter["id"]
    assert token["fhirUser"] == f"{sandbox.fhir_base_url}/Practitioner/{practitioner.id}"
    assert token["need_patient_banner"] is False
    assert token["smart_style_url"] == f"{sandbox.issuer}/smart-style.json"
    assert token["refresh_token"]  # online_access
    claims = verify_id_token(sandbox, public, token["id_token"])
    assert claims["fhirUser"] == token["fhirUser"]
    assert claims["nonce"] == public.nonce
    style = http_get(token["smart_style_url"])
    assert style.headers["Access-Control-Allow-Origin"] == "*"
    assert "color_background" in style.json()
    # the token works at the FHIR gateway
    own = http_get(
        f"{sandbox.fhir_base_url}/Patient/{patient_id}",
        headers={"Authorization": f"Bearer {token['access_token']}"},
    )
    assert own.status_code == 200, own.text


def test_each_launch_is_fresh_and_authorize_accepts_post(sandbox: Sandbox, public: SmartClient) -> None:
    first, second = public.ehr_launch(), public.ehr_launch()
    assert first["launch"] != second["launch"]
    response = public.authorize(EHR_SCOPE, launch=first["launch"], method="POST")
    assert public.token(public.code_from(response)).status_code == 200


def test_replayed_launch_id_is_rejected(public: SmartClient) -> None:
    launch = public.ehr_launch()["launch"]
    public.code_from(public.authorize(EHR_SCOPE, launch=launch))
    again = public.authorize(EHR_SCOPE, launch=launch)
    assert again.status_code == 302
    params = query_of(again.headers["Location"])
    assert params["error"] == "invalid_request"
    assert params["state"] == public.state
    assert "code" not in params


def test_expired_launch_id_is_rejected(short_sandbox: Sandbox) -> None:
    client = register_public(short_sandbox)
    launch = client.ehr_launch()["launch"]
    time.sleep(1.2)
    params = query_of(client.authorize(EHR_SCOPE, launch=launch).headers["Location"])
    assert params["error"] == "invalid_request"
    assert "code" not in params


def test_launch_made_for_another_app_is_rejected(sandbox: Sandbox, public: SmartClient) -> None:
    other = register_public(sandbox)
    launch = other.ehr_launch()["launch"]
    params = query_of(public.authorize(EHR_SCOPE, launch=launch).headers["Location"])
    assert params["error"] == "invalid_request"


def test_launch_scope_without_launch_parameter_is_rejected(public: SmartClient) -> None:
    params = query_of(public.authorize(EHR_SCOPE).headers["Location"])
    assert params["error"] == "invalid_request"


def test_launch_redirect_only_goes_to_registered_apps(sandbox: Sandbox) -> None:
    response = http_get(
        sandbox.launch_url("carboplatin-ovarian", app="https://evil.example/launch"), allow_redirects=False
    )
    assert response.status_code == 400
    assert "Location" not in response.headers


# -- standalone launch ----------------------------------------------------------------------------------


def test_standalone_launch_uses_the_patient_picker(sandbox: Sandbox, public: SmartClient) -> None:
    scope = "launch/patient openid fhirUser patient/AllergyIntolerance.rs"
    page = public.authorize(scope)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    csp = page.headers["Content-Security-Policy"]
    assert "form-action 'self' http://127.0.0.1:9" in csp
    chosen = sandbox.summary.patients["sjs-sulfonamide"]
    assert chosen.id in page.text
    pending = page.text.split('name="pending" value="', 1)[1].split('"', 1)[0]
    practitioner = sandbox.summary.practitioners["PR-0101"]
    selected = http_post(
        f"{sandbox.issuer}/auth/authorize/select",
        data={"pending": pending, "patient": chosen.id, "practitioner": practitioner.id},
        allow_redirects=False,
    )
    token = public.token(public.code_from(selected)).json()
    assert token["patient"] == chosen.id
    assert token["need_patient_banner"] is True
    assert "encounter" not in token
    assert token["fhirUser"].endswith(f"/Practitioner/{practitioner.id}")
    assert "refresh_token" not in token  # neither online_access nor offline_access was asked for
    # the pending authorization is single use
    again = http_post(
        f"{sandbox.issuer}/auth/authorize/select",
        data={"pending": pending, "patient": chosen.id},
        allow_redirects=False,
    )
    assert again.status_code == 400
    assert "Location" not in again.headers


def test_the_user_can_deny_on_the_picker(sandbox: Sandbox, public: SmartClient) -> None:
    page = public.authorize("launch/patient patient/AllergyIntolerance.rs")
    pending = page.text.split('name="pending" value="', 1)[1].split('"', 1)[0]
    denied = http_post(
        f"{sandbox.issuer}/auth/authorize/select",
        data={"pending": pending, "decision": "deny"},
        allow_redirects=False,
    )
    assert denied.status_code == 302
    params = query_of(denied.headers["Location"])
    assert params["error"] == "access_denied"
    assert params["state"] == public.state
    assert "code" not in params


def test_standalone_launch_without_patient_context_needs_no_picker(public: SmartClient) -> None:
    response = public.authorize("openid fhirUser user/Practitioner.rs")
    token = public.token(public.code_from(response)).json()
    assert "patient" not in token
    assert token["fhirUser"]


# -- client types ------------------------------------------------------------------------------------


def test_symmetric_client_authenticates_with_basic(sandbox: Sandbox, symmetric: SmartClient) -> None:
    token = symmetric.full_ehr_launch()
    assert token["patient"] == sandbox.summary.patients["carboplatin-ovarian"].id


def test_symmetric_client_with_wrong_secret_is_refused(symmetric: SmartClient) -> None:
    launch = symmetric.ehr_launch()["launch"]
    code = symmetric.code_from(symmetric.authorize(EHR_SCOPE, launch=launch))
    symmetric.secret = "not-the-secret"
    response = symmetric.token(code)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_confidential_client_cannot_pose_as_public(symmetric: SmartClient) -> None:
    launch = symmetric.ehr_launch()["launch"]
    code = symmetric.code_from(symmetric.authorize(EHR_SCOPE, launch=launch))
    secret, symmetric.secret = symmetric.secret, None  # send client_id only
    response = symmetric.token(code)
    symmetric.secret = secret
    assert response.status_code in (400, 401)
    assert response.json()["error"] == "invalid_client"


def test_asymmetric_client_authenticates_with_private_key_jwt(
    sandbox: Sandbox, asymmetric: SmartClient
) -> None:
    token = asymmetric.full_ehr_launch()
    assert token["patient"] == sandbox.summary.patients["carboplatin-ovarian"].id


@pytest.mark.parametrize(
    ("problem", "assertion"),
    [
        ("more than five minutes", {"exp_in": 600}),
        ("expired", {"exp_in": -120}),
        ("'aud'", {"aud": "https://other.example/token"}),
        ("Issuer and Subject", {"iss": "someone-else"}),
        ("kid", {"header": {"kid": "no-such-key"}}),
        ("jku", {"header": {"jku": "https://evil.example/jwks.json"}}),
    ],
    ids=["exp-too-far", "expired", "wrong-aud", "iss-not-sub", "unknown-kid", "unregistered-jku"],
)
def test_private_key_jwt_is_refused_when(
    asymmetric: SmartClient, problem: str, assertion: dict[str, Any]
) -> None:
    if "exp_in" in assertion:
        assertion = {"exp": int(time.time()) + assertion["exp_in"]}
    launch = asymmetric.ehr_launch()["launch"]
    code = asymmetric.code_from(asymmetric.authorize(EHR_SCOPE, launch=launch))
    response = asymmetric.token(code, **assertion)
    assert response.status_code in (400, 401), problem
    assert response.json()["error"] == "invalid_client", problem
    assert problem in response.json()["error_description"]


def test_private_key_jwt_jti_is_single_use(asymmetric: SmartClient) -> None:
    jti = str(uuid.uuid4())
    launch = asymmetric.ehr_launch()["launch"]
    code = asymmetric.code_from(asymmetric.authorize(EHR_SCOPE, launch=launch))
    assert asymmetric.token(code, jti=jti).status_code == 200
    launch = asymmetric.ehr_launch()["launch"]
    code = asymmetric.code_from(asymmetric.authorize(EHR_SCOPE, launch=launch))
    replay = asymmetric.token(code, jti=jti)
    assert replay.status_code in (400, 401)
    assert replay.json()["error"] == "invalid_client"


def test_private_key_jwt_with_another_alg_is_refused(sandbox: Sandbox) -> None:
    client = register_asymmetric(sandbox, "RS384")
    client.alg = "RS256"  # same RSA key, an algorithm outside RS384/ES384
    launch = client.ehr_launch()["launch"]
    code = client.code_from(client.authorize(EHR_SCOPE, launch=launch))
    response = client.token(code)
    assert response.json()["error"] == "invalid_client"


@pytest.fixture
def jwks_host() -> Iterator[tuple[str, dict[str, Any]]]:
    """A tiny HTTP server publishing a client's JWK Set (the registration-time JWKS URL)."""
    published: dict[str, Any] = {"keys": []}

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        assert request.headers.get("Accept") == "application/json"
        return Response(json.dumps(published), content_type="application/json")(environ, start_response)

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.socket.getsockname()[1]}/jwks.json", published
    finally:
        server.shutdown()
        server.server_close()


def test_asymmetric_client_keys_can_come_from_a_jwks_url(
    sandbox: Sandbox, jwks_host: tuple[str, dict[str, Any]]
) -> None:
    url, published = jwks_host
    client = register_asymmetric(sandbox, "ES384", jwks_url=url)
    assert client.key is not None
    published["keys"] = [client.key.as_dict(private=False)]
    token = client.full_ehr_launch()
    assert token["access_token"]
    # jku naming the registered URL is accepted
    launch = client.ehr_launch()["launch"]
    code = client.code_from(client.authorize(EHR_SCOPE, launch=launch))
    assert client.token(code, header={"jku": url}).status_code == 200
    # the client rotates its key: the server reads the JWK Set again when the kid is new
    client.key = make_key("ES384")
    published["keys"] = [client.key.as_dict(private=False)]
    assert client.full_ehr_launch()["access_token"]


# -- PKCE, codes, redirect and aud checks ---------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"code_challenge": None, "code_challenge_method": None},
        {"code_challenge_method": "plain"},
        {"code_challenge_method": None},
    ],
    ids=["no-pkce", "plain", "no-method"],
)
def test_authorize_without_s256_pkce_is_refused(
    public: SmartClient, overrides: dict[str, str | None]
) -> None:
    launch = public.ehr_launch()["launch"]
    response = public.authorize(EHR_SCOPE, launch=launch, **overrides)
    params = query_of(response.headers["Location"])
    assert params["error"] == "invalid_request"
    assert params["state"] == public.state
    assert "code" not in params


def test_wrong_or_missing_code_verifier_is_refused_and_burns_the_code(public: SmartClient) -> None:
    launch = public.ehr_launch()["launch"]
    code = public.code_from(public.authorize(EHR_SCOPE, launch=launch))
    wrong = public.token(code, verifier=pkce_pair()[0])
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"
    assert public.token(code).status_code == 400  # the right verifier is too late now

    launch = public.ehr_launch()["launch"]
    code = public.code_from(public.authorize(EHR_SCOPE, launch=launch))
    missing = public.token(code, verifier="")
    assert missing.status_code == 400
    assert missing.json()["error"] == "invalid_request"


def test_confidential_clients_need_pkce_too(symmetric: SmartClient) -> None:
    launch = symmetric.ehr_launch()["launch"]
    code = symmetric.code_from(symmetric.authorize(EHR_SCOPE, launch=launch))
    response = symmetric.token(code, verifier="")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_code_replay_is_refused_and_revokes_the_tokens_it_gave(sandbox: Sandbox, public: SmartClient) -> None:
    launch = public.ehr_launch()["launch"]
    code = public.code_from(public.authorize(EHR_SCOPE, launch=launch))
    first = public.token(code)
    assert first.status_code == 200
    access = first.json()["access_token"]
    patient = first.json()["patient"]
    replay = public.token(code)
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    after = http_get(
        f"{sandbox.fhir_base_url}/Patient/{patient}", headers={"Authorization": f"Bearer {access}"}
    )
    assert after.status_code == 401


def test_expired_code_is_refused(short_sandbox: Sandbox) -> None:
    client = register_public(short_sandbox)
    launch = client.ehr_launch()["launch"]
    code = client.code_from(client.authorize(EHR_SCOPE, launch=launch))
    time.sleep(1.2)
    assert client.token(code).json()["error"] == "invalid_grant"


def test_token_redirect_uri_must_match(public: SmartClient) -> None:
    launch = public.ehr_launch()["launch"]
    code = public.code_from(public.authorize(EHR_SCOPE, launch=launch))
    response = http_post(
        public.config["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI + "/other",
            "code_verifier": public.verifier,
            "client_id": public.client_id,
        },
    )
    assert response.json()["error"] == "invalid_grant"


def test_wrong_aud_is_refused(public: SmartClient) -> None:
    launch = public.ehr_launch()["launch"]
    response = public.authorize(EHR_SCOPE, launch=launch, aud="https://counterfeit.example/fhir")
    params = query_of(response.headers["Location"])
    assert params["error"] == "invalid_request"
    assert "code" not in params


def test_missing_state_is_refused(public: SmartClient) -> None:
    launch = public.ehr_launch()["launch"]
    response = public.authorize(EHR_SCOPE, launch=launch, state=None)
    assert query_of(response.headers["Location"])["error"] == "invalid_request"


@pytest.mark.parametrize(
    "overrides",
    [
        {"redirect_uri": "https://evil.example/callback"},
        {"redirect_uri": REDIRECT_URI + "/"},  # exact match only
        {"redirect_uri": None},
        {"client_id": "no-such-client"},
    ],
    ids=["foreign", "not-exact", "missing", "unknown-client"],
)
def test_untrusted_redirects_are_shown_not_followed(
    public: SmartClient, overrides: dict[str, str | None]
) -> None:
    launch = public.ehr_launch()["launch"]
    response = public.authorize(EHR_SCOPE, launch=launch, **overrides)
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert response.headers["Content-Type"].startswith("text/html")
    assert "evil.example" not in response.text


# -- refresh and granted scope ---------------------------------------------------------------------


def test_refresh_rotates_the_refresh_token_and_can_narrow_the_scope(
    sandbox: Sandbox, public: SmartClient
) -> None:
    token = public.full_ehr_launch()
    refreshed = public.refresh(token["refresh_token"], scope="patient/Patient.r")
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.headers["Cache-Control"] == "no-store"
    body = refreshed.json()
    assert body["scope"] == "patient/Patient.r"
    assert body["access_token"] != token["access_token"]
    assert body["patient"] == token["patient"]
    assert body["refresh_token"] != token["refresh_token"]
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    patient_url = f"{sandbox.fhir_base_url}/Patient/{token['patient']}"
    assert http_get(patient_url, headers=headers).status_code == 200
    allergies = http_get(f"{sandbox.fhir_base_url}/AllergyIntolerance", headers=headers)
    assert allergies.status_code == 403  # not in the narrowed scope
    # the new refresh token keeps the original grant (RFC 6749 section 6)
    again = public.refresh(body["refresh_token"])
    assert again.status_code == 200
    assert again.json()["scope"].split() == EHR_SCOPE.split()
    # a rotated-out refresh token is refused, and its reuse revokes the whole grant (RFC 9700 4.14.2)
    assert public.refresh(token["refresh_token"]).json()["error"] == "invalid_grant"
    assert public.refresh(again.json()["refresh_token"]).json()["error"] == "invalid_grant"
    gone = http_get(patient_url, headers={"Authorization": f"Bearer {again.json()['access_token']}"})
    assert gone.status_code == 401


def test_refresh_cannot_widen_the_scope(public: SmartClient) -> None:
    token = public.full_ehr_launch()
    response = public.refresh(token["refresh_token"], scope="patient/AllergyIntolerance.cruds")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def test_confidential_refresh_requires_client_authentication(symmetric: SmartClient) -> None:
    token = symmetric.full_ehr_launch()
    response = http_post(
        symmetric.config["token_endpoint"],
        data={
            "grant_type": "refresh_token",
            "refresh_token": token["refresh_token"],
            "client_id": symmetric.client_id,
        },
    )
    assert response.json()["error"] == "invalid_client"
    assert symmetric.refresh(token["refresh_token"]).status_code == 200


def test_granted_scope_override_can_be_narrower_than_requested(sandbox: Sandbox) -> None:
    client = register_public(sandbox, granted_scope="patient/AllergyIntolerance.rs")
    token = client.full_ehr_launch(
        "launch openid fhirUser patient/AllergyIntolerance.cruds patient/Observation.rs"
    )
    assert token["scope"].split() == ["launch", "openid", "fhirUser", "patient/AllergyIntolerance.rs"]


def test_scope_ceiling_narrows_each_requested_scope(sandbox: Sandbox) -> None:
    client = register_public(sandbox, scope="launch openid patient/*.rs")
    token = client.full_ehr_launch(
        "launch openid fhirUser patient/AllergyIntolerance.cruds patient/Patient.read"
    )
    assert token["scope"].split() == [
        "launch",
        "openid",
        "patient/AllergyIntolerance.rs",
        "patient/Patient.read",
    ]
    assert "fhirUser" not in token


def test_tokens_never_reach_the_logs(public: SmartClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        token = public.full_ehr_launch()
        refreshed = public.refresh(token["refresh_token"]).json()
    secrets_seen = [
        token["access_token"],
        token["refresh_token"],
        token["id_token"],
        refreshed["access_token"],
    ]
    assert caplog.records  # the sandbox does log (client ids, scopes, events) ...
    assert not [s for s in secrets_seen if s in caplog.text]  # ... but never a token


def test_expired_access_token_is_refused_by_the_gateway(short_sandbox: Sandbox) -> None:
    client = register_public(short_sandbox)
    token = client.full_ehr_launch()
    time.sleep(1.2)
    response = http_get(
        f"{short_sandbox.fhir_base_url}/Patient/{token['patient']}",
        headers={"Authorization": f"Bearer {token['access_token']}"},
    )
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
