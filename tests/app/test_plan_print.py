"""The printed worksheet and pharmacy sheet of a draft, the timeline SVG, the page width."""

from __future__ import annotations

import re
from pathlib import Path
from xml.etree import ElementTree as ET

from tests.app.planner import Planner
from tests.html import table_rows, text_of

SVG = "{http://www.w3.org/2000/svg}"
CSS = Path(__file__).resolve().parents[2] / "smart_app" / "static" / "app.css"

# --- print pages, timeline, layout ------------------------------------------------------------------


def test_print_worksheet_has_identifiers_and_signature_lines(planner: Planner) -> None:
    sid = planner.launch("carboplatin-ovarian")
    draft_id = planner.create(sid)
    planner.recalculate(sid, draft_id, final_rate="75")
    page = planner.page(sid, draft_id).get_data(as_text=True)
    assert f'href="/s/{sid}/plan/{draft_id}/print">Open the worksheet</a>' in page
    assert f'href="/s/{sid}/plan/{draft_id}/pharmacy">Open the pharmacy sheet</a>' in page
    # one set of sheet controls: one Print button, one page link and one PDF per sheet
    assert page.count(">Print the worksheet</button>") == 1 and page.count(">Open the worksheet</a>") == 1
    assert page.count(">Print the pharmacy sheet</button>") == 1 and page.count("/pharmacy.pdf") == 1
    assert page.count("/worksheet.pdf") == 1 and "Print worksheet" not in page
    response = planner.client.get(f"/s/{sid}/plan/{draft_id}/print")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    text = text_of(html)
    for needle in (
        "Eleanor",
        "Birth date",
        "MRN MRN-1001",
        "Prescriber",
        "Date and time",
        "https://fhir-desens.org/fhir/PlanDefinition/iv-12-step-3-bag|1.0.0",
        "Drug Carboplatin",
        "Target dose 400 mg",
        "Prescriber signature",
        "Pharmacist check",
        "Nurse check",
    ):
        assert needle in text, needle
    assert len(table_rows(html, "steps")) == 12
    assert "Remove inserted step" not in html and "<form" not in html.split("</nav>", 1)[1]


def test_pharmacy_sheet_lists_what_to_prepare(planner: Planner) -> None:
    sid = planner.launch("carboplatin-ovarian")
    draft_id = planner.create(sid)
    planner.recalculate(sid, draft_id, final_rate="75", diluent="d5w")
    html = planner.client.get(f"/s/{sid}/plan/{draft_id}/pharmacy").get_data(as_text=True)
    rows = table_rows(html, "preparation")
    assert [r[1] for r in rows] == ["4 mg", "40 mg", "397 mg"]
    assert all(r[2] == "5% dextrose (D5W)" and r[3] == "250 mL" for r in rows)
    assert [r[4] for r in rows] == ["0.016 mg/mL", "0.16 mg/mL", "1.588 mg/mL"]
    text = text_of(html)
    assert text.count("Prepared by") == 3 and "MRN MRN-1001" in text
    assert (
        "Pharmacist check" in text
        and "https://fhir-desens.org/fhir/PlanDefinition/iv-12-step-3-bag|1.0.0" in text
    )


def test_timeline_svg_is_well_formed_and_labelled(planner: Planner) -> None:
    sid = planner.launch("carboplatin-ovarian")
    html = planner.page(sid, planner.create(sid)).get_data(as_text=True)
    markup = re.search(r"<svg.*?</svg>", html, re.S)
    assert markup is not None
    svg = ET.fromstring(markup.group(0))  # noqa: S314 - the app's own markup, no entities
    assert svg.tag == f"{SVG}svg" and svg.get("role") == "img"
    title, desc = svg.find(f"{SVG}title"), svg.find(f"{SVG}desc")
    assert title is not None and desc is not None
    assert svg.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"
    assert "Carboplatin 400 mg" in (title.text or "")
    assert "12 steps" in (desc.text or "") and "400 mg" in (desc.text or "")
    assert 'aria-labelledby="timeline-heading"' in html


