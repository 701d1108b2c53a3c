"""SIGKILL at random points of a tick and of a delivery, 20 rounds each, on the database of ``--db``.

Each round forks a worker (see ``forkserver.py``) that ticks or delivers for real, waits until it has made
a random amount of progress, lets a random moment more pass and kills it with SIGKILL. A final, undisturbed
run then finishes the work; its duration is the recovery time to steady state (nothing due, nothing
pending). Every effect is then counted: ``lost`` (an effect that should exist and does not) and
``duplicated`` (an effect that exists more than once, by its idempotency key or unique id) must be 0.
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fault.seeding import LATE, START, seed_notices, seed_open_conversations
from faultcounts import count
from sqlmodel import Session, col, select
from zorgpad.engine._model import NoticeKind
from zorgpad.engine._projection import NOTICE_SYSTEM, communication_id, task_id
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.tables import AuditEntry, OutboxItem, StepRun, StoredResource, Timer

if TYPE_CHECKING:
    from tests.fault.conftest import ForkServer

ROUNDS = 20
ENROLMENTS = 500  # x 3 timers each: 1,500 due timers; a round fires its target plus what the kill's delay
# allows (up to about 60 since the tick got faster: with 150 the last rounds found nothing left), the rest go
# by the final tick
TICK_BATCH = 5  # small batches in the killed rounds, so that most kills land inside an open batch
# Outbox items: each killed round delivers up to its target plus what fits in the kill's delay (up to
# 30 ms), so the queue must outlast 20 rounds at any delivery speed, or a late round finds too few items
# and finishes before the kill lands; the rest goes by the final flush.
ITEMS = 1_000
DELIVER_BATCH = 10

pytestmark = pytest.mark.slow


def _timer_effects(db: Database, ids: list[str]) -> dict[str, Any]:
    def read(s: Session) -> dict[str, Any]:
        communications = list(s.exec(select(StoredResource).where(StoredResource.resource_type == "Communication")))
        tasks = s.exec(select(StoredResource.id, StoredResource.version_id).where(
            StoredResource.resource_type == "Task",
            col(StoredResource.id).in_([task_id(i, "conversation", 0) for i in ids]))).all()
        return {
            "timers": s.exec(select(Timer)).all(),
            # One audit row per fired timer: the enrolment and the commands it wrote name the timer.
            "fired": Counter(s.exec(select(AuditEntry.entity, AuditEntry.detail).where(
                AuditEntry.what == "TimerFired")).all()),
            "notices": Counter((c["code"], r.version_id) for r in communications for cat in r.content["category"]
                               for c in cat["coding"] if c["system"] == NOTICE_SYSTEM),
            "notice versions": {r.id: r.version_id for r in communications},
            "outbox keys": Counter(s.exec(select(OutboxItem.idempotency_key).where(
                OutboxItem.channel == "notify")).all()),
            "steps": Counter((r.reminders_sent, r.overdue, r.escalated, r.business_status) for r in s.exec(
                select(StepRun).where(StepRun.step_id == "conversation"))),
            "task versions": dict(tasks),
        }
    return db.run(read)


def _excess(counts: Counter[Any] | dict[Any, int], once: int = 1) -> int:
    """How many more times than ``once`` the keys of ``counts`` occur, in all."""
    return sum(n - once for n in counts.values() if n > once)


class TestKilledTick:
    """SIGKILL in the middle of a tick: the batch in flight rolls back and fires once on the next tick."""

    def test_a_tick_killed_twenty_times_fires_every_timer_exactly_once(
            self, db: Database, db_url: str, poller: Callable[[str], int], forkserver: ForkServer,
            fault_seed: int, tmp_path: Path) -> None:
        """20 kills at random points of a tick, then a full tick: every timer fired once, nothing lost or doubled."""
        ids = seed_open_conversations(db, ENROLMENTS)
        total = 3 * len(ids)
        rng = random.Random(fault_seed)
        print(f"seed {fault_seed}")  # shown with the failure report
        statuses, consistent, marks = [], [], []
        for round_ in range(ROUNDS):
            left = poller("SELECT count(*) FROM timer")
            marker = tmp_path / f"batches-{round_}.txt"
            statuses.append(forkserver.kill_after(
                "tick", {"db_url": db_url, "now": LATE.isoformat(), "marks": str(marker), "batch_size": TICK_BATCH},
                lambda left=left: left - poller("SELECT count(*) FROM timer"), rng.randint(1, 10),
                rng.uniform(0, 0.05)))
            marks.append(marker.read_text())
            # Every timer gone has exactly one fired audit row: no batch was half written.
            consistent.append(poller("SELECT count(*) FROM timer") + poller(
                "SELECT count(*) FROM audit WHERE what = 'TimerFired'"))
        left_before_final = poller("SELECT count(*) FROM timer")

        started = time.monotonic()
        final = forkserver.run("tick", db_url=db_url, now=LATE.isoformat(), marks=str(tmp_path / "final.txt"),
                               batch_size=200)
        recovery = time.monotonic() - started

        effects = _timer_effects(db, ids)
        n = len(ids)
        expected_notices = {communication_id(i, "conversation", 0, kind, 0)
                            for i in ids for kind in (NoticeKind.REMINDER, NoticeKind.ESCALATION)}
        notice_versions = effects["notice versions"]
        steps_done = effects["steps"][(1, True, True, "escalated")]
        lost = (len(effects["timers"]) + max(0, total - len(effects["fired"]))
                + len(expected_notices - set(notice_versions))
                + len({f"notify/{c}" for c in expected_notices} - set(effects["outbox keys"]))
                + (n - steps_done) + sum(1 for v in effects["task versions"].values() if v < 3)
                + (n - len(effects["task versions"])))
        duplicated = (_excess(effects["fired"]) + _excess(notice_versions) + _excess(effects["outbox keys"])
                      + sum((sent - 1) * m for (sent, *_), m in effects["steps"].items() if sent > 1)
                      + _excess(effects["task versions"], once=3))
        kills = statuses.count(-signal.SIGKILL)
        label = f"sigkill tick {db.dialect}"
        count(f"{label}: faults injected", kills)
        count(f"{label}: kills inside an open batch", sum(m.endswith("b") for m in marks))
        count(f"{label}: timers expected", total)
        count(f"{label}: timers fired", len(effects["fired"]))
        count(f"{label}: timers fired by the final tick", final["fired"])
        count(f"{label}: lost", lost)
        count(f"{label}: duplicated", duplicated)
        count(f"{label}: recovery to steady state (ms)", round(recovery * 1000))
        replay = f"seed {fault_seed}"

        assert [-signal.SIGKILL] * ROUNDS == statuses, replay
        assert 0 == lost, replay
        assert 0 == duplicated, replay
        assert [total] * ROUNDS == consistent, replay
        assert any(m.endswith("b") for m in marks), [m[-5:] for m in marks]  # some kill hit an open batch
        assert 0 < left_before_final < total, replay
        assert left_before_final == final["fired"], replay
        assert total == sum(effects["fired"].values()), replay
        assert Counter({("reminder", 1): n, ("escalation", 1): n}) == effects["notices"], replay
        assert expected_notices == set(notice_versions), replay
        assert Counter({f"notify/{c}": 1 for c in expected_notices}) == effects["outbox keys"], replay
        assert Counter({(1, True, True, "escalated"): n}) == effects["steps"], replay
        assert Counter({3: n}) == Counter(effects["task versions"].values()), replay


class TestKilledDelivery:
    """SIGKILL in the middle of a flush: every item is delivered at least once, marked and applied once."""

    def test_a_flush_killed_twenty_times_delivers_every_item_and_applies_it_once(
            self, db: Database, db_url: str, forkserver: ForkServer, fault_seed: int, tmp_path: Path) -> None:
        """20 kills at random points of a flush, then a full flush: nothing lost, nothing applied twice.

        The receiver may see an item again (at-least-once), with the same key; it drops the repeat.
        """
        keys = seed_notices(db, ITEMS)
        receipts = tmp_path / "received.txt"
        receipts.touch()

        def received() -> list[str]:
            return receipts.read_text().split()

        def delivered_keys() -> set[str]:
            return set(db.run(lambda s: s.exec(select(OutboxItem.idempotency_key).where(
                OutboxItem.status == "delivered")).all()))

        rng = random.Random(fault_seed + 1)
        print(f"seed {fault_seed}")  # shown with the failure report
        statuses, in_flight, unreceived = [], [], []
        for round_ in range(ROUNDS):
            # Each round is ten minutes later, so the lease (5 min) of the items the last worker held has run out.
            now = START + timedelta(minutes=10 * round_)
            start = len(received())
            statuses.append(forkserver.kill_after(
                "deliver", {"db_url": db_url, "now": now.isoformat(), "receipts": str(receipts),
                            "batch_size": DELIVER_BATCH},
                lambda start=start: len(received()) - start, rng.randint(1, 10), rng.uniform(0, 0.03)))
            got, marked = set(received()), delivered_keys()
            unreceived.append(len(marked - got))  # marked delivered but never sent: must never happen
            in_flight.append(len(got - marked))  # sent, then killed before it was recorded
        before_final = len(delivered_keys())

        started = time.monotonic()
        final = forkserver.run("deliver", db_url=db_url, now=(START + timedelta(minutes=10 * ROUNDS)).isoformat(),
                               receipts=str(receipts), batch_size=100)
        recovery = time.monotonic() - started

        counts = Counter(received())
        rows = db.run(lambda s: Counter((i.status, i.attempts, i.lease_until is None) for i in s.exec(
            select(OutboxItem))))
        items = db.run(lambda s: s.exec(select(OutboxItem.idempotency_key, OutboxItem.status,
                                               OutboxItem.attempts)).all())
        notices = db.run(lambda s: {r.id: (r.version_id, r.content["status"]) for r in s.exec(
            select(StoredResource).where(StoredResource.resource_type == "Communication"))})
        lost = (len(set(keys) - set(counts)) + sum(1 for _, status, _ in items if status != "delivered")
                + sum(1 for _, state in notices.values() if state != "completed") + sum(unreceived))
        duplicated = (sum(1 for _, status, attempts in items if status == "delivered" and attempts > 1)
                      + _excess(Counter(key for key, _, _ in items))
                      + _excess({rid: version for rid, (version, _) in notices.items()}, once=2))
        repeats = sum(n - 1 for n in counts.values())
        kills = statuses.count(-signal.SIGKILL)
        label = f"sigkill deliver {db.dialect}"
        count(f"{label}: faults injected", kills)
        count(f"{label}: items expected", ITEMS)
        count(f"{label}: items delivered", len(counts))
        count(f"{label}: items delivered by the final flush", final["delivered"])
        count(f"{label}: receiver repeats (dropped by key)", repeats)
        count(f"{label}: lost", lost)
        count(f"{label}: duplicated", duplicated)
        count(f"{label}: recovery to steady state (ms)", round(recovery * 1000))
        replay = f"seed {fault_seed}"

        assert [-signal.SIGKILL] * ROUNDS == statuses, replay
        assert 0 == lost, replay
        assert 0 == duplicated, replay
        assert [0] * ROUNDS == unreceived, replay
        assert all(n <= 1 for n in in_flight), (replay, in_flight)
        assert 0 < before_final < ITEMS, replay
        assert ITEMS - before_final == final["delivered"], replay
        assert set(keys) == set(counts), replay
        assert Counter({("delivered", 1, True): ITEMS}) == rows, replay
        assert {(2, "completed")} == set(notices.values()), replay
        assert repeats <= kills, (replay, {k: n for k, n in counts.items() if n > 1})  # at most one per kill
