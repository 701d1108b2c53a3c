"""FHIR messaging (``POST /fhir/$process-message``, synchronous): a GP system pushes a ``Bundle`` of type
``message`` whose first entry is a ``MessageHeader`` (bdl-12); Zorgpad stores the other entries and
answers a response message.

Processing:

* The content entries are written through :mod:`zorgpad.fhir.interactions` (each audited, each fed to
  the engine, which may enrol the patient): an entry with a RESTful ``fullUrl`` (``Type/id``) or a
  resource with an ``id`` is an update-as-create with that id; one without is a create. References
  between the entries are resolved as in a transaction (:mod:`zorgpad.fhir.bundles`), and a resource
  is written after those it refers to.
* Idempotent: the answer is kept in the inbox under ``message:Bundle/<Bundle.id>`` and
  ``message:MessageHeader/<MessageHeader.id>``; a repeat of either gets the same stored answer and
  changes nothing (messaging.html#reliable). Concurrent repeats wait on the inbox row of the first.
* The answer is a ``message`` Bundle whose ``MessageHeader`` has ``response.identifier`` = the request's
  ``MessageHeader.id`` and ``response.code``:

  - ``ok``: everything was stored; ``response.details`` is an informational OperationOutcome naming
    each stored ``Type/id`` and version.
  - ``fatal-error``: the content is wrong (an invalid resource, a write the sender may not make, an
    engine rule): nothing of the message is stored, ``response.details`` is the OperationOutcome,
    and the answer is still kept, so a resend gets the same one.
  - ``transient-error`` is not produced here: when the database is unavailable the server layer answers
    HTTP 503 with an OperationOutcome, nothing is stored or recorded, and the sender should resend.

* A request that is not a message at all (not a Bundle, ``Bundle.type`` not ``message``, no
  ``MessageHeader`` first, a ``MessageHeader`` without ``id``, ``event[x]`` or ``source.endpoint``)
  is answered 400 with an OperationOutcome and not recorded.
* The body may also be a ``Parameters`` with the Bundle in parameter ``content``. Asynchronous
  messaging (parameter ``async`` = true, or ``response-url``) is refused with 400 ``not-supported``.
  The OperationDefinition puts ``async`` in the URL; the route does not hand the query string to
  :func:`process_message`, so ``?async=true`` is not seen (the message is processed synchronously).
* Every message, repeats included, gets one audit row ``what="process-message"`` (action ``E``, outcome
  ``0`` for ok and repeats, ``8`` for fatal-error) besides the per-resource audit of the interactions;
  what is refused with 400 is not a message and is not audited.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy.exc import IntegrityError
from zorgpad.engine._projection import instant
from zorgpad.engine.errors import PathwayError
from zorgpad.engine.store.audit import audit
from zorgpad.engine.store.batched import savepoint
from zorgpad.engine.store.tables import InboxEntry, StoredResource
from zorgpad.fhir import interactions
from zorgpad.fhir.bundles import (
    References,
    as_fhir_error,
    base_of,
    check_bundle,
    restful_target,
    unresolved_placeholders,
    write_order,
)
from zorgpad.fhir.context import FHIRContext
from zorgpad.fhir.outcomes import FHIRError, operation_outcome
from zorgpad.fhir.validation import validate_resource

JSON = dict[str, Any]
_EVENTS = ("eventCoding", "eventUri")


def _unwrap(body: Any) -> Any:
    """The Bundle of a ``Parameters`` body (parameter ``content``), or ``body`` itself."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        return body
    content = None
    for parameter in body.get("parameter") or []:
        if not isinstance(parameter, dict):
            continue
        name = parameter.get("name")
        if name == "content":
            content = parameter.get("resource")
        elif name == "async" and parameter.get("valueBoolean") is True:
            raise FHIRError(400, "asynchronous messaging (async=true) is not supported: send the message "
                                 "without async and take the response message from the reply", code="not-supported")
        elif name == "response-url":
            raise FHIRError(400, "response-url is only used with async=true, which is not supported",
                            code="not-supported")
    if content is None:
        raise FHIRError(400, "$process-message needs the parameter 'content' holding the message Bundle",
                        code="required", expression=["Parameters.parameter"])
    return content


