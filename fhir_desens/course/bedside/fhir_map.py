"""A bedside session as FHIR R4 resources (no network): what the outbox sends to the EHR.

* The session: one ``Procedure`` (CPT 95180 "rapid desensitization, each hour"; no SNOMED concept for
  drug desensitization was verified, so none is sent), identified by the session id, sharing the signed
  RequestGroup's session identifier (``Procedure.basedOn`` cannot point at a RequestGroup in R4).
* One ``MedicationAdministration`` per step **and per rate segment** (R4 MA.dosage.rate: each rate
  change is its own record): ``partOf`` the Procedure, ``request`` the step's MedicationRequest,
  ``effectivePeriod``, ``dosage.rateQuantity`` (mL/h) and ``dosage.dose`` (the drug given in the
  segment), status in-progress, on-hold (paused by a reaction), stopped, completed. Premedications and
  rescue treatments are MedicationAdministrations too (``partOf`` the Procedure, no request; a rescue
  treatment's ``supportingInformation`` is the reaction's AdverseEvent).
* Vital signs: one ``Observation`` per measure with the R4 vital-signs profile and the US Core codes
  (pulse oximetry carries 59408-5 and 2708-6; blood pressure is the 85354-9 panel with components);
  peak expiratory flow (19935-6) is not a vital sign (category ``exam``). ``partOf`` the administration
  running when measured.
* A reaction: ``AdverseEvent`` (actual; ``suspectEntity`` the paused administration; ``severity`` the
  Brown grade), its coded symptoms and phenotype in our extensions (R4 AdverseEvent has no manifestation).
* ``Provenance`` for the whole record (targets resolved when written).

References between the session's own resources are written as logical references (``identifier`` and
``type``) with an ``_item`` key; the outbox turns them into literal references once the target is on the
server (and leaves the logical reference where the EHR does not accept the target).

It lives in ``course`` (not ``fhir``) because it maps the course's session state: the layers go
course -> fhir -> protocol. It does no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from fhir_desens.course.bedside import reactions as rx
from fhir_desens.course.bedside.next_dose import rule_of as next_dose_rule
from fhir_desens.course.bedside.next_dose import sentence as next_dose_sentence
from fhir_desens.course.bedside.state import Segment, SessionState, VitalsRecord
from fhir_desens.fhir import canonical as c
from fhir_desens.protocol import display as shown

CPT = "http://www.ama-assn.org/go/cpt"
LOINC = "http://loinc.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
AE_SEVERITY = "http://terminology.hl7.org/CodeSystem/adverse-event-severity"
AE_OUTCOME = "http://terminology.hl7.org/CodeSystem/adverse-event-outcome"
PROVENANCE_PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
ID_BEDSIDE_SESSION = f"{c.CANONICAL_BASE}/identifier/bedside-session"
ID_BEDSIDE_ITEM = c.ID_BEDSIDE_ITEM  # <session>/<item key>
EXT_REACTION_MANIFESTATION = c.EXT_REACTION_MANIFESTATION
EXT_REACTION_PHENOTYPE = c.EXT_REACTION_PHENOTYPE
R4_PROFILE = "http://hl7.org/fhir/StructureDefinition/"


@dataclass(frozen=True)
class Outgoing:
    """One resource of the session as it should be on the server now."""

    key: str  # stable per resource: "procedure", "ma/<entry id>", "obs/<entry id>/heart_rate" ...
    resource_type: str
    identifier: dict[str, str]  # {system, value}: the business identifier looked up before any resend
    resource: dict[str, Any]
    final: bool  # True when this resource will not change any more
    depends_on: tuple[str, ...] = field(default=())  # keys it references


@dataclass(frozen=True)
class VitalCode:
    field: str
    profile: str
    codings: tuple[tuple[str, str], ...]  # (code, display), LOINC
    unit: str
    category: str = "vital-signs"


VITAL_CODES = (
    VitalCode("heart_rate", "heartrate", (("8867-4", "Heart rate"),), "/min"),
    VitalCode("respiratory_rate", "resprate", (("9279-1", "Respiratory rate"),), "/min"),
    VitalCode(
        "spo2",
        "oxygensat",
        (
            ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"),
            ("2708-6", "Oxygen saturation in Arterial blood"),
        ),
        "%",
    ),
    VitalCode("temperature", "bodytemp", (("8310-5", "Body temperature"),), "Cel"),
    VitalCode(
        "peak_flow",
        "",
        (("19935-6", "Maximum expiratory gas flow Respiratory system airway by Peak flow meter"),),
        "L/min",
        "exam",
    ),
)


def item_identifier(state: SessionState, key: str) -> dict[str, str]:
    return {"system": ID_BEDSIDE_ITEM, "value": f"{state.session_id}/{key}"}


def ref(state: SessionState, key: str, resource_type: str) -> dict[str, Any]:
    """A logical reference to another resource of this session (made literal by the outbox)."""
    return {"type": resource_type, "identifier": item_identifier(state, key), "_item": key}


def _instant(value: datetime) -> str:
    return value.isoformat(timespec="seconds")


def _quantity(value: Decimal, unit: str) -> dict[str, Any]:
    return {
        "value": float(value) if value != value.to_integral_value() else int(value),
        "unit": unit,
        "system": c.UCUM,
        "code": unit,
    }


def _exact_quantity(value: Decimal, unit: str) -> dict[str, Any]:
    """A quantity whose value keeps every digit (JSON numbers written from Decimal by io.json)."""
    return {"value": value, "unit": unit, "system": c.UCUM, "code": unit}


def _common(state: SessionState) -> dict[str, Any]:
    subject = {"reference": state.context.get("patient")}
    encounter = state.context.get("encounter")
    return {"subject": subject, **({"encounter": {"reference": encounter}} if encounter else {})}


def session_resources(state: SessionState) -> list[Outgoing]:
    """Every resource of the session as it stands (call again after each entry: changed ones are updates)."""
    if state.started_at is None:
        return []
    out = [_procedure(state)]
    out += [_premedication(state, p) for p in state.premedications]
    out += [_administration(state, s) for s in state.segments]
    out += [o for v in state.vitals for o in _vitals(state, v)]
    for reaction in state.reactions:
        out.append(_adverse_event(state, reaction))
        out += [_rescue(state, reaction.entry_id, t) for t in reaction.treatments]
    out.append(_provenance(state, out))
    return out


def _procedure(state: SessionState) -> Outgoing:
    phase = state.phase
    status = {
        "completed": "completed",
        "stopped": "stopped",
        "paused": "on-hold",
        "not-started": "preparation",
    }.get(phase, "in-progress")
    period: dict[str, str] = {"start": _instant(state.started_at)} if state.started_at else {}
    if state.completion is not None:
        period["end"] = _instant(state.completion["observation_end"])
    identifier = item_identifier(state, "procedure")
    resource: dict[str, Any] = {
        "resourceType": "Procedure",
        "identifier": [identifier, {"system": ID_BEDSIDE_SESSION, "value": state.session_id}],
        "status": status,
        "code": {
            "coding": [
                {"system": CPT, "code": "95180", "display": "Rapid desensitization procedure, each hour"}
            ],
            "text": f"Rapid drug desensitization: {state.plan.drug}",
        },
        **_common(state),
        "performedPeriod": period,
        "performer": [
            {"actor": {"reference": a}}
            for a in sorted(state.authors)
            if a.startswith(("Practitioner/", "PractitionerRole/"))
        ],
        "note": [{"text": n} for n in _procedure_notes(state)],
    }
    plan_session = state.context.get("plan_session")
    if plan_session:  # the signed RequestGroup's identifier (R4 Procedure.basedOn cannot name a RequestGroup)
        resource["identifier"].append({"system": c.ID_SESSION, "value": plan_session})
    if state.reactions:
        resource["complication"] = [s.concept() for r in state.reactions for s in r.symptoms]
    if not resource["note"]:
        del resource["note"]
    return Outgoing("procedure", "Procedure", identifier, resource, final=phase in ("completed", "stopped"))


def _procedure_notes(state: SessionState) -> list[str]:
    unit = state.plan.dose_unit
    notes = [
        f"Protocol {state.plan.protocol.title} ({state.plan.protocol.id} {state.plan.protocol.version}); "
        f"target {shown.dose_text(state.plan.target_dose.value, unit)}; given {shown.dose_text(state.delivered, unit)}."
    ]
    if state.completion is not None:
        outcome = state.completion
        reason = f" Reason: {outcome['reason']}." if outcome.get("reason") else ""
        next_dose = next_dose_sentence(outcome["next_dose"], next_dose_rule(state))
        notes.append(
            f"Outcome: {outcome['outcome']}.{reason} {next_dose} {outcome.get('next_dose_note') or ''}".strip()
        )
    return notes


def _medication(state: SessionState, solution: int | None = None, text: str | None = None) -> dict[str, Any]:
    rxnorm = [str(code) for code in (state.context.get("draft") or {}).get("drug_rxnorm") or ()]
    if text is not None:
        return {"text": text}
    found = next((s for s in state.plan.solutions if s.number == solution), None)
    if state.discrete and found is not None:  # a dose by mouth: the solution or tablet as labelled
        named = state.plan.drug.lower() in found.label.lower()
        label = found.label if named else f"{state.plan.drug}, {found.label}"
    else:
        label = f"{state.plan.drug}, bag {solution}"
    if found is not None and found.concentration is not None and not state.discrete:
        label += f" ({shown.concentration_text(found.concentration.value, found.concentration.unit)})"
    return (
        {"coding": [{"system": c.RXNORM, "code": code} for code in rxnorm], "text": label}
        if rxnorm
        else {"text": label}
    )


def _administration(state: SessionState, segment: Segment) -> Outgoing:
    if state.discrete:
        return _dose_given(state, segment)
    key = f"ma/{segment.key}"
    identifier = item_identifier(state, key)
    period = {"start": _instant(segment.started_at)}
    if segment.ended_at is not None:
        period["end"] = _instant(segment.ended_at)
    dosage: dict[str, Any] = {"text": f"{segment.row.label}: {shown.volume_text(segment.volume_ml)}"}
    if segment.rate_ml_h is not None:
        dosage["rateQuantity"] = _exact_quantity(segment.rate_ml_h, "mL/h")
    if segment.status != "in-progress":
        dosage["dose"] = _exact_quantity(segment.dose, state.plan.dose_unit)
    resource: dict[str, Any] = {
        "resourceType": "MedicationAdministration",
        "identifier": [identifier],
        "status": segment.status,
        "medicationCodeableConcept": _medication(state, segment.row.solution),
        **{("context" if k == "encounter" else k): v for k, v in _common(state).items()},
        "effectivePeriod": period,
        "performer": [{"actor": {"reference": segment.author}}],
        "partOf": [ref(state, "procedure", "Procedure")],
        "dosage": dosage,
    }
    request = (state.context.get("step_requests") or {}).get(str(segment.row.step.protocol_step))
    if request:
        resource["request"] = {"reference": request}
    if segment.status in ("stopped", "on-hold"):
        resource["statusReason"] = [{"text": "Paused for a reaction"}]
    return Outgoing(
        key,
        "MedicationAdministration",
        identifier,
        resource,
        final=segment.status in ("completed", "stopped"),
        depends_on=("procedure",),
    )


def _dose_given(state: SessionState, segment: Segment) -> Outgoing:
    """A dose of a discrete (oral) protocol: given whole at one time (``effectiveDateTime``), no rate; the
    step's minutes are the wait after it, not part of the administration, so it is complete once given."""
    key = f"ma/{segment.key}"
    identifier = item_identifier(state, key)
    resource: dict[str, Any] = {
        "resourceType": "MedicationAdministration",
        "identifier": [identifier],
        "status": "completed",
        "medicationCodeableConcept": _medication(state, segment.row.solution),
        **{("context" if k == "encounter" else k): v for k, v in _common(state).items()},
        "effectiveDateTime": _instant(segment.started_at),
        "performer": [{"actor": {"reference": segment.author}}],
        "partOf": [ref(state, "procedure", "Procedure")],
        "dosage": {
            "text": f"{segment.row.label}: {state.given_as(segment.row)} by mouth",
            "route": {"text": state.plan.protocol.route},
            "dose": _exact_quantity(segment.dose, state.plan.dose_unit),
        },
    }
    request = (state.context.get("step_requests") or {}).get(str(segment.row.step.protocol_step))
    if request:
        resource["request"] = {"reference": request}
    return Outgoing(
        key, "MedicationAdministration", identifier, resource, final=True, depends_on=("procedure",)
    )


