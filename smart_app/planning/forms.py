"""Planning glue: what the chart says (through the SMART session), form parsing, and the worksheet
view-model.

Thin on purpose. FHIR reading lives in :mod:`fhir_desens.fhir` (``allergy``, ``chart``), the arithmetic
in :mod:`fhir_desens.protocol`; this module sends the FHIR requests with the session's token, turns
form text into domain values (``InputError`` naming the form field), and formats an engine
:class:`~fhir_desens.protocol.calculate.Plan` for people. Every number shown is the engine's number,
rounded for display by ``fhir_desens.protocol.report`` / ``quantity.display``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fhir_desens.boundary.numbers import NumberField, parse_number
from fhir_desens.boundary.text import form_text
from fhir_desens.course.chart import ChartForPlanning, candidate_key
from fhir_desens.course.draft import StartChoice
from fhir_desens.drugs.names import resolve_name
from fhir_desens.errors import (
    DesensError,
    InputError,
    SafetyViolation,
)
from fhir_desens.fhir.chart.drugs import DrugCandidate
from fhir_desens.fhir.risk_chart import ChartRisk
from fhir_desens.protocol.model import ClosingMethod, Protocol, ProtocolKind
from fhir_desens.protocol.quantity import (
    Quantity,
    display,
)
from fhir_desens.protocol.risk import RiskAnswers

MAX_TEXT = 200
MAX_INDICATION = 500

#: Every number typed into a planning form, with the bounds of what may reach a draft (one parser,
#: :func:`fhir_desens.boundary.numbers.parse_number`: no NaN, infinity, ``1e-400`` or 50 digits is
#: ever stored). The engine then applies its own, unit-aware plausibility checks (smallest and
#: largest target dose, plausible height and weight, the pump's maximum rate).
NUMBER_FIELDS: dict[str, NumberField] = {
    "target_dose": NumberField("target_dose", Decimal(0), Decimal(100_000_000)),
    "height_cm": NumberField("height_cm", Decimal(0), Decimal(1000), "cm"),
    "weight_kg": NumberField("weight_kg", Decimal(0), Decimal(1000), "kg"),
    "final_rate": NumberField("final_rate", Decimal("0.01"), Decimal(1000), "mL/h", minimum_inclusive=True),
    "bag_volume": NumberField("bag_volume", Decimal(1), Decimal(1000), "mL", minimum_inclusive=True),
}

# --- form fields: names, labels (exact texts of ui-contract.md) and engine field names -------------

log = logging.getLogger(__name__)

LABELS: dict[str, str] = {
    "drug": "Drug",
    "other_drug": "Other drug",
    "indication": "Indication",
    "target_dose": "Target dose",
    "dose_unit": "Dose unit",
    "height_cm": "Height (cm)",
    "weight_kg": "Weight (kg)",
    "grade": "Severity of the index reaction",
    "hypotension_or_hypoxia": "Hypotension or hypoxia during the index reaction",
    "cardiac_or_beta_blocker": "Cardiac disease or beta-blocker",
    "fev1_below_80": "FEV1 below 80%",
    "protocol": "Protocol",
    "final_rate": "Final rate (mL/h)",
    "bag_volume": "Bag volume (mL)",
    "diluent": "Diluent",
    "closing": "Closing method",
    "insert_before": "Insert a step before step",
    "remove": "Remove inserted step",
    "confirm_unlisted": "I confirm desensitization for a drug the allergy list does not record",
    "override_reason": "Override reason",
    "planned_start": "Planned start",
    "dose_acknowledged": "I have checked the dose against the active order",
    "dose_reason": "Reason for the dose difference",
    "keep_order_reason": "Reason to keep this order active",
    "duplicate_reason": "Reason both plans are intended",
    "action": "Action",
    "copy": "Copy of a signed plan",
    "plan": "Plan",
}

#: engine / domain field names -> form field names
_ENGINE_FIELDS: dict[str, str] = {
    "--drug": "drug",
    "--dose": "target_dose",
    "target": "target_dose",
    "--protocol": "protocol",
    "--final-rate": "final_rate",
    "--bag-volume": "bag_volume",
    "--bag-volumes": "bag_volume",
    "--closing": "closing",
    "--bag-fractions": "closing",
    "--concentrations": "closing",
    "--insert-before": "insert_before",
    "--pump-max": "final_rate",
    "height": "height_cm",
    "height_cm": "height_cm",
    "weight": "weight_kg",
    "weight_kg": "weight_kg",
    "formula": "height_cm",
    "unit": "dose_unit",
    "dose": "target_dose",
    "grade": "grade",
}

#: the protocol-form field most likely at fault when a safety invariant refuses a recalculation
_INVARIANT_FIELDS = {"INV-03": "bag_volume", "INV-06": "final_rate"}

#: Dose units offered on the start form: value -> text shown. "ug" is shown as "mcg" (ISMP: "ug" is
#: easily misread as "mg").
DOSE_UNITS: dict[str, str] = {
    "mg": "mg",
    "g": "g",
    "ug": "mcg",
    "[iU]": "units",
    "mg/m2": "mg/m2",
    "mg/kg": "mg/kg",
}
PER_AREA_UNITS = frozenset({"mg/m2"})
PER_WEIGHT_UNITS = frozenset({"mg/kg"})

GRADES: dict[str, str] = {
    "1": "1 - mild (skin, mucosa)",
    "2": "2 - moderate",
    "3": "3 - severe (hypotension, hypoxia, neurological)",
}
RISK_CHECKBOXES = ("hypotension_or_hypoxia", "cardiac_or_beta_blocker", "fev1_below_80")
CHECKED = frozenset({"yes", "on", "true", "1"})

CLOSING_TEXT: dict[ClosingMethod, str] = {
    ClosingMethod.REDUCED_FINAL_BAG: "Reduced final bag (last bag holds the rest of the dose, infused whole)",
    ClosingMethod.TRUNCATED_FINAL_STEP: "Truncated final step (full-strength last bag, stop at the target)",
    ClosingMethod.REMAINDER_STEP: "Remainder step (fixed concentrations, last step carries the rest)",
    ClosingMethod.FRACTION_BAGS: "Fraction bags (each bag holds a fraction of the dose, infused whole)",
}


@dataclass(frozen=True)
class FieldError:
    field: str  # the form field's name (its id in the page)
    message: str  # for people: starts with the field's label

    @property
    def label(self) -> str:
        return LABELS.get(self.field, self.field)


def form_field(engine_field: str) -> str:
    """The form field an engine/domain error field name belongs to."""
    if engine_field in LABELS:
        return engine_field
    return _ENGINE_FIELDS.get(engine_field, "plan")


def field_error(error: DesensError, *, default: str = "plan") -> FieldError:
    """A message naming the form field (its visible label) and what is accepted."""
    if isinstance(error, InputError):
        name = form_field(error.field)
        if name == "plan":
            name = default
        text = f"{LABELS.get(name, name)}: {error.problem}"
        if error.accepted:
            text += f" (accepted: {error.accepted})"
        return FieldError(name, text)
    if isinstance(error, SafetyViolation):
        name = _INVARIANT_FIELDS.get(error.invariant_id, default) if default == "protocol" else default
        # The invariant id goes to the log (for the engineers), the plain words to the person.
        log.info("plan refused by safety invariant %s", error.invariant_id)
        return FieldError(
            name,
            f"{LABELS.get(name, name)}: this change would make an unsafe plan, so it was not made. "
            f"{error.for_people[:1].upper()}{error.for_people[1:]}",
        )
    return FieldError(default, f"{LABELS.get(default, default)}: {error.message}")


def error_status(errors: Iterable[FieldError | DesensError]) -> int:
    """HTTP status of a refused form: 422 when a safety invariant refused it, else 400."""
    return 422 if any(isinstance(e, SafetyViolation) for e in errors) else 400


def clean_text(form: Mapping[str, str], name: str, limit: int, *, required: bool = False) -> str | None:
    """Free text typed by a person, through :func:`~fhir_desens.boundary.text.form_text`: refused with
    the field named when it holds direction overrides, zero-width or control characters (what is
    checked is exactly what is shown); runs of white space become one space."""
    text = " ".join(form_text(form.get(name, ""), name, max_length=limit).split())
    if not text:
        if required:
            raise InputError(name, "is required")
        return None
    return text


def number(form: Mapping[str, str], name: str, *, required: bool = True) -> Decimal | None:
    """A number from a form field ("400", "0.5") within the field's bounds (:data:`NUMBER_FIELDS`);
    the message names the field and what is accepted."""
    field = NUMBER_FIELDS[name]
    raw = (form.get(name) or "").strip()
    if not raw:
        if required:
            raise InputError(name, "is empty", field.accepted)
        return None
    return parse_number(raw, field)


def choice(form: Mapping[str, str], name: str, allowed: Iterable[str]) -> str:
    value = form.get(name, "")
    options = list(allowed)
    if value not in options:
        raise InputError(
            name, "is not one of the offered choices", ", ".join(o or "(empty)" for o in options)
        )
    return value


def checkbox(form: Mapping[str, str], name: str) -> bool:
    value = form.get(name)
    if value is None or value == "":
        return False
    if value.lower() not in CHECKED:
        raise InputError(name, f"'{value}' is not a checkbox value", "checked or not")
    return True


def answer(form: Mapping[str, str], name: str) -> bool | None:
    """A yes / no / not known answer (RISK-CHART-2: not answered is unknown, never "no")."""
    value = (form.get(name) or "").strip().lower()
    if value in ("", "unknown"):
        return None
    if value == "no":
        return False
    if value in CHECKED:
        return True
    raise InputError(name, f"'{value[:12]}' is not an answer", "yes, no or not known")


def parse_risk(form: Mapping[str, str]) -> RiskAnswers:
    grade = choice(form, "grade", ["", *GRADES])
    return RiskAnswers(
        grade=int(grade) if grade else None,
        hypotension_or_hypoxia=answer(form, "hypotension_or_hypoxia"),
        cardiac_or_beta_blocker=answer(form, "cardiac_or_beta_blocker"),
        fev1_below_80=answer(form, "fev1_below_80"),
    )


def _collect(errors: list[FieldError], parse: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return parse(*args, **kwargs)
    except InputError as error:
        errors.append(field_error(error, default=form_field(error.field)))
        return None


def parse_start(
    form: Mapping[str, str], candidates: Sequence[DrugCandidate]
) -> tuple[StartChoice | None, list[FieldError]]:
    """Every field checked, every problem reported at once (so the user fixes them in one go)."""
    errors: list[FieldError] = []
    by_key = {candidate_key(c): c for c in candidates}
    key = _collect(errors, choice, form, "drug", [*by_key, "other"])
    candidate = by_key.get(key or "")
    other = _collect(errors, clean_text, form, "other_drug", MAX_TEXT, required=key == "other")
    indication = _collect(errors, clean_text, form, "indication", MAX_INDICATION)
    value = _collect(errors, number, form, "target_dose")
    dose_unit = _collect(errors, choice, form, "dose_unit", DOSE_UNITS)
    per_area = dose_unit in PER_AREA_UNITS
    per_weight = dose_unit in PER_WEIGHT_UNITS
    height = _collect(errors, number, form, "height_cm", required=per_area)
    weight = _collect(errors, number, form, "weight_kg", required=per_area or per_weight)
    risk = _collect(errors, parse_risk, form)
    if errors or key is None:
        return None, errors
    name = candidate.name if candidate is not None else other
    assert name is not None and value is not None and dose_unit is not None
    if candidate is None and not checkbox(form, "accept_name"):
        resolution = resolve_name(name)
        if not resolution.resolved and resolution.suggestions:  # DRUG-NAME-1: "carboplatn"
            names = " or ".join(m.name for m in resolution.suggestions)
            error = InputError(
                "other_drug",
                f"'{name}' is not a drug fhir-desens knows. Did you mean {names}?",
                "the drug's name, or tick 'Use the name as typed' to plan it as an uncoded drug",
            )
            return None, [field_error(error, default="other_drug")]
    from_order = candidate is not None and candidate.source == "order"
    return (
        StartChoice(
            drug=name,
            drug_rxnorm=candidate.rxnorm if candidate is not None else (),
            route=candidate.route if candidate is not None else None,
            order_reference=candidate.order_reference if candidate is not None else None,
            indication=indication,
            dose=Quantity(value, dose_unit),
            height_cm=height if per_area else None,
            weight_kg=weight if per_area or per_weight else None,
            risk=risk,
            order_text=candidate.text if from_order and candidate is not None else None,
            ordered_dose=candidate.dose if from_order and candidate is not None else None,
        ),
        [],
    )


CUT_MARK = " [\u2026]"


def fitted(text: str, limit: int) -> str:
    """Chart text pre-filled into a form field, cut (and marked) to what the field accepts, so a long
    chart text never makes "Continue" refuse the form's own defaults."""
    if len(text) <= limit:
        return text
    return text[: limit - len(CUT_MARK)].rstrip() + CUT_MARK