def test_pages_fit_a_1024_px_frame() -> None:
    css = CSS.read_text("utf-8")
    widths = [int(n) for n in re.findall(r"(?:^|[;{\s])(?:min-|max-)?width:\s*(\d+)px", css)]
    assert widths and max(widths) <= 1000
    assert "@media print" in css and "@page" in css


def test_the_sheets_name_the_drug_prepared_when_the_protocol_gives_another_than_the_order(
    planner: Planner,
) -> None:
    """Oral penicillin V for an order of penicillin G benzathine: the pharmacy sheet said "Drug: Penicillin G
    benzathine" above penicillin V solutions; a pharmacist prepares what the sheet names."""
    sid = planner.launch("penicillin-pregnancy")
    draft_id = planner.create(sid, target_dose="2400000", dose_unit="[iU]")
    for sheet in ("pharmacy", "print"):
        text = text_of(planner.client.get(f"/s/{sid}/plan/{draft_id}/{sheet}").get_data(as_text=True))
        assert "Drug Penicillin V potassium (given for the order of penicillin G benzathine)" in text, text[
            :900
        ]
    # the worksheet's own facts too, printed and on the plan page, and its solutions say what their volume
    # is: the doses' ("Volume the doses take"), beside what the pharmacy prepares
    printed = text_of(planner.client.get(f"/s/{sid}/plan/{draft_id}/print").get_data(as_text=True))
    on_screen = text_of(planner.page(sid, draft_id).get_data(as_text=True))
    for page in (printed, on_screen):
        worksheet = page[page.index("Worksheet Protocol") :]
        assert "Drug Penicillin V potassium (given for the order of penicillin G benzathine)" in worksheet
        assert "Drug Penicillin G benzathine" not in worksheet
        assert "Prepared Volume the doses take" in worksheet
    carboplatin = planner.launch("carboplatin-ovarian")
    plain = planner.create(carboplatin)
    assert "Drug Carboplatin Target" in text_of(
        planner.client.get(f"/s/{carboplatin}/plan/{plain}/pharmacy").get_data(as_text=True)
    )


def test_both_sheets_say_one_thing_of_what_the_pharmacy_prepares(planner: Planner) -> None:
    """TMP-SMX: the worksheet said diluent "water" and "5 mL" for the suspension the pharmacy sheet uses
    undiluted and dispenses as 10 mL. Every solution's diluent and prepared volume are now the pharmacy's
    on the worksheet (printed and on screen) and on the pharmacy sheet."""
    sid = planner.launch("tmp-smx-hiv")
    draft_id = planner.create(sid, target_dose="960", dose_unit="mg")
    pharmacy = text_of(planner.client.get(f"/s/{sid}/plan/{draft_id}/pharmacy").get_data(as_text=True))
    assert "Solution 5: Use the commercial product as it is: 10 mL of 40 mg/mL." in pharmacy
    assert (
        "Solution 4: Measure 1 mL of solution 5 (40 mg/mL; 1 mL syringe) and make it up to 10 mL with water: "
        "10 mL of 4 mg/mL." in pharmacy
    )
    undiluted = (
        "5. Suspension undiluted (sulfamethoxazole) 200 mg none: the product as supplied 10 mL 5 mL 40 mg/mL"
    )
    assert undiluted in pharmacy
    assert "4. Suspension 1:10 (sulfamethoxazole) 20 mg water 10 mL 5 mL 4 mg/mL" in pharmacy
    # the drug amount beside "Volume the doses take" is the doses' (10 mL prepared hold twice that)
    assert "Solution Drug the doses take Diluent Prepared Volume the doses take" in pharmacy
    printed = text_of(planner.client.get(f"/s/{sid}/plan/{draft_id}/print").get_data(as_text=True))
    on_screen = text_of(planner.page(sid, draft_id).get_data(as_text=True))
    for page in (printed, on_screen):
        solutions = page[page.index("Solutions Solution") : page.index("Steps Step")]
        assert (
            "5. Suspension undiluted (sulfamethoxazole) 40 mg/mL 10 mL 5 mL 200 mg 5 mL none: the product as supplied 5"
            in solutions
        )
        assert "4. Suspension 1:10 (sulfamethoxazole) 4 mg/mL 10 mL 5 mL 20 mg 5 mL water 4" in solutions
