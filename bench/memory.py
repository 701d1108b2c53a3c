"""Benchmark 4: process memory per waiting enrolment.

Zorgpad keeps waiting enrolments, their timers and outbox items as rows, never as objects in memory, so
the honest measure is a serving process's resident set: `zorgpad serve` (embedded runner on) is started on
an empty database and on one holding the waiting enrolments, each warmed up with the same requests (a
CarePlan read, a Task search, one tick round), and the growth is divided by the number of waiting
enrolments. Beside it, as a reference rather than a competitor: the database's bytes on disk per waiting
enrolment.

Up to the region's size the waiting enrolments are the region's complete patients. Beyond it (a million
at full size) they are *lean* copies (:data:`bench._population.LEAN_RESOURCES`): the enrolment, its step
runs and pending timers, the Patient and the CarePlan with their search index, without the history a
complete patient carries (≈ 7 KB on disk instead of ≈ 69 KB, so a million fit), enrolled 30 days ago so
that none of their timers falls due while the server runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import func
from sqlmodel import select
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.tables import Enrolment

from bench import _population, _server
from bench._common import Baseline, Figure, Scratch, Sizes, database_size
from bench._region import Region

TARGET_BYTES = 2_048
#: How long ago the lean copies were enrolled: their next reminder is days away (see _population).
LEAN_ENROLLED = timedelta(days=30)


def _waiting(db_url: str) -> tuple[int, str | None]:
    database = Database(db_url)
    try:
        count = database.run(lambda s: s.exec(select(func.count()).select_from(Enrolment)
                                              .where(Enrolment.status == "active")).one())
        some = database.run(lambda s: s.exec(select(Enrolment.id).limit(1)).first())
        return int(count), some
    finally:
        database.dispose()


def _resident(db_urls: list[str], enrolment_id: str | None, patient: str, warm_up: float) -> list[int]:
    """RSS of a warmed-up server on each database (started together, warmed up the same way)."""
    servers = _server.start_many(db_urls, tick_interval=1)
    try:
        for server in servers:
            with httpx.Client(base_url=server.fhir, headers=server.headers(server.token()), timeout=60) as client:
                client.get("metadata")
                if enrolment_id is not None:
                    client.get(f"CarePlan/{enrolment_id}")
                client.get("Task", params={"patient": patient, "_count": "50"})
        time.sleep(warm_up)  # the embedded runner ticks and delivers a few rounds
        return [server.rss_bytes() for server in servers]
    finally:
        for server in servers:
            server.stop()


def _lean_population(scratch: Scratch, sizes: Sizes, workdir: Path, log: Callable[[str], None]) -> tuple[str, str]:
    """A database of ``memory_waiting`` lean waiting enrolments, and what one of them holds."""
    template = _population.build_template(datetime.now(UTC) - LEAN_ENROLLED, workdir, lean=True)
    rows = ", ".join(f"{len(r)} {name}" for name, r in template.rows.items())
    log(f"  memory: writing {sizes.memory_waiting:,} lean waiting enrolments ({rows})")
    started = time.perf_counter()
    db_url = scratch.new("memory")
    _population.populate(db_url, template, sizes.memory_waiting, lambda _: timedelta(0), batch=1_000, log=log)
    seconds = time.perf_counter() - started
    log(f"  memory: population written in {seconds:.0f} s")
    return db_url, (f"lean waiting enrolments (rows each: {rows}; no history, audit or other resources), "
                    f"written in {seconds:.0f} s")


def run(region: Region | None, scratch: Scratch, sizes: Sizes, workdir: Path, *,
        log: Callable[[str], None] = print) -> list[Figure]:
    """RSS on an empty database and on the waiting enrolments (the region's, or lean ones beyond its size)."""
    separate = region is None or sizes.memory_waiting > len(region.main_cohort)
    if region is not None and not separate:
        db_url, population = region.db_url, "the region's complete patients"
    else:
        db_url, population = _lean_population(scratch, sizes, workdir, log)
    empty = scratch.new("memory-empty")
    waiting, some = _waiting(db_url)
    log(f"  memory: serve with 0 and with {waiting:,} waiting enrolments")
    base, full = _resident([empty, db_url], some, f"Patient/{_population.patient_id(1)}", sizes.warm_up)
    per_enrolment = (full - base) / waiting if waiting else None
    disk = (database_size(db_url) - database_size(empty)) / waiting if waiting else None
    scratch.drop(empty)
    if separate:
        scratch.drop(db_url)
    return [Figure(
        "4. Memory", "process memory per waiting enrolment, bytes (RSS growth)", per_enrolment, "B",
        f"≤ {TARGET_BYTES:,} B", per_enrolment is not None and per_enrolment <= TARGET_BYTES, higher_is_better=False,
        baselines=[Baseline("database on disk per waiting enrolment (reference)", disk, "")],
        note=f"`zorgpad serve` RSS {base / 2**20:.1f} MiB with 0, {full / 2**20:.1f} MiB with {waiting:,} waiting "
             f"({population}); the engine holds no per-enrolment objects (state is rows), growth is caches")]
