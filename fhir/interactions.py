"""The RESTful interactions as plain functions over a :class:`FHIRContext`: the HTTP routes and the
transaction/batch processor both call these, so a Bundle entry behaves exactly like a single request."""

from __future__ import annotations

import copy
import re
from typing import Any

import jsonpatch
from sqlmodel import col, select
from zorgpad.engine._model import TaskStatusChanged
from zorgpad.engine._states import TASK_STATUSES
from zorgpad.engine.errors import IllegalTransitionError, NotEnrolledError
from zorgpad.engine.runtime import Engine
from zorgpad.engine.store.audit import audit
from zorgpad.engine.store.enrolments import load_state
from zorgpad.engine.store.resources import fresh_id, get_resource, put_resource
from zorgpad.engine.store.tables import Enrolment, ResourceVersion, StoredResource
from zorgpad.fhir.capabilities import RESOURCE_TYPES
from zorgpad.fhir.context import FHIRContext
from zorgpad.fhir.outcomes import FHIRError
from zorgpad.fhir.validation import validate_resource

JSON = dict[str, Any]
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
#: Task elements the owner may change (Nuts shared care planning rules); the rest is the requester's.
TASK_MUTABLE = frozenset({"status", "statusReason", "businessStatus", "executionPeriod", "lastModified", "owner",
                          "location", "note", "relevantHistory", "output", "meta", "text"})


def _engine_owned(ctx: FHIRContext, stored: StoredResource | None) -> bool:
    """Whether a stored resource is the engine's own: an enrolment's CarePlan or a step's Task."""
    if stored is None:
        return False
    if stored.resource_type == "CarePlan":
        return ctx.session.get(Enrolment, stored.id) is not None
    return stored.resource_type == "Task" and Engine.step_of_task(stored.content) is not None


def check_type(resource_type: str, interaction: str) -> None:
    """404 for an unknown type, 405 for an interaction the type does not support."""
    support = RESOURCE_TYPES.get(resource_type)
    if support is None:
        raise FHIRError(404, f"resource type {resource_type!r} is not supported by this server", code="not-supported")
    if interaction not in support.interactions:
        raise FHIRError(405, f"{resource_type} does not support {interaction}", code="not-supported")


def check_id(resource_id: str) -> None:
    """400 for a string that cannot be a FHIR id."""
    if not _ID.match(resource_id):
        raise FHIRError(400, f"{resource_id!r} is not a valid FHIR id (1-64 of A-Z a-z 0-9 - .)", code="value")


def _visible(ctx: FHIRContext, resource_type: str, resource_id: str) -> StoredResource:
    check_id(resource_id)
    stored = get_resource(ctx.session, resource_type, resource_id)
    if stored is None or not ctx.scope.sees(ctx.session, stored):
        raise FHIRError(404, f"{resource_type}/{resource_id} is not known", code="not-found")
    return stored


def read(ctx: FHIRContext, resource_type: str, resource_id: str) -> StoredResource:
    """The current version; 404 if unknown or not visible, 410 if deleted."""
    check_type(resource_type, "read")
    stored = _visible(ctx, resource_type, resource_id)
    audit(ctx.session, ctx.principal.actor, ctx.now, action="R", what="read",
          entity=f"{resource_type}/{resource_id}", patient=stored.patient)
    if stored.deleted:
        raise FHIRError(410, f"{resource_type}/{resource_id} was deleted", code="deleted")
    return stored


def vread(ctx: FHIRContext, resource_type: str, resource_id: str, version_id: str) -> ResourceVersion:
    """One version; 404 if there is no such version, 410 if that version is a deletion."""
    check_type(resource_type, "vread")
    stored = _visible(ctx, resource_type, resource_id)
    version = ctx.session.get(ResourceVersion, (resource_type, resource_id, int(version_id))) \
        if version_id.isdigit() else None
    if version is None:
        raise FHIRError(404, f"{resource_type}/{resource_id} has no version {version_id!r}", code="not-found")
    audit(ctx.session, ctx.principal.actor, ctx.now, action="R", what="vread",
          entity=f"{resource_type}/{resource_id}/_history/{version_id}", patient=stored.patient)
    if version.deleted:
        raise FHIRError(410, f"version {version_id} of {resource_type}/{resource_id} is a deletion", code="deleted")
    return version


