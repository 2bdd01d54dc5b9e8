"""The sandbox SMART authorization server: Authlib's framework-agnostic OAuth 2 core over Werkzeug.

What is Authlib's and what is ours:

* Authlib (``AuthorizationServer``, ``AuthorizationCodeGrant``, ``RefreshTokenGrant``, ``CodeChallenge``,
  ``JWTBearerClientAssertion``, ``OpenIDCode``) does the OAuth 2 / PKCE / RFC 7523 / OIDC protocol work;
* we adapt Werkzeug requests and responses to it (:mod:`~fhir_desens.sandbox.oauth_requests`), store codes
  and tokens in memory, and add the SMART App Launch 2.x rules Authlib does not know: PKCE S256 required
  for every client, ``aud`` must be the FHIR base, ``state`` required, EHR ``launch`` ids (single use,
  expiring, bound to one client) (:mod:`~fhir_desens.sandbox.grants`), launch context in the token
  response, granted scope narrower than requested (this module), and the asymmetric-client rules
  (RS384/ES384, ``kid``/``jku`` key selection, ``exp`` at most five minutes ahead, ``jti`` single use)
  (:mod:`~fhir_desens.sandbox.client_assertion`).

Tokens are opaque random strings; the gateway resolves them with :meth:`SmartAuthorizationServer.resolve`.
Nothing here logs a token, code, secret or assertion.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    InvalidRequestError,
    JsonRequest,
    OAuth2Error,
    OAuth2Request,
)
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Request, Response

from fhir_desens.sandbox import scopes
from fhir_desens.sandbox.client_assertion import PrivateKeyJwtAuth
from fhir_desens.sandbox.clients import ClientRegistry, SandboxClient
from fhir_desens.sandbox.grants import (
    S256CodeChallenge,
    SmartAuthorizationCodeGrant,
    SmartLaunchRules,
    SmartOpenIDCode,
    SmartRefreshTokenGrant,
)
from fhir_desens.sandbox.keys import SigningKeys
from fhir_desens.sandbox.oauth_requests import SandboxJsonRequest, SandboxOAuth2Request
from fhir_desens.sandbox.stores import (
    AuthorizationCode,
    Clock,
    ExpiringStore,
    GrantContext,
    LaunchContext,
    TokenRecord,
)

log = logging.getLogger(__name__)


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
                user = self._ehr_launch_user(launch_id)
            elif selection is None and "launch/patient" in granted:
                return self._ask_for_patient(oauth_request, grant)
            else:
                user = self._standalone_user(selection, granted)
            if selection is not None and selection.denied:
                grant.create_authorization_response(grant.redirect_uri, None)  # raises access_denied
            status, body, headers = grant.create_authorization_response(grant.redirect_uri, user)
        except OAuth2Error as error:
            error.state = data.get("state")
            if error.redirect_uri is None:
                error.redirect_uri = grant.redirect_uri
            return self._authorize_error(error)
        log.info("authorization code issued to client %s", grant.request.client.client_id)
        response: Response = self.handle_response(status, body, headers)
        return response

    def _ehr_launch_user(self, launch_id: str) -> GrantContext:
        """The context of an EHR launch (its launch id is used up here)."""
        launch = self.launches.pop(launch_id)
        if launch is None:
            raise InvalidRequestError("launch is unknown, expired or already used")
        practitioner = launch.practitioner or self.context_provider.default_practitioner()
        return self._grant_context(
            practitioner, launch.patient, launch.encounter, launch.need_patient_banner, launch.vendor
        )

    def _standalone_user(self, selection: Selection | None, granted: list[str]) -> GrantContext:
        """The context of a standalone launch: the patient picked (when asked), the default user."""
        patient = selection.patient if selection and "launch/patient" in granted else None
        practitioner = (
            selection.practitioner if selection and selection.practitioner else None
        ) or self.context_provider.default_practitioner()
        encounter = None
        if patient and "launch/encounter" in granted:
            encounter = self.context_provider.latest_encounter(patient)
        return self._grant_context(practitioner, patient, encounter, True, "permissive")

    def _grant_context(
        self, practitioner: str | None, patient: str | None, encounter: str | None, banner: bool, vendor: str
    ) -> GrantContext:
        return GrantContext(
            practitioner=practitioner,
            patient=patient,
            encounter=encounter,
            need_patient_banner=banner,
            auth_time=int(self.clock()),
            family=secrets.token_urlsafe(12),
            vendor=vendor,
        )

    def _ask_for_patient(self, oauth_request: OAuth2Request, grant: Any) -> NeedsSelection:
        """Park a valid standalone request until a patient is picked (``launch/patient``)."""
        pending_id = secrets.token_urlsafe(24)
        pending = PendingAuthorization(
            oauth_request.method, oauth_request.uri, tuple(oauth_request.payload.data.items(multi=True))
        )
        self.pending.put(pending_id, pending, self.settings.pending_lifetime)
        return NeedsSelection(pending_id, grant.request.client, oauth_request.scope)

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
