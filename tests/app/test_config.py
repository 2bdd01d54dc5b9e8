"""create_app configuration: defaults < FHIR_DESENS_* environment < test mapping; refusal outside testing."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from joserfc.jwk import ECKey, RSAKey

from fhir_desens.errors import ConfigurationError
from smart_app import create_app

GOOD = {
    "FHIR_DESENS_SECRET_KEY": "x" * 48,
    "FHIR_DESENS_SMART_CLIENT_ID": "desens-app",
    "FHIR_DESENS_ALLOWED_ISS": "https://ehr.example.org/fhir, https://other.example.org/r4/",
    "FHIR_DESENS_PUBLIC_URL": "https://app.example.org/desens/",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name, value in GOOD.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("FHIR_DESENS_SESSION_URL", f"sqlite:///{tmp_path / 's.sqlite3'}")
    return monkeypatch


def test_starts_from_the_environment(env: pytest.MonkeyPatch) -> None:
    app = create_app()
    settings = app.extensions["fhir_desens"].settings
    assert settings.client_id == "desens-app"
    assert settings.allowed_iss == ("https://ehr.example.org/fhir", "https://other.example.org/r4")
    assert settings.public_url == "https://app.example.org/desens"
    assert settings.redirect_uri == "https://app.example.org/desens/callback"
    assert settings.frame_ancestors == ("'self'",)
    assert app.config["SECRET_KEY"] == "x" * 48
    assert app.config["SESSION_COOKIE_SAMESITE"] == "None" and app.config["SESSION_COOKIE_SECURE"]


def test_mapping_overrides_environment(env: pytest.MonkeyPatch) -> None:
    env.setenv("FHIR_DESENS_FRAME_ANCESTORS", "https://ehr.example.org")
    app = create_app({"SMART_CLIENT_ID": "from-mapping"})
    settings = app.extensions["fhir_desens"].settings
    assert settings.client_id == "from-mapping"
    assert settings.frame_ancestors == ("https://ehr.example.org",)


@pytest.mark.parametrize(
    "variable",
    [
        "FHIR_DESENS_SECRET_KEY",
        "FHIR_DESENS_SMART_CLIENT_ID",
        "FHIR_DESENS_ALLOWED_ISS",
        "FHIR_DESENS_PUBLIC_URL",
    ],
)
def test_refuses_to_start_without_required_variable(env: pytest.MonkeyPatch, variable: str) -> None:
    env.delenv(variable)
    with pytest.raises(ConfigurationError, match=variable):
        create_app()


def test_refuses_with_nothing_set_and_names_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError) as info:
        create_app()
    for name in ("SECRET_KEY", "SMART_CLIENT_ID", "ALLOWED_ISS", "PUBLIC_URL"):
        assert f"FHIR_DESENS_{name}" in str(info.value)


def test_testing_mode_starts_without_them(tmp_path: Path) -> None:
    app = create_app({"TESTING": True, "SESSION_URL": "memory:"})
    assert len(app.config["SECRET_KEY"]) >= 32  # random, never a hard-coded default


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("FHIR_DESENS_SECRET_KEY", "short", "too short"),
        ("FHIR_DESENS_PUBLIC_URL", "http://app.example.org", "https"),
        ("FHIR_DESENS_PUBLIC_URL", "app.example.org", "absolute"),
        ("FHIR_DESENS_ALLOWED_ISS", "http://ehr.example.org/fhir", "https"),
        ("FHIR_DESENS_ALLOWED_ISS", "https://ehr.example.org/fhir?x=1", "query"),
        ("FHIR_DESENS_FRAME_ANCESTORS", "https://ehr.example.org; script-src *", "FRAME_ANCESTORS"),
        ("FHIR_DESENS_FRAME_ANCESTORS", "'none', https://ehr.example.org", "'none'"),
        ("FHIR_DESENS_SESSION_TTL", "soon", "SESSION_TTL"),
        ("FHIR_DESENS_STATE_TTL", "0", "STATE_TTL"),
        ("FHIR_DESENS_SMART_SIGNING_ALG", "HS256", "SMART_SIGNING_ALG"),
        ("FHIR_DESENS_SMART_KEY_ID", "k1", "SMART_PRIVATE_KEY"),
        ("FHIR_DESENS_SMART_PRIVATE_KEY", "/nonexistent/key.pem", "cannot read"),
        ("FHIR_DESENS_SESSION_URL", "mysql://x", "SESSION_URL"),
        ("FHIR_DESENS_PUMP_RESOLUTION_ML_H", "0", "PUMP_RESOLUTION_ML_H"),
        ("FHIR_DESENS_PUMP_RESOLUTION_ML_H", "0.1 mL/h", "PUMP_RESOLUTION_ML_H"),
        ("FHIR_DESENS_PUMP_RESOLUTION_ML_H", "50", "at most 10"),
        ("FHIR_DESENS_BAG_OVERFILL_ML", "250", "BAG_OVERFILL_ML"),
        ("FHIR_DESENS_BAG_OVERFILL_ML", "250=100", "25%"),
        ("FHIR_DESENS_MIN_DRAW_ML", "0", "MIN_DRAW_ML"),
        ("FHIR_DESENS_MIN_DRAW_ML", "0.105", "0.01 mL marks"),
        ("FHIR_DESENS_MIN_DRAW_ML", "2", "from 0.01 to 1"),
        ("FHIR_DESENS_MIN_DRAW_ML", "NaN", "MIN_DRAW_ML"),
    ],
)
def test_invalid_values_are_refused(env: pytest.MonkeyPatch, variable: str, value: str, message: str) -> None:
    env.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=message):
        create_app()


def test_the_bag_overfill_is_a_site_setting_over_the_defaults(env: pytest.MonkeyPatch) -> None:
    assert create_app().extensions["fhir_desens"].settings.bag_overfill_ml[Decimal(250)] == Decimal(25)
    env.setenv("FHIR_DESENS_BAG_OVERFILL_ML", "250=20, 100 = 8")
    overfill = create_app().extensions["fhir_desens"].settings.bag_overfill_ml
    assert overfill[Decimal(250)] == Decimal(20) and overfill[Decimal(100)] == Decimal(8)
    assert overfill[Decimal(500)] == Decimal(30)  # the defaults for sizes not listed


def test_the_minimum_draw_is_a_site_setting(env: pytest.MonkeyPatch) -> None:
    assert create_app().extensions["fhir_desens"].settings.min_draw_ml == Decimal("0.1")
    env.setenv("FHIR_DESENS_MIN_DRAW_ML", " 0.2 ")
    assert create_app().extensions["fhir_desens"].settings.min_draw_ml == Decimal("0.2")


def test_the_pump_resolution_is_a_site_setting(env: pytest.MonkeyPatch) -> None:
    """Plans run at rates the site's pumps take: 0.1 mL/h unless the site says otherwise, or exact."""
    from decimal import Decimal

    assert create_app().extensions["fhir_desens"].settings.pump_resolution_ml_h == Decimal("0.1")
    env.setenv("FHIR_DESENS_PUMP_RESOLUTION_ML_H", "1")
    assert create_app().extensions["fhir_desens"].settings.pump_resolution_ml_h == Decimal(1)
    env.setenv("FHIR_DESENS_PUMP_RESOLUTION_ML_H", "exact")
    assert create_app().extensions["fhir_desens"].settings.pump_resolution_ml_h is None


