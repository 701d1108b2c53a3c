"""Benchmark 1: durable pathway transitions driven by FHIR events.

Each patient of the region gets three events, each its own transaction, committed before the call
returns (Zorgpad's acknowledgement): the GP sets the conversation Task in progress
(:meth:`Engine.task_status`), the ACP Procedure arrives (:meth:`Engine.ingest`; the conversation completes
and four handovers start), and the out-of-hours post completes its handover Task. Run once per SQLite
``synchronous`` setting (NORMAL, Zorgpad's default, and FULL), or once on PostgreSQL, each pass on its own
patients and time-boxed. Beside it: the raw floors (the same rows by batched core inserts, and by the
DB-API driver alone) and the two naive designs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from zorgpad.engine import Engine
from zorgpad.engine.registry import Registry
from zorgpad.engine.store.db import Database

from bench import _fhir, _naive
from bench._common import Figure, Scratch, Sizes, WriteCounter
from bench._region import Region
from bench.baselines import floor

TARGET = 5_000.0


def _drive(database: Database, patients: list[tuple[str, str]], seconds: float) -> tuple[int, float, dict[str, int]]:
    """Transitions done (three per patient, the patients in order), seconds taken and rows written per
    table, within the time box."""
    engine = Engine(database, Registry.default())
    counter = WriteCounter(database.engine)
    done = 0
    with counter.counting():
        started = time.perf_counter()
        for enrolment_id, patient_id in patients:
            engine.task_status(enrolment_id, "conversation", "in-progress")
            engine.ingest(_fhir.acp_procedure(patient_id, datetime.now(UTC)))
            engine.task_status(enrolment_id, "share_out_of_hours", "completed")
            done += 3
            if time.perf_counter() - started > seconds:
                break
        elapsed = time.perf_counter() - started
    return done, elapsed, counter.written()


def run(region: Region, scratch: Scratch, sizes: Sizes, workdir: Path, *,
        log: Callable[[str], None] = print) -> list[Figure]:
    """Measure each pass and its baselines."""
    modes = ["postgresql"] if scratch.postgresql else ["NORMAL", "FULL"]
    naive = {}
    for module in _naive.NAIVE:
        log(f"  transitions: {module} with {sizes.naive_patients:,} patients")
        naive[module] = _naive.run(module, "transitions", {
            "patients": sizes.naive_patients,
            "db_url": scratch.new(f"naive-{module}", migrated=False) if sizes.naive else "",
            "workdir": str(workdir)}, timeout=sizes.naive_timeout, skip=not sizes.naive)
    figures = []
    for mode in modes:
        synchronous = "NORMAL" if mode == "postgresql" else mode
        database = Database(region.db_url, sqlite_synchronous=synchronous)
        patients = region.take(sizes.transition_patients)
        log(f"  transitions: {mode}, up to {len(patients):,} patients for {sizes.transition_seconds:.0f} s")
        try:
            done, seconds, written = _drive(database, patients, sizes.transition_seconds)
        finally:
            database.dispose()
        region.give_back(patients, done // 3)
        ours = done / seconds if seconds else None
        baselines = floor.baselines(region.db_url, done, written, synchronous=synchronous)
        baselines += [_naive.baseline(module, result) for module, result in naive.items()]
        label = "PostgreSQL" if mode == "postgresql" else f"SQLite synchronous={mode}"
        per_transition = sum(written.values()) / done if done else 0
        figures.append(Figure(
            "1. Pathway transitions", f"durable transitions/s ({label})", ours, "/s", f"≥ {TARGET:,.0f}/s",
            ours is not None and ours >= TARGET, baselines=baselines,
            note=f"{done:,} transitions in {seconds:.1f} s over {len(region.main_cohort):,} enrolled patients; "
                 f"{per_transition:.0f} rows written per transition"))
    return figures
