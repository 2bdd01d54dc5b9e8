"""One request's view of an app session: its record, the SMART session, a FHIR client with its token,
the signed-in user, and the chart reads every page makes (the patient and the allergy list).

Round trips: the launch's callback reads nothing from the FHIR server. The patient page (the first
page of every session) reads the Patient, the allergy list and the signed plans in one batch, and at
the same time the signed-in user (``fhirUser``, kept in the session record) and, once per app process,
the CapabilityStatement (:meth:`AppSession.read_patient_page`). The start form reads the chart in one
batch, the signed plans included; the worksheets of its drafts reuse that read for "other active plans
of the drug" (:meth:`AppSession.signed_plans_bundle`), and signing searches them afresh before anything
is written (duplicate orders: :func:`fhir_desens.course.sign.sign_draft`).

Those two reads are cached per app session in the session store (kind ``"chart-cache"``, encrypted
like the sessions) for :data:`CHART_TTL` seconds: the worksheet page is reloaded after every edit,
and reading the Patient and the allergy list through the EHR each time cost more than computing the
plan. The allergy list can change in the EHR, so the cache is short, the patient page always reads
afresh (and refreshes the cache), and signing reads afresh before anything is written
(``allergies(fresh=True)``). Within one request everything is read at most once (:func:`app_session`
is memoized per request, and so is :meth:`smart_app.services.Services.load_session`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from flask import g, has_app_context

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.client.parallel import at_once
from fhir_desens.client.smart import SmartSession
from fhir_desens.course.chart import (
    allergies_of,
    allergy_search,
    fhir_client,
    patient_reference,
    search_allergies,
)
from fhir_desens.course.context import CourseContext
from fhir_desens.course.planning_chart import PlanningReads, read_batch, read_planning, signed_plans_bundle
from fhir_desens.course.readback import signed_plans_search
from fhir_desens.drugs.overrides import allergist_role_text
from fhir_desens.errors import DesensError
from fhir_desens.fhir.allergy import Allergy
from fhir_desens.fhir.raw import objects
from fhir_desens.io.json import dumps, loads
from smart_app.chart.page import PatientBanner, banner_from_patient, person_name, read_banner
from smart_app.library import library
from smart_app.page_cache import content_key, memo
from smart_app.services import services

log = logging.getLogger(__name__)

CHART_KIND = "chart-cache"
#: Seconds a chart read is reused by the pages of one app session (never by signing).
CHART_TTL = 60.0
#: Seconds the start form's chart read (orders, measurements, risk) is kept for the form's POST: the chart is
#: read once per draft, when the form is shown (a POST after this reads it again). The signed plans read
#: with it (or by the patient page) serve the worksheets' "other active plans" for as long; signing reads
#: them afresh, and the session's own signing or discontinuing drops them.
PLANNING_TTL = 1800.0
#: The resource types a SMART ``fhirUser`` may name (SMART App Launch 2.x).
USER_TYPES = ("Practitioner", "PractitionerRole", "Patient", "RelatedPerson", "Person")
_USER = re.compile(r"(?:^|/)((" + "|".join(USER_TYPES) + r")/([A-Za-z0-9\-.]{1,64}))$")


# --- the signed-in user ------------------------------------------------------------------------------


#: a signed-in user whose name the EHR did not let the app read, in what others read (PAPER-7)
UNNAMED_USER = "a user whose name is not readable from the EHR"


@dataclass(frozen=True)
class SignedInUser:
    """Who uses the app, for people: the name, else "Practitioner/<id>" (never the full URL)."""

    reference: str | None  # "Practitioner/<id>"
    name: str | None  # from the fhirUser resource; None when it could not be read
    allergist: str | None = None  # why the user counts as an allergist (OVERRIDE-1); None: not shown to be

    @property
    def display(self) -> str | None:
        """The name, else "Practitioner/<id>"; None when the EHR named no user."""
        return self.name or self.reference

    @property
    def label(self) -> str:
        return self.display or "the signed-in user"

    @property
    def in_records(self) -> str:
        """Who did it, in what the app writes for other people to read (a chart note, a recorded dose, a
        ticked-off task): the name, never "Practitioner/7" (no one to call), else said in words."""
        return self.name or UNNAMED_USER

    def to_dict(self) -> dict[str, str | None]:
        data = {"reference": self.reference, "name": self.name}
        return {**data, "allergist": self.allergist} if self.allergist else data


def user_reference(smart: SmartSession) -> str | None:
    """The fhirUser as "Type/id", when it names a resource of this session's FHIR server."""
    user = smart.fhir_user or ""
    match = _USER.search(user)
    if match is None:
        return None
    if "://" in user and not user.startswith(smart.fhir_base.rstrip("/") + "/"):
        return None  # a user of another server: not readable (nor referable) from this chart
    return match.group(1)


