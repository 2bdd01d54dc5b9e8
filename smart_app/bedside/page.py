"""What the flowsheet shows, computed from the session state (the template only lays it out)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Any

from flask import current_app, has_app_context

from fhir_desens.course import readback
from fhir_desens.course.bedside import next_dose as nd
from fhir_desens.course.bedside import reactions as rx
from fhir_desens.course.bedside.outbox import OutboxStatus
from fhir_desens.course.bedside.resume import ResumeChoice, Row, describe
from fhir_desens.course.bedside.state import Segment, SessionState, minutes_between
from fhir_desens.course.bedside.vitals import MEASURES, flag_words
from fhir_desens.errors import DesensError, InputError
from fhir_desens.protocol import display as shown
from fhir_desens.protocol import report
from fhir_desens.protocol.model import TargetKind
from fhir_desens.protocol.quantity import div, plain, sub
from smart_app.paper.sheets import drug_given
from smart_app.paper.sheets import ordered_drug_follows as _ordered_drug_follows
from smart_app.services import EXTENSION as SERVICES


def _fmt(value: Decimal | None, places: int = 2) -> str:
    if value is None:
        return "—"
    text = f"{value:.{places}f}".rstrip("0").rstrip(".")
    return text or "0"


def _dose(value: Decimal | None) -> str:
    """A dose or cumulative dose by the display policy ('1,296,700', '738.1', '0.0016'; never '0' for a
    dose that is not zero)."""
    return "—" if value is None else shown.dose_number(value)


def given_of_target(state: SessionState) -> str:
    """'0.01467 mg of 400 mg': what is given so far of the target, each amount with its unit."""
    return shown.given_of_target_text(state.delivered, state.target, state.plan.dose_unit)


def given_text(state: SessionState, value: Decimal | None) -> str:
    """A dose of the session with its unit ('21.4 mg', '1,296,700 units'), by the display policy."""
    return "—" if value is None else shown.dose_text(value, state.plan.dose_unit)


def _rate(state: SessionState, value: Decimal | None) -> str:
    """A rate at the plan's pump resolution, as the worksheet prints it."""
    return "—" if value is None else report.rate_text(state.plan, value)


def _volume(value_ml: Decimal | None) -> str:
    """A volume in mL as the worksheet prints it (0.01 mL below 1 mL, else 0.1 mL)."""
    return "—" if value_ml is None else shown.volume_number(value_ml)


def _minutes(value: Decimal | None) -> str:
    """Whole minutes, as the worksheet prints them."""
    return "—" if value is None else shown.minutes_text(value).removesuffix(" min")


def _site_zone() -> tzinfo | None:
    """The site's zone (``FHIR_DESENS_TIME_ZONE``) inside the app; the server's local zone outside it."""
    return current_app.extensions[SERVICES].settings.zone if has_app_context() else None


def site_zone_name() -> str | None:
    """The site's IANA zone name for the page's live clock (the browser's own zone may differ)."""
    zone = _site_zone()
    return getattr(zone, "key", None)


def clock(value: datetime | None) -> str:
    """'09:05' in the site's zone."""
    return value.astimezone(_site_zone()).strftime("%H:%M") if value else "—"


def unit_words(code: str) -> str:
    return shown.unit_text(code)


def dose(value: Decimal, unit_code: str) -> str:
    return shown.dose_text(value, unit_code)


def volume(value_ml: Decimal) -> str:
    return shown.volume_text(value_ml)


def minutes(value: Decimal) -> str:
    return shown.minutes_text(value)


def next_dose_choices(state: SessionState) -> tuple[nd.NextDoseChoice, ...]:
    """The completion form's next-dose answers for this drug, the one to preselect first."""
    return nd.choices(nd.rule_of(state))


def _recorded_next_dose(state: SessionState) -> str | None:
    recorded = state.completion.get("next_dose") if state.completion else None
    return None if recorded is None else str(recorded)


def next_dose_words(state: SessionState) -> str:
    """The recorded next dose as a phrase ('a new desensitization (...)'), as the drug's rule reads it."""
    return nd.words(_recorded_next_dose(state), nd.rule_of(state))


def drug_words(state: SessionState) -> str:
    """The drug at the bedside: what is given ('Penicillin V potassium (given for the order of penicillin G
    benzathine)') when the protocol gives another drug than the one ordered, else the plan's drug."""
    draft: dict[str, Any] = state.context.get("draft") or {}
    rxnorm = tuple(str(code) for code in draft.get("drug_rxnorm") or ())
    return drug_given(state.plan, rxnorm) or state.plan.drug


