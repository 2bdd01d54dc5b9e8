"""The grants of the sandbox authorization server: Authlib's code, refresh and OpenID Connect grants with
the SMART App Launch rules Authlib does not know.

* PKCE S256 is required for every client (confidential ones too), ``plain`` is refused;
* the authorization request needs ``state``, an ``aud`` that is this server's FHIR base, and an EHR
  ``launch`` id (single use, bound to one client) exactly when the ``launch`` scope is asked;
* codes are single use (a replayed code revokes what was issued from it); refresh tokens rotate (a
  rotated-out one coming back revokes the whole grant);
* the id_token carries ``fhirUser`` when granted.

Authlib's grants log the whole token response at DEBUG: those records are dropped here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from authlib.oauth2.rfc6749 import InvalidRequestError, InvalidScopeError
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant, RefreshTokenGrant
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7636.challenge import compare_s256_code_challenge
from authlib.oidc.core.grants import OpenIDCode
from joserfc.jwk import RSAKey

from fhir_desens.sandbox import scopes
from fhir_desens.sandbox.clients import SandboxClient
from fhir_desens.sandbox.keys import ID_TOKEN_ALG
from fhir_desens.sandbox.oauth_requests import SandboxOAuth2Request
from fhir_desens.sandbox.stores import AuthorizationCode, GrantContext, TokenRecord

if TYPE_CHECKING:  # the server registers these grants
    from fhir_desens.sandbox.oauth import SmartAuthorizationServer

log = logging.getLogger(__name__)


class _NoTokenRecords(logging.Filter):
    """Authlib's grants log the whole token response at DEBUG ("Issue token %r"): drop those records."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("Issue token", "Grant token"))


for _name in ("authorization_code", "refresh_token", "implicit", "client_credentials"):
    logging.getLogger(f"authlib.oauth2.rfc6749.grants.{_name}").addFilter(_NoTokenRecords())

TOKEN_AUTH_METHODS = ["none", "client_secret_basic", "private_key_jwt"]


def same_url(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


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


__all__ = [
    "TOKEN_AUTH_METHODS",
    "S256CodeChallenge",
    "SmartAuthorizationCodeGrant",
    "SmartLaunchRules",
    "SmartOpenIDCode",
    "SmartRefreshTokenGrant",
]
