"""bench._common.WriteCounter counts the rows the engine's statements write, on the chosen database.

The floor baselines write as many rows as it counted, so a row it misses makes the floor look faster.
"""

from __future__ import annotations

from datetime import UTC, datetime
from types import ModuleType

from benchpath import import_bench
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.resources import put_resource


def _common() -> ModuleType:
    return import_bench("_common")


def _patient(patient_id: str) -> dict[str, object]:
    return {"resourceType": "Patient", "id": patient_id, "active": True}


def test_inserts_with_returning_are_counted_once_fetched(db: Database) -> None:
    """A resource's first version goes in by ``INSERT … ON CONFLICT DO NOTHING RETURNING 1``, which SQLite
    runs only while its row is fetched: the counter must still see one row per new resource."""
    counter = _common().WriteCounter(db.engine)
    now = datetime.now(UTC)
    with counter.counting():
        for index in range(3):
            db.run(lambda s, i=index: put_resource(s, _patient(f"counted-{i}"), now))
    assert 3 == counter.rows[("resource", "INSERT")]
    assert 3 == counter.written()["resource_version"]


def test_an_insert_that_meets_its_row_counts_nothing(db: Database) -> None:
    """Updating a resource tries its first-version insert, which does nothing: no row is counted for it."""
    counter = _common().WriteCounter(db.engine)
    now = datetime.now(UTC)
    db.run(lambda s: put_resource(s, _patient("again"), now))
    with counter.counting():
        db.run(lambda s: put_resource(s, {**_patient("again"), "active": False}, now))
    assert 0 == counter.rows[("resource", "INSERT")]
    assert 1 == counter.rows[("resource", "UPDATE")]
