"""The BWH high-risk criteria as the chart records them, each with its source (no network, no Flask).

RISK-CHART-1: the index reaction's grade and the high-risk criteria are pre-filled from what the
chart records, each answer naming where it came from:

* **grade** (Brown): the reaction's ``severity`` (mild 1, moderate 2, severe 3) and its
  manifestations: skin and mucosa only 1; respiratory, gastrointestinal or presyncope 2;
  hypotension, hypoxia, collapse or confusion 3 (the higher wins);
* **hypotension or hypoxia**: SNOMED CT 45007003 (low blood pressure) or 389086002 (hypoxia), the
  words, a recorded blood pressure with systolic < 90 mmHg or an SpO2 <= 92% (Brown's cut-offs as
  quoted second-hand, clinical.md §1.8: UNVERIFIED in the primary paper) in the reaction or the
  allergy's notes; "anaphylaxis" alone only *points* to it;
* **cardiac disease or a beta-blocker**: an active Condition coded ICD-10-CM I20-I25, I42, I44-I50
  or worded so (coronary, heart failure, cardiomyopathy, atrial fibrillation ...), or an active or
  on-hold MedicationRequest for a beta-blocker (RxNorm 6918 metoprolol, verified, or the name);
* **FEV1 below 80%**: the latest final LOINC 20152-5 (FEV1 measured/predicted) Observation answers
  yes or no; asthma or COPD on the problem list without one only points to it.

RISK-CHART-2: nothing recorded is *unknown*, never *no*: only a measured FEV1 answers "no".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from fhir_desens.fhir.allergy import RXNORM, SNOMED, Allergy, Concept
from fhir_desens.fhir.raw import objects, text_or_none
from fhir_desens.protocol.display import chart_date_text
from fhir_desens.protocol.risk import CRITERIA, RiskAnswers

__all__ = ["ChartAnswer", "ChartRisk", "risk_from_chart", "said_once"]

ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
FEV1_PERCENT = "20152-5"
HYPOTENSION_CODES = frozenset({"45007003"})
HYPOXIA_CODES = frozenset({"389086002"})
ANAPHYLAXIS_CODES = frozenset({"39579001"})
#: Brown 2004 "moderate" features (clinical.md §1.8).
MODERATE_CODES = frozenset({"4386001", "56018004", "267036007", "23924001"})
SKIN_CODES = frozenset({"126485001", "41291007", "238810007", "418363000", "247471006", "9826008"})
BETA_BLOCKER_RXNORM = frozenset({"6918"})  # metoprolol (fixtures/README.md, verified)
_SEVERITY_GRADE = {"mild": 1, "moderate": 2, "severe": 3}
_HYPOTENSION = re.compile(
    r"hypotens|low blood pressure|\bshock\b|collapse|syncope|unconscious", re.IGNORECASE
)
_HYPOXIA = re.compile(r"hypox|desaturat|cyanos", re.IGNORECASE)
_MODERATE = re.compile(
    r"wheez|bronchospasm|dyspn|stridor|throat tight|chest tight|tight chest|vomit|presyncope|abdominal pain",
    re.IGNORECASE,
)
_ANAPHYLAXIS = re.compile(r"anaphyla", re.IGNORECASE)
_BLOOD_PRESSURE = re.compile(r"\b(?:BP|blood pressure)\D{0,12}?(\d{2,3})\s*/\s*(\d{2,3})", re.IGNORECASE)
_SPO2 = re.compile(r"\b(?:SpO2|SaO2|O2 sat\w*|oxygen saturation|sat\w*)\D{0,12}?(\d{2,3})\s*%", re.IGNORECASE)
_CARDIAC = re.compile(
    r"coronary|heart failure|cardiomyopath|myocardial infarction|angina|atrial fibrillation|arrhythm|"
    r"ischa?emic heart|heart disease|\bCAD\b|\bCHF\b",
    re.IGNORECASE,
)
_CARDIAC_ICD = re.compile(r"^I(2[0-5]|42|4[4-9]|50)(\.|$)")
_BETA_BLOCKER = re.compile(
    r"\b(metoprolol|atenolol|propranolol|carvedilol|bisoprolol|labetalol|nadolol|nebivolol|esmolol|sotalol|"
    r"timolol|acebutolol|pindolol|betaxolol)\b",
    re.IGNORECASE,
)
_LUNG = re.compile(r"asthma|\bCOPD\b|chronic obstructive", re.IGNORECASE)
_LUNG_ICD = re.compile(r"^J4[4-5](\.|$)")
_SYSTOLIC_LOW = 90
_SPO2_LOW = 92
_INACTIVE = frozenset({"inactive", "resolved", "remission"})
_NOT_TRUE = frozenset({"refuted", "entered-in-error"})


@dataclass(frozen=True)
class ChartAnswer:
    """One criterion as the chart answers it."""

    criterion: str  # a key of protocol.risk.CRITERIA
    value: int | bool | None  # None: the chart does not answer it (unknown)
    sources: tuple[str, ...] = ()  # where the answer came from, for the page
    pointer: str | None = None  # the chart hints at it without answering it

    @property
    def label(self) -> str:
        return CRITERIA[self.criterion]

    @property
    def evidence(self) -> tuple[str, ...]:
        """The sources for people, each place named once (:func:`said_once`)."""
        return said_once(self.sources)


def said_once(sources: Sequence[str]) -> tuple[str, ...]:
    """Facts read in one place under one heading, in the order found: "allergy to Paclitaxel, reaction:
    severity 'severe'", "allergy to Paclitaxel, reaction: SpO2 84% ..." read as "Allergy to Paclitaxel,
    reaction: severity 'severe'; SpO2 84% ..." (the start form repeated the place before each fact)."""
    facts: dict[str, list[str]] = {}
    for source in sources:
        where, colon, fact = source.partition(": ")
        key, fact = (where, fact) if colon else (source, "")
        facts.setdefault(key, [])
        if fact and fact not in facts[key]:
            facts[key].append(fact)
    return tuple(
        (where[:1].upper() + where[1:]) + (": " + "; ".join(found) if found else "")
        for where, found in facts.items()
    )


