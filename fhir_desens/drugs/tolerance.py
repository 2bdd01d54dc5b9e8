"""The tolerance window after a rapid drug desensitization (pure: no I/O beyond the packaged data).

Desensitization gives a *temporary* tolerance, lost when dosing stops. Per drug, ``data/tolerance.json``
says how (each rule with its sources):

* ``continuous``: tolerance holds while the next dose follows the last one within ``max_gap``
  (TMP-SMX 24 h, beta-lactams 48 h);
* ``every-administration``: platinum compounds, taxanes and monoclonal antibodies are desensitized at
  every administration, so tolerance is never assumed for the next one.

:func:`assess` answers "can tolerance be assumed now?" from dose evidence of three kinds, in order of
trust (:class:`DoseSource`): the app's own record (its desensitization sessions and the doses recorded
in it afterwards), then the EHR's MedicationAdministrations,
then the MedicationRequest schedule. The first two are proof that a dose was given; the schedule is a
plan, not proof, so a window computed from it alone is never green (at best amber: "confirm the dose
was given"). The answer is green within the window, amber in its last quarter, red after it
("re-desensitization required", with the protocol to use), or unknown when there is no rule for the
drug or no dose on record: then nothing is assumed.

Times must be timezone-aware; a naive time is refused (a nurse's 08:00 is not UTC's 08:00).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from enum import Enum
from fractions import Fraction
from functools import lru_cache
from importlib import resources
from typing import Any

from fhir_desens.errors import InputError
from fhir_desens.protocol.crossreactivity import DrugRef, classes_of, ingredients_of
from fhir_desens.protocol.display import moment_text

__all__ = [
    "DoseEvidence",
    "DoseSource",
    "MaintenanceRule",
    "ToleranceAssessment",
    "ToleranceStatus",
    "assess",
    "maintenance_rules",
    "rule_for",
]

EVERY_ADMINISTRATION = "every-administration"
CONTINUOUS = "continuous"


class DoseSource(Enum):
    """Where a dose came from, most trusted first (the enum order is the order of trust).

    The app's own record holds the last step of each completed session and the doses recorded in the app
    after a desensitization (:mod:`fhir_desens.course.outcome.later_doses`).
    """

    APP_RECORD = "the app's own record"
    EHR_ADMINISTRATION = "the EHR's medication administrations"
    ORDER_SCHEDULE = "the order schedule (a plan, not proof that the dose was given)"

    @property
    def rank(self) -> int:
        return list(DoseSource).index(self)

    @property
    def is_proof(self) -> bool:
        return self is not DoseSource.ORDER_SCHEDULE


class ToleranceStatus(Enum):
    GREEN = "green"
    AMBER = "amber"
    RED = "red"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class MaintenanceRule:
    """How tolerance to one drug (group) is kept; ``max_gap`` is None for every-administration rules."""

    id: str
    name: str
    kind: str  # CONTINUOUS | EVERY_ADMINISTRATION
    max_gap: timedelta | None
    ingredients: frozenset[str]
    classes: frozenset[str]
    name_suffixes: tuple[str, ...]
    protocol: str
    statement: str
    sources: tuple[str, ...]

    @property
    def every_administration(self) -> bool:
        return self.kind == EVERY_ADMINISTRATION

    @property
    def window_text(self) -> str:
        """'24 h' or 'every administration', for notes and pages."""
        if self.max_gap is None:
            return "every administration"
        return f"{int(self.max_gap.total_seconds() // 3600)} h"


@dataclass(frozen=True)
class DoseEvidence:
    """One dose of the drug, as one source tells it.

    ``reference`` says where exactly (``MedicationAdministration/17``, a session id); ``protocol`` is
    the desensitization protocol id when the dose was the last step of a session.
    """

    at: datetime
    source: DoseSource
    reference: str = ""
    protocol: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        _require_aware(self.at, "dose time")


@dataclass(frozen=True)
class ToleranceAssessment:
    drug: str
    status: ToleranceStatus
    rule: MaintenanceRule | None
    last_dose: DoseEvidence | None
    amber_from: datetime | None
    red_from: datetime | None
    protocol: str | None  # the protocol to use for the next desensitization
    reasons: tuple[str, ...]  # plain sentences, the first one is the headline
    next_planned: DoseEvidence | None = None

    @property
    def headline(self) -> str:
        return self.reasons[0]

    @property
    def source(self) -> DoseSource | None:
        """Which source the answer rests on (shown next to it)."""
        return self.last_dose.source if self.last_dose else None

    @property
    def re_desensitization_required(self) -> bool:
        return self.status is ToleranceStatus.RED


def _require_aware(when: datetime, what: str) -> None:
    if not isinstance(when, datetime):
        raise InputError(what, f"{when!r} is not a date and time")
    if when.tzinfo is None or when.utcoffset() is None:
        raise InputError(what, f"{when.isoformat()} has no time zone", "a time with a UTC offset")


# ----------------------------------------------------------------------------------------------
# the data


def _rule(raw: dict[str, Any]) -> MaintenanceRule:
    kind = raw["kind"]
    if kind not in (CONTINUOUS, EVERY_ADMINISTRATION):
        raise ValueError(f"tolerance rule {raw['id']}: unknown kind {kind!r}")
    hours = raw.get("max_gap_hours")
    if (kind == CONTINUOUS) != isinstance(hours, int) or (isinstance(hours, int) and hours <= 0):
        raise ValueError(
            f"tolerance rule {raw['id']}: a continuous rule needs max_gap_hours > 0, others none"
        )
    if not raw.get("sources"):
        raise ValueError(f"tolerance rule {raw['id']}: every rule needs its sources")
    return MaintenanceRule(
        id=raw["id"],
        name=raw["name"],
        kind=kind,
        max_gap=timedelta(hours=hours) if isinstance(hours, int) else None,
        ingredients=frozenset(raw.get("ingredients", ())),
        classes=frozenset(raw.get("classes", ())),
        name_suffixes=tuple(raw.get("name_suffixes", ())),
        protocol=raw["protocol"],
        statement=raw["statement"],
        sources=tuple(raw["sources"]),
    )


@lru_cache(maxsize=1)
def _data() -> tuple[tuple[MaintenanceRule, ...], Fraction]:
    text = resources.files(__package__).joinpath("data/tolerance.json").read_text("utf-8")
    raw = json.loads(text)
    amber = Fraction(raw["amber_fraction"])
    if not 0 < amber < 1:
        raise ValueError("tolerance.json: amber_fraction must lie between 0 and 1")
    return tuple(_rule(item) for item in raw["rules"]), amber


def maintenance_rules() -> tuple[MaintenanceRule, ...]:
    """Every rule, in the data file's order."""
    return _data()[0]


