"""What of one signing session's orders the EHR holds, found by their business identifiers: the truthful
account given after a failed or unconfirmed "Sign and send orders"."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.errors import DesensError
from fhir_desens.fhir import canonical as c

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WrittenCheck:
    """What of one session's orders the EHR holds, found by their business identifiers."""

    checked: bool  # False: the search itself failed, so nobody knows
    request_group_id: str | None = None
    medication_requests: int = 0
    expected_requests: int = 0
    medications: int = 0
    expected_medications: int = 0

    @property
    def state(self) -> Literal["unknown", "none", "partial", "complete"]:
        if not self.checked:
            return "unknown"
        if self.request_group_id is None and not self.medication_requests and not self.medications:
            return "none"
        complete = (
            self.request_group_id is not None
            and self.medication_requests == self.expected_requests
            and self.medications == self.expected_medications
        )
        return "complete" if complete else "partial"

    def describe(self) -> str:
        """The answer to "was anything written?", for people."""
        if self.state == "unknown":
            return (
                "It could not be checked whether the orders reached the chart (the EHR did not answer the "
                "check either). Signing again is safe: it never creates a second set of orders."
            )
        if self.state == "none":
            return "Nothing was written to the chart."
        if self.state == "complete":
            return "The orders are in the chart."
        group = "the plan (RequestGroup)" if self.request_group_id else "no plan (RequestGroup)"
        return (
            f"Part of the plan was written: {group}, {self.medication_requests} of "
            f"{self.expected_requests} medication requests and {self.medications} of "
            f"{self.expected_medications} solutions (Medications). Press \u201cSign and send orders\u201d "
            "again to complete the same set (what is already written is reused, never duplicated)."
        )


def written_check(
    client: FhirClient, patient: str, session: str, expected_requests: int, expected_medications: int
) -> WrittenCheck:
    """Search one session's orders by their business identifiers (never raises: unknown on failure)."""
    try:
        groups = client.search_all(
            "RequestGroup", {"patient": patient, "identifier": f"{c.ID_SESSION}|{session}"}, max_pages=2
        )
        steps = [f"{c.ID_STEP_ORDER}|{session}-{n}" for n in range(1, expected_requests + 1)]
        solutions = [f"{c.ID_SOLUTION}|{session}-{n}" for n in range(1, expected_medications + 1)]
        orders = client.search_all(
            "MedicationRequest",
            {"patient": patient, "identifier": ",".join(steps), "_count": "100"},
            max_pages=2,
        )
        medications = (
            client.search_all("Medication", {"identifier": ",".join(solutions), "_count": "100"}, max_pages=2)
            if solutions
            else []
        )
    except DesensError as error:
        log.warning("could not check what the orders transaction wrote: %s", type(error).__name__)
        return WrittenCheck(
            False, expected_requests=expected_requests, expected_medications=expected_medications
        )
    group_ids = sorted({str(g.get("id")) for g in groups if g.get("resourceType") == "RequestGroup"})
    return WrittenCheck(
        True,
        request_group_id=group_ids[0] if group_ids else None,
        medication_requests=len(
            {o.get("id") for o in orders if o.get("resourceType") == "MedicationRequest"}
        ),
        expected_requests=expected_requests,
        medications=len({m.get("id") for m in medications if m.get("resourceType") == "Medication"}),
        expected_medications=expected_medications,
    )


__all__ = ["WrittenCheck", "written_check"]