def _given(state: SessionState, key: str, at: datetime, author: str, medication: str, dose: str) -> Outgoing:
    identifier = item_identifier(state, key)
    resource: dict[str, Any] = {
        "resourceType": "MedicationAdministration",
        "identifier": [identifier],
        "status": "completed",
        "medicationCodeableConcept": {"text": medication},
        **{("context" if k == "encounter" else k): v for k, v in _common(state).items()},
        "effectiveDateTime": _instant(at),
        "performer": [{"actor": {"reference": author}}],
        "partOf": [ref(state, "procedure", "Procedure")],
        # the dose is free text as ordered ("25 mg IV"): a note, since dosage needs a coded dose (mad-1)
        "note": [{"text": f"Given: {dose or medication}"}],
    }
    return Outgoing(
        key, "MedicationAdministration", identifier, resource, final=True, depends_on=("procedure",)
    )


def _premedication(state: SessionState, record: dict[str, Any]) -> Outgoing:
    return _given(
        state,
        f"premed/{record['entry_id']}",
        record["at"],
        record["author"],
        str(record["name"]),
        str(record.get("dose") or ""),
    )


def _rescue(state: SessionState, reaction_id: str, treatment: dict[str, Any]) -> Outgoing:
    label = rx.TREATMENT_BY_KEY[treatment["treatment"]].label
    out = _given(
        state,
        f"rescue/{treatment['entry_id']}",
        treatment["at"],
        treatment["author"],
        label,
        treatment["dose"],
    )
    # the reaction it treated: R4 allows only Condition, Observation, DiagnosticReport in reasonReference
    out.resource["supportingInformation"] = [ref(state, f"ae/{reaction_id}", "AdverseEvent")]
    return Outgoing(
        out.key, out.resource_type, out.identifier, out.resource, True, ("procedure", f"ae/{reaction_id}")
    )