def _words(text: str) -> list[str]:
    return "".join(c if c.isalnum() else " " for c in text.lower()).split()


def _applies(
    rule: MaintenanceRule, drug: DrugRef, ingredients: frozenset[str], classes: frozenset[str]
) -> bool:
    if rule.ingredients & ingredients or rule.classes & classes:
        return True
    names = [*ingredients, drug.name]
    return any(
        len(word) > len(suffix) + 3 and word.endswith(suffix)
        for name in names
        for word in _words(name)
        for suffix in rule.name_suffixes
    )


def _strictness(rule: MaintenanceRule) -> tuple[int, timedelta]:
    """Every administration is stricter than any gap; a shorter gap is stricter than a longer one."""
    return (0, timedelta(0)) if rule.max_gap is None else (1, rule.max_gap)


def rule_for(drug: DrugRef) -> MaintenanceRule | None:
    """The maintenance rule for a drug (the strictest when several apply), or None when none is on file."""
    ingredients = ingredients_of(drug)
    classes = frozenset(c.id for c in classes_of(drug))
    matching = [rule for rule in maintenance_rules() if _applies(rule, drug, ingredients, classes)]
    return min(matching, key=_strictness) if matching else None


# ----------------------------------------------------------------------------------------------
# the assessment


def _latest(doses: Iterable[DoseEvidence]) -> DoseEvidence | None:
    """The latest dose; at the same time the most trusted source wins."""
    return max(doses, key=lambda dose: (dose.at, -dose.source.rank), default=None)


def _window(rule: MaintenanceRule, last: datetime) -> tuple[datetime, datetime]:
    assert rule.max_gap is not None
    amber_fraction = _data()[1]
    gap_seconds = int(rule.max_gap.total_seconds())
    amber_seconds = gap_seconds * amber_fraction.numerator // amber_fraction.denominator
    red_from = last + rule.max_gap
    return red_from - timedelta(seconds=amber_seconds), red_from


