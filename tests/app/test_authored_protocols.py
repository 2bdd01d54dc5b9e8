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
from tests.app.planner import Planner
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
    # the table says 149.49 mg; step 11's 33.12 mL is drawn with a 60 mL syringe (1 mL marks), so the app
    # plans 33 mL = 49.5 mg, the patient gets 149.31 mg in all (INV-25), and the page says so
    assert "its total is 149.3 mg" in text_of(html)
    assert "step 11: 33 mL instead of the table's 33.12 mL (49.5 mg)" in text_of(html)
    sheet = planner.client.get(f"/s/{sid}/plan/{draft_id}/pharmacy").get_data(as_text=True)
    rows = table_rows(sheet, "preparation")
    assert len(rows) == 3
    assert (
        "Prepare: remove 13 mL from a 100 mL bag (which holds 110 mL with its overfill), "
        "inject 150 mg in 3 mL: 100 mL" in text_of(sheet)
    )
    assert "only if its 100 mL bag holds 10 mL overfill" in text_of(sheet)


def fixed_infusion_library(tmp_path: Path) -> Path:
    rows = read_table((TABLES / "proportional_infusion.csv").read_text("utf-8"))
    preparations = read_preparations("solution,bag_ml,drug\n1,250,1 mg\n2,250,10 mg\n3,250,99.213 mg\n")
    options = AuthorOptions(
        "hospital-carboplatin-100", "Carboplatin 100 mg (hospital table)", "carboplatin", "iv",
        scaling="fixed", bag_volumes_ml={"1": Decimal(250), "2": Decimal(250), "3": Decimal(250)},
        preparations=preparations, source=SOURCE,
    )  # fmt: skip
    path = tmp_path / "fixed.json"
    path.write_bytes(write_resource(library_bundle([author_protocol(rows, options).protocol]), "json"))
    return path


def test_a_fixed_infusion_table_is_refused_for_another_dose_and_planned_at_its_total(
    make_app: AppFactory, ehr: FakeEhr, tmp_path: Path
) -> None:
    app = make_app(PROTOCOL_LIBRARY=str(fixed_infusion_library(tmp_path)))
    planner = Planner(Launcher(https_client(app), ehr), ehr, app)
    sid = planner.launch("carboplatin-ovarian")
    draft_id = planner.create(sid)  # the chart's 400 mg
    refused = planner.recalculate(sid, draft_id, protocol="hospital-carboplatin-100")
    html = text_of(refused.get_data(as_text=True))
    assert "the table's doses sum to 100 mg, not 400 mg" in html, html[:3000]
    exact = planner.create(sid, target_dose="100")
    planner.recalculate(sid, exact, protocol="hospital-carboplatin-100")
    sheet = text_of(planner.client.get(f"/s/{sid}/plan/{exact}/pharmacy").get_data(as_text=True))
    assert "Prepare: take a 250 mL bag, inject 99.213 mg: 250 mL" in sheet
