"""Crash safety: a tick or a delivery killed with SIGKILL part-way loses nothing and duplicates nothing.

Each test starts the real work in a child process, waits (by polling, with a timeout) until the child has
made some progress, kills it with SIGKILL at a random moment after that, and repeats; a final run then
finishes the work, and every effect is counted.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from example_pathway import ExampleAcp, ExampleAcpV2
from sqlalchemy import Engine as SAEngine
from sqlalchemy import create_engine, text
from sqlmodel import col, func, select
from zorgpad.engine._model import NoticeKind
from zorgpad.engine._projection import NOTICE_SYSTEM, communication_id, task_id, to_task
from zorgpad.engine.clock import FrozenClock
from zorgpad.engine.outbox import Outbox
from zorgpad.engine.registry import Registry
from zorgpad.engine.runtime import Engine
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.enrolments import load_state, save_state
from zorgpad.engine.store.resources import put_resource
from zorgpad.engine.store.tables import AuditEntry, Enrolment, OutboxItem, StepRun, StoredResource, Timer

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
REGISTERED = START + timedelta(hours=1)
LATE = REGISTERED + timedelta(days=91)  # due, reminder and escalation of every conversation have passed
REPO = Path(__file__).resolve().parents[2]
ROUNDS = 5
ENROLMENTS = 667  # x 3 timers each: 2,001 due timers
ITEMS = 1500
WAIT = 30.0  # seconds a child gets to show progress

pytestmark = pytest.mark.slow

TICK_CHILD = f"""
import os
import sys
from datetime import datetime
sys.path.insert(0, {str(REPO / 'tests')!r})
from example_pathway import ExampleAcp, ExampleAcpV2
from zorgpad.engine.registry import Registry
from zorgpad.engine.store.db import Database
from sqlalchemy import event
import zorgpad.engine.timers as timers
# Batch markers for the test: "b" when a batch starts, "c" when its transaction commits.
marks = os.open(sys.argv[3], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
real_fire_batch = timers.fire_batch
def fire_batch(*args, **kwargs):
    os.write(marks, b"b")
    return real_fire_batch(*args, **kwargs)
timers.fire_batch = fire_batch
db = Database(sys.argv[1])
event.listen(db.engine, "commit", lambda connection: os.write(marks, b"c"))
timers.tick(db, Registry([ExampleAcp, ExampleAcpV2]), datetime.fromisoformat(sys.argv[2]), batch_size=5)
"""

DELIVER_CHILD = """
import os
import sys
from datetime import datetime, timedelta
from zorgpad.engine.outbox import Outbox
from zorgpad.engine.store.db import Database
receiver = os.open(sys.argv[3], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
def transport(item, now):
    os.write(receiver, (item.idempotency_key + "\\n").encode())
Outbox(Database(sys.argv[1]), {"notify": transport}, lease=timedelta(minutes=5), batch_size=10).deliver(
    datetime.fromisoformat(sys.argv[2]))
"""


@pytest.fixture
def poller(db: Database) -> Iterator[SAEngine]:
    """A plain read connection pool: polling must not take SQLite's write lock (BEGIN IMMEDIATE) from the child."""
    engine = create_engine(db.url)
    yield engine
    engine.dispose()


def _scalar(poller: SAEngine, sql: str) -> int:
    with poller.connect() as connection:
        return int(connection.execute(text(sql)).scalar_one())


def _kill_after_progress(command: list[str], progress: Callable[[], int], target: int) -> int:
    """Start ``command``, wait until ``progress()`` reaches ``target``, then SIGKILL it a random moment later.

    Returns the child's exit status (negative: killed by that signal).
    """
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)
    try:
        deadline = time.monotonic() + WAIT
        while progress() < target:
            if child.poll() is not None:
                raise AssertionError(f"child ended before it was killed: {child.stderr.read()!r}")  # type: ignore[union-attr]
            if time.monotonic() > deadline:
                raise AssertionError(f"child made no progress to {target} in {WAIT} s")
            time.sleep(0.002)  # polling a real process, not simulating time
        time.sleep(random.uniform(0, 0.03))  # land the kill at a random point of the next batch
        os.kill(child.pid, signal.SIGKILL)
        return child.wait(timeout=WAIT)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        assert child.stderr is not None
        child.stderr.close()


def _seed_open_conversations(db: Database, count: int) -> list[str]:
    """``count`` enrolments on 1.0.0 with an open conversation: one through the engine, the others copied
    from its state rows (Enrolment, StepRun, Timer, the conversation Task) to keep seeding fast."""
    engine = Engine(db, Registry([ExampleAcp, ExampleAcpV2]), FrozenClock(START))
    template = engine.enrol("example-acp", "Patient/c00000", version="1.0.0", now=START).id
    engine.task_status(template, "register", "completed", now=REGISTERED)

    def copy(session: Any) -> list[str]:
        state = load_state(session, session.get(Enrolment, template))
        timers = list(session.exec(select(Timer).where(Timer.enrolment_id == template)))
        step = ExampleAcp.step("conversation")
        ids = [template]
        for i in range(1, count):
            clone = state.copy()
            clone.id, clone.patient = f"crash-{i:05d}", f"Patient/c{i:05d}"
            save_state(session, clone, None)
            session.add_all([Timer(due_at=t.due_at, enrolment_id=clone.id, step_id=t.step_id, kind=t.kind,
                                   iteration=t.iteration, seq=t.seq) for t in timers])
            put_resource(session, to_task(ExampleAcp, step, clone, 0, status="requested", role="gp", owner=None,
                                          requester=None, due_at=clone.steps["conversation"].due_at,
                                          now=REGISTERED), REGISTERED)
            ids.append(clone.id)
        return ids

    return db.run(copy)


def _timer_effects(db: Database, ids: list[str]) -> dict[str, Any]:
    def read(s: Any) -> dict[str, Any]:
        communications = list(s.exec(select(StoredResource).where(StoredResource.resource_type == "Communication")))
        tasks = s.exec(select(StoredResource.version_id).where(
            StoredResource.resource_type == "Task",
            col(StoredResource.id).in_([task_id(i, "conversation", 0) for i in ids]))).all()
        return {
            "timers": s.exec(select(func.count()).select_from(Timer)).one(),
            "fired audits": s.exec(select(func.count()).select_from(AuditEntry).where(
                AuditEntry.what == "TimerFired")).one(),
            "notices": Counter((c["code"], r.version_id) for r in communications for cat in r.content["category"]
                               for c in cat["coding"] if c["system"] == NOTICE_SYSTEM),
            "notice ids": {r.id for r in communications},
            "outbox keys": Counter(s.exec(select(OutboxItem.idempotency_key).where(
                OutboxItem.channel == "notify")).all()),
            "steps": Counter((r.reminders_sent, r.overdue, r.escalated, r.business_status) for r in s.exec(
                select(StepRun).where(StepRun.step_id == "conversation"))),
            "task versions": Counter(tasks),
        }
    return db.run(read)


class TestKilledTick:
    """SIGKILL in the middle of a tick: the batch in flight rolls back and fires once on the next tick."""

    def test_a_tick_killed_repeatedly_fires_every_timer_exactly_once(
            self, db: Database, db_url: str, poller: SAEngine, tmp_path: Path) -> None:
        """Five kills mid-tick, then a full tick: every due, reminder and escalation effect exists once."""
        ids = _seed_open_conversations(db, ENROLMENTS)
        total = 3 * len(ids)
        script = tmp_path / "tick_child.py"
        script.write_text(TICK_CHILD)
        rng = random.Random(7513)
        statuses, consistent, marks = [], [], []
        for round_ in range(ROUNDS):
            left = _scalar(poller, "SELECT count(*) FROM timer")
            marker = tmp_path / f"batches-{round_}.txt"
            statuses.append(_kill_after_progress(
                [sys.executable, str(script), db_url, LATE.isoformat(), str(marker)],
                lambda left=left: left - _scalar(poller, "SELECT count(*) FROM timer"), rng.randint(1, 60)))
            marks.append(marker.read_text())
            # Every timer gone has exactly one fired audit row: no batch was half written.
            consistent.append(_scalar(poller, "SELECT count(*) FROM timer") + _scalar(
                poller, "SELECT count(*) FROM audit WHERE what = 'TimerFired'"))
        left_before_final = _scalar(poller, "SELECT count(*) FROM timer")

        fired = Engine(db, Registry([ExampleAcp, ExampleAcpV2]), FrozenClock(START)).tick(LATE)

        effects = _timer_effects(db, ids)
        n = len(ids)
        expected_notices = {communication_id(i, "conversation", 0, kind, 0)
                            for i in ids for kind in (NoticeKind.REMINDER, NoticeKind.ESCALATION)}

        assert [-signal.SIGKILL] * ROUNDS == statuses
        assert [total] * ROUNDS == consistent
        assert any(m.endswith("b") for m in marks), [m[-5:] for m in marks]  # some kill hit an open batch
        assert 0 < left_before_final < total
        assert left_before_final == fired
        assert (0, total) == (effects["timers"], effects["fired audits"])
        assert Counter({("reminder", 1): n, ("escalation", 1): n}) == effects["notices"]
        assert expected_notices == effects["notice ids"]
        assert Counter({f"notify/{c}": 1 for c in expected_notices}) == effects["outbox keys"]
        assert Counter({(1, True, True, "escalated"): n}) == effects["steps"]
        assert Counter({3: n}) == effects["task versions"]


class TestKilledDelivery:
    """SIGKILL in the middle of a flush: every item is delivered at least once and marked delivered once."""

    def test_a_flush_killed_repeatedly_delivers_every_item_at_least_once(
            self, db: Database, db_url: str, tmp_path: Path) -> None:
        """Five kills mid-flush, then a full flush: the receiver has every key; repeats are few and detectable."""
        keys = [f"notify/crash-{i:05d}" for i in range(ITEMS)]
        db.run(lambda s: s.add_all([OutboxItem(idempotency_key=key, channel="notify", target="Organization/gp-1",
                                               payload={"patient": f"Patient/c{i}"}, created_at=START,
                                               next_attempt_at=START) for i, key in enumerate(keys)]))
        script = tmp_path / "deliver_child.py"
        script.write_text(DELIVER_CHILD)
        receiver = tmp_path / "received.txt"
        receiver.touch()

        def received() -> list[str]:
            return receiver.read_text().split()

        def delivered_keys() -> set[str]:
            return set(db.run(lambda s: s.exec(select(OutboxItem.idempotency_key).where(
                OutboxItem.status == "delivered")).all()))

        rng = random.Random(7514)
        statuses, in_flight, unreceived = [], [], []
        for round_ in range(ROUNDS):
            # Each round is ten minutes later, so the lease (5 min) of an item the last child held has run out.
            now = START + timedelta(minutes=10 * round_)
            start = len(received())
            statuses.append(_kill_after_progress([sys.executable, str(script), db_url, now.isoformat(),
                                                  str(receiver)], lambda start=start: len(received()) - start,
                                                 rng.randint(1, 150)))
            got, marked = set(received()), delivered_keys()
            unreceived.append(len(marked - got))  # marked delivered but never delivered: must never happen
            in_flight.append(len(got - marked))  # delivered, then killed before it was recorded
        before_final = len(delivered_keys())
        fd = os.open(receiver, os.O_WRONLY | os.O_APPEND)

        def transport(item: OutboxItem, now: datetime) -> None:
            os.write(fd, (item.idempotency_key + "\n").encode())

        try:
            report = Outbox(db, {"notify": transport}).deliver(START + timedelta(minutes=10 * ROUNDS))
        finally:
            os.close(fd)

        counts = Counter(received())
        rows = db.run(lambda s: Counter((i.status, i.attempts, i.lease_until is None) for i in s.exec(
            select(OutboxItem))))
        repeats = {key: n for key, n in counts.items() if n > 1}

        assert [-signal.SIGKILL] * ROUNDS == statuses
        assert [0] * ROUNDS == unreceived
        assert all(n <= 1 for n in in_flight), in_flight
        assert 0 < before_final < ITEMS
        assert ITEMS - before_final == report.delivered
        assert set(keys) == set(counts)
        assert Counter({("delivered", 1, True): ITEMS}) == rows
        assert sum(n - 1 for n in repeats.values()) <= ROUNDS, repeats  # at most one repeat per kill
