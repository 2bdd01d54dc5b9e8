"""Typed drug names -> a monograph, with "did you mean" for near misses (pure).

A name resolves when, once normalised (case, spacing, hyphens and slashes), it equals a monograph's
name or synonym (brand names included), or when a verified RxNorm code of the drug or one of its
products is given. Near misses ("carboplatn") are *not* resolved silently: they come back as
suggestions, which a person must pick. A name that neither resolves nor is near anything is
unresolved: it may still be planned, but only as an uncoded drug after an explicit confirmation
(DRUG-NAME-2, enforced where signing happens).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from fhir_desens.drugs.monograph import Monograph, monographs

__all__ = ["NameResolution", "normalise", "resolve_name", "vocabulary"]

#: difflib ratio for a suggestion: "carboplatn" vs "carboplatin" is 0.95, "cisplatin" vs
#: "carboplatin" 0.7 (not suggested); short names need a closer match.
_CUTOFF = 0.8
_MAX_SUGGESTIONS = 3
_SEPARATORS = re.compile(r"[\s\-_/]+")
#: Words that describe a product rather than name a drug ("carboplatin injection 10 mg/mL").
_FORM_WORDS = re.compile(
    r"\b(injection|infusion|solution|suspension|tablets?|oral|iv|im|for|concentrate|ds|ss|usp|"
    r"\d+(\.\d+)?\s*(mg|g|mcg|units?|ml|%)(/\S+)?)\b"
)


def normalise(text: str) -> str:
    """Lower case, one space between words, hyphens and slashes as spaces."""
    return _SEPARATORS.sub(" ", text.strip().lower()).strip()


@dataclass(frozen=True)
class NameResolution:
    typed: str
    monograph: Monograph | None  # resolved (exact name, synonym or code)
    suggestions: tuple[Monograph, ...]  # near misses, best first (only when not resolved)
    by: str  # "name", "synonym", "code", "" (unresolved)

    @property
    def resolved(self) -> bool:
        return self.monograph is not None

    @property
    def message(self) -> str:
        """What a person reads under the drug field."""
        if self.monograph is not None:
            if self.by in ("synonym", "text"):
                return f"'{self.typed}' is {self.monograph.name}."
            return ""
        if self.suggestions:
            names = " or ".join(f"'{m.name}'" for m in self.suggestions)
            return f"'{self.typed}' is not a drug fhir-desens knows. Did you mean {names}?"
        return (
            f"'{self.typed}' is not a drug fhir-desens knows: it can only be planned as an uncoded drug, "
            "without allergy matching by code, after you confirm that."
        )


def vocabulary(catalogue: Mapping[str, Monograph] | None = None) -> dict[str, tuple[Monograph, str]]:
    """Every normalised name -> (monograph, "name" | "synonym")."""
    words: dict[str, tuple[Monograph, str]] = {}
    for item in (catalogue or monographs()).values():
        words.setdefault(normalise(item.name), (item, "name"))
        for synonym in item.synonyms:
            words.setdefault(normalise(synonym), (item, "synonym"))
    return words


def _by_code(codes: Iterable[str], catalogue: Mapping[str, Monograph]) -> Monograph | None:
    wanted = set(codes)
    found = {
        item.id: item
        for item in catalogue.values()
        for code in (*item.codes, *(c for p in item.products for c in p.codes))
        if code.code in wanted
    }
    return next(iter(found.values())) if len(found) == 1 else None


def _named_in(text: str, words: Mapping[str, tuple[Monograph, str]]) -> Monograph | None:
    """The one drug a longer text names as whole words ("Carboplatin 400 mg in 250 mL D5W IV").

    The longest name found wins ("penicillin g benzathine" over "penicillin g"); two different drugs
    named with equally long names ("carboplatin then paclitaxel") resolve to neither.
    """
    padded = f" {text} "
    found = sorted((w for w in words if f" {w} " in padded), key=len, reverse=True)
    if not found:
        return None
    best = [words[w][0] for w in found if len(w) == len(found[0])]
    if len({m.id for m in best}) > 1:
        return None
    longest = best[0]
    others = {words[w][0].id for w in found if w not in found[0]} - {longest.id}
    return None if others else longest


def _stripped(text: str) -> str:
    """The typed text without product words, so "Carboplatin 400 mg injection" is carboplatin."""
    return normalise(_FORM_WORDS.sub(" ", text.lower()))


def resolve_name(
    typed: str, rxnorm: Sequence[str] = (), catalogue: Mapping[str, Monograph] | None = None
) -> NameResolution:
    """Resolve a typed name (and any RxNorm codes that came with it) against the monographs."""
    catalogue = catalogue or monographs()
    words = vocabulary(catalogue)
    for key in dict.fromkeys((normalise(typed), _stripped(typed))):
        if key in words:
            item, by = words[key]
            return NameResolution(typed, item, (), by)
    coded = _by_code(rxnorm, catalogue)
    if coded is not None:
        return NameResolution(typed, coded, (), "code")
    named = _named_in(normalise(typed), words)
    if named is not None:
        return NameResolution(typed, named, (), "text")
    close = difflib.get_close_matches(
        _stripped(typed) or normalise(typed), list(words), _MAX_SUGGESTIONS * 2, _CUTOFF
    )
    suggestions: list[Monograph] = []
    for word in close:
        item = words[word][0]
        if item not in suggestions:
            suggestions.append(item)
    return NameResolution(typed, None, tuple(suggestions[:_MAX_SUGGESTIONS]), "")
