"""$apply: a computed plan for one patient -> a FHIR transaction Bundle of orders.

The Bundle holds a RequestGroup (``intent=order``, ``instantiatesCanonical`` = protocol url|version),
one MedicationRequest per step, one Medication per solution (ingredient strength) and a Provenance.
Every entry has a ``urn:uuid:`` fullUrl derived from the session id, and every request resource a
business identifier with ``ifNoneExist``, so posting the same plan twice creates it once. The
Provenance, which has no identifier in R4, is written with PUT to an id derived from the session.
No network here: ``fhir_desens.client`` sends the Bundle.

The RequestGroup also carries what the plan was computed from (the ``desens-plan-parameters``
extension: protocol id, drug and codes, the target dose (and the dose as prescribed when it was per
m²), final rate, bag volume, diluent, inserted steps), so a signed plan can be copied exactly (:func:`plan_parameters`), the
indication (``reasonCode``), and the reason of an expert override of a contraindication (a note,
repeated in ``Provenance.reason``), naming the contraindication that was overridden.

The Medications are the products the protocol gives (DRUG-PROD-1, ``fhir_desens.drugs.products``):
each names its product with its verified RxNorm codes (never an unverified one), its dosage form and
exactly one diluent (DRUG-DIL-2); a protocol whose route or form the drug has no product for is
refused here too (DRUG-PROD-2), so no path writes such orders.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from fhir_desens.drugs.checks import combination_text, solution_diluent_label
from fhir_desens.drugs.monograph import RXNORM, Monograph, Product
from fhir_desens.drugs.products import PlanProducts, resolve_products
from fhir_desens.errors import InputError
from fhir_desens.fhir import canonical as c
from fhir_desens.fhir.plandefinition import ROUTES, canonical_url, ucum
from fhir_desens.fhir.provenance import provenance_resource
from fhir_desens.protocol import display as shown
from fhir_desens.protocol.calculate import Plan, PlannedSolution, PlannedStep
from fhir_desens.protocol.quantity import Quantity
from fhir_desens.protocol.report import is_oral, plan_dict, rate_text

_NAMESPACE = uuid.UUID("6b2f7f0e-6a8e-4d55-9a2c-4a1f2d9a7c10")  # fhir-desens session namespace


@dataclass(frozen=True)
class ApplyContext:
    patient: str  # "Patient/<id>"
    practitioner: str | None = None  # "Practitioner/<id>" (the signing prescriber)
    encounter: str | None = None  # "Encounter/<id>"
    authored: datetime | None = None  # timezone-aware; defaults to now when building
    session_id: str | None = None  # business id of the session; default derived from the plan
    drug_codes: tuple[dict[str, str], ...] = ()  # codings of the drug (e.g. RxNorm) when known
    indication: str | None = None
    prescribed_dose: Quantity | None = None  # as prescribed when it is not the plan's target (mg/m2 ...)
    dose_basis: str | None = None  # how the target was derived, e.g. "250 mg/m² x BSA 1.7 m² (Mosteller)"
    override_reason: str | None = None  # an expert override of a contraindication, recorded as given
    overridden: str | None = None  # the contraindication overridden, e.g. "Stevens-Johnson syndrome, 2019"
    override_authority: str | None = None  # who authorised it ("Overridden by an allergist (...)")
    products: PlanProducts | None = None  # None: resolved from the plan's drug and drug_codes
    based_on: tuple[str, ...] = ()  # "MedicationRequest/<id>": the therapeutic order the plan stands in for
    notes: tuple[str, ...] = ()  # further notes on the RequestGroup (kept order, dose difference ...)
    start: datetime | None = None  # planned start (with zone): each step order gets its timing from it
    #: the prescriber's name as the app read it, written as the reference's ``display`` so that a pharmacist
    #: or nurse whose grant cannot read that Practitioner still sees a person, not "Practitioner/7"
    practitioner_name: str | None = None


@dataclass(frozen=True)
class PlanParameters:
    """What a signed session was computed from (the ``desens-plan-parameters`` extension).

    ``None`` (or empty) means the protocol's default was used.
    """

    protocol_id: str
    drug: str
    drug_codes: tuple[dict[str, str], ...]
    target_dose: Quantity  # what the plan was computed for (mg, [iU] ...)
    prescribed_dose: Quantity | None = None  # as prescribed when not the target itself (mg/m2 ...)
    dose_basis: str | None = None
    final_rate_ml_h: Decimal | None = None
    bag_volume_ml: Decimal | None = None
    diluent: str | None = None
    insert_before: tuple[int, ...] = ()
    pump_resolution_ml_h: Decimal | None = None  # the pump steps the rates were rounded to; None: exact
    syringe_volumes: bool = False  # discrete volumes rounded to syringe marks (INV-25)


#: The note that shows how a per-m² dose became the planned dose (so a pharmacist can check it by hand).
DOSE_BASIS_NOTE = "Dose: "
OVERRIDE_NOTE = "Expert override of a contraindication: "


def _reference(value: str | None, kind: str, field: str) -> str | None:
    if value is None:
        return None
    if not value.startswith(f"{kind}/") or len(value) <= len(kind) + 1 or "/" in value[len(kind) + 1 :]:
        raise InputError(field, f"'{value}' is not a {kind} reference", f"{kind}/<id>")
    return value


def _person(reference: str | None, name: str | None) -> dict[str, str] | None:
    """A reference to the signing prescriber, with their name as ``display`` when it is known."""
    if reference is None:
        return None
    display = (name or "").strip()
    return {"reference": reference, "display": display} if display else {"reference": reference}


def session_id_for(plan: Plan, context: ApplyContext) -> str:
    """A stable session id: the same patient, protocol and plan always give the same id."""
    material = json.dumps(
        {"patient": context.patient, "encounter": context.encounter, "plan": plan_dict(plan)},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def _urn(session: str, kind: str, number: int = 0) -> str:
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'{session}/{kind}/{number}')}"


def apply_plan(plan: Plan, context: ApplyContext) -> dict[str, Any]:
    """The transaction Bundle for a plan (raw FHIR R4 dict; doses stay Decimal)."""
    patient = _reference(context.patient, "Patient", "--patient")
    practitioner = _reference(context.practitioner, "Practitioner", "--practitioner")
    prescriber = _person(practitioner, context.practitioner_name)
    encounter = _reference(context.encounter, "Encounter", "--encounter")
    authored = (context.authored or datetime.now().astimezone()).isoformat(timespec="seconds")
    if context.authored is not None and context.authored.tzinfo is None:
        raise InputError("authored", "a date-time needs a time zone")
    session = context.session_id or session_id_for(plan, context)
    protocol_canonical = f"{canonical_url(plan.protocol)}|{plan.protocol.version}"
    common = {
        "subject": {"reference": patient},
        **({"encounter": {"reference": encounter}} if encounter else {}),
    }
    products = _products(plan, context)
    medications = [_medication(plan, s, session, context, products) for s in plan.solutions]
    if context.start is not None and context.start.tzinfo is None:
        raise InputError("start", "a date-time needs a time zone")
    requests = [
        _medication_request(plan, step, session, protocol_canonical, authored, prescriber, common, products)
        for step in plan.steps
    ]
    if context.start is not None:
        for step, request in zip(plan.steps, requests, strict=True):
            _schedule(request["dosageInstruction"][0]["timing"], step, context.start)
    group = _request_group(plan, session, protocol_canonical, authored, prescriber, common, products)
    if context.based_on:
        group["basedOn"] = [
            {"reference": _reference(r, "MedicationRequest", "based_on")} for r in context.based_on
        ]
    if context.dose_basis:
        group["note"].append({"text": f"{DOSE_BASIS_NOTE}{context.dose_basis}"})
    group["note"].extend({"text": note} for note in context.notes)
    group["extension"] = [*group.get("extension", []), _plan_parameters_extension(plan, context)]
    if context.indication:
        group["reasonCode"] = [{"text": context.indication}]
        for request in requests:
            request["reasonCode"] = [{"text": context.indication}]
    if context.override_reason:
        group["note"].append({"text": override_text(context)})
    targets = [_urn(session, "RequestGroup")] + [
        _urn(session, "MedicationRequest", s.number) for s in plan.steps
    ]
    provenance = _provenance(session, targets, authored, prescriber)
    if context.override_reason:
        provenance["reason"] = [{"text": override_text(context)}]
    entries = [
        _entry(_urn(session, "RequestGroup"), group, c.ID_SESSION, session),
        *(
            _entry(_urn(session, "Medication", s.number), m, c.ID_SOLUTION, f"{session}-{s.number}")
            for s, m in zip(plan.solutions, medications, strict=True)
        ),
        *(
            _entry(_urn(session, "MedicationRequest", s.number), r, c.ID_STEP_ORDER, f"{session}-{s.number}")
            for s, r in zip(plan.steps, requests, strict=True)
        ),
        {
            "fullUrl": _urn(session, "Provenance"),
            "resource": provenance,
            "request": {"method": "PUT", "url": f"Provenance/{provenance['id']}"},
        },
    ]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def override_text(context: ApplyContext) -> str:
    """The override note: what was overridden, by whose authority, and why."""
    what = f"({context.overridden}) " if context.overridden else ""
    who = f"{context.override_authority} " if context.override_authority else ""
    return f"{OVERRIDE_NOTE}{what}{who}{context.override_reason or ''}".rstrip()


def _products(plan: Plan, context: ApplyContext) -> PlanProducts | None:
    if context.products is not None:
        return context.products
    codes = tuple(c["code"] for c in context.drug_codes if c.get("system") == RXNORM and c.get("code"))
    products, refused = resolve_products(plan.protocol, plan.drug, codes)
    if refused:
        raise InputError("protocol", refused[0].message, "a protocol whose route and form fit the product")
    return products


def _codings(product: Product, drug: Monograph) -> list[dict[str, str]]:
    return [
        code.coding(product.display if code.level.startswith("S") else drug.name) for code in product.codes
    ]


def _at(start: datetime, minutes: Decimal) -> str:
    # to the second: a clock time on an order, never used for arithmetic
    return (start + timedelta(seconds=round(minutes * 60))).isoformat(timespec="seconds")


def _schedule(timing: dict[str, Any], step: PlannedStep, start: datetime) -> None:
    """A step's clock time: an infusion step runs in ``repeat.boundsPeriod`` (start to end); a
    discrete dose is given at ``event`` (its wait follows, ``repeat.duration``)."""
    if step.rate_ml_h is not None:
        timing["repeat"]["boundsPeriod"] = {
            "start": _at(start, step.start_minute),
            "end": _at(start, step.start_minute + step.minutes),
        }
    else:
        timing["event"] = [_at(start, step.start_minute)]


def _entry(full_url: str, resource: dict[str, Any], system: str, value: str) -> dict[str, Any]:
    return {
        "fullUrl": full_url,
        "resource": resource,
        "request": {
            "method": "POST",
            "url": resource["resourceType"],
            "ifNoneExist": f"identifier={system}|{value}",
        },
    }


def _drug_concept(plan: Plan, context: ApplyContext) -> dict[str, Any]:
    concept: dict[str, Any] = {"text": plan.drug}
    if context.drug_codes:
        concept["coding"] = [dict(code) for code in context.drug_codes]
    return concept


def _medication(
    plan: Plan,
    solution: PlannedSolution,
    session: str,
    context: ApplyContext,
    products: PlanProducts | None,
) -> dict[str, Any]:
    dose_code = plan.dose_unit
    product = products.product(solution.number) if products is not None else None
    drug_concept = _drug_concept(plan, context)
    if products is not None:
        given = products.given
        drug_concept = {
            "text": given.name,
            **({"coding": [c.coding(given.name) for c in given.codes]} if given.codes else {}),
        }
    ingredient: dict[str, Any] = {"itemCodeableConcept": drug_concept, "isActive": True}
    if solution.concentration is not None:
        ingredient["strength"] = {
            "numerator": ucum(solution.concentration.value, dose_code),
            "denominator": ucum(Decimal(1), "mL"),
        }
    elif solution.unit_dose is not None:
        ingredient["strength"] = {
            "numerator": ucum(solution.unit_dose.value, dose_code),
            "denominator": {"value": Decimal(1), "unit": "unit", "system": c.UCUM, "code": "{unit}"},
        }
    ingredients = [ingredient]
    diluent = solution_diluent_label(solution.diluent, products)
    if diluent:
        ingredients.append({"itemCodeableConcept": {"text": diluent}, "isActive": False})
    code: dict[str, Any] = {"text": f"{plan.drug}: {solution.label}"}
    if product is not None and products is not None:
        code = {"text": f"{product.display}: {solution.label}"}
        if product.codes:
            code["coding"] = _codings(product, products.given)
    medication: dict[str, Any] = {
        "resourceType": "Medication",
        "identifier": [{"system": c.ID_SOLUTION, "value": f"{session}-{solution.number}"}],
        "code": code,
        "ingredient": ingredients,
    }
    if product is not None:
        medication["form"] = {"text": product.dosage_form}
    if solution.volume_ml is not None and solution.concentration is not None:
        medication["amount"] = {
            "numerator": ucum(solution.volume_ml, "mL"),
            "denominator": {"value": Decimal(1), "unit": "bag", "system": c.UCUM, "code": "{bag}"},
        }
    return medication


def _unit_name(plan: Plan, solution_number: int) -> str:
    """What one unit of a solid form is called ("tablet", or "prepared dose" for authored doses)."""
    return next((s.unit_name for s in plan.solutions if s.number == solution_number), "tablet")


def _dose_text(plan: Plan, step: PlannedStep, products: PlanProducts | None = None) -> str:
    """What a nurse reads in the EHR: rounded by the display policy (the structured values stay exact)."""
    dose = shown.dose_text(step.dose.value, step.dose.unit)
    if products is not None and products.given.combination is not None:
        dose = f"{dose}: {combination_text(products.given, step.dose)}"  # both components
    if step.rate_ml_h is not None and step.volume_ml is not None:
        return (
            f"Step {step.number}: solution {step.solution} at {rate_text(plan, step.rate_ml_h)} mL/h for "
            f"{shown.minutes_text(step.minutes)} ({shown.volume_text(step.volume_ml)} = {dose}); cumulative "
            f"{shown.dose_text(step.cumulative_dose.value, step.dose.unit)}"
        )
    verb = "Give by mouth" if is_oral(plan) else "Give"
    amount = (
        shown.volume_text(step.volume_ml)
        if step.volume_ml is not None
        else shown.count_text(step.units or Decimal(0), _unit_name(plan, step.solution))
    )
    source = "" if step.units is not None else f" of solution {step.solution}"  # a tablet is no solution
    return (
        f"Step {step.number}: {verb} {amount}{source} ({dose}), then wait {shown.minutes_text(step.minutes)}"
    )


def _medication_request(
    plan: Plan,
    step: PlannedStep,
    session: str,
    protocol_canonical: str,
    authored: str,
    prescriber: Mapping[str, str] | None,
    common: dict[str, Any],
    products: PlanProducts | None = None,
) -> dict[str, Any]:
    dose_and_rate: dict[str, Any] = {"doseQuantity": ucum(step.dose.value, step.dose.unit)}
    if step.rate_ml_h is not None:
        dose_and_rate["rateQuantity"] = ucum(step.rate_ml_h, "mL/h")
    repeat: dict[str, Any] = {"count": 1, "duration": step.minutes, "durationUnit": "min"}
    dosage: dict[str, Any] = {
        "sequence": step.number,
        "text": _dose_text(plan, step, products),
        "timing": {"repeat": repeat},
        "doseAndRate": [dose_and_rate],
    }
    if plan.protocol.route in ROUTES:
        dosage["route"] = {"coding": [ROUTES[plan.protocol.route]], "text": plan.protocol.route}
    request: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "meta": {"profile": [c.PROFILE_STEP_ORDER]},
        "identifier": [{"system": c.ID_STEP_ORDER, "value": f"{session}-{step.number}"}],
        "status": "active",
        "intent": "order",
        "priority": "urgent",
        "medicationReference": {"reference": _urn(session, "Medication", step.solution)},
        **common,
        "authoredOn": authored,
        "instantiatesCanonical": [protocol_canonical],
        # No basedOn: R4 MedicationRequest.basedOn cannot name a RequestGroup (HAPI refuses it). The
        # group names its orders (action.resource) and both carry the session id (groupIdentifier).
        "groupIdentifier": {"system": c.ID_SESSION, "value": session},
        "dosageInstruction": [dosage],
    }
    if prescriber:
        request["requester"] = dict(prescriber)
    return request


def _drug_words(plan: Plan, products: PlanProducts | None) -> str:
    """The drug the plan's doses are of (penicillin V for an order of penicillin G benzathine), else its drug."""
    given = products.given_for_the_order if products is not None else None
    return given or plan.drug