def _header(bundle: JSON) -> JSON:
    """The validated MessageHeader of the first entry (bdl-12), or a 400."""
    entries = bundle.get("entry") or []
    first = entries[0].get("resource") if entries else None
    if not isinstance(first, dict) or first.get("resourceType") != "MessageHeader":
        got = first.get("resourceType") if isinstance(first, dict) else "nothing"
        raise FHIRError(400, f"the first entry of a message must be a MessageHeader (bdl-12; got {got})",
                        code="invariant", expression=["Bundle.entry[0].resource"])
    header = validate_resource(first)
    if not isinstance(header.get("id"), str):
        raise FHIRError(400, "the MessageHeader needs an id (the response names it, and it de-duplicates resends)",
                        code="required", expression=["MessageHeader.id"])
    return header  # validation has checked event[x] and source.endpoint (both 1..1)


def _keys(bundle: JSON, header: JSON) -> list[str]:
    keys = [f"message:Bundle/{bundle['id']}"] if isinstance(bundle.get("id"), str) else []
    return [*keys, f"message:MessageHeader/{header['id']}"]


def _answered(ctx: FHIRContext, keys: list[str]) -> JSON | None:
    for key in keys:
        row = ctx.session.get(InboxEntry, key, populate_existing=True)
        if row is not None and row.response is not None:
            return row.response
    return None


def _claim(ctx: FHIRContext, keys: list[str]) -> list[InboxEntry] | JSON:
    """Inbox rows for ``keys``, or the stored answer when a concurrent request has just handled the message."""
    rows = []
    for key in keys:
        row = ctx.session.get(InboxEntry, key)
        if row is None:
            try:
                with ctx.session.begin_nested():
                    row = InboxEntry(key=key, received_at=ctx.now)
                    ctx.session.add(row)
                    ctx.session.flush()
            except IntegrityError:  # another request took this key and has committed since
                answer = _answered(ctx, keys)
                if answer is None:
                    raise
                return answer
        rows.append(row)
    return rows


# -- the content ------------------------------------------------------------------------------------

def _plan(entries: list[JSON]) -> tuple[References, dict[int, str | None], list[int]]:
    """Who each content entry (index 1 on) is, as ``Type/id`` or None for a create, and the order to
    write them in."""
    names = References()
    targets: dict[int, str | None] = {}
    for index, entry in enumerate(entries[1:], start=1):
        resource = entry.get("resource")
        where = f"Bundle.entry[{index}]"
        if not isinstance(resource, dict):
            raise FHIRError(400, f"{where} has no resource", code="required", expression=[f"{where}.resource"])
        rtype = resource.get("resourceType")
        full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
        named = restful_target(full_url)
        rid = resource.get("id")
        if named is not None and named[0] == rtype:
            if rid is not None and rid != named[1]:
                raise FHIRError(400, f"{where}: the resource id {rid!r} differs from the fullUrl {full_url}",
                                code="invariant", expression=[f"{where}.fullUrl"])
            rid = named[1]
        target = f"{rtype}/{rid}" if isinstance(rid, str) else None
        if target is not None and target in names.targets:
            raise FHIRError(400, f"Bundle.entry[{names.owners[target]}] and {where} are both {target}",
                            code="invariant", expression=[where])
        if full_url is not None and full_url in names.targets:
            raise FHIRError(400, f"Bundle.entry[{names.owners[full_url]}] and {where} have the same fullUrl "
                                 f"{full_url}", code="invariant", expression=[f"{where}.fullUrl"])
        targets[index] = target
        names.name(full_url, index, target)
        if target is not None:
            names.name(target, index, target)
    hard: dict[int, set[int]] = {}
    soft: dict[int, set[int]] = {}
    for index in targets:
        entry = entries[index]
        referred = names.entries_referred_to(entry["resource"], base_of(entry.get("fullUrl")))
        hard[index] = {i for i in referred if targets[i] is None}
        soft[index] = referred - hard[index]
    return names, targets, write_order(sorted(targets), hard, soft)


