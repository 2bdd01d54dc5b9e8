"""One way of writing a date and time on every page and sheet: the signed page showed "Signed 3 Dec 2026 15:12
CET" next to "Planned start 2026-12-04 08:30 CET", and the print sheets mixed the two. Now all read
"4 Dec 2026 08:30 CET" (protocol/display.moment_text; the planned-start field is still typed YYYY-MM-DD HH:MM)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from fhir_desens.protocol.display import moment_text
from tests.app.signer import Signer
from tests.html import text_of

#: "15 Jan 2027 09:00 CET": the month in letters, a 24-hour clock, the zone named
ONE_FORMAT = r"\d{1,2} (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d [A-Z]{3,4}"
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d")


def test_the_one_format_names_the_month_and_the_zone() -> None:
    moment = datetime(2026, 12, 4, 7, 30, tzinfo=UTC)
    assert moment_text(moment, ZoneInfo("Europe/Berlin")) == "4 Dec 2026 08:30 CET"
    assert moment_text(datetime(2026, 12, 4, 8, 30)) == "4 Dec 2026 08:30"  # no offset: as recorded


def test_the_signed_page_and_its_sheets_write_every_time_one_way(signer: Signer) -> None:
    sid = signer.launch("carboplatin-ovarian")
    draft_id = signer.plan(sid)
    assert signer.post(sid, draft_id, action="schedule", planned_start="2027-01-15 09:00").status_code == 303
    rg_id = signer.signed_id(signer.sign(sid, draft_id), sid)
    page = text_of(signer.client.get(f"/s/{sid}/orders/{rg_id}").get_data(as_text=True))
    assert re.search(rf"Signed {ONE_FORMAT}", page), page[:2000]
    assert re.search(rf"Planned start 15 Jan 2027 09:00 {ONE_FORMAT[-10:]}", page), page[:2000]
    for sheet in ("print", "pharmacy"):
        text = text_of(signer.client.get(f"/s/{sid}/orders/{rg_id}/{sheet}").get_data(as_text=True))
        assert re.search(rf"Printed {ONE_FORMAT}", text), (sheet, text[:1500])
        assert re.search(rf"Signed by .* at {ONE_FORMAT} ·", text), (sheet, text[:1500])
        assert not ISO_TIME.search(text), (sheet, ISO_TIME.findall(text))
    plan_sheet = text_of(signer.client.get(f"/s/{sid}/plan/{draft_id}/print").get_data(as_text=True))
    assert re.search(rf"Printed {ONE_FORMAT}", plan_sheet) and not ISO_TIME.search(plan_sheet)
