"""The audit log: every read and write of patient data, with who, what, when and the outcome."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, or_
from sqlmodel import Session, col
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


def visible_to(organisation: str | None, patients: Select[Any]) -> ColumnElement[bool]:
    """Which audit entries an organisation may read (administrators read all): what its own people and
    systems did, and everything done with the data of the patients it takes part in (``patients``: the
    ``Patient/id`` references it may see). The FHIR AuditEvent search and the dashboard's log share it."""
    return or_(col(AuditEntry.organisation) == organisation, col(AuditEntry.patient).in_(patients))
