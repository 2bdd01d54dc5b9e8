"""The next dose after a session: what the completion form offers and how the choice reads (pure).

At the end of a session the nurse records one of two answers (the entry's ``next_dose``):

* ``continuous``: continue dosing on schedule; tolerance lasts only while the doses keep coming;
* ``re-desensitize``: the next dose is a new desensitization.

Which answers make sense depends on the drug's maintenance rule (:mod:`fhir_desens.drugs.tolerance`).
Platinum compounds, taxanes and monoclonal antibodies are desensitized at every administration, so
only a new desensitization is offered for them: a new completion entry that says "continuous" for such a
drug is refused (:func:`check`), and an older stored record that says it reads as the rule says. Without a rule on file, tolerance cannot be
assumed: a new desensitization comes first in the form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhir_desens.course.bedside.state import SessionState
from fhir_desens.drugs.tolerance import MaintenanceRule, rule_for
from fhir_desens.errors import InputError
from fhir_desens.protocol.crossreactivity import DrugRef

__all__ = [
    "CONTINUOUS",
    "RE_DESENSITIZE",
    "NextDoseChoice",
    "check",
    "choices",
    "continues",
    "rule_of",
    "sentence",
    "words",
]

CONTINUOUS = "continuous"
RE_DESENSITIZE = "re-desensitize"


@dataclass(frozen=True)
class NextDoseChoice:
    value: str
    label: str


def rule_of(state: SessionState) -> MaintenanceRule | None:
    """The maintenance rule of the session's drug (its RxNorm codes from the signed draft), if any."""
    draft: dict[str, Any] = state.context.get("draft") or {}
    rxnorm = tuple(str(code) for code in draft.get("drug_rxnorm") or ())
    return rule_for(DrugRef(state.plan.drug, rxnorm))


def choices(rule: MaintenanceRule | None) -> tuple[NextDoseChoice, ...]:
    """The completion form's answers, the one to preselect first."""
    new = NextDoseChoice(RE_DESENSITIZE, "A new desensitization for the next dose")
    if rule is not None and rule.every_administration:
        return (new,)
    within = f": the next dose within {rule.window_text}" if rule is not None else ""
    keep = NextDoseChoice(
        CONTINUOUS, f"Continue on schedule (tolerance is kept only by regular dosing{within})"
    )
    return (keep, new) if rule is not None else (new, keep)


def check(state: SessionState, recorded: str) -> None:
    """Refuse "continuous" for a drug whose tolerance needs a desensitization before every administration."""
    rule = rule_of(state)
    if recorded == CONTINUOUS and rule is not None and rule.every_administration:
        raise InputError(
            "next_dose",
            f"'{CONTINUOUS}' does not fit {state.plan.drug}: {rule.name} are desensitized at every "
            "administration, so tolerance does not carry over to the next dose",
            f"{RE_DESENSITIZE} (a new desensitization for the next dose)",
        )


def continues(recorded: str | None, rule: MaintenanceRule | None) -> bool:
    """Whether the next dose is given at the standard rate (tolerance kept by continued dosing)."""
    return recorded == CONTINUOUS and not (rule is not None and rule.every_administration)


def words(recorded: str | None, rule: MaintenanceRule | None) -> str:
    """The recorded answer as a phrase ('a new desensitization (...)'); '—' when none was recorded."""
    if recorded is None:
        return "—"
    if rule is not None and rule.every_administration:  # whatever was recorded: the rule holds
        return f"a new desensitization ({rule.name} are desensitized at every administration)"
    if continues(recorded, rule):
        within = f", the next dose within {rule.window_text} of the last" if rule is not None else ""
        return f"continue dosing on schedule (tolerance is kept only while doses continue{within})"
    return "a new desensitization"


def sentence(recorded: str | None, rule: MaintenanceRule | None) -> str:
    """'Next dose: a new desensitization (...).' for notes and pages."""
    return f"Next dose: {words(recorded, rule)}."
