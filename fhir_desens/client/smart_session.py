"""The SMART session: tokens and launch context of one authorized launch, the FHIR client's auth
interface (headers, refresh before expiry and after a 401), and what the granted scopes allow (the
scopes the app asks for: :data:`DEFAULT_NEEDS`). Part of :mod:`fhir_desens.client.smart`, which
re-exports every public name. Token values never appear in ``repr`` or logs."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fhir_desens.client.scopes import GrantedScopes, ScopeNeed, granted_scopes
from fhir_desens.errors import AuthError

if TYPE_CHECKING:  # the client refreshes the session's tokens
    from fhir_desens.client.smart import SmartClient

log = logging.getLogger(__name__)

#: What this app asks for by default (docs/fhir-smart.md §1.2), and why:
#:
#: * read the patient, the allergy list, and what planning reads from the chart: active
#:   MedicationRequests and their Medications (the drug to desensitize), Conditions (the indication),
#:   Observations (height and weight for per-m² doses), and the signed plans (RequestGroups);
#: * record on the allergy list (create/update);
#: * sign orders: the $apply transaction creates a RequestGroup, one MedicationRequest per step and
#:   one Medication per solution (conditional creates), and writes its Provenance with PUT to an id
#:   derived from the session (create or update).
#:
#: Servers may grant less: without the allergy write the app does not record allergies
#: (:attr:`SmartSession.can_write`), without the order writes it plans and prints but does not sign
#: (:attr:`SmartSession.can_sign_orders`).
DEFAULT_NEEDS: tuple[ScopeNeed, ...] = (
    ScopeNeed("patient", "Patient", "rs"),
    ScopeNeed("patient", "AllergyIntolerance", "rs"),
    ScopeNeed("patient", "AllergyIntolerance", "cu"),
    ScopeNeed("patient", "MedicationRequest", "crus"),  # u: hold the therapeutic order, discontinue
    ScopeNeed("patient", "Medication", "crs"),
    ScopeNeed("patient", "Condition", "rs"),
    ScopeNeed("patient", "Observation", "rs"),
    ScopeNeed("patient", "RequestGroup", "crus"),  # u: discontinue a plan
    ScopeNeed("patient", "Provenance", "cu"),
    # the outcome write-back (issue 13): search before writing; the clinical note; the tolerance window
    ScopeNeed("patient", "Provenance", "rs"),
    ScopeNeed("patient", "DocumentReference", "crs"),
    ScopeNeed("patient", "MedicationAdministration", "rs"),
    # the bedside pre-start checklist: a consent on file (without it the page said "could not be read")
    ScopeNeed("patient", "Consent", "rs"),
    # the bedside record (issue 12): what the EHR accepts of the session, looked up before any resend
    ScopeNeed("patient", "Observation", "c"),
    ScopeNeed("patient", "MedicationAdministration", "cu"),
    ScopeNeed("patient", "Procedure", "crus"),
    ScopeNeed("patient", "AdverseEvent", "crus"),
)

#: The writes of the $apply transaction (see DEFAULT_NEEDS): resource type -> permissions needed.
ORDER_WRITES: tuple[tuple[str, str], ...] = (
    ("RequestGroup", "c"),
    ("MedicationRequest", "c"),
    ("Medication", "c"),
    ("Provenance", "cu"),
)

# ----------------------------------------------------------------------------------------------
# the session (token state)


@dataclass
class SmartSession:
    """Tokens and launch context of one authorized launch. Implements the FHIR client auth interface.

    ``to_dict()`` contains the tokens: store it server-side only (the app's store encrypts it).
    """

    fhir_base: str
    token_endpoint: str
    client_id: str
    auth_method: str
    access_token: str | None
    expires_at: float | None
    scope: str
    refresh_token: str | None = None
    token_type: str = "Bearer"  # noqa: S105 - the token type name, not a secret
    patient: str | None = None
    encounter: str | None = None
    fhir_user: str | None = None
    id_token_subject: str | None = None
    need_patient_banner: bool = True
    smart_style_url: str | None = None
    intent: str | None = None
    tenant: str | None = None
    fhir_context: list[dict[str, Any]] = field(default_factory=list)
    issued_at: float = 0.0
    client: SmartClient | None = field(default=None, repr=False, compare=False)
    on_update: Callable[[SmartSession], None] | None = field(default=None, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    # -- scopes ---------------------------------------------------------------------------------
    @property
    def granted(self) -> GrantedScopes:
        return granted_scopes(self.scope)

    @property
    def can_write(self) -> bool:
        """Whether the app may record on the allergy list; false means the app is read-only."""
        return self.granted.can_write("AllergyIntolerance")

    @property
    def can_sign_orders(self) -> bool:
        """Whether every write of the $apply transaction (:data:`ORDER_WRITES`) was granted."""
        granted = self.granted
        return all(
            granted.allows(resource_type, letter)
            for resource_type, letters in ORDER_WRITES
            for letter in letters
        )

    @property
    def has_access_token(self) -> bool:
        return bool(self.access_token)

    @property
    def has_refresh_token(self) -> bool:
        return bool(self.refresh_token)

    def expires_within(self, seconds: float, now: float) -> bool:
        return self.expires_at is not None and self.expires_at - now <= seconds

    # -- the FHIR client auth interface -----------------------------------------------------------
    def headers(self) -> dict[str, str]:
        """``Authorization: Bearer …``, refreshing first when the token is about to expire."""
        client = self.client
        if (
            client is not None
            and self.has_refresh_token
            and self.expires_within(client.refresh_skew, client.now())
        ):
            self.refresh()
        if not self.access_token:
            raise AuthError("no access token for this launch; launch the app again from the EHR")
        return {"Authorization": f"Bearer {self.access_token}"}

    def refresh(self) -> bool:
        """Use the refresh token now; True when a new access token was obtained."""
        if self.client is None:
            return False
        return self.client.refresh(self)

    # -- serialization ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "fhir_base": self.fhir_base,
            "token_endpoint": self.token_endpoint,
            "client_id": self.client_id,
            "auth_method": self.auth_method,
            "access_token": self.access_token,
            "expires_at": self.expires_at,
            "scope": self.scope,
            "refresh_token": self.refresh_token,
            "token_type": self.token_type,
            "patient": self.patient,
            "encounter": self.encounter,
            "fhir_user": self.fhir_user,
            "id_token_subject": self.id_token_subject,
            "need_patient_banner": self.need_patient_banner,
            "smart_style_url": self.smart_style_url,
            "intent": self.intent,
            "tenant": self.tenant,
            "fhir_context": list(self.fhir_context),
            "issued_at": self.issued_at,
        }

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        client: SmartClient | None = None,
        on_update: Callable[[SmartSession], None] | None = None,
    ) -> SmartSession:
        return cls(
            fhir_base=data["fhir_base"],
            token_endpoint=data["token_endpoint"],
            client_id=data["client_id"],
            auth_method=data["auth_method"],
            access_token=data.get("access_token"),
            expires_at=data.get("expires_at"),
            scope=data.get("scope") or "",
            refresh_token=data.get("refresh_token"),
            token_type=data.get("token_type") or "Bearer",
            patient=data.get("patient"),
            encounter=data.get("encounter"),
            fhir_user=data.get("fhir_user"),
            id_token_subject=data.get("id_token_subject"),
            need_patient_banner=bool(data.get("need_patient_banner", True)),
            smart_style_url=data.get("smart_style_url"),
            intent=data.get("intent"),
            tenant=data.get("tenant"),
            fhir_context=list(data.get("fhir_context") or []),
            issued_at=float(data.get("issued_at") or 0.0),
            client=client,
            on_update=on_update,
        )

    def __repr__(self) -> str:
        return (
            f"SmartSession(fhir_base={self.fhir_base!r}, patient={self.patient!r}, scope={self.scope!r}, "
            f"access_token={'<present>' if self.access_token else None}, "
            f"refresh_token={'<present>' if self.refresh_token else None})"
        )
