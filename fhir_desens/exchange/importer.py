"""Import protocols into a FHIR server: validate everything, then write each resource once.

**Batches of conditional creates, not one transaction.** The test server rolls a failed transaction
back, but EHR servers may not (fhir-smart.md 5.2: Medplum's engine alone keeps the entries written
before the failure), and a transaction with ``ifNoneExist`` silently *matches* a resource that has the
same url|version but different content, which must be a reported conflict. A ``batch`` answers for
each entry on its own, so the report stays exact on any server. So the import:

1. validates every resource (structure, our profiles, clinical consistency) and writes nothing
   when anything is invalid;
2. reads what the server already has for each canonical url (searches only) and compares meaningful
   content (``content.same_content``: ignoring id, meta and text). Identical resources are
   "already present"; any different resource with the same url|version is a conflict, and then
   nothing is written;
3. creates the missing resources with ``POST`` + ``If-None-Exist: url=…&version=…`` in dependency
   order (StructureDefinitions, CodeSystems, ValueSets, then ActivityDefinitions, then the
   PlanDefinitions that reference them), so at any moment the server holds no protocol whose steps
   are missing. Where the server's CapabilityStatement lists ``batch`` (or ``transaction``: HAPI FHIR
   lists only that and takes both), the creates travel as
   ``batch`` Bundles of up to :data:`BATCH_SIZE` entries, each of one resource type (the next type
   only once every entry of the previous ones was created); a batch the server refuses as a whole
   (4xx: too large, not supported) is sent again one resource at a time, as on servers without
   batch. A conditional create that matches (someone wrote it meanwhile) is compared again. A match
   with a *different* url means the server compares canonical urls as prefixes (Medplum's engine
   does: ``url=…/step-1`` finds ``…/step-10``); the resource is then created without the condition,
   relying on the exact search of step 2. The first failure stops the import after its batch.

The :class:`ImportReport` says, for every resource, exactly what happened: created (with the server
id), already present, conflict, failed, not attempted. Every write is idempotent, so running the same
import again after a failure completes it without duplicates.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlencode

from fhir_desens.client.capabilities import supports_batch
from fhir_desens.client.fhir_rest import FhirClient, Versioned
from fhir_desens.client.http import describe_outcome
from fhir_desens.errors import (
    AuthError,
    ConflictError,
    DesensError,
    FhirServerError,
    TemporaryServerError,
    ValidationFailed,
)
from fhir_desens.exchange.content import CANONICAL_TYPES, canonical_key, first_difference
from fhir_desens.exchange.load import Loaded
from fhir_desens.exchange.validate import Issue, StructuralValidator, ValidationReport, validate_loaded

__all__ = [
    "ALREADY_PRESENT",
    "BATCH_SIZE",
    "CONFLICT",
    "CREATED",
    "FAILED",
    "NOT_ATTEMPTED",
    "ImportItem",
    "ImportReport",
    "import_resources",
]

logger = logging.getLogger(__name__)

CREATED: Final = "created"
ALREADY_PRESENT: Final = "already present"
CONFLICT: Final = "conflict"
FAILED: Final = "failed"
NOT_ATTEMPTED: Final = "not attempted"
_STATUSES: Final = (CREATED, ALREADY_PRESENT, CONFLICT, FAILED, NOT_ATTEMPTED)
_SEARCH_PAGE: Final = "200"
#: Conditional creates per batch Bundle (a few hundred kB of protocol resources).
BATCH_SIZE: Final = 100


@dataclass
class ImportItem:
    """One canonical resource to import and what happened to it."""

    loaded: Loaded
    resource_type: str
    url: str
    version: str
    status: str = NOT_ATTEMPTED
    server_id: str | None = None
    detail: str | None = None

    @property
    def canonical(self) -> str:
        return f"{self.url}|{self.version}"

    def line(self) -> str:
        text = f"{self.status:<15} {self.resource_type} {self.canonical}"
        if self.server_id:
            text += f" -> {self.resource_type}/{self.server_id}"
        return text + (f": {self.detail}" if self.detail else "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "resourceType": self.resource_type,
            "url": self.url,
            "version": self.version,
            "status": self.status,
            "id": self.server_id,
            "detail": self.detail,
            "source": self.loaded.location,
        }


@dataclass
class ImportReport:
    """The outcome of one import; ``error`` is set when it did not complete."""

    server: str
    items: list[ImportItem] = field(default_factory=list)
    validation: ValidationReport = field(default_factory=ValidationReport)
    error: DesensError | None = None

    def count(self, status: str) -> int:
        return sum(1 for item in self.items if item.status == status)

    @property
    def exit_code(self) -> int:
        return self.error.exit_code if self.error is not None else 0

    def summary(self) -> str:
        counts = ", ".join(f"{self.count(s)} {s}" for s in _STATUSES)
        state = "complete" if self.error is None else "NOT complete"
        return f"import into {self.server} {state}: {counts}"

    def text_lines(self) -> list[str]:
        return [item.line() for item in self.items] + [self.summary()]

    def as_dict(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "complete": self.error is None,
            "error": str(self.error) if self.error is not None else None,
            "counts": {status: self.count(status) for status in _STATUSES},
            "items": [item.as_dict() for item in self.items],
            "validation": self.validation.operation_outcome(),
        }


def _plan(loaded: Sequence[Loaded]) -> tuple[list[ImportItem], list[Issue]]:
    """The canonical resources to write, in dependency order, once each; and what cannot be imported."""
    items: list[ImportItem] = []
    problems: list[Issue] = []
    seen: set[tuple[str, str, str | None]] = set()
    for item in loaded:
        key = canonical_key(item.resource)
        if item.resource_type not in CANONICAL_TYPES:
            problem = f"not a protocol artifact; import accepts {', '.join(CANONICAL_TYPES)}"
        elif key is None or key[2] is None:
            problem = "url and version are needed to import without duplicates"
        else:
            if key not in seen:  # identical duplicates are imported once (different ones are invalid)
                seen.add(key)
                items.append(ImportItem(item, key[0], key[1], key[2]))
            continue
        problems.append(
            Issue("error", "not-supported", problem, item.source, item.entry, item.label, rule="import")
        )
    items.sort(key=lambda i: CANONICAL_TYPES.index(i.resource_type))
    return items, problems


def _existing(client: FhirClient, items: Sequence[ImportItem]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """What the server holds for each (type, url), every version: one search per canonical url."""
    found: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for resource_type, url in dict.fromkeys((i.resource_type, i.url) for i in items):
        matches = client.search_all(resource_type, [("url", url), ("_count", _SEARCH_PAGE)])
        found[(resource_type, url)] = [r for r in matches if r.get("url") == url]
    return found


def _classify(item: ImportItem, on_server: list[dict[str, Any]]) -> None:
    same_version = [r for r in on_server if r.get("version") == item.version]
    if len(same_version) > 1:
        item.status = CONFLICT
        item.detail = f"the server holds {len(same_version)} resources with this url|version"
        return
    if not same_version:
        return
    existing = same_version[0]
    item.server_id = str(existing.get("id", "")) or None
    difference = first_difference(item.loaded.resource, existing)
    if difference is None:
        item.status = ALREADY_PRESENT
    else:
        item.status, item.detail = CONFLICT, f"the server's copy differs at {difference}; not overwritten"


_PREFIX_MATCHING: Final = "created without If-None-Exist: the server matched other urls as prefixes"


def _condition(item: ImportItem) -> list[tuple[str, str]]:
    return [("url", item.url), ("version", item.version)]


def _write(client: FhirClient, item: ImportItem) -> None:
    """One conditional create; a match is compared, a match of other urls created unconditionally."""
    try:
        result: Versioned | None = client.create(item.loaded.resource, if_none_exist=_condition(item))
    except ConflictError as error:
        if error.status != 412:
            raise
        result = None  # "several matches", though our exact search found none: see below
    if result is None or (not result.created and _canonical(result.resource) != (item.url, item.version)):
        _create_unconditionally(client, item)
        return
    _record(item, result.resource, created=result.created)


def _create_unconditionally(client: FhirClient, item: ImportItem) -> None:
    # The server matched other canonicals: some engines (Medplum's) compare uri parameters as
    # prefixes, so url=.../step-1 finds .../step-10. Our exact search found nothing a moment ago.
    logger.info("%s: the server matched other urls; creating it unconditionally", item.canonical)
    result = client.create(item.loaded.resource)
    item.detail = _PREFIX_MATCHING
    _record(item, result.resource, created=result.created)


def _record(item: ImportItem, stored: dict[str, Any], *, created: bool) -> None:
    """What a create answered: created, or an existing resource to compare (written meanwhile)."""
    item.server_id = str(stored.get("id", "")) or None
    if created:
        item.status = CREATED
        return
    _classify(item, [stored])  # written by someone else since we looked


def _canonical(resource: dict[str, Any]) -> tuple[Any, Any]:
    return resource.get("url"), resource.get("version")


# --- batches ------------------------------------------------------------------------------------


def _chunks(items: Sequence[ImportItem], size: int) -> list[list[ImportItem]]:
    """Consecutive items of one resource type, at most ``size`` at a time (dependency order kept)."""
    chunks: list[list[ImportItem]] = []
    for item in items:
        last = chunks[-1] if chunks else None
        if last is not None and len(last) < size and last[0].resource_type == item.resource_type:
            last.append(item)
        else:
            chunks.append([item])
    return chunks


def _batch_bundle(chunk: Sequence[ImportItem]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": item.loaded.resource,
                "request": {
                    "method": "POST",
                    "url": item.resource_type,
                    "ifNoneExist": urlencode(_condition(item)),
                },
            }
            for item in chunk
        ],
    }


def _entry_status(entry: Any) -> int | None:
    response = entry.get("response") if isinstance(entry, Mapping) else None
    status = str(response.get("status", "")) if isinstance(response, Mapping) else ""
    code = status.strip().split(" ", 1)[0]
    return int(code) if code.isdigit() else None


def _entry_error(item: ImportItem, entry: Any, status: int | None) -> DesensError:
    """The taxonomy error of a failed batch entry, naming the resource and what the server said."""
    response = entry.get("response") if isinstance(entry, Mapping) else None
    outcome = response.get("outcome") if isinstance(response, Mapping) else None
    outcome = outcome if isinstance(outcome, Mapping) else None
    summary = describe_outcome(outcome)
    message = f"create {item.resource_type} (batch entry): HTTP {status or 'status missing'}"
    message += f": {summary}" if summary else ""
    if status is not None and (status >= 500 or status == 429):
        return TemporaryServerError(message, status, outcome)
    if status in (409, 412):
        return ConflictError(message, status, outcome)
    return FhirServerError(message, status, outcome)


def _stored(client: FhirClient, item: ImportItem, entry: Mapping[str, Any]) -> dict[str, Any]:
    """The resource a batch entry answered with, read from its location when the server left it out."""
    resource = entry.get("resource")
    if isinstance(resource, Mapping) and resource.get("resourceType") == item.resource_type:
        return dict(resource)
    response = entry.get("response")
    location = str(response.get("location") or "") if isinstance(response, Mapping) else ""
    parts = location.split("/_history/", 1)[0].rstrip("/").split("/")
    if len(parts) < 2 or parts[-2] != item.resource_type:
        raise FhirServerError(
            f"create {item.resource_type} (batch entry): the server gave no resource or location"
        )
    return client.read(item.resource_type, parts[-1]).resource


def _write_batch(client: FhirClient, chunk: Sequence[ImportItem]) -> DesensError | None:
    """One batch of conditional creates; every item gets its status; the first failure is returned."""
    entries = list(client.batch(_batch_bundle(chunk)).get("entry") or [])
    failure: DesensError | None = None
    for item, entry in zip(chunk, entries + [None] * (len(chunk) - len(entries)), strict=True):
        status = _entry_status(entry)
        try:
            if status in (200, 201) and isinstance(entry, Mapping):
                stored = _stored(client, item, entry)
                if status == 200 and _canonical(stored) != (item.url, item.version):
                    _create_unconditionally(client, item)
                else:
                    _record(item, stored, created=status == 201)
            elif status == 412:  # "several matches", though our exact search found none
                _create_unconditionally(client, item)
            else:
                raise _entry_error(item, entry, status)
        except DesensError as error:
            item.status, item.detail = FAILED, str(error)
            failure = failure or error
        logger.info("import %s %s: %s", item.resource_type, item.canonical, item.status)
    return failure


def _refused_as_a_whole(error: DesensError) -> bool:
    """A 4xx for the whole batch Bundle: nothing of it was written (too large, batch not supported)."""
    return (
        isinstance(error, FhirServerError)
        and not isinstance(error, TemporaryServerError | AuthError)
        and error.status is not None
        and 400 <= error.status < 500
        and error.status not in (401, 403, 409, 412)
    )


# --- the import ---------------------------------------------------------------------------------


def import_resources(
    client: FhirClient,
    loaded: Sequence[Loaded],
    *,
    structural: StructuralValidator | None,
    sources: Sequence[str] | None = None,
    batch_size: int = BATCH_SIZE,
) -> ImportReport:
    """Validate, check the server, then write; never raises for server trouble (see ``report.error``).

    ``batch_size`` creates per batch Bundle where the server takes batches; 1 writes one at a time.
    """
    report = ImportReport(client.base_url)
    items, problems = _plan(loaded)
    report.items = items
    report.validation = validate_loaded(loaded, structural=structural, sources=sources)
    report.validation.issues += problems
    if not report.validation.valid:
        errors = report.validation.errors()
        report.error = ValidationFailed(
            f"{len(errors)} validation error(s); nothing was written", [i.outcome_issue() for i in errors]
        )
        return report
    try:
        existing = _existing(client, items)
    except DesensError as error:
        report.error = error
        return report
    for item in items:
        _classify(item, existing[(item.resource_type, item.url)])
    conflicts = report.count(CONFLICT)
    if conflicts:
        report.error = ConflictError(
            f"{conflicts} resource(s) already on the server with the same url|version "
            "and different content; nothing was written"
        )
        return report
    report.error = _write_all(client, [item for item in items if item.status == NOT_ATTEMPTED], batch_size)
    return report


def _write_all(client: FhirClient, todo: Sequence[ImportItem], batch_size: int) -> DesensError | None:
    """Create ``todo`` in order, in batches where the server takes them; the error that stopped it."""
    chunks = _chunks(todo, batch_size) if batch_size > 1 and len(todo) > 1 and _takes_batch(client) else []
    done = 0
    for chunk in chunks:
        try:
            failure = _write_batch(client, chunk)
        except DesensError as error:
            if _refused_as_a_whole(error):
                logger.info("the server refused a batch (%s): writing one resource at a time", error)
                break
            for item in chunk:  # a timeout or a 5xx: some entries may have been written
                item.status, item.detail = FAILED, f"{error} (running the import again completes it)"
            return error
        done += len(chunk)
        if failure is None:
            failure = _conflict_error(chunk)
        if failure is not None:
            return failure
    for item in todo[done:]:
        try:
            _write(client, item)
        except DesensError as error:
            item.status, item.detail = FAILED, str(error)
            return error
        logger.info("import %s %s: %s", item.resource_type, item.canonical, item.status)
        if item.status == CONFLICT:
            return _conflict_error([item])
    return None


def _takes_batch(client: FhirClient) -> bool:
    """Whether to send batches: the statement lists ``batch``, or ``transaction`` (the same endpoint;
    HAPI FHIR lists only ``transaction`` and takes both). A refused batch falls back anyway."""
    try:
        statement = client.capabilities()
        return supports_batch(statement) or supports_batch(_transaction_as_batch(statement))
    except DesensError as error:  # no statement: one resource at a time, as before batches
        logger.info("the CapabilityStatement could not be read (%s): no batches", type(error).__name__)
        return False


def _transaction_as_batch(statement: Mapping[str, Any]) -> dict[str, Any]:
    rests = [r for r in statement.get("rest") or [] if isinstance(r, Mapping)]
    return {
        "rest": [
            {
                **rest,
                "interaction": [
                    {"code": "batch"} if isinstance(i, Mapping) and i.get("code") == "transaction" else i
                    for i in rest.get("interaction") or []
                ],
            }
            for rest in rests
        ]
    }


def _conflict_error(written: Sequence[ImportItem]) -> ConflictError | None:
    conflicting = next((item for item in written if item.status == CONFLICT), None)
    if conflicting is None:
        return None
    return ConflictError(
        f"{conflicting.resource_type} {conflicting.canonical} was written by someone else "
        "meanwhile, with different content; the import stopped there"
    )