def _request_group(
    plan: Plan,
    session: str,
    protocol_canonical: str,
    authored: str,
    prescriber: Mapping[str, str] | None,
    common: dict[str, Any],
    products: PlanProducts | None = None,
) -> dict[str, Any]:
    actions = []
    for step in plan.steps:
        action: dict[str, Any] = {
            "id": f"step-{step.number}",
            "prefix": str(step.number),
            "title": f"Step {step.number}",
            "description": _dose_text(plan, step, products),
            "timingDuration": ucum(step.minutes, "min"),
            "resource": {"reference": _urn(session, "MedicationRequest", step.number)},
        }
        if step.number > 1:
            action["relatedAction"] = [{"actionId": f"step-{step.number - 1}", "relationship": "after-end"}]
        actions.append(action)
    group: dict[str, Any] = {
        "resourceType": "RequestGroup",
        "meta": {"profile": [c.PROFILE_SESSION]},
        "identifier": [{"system": c.ID_SESSION, "value": session}],
        "instantiatesCanonical": [protocol_canonical],
        "groupIdentifier": {"system": c.ID_SESSION, "value": session},
        "status": "active",
        "intent": "order",
        "priority": "urgent",
        **common,
        "authoredOn": authored,
        "note": [
            {
                "text": f"{plan.protocol.title}: {_drug_words(plan, products)} "
                f"{shown.dose_text(plan.target_dose.value, plan.dose_unit)}, {len(plan.steps)} steps, "
                f"{shown.clock_text(plan.total_minutes)}"
            }
        ],
        "action": actions,
    }
    if products is not None and products.therapeutic_note:
        group["note"].append({"text": products.therapeutic_note})
    if plan.closing is not None:
        group["extension"] = [{"url": c.EXT_CLOSING_METHOD, "valueCode": plan.closing.value}]
    if prescriber:
        group["author"] = dict(prescriber)
    return group


