"""The print sheets as PDF (WeasyPrint), read back with pdfplumber page by page: identifiers and
"page X of Y" on every page, DRAFT on every page of a draft, the signer and order id on a signed plan,
complete labels, and no number with more digits than the display policy, for every sandbox patient."""

from __future__ import annotations

import io
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pdfplumber
import pytest

from fhir_desens.protocol.display import SIGNIFICANT_FIGURES
from tests.app.clinician import ALLERGIST
from tests.app.conftest import Launcher, https_client
from tests.app.fake_ehr import FakeEhr
from tests.app.planner import Planner
from tests.app.signer import Signer
from tests.html import text_of

PATIENTS = sorted(
    p.stem for p in (Path(__file__).resolve().parents[2] / "fixtures" / "patients").glob("*.json")
)
NUMBER = re.compile(r"(?<![\w.:/|-])\d[\d,]*\.\d+(?![\w.])")


def pages_of(pdf: bytes) -> list[str]:
    """The text of each page, lines joined with spaces (sentences wrap inside table cells and labels)."""
    with pdfplumber.open(io.BytesIO(pdf)) as document:
        return [" ".join((page.extract_text() or "").split()) for page in document.pages]


def paragraphs_of(pdf: bytes) -> str:
    """The whole text in reading order, each paragraph kept whole (pdftotext without -layout): labels
    side by side do not interleave their lines, as they do in a line-by-line extraction."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sheet.pdf"
        path.write_bytes(pdf)
        text = subprocess.run(
            ["pdftotext", str(path), "-"], check=True, capture_output=True, text=True
        ).stdout
    return " ".join(text.split())


def too_precise(text: str) -> list[str]:
    """Decimal numbers with more significant figures than the display policy allows."""
    found = []
    for number in NUMBER.findall(text):
        digits = number.replace(",", "").replace(".", "").lstrip("0")
        if len(digits) > SIGNIFICANT_FIGURES:
            found.append(number)
    return found


def _pdf(planner: Planner, url: str) -> list[str]:
    return pages_of(_pdf_bytes(planner, url))


def _pdf_bytes(planner: Planner, url: str) -> bytes:
    response = planner.client.get(url)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/pdf"
    return response.get_data()


def test_a_draft_worksheet_pdf_carries_identifiers_page_numbers_and_draft_on_every_page(
    planner: Planner,
) -> None:
    sid = planner.launch("carboplatin-ovarian")
    draft_id = planner.create(sid)
    pages = _pdf(planner, f"/s/{sid}/plan/{draft_id}/worksheet.pdf")
    assert len(pages) >= 2
    for number, text in enumerate(pages, start=1):
        assert "DRAFT - not an order" in text, number
        assert "MRN-1001" in text and "Voss-Hartley" in text, number
        assert f"page {number} of {len(pages)}" in text, number
    everything = "\n".join(pages)
    assert "Actual" in everything and "Initials" in everything  # the downtime form's columns
    assert too_precise(everything) == []


def test_the_pharmacy_pdf_has_complete_labels_and_how_to_prepare(planner: Planner) -> None:
    sid = planner.launch("carboplatin-ovarian")
    draft_id = planner.create(sid)
    planner.recalculate(sid, draft_id, final_rate="75", diluent="d5w")
    pdf = _pdf_bytes(planner, f"/s/{sid}/plan/{draft_id}/pharmacy.pdf")
    pages = pages_of(pdf)
    text = paragraphs_of(pdf)
    for number, page in enumerate(pages, start=1):
        assert "DRAFT - not an order" in page and "MRN-1001" in page and f"page {number} of" in page
    assert text.count("Prepared by") == 3 and text.count("Checked by") == 3
    # bag 1 at 75 mL/h; the rest is kept until the session ends, as the worksheet's warnings say
    assert (
        "Infuse only 8.7 mL; keep it at the bedside until the session ends (a step back may need it), then discard the remainder."
        in text
    )
    assert "Stock drawn: 0.4 mL of 10 mg/mL" in text  # 4 mg of carboplatin 10 mg/mL
    assert "5% dextrose (D5W)" in text and "NS or D5W" not in text
    assert "route: IV" in text and "Rates: 2, 5, 10, 20 mL/h (steps 1-4)" not in text  # 75 mL/h final
    assert "mL/h (steps 1-4)" in text
    # beyond use from the monograph (carboplatin label: 8 h at room temperature), on every label
    assert text.count("Beyond use: 8 h at room temperature after preparation") == 3
    assert text.count("Prepared at ________ Discard after ________") == 3
    # 25 mL overfill of a 250 mL bag + 0.4 mL of stock, to a 30 mL syringe's 1 mL marks; the stock on a
    # 1 mL syringe's marks
    assert "remove 25 mL; draw 0.4 mL (1 mL syringe) of 10 mg/mL stock and add it: 4 mg" in text
    assert too_precise(text) == []


def test_an_oral_protocol_prints_in_oral_words_with_serial_dilutions(planner: Planner) -> None:
    sid = planner.launch("penicillin-pregnancy")
    draft_id = planner.create(sid)
    text = paragraphs_of(_pdf_bytes(planner, f"/s/{sid}/plan/{draft_id}/pharmacy.pdf"))
    assert "Oral solution 1 of 3" in text and "route: by mouth" in text
    assert "Use the commercial product as it is" in text and "of solution 3 (80,000 units/mL)" in text
    assert "none: the product as supplied" in text  # solution 3's diluent in the table
    # the labels name what the bottle holds (penicillin V, not the ordered penicillin G), the doses by
    # mouth in mL, how much of it is given, how it was made and its beyond-use
    labels = text[text.index("Labels") :]
    assert labels.count("Penicillin V potassium") == 3 and "benzathine" not in labels
    assert "Give by mouth with an oral syringe: 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4 mL (steps 1-7)" in labels
    assert (
        "Contains 20,000 units in 20 mL" in labels
        and "Give only 12.7 mL in all; keep it at the bedside until the session ends" in labels
    )
    assert "Made from 2 mL of solution 2 (10,000 units/mL) made up to 20 mL with water." in labels
    # each volume on a syringe's marks: 2.5 mL in a 3 mL syringe, then water to the 20 mL mark (17.5 mL of
    # water is no mark of a 20 mL syringe)
    assert (
        "Measure 2.5 mL of solution 3 (80,000 units/mL; 3 mL syringe) and make it up to 20 mL with water: "
        "20 mL of 10,000 units/mL." in text
    )
    assert "17.5 mL" not in text
    assert (
        "The commercial product as supplied, not diluted: penicillin V potassium for oral solution" in labels
    )
    assert labels.count("no stability data for this dilution") == 2 and "14 days refrigerated" in labels
    assert "infuse" not in text.lower() and "mL/h" not in text and "bag" not in text.lower()
    worksheet = paragraphs_of(_pdf_bytes(planner, f"/s/{sid}/plan/{draft_id}/worksheet.pdf"))
    assert (
        "Wait" in worksheet
        and "Volume given by mouth" in worksheet
        and "Volume to be infused" not in worksheet
    )
    lines = "\n".join(_pdf(planner, f"/s/{sid}/plan/{draft_id}/worksheet.pdf"))
    assert "Rate (mL/h)" not in lines and " 0.1 mL 100 units" in lines  # mL to give, no rate column
    assert "Actual time given" in worksheet and "mL given" in worksheet
    assert "Rate" not in worksheet and "mL/h" not in worksheet and "fixed 1000" not in worksheet


def test_a_tablet_protocol_prints_tablets_not_volumes_or_dilutions(planner: Planner) -> None:
    """Aspirin (AERD) is given as tablets: the pharmacist is not told to dilute, the nurse does not record
    mL, and no heading calls a count of tablets a volume."""
    sid = planner.launch("aspirin-aerd")
    draft_id = planner.create(sid)
    pharmacy = paragraphs_of(_pdf_bytes(planner, f"/s/{sid}/plan/{draft_id}/pharmacy.pdf"))
    assert "Tablets are given as supplied: count out each step's tablets" in pharmacy
    assert "Serial dilutions" not in pharmacy and "dilute by hand" not in pharmacy
    assert "Tablets given by mouth" in pharmacy and "Volume given by mouth" not in pharmacy
    worksheet = paragraphs_of(_pdf_bytes(planner, f"/s/{sid}/plan/{draft_id}/worksheet.pdf"))
    assert "Tablets given" in worksheet and "mL given" not in worksheet
    assert "Volume given by mouth" not in worksheet and "Drug in the solution" not in worksheet
    assert "Strength" in worksheet and "81 mg per tablet" in worksheet
    page = planner.client.get(f"/s/{sid}/plan/{draft_id}").get_data(as_text=True)
    assert "at the standard rate" not in page and "the usual dose is not given beside" in page


def test_a_dose_per_m2_is_shown_with_its_calculation_on_both_sheets(planner: Planner) -> None:
    """The pharmacist checks a body-size dose like the nurse: both sheets print the calculation."""
    sid = planner.launch("rituximab-lymphoma")
    draft_id = planner.create(sid, target_dose="375", dose_unit="mg/m2")
    calculation = "803 mg (375 mg/m² × 2.14 m² = 802.5 mg → 803 mg (rounded half-up to 1 mg)."
    for sheet in ("worksheet", "pharmacy"):
        text = paragraphs_of(_pdf_bytes(planner, f"/s/{sid}/plan/{draft_id}/{sheet}.pdf"))
        assert calculation in text, sheet


def test_a_signed_plan_pdf_names_the_signer_and_the_order_on_every_page(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    draft_id = signer.plan(sid)
    rg_id = signer.signed_id(signer.sign(sid, draft_id), sid)
    (group,) = signer.signed("RequestGroup")
    order_id = group["identifier"][0]["value"]
    # the order as people read it aloud and compare it: its first 8 hex digits in two groups, not all 32
    reference = f"{order_id[:4]}-{order_id[4:8]}".upper()
    pages = _pdf(signer, f"/s/{sid}/orders/{rg_id}/worksheet.pdf")  # type: ignore[arg-type]
    for number, text in enumerate(pages, start=1):
        compact = text.replace("\n", " ")
        assert "Signed by" in compact and f"order {reference}" in compact, number
        assert order_id not in compact.replace(" ", ""), number
        assert "DRAFT" not in text and f"page {number} of {len(pages)}" in text
    # printed after signing: its times are said to count from the printing, beside the signing time
    everything = " ".join(pages)
    assert "Printed: " in everything and "Clock times if started when printed (" in everything
    assert "write the actual times in the columns on the right" in everything
    assert "if started now" not in everything
    # the page that says the orders were sent names the order as the paper does, with the full identifier
    sent = text_of(signer.client.get(f"/s/{sid}/orders/{rg_id}?sent=1").get_data(as_text=True))
    assert f"order {reference}, as the printed sheets name it; identifier {order_id};" in sent


@pytest.mark.parametrize("patient", PATIENTS)
def test_every_sandbox_patients_default_plan_reads_within_the_policy(planner: Planner, patient: str) -> None:
    sid = planner.launch(patient)
    response = planner.start(sid, **planner.start_defaults(sid))
    if response.status_code != 303:
        pytest.skip(f"{patient}: no default plan (the start form refuses it: {response.status_code})")
    draft_id = response.headers["Location"].rsplit("/", 1)[1]
    page = planner.page(sid, draft_id).get_data(as_text=True)
    if "/worksheet.pdf" not in page and "print" not in page:
        pytest.skip(f"{patient}: no worksheet (blocked)")
    sheets = planner.client.get(f"/s/{sid}/plan/{draft_id}/print")
    if sheets.status_code != 200:
        pytest.skip(f"{patient}: no printable sheet ({sheets.status_code})")
    html_text = re.sub(r"<[^>]+>", " ", sheets.get_data(as_text=True))
    assert too_precise(re.sub(r"<svg.*?</svg>", "", html_text, flags=re.S)) == []
    for sheet in ("worksheet.pdf", "pharmacy.pdf"):
        assert too_precise("\n".join(_pdf(planner, f"/s/{sid}/plan/{draft_id}/{sheet}"))) == []


def test_the_sites_bag_overfill_is_what_the_pharmacy_sheet_removes(make_app: Any, ehr: FakeEhr) -> None:
    app = make_app(BAG_OVERFILL_ML=["250=15"])
    planner = Planner(Launcher(https_client(app), ehr), ehr, app)
    sid = planner.launch("carboplatin-ovarian")
    draft_id = planner.create(sid)
    planner.recalculate(sid, draft_id, final_rate="75", diluent="d5w")
    text = "\n".join(_pdf(planner, f"/s/{sid}/plan/{draft_id}/pharmacy.pdf"))
    assert "remove 15 mL" in text  # 15 mL overfill of a 250 mL bag + 0.4 mL of stock, on 1 mL marks
    assert "250 mL bags hold 15 mL more" in text and "remove 25 mL" not in text


def test_a_combination_products_labels_carry_both_components() -> None:
    """Sulfamethoxazole/trimethoprim: every label gives both components in their 5:1 ratio."""
    from decimal import Decimal

    from fhir_desens.protocol.calculate import PlanRequest, compute_plan
    from fhir_desens.protocol.library import builtin_protocols
    from fhir_desens.protocol.quantity import Quantity
    from smart_app.paper.sheets import paper_for

    plan = compute_plan(
        PlanRequest(
            protocol=builtin_protocols()["tmp-smx-oral-hourly"],
            drug="sulfamethoxazole-trimethoprim",
            target=Quantity(Decimal(800), "mg"),
        )
    )
    labels = paper_for(plan).labels
    assert labels[4].concentration == "sulfamethoxazole 40 mg/mL + trimethoprim 8 mg/mL"
    assert labels[0].amount == "sulfamethoxazole 0.04 mg + trimethoprim 0.008 mg in 10 mL"
    assert labels[5].concentration == "sulfamethoxazole 800 mg + trimethoprim 160 mg per tablet"
    assert (
        labels[4].stock is not None
        and "not diluted: sulfamethoxazole / trimethoprim oral suspension" in labels[4].stock
    )
    assert all(label.route == "by mouth" and label.beyond_use for label in labels)


def test_discrete_doses_by_injection_are_syringe_labels_without_rates() -> None:
    """An imported discrete protocol given by injection: one syringe per dose, no bag and no pump rate."""
    import dataclasses
    from decimal import Decimal

    from fhir_desens.protocol.calculate import PlanRequest, compute_plan
    from fhir_desens.protocol.library import builtin_protocols
    from fhir_desens.protocol.quantity import Quantity
    from smart_app.paper.sheets import paper_for

    protocol = dataclasses.replace(builtin_protocols()["penicillin-v-oral-wendel"], route="SC")
    plan = compute_plan(
        PlanRequest(protocol=protocol, drug="penicillin", target=Quantity(Decimal(1296700), "[iU]"))
    )
    labels = paper_for(plan).labels
    assert [label.heading.split(":")[0] for label in labels] == [
        "Syringe 1 of 3",
        "Syringe 2 of 3",
        "Syringe 3 of 3",
    ]
    assert labels[0].rates is not None and labels[0].rates.startswith(
        "Give SC, one syringe per dose: 0.1, 0.2"
    )
    assert all("mL/h" not in (label.rates or "") and label.route == "SC" for label in labels)


@pytest.mark.invariant("INV-26")
def test_bag_1_of_the_16_step_protocol_is_prepared_from_an_intermediate_dilution(planner: Planner) -> None:
    """Carboplatin 400 mg, 16 steps: the sheet told the pharmacist to draw 0.04 mL of 10 mg/mL stock into
    bag 1, which a 1 mL syringe (0.01 mL marks) cannot measure within 25 %. It now makes a 1 mg/mL dilution
    and adds 0.4 mL of it; the label says what the bag was made with."""
    sid = planner.launch("carboplatin-ovarian")
    draft_id = planner.create(sid, target_dose="400")
    planner.recalculate(sid, draft_id, protocol="iv-16-step-4-bag")
    text = paragraphs_of(_pdf_bytes(planner, f"/s/{sid}/plan/{draft_id}/pharmacy.pdf"))
    assert (
        "Solution 1: First dilute 1 in 10 (the 0.04 mL of stock this bag needs is below the 0.1 mL minimum "
        "draw): draw 1 mL (1 mL syringe) of 10 mg/mL stock into a 10 mL syringe" in text
    )
    assert "add 0.4 mL (1 mL syringe) of the 1 mg/mL dilution: 0.4 mg, about 250 mL in the bag" in text
    assert "Made with 0.4 mL of a 1 mg/mL dilution (1 mL of 10 mg/mL" in text
    assert "0.04 mL of 10 mg/mL" not in text and "draw 0.04" not in text
    # the last bag holds the target minus what the others delivered: the difference is said, not hidden
    assert "what is drawn holds 0.0372 mg less than the orders" in text
    assert too_precise(text) == []
    # the worksheet (printed) and the plan page say the same of bags 1 and 4 before anyone signs
    worksheet = paragraphs_of(_pdf_bytes(planner, f"/s/{sid}/plan/{draft_id}/worksheet.pdf"))
    page = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", planner.page(sid, draft_id).get_data(as_text=True)))
    for shown in (worksheet, page, text):
        assert "Pharmacy: made with 0.4 mL of a 1 mg/mL dilution of the stock" in shown
        assert (
            "Pharmacy: syringes cannot draw its amount exactly: it holds 0.0372 mg less than the orders"
            in shown
        )


def test_the_sites_minimum_draw_is_what_sends_a_bag_to_an_intermediate_dilution(
    make_app: Any, ehr: FakeEhr
) -> None:
    """A site that draws nothing below 0.5 mL: the 12-step's 0.4 mL for bag 1 becomes 4 mL of 1 mg/mL."""
    app = make_app(MIN_DRAW_ML="0.5")
    planner = Planner(Launcher(https_client(app), ehr), ehr, app)
    sid = planner.launch("carboplatin-ovarian")
    draft_id = planner.create(sid, target_dose="400")
    text = paragraphs_of(_pdf_bytes(planner, f"/s/{sid}/plan/{draft_id}/pharmacy.pdf"))
    assert "(the 0.4 mL of stock this bag needs is below the 0.5 mL minimum draw)" in text
    assert "add 4 mL (5 mL syringe) of the 1 mg/mL dilution: 4 mg" in text