def _store(ctx: FHIRContext, entries: list[JSON]) -> list[StoredResource]:
    """Write the content entries (all but the MessageHeader); raise at the first that fails."""
    names, targets, order = _plan(entries)
    urls_of: dict[int, list[str]] = {}
    for url, owner in names.owners.items():
        urls_of.setdefault(owner, []).append(url)
    stored: dict[int, StoredResource] = {}
    for index in order:
        entry = entries[index]
        where = f"Bundle.entry[{index}]"
        resource = names.rewrite(entry["resource"], base_of(entry.get("fullUrl")))
        left = unresolved_placeholders(resource)
        target = targets[index]
        try:
            if left:
                raise FHIRError(400, f"the reference {left[0]} matches no fullUrl in this message", code="not-found")
            if target is None:
                stored[index] = interactions.create(ctx, resource)[0]
            else:
                rtype, rid = target.split("/", 1)
                if resource.get("id") != rid:
                    resource = {**resource, "id": rid}
                stored[index] = interactions.update(ctx, rtype, rid, resource)[0]
        except (FHIRError, PathwayError) as exc:
            error = as_fhir_error(exc)
            raise FHIRError(error.status, f"{where}: {error.diagnostics}",
                            issues=[{**i, "diagnostics": f"{where}: {i.get('diagnostics', '')}"}
                                    for i in error.issues]) from None
        if target is None:
            for url in urls_of.get(index, []):
                names.targets[url] = f"{stored[index].resource_type}/{stored[index].id}"
    return [stored[i] for i in sorted(stored)]


# -- the answer ---------------------------------------------------------------------------------------

def _response(ctx: FHIRContext, header: JSON, code: str, outcome: JSON) -> JSON:
    """The response message: a MessageHeader answering ``header``, and ``outcome`` as its details."""
    header_id, outcome_id = str(uuid.uuid4()), str(uuid.uuid4())
    answer: JSON = {
        "resourceType": "MessageHeader",
        "id": header_id,
        "source": {"name": "Zorgpad", "software": "Zorgpad", "endpoint": ctx.base_url},
        "destination": [{k: v for k, v in header["source"].items() if k in ("name", "endpoint")}],
        "response": {"identifier": header["id"], "code": code,
                     "details": {"reference": f"urn:uuid:{outcome_id}"}},
    }
    for name in _EVENTS:
        if name in header:
            answer[name] = header[name]
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "message", "timestamp": instant(ctx.now),
            "entry": [{"fullUrl": f"urn:uuid:{header_id}", "resource": answer},
                      {"fullUrl": f"urn:uuid:{outcome_id}", "resource": {**outcome, "id": outcome_id}}]}


def _event_name(header: JSON) -> str:
    coding = header.get("eventCoding")
    if isinstance(coding, Mapping):
        return f"{coding.get('system', '')}|{coding.get('code', '')}"
    return str(header.get("eventUri", ""))


def process_message(ctx: FHIRContext, body: Any) -> JSON:
    """Process one message synchronously; the response message (the stored one for a repeat)."""
    bundle = check_bundle(_unwrap(body), ("message",), "$process-message")
    header = _header(bundle)
    keys = _keys(bundle, header)
    entity = f"MessageHeader/{header['id']}"
    claimed = _answered(ctx, keys)
    rows = _claim(ctx, keys) if claimed is None else claimed
    if isinstance(rows, dict):
        audit(ctx.session, ctx.principal.actor, ctx.now, action="E", what="process-message", entity=entity,
              detail=f"{_event_name(header)}: a repeat; the stored response was given again")
        return rows
    try:
        with savepoint(ctx.session):
            written = _store(ctx, list(bundle["entry"]))
    except (FHIRError, PathwayError) as exc:
        error = as_fhir_error(exc)
        response = _response(ctx, header, "fatal-error", error.outcome())
        outcome, detail, patient = "8", f"{_event_name(header)}: fatal-error: {error.diagnostics}", None
    else:
        issues = [{"severity": "information", "code": "informational",
                   "diagnostics": f"{s.resource_type}/{s.id} stored as version {s.version_id}"} for s in written]
        response = _response(ctx, header, "ok", operation_outcome(issues or [
            {"severity": "information", "code": "informational", "diagnostics": "the message carried no resources"}]))
        patients = {s.patient for s in written if s.patient}
        outcome, detail = "0", f"{_event_name(header)}: ok, {len(written)} resources stored"
        patient = patients.pop() if len(patients) == 1 else None
    for row in rows:
        row.response = response
        ctx.session.add(row)
    audit(ctx.session, ctx.principal.actor, ctx.now, action="E", what="process-message", entity=entity,
          patient=patient, outcome=outcome, detail=detail)
    return response
