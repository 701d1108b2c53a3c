"""The embedded runner's wake-up: an APScheduler 3.x interval job that ticks timers and flushes the
outbox. APScheduler holds no state of ours; the database is the source of truth, so a restart loses
nothing and missed timers fire on the first tick after it."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from apscheduler.schedulers.background import BackgroundScheduler
from zorgpad.engine.runtime import Engine

log = logging.getLogger("zorgpad.scheduler")


@dataclass
class WorkCounts:
    """How much the embedded runner has done since it started."""

    runs: int = 0
    fired: int = 0
    delivered: int = 0
    failures: int = 0


class EmbeddedRunner:
    """Ticks and delivers every ``interval`` seconds in a background thread."""

    def __init__(self, engine: Engine, interval: float = 5.0) -> None:
        if interval <= 0:
            raise ValueError(f"the tick interval must be positive (got {interval})")
        self.engine = engine
        self.interval = interval
        self.counts = WorkCounts()
        self._scheduler = BackgroundScheduler(timezone="UTC")
        self._scheduler.add_job(self.work, "interval", seconds=interval, id="zorgpad-tick-deliver",
                                max_instances=1, coalesce=True, next_run_time=None)

    def work(self) -> None:
        """One round: fire due timers, then deliver the outbox. Errors are logged and retried next round."""
        self.counts.runs += 1
        try:
            self.counts.fired += self.engine.tick()
            self.counts.delivered += self.engine.deliver().delivered
        except Exception:
            self.counts.failures += 1
            log.exception("tick/deliver round failed; it runs again in %s s", self.interval)

    def start(self) -> None:
        """Start the background thread; the first round runs at once."""
        from datetime import UTC, datetime

        self._scheduler.start()
        self._scheduler.modify_job("zorgpad-tick-deliver", next_run_time=datetime.now(UTC))

    def stop(self) -> None:
        """Stop after the round in progress."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)
