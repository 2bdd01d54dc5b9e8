"""Drug-allergy matching: same ingredient, or a documented cross-reactive class (pure).

The classes, their members (ingredient names, RxNorm codes, synonyms, brand names), combination
products and the cross-reactivity statement of each class with its source are data:
``data/drug_classes.json``. Only RxNorm codes marked ``verified`` there are used; every other drug
is recognised by name, synonym or class alias ("sulfa", "penicillins"), case-insensitively and as
whole words, so "PLATINOL (CISplatin) - hives" is cisplatin.

A drug and an allergy record are each resolved to a set of ingredients (a combination such as
TMP-SMX to both of its ingredients) and to the classes named directly. They match as the
``same-drug`` when they share an ingredient (or an unknown drug's exact code or name), and as
``same-class`` when they share a documented class; the most specific shared class is reported (a
side-chain group before the whole class).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

__all__ = [
    "AllergenRef",
    "AllergyMatch",
    "DrugClass",
    "DrugRef",
    "classes_of",
    "drug_classes",
    "ingredients_of",
    "known_drug_name",
    "match_allergies",
]


@dataclass(frozen=True)
class DrugRef:
    name: str
    rxnorm: tuple[str, ...] = ()
    snomed: tuple[str, ...] = ()


@dataclass(frozen=True)
class AllergenRef:
    key: str  # caller's id for the allergy record
    name: str
    rxnorm: tuple[str, ...] = ()
    snomed: tuple[str, ...] = ()
    text: str = ""


@dataclass(frozen=True)
class DrugClass:
    id: str
    name: str
    members: tuple[str, ...]
    cross_reactivity: str
    source: str
    kind: str = "drug-class"  # "drug-class" | "side-chain-group"


@dataclass(frozen=True)
class AllergyMatch:
    allergen: AllergenRef
    kind: str  # "same-drug" | "same-class"
    drug_class: DrugClass | None
    explanation: str


# ----------------------------------------------------------------------------------------------
# the data


@dataclass(frozen=True)
class _Table:
    classes: tuple[DrugClass, ...]
    by_code: dict[str, tuple[str, frozenset[str]]]  # verified RxNorm code -> (drug name, its ingredients)
    phrases: dict[tuple[str, ...], tuple[str, str, frozenset[str]]]  # words -> (kind, name, ingredients)
    longest: int
    combinations: frozenset[str]


def _words(text: str) -> tuple[str, ...]:
    """Lower-case alphanumeric words: 'TMP/SMX' -> ('tmp', 'smx'), 'Co-trimoxazole' -> ('co', 'trimoxazole')."""
    return tuple(re.findall(r"[a-z0-9]+", text.lower()))


def _verified_codes(raw: Iterable[dict[str, Any]]) -> list[str]:
    return [str(entry["code"]) for entry in raw if entry.get("verified") is True]


def _load() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("data/drug_classes.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@lru_cache(maxsize=1)
def _table() -> _Table:
    raw = _load()
    by_code: dict[str, tuple[str, frozenset[str]]] = {}
    phrases: dict[tuple[str, ...], tuple[str, str, frozenset[str]]] = {}

    def name_it(kind: str, name: str, ingredients: frozenset[str], synonyms: Iterable[str]) -> None:
        for phrase in (name, *synonyms):
            words = _words(phrase)
            if words:
                phrases.setdefault(words, (kind, name, ingredients))

    for item in raw["ingredients"]:
        name = item["name"]
        for code in _verified_codes(item["rxnorm"]):
            by_code[code] = (name, frozenset({name}))
        name_it("ingredient", name, frozenset({name}), item["synonyms"])
    for item in raw["combinations"]:
        parts = frozenset(item["ingredients"])
        for code in _verified_codes(item["rxnorm"]):
            by_code[code] = (item["name"], parts)
        name_it("combination", item["name"], parts, item["synonyms"])
    classes = tuple(
        DrugClass(
            id=item["id"],
            name=item["name"],
            members=tuple(item["members"]),
            cross_reactivity=item["cross_reactivity"],
            source=item["source"],
            kind=item.get("kind", "drug-class"),
        )
        for item in raw["classes"]
    )
    for item in raw["classes"]:
        name_it("class", item["id"], frozenset(), item.get("aliases", ()))
    combinations = frozenset(item["name"] for item in raw["combinations"])
    return _Table(classes, by_code, phrases, max(len(words) for words in phrases), combinations)


def drug_classes() -> tuple[DrugClass, ...]:
    """Every documented drug class and side-chain group, in the data file's order."""
    return _table().classes


# ----------------------------------------------------------------------------------------------
# resolving a drug or an allergy record


@dataclass(frozen=True)
class _Resolved:
    ingredients: frozenset[str]
    class_ids: frozenset[str]  # classes named directly ("sulfa", "penicillin class")
    names: tuple[str, ...]  # known drug names recognised, in order of discovery

    @property
    def known(self) -> bool:
        return bool(self.ingredients or self.class_ids)


def _scan(text: str) -> list[tuple[str, str, frozenset[str]]]:
    """Known phrases in ``text``, longest first, each word used once ('penicillin G benzathine' is not also 'penicillin')."""
    table = _table()
    words = _words(text)
    used = [False] * len(words)
    found: list[tuple[int, tuple[str, str, frozenset[str]]]] = []
    for size in range(min(table.longest, len(words)), 0, -1):
        for start in range(len(words) - size + 1):
            span = range(start, start + size)
            hit = table.phrases.get(words[start : start + size])
            if hit is not None and not any(used[i] for i in span):
                for i in span:
                    used[i] = True
                found.append((start, hit))
    return [hit for _, hit in sorted(found, key=lambda pair: pair[0])]