def _provenance(
    session: str, targets: list[str], recorded: str, prescriber: Mapping[str, str] | None
) -> dict[str, Any]:
    provenance_id = str(uuid.uuid5(_NAMESPACE, f"{session}/provenance"))
    return provenance_resource(
        targets,
        recorded,
        "CREATE",
        author=prescriber["reference"] if prescriber else None,
        author_display=prescriber.get("display") if prescriber else None,
        provenance_id=provenance_id,
    )


# --- plan parameters (desens-plan-parameters) -----------------------------------------------------


def _diluent(plan: Plan) -> str | None:
    return next((s.diluent for s in plan.solutions if s.diluent), None)


def _plan_parameters_extension(plan: Plan, context: ApplyContext) -> dict[str, Any]:
    request = plan.request
    target = plan.target_dose
    subs: list[dict[str, Any]] = [
        {"url": "protocolId", "valueString": plan.protocol.id},
        {"url": "drug", "valueString": plan.drug},
        *({"url": "drugCode", "valueCoding": dict(code)} for code in context.drug_codes),
        {"url": "targetDose", "valueQuantity": ucum(target.value, target.unit)},
    ]
    prescribed = context.prescribed_dose
    if prescribed is not None:
        subs.append({"url": "prescribedDose", "valueQuantity": ucum(prescribed.value, prescribed.unit)})
    if context.dose_basis:
        subs.append({"url": "doseBasis", "valueString": context.dose_basis})
    if request.final_rate_ml_h is not None:
        subs.append({"url": "finalRate", "valueQuantity": ucum(request.final_rate_ml_h, "mL/h")})
    if request.bag_volume_ml is not None:
        subs.append({"url": "bagVolume", "valueQuantity": ucum(request.bag_volume_ml, "mL")})
    diluent = _diluent(plan)
    if diluent:
        subs.append({"url": "diluent", "valueString": diluent})
    subs += [{"url": "insertBefore", "valuePositiveInt": n} for n in request.insert_before]
    if request.pump_resolution_ml_h is not None:  # the rates were rounded to it: a recomputation needs it
        subs.append({"url": "pumpResolution", "valueQuantity": ucum(request.pump_resolution_ml_h, "mL/h")})
    if request.syringe_volumes:  # the volumes were rounded to syringe marks: a recomputation needs it
        subs.append({"url": "syringeVolumes", "valueBoolean": True})
    return {"url": c.EXT_PLAN_PARAMETERS, "extension": subs}


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int | str) and not isinstance(value, bool):
        try:
            return Decimal(value)
        except ArithmeticError:
            return None
    return None  # floats (a JSON parser that lost precision) are not trusted


