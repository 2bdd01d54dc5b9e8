"""The sandbox SMART authorization server: Authlib's framework-agnostic OAuth 2 core over Werkzeug.

What is Authlib's and what is ours:

* Authlib (``AuthorizationServer``, ``AuthorizationCodeGrant``, ``RefreshTokenGrant``, ``CodeChallenge``,
  ``JWTBearerClientAssertion``, ``OpenIDCode``) does the OAuth 2 / PKCE / RFC 7523 / OIDC protocol work;
* this module adapts Werkzeug requests and responses to it, stores codes and tokens in memory, and adds
  the SMART App Launch 2.x rules Authlib does not know: PKCE S256 required for every client, ``aud`` must
  be the FHIR base, ``state`` required, EHR ``launch`` ids (single use, expiring, bound to one client),
  launch context in the token response, granted scope narrower than requested, and the asymmetric-client
  rules (RS384/ES384, ``kid``/``jku`` key selection, ``exp`` at most five minutes ahead, ``jti`` single use).

Tokens are opaque random strings; the gateway resolves them with :meth:`SmartAuthorizationServer.resolve`.
Nothing here logs a token, code, secret or assertion.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import requests
from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    InvalidClientError,
    InvalidRequestError,
    InvalidScopeError,
    JsonPayload,
    JsonRequest,
    OAuth2Error,
    OAuth2Payload,
    OAuth2Request,
)
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant, RefreshTokenGrant
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7636.challenge import compare_s256_code_challenge
from authlib.oidc.core.grants import OpenIDCode
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Request, Response

from fhir_desens.sandbox import scopes
from fhir_desens.sandbox.clients import ClientRegistry, SandboxClient
from fhir_desens.sandbox.keys import ID_TOKEN_ALG, SigningKeys
from fhir_desens.sandbox.stores import (
    AuthorizationCode,
    Clock,
    ExpiringStore,
    GrantContext,
    LaunchContext,
    TokenRecord,
)

log = logging.getLogger(__name__)


class _NoTokenRecords(logging.Filter):
    """Authlib's grants log the whole token response at DEBUG ("Issue token %r"): drop those records."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("Issue token", "Grant token"))


for _name in ("authorization_code", "refresh_token", "implicit", "client_credentials"):
    logging.getLogger(f"authlib.oauth2.rfc6749.grants.{_name}").addFilter(_NoTokenRecords())

CLIENT_ASSERTION_SIGNING_ALGS = ("RS384", "ES384")
MAX_ASSERTION_LIFETIME = 300  # seconds: SMART "no more than five minutes in the future"
CLOCK_SKEW = 10  # seconds tolerated on exp (both directions)
TOKEN_AUTH_METHODS = ["none", "client_secret_basic", "private_key_jwt"]


def safe_description(text: str) -> str:
    """RFC 6749 restricts error_description to printable ASCII without ``"`` and ``\\``."""
    cleaned = text.replace('"', "'").replace("\\", "/")
    return "".join(c for c in cleaned if 0x20 <= ord(c) <= 0x7E)


def same_url(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


@dataclass(frozen=True)
class AuthSettings:
    issuer: str
    fhir_base_url: str
    authorize_url: str
    token_url: str
    smart_style_url: str | None = None
    access_token_lifetime: int = 3600
    code_lifetime: int = 120
    launch_lifetime: int = 300
    online_refresh_lifetime: int = 8 * 3600
    offline_refresh_lifetime: int = 30 * 24 * 3600
    id_token_lifetime: int = 3600
    pending_lifetime: int = 600


class ContextProvider(Protocol):
    """What the authorization server asks the EHR side: who the default user is, which encounter."""

    def default_practitioner(self) -> str | None: ...

    def latest_encounter(self, patient_id: str) -> str | None: ...


@dataclass(frozen=True)
class Selection:
    """Standalone-launch context chosen on the picker page."""

    patient: str | None
    practitioner: str | None
    denied: bool = False  # the user pressed "Deny": the app gets access_denied


@dataclass(frozen=True)
class PendingAuthorization:
    method: str
    uri: str
    params: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class NeedsSelection:
    """The authorization request is valid but needs a patient picked (standalone ``launch/patient``)."""

    pending_id: str
    client: SandboxClient
    scope: str


@dataclass(frozen=True)
class AuthorizeError:
    """An authorization error that must not be redirected (unknown client or untrusted redirect_uri)."""

    error: str
    description: str


# -- Werkzeug <-> Authlib adapters ------------------------------------------------------------------------


class _Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, params: MultiDict[str, str]) -> None:
        self._params = params

    @property
    def data(self) -> MultiDict[str, str]:
        return self._params

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        values: defaultdict[str, list[str]] = defaultdict(list)
        for key in self._params:
            values[key].extend(self._params.getlist(key))
        return values


