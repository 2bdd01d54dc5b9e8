"""Writing the confirmed outcome to the chart: idempotent, never overwriting, and honest about what happened.

One run writes, in order, and reports each write (:class:`WriteStep`):

* update path: the allergy record (GET, append, ``PUT`` with ``If-Match``; on 409 or 412 re-read and
  re-apply our append-only additions, up to three attempts; if someone else changed the status,
  verification, code or criticality since the preview, stop and return both versions as a
  :class:`Conflict`), then a Provenance whose target is the new version;
* clinical-note path: a DocumentReference (never a second allergy), then its Provenance;
* when the allergist accepted adding a missing drug: a new AllergyIntolerance, then its Provenance;
* nothing writable, or the chart write failed or stopped: a task for the allergist in the app
  (:mod:`.tasks`), with the copy-ready text.

Before each write the chart is searched for what this outcome already wrote (the note's reference, the
business identifier of the clinical note or new allergy, a Provenance carrying the outcome identifier), so
confirming twice writes once. When the server does not answer a write, the chart is read back to find out
whether it happened; a create whose outcome stays unknown is never resent automatically. A failure stops
the run: the report names what was written, what was not and why, and what was not attempted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from fhir_desens.client.fhir_rest import FhirClient, Versioned
from fhir_desens.course.outcome.allergy_change import apply_additions, guarded_changes, has_outcome
from fhir_desens.course.outcome.document import outcome_identifier
from fhir_desens.course.outcome.preview import Preview, find_note
from fhir_desens.course.outcome.record import SessionOutcome
from fhir_desens.course.outcome.strategy import WritePath
from fhir_desens.course.outcome.tasks import ChartTask, TaskBook, record_written
from fhir_desens.course.outcome.wording import outcome_id
from fhir_desens.course.outcome.write_report import Conflict, StepStatus, WriteReport, WriteStep
from fhir_desens.errors import ConflictError, DesensError, FhirServerError, TemporaryServerError
from fhir_desens.fhir.provenance import APP_NAME, provenance_resource

__all__ = [
    "MAX_ATTEMPTS",
    "Conflict",
    "StepStatus",
    "WriteReport",
    "WriteStep",
    "outcome_provenance",
    "write_outcome",
]

logger = logging.getLogger(__name__)

#: Attempts at the allergy update when the server answers 409/412 (the record changed meanwhile).
MAX_ATTEMPTS = 3
_NOT_OFFERED = "this EHR does not accept it"


class _Stop(Exception):
    """A write failed: the steps so far stand, the rest are not attempted."""


class _Run:
    def __init__(self) -> None:
        self.steps: list[WriteStep] = []

    def add(self, step: WriteStep) -> WriteStep:
        self.steps.append(step)
        if step.status is StepStatus.FAILED:
            raise _Stop
        return step

    def skip(self, pending: list[tuple[str, bool]]) -> None:
        """The writes a failure left out: not attempted, or not offered by this EHR at all."""
        self.steps.extend(
            WriteStep(w, StepStatus.NOT_ATTEMPTED, detail="an earlier write failed")
            if offered
            else WriteStep(w, StepStatus.NOT_OFFERED, detail=_NOT_OFFERED)
            for w, offered in pending
        )


# ----------------------------------------------------------------------------------------------
# Provenance


def outcome_provenance(
    target: str, outcome: SessionOutcome, recorded_at: datetime, activity: str
) -> dict[str, Any]:
    """A Provenance for ``target`` (a versioned reference), carrying the outcome identifier as its source."""
    resource = provenance_resource(
        [target],
        recorded_at.isoformat(timespec="seconds"),
        activity,
        author=outcome.author,
        author_name=outcome.author_name or APP_NAME,
    )
    resource["entity"] = [
        {
            "role": "source",
            "what": {
                "identifier": outcome_identifier(outcome),
                "display": "fhir-desens desensitization outcome",
            },
        }
    ]
    return resource


def _carries(provenance: Mapping[str, Any], identifier: Mapping[str, str]) -> bool:
    for entity in provenance.get("entity") or []:
        what = entity.get("what") if isinstance(entity, Mapping) else None
        found = what.get("identifier") if isinstance(what, Mapping) else None
        if isinstance(found, Mapping) and (found.get("system"), found.get("value")) == (
            identifier["system"],
            identifier["value"],
        ):
            return True
    return False


def _versioned_reference(written: Versioned) -> str:
    return f"{written.reference}/_history/{written.version_id}" if written.version_id else written.reference


def _provenance_step(
    client: FhirClient, preview: Preview, target: str, activity: str, what: str
) -> WriteStep:
    if not preview.decision.provenance:
        return WriteStep(what, StepStatus.NOT_OFFERED, detail=_NOT_OFFERED)
    identifier = outcome_identifier(preview.outcome)
    existing = client.search_all("Provenance", {"target": target})
    if any(_carries(p, identifier) for p in existing):
        return WriteStep(what, StepStatus.ALREADY_THERE, target)
    resource = outcome_provenance(target, preview.outcome, preview.recorded_at, activity)
    created = _guarded_create(
        client,
        resource,
        lambda: [p for p in client.search_all("Provenance", {"target": target}) if _carries(p, identifier)],
    )
    return WriteStep(what, StepStatus.WRITTEN, f"{created.reference} for {target}")


# ----------------------------------------------------------------------------------------------
# creates whose outcome may be unknown


class _Unknown(DesensError):
    pass


def _guarded_create(
    client: FhirClient, resource: Mapping[str, Any], look: Callable[[], list[dict[str, Any]]]
) -> Versioned:
    """Create once; when the server does not answer, look whether it was created (never resend)."""
    try:
        return client.create(resource)
    except TemporaryServerError as error:
        try:
            found = look()
        except DesensError:
            raise _Unknown(
                f"the server did not answer ({error}) and the chart could not be read back: check it before "
                "writing again"
            ) from None
        if found:
            return Versioned(found[0], (found[0].get("meta") or {}).get("versionId"))
        raise


# ----------------------------------------------------------------------------------------------
# the allergy update


def _introducing_version(client: FhirClient, current: Versioned, marker: str) -> str:
    """The versioned reference of the first version carrying our note (what its Provenance targets)."""
    version = current.version_id
    if version is None:
        return current.reference
    for _ in range(5):
        if not version.isdigit() or int(version) <= 1:
            break
        earlier = str(int(version) - 1)
        try:
            older = client.vread("AllergyIntolerance", current.id, earlier)
        except DesensError:
            break
        if not has_outcome(older.resource, marker):
            break
        version = earlier
    return f"{current.reference}/_history/{version}"


def _update_allergy(
    client: FhirClient, preview: Preview, previewed: Mapping[str, Any], run: _Run
) -> tuple[str | None, Conflict | None]:
    """The allergy note (and reaction); returns the versioned target for the Provenance, or a conflict."""
    assert preview.allergy is not None
    what = f"note on the {preview.outcome.drug.text} allergy record" + (
        " with the breakthrough reaction" if preview.outcome.reactions else ""
    )
    allergy_id = preview.allergy.id
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            current = client.read("AllergyIntolerance", allergy_id)
        except (
            FhirServerError
        ) as error:  # nothing written yet: report it, leave a task (run.add stops the run)
            run.add(WriteStep(what, StepStatus.FAILED, preview.allergy.reference, _unreadable(error)))
            return None, None
        if has_outcome(current.resource, preview.marker):
            target = _introducing_version(client, current, preview.marker)
            run.add(WriteStep(what, StepStatus.ALREADY_THERE, target, "nothing added"))
            return target, None
        changed = guarded_changes(previewed, current.resource)
        if changed:
            conflict = Conflict(dict(previewed), current.resource, tuple(changed))
            run.steps.append(WriteStep(what, StepStatus.FAILED, current.reference, conflict.message))
            return None, conflict
        if current.version_id is None:
            run.add(
                WriteStep(
                    what, StepStatus.FAILED, current.reference, "the EHR gives no version to update safely"
                )
            )
        changed_resource = apply_additions(current.resource, preview.additions)
        try:
            written = client.update(changed_resource, if_match=current.version_id)
        except ConflictError:
            logger.info("allergy update attempt %d met a newer version; re-reading", attempt)
            continue
        except TemporaryServerError as error:
            return _after_no_answer(client, preview, allergy_id, what, error, run), None
        except FhirServerError as error:  # refused for good (405, 403, 422...): retrying cannot help
            run.add(WriteStep(what, StepStatus.FAILED, current.reference, _refused(error), refused=True))
            return None, None
        target = _versioned_reference(written)
        run.add(WriteStep(what, StepStatus.WRITTEN, target))
        return target, None
    run.add(
        WriteStep(
            what,
            StepStatus.FAILED,
            preview.allergy.reference,
            f"the record changed {MAX_ATTEMPTS} times while writing; nothing was written, try again",
        )
    )
    return None, None


def _refused(error: FhirServerError) -> str:
    """Why the EHR refused the allergy update, in its own words. A refusal is final: the report (and the task it
    leaves) says so, where an error page would say "try again later"."""
    status = f" (HTTP {error.status})" if error.status else ""
    issues = (error.outcome or {}).get("issue") or []
    said = [str(i["diagnostics"]) for i in issues if isinstance(i, Mapping) and i.get("diagnostics")]
    return f"the EHR refused the update{status}: {'; '.join(said) or error}"  # its words, else the request


def _unreadable(error: FhirServerError) -> str:
    return f"the allergy record could not be read, nothing was written: {error}"


def _after_no_answer(
    client: FhirClient, preview: Preview, allergy_id: str, what: str, error: DesensError, run: _Run
) -> str | None:
    """The PUT got no answer: read back to learn whether the note is there."""
    try:
        check = client.read("AllergyIntolerance", allergy_id)
    except DesensError:
        run.add(
            WriteStep(what, StepStatus.FAILED, None, f"{error}; the record could not be read back: check it")
        )
        return None
    if has_outcome(check.resource, preview.marker):
        target = _introducing_version(client, check, preview.marker)
        run.add(WriteStep(what, StepStatus.WRITTEN, target, "confirmed by reading the record back"))
        return target
    run.add(
        WriteStep(
            what, StepStatus.FAILED, check.reference, f"{error}; reading it back shows nothing was added"
        )
    )
    return None


# ----------------------------------------------------------------------------------------------
# creates: a clinical note, a new allergy record


def _create_once(
    client: FhirClient,
    resource: dict[str, Any],
    look: Callable[[], list[dict[str, Any]]],
    what: str,
    run: _Run,
) -> str | None:
    existing = look()
    if existing:
        found = Versioned(existing[0], (existing[0].get("meta") or {}).get("versionId"))
        run.add(WriteStep(what, StepStatus.ALREADY_THERE, found.reference, "nothing added"))
        return _versioned_reference(found)
    try:
        created = _guarded_create(client, resource, look)
    except DesensError as error:
        run.add(WriteStep(what, StepStatus.FAILED, None, str(error)))
        return None
    target = _versioned_reference(created)
    run.add(WriteStep(what, StepStatus.WRITTEN, target))
    return target


def _find_added_allergy(client: FhirClient, outcome: SessionOutcome) -> list[dict[str, Any]]:
    identifier = outcome_identifier(outcome)
    params = {"identifier": f"{identifier['system']}|{identifier['value']}", "patient": outcome.patient}
    return client.search_all("AllergyIntolerance", params)


# ----------------------------------------------------------------------------------------------
# the run


def _task(preview: Preview, reason: str, now: datetime) -> ChartTask:
    return ChartTask(
        outcome_id=outcome_id(preview.outcome),
        patient=preview.outcome.patient,
        drug=preview.outcome.drug.text,
        reason=reason,
        text=preview.copy_text,
        created_at=now,
    )


def write_outcome(
    client: FhirClient,
    preview: Preview,
    *,
    tasks: TaskBook,
    now: datetime,
    add_allergy: bool = False,
    previewed_version: str | None = None,
) -> WriteReport:
    """Write what the allergist confirmed on ``preview``; see the module documentation.

    ``previewed_version`` is the allergy version the allergist saw (when the preview was re-prepared at
    confirmation): changes to guarded elements since then stop the write. ``add_allergy`` confirms adding
    the drug to the allergy list when it is absent.
    """
    run = _Run()
    conflict: Conflict | None = None
    path = preview.decision.path
    try:
        if path is WritePath.UPDATE_ALLERGY and preview.allergy is not None:
            previewed = _previewed(client, preview, previewed_version)
            target, conflict = _update_allergy(client, preview, previewed, run)
            _provenance(client, preview, target, "UPDATE", "Provenance", run)
        elif path is WritePath.CLINICAL_NOTE and preview.document is not None:
            look = lambda: find_note(client, preview.outcome)  # noqa: E731
            target = _create_once(client, preview.document, look, "clinical note", run)
            _provenance(client, preview, target, "CREATE", "Provenance", run)
        if add_allergy and preview.proposed_allergy is not None:
            look = lambda: _find_added_allergy(client, preview.outcome)  # noqa: E731
            what = f"{preview.outcome.drug.text} added to the allergy list"
            target = _create_once(client, preview.proposed_allergy, look, what, run)
            _provenance(client, preview, target, "CREATE", "Provenance of the new record", run)
    except _Stop:
        run.skip(_pending(run, preview, add_allergy))
    report = WriteReport(path, tuple(run.steps), preview.copy_text, conflict)
    if report.chart_updated or _added(run):
        record_written(tasks, _task(preview, "written to the chart", now), now)
    else:
        reason = _task_reason(report, preview)
        task = tasks.record(_task(preview, reason, now))
        # the reason is said once, with the task (the result page), not again in this line
        run.steps.append(
            WriteStep("task for the allergist: copy the outcome into the chart", StepStatus.RECORDED)
        )
        report = WriteReport(path, tuple(run.steps), preview.copy_text, conflict, task)
    return report


def _pending(run: _Run, preview: Preview, add_allergy: bool) -> list[tuple[str, bool]]:
    """What a stopped run left out, each with whether this EHR offers it at all."""
    provenance = preview.decision.provenance
    adding = f"{preview.outcome.drug.text} added to the allergy list"
    last = run.steps[-1].what
    pending = []
    if last == adding:
        pending.append(("Provenance of the new record", provenance))
    elif not last.startswith("Provenance"):
        pending.append(("Provenance", provenance))
    if add_allergy and preview.proposed_allergy is not None and all(s.what != adding for s in run.steps):
        pending.extend([(adding, True), ("Provenance of the new record", provenance)])
    return pending


def _added(run: _Run) -> bool:
    return any(
        s.what.endswith("added to the allergy list")
        and s.status in (StepStatus.WRITTEN, StepStatus.ALREADY_THERE)
        for s in run.steps
    )


def _provenance(
    client: FhirClient, preview: Preview, target: str | None, activity: str, what: str, run: _Run
) -> None:
    """The Provenance of a write that happened (``target`` None: nothing was written, nothing to attest)."""
    if target is None:
        return
    try:
        step = _provenance_step(client, preview, target, activity, what)
    except DesensError as error:
        step = WriteStep(what, StepStatus.FAILED, None, str(error))
    run.add(step)


def _previewed(client: FhirClient, preview: Preview, previewed_version: str | None) -> Mapping[str, Any]:
    assert preview.allergy is not None
    if previewed_version is None or previewed_version == preview.allergy.version_id:
        return preview.allergy.resource
    return client.vread("AllergyIntolerance", preview.allergy.id, previewed_version).resource


def _task_reason(report: WriteReport, preview: Preview) -> str:
    if report.conflict is not None:
        return report.conflict.message
    failed = next((s for s in report.steps if s.status is StepStatus.FAILED), None)
    if failed is not None:
        return f"the chart was not updated: {failed.detail}"
    if preview.decision.path is WritePath.UPDATE_ALLERGY:
        return "the drug is not on the allergy list, so there was no allergy record to update"
    return "this EHR accepts neither an allergy update nor a clinical note from this app: " + "; ".join(
        preview.decision.reasons
    )
