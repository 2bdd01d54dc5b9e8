"""``private_key_jwt`` client authentication per SMART "Client Authentication: Asymmetric" (RFC 7523 over
Authlib): RS384/ES384 only, the key chosen by ``kid`` (and ``jku`` when sent) among the client's registered
keys or JWK Set URL (read again once when the ``kid`` is unknown: the client may have rotated), ``exp`` at
most five minutes ahead, each ``jti`` once."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import requests
from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey

from fhir_desens.sandbox.clients import SandboxClient

if TYPE_CHECKING:  # the server registers this method
    from fhir_desens.sandbox.oauth import SmartAuthorizationServer

log = logging.getLogger(__name__)

CLIENT_ASSERTION_SIGNING_ALGS = ("RS384", "ES384")
MAX_ASSERTION_LIFETIME = 300  # seconds: SMART "no more than five minutes in the future"
CLOCK_SKEW = 10  # seconds tolerated on exp (both directions)


def safe_description(text: str) -> str:
    """RFC 6749 restricts error_description to printable ASCII without ``"`` and ``\\``."""
    cleaned = text.replace('"', "'").replace("\\", "/")
    return "".join(c for c in cleaned if 0x20 <= ord(c) <= 0x7E)


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


__all__ = ["CLIENT_ASSERTION_SIGNING_ALGS", "PrivateKeyJwtAuth", "safe_description"]
