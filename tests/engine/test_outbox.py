"""The outbox: at-least-once delivery per channel, retries with backoff, dead letters and leases."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from example_pathway import ACTION_CALLS, ExampleAcp, ExampleAcpV2
from sqlmodel import col, select
from zorgpad.engine._dsl import ActionContext
from zorgpad.engine._model import NoticeKind
from zorgpad.engine._projection import communication_id
from zorgpad.engine.clock import FrozenClock
from zorgpad.engine.outbox import DeliveryError, Outbox, RetryPolicy, local_notify, run_actions
from zorgpad.engine.registry import Registry
from zorgpad.engine.runtime import Engine
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.tables import AuditEntry, OutboxItem, StoredResource

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
REGISTERED = T0 + timedelta(hours=1)
DUE = REGISTERED + timedelta(days=28)


@pytest.fixture(autouse=True)
def _no_action_calls() -> Iterator[None]:
    ACTION_CALLS.clear()
    yield
    ACTION_CALLS.clear()


def _engine(db: Database) -> Engine:
    return Engine(db, Registry([ExampleAcp, ExampleAcpV2]), FrozenClock(T0))


def _add_items(db: Database, count: int, *, channel: str = "notify", prefix: str = "k") -> list[str]:
    keys = [f"{prefix}/{i:04d}" for i in range(count)]
    db.run(lambda s: s.add_all([
        OutboxItem(idempotency_key=key, channel=channel, target="Organization/gp-1",
                   payload={"patient": "Patient/p1", "n": i}, created_at=T0, next_attempt_at=T0)
        for i, key in enumerate(keys)]))
    return keys


def _item(db: Database, key: str) -> OutboxItem:
    return db.run(lambda s: s.exec(select(OutboxItem).where(OutboxItem.idempotency_key == key)).one())


def _change(db: Database, key: str, **values: Any) -> None:
    def work(session: Any) -> None:
        item = session.exec(select(OutboxItem).where(OutboxItem.idempotency_key == key)).one()
        item.sqlmodel_update(values)
        session.add(item)
    db.run(work)


def _dead_letters(db: Database) -> list[tuple[str, str, str, str | None, str | None, str | None]]:
    return db.run(lambda s: [(a.actor, a.action, a.outcome, a.entity, a.patient, a.detail) for a in s.exec(
        select(AuditEntry).where(AuditEntry.what == "dead-letter").order_by(col(AuditEntry.id)))])


class _Recorder:
    """A transport that records each delivery by idempotency key, failing the first ``fail`` calls."""

    def __init__(self, fail: int = 0, error: Exception | None = None) -> None:
        self.fail = fail
        self.error = error or RuntimeError("connection reset")
        self.calls: list[tuple[str, datetime]] = []
        self.lock = threading.Lock()

    def __call__(self, item: OutboxItem, now: datetime) -> None:
        with self.lock:
            self.calls.append((item.idempotency_key, now))
            if len(self.calls) <= self.fail:
                raise self.error


class TestLocalNotify:
    """The notify channel puts a notice in the recipient's Zorgpad inbox: its Communication is sent."""

    def test_delivering_a_reminder_completes_its_communication(self, db: Database) -> None:
        """The Communication becomes completed with sent = the delivery moment, and the item is delivered."""
        engine = _engine(db)
        enrolment = engine.enrol("example-acp", "Patient/p1", version="1.0.0", now=T0).id
        engine.task_status(enrolment, "register", "completed", now=REGISTERED)
        engine.tick(DUE)
        key = communication_id(enrolment, "conversation", 0, NoticeKind.REMINDER, 0)
        moment = DUE + timedelta(minutes=1)

        report = engine.deliver(moment)

        communication = db.run(lambda s: s.get(StoredResource, ("Communication", key)))
        item = _item(db, f"notify/{key}")

        assert communication is not None
        assert (2, 0, 0) == (report.delivered, report.retried, report.dead)  # the reminder and register's action
        assert ("completed", "2026-02-02T10:01:00Z", 2) == (
            communication.content["status"], communication.content.get("sent"), communication.version_id)
        assert ("delivered", moment, 1, None, None) == (item.status, item.delivered_at, item.attempts,
                                                         item.lease_until, item.last_error)

    def test_delivering_the_same_notice_again_changes_nothing(self, db: Database) -> None:
        """A repeat delivery (at-least-once) leaves the completed Communication as it was."""
        engine = _engine(db)
        enrolment = engine.enrol("example-acp", "Patient/p1", version="1.0.0", now=T0).id
        engine.task_status(enrolment, "register", "completed", now=REGISTERED)
        engine.tick(DUE)
        key = communication_id(enrolment, "conversation", 0, NoticeKind.REMINDER, 0)
        item = _item(db, f"notify/{key}")
        send = local_notify(db)
        send(item, DUE + timedelta(minutes=1))

        send(item, DUE + timedelta(minutes=9))

        communication = db.run(lambda s: s.get(StoredResource, ("Communication", key)))

        assert communication is not None
        assert (2, "2026-02-02T10:01:00Z") == (communication.version_id, communication.content["sent"])

    def test_a_notice_without_its_communication_is_dead_lettered(self, db: Database) -> None:
        """A missing Communication is a permanent failure: dead at the first attempt, with an audit entry."""
        (key,) = _add_items(db, 1)
        outbox = Outbox(db, {"notify": local_notify(db)}, policy=RetryPolicy(max_attempts=3))
        _change(db, key, payload={"communication": "Communication/missing", "patient": "Patient/p1"})

        report = outbox.deliver(T0)

        item = _item(db, key)

        assert (0, 1) == (report.delivered, report.dead)
        assert ("dead", 1, "Communication/missing does not exist") == (item.status, item.attempts, item.last_error)
        assert [("system:deliver", "E", "8", "Organization/gp-1", "Patient/p1",
                 "Communication/missing does not exist")] == _dead_letters(db)


