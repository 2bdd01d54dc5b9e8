"""``/healthz`` says the process answers; ``/readyz`` says its shared stores answer (docs/deployment.md).
The Redis and PostgreSQL cases run against real servers in tests/integration/test_two_instances.py."""

from __future__ import annotations

from pathlib import Path

from tests.app.conftest import AppFactory, https_client
from tests.services import free_port


def test_ready_when_the_session_store_and_the_record_database_answer(
    make_app: AppFactory, tmp_path: Path
) -> None:
    app = make_app(RECORD_URL=f"sqlite:///{tmp_path / 'record.sqlite3'}")
    response = https_client(app).get("/readyz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}
    assert https_client(app).get("/healthz").status_code == 200


def test_not_ready_names_the_store_that_does_not_answer(make_app: AppFactory, tmp_path: Path) -> None:
    nothing_listens = f"redis://127.0.0.1:{free_port()}/0"
    app = make_app(SESSION_URL=nothing_listens, RECORD_URL=f"sqlite:///{tmp_path / 'record.sqlite3'}")
    response = https_client(app).get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable", "failed": ["session store"]}
    assert "127.0.0.1" not in response.get_data(as_text=True)
    assert https_client(app).get("/healthz").status_code == 200  # alive, only not ready