def read_signed_in_user(smart: SmartSession, client: FhirClient) -> SignedInUser:
    """Read the fhirUser resource for its name (SMART: ``openid fhirUser`` lets the app retrieve the
    current user); "Type/id" when it cannot be read. Called once, when the session is created."""
    reference = user_reference(smart)
    if reference is None:
        return SignedInUser(None, None)
    resource_type, _, resource_id = reference.partition("/")
    try:
        resource = client.read(resource_type, resource_id).resource
    except DesensError as error:  # 403 without a scope for it, 404, EHR down: the reference will do
        log.info("the signed-in user's %s could not be read (%s)", resource_type, type(error).__name__)
        return SignedInUser(reference, None)
    return SignedInUser(reference, person_name(resource, titles=True), _allergist_evidence(resource))


def _allergist_evidence(resource: Mapping[str, Any]) -> str | None:
    """A Practitioner's qualification, or a PractitionerRole's code or specialty, naming allergy/immunology."""
    texts: list[str | None] = []
    concepts = [q.get("code") for q in objects(resource.get("qualification"))]
    concepts += [*objects(resource.get("code")), *objects(resource.get("specialty"))]
    for concept in concepts:
        if isinstance(concept, Mapping):
            texts.append(concept.get("text") if isinstance(concept.get("text"), str) else None)
            texts.extend(
                c.get("display") for c in objects(concept.get("coding")) if isinstance(c.get("display"), str)
            )
    found = allergist_role_text(texts)
    kind = "qualification" if resource.get("resourceType") == "Practitioner" else "role"
    return f"{kind}: {found}" if found else None


def override_evidence(user: SignedInUser) -> str | None:
    """Why the signed-in user may override a contraindication: the configured list, else their role."""
    if user.reference is not None and user.reference in services().settings.allergists:
        return f"{user.label} is on the configured allergist list"
    return f"{user.label}, {user.allergist}" if user.allergist else None


# --- the request's view of a session -----------------------------------------------------------------