def _segment_at(state: SessionState, at: datetime) -> Segment | None:
    return next(
        (s for s in state.segments if s.started_at <= at and (s.ended_at is None or at <= s.ended_at)), None
    )


def _vitals(state: SessionState, record: VitalsRecord) -> Iterable[Outgoing]:
    running = _segment_at(state, record.at)
    part_of = [ref(state, f"ma/{running.key}", "MedicationAdministration")] if running else []
    depends = (f"ma/{running.key}",) if running else ()
    base = {
        "status": "final",
        **_common(state),
        "effectiveDateTime": _instant(record.at),
        "performer": [{"reference": record.author}],
        **({"partOf": part_of} if part_of else {}),
    }
    values = record.signs.values

    def outgoing(name: str, resource: dict[str, Any]) -> Outgoing:
        key = f"obs/{record.entry_id}/{name}"
        identifier = item_identifier(state, key)
        flag = record.flags.get(name) or (record.flags.get("diastolic") if name == "systolic" else None)
        if flag:
            code = "H" if flag == "high" else "L"
            resource["interpretation"] = [
                {"coding": [{"system": INTERPRETATION, "code": code}], "text": flag}
            ]
        return Outgoing(
            key,
            "Observation",
            identifier,
            {"resourceType": "Observation", "identifier": [identifier], **resource},
            True,
            depends,
        )

    yield outgoing(
        "systolic",
        {
            "meta": {"profile": [R4_PROFILE + "bp"]},
            "category": [_category("vital-signs")],
            "code": {
                "coding": [
                    {
                        "system": LOINC,
                        "code": "85354-9",
                        "display": "Blood pressure panel with all children optional",
                    }
                ]
            },
            **base,
            "component": [
                {
                    "code": {
                        "coding": [{"system": LOINC, "code": "8480-6", "display": "Systolic blood pressure"}]
                    },
                    "valueQuantity": _exact_quantity(values["systolic"], "mm[Hg]"),
                },
                {
                    "code": {
                        "coding": [{"system": LOINC, "code": "8462-4", "display": "Diastolic blood pressure"}]
                    },
                    "valueQuantity": _exact_quantity(values["diastolic"], "mm[Hg]"),
                },
            ],
        },
    )
    for code in VITAL_CODES:
        if code.field not in values:
            continue
        yield outgoing(
            code.field,
            {
                **({"meta": {"profile": [R4_PROFILE + code.profile]}} if code.profile else {}),
                "category": [_category(code.category)],
                "code": {"coding": [{"system": LOINC, "code": k, "display": d} for k, d in code.codings]},
                **base,
                "valueQuantity": _exact_quantity(values[code.field], code.unit),
            },
        )