class TestActionChannel:
    """The action channel runs the step's integrator action after commit."""

    def test_the_register_action_runs_with_the_items_idempotency_key(self, db: Database) -> None:
        """Enrolling on 1.0.0 queues register's action; delivering calls it once with the item's key."""
        engine = _engine(db)
        enrolment = engine.enrol("example-acp", "Patient/p1", version="1.0.0", now=T0).id
        moment = T0 + timedelta(seconds=5)

        report = engine.deliver(moment)

        item = _item(db, f"action/{enrolment}/register/0")

        assert 1 == report.delivered
        assert [ActionContext(enrolment_id=enrolment, patient="Patient/p1", pathway="example-acp", step="register",
                              iteration=0, idempotency_key=f"action/{enrolment}/register/0", now=moment)
                ] == ACTION_CALLS
        assert ("delivered", "action", None) == (item.status, item.channel, item.target)

    def test_a_delivered_action_is_not_run_again(self, db: Database) -> None:
        """A second flush finds nothing due: the action ran once."""
        engine = _engine(db)
        engine.enrol("example-acp", "Patient/p1", version="1.0.0", now=T0)
        engine.deliver(T0)

        report = engine.deliver(T0 + timedelta(days=1))

        assert (0, 1) == (report.delivered, len(ACTION_CALLS))

    def test_a_version_without_an_action_queues_none(self, db: Database) -> None:
        """Register has no action in 1.1.0, so enrolling there adds no action item."""
        engine = _engine(db)
        engine.enrol("example-acp", "Patient/p1", now=T0)

        items = db.run(lambda s: list(s.exec(select(OutboxItem).where(OutboxItem.channel == "action"))))

        assert [] == items

    def test_an_action_item_for_a_step_without_action_is_dead_lettered(self, db: Database) -> None:
        """A step that has no action is a permanent failure, named in last_error."""
        (key,) = _add_items(db, 1, channel="action")
        _change(db, key, payload={"pathway": "example-acp", "version": "1.0.0", "enrolment": "e1",
                                  "patient": "Patient/p1", "step": "conversation", "iteration": 0})
        outbox = Outbox(db, {"action": run_actions(Registry([ExampleAcp]))}, policy=RetryPolicy(max_attempts=3))

        report = outbox.deliver(T0)

        item = _item(db, key)

        assert (1, [], "dead") == (report.dead, ACTION_CALLS, item.status)
        assert "step conversation of example-acp has no action" == item.last_error


