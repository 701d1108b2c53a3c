"""The raw database floor: the same rows written by batched SQLAlchemy core inserts, nothing else.

Given how many rows a piece of Zorgpad work inserted or updated per table (counted by
:class:`bench._common.WriteCounter` or from table counts), the floor copies that many rows of the same
tables (sampled from the same database, re-keyed so they do not collide) with ``insert(table)``
``executemany`` in batches, one commit per batch, on the same database with the same ``synchronous``
setting. Updates are written as inserts of rows of the same shape. The rows are deleted again afterwards,
so later benchmarks see the database as the engine left it.

The *driver floor* (:meth:`Floor.write_driver`) writes the same prepared rows without SQLAlchemy: each
table's INSERT is built once, each row's values are converted once (before timing) by the columns' own
bind processors, so that the same values are stored, and only ``cursor.executemany`` and the commit of each
batch are timed, on the raw DB-API connection of the same engine (sqlite3 with the same PRAGMAs, or psycopg).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Column, Integer, String, Table, delete, func, insert, select
from sqlalchemy.engine import Connection, Dialect
from zorgpad.engine.store.db import Database

from bench._common import Baseline
from bench._population import tables

MARKER = "~f"
DRIVER_FLOOR = "raw driver floor (DB-API executemany, no SQLAlchemy)"
_PREFERRED = ("id", "key", "idempotency_key", "token_hash", "step_id")
#: The floor's rows: (table, one batch of rows), each batch one transaction.
Batches = list[tuple[Table, list[dict[str, Any]]]]


def _is_text(column: Column[Any]) -> bool:
    kind = column.type
    return isinstance(kind, String) or isinstance(getattr(kind, "impl", None), String)


def _autoincrement(table: Table) -> str | None:
    key = list(table.primary_key.columns)
    return key[0].name if len(key) == 1 and isinstance(key[0].type, Integer) else None


def _rekey_column(table: Table) -> str | None:
    """The string column made unique per copy (part of the key or a unique constraint, not a foreign key)."""
    keyed: set[str] = {c.name for c in table.primary_key.columns}
    for constraint in table.constraints:
        keyed.update(getattr(constraint, "columns", {}).keys())
    keyed.update(c.name for c in table.columns if c.unique)
    candidates = [c for c in table.columns if c.name in keyed and _is_text(c) and not c.foreign_keys]
    for name in _PREFERRED:
        if any(c.name == name for c in candidates):
            return name
    return candidates[0].name if candidates else None


def _driver_sql(table: Table, names: Sequence[str], dialect: Dialect) -> str:
    """``INSERT INTO t (a, b) VALUES (?, ?)`` in the driver's positional paramstyle (sqlite3 ``?``, psycopg ``%s``)."""
    columns = ", ".join(map(dialect.identifier_preparer.quote, names))
    markers = ", ".join(["?" if dialect.paramstyle == "qmark" else "%s"] * len(names))
    into = dialect.identifier_preparer.format_table(table)
    return f"INSERT INTO {into} ({columns}) VALUES ({markers})"  # noqa: S608 - our own table and column names


