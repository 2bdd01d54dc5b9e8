"""What a drug check finds: refused (the plan cannot be signed) or a warning a person must read."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

__all__ = ["Finding", "Severity", "refusals", "warnings"]


class Severity(Enum):
    REFUSE = "refuse"  # the plan may not be signed as it is
    WARN = "warn"  # shown on the worksheet, the pharmacy sheet and before signing


@dataclass(frozen=True)
class Finding:
    check: str  # the requirement ID (docs/requirements.md), e.g. "DRUG-CONC-1"
    severity: Severity
    message: str  # for a nurse or a pharmacist: names the bag, the drug and what to do
    subject: str | None = None  # what it is about: "Bag 3", "diluent", "target dose"

    @property
    def refused(self) -> bool:
        return self.severity is Severity.REFUSE


def refusals(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    return tuple(f for f in findings if f.severity is Severity.REFUSE)


def warnings(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    return tuple(f for f in findings if f.severity is Severity.WARN)
