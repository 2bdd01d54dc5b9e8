"""The SMART App Launch 2.x client: discovery, authorization, token exchange, refresh, identity.

Usable without Flask. The flow is a small state machine whose states are plain, serializable
objects, so a web app can keep them in a server-side store:

1. :meth:`SmartClient.discover` reads ``{iss}/.well-known/smart-configuration`` (falling back to the
   CapabilityStatement's ``oauth-uris`` extension) into a :class:`SmartConfiguration`.
2. :meth:`SmartClient.authorize` builds an :class:`AuthorizationRequest` (GET URL, or the fields of a
   POST form when the URL is long) and a :class:`PendingAuthorization` holding ``state`` (256 bits),
   the PKCE S256 ``code_verifier``, the OIDC ``nonce`` and an expiry. Store it keyed by ``state``
   and take it back exactly once.
3. :meth:`SmartClient.complete` checks ``state`` (constant time) and expiry, exchanges the code with
   the verifier and the client's authentication (none, ``client_secret_basic`` or ``private_key_jwt``
   with RS384/ES384), validates the ``id_token`` (signature from ``jwks_uri``, ``iss``, ``aud``,
   ``exp``, ``nonce``) and returns a :class:`SmartSession`.
4. :class:`SmartSession` holds the tokens and launch context. It implements the FHIR client's auth
   interface (``headers()``, ``refresh()``): it refreshes shortly before expiry and when the FHIR
   client reports a 401, keeps the old refresh token when the server returns none, and re-reads the
   granted scope (``can_write`` is false when allergy writes were not granted, ``can_sign_orders``
   when any write of the orders transaction was not).

By concern: :mod:`~fhir_desens.client.smart_config` (discovery, PKCE, ``state``),
:mod:`~fhir_desens.client.smart_auth` (client authentication), :mod:`~fhir_desens.client.smart_launch`
(registration, the pending authorization, the callback's errors),
:mod:`~fhir_desens.client.smart_session` (tokens, refresh, granted scopes); this module runs the flow
(:class:`SmartClient`) and re-exports every public name, so callers import from here.

Token values are never logged and never appear in ``repr``; logs say whether a token exists.
Requirement ids (docs/requirements.md) are cited as ``SMART-*`` in comments.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode, urljoin

import requests
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from fhir_desens.client.http import (
    DEFAULT_RETRY,
    NO_RETRY,
    RETRY_STATUSES,
    RetryPolicy,
    Timeout,
    new_session,
    send,
)
from fhir_desens.client.scopes import render_scopes
from fhir_desens.client.smart_auth import (
    ClientAuth,
    ClientSecretBasic,
    PrivateKeyJwt,
    PublicClient,
    load_signing_key,
)
from fhir_desens.client.smart_config import (
    SmartConfiguration,
    _require_secure,
    _text,
    is_loopback,
    make_pkce_pair,
    new_state,
    pkce_challenge,
)
from fhir_desens.client.smart_launch import (
    AuthorizationDenied,
    AuthorizationRequest,
    ClientRegistration,
    PendingAuthorization,
    callback_error,
)
from fhir_desens.client.smart_session import DEFAULT_NEEDS, ORDER_WRITES, SmartSession
from fhir_desens.errors import AuthError, FhirServerError, TemporaryServerError

__all__ = [
    "DEFAULT_NEEDS",
    "ORDER_WRITES",
    "AuthorizationDenied",
    "AuthorizationRequest",
    "ClientAuth",
    "ClientRegistration",
    "ClientSecretBasic",
    "PendingAuthorization",
    "PrivateKeyJwt",
    "PublicClient",
    "SmartClient",
    "SmartConfiguration",
    "SmartSession",
    "callback_error",
    "is_loopback",
    "load_signing_key",
    "make_pkce_pair",
    "new_state",
    "pkce_challenge",
]

log = logging.getLogger(__name__)


#: Signature algorithms accepted on an id_token (never "none", never HMAC).
ID_TOKEN_ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512")

# ----------------------------------------------------------------------------------------------
# the client


class SmartClient:
    """Runs the SMART flow for one registered app against any number of EHR FHIR servers."""

    def __init__(
        self,
        registration: ClientRegistration,
        *,
        http: requests.Session | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        clock: Callable[[], float] = time.time,
        state_ttl: float = 600.0,
        refresh_skew: float = 60.0,
        post_threshold: int = 2000,
        discovery_ttl: float = 300.0,
        jwks_ttl: float = 3600.0,
        id_token_leeway: int = 60,
    ) -> None:
        self.registration = registration
        self.http = http if http is not None else new_session()
        self.timeout: Timeout = (min(5.0, timeout), timeout)
        self.retry = retry
        self._clock = clock
        self.state_ttl = state_ttl
        self.refresh_skew = refresh_skew
        self.post_threshold = post_threshold
        self.discovery_ttl = discovery_ttl
        self.jwks_ttl = jwks_ttl
        self.id_token_leeway = id_token_leeway
        self._discovery: dict[str, tuple[float, SmartConfiguration]] = {}
        self._jwks: dict[str, tuple[float, KeySet]] = {}

    def now(self) -> float:
        return self._clock()

    # -- HTTP (through the project's HTTP policy: timeouts, retries of GET only, no redirects) -------
    def _get_json(self, url: str, what: str) -> tuple[int, Any]:
        """GET a JSON document; 408/429/5xx after the policy's retries raise TemporaryServerError."""
        response = send(
            self.http,
            "GET",
            url,
            headers={"Accept": "application/json"},
            timeout=self.timeout,
            policy=self.retry,
        )
        if response.status_code in RETRY_STATUSES or response.status_code >= 500:
            raise TemporaryServerError(f"{what}: HTTP {response.status_code}", status=response.status_code)
        try:
            body = response.json()
        except ValueError:
            body = None
        return response.status_code, body

    def _post_token(
        self, data: dict[str, str], auth: ClientAuth, token_url: str, what: str
    ) -> dict[str, Any]:
        """POST to the token endpoint once (never retried: codes and rotated refresh tokens are single use)."""
        headers = {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"}
        auth.apply(data, headers, client_id=self.registration.client_id, token_url=token_url, now=self.now())
        try:
            response = send(
                self.http,
                "POST",
                token_url,
                headers=headers,
                data=urlencode(data).encode("ascii"),
                timeout=self.timeout,
                policy=NO_RETRY,
                idempotent=False,
            )
        except TemporaryServerError:
            raise AuthError(f"{what}: the token endpoint could not be reached or did not answer") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200 or not isinstance(body, dict):
            error = body.get("error") if isinstance(body, dict) else None
            described = body.get("error_description") if isinstance(body, dict) else None
            detail = f"{error}" if isinstance(error, str) else f"HTTP {response.status_code}"
            if isinstance(described, str) and described:
                detail += f": {described[:300]}"
            raise AuthError(f"{what} was refused by the EHR ({detail})")
        return body

    # -- discovery --------------------------------------------------------------------------------
    def discover(self, fhir_base: str) -> SmartConfiguration:
        """The server's SMART configuration (cached for ``discovery_ttl`` seconds)."""
        cached = self._discovery.get(fhir_base)
        if cached and self.now() - cached[0] < self.discovery_ttl:
            return cached[1]
        base = fhir_base.rstrip("/")
        config: SmartConfiguration | None = None
        status, body = self._get_json(f"{base}/.well-known/smart-configuration", "SMART discovery")
        if status == 200 and isinstance(body, dict):
            try:
                config = SmartConfiguration.from_well_known(fhir_base, body)
            except FhirServerError:
                config = None
        if config is None:
            log.info("no usable .well-known/smart-configuration (HTTP %s); trying /metadata", status)
            status, body = self._get_json(f"{base}/metadata", "SMART discovery (CapabilityStatement)")
            if status != 200 or not isinstance(body, dict):
                raise FhirServerError(
                    "the EHR publishes no SMART configuration (.well-known/smart-configuration or "
                    f"CapabilityStatement oauth-uris; HTTP {status})",
                    status=status,
                )
            config = SmartConfiguration.from_capability_statement(fhir_base, body)
        _require_secure(config.authorization_endpoint, "the authorization endpoint")
        _require_secure(config.token_endpoint, "the token endpoint")
        if config.code_challenge_methods_supported and "S256" not in config.code_challenge_methods_supported:
            raise AuthError("the EHR does not support PKCE with S256, which SMART requires")
        log.info(
            "SMART discovery via %s: v2 scopes %s, %d capabilities",
            config.source,
            "yes" if config.supports_v2_scopes else "no",
            len(config.capabilities),
        )
        self._discovery[fhir_base] = (self.now(), config)
        return config

    # -- authorize --------------------------------------------------------------------------------
    def scope_for(self, configuration: SmartConfiguration, *, ehr_launch: bool) -> str:
        context = ["launch"] if ehr_launch else ["launch/patient"]
        return render_scopes(
            context + list(self.registration.extra_scopes),
            self.registration.needs,
            v2=configuration.supports_v2_scopes,
        )

    def authorize(
        self,
        fhir_base: str,
        *,
        launch: str | None = None,
        configuration: SmartConfiguration | None = None,
    ) -> AuthorizationRequest:
        """Start an authorization: EHR launch when ``launch`` is given, standalone otherwise."""
        config = configuration or self.discover(fhir_base)
        verifier, challenge = make_pkce_pair()
        now = self.now()
        pending = PendingAuthorization(
            state=new_state(),
            code_verifier=verifier,
            nonce=secrets.token_urlsafe(32),
            fhir_base=fhir_base,
            redirect_uri=self.registration.redirect_uri,
            scope=self.scope_for(config, ehr_launch=launch is not None),
            created_at=now,
            expires_at=now + self.state_ttl,
            configuration=config,
            launch=launch,
        )
        params = {
            "response_type": "code",
            "client_id": self.registration.client_id,
            "redirect_uri": pending.redirect_uri,
            "scope": pending.scope,
            "state": pending.state,
            "aud": fhir_base,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "nonce": pending.nonce,
        }
        if launch is not None:
            params["launch"] = launch
        request = AuthorizationRequest(config.authorization_endpoint, params, "GET", pending)
        long_url = len(request.location) > self.post_threshold
        post_ok = "authorize-post" in config.capabilities or not config.capabilities
        if long_url and post_ok:
            request = replace(request, method="POST")
        log.info(
            "authorization request prepared (%s, %s launch)",
            request.method,
            "EHR" if launch else "standalone",
        )
        return request

    # -- callback and token exchange ----------------------------------------------------------------
    def check_state(self, pending: PendingAuthorization, state: str) -> None:
        """Constant-time ``state`` comparison and expiry check (single use is the store's job)."""
        if not hmac.compare_digest(pending.state.encode(), (state or "").encode()):
            raise AuthError("the sign-in response does not match this launch (state mismatch)")
        if self.now() > pending.expires_at:
            raise AuthError("the sign-in took too long and has expired; launch the app again")

    def choose_auth(self, configuration: SmartConfiguration) -> ClientAuth:
        methods = self.registration.auth
        if not methods:
            return PublicClient()
        supported = configuration.token_endpoint_auth_methods_supported
        if not supported:
            return methods[0]
        for auth in methods:
            if auth.method in supported:
                return auth
        raise AuthError(
            "the EHR supports none of this app's client authentication methods "
            f"({', '.join(a.method for a in methods)}; EHR offers {', '.join(supported)})"
        )

    def complete(self, pending: PendingAuthorization, *, code: str, state: str) -> SmartSession:
        """Finish the authorization: check state, exchange the code, validate the id_token."""
        self.check_state(pending, state)
        if not code:
            raise AuthError("the sign-in response has no authorization code")
        config = pending.configuration
        auth = self.choose_auth(config)
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": pending.redirect_uri,
            "code_verifier": pending.code_verifier,
        }
        body = self._post_token(data, auth, config.token_endpoint, "the token exchange")
        session = self._session_from_token_response(body, pending, auth)
        id_token = body.get("id_token")
        if isinstance(id_token, str) and id_token:
            claims = self.validate_id_token(id_token, configuration=config, nonce=pending.nonce)
            session.id_token_subject = _text(claims.get("sub"))
            fhir_user = _text(claims.get("fhirUser")) or _text(claims.get("profile"))
            if fhir_user:
                session.fhir_user = urljoin(pending.fhir_base.rstrip("/") + "/", fhir_user)
        log.info(
            "token exchange succeeded (access token: %s, refresh token: %s, id_token: %s, write access: %s)",
            "yes" if session.has_access_token else "no",
            "yes" if session.has_refresh_token else "no",
            "yes" if id_token else "no",
            "yes" if session.can_write else "no",
        )
        return session

    def _session_from_token_response(
        self, body: Mapping[str, Any], pending: PendingAuthorization, auth: ClientAuth
    ) -> SmartSession:
        access_token = _text(body.get("access_token"))
        if not access_token:
            raise AuthError("the EHR's token response has no access token")
        token_type = _text(body.get("token_type")) or ""
        if token_type.lower() != "bearer":
            raise AuthError(f"the EHR issued a {token_type or 'typeless'} token; SMART requires Bearer")
        now = self.now()
        expires_in = body.get("expires_in")
        # RFC 6749 §5.1: scope is OPTIONAL when identical to the request; SMART says always send it.
        scope = _text(body.get("scope")) or pending.scope
        banner = body.get("need_patient_banner")
        return SmartSession(
            fhir_base=pending.fhir_base,
            token_endpoint=pending.configuration.token_endpoint,
            client_id=self.registration.client_id,
            auth_method=auth.method,
            access_token=access_token,
            expires_at=now + float(expires_in) if isinstance(expires_in, (int, float)) else None,
            scope=scope,
            refresh_token=_text(body.get("refresh_token")),
            token_type="Bearer",  # noqa: S106 - the token type name, not a secret
            patient=_text(body.get("patient")),
            encounter=_text(body.get("encounter")),
            need_patient_banner=banner if isinstance(banner, bool) else True,
            smart_style_url=_text(body.get("smart_style_url")),
            intent=_text(body.get("intent")),
            tenant=_text(body.get("tenant")),
            fhir_context=[c for c in body.get("fhirContext") or [] if isinstance(c, dict)],
            issued_at=now,
            client=self,
        )

    # -- refresh ------------------------------------------------------------------------------------
    def refresh(self, session: SmartSession) -> bool:
        """Exchange the refresh token; True on success. Keeps the old refresh token if none is returned."""
        if not session.refresh_token:
            log.info("refresh not possible: no refresh token")
            return False
        with session._lock:
            auth = self.registration.auth_for(session.auth_method)
            data = {"grant_type": "refresh_token", "refresh_token": session.refresh_token}
            try:
                body = self._post_token(data, auth, session.token_endpoint, "the token refresh")
            except AuthError as error:
                log.warning("token refresh failed: %s", error)
                return False
            access_token = _text(body.get("access_token"))
            if not access_token:
                log.warning("token refresh answered without an access token")
                return False
            now = self.now()
            session.access_token = access_token
            expires_in = body.get("expires_in")
            session.expires_at = now + float(expires_in) if isinstance(expires_in, (int, float)) else None
            session.refresh_token = _text(body.get("refresh_token")) or session.refresh_token
            session.scope = _text(body.get("scope")) or session.scope
            session.issued_at = now
            log.info(
                "token refreshed (new refresh token: %s, write access: %s)",
                "yes" if body.get("refresh_token") else "no, kept the previous one",
                "yes" if session.can_write else "no",
            )
        if session.on_update is not None:
            session.on_update(session)
        return True

    # -- identity ----------------------------------------------------------------------------------
    def _key_set(self, jwks_uri: str, *, force: bool = False) -> KeySet:
        cached = self._jwks.get(jwks_uri)
        if cached and not force and self.now() - cached[0] < self.jwks_ttl:
            return cached[1]
        _require_secure(jwks_uri, "the EHR's jwks_uri")
        status, body = self._get_json(jwks_uri, "fetching the EHR's signing keys")
        if status != 200 or not isinstance(body, dict) or not isinstance(body.get("keys"), list):
            raise AuthError(f"the EHR's jwks_uri did not return a JWK set (HTTP {status})")
        usable = [
            k
            for k in body["keys"]
            if isinstance(k, dict) and k.get("kty") in ("RSA", "EC", "OKP") and k.get("use") in (None, "sig")
        ]
        try:
            keys = KeySet.import_key_set({"keys": usable})
        except (JoseError, ValueError, TypeError) as error:
            raise AuthError(f"the EHR's signing keys could not be read ({type(error).__name__})") from None
        self._jwks[jwks_uri] = (self.now(), keys)
        return keys

    def _oidc_metadata(self, configuration: SmartConfiguration) -> tuple[str | None, str | None]:
        """(issuer, jwks_uri), from the SMART configuration or else OpenID discovery at the FHIR base."""
        if configuration.issuer and configuration.jwks_uri:
            return configuration.issuer, configuration.jwks_uri
        base = configuration.fhir_base.rstrip("/")
        status, body = self._get_json(f"{base}/.well-known/openid-configuration", "OpenID discovery")
        if status == 200 and isinstance(body, dict):
            return (
                configuration.issuer or _text(body.get("issuer")),
                configuration.jwks_uri or _text(body.get("jwks_uri")),
            )
        return configuration.issuer, configuration.jwks_uri

    def validate_id_token(
        self, id_token: str, *, configuration: SmartConfiguration, nonce: str
    ) -> dict[str, Any]:
        """Verify the id_token's signature (jwks_uri), iss, aud, exp, iat and nonce; return its claims."""
        issuer, jwks_uri = self._oidc_metadata(configuration)
        if not issuer or not jwks_uri:
            raise AuthError("the EHR sent an id_token but publishes no issuer/jwks_uri to verify it")
        token = self._decode_signed(id_token, jwks_uri)
        claims = dict(token.claims)
        registry = jwt.JWTClaimsRegistry(
            now=lambda: int(self.now()),
            leeway=self.id_token_leeway,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": self.registration.client_id},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        try:
            registry.validate(claims)
        except JoseError as error:
            raise AuthError(
                f"the EHR's id_token is not valid ({error.error}: {error.description or ''})"
            ) from None
        audience = claims.get("aud")
        if (
            isinstance(audience, list)
            and len(audience) > 1
            and claims.get("azp") != self.registration.client_id
        ):
            raise AuthError("the EHR's id_token has several audiences and no matching azp")
        return claims

    def _decode_signed(self, value: str, jwks_uri: str) -> jwt.Token:
        for force in (False, True):  # retry once with fresh keys: the EHR may have rotated them
            keys = self._key_set(jwks_uri, force=force)
            try:
                return jwt.decode(value, keys, algorithms=list(ID_TOKEN_ALGORITHMS))
            except JoseError as error:
                if force:
                    raise AuthError(
                        f"the EHR's id_token signature could not be verified ({error.error})"
                    ) from None
            except (ValueError, TypeError):
                raise AuthError("the EHR's id_token is malformed") from None
        raise AuthError("the EHR's id_token signature could not be verified")  # pragma: no cover