def _category(code: str) -> dict[str, Any]:
    return {"coding": [{"system": OBSERVATION_CATEGORY, "code": code}]}


def _adverse_event(state: SessionState, reaction: Any) -> Outgoing:
    key = f"ae/{reaction.entry_id}"
    identifier = item_identifier(state, key)
    resource: dict[str, Any] = {
        "resourceType": "AdverseEvent",
        "meta": {"profile": [c.PROFILE_BEDSIDE_REACTION]},
        "identifier": identifier,
        "actuality": "actual",
        "event": {"text": "Breakthrough reaction during rapid drug desensitization"},
        "subject": {"reference": state.context.get("patient")},
        **(
            {"encounter": {"reference": state.context["encounter"]}} if state.context.get("encounter") else {}
        ),
        "date": _instant(reaction.onset),
        "recorder": {"reference": reaction.author},
        "severity": {
            "coding": [{"system": AE_SEVERITY, "code": reaction.grade}],
            "text": rx.GRADES[reaction.grade],
        },
        "outcome": {
            "coding": [{"system": AE_OUTCOME, "code": "resolved" if reaction.resolved_at else "ongoing"}]
        },
        "extension": [
            *(
                {"url": EXT_REACTION_MANIFESTATION, "valueCodeableConcept": s.concept()}
                for s in reaction.symptoms
            ),
            {
                "url": EXT_REACTION_PHENOTYPE,
                "valueCoding": {"system": c.CS_REACTION_PHENOTYPE, "code": reaction.phenotype},
            },
        ],
        "suspectEntity": [],
    }
    depends: tuple[str, ...] = ()
    if reaction.segment_key:
        resource["suspectEntity"] = [
            {"instance": ref(state, f"ma/{reaction.segment_key}", "MedicationAdministration")}
        ]
        depends = (f"ma/{reaction.segment_key}",)
    else:
        del resource["suspectEntity"]
    return Outgoing(
        key, "AdverseEvent", identifier, resource, final=reaction.resumed is not None, depends_on=depends
    )


def _provenance(state: SessionState, written: list[Outgoing]) -> Outgoing:
    identifier = item_identifier(state, "provenance")
    resource: dict[str, Any] = {
        "resourceType": "Provenance",
        "target": [ref(state, o.key, o.resource_type) for o in written],
        "recorded": _instant(state.completion["at"] if state.completion else state.started_at),  # type: ignore[arg-type]
        "policy": [f"{ID_BEDSIDE_ITEM}#{state.session_id}"],
        "agent": [
            {
                "type": {"coding": [{"system": PROVENANCE_PARTICIPANT, "code": "performer"}]},
                "who": {"reference": author},
            }
            for author in sorted(state.authors)
        ],
    }
    return Outgoing(
        "provenance",
        "Provenance",
        identifier,
        resource,
        final=state.completion is not None,
        depends_on=tuple(o.key for o in written),
    )


__all__ = ["ID_BEDSIDE_ITEM", "ID_BEDSIDE_SESSION", "Outgoing", "item_identifier", "session_resources"]