def _source_sentence(dose: DoseEvidence, tz: tzinfo | None) -> str:
    where = f" ({dose.reference})" if dose.reference else ""
    return f"Last dose {moment_text(dose.at, tz)}, from {dose.source.value}{where}."


def _unknown(
    drug: DrugRef, rule: MaintenanceRule | None, protocol: str | None, reason: str
) -> ToleranceAssessment:
    return ToleranceAssessment(
        drug.name, ToleranceStatus.UNKNOWN, rule, None, None, None, protocol, (reason,)
    )


def assess(
    drug: DrugRef,
    doses: Sequence[DoseEvidence],
    now: datetime,
    *,
    last_protocol: str | None = None,
    tz: tzinfo | None = None,
) -> ToleranceAssessment:
    """Can tolerance to ``drug`` be assumed at ``now``, given the doses on record for it?

    ``doses`` are this drug's doses from any of the three sources, in any order; doses after ``now``
    only count as the next planned dose. ``last_protocol`` (the protocol of the last session) is
    suggested for the next desensitization, else the rule's default. ``tz`` formats the times in the
    sentences (the app's time zone).
    """
    _require_aware(now, "now")
    rule = rule_for(drug)
    protocol = last_protocol or (rule.protocol if rule else None)
    if rule is None:
        return _unknown(
            drug,
            None,
            protocol,
            f"No maintenance rule is on file for {drug.name}: tolerance cannot be assumed; ask the allergist.",
        )
    past = [dose for dose in doses if dose.at <= now]
    proven = _latest(dose for dose in past if dose.source.is_proof)
    last = proven or _latest(past)
    next_planned = min(
        (d for d in doses if d.at > (last.at if last else now) and d.source is DoseSource.ORDER_SCHEDULE),
        key=lambda dose: dose.at,
        default=None,
    )
    if last is None:
        return _unknown(
            drug,
            rule,
            protocol,
            f"No dose of {drug.name} was found in the session record, the EHR's administrations or the "
            "order schedule: tolerance cannot be assumed; re-desensitization required unless a dose can be "
            "confirmed.",
        )
    if rule.every_administration:
        every_time = (
            f"Re-desensitization required: {rule.name} are desensitized at every administration.",
            _source_sentence(last, tz),
            f"Protocol to use: {protocol}.",
        )
        return ToleranceAssessment(
            drug.name, ToleranceStatus.RED, rule, last, None, None, protocol, every_time, next_planned
        )
    amber_from, red_from = _window(rule, last.at)
    status, headline = _continuous_status(rule, now, amber_from, red_from, tz)
    reasons = [headline, _source_sentence(last, tz)]
    if not last.source.is_proof:
        if status is ToleranceStatus.GREEN:
            status = ToleranceStatus.AMBER
        reasons.insert(
            1,
            "No administration is on record: the order schedule is a plan, not proof. Confirm the dose was given.",
        )
    if status is ToleranceStatus.RED:
        reasons.append(f"Protocol to use: {protocol}.")
    elif next_planned is not None and next_planned.at > red_from:
        reasons.append(
            f"The next planned dose ({moment_text(next_planned.at, tz)}) falls after the window closes: "
            "bring it forward or plan a re-desensitization."
        )
    return ToleranceAssessment(
        drug.name, status, rule, last, amber_from, red_from, protocol, tuple(reasons), next_planned
    )


def _continuous_status(
    rule: MaintenanceRule, now: datetime, amber_from: datetime, red_from: datetime, tz: tzinfo | None
) -> tuple[ToleranceStatus, str]:
    if now >= red_from:
        return (
            ToleranceStatus.RED,
            f"Re-desensitization required: more than {rule.window_text} without a dose "
            f"(the window closed {moment_text(red_from, tz)}).",
        )
    if now >= amber_from:
        return (
            ToleranceStatus.AMBER,
            f"Window closing: give the next dose before {moment_text(red_from, tz)}, "
            "or re-desensitize after that.",
        )
    return (
        ToleranceStatus.GREEN,
        f"Tolerance can be assumed until {moment_text(red_from, tz)} "
        f"({rule.window_text} after the last dose).",
    )
