"""A small JSON API for operators: the outbox's dead letters, and putting one back to be delivered.

``GET /api/outbox?status=dead`` lists items (newest first); ``POST /api/outbox/{id}/retry`` puts a dead
item back to ``pending`` with its attempts reset, due at once. Both need ``Authorization: Bearer
<token>`` of an administrator or of a coordinator organisation (the organisation in
``$ZORGPAD_COORDINATOR_ORG``, or one that fills the coordinator role in some CareTeam); both are audited.
A missing or unknown token is a 401 OperationOutcome (the FHIR interface's check); other refusals are
``{"detail": "…"}`` with 400, 403, 404 or 409.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Header, HTTPException, Query
from sqlmodel import Session, col, select
from zorgpad.engine._assign import COORDINATOR_ENV, _org_of
from zorgpad.engine._criteria import codings_at
from zorgpad.engine._roles import COORDINATOR, ROLE_SYSTEM
from zorgpad.engine.outbox import retry_dead_letter
from zorgpad.engine.runtime import Engine
from zorgpad.engine.store.audit import Actor, audit
from zorgpad.engine.store.tables import OutboxItem, SearchReference, StoredResource

STATUSES = ("pending", "delivered", "dead")


class Caller(Protocol):
    """Who sent a request: what the FHIR interface's ``authenticate`` returns."""

    @property
    def organisation(self) -> str | None: ...

    @property
    def admin(self) -> bool: ...

    @property
    def actor(self) -> Actor: ...


#: ``authenticate(session, authorization_header)``: the caller, or an exception the app answers (401).
Authenticate = Callable[[Session, str | None], Caller]


def is_coordinator(session: Session, organisation: str | None) -> bool:
    """Whether ``organisation`` (``Organization/id``) coordinates care in this region."""
    if organisation is None:
        return False
    if organisation == os.environ.get(COORDINATOR_ENV):
        return True
    team_ids = select(SearchReference.resource_id).where(SearchReference.resource_type == "CareTeam",
                                                         SearchReference.target == organisation)
    teams = session.exec(select(StoredResource).where(
        StoredResource.resource_type == "CareTeam", col(StoredResource.id).in_(team_ids),
        col(StoredResource.deleted).is_(False)))
    for team in teams:
        for participant in team.content.get("participant") or []:
            if not isinstance(participant, Mapping):
                continue
            refs = [(participant.get(e) or {}).get("reference") for e in ("onBehalfOf", "member")]
            orgs = {_org_of(session, ref) for ref in refs if isinstance(ref, str)}
            if organisation in orgs and any(c.system == ROLE_SYSTEM and c.code == COORDINATOR.code
                                            for c in codings_at(participant, "role")):
                return True
    return False


def _json(item: OutboxItem) -> dict[str, Any]:
    def when(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment else None

    return {"id": item.id, "idempotencyKey": item.idempotency_key, "channel": item.channel, "target": item.target,
            "status": item.status, "attempts": item.attempts, "lastError": item.last_error,
            "createdAt": when(item.created_at), "nextAttemptAt": when(item.next_attempt_at),
            "deliveredAt": when(item.delivered_at), "patient": item.payload.get("patient"),
            "enrolment": item.enrolment_id, "step": item.step_id}


def create_router(engine: Engine, authenticate: Authenticate) -> APIRouter:
    """The operators' routes over ``engine``'s database; ``authenticate`` checks the bearer token (the
    composition root passes the FHIR interface's, so the same tokens work)."""
    router = APIRouter(prefix="/api", tags=["operations"])
    db = engine.db

    def operator(session: Session, authorization: str | None) -> Caller:
        principal = authenticate(session, authorization)
        if not (principal.admin or is_coordinator(session, principal.organisation)):
            raise HTTPException(403, "only administrators and coordinator organisations may manage the outbox")
        return principal

    @router.get("/outbox")
    def list_outbox(authorization: Annotated[str | None, Header()] = None,
                    status: Annotated[str, Query()] = "dead",
                    limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        """Outbox items with ``status`` (default: the dead letters), newest first."""
        if status not in STATUSES:
            raise HTTPException(400, f"status must be one of {', '.join(STATUSES)} (got {status!r})")

        def read(session: Session) -> dict[str, Any]:
            principal = operator(session, authorization)
            items = list(session.exec(select(OutboxItem).where(OutboxItem.status == status)
                                      .order_by(col(OutboxItem.id).desc()).limit(limit)))
            audit(session, principal.actor, engine.clock.now(), action="R", what="outbox",
                  detail=f"status={status}; {len(items)} items")
            return {"status": status, "count": len(items), "items": [_json(item) for item in items]}

        return db.run(read)

    @router.post("/outbox/{item_id}/retry")
    def retry(item_id: int, authorization: Annotated[str | None, Header()] = None) -> dict[str, Any]:
        """Put a dead letter back to ``pending``, attempts reset, due now."""

        def work(session: Session) -> dict[str, Any]:
            principal = operator(session, authorization)
            item = session.get(OutboxItem, item_id, with_for_update=True)
            if item is None:
                raise HTTPException(404, f"outbox item {item_id} does not exist")
            if item.status != "dead":
                raise HTTPException(409, f"outbox item {item_id} is {item.status}, not dead")
            retry_dead_letter(session, item, principal.actor, engine.clock.now())
            return _json(item)

        return db.run(work)

    return router
