"""What a failed FHIR request was doing, in the words of the clinician who waited for it.

The technical message ("GET /fhir/AllergyIntolerance: timed out (connected, but no answer within the read
timeout) after 3 attempt(s)") serves logs, the CLI and the EHR administrator; a nurse needs to know what the app was doing, what
happened and whether anything may have reached the chart. :func:`plain_failure` builds that sentence
from the request's method and path; :mod:`fhir_desens.client.http` stores it on the error
(``FhirServerError.plain``) and the app shows it, with the technical message under "Details".
"""

from __future__ import annotations

#: A resource type's collection (a search or a create) and one record of it, in clinical words.
_RECORDS: dict[str, tuple[str, str]] = {
    "AllergyIntolerance": ("the allergy list", "an allergy record"),
    "Patient": ("the patient list", "the patient's record"),
    "MedicationRequest": ("the medication orders", "a medication order"),
    "RequestGroup": ("the desensitization orders", "the desensitization orders"),
    "Observation": ("the observations (vital signs, height, weight)", "an observation"),
    "Condition": ("the problem list", "a problem list entry"),
    "Encounter": ("the encounters", "the encounter"),
    "DocumentReference": ("the clinical notes", "a clinical note"),
    "Provenance": ("the record of who wrote what", "a record of who wrote what"),
    "Consent": ("the consents", "a consent"),
    "Procedure": ("the procedures", "a procedure"),
    "MedicationAdministration": ("the medication administrations", "a medication administration"),
    "Task": ("the tasks", "a task"),
    "Medication": ("the medications", "a medication"),
    "Practitioner": ("the clinicians", "your user record"),
    "PractitionerRole": ("the clinicians' roles", "a clinician's role"),
    "PlanDefinition": ("the protocols", "a protocol"),
    "ActivityDefinition": ("the protocols' drug steps", "a protocol's drug step"),
    "Library": ("the protocol libraries", "a protocol library"),
    "metadata": ("what the EHR supports", "what the EHR supports"),
}
_CHART = ("the chart", "a record in the chart")
_WRITES = {"POST": "writing", "PUT": "updating", "PATCH": "updating", "DELETE": "removing"}


def _what(path: str) -> tuple[str, bool]:
    """The words for what the path names, and whether it names one record (type/id)."""
    segments = [s for s in path.split("/") if s]
    for index, segment in enumerate(segments):
        if segment in _RECORDS:
            one = index + 1 < len(segments) and not segments[index + 1].startswith(("_", "$"))
            return _RECORDS[segment][1 if one else 0], one
    return _CHART[0], False


def doing(method: str, path: str) -> str:
    """``reading the allergy list``, ``writing to the chart``, ``updating an allergy record``."""
    words, _one = _what(path)
    verb = method.upper()
    if verb in ("GET", "HEAD"):
        return f"reading {words}"
    if verb == "POST" and words == _CHART[0]:
        return "writing to the chart"
    return f"{_WRITES.get(verb, 'sending')} {words}"


def plain_failure(method: str, path: str, *, status: int | None, timed_out: bool, attempts: int) -> str:
    """What the app was doing and what the EHR did; for a write that timed out, that it may be in the
    chart (a read changes nothing, and callers say what they wrote)."""
    action = doing(method, path)
    tries = f" (tried {attempts} times)" if attempts > 1 else ""
    if status is None:
        happened = (
            f"The EHR did not answer in time while the app was {action}{tries}."
            if timed_out
            else f"The app could not reach the EHR while it was {action}{tries}."
        )
    elif status in (409, 412):
        return (
            f"Someone changed {_what(path)[0]} in the chart after the app read it, so the app did not "
            "overwrite it. Reload the page to see what the chart holds now."
        )
    elif status >= 500 or status in (408, 429):
        happened = f"The EHR answered with an error while the app was {action}."
    else:
        happened = f"The EHR refused the app's request while it was {action}."
    if status is None and timed_out and method.upper() not in ("GET", "HEAD"):
        return (
            f"{happened} It may or may not have reached the chart: reload the page, and the app reads "
            "the chart before writing again."
        )
    return happened


__all__ = ["doing", "plain_failure"]