class TestRetries:
    """A failing transport is retried with exponential backoff, then dead-lettered."""

    def test_a_failure_schedules_the_next_attempt_with_backoff(self, db: Database) -> None:
        """After the first failure the item waits about 30 s (±20 % jitter) and counts one attempt."""
        (key,) = _add_items(db, 1)
        outbox = Outbox(db, {"notify": _Recorder(fail=99)}, policy=RetryPolicy(max_attempts=3))

        report = outbox.deliver(T0)

        item = _item(db, key)

        assert (0, 1, 0) == (report.delivered, report.retried, report.dead)
        assert ("pending", 1, "RuntimeError: connection reset", None) == (
            item.status, item.attempts, item.last_error, item.lease_until)
        assert T0 + timedelta(seconds=24) <= item.next_attempt_at <= T0 + timedelta(seconds=36)

    def test_an_item_is_not_retried_before_its_next_attempt(self, db: Database) -> None:
        """A flush before next_attempt_at leaves the failed item alone."""
        (key,) = _add_items(db, 1)
        transport = _Recorder(fail=99)
        outbox = Outbox(db, {"notify": transport}, policy=RetryPolicy(max_attempts=3))
        outbox.deliver(T0)
        waiting_until = _item(db, key).next_attempt_at

        report = outbox.deliver(waiting_until - timedelta(microseconds=1))

        assert (0, 0, 1, 1) == (report.retried, report.dead, len(transport.calls), _item(db, key).attempts)

    def test_each_retry_waits_longer(self, db: Database) -> None:
        """The second failure waits about 60 s after the moment of the second attempt."""
        (key,) = _add_items(db, 1)
        transport = _Recorder(fail=99)
        outbox = Outbox(db, {"notify": transport}, policy=RetryPolicy(max_attempts=3))
        outbox.deliver(T0)
        second = _item(db, key).next_attempt_at

        outbox.deliver(second)

        item = _item(db, key)

        assert (2, "pending", [T0, second]) == (item.attempts, item.status, [when for _, when in transport.calls])
        assert second + timedelta(seconds=48) <= item.next_attempt_at <= second + timedelta(seconds=72)

    def test_after_max_attempts_the_item_is_dead_lettered_with_an_audit_entry(self, db: Database) -> None:
        """The third failure (max_attempts=3) makes the item dead and records an E/dead-letter audit entry."""
        (key,) = _add_items(db, 1)
        transport = _Recorder(fail=99)
        outbox = Outbox(db, {"notify": transport}, policy=RetryPolicy(max_attempts=3))
        reports = []
        moment = T0
        for _ in range(3):
            reports.append(outbox.deliver(moment))
            moment = _item(db, key).next_attempt_at

        later = outbox.deliver(T0 + timedelta(days=30))

        item = _item(db, key)

        assert [(0, 1, 0), (0, 1, 0), (0, 0, 1)] == [(r.delivered, r.retried, r.dead) for r in reports]
        assert [f"{key}: RuntimeError: connection reset"] == reports[2].errors
        assert ("dead", 3, "RuntimeError: connection reset") == (item.status, item.attempts, item.last_error)
        assert [("system:deliver", "E", "8", "Organization/gp-1", "Patient/p1", "RuntimeError: connection reset")
                ] == _dead_letters(db)
        assert (0, 3) == (later.dead + later.retried + later.delivered, len(transport.calls))

    def test_a_success_after_a_failure_delivers_and_clears_the_error(self, db: Database) -> None:
        """The retry that works marks the item delivered with two attempts and no error."""
        (key,) = _add_items(db, 1)
        outbox = Outbox(db, {"notify": _Recorder(fail=1)}, policy=RetryPolicy(max_attempts=3))
        outbox.deliver(T0)
        retry_at = _item(db, key).next_attempt_at

        report = outbox.deliver(retry_at)

        item = _item(db, key)

        assert (1, "delivered", 2, None, retry_at) == (report.delivered, item.status, item.attempts,
                                                        item.last_error, item.delivered_at)

    def test_the_receivers_retry_after_is_respected(self, db: Database) -> None:
        """A DeliveryError with retry_after of an hour postpones the next attempt by exactly that hour."""
        (key,) = _add_items(db, 1)
        transport = _Recorder(fail=99, error=DeliveryError("429 too many requests", retry_after=timedelta(hours=1)))
        outbox = Outbox(db, {"notify": transport}, policy=RetryPolicy(max_attempts=3))

        outbox.deliver(T0)

        item = _item(db, key)

        assert (T0 + timedelta(hours=1), "429 too many requests") == (item.next_attempt_at, item.last_error)

    def test_a_permanent_error_is_dead_lettered_at_once(self, db: Database) -> None:
        """A DeliveryError marked permanent is not retried."""
        (key,) = _add_items(db, 1)
        transport = _Recorder(fail=99, error=DeliveryError("410 gone", permanent=True))
        outbox = Outbox(db, {"notify": transport}, policy=RetryPolicy(max_attempts=3))

        report = outbox.deliver(T0)

        item = _item(db, key)

        assert (1, "dead", 1, "410 gone") == (report.dead, item.status, item.attempts, item.last_error)
        assert 1 == len(_dead_letters(db))

    def test_an_unknown_channel_is_dead_lettered_immediately(self, db: Database) -> None:
        """An item whose channel has no transport is dead at its first attempt, with an audit entry."""
        (key,) = _add_items(db, 1, channel="fax")
        outbox = Outbox(db, {"notify": _Recorder()}, policy=RetryPolicy(max_attempts=3))

        report = outbox.deliver(T0)

        item = _item(db, key)

        assert (0, 0, 1) == (report.delivered, report.retried, report.dead)
        assert ("dead", 1, "no transport for channel 'fax'") == (item.status, item.attempts, item.last_error)
        assert [("system:deliver", "E", "8", "Organization/gp-1", "Patient/p1", "no transport for channel 'fax'")
                ] == _dead_letters(db)

    def test_the_backoff_doubles_and_is_capped(self) -> None:
        """Without jitter the delays are 30 s, 60 s, 120 s, … and never more than the cap."""
        policy = RetryPolicy(base=timedelta(seconds=30), cap=timedelta(hours=6), jitter=0)

        delays = [policy.delay(n) for n in (1, 2, 3, 10, 30)]

        assert [timedelta(seconds=30), timedelta(seconds=60), timedelta(seconds=120), timedelta(hours=4, minutes=16),
                timedelta(hours=6)] == delays

    def test_jitter_stays_within_its_bounds(self) -> None:
        """With 20 % jitter every delay lies within ±20 % of the plain backoff."""
        policy = RetryPolicy(base=timedelta(seconds=30), jitter=0.2)

        delays = [policy.delay(2) for _ in range(200)]

        assert all(timedelta(seconds=48) <= d <= timedelta(seconds=72) for d in delays)
        assert len(set(delays)) > 1


