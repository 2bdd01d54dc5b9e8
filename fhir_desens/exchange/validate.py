"""Validation of exchange inputs in three layers, reported as one list of issues.

1. **Structure**: FHIR R4 itself, by Medplum's validator (``validate_resources``) with our guide's
   profiles loaded, so resources that claim our profiles are checked against them too. The layer is
   a function (:data:`StructuralValidator`) so pure tests and the app can run without node; the CLI
   always uses :func:`medplum_validator`.
2. **Our profiles**: :func:`~fhir_desens.fhir.profiles.profile_checks`, what Medplum misses (nested
   constraints, required bindings, UCUM, our extensions wherever they are), and every required binding
   of R4 itself (:mod:`~fhir_desens.fhir.bindings`). ``urn:uuid`` references must name an entry of
   their Bundle (:mod:`~fhir_desens.exchange.references`); Medplum's warnings about them are dropped.
3. **Clinical consistency** of each PlanDefinition claiming our protocol profile
   (:mod:`~fhir_desens.exchange.consistency`): the protocol maps back, computes a safe reference plan,
   and every dose, volume, rate, duration or cumulative total the documents state agrees with it; and
   of each order set (RequestGroup + MedicationRequests + Medications, :mod:`~fhir_desens.exchange
   .ordersets`): recomputed from the parameters it records, every step compared with the engine.

Across resources, two different resources with the same ``url|version`` are an error (importing them
would be ambiguous). Each issue says where: file (``file!member`` in a package), Bundle entry,
resource, and a FHIRPath-like expression inside the resource.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from fhir_desens.errors import FhirFormatError, InputError, MappingError
from fhir_desens.exchange.consistency import check_plan_definition
from fhir_desens.exchange.content import CANONICAL_TYPES, canonical_key, first_difference
from fhir_desens.exchange.load import Loaded, load_path
from fhir_desens.exchange.references import (
    bundle_full_urls,
    is_urn_reference_noise,
    unresolved_reference_issues,
)
from fhir_desens.fhir import canonical as c
from fhir_desens.protocol.model import Protocol

__all__ = [
    "SEVERITIES",
    "Issue",
    "StructuralValidator",
    "ValidationReport",
    "activity_index",
    "medplum_validator",
    "validate_loaded",
    "validate_paths",
]

SEVERITIES: Final = ("fatal", "error", "warning", "information")
_LAYER_ORDER: Final = {"input": 0, "structure": 1, "profile": 2, "clinical": 3}

#: Resources in, one OperationOutcome per resource out (in order).
StructuralValidator = Callable[[Sequence[Mapping[str, Any]]], Sequence[Mapping[str, Any]]]


@dataclass(frozen=True)
class Issue:
    """One finding. ``fatal`` means the input could not be used at all (exit status 2)."""

    severity: str  # fatal | error | warning | information
    code: str  # OperationOutcome issue type (structure, invalid, business-rule, ...)
    message: str
    source: str = ""
    entry: int | None = None
    resource: str | None = None  # Type/id or Type url|version
    expression: str | None = None
    layer: str = "input"  # input | structure | profile | clinical
    rule: str | None = None  # e.g. INV-04, stated-value, duplicate-canonical

    @property
    def location(self) -> str:
        parts = [self.source or "(input)"]
        if self.entry is not None:
            parts.append(f"entry[{self.entry}]")
        if self.resource:
            parts.append(self.resource)
        text = " ".join(parts)
        return f"{text} at {self.expression}" if self.expression else text

    def line(self) -> str:
        return f"{self.severity:<11} {self.location}: {self.message}"

    def outcome_issue(self) -> dict[str, Any]:
        issue: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "details": {"text": self.message},
            "diagnostics": f"{self.location} [{self.layer}{': ' + self.rule if self.rule else ''}]",
        }
        if self.expression:
            issue["expression"] = [self.expression]
        return issue


@dataclass
class ValidationReport:
    """Every issue found in some inputs, and the protocols that were read from them."""

    resources: list[Loaded] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    protocols: list[tuple[Loaded, Protocol]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    order_sets: int = 0  # order sets recomputed through the engine

    def count(self, *severities: str) -> int:
        return sum(1 for issue in self.issues if issue.severity in severities)

    @property
    def unusable(self) -> bool:
        return self.count("fatal") > 0

    @property
    def valid(self) -> bool:
        return self.count("fatal", "error") == 0

    @property
    def exit_code(self) -> int:
        """0 valid, 1 invalid, 2 unusable input (the CLI contract)."""
        return 2 if self.unusable else 0 if self.valid else 1

    def errors(self) -> list[Issue]:
        return [issue for issue in self.issues if issue.severity in ("fatal", "error")]

    def summary(self) -> str:
        state = "unusable input" if self.unusable else "valid" if self.valid else "invalid"
        return (
            f"{state}: {len(self.resources)} resource(s) in {len(self.sources)} input(s); "
            f"{self.count('fatal', 'error')} error(s), {self.count('warning')} warning(s), "
            f"{self.count('information')} note(s); {len(self.protocols)} protocol(s) checked"
            + (f", {self.order_sets} order set(s) recomputed" if self.order_sets else "")
        )

    def text_lines(self, *, include_information: bool = True) -> list[str]:
        shown = [i for i in self.issues if include_information or i.severity != "information"]
        return [issue.line() for issue in shown] + [self.summary()]

    def operation_outcome(self) -> dict[str, Any]:
        """The report as a FHIR OperationOutcome (an "All OK" information issue when clean)."""
        issues = [issue.outcome_issue() for issue in self.issues]
        if not issues:
            issues = [
                {"severity": "information", "code": "informational", "details": {"text": self.summary()}}
            ]
        return {"resourceType": "OperationOutcome", "issue": issues}


# --- layer 1: structure -------------------------------------------------------------------------


def medplum_validator(profiles_dir: str | os.PathLike[str] | None = None) -> StructuralValidator:
    """Medplum's validator (node) against R4, enforcing our profiles where resources claim them; one
    warm process per Python process (:mod:`fhir_desens.sandbox.validator_process`)."""
    from fhir_desens.fhir.profiles import default_profiles_dir

    folder = Path(profiles_dir) if profiles_dir is not None else default_profiles_dir()

    def validate(resources: Sequence[Mapping[str, Any]]) -> Sequence[Mapping[str, Any]]:
        from fhir_desens.sandbox.validator_process import warm_validator

        # one node process for this Python process, kept warm (definitions loaded once)
        return warm_validator(folder if folder.is_dir() else None, "enforce").validate(resources)

    return validate


def _outcome_issues(raw_issues: Iterable[Any], item: Loaded, layer: str) -> list[Issue]:
    """OperationOutcome issues (Medplum's, or ``profile_checks``') as ours; "All OK" notes dropped."""
    issues = []
    for raw in raw_issues:
        if not isinstance(raw, Mapping) or raw.get("severity") == "information":
            continue
        severity = str(raw.get("severity", "error"))
        details = raw.get("details")
        text = details.get("text") if isinstance(details, Mapping) else None
        issues.append(
            Issue(
                "error" if severity == "fatal" else severity,
                str(raw.get("code", "invalid")),
                str(text or raw.get("diagnostics") or "invalid"),
                item.source,
                item.entry,
                item.label,
                (raw.get("expression") or [None])[0],
                layer,
            )
        )
    return issues


def _issue(
    item: Loaded,
    severity: str,
    code: str,
    message: str,
    expression: str | None,
    layer: str,
    rule: str | None = None,
) -> Issue:
    return Issue(severity, code, message, item.source, item.entry, item.label, expression, layer, rule)


# --- layer 2: our profiles ----------------------------------------------------------------------


def _profile_issues(item: Loaded, r4_bindings: bool, targets: Mapping[str, str]) -> list[Issue]:
    from fhir_desens.fhir.bindings import required_binding_issues
    from fhir_desens.fhir.profiles import profile_checks

    try:
        raw = list(profile_checks(item.resource))
        if r4_bindings:
            raw += required_binding_issues(item.resource, targets)
    except (ValueError, KeyError, TypeError, AttributeError, ArithmeticError, IndexError) as error:
        # Content from other systems may hold null or wrongly typed elements anywhere: an issue, never a crash.
        detail = f"{type(error).__name__}: {error}"[:200]
        raw = [
            {
                "severity": "error",
                "code": "structure",
                "diagnostics": f"an element is missing or has the wrong type ({detail})",
            }
        ]
    return _dedupe(_outcome_issues(raw, item, "profile"))


def _dedupe(issues: list[Issue]) -> list[Issue]:
    """Our profiles bind some R4 elements again (relatedAction.relationship): one issue per place."""
    seen: set[tuple[str | None, str]] = set()
    kept = []
    for issue in issues:
        key = (issue.expression, issue.code)
        if issue.code == "code-invalid" and key in seen:
            continue
        seen.add(key)
        kept.append(issue)
    return kept


# --- layer 3: clinical --------------------------------------------------------------------------


def activity_index(loaded: Iterable[Loaded]) -> dict[str, Loaded]:
    """ActivityDefinitions by ``url|version``, and by ``url`` alone where only one version is present."""
    index: dict[str, Loaded] = {}
    by_url: dict[str, list[Loaded]] = {}
    for item in loaded:
        key = canonical_key(item.resource)
        if item.resource_type != "ActivityDefinition" or key is None:
            continue
        _, url, version = key
        by_url.setdefault(url, []).append(item)
        if version is not None:
            index.setdefault(f"{url}|{version}", item)
    for url, items in by_url.items():
        if len(items) == 1:
            index.setdefault(url, items[0])
    return index


def _claims(resource: Mapping[str, Any], profile: str) -> bool:
    meta = resource.get("meta")
    profiles = meta.get("profile") if isinstance(meta, Mapping) else None
    return isinstance(profiles, list) and any(
        isinstance(p, str) and p.split("|")[0] == profile for p in profiles
    )


def _clinical_issues(
    item: Loaded,
    activities: Mapping[str, Loaded],
    resources: Mapping[str, Mapping[str, Any]],
    report: ValidationReport,
) -> list[tuple[Loaded, Issue]]:
    """Layer 3 for one PlanDefinition; each issue with the resource it is in (the PD or an AD)."""
    protocol, findings = check_plan_definition(item.resource, resources)
    issues = []
    for f in findings:
        where = activities.get(f.activity, item) if f.activity else item
        issues.append((where, _issue(where, f.severity, f.code, f.message, f.expression, "clinical", f.rule)))
    if protocol is not None and not any(f.severity == "error" for f in findings):
        report.protocols.append((item, protocol))
    return issues


def _order_set_issues(
    loaded: Sequence[Loaded], report: ValidationReport, position: Mapping[int, int]
) -> list[tuple[int, Issue]]:
    """Layer 3 for order sets: recomputed from their parameters with the library and the inputs' protocols."""
    from fhir_desens.exchange.ordersets import order_set_issues
    from fhir_desens.protocol.library import builtin_protocols

    protocols = {**builtin_protocols(), **{protocol.id: protocol for _, protocol in report.protocols}}
    report.order_sets, found = order_set_issues(loaded, protocols)
    return [
        (
            position.get(id(issue.where), 0),
            _issue(
                issue.where,
                issue.severity,
                "business-rule",
                issue.message,
                issue.expression,
                "clinical",
                "order-set",
            ),
        )
        for issue in found
    ]


