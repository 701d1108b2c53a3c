"""The tick: every durable timer due by ``now`` fires exactly once, with all its effects in one transaction."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import zorgpad.engine.timers as timers_module
from example_pathway import ExampleAcp, ExampleAcpV2
from sqlalchemy import event
from sqlmodel import col, func, select
from zorgpad.engine._apply import apply_outcome
from zorgpad.engine._model import (
    CancelTimers,
    NoticeKind,
    Outcome,
    ScheduleTimer,
    TaskStatusChanged,
    TimerFired,
    TimerKind,
)
from zorgpad.engine._projection import NOTICE_SYSTEM, communication_id, task_id
from zorgpad.engine.clock import FrozenClock
from zorgpad.engine.registry import Registry
from zorgpad.engine.runtime import Engine
from zorgpad.engine.store.audit import SYSTEM
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.enrolments import load_state, save_state
from zorgpad.engine.store.tables import (
    AuditEntry,
    Enrolment,
    OutboxItem,
    ResourceVersion,
    StepRun,
    StoredResource,
    Timer,
)

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
REGISTERED = START + timedelta(hours=1)
#: The conversation opens when register is completed, and is due 28 days later.
DUE = REGISTERED + timedelta(days=28)
REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "tests" / "example_pathway.py"
ZORGPAD = Path(sys.executable).parent / "zorgpad"


def _engine(db: Database) -> Engine:
    return Engine(db, Registry([ExampleAcp, ExampleAcpV2]), FrozenClock(START))


def _open_conversations(engine: Engine, count: int, *, prefix: str = "p") -> list[str]:
    """Enrol ``count`` patients on 1.0.0 and complete register, so each conversation is open (3 timers)."""
    def work(session: Any) -> list[str]:
        ids = [engine.enrol_in(session, "example-acp", f"Patient/{prefix}{i}", version="1.0.0", now=START).id
               for i in range(count)]
        for enrolment_id in ids:
            engine.handle_in(session, enrolment_id, TaskStatusChanged("register", "completed"), now=REGISTERED)
        return ids
    return engine.db.run(work)


def _count(db: Database, model: Any, *where: Any) -> int:
    return int(db.run(lambda s: s.exec(select(func.count()).select_from(model).where(*where)).one()))


def _timers(db: Database) -> set[tuple[str, str, str, int, datetime]]:
    return db.run(lambda s: {(t.enrolment_id, t.step_id, t.kind, t.seq, t.due_at) for t in s.exec(select(Timer))})


def _notices(db: Database) -> Counter[tuple[str, int]]:
    """Communication notices by (kind, version), so repeats show up as higher versions."""
    rows = db.run(lambda s: list(s.exec(select(StoredResource).where(
        StoredResource.resource_type == "Communication"))))
    return Counter((c["code"], row.version_id) for row in rows for cat in row.content["category"]
                   for c in cat["coding"] if c["system"] == NOTICE_SYSTEM)


def _step(db: Database, enrolment_id: str, step_id: str) -> StepRun:
    run = db.run(lambda s: s.get(StepRun, (enrolment_id, step_id)))
    assert run is not None
    return run


def _resource(db: Database, resource_type: str, resource_id: str) -> StoredResource:
    stored = db.run(lambda s: s.get(StoredResource, (resource_type, resource_id)))
    assert stored is not None
    return stored


def _fired_audits(db: Database) -> int:
    return _count(db, AuditEntry, AuditEntry.what == "TimerFired", AuditEntry.actor == "system:tick")


class TestTick:
    """A tick fires what is due, once, and nothing else."""

    def test_every_timer_due_by_now_fires_and_later_ones_stay(self, db: Database) -> None:
        """At the due moment the due and first reminder timers fire; escalation and the next reminder wait."""
        engine = _engine(db)
        (enrolment,) = _open_conversations(engine, 1)

        fired = engine.tick(DUE)

        assert 2 == fired
        assert {(enrolment, "conversation", "escalate", 0, DUE + timedelta(weeks=3)),
                (enrolment, "conversation", "remind", 1, DUE + timedelta(weeks=1))} == _timers(db)

    def test_one_query_looks_up_the_resources_a_batch_writes(self, db: Database) -> None:
        """Six timers of three enrolments (the due moment and the first reminder each) fire in one batch; the
        Tasks, notices and CarePlans they write are looked up together, not once per timer."""
        engine = _engine(db)
        enrolments = _open_conversations(engine, 3)
        lookups: list[str] = []

        def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            values = parameters.values() if isinstance(parameters, dict) else parameters
            if statement.startswith("SELECT") and "FROM resource" in statement and "CarePlan" in values:
                lookups.append(statement)  # a lookup of what outcomes write (their CarePlan among it)

        event.listen(db.engine, "before_cursor_execute", seen)
        try:
            fired = engine.tick(DUE)
        finally:
            event.remove(db.engine, "before_cursor_execute", seen)

        assert 6 == fired
        assert 1 == len(lookups)
        assert all(_step(db, enrolment, "conversation").overdue for enrolment in enrolments)
        assert Counter({("reminder", 1): 3}) == _notices(db)

    def test_a_timer_due_a_microsecond_after_now_does_not_fire(self, db: Database) -> None:
        """Due means due_at <= now: just before the deadline nothing fires and nothing is written."""
        engine = _engine(db)
        (enrolment,) = _open_conversations(engine, 1)
        timers, audits = _timers(db), _count(db, AuditEntry)

        fired = engine.tick(DUE - timedelta(microseconds=1))

        assert (0, timers, audits) == (fired, _timers(db), _count(db, AuditEntry))
        assert not _step(db, enrolment, "conversation").overdue

    def test_a_second_tick_at_the_same_moment_fires_nothing(self, db: Database) -> None:
        """Fired timers are gone: ticking again changes nothing."""
        engine = _engine(db)
        _open_conversations(engine, 1)
        engine.tick(DUE)
        timers, audits, notices = _timers(db), _count(db, AuditEntry), _notices(db)

        fired = engine.tick(DUE)

        assert (0, timers, audits, notices) == (fired, _timers(db), _count(db, AuditEntry), _notices(db))

    def test_firing_writes_step_state_communication_outbox_and_audit(self, db: Database) -> None:
        """The due timer marks the step overdue and the reminder sends a notice: every effect is written."""
        engine = _engine(db)
        (enrolment,) = _open_conversations(engine, 1)
        before = (_count(db, StoredResource, StoredResource.resource_type == "Communication"),
                  _count(db, OutboxItem, OutboxItem.channel == "notify"), _fired_audits(db))

        engine.tick(DUE)

        after = (_count(db, StoredResource, StoredResource.resource_type == "Communication"),
                 _count(db, OutboxItem, OutboxItem.channel == "notify"), _fired_audits(db))
        run = _step(db, enrolment, "conversation")
        key = communication_id(enrolment, "conversation", 0, NoticeKind.REMINDER, 0)
        communication = _resource(db, "Communication", key)
        item = db.run(lambda s: s.exec(select(OutboxItem).where(OutboxItem.channel == "notify")).one())
        task = _resource(db, "Task", task_id(enrolment, "conversation", 0))

        assert ((0, 0, 0), (1, 1, 2)) == (before, after)
        assert (True, "overdue", 1) == (run.overdue, run.business_status, run.reminders_sent)
        assert ("preparation", [{"reference": f"Task/{task.id}"}]) == (communication.content["status"],
                                                                       communication.content["about"])
        assert (f"notify/{key}", "pending", f"Communication/{key}") == (
            item.idempotency_key, item.status, item.payload["communication"])
        assert (2, "overdue") == (task.version_id, task.content["businessStatus"]["text"])

    def test_a_batch_that_fails_half_way_writes_nothing(self, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
        """An error after the first timer's effects rolls back the whole batch; the timers stay to fire later."""
        engine = _engine(db)
        (enrolment,) = _open_conversations(engine, 1)
        snapshot = (_timers(db), _count(db, AuditEntry), _count(db, OutboxItem), _count(db, ResourceVersion))
        real = timers_module.apply_outcome
        calls: list[int] = []

        def failing(*args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            result = real(*args, **kwargs)
            if len(calls) == 2:
                raise RuntimeError("disk full")
            return result

        monkeypatch.setattr(timers_module, "apply_outcome", failing)
        with pytest.raises(RuntimeError, match="disk full"):
            engine.tick(DUE)
        after_failure = (_timers(db), _count(db, AuditEntry), _count(db, OutboxItem), _count(db, ResourceVersion))
        failed_run = _step(db, enrolment, "conversation")
        monkeypatch.setattr(timers_module, "apply_outcome", real)
        fired = engine.tick(DUE)
        run = _step(db, enrolment, "conversation")

        assert snapshot == after_failure
        assert (False, 0) == (failed_run.overdue, failed_run.reminders_sent)
        assert (2, True, 1) == (fired, run.overdue, run.reminders_sent)

    def test_a_stale_timer_is_deleted_without_effects(self, db: Database) -> None:
        """A timer of an earlier round, or of an enrolment that no longer exists, fires as a no-op."""
        engine = _engine(db)
        (enrolment,) = _open_conversations(engine, 1)
        timers = _timers(db)
        db.run(lambda s: s.add_all([
            Timer(due_at=START + timedelta(days=2), enrolment_id=enrolment, step_id="conversation", kind="due",
                  iteration=7),
            Timer(due_at=START + timedelta(days=2), enrolment_id="gone", step_id="conversation", kind="due"),
        ]))
        audits, versions = _count(db, AuditEntry), _count(db, ResourceVersion)

        fired = engine.tick(START + timedelta(days=3))

        assert (2, audits, versions) == (fired, _count(db, AuditEntry), _count(db, ResourceVersion))
        assert timers == _timers(db)


class TestMissedTimers:
    """Timers that came due while nothing ticked fire on the next tick, without a burst of reminders."""

    def test_three_months_in_one_tick_gives_overdue_reminder_and_escalation(self, db: Database) -> None:
        """One late tick fires the due, reminder and escalation timers; nothing is left waiting."""
        engine = _engine(db)
        (enrolment,) = _open_conversations(engine, 1)

        fired = engine.tick(REGISTERED + timedelta(days=91))

        run = _step(db, enrolment, "conversation")
        task = _resource(db, "Task", task_id(enrolment, "conversation", 0))

        assert 3 == fired
        assert (True, True, "escalated", 1) == (run.overdue, run.escalated, run.business_status,
                                                run.reminders_sent)
        assert "escalated" == task.content["businessStatus"]["text"]
        assert Counter({("reminder", 1): 1, ("escalation", 1): 1}) == _notices(db)
        assert set() == _timers(db)

    def test_missed_reminders_are_not_sent_in_a_burst(self, db: Database) -> None:
        """When both reminder moments have passed, one reminder goes out, not two."""
        engine = _engine(db)
        _open_conversations(engine, 1)

        engine.tick(DUE + timedelta(days=8))

        assert Counter({("reminder", 1): 1}) == _notices(db)
        assert [] == [t for t in _timers(db) if t[2] == "remind"]

    def test_reminders_ticked_on_time_are_all_sent(self, db: Database) -> None:
        """Ticking at each reminder moment sends both reminders (the contrast to the late tick)."""
        engine = _engine(db)
        (enrolment,) = _open_conversations(engine, 1)

        engine.tick(DUE)
        engine.tick(DUE + timedelta(weeks=1))

        assert Counter({("reminder", 1): 2}) == _notices(db)
        assert 2 == _step(db, enrolment, "conversation").reminders_sent

    def test_a_late_reminder_schedules_the_next_one_that_is_still_ahead(self, db: Database) -> None:
        """A reminder fired three days late still leaves the next one at its own moment."""
        engine = _engine(db)
        (enrolment,) = _open_conversations(engine, 1)

        engine.tick(DUE + timedelta(days=3))

        assert {(enrolment, "conversation", "remind", 1, DUE + timedelta(weeks=1))} == {
            t for t in _timers(db) if t[2] == "remind"}


class TestBatches:
    """A tick goes on batch after batch until nothing is due."""

    def test_a_tick_fires_more_timers_than_one_batch(self, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
        """Ten due timers with batch_size=3 fire in batches of 3, 3, 3 and 1."""
        engine = _engine(db)
        ids = db.run(lambda s: [engine.enrol_in(s, "example-acp", f"Patient/b{i}", version="1.0.0", now=START).id
                                for i in range(10)])
        real = timers_module.fire_batch
        batches: list[int] = []

        def spy(*args: Any, **kwargs: Any) -> int:
            batches.append(real(*args, **kwargs))
            return batches[-1]

        monkeypatch.setattr(timers_module, "fire_batch", spy)

        fired = engine.tick(START + timedelta(days=7), batch_size=3)

        assert (10, [3, 3, 3, 1, 0]) == (fired, batches)
        assert [True] * 10 == [_step(db, i, "register").overdue for i in ids]
        assert 0 == _count(db, Timer)

    def test_batches_before_a_failure_stay_committed(self, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
        """A failure in the second batch keeps the first batch's work; the next tick fires the rest once."""
        engine = _engine(db)
        db.run(lambda s: [engine.enrol_in(s, "example-acp", f"Patient/b{i}", version="1.0.0", now=START)
                          for i in range(10)])
        real = timers_module.apply_outcome
        calls: list[int] = []

        def failing(*args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            if len(calls) == 5:
                raise RuntimeError("crash in batch 2")
            return real(*args, **kwargs)

        monkeypatch.setattr(timers_module, "apply_outcome", failing)
        with pytest.raises(RuntimeError, match="crash in batch 2"):
            engine.tick(START + timedelta(days=7), batch_size=3)
        left_after_crash = _count(db, Timer)
        monkeypatch.setattr(timers_module, "apply_outcome", real)

        fired = engine.tick(START + timedelta(days=7), batch_size=3)

        assert (7, 7) == (left_after_crash, fired)
        assert (10, 0) == (_fired_audits(db), _count(db, Timer))
        assert {2} == set(db.run(lambda s: [r.version_id for r in s.exec(
            select(StoredResource).where(StoredResource.resource_type == "Task"))]))


def _waiting_enrolments(engine: Engine, count: int) -> list[str]:
    """``count`` enrolments waiting on register's deadline, enrolled one minute apart.

    The first is enrolled through the engine; the others are copies of its state and timer rows, shifted
    by i minutes (seeding 2,000 through the engine would dominate the suite's run time).
    """
    template = engine.enrol("example-acp", "Patient/m0", now=START).id

    def copy(session: Any) -> list[str]:
        state = load_state(session, session.get(Enrolment, template))
        timers = list(session.exec(select(Timer).where(Timer.enrolment_id == template)))
        ids = [template]
        for i in range(1, count):
            shift = timedelta(minutes=i)
            clone = state.copy()
            clone.id, clone.patient, clone.enrolled_at = f"m{i:05d}", f"Patient/m{i}", state.enrolled_at + shift
            for run in clone.steps.values():
                for name in ("start_at", "ready_at", "due_at"):
                    if getattr(run, name) is not None:
                        setattr(run, name, getattr(run, name) + shift)
            save_state(session, clone, None)
            session.add_all([Timer(due_at=t.due_at + shift, enrolment_id=clone.id, step_id=t.step_id, kind=t.kind,
                                   iteration=t.iteration, seq=t.seq) for t in timers])
            ids.append(clone.id)
        return ids

    return engine.db.run(copy)


class TestWaitingEnrolmentsAreRows:
    """Waiting enrolments cost rows, not memory: a tick loads only the enrolments with due timers."""

    def test_a_tick_among_two_thousand_enrolments_loads_only_the_due_ones(
            self, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
        """Of 2,000 enrolments one minute apart, a tick 150 minutes into their deadlines loads exactly 150."""
        engine = _engine(db)
        ids = _waiting_enrolments(engine, 2000)
        real = timers_module.load_state
        loaded: list[str] = []

        def spy(session: Any, row: Any) -> Any:
            loaded.append(row.id)
            return real(session, row)

        monkeypatch.setattr(timers_module, "load_state", spy)

        fired = engine.tick(START + timedelta(days=7, minutes=149))

        revisions = db.run(lambda s: Counter(r.revision for r in s.exec(select(Enrolment))))

        assert (150, 150) == (fired, len(loaded))
        assert sorted(ids[:150]) == sorted(loaded)
        assert 1850 == _count(db, Timer)
        assert Counter({1: 1850, 2: 150}) == revisions


def _tick_script(tmp_path: Path) -> Path:
    script = tmp_path / "tick.py"
    script.write_text(
        "import sys\n"
        "from datetime import datetime\n"
        f"sys.path.insert(0, {str(REPO / 'tests')!r})\n"
        "from example_pathway import ExampleAcp, ExampleAcpV2\n"
        "from zorgpad.engine.registry import Registry\n"
        "from zorgpad.engine.store.db import Database\n"
        "from zorgpad.engine.timers import tick\n"
        "db = Database(sys.argv[1])\n"
        "fired = tick(db, Registry([ExampleAcp, ExampleAcpV2]), datetime.fromisoformat(sys.argv[2]),\n"
        "             batch_size=int(sys.argv[3]))\n"
        "print(f'fired {fired} timers')\n"
    )
    return script


@pytest.mark.slow
class TestConcurrentTicks:
    """Two OS processes ticking one database at once fire every due timer exactly once (SQLite: BEGIN
    IMMEDIATE serialises their batches; PostgreSQL: SKIP LOCKED gives them disjoint batches)."""

    @pytest.mark.parametrize(("runner", "n"), [("cli", 300), ("small-batches", 150)])
    def test_two_tick_processes_fire_each_timer_once(self, db: Database, db_url: str, tmp_path: Path,
                                                     runner: str, n: int) -> None:
        """n open conversations (3n due timers): each effect exists exactly once after both processes."""
        engine = _engine(db)
        ids = _open_conversations(engine, n)
        now = (REGISTERED + timedelta(days=91)).isoformat()
        if runner == "cli":
            command = [str(ZORGPAD), "tick", "--db", db_url, "--now", now, "--file", str(EXAMPLE)]
        else:
            command = [sys.executable, str(_tick_script(tmp_path)), db_url, now, "7"]

        processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
                     for _ in range(2)]
        outputs = [p.communicate(timeout=240) for p in processes]

        counts = [int(count) for out, _ in outputs for count in re.findall(r"^fired (\d+) timers$", out, re.M)]
        keys = db.run(lambda s: [i.idempotency_key for i in s.exec(select(OutboxItem).where(
            OutboxItem.channel == "notify"))])
        runs = db.run(lambda s: [(r.reminders_sent, r.overdue, r.escalated) for r in s.exec(
            select(StepRun).where(StepRun.step_id == "conversation"))])
        task_versions = db.run(lambda s: Counter(r.version_id for r in s.exec(select(StoredResource).where(
            StoredResource.resource_type == "Task", col(StoredResource.id).in_(
                [task_id(i, "conversation", 0) for i in ids])))))

        assert [0, 0] == [p.returncode for p in processes], [err for _, err in outputs]
        assert (2, 3 * n) == (len(counts), sum(counts))
        assert 0 == _count(db, Timer)
        assert 3 * n == _fired_audits(db)
        assert Counter({("reminder", 1): n, ("escalation", 1): n}) == _notices(db)
        assert 2 * n == _count(db, ResourceVersion, ResourceVersion.resource_type == "Communication")
        assert (2 * n, 2 * n) == (len(keys), len(set(keys)))
        assert [(1, True, True)] * n == runs
        assert Counter({3: n}) == task_versions


class TestTimerCommands:
    """An outcome's timer commands are written netted (one DELETE, one batch of inserts), with the effect of
    applying them in order."""

    def _apply(self, db: Database, enrolment_id: str, *commands: Any) -> None:
        def work(session: Any) -> None:
            row = session.get(Enrolment, enrolment_id)
            state = load_state(session, row)
            apply_outcome(session, ExampleAcp, state, TimerFired(TimerKind.DUE, "conversation", 1),
                          Outcome(state.copy(), commands), REGISTERED, SYSTEM, row)
        db.run(work)

    def test_schedules_after_a_cancel_stay_and_those_before_it_go(self, db: Database) -> None:
        engine = _engine(db)
        (enrolment_id,) = _open_conversations(engine, 1)
        stored = {(step, kind) for _, step, kind, _, _ in _timers(db)}
        assert {("conversation", "due"), ("conversation", "remind"), ("conversation", "escalate")} == stored
        later = REGISTERED + timedelta(days=3)
        self._apply(db, enrolment_id, ScheduleTimer(TimerKind.START, "review", 1, later))
        statements: list[str] = []

        def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if " timer " in f"{statement} ".replace('"', " ").replace("\n", " "):
                statements.append(statement.split()[0])

        event.listen(db.engine, "before_cursor_execute", seen)
        try:
            self._apply(db, enrolment_id,
                        ScheduleTimer(TimerKind.REMIND, "share", 1, later, seq=1),  # cancelled below: never written
                        CancelTimers("conversation"),
                        ScheduleTimer(TimerKind.REMIND, "conversation", 2, later, seq=1),
                        CancelTimers("share"),
                        ScheduleTimer(TimerKind.DUE, "share", 1, later))
        finally:
            event.remove(db.engine, "before_cursor_execute", seen)

        assert ["DELETE", "INSERT"] == statements

        assert {(enrolment_id, "review", "start", 0, later),  # another step's stored timer stays
                (enrolment_id, "conversation", "remind", 1, later),
                (enrolment_id, "share", "due", 0, later)} == _timers(db)

    def test_cancelling_all_keeps_only_what_comes_after_it(self, db: Database) -> None:
        engine = _engine(db)
        (enrolment_id,) = _open_conversations(engine, 1)
        later = REGISTERED + timedelta(days=3)

        self._apply(db, enrolment_id,
                    ScheduleTimer(TimerKind.REMIND, "share", 1, later, seq=1),
                    CancelTimers(),
                    ScheduleTimer(TimerKind.DUE, "review", 1, later))

        assert {(enrolment_id, "review", "due", 0, later)} == _timers(db)
