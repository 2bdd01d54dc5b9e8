"""What the chart says about the pre-start checklist, each finding with its source.

Before step 1 the flowsheet shows, beside each checklist item, what the chart can tell: the weight (and
height) the dose was computed from and how old it is, whether each premedication is ordered and whether
it was given (with the chart's time, offered to record as the premedication given), an epinephrine order for
the emergency kit, a consent on file. What the chart cannot tell (IV access, a 1:1 nurse, the kit at the
bedside) says so: the nurse confirms those. The nurse still records every item; nothing is checked off from
the chart alone.

:func:`chart_facts` interprets resources (no I/O); :func:`read_chart_facts` reads them (patient-scoped
searches, each on its own: a search the EHR refuses or does not offer gives a finding saying so).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import datetime, timedelta
from typing import Any

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.course.assessment import assess, premedication_allergies
from fhir_desens.course.chart import HEIGHT_LOINC, WEIGHT_LOINC, first_page
from fhir_desens.errors import DesensError
from fhir_desens.fhir.allergy import Allergy
from fhir_desens.fhir.canonical import ID_BEDSIDE_ITEM
from fhir_desens.fhir.chart.measurements import latest_body_measurements
from fhir_desens.protocol.calculate import Plan
from fhir_desens.protocol.crossreactivity import DrugRef
from fhir_desens.protocol.display import date_text, moment_text
from fhir_desens.protocol.model import Premedication
from fhir_desens.protocol.report import is_oral

LOINC = "http://loinc.org"

WEIGHT_CURRENT_DAYS = 30  # a weight older than this is flagged for a dose computed from it (site practice)
GIVEN_WITHIN = timedelta(hours=24)  # a premedication given longer ago is not this session's
EMERGENCY_DRUGS = ("epinephrine", "adrenaline")
ORDER_STATES = frozenset({"active", "on-hold", "completed"})
CANNOT_TELL = "the chart cannot tell"


@dataclass(frozen=True)
class ChartFact:
    item: str  # the checklist item it informs: weight, premedication, emergency-kit, consent, iv-access, ...
    label: str
    finding: str  # what the chart says, in words
    source: str  # "Observation/123", "MedicationRequest/9", "not in the chart", "the chart cannot tell"
    ok: bool | None  # True: the chart shows it; False: a problem to act on; None: confirm at the bedside
    name: str = ""  # premedication: the drug
    given_at: datetime | None = None  # premedication given per the chart (offered to record at that time)
    dose: str = ""  # premedication: the dose the chart gives


def _text_of(concept: Any) -> str:
    if not isinstance(concept, Mapping):
        return ""
    words = [str(concept.get("text") or "")]
    words += [str(c.get("display") or "") for c in concept.get("coding") or [] if isinstance(c, Mapping)]
    return " ".join(w for w in words if w).lower()


def _drug_text(resource: Mapping[str, Any]) -> str:
    reference = resource.get("medicationReference")
    display = reference.get("display") if isinstance(reference, Mapping) else ""
    return f"{_text_of(resource.get('medicationCodeableConcept'))} {str(display or '').lower()}"


def _names(resource: Mapping[str, Any], names: Iterable[str]) -> bool:
    text = _drug_text(resource)
    return any(name.lower() in text for name in names)


def _when(resource: Mapping[str, Any]) -> datetime | None:
    value = resource.get("effectiveDateTime") or (resource.get("effectivePeriod") or {}).get("start")
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else None


def _ours(resource: Mapping[str, Any]) -> bool:
    """Written by the bedside itself (its own record, not what the chart knows independently)."""
    identifiers = resource.get("identifier")
    return any(
        isinstance(i, Mapping) and i.get("system") == ID_BEDSIDE_ITEM
        for i in (identifiers if isinstance(identifiers, list) else [identifiers])
    )


def _ref(resource: Mapping[str, Any]) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id')}"


def _dose_text(administration: Mapping[str, Any]) -> str:
    dosage = administration.get("dosage") or {}
    dose = dosage.get("dose") if isinstance(dosage, Mapping) else None
    if isinstance(dose, Mapping) and dose.get("value") is not None:
        return f"{dose.get('value')} {dose.get('unit') or dose.get('code') or ''}".strip()
    return str(dosage.get("text") or "") if isinstance(dosage, Mapping) else ""


def weight_fact(observations: Sequence[Mapping[str, Any]], now: datetime, per_body_size: bool) -> ChartFact:
    measured = latest_body_measurements(observations, now=now)
    weight = measured.weight
    if weight is None:
        return ChartFact(
            "weight", "Weight", "no weight in the chart", "not in the chart", False if per_body_size else None
        )
    finding = f"{weight.value} kg"
    when = _date(weight.date)
    ok: bool | None = True
    if when is not None:
        days = (now.date() - when).days
        finding += f", measured {date_text(when)} ({days} day{'s' if days != 1 else ''} ago)"
        if per_body_size and days > WEIGHT_CURRENT_DAYS:
            finding += (
                f": older than {WEIGHT_CURRENT_DAYS} days; weigh the patient before a dose per kg or m²"
            )
            ok = False
    if measured.height is not None and per_body_size:
        finding += f"; height {measured.height.value} cm"
    return ChartFact("weight", "Weight", finding, weight.reference or "Observation", ok)


def _date(text: str | None) -> Any:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).date()
    except ValueError:
        try:
            return datetime.fromisoformat(text[:10]).date()
        except ValueError:
            return None


@dataclass(frozen=True)
class Allergies:
    """What the allergy list says for the premedications: the index reaction's signs (the manifestations of
    the allergy records matched to the planned drug) and the premedications the patient is allergic to."""

    signs: tuple[str, ...] = ()  # the index reaction's manifestations, lower case
    avoid: Mapping[str, str] = dataclass_field(
        default_factory=dict
    )  # premedication -> the allergy, for people


#: words of a protocol's premedication condition -> words of a manifestation that meets it
CONDITION_SIGNS = {
    "flushing": ("flush",),
    "respiratory symptoms": (
        "wheez",
        "dyspn",
        "bronchospasm",
        "chest tightness",
        "cough",
        "breath",
        "stridor",
    ),
}


def allergies_for(plan: Plan, drug: DrugRef, allergies: Sequence[Allergy] | None) -> Allergies:
    """The index reaction of ``drug`` and the plan's premedications the allergy list rules out (an aspirin
    premedication for a patient with aspirin-exacerbated respiratory disease)."""
    if allergies is None:
        return Allergies()
    signs = tuple(
        text.casefold()
        for matched in assess(drug, allergies).matched
        for reaction in matched.allergy.reactions
        for concept in reaction.manifestations
        for text in (concept.text, *(c.display for c in concept.codings))
        if text
    )
    return Allergies(signs, premedication_allergies(plan.premedications, allergies))


def _condition_met(condition: str, allergies: Allergies) -> tuple[str, bool] | None:
    """(the sign, whether the index reaction showed it) when the chart can tell; None when it cannot."""
    for sign, words in CONDITION_SIGNS.items():
        if sign in condition.casefold() and allergies.signs:
            return sign, any(word in text for text in allergies.signs for word in words)
    return None


def _conditional_fact(premedication: Premedication, label: str, allergies: Allergies) -> ChartFact:
    """A premedication given only in some cases, not ordered: whether the index reaction calls for it."""
    name, timing = premedication.drug, premedication.timing
    met = _condition_met(premedication.condition or "", allergies)
    if met is not None and met[1]:
        return ChartFact(
            "premedication",
            label,
            f"not ordered, but the index reaction included {met[0]}: the protocol gives it {timing}; "
            "ask the prescriber for the order",
            "allergy list",
            False,
            name=name,
        )
    if met is not None:
        return ChartFact(
            "premedication", label, f"not needed: the index reaction recorded no {met[0]}", "allergy list", True,
            name=name,
        )  # fmt: skip
    return ChartFact(
        "premedication",
        label,
        conditional_finding(timing, premedication.condition or ""),
        "not in the chart",
        None,
        name=name,
    )


def conditional_finding(timing: str | None, condition: str) -> str:
    """A premedication the protocol gives only in some cases, not ordered: the protocol's own words (when
    and when it applies), never "given" for a drug nobody gave ("if flushing occurred in the index reaction")."""
    when = f" {timing}," if timing else ""
    return (
        f"not ordered. The protocol gives it{when} only {condition}: "
        "if that applies, ask the prescriber for the order"
    )


def premedication_facts(
    plan: Plan,
    requests: Sequence[Mapping[str, Any]],
    administrations: Sequence[Mapping[str, Any]],
    now: datetime,
    allergies: Allergies = Allergies(),
) -> list[ChartFact]:
    facts = []
    for premedication in plan.premedications:
        name = premedication.drug
        label = f"Premedication: {name} {premedication.dose} {premedication.route}"
        if name in allergies.avoid:
            finding = f"do not give: {allergies.avoid[name]}; ask the prescriber for an alternative"
            facts.append(ChartFact("premedication", label, finding, "allergy list", False, name=name))
            continue
        given = [
            (when, a)
            for a in administrations
            if _names(a, [name])
            and not _ours(a)
            and a.get("status") in ("completed", "in-progress")
            and (when := _when(a)) is not None
            and now - GIVEN_WITHIN <= when <= now + timedelta(minutes=5)
        ]
        if given:
            when, administration = max(given, key=lambda pair: pair[0])
            facts.append(
                ChartFact(
                    "premedication",
                    label,
                    f"given per the chart at {moment_text(when, now.tzinfo)}",
                    _ref(administration),
                    True,
                    name=name,
                    given_at=when,
                    dose=_dose_text(administration),
                )
            )
            continue
        ordered = [r for r in requests if _names(r, [name]) and r.get("status") in ORDER_STATES]
        if ordered:
            facts.append(
                ChartFact(
                    "premedication",
                    label,
                    "ordered; not recorded as given",
                    _ref(ordered[0]),
                    None,
                    name=name,
                )
            )
        elif premedication.condition:  # given only in some cases: not a problem when not ordered
            facts.append(_conditional_fact(premedication, label, allergies))
        else:
            facts.append(
                ChartFact(
                    "premedication",
                    label,
                    not_ordered_finding(premedication),
                    "not in the chart",
                    None,
                    name=name,
                )
            )
    return facts


def not_ordered_finding(premedication: Premedication) -> str:
    """A premedication of the plan with no order in the chart. The signed plan orders the steps only: the
    premedications are ordered in the EHR's own order set (coded, dosed, checked and verified there), so
    right after signing none is ordered yet. Not an alarm (walk session 8: every session began with red
    premedication lines): what the plan says and who acts."""
    when = f", {premedication.timing}" if premedication.timing else ""
    return (
        f"not ordered in the EHR yet (the signed plan lists it{when}, but orders only the steps): "
        "ask the prescriber to order it there, then record it here when given"
    )


def emergency_fact(requests: Sequence[Mapping[str, Any]]) -> ChartFact:
    orders = [r for r in requests if _names(r, EMERGENCY_DRUGS) and r.get("status") in ("active", "on-hold")]
    label = "Emergency medications"
    if orders:
        return ChartFact("emergency-kit", label, "epinephrine is ordered", _ref(orders[0]), True)
    return ChartFact(
        "emergency-kit",
        label,
        "no epinephrine order found: have the rescue medications ordered and the kit at the bedside",
        "not in the chart",
        False,
    )


#: What the nurse does when the chart cannot show today's consent (clinical.md: written consent at each
#: desensitization, obtained by the allergist).
CHECK_THE_FORM = "check the signed consent form (on paper or scanned into the notes) before step 1; without one, call the allergist"
#: Why the consents were not read, in words: the launch was not granted them, or the EHR did not answer.
NOT_GRANTED = "not-granted"
NOT_ANSWERED = "not-answered"
_UNREAD_WORDS = {
    NOT_GRANTED: "this launch may not read the chart's consents",
    NOT_ANSWERED: "the chart's consents could not be read just now",
}


def consent_fact(
    consents: Sequence[Mapping[str, Any]] | None, now: datetime, unread: str = NOT_ANSWERED
) -> ChartFact:
    """The consent on file; ``consents`` None: not read, ``unread`` says why (and the nurse checks the form)."""
    label = "Consent"
    if consents is None:
        return ChartFact("consent", label, f"{_UNREAD_WORDS[unread]}: {CHECK_THE_FORM}", CANNOT_TELL, None)
    active = [c for c in consents if c.get("status") == "active"]
    if not active:
        return ChartFact(
            "consent", label, f"no active consent in the chart: {CHECK_THE_FORM}", "not in the chart", None
        )
    latest = max(active, key=lambda c: str(c.get("dateTime") or ""))
    when = _date(str(latest.get("dateTime") or ""))
    today = when is not None and when == now.date()
    finding = f"a consent dated {date_text(when) if when else 'without a date'} is on file"
    if not today:
        finding += ": consent is needed for each desensitization; confirm today's"
    return ChartFact("consent", label, finding, _ref(latest), True if today else None)


def _iv_access_fact(plan: Plan) -> tuple[ChartFact, ...]:
    """A working line to confirm before step 1. Doses taken by mouth need one too: the rescue treatment
    (saline, injectable antihistamine and steroid; clinical.md 1.4) goes into a vein."""
    if is_oral(plan):
        finding = "confirm a working line for rescue treatment (the doses are by mouth)"
    else:
        finding = "confirm a working line at the bedside"
    return (ChartFact("iv-access", "IV access", finding, CANNOT_TELL, None),)


def chart_facts(
    plan: Plan,
    *,
    observations: Sequence[Mapping[str, Any]],
    requests: Sequence[Mapping[str, Any]],
    administrations: Sequence[Mapping[str, Any]],
    consents: Sequence[Mapping[str, Any]] | None,
    now: datetime,
    per_body_size: bool,
    allergies: Allergies = Allergies(),
    consents_unread: str = NOT_ANSWERED,
) -> list[ChartFact]:
    """Every finding, in checklist order."""
    return [
        weight_fact(observations, now, per_body_size),
        *premedication_facts(plan, requests, administrations, now, allergies),
        emergency_fact(requests),
        consent_fact(consents, now, consents_unread),
        *_iv_access_fact(plan),
        ChartFact(
            "one-to-one-nurse", "1:1 nurse", "confirm one nurse for this patient only", CANNOT_TELL, None
        ),
    ]


def _search(client: FhirClient, resource_type: str, params: dict[str, str]) -> list[dict[str, Any]] | None:
    try:
        return first_page(client, resource_type, params)
    except DesensError:
        return None


def read_chart_facts(
    client: FhirClient,
    patient: str,
    plan: Plan,
    now: datetime,
    *,
    per_body_size: bool,
    readable: Callable[[str], bool] = lambda resource_type: True,
    allergies: Allergies = Allergies(),
) -> list[ChartFact]:
    """Read what the checklist needs (patient-scoped searches of the types the launch may read) and
    interpret it; a search not granted or not answered says so."""
    subject = patient.removeprefix("Patient/")
    codes = f"{LOINC}|{HEIGHT_LOINC},{LOINC}|{WEIGHT_LOINC}"

    def search(resource_type: str, params: dict[str, str]) -> list[dict[str, Any]] | None:
        return _search(client, resource_type, params) if readable(resource_type) else None

    observations = search(
        "Observation", {"patient": subject, "code": codes, "_sort": "-date", "_count": "50"}
    )
    requests = search("MedicationRequest", {"patient": subject, "_count": "200"})
    administrations = search("MedicationAdministration", {"patient": subject, "_count": "200"})
    consents = search("Consent", {"patient": subject, "_count": "50"})
    facts = chart_facts(
        plan,
        observations=observations or [],
        requests=requests or [],
        administrations=administrations or [],
        consents=consents,
        now=now,
        per_body_size=per_body_size,
        allergies=allergies,
        consents_unread=NOT_ANSWERED if readable("Consent") else NOT_GRANTED,
    )
    unread = [
        name for name, found in (("orders", requests), ("administrations", administrations)) if found is None
    ]
    if unread:
        facts.append(
            ChartFact(
                "chart", "Chart", f"the chart's {' and '.join(unread)} could not be read", CANNOT_TELL, None
            )
        )
    return facts


__all__ = ["Allergies", "ChartFact", "allergies_for", "chart_facts", "read_chart_facts"]