def _quantity(value: Any) -> Quantity | None:
    if not isinstance(value, dict) or not isinstance(value.get("code"), str):
        return None
    number = _decimal(value.get("value"))
    if number is None:
        return None
    try:
        return Quantity(number, value["code"])
    except InputError:
        return None


def plan_parameters(group: dict[str, Any]) -> PlanParameters | None:
    """The plan parameters recorded on a signed RequestGroup; None when absent or unreadable.

    Decimals must arrive as Decimal, int or text (parse the JSON with ``fhir_desens.io.json``).
    """
    extension = next(
        (
            e
            for e in group.get("extension") or []
            if isinstance(e, dict) and e.get("url") == c.EXT_PLAN_PARAMETERS
        ),
        None,
    )
    if extension is None:
        return None
    values: dict[str, list[Any]] = {}
    for sub in extension.get("extension") or []:
        if isinstance(sub, dict) and isinstance(sub.get("url"), str):
            value = next((v for k, v in sub.items() if k.startswith("value")), None)
            values.setdefault(sub["url"], []).append(value)

    def one(name: str) -> Any:
        return (values.get(name) or [None])[0]

    protocol_id, drug, target = one("protocolId"), one("drug"), _quantity(one("targetDose"))
    if not isinstance(protocol_id, str) or not isinstance(drug, str) or target is None:
        return None
    rate, volume = _quantity(one("finalRate")), _quantity(one("bagVolume"))
    resolution = _quantity(one("pumpResolution"))
    return PlanParameters(
        protocol_id=protocol_id,
        drug=drug,
        drug_codes=tuple(
            {k: str(v) for k, v in code.items() if k in ("system", "code", "display")}
            for code in values.get("drugCode", [])
            if isinstance(code, dict)
        ),
        target_dose=target,
        prescribed_dose=_quantity(one("prescribedDose")),
        dose_basis=one("doseBasis") if isinstance(one("doseBasis"), str) else None,
        final_rate_ml_h=rate.value if rate is not None else None,
        bag_volume_ml=volume.value if volume is not None else None,
        diluent=one("diluent") if isinstance(one("diluent"), str) else None,
        insert_before=tuple(
            n for n in values.get("insertBefore", []) if isinstance(n, int) and not isinstance(n, bool)
        ),
        pump_resolution_ml_h=resolution.value if resolution is not None else None,
        syringe_volumes=one("syringeVolumes") is True,
    )
