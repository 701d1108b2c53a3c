"""Operations and read-only types: ``PlanDefinition/$apply``, PlanDefinitions served from the registered
pathways, and AuditEvents served from the audit log."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import func, or_
from sqlmodel import col, select
from zorgpad.engine._projection import instant
from zorgpad.engine.errors import UnknownPathwayError
from zorgpad.engine.store.audit import audit, visible_to
from zorgpad.engine.store.enrolments import active_enrolments_of
from zorgpad.engine.store.resources import get_resource, parse_fhir_datetime
from zorgpad.engine.store.tables import AuditEntry
from zorgpad.fhir.context import FHIRContext
from zorgpad.fhir.outcomes import FHIRError
from zorgpad.fhir.plandefinition import to_plandefinition

JSON = dict[str, Any]


def _subjects(body: Any, params: Sequence[tuple[str, str]]) -> list[str]:
    subjects = [value for name, value in params if name == "subject"]
    if body is not None:
        if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
            raise FHIRError(400, "$apply takes a Parameters resource", code="structure")
        for parameter in body.get("parameter") or []:
            if not isinstance(parameter, dict) or parameter.get("name") != "subject":
                continue
            value = parameter.get("valueString") or (parameter.get("valueReference") or {}).get("reference")
            if not isinstance(value, str):
                raise FHIRError(400, "parameter 'subject' needs valueString or valueReference", code="required")
            subjects.append(value)
    if not subjects:
        raise FHIRError(400, "$apply needs a 'subject' parameter (Patient/id)", code="required")
    for subject in subjects:
        if not subject.startswith("Patient/") or "/" in subject.removeprefix("Patient/"):
            raise FHIRError(400, f"subject must be a Patient reference like Patient/123 (got {subject!r})",
                            code="value")
    return subjects


def _version(body: Any, params: Sequence[tuple[str, str]]) -> str | None:
    versions: list[Any] = [value for name, value in params if name == "version"]
    if isinstance(body, dict):
        versions += [p.get("valueString") for p in body.get("parameter") or []
                     if isinstance(p, dict) and p.get("name") == "version"]
    return str(versions[-1]) if versions and versions[-1] else None


def apply_plandefinition(ctx: FHIRContext, pathway_id: str, body: Any, params: Sequence[tuple[str, str]]) -> JSON:
    """Enrol each subject in the pathway's newest version (or the ``version`` asked for); the CarePlan (or a
    Bundle of them for several subjects)."""
    version = _version(body, params)
    try:
        pathway = ctx.engine.registry.get(pathway_id, version)
    except UnknownPathwayError:
        known = f"PlanDefinition/{pathway_id}" + (f" version {version}" if version else "")
        raise FHIRError(404, f"{known} is not known", code="not-found") from None
    plans = []
    for subject in _subjects(body, params):
        stored = get_resource(ctx.session, "Patient", subject.split("/", 1)[1])
        if stored is None or stored.deleted or not ctx.scope.sees(ctx.session, stored):
            raise FHIRError(404, f"{subject} is not known", code="not-found")
        for row in active_enrolments_of(ctx.session, subject):
            if row.pathway_id == pathway.id:
                raise FHIRError(409, f"{subject} is already enrolled in {pathway.id} (CarePlan/{row.id})",
                                code="duplicate")
        state = ctx.engine.enrol_in(ctx.session, pathway.id, subject, version=pathway.version,
                                    actor=ctx.principal.actor, now=ctx.now)
        careplan = get_resource(ctx.session, "CarePlan", state.id)
        assert careplan is not None
        plans.append(careplan.content)
    if len(plans) == 1:
        return plans[0]
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": p} for p in plans]}


# -- PlanDefinition --------------------------------------------------------------------------------

def read_virtual(ctx: FHIRContext, resource_type: str, resource_id: str, version: str | None = None) -> JSON:
    """Read a PlanDefinition (from the registry) or an AuditEvent (from the audit log)."""
    if resource_type == "AuditEvent":
        query = select(AuditEntry).where(col(AuditEntry.id) == int(resource_id)) if resource_id.isdigit() else None
        if query is not None and not ctx.scope.unrestricted:
            query = query.where(visible_to(ctx.principal.organisation, ctx.scope.patients()))
        row = ctx.session.exec(query).first() if query is not None else None
        if row is None or version not in (None, "1"):  # entries never change
            raise FHIRError(404, f"AuditEvent/{resource_id} is not known", code="not-found")
        return to_auditevent(row)
    try:
        return to_plandefinition(ctx.engine.registry.get(resource_id, version))
    except UnknownPathwayError:
        raise FHIRError(404, f"PlanDefinition/{resource_id}{'/_history/' + version if version else ''} is not known",
                        code="not-found") from None


def search_virtual(ctx: FHIRContext, resource_type: str, params: Sequence[tuple[str, str]]) -> JSON:
    """Search PlanDefinitions or AuditEvents."""
    if resource_type == "AuditEvent":
        return _search_audit(ctx, params)
    wanted = dict(params)
    unknown = [n for n, _ in params if n not in ("_id", "url", "version", "name", "status", "_count", "_format")]
    if unknown and ctx.strict:
        raise FHIRError(400, f"unknown search parameter {unknown[0]!r} for PlanDefinition", code="not-supported")
    found = []
    for pathway in ctx.engine.registry.all():
        plan = to_plandefinition(pathway)
        if all(plan.get(key) == value for key, value in (("id", wanted.get("_id")), ("url", wanted.get("url")),
                                                          ("version", wanted.get("version")),
                                                          ("name", wanted.get("name")),
                                                          ("status", wanted.get("status"))) if value is not None):
            found.append(plan)
    if "version" not in wanted:  # newest version of each unless a version is asked for
        newest = {p.canonical() for p in ctx.engine.registry.latest()}
        found = [p for p in found if f"{p['url']}|{p['version']}" in newest]
    return {"resourceType": "Bundle", "type": "searchset", "total": len(found),
            "link": [{"relation": "self", "url": ctx.url("PlanDefinition")}],
            "entry": [{"fullUrl": ctx.url(f"PlanDefinition/{p['id']}"), "resource": p, "search": {"mode": "match"}}
                      for p in found]}


# -- AuditEvent ------------------------------------------------------------------------------------

_SUBTYPES = {"read": "read", "vread": "vread", "history": "history-instance", "search": "search-type",
             "delete": "delete"}
_DICOM = "http://dicom.nema.org/resources/ontology/DCM"
#: Dashboard sign-ins and sign-outs are DICOM "User Authentication" events.
_AUTHENTICATION = {"login": {"system": _DICOM, "code": "110122", "display": "Login"},
                   "logout": {"system": _DICOM, "code": "110123", "display": "Logout"}}


def to_auditevent(row: AuditEntry) -> JSON:
    """One audit entry as an AuditEvent."""
    if row.what in _SUBTYPES:
        subtype = {"system": "http://hl7.org/fhir/restful-interaction", "code": _SUBTYPES[row.what]}
    elif row.what == "write":
        subtype = {"system": "http://hl7.org/fhir/restful-interaction",
                   "code": "create" if row.action == "C" else "update"}
    elif row.what in _AUTHENTICATION:
        subtype = _AUTHENTICATION[row.what]
    else:
        subtype = {"system": "https://zorgpad.nl/fhir/CodeSystem/engine-event", "code": row.what}
    agent: JSON = {"requestor": True, "name": row.actor}
    agent["who"] = {"reference": row.organisation} if row.organisation else {"display": row.actor}
    event: JSON = {
        "resourceType": "AuditEvent",
        "id": str(row.id),
        "type": {"system": _DICOM, "code": "110114", "display": "User Authentication"}
        if row.what in _AUTHENTICATION else {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
                                             "code": "rest", "display": "RESTful Operation"},
        "subtype": [subtype],
        "action": row.action,
        "recorded": instant(row.recorded_at),
        "outcome": row.outcome,
        "agent": [agent],
        "source": {"observer": {"display": "Zorgpad"}},
    }
    if row.detail:
        event["outcomeDesc"] = row.detail
    entities = []
    if row.entity:
        entities.append({"what": {"reference": row.entity}} if "/" in row.entity and " " not in row.entity
                        else {"name": row.entity})
    if row.patient:
        entities.append({"what": {"reference": row.patient},
                         "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1",
                                  "display": "Patient"}})
    if entities:
        event["entity"] = entities
    return event


def _search_audit(ctx: FHIRContext, params: Sequence[tuple[str, str]]) -> JSON:
    query = select(AuditEntry)
    count, offset = 50, 0
    for name, value in params:
        if name == "patient":
            query = query.where(col(AuditEntry.patient) == (value if "/" in value else f"Patient/{value}"))
        elif name == "agent":
            query = query.where(or_(col(AuditEntry.organisation) == value, col(AuditEntry.actor) == value))
        elif name == "entity":
            query = query.where(col(AuditEntry.entity).startswith(value))
        elif name == "action":
            query = query.where(col(AuditEntry.action).in_(value.split(",")))
        elif name == "date":
            prefix, text = (value[:2], value[2:]) if value[:2] in ("ge", "gt", "le", "lt", "eq") else ("eq", value)
            try:
                start, end = parse_fhir_datetime(text)
            except ValueError:
                raise FHIRError(400, f"date {value!r} is not a FHIR date", code="value") from None
            column = col(AuditEntry.recorded_at)
            query = query.where({"ge": column >= start, "gt": column >= end, "le": column < end, "lt": column < start,
                                 "eq": (column >= start) & (column < end) if start != end else column == start}[prefix])
        elif name == "_count":
            count = max(0, min(int(value), 1000)) if value.isdigit() else 50
        elif name == "_offset":
            offset = int(value) if value.isdigit() else 0
        elif name not in ("_format", "_sort") and ctx.strict:
            raise FHIRError(400, f"unknown search parameter {name!r} for AuditEvent", code="not-supported")
    if not ctx.scope.unrestricted:
        query = query.where(visible_to(ctx.principal.organisation, ctx.scope.patients()))
    total = ctx.session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = ctx.session.exec(query.order_by(col(AuditEntry.id).desc()).offset(offset).limit(count)).all()
    audit(ctx.session, ctx.principal.actor, ctx.now, action="E", what="search", entity="AuditEvent")
    links = [{"relation": "self", "url": ctx.url("AuditEvent")}]
    if offset + count < total:
        kept = [(n, v) for n, v in params if n not in ("_count", "_offset")]
        query_string = urlencode([*kept, ("_count", str(count)), ("_offset", str(offset + count))])
        links.append({"relation": "next", "url": ctx.url(f"AuditEvent?{query_string}")})
    return {"resourceType": "Bundle", "type": "searchset", "total": total, "link": links,
            "entry": [{"fullUrl": ctx.url(f"AuditEvent/{r.id}"), "resource": to_auditevent(r),
                       "search": {"mode": "match"}} for r in rows]}