class SandboxOAuth2Request(OAuth2Request):  # type: ignore[misc]
    """An ``OAuth2Request`` over parameters taken from a Werkzeug request (or replayed from storage).

    The authorization endpoint reads the query (GET) or the form (POST); the token endpoint reads the form
    body only, never the query string.
    """

    def __init__(
        self,
        method: str,
        uri: str,
        headers: Any,
        params: MultiDict[str, str],
    ) -> None:
        super().__init__(method=method, uri=uri, headers=headers)
        self._params = params
        self.payload = _Payload(params)

    @property
    def args(self) -> MultiDict[str, str]:
        return self._params

    @property
    def form(self) -> MultiDict[str, str]:
        return self._params


class _JsonPayload(JsonPayload):  # type: ignore[misc]
    def __init__(self, request: Request) -> None:
        self._request = request

    @property
    def data(self) -> Any:
        return self._request.get_json(silent=True)


class SandboxJsonRequest(JsonRequest):  # type: ignore[misc]
    def __init__(self, request: Request) -> None:
        super().__init__(request.method, request.url, request.headers)
        self.payload = _JsonPayload(request)


# -- PKCE: S256 only, required for every client ------------------------------------------------------


class S256CodeChallenge(CodeChallenge):  # type: ignore[misc]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD: ClassVar[list[str]] = ["S256"]
    CODE_CHALLENGE_METHODS: ClassVar[dict[str, Callable[[str, str], bool]]] = {
        "S256": compare_s256_code_challenge
    }

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge and code_challenge_method=S256")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256 (plain is not accepted)")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        # Authlib only insists on a verifier for public clients; SMART requires it for every client.
        if not grant.request.form.get("code_verifier"):
            raise InvalidRequestError("Missing 'code_verifier' (PKCE is required)")
        super().validate_code_verifier(grant, result)


# -- SMART authorization request rules ---------------------------------------------------------------


class SmartLaunchRules:
    """Grant extension: the SMART checks on the authorization request (errors go to the redirect_uri)."""

    def __init__(self, server: SmartAuthorizationServer) -> None:
        self.server = server

    def __call__(self, grant: Any) -> None:
        grant.register_hook("after_validate_authorization_request_payload", self.validate)

    def validate(self, grant: Any, redirect_uri: str) -> None:
        request: SandboxOAuth2Request = grant.request
        data = request.payload.data
        if not data.get("state"):
            raise InvalidRequestError("state is required")
        aud = data.get("aud") or data.get("resource")
        if not aud:
            raise InvalidRequestError("aud is required: the FHIR base URL of this server")
        if not same_url(aud, self.server.settings.fhir_base_url):
            raise InvalidRequestError("aud is not the FHIR base URL of this server")
        requested = scopes.split_scope(data.get("scope"))
        launch_id = data.get("launch")
        if "launch" in requested:
            if not launch_id:
                raise InvalidRequestError("the launch scope needs the launch parameter received from the EHR")
            launch = self.server.launches.get(launch_id)
            if launch is None or (launch.client_id and launch.client_id != request.client.client_id):
                raise InvalidRequestError("launch is unknown, expired or already used")
        elif launch_id:
            raise InvalidRequestError("a launch parameter needs the launch scope")
        if not request.scope:
            raise InvalidScopeError("none of the requested scopes can be granted to this client")


# -- grants -----------------------------------------------------------------------------------------


