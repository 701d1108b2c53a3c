"""Naive baseline: one APScheduler job per transition and per reminder, kept in its SQLAlchemy job store.

This is the design a team reaches for when it wants durable timers without a workflow engine: APScheduler
3.x's ``BackgroundScheduler`` with a ``SQLAlchemyJobStore`` in the application's own database. Every
pending reminder is a pickled job row with a ``DateTrigger``; every step of a patient is a job that runs
once, now, reads the patient's step and writes the next; the job row is the durable record until it has
run. Zorgpad's figures are reported as a ratio to these (issue #7).

The set-up is stock except where a reminder system must differ: ``misfire_grace_time=None`` (a late
reminder still fires; APScheduler's default of 1 s would silently skip the late ones of a burst) and the
default thread pool of 10 workers. The job store, the step table and the outbox are scratch tables with a
unique suffix in ``db_url``, dropped afterwards; on SQLite every connection waits up to 30 s for a lock,
since the scheduler's thread and the 10 workers write to one file.

The adding of jobs is timed separately from their firing. What does not fit in the time boxes below is
not done and says so in ``note`` and ``count``; nothing is extrapolated.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from string import Template
from typing import Any

import sqlalchemy as sa
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.engine import make_url

#: Seconds spent adding transition jobs (each runs as soon as it is added).
TRANSITION_WINDOW_S = 8.0
#: Seconds spent adding the far-future reminder jobs (the rest of ``pending`` is not added).
PENDING_ADD_S = 8.0
#: At most this many seconds of adding due jobs: fewer due jobs are added if they would take longer.
DUE_ADD_S = 4.0
#: Seconds after the due time that :func:`reminders` waits for the due jobs to fire.
REMINDER_WINDOW_S = 15.0

_MESSAGE = Template("Beste $name, denkt u aan uw gesprek over de zorg die bij u past? (herinnering $reminder)")
_engines: dict[str, sa.Engine] = {}
_engines_lock = threading.Lock()


def transitions(patients: int, db_url: str, workdir: Path) -> dict[str, Any]:
    """Add one run-now job per patient step and time until every added job has run."""
    suffix = uuid.uuid4().hex[:8]
    url = _sqlalchemy_url(db_url)
    engine = _engine(url)
    steps = _step_table(sa.MetaData(), f"bench_naive_aps_step_{suffix}")
    store = SQLAlchemyJobStore(engine=engine, tablename=f"bench_naive_aps_jobs_{suffix}")
    scheduler, tally = _scheduler(store)
    try:
        steps.create(engine)
        with engine.begin() as connection:
            connection.execute(steps.insert(), [{"patient": p, "step": 0} for p in range(patients)])
        scheduler.start()
        start = time.perf_counter()
        added = 0
        for patient in range(patients):
            if time.perf_counter() - start >= TRANSITION_WINDOW_S:
                break
            scheduler.add_job(advance, "date", run_date=datetime.now(UTC), args=[url, steps.name, patient],
                              id=f"advance-{patient}")
            added += 1
        adding = time.perf_counter() - start
        tally.wait_for(added, time.monotonic() + TRANSITION_WINDOW_S + 30)
        seconds = time.perf_counter() - start
        scheduler.shutdown(wait=True)
        with engine.connect() as connection:
            moved = connection.execute(
                sa.select(sa.func.count()).select_from(steps).where(steps.c.step == 1)).scalar_one()
        if moved != added:
            raise RuntimeError(f"{added} transition jobs added but {moved} patients moved to step 1: {tally}")
        note = (f"APScheduler {_version()}: one DateTrigger job per transition in a SQLAlchemyJobStore "
                f"({make_url(url).get_backend_name()}), run by a BackgroundScheduler's 10 threads; {added} of "
                f"{patients} patients moved, timed from the first add to the last job run (adding took "
                f"{adding:.1f} s, in a {TRANSITION_WINDOW_S:.0f} s time box)")
        return {"per_second": moved / seconds if seconds > 0 else 0.0, "count": moved, "seconds": seconds,
                "note": note}
    finally:
        _shutdown(scheduler)
        store.jobs_t.drop(engine, checkfirst=True)
        steps.drop(engine, checkfirst=True)
        _dispose(url)


def reminders(pending: int, due: int, db_url: str, workdir: Path) -> dict[str, Any]:
    """Add ``pending`` reminder jobs of which ``due`` fall due at one moment; time their firing and lateness."""
    suffix = uuid.uuid4().hex[:8]
    url = _sqlalchemy_url(db_url)
    engine = _engine(url)
    outbox = _outbox_table(sa.MetaData(), f"bench_naive_aps_outbox_{suffix}")
    store = SQLAlchemyJobStore(engine=engine, tablename=f"bench_naive_aps_jobs_{suffix}")
    scheduler, tally = _scheduler(store)
    try:
        outbox.create(engine)
        # Paused: the jobs go into the store as they are added, and nothing fires before the due time.
        scheduler.start(paused=True)
        far = datetime.now(UTC) + timedelta(days=365)
        start = time.perf_counter()
        far_added = 0
        for index in range(max(0, pending - due)):
            if time.perf_counter() - start >= PENDING_ADD_S:
                break
            scheduler.add_job(remind, "date", run_date=far, args=[url, outbox.name, -1 - index, far.timestamp()],
                              id=f"remind-far-{index}")
            far_added += 1
        far_seconds = time.perf_counter() - start
        rate = far_added / far_seconds if far_added else 500.0
        scheduled = min(due, max(1, int(rate * DUE_ADD_S)))
        # One due time for all, a little after they will all have been added.
        due_at = time.time() + scheduled / rate + 1.0
        for reminder in range(scheduled):
            scheduler.add_job(remind, "date", run_date=datetime.fromtimestamp(due_at, UTC),
                              args=[url, outbox.name, reminder, due_at], id=f"remind-{reminder}")
        scheduler.resume()
        tally.wait_for(scheduled, time.monotonic() + max(0.0, due_at - time.time()) + REMINDER_WINDOW_S)
        scheduler.shutdown(wait=True)
        with engine.connect() as connection:
            rows = connection.execute(sa.select(outbox.c.reminder, outbox.c.due_at, outbox.c.fired_at)).all()
        if len({r.reminder for r in rows}) != len(rows) or any(r.reminder < 0 for r in rows) or tally.errors:
            raise RuntimeError(f"{len(rows)} outbox rows for {scheduled} due reminders: {tally}")
        last = max([due_at + REMINDER_WINDOW_S if len(rows) < scheduled else due_at] + [r.fired_at for r in rows])
        lateness = [r.fired_at - r.due_at for r in rows] + [last - due_at] * (scheduled - len(rows))
        seconds = last - due_at
        note = (f"APScheduler {_version()}: BackgroundScheduler (10 threads, misfire_grace_time=None) with a "
                f"SQLAlchemyJobStore ({make_url(url).get_backend_name()}); adding {far_added} of "
                f"{max(0, pending - due)} far-future jobs took {far_seconds:.1f} s ({rate:.0f} jobs/s, time box "
                f"{PENDING_ADD_S:.0f} s); {scheduled} of {due} due jobs added (what {DUE_ADD_S:.0f} s of adding "
                f"allows), all due at one moment; {len(rows)} fired, rate from the due time to the last outbox row")
        if len(rows) < scheduled:
            note += (f"; {scheduled - len(rows)} did not fire within {REMINDER_WINDOW_S:.0f} s and count in the "
                     f"p99 with the window's length (a lower bound)")
        return {"per_second": len(rows) / seconds if seconds > 0 else 0.0, "count": len(rows), "seconds": seconds,
                "p99_lateness_s": _p99(lateness), "note": note}
    finally:
        _shutdown(scheduler)
        store.jobs_t.drop(engine, checkfirst=True)
        outbox.drop(engine, checkfirst=True)
        _dispose(url)


# --- the jobs (module-level: the job store keeps a reference to them by name) ---------------------------


def advance(url: str, table: str, patient: int) -> int:
    """Move ``patient`` to the next step: read the current step, write the next one."""
    steps = _step_table(sa.MetaData(), table)
    with _engine(url).begin() as connection:
        step = connection.execute(sa.select(steps.c.step).where(steps.c.patient == patient)).scalar_one()
        connection.execute(steps.update().where(steps.c.patient == patient).values(step=step + 1))
    return int(step + 1)


def remind(url: str, table: str, reminder: int, due_at: float) -> None:
    """Render the reminder text and insert its outbox row."""
    fired_at = time.time()
    outbox = _outbox_table(sa.MetaData(), table)
    body = _MESSAGE.substitute(name=f"patiënt {reminder}", reminder=reminder)
    with _engine(url).begin() as connection:
        connection.execute(outbox.insert().values(reminder=reminder, body=body, due_at=due_at, fired_at=fired_at))


# --- helpers ------------------------------------------------------------------------------------------------


class _Tally:
    """Counts the scheduler's job events, so that the caller can wait until ``n`` jobs are done."""

    def __init__(self) -> None:
        self.done = 0
        self.errors: list[str] = []
        self.missed = 0
        self._changed = threading.Condition()

    def __call__(self, event: JobExecutionEvent) -> None:
        with self._changed:
            if event.code == EVENT_JOB_MISSED:
                self.missed += 1
            else:
                self.done += 1
                if event.exception is not None:
                    self.errors.append(f"{event.job_id}: {type(event.exception).__name__}: {event.exception}")
            self._changed.notify_all()

    def wait_for(self, count: int, deadline: float) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self.done + self.missed >= count or time.monotonic() >= deadline,
                                   timeout=max(0.0, deadline - time.monotonic()))

    def __str__(self) -> str:
        return f"{self.done} run, {self.missed} missed, errors: {self.errors[:3]}"