@dataclass(frozen=True)
class ChartRisk:
    grade: ChartAnswer
    hypotension_or_hypoxia: ChartAnswer
    cardiac_or_beta_blocker: ChartAnswer
    fev1_below_80: ChartAnswer

    @property
    def answers(self) -> tuple[ChartAnswer, ...]:
        return (self.grade, self.hypotension_or_hypoxia, self.cardiac_or_beta_blocker, self.fev1_below_80)

    def risk_answers(self) -> RiskAnswers:
        grade = self.grade.value
        return RiskAnswers(
            grade=grade if isinstance(grade, int) and not isinstance(grade, bool) else None,
            hypotension_or_hypoxia=_bool(self.hypotension_or_hypoxia.value),
            cardiac_or_beta_blocker=_bool(self.cardiac_or_beta_blocker.value),
            fev1_below_80=_bool(self.fev1_below_80.value),
        )

    @property
    def pointers(self) -> tuple[str, ...]:
        """Criteria the chart points to as high risk (answered or not): pass to ``suggest_protocol``.

        A grade counts only when it is severe (3) or in doubt; the other criteria when the chart has
        evidence for them or hints at them.
        """
        found = []
        for answer in self.answers:
            if answer.criterion == "grade":
                if answer.value == 3 or answer.pointer:
                    found.append(answer.criterion)
            elif answer.sources or answer.pointer:
                found.append(answer.criterion)
        return tuple(found)


def _bool(value: int | bool | None) -> bool | None:
    return value if isinstance(value, bool) else None


# --- the index reaction ---------------------------------------------------------------------------


_NEGATION = re.compile(
    r"\b(no|without|denie[sd]|not|negative for|absent|free of)\b[^.;,]{0,30}$", re.IGNORECASE
)