def _resolve(codes: Sequence[str], *texts: str) -> _Resolved:
    table = _table()
    ingredients: set[str] = set()
    class_ids: set[str] = set()
    names: list[str] = []
    for code in codes:
        if code in table.by_code:
            name, parts = table.by_code[code]
            ingredients |= parts
            names.append(name)
    for text in texts:
        for kind, name, parts in _scan(text):
            if kind == "class":
                class_ids.add(name)
            else:
                ingredients |= parts
                names.append(name)
    return _Resolved(frozenset(ingredients), frozenset(class_ids), tuple(dict.fromkeys(names)))


def _resolve_drug(drug: DrugRef) -> _Resolved:
    return _resolve(drug.rxnorm, drug.name)


def _resolve_allergen(allergen: AllergenRef) -> _Resolved:
    return _resolve(allergen.rxnorm, allergen.name, allergen.text)


def _classes_for(resolved: _Resolved) -> tuple[DrugClass, ...]:
    return tuple(
        c for c in _table().classes if c.id in resolved.class_ids or resolved.ingredients & set(c.members)
    )


def classes_of(drug: DrugRef) -> tuple[DrugClass, ...]:
    """The classes the drug (or any ingredient of a combination) belongs to, in the data file's order."""
    return _classes_for(_resolve_drug(drug))


def ingredients_of(drug: DrugRef) -> frozenset[str]:
    """The known ingredient names of a drug (empty when it is not in the table)."""
    return _resolve_drug(drug).ingredients


def known_drug_name(rxnorm: Sequence[str] = (), text: str = "") -> str | None:
    """The table's name for a drug given by verified RxNorm codes, else by text; None unless exactly one.

    A combination's name wins over its ingredients' (an order coded with the SCD and the MIN is one
    drug); a text naming two different drugs ("carboplatin then paclitaxel") gives None.
    """
    names = _resolve(rxnorm).names or _resolve((), text).names
    combinations = [name for name in names if name in _table().combinations]
    if combinations:
        return combinations[0]
    return names[0] if len(names) == 1 else None


# ----------------------------------------------------------------------------------------------
# matching


def _listing(names: Iterable[str]) -> str:
    items = sorted(names)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _same_drug(drug: DrugRef, d: _Resolved, allergen: AllergenRef, a: _Resolved) -> str | None:
    """The explanation when the allergy record is to the drug itself (or one of its ingredients)."""
    record = f"the allergy record '{allergen.name}'"
    shared = d.ingredients & a.ingredients
    if shared:
        text = f"Same drug or ingredient: {drug.name} contains {_listing(shared)}, named by {record}."
        if len(a.ingredients) > 1 and a.ingredients - shared:
            text += (
                f" The record names a combination ({_listing(a.ingredients)}) and does not say which "
                "ingredient caused the reaction."
            )
        return text
    codes = set(drug.rxnorm) & set(allergen.rxnorm)
    if codes:
        return f"Same drug: {drug.name} and {record} carry the same RxNorm code {_listing(codes)}."
    snomed = set(drug.snomed) & set(allergen.snomed)
    if snomed:
        return f"Same drug: {drug.name} and {record} carry the same SNOMED CT code {_listing(snomed)}."
    if not d.known and not a.known and _same_name(drug.name, (allergen.name, allergen.text)):
        return f"Same drug by name: {drug.name} is named by {record} (neither is in the drug-class table)."
    return None


def _same_name(name: str, others: Iterable[str]) -> bool:
    """Whole-word containment of one name in the other (at least 4 letters, so 'IV' matches nothing)."""
    words = _words(name)
    for other in filter(None, others):
        theirs = _words(other)
        for shorter, longer in ((words, theirs), (theirs, words)):
            size = len(shorter)
            long_enough = len("".join(shorter)) >= 4
            if long_enough and any(longer[i : i + size] == shorter for i in range(len(longer) - size + 1)):
                return True
    return False


def _same_class(drug: DrugRef, d: _Resolved, allergen: AllergenRef, a: _Resolved) -> AllergyMatch | None:
    shared = [c for c in _classes_for(d) if c in _classes_for(a)]
    if not shared:
        return None
    best = min(shared, key=lambda c: len(c.members))  # the most specific documented class
    record = f"the allergy record '{allergen.name}'"
    named = a.ingredients & set(best.members)
    if named:
        explanation = f"{drug.name} and {record} ({_listing(named)}) are both {best.name}."
    else:  # the record names the class itself ("Sulfa", "Penicillins")
        explanation = (
            f"{record[0].upper()}{record[1:]} names the class {best.name}, to which {drug.name} belongs."
        )
    explanation += f" {best.cross_reactivity}"
    return AllergyMatch(allergen, "same-class", best, explanation)


def match_allergies(drug: DrugRef, allergens: Sequence[AllergenRef]) -> tuple[AllergyMatch, ...]:
    """Allergy records matching the drug: every same-drug match first, then same-class ones.

    Within each kind the caller's order is kept; each record matches at most once (its closest kind).
    """
    d = _resolve_drug(drug)
    exact: list[AllergyMatch] = []
    by_class: list[AllergyMatch] = []
    for allergen in allergens:
        a = _resolve_allergen(allergen)
        same = _same_drug(drug, d, allergen, a)
        if same is not None:
            shared = [c for c in _classes_for(d) if c in _classes_for(a)]
            exact.append(AllergyMatch(allergen, "same-drug", shared[0] if shared else None, same))
            continue
        match = _same_class(drug, d, allergen, a)
        if match is not None:
            by_class.append(match)
    return (*exact, *by_class)
