"""SMART client authentication at the token endpoint: none (public), ``client_secret_basic``, and
``private_key_jwt`` with RS384/ES384 (SMART-ASYM-1). Part of :mod:`fhir_desens.client.smart`, which
re-exports every public name. Secrets and keys never appear in ``repr`` or logs."""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, JWKRegistry, RSAKey

from fhir_desens.client.smart_config import _text
from fhir_desens.errors import ConfigurationError

log = logging.getLogger(__name__)

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: Asymmetric client authentication algorithms a SMART client SHALL support (SMART-ASYM-1).
ASSERTION_ALGORITHMS = ("RS384", "ES384")
MAX_ASSERTION_LIFETIME = 300  # seconds; SMART: exp no more than five minutes in the future

# ----------------------------------------------------------------------------------------------
# client authentication


class ClientAuth:
    """How the client authenticates at the token endpoint."""

    #: the ``token_endpoint_auth_methods_supported`` value
    method = "none"

    def apply(
        self, data: dict[str, str], headers: dict[str, str], *, client_id: str, token_url: str, now: float
    ) -> None:
        raise NotImplementedError


class PublicClient(ClientAuth):
    """A public client: no secret, ``client_id`` in the body (SMART-TOKEN-1)."""

    method = "none"

    def apply(
        self, data: dict[str, str], headers: dict[str, str], *, client_id: str, token_url: str, now: float
    ) -> None:
        data["client_id"] = client_id

    def __repr__(self) -> str:
        return "PublicClient()"


class ClientSecretBasic(ClientAuth):
    """A symmetric confidential client: HTTP Basic with the form-encoded id and secret (RFC 6749 §2.3.1)."""

    method = "client_secret_basic"

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ConfigurationError("the SMART client secret is empty")
        self._secret = secret

    def apply(
        self, data: dict[str, str], headers: dict[str, str], *, client_id: str, token_url: str, now: float
    ) -> None:
        pair = f"{quote(client_id, safe='')}:{quote(self._secret, safe='')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")

    def __repr__(self) -> str:
        return "ClientSecretBasic(secret=<hidden>)"


class PrivateKeyJwt(ClientAuth):
    """An asymmetric confidential client: a signed JWT assertion (RS384 or ES384) per token request."""

    method = "private_key_jwt"

    def __init__(self, key: RSAKey | ECKey, *, kid: str, alg: str) -> None:
        if alg not in ASSERTION_ALGORITHMS:
            raise ConfigurationError(f"the client assertion algorithm must be RS384 or ES384, not {alg!r}")
        if alg == "RS384" and not isinstance(key, RSAKey):
            raise ConfigurationError("RS384 needs an RSA private key")
        if alg == "ES384" and not (isinstance(key, ECKey) and key.curve_name == "P-384"):
            raise ConfigurationError("ES384 needs an EC private key on curve P-384")
        if not key.is_private:
            raise ConfigurationError("the SMART signing key is a public key; a private key is required")
        if isinstance(key, RSAKey) and key.raw_value.key_size < 2048:
            raise ConfigurationError("the RSA signing key must have at least 2048 bits")
        self._key = key
        self.kid = kid
        self.alg = alg

    def assertion(self, *, client_id: str, token_url: str, now: float) -> str:
        """The ``client_assertion`` JWT: iss = sub = client_id, aud = token URL, exp ≤ 5 min, unique jti."""
        issued = int(now)
        claims = {
            "iss": client_id,
            "sub": client_id,
            "aud": token_url,
            "iat": issued,
            "exp": issued + MAX_ASSERTION_LIFETIME,
            "jti": str(uuid.uuid4()),
        }
        header = {"alg": self.alg, "kid": self.kid, "typ": "JWT"}
        return jwt.encode(header, claims, self._key, algorithms=[self.alg])

    def apply(
        self, data: dict[str, str], headers: dict[str, str], *, client_id: str, token_url: str, now: float
    ) -> None:
        data["client_assertion_type"] = JWT_BEARER
        data["client_assertion"] = self.assertion(client_id=client_id, token_url=token_url, now=now)

    def public_jwk(self) -> dict[str, Any]:
        """The public half as a JWK (for the app's JWKS endpoint)."""
        jwk = dict(self._key.as_dict(private=False))
        jwk.update({"kid": self.kid, "alg": self.alg, "use": "sig", "key_ops": ["verify"]})
        return jwk

    def __repr__(self) -> str:
        return f"PrivateKeyJwt(kid={self.kid!r}, alg={self.alg!r})"


def load_signing_key(
    data: str | bytes | Mapping[str, Any], *, kid: str | None = None, alg: str | None = None
) -> PrivateKeyJwt:
    """A :class:`PrivateKeyJwt` from a PEM private key, a JWK (JSON text or dict) or a JWKS with one key.

    ``alg`` defaults from the key: RSA → RS384, EC P-384 → ES384. ``kid`` defaults to the JWK's own
    ``kid`` or else the RFC 7638 thumbprint.
    """
    key: Any
    try:
        if isinstance(data, Mapping) or (isinstance(data, (str, bytes)) and data.lstrip()[:1] in ("{", b"{")):
            doc = json.loads(data) if isinstance(data, (str, bytes)) else dict(data)
            if "keys" in doc:
                keys = [k for k in doc["keys"] if isinstance(k, Mapping) and "d" in k]
                if len(keys) != 1:
                    raise ConfigurationError("the JWKS must hold exactly one private key")
                doc = dict(keys[0])
            key = JWKRegistry.import_key(doc)
            kid = kid or _text(doc.get("kid"))
        else:
            raw = data.encode() if isinstance(data, str) else data
            try:
                key = RSAKey.import_key(raw)
            except (JoseError, ValueError, TypeError):
                key = ECKey.import_key(raw)
    except ConfigurationError:
        raise
    except (JoseError, ValueError, TypeError, KeyError) as error:
        raise ConfigurationError(
            f"the SMART private key could not be read ({type(error).__name__})"
        ) from None
    if not isinstance(key, (RSAKey, ECKey)):
        raise ConfigurationError("the SMART private key must be an RSA or EC (P-384) key")
    if alg is None:
        alg = "RS384" if isinstance(key, RSAKey) else "ES384"
    return PrivateKeyJwt(key, kid=kid or key.thumbprint(), alg=alg)
