"""The embedded runner (``zorgpad.engine.scheduler.EmbeddedRunner``): one round ticks timers, then flushes
the outbox; a failing round is counted and logged, never raised."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import example_pathway
import pytest
from example_pathway import ExampleAcp
from sqlmodel import select
from zorgpad.engine import Database, Engine, FrozenClock, Registry
from zorgpad.engine.scheduler import EmbeddedRunner, WorkCounts
from zorgpad.engine.store.tables import OutboxItem, Timer

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
PATIENT = "Patient/p1"


@pytest.fixture
def clock() -> FrozenClock:
    """The engine's clock, at START."""
    return FrozenClock(START)


@pytest.fixture
def engine(db: Database, clock: FrozenClock) -> Iterator[Engine]:
    """An engine over the test database with one patient enrolled in ExampleAcp at START."""
    example_pathway.ACTION_CALLS.clear()
    engine = Engine(db, Registry([ExampleAcp]), clock)
    engine.ingest({"resourceType": "Patient", "id": "p1", "generalPractitioner": [
        {"reference": "Organization/gp-1"}]})
    engine.enrol("example-acp", PATIENT)
    yield engine
    example_pathway.ACTION_CALLS.clear()


def _timers(db: Database) -> list[tuple[str, str]]:
    return db.run(lambda s: sorted((t.step_id, t.kind) for t in s.exec(select(Timer))))


def _outbox(db: Database) -> list[tuple[str, str]]:
    return db.run(lambda s: [(o.channel, o.status) for o in s.exec(select(OutboxItem).order_by(OutboxItem.id))])


class TestWork:
    """``work()`` runs one round synchronously and keeps score in ``counts``."""

    def test_a_round_fires_due_timers_and_delivers_the_outbox(self, engine: Engine, clock: FrozenClock,
                                                               db: Database) -> None:
        """Eight days after enrolment the register step's due timer fires and its action is delivered."""
        runner = EmbeddedRunner(engine, 1.0)
        clock.advance(timedelta(days=8))

        runner.work()

        assert WorkCounts(runs=1, fired=1, delivered=1, failures=0) == runner.counts
        assert [] == _timers(db)
        assert [("action", "delivered")] == _outbox(db)
        assert ["register"] == [call.step for call in example_pathway.ACTION_CALLS]
        assert "overdue" == engine.enrolments_of(PATIENT)[0].steps["register"].business_status

    def test_a_round_before_anything_is_due_only_delivers(self, engine: Engine, db: Database) -> None:
        """At enrolment time nothing has come due, but the action queued at enrolment is delivered."""
        runner = EmbeddedRunner(engine, 1.0)

        runner.work()

        assert WorkCounts(runs=1, fired=0, delivered=1, failures=0) == runner.counts
        assert [("register", "due")] == _timers(db)

    def test_counts_add_up_over_rounds(self, engine: Engine, clock: FrozenClock) -> None:
        """Counts accumulate: a second round with nothing new adds a run and nothing else."""
        runner = EmbeddedRunner(engine, 1.0)
        clock.advance(timedelta(days=8))
        runner.work()

        runner.work()

        assert WorkCounts(runs=2, fired=1, delivered=1, failures=0) == runner.counts

    def test_a_failing_round_is_counted_and_logged_but_not_raised(
        self, engine: Engine, clock: FrozenClock, db: Database, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A failing round is counted and logged at ERROR with its traceback, never raised; timers stay."""
        clock.advance(timedelta(days=8))
        broken = Engine(db, Registry([]), clock)
        runner = EmbeddedRunner(broken, 2.5)

        with caplog.at_level(logging.ERROR, logger="zorgpad.scheduler"):
            runner.work()

        assert WorkCounts(runs=1, fired=0, delivered=0, failures=1) == runner.counts
        records = [r for r in caplog.records if r.name == "zorgpad.scheduler"]
        assert [logging.ERROR] == [r.levelno for r in records]
        assert "tick/deliver round failed; it runs again in 2.5 s" == records[0].getMessage()
        assert records[0].exc_info is not None
        assert [("register", "due")] == _timers(db)

    def test_a_round_after_a_failure_still_works(self, engine: Engine, clock: FrozenClock,
                                                 db: Database) -> None:
        """The runner keeps going after a failed round: once the cause is gone, the next round fires."""
        clock.advance(timedelta(days=8))
        runner = EmbeddedRunner(Engine(db, Registry([]), clock), 1.0)
        runner.work()
        runner.engine = engine

        runner.work()

        assert WorkCounts(runs=2, fired=1, delivered=1, failures=1) == runner.counts


class TestConfiguration:
    """The interval must be positive; the background thread starts at once and stops cleanly."""

    @pytest.mark.parametrize("interval", [0, 0.0, -1, -0.5])
    def test_a_non_positive_interval_is_refused(self, engine: Engine, interval: float) -> None:
        """An interval <= 0 raises ValueError naming the value."""
        with pytest.raises(ValueError, match="must be positive") as caught:
            EmbeddedRunner(engine, interval)

        assert f"(got {interval})" in str(caught.value)

    def test_the_interval_is_kept(self, engine: Engine) -> None:
        """The runner reports the interval it was given."""
        actual = EmbeddedRunner(engine, 0.25).interval

        assert 0.25 == actual

    def test_start_runs_the_first_round_at_once_and_stop_ends_the_thread(self, engine: Engine,
                                                                         clock: FrozenClock) -> None:
        """``start()`` runs a round without waiting an interval (here an hour); ``stop()`` shuts down."""
        clock.advance(timedelta(days=8))
        runner = EmbeddedRunner(engine, 3600)
        runner.start()
        try:
            deadline = time.monotonic() + 20
            while runner.counts.runs == 0 and time.monotonic() < deadline:
                time.sleep(0.05)  # polling a background thread, not simulating time
        finally:
            runner.stop()

        assert WorkCounts(runs=1, fired=1, delivered=1, failures=0) == runner.counts
        assert False is runner._scheduler.running

    def test_stop_before_start_is_harmless(self, engine: Engine) -> None:
        """Stopping a runner that never started does nothing."""
        runner = EmbeddedRunner(engine, 1.0)

        runner.stop()

        assert WorkCounts() == runner.counts
