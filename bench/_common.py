"""What every benchmark shares: sizes, results, scratch databases, the machine, a SQL write counter."""

from __future__ import annotations

import contextlib
import math
import os
import platform
import re
import shutil
import sqlite3
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from zorgpad.engine.store.db import Database

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
SYNTHEA = SHARED / "corpora" / "synthea" / "R4"


@dataclass(frozen=True)
class Sizes:
    """How big each benchmark is; ``reduced`` is `make bench`, ``full`` is `make bench-full` (issue #7)."""

    name: str
    #: Waiting enrolments in the region (each with its conversation overdue and a reminder pending).
    patients: int
    #: Pending timers in all (the patients' own timers, topped up with timers due next year).
    pending_timers: int
    #: Patients whose transitions are timed, per SQLite ``synchronous`` setting (3 transitions each).
    transition_patients: int
    #: Time box for one transitions pass, in seconds (the count reached is reported).
    transition_seconds: float
    #: Time box for firing the burst of due reminders after the outage, in seconds.
    timer_seconds: float
    #: Length of the paced window for reminder lateness, in seconds (the minute's arrival rate, shortened).
    lateness_window: float
    #: Offered rate and duration of the event-to-handover latency run.
    latency_rate: float
    latency_seconds: float
    #: Waiting enrolments for the memory measurement: the region's patients when it has as many, else lean
    #: copies in a database of their own (tiny sizes take that path too, so the tests cover it).
    memory_waiting: int
    #: Synthea bundles to post, spread over the sizes (0: all of them).
    synthea_bundles: int
    #: Sizes handed to the naive baselines.
    naive_patients: int
    naive_pending: int
    naive_due: int
    #: Seconds a server runs before its memory is read (the embedded runner ticks meanwhile).
    warm_up: float = 3.0
    #: Whether to run the naive-design baselines (off: shown as "n/a (skipped)"), and their time limit each.
    naive: bool = True
    #: Extra patients in the main cohort for the runs that advance patients (transitions, latency), so that
    #: about ``patients`` reminders are still due in the minute when the timers benchmark starts.
    spare: int = 0
    naive_timeout: float = 90.0


TINY = Sizes("tiny", patients=200, pending_timers=1_000, transition_patients=5, transition_seconds=1,
             timer_seconds=2, lateness_window=1, latency_rate=10, latency_seconds=1, memory_waiting=400,
             synthea_bundles=1, naive_patients=10, naive_pending=50, naive_due=10, warm_up=0.5)
REDUCED = Sizes("reduced", patients=10_000, pending_timers=100_000, transition_patients=2_000,
                transition_seconds=15, timer_seconds=20, lateness_window=6, latency_rate=200, latency_seconds=30,
                memory_waiting=10_000, synthea_bundles=4, naive_patients=500, naive_pending=5_000, naive_due=500)
FULL = Sizes("full", patients=100_000, pending_timers=1_000_000, transition_patients=30_000,
             transition_seconds=300, timer_seconds=3_600, lateness_window=60, latency_rate=200, latency_seconds=300,
             memory_waiting=1_000_000, synthea_bundles=0, naive_patients=100_000, naive_pending=1_000_000,
             naive_due=100_000, naive_timeout=4 * 3600.0, spare=40_000)


@dataclass
class Baseline:
    """One baseline figure beside ours; ``value`` is None when it could not be measured."""

    name: str
    value: float | None
    note: str = ""


@dataclass
class Figure:
    """One row of the table: our figure, its target, and the baselines measured in the same run."""

    benchmark: str
    metric: str
    value: float | None
    unit: str
    target: str
    #: True, False, or None when the figure has no target (context rows).
    met: bool | None
    #: Whether a larger value is better (ratios are "ours / baseline" either way).
    higher_is_better: bool = True
    baselines: list[Baseline] = field(default_factory=list)
    note: str = ""

    def ratio(self, baseline: Baseline) -> float | None:
        """Ours / baseline, or None when either is missing or the baseline is zero."""
        if self.value is None or baseline.value is None or baseline.value == 0:
            return None
        return self.value / baseline.value


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The ``fraction`` quantile (nearest rank) of ``values``, or None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


# -- scratch databases -----------------------------------------------------------------------------------


def is_postgresql(option: str) -> bool:
    """Whether ``--db`` names a PostgreSQL server."""
    return option.startswith(("postgresql", "postgres"))