def risk_defaults(risk: ChartRisk) -> dict[str, str]:
    """The risk fields as the chart answers them (RISK-CHART-1); unanswered ones stay "not known"."""
    values: dict[str, str] = {"grade": str(risk.grade.value) if isinstance(risk.grade.value, int) else ""}
    for item in risk.answers[1:]:
        values[item.criterion] = "" if item.value is None else ("yes" if item.value else "no")
    return values


def start_defaults(chart: ChartForPlanning) -> dict[str, str]:
    """Initial values of the start form: the first candidate (orders come first), height and weight."""
    values: dict[str, str] = {"drug": "other", "dose_unit": "mg", "grade": ""}
    if chart.candidates:
        first = chart.candidates[0]
        values["drug"] = candidate_key(first)
        values["indication"] = fitted(first.indication or "", MAX_INDICATION)
        if first.dose is not None and first.dose.unit in DOSE_UNITS:
            values["target_dose"] = display(first.dose.value, 6)
            values["dose_unit"] = first.dose.unit
    height, weight = chart.measurements.height, chart.measurements.weight
    if height is not None:
        values["height_cm"] = display(height.value, 1)
    if weight is not None:
        values["weight_kg"] = display(weight.value, 1)
    return values


# --- protocol choices on the plan page ----------------------------------------------------------


@dataclass(frozen=True)
class ProtocolOptions:
    """Which settings the protocol lets a person change (and so which fields the page shows)."""

    final_rate: bool
    bag_volume: bool
    diluent: bool
    closing: tuple[ClosingMethod, ...]
    insert: bool


def options_for(protocol: Protocol) -> ProtocolOptions:
    infusion = protocol.kind is ProtocolKind.INFUSION
    return ProtocolOptions(
        final_rate=infusion and protocol.uses_final_rate,
        bag_volume=infusion,
        diluent=infusion and any(not s.solid for s in protocol.solutions),
        # only the methods the page can plan: it has no field for bag fractions or fixed concentrations
        closing=closing if infusion and len(closing := protocol.self_contained_closing_methods) > 1 else (),
        insert=infusion,
    )
