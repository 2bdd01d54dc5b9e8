"""A desensitization course: the plan's lifecycle over a :class:`~fhir_desens.client.fhir_rest.FhirClient`.

No Flask here (an import-linter contract forbids it): the SMART app, a script or the CLI pass a
:class:`~fhir_desens.course.context.CourseContext` (the SMART session, a store for markers, the
protocol library, the clock) and get domain values back.

Lifecycle
---------
::

    draft ──sign──▶ signed ──first dose──▶ in-progress ──▶ completed
                      │                         └────────▶ stopped   (reaction, not resumed)
                      └──discontinue──▶ discontinued

* **draft**: a :class:`~fhir_desens.course.draft.PlanDraft` in the host's session store; choices
  only, never computed numbers; every page and signing recompute the plan through the engine.
* **signed**: ONE transaction (:mod:`~fhir_desens.course.sign`) writes a RequestGroup
  (``status=active``, ``intent=order``) with one MedicationRequest per step and one Medication per
  solution, and a Provenance. A signed plan is read-only; a new course is a copy
  (:mod:`~fhir_desens.course.copy`).
* **in-progress / completed / stopped**: the bedside record (MedicationAdministration,
  Observation, AdverseEvent against the step orders) moves the course on; the RequestGroup becomes
  ``completed`` (every step given) or ``revoked`` with the steps not given ``stopped``.
* **discontinued**: before or instead of giving it, the RequestGroup is ``revoked`` and its step
  orders ``cancelled`` (not started) or ``stopped``, with the reason, in one transaction.

State and identifiers (what bedside recording and the allergy write-back build on)
----------------------------------------------------------------------------------
The state of a course lives in the EHR, never only in the app: the RequestGroup's ``status`` (and
its step orders' statuses) IS the course's state, read back by
:func:`~fhir_desens.course.readback.load_signed_plan`. Every resource carries a business
identifier derived from one **session id** (``RequestGroup.identifier`` of system
``canonical.ID_SESSION``; step orders ``ID_STEP_ORDER|<session>-<n>``; solutions
``ID_SOLUTION|<session>-<n>``), a hash of patient, draft and plan fingerprint, so every write is a
conditional create that is safe to repeat and findable after a timeout. Later writes about a course
(administrations, observations, the outcome) reference the RequestGroup and step orders by id and
use identifiers under the same session id (``<session>-<step>-<event>``) so they are idempotent too.
Status changes are versioned updates with ``If-Match`` (409 and 412 both mean "changed
meanwhile": re-read, never overwrite).

Modules
-------
``context`` what the host passes; ``draft`` drafts and the engine request; ``assessment`` the drug
against the allergy list; ``chart`` reading the chart through the session's token; ``sign``
signing; ``readback`` the signed plans and one plan verified against the engine
(:func:`fhir_desens.fhir.orderset.verify_order_set`); ``copy`` "Copy this plan"; ``library``
the protocol library a deployment plans from; ``bedside`` the bedside record (append-only store,
outbox).
"""