class Scratch:
    """Fresh, migrated databases for one run: SQLite files in ``workdir``, or databases on one PostgreSQL server.

    Every database made here is dropped (PostgreSQL) or deleted with ``workdir`` (SQLite) by :meth:`close`.
    """

    def __init__(self, option: str, workdir: Path) -> None:
        self.option = option
        self.workdir = workdir
        self._made: list[str] = []
        self._template: Path | None = None

    @property
    def postgresql(self) -> bool:
        """Whether the databases live on PostgreSQL."""
        return is_postgresql(self.option)

    def _admin(self) -> Engine:
        return create_engine(make_url(self.option).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")

    def new(self, label: str, *, migrated: bool = True) -> str:
        """The URL of a new, empty database (migrated unless ``migrated`` is False)."""
        if not self.postgresql:
            path = self.workdir / f"{label}-{uuid.uuid4().hex[:6]}.db"
            if migrated:
                if self._template is None:
                    self._template = self.workdir / "template.db"
                    template = Database(f"sqlite:///{self._template}")
                    template.upgrade()
                    template.dispose()
                shutil.copy(self._template, path)
            return f"sqlite:///{path}"
        name = f"zorgpad_bench_{label.replace('-', '_')}_{uuid.uuid4().hex[:6]}"
        admin = self._admin()
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        self._made.append(name)
        url = make_url(self.option).set(drivername="postgresql+psycopg", database=name)
        rendered = url.render_as_string(hide_password=False)
        if migrated:
            database = Database(rendered)
            database.upgrade()
            database.dispose()
        return rendered

    def drop(self, url: str) -> None:
        """Remove one database made here (frees disk between benchmarks)."""
        if not self.postgresql:
            database = make_url(url).database or ""
            for suffix in ("", "-wal", "-shm"):
                Path(database + suffix).unlink(missing_ok=True)
            return
        name = make_url(url).database
        if name in self._made:
            admin = self._admin()
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
            self._made.remove(name)

    def close(self) -> None:
        """Drop every PostgreSQL database still standing."""
        for name in list(self._made):
            self.drop(make_url(self.option).set(database=name).render_as_string(hide_password=False))


def database_size(url: str) -> int:
    """Bytes the database takes on disk (SQLite file and WAL, or ``pg_database_size``)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        base = parsed.database or ""
        return sum(Path(base + s).stat().st_size for s in ("", "-wal") if Path(base + s).exists())
    engine = create_engine(parsed.set(drivername="postgresql+psycopg"))
    try:
        with engine.connect() as connection:
            return int(connection.execute(text("SELECT pg_database_size(current_database())")).scalar_one())
    finally:
        engine.dispose()


# -- counting the rows a piece of work writes ------------------------------------------------------------

_WRITE = re.compile(r'^\s*(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+"?(\w+)"?', re.IGNORECASE)
_RETURNING = re.compile(r"\bRETURNING\b", re.IGNORECASE)


class WriteCounter:
    """Counts the rows each statement on ``engine`` inserts, updates or deletes, per table.

    Attached as a SQLAlchemy ``after_cursor_execute`` listener (a few microseconds per statement), so the
    floor baseline can write the same number of rows. SQLite runs a statement with ``RETURNING`` only as
    its rows are fetched (its ``rowcount`` is 0 right after execute), so there such a statement is counted
    from its cursor when the next statement starts or counting ends (PostgreSQL's is known at once, and
    gone once the cursor is closed).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.rows: Counter[tuple[str, str]] = Counter()
        self.statements = 0
        self._returning: list[tuple[tuple[str, str], Any, int]] = []

    def _settle(self) -> None:
        for key, cursor, fallback in self._returning:
            rowcount = cursor.rowcount
            self.rows[key] += fallback if rowcount is None or rowcount < 0 else rowcount
        self._returning.clear()

    def _count(self, conn: Any, cursor: Any, statement: str, parameters: Any, _context: Any,
               executemany: bool) -> None:
        self._settle()
        self.statements += 1
        match = _WRITE.match(statement)
        if match is None:
            return
        key = (match.group(2), match.group(1).split()[0].upper())
        fallback = len(parameters) if executemany else 1
        if conn.dialect.name == "sqlite" and _RETURNING.search(statement):
            self._returning.append((key, cursor, fallback))
            return
        rowcount = cursor.rowcount
        self.rows[key] += fallback if rowcount is None or rowcount < 0 else rowcount

    @contextlib.contextmanager
    def counting(self) -> Iterator[WriteCounter]:
        """Count while the block runs."""
        event.listen(self.engine, "after_cursor_execute", self._count)
        try:
            yield self
        finally:
            event.remove(self.engine, "after_cursor_execute", self._count)
            self._settle()

    def written(self) -> dict[str, int]:
        """Rows inserted or updated per table (deletes are not rewritten by the floor)."""
        out: Counter[str] = Counter()
        for (table, verb), count in self.rows.items():
            if verb in ("INSERT", "UPDATE"):
                out[table] += count
        return dict(out)


# -- the machine ---------------------------------------------------------------------------------------


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _ram_gib() -> float | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    return None


def load_average() -> str:
    """The 1-minute load average (other processes on the machine skew every figure)."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "unknown"


def postgresql_settings(option: str) -> dict[str, str]:
    """Server version, ``synchronous_commit`` and ``fsync`` of the PostgreSQL server."""
    engine = create_engine(make_url(option).set(drivername="postgresql+psycopg"))
    try:
        with engine.connect() as connection:
            return {name: str(connection.execute(text(f"SHOW {name}")).scalar_one())
                    for name in ("server_version", "synchronous_commit", "fsync")}
    finally:
        engine.dispose()


def machine(option: str) -> dict[str, str]:
    """What the figures were measured on."""
    ram = _ram_gib()
    info = {
        "CPU": _cpu_model(),
        "cores": str(os.cpu_count()),
        "RAM": f"{ram:.1f} GiB" if ram is not None else "unknown",
        "OS": platform.platform(),
        "Python": platform.python_version(),
        "SQLite": sqlite3.sqlite_version,
    }
    if is_postgresql(option):
        settings = postgresql_settings(option)
        info["database"] = (f"PostgreSQL {settings['server_version']} "
                            f"(synchronous_commit={settings['synchronous_commit']}, fsync={settings['fsync']})")
    else:
        info["database"] = "SQLite in WAL mode; synchronous=NORMAL (Zorgpad's default) unless a row says FULL"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                check=False, timeout=10).stdout.strip()
        if commit:
            info["commit"] = commit
    return info
