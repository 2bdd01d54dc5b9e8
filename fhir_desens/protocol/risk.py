"""Which protocol to suggest, from the index reaction's risk factors, the route and the drug (pure).

The rule (Brigham and Women's Hospital desensitization program, clinical.md §1.1 [S3]; Castells
2008 [S1]): a patient is **high risk** after a life-threatening index reaction (hypotension and/or
desaturation), with cardiac disease and/or a beta-blocker, or with FEV1 < 80%; a severe (Brown
grade 3) index reaction counts as life-threatening. Standard-risk IV desensitizations use the
12-step, 3-bag protocol; high-risk ones the 16-step, 4-bag protocol (a 1/1000 bag in front), in an
intensive care unit. An unanswered criterion is *unknown*, never *no* (RISK-CHART-2): the patient is
"standard risk" only when every criterion is answered no; while the chart points to a criterion
that is not answered (``pointers``), the risk is "not established" and the cautious protocol is
suggested. Drugs given by mouth have their own oral protocols (aspirin in AERD,
penicillin V, TMP-SMX). The suggestion is only a default: the user may pick any protocol.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fhir_desens.errors import InputError
from fhir_desens.protocol.crossreactivity import DrugRef, classes_of, ingredients_of
from fhir_desens.protocol.model import Protocol

__all__ = [
    "CRITERIA",
    "HIGH_RISK_IV",
    "STANDARD_IV",
    "ProtocolSuggestion",
    "RiskAnswers",
    "high_risk_reasons",
    "route_kind",
    "suggest_protocol",
]

STANDARD_IV = "iv-12-step-3-bag"
HIGH_RISK_IV = "iv-16-step-4-bag"
BROWN_GRADES = {
    1: "mild (skin and mucosa)",
    2: "moderate",
    3: "severe (hypotension, hypoxia or neurological)",
}
_RULE = (
    "(BWH criteria: a life-threatening index reaction with hypotension or desaturation, cardiac disease or a "
    "beta-blocker, or FEV1 below 80%; Brigham and Women's Hospital drug desensitization program)"
)

#: Oral protocols written for a drug: protocol id -> the ingredient or class that selects it.
_ORAL_BY_INGREDIENT = {"aspirin-aerd-90-min": "aspirin", "tmp-smx-oral-hourly": "sulfamethoxazole"}
_ORAL_BY_CLASS = {"penicillin-v-oral-wendel": "penicillins"}
_ORAL_WORDS = {"oral", "po", "by mouth", "per os", "26643006"}
_IV_WORDS = {"intravenous", "iv", "47625008"}


CRITERIA = {
    "grade": "severity grade of the index reaction",
    "hypotension_or_hypoxia": "hypotension or hypoxia in the index reaction",
    "cardiac_or_beta_blocker": "cardiac disease or a beta-blocker",
    "fev1_below_80": "FEV1 below 80% of predicted",
}


@dataclass(frozen=True)
class RiskAnswers:
    """The BWH criteria as answered; ``None`` is unknown (not answered), never "no"."""

    grade: int | None = None  # Brown 1..3
    hypotension_or_hypoxia: bool | None = None
    cardiac_or_beta_blocker: bool | None = None
    fev1_below_80: bool | None = None

    def unknown(self) -> tuple[str, ...]:
        """The criteria (keys of :data:`CRITERIA`) not answered."""
        return tuple(key for key in CRITERIA if getattr(self, key) is None)


@dataclass(frozen=True)
class ProtocolSuggestion:
    protocol_id: str
    high_risk: bool
    reasons: tuple[str, ...]
    alternatives: tuple[str, ...]
    unknown: tuple[str, ...] = ()  # criteria not answered
    pointed: tuple[str, ...] = ()  # of those, the ones the chart points to

    @property
    def status(self) -> str:
        """ "high", "not-established" (a criterion the chart points to is unanswered) or "standard"."""
        if self.high_risk:
            return "high"
        return "not-established" if self.pointed else "standard"


def _check_grade(grade: object) -> int | None:
    if grade is None:
        return None
    if isinstance(grade, bool) or not isinstance(grade, int) or grade not in BROWN_GRADES:
        raise InputError(
            "grade", f"{grade!r} is not a Brown severity grade", "1 (mild), 2 (moderate) or 3 (severe)"
        )
    return grade


def high_risk_reasons(answers: RiskAnswers) -> tuple[str, ...]:
    """One sentence per high-risk finding (empty when the patient is standard risk)."""
    grade = _check_grade(answers.grade)
    found: list[str] = []
    if grade == 3:
        found.append("The index reaction was severe (Brown grade 3), which counts as life-threatening.")
    if answers.hypotension_or_hypoxia is True:
        found.append("The index reaction included hypotension or hypoxia (life-threatening).")
    if answers.cardiac_or_beta_blocker is True:
        found.append(
            "The patient has cardiac disease or takes a beta-blocker (which can blunt the response to epinephrine)."
        )
    if answers.fev1_below_80 is True:
        found.append("FEV1 is below 80% of predicted.")
    return tuple(found)


def route_kind(route: str | None) -> str | None:
    """'oral', 'intravenous', or None for any other or unknown route (IM, SC, not recorded)."""
    text = (route or "").strip().lower()
    if text in _ORAL_WORDS:
        return "oral"
    if text in _IV_WORDS:
        return "intravenous"
    return None


def _oral_protocols(drug: DrugRef, protocols: Mapping[str, Protocol]) -> list[str]:
    """Oral/discrete protocols in the library written for this drug, in library order."""
    ingredients = ingredients_of(drug)
    class_ids = {c.id for c in classes_of(drug)}
    fitting: list[str] = []
    for protocol_id, protocol in protocols.items():
        if protocol.route.lower() == "iv":
            continue
        wanted_ingredient = _ORAL_BY_INGREDIENT.get(protocol_id)
        wanted_class = _ORAL_BY_CLASS.get(protocol_id)
        if (
            (wanted_ingredient is not None and wanted_ingredient in ingredients)
            or (wanted_class is not None and wanted_class in class_ids)
            or _written_for(protocol, drug, ingredients)
        ):
            fitting.append(protocol_id)
    return fitting


def _written_for(protocol: Protocol, drug: DrugRef, ingredients: frozenset[str]) -> bool:
    """The protocol's own drug list names the drug (imported protocols carry such lists too)."""
    names = {name.lower() for name in protocol.drugs}
    if not names:
        return False
    for name in names:
        needed = ingredients_of(DrugRef(name))
        if needed and needed <= ingredients:
            return True
    return drug.name.strip().lower() in names


