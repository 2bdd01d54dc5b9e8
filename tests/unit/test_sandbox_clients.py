"""Client registration of the sandbox authorization server (fhir_desens.sandbox.clients)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import ECKey, RSAKey

from fhir_desens.errors import ConfigurationError, InputError
from fhir_desens.sandbox.clients import ClientRegistry, load_clients, make_client

REDIRECT = "https://app.example/callback"


def public_jwks() -> dict[str, Any]:
    key = ECKey.generate_key("P-384", parameters={"kid": "k1"}, private=True)
    return {"keys": [key.as_dict(private=False)]}


def test_each_client_type_maps_to_its_token_endpoint_auth_method() -> None:
    assert make_client("a", "public", [REDIRECT]).token_endpoint_auth_method == "none"
    assert make_client("b", "symmetric", [REDIRECT], secret="s" * 32).token_endpoint_auth_method == (
        "client_secret_basic"
    )
    client = make_client("c", "asymmetric", [REDIRECT], jwks=public_jwks())
    assert client.token_endpoint_auth_method == "private_key_jwt"
    assert client.check_endpoint_auth_method("private_key_jwt", "token")
    assert not client.check_endpoint_auth_method("none", "token")


def test_secrets_and_keys_stay_out_of_repr() -> None:
    client = make_client("b", "symmetric", [REDIRECT], secret="very-secret-value")
    assert "very-secret-value" not in repr(client)
    assert client.check_client_secret("very-secret-value")
    assert not client.check_client_secret("very-secret-valuX")


def test_redirect_uris_match_exactly() -> None:
    client = make_client("a", "public", [REDIRECT])
    assert client.check_redirect_uri(REDIRECT)
    assert not client.check_redirect_uri(REDIRECT + "/")
    assert not client.check_redirect_uri(REDIRECT + "?x=1")
    assert client.get_default_redirect_uri() is None  # SMART: redirect_uri is required on every request


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"client_type": "confidential"}, "type"),
        ({"redirect_uris": []}, "redirect_uris"),
        ({"redirect_uris": ["/callback"]}, "redirect_uris"),
        ({"redirect_uris": ["https://app.example/cb#frag"]}, "redirect_uris"),
        ({"client_type": "symmetric"}, "secret"),
        ({"secret": "s"}, "secret"),
        ({"client_type": "asymmetric"}, "jwks"),
        ({"client_type": "asymmetric", "jwks": {"keys": []}}, "jwks"),
        ({"jwks_url": "https://app.example/jwks"}, "jwks"),
    ],
)
def test_invalid_registrations_name_the_field(arguments: dict[str, Any], field: str) -> None:
    options: dict[str, Any] = {"client_id": "x", "client_type": "public", "redirect_uris": [REDIRECT]}
    options.update(arguments)
    with pytest.raises(InputError) as raised:
        make_client(
            options.pop("client_id"), options.pop("client_type"), options.pop("redirect_uris"), **options
        )
    assert raised.value.field == field


def test_private_keys_are_refused_in_a_registered_jwks() -> None:
    key = RSAKey.generate_key(2048, parameters={"kid": "r1"}, private=True)
    with pytest.raises(InputError, match="public keys only"):
        make_client("c", "asymmetric", [REDIRECT], jwks={"keys": [key.as_dict(private=True)]})


def test_the_granted_scope_follows_ceiling_and_override() -> None:
    narrow = make_client("a", "public", [REDIRECT], scope="launch patient/*.rs")
    assert (
        narrow.get_allowed_scope("launch openid patient/Observation.cruds") == "launch patient/Observation.rs"
    )
    assert narrow.get_allowed_scope("") is None
    fixed = make_client("b", "public", [REDIRECT], granted_scope="patient/AllergyIntolerance.rs")
    assert fixed.get_allowed_scope("openid patient/*.cruds") == "openid patient/AllergyIntolerance.rs"


def test_registry_replaces_and_finds_clients() -> None:
    registry = ClientRegistry()
    registry.add(make_client("a", "public", [REDIRECT], launch_url="https://app.example/launch"))
    registry.add(make_client("a", "public", [REDIRECT], launch_url="https://app.example/launch2"))
    assert len(registry.all()) == 1
    assert registry.find_by_launch_url("https://app.example/launch2") is not None
    assert registry.get(None) is None and registry.get("zzz") is None


def test_clients_load_from_a_json_file(tmp_path: Path) -> None:
    path = tmp_path / "clients.json"
    path.write_text(
        json.dumps(
            {
                "clients": [
                    {"client_id": "pub", "type": "public", "redirect_uris": [REDIRECT]},
                    {
                        "client_id": "asym",
                        "type": "asymmetric",
                        "redirect_uris": [REDIRECT],
                        "jwks": public_jwks(),
                    },
                    {
                        "client_id": "url",
                        "type": "asymmetric",
                        "redirect_uris": [REDIRECT],
                        "jwks_url": "https://app.example/.well-known/jwks.json",
                        "granted_scope": "patient/*.rs",
                    },
                ]
            }
        ),
        encoding="utf-8",
    )
    clients = load_clients(path)
    assert [c.client_id for c in clients] == ["pub", "asym", "url"]
    assert clients[2].granted_scope == "patient/*.rs"


def test_bad_client_files_are_configuration_or_input_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    with pytest.raises(ConfigurationError):
        load_clients(broken)
    unknown = tmp_path / "unknown.json"
    unknown.write_text(
        json.dumps([{"client_id": "a", "type": "public", "redirect_uris": [REDIRECT], "pw": 1}])
    )
    with pytest.raises(InputError, match="pw"):
        load_clients(unknown)