def _driver_rows(table: Table, rows: list[dict[str, Any]], dialect: Dialect) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The column names and each row's values as the driver takes them: what SQLAlchemy's bind processors
    make of them on execute (JSON text or psycopg ``Jsonb``, UTC datetimes as SQLite stores them, …)."""
    names = list(rows[0])
    processors = [table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names]
    return names, [tuple(row[name] if process is None else process(row[name])
                         for process, name in zip(processors, names, strict=True)) for row in rows]


class Floor:
    """Writes and removes floor rows on one database."""

    def __init__(self, db_url: str, *, synchronous: str = "NORMAL", batch: int = 1_000) -> None:
        self.database = Database(db_url, sqlite_synchronous=synchronous)
        self.batch = batch
        self.by_name = {t.name: t for t in tables()}
        self._serial = itertools.count(1)

    def close(self) -> None:
        """Release the connections."""
        self.database.dispose()

    def _samples(self, connection: Connection, table: Table, limit: int = 200) -> list[dict[str, Any]]:
        drop = _autoincrement(table)
        rows = connection.execute(select(table).limit(limit)).mappings().all()
        return [{k: v for k, v in row.items() if k != drop} for row in rows]

    def _rows(self, table: Table, samples: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
        column = _rekey_column(table)
        out = []
        for sample in itertools.islice(itertools.cycle(samples), count):
            row = dict(sample)
            if column is not None:
                row[column] = f"{row[column]}{MARKER}{next(self._serial):x}"
            out.append(row)
        return out

    def prepare(self, rows_per_table: Mapping[str, int]) -> Batches:
        """The floor's batches for these row counts (built before timing; tables without rows are skipped)."""
        batches: Batches = []
        with self.database.engine.connect() as connection:
            for name, count in rows_per_table.items():
                table = self.by_name.get(name)
                if table is None or count <= 0:
                    continue
                samples = self._samples(connection, table)
                if not samples:
                    continue
                rows = self._rows(table, samples, count)
                batches.extend((table, rows[i:i + self.batch]) for i in range(0, len(rows), self.batch))
        return batches

    def _high_water(self) -> dict[str, int]:
        marks: dict[str, int] = {}
        with self.database.engine.connect() as connection:
            for table in self.by_name.values():
                key = _autoincrement(table)
                if key is not None:
                    marks[table.name] = int(connection.execute(select(func.coalesce(func.max(table.c[key]), 0)))
                                            .scalar_one())
        return marks

    def _clean(self, marks: Mapping[str, int]) -> None:
        with self.database.engine.begin() as connection:
            for table in self.by_name.values():
                key = _autoincrement(table)
                if key is not None and table.name in marks:
                    connection.execute(delete(table).where(table.c[key] > marks[table.name]))
                    continue
                column = _rekey_column(table)
                if column is not None:
                    connection.execute(delete(table).where(table.c[column].like(f"%{MARKER}%")))

    def insert_core(self, batches: Batches) -> float:
        """Seconds to insert ``batches`` by ``insert(table)`` executemany, one transaction each."""
        started = time.perf_counter()
        for table, rows in batches:
            with self.database.engine.begin() as connection:
                connection.execute(insert(table), rows)
        return time.perf_counter() - started

    def insert_driver(self, batches: Batches) -> float:
        """Seconds to insert ``batches`` by the DB-API cursor's ``executemany``, one transaction each (SQL and
        values made before timing)."""
        dialect = self.database.engine.dialect
        statements: dict[str, str] = {}
        work = []
        for table, rows in batches:
            names, values = _driver_rows(table, rows, dialect)
            sql = statements.setdefault(table.name, _driver_sql(table, names, dialect))
            work.append((sql, values))
        begin = "BEGIN IMMEDIATE" if dialect.name == "sqlite" else None  # sqlite3 runs in autocommit mode here
        raw = self.database.engine.raw_connection()
        try:
            cursor = raw.cursor()
            started = time.perf_counter()
            for sql, values in work:
                if begin is not None:
                    cursor.execute(begin)
                cursor.executemany(sql, values)
                raw.commit()
            seconds = time.perf_counter() - started
            cursor.close()
        finally:
            raw.close()
        return seconds

    def _timed(self, rows_per_table: Mapping[str, int],
               insert_batches: Callable[[Batches], float]) -> tuple[float, int]:
        """Prepare the rows, time ``insert_batches`` on them, then remove them (also when it fails)."""
        batches = self.prepare(rows_per_table)
        marks = self._high_water()
        try:
            seconds = insert_batches(batches)
        finally:
            self._clean(marks)
        return seconds, sum(len(rows) for _, rows in batches)

    def write(self, rows_per_table: Mapping[str, int]) -> tuple[float, int]:
        """Seconds to insert these rows in batches (one commit each), and how many rows; then remove them."""
        return self._timed(rows_per_table, self.insert_core)

    def write_driver(self, rows_per_table: Mapping[str, int]) -> tuple[float, int]:
        """:meth:`write` through the DB-API driver alone: the same rows, batches and commits, no SQLAlchemy."""
        return self._timed(rows_per_table, self.insert_driver)

    def commit_latencies(self, rows_per_table: Mapping[str, int], commits: int) -> list[float]:
        """Seconds of each of ``commits`` transactions that each insert these rows (one message's worth)."""
        latencies: list[float] = []
        marks = self._high_water()
        per_commit = [self.prepare(rows_per_table) for _ in range(commits)]
        for batches in per_commit:
            started = time.perf_counter()
            with self.database.engine.begin() as connection:
                for table, rows in batches:
                    connection.execute(insert(table), rows)
            latencies.append(time.perf_counter() - started)
        self._clean(marks)
        return latencies


def baselines(db_url: str, done: int, rows_per_table: Mapping[str, int], *,
              synchronous: str = "NORMAL") -> list[Baseline]:
    """Both floors for work that did ``done`` units (transitions, reminders, resources) writing these rows:
    units/s if the rows alone had been written, by SQLAlchemy core and by the driver."""
    floor = Floor(db_url, synchronous=synchronous)
    try:
        core_seconds, core_rows = floor.write(rows_per_table)
        driver_seconds, driver_rows = floor.write_driver(rows_per_table)
    finally:
        floor.close()
    return [Baseline("raw database floor", done / core_seconds if core_seconds else None,
                     f"{core_rows:,} rows in {core_seconds:.2f} s"),
            Baseline(DRIVER_FLOOR, done / driver_seconds if driver_seconds else None,
                     f"{driver_rows:,} rows in {driver_seconds:.2f} s")]