class TestLeases:
    """A claimed item is leased: no second flush delivers it while the lease runs."""

    def test_a_flush_during_another_flush_skips_the_items_being_delivered(self, db: Database) -> None:
        """While the first flush delivers its batch, a second flush takes only the other items."""
        keys = _add_items(db, 5)
        other_db = Database(db.url)
        delivered: list[str] = []
        inner_reports = []
        second = Outbox(other_db, {"notify": lambda item, now: delivered.append(item.idempotency_key)},
                        policy=RetryPolicy(max_attempts=3))

        def first_transport(item: OutboxItem, now: datetime) -> None:
            if not inner_reports:
                inner_reports.append(second.deliver(now))  # runs entirely inside the first flush's delivery
            delivered.append(item.idempotency_key)

        first = Outbox(db, {"notify": first_transport}, policy=RetryPolicy(max_attempts=3), batch_size=2)
        try:
            report = first.deliver(T0)
        finally:
            other_db.dispose()

        statuses = db.run(lambda s: Counter((i.status, i.attempts) for i in s.exec(select(OutboxItem))))

        assert (2, 3) == (report.delivered, inner_reports[0].delivered)
        assert Counter(keys) == Counter(delivered)
        assert Counter({("delivered", 1): 5}) == statuses

    def test_an_item_whose_lease_has_not_run_out_is_not_claimed(self, db: Database) -> None:
        """An item left leased by a deliverer that died waits until its lease runs out, then is delivered."""
        (key,) = _add_items(db, 1)
        _change(db, key, lease_until=T0 + timedelta(minutes=5))
        transport = _Recorder()
        outbox = Outbox(db, {"notify": transport}, policy=RetryPolicy(max_attempts=3))

        during = outbox.deliver(T0 + timedelta(minutes=4))
        after = outbox.deliver(T0 + timedelta(minutes=5))

        assert (0, 1) == (during.delivered, after.delivered)
        assert [(key, T0 + timedelta(minutes=5))] == transport.calls

    def test_two_threads_flushing_at_once_deliver_each_item_once(self, db: Database) -> None:
        """Two outboxes on their own connection pools flush 200 items at the same moment: no item twice."""
        keys = _add_items(db, 200)
        transport = _Recorder()
        databases = [Database(db.url), Database(db.url)]
        outboxes = [Outbox(d, {"notify": transport}, policy=RetryPolicy(max_attempts=3), batch_size=7)
                    for d in databases]
        barrier = threading.Barrier(2)
        reports: list[Any] = [None, None]
        errors: list[BaseException] = []

        def flush(index: int) -> None:
            try:
                barrier.wait(timeout=30)
                reports[index] = outboxes[index].deliver(T0)
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=flush, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        for d in databases:
            d.dispose()

        delivered = Counter(key for key, _ in transport.calls)
        statuses = db.run(lambda s: Counter((i.status, i.attempts) for i in s.exec(select(OutboxItem))))

        assert [] == errors
        assert Counter(dict.fromkeys(keys, 1)) == delivered
        assert 200 == sum(r.delivered for r in reports)
        assert Counter({("delivered", 1): 200}) == statuses