def _affirmed(pattern: re.Pattern[str], text: str) -> bool:
    """The pattern occurs without a negation just before it ("wheeze without hypotension" is not hypotension)."""
    return any(not _NEGATION.search(text[: match.start()]) for match in pattern.finditer(text))


def _snomed(concept: Concept, codes: frozenset[str]) -> bool:
    return any(c.system == SNOMED and c.code in codes for c in concept.codings)


def _texts(concept: Concept) -> list[str]:
    return [t for t in (concept.text, *(c.display for c in concept.codings)) if t]


def _vital_sign_evidence(text: str) -> list[str]:
    found: list[str] = []
    for match in _BLOOD_PRESSURE.finditer(text):
        if int(match.group(1)) < _SYSTOLIC_LOW:
            found.append(f"blood pressure {match.group(1)}/{match.group(2)} (systolic below {_SYSTOLIC_LOW})")
    for match in _SPO2.finditer(text):
        if int(match.group(1)) <= _SPO2_LOW:
            found.append(f"SpO2 {match.group(1)}% (at or below {_SPO2_LOW}%)")
    return found


@dataclass
class _Reading:
    grade: int | None = None
    grade_sources: list[str] | None = None
    severe_sources: list[str] | None = None
    anaphylaxis: str | None = None
    doubtful: str | None = None  # a coded hypotension whose recorded pressure is not low
    facts: set[str] = field(default_factory=set)  # what was read already (a reading, a severity), once

    def first_time(self, fact: str) -> bool:
        """Whether ``fact`` ('blood pressure 68/40 (...)') is new: the same reading in a manifestation, its
        description and a note is one fact, shown once."""
        key = fact.casefold()
        if key in self.facts:
            return False
        self.facts.add(key)
        return True

    def raise_grade(self, grade: int, source: str) -> None:
        if self.grade is None or grade > self.grade:
            self.grade = grade
            self.grade_sources = [source]
        elif grade == self.grade and self.grade_sources is not None and source not in self.grade_sources:
            self.grade_sources.append(source)

    def severe(self, source: str, fact: str | None = None) -> None:
        if fact is not None and not self.first_time(fact):
            return
        self.severe_sources = [*(self.severe_sources or []), source]
        self.raise_grade(3, source)


def _measured_not_low(text: str) -> str | None:
    """A recorded blood pressure whose systolic is not below 90 ("94/58"): hypotension is then in doubt."""
    readings = list(_BLOOD_PRESSURE.finditer(text))
    if readings and all(int(m.group(1)) >= _SYSTOLIC_LOW for m in readings):
        return f"{readings[0].group(1)}/{readings[0].group(2)}"
    return None


def _read_manifestation(reading: _Reading, concept: Concept, where: str) -> None:
    label = concept.display
    text = " ".join(_texts(concept))
    coded_low_bp = _snomed(concept, HYPOTENSION_CODES) and not _snomed(concept, HYPOXIA_CODES)
    doubtful = _measured_not_low(text) if coded_low_bp else None
    if doubtful is not None:
        reading.doubtful = (
            f"{where}: '{concept.text or label}' is coded as low blood pressure, but the recorded systolic "
            f"({doubtful}) is not below {_SYSTOLIC_LOW}: answer whether the reaction included hypotension."
        )
    elif evidence := _vital_sign_evidence(text):  # the reading says more than the label ("68/40")
        for found in evidence:
            reading.severe(f"{where}: {found}", found)
    elif (
        _snomed(concept, HYPOTENSION_CODES | HYPOXIA_CODES)
        or _affirmed(_HYPOTENSION, text)
        or _affirmed(_HYPOXIA, text)
    ):
        reading.severe(f"{where}: {label}", label)
    if _snomed(concept, ANAPHYLAXIS_CODES) or _affirmed(_ANAPHYLAXIS, text):
        reading.anaphylaxis = f"{where}: {label}"
        reading.raise_grade(2, f"{where}: {label}")
    elif _snomed(concept, MODERATE_CODES) or _affirmed(_MODERATE, text):
        reading.raise_grade(2, f"{where}: {label}")
    elif _snomed(concept, SKIN_CODES):
        reading.raise_grade(1, f"{where}: {label}")


