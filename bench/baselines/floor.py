"""The raw database floor: the same rows written by batched SQLAlchemy core inserts, nothing else.

Given how many rows a piece of Zorgpad work inserted or updated per table (counted by
:class:`bench._common.WriteCounter` or from table counts), the floor copies that many rows of the same
tables (sampled from the same database, re-keyed so they do not collide) with ``insert(table)``
``executemany`` in batches, one commit per batch, on the same database with the same ``synchronous``
setting. Updates are written as inserts of rows of the same shape. The rows are deleted again afterwards,
so later benchmarks see the database as the engine left it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Column, Integer, String, Table, delete, func, insert, select
from sqlalchemy.engine import Connection
from zorgpad.engine.store.db import Database

from bench._population import tables

MARKER = "~f"
_PREFERRED = ("id", "key", "idempotency_key", "token_hash", "step_id")


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

    def prepare(self, rows_per_table: Mapping[str, int]) -> list[tuple[Table, list[dict[str, Any]]]]:
        """The floor's batches for these row counts (built before timing; tables without rows are skipped)."""
        batches: list[tuple[Table, list[dict[str, Any]]]] = []
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

    def write(self, rows_per_table: Mapping[str, int]) -> tuple[float, int]:
        """Seconds to insert these rows in batches (one commit each), and how many rows; then remove them."""
        batches = self.prepare(rows_per_table)
        marks = self._high_water()
        started = time.perf_counter()
        for table, rows in batches:
            with self.database.engine.begin() as connection:
                connection.execute(insert(table), rows)
        seconds = time.perf_counter() - started
        self._clean(marks)
        return seconds, sum(len(rows) for _, rows in batches)

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
