"""Contraindication screening over reaction manifestations (pure).

Rapid desensitization induces temporary tolerance of immediate (IgE/mast-cell) reactions only. A
history of a severe delayed reaction (SJS/TEN, DRESS, erythema multiforme, exfoliative or blistering
eruptions, serum sickness, drug-induced hepatitis or nephritis, hemolytic anemia) makes it
contraindicated. The findings, their SNOMED CT codes, text patterns and sources are data:
``data/contraindications.json``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

SNOMED = "http://snomed.info/sct"


@dataclass(frozen=True)
class Coding:
    system: str | None
    code: str | None
    display: str | None = None


@dataclass(frozen=True)
class Manifestation:
    """One reaction manifestation as recorded: free text and/or codings."""

    text: str | None
    codings: tuple[Coding, ...] = ()


@dataclass(frozen=True)
class ScreeningResult:
    contraindicated: bool
    reasons: tuple[str, ...]
    finding_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Finding:
    id: str
    label: str
    snomed: frozenset[str]
    patterns: tuple[re.Pattern[str], ...]

    def matches(self, manifestation: Manifestation) -> str | None:
        """The evidence (code or text) that this finding is present, or None."""
        for coding in manifestation.codings:
            if coding.system == SNOMED and coding.code in self.snomed:
                return f"SNOMED CT {coding.code}"
        texts = [manifestation.text] + [c.display for c in manifestation.codings]
        for text in filter(None, texts):
            if any(p.search(text) for p in self.patterns):
                return f"'{text}'"
        return None


@lru_cache(maxsize=1)
def _findings() -> tuple[_Finding, ...]:
    raw = json.loads(resources.files(__package__).joinpath("data/contraindications.json").read_text("utf-8"))
    return tuple(
        _Finding(
            id=item["id"],
            label=item["label"],
            snomed=frozenset(item["snomed"]),
            patterns=tuple(re.compile(p, re.IGNORECASE) for p in item["patterns"]),
        )
        for item in raw["findings"]
    )


def screen_reactions(manifestations: Iterable[Manifestation]) -> ScreeningResult:
    """Screen recorded reaction manifestations for findings that contraindicate desensitization."""
    reasons: list[str] = []
    ids: list[str] = []
    for manifestation in manifestations:
        for finding in _findings():
            evidence = finding.matches(manifestation)
            if evidence and finding.id not in ids:
                ids.append(finding.id)
                reasons.append(
                    f"history of {finding.label} (recorded as {evidence}): desensitization only addresses "
                    "immediate reactions and is contraindicated after this reaction"
                )
    return ScreeningResult(contraindicated=bool(ids), reasons=tuple(reasons), finding_ids=tuple(ids))