def ordered_drug_follows(state: SessionState) -> str | None:
    """The ordered drug ('penicillin G benzathine') when this session gave another drug for its order:
    its first dose follows the observation after the last step (None: the session gave the ordered drug)."""
    draft: dict[str, Any] = state.context.get("draft") or {}
    rxnorm = tuple(str(code) for code in draft.get("drug_rxnorm") or ())
    return _ordered_drug_follows(state.plan, rxnorm)


def order_name(state: SessionState) -> str:
    """The therapeutic order in words that fit the drug ('standard-dose order' by mouth)."""
    return readback.order_name(state.plan.protocol.route)


def standard_way(state: SessionState) -> str:
    """How the next dose is given once the session has built tolerance ('at the standard rate')."""
    return (
        "as a standard dose"
        if readback.order_name(state.plan.protocol.route) == readback.ORAL_ORDER
        else ("at the standard rate")
    )


def next_dose_continues(state: SessionState) -> bool:
    """Whether the next dose is given as usual (not a new desensitization)."""
    return nd.continues(_recorded_next_dose(state), nd.rule_of(state))


def _symptom_words(keys: list[str]) -> str:
    """A symptom check's recorded keys in the nurse's words ('Itching, Hives (urticaria)')."""
    return ", ".join(rx.symptom_words(str(k)) for k in keys)


#: the posted fields as the flowsheet's labels name them (a refusal names what the nurse sees)
FIELD_WORDS = {
    "symptoms": "Symptoms",
    "grade": "Grade (Brown)",
    "phenotype": "Phenotype",
    "treatment": "Treatment given",
    "option": "How to continue",
    "allergist": "Allergist signing off",
    "outcome": "Outcome",
    "reason": "Reason",
    "observation_end": "Observation ended at",
    "next_dose": "Next dose",
    "rate_ml_h": "Rate programmed (mL/h)",
    "volume_ml": "Volume infused (mL)",
    "at": "Time",
    "at_time": "Time",
    "item": "Checklist item",
    "name": "Premedication given",
    "dose": "Dose",
    "source": "Where the chart shows it",
    "row": "Step",
    "next_dose_note": "Note on the next dose",
    "target": "Entry to correct",
    "resolved": "Symptoms resolved",
    "discharge_vitals": "Vital signs after the last step",
    "checklist": "Pre-start checklist",
    **{m.field: m.label for m in MEASURES},
}


def error_text(error: DesensError) -> str:
    """A refused entry for the nurse: the field by its label, what is wrong and what is accepted."""
    if not isinstance(error, InputError):
        return error.message
    label = FIELD_WORDS.get(error.field)  # a field without words is not named: never a record key
    text = f"{label}: {error.problem}" if label else error.problem[:1].upper() + error.problem[1:]
    accepted = error.accepted
    if accepted and error.field == "option":  # the engine's option codes, as the form's radio buttons read
        accepted = "; ".join(OPTION_WORDS.get(o, o) for o in accepted.split(", "))
    return f"{text} (accepted: {accepted})" if accepted else text


def phenotype_words(key: str) -> str:
    return rx.PHENOTYPES.get(key, key)


def person(author: str, names: Mapping[str, str]) -> str:
    """Who recorded an entry, for people: their name; else, when this app could not read it (the EHR lets
    no user read another's record without a scope for it), said in words with the reference kept small
    beside it for the support team (and so that two unnamed people stay apart)."""
    name = names.get(author)
    if name and name != author:
        return name
    if "/" not in author:
        return author or "not recorded"  # "unknown user": the EHR named nobody
    return f"name not readable from the EHR ({author})"


def author_names(authors: tuple[str, ...], names: Mapping[str, str]) -> str:
    return ", ".join(person(a, names) for a in authors) or "—"


@dataclass(frozen=True)
class RowView:
    number: int
    label: str
    bag: int
    rate: str
    planned_minutes: str
    planned_volume: str
    planned_dose: str
    started: str
    stopped: str
    actual_rate: str
    volume: str
    dose: str
    cumulative: str
    status: str
    symptoms: str
    dose_number: str = "—"  # the dose given, for a column whose header names the unit
    cumulative_number: str = "—"
    authors: tuple[str, ...] = ()  # who started and stopped it
    given_as: str = ""  # a dose by mouth: what is given ('0.5 tablet of 81 mg')


#: a step's status in the nurse's words (the FHIR MedicationAdministration codes stay in the record); a step
#: is paused and stopped only by a reaction
STATUS_WORDS = {
    "in-progress": "running",
    "on-hold": "paused by a reaction",
    "completed": "given",
    "stopped": "stopped by a reaction",
}


