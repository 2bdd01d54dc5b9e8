"""Bringing a session's outcome back to the chart.

After a completed or stopped desensitization the allergist previews, then confirms, what is written:

* :mod:`.record`: what happened (the input, from the session record);
* :mod:`.wording`: the note for the next clinician, with the identifier that makes writing it twice a no-op;
* :mod:`.allergy_change`: the append-only change to an AllergyIntolerance (a note; a reaction and
  ``lastOccurrence`` for a breakthrough reaction; status, verification, code and criticality never
  touched), as R4 or under Oracle Health Millennium's update rules, with its diff for the preview;
* :mod:`.strategy`: which write the EHR allows (update, clinical note, nothing);
* :mod:`.document`: the clinical note (DocumentReference) where the allergy cannot be updated;
* :mod:`.writeback`: the writes over a :class:`~fhir_desens.client.fhir_rest.FhirClient`, idempotent,
  with a report that says exactly what was written.
"""