def _oral_reason(drug: DrugRef, kind: str | None, chosen: str, protocol: Protocol) -> str:
    given = "is given by mouth" if kind == "oral" else "is not ordered intravenously"
    if chosen in _ORAL_BY_CLASS and not _written_for(protocol, drug, ingredients_of(drug)):
        return (
            f"{drug.name} {given}; {protocol.title} is the library's oral protocol for the "
            f"{_ORAL_BY_CLASS[chosen]}. It desensitizes with its own drug: confirm with the allergist that it "
            f"suits {drug.name}, which must then follow without a break in dosing."
        )
    return f"{drug.name} {given} and {protocol.title} is written for it."


def _iv_choice(
    high_risk: bool,
    protocols: Mapping[str, Protocol],
    unknown: tuple[str, ...] = (),
    pointed: tuple[str, ...] = (),
) -> tuple[str, list[str]]:
    reasons: list[str] = []
    if not high_risk and pointed and HIGH_RISK_IV in protocols:
        names = "; ".join(CRITERIA[key] for key in pointed)
        reasons.append(
            f"Risk not established: the chart points to {names}, which is not answered. The high-risk 16-step, "
            f"4-bag protocol is suggested until it is answered {_RULE}."
        )
        return HIGH_RISK_IV, reasons
    if high_risk and HIGH_RISK_IV in protocols:
        reasons.append(
            f"High risk {_RULE}: the 16-step, 4-bag protocol adds a 1/1000 bag in front of the standard 12 "
            "steps; first desensitizations of high-risk patients are done in an intensive care unit."
        )
        return HIGH_RISK_IV, reasons
    if high_risk:
        reasons.append(
            f"High risk, but the high-risk protocol {HIGH_RISK_IV} is not in this library: "
            "choose the most gradual protocol available and plan intensive care monitoring."
        )
    elif unknown:
        names = "; ".join(CRITERIA[key] for key in unknown)
        reasons.append(
            f"No high-risk criterion is recorded, but not all are answered ({names}: unknown, not 'no') {_RULE}."
        )
    else:
        reasons.append(f"Standard risk: no high-risk criterion is present {_RULE}.")
    if STANDARD_IV in protocols:
        reasons.append("The standard 12-step, 3-bag protocol (BWH/Castells) applies.")
        return STANDARD_IV, reasons
    fallback = next((pid for pid, p in protocols.items() if p.route.lower() == "iv"), None)
    if fallback is None:
        raise InputError("protocol", "the protocol library has no intravenous protocol", "a library with one")
    reasons.append(
        f"The standard protocol {STANDARD_IV} is not in this library; {fallback} is offered instead."
    )
    return fallback, reasons