def _row_symptoms(state: SessionState, row: Row) -> str:
    """The steps table's symptoms of ``row``: its reactions (time, grade, symptoms), then its symptom check;
    after the decision the reaction is what the row must still show (walk session 8)."""
    words = [
        f"Reaction at {clock(r.onset)}, {r.grade}: {', '.join(s.label for s in r.symptoms)}"
        for r in state.reactions
        if r.row.number == row.number
    ]
    check = state.symptom_checks.get(row.number)
    if check:
        words.append("none" if check["symptoms"] == ["none"] else _symptom_words(check["symptoms"]))
    return "; ".join(words) or "—"


def rows(state: SessionState) -> list[RowView]:
    unit = shown.unit_text(state.plan.dose_unit)  # "units", never the UCUM "[iU]"
    result = []
    for row in state.rows:
        segments = [s for s in state.segments if s.row is row or s.row.number == row.number]
        # a running infusion has given nothing counted yet (a dose by mouth is given whole at its start)
        ended = [s for s in segments if s.ended_at is not None or s.rate_ml_h is None]
        result.append(
            RowView(
                number=row.number,
                label=row.label,
                bag=row.solution,
                rate=_rate(state, row.step.rate_ml_h),
                planned_minutes=_minutes(row.step.minutes),
                planned_volume=_volume(_planned_volume(state, row, segments)),
                planned_dose=f"{_dose(row.step.dose.value)} {unit}",
                started=", ".join(clock(s.started_at) for s in segments) or "—",
                stopped=", ".join(clock(s.ended_at) for s in segments if s.ended_at) or "—",
                actual_rate=", ".join(_rate(state, s.rate_ml_h) for s in segments) or "—",
                volume=_volume(sum((s.volume_ml for s in ended), Decimal(0))) if ended else "—",
                dose=f"{_dose(sum((s.dose for s in ended), Decimal(0)))} {unit}" if ended else "—",
                cumulative=f"{_dose(segments[-1].cumulative)} {unit}"
                if segments and segments[-1].ended_at
                else "—",
                status=STATUS_WORDS.get(segments[-1].status, segments[-1].status) if segments else "planned",
                symptoms=_row_symptoms(state, row),
                dose_number=shown.dose_number(sum((s.dose for s in ended), Decimal(0))) if ended else "—",
                cumulative_number=shown.dose_number(segments[-1].cumulative)
                if segments and segments[-1].ended_at
                else "—",
                authors=tuple(dict.fromkeys(s.author for s in segments)),
                given_as=state.given_as(row) if state.discrete else "",
            )
        )
    return result


def _planned_volume(state: SessionState, row: Row, segments: list[Segment]) -> Decimal | None:
    """The row's volume; the last row's is what remained of the target when it began (not what remains
    now, which is 0 once it is given)."""
    if row is not state.rows[-1]:
        return row.step.volume_ml
    if not segments:
        return state.to_deliver(row)
    first = segments[0]
    concentration = state.concentration(row.solution)
    if concentration is None or state.plan.protocol.target_kind is not TargetKind.CUMULATIVE:
        return row.step.volume_ml
    return div(sub(state.target, sub(first.cumulative, first.dose)), concentration)


def current(state: SessionState, now: datetime) -> dict[str, Any]:
    """The running step (or the next one) with the rate to program, its volume and the countdown."""
    running = state.running
    row: Row | None = running.row if running else state.next_row()
    if row is None:
        return {}
    left = state.volume_left(row, running) if running else state.to_deliver(row)
    info: dict[str, Any] = {
        "row": row,
        "running": running is not None,
        "discrete": state.discrete,
        "given_as": state.given_as(row) if state.discrete else "",
        "dose": dose(row.step.dose.value, row.step.dose.unit),
        "rate": _rate(state, row.step.rate_ml_h),  # as the steps table and the worksheet print it
        "rate_exact": plain(row.step.rate_ml_h)
        if row.step.rate_ml_h is not None
        else "",  # never rounded into the form
        "vtbi": _volume(left),  # what a pump takes (0.1 mL; 0.01 mL below 1 mL), as the steps table
        "planned_minutes": _minutes(row.step.minutes),
        "bag": row.solution,
        "next": state.row(row.number + 1),
    }
    if running is not None:
        elapsed = minutes_between(running.started_at, now)
        info["started"] = running.started_at
        info["elapsed"] = _fmt(elapsed, 1)
        info["ends_at"] = running.started_at.timestamp() + float(row.step.minutes) * 60
    return info


