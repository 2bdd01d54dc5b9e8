"""Who may override a contraindication, and what counts as a reason (pure).

OVERRIDE-1: only an allergist overrides a contraindication to desensitization (BWH: "only an
allergist evaluates candidates", clinical.md §1.1 [S3]): a user whose role is allergist (their
PractitionerRole or qualification says allergy/immunology, or they are on the configured list), or
another user with an allergist's co-signature.
OVERRIDE-2: the reason is substantive: at least 20 characters, at least three different words, not
one repeated character or word ("xxxxxxxxxxxxxxxxxxxx", "asdf asdf asdf asdf").
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from fhir_desens.boundary.text import form_text
from fhir_desens.errors import InputError

__all__ = [
    "MIN_REASON_CHARACTERS",
    "OverrideAuthority",
    "allergist_role_text",
    "check_override_authority",
    "check_override_reason",
]

MIN_REASON_CHARACTERS = 20
MAX_REASON_CHARACTERS = 2000
MIN_DISTINCT_WORDS = 3
_WORD = re.compile(r"[^\W\d_]{2,}", re.UNICODE)
_RUN = re.compile(r"(\S)\1{4,}")
_ALLERGIST = re.compile(r"\ballerg|\bimmunolog", re.IGNORECASE)
_ACCEPTED = (
    f"at least {MIN_REASON_CHARACTERS} characters in words saying why desensitization is still indicated "
    "despite the contraindication (e.g. the indication, why no alternative exists, who agreed)"
)


def check_override_reason(text: str | None) -> str:
    """The reason, stripped, or :class:`InputError` on ``override_reason`` saying what is missing."""
    typed = form_text(text or "", "override_reason", max_length=4 * MAX_REASON_CHARACTERS, multiline=True)
    reason = " ".join(typed.split())
    if not reason:
        raise InputError("override_reason", "is empty", _ACCEPTED)
    if len(reason) > MAX_REASON_CHARACTERS:
        raise InputError("override_reason", f"is longer than {MAX_REASON_CHARACTERS} characters", _ACCEPTED)
    if len(reason) < MIN_REASON_CHARACTERS:
        raise InputError("override_reason", f"is only {len(reason)} characters long", _ACCEPTED)
    letters = [c.lower() for c in reason if c.isalpha()]
    if not letters or Counter(letters).most_common(1)[0][1] > len(letters) // 2:
        raise InputError("override_reason", "is mostly one repeated character", _ACCEPTED)
    if _RUN.search(reason):
        raise InputError("override_reason", "repeats one character five times or more", _ACCEPTED)
    words = [w.lower() for w in _WORD.findall(reason)]
    if len(set(words)) < MIN_DISTINCT_WORDS:
        raise InputError("override_reason", f"has fewer than {MIN_DISTINCT_WORDS} different words", _ACCEPTED)
    if Counter(words).most_common(1)[0][1] * 2 > len(words) and len(words) > 2:
        raise InputError("override_reason", "repeats one word", _ACCEPTED)
    return reason


def allergist_role_text(texts: Iterable[str | None]) -> str | None:
    """The first role, specialty or qualification text that names allergy or immunology."""
    return next((t for t in texts if t and _ALLERGIST.search(t)), None)


@dataclass(frozen=True)
class OverrideAuthority:
    """What is known about who overrides: the user, and any allergist who co-signs."""

    user: str  # "Practitioner/<id>" or the fhirUser as given
    user_allergist_evidence: str | None  # why the user counts as an allergist; None: not shown to be
    cosigner: str | None = None  # the co-signing allergist, as typed or chosen
    cosigner_allergist_evidence: str | None = None


def check_override_authority(authority: OverrideAuthority) -> str:
    """A sentence recording who authorised the override, or :class:`InputError` (OVERRIDE-1)."""
    if authority.user_allergist_evidence:
        return f"Overridden by an allergist ({authority.user_allergist_evidence})."
    if authority.cosigner and authority.cosigner_allergist_evidence:
        return (
            f"Overridden with the co-signature of allergist {authority.cosigner} "
            f"({authority.cosigner_allergist_evidence})."
        )
    if authority.cosigner:
        raise InputError(
            "override_cosigner",
            f"{authority.cosigner} is not recorded as an allergist",
            "an allergist of the configured list or with an allergy/immunology role or qualification",
        )
    raise InputError(
        "override_cosigner",
        "only an allergist may override a contraindication to desensitization, and you are not recorded as one",
        "the co-signature of an allergist",
    )
