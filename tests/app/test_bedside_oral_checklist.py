"""An oral plan's pre-start checklist still asks for IV access before step 1, worded for what the line is
for: the doses are taken by mouth, but the rescue treatment (saline, injectable antihistamine and steroid;
clinical.md 1.4) goes into a vein. A nurse at 2 a.m. should not wonder why a line is asked for."""

from __future__ import annotations

import re
import uuid

from flask import Flask

from fhir_desens.course.bedside.prestart import ChartFact, chart_facts
from fhir_desens.course.bedside.record import start_entry
from fhir_desens.course.draft import plan_for
from fhir_desens.protocol.calculate import Plan
from fhir_desens.protocol.library import builtin_protocols
from tests.app.conftest import Launcher
from tests.app.fake_ehr import FakeEhr
from tests.app.flowsheet import flowsheet, launched_with_a_bedside_session
from tests.bedside_session import NURSE, START, Bedside, aspirin_draft, carboplatin_draft, carboplatin_plan
from tests.html import text_of

ASPIRIN = aspirin_draft("Patient/carboplatin-ovarian")


def _at_the_checklist(launcher: Launcher, ehr: FakeEhr, app: Flask, oral: bool) -> tuple[str, Bedside]:
    sid, bedside = launched_with_a_bedside_session(launcher, ehr, app)
    draft = ASPIRIN if oral else carboplatin_draft(bedside.patient)
    bedside.plan = plan_for(draft, builtin_protocols())
    bedside.submit(
        start_entry(
            entry_id=str(uuid.uuid4()), session_id=bedside.session_id, author=NURSE, at=bedside.now, draft=draft,
            request_group="RequestGroup/rg1",
            step_requests={n: f"MedicationRequest/mr{n}" for n in range(1, len(bedside.plan.steps) + 1)},
            encounter=bedside.encounter,
        )
    )  # fmt: skip
    bedside.record("checklist", item="consent")
    return flowsheet(launcher, sid, bedside), bedside


def test_an_oral_plan_asks_for_iv_access_for_rescue_treatment(
    launcher: Launcher, ehr: FakeEhr, app: Flask
) -> None:
    html, bedside = _at_the_checklist(launcher, ehr, app, oral=True)
    [still] = re.findall(r"Still to record: ([^.]*)\.", text_of(html))
    assert still.startswith("IV access, emergency kit at the bedside"), still
    assert 'value="iv-access"' in html and "IV access working (for rescue treatment)" in html
    assert "iv-access" in bedside.state.missing_checklist()


def test_an_infusion_still_asks_for_iv_access(launcher: Launcher, ehr: FakeEhr, app: Flask) -> None:
    html, bedside = _at_the_checklist(launcher, ehr, app, oral=False)
    [still] = re.findall(r"Still to record: ([^.]*)\.", text_of(html))
    assert still.startswith("IV access, emergency kit at the bedside")
    assert 'value="iv-access"' in html and "IV access working" in html
    assert "iv-access" in bedside.state.missing_checklist()


def _chart_facts(plan: Plan) -> list[ChartFact]:
    """What the chart says before step 1 for ``plan``, from an empty chart."""
    return list(
        chart_facts(
            plan,
            observations=[],
            requests=[],
            administrations=[],
            consents=[],
            now=START,
            per_body_size=False,
        )
    )


def test_the_chart_findings_ask_for_a_line_for_every_route() -> None:
    def items(plan: Plan) -> list[str]:
        return [f.item for f in _chart_facts(plan)]

    assert "iv-access" in items(carboplatin_plan())
    assert "iv-access" in items(plan_for(ASPIRIN, builtin_protocols()))


def test_the_chart_finding_for_an_oral_plan_says_the_line_is_for_rescue() -> None:
    [fact] = [f for f in _chart_facts(plan_for(ASPIRIN, builtin_protocols())) if f.item == "iv-access"]
    assert "rescue treatment" in fact.finding
