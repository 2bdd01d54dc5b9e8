"""A server-side SVG timeline of a plan: the infusion rate (mL/h, a step line) and the cumulative
dose over time.

Built with :mod:`xml.etree.ElementTree`, so the markup is well-formed and every text is escaped. No
script, no ``style`` attributes (the page's CSP forbids inline styles): colours, dashes and fonts are
presentation attributes, dark enough to print, and the two series differ by dash pattern as well as
colour so they stay apart in greyscale. The chart has a ``<title>`` and a ``<desc>`` summarising it,
and the worksheet's Steps table is its data-table alternative.

Every value comes from the engine's :class:`~fhir_desens.protocol.calculate.Plan`; Decimals become
floats only for drawing coordinates. Axis ticks are "nice" round Decimals chosen for reading the
chart, not clinical values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from xml.etree import ElementTree as ET

from fhir_desens.protocol import display as shown
from fhir_desens.protocol.calculate import Plan, PlannedStep
from fhir_desens.protocol.quantity import unit
from fhir_desens.protocol.report import clock_text, dose_text, rate_text

SVG_NS = "http://www.w3.org/2000/svg"
WIDTH, HEIGHT = 900, 330
LEFT, RIGHT, TOP, BOTTOM = 70, 90, 44, 56
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
RATE_COLOUR = "#0b4f8a"  # dark blue, solid
DOSE_COLOUR = "#8a3b00"  # dark brown-orange, dashed
AXIS_COLOUR = "#1b1b1b"
GRID_COLOUR = "#c8c8c8"
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif"
TIME_STEPS = (5, 10, 15, 30, 60, 90, 120, 180, 240, 360, 480, 720, 1440, 2880, 5760)
MAX_TIME_TICKS = 10


@dataclass(frozen=True)
class Axis:
    maximum: Decimal
    ticks: tuple[Decimal, ...]

    def scale(self, value: Decimal, length: float) -> float:
        return float(value) / float(self.maximum) * length


def nice_axis(maximum: Decimal, target_ticks: int = 5) -> Axis:
    """An axis from 0 with round ticks (1, 2, 2.5, 5 x 10^n) covering ``maximum``."""
    if maximum <= 0:
        maximum = Decimal(1)
    raw = maximum / target_ticks
    base = Decimal(1).scaleb(raw.adjusted())
    step = next(
        base * m for m in (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5), Decimal(10)) if base * m >= raw
    )
    count = int((maximum / step).to_integral_value(rounding=ROUND_CEILING))
    return Axis(step * count, tuple(step * i for i in range(count + 1)))


def time_axis(total_minutes: Decimal) -> Axis:
    total = total_minutes if total_minutes > 0 else Decimal(1)
    step = next((Decimal(s) for s in TIME_STEPS if total / s <= MAX_TIME_TICKS), Decimal(TIME_STEPS[-1]))
    count = int((total / step).to_integral_value(rounding=ROUND_CEILING))
    return Axis(step * count, tuple(step * i for i in range(count + 1)))


def _time_label(minutes: Decimal) -> str:
    if minutes == 0:
        return "0"
    whole = int(minutes)
    return f"{whole // 60} h" if whole % 60 == 0 and whole >= 60 else clock_text(minutes)


def _f(value: float) -> str:
    return f"{value:.2f}"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, {k.rstrip("_").replace("_", "-"): v for k, v in attrs.items()})
    if text is not None:
        element.text = text
    return element


class _Chart:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.dose_unit = unit(plan.dose_unit).display
        self.infusion = any(s.rate_ml_h is not None for s in plan.steps)
        self.time = time_axis(plan.total_minutes)
        rates = [s.rate_ml_h for s in plan.steps if s.rate_ml_h is not None]
        self.rate = nice_axis(max(rates)) if rates else None
        self.dose = nice_axis(plan.steps[-1].cumulative_dose.value if plan.steps else Decimal(1))

    def x(self, minutes: Decimal) -> float:
        return LEFT + self.time.scale(minutes, PLOT_W)

    def y(self, axis: Axis, value: Decimal) -> float:
        return TOP + PLOT_H - axis.scale(value, PLOT_H)

    # -- parts --------------------------------------------------------------------------------------
    def grid_and_axes(self, svg: ET.Element) -> None:
        group = _sub(svg, "g", font_family=FONT, font_size="12", fill=AXIS_COLOUR)
        for tick in self.time.ticks:
            x = _f(self.x(tick))
            _sub(
                group,
                "line",
                x1=x,
                x2=x,
                y1=_f(TOP),
                y2=_f(TOP + PLOT_H),
                stroke=GRID_COLOUR,
                stroke_width="1",
            )
            _sub(group, "text", _time_label(tick), x=x, y=_f(TOP + PLOT_H + 18), text_anchor="middle")
        _sub(
            group,
            "text",
            "Time from the start of step 1",
            x=_f(LEFT + PLOT_W / 2),
            y=_f(HEIGHT - 12),
            text_anchor="middle",
        )
        left_axis = self.rate if self.rate is not None else self.dose
        left_title = "Rate (mL/h)" if self.rate is not None else f"Cumulative dose ({self.dose_unit})"
        self._value_axis(group, left_axis, LEFT, "end", -8, left_title)
        if self.rate is not None:
            self._value_axis(
                group, self.dose, LEFT + PLOT_W, "start", 8, f"Cumulative dose ({self.dose_unit})"
            )
        _sub(
            group,
            "rect",
            x=_f(LEFT),
            y=_f(TOP),
            width=_f(PLOT_W),
            height=_f(PLOT_H),
            fill="none",
            stroke=AXIS_COLOUR,
            stroke_width="1",
        )

    def _value_axis(
        self, group: ET.Element, axis: Axis, x: float, anchor: str, offset: int, title: str
    ) -> None:
        for tick in axis.ticks:
            y = _f(self.y(axis, tick))
            if anchor == "end":
                _sub(
                    group,
                    "line",
                    x1=_f(LEFT),
                    x2=_f(LEFT + PLOT_W),
                    y1=y,
                    y2=y,
                    stroke=GRID_COLOUR,
                    stroke_width="1",
                )
            _sub(
                group,
                "text",
                shown.grouped(tick.normalize()),
                x=_f(x + offset),
                y=y,
                text_anchor=anchor,
                dominant_baseline="middle",
            )
        title_x = x + (-52 if anchor == "end" else 62)
        _sub(
            group,
            "text",
            title,
            x=_f(title_x),
            y=_f(TOP + PLOT_H / 2),
            text_anchor="middle",
            transform=f"rotate(-90 {_f(title_x)} {_f(TOP + PLOT_H / 2)})",
        )

    def rate_line(self, svg: ET.Element) -> None:
        axis = self.rate
        if axis is None:
            return
        commands: list[str] = []
        for step in self.plan.steps:
            assert step.rate_ml_h is not None
            y = _f(self.y(axis, step.rate_ml_h))
            verb = "L" if commands else "M"
            commands.append(f"{verb}{_f(self.x(step.start_minute))},{y}")
            commands.append(f"L{_f(self.x(step.start_minute + step.minutes))},{y}")
        group = _sub(svg, "g", class_="rate")
        _sub(group, "path", d=" ".join(commands), fill="none", stroke=RATE_COLOUR, stroke_width="2.5")
        for step in self.plan.steps:
            assert step.rate_ml_h is not None
            self._marker(
                group, step.start_minute, self.y(axis, step.rate_ml_h), RATE_COLOUR, self._step_title(step)
            )

    def dose_line(self, svg: ET.Element) -> None:
        commands = [f"M{_f(self.x(Decimal(0)))},{_f(self.y(self.dose, Decimal(0)))}"]
        for step in self.plan.steps:
            end_x = _f(self.x(step.start_minute + step.minutes))
            after = _f(self.y(self.dose, step.cumulative_dose.value))
            if not self.infusion:  # a discrete dose is taken at once: the line jumps, then holds
                commands.append(f"L{_f(self.x(step.start_minute))},{after}")
            commands.append(f"L{end_x},{after}")
        group = _sub(svg, "g", class_="dose")
        _sub(
            group,
            "path",
            d=" ".join(commands),
            fill="none",
            stroke=DOSE_COLOUR,
            stroke_width="2",
            stroke_dasharray="7 4",
        )
        if not self.infusion:
            for step in self.plan.steps:
                y = self.y(self.dose, step.cumulative_dose.value)
                self._marker(group, step.start_minute, y, DOSE_COLOUR, self._step_title(step))

    def _marker(self, group: ET.Element, minute: Decimal, y: float, colour: str, label: str) -> None:
        # The label is a data attribute, not a <title>: the chart has one title (its accessible
        # name) and the Steps table is the text alternative of every point.
        _sub(group, "circle", cx=_f(self.x(minute)), cy=_f(y), r="3.5", fill=colour, data_step=label)

    def _step_title(self, step: PlannedStep) -> str:
        rate = "" if step.rate_ml_h is None else f" at {rate_text(self.plan, step.rate_ml_h)} mL/h"
        return (
            f"Step {step.number}{rate}, from {clock_text(step.start_minute)}: dose "
            f"{dose_text(step.dose.value)} {self.dose_unit}, cumulative "
            f"{dose_text(step.cumulative_dose.value)} {self.dose_unit}"
        )

    def legend(self, svg: ET.Element) -> None:
        group = _sub(svg, "g", font_family=FONT, font_size="12", fill=AXIS_COLOUR)
        x = LEFT
        entries: list[tuple[str, Callable[[ET.Element, float], None]]] = []
        if self.rate is not None:
            entries.append(("Infusion rate (mL/h, left axis)", self._rate_sample))
        side = "right axis" if self.rate is not None else "left axis"
        entries.append((f"Cumulative dose ({self.dose_unit}, {side})", self._dose_sample))
        for text, sample in entries:
            sample(group, x)
            _sub(group, "text", text, x=_f(x + 34), y=_f(TOP - 18), dominant_baseline="middle")
            x += 300

    @staticmethod
    def _rate_sample(group: ET.Element, x: float) -> None:
        y = _f(TOP - 18)
        _sub(group, "line", x1=_f(x), x2=_f(x + 26), y1=y, y2=y, stroke=RATE_COLOUR, stroke_width="2.5")

    @staticmethod
    def _dose_sample(group: ET.Element, x: float) -> None:
        y = _f(TOP - 18)
        _sub(
            group,
            "line",
            x1=_f(x),
            x2=_f(x + 26),
            y1=y,
            y2=y,
            stroke=DOSE_COLOUR,
            stroke_width="2",
            stroke_dasharray="7 4",
        )


def describe(plan: Plan) -> tuple[str, str]:
    """The chart's title and its text alternative."""
    dose_unit = unit(plan.dose_unit).display
    target = f"{dose_text(plan.target_dose.value)} {dose_unit}"
    title = f"Timeline of the {plan.protocol.id} plan: {plan.drug} {target}"
    steps = plan.steps
    if not steps:
        return title, "The plan has no steps."
    reached = f"the cumulative dose reaches {dose_text(steps[-1].cumulative_dose.value)} {dose_unit}"
    total = f"after {clock_text(plan.total_minutes)}"
    rates = [s.rate_ml_h for s in steps if s.rate_ml_h is not None]
    if rates:
        text = (
            f"The infusion rate rises in {len(steps)} steps from {rate_text(plan, rates[0])} mL/h (step 1) "
            f"to {rate_text(plan, rates[-1])} mL/h (step {steps[-1].number}); {reached} {total}."
        )
    else:
        text = f"{len(steps)} separate doses; {reached} {total}."
    return title, text + " The Steps table lists every value."


def timeline_svg(plan: Plan, *, id_prefix: str = "timeline") -> str:
    """The inline ``<svg>`` markup (role="img", labelled by its <title> and <desc>)."""
    title_id, desc_id = f"{id_prefix}-title", f"{id_prefix}-desc"
    svg = ET.Element(
        "svg",
        {
            "xmlns": SVG_NS,
            "viewBox": f"0 0 {WIDTH} {HEIGHT}",
            "role": "img",
            "aria-labelledby": f"{title_id} {desc_id}",
            "class": "timeline",
            "id": id_prefix,
        },
    )
    title, description = describe(plan)
    _sub(svg, "title", title, id=title_id)
    _sub(svg, "desc", description, id=desc_id)
    _sub(svg, "rect", x="0", y="0", width=str(WIDTH), height=str(HEIGHT), fill="#ffffff")
    chart = _Chart(plan)
    if plan.steps:
        chart.grid_and_axes(svg)
        chart.legend(svg)
        chart.dose_line(svg)
        chart.rate_line(svg)
    return ET.tostring(svg, encoding="unicode")