def suggest_protocol(
    answers: RiskAnswers,
    drug: DrugRef,
    route: str | None,
    protocols: Mapping[str, Protocol],
    pointers: Sequence[str] = (),
) -> ProtocolSuggestion:
    """Suggest a protocol present in ``protocols`` with the reasons a clinician reads, and the alternatives.

    ``route`` is 'oral', 'intravenous' (also 'IV', 'PO' or the SNOMED CT route code) or None. An
    invalid ``answers.grade`` raises ``InputError("grade", ...)``. Oral protocols are suggested when
    the route is oral, or not intravenous and an oral protocol is written for the drug (e.g. oral
    penicillin V desensitization before intramuscular penicillin G benzathine). ``pointers`` are the
    criteria (keys of :data:`CRITERIA`) the chart points to; those still unanswered make the risk
    "not established" and suggest the high-risk protocol, never the standard one.
    """
    if not protocols:
        raise InputError("protocol", "the protocol library is empty", "at least one protocol")
    findings = high_risk_reasons(answers)
    high_risk = bool(findings)
    unknown = answers.unknown()
    pointed = tuple(key for key in unknown if key in pointers)
    kind = route_kind(route)
    oral = _oral_protocols(drug, protocols)
    reasons = list(findings)
    if oral and kind != "intravenous":
        chosen = oral[0]
        reasons.append(_oral_reason(drug, kind, chosen, protocols[chosen]))
        if high_risk:
            reasons.append(f"High risk {_RULE}: desensitize in an intensive care setting.")
    else:
        chosen, iv_reasons = _iv_choice(high_risk, protocols, unknown, pointed)
        reasons.extend(iv_reasons)
        if kind == "oral":
            reasons.append(f"No oral protocol in this library is written for {drug.name}.")
    if answers.grade is None:
        reasons.append(
            "The severity grade of the index reaction was not given; answer it to confirm the risk."
        )
    if oral and kind != "intravenous" and pointed and not high_risk:
        names = "; ".join(CRITERIA[key] for key in pointed)
        reasons.append(f"Risk not established: the chart points to {names}, which is not answered.")
    return ProtocolSuggestion(
        chosen, high_risk, tuple(reasons), _alternatives(chosen, oral, protocols), unknown, pointed
    )


def _alternatives(chosen: str, oral: list[str], protocols: Mapping[str, Protocol]) -> tuple[str, ...]:
    """Other sensible choices: the other standard IV protocol, the drug's oral protocols, then other IV ones."""
    ordered = [STANDARD_IV, HIGH_RISK_IV, *oral]
    ordered += [pid for pid, p in protocols.items() if p.route.lower() == "iv" and not p.drugs]
    return tuple(pid for pid in dict.fromkeys(ordered) if pid in protocols and pid != chosen)
