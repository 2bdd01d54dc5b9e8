"""Every human-readable text of a signed plan's FHIR resources follows the display policy (docs/display.md).

For random heights, weights, doses per m², protocols and pump resolutions, the plan is computed, turned
into the signed transaction (``apply_plan``) and every text a person reads in the EHR is scanned:
``RequestGroup.note``, action titles and descriptions, ``MedicationRequest.dosageInstruction.text`` and
notes, ``Medication.code.text``. Each number must carry a unit (or be a step, solution or bag number), be
written with thousands separators, never read "0" for an amount, and have no more digits than the policy
gives it: doses and concentrations 4 significant figures (whole numbers kept whole), volumes 0.01 mL below
1 mL and 0.1 mL above, rates to the pump's resolution, minutes whole, the BSA to 2 decimals. Written in
full on purpose: the dose per m² as prescribed and the intermediate product of the dose calculation
("375.5 mg/m² × 2.14 m² = 803.57 mg → 804 mg"), so that a calculator reproduces it; and the protocol's
own words (its title's citation year, dilution labels such as "1:10000").
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from fhir_desens.errors import DesensError
from fhir_desens.fhir.apply import ApplyContext, apply_plan
from fhir_desens.protocol.bsa import body_surface_area, rounded_dose_for_bsa
from fhir_desens.protocol.calculate import PlanRequest, compute_plan
from fhir_desens.protocol.display import resolution_places
from fhir_desens.protocol.library import builtin_protocols
from fhir_desens.protocol.model import ProtocolKind
from fhir_desens.protocol.quantity import Quantity

IV = [
    p.id
    for p in builtin_protocols().values()
    if p.kind is ProtocolKind.INFUSION and not p.fixed_table and p.drugs == ()
]
ORAL = [p.id for p in builtin_protocols().values() if p.kind is ProtocolKind.DISCRETE]
IV_DRUGS = ["carboplatin", "paclitaxel", "rituximab", "oxaliplatin", "docetaxel"]
DOSE_UNITS = ("mg", "mcg", "g", "units", "mg/mL", "mcg/mL", "units/mL", "g/mL", "mg/m²", "mcg/m²", "units/m²")
INDEX_WORDS = ("Step", "step", "steps", "solution", "Solution", "Bag", "bag", "of", "and", "Steps")
NUMBER = re.compile(r"(?<![\w.])(\d[\d,]*(?:\.\d+)?)(?![\w.]*\d)")

#: Texts a person reads in the EHR: (resource type, path) pairs are collected by :func:`_texts`.
HUMAN_KEYS = {"text", "title", "description"}


def _texts(resource: Any, key: str = "") -> Iterator[str]:
    if isinstance(resource, dict):
        for name, value in resource.items():
            if name in ("extension", "identifier", "meta", "coding"):
                continue  # structured: exact values and codes
            yield from _texts(value, name)
    elif isinstance(resource, list):
        for item in resource:
            yield from _texts(item, key)
    elif isinstance(resource, str) and key in HUMAN_KEYS:
        yield resource


def _places(number: str) -> int:
    return len(number.partition(".")[2])


def _significant(number: str) -> int:
    digits = number.replace(",", "").replace(".", "").lstrip("0")
    return len(digits)


def _problems(text: str, rate_places: int) -> list[str]:
    found = []
    scanned = re.sub(r"\b1:[\d,]+", "", text)  # dilution labels from the protocol: "Bag 1 (1:100)"
    # the dose calculation writes the prescribed dose per m² as prescribed and the product in full
    scanned = re.sub(r"[\d,]+(?:\.\d+)? \S+/m² ×", "×", scanned)
    scanned = re.sub(r"= [\d,]+(?:\.\d+)? \S+ →", "= →", scanned)
    scanned = re.sub(r"\b(\d+) h \d{2} min\b", r"\1 h", scanned)  # durations "5 h 39 min"
    for match in NUMBER.finditer(scanned):
        number = match.group(1).rstrip(",")
        before = scanned[: match.start()].rstrip().rsplit(" ", 1)[-1]
        after = scanned[match.end() :].lstrip()
        unit = re.match(r"[^\s;,)(]*", after).group(0)  # type: ignore[union-attr]
        whole = number.partition(".")[0]
        value = Decimal(number.replace(",", ""))
        where = f"{number} {unit} in {text!r}"
        if before in INDEX_WORDS or (before.startswith("(") and unit == "of") or unit in ("of", "steps"):
            continue  # step, solution and bag numbers; "12 steps"; "1 of 3"
        if re.fullmatch(r"\d{4,}", whole):
            found.append(f"no thousands separator: {where}")
        if not unit or unit in ("=", "→", "×"):
            found.append(f"no unit: {where}")
        elif value == 0 and not scanned[: match.start()].endswith("< "):
            found.append(f"reads 0 for an amount: {where}")
        elif unit == "mL/h" and _places(number) > rate_places:
            found.append(f"rate beyond the pump's resolution: {where}")
        elif unit == "mL" and _places(number) > (2 if value < 1 else 1):
            found.append(f"volume finer than can be measured: {where}")
        elif unit in ("min", "h") and _places(number) > 0:
            found.append(f"minutes not whole: {where}")
        elif unit == "m²" and _places(number) > 2:
            found.append(f"BSA beyond 2 decimals: {where}")
        elif unit in DOSE_UNITS and _places(number) > 0 and _significant(number) > 4:
            found.append(f"more than 4 significant figures: {where}")
    return found


def _check_bundle(bundle: dict[str, Any], rate_places: int, title: str) -> list[str]:
    """Every human text of the bundle; the protocol's own title (a citation year: "DeGregorio 2019") is not
    a number the plan computed."""
    problems = []
    for entry in bundle["entry"]:
        for text in _texts(entry["resource"]):
            problems += _problems(text.replace(title, "the protocol"), rate_places)
    return problems


SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)


@SETTINGS
@given(
    protocol_id=st.sampled_from(IV),
    drug=st.sampled_from(IV_DRUGS),
    height=st.decimals(Decimal(140), Decimal(205), places=1),
    weight=st.decimals(Decimal(38), Decimal(160), places=1),
    per_m2=st.one_of(st.integers(1, 1500).map(Decimal), st.decimals(Decimal(1), Decimal(1500), places=1)),
    resolution=st.sampled_from([None, Decimal("0.1"), Decimal(1)]),
    final_rate=st.one_of(st.none(), st.integers(20, 250).map(Decimal)),
)
def test_signed_iv_plans_read_by_the_display_policy(
    protocol_id: str,
    drug: str,
    height: Decimal,
    weight: Decimal,
    per_m2: Decimal,
    resolution: Decimal | None,
    final_rate: Decimal | None,
) -> None:
    prescribed = Quantity(per_m2, "mg/m2")
    rounded = rounded_dose_for_bsa(prescribed, body_surface_area(height, weight))
    protocol = builtin_protocols()[protocol_id]
    try:
        plan = compute_plan(
            PlanRequest(
                protocol,
                drug,
                rounded.dose,
                final_rate_ml_h=final_rate if protocol.uses_final_rate else None,
                pump_resolution_ml_h=resolution,
            )
        )
    except DesensError:
        reject()  # refused plans (too small, too fast) write nothing
    context = ApplyContext(
        patient="Patient/p1", prescribed_dose=prescribed, dose_basis=rounded.text, indication="Lymphoma"
    )
    bundle = apply_plan(plan, context)
    places = resolution_places(resolution) if resolution is not None else 3
    assert _check_bundle(bundle, places, protocol.title) == []


@SETTINGS
@given(protocol_id=st.sampled_from(ORAL))
def test_signed_oral_plans_read_by_the_display_policy(protocol_id: str) -> None:
    protocol = builtin_protocols()[protocol_id]
    drug = {"penicillin-v-oral-wendel": "penicillin V", "aspirin-aerd-90-min": "aspirin"}.get(
        protocol_id, "sulfamethoxazole-trimethoprim"
    )
    plan = compute_plan(PlanRequest(protocol, drug, syringe_volumes=True))
    assert _check_bundle(apply_plan(plan, ApplyContext(patient="Patient/p1")), 3, protocol.title) == []


def test_the_checker_finds_what_the_policy_forbids() -> None:
    """The scanner is not vacuous: each rule catches the text it is about."""
    assert _problems("Rituximab 804.33396359969 mg", 1)
    assert _problems("Penicillin 1296700 units", 1)
    assert _problems("Step 1: solution 1 at 4.688 mL/h for 15 min", 1)
    assert _problems("Step 1: 0 mg", 1)
    assert _problems("give 8.672 mL", 1)
    assert _problems("for 174.375 min", 1)
    assert _problems("cumulative 0.0156", 1)  # no unit
    assert not _problems("Dose: 375.5 mg/m² × 2.14 m² = 803.57 mg → 804 mg (rounded half-up to 1 mg)", 1)
    assert not _problems(
        "Step 12: solution 3 at 80 mL/h for 174 min (232.5 mL = 287.9 mg); cumulative 1,296,700 units", 1
    )


def test_plan_warnings_read_by_the_display_policy() -> None:
    """The engine's warnings (pages, sheets, CLI) follow the same rules: "the doses add up to 1,022 mg"."""
    for protocol in builtin_protocols().values():
        drug = protocol.drugs[0] if protocol.drugs else "carboplatin"
        target = None if protocol.kind is ProtocolKind.DISCRETE else Quantity(Decimal("804.334"), "mg")
        if protocol.fixed_table:
            continue
        plan = compute_plan(PlanRequest(protocol, drug, target, syringe_volumes=target is None))
        for warning in plan.warnings:
            assert _problems(warning.replace(protocol.title, "the protocol"), 3) == [], warning
