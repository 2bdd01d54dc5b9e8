"""An authored protocol (``fhir-desens author``) in the app's library: offered with its source, planned,
and its stated preparation shown on the pharmacy sheet."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from fhir_desens.authoring.build import AuthorOptions, author_protocol
from fhir_desens.authoring.table import read_preparations, read_table
from fhir_desens.fhir.plandefinition import library_bundle
from fhir_desens.io.formats import write_resource
from tests.app.conftest import AppFactory, Launcher, https_client
from tests.app.fake_ehr import FakeEhr
from tests.app.test_plan_pages import Planner
from tests.html import selected_text, table_rows, text_of

TABLES = Path(__file__).parents[1] / "unit" / "tables"
SOURCE = "Our hospital's bag table, 2026 (test)"


def authored_library(tmp_path: Path, drug: str) -> Path:
    rows = read_table((TABLES / "amiodarone_style_iv.csv").read_text("utf-8"))
    preparations = read_preparations((TABLES / "amiodarone_style_solutions.csv").read_text("utf-8"))
    options = AuthorOptions(
        "hospital-bag-table", "Hospital bag table (11 doses)", drug, "iv", Decimal(30),
        preparations=preparations, source=SOURCE,
    )  # fmt: skip
    path = tmp_path / "library.json"
    path.write_bytes(write_resource(library_bundle([author_protocol(rows, options).protocol]), "json"))
    return path


def test_an_authored_protocol_is_offered_with_its_source_and_its_preparation_reaches_the_pharmacy(
    make_app: AppFactory, ehr: FakeEhr, tmp_path: Path
) -> None:
    app = make_app(PROTOCOL_LIBRARY=str(authored_library(tmp_path, "carboplatin")))
    planner = Planner(Launcher(https_client(app), ehr), ehr, app)
    sid = planner.launch("carboplatin-ovarian")
    draft_id = planner.create(sid)
    html = planner.page(sid, draft_id).get_data(as_text=True)
    assert f"Hospital bag table (11 doses) (hospital-bag-table, IV), from {SOURCE}" in text_of(html)
    assert planner.recalculate(sid, draft_id, protocol="hospital-bag-table").status_code == 303
    html = planner.page(sid, draft_id).get_data(as_text=True)
    assert selected_text(html, "protocol").startswith("Hospital bag table (11 doses)")
    assert f"Source (your library): {SOURCE}" in text_of(html)
    assert "the table's doses sum to 149.49 mg" in text_of(html) or "149.49 mg" in text_of(html)
    sheet = planner.client.get(f"/s/{sid}/plan/{draft_id}/pharmacy").get_data(as_text=True)
    rows = table_rows(sheet, "preparation")
    assert len(rows) == 3
    assert (
        "Prepare: remove 13 mL from a 100 mL bag (which holds 110 mL with its overfill), "
        "inject 150 mg in 3 mL: 100 mL" in text_of(sheet)
    )
    assert "only if its 100 mL bag holds 10 mL overfill" in text_of(sheet)
