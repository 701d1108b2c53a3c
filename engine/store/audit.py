"""The audit log: every read and write of patient data, with who, what, when and the outcome."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session
from zorgpad.engine.store import batched
from zorgpad.engine.store.tables import AuditEntry


@dataclass(frozen=True)
class Actor:
    """Who is acting: a client (token name, ``system:tick``, …) on behalf of an organisation."""

    name: str
    organisation: str | None = None


SYSTEM = Actor("system:zorgpad")


def audit(session: Session, actor: Actor, now: datetime, *, action: str, what: str,
          entity: str | None = None, patient: str | None = None, outcome: str = "0",
          detail: str | None = None) -> None:
    """Add one audit entry in the caller's transaction (it waits to go with the transaction's others, see
    :mod:`zorgpad.engine.store.batched`: nothing reads it back in the same transaction)."""
    batched.add(session.connection(), AuditEntry.__table__, [{  # type: ignore[attr-defined]
        "recorded_at": now, "actor": actor.name, "organisation": actor.organisation, "action": action,
        "what": what, "entity": entity, "patient": patient, "outcome": outcome, "detail": detail}])