def _read_text(reading: _Reading, text: str, where: str) -> None:
    """A description or note: its readings when new; its words only when nothing else showed it yet."""
    for evidence in _vital_sign_evidence(text):
        reading.severe(f"{where}: {evidence}", evidence)
    if (_affirmed(_HYPOTENSION, text) or _affirmed(_HYPOXIA, text)) and not reading.severe_sources:
        reading.severe(f"{where}: '{_excerpt(text)}'")
    if _affirmed(_ANAPHYLAXIS, text):
        reading.anaphylaxis = reading.anaphylaxis or f"{where}: '{_excerpt(text)}'"


def _excerpt(text: str, limit: int = 90) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _read_allergy(reading: _Reading, allergy: Allergy) -> None:
    name = allergy.substance_display
    for reaction in allergy.reactions:
        where = f"allergy to {name}, reaction"
        if reaction.severity in _SEVERITY_GRADE:
            grade = _SEVERITY_GRADE[reaction.severity]
            reading.raise_grade(grade, f"{where}: severity '{reaction.severity}'")
        for manifestation in reaction.manifestations:
            _read_manifestation(reading, manifestation, where)
        for text in (reaction.description, *reaction.notes):
            if text:
                _read_text(reading, text, f"{where} description")
    for note in allergy.notes:
        _read_text(reading, note, f"allergy to {name}, note")


def _index_reaction(allergies: Sequence[Allergy]) -> tuple[ChartAnswer, ChartAnswer]:
    reading = _Reading()
    for allergy in allergies:
        _read_allergy(reading, allergy)
    if not allergies or reading.grade is None:
        pointer = None if not allergies else "The reaction is recorded without severity or manifestations."
        grade = ChartAnswer("grade", None, (), pointer)
    else:
        grade = ChartAnswer("grade", reading.grade, tuple(reading.grade_sources or ()))
    if reading.severe_sources:
        severe = ChartAnswer("hypotension_or_hypoxia", True, tuple(dict.fromkeys(reading.severe_sources)))
    elif reading.doubtful:
        severe = ChartAnswer("hypotension_or_hypoxia", None, (), reading.doubtful)
    elif reading.anaphylaxis:
        severe = ChartAnswer(
            "hypotension_or_hypoxia",
            None,
            (),
            f"Anaphylaxis is recorded ({reading.anaphylaxis}), but not whether it included hypotension or hypoxia.",
        )
    else:
        severe = ChartAnswer("hypotension_or_hypoxia", None)
    return grade, severe


# --- conditions, orders, observations -------------------------------------------------------------


def _concept(value: Any) -> tuple[str, list[tuple[str | None, str | None, str | None]]]:
    concept = value if isinstance(value, Mapping) else {}
    codings = [
        (text_or_none(c.get("system")), text_or_none(c.get("code")), text_or_none(c.get("display")))
        for c in objects(concept.get("coding"))
    ]
    text = text_or_none(concept.get("text")) or next((d for _, _, d in codings if d), None) or ""
    return text, codings


def _status(resource: Mapping[str, Any], element: str) -> str | None:
    text, codings = _concept(resource.get(element))
    return next((code for _, code, _ in codings if code), None) or (text.lower() or None)


def _current_condition(condition: Mapping[str, Any]) -> bool:
    return (
        _status(condition, "clinicalStatus") not in _INACTIVE
        and _status(condition, "verificationStatus") not in _NOT_TRUE
    )


