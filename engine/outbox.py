"""Delivering the outbox: at-least-once, with an idempotency key on every item.

An item is claimed with a lease in a short transaction, delivered outside any transaction, and its
result recorded in another. A process that dies after delivering but before recording delivers the
item again once the lease runs out; the receiver drops the repeat by its idempotency key. Failures are
retried with exponential backoff and dead-lettered after ``max_attempts``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import Session, col, or_, select
from zorgpad.engine._dsl import ActionContext
from zorgpad.engine._projection import instant
from zorgpad.engine.registry import Registry
from zorgpad.engine.store.audit import Actor, audit
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.resources import get_resource, put_resource
from zorgpad.engine.store.tables import OutboxItem

DELIVER_ACTOR = Actor("system:deliver")


class DeliveryError(Exception):
    """A delivery attempt failed; ``retry_after`` is the receiver's wish for the next attempt, if any."""

    def __init__(self, message: str, retry_after: timedelta | None = None, permanent: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.permanent = permanent


Transport = Callable[[OutboxItem, datetime], None]


@dataclass
class DeliveryReport:
    """What one flush of the outbox did."""

    delivered: int = 0
    retried: int = 0
    dead: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class RetryPolicy:
    """Exponential backoff with jitter, capped, then dead-letter."""

    max_attempts: int = 8
    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(hours=6)
    jitter: float = 0.2

    def delay(self, attempts: int, retry_after: timedelta | None = None) -> timedelta:
        """How long to wait after the ``attempts``-th failure."""
        delay: timedelta = min(self.base * (2 ** (attempts - 1)), self.cap)
        delay = delay * (1 + random.uniform(-self.jitter, self.jitter))
        return max(delay, retry_after) if retry_after else delay


class Outbox:
    """Flushes the outbox through one transport per channel."""

    def __init__(self, db: Database, transports: Mapping[str, Transport], *, policy: RetryPolicy | None = None,
                 lease: timedelta = timedelta(minutes=5), batch_size: int = 100) -> None:
        self.db = db
        self.transports = dict(transports)
        self.policy = policy or RetryPolicy()
        self.lease = lease
        self.batch_size = batch_size

    def deliver(self, now: datetime) -> DeliveryReport:
        """Deliver every item due by ``now`` once; return what happened."""
        report = DeliveryReport()
        while True:
            claimed = self.db.run(lambda session: self._claim(session, now))
            if not claimed:
                return report
            for item in claimed:
                self._deliver_one(item, now, report)

    def _claim(self, session: Session, now: datetime) -> list[OutboxItem]:
        query = (select(OutboxItem)
                 .where(OutboxItem.status == "pending", OutboxItem.next_attempt_at <= now,
                        or_(col(OutboxItem.lease_until).is_(None), col(OutboxItem.lease_until) <= now))
                 .order_by(col(OutboxItem.id)).limit(self.batch_size))
        if self.db.is_postgresql:
            query = query.with_for_update(skip_locked=True)
        items = list(session.exec(query))
        for item in items:
            item.lease_until = now + self.lease
            session.add(item)
        return items

    def _deliver_one(self, item: OutboxItem, now: datetime, report: DeliveryReport) -> None:
        transport = self.transports.get(item.channel)
        error: DeliveryError | None = None
        try:
            if transport is None:
                raise DeliveryError(f"no transport for channel {item.channel!r}", permanent=True)
            transport(item, now)
        except DeliveryError as exc:
            error = exc
        except Exception as exc:  # a transport or integrator action failed: retry, never lose the item
            error = DeliveryError(f"{type(exc).__name__}: {exc}")

        def record(session: Session) -> None:
            stored = session.get(OutboxItem, item.id, with_for_update=True)
            if stored is None or stored.status != "pending":
                return
            stored.attempts += 1
            stored.lease_until = None
            if error is None:
                stored.status, stored.delivered_at, stored.last_error = "delivered", now, None
                report.delivered += 1
            elif error.permanent or stored.attempts >= self.policy.max_attempts:
                stored.status, stored.last_error = "dead", str(error)
                report.dead += 1
                report.errors.append(f"{item.idempotency_key}: {error}")
                audit(session, DELIVER_ACTOR, now, action="E", what="dead-letter", entity=item.target,
                      patient=item.payload.get("patient"), outcome="8", detail=str(error))
            else:
                stored.last_error = str(error)
                stored.next_attempt_at = now + self.policy.delay(stored.attempts, error.retry_after)
                report.retried += 1
            session.add(stored)

        self.db.run(record)


def local_notify(db: Database) -> Transport:
    """Deliver a notice into the recipient's Zorgpad inbox: its Communication becomes ``completed``.

    Partners with an endpoint also get it pushed over HTTP (see the FHIR interface); this channel is
    what the dashboard and FHIR searches on Communication show.
    """

    def send(item: OutboxItem, now: datetime) -> None:
        reference = str(item.payload.get("communication", ""))
        rtype, _, rid = reference.partition("/")

        def mark(session: Session) -> None:
            stored = get_resource(session, rtype, rid)
            if stored is None:
                raise DeliveryError(f"{reference} does not exist", permanent=True)
            if stored.content.get("status") == "completed":
                return  # delivered before; the repeat changes nothing
            content = dict(stored.content)
            content.pop("meta", None)
            content["status"] = "completed"
            content["sent"] = instant(now)
            put_resource(session, content, now, method="PUT")

        db.run(mark)

    return send


def run_actions(registry: Registry) -> Transport:
    """Run integrators' step actions (at least once; each gets an idempotency key)."""

    def send(item: OutboxItem, now: datetime) -> None:
        payload = item.payload
        pathway = registry.get(str(payload["pathway"]), str(payload["version"]))
        step = pathway.step(str(payload["step"]))
        if step.action is None:
            raise DeliveryError(f"step {step.id} of {pathway.id} has no action", permanent=True)
        step.action(ActionContext(enrolment_id=str(payload["enrolment"]), patient=str(payload["patient"]),
                                  pathway=pathway.id, step=step.id, iteration=int(payload["iteration"]),
                                  idempotency_key=item.idempotency_key, now=now))

    return send
