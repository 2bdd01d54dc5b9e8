"""Protocol libraries imported at start-up (FHIR_DESENS_PROTOCOL_LIBRARY): offered, refused when bad."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from fhir_desens.errors import ConfigurationError
from fhir_desens.fhir.plandefinition import library_bundle
from fhir_desens.io.formats import write_resource
from fhir_desens.protocol.library import builtin_protocols
from tests.app.conftest import AppFactory, Launcher, https_client
from tests.app.fake_ehr import FakeEhr
from tests.app.planner import Planner
from tests.html import selected_text

# --- imported protocol libraries -----------------------------------------------------------------


@pytest.fixture
def library_file(tmp_path: Path) -> Path:
    imported = replace(
        builtin_protocols()["iv-12-step-3-bag"],
        id="hospital-12-step",
        title="Hospital 12-step (imported)",
        url=None,
        version="2.0.0",
    )
    path = tmp_path / "library.json"
    path.write_bytes(write_resource(library_bundle([imported]), "json"))
    return path


def test_imported_protocols_are_offered(make_app: AppFactory, ehr: FakeEhr, library_file: Path) -> None:
    app = make_app(PROTOCOL_LIBRARY=str(library_file))
    planner = Planner(Launcher(https_client(app), ehr), ehr, app)
    sid = planner.launch("carboplatin-ovarian")
    draft_id = planner.create(sid)
    assert planner.recalculate(sid, draft_id, protocol="hospital-12-step").status_code == 303
    html = planner.page(sid, draft_id).get_data(as_text=True)
    assert selected_text(html, "protocol").startswith("Hospital 12-step (imported)")
    assert "hospital-12-step</code> 2.0.0" in html


def test_a_bad_library_stops_the_app(make_app: AppFactory, tmp_path: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text('{"resourceType": "Bundle", "type": "collection", "entry": [')
    with pytest.raises(ConfigurationError, match=r"FHIR_DESENS_PROTOCOL_LIBRARY: .*broken\.json"):
        make_app(PROTOCOL_LIBRARY=str(bad))
    empty = tmp_path / "empty.json"
    empty.write_text('{"resourceType": "Bundle", "type": "collection", "entry": []}')
    with pytest.raises(ConfigurationError, match=r"empty\.json: no protocol"):
        make_app(PROTOCOL_LIBRARY=str(empty))
    with pytest.raises(ConfigurationError, match="does not exist"):
        make_app(PROTOCOL_LIBRARY=str(tmp_path / "missing.json"))


def test_an_imported_id_may_not_shadow_a_built_in(make_app: AppFactory, tmp_path: Path) -> None:
    path = tmp_path / "dup.json"
    path.write_bytes(write_resource(library_bundle([builtin_protocols()["iv-8-step-2-bag"]]), "json"))
    with pytest.raises(ConfigurationError, match="already in the library"):
        make_app(PROTOCOL_LIBRARY=str(path))
