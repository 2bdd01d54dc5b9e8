"""The SMART client (fhir_desens.client.smart) against the in-process fake EHR: no Flask, no sockets."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import string
from urllib.parse import parse_qs, urlsplit

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.client.http import NO_RETRY
from fhir_desens.client.smart import (
    AuthorizationDenied,
    ClientRegistration,
    ClientSecretBasic,
    PendingAuthorization,
    PrivateKeyJwt,
    PublicClient,
    SmartClient,
    SmartConfiguration,
    SmartSession,
    callback_error,
    load_signing_key,
    make_pkce_pair,
    new_state,
    pkce_challenge,
)
from fhir_desens.errors import AuthError, ConfigurationError, FhirServerError
from tests.app.fake_ehr import (
    AUTHORIZE,
    FHIR_BASE,
    TOKEN,
    Client,
    FakeEhr,
    authorize_params,
    keyset_of,
)

REDIRECT = "https://app.example.org/callback"


@pytest.fixture
def ehr() -> FakeEhr:
    fake = FakeEhr()
    fake.add_client(Client("pub", "public"))
    fake.add_client(Client("sym", "symmetric", secret="s3cret-value:with/odd chars"))
    fake.add_patient("p1")
    return fake


def make_client(ehr: FakeEhr, client_id: str = "pub", auth: tuple = (), **options) -> SmartClient:
    registration = ClientRegistration(client_id=client_id, redirect_uri=REDIRECT, auth=auth)
    return SmartClient(registration, http=ehr.session(), clock=ehr.clock, retry=NO_RETRY, **options)


def run_launch(ehr: FakeEhr, client: SmartClient, *, ehr_launch: bool = True) -> SmartSession:
    launch = ehr.new_launch("p1") if ehr_launch else None
    request = client.authorize(FHIR_BASE, launch=launch)
    query = ehr.approve(request.params, patient=None if ehr_launch else "p1")
    return client.complete(request.pending, code=query["code"], state=query["state"])


# -- PKCE and state --------------------------------------------------------------------------------


@pytest.mark.requirement("SMART-PKCE-1")
def test_pkce_rfc7636_test_vector() -> None:
    assert (
        pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
        == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )


@pytest.mark.requirement("SMART-PKCE-1")
def test_pkce_pair_is_s256_and_well_formed() -> None:
    verifier, challenge = make_pkce_pair()
    assert 43 <= len(verifier) <= 128
    assert set(verifier) <= set(string.ascii_letters + string.digits + "-._~")
    digest = hashlib.sha256(verifier.encode()).digest()
    assert challenge == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert "=" not in challenge
    assert make_pkce_pair()[0] != verifier


@pytest.mark.requirement("SMART-STATE-1")
def test_state_has_at_least_128_bits_and_never_repeats() -> None:
    states = {new_state() for _ in range(2000)}
    assert len(states) == 2000
    for state in list(states)[:20]:
        raw = base64.urlsafe_b64decode(state + "=" * (-len(state) % 4))
        assert len(raw) * 8 >= 128
        assert re.fullmatch(r"[A-Za-z0-9_-]+", state)


@pytest.mark.requirement("SMART-STATE-2")
def test_state_mismatch_and_expiry_are_refused(ehr: FakeEhr) -> None:
    client = make_client(ehr, state_ttl=600)
    request = client.authorize(FHIR_BASE, launch=ehr.new_launch("p1"))
    query = ehr.approve(request.params)
    with pytest.raises(AuthError, match="state mismatch"):
        client.complete(request.pending, code=query["code"], state=query["state"] + "x")
    with pytest.raises(AuthError, match="state mismatch"):
        client.complete(request.pending, code=query["code"], state="")
    ehr.clock.advance(601)
    with pytest.raises(AuthError, match="expired"):
        client.complete(request.pending, code=query["code"], state=query["state"])
    assert not ehr.sent_to(TOKEN), "no token request may be made for a bad or expired state"


# -- discovery -------------------------------------------------------------------------------------


def test_discovery_reads_well_known(ehr: FakeEhr) -> None:
    config = make_client(ehr).discover(FHIR_BASE)
    assert config.source == "well-known"
    assert config.authorization_endpoint == AUTHORIZE
    assert config.token_endpoint == TOKEN
    assert config.supports_v2_scopes
    request = ehr.requests[0]
    assert request.url == FHIR_BASE + "/.well-known/smart-configuration"
    assert request.headers["Accept"] == "application/json"


def test_discovery_falls_back_to_capability_statement(ehr: FakeEhr) -> None:
    ehr.well_known_status = 404
    config = make_client(ehr).discover(FHIR_BASE)
    assert config.source == "metadata"
    assert (config.authorization_endpoint, config.token_endpoint) == (AUTHORIZE, TOKEN)
    assert not config.supports_v2_scopes
    assert [urlsplit(r.url).path for r in ehr.requests] == [
        "/fhir/.well-known/smart-configuration",
        "/fhir/metadata",
    ]


def test_discovery_is_cached(ehr: FakeEhr) -> None:
    client = make_client(ehr)
    client.discover(FHIR_BASE)
    client.discover(FHIR_BASE)
    assert len(ehr.requests) == 1
    ehr.clock.advance(301)
    client.discover(FHIR_BASE)
    assert len(ehr.requests) == 2


def test_discovery_refuses_a_server_without_s256(ehr: FakeEhr) -> None:
    original = ehr.well_known
    ehr.well_known = lambda: {**original(), "code_challenge_methods_supported": ["plain"]}  # type: ignore[method-assign]
    with pytest.raises(AuthError, match="S256"):
        make_client(ehr).discover(FHIR_BASE)


def test_discovery_refuses_plain_http_endpoints(ehr: FakeEhr) -> None:
    original = ehr.well_known
    ehr.well_known = lambda: {**original(), "token_endpoint": "http://ehr.example.org/auth/token"}  # type: ignore[method-assign]
    with pytest.raises(AuthError, match="https"):
        make_client(ehr).discover(FHIR_BASE)


def test_configuration_without_endpoints_is_an_error() -> None:
    with pytest.raises(FhirServerError):
        SmartConfiguration.from_well_known(FHIR_BASE, {"authorization_endpoint": AUTHORIZE})


# -- the authorization request ---------------------------------------------------------------------


@pytest.mark.requirement("SMART-AUTH-1")
def test_ehr_launch_authorize_url_parameters(ehr: FakeEhr) -> None:
    client = make_client(ehr)
    launch = ehr.new_launch("p1")
    request = client.authorize(FHIR_BASE, launch=launch)
    assert request.method == "GET"
    assert request.location.startswith(AUTHORIZE + "?")
    params = authorize_params(request.location)
    assert params["response_type"] == "code"
    assert params["client_id"] == "pub"
    assert params["redirect_uri"] == REDIRECT
    assert params["launch"] == launch
    assert params["aud"] == FHIR_BASE
    assert params["state"] == request.pending.state
    assert params["code_challenge_method"] == "S256"
    assert params["code_challenge"] == pkce_challenge(request.pending.code_verifier)
    scopes = params["scope"].split()
    assert "launch" in scopes and "launch/patient" not in scopes
    assert {"openid", "fhirUser", "online_access"} <= set(scopes)
    assert "patient/AllergyIntolerance.rs" in scopes
    assert "patient/AllergyIntolerance.cu" in scopes
    assert "patient/Patient.rs" in scopes
    assert params["nonce"] == request.pending.nonce


def test_standalone_launch_asks_for_patient_context(ehr: FakeEhr) -> None:
    params = make_client(ehr).authorize(FHIR_BASE).params
    assert "launch" not in params
    assert "launch/patient" in params["scope"].split()
    assert "launch" not in params["scope"].split()


@pytest.mark.requirement("SMART-SCOPE-1")
def test_v1_scopes_when_server_lacks_permission_v2(ehr: FakeEhr) -> None:
    ehr.capabilities = [c for c in ehr.capabilities if c != "permission-v2"]
    scopes = make_client(ehr).authorize(FHIR_BASE, launch="x").params["scope"].split()
    assert "patient/AllergyIntolerance.read" in scopes
    assert "patient/AllergyIntolerance.write" in scopes
    assert "patient/Patient.read" in scopes
    assert not [s for s in scopes if re.search(r"\.[cruds]+$", s)]


def test_long_requests_use_post_when_the_server_supports_it(ehr: FakeEhr) -> None:
    client = make_client(ehr, post_threshold=100)
    request = client.authorize(FHIR_BASE, launch="x")
    assert request.method == "POST"
    assert request.endpoint == AUTHORIZE
    assert request.params["state"] == request.pending.state
    ehr.capabilities = [c for c in ehr.capabilities if c != "authorize-post"]
    client = make_client(ehr, post_threshold=100)
    assert client.authorize(FHIR_BASE, launch="x").method == "GET"


def test_pending_authorization_round_trips_and_hides_secrets(ehr: FakeEhr) -> None:
    request = make_client(ehr).authorize(FHIR_BASE, launch="launch-1")
    data = request.pending.to_dict()
    assert PendingAuthorization.from_dict(data) == request.pending
    assert request.pending.code_verifier not in repr(request.pending)
    assert request.pending.state not in repr(request)


# -- client authentication -------------------------------------------------------------------------


@pytest.mark.requirement("SMART-ASYM-1")
@pytest.mark.parametrize(
    ("key", "alg"), [(RSAKey.generate_key(2048), "RS384"), (ECKey.generate_key("P-384"), "ES384")]
)
def test_client_assertion_claims(key: RSAKey | ECKey, alg: str) -> None:
    auth = PrivateKeyJwt(key, kid="app-key-1", alg=alg)
    now = 1_800_000_000
    first = auth.assertion(client_id="my-app", token_url=TOKEN, now=now)
    second = auth.assertion(client_id="my-app", token_url=TOKEN, now=now)
    public = keyset_of(key, "app-key-1")
    decoded = jwt.decode(first, public, algorithms=[alg])
    assert decoded.header["alg"] == alg
    assert decoded.header["kid"] == "app-key-1"
    assert decoded.header["typ"] == "JWT"
    claims = decoded.claims
    assert claims["iss"] == claims["sub"] == "my-app"
    assert claims["aud"] == TOKEN
    assert 0 < claims["exp"] - now <= 300
    assert claims["jti"] != jwt.decode(second, public, algorithms=[alg]).claims["jti"]
    with pytest.raises(Exception):  # noqa: B017,PT011 - any verification failure will do
        jwt.decode(
            first,
            keyset_of(type(key).generate_key(2048 if alg == "RS384" else "P-384"), "app-key-1"),
            algorithms=[alg],
        )


def test_client_assertion_key_checks() -> None:
    with pytest.raises(ConfigurationError, match="RS384 or ES384"):
        PrivateKeyJwt(RSAKey.generate_key(2048), kid="k", alg="RS256")
    with pytest.raises(ConfigurationError, match="P-384"):
        PrivateKeyJwt(ECKey.generate_key("P-256"), kid="k", alg="ES384")
    with pytest.raises(ConfigurationError, match="RSA"):
        PrivateKeyJwt(ECKey.generate_key("P-384"), kid="k", alg="RS384")
    public_only = RSAKey.import_key(RSAKey.generate_key(2048).as_pem(private=False))
    with pytest.raises(ConfigurationError, match="public key"):
        PrivateKeyJwt(public_only, kid="k", alg="RS384")


def test_load_signing_key_from_pem_and_jwk() -> None:
    rsa = RSAKey.generate_key(2048)
    from_pem = load_signing_key(rsa.as_pem(private=True).decode(), kid="k1")
    assert (from_pem.alg, from_pem.kid) == ("RS384", "k1")
    ec = ECKey.generate_key("P-384")
    jwk = dict(ec.as_dict(private=True), kid="ec-1")
    from_jwk = load_signing_key(jwk)
    assert (from_jwk.alg, from_jwk.kid) == ("ES384", "ec-1")
    public = from_jwk.public_jwk()
    assert "d" not in public and public["kid"] == "ec-1" and public["alg"] == "ES384"
    assert load_signing_key(rsa.as_pem(private=True)).kid == rsa.thumbprint()
    with pytest.raises(ConfigurationError):
        load_signing_key("not a key")


def _token_request(ehr: FakeEhr):
    return ehr.sent_to(TOKEN)[-1]


@pytest.mark.requirement("SMART-TOKEN-1")
def test_public_client_token_exchange(ehr: FakeEhr) -> None:
    client = make_client(ehr)
    session = run_launch(ehr, client)
    sent = _token_request(ehr)
    assert "Authorization" not in sent.headers
    assert sent.form["client_id"] == "pub"
    assert sent.form["grant_type"] == "authorization_code"
    assert sent.form["redirect_uri"] == REDIRECT
    assert pkce_challenge(sent.form["code_verifier"])  # the verifier was sent
    assert session.patient == "p1"
    assert session.auth_method == "none"


def test_symmetric_client_uses_basic_auth(ehr: FakeEhr) -> None:
    client = make_client(ehr, "sym", auth=(ClientSecretBasic("s3cret-value:with/odd chars"),))
    session = run_launch(ehr, client)
    sent = _token_request(ehr)
    assert sent.headers["Authorization"].startswith("Basic ")
    assert "client_secret" not in sent.form
    assert session.auth_method == "client_secret_basic"
    assert "s3cret" not in repr(client.registration)


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_asymmetric_client_uses_private_key_jwt(ehr: FakeEhr, alg: str) -> None:
    key = RSAKey.generate_key(2048) if alg == "RS384" else ECKey.generate_key("P-384")
    ehr.add_client(Client("asym", "asymmetric", public_keys=keyset_of(key, "app-1")))
    client = make_client(ehr, "asym", auth=(PrivateKeyJwt(key, kid="app-1", alg=alg),))
    session = run_launch(ehr, client)
    sent = _token_request(ehr)
    assert sent.form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assert "Authorization" not in sent.headers
    assert session.auth_method == "private_key_jwt"


def test_auth_method_follows_server_support(ehr: FakeEhr) -> None:
    key = RSAKey.generate_key(2048)
    client = make_client(ehr, "sym", auth=(PrivateKeyJwt(key, kid="k", alg="RS384"), ClientSecretBasic("x")))
    original = ehr.well_known
    ehr.well_known = lambda: {**original(), "token_endpoint_auth_methods_supported": ["client_secret_basic"]}  # type: ignore[method-assign]
    config = client.discover(FHIR_BASE)
    assert client.choose_auth(config).method == "client_secret_basic"
    ehr.well_known = lambda: {**original(), "token_endpoint_auth_methods_supported": ["tls_client_auth"]}  # type: ignore[method-assign]
    fresh = make_client(ehr, "sym", auth=(ClientSecretBasic("x"),))
    with pytest.raises(AuthError, match="client authentication"):
        fresh.choose_auth(fresh.discover(FHIR_BASE))
    assert isinstance(make_client(ehr).choose_auth(config), PublicClient)


def test_refused_code_is_an_auth_error(ehr: FakeEhr) -> None:
    client = make_client(ehr)
    request = client.authorize(FHIR_BASE, launch=ehr.new_launch("p1"))
    query = ehr.approve(request.params)
    client.complete(request.pending, code=query["code"], state=query["state"])
    with pytest.raises(AuthError, match="invalid_grant"):
        client.complete(request.pending, code=query["code"], state=query["state"])  # code replay


# -- the token response ----------------------------------------------------------------------------


@pytest.mark.requirement("SMART-TOKEN-2")
def test_granted_scope_without_write_means_read_only(ehr: FakeEhr) -> None:
    ehr.withhold_scopes = {"patient/AllergyIntolerance.cu"}
    session = run_launch(ehr, make_client(ehr))
    assert "patient/AllergyIntolerance.cu" not in session.scope.split()
    assert session.can_write is False
    assert session.granted.can_read("AllergyIntolerance")


def test_granted_scope_with_write(ehr: FakeEhr) -> None:
    session = run_launch(ehr, make_client(ehr))
    assert session.can_write is True


def _pending(ehr: FakeEhr) -> PendingAuthorization:
    client = make_client(ehr)
    return client.authorize(FHIR_BASE, launch="l").pending


def test_token_response_parsing_rules(ehr: FakeEhr) -> None:
    client = make_client(ehr)
    pending = _pending(ehr)
    auth = PublicClient()
    session = client._session_from_token_response(
        {
            "access_token": "a",
            "token_type": "bearer",
            "expires_in": 300,
            "patient": "p9",
            "need_patient_banner": False,
            "smart_style_url": "https://ehr.example.org/style.json",
            "fhirContext": [{"reference": "Encounter/1"}],
        },
        pending,
        auth,
    )
    assert session.scope == pending.scope  # absent scope: as requested (RFC 6749 §5.1)
    assert session.expires_at == ehr.clock() + 300
    assert session.need_patient_banner is False
    assert session.fhir_context == [{"reference": "Encounter/1"}]
    with pytest.raises(AuthError, match="Bearer"):
        client._session_from_token_response({"access_token": "a", "token_type": "mac"}, pending, auth)
    with pytest.raises(AuthError, match="no access token"):
        client._session_from_token_response({"token_type": "Bearer"}, pending, auth)


# -- refresh ---------------------------------------------------------------------------------------


@pytest.mark.requirement("SMART-REFRESH-1")
def test_refresh_keeps_the_old_refresh_token_when_none_is_returned(ehr: FakeEhr) -> None:
    ehr.refresh_rotates = False
    session = run_launch(ehr, make_client(ehr))
    old_access, old_refresh = session.access_token, session.refresh_token
    updates: list[SmartSession] = []
    session.on_update = updates.append
    assert session.refresh() is True
    assert session.access_token != old_access
    assert session.refresh_token == old_refresh
    assert updates == [session]
    assert session.refresh() is True  # the kept refresh token still works


def test_refresh_replaces_a_rotated_refresh_token(ehr: FakeEhr) -> None:
    session = run_launch(ehr, make_client(ehr))
    old_refresh = session.refresh_token
    assert session.refresh() is True
    assert session.refresh_token not in (None, old_refresh)
    sent = _token_request(ehr)
    assert sent.form["grant_type"] == "refresh_token"
    assert sent.form["client_id"] == "pub"


def test_refresh_re_reads_the_granted_scope(ehr: FakeEhr) -> None:
    session = run_launch(ehr, make_client(ehr))
    assert session.can_write
    entry = ehr.refresh_tokens[session.refresh_token]  # type: ignore[index]
    entry["scope"] = "launch openid patient/AllergyIntolerance.rs patient/Patient.rs online_access"
    assert session.refresh()
    assert session.can_write is False


def test_refresh_failure_returns_false(ehr: FakeEhr) -> None:
    session = run_launch(ehr, make_client(ehr))
    ehr.refresh_tokens.clear()
    assert session.refresh() is False
    session.refresh_token = None
    assert session.refresh() is False


def test_headers_refresh_shortly_before_expiry(ehr: FakeEhr) -> None:
    session = run_launch(ehr, make_client(ehr))
    first = session.headers()["Authorization"]
    ehr.clock.advance(ehr.token_lifetime - 30)  # inside the 60 s skew
    second = session.headers()["Authorization"]
    assert first != second
    assert second == f"Bearer {session.access_token}"


@pytest.mark.requirement("SMART-REFRESH-2")
def test_401_triggers_exactly_one_refresh(ehr: FakeEhr) -> None:
    session = run_launch(ehr, make_client(ehr))
    ehr.fhir_401_once = True
    refreshes: list[SmartSession] = []
    session.on_update = refreshes.append
    fhir = FhirClient(FHIR_BASE, session=ehr.session(), auth=session, retry=NO_RETRY)
    patient = fhir.read("Patient", "p1")
    assert patient.id == "p1"
    assert len(refreshes) == 1
    assert len([r for r in ehr.sent_to(TOKEN) if r.form["grant_type"] == "refresh_token"]) == 1


def test_401_with_failed_refresh_raises_auth_error(ehr: FakeEhr) -> None:
    session = run_launch(ehr, make_client(ehr))
    ehr.tokens.clear()
    ehr.refresh_tokens.clear()
    fhir = FhirClient(FHIR_BASE, session=ehr.session(), auth=session, retry=NO_RETRY)
    with pytest.raises(AuthError):
        fhir.read("Patient", "p1")


# -- identity --------------------------------------------------------------------------------------


@pytest.mark.requirement("SMART-OIDC-1")
def test_id_token_is_validated_and_fhir_user_extracted(ehr: FakeEhr) -> None:
    session = run_launch(ehr, make_client(ehr))
    assert session.fhir_user == FHIR_BASE + "/Practitioner/7"
    assert session.id_token_subject == "practitioner-7"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"nonce": "other"}, "nonce"),
        ({"aud": "someone-else"}, "aud"),
        ({"iss": "https://evil.example.org"}, "iss"),
        ({"exp": 1_000_000_000}, "exp"),
    ],
)
def test_bad_id_tokens_are_refused(ehr: FakeEhr, overrides: dict, message: str) -> None:
    ehr.id_token_overrides = overrides
    with pytest.raises(AuthError, match=message):
        run_launch(ehr, make_client(ehr))


def test_id_token_with_a_foreign_signature_is_refused(ehr: FakeEhr) -> None:
    client = make_client(ehr)
    request = client.authorize(FHIR_BASE, launch=ehr.new_launch("p1"))
    query = ehr.approve(request.params)
    ehr.signing_key = RSAKey.generate_key(
        2048, parameters={"kid": "ehr-key-1"}
    )  # tokens signed by a stranger...
    original_jwks = ehr.handle

    def handle(method, url, headers, body):  # ...while the JWKS still publishes an unrelated key
        if url.endswith("/auth/jwks"):
            return (
                200,
                {"keys": [dict(RSAKey.generate_key(2048).as_dict(private=False), kid="ehr-key-1")]},
                {},
            )
        return original_jwks(method, url, headers, body)

    ehr.handle = handle  # type: ignore[method-assign]
    with pytest.raises(AuthError, match="signature"):
        client.complete(request.pending, code=query["code"], state=query["state"])


# -- serialization and logging ---------------------------------------------------------------------


def test_session_round_trip_and_repr(ehr: FakeEhr) -> None:
    client = make_client(ehr)
    session = run_launch(ehr, client)
    data = session.to_dict()
    again = SmartSession.from_dict(data, client=client)
    assert again.to_dict() == data
    assert again == session
    assert session.access_token not in repr(session)
    assert session.refresh_token not in repr(session)  # type: ignore[operator]


def test_no_token_value_is_logged(ehr: FakeEhr, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client(ehr)
    session = run_launch(ehr, client)
    session.refresh()
    FhirClient(FHIR_BASE, session=ehr.session(), auth=session, retry=NO_RETRY).read("Patient", "p1")
    secrets_seen = [t for t in [*ehr.tokens, *ehr.refresh_tokens] if t]
    text = caplog.text
    assert "token exchange succeeded" in text
    for secret in secrets_seen:
        assert secret not in text


def test_callback_error() -> None:
    assert callback_error({"code": "x", "state": "y"}) is None
    denied = callback_error({"error": "access_denied", "error_description": "The user said no", "state": "s"})
    assert isinstance(denied, AuthorizationDenied)
    assert denied.error == "access_denied"
    assert "The user said no" in str(denied)
    long = callback_error({"error": "e" * 500, "error_description": "d" * 5000})
    assert long is not None and len(long.error) == 100 and len(long.description or "") == 500


def test_authorize_url_has_no_secret(ehr: FakeEhr) -> None:
    client = make_client(ehr, "sym", auth=(ClientSecretBasic("very-secret-value"),))
    request = client.authorize(FHIR_BASE, launch="l")
    assert "very-secret-value" not in request.location
    assert request.pending.code_verifier not in request.location
    assert parse_qs(urlsplit(request.location).query)["code_challenge"][0] != request.pending.code_verifier
