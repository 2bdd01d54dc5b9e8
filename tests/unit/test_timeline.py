"""The server-side SVG timeline: well-formed, labelled, drawn from the engine's numbers."""

from __future__ import annotations

import re
from decimal import Decimal
from xml.etree import ElementTree as ET

import pytest

from fhir_desens.protocol.calculate import Plan, PlanRequest, compute_plan
from fhir_desens.protocol.library import builtin_protocols
from fhir_desens.protocol.quantity import Quantity
from smart_app.planning.timeline import (
    LEFT,
    PLOT_H,
    PLOT_W,
    TOP,
    describe,
    nice_axis,
    time_axis,
    timeline_svg,
)

NS = "{http://www.w3.org/2000/svg}"


def plan(
    protocol: str = "iv-12-step-3-bag", drug: str = "carboplatin", dose: str | None = "400", **options: object
) -> Plan:
    target = Quantity(Decimal(dose), "mg") if dose is not None else None
    return compute_plan(
        PlanRequest(protocol=builtin_protocols()[protocol], drug=drug, target=target, **options)
    )  # type: ignore[arg-type]


def parse(markup: str) -> ET.Element:
    return ET.fromstring(markup)  # noqa: S314 - our own markup, no entities


def points(path: ET.Element) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in re.findall(r"[ML]([-\d.]+),([-\d.]+)", path.get("d", ""))]


def test_svg_is_well_formed_and_labelled() -> None:
    svg = parse(timeline_svg(plan(final_rate_ml_h=Decimal(75)), id_prefix="t1"))
    assert svg.tag == f"{NS}svg"
    assert svg.get("role") == "img" and svg.get("viewBox") == "0 0 900 330"
    assert svg.get("aria-labelledby") == "t1-title t1-desc"
    title, desc = svg.find(f"{NS}title"), svg.find(f"{NS}desc")
    assert title is not None and title.get("id") == "t1-title"
    assert desc is not None and desc.get("id") == "t1-desc"
    assert title.text == "Timeline of the iv-12-step-3-bag plan: carboplatin 400 mg"
    assert desc.text is not None
    assert "rises in 12 steps from 1.875 mL/h (step 1) to 75 mL/h (step 12)" in desc.text
    assert "reaches 400 mg after 5 h 52 min." in desc.text


def test_no_inline_styles_or_scripts() -> None:
    """The page's CSP forbids inline styles; colours and dashes are presentation attributes."""
    svg = parse(timeline_svg(plan()))
    for element in svg.iter():
        assert "style" not in element.attrib
        assert not element.tag.endswith("script")
        assert not any(name.startswith("on") for name in element.attrib)


def test_text_is_escaped() -> None:
    markup = timeline_svg(plan(drug='<b onclick="x">carbo & co</b>'))
    assert "<b onclick" not in markup
    title = parse(markup).find(f"{NS}title")
    assert title is not None and '<b onclick="x">carbo & co</b>' in (title.text or "")


def test_rate_line_steps_through_every_rate() -> None:
    computed = plan(final_rate_ml_h=Decimal(75))
    svg = parse(timeline_svg(computed))
    rate_group = next(g for g in svg.iter(f"{NS}g") if g.get("class") == "rate")
    path = rate_group.find(f"{NS}path")
    assert path is not None
    line = points(path)
    assert len(line) == 2 * len(computed.steps)
    rate_axis = nice_axis(Decimal(75))
    time = time_axis(computed.total_minutes)
    for index, step in enumerate(computed.steps):
        assert step.rate_ml_h is not None
        start, end = line[2 * index], line[2 * index + 1]
        expected_y = TOP + PLOT_H - float(step.rate_ml_h) / float(rate_axis.maximum) * PLOT_H
        assert start[1] == end[1] == pytest.approx(expected_y, abs=0.01)
        assert start[0] == pytest.approx(
            LEFT + float(step.start_minute) / float(time.maximum) * PLOT_W, abs=0.01
        )
    markers = rate_group.findall(f"{NS}circle")
    assert len(markers) == 12
    assert (
        markers[-1].get("data-step")
        == "Step 12 at 75 mL/h, from 2 h 45 min: dose 371 mg, cumulative 400 mg"  # display policy: 4 figures
    )
    assert len(list(svg.iter(f"{NS}title"))) == 1, "one title: the chart's accessible name"


def test_cumulative_dose_ends_at_the_target_at_the_end() -> None:
    computed = plan(final_rate_ml_h=Decimal(75))
    svg = parse(timeline_svg(computed))
    dose_group = next(g for g in svg.iter(f"{NS}g") if g.get("class") == "dose")
    path = dose_group.find(f"{NS}path")
    assert path is not None and path.get("stroke-dasharray") == "7 4"
    line = points(path)
    assert line[0] == (LEFT, TOP + PLOT_H)
    dose_axis, time = nice_axis(Decimal(400)), time_axis(computed.total_minutes)
    assert line[-1][0] == pytest.approx(
        LEFT + float(computed.total_minutes) / float(time.maximum) * PLOT_W, abs=0.01
    )
    assert line[-1][1] == pytest.approx(TOP + PLOT_H - 400 / float(dose_axis.maximum) * PLOT_H, abs=0.01)
    ys = [y for _, y in line]
    assert ys == sorted(ys, reverse=True), "the cumulative dose never goes down"


def test_discrete_protocols_draw_doses_not_rates() -> None:
    computed = plan("aspirin-aerd-90-min", drug="aspirin", dose=None)
    svg = parse(timeline_svg(computed))
    groups = {g.get("class") for g in svg.iter(f"{NS}g")}
    assert "rate" not in groups and "dose" in groups
    dose_group = next(g for g in svg.iter(f"{NS}g") if g.get("class") == "dose")
    assert len(dose_group.findall(f"{NS}circle")) == len(computed.steps)
    texts = [t.text for t in svg.iter(f"{NS}text")]
    assert "Cumulative dose (mg, left axis)" in texts and "Rate (mL/h)" not in texts
    desc = svg.find(f"{NS}desc")
    assert desc is not None and f"{len(computed.steps)} separate doses" in (desc.text or "")


@pytest.mark.parametrize(
    ("maximum", "top", "step"),
    [
        ("75", "80", "20"),
        ("400", "400", "100"),
        ("0.0075", "0.008", "0.002"),
        ("999", "1000", "200"),
        ("1", "1", "0.2"),
    ],
)
def test_nice_axes(maximum: str, top: str, step: str) -> None:
    axis = nice_axis(Decimal(maximum))
    assert axis.maximum == Decimal(top)
    assert axis.ticks[0] == 0 and axis.ticks[1] == Decimal(step) and axis.ticks[-1] == axis.maximum


def test_time_axis_ticks_are_round_minutes() -> None:
    axis = time_axis(Decimal("351.875"))
    assert axis.maximum == 360 and axis.ticks[1] == 60
    assert time_axis(Decimal(45)).ticks[1] == 5


def test_describe_names_the_protocol_and_drug() -> None:
    title, text = describe(plan("iv-16-step-4-bag"))
    assert title == "Timeline of the iv-16-step-4-bag plan: carboplatin 400 mg"
    assert "in 16 steps" in text and text.endswith("The Steps table lists every value.")