# --- across resources ---------------------------------------------------------------------------


def _duplicate_issues(loaded: Sequence[Loaded]) -> list[tuple[int, Issue]]:
    """Two resources with one type and url|version: an error when they differ, else a warning."""
    first: dict[tuple[str, str, str | None], Loaded] = {}
    issues = []
    for index, item in enumerate(loaded):
        key = canonical_key(item.resource)
        if key is None or key[0] not in CANONICAL_TYPES:
            continue
        if key not in first:
            first[key] = item
            continue
        difference = first_difference(first[key].resource, item.resource)
        if difference is None:
            severity, message = "warning", f"the same resource as {first[key].location} (imported once)"
        else:
            severity = "error"
            message = f"same url|version as {first[key].location} but different content (at {difference})"
        issues.append(
            (index, _issue(item, severity, "duplicate", message, None, "input", "duplicate-canonical"))
        )
    return issues


# --- the report ---------------------------------------------------------------------------------


def validate_loaded(
    loaded: Sequence[Loaded],
    *,
    structural: StructuralValidator | None,
    sources: Sequence[str] | None = None,
    r4_bindings: bool = True,
) -> ValidationReport:
    """Validate resources in every layer (``structural=None`` skips layer 1: no node needed).

    ``r4_bindings=False`` leaves R4's required bindings to the structural validator (the HL7 engine
    checks them itself; Medplum's does not).
    """
    report = ValidationReport(
        resources=list(loaded), sources=list(sources or dict.fromkeys(i.source for i in loaded))
    )
    keyed: list[tuple[int, Issue]] = _duplicate_issues(loaded)
    if structural is not None and loaded:
        outcomes = structural([item.resource for item in loaded])
        for index, (item, outcome) in enumerate(zip(loaded, outcomes, strict=True)):
            keyed += [
                (index, issue)
                for issue in _outcome_issues(outcome.get("issue") or [], item, "structure")
                if not is_urn_reference_noise(issue.message)
            ]
    full_urls = bundle_full_urls(loaded)
    for index, item in enumerate(loaded):
        for message, expression in unresolved_reference_issues(item, full_urls):
            keyed.append(
                (index, _issue(item, "error", "not-found", message, expression, "structure", "urn-reference"))
            )
    activities = activity_index(loaded)
    activity_resources = {key: found.resource for key, found in activities.items()}
    position = {id(item): index for index, item in enumerate(loaded)}
    targets_by_source: dict[str, dict[str, str]] = {}
    for item in loaded:  # the fullUrls of each input, once (not once per resource)
        if item.full_url:
            targets_by_source.setdefault(item.source, {})[item.full_url] = item.resource_type
    for index, item in enumerate(loaded):
        targets = targets_by_source.get(item.source, {})
        keyed += [(index, issue) for issue in _profile_issues(item, r4_bindings, targets)]
        if item.resource_type != "PlanDefinition":
            continue
        if not _claims(item.resource, c.PROFILE_PROTOCOL):
            note = "does not claim the fhir-desens protocol profile: its doses were not checked"
            keyed.append((index, _issue(item, "information", "informational", note, None, "clinical")))
            continue
        for where, issue in _clinical_issues(item, activities, activity_resources, report):
            keyed.append((position.get(id(where), index), issue))
    keyed += _order_set_issues(loaded, report, position)
    keyed.sort(key=lambda pair: (pair[0], _LAYER_ORDER.get(pair[1].layer, 9)))
    report.issues = [issue for _, issue in keyed]
    return report


def validate_paths(
    paths: Sequence[str | os.PathLike[str]],
    *,
    structural: StructuralValidator | None,
    r4_bindings: bool = True,
) -> ValidationReport:
    """Load and validate files or folders; an unusable input is a ``fatal`` issue, the others still run."""
    loaded: list[Loaded] = []
    unusable: list[Issue] = []
    for path in paths:
        try:
            loaded += load_path(path)
        except (FhirFormatError, InputError, MappingError) as error:
            message = str(error).removeprefix(f"{path}: ")  # the location already names the file
            unusable.append(Issue("fatal", "structure", message, str(path)))
    report = validate_loaded(
        loaded, structural=structural, sources=[str(p) for p in paths], r4_bindings=r4_bindings
    )
    report.issues = unusable + report.issues
    return report
