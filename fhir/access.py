"""Who may see and write what.

Every request carries ``Authorization: Bearer <token>``. An administrator's token sees everything. An
organisation's token sees the patients that organisation takes part in: it is the patient's
``generalPractitioner`` (directly or through one of its PractitionerRoles), a member of the patient's
CareTeam, or the owner or requester of one of the patient's Tasks. Resources about other patients are
answered as if they did not exist (404), so their existence does not leak. Directory resources that
belong to no patient (Organization, Practitioner, Endpoint, …) are visible to every organisation;
Subscriptions only to the organisation that created them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import CompoundSelect, String, and_, bindparam, exists, literal, or_, select
from sqlalchemy.sql import Select
from sqlmodel import Session, col
from zorgpad.engine.store.audit import Actor
from zorgpad.engine.store.resources import patient_of
from zorgpad.engine.store.tables import SearchReference, SearchToken, StoredResource
from zorgpad.engine.store.tokens import find_token
from zorgpad.fhir.outcomes import FHIRError

OWNER_TAG_SYSTEM = "https://zorgpad.nl/fhir/CodeSystem/owner-organisation"
#: Resource types only their creating organisation sees.
OWNED_TYPES = frozenset({"Subscription"})
#: Shared directory data that belongs to no patient: every organisation may read it. Any other resource
#: without a patient reference (a QuestionnaireResponse without subject, say) is for administrators only.
DIRECTORY_TYPES = frozenset({"Organization", "Practitioner", "PractitionerRole", "Endpoint", "Questionnaire",
                             "Location", "HealthcareService", "PlanDefinition", "Device", "Medication"})


@dataclass(frozen=True)
class Principal:
    """The caller: a named token acting for an organisation, or an administrator."""

    name: str
    organisation: str | None
    admin: bool

    @property
    def actor(self) -> Actor:
        """The caller as the audit log names it."""
        return Actor(self.name, self.organisation)


def authenticate(session: Session, authorization: str | None) -> Principal:
    """The principal for an ``Authorization`` header, or a 401."""
    if not authorization:
        raise FHIRError(401, "authentication required: send 'Authorization: Bearer <token>'", code="login")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise FHIRError(401, "expected 'Authorization: Bearer <token>'", code="login")
    record = find_token(session, token.strip())
    if record is None:
        raise FHIRError(401, "unknown or revoked token", code="login")
    return Principal(record.name, record.organisation, record.admin)


def _refs(node: Any, element: str) -> list[str]:
    values = node.get(element) if isinstance(node, Mapping) else None
    values = values if isinstance(values, list) else [values]
    return [v["reference"] for v in values if isinstance(v, Mapping) and isinstance(v.get("reference"), str)]


def _org_refs(organisation: Any) -> CompoundSelect[Any]:
    """SQL for the organisation's own reference and those of its PractitionerRoles."""
    roles = select(literal("PractitionerRole/", String) + col(SearchReference.resource_id)).where(
        col(SearchReference.resource_type) == "PractitionerRole", col(SearchReference.param) == "organization",
        col(SearchReference.target) == organisation)
    return select(organisation).union(roles)


def _patients_of(organisation: Any) -> Select[Any]:
    """SQL for the ``Patient/id`` references of the patients ``organisation`` (an SQL string) takes part in."""
    link = and_(col(SearchReference.resource_type) == col(StoredResource.resource_type),
                col(SearchReference.resource_id) == col(StoredResource.id))
    roles = or_(
        and_(col(SearchReference.resource_type) == "Patient", col(SearchReference.param) == "general-practitioner"),
        and_(col(SearchReference.resource_type) == "CareTeam", col(SearchReference.param) == "participant"),
        and_(col(SearchReference.resource_type) == "Task", col(SearchReference.param).in_(["owner", "requester"])),
    )
    # correlate(None): used inside queries over resource rows, it must never bind to the outer row.
    return (select(col(StoredResource.patient)).join(SearchReference, link)
            .where(roles, col(SearchReference.target).in_(_org_refs(organisation)),
                   col(StoredResource.deleted).is_(False))
            .correlate(None))


# Built once: SQLAlchemy computes a new statement's cache key by walking it, which for these costs more
# than running them. Parameters: ``organisation`` (and ``patient``).
_ORGANISATION = bindparam("organisation", type_=String)
_ORG_REFS = _org_refs(_ORGANISATION)
_SEES_PATIENT = _patients_of(_ORGANISATION).where(col(StoredResource.patient) == bindparam("patient")).limit(1)