#: the engine's resume options in the nurse's words (the option codes are for logs and FHIR only)
OPTION_WORDS = {
    "resume-same-step": "Resume the same step",
    "back-one-step": "Go back one step",
    "back-two-steps": "Go back two steps",
    "insert-intermediate-step": "Add an intermediate step",
    "repeat-provoking-dose": "Repeat the dose that provoked it",
    "stop": "Stop the desensitization",
}


def option_words(option: str | None) -> str:
    return OPTION_WORDS.get(option or "", option or "pending")


def treatment_words(key: str) -> str:
    found = rx.TREATMENT_BY_KEY.get(key)
    return found.label if found else key


def resume_rows(state: SessionState) -> list[dict[str, Any]]:
    options = []
    for option, choice in state.resume_options().items():
        if isinstance(choice, ResumeChoice):
            options.append(
                {
                    "option": option,
                    "words": option_words(option),
                    "ok": True,
                    "summary": describe(choice, state.plan.dose_unit),
                    "notes": choice.notes,
                    "rows": choice.rows,
                }
            )
        else:
            options.append(
                {
                    "option": option,
                    "words": option_words(option),
                    "ok": False,
                    "summary": choice,
                    "notes": (),
                    "rows": [],
                }
            )
    return options


def vitals_rows(state: SessionState) -> list[dict[str, Any]]:
    return [
        {
            "entry_id": v.entry_id,
            "at": clock(v.at),
            "values": {
                m.field: _fmt(v.signs.values.get(m.field), 1) if m.field in v.signs.values else ""
                for m in MEASURES
            },
            "flags": v.flags,  # 'high', 'low', 'fall from baseline': the table's caption says past what
            "author": v.author,
            "row": v.row,
        }
        for v in state.vitals
    ]


def expected_ranges() -> str:
    """The vital-signs table's caption: what is flagged ('Heart rate 50 to 100 /min; ...')."""
    ranges = "; ".join(
        f"{m.label.lower()} {m.expected[0]} to {m.expected[1]} {m.unit_text}" for m in MEASURES
    )
    return f"Flagged in words when outside: {ranges}; and a fall of systolic pressure by more than 20 % from the baseline."


def vitals_confirmation(state: SessionState, entry_id: str | None) -> dict[str, Any] | None:
    """What the page says after a set of vital signs is recorded: its time and each value out of its range
    in words ('Heart rate 104 /min: high, above 100 /min'); None when ``entry_id`` is no vitals set."""
    found = next((v for v in state.vitals if entry_id and v.entry_id == entry_id), None)
    if found is None:
        return None
    out_of_range = [
        f"{m.label} {_fmt(found.signs.values[m.field], 1)} {m.unit_text}: {flag_words(m.field, found.flags[m.field])}"
        for m in MEASURES
        if m.field in found.flags
    ]
    return {"at": clock(found.at), "out_of_range": out_of_range}


def waiting_text(status: OutboxStatus) -> str:
    """The sync badge: how much is on its way to the chart, in words."""
    parts = []
    if status.unsent:
        parts.append(
            f"{status.unsent} {'entry' if status.unsent == 1 else 'entries'} waiting to reach the chart"
        )
    if status.unqueued:
        parts.append("the latest entries wait until the EHR can be reached")
    kept = len(status.not_in_ehr) - status.unsent
    if kept > 0:
        parts.append(f"{kept} not written to the EHR (listed below)")
    text = "; ".join(parts) or "Nothing waiting"
    return text[0].upper() + text[1:]


def status_view(status: OutboxStatus | None) -> dict[str, Any]:
    if status is None:
        return {"known": False}
    labels = {
        "pending": "waiting to be sent",
        "update-pending": "changed, waiting to be sent",
        "unknown": "sent, answer lost: being checked",
        "waiting-final": "sent when final (this EHR does not take updates)",
        "app-only": "kept in the app only",
        "rejected": "refused by the EHR",
        "conflict": "changed by someone else in the EHR",
    }
    return {
        "known": True,
        "unsent": status.unsent,
        "unqueued": status.unqueued,
        "waiting": status.waiting,
        "badge": waiting_text(status),
        "counts": status.counts,
        "rows": [
            {
                "type": r.resource_type,
                "state": labels.get(r.state, r.state),
                "detail": r.detail or ("this EHR does not accept it" if r.state == "app-only" else ""),
            }
            for r in status.not_in_ehr
        ],
    }


SYMPTOMS = rx.SYMPTOMS
GRADES = rx.GRADES
PHENOTYPES = rx.PHENOTYPES
TREATMENTS = rx.TREATMENTS
MEASURE_LIST = MEASURES
