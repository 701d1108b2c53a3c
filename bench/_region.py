"""The region every engine benchmark runs in: waiting enrolments anchored to the real clock.

``patients`` (plus ``spare``) copies of the template patient (see :mod:`bench._population`) whose next
reminder falls in one minute starting ``remind_at`` (a day from now), plus a smaller *lateness cohort*
whose reminders are re-timed to the real clock just before the lateness run, and timers due next year topped up to
``pending_timers``. Patients are taken from the end of the main cohort for the transitions and latency
runs; the timers benchmark counts what is still due when it starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlmodel import select
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.tables import Enrolment

from bench import _population
from bench._common import Scratch, Sizes


@dataclass
class Region:
    """A populated database and who is in it."""

    db_url: str
    #: Start of the minute in which the main cohort's reminders are due.
    remind_at: datetime
    #: Enrolment ids of the lateness cohort, and of the main cohort in index order.
    lateness_cohort: list[str]
    main_cohort: list[str]
    rows_per_patient: int
    setup_seconds: float
    _taken: int = 0
    notes: list[str] = field(default_factory=list)

    def take(self, count: int) -> list[tuple[str, str]]:
        """(enrolment id, patient id) of ``count`` patients of the main cohort nobody has used yet, the last
        first: a run that uses only the first few can :meth:`give_back` the rest."""
        end = len(self.main_cohort) - self._taken
        start = max(0, end - count)
        self._taken += end - start
        return [(e, _population.patient_id(self.main_index(e))) for e in reversed(self.main_cohort[start:end])]

    def give_back(self, taken: list[tuple[str, str]], used: int) -> None:
        """Return the patients of the latest :meth:`take` after the first ``used``, untouched, for the
        benchmarks that follow (a time-boxed run seldom gets through all it took)."""
        self._taken -= len(taken) - min(used, len(taken))

    def main_index(self, enrolment_id: str) -> int:
        """The copy index of an enrolment id (its first 8 hex digits)."""
        return int(enrolment_id[:8], 16)


def _enrolments(db_url: str) -> list[str]:
    database = Database(db_url)
    try:
        return list(database.run(lambda s: s.exec(select(Enrolment.id).order_by(Enrolment.id)).all()))
    finally:
        database.dispose()


def build(scratch: Scratch, sizes: Sizes, workdir: Path, *, log: Callable[[str], None] = print) -> Region:
    """Make and fill the region's database."""
    started = time.perf_counter()
    now = datetime.now(UTC).replace(microsecond=0)
    remind_at = now + timedelta(days=1)
    t0 = remind_at - _population.SECOND_REMINDER
    lateness = max(1, round(sizes.patients * sizes.lateness_window / 60))
    template = _population.build_template(t0, workdir)
    main = sizes.patients + sizes.spare
    main_spacing = 60 / main

    def shift(index: int) -> timedelta:
        if index <= lateness:
            return timedelta(hours=-1, seconds=index * sizes.lateness_window / lateness)
        return timedelta(seconds=(index - lateness - 1) * main_spacing)

    db_url = scratch.new("region")
    log(f"  region: copying {lateness + main:,} patients ({template.rows_per_patient} rows each)")
    _population.populate(db_url, template, lateness + main, shift)
    ids = _enrolments(db_url)
    ids_by_index = {int(e[:8], 16): e for e in ids}
    lateness_cohort = [ids_by_index[i] for i in range(1, lateness + 1)]
    main_cohort = [ids_by_index[i] for i in range(lateness + 1, lateness + main + 1)]
    topped = _population.top_up_timers(db_url, sizes.pending_timers, ids, now + timedelta(days=365))
    _settle(db_url)
    region = Region(db_url, remind_at, lateness_cohort, main_cohort, template.rows_per_patient,
                    time.perf_counter() - started)
    region.notes.append(f"{topped:,} of the pending timers are due next year (added to reach the total)")
    return region


def _settle(db_url: str) -> None:
    """PostgreSQL: gather the planner's statistics, as autovacuum does within a minute of a bulk load. Right
    after the copy they describe empty tables, and the access check's join then scans every care-team
    reference (0.45 s instead of 0.1 ms a request)."""
    database = Database(db_url)
    try:
        if database.is_postgresql:
            with database.engine.begin() as connection:
                connection.exec_driver_sql("ANALYZE")
    finally:
        database.dispose()