class Scope:
    """What one principal may see: applied as SQL to every query and checked on every write."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal

    @property
    def unrestricted(self) -> bool:
        """Whether the principal sees everything."""
        return self.principal.admin

    def patients(self) -> Select[Any]:
        """SQL for the ``Patient/id`` references of the patients the organisation takes part in."""
        return _patients_of(literal(self.principal.organisation or "", String))

    def visible(self, rows: Any = StoredResource) -> Any:
        """SQL that is true for the resource rows (``StoredResource`` or an alias of it) the principal may see;
        None when it sees everything."""
        if self.unrestricted:
            return None
        owned = exists().where(col(SearchToken.resource_type) == rows.resource_type,
                               col(SearchToken.resource_id) == rows.id, col(SearchToken.param) == "_tag",
                               col(SearchToken.system) == OWNER_TAG_SYSTEM,
                               col(SearchToken.code) == (self.principal.organisation or ""))
        directory = and_(rows.patient.is_(None),
                         or_(rows.resource_type.in_(sorted(DIRECTORY_TYPES)),
                             and_(rows.resource_type.in_(sorted(OWNED_TYPES)), owned)))
        return or_(directory, rows.patient.in_(self.patients()))

    def restrict(self, query: Select[Any]) -> Select[Any]:
        """Limit a query over ``StoredResource`` to what the principal may see."""
        condition = self.visible()
        return query if condition is None else query.where(condition)

    def sees_patient(self, session: Session, patient: str | None) -> bool:
        """Whether the principal takes part in ``patient``'s care (True for no patient)."""
        if self.unrestricted or patient is None:
            return True
        found = session.execute(_SEES_PATIENT, {"organisation": self.principal.organisation or "",
                                                "patient": patient}).first()
        return found is not None

    def sees(self, session: Session, stored: StoredResource) -> bool:
        """Whether the principal may see one stored resource."""
        if self.unrestricted:
            return True
        if stored.patient is None:
            if stored.resource_type in OWNED_TYPES:
                return self.owns(stored.content)
            return stored.resource_type in DIRECTORY_TYPES
        return self.sees_patient(session, stored.patient)

    def owns(self, resource: Mapping[str, Any]) -> bool:
        """Whether an owned-type resource carries this principal's owner tag."""
        if self.unrestricted:
            return True
        tags = (resource.get("meta") or {}).get("tag") or []
        return any(t.get("system") == OWNER_TAG_SYSTEM and t.get("code") == self.principal.organisation
                   for t in tags if isinstance(t, Mapping))

    def _check_own_directory_entry(self, resource: dict[str, Any], existing: StoredResource | None) -> None:
        """An organisation writes only its own Organization and its own Endpoints: an Endpoint decides where
        another organisation's handover notices go."""
        org = self.principal.organisation

        def owner_of(content: Any) -> str | None:
            if content.get("resourceType") == "Organization":
                return f"Organization/{content.get('id')}"
            ref = (content.get("managingOrganization") or {}).get("reference")
            return ref if isinstance(ref, str) else None

        owners = {owner_of(resource)} | ({owner_of(existing.content)} if existing is not None else set())
        if owners != {org}:
            raise FHIRError(403, f"{org} may only write its own {resource.get('resourceType')} "
                                 "(an Endpoint's managingOrganization must be the writer)", code="forbidden")

    def check_write(self, session: Session, resource: dict[str, Any], existing: StoredResource | None) -> None:
        """Refuse (404 for what the principal cannot see, 403 otherwise) a write it may not make."""
        if self.unrestricted:
            return
        if existing is not None and not existing.deleted and not self.sees(session, existing):
            raise FHIRError(404, f"{existing.resource_type}/{existing.id} is not known", code="not-found")
        rtype = resource.get("resourceType")
        if rtype in ("Endpoint", "Organization"):
            self._check_own_directory_entry(resource, existing)
            return
        if rtype in OWNED_TYPES:
            meta = resource.setdefault("meta", {})
            tags = [t for t in meta.get("tag") or [] if t.get("system") != OWNER_TAG_SYSTEM]
            meta["tag"] = [*tags, {"system": OWNER_TAG_SYSTEM, "code": self.principal.organisation}]
            return
        patient = patient_of(resource)
        if patient is None:
            if rtype in DIRECTORY_TYPES:
                return
            raise FHIRError(403, f"a {rtype} that names no patient can only be written by an administrator "
                                 "(give it a subject/patient you take part in)", code="forbidden")
        if rtype == "Patient" and existing is not None and existing.deleted:
            if self.sees_patient(session, patient):
                return
            raise FHIRError(403, f"{patient} was deleted; only an administrator or an organisation still in its "
                                 "care team may restore it", code="forbidden")
        if rtype == "Patient" and existing is None:
            org_refs = {r[0] for r in session.execute(_ORG_REFS, {"organisation": self.principal.organisation or ""})}
            if org_refs & set(_refs(resource, "generalPractitioner")):
                return
            raise FHIRError(403, "an organisation may only register a new Patient whose generalPractitioner it is",
                            code="forbidden")
        if not self.sees_patient(session, patient):
            raise FHIRError(403, f"{self.principal.organisation} takes no part in the care of {patient}",
                            code="forbidden")