def history(ctx: FHIRContext, resource_type: str, resource_id: str) -> list[ResourceVersion]:
    """Every version, newest first."""
    check_type(resource_type, "history-instance")
    stored = _visible(ctx, resource_type, resource_id)
    versions = ctx.session.exec(select(ResourceVersion).where(
        ResourceVersion.resource_type == resource_type, ResourceVersion.id == resource_id)
        .order_by(col(ResourceVersion.version_id).desc())).all()
    audit(ctx.session, ctx.principal.actor, ctx.now, action="R", what="history",
          entity=f"{resource_type}/{resource_id}", patient=stored.patient)
    return list(versions)


def _write(ctx: FHIRContext, resource: JSON, method: str) -> StoredResource:
    return ctx.engine.ingest_in(ctx.session, resource, actor=ctx.principal.actor, now=ctx.now, method=method).resource


def create(ctx: FHIRContext, resource: Any, *, if_none_exist: str | None = None) -> tuple[StoredResource, bool]:
    """Create with a server-assigned id; with If-None-Exist, return the one existing match instead."""
    data = validate_resource(resource)
    rtype = data["resourceType"]
    check_type(rtype, "create")
    if if_none_exist:
        from zorgpad.fhir.search import find

        found = find(ctx, rtype, _query_pairs(if_none_exist))
        if len(found) == 1:
            audit(ctx.session, ctx.principal.actor, ctx.now, action="R", what="read",
                  entity=f"{rtype}/{found[0].id}", patient=found[0].patient, detail="If-None-Exist match")
            return found[0], False
        if len(found) > 1:
            raise FHIRError(412, f"If-None-Exist '{if_none_exist}' matches {len(found)} resources", code="duplicate")
    data = copy.deepcopy(data)
    data["id"] = fresh_id(ctx.session, rtype)
    ctx.scope.check_write(ctx.session, data, None)
    return _write(ctx, data, "POST"), True


def _query_pairs(query: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(query.lstrip("?"), keep_blank_values=True)


def _check_if_match(stored: StoredResource | None, if_match: str | None) -> None:
    if if_match is None:
        return
    wanted = if_match.strip().removeprefix("W/").strip('"')
    if stored is None or stored.deleted or str(stored.version_id) != wanted:
        current = "none" if stored is None or stored.deleted else stored.version_id
        raise FHIRError(412, f"If-Match version {wanted} is not the current version ({current})", code="conflict")


def update(ctx: FHIRContext, resource_type: str, resource_id: str, resource: Any, *,
           if_match: str | None = None) -> tuple[StoredResource, bool]:
    """Update, or create with the client's id (update-as-create); If-Match guards against lost updates."""
    check_type(resource_type, "update")
    check_id(resource_id)
    data = validate_resource(resource, expected_type=resource_type, expected_id=resource_id)
    existing = get_resource(ctx.session, resource_type, resource_id)
    ctx.scope.check_write(ctx.session, data, existing)
    _check_if_match(existing, if_match)
    created = existing is None or existing.deleted
    enrolment = ctx.session.get(Enrolment, resource_id) if resource_type == "CarePlan" else None
    if resource_type == "CarePlan" and (_engine_owned(ctx, existing) or enrolment is not None):
        raise FHIRError(405, f"CarePlan/{resource_id} shows an enrolment and is written by the engine "
                             "(use its Tasks, or PlanDefinition/$apply to enrol)", code="not-supported")
    if resource_type == "Task" and existing is not None and not existing.deleted:
        step = Engine.step_of_task(existing.content)
        if step is not None:
            return _update_engine_task(ctx, existing, data, step), False
    return _write(ctx, data, "PUT"), created


def patch(ctx: FHIRContext, resource_type: str, resource_id: str, operations: Any, *,
          if_match: str | None = None) -> StoredResource:
    """Apply a JSON Patch (RFC 6902) to the current version, then update."""
    check_type(resource_type, "patch")
    stored = _visible(ctx, resource_type, resource_id)
    if stored.deleted:
        raise FHIRError(410, f"{resource_type}/{resource_id} was deleted", code="deleted")
    if not isinstance(operations, list):
        raise FHIRError(400, "a JSON Patch body is a list of operations", code="structure")
    current = copy.deepcopy(stored.content)
    try:
        patched = jsonpatch.apply_patch(current, operations)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, KeyError) as exc:
        raise FHIRError(422, f"the JSON Patch cannot be applied: {exc}", code="processing") from None
    return update(ctx, resource_type, resource_id, patched, if_match=if_match)[0]