class SmartAuthorizationCodeGrant(AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = TOKEN_AUTH_METHODS

    @staticmethod
    def validate_authorization_redirect_uri(request: Any, client: SandboxClient) -> str:
        redirect_uri = request.payload.redirect_uri
        if not redirect_uri:
            raise InvalidRequestError("redirect_uri is required")
        if not client.check_redirect_uri(redirect_uri):
            raise InvalidRequestError("redirect_uri is not registered for this client")
        return str(redirect_uri)

    @property
    def _server(self) -> SmartAuthorizationServer:
        server: SmartAuthorizationServer = self.server
        return server

    def save_authorization_code(self, code: str, request: Any) -> None:
        data = request.payload.data
        record = AuthorizationCode(
            client_id=request.client.client_id,
            redirect_uri=request.payload.redirect_uri,
            scope=request.scope,
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
            nonce=data.get("nonce"),
            context=request.user,
        )
        self._server.codes.put(code, record, self._server.settings.code_lifetime)

    def query_authorization_code(self, code: str, client: SandboxClient) -> AuthorizationCode | None:
        # Single use whatever happens next: a failed PKCE check burns the code too.
        record = self._server.codes.pop(code)
        if record is None:
            family = self._server.used_codes.get(code)
            if family is not None:
                # RFC 6749 4.1.2: a replayed code revokes what was issued from it
                revoked = self._server.revoke_family(family)
                log.warning("authorization code replayed; revoked %d token(s) of that grant", revoked)
            return None
        self._server.used_codes.put(
            code, record.context.family, self._server.settings.offline_refresh_lifetime
        )
        if record.client_id != client.client_id:
            return None
        return record

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        return None  # already removed by query_authorization_code

    def authenticate_user(self, authorization_code: AuthorizationCode) -> GrantContext:
        return authorization_code.context


class SmartRefreshTokenGrant(RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = TOKEN_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation: each refresh returns a new refresh token

    @property
    def _server(self) -> SmartAuthorizationServer:
        server: SmartAuthorizationServer = self.server
        return server

    def authenticate_refresh_token(self, refresh_token: str) -> TokenRecord | None:
        record = self._server.refresh_tokens.get(refresh_token)
        if record is None or record.is_expired():
            return None
        if record.revoked:
            # a rotated-out refresh token came back: it leaked or the client lost track (RFC 9700 4.14.2)
            revoked = self._server.revoke_family(record.context.family)
            log.warning("refresh token reused after rotation; revoked %d token(s) of that grant", revoked)
            return None
        return record

    def authenticate_user(self, refresh_token: TokenRecord) -> GrantContext:
        return refresh_token.context

    def revoke_old_credential(self, refresh_token: TokenRecord) -> None:
        refresh_token.revoked = True


class SmartOpenIDCode(OpenIDCode):  # type: ignore[misc]
    """OIDC id_token for the code grant: RS256 with the sandbox key, ``fhirUser`` claim."""

    def __init__(self, server: SmartAuthorizationServer) -> None:
        super().__init__(require_nonce=False)
        self.server = server

    def resolve_client_private_key(self, client: SandboxClient) -> RSAKey:
        return self.server.keys.private_key

    def get_client_algorithm(self, client: SandboxClient) -> str:
        return ID_TOKEN_ALG

    def get_encode_header(self, client: SandboxClient) -> dict[str, str]:
        return {"alg": ID_TOKEN_ALG, "kid": self.server.keys.kid, "typ": "JWT"}

    def get_client_claims(self, client: SandboxClient) -> dict[str, Any]:
        now = int(self.server.clock())
        return {
            "iss": self.server.settings.issuer,
            "aud": client.client_id,
            "iat": now,
            "exp": now + self.server.settings.id_token_lifetime,
        }

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        return False  # nonce replay is the relying party's check

    def generate_user_info(self, user: GrantContext, scope: str) -> dict[str, Any]:
        info: dict[str, Any] = {"sub": user.get_user_id()}
        fhir_user = self.server.fhir_user_url(user)
        if fhir_user and "fhirUser" in scopes.split_scope(scope):
            info["fhirUser"] = fhir_user
        return info


class PrivateKeyJwtAuth(JWTBearerClientAssertion):  # type: ignore[misc]
    """``private_key_jwt`` per SMART "Client Authentication: Asymmetric"."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, server: SmartAuthorizationServer) -> None:
        super().__init__(validate_jti=True, leeway=CLOCK_SKEW)
        self.server = server
        self._jwks_cache: dict[str, tuple[float, KeySet]] = {}
        self._lock = threading.Lock()

    def get_audiences(self) -> list[str]:
        return [self.server.settings.token_url]

    def __call__(self, query_client: Callable[[str], SandboxClient | None], request: Any) -> Any:
        data = request.form
        if data.get("client_assertion_type") != self.CLIENT_ASSERTION_TYPE or not data.get(
            "client_assertion"
        ):
            return None
        assertion = data["client_assertion"]
        headers, claims = self.extract_assertion(assertion)
        client_id = claims.get("sub")
        if not isinstance(client_id, str):
            raise InvalidClientError(description="the assertion needs sub = client_id")
        form_client_id = request.payload.client_id
        if form_client_id and form_client_id != client_id:
            raise InvalidClientError(description="client_id does not match the assertion")
        client = query_client(client_id)
        if client is None:
            raise InvalidClientError(description="The client does not exist on this server.")
        if client.token_endpoint_auth_method != self.CLIENT_AUTH_METHOD:
            raise InvalidClientError(description="this client does not authenticate with private_key_jwt")
        alg = headers.get("alg")
        if alg not in CLIENT_ASSERTION_SIGNING_ALGS:
            raise InvalidClientError(description="assertion alg must be RS384 or ES384")
        key = self._select_key(client, headers)
        try:
            token = jwt.decode(assertion, key, algorithms=[alg])
        except JoseError as error:
            raise InvalidClientError(description=safe_description(error.description)) from error
        self.verify_claims(token.claims)
        request.client = client
        return self.authenticate_client(client)

    def verify_claims(self, claims: Any) -> None:
        exp = claims.get("exp")
        if isinstance(exp, (int, float)) and exp > self.server.clock() + MAX_ASSERTION_LIFETIME + CLOCK_SKEW:
            raise InvalidClientError(description="assertion exp is more than five minutes in the future")
        try:
            super().verify_claims(claims)
        except InvalidClientError as error:
            error.description = safe_description(error.description or "invalid assertion")
            raise

    def validate_jti(self, claims: Mapping[str, Any], jti: Any) -> bool:
        if not isinstance(jti, str) or not jti:
            return False
        ttl = MAX_ASSERTION_LIFETIME + 2 * CLOCK_SKEW
        return self.server.jtis.add_once(f"{claims['iss']}\n{jti}", True, ttl)

    def _select_key(self, client: SandboxClient, headers: Mapping[str, Any]) -> RSAKey | ECKey:
        jku = headers.get("jku")
        if jku is not None and jku != client.jwks_url:
            raise InvalidClientError(description="jku is not the JWKS URL registered for this client")
        kid = headers.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidClientError(description="the assertion header needs a kid")
        kty = "RSA" if str(headers.get("alg")).startswith("RS") else "EC"
        candidates = [k for k in self._client_keys(client).keys if k.kid == kid and k.key_type == kty]
        if not candidates and client.jwks_url is not None:
            # the client may have rotated its keys since we cached its JWK Set: read it again once
            candidates = [
                k for k in self._client_keys(client, fresh=True).keys if k.kid == kid and k.key_type == kty
            ]
        if len(candidates) != 1:
            raise InvalidClientError(description="no unique registered key matches the kid and alg")
        key = candidates[0]
        assert isinstance(key, (RSAKey, ECKey))
        return key

    def _client_keys(self, client: SandboxClient, *, fresh: bool = False) -> KeySet:
        if client.jwks is not None:
            return KeySet.import_key_set(dict(client.jwks))  # type: ignore[arg-type]
        assert client.jwks_url is not None
        now = time.monotonic()
        with self._lock:
            cached = self._jwks_cache.get(client.jwks_url)
            if cached and cached[0] > now and not fresh:
                return cached[1]
        try:
            response = requests.get(client.jwks_url, headers={"Accept": "application/json"}, timeout=5)
            response.raise_for_status()
            key_set = KeySet.import_key_set(response.json())
        except (requests.RequestException, ValueError, JoseError) as error:
            log.warning("cannot fetch the JWKS of client %s: %s", client.client_id, type(error).__name__)
            raise InvalidClientError(description="the registered JWKS URL cannot be read") from error
        with self._lock:
            self._jwks_cache[client.jwks_url] = (now + 60, key_set)
        return key_set


# -- the server --------------------------------------------------------------------------------------


class SmartAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    def __init__(
        self,
        settings: AuthSettings,
        clients: ClientRegistry,
        keys: SigningKeys,
        context: ContextProvider,
        clock: Clock = time.time,
    ) -> None:
        super().__init__(scopes_supported=None)
        self.settings = settings
        self.clients = clients
        self.keys = keys
        self.context_provider = context
        self.clock = clock
        self.launches: ExpiringStore[LaunchContext] = ExpiringStore(clock)
        self.pending: ExpiringStore[PendingAuthorization] = ExpiringStore(clock)
        self.codes: ExpiringStore[AuthorizationCode] = ExpiringStore(clock)
        self.used_codes: ExpiringStore[str] = ExpiringStore(clock)
        self.access_tokens: ExpiringStore[TokenRecord] = ExpiringStore(clock)
        self.refresh_tokens: ExpiringStore[TokenRecord] = ExpiringStore(clock)
        self.jtis: ExpiringStore[bool] = ExpiringStore(clock)
        self._refresh_lock = threading.Lock()
        self.register_token_generator("default", self._generate_token)
        self.register_client_auth_method("private_key_jwt", PrivateKeyJwtAuth(self))
        self.register_grant(
            SmartAuthorizationCodeGrant,
            [S256CodeChallenge(required=True), SmartOpenIDCode(self), SmartLaunchRules(self)],
        )
        self.register_grant(SmartRefreshTokenGrant)

    # -- Authlib hooks -------------------------------------------------------------------------------
    def query_client(self, client_id: str) -> SandboxClient | None:
        return self.clients.get(client_id)

    def validate_requested_scope(self, scope: str | None) -> None:
        return None  # unknown scopes are not an error: they are simply not granted

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        if isinstance(request, OAuth2Request):
            return request
        assert isinstance(request, Request)
        if request.method == "POST":
            params = MultiDict(request.form.items(multi=True))
        else:
            params = MultiDict(request.args.items(multi=True))
        return SandboxOAuth2Request(request.method, request.url, request.headers, params)

    def create_json_request(self, request: Request) -> JsonRequest:
        return SandboxJsonRequest(request)

    def handle_response(self, status: int, body: Any, headers: Any) -> Response:
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        return Response(body, status=status, headers=list(headers or []))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        context: GrantContext = request.user
        client: SandboxClient = request.client
        now = self.clock()
        access = TokenRecord(client.client_id, token["scope"], context, now + token["expires_in"])
        self.access_tokens.put(token["access_token"], access, token["expires_in"])
        if "refresh_token" in token:
            previous: TokenRecord | None = request.refresh_token
            refresh_scope = previous.scope if previous is not None else token["scope"]
            lifetime = (
                self.settings.offline_refresh_lifetime
                if "offline_access" in scopes.split_scope(refresh_scope)
                else self.settings.online_refresh_lifetime
            )
            record = TokenRecord(client.client_id, refresh_scope, context, now + lifetime, kind="refresh")
            self.refresh_tokens.put(token["refresh_token"], record, lifetime)
        log.info(
            "issued %s token(s) to client %s (scope: %s)",
            "access+refresh" if "refresh_token" in token else "access",
            client.client_id,
            token["scope"],
        )

    def _generate_token(
        self,
        grant_type: str,
        client: SandboxClient,
        user: GrantContext,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        granted = scopes.split_scope(scope)
        lifetime = expires_in or self.settings.access_token_lifetime
        token: dict[str, Any] = {
            "access_token": secrets.token_urlsafe(32),
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": " ".join(granted),
        }
        wants_refresh = grant_type == "refresh_token" or bool(
            {"online_access", "offline_access"} & set(granted)
        )
        if include_refresh_token and wants_refresh:
            token["refresh_token"] = secrets.token_urlsafe(32)
        if user.patient:
            token["patient"] = user.patient
        if user.encounter:
            token["encounter"] = user.encounter
        fhir_user = self.fhir_user_url(user)
        if fhir_user and "fhirUser" in granted:
            token["fhirUser"] = fhir_user
        token["need_patient_banner"] = user.need_patient_banner
        if self.settings.smart_style_url:
            token["smart_style_url"] = self.settings.smart_style_url
        return token

    # -- sandbox API -------------------------------------------------------------------------------
    def fhir_user_url(self, user: GrantContext) -> str | None:
        if not user.practitioner:
            return None
        return f"{self.settings.fhir_base_url.rstrip('/')}/Practitioner/{user.practitioner}"

    def create_launch(self, context: LaunchContext) -> str:
        launch_id = secrets.token_urlsafe(24)
        self.launches.put(launch_id, context, self.settings.launch_lifetime)
        return launch_id

    def resolve(self, access_token: str) -> TokenRecord | None:
        """The live record of an access token, or None (unknown, expired or revoked)."""
        record = self.access_tokens.get(access_token)
        if record is None or record.revoked or record.expires_at <= self.clock():
            return None
        return record

    def revoke_family(self, family: str) -> int:
        count = self.access_tokens.remove_where(lambda r: r.context.family == family)
        return count + self.refresh_tokens.remove_where(lambda r: r.context.family == family)

    def token(self, request: Request) -> Response:
        """The token endpoint (``authorization_code`` with PKCE, ``refresh_token``)."""
        # the form body only: credentials and codes never come from the query string
        params = MultiDict(request.form.items(multi=True)) if request.method == "POST" else MultiDict()
        try:
            oauth_request = SandboxOAuth2Request(request.method, request.url, request.headers, params)
        except OAuth2Error as error:
            failed: Response = self.handle_error_response(None, error)
            return failed
        if params.get("grant_type") == "refresh_token":
            # check-then-revoke of the old refresh token must not interleave with another refresh
            with self._refresh_lock:
                refreshed: Response = self.create_token_response(oauth_request)
            return refreshed
        response: Response = self.create_token_response(oauth_request)
        return response

    def authorize(
        self, request: Request | PendingAuthorization, selection: Selection | None = None
    ) -> Response | NeedsSelection | AuthorizeError:
        """The authorization endpoint: a redirect (code or error), a picker request, or a page-worthy error."""
        try:
            if isinstance(request, PendingAuthorization):
                oauth_request = SandboxOAuth2Request(
                    request.method, request.uri, {}, MultiDict(list(request.params))
                )
            else:
                oauth_request = self.create_oauth2_request(request)
            grant = self.get_consent_grant(oauth_request, end_user="sandbox-user")
        except OAuth2Error as error:
            return self._authorize_error(error)
        data = oauth_request.payload.data
        granted = scopes.split_scope(oauth_request.scope)
        launch_id = data.get("launch")
        try:
            if launch_id:
                launch = self.launches.pop(launch_id)
                if launch is None:
                    raise InvalidRequestError("launch is unknown, expired or already used")
                patient, encounter = launch.patient, launch.encounter
                practitioner = launch.practitioner or self.context_provider.default_practitioner()
                banner = launch.need_patient_banner
                vendor = launch.vendor
            else:
                if selection is None and "launch/patient" in granted:
                    pending_id = secrets.token_urlsafe(24)
                    self.pending.put(
                        pending_id,
                        PendingAuthorization(
                            oauth_request.method, oauth_request.uri, tuple(data.items(multi=True))
                        ),
                        self.settings.pending_lifetime,
                    )
                    return NeedsSelection(pending_id, grant.request.client, oauth_request.scope)
                patient = selection.patient if selection and "launch/patient" in granted else None
                practitioner = (
                    selection.practitioner if selection and selection.practitioner else None
                ) or self.context_provider.default_practitioner()
                encounter = None
                if patient and "launch/encounter" in granted:
                    encounter = self.context_provider.latest_encounter(patient)
                banner = True
                vendor = "permissive"
            if selection is not None and selection.denied:
                grant.create_authorization_response(grant.redirect_uri, None)  # raises access_denied
            user = GrantContext(
                practitioner=practitioner,
                patient=patient,
                encounter=encounter,
                need_patient_banner=banner,
                auth_time=int(self.clock()),
                family=secrets.token_urlsafe(12),
                vendor=vendor,
            )
            status, body, headers = grant.create_authorization_response(grant.redirect_uri, user)
        except OAuth2Error as error:
            error.state = data.get("state")
            if error.redirect_uri is None:
                error.redirect_uri = grant.redirect_uri
            return self._authorize_error(error)
        log.info("authorization code issued to client %s", grant.request.client.client_id)
        response: Response = self.handle_response(status, body, headers)
        return response

    def take_pending(self, pending_id: str) -> PendingAuthorization | None:
        return self.pending.pop(pending_id)

    def _authorize_error(self, error: OAuth2Error) -> Response | AuthorizeError:
        if error.redirect_uri:
            response: Response = self.handle_response(*error())
            return response
        return AuthorizeError(error.error or "invalid_request", error.get_error_description() or "")


__all__ = [
    "AuthSettings",
    "AuthorizeError",
    "ContextProvider",
    "NeedsSelection",
    "PendingAuthorization",
    "Selection",
    "SmartAuthorizationServer",
]