def _condition_matches(
    condition: Mapping[str, Any], icd: re.Pattern[str], words: re.Pattern[str]
) -> str | None:
    text, codings = _concept(condition.get("code"))
    for system, code, _ in codings:
        if system == ICD10 and code and icd.match(code):
            return f"Condition: {text} (ICD-10-CM {code})"
    if _affirmed(words, text):
        return f"Condition: {text}"
    return None


def _cardiac(conditions: Sequence[Mapping[str, Any]], requests: Iterable[Mapping[str, Any]]) -> ChartAnswer:
    sources = [
        s
        for c in conditions
        if _current_condition(c) and (s := _condition_matches(c, _CARDIAC_ICD, _CARDIAC))
    ]
    for request in requests:
        if text_or_none(request.get("status")) not in ("active", "on-hold"):
            continue
        text, codings = _concept(request.get("medicationCodeableConcept"))
        coded = any(system == RXNORM and code in BETA_BLOCKER_RXNORM for system, code, _ in codings)
        if coded or _affirmed(_BETA_BLOCKER, text):
            sources.append(f"Active order: {text} (beta-blocker)")
    if sources:
        return ChartAnswer("cardiac_or_beta_blocker", True, tuple(dict.fromkeys(sources)))
    return ChartAnswer("cardiac_or_beta_blocker", None)


def _percent(observation: Mapping[str, Any]) -> Decimal | None:
    quantity = observation.get("valueQuantity")
    if not isinstance(quantity, Mapping) or quantity.get("code", quantity.get("unit")) not in ("%", None):
        return None
    try:
        value = Decimal(str(quantity.get("value")))
    except InvalidOperation:
        return None
    return value if value.is_finite() and value > 0 else None


def _when(observation: Mapping[str, Any]) -> str:
    period = observation.get("effectivePeriod")
    end = period.get("end") if isinstance(period, Mapping) else None
    for value in (
        observation.get("effectiveDateTime"),
        end,
        observation.get("effectiveInstant"),
        observation.get("issued"),
    ):
        if text := text_or_none(value):
            return text
    return ""


def _fev1(observations: Iterable[Mapping[str, Any]], conditions: Sequence[Mapping[str, Any]]) -> ChartAnswer:
    usable = []
    for observation in observations:
        _, codings = _concept(observation.get("code"))
        if text_or_none(observation.get("status")) not in ("final", "amended", "corrected"):
            continue
        if not any(system == LOINC and code == FEV1_PERCENT for system, code, _ in codings):
            continue
        value = _percent(observation)
        if value is not None:
            usable.append((_when(observation), value))
    if usable:
        when, value = max(usable, key=lambda item: item[0])
        measured = f", {chart_date_text(when[:10])}" if when else ""  # the day, as every page writes dates
        source = f"Observation: FEV1 {value}% of predicted (LOINC {FEV1_PERCENT}){measured}"
        return ChartAnswer("fev1_below_80", value < 80, (source,))
    lung = next(
        (s for c in conditions if _current_condition(c) and (s := _condition_matches(c, _LUNG_ICD, _LUNG))),
        None,
    )
    pointer = f"{lung}, but no FEV1 result is recorded." if lung else None
    return ChartAnswer("fev1_below_80", None, (), pointer)


def risk_from_chart(
    index_allergies: Sequence[Allergy],
    conditions: Iterable[Mapping[str, Any]] = (),
    medication_requests: Iterable[Mapping[str, Any]] = (),
    observations: Iterable[Mapping[str, Any]] = (),
) -> ChartRisk:
    """Pre-fill the criteria from the chart. ``index_allergies`` are the allergy records matched to the drug."""
    condition_list = [c for c in conditions if isinstance(c, Mapping)]
    grade, severe = _index_reaction(index_allergies)
    return ChartRisk(
        grade=grade,
        hypotension_or_hypoxia=severe,
        cardiac_or_beta_blocker=_cardiac(
            condition_list, (r for r in medication_requests if isinstance(r, Mapping))
        ),
        fev1_below_80=_fev1((o for o in observations if isinstance(o, Mapping)), condition_list),
    )