def _update_engine_task(ctx: FHIRContext, existing: StoredResource, data: JSON,
                        step: tuple[str, str, int]) -> StoredResource:
    """An update of a Task the engine made: only its owner (or an administrator) may change it, only in
    the elements an owner may change, and a status change is an engine event."""
    enrolment_id, step_id, iteration = step
    owner = (existing.content.get("owner") or {}).get("reference")
    if not ctx.principal.admin and ctx.principal.organisation != owner:
        raise FHIRError(403, f"only the Task's owner ({owner or 'none'}) may update it", code="forbidden")
    changed = sorted(k for k in set(existing.content) | set(data)
                     if k not in TASK_MUTABLE and existing.content.get(k) != data.get(k))
    if changed:
        raise FHIRError(422, f"the Task's owner may not change {', '.join(changed)}", code="business-rule",
                        expression=[f"Task.{k}" for k in changed])
    row = ctx.session.get(Enrolment, enrolment_id)
    run = load_state(ctx.session, row).steps.get(step_id) if row is not None else None
    if run is None or run.iteration != iteration:
        raise FHIRError(409, "this Task belongs to an earlier round of its step or to an ended pathway version",
                        code="conflict")
    status = data.get("status")
    old_status = existing.content.get("status")  # before the engine rewrites this very row
    old_content = dict(existing.content)
    if status != old_status:
        if status not in TASK_STATUSES:
            raise FHIRError(400, f"Task.status {status!r} is not a valid code", code="code-invalid")
        reason = (data.get("statusReason") or {}).get("text")
        try:
            ctx.engine.handle_in(ctx.session, enrolment_id, TaskStatusChanged(step_id, str(status), reason),
                                 actor=ctx.principal.actor, now=ctx.now)
        except (IllegalTransitionError, NotEnrolledError) as exc:
            raise FHIRError(422, str(exc), code="business-rule", expression=["Task.status"]) from None
    latest = get_resource(ctx.session, "Task", existing.id)
    assert latest is not None
    merged = dict(latest.content)
    extra = {k: v for k, v in data.items() if k in ("note", "output", "location", "relevantHistory")
             and v != merged.get(k)}
    if not extra:
        if status == old_status and old_content == merged:
            return latest  # nothing changed: no new version
        if status != old_status:
            return latest
    merged.update(extra)
    merged.pop("meta", None)
    return put_resource(ctx.session, merged, ctx.now, method="PUT")


def delete(ctx: FHIRContext, resource_type: str, resource_id: str) -> None:
    """Delete where it is safe: not engine resources, not a patient with an active enrolment."""
    check_type(resource_type, "delete")
    stored = _visible(ctx, resource_type, resource_id)
    if stored.deleted:
        return
    if _engine_owned(ctx, stored):
        raise FHIRError(405, f"{resource_type}/{resource_id} belongs to the engine; cancel or complete it instead",
                        code="not-supported")
    if resource_type == "Patient":
        active = ctx.session.exec(select(Enrolment.id).where(Enrolment.patient == f"Patient/{resource_id}",
                                                             Enrolment.status == "active")).first()
        if active is not None:
            raise FHIRError(409, f"Patient/{resource_id} is enrolled (CarePlan/{active}); end the enrolment first",
                            code="conflict")
    ctx.scope.check_write(ctx.session, dict(stored.content), stored)
    # The current row keeps the last content (so the deletion stays scoped to the same patient); history
    # records the deletion without content.
    content = {k: v for k, v in stored.content.items() if k != "meta"}
    put_resource(ctx.session, content, ctx.now, method="DELETE", deleted=True)
    audit(ctx.session, ctx.principal.actor, ctx.now, action="D", what="delete",
          entity=f"{resource_type}/{resource_id}", patient=stored.patient)