def test_a_signed_plans_sheets_and_page_keep_the_drug_checks(signer: Signer) -> None:
    """The pharmacist prepares from the signed sheets: they print the product, its preparation rule and
    the dilute-bag warning as the draft's sheets do, and the signed plan's page shows them too."""
    sid = signer.launch("carboplatin-ovarian")
    draft_id = signer.plan(sid)
    checks = (
        "Product: carboplatin 10 mg/mL injection (RxNorm 40048).",
        "Do not use needles or sets with aluminium parts",
        "Prepare them just before the session and use them the same day.",
    )
    for sheet in ("worksheet", "pharmacy"):
        draft_text = paragraphs_of(_pdf_bytes(signer, f"/s/{sid}/plan/{draft_id}/{sheet}.pdf"))
        assert all(check in draft_text for check in checks), sheet
    rg_id = signer.signed_id(signer.sign(sid, draft_id), sid)
    for sheet in ("worksheet", "pharmacy"):
        text = paragraphs_of(_pdf_bytes(signer, f"/s/{sid}/orders/{rg_id}/{sheet}.pdf"))
        assert [check for check in checks if check not in text] == [], sheet
    page = text_of(signer.client.get(f"/s/{sid}/orders/{rg_id}").get_data(as_text=True))
    assert "Drug and products" in page
    assert [check for check in checks if check not in page] == []
    assert page.count("Contraindication overridden") == 0


def test_a_signed_pharmacy_sheets_header_keeps_the_patients_name_on_one_line(signer: Signer) -> None:
    """Walk 9: beside 'Signed by ... · order ...' the portrait pharmacy sheet's running header broke the
    name as 'Eleanor M. Voss-' / 'Hartley'."""
    signer.ehr.add_resource(ALLERGIST)  # the signed-in user (Practitioner/7) has a name: a long signer line
    sid = signer.launch("carboplatin-ovarian")
    rg_id = signer.signed_id(signer.sign(sid, signer.plan(sid)), sid)
    response = signer.client.get(f"/s/{sid}/orders/{rg_id}/pharmacy.pdf")
    assert response.status_code == 200
    with pdfplumber.open(io.BytesIO(response.get_data())) as document:
        for page in document.pages:
            lines = (page.extract_text() or "").splitlines()
            assert any(
                "Eleanor M. Voss-Hartley · MRN MRN-1001 · born 14 Mar 1962" in line for line in lines[:3]
            )
