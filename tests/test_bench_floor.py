"""bench.baselines.floor: the driver floor writes the rows it is asked for, stores what the SQLAlchemy floor
stores, and removes them again, on the chosen database.

A floor that writes fewer rows, or cheaper values (a datetime the driver formats its own way, JSON left to
an adapter), would look faster than it is; one that leaves rows behind would skew the benchmarks after it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import pytest
from benchpath import import_bench
from sqlmodel import col, select
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.resources import put_resource
from zorgpad.engine.store.tables import OutboxItem, StoredResource, Timer

MOMENT = datetime(2025, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
#: Rows asked of the floor per table: more than the database holds, so samples are copied several times.
REQUESTED = {"resource": 5, "resource_version": 4, "timer": 3, "outbox": 2}
#: Per table: the column the floor makes unique per copy, and the generated key it leaves out.
COPY_KEYS: dict[str, tuple[str, str | None]] = {
    "resource": ("id", None), "resource_version": ("id", None),
    "timer": ("step_id", "id"), "outbox": ("idempotency_key", "id"),
}


def _floor() -> ModuleType:
    return import_bench("baselines.floor")


def _population() -> ModuleType:
    return import_bench("_population")


@pytest.fixture
def seeded(db: Database) -> Database:
    """Three patients (resource, history, search rows), two timers and two outbox items: JSON and UTC
    datetime columns, string keys and autoincrement ones."""
    for index in range(3):
        patient = {"resourceType": "Patient", "id": f"floor-{index}", "active": True,
                   "name": [{"family": "Floorë", "given": [f"P{index}"]}]}
        db.run(lambda s, patient=patient: put_resource(s, patient, MOMENT))
    db.run(lambda s: s.add_all([
        *(Timer(due_at=MOMENT + timedelta(days=i), enrolment_id="e-floor", step_id=f"step-{i}", kind="remind")
          for i in range(2)),
        *(OutboxItem(idempotency_key=f"floor-out-{i}", channel="notify", payload={"to": "Zorgverlenerë", "n": i},
                     created_at=MOMENT, next_attempt_at=MOMENT + timedelta(seconds=i)) for i in range(2))]))
    return db


def _copies(db: Database, marker: str) -> dict[str, set[str]]:
    """``table/origin`` -> the floor copies of that row as the driver reads them back (raw: JSON text,
    datetimes as stored), without the copy's own key and generated id."""
    out: dict[str, set[str]] = {}
    with db.engine.connect() as connection:
        for table, (key, generated) in COPY_KEYS.items():
            result = connection.exec_driver_sql(f'SELECT * FROM "{table}"')  # noqa: S608 - constants
            names = list(result.keys())
            for row in result:
                values = dict(zip(names, row, strict=True))
                if marker not in values[key]:
                    continue
                origin = values.pop(key).split(marker)[0]
                values.pop(generated, None)
                out.setdefault(f"{table}/{origin}", set()).add(repr(sorted(values.items())))
    return out


def _watch(monkeypatch: pytest.MonkeyPatch, floor: Any, method: str,
           look: Callable[[], None]) -> None:
    """Call ``look`` right after ``floor.<method>`` has inserted its rows (before they are removed)."""
    insert = getattr(floor, method)

    def watched(batches: Any) -> float:
        seconds: float = insert(batches)
        look()
        return seconds

    monkeypatch.setattr(floor, method, watched)


def test_the_driver_floor_writes_the_rows_asked_for_and_removes_them(
        seeded: Database, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exactly the requested rows per table are there while the floor is timed, none are left afterwards."""
    row_counts = _population().row_counts
    floor = _floor().Floor(db_url)
    before = row_counts(db_url)
    during: dict[str, int] = {}
    _watch(monkeypatch, floor, "insert_driver", lambda: during.update(row_counts(db_url)))
    try:
        _, rows = floor.write_driver(REQUESTED)
    finally:
        floor.close()
    assert sum(REQUESTED.values()) == rows
    assert {table: before[table] + REQUESTED.get(table, 0) for table in before} == during
    assert before == row_counts(db_url)


def test_the_driver_floor_stores_what_the_sqlalchemy_floor_stores(
        seeded: Database, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Copies of the same rows hold the same stored values either way (compared as the driver reads them),
    and read back through the models they equal what was written: JSON documents and UTC datetimes."""
    module = _floor()
    floor = module.Floor(db_url)
    copies: dict[str, dict[str, set[str]]] = {}
    typed: list[tuple[str, dict[str, Any], datetime]] = []

    def read_driver_copies() -> None:
        copies["driver"] = _copies(seeded, module.MARKER)
        typed.extend(seeded.run(lambda s: [(r.id, r.content, r.last_updated) for r in s.exec(
            select(StoredResource).where(col(StoredResource.id).like(f"%{module.MARKER}%"))).all()]))

    _watch(monkeypatch, floor, "insert_core", lambda: copies.update(core=_copies(seeded, module.MARKER)))
    _watch(monkeypatch, floor, "insert_driver", read_driver_copies)
    try:
        floor.write(REQUESTED)
        floor.write_driver(REQUESTED)
    finally:
        floor.close()
    assert {"resource", "resource_version", "timer", "outbox"} == {key.split("/")[0] for key in copies["driver"]}
    assert copies["core"] == copies["driver"]
    assert REQUESTED["resource"] == len(typed)
    originals = seeded.run(lambda s: {r.id: r.content for r in s.exec(
        select(StoredResource).where(col(StoredResource.id).like("floor-%"))).all()})
    for copy_id, content, last_updated in typed:
        assert originals[copy_id.split(module.MARKER)[0]] == content
        assert MOMENT == last_updated
        assert UTC == last_updated.tzinfo
