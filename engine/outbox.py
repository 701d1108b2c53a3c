"""Delivering the outbox: at-least-once, with an idempotency key on every item.

An item is claimed with a lease in a short transaction, delivered outside any transaction, and its
result recorded in another. A process that dies after delivering but before recording delivers the
item again once the lease runs out; the receiver drops the repeat by its idempotency key. Failures are
retried with exponential backoff and dead-lettered after ``max_attempts``.

The guarantee: **at-least-once delivery** to partners (every item is sent until it is delivered or
dead-lettered; a crash can send it again, with the same ``Idempotency-Key``), and **exactly-once effect
inside Zorgpad** (an item's status changes once, under a row lock, and local channels are idempotent).

A per-target circuit breaker keeps one dead partner from slowing the others: after
``CircuitBreaker.threshold`` consecutive failed attempts to one ``target`` the circuit opens, and that
target's items are neither claimed nor sent (nor charged an attempt) until ``cool_off`` has passed; then
one round is tried again (half-open), and a single failure opens the circuit again. When a circuit
opens, the target's pending items are deferred in the database to the end of the cool-off, so that
every other process (another worker, the next Prefect run) leaves them alone too; only the count of
consecutive failures lives in the process.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import update
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
    skipped: int = 0  # claimed, then released unsent because the target's circuit opened
    errors: list[str] = field(default_factory=list)


@dataclass
class RetryPolicy:
    """Exponential backoff with jitter, capped, then dead-letter."""

    max_attempts: int = 12  # about 17 hours of retries at the default backoff, then dead-letter
    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(hours=6)
    jitter: float = 0.2

    def delay(self, attempts: int, retry_after: timedelta | None = None) -> timedelta:
        """How long to wait after the ``attempts``-th failure."""
        delay: timedelta = min(self.base * (2 ** (attempts - 1)), self.cap)
        delay = delay * (1 + random.uniform(-self.jitter, self.jitter))
        return max(delay, retry_after) if retry_after else delay


@dataclass
class CircuitBreaker:
    """Per-target circuits: open after ``threshold`` consecutive failures, for ``cool_off``."""

    threshold: int = 5
    cool_off: timedelta = timedelta(minutes=5)
    failures: dict[str, int] = field(default_factory=dict)
    open_until: dict[str, datetime] = field(default_factory=dict)

    def is_open(self, target: str | None, now: datetime) -> bool:
        """Whether items for ``target`` must wait (a target of None never has a circuit)."""
        return target is not None and target in self.open_until and now < self.open_until[target]

    def open_targets(self, now: datetime) -> list[str]:
        """The targets whose circuit is open at ``now``."""
        return sorted(t for t, until in self.open_until.items() if now < until)

    def succeeded(self, target: str | None) -> None:
        """A delivery to ``target`` worked: close its circuit."""
        if target is not None:
            self.failures.pop(target, None)
            self.open_until.pop(target, None)

    def failed(self, target: str | None, now: datetime) -> datetime | None:
        """A delivery to ``target`` failed (retryably); open its circuit once there were too many.
        Returns the end of the cool-off when this failure opened the circuit."""
        if target is None:
            return None
        half_open = target in self.open_until  # its cool-off passed and the probe failed
        self.failures[target] = self.failures.get(target, 0) + 1
        if half_open or self.failures[target] >= self.threshold:
            self.open_until[target] = now + self.cool_off
            return self.open_until[target]
        return None


class Outbox:
    """Flushes the outbox through one transport per channel."""

    def __init__(self, db: Database, transports: Mapping[str, Transport], *, policy: RetryPolicy | None = None,
                 lease: timedelta = timedelta(minutes=5), batch_size: int = 100,
                 circuit: CircuitBreaker | None = None) -> None:
        self.db = db
        self.transports = dict(transports)
        self.policy = policy or RetryPolicy()
        self.lease = lease
        self.batch_size = batch_size
        self.circuit = circuit or CircuitBreaker()

    def deliver(self, now: datetime) -> DeliveryReport:
        """Deliver every item due by ``now`` once; return what happened."""
        report = DeliveryReport()
        # Items to a target whose circuit opened during this flush are released unsent; they must not be
        # claimed again in this flush, so the set of skipped targets only grows.
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
        blocked = self.circuit.open_targets(now)
        if blocked:
            query = query.where(or_(col(OutboxItem.target).is_(None), col(OutboxItem.target).not_in(blocked)))
        if self.db.is_postgresql:
            query = query.with_for_update(skip_locked=True)
        items = list(session.exec(query))
        for item in items:
            item.lease_until = now + self.lease
            session.add(item)
        return items

    def _release(self, item: OutboxItem) -> None:
        """Give back an unsent item's lease without charging an attempt (its target's circuit is open)."""

        def release(session: Session) -> None:
            stored = session.get(OutboxItem, item.id, with_for_update=True)
            if stored is not None and stored.status == "pending":
                stored.lease_until = None
                session.add(stored)

        self.db.run(release)

    def _deliver_one(self, item: OutboxItem, now: datetime, report: DeliveryReport) -> None:
        if self.circuit.is_open(item.target, now):
            self._release(item)
            report.skipped += 1
            return
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
        opened_until = None
        if error is None:
            self.circuit.succeeded(item.target)
        elif not error.permanent:
            opened_until = self.circuit.failed(item.target, now)

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
        if opened_until is not None:
            self.db.run(lambda session: _defer(session, str(item.target), opened_until))


def _defer(session: Session, target: str, until: datetime) -> None:
    """Hold every pending item for ``target`` until ``until`` (its circuit opened), in every process."""
    session.execute(update(OutboxItem)
                    .where(col(OutboxItem.target) == target, col(OutboxItem.status) == "pending",
                           col(OutboxItem.next_attempt_at) < until)
                    .values(next_attempt_at=until))


def no_partners(item: OutboxItem, now: datetime) -> None:
    """The engine on its own knows no partner endpoints: a Task-changed notification has nowhere to go. The
    FHIR layer installs the transport that sends it to the receiver's endpoints."""


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


def retry_dead_letter(session: Session, item: OutboxItem, actor: Actor, now: datetime) -> None:
    """Put a dead-lettered item back to ``pending`` (attempts reset, due now) and audit who did it."""
    item.status, item.attempts, item.next_attempt_at, item.lease_until = "pending", 0, now, None
    session.add(item)
    audit(session, actor, now, action="U", what="outbox-retry", entity=item.idempotency_key,
          patient=item.payload.get("patient"), detail=f"retry of dead letter {item.id}: {item.last_error}")
