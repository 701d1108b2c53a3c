"""Benchmark 2: firing due reminders, each rendered with its outbox row.

Two runs on the region's timers (``pending_timers`` in all):

* **Lateness.** The lateness cohort's reminders are re-timed to fall, evenly spread, in a window that starts
  two seconds from now (the arrival rate of the issue's minute); a ticker then runs Engine.tick's own batch
  loop (:func:`zorgpad.engine.timers.fire_batch`, 200 per transaction) on the real clock, pausing 50 ms
  when nothing is due. Each batch's commit time is recorded, so each reminder's lateness (commit - due) is
  known: batches fire the oldest due timers first.
* **Outage.** Nothing ticked for ten minutes around the main cohort's minute (``remind_at``); the first tick
  after it fires the backlog. Time-boxed; afterwards every reminder that was due is either fired (with its
  Communication and outbox row) or still pending: none may be lost. On PostgreSQL one ticker fires the
  first half of the backlog and two ticker processes at once the rest (``FOR UPDATE SKIP LOCKED`` gives
  them disjoint batches), so the two rates are measured side by side on the same backlog.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from multiprocessing.synchronize import Barrier
from pathlib import Path

from sqlalchemy import bindparam, func, update
from sqlmodel import col, select
from zorgpad.engine.registry import Registry
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.tables import OutboxItem, StoredResource, Timer
from zorgpad.engine.timers import fire_batch

from bench import _naive
from bench._common import Baseline, Figure, Scratch, Sizes, WriteCounter, percentile
from bench._region import Region
from bench.baselines import floor

TARGET_RATE = 20_000.0
TARGET_P99 = 1.0
BATCH = 200
#: Ticker processes of the parallel pass on PostgreSQL (the benchmark machine has two cores).
TICKERS = 2


#: Ids in one IN list (PostgreSQL takes at most 65,535 parameters a statement; the full cohort is 100,000).
_IDS_PER_QUERY = 10_000
_TIMERS = Timer.__table__  # type: ignore[attr-defined]
_RETIME = update(_TIMERS).where(_TIMERS.c.id == bindparam("timer")).values(due_at=bindparam("due"))


def _count(database: Database, query: object) -> int:
    return int(database.run(lambda s: s.exec(query).one()))  # type: ignore[call-overload]


def _lateness(database: Database, registry: Registry, cohort: list[str], window: float,
              cap: float) -> tuple[list[float], int, float]:
    """Lateness of each fired reminder of the cohort, how many were still unfired at the cap, and how many
    seconds the re-timing ran past the first due moment (0 when it was done in time)."""
    timers: list[int] = []
    for begin in range(0, len(cohort), _IDS_PER_QUERY):
        part = cohort[begin:begin + _IDS_PER_QUERY]
        timers += database.run(lambda s, part=part: list(s.exec(
            select(Timer.id).where(col(Timer.enrolment_id).in_(part), Timer.kind == "remind")
            .order_by(Timer.enrolment_id)).all()))
    # Room for the re-timing itself (one executemany), so that the first reminder is not due before it ends.
    start = datetime.now(UTC) + timedelta(seconds=2 + len(timers) / 10_000)
    due = [start + timedelta(seconds=i * window / max(1, len(timers))) for i in range(len(timers))]
    database.run(lambda s: s.connection().execute(_RETIME, [
        {"timer": timer_id, "due": moment} for timer_id, moment in zip(timers, due, strict=True)]))
    overrun = max(0.0, (datetime.now(UTC) - start).total_seconds())
    commits: list[tuple[datetime, int]] = []
    fired = 0
    deadline = start + timedelta(seconds=window + cap)
    while fired < len(timers) and datetime.now(UTC) < deadline:
        count = database.run(lambda s: fire_batch(s, registry, datetime.now(UTC), BATCH, database.is_postgresql))
        if count:
            fired += count
            commits.append((datetime.now(UTC), fired))
        else:
            time.sleep(0.05)
    lateness: list[float] = []
    position = 0
    for moment, total in commits:
        while position < min(total, len(due)):
            lateness.append((moment - due[position]).total_seconds())
            position += 1
    return lateness, len(timers) - position, overrun


def _fire_in_process(db_url: str, until: datetime, seconds: float, start: Barrier,
                     results: multiprocessing.Queue[tuple[int, float, float]]) -> None:
    """One ticker process of the parallel pass: once every ticker is connected, fire the reminders due by
    ``until`` in batches until none is left or the time box ends; report (fired, start, end)."""
    registry = Registry.default()
    database = Database(db_url)
    try:
        _count(database, select(func.count()).select_from(Timer))  # connected and warm before the start
        start.wait()
        started, fired = time.time(), 0
        while time.time() - started < seconds:
            count = database.run(lambda s: fire_batch(s, registry, until, BATCH, database.is_postgresql))
            if count == 0:
                break
            fired += count
        results.put((fired, started, time.time()))
    finally:
        database.dispose()


def _fire_in_parallel(db_url: str, until: datetime, seconds: float, tickers: int) -> tuple[int, float]:
    """Fired and seconds taken by ``tickers`` processes firing the backlog at once (first start to last end)."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(tickers + 1)
    results: multiprocessing.Queue[tuple[int, float, float]] = context.Queue()
    processes = [context.Process(target=_fire_in_process, args=(db_url, until, seconds, start, results))
                 for _ in range(tickers)]
    for process in processes:
        process.start()
    start.wait(timeout=120)
    reports = [results.get(timeout=seconds + 120) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    return sum(r[0] for r in reports), max(r[2] for r in reports) - min(r[1] for r in reports)


def run(region: Region, scratch: Scratch, sizes: Sizes, workdir: Path, *,
        log: Callable[[str], None] = print) -> list[Figure]:
    """Measure lateness, then the burst after the outage, then the baselines."""
    registry = Registry.default()
    database = Database(region.db_url)
    figures: list[Figure] = []
    try:
        pending = _count(database, select(func.count()).select_from(Timer))
        log(f"  timers: lateness run, {len(region.lateness_cohort):,} reminders over {sizes.lateness_window:.0f} s")
        lateness, unfired, overrun = _lateness(database, registry, region.lateness_cohort, sizes.lateness_window,
                                      sizes.timer_seconds)

        outage_end = region.remind_at + timedelta(minutes=10)
        due_query = select(func.count()).select_from(Timer).where(Timer.kind == "remind",
                                                                  col(Timer.due_at) <= outage_end)
        due_before = _count(database, due_query)
        in_minute = _count(database, select(func.count()).select_from(Timer).where(
            Timer.kind == "remind", col(Timer.due_at) >= region.remind_at,
            col(Timer.due_at) < region.remind_at + timedelta(minutes=1)))
        communications = select(func.count()).select_from(StoredResource).where(
            StoredResource.resource_type == "Communication")
        outbox = select(func.count()).select_from(OutboxItem)
        communications_before, outbox_before = _count(database, communications), _count(database, outbox)
        log(f"  timers: outage run, {due_before:,} reminders due ({in_minute:,} in one minute), "
            f"{pending:,} pending, up to {sizes.timer_seconds:.0f} s")
        counter = WriteCounter(database.engine)
        fired = 0
        alone = due_before // 2 if scratch.postgresql else due_before
        with counter.counting():
            started = time.perf_counter()
            while fired < alone and time.perf_counter() - started < sizes.timer_seconds:
                batch = min(BATCH, alone - fired)
                count = database.run(lambda s, batch=batch: fire_batch(s, registry, outage_end, batch,
                                                                       database.is_postgresql))
                if count == 0:
                    break
                fired += count
            seconds = time.perf_counter() - started
        together, together_seconds = 0, 0.0
        if scratch.postgresql and _count(database, due_query):
            log(f"  timers: outage run, the other {due_before - fired:,} by {TICKERS} ticker processes at once")
            together, together_seconds = _fire_in_parallel(region.db_url, outage_end, sizes.timer_seconds, TICKERS)
        still_due = _count(database, due_query)
        sent = _count(database, communications) - communications_before
        queued = _count(database, outbox) - outbox_before
    finally:
        database.dispose()
    lost = due_before - fired - together - still_due
    rate = fired / seconds if seconds else None

    baselines = floor.baselines(region.db_url, fired, counter.written())
    naive = {}
    for module in _naive.NAIVE:
        log(f"  timers: {module} with {sizes.naive_pending:,} pending, {sizes.naive_due:,} due")
        naive[module] = _naive.run(module, "reminders", {
            "pending": sizes.naive_pending, "due": sizes.naive_due,
            "db_url": scratch.new(f"naive-{module}-timers", migrated=False) if sizes.naive else "",
            "workdir": str(workdir)},
            timeout=sizes.naive_timeout, skip=not sizes.naive)
    baselines += [_naive.baseline(module, result) for module, result in naive.items()]
    figures.append(Figure(
        "2. Timers", "reminders fired/s after a 10-minute outage (rendered, with outbox row)", rate, "/s",
        f"≥ {TARGET_RATE:,.0f}/s", rate is not None and rate >= TARGET_RATE, baselines=baselines,
        note=f"{fired:,} of {due_before:,} due fired in {seconds:.1f} s by one ticker"
             f"{f' (then {together:,} by {TICKERS} at once, next row)' if together else ''}; {still_due:,} still "
             f"pending at the time box; {pending:,} timers pending; {sent:,} Communications, {queued:,} outbox rows "
             f"written"))
    if together:
        rate_together = together / together_seconds if together_seconds else None
        figures.append(Figure(
            "2. Timers", f"reminders fired/s after the outage by {TICKERS} ticker processes at once", rate_together,
            "/s", f"≥ {TARGET_RATE:,.0f}/s", rate_together is not None and rate_together >= TARGET_RATE,
            baselines=[Baseline("one ticker, the backlog's first half (row above)", rate,
                                f"{fired:,} in {seconds:.1f} s")],
            note=f"{together:,} fired in {together_seconds:.1f} s, from the first ticker's start to the last one's "
                 f"end (separate processes, each its own connection; FOR UPDATE SKIP LOCKED)"))
    figures.append(Figure(
        "2. Timers", "reminders lost after the outage", float(lost), "", "0", lost == 0, higher_is_better=False,
        baselines=[], note="due before - fired - still pending (exactly-once: a timer is deleted with its effects)"))
    p99 = percentile(lateness, 0.99)
    if unfired:
        p99 = max(p99 or 0.0, sizes.lateness_window + sizes.timer_seconds)
    naive_lateness = [_naive.baseline(module, result, "p99_lateness_s") for module, result in naive.items()]
    figures.append(Figure(
        "2. Timers", "p99 reminder lateness, s (ticking continuously)", p99, "s", f"≤ {TARGET_P99:.0f} s",
        p99 is not None and not unfired and p99 <= TARGET_P99, higher_is_better=False, baselines=naive_lateness,
        note=f"{len(lateness):,} reminders due over {sizes.lateness_window:.0f} s at the minute's arrival rate; "
             f"p50 {percentile(lateness, 0.5) or 0:.2f} s; {unfired:,} not fired within "
             f"{sizes.timer_seconds:.0f} s after the window (counted as at least that late)"
             f"{f'; re-timing them ended {overrun:.1f} s after the first was due' if overrun else ''}"))
    return figures
