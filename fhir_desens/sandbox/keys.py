"""The sandbox's own signing key (id_token, RS256), generated at start and never written to disk."""

from __future__ import annotations

from typing import Any

from joserfc.jwk import RSAKey

ID_TOKEN_ALG = "RS256"  # noqa: S105 (an algorithm name, not a secret)


class SigningKeys:
    def __init__(self) -> None:
        key = RSAKey.generate_key(2048, parameters={"use": "sig", "alg": ID_TOKEN_ALG}, private=True)
        # RFC 7638 thumbprint as the key id: stable for this key, meaningless otherwise
        key.ensure_kid()
        self.private_key = key

    @property
    def kid(self) -> str:
        kid = self.private_key.kid
        assert kid is not None
        return kid

    def public_jwks(self) -> dict[str, Any]:
        """The JWK Set published at the ``jwks_uri``: public members only."""
        return {"keys": [self.private_key.as_dict(private=False)]}