def _scheduler(store: SQLAlchemyJobStore) -> tuple[BackgroundScheduler, _Tally]:
    scheduler = BackgroundScheduler(jobstores={"default": store}, timezone=UTC,
                                    job_defaults={"misfire_grace_time": None, "coalesce": False})
    tally = _Tally()
    scheduler.add_listener(tally, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)
    return scheduler, tally


def _shutdown(scheduler: BackgroundScheduler) -> None:
    if scheduler.running:
        scheduler.shutdown(wait=True)


def _sqlalchemy_url(db_url: str) -> str:
    """``db_url`` with the installed PostgreSQL driver (psycopg 3) named, as SQLAlchemy needs it."""
    url = make_url(db_url)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def _engine(url: str) -> sa.Engine:
    """One engine per URL for the scheduler and its jobs (jobs get only the URL: they are pickled)."""
    with _engines_lock:
        if url not in _engines:
            # SQLite: the scheduler's thread and the 10 workers write to one file; wait for the lock.
            _engines[url] = sa.create_engine(url, connect_args={"timeout": 30} if url.startswith("sqlite") else {})
        return _engines[url]


def _dispose(url: str) -> None:
    with _engines_lock:
        engine = _engines.pop(url, None)
    if engine is not None:
        engine.dispose()


def _step_table(metadata: sa.MetaData, name: str) -> sa.Table:
    return sa.Table(name, metadata, sa.Column("patient", sa.Integer, primary_key=True, autoincrement=False),
                    sa.Column("step", sa.Integer, nullable=False))


def _outbox_table(metadata: sa.MetaData, name: str) -> sa.Table:
    return sa.Table(name, metadata, sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("reminder", sa.Integer, nullable=False), sa.Column("body", sa.Text, nullable=False),
                    sa.Column("due_at", sa.Float, nullable=False), sa.Column("fired_at", sa.Float, nullable=False))


def _p99(values: list[float]) -> float | None:
    """The nearest-rank 99th percentile, or None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def _version() -> str:
    from importlib.metadata import version

    return version("apscheduler")