def test_localhost_may_use_http(env: pytest.MonkeyPatch) -> None:
    env.setenv("FHIR_DESENS_PUBLIC_URL", "http://127.0.0.1:8000")
    env.setenv("FHIR_DESENS_ALLOWED_ISS", "http://localhost:9000/fhir")
    assert create_app().extensions["fhir_desens"].settings.public_url == "http://127.0.0.1:8000"


@pytest.mark.parametrize(
    ("key", "alg"), [(RSAKey.generate_key(2048), "RS384"), (ECKey.generate_key("P-384"), "ES384")]
)
def test_private_key_file_and_jwks_endpoint(env: pytest.MonkeyPatch, tmp_path: Path, key, alg: str) -> None:
    pem = tmp_path / "app-key.pem"
    pem.write_bytes(key.as_pem(private=True))
    env.setenv("FHIR_DESENS_SMART_PRIVATE_KEY", str(pem))
    env.setenv("FHIR_DESENS_SMART_KEY_ID", "app-key-2026")
    app = create_app()
    response = app.test_client().get("/.well-known/jwks.json")
    assert response.status_code == 200
    (jwk,) = response.get_json()["keys"]
    assert jwk["kid"] == "app-key-2026" and jwk["alg"] == alg and jwk["use"] == "sig"
    assert "d" not in jwk and "p" not in jwk and "q" not in jwk
    assert b"PRIVATE" not in response.data


def test_private_key_as_jwk_file(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import json

    key = ECKey.generate_key("P-384")
    path = tmp_path / "key.jwk.json"
    path.write_text(json.dumps(dict(key.as_dict(private=True), kid="from-file")))
    env.setenv("FHIR_DESENS_SMART_PRIVATE_KEY", str(path))
    app = create_app()
    assert app.extensions["fhir_desens"].signing_key.kid == "from-file"


def test_jwks_is_empty_without_a_key(env: pytest.MonkeyPatch) -> None:
    assert create_app().test_client().get("/.well-known/jwks.json").get_json() == {"keys": []}


def test_no_secret_defaults_in_code() -> None:
    from smart_app import config

    assert config.VARIABLES["SECRET_KEY"][0] is None
    assert config.VARIABLES["SMART_CLIENT_SECRET"][0] is None