@dataclass
class AppSession:
    sid: str
    record: dict[str, Any]
    smart: SmartSession
    client: FhirClient
    _read: dict[str, Any] = field(default_factory=dict, repr=False)  # this request's reads
    _fresh: set[str] = field(default_factory=set, repr=False)  # ... of them read from the EHR
    _texts: dict[str, str] = field(default_factory=dict, repr=False)  # ... as JSON text (chart_key)
    _keys: dict[str, tuple[str, str]] = field(default_factory=dict, repr=False)  # what -> (text, digest)

    @property
    def csrf_token(self) -> str:
        return str(self.record["csrf"])

    @property
    def user(self) -> SignedInUser:
        """The signed-in user, read once per session (by the patient page, with its batch; by any
        other page that needs it first) and kept in the session record."""
        stored = self.record.get("user")
        if not isinstance(stored, dict):
            stored = self._keep_user(read_signed_in_user(self.smart, self.client))
        name, allergist = stored.get("name"), stored.get("allergist")
        return SignedInUser(
            user_reference(self.smart),
            name if isinstance(name, str) else None,
            allergist if isinstance(allergist, str) else None,
        )

    def _keep_user(self, user: SignedInUser) -> dict[str, str | None]:
        stored = user.to_dict()
        self.record["user"] = stored
        services().save_session_record(self.sid, self.record)
        return stored

    # -- chart reads, cached --------------------------------------------------------------------------
    def _cached(self, what: str, read: Callable[[], Any], *, fresh: bool, ttl: float = CHART_TTL) -> Any:
        self._load(what, read, fresh=fresh, ttl=ttl)
        if what not in self._read:  # parsed on first use: a memo hit on its digest needs no parse
            self._read[what] = loads(self._texts[what])
        return self._read[what]

    def _load(self, what: str, read: Callable[[], Any], *, fresh: bool, ttl: float = CHART_TTL) -> str:
        """The chart read ``what`` as JSON text (kept for this request), from the session's cache or,
        when absent, expired or ``fresh``, from the EHR; parsing it is left to who needs the value."""
        if what in self._texts and (not fresh or what in self._fresh):
            return self._texts[what]
        kept = None if fresh else services().store.get_as(CHART_KIND, f"{self.sid}:{what}", _chart_read)
        if kept is not None:
            self._read.pop(what, None)
            self._texts[what] = kept[0]
            self._keys[what] = kept  # its digest, computed once per stored record
            return kept[0]
        self._remember(what, read(), ttl)
        return self._texts[what]

    def _remember(self, what: str, value: Any, ttl: float = CHART_TTL) -> Any:
        """A value just read from the EHR: for this request and, for ``ttl`` seconds, the session's pages."""
        text = dumps(value)
        services().store.put(CHART_KIND, f"{self.sid}:{what}", {"json": text}, ttl=ttl)
        self._read[what] = value
        self._texts[what] = text
        self._fresh.add(what)
        return value

    def chart_key(self, what: str) -> str | None:
        """A digest of the chart read ``what`` as this request has it (None: not read in this request):
        the key of what pages memoize from it (:mod:`smart_app.page_cache`)."""
        text = self._texts.get(what)
        if text is None:
            return None
        known = self._keys.get(what)
        if known is None or known[0] is not text:  # digested once per text read
            known = self._keys[what] = (text, content_key(text))
        return known[1]

    def read_patient_page(self) -> Mapping[str, Any] | None:
        """The patient page's reads in one round trip: the Patient, the allergy list and the signed-plans
        searchset in one batch (kept as :meth:`patient`, :meth:`allergy_resources` and
        :meth:`signed_plans_bundle` read them afresh), sent together with the read of the signed-in
        user and, while the app does not know it yet, the EHR's CapabilityStatement. Returns the
        signed-plans searchset (None: not read here; an entry that failed is read on its own later).

        The batch is sent before the statement says whether the EHR takes batches: a refused batch
        costs that one request once per app process, and the page then reads request by request."""
        capabilities = services().capabilities
        batch = capabilities.batch_known(self.client)
        calls: dict[str, Callable[[], Any]] = {}
        if batch is None:
            calls["statement"] = lambda: capabilities.batch(self.client)
        if not isinstance(self.record.get("user"), dict):
            calls["user"] = lambda: read_signed_in_user(self.smart, self.client)
        urls = self._patient_page_urls()
        if batch is not False:
            calls["batch"] = lambda: self._patient_batch(list(urls.values()))
        done = at_once(calls)
        if "user" in done:
            self._keep_user(done["user"])
        entries = done.get("batch")
        if entries is None:
            return None
        found = dict(zip(urls, entries, strict=True))
        if found["patient"] is not None and found["patient"].get("id") == self.smart.patient:
            self._remember("patient", found["patient"])
        if found.get("allergies") is not None:
            self._remember("allergies", search_allergies(self.client, self.smart, found["allergies"]))
        plans: Mapping[str, Any] | None = found.get("plans")
        if plans is not None:
            self._remember("plans", plans, PLANNING_TTL)
        return plans

    def _patient_page_urls(self) -> dict[str, str]:
        own = patient_reference(self.smart)
        urls = {"patient": f"Patient/{self.smart.patient}"}
        if self.smart.granted.can_read("AllergyIntolerance"):
            urls["allergies"] = "AllergyIntolerance?" + urlencode(allergy_search(own))
        if self.smart.granted.can_read("RequestGroup"):
            urls["plans"] = "RequestGroup?" + urlencode(signed_plans_search(own))
        return urls

    def _patient_batch(self, urls: Sequence[str]) -> list[dict[str, Any] | None] | None:
        """The batch's entries; None when the batch as a whole failed (then read one by one, as
        without batches). Runs outside the request's thread: no Flask context here."""
        try:
            return read_batch(self.client, urls)
        except DesensError as error:
            log.warning("patient page batch failed (%s): reading one by one", type(error).__name__)
            return None

    def patient(self, *, fresh: bool = False) -> dict[str, Any]:
        """The launch patient's Patient resource."""
        resource: dict[str, Any] = self._cached(
            "patient", lambda: read_banner(self.client, self.smart)[1], fresh=fresh
        )
        return resource

    def banner(self, *, fresh: bool = False) -> PatientBanner:
        """The patient banner (built once per Patient resource's content)."""
        self._load("patient", lambda: read_banner(self.client, self.smart)[1], fresh=fresh)
        key = self.chart_key("patient")
        found: PatientBanner = memo("banners").get(key, lambda: banner_from_patient(self.patient()))
        return found

    def allergy_resources(self, *, fresh: bool = False) -> list[dict[str, Any]] | None:
        """The patient's AllergyIntolerance resources; None when the grant does not allow reading them."""
        if not self.smart.granted.can_read("AllergyIntolerance"):
            return None
        resources: list[dict[str, Any]] | None = self._cached(
            "allergies", lambda: search_allergies(self.client, self.smart), fresh=fresh
        )
        return resources

    def allergies(self, *, fresh: bool = False) -> list[Allergy] | None:
        """The allergy list read as :class:`Allergy` records (parsed once per list's content)."""
        if not self.smart.granted.can_read("AllergyIntolerance"):
            return None
        self._load("allergies", lambda: search_allergies(self.client, self.smart), fresh=fresh)
        parsed: tuple[Allergy, ...] = memo("allergy lists").get(
            self.chart_key("allergies"), lambda: tuple(allergies_of(self.allergy_resources()) or ())
        )
        return list(parsed)

    def planning_reads(self, *, fresh: bool = False) -> PlanningReads:
        """The start form's chart (orders, measurements, risk criteria, signed plans; one batch where
        the EHR takes batches): read afresh when the form is shown, reused by its POST; the signed plans
        also by the worksheets (:meth:`signed_plans_bundle`)."""
        data = self._cached(
            "planning",
            lambda: self._read_planning().to_json(),
            fresh=fresh,
            ttl=PLANNING_TTL,
        )
        reads = PlanningReads.from_json(data)
        if "planning" in self._fresh and reads.plans is not None:
            self._remember("plans", signed_plans_bundle(reads.plans), PLANNING_TTL)
        return reads

    def signed_plans_bundle(self) -> Mapping[str, Any] | None:
        """The signed-plans searchset as the start form (or the patient page) read it, for the worksheet's
        "other active plans of the drug"; read again once it has expired or the session signed or
        discontinued a plan. None when the grant does not allow reading RequestGroups."""
        if not self.smart.granted.can_read("RequestGroup"):
            return None
        bundle: Mapping[str, Any] = self._cached(
            "plans", self._search_signed_plans, fresh=False, ttl=PLANNING_TTL
        )
        return bundle

    def signed_plans_key(self) -> str | None:
        """The digest of :meth:`signed_plans_bundle` without parsing it (what the worksheet memoizes "other
        active plans of the drug" by); None when the grant does not allow reading RequestGroups."""
        if not self.smart.granted.can_read("RequestGroup"):
            return None
        self._load("plans", self._search_signed_plans, fresh=False, ttl=PLANNING_TTL)
        return self.chart_key("plans")

    def _search_signed_plans(self) -> Mapping[str, Any]:
        return self.client.search("RequestGroup", signed_plans_search(patient_reference(self.smart)))

    def forget(self, what: str) -> None:
        """Drop one cached read (``"plans"`` after this session signed or discontinued a plan)."""
        services().store.delete(CHART_KIND, f"{self.sid}:{what}")
        self._read.pop(what, None)
        self._texts.pop(what, None)
        self._fresh.discard(what)

    def _read_planning(self) -> PlanningReads:
        return read_planning(self.client, self.smart, batch=services().capabilities.batch(self.client))

    # -- the course layer ----------------------------------------------------------------------------
    def course(self) -> CourseContext:
        """What :mod:`fhir_desens.course` needs from this session: token, store, library, clock."""
        svc = services()
        return CourseContext(
            smart=self.smart,
            store=svc.store,
            protocols=library(),
            scope=self.sid,
            ttl=svc.settings.session_ttl,
            clock=svc.clock,
            time_zone=svc.settings.zone,
            dose_tolerance_percent=svc.settings.dose_tolerance_percent,
            user_name=self.user.name,
        )


def _chart_read(record: Mapping[str, Any]) -> tuple[str, str] | None:
    """A cached chart read's JSON text and its digest (:meth:`AppSession.chart_key`)."""
    text = record.get("json")
    return (text, content_key(text)) if isinstance(text, str) else None


def forget_chart(sid: str) -> None:
    """Drop the session's cached chart reads (when the session ends)."""
    store = services().store
    for what in ("patient", "allergies", "planning", "plans"):
        store.delete(CHART_KIND, f"{sid}:{what}")


def app_session(sid: str) -> AppSession:
    """The app session ``sid`` for this request (built once per request); SessionEnded when it is not live."""
    memo: dict[str, AppSession] | None = (
        g.setdefault("_fhir_desens_app_sessions", {}) if has_app_context() else None
    )
    if memo is not None and sid in memo:
        return memo[sid]
    svc = services()
    record, smart = svc.load_session(sid)
    session = AppSession(
        sid, record, smart, fhir_client(smart, http=svc.http, timeout=svc.settings.http_timeout)
    )
    if memo is not None:
        memo[sid] = session
    return session
