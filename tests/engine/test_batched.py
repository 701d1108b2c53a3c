"""Inserts that wait in their transaction (engine.store.batched): sent as one statement per table, and
never missed by a read, a savepoint, a commit or a rollback."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, func, text
from sqlalchemy import select as select_core
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select
from zorgpad.engine.store import batched
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.resources import put_resource
from zorgpad.engine.store.tables import ResourceVersion, SearchReference, SearchToken, StoredResource

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
SNOMED = "http://snomed.info/sct"


def _condition(rid: str, code: str, patient: str = "Patient/p1") -> dict[str, Any]:
    return {"resourceType": "Condition", "id": rid, "subject": {"reference": patient},
            "code": {"coding": [{"system": SNOMED, "code": code}]}}


def _tokens(session: Session, code: str) -> int:
    return session.exec(select(func.count()).select_from(SearchToken).where(SearchToken.code == code)).one()


class _Statements:
    """Counts the INSERT statements (single or executemany) the driver receives, per table."""

    def __init__(self, database: Database) -> None:
        self.inserts: dict[str, int] = {}
        self._engine = database.engine
        event.listen(self._engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("INSERT INTO "):
            table = statement.split()[2].strip('"')
            self.inserts[table] = self.inserts.get(table, 0) + 1

    def close(self) -> None:
        event.remove(self._engine, "before_cursor_execute", self._seen)


class TestBatchedInserts:
    def test_a_transaction_sends_each_tables_waiting_rows_as_one_statement(self, db: Database) -> None:
        """Five resources written back to back: one history insert and one token insert, not five each."""
        statements = _Statements(db)
        try:
            with db.transaction() as session:
                for n in range(5):
                    put_resource(session, _condition(f"c{n}", f"code-{n}"), T0)
        finally:
            statements.close()

        assert 1 == statements.inserts["resource_version"]
        assert 1 == statements.inserts["search_token"]
        assert 5 == statements.inserts["resource"]  # each resource's own row is written at once
        with db.transaction() as session:
            assert 5 == session.exec(select(func.count()).select_from(ResourceVersion)).one()
            assert all(1 == _tokens(session, f"code-{n}") for n in range(5))

    def test_reads_in_the_same_transaction_see_waiting_rows(self, db: Database) -> None:
        """An ORM search through an aliased index table, a core query and raw SQL all see the rows at once."""
        with db.transaction() as session:
            put_resource(session, _condition("c1", "waiting"), T0)
            token = aliased(SearchToken)
            found = session.exec(select(StoredResource).where(
                StoredResource.resource_type == "Condition",
                select(token.pk).where(token.resource_id == StoredResource.id, token.code == "waiting")
                .exists())).all()
            assert ["c1"] == [row.id for row in found]

            put_resource(session, _condition("c2", "core"), T0)
            table = SearchReference.__table__  # type: ignore[attr-defined]
            refs = session.connection().execute(select_core(func.count()).select_from(table)
                                                .where(table.c.resource_id == "c2",
                                                       table.c.param == "subject")).scalar_one()
            assert 1 == refs

            put_resource(session, _condition("c3", "raw"), T0)
            raw = session.connection().execute(text("SELECT count(*) FROM search_token WHERE code = 'raw'"))
            assert 1 == raw.scalar_one()

    def test_a_second_write_of_a_resource_in_one_transaction_leaves_one_set_of_index_rows(self, db: Database) -> None:
        """The rewrite reads the index rows its first write left waiting, so nothing is doubled."""
        with db.transaction() as session:
            put_resource(session, _condition("c1", "first"), T0)
            put_resource(session, _condition("c1", "second"), T0)

        with db.transaction() as session:
            assert 0 == _tokens(session, "first")
            assert 1 == _tokens(session, "second")
            versions = session.exec(select(ResourceVersion.version_id).where(ResourceVersion.id == "c1")).all()
            assert [1, 2] == sorted(versions)

    def test_rolling_back_to_a_savepoint_drops_only_what_came_after_it(self, db: Database) -> None:
        with db.transaction() as session:
            put_resource(session, _condition("kept", "before-savepoint"), T0)
            savepoint = session.begin_nested()
            put_resource(session, _condition("dropped", "after-savepoint"), T0)
            savepoint.rollback()
            session.expunge_all()

        with db.transaction() as session:
            assert 1 == _tokens(session, "before-savepoint")
            assert 0 == _tokens(session, "after-savepoint")
            ids = session.exec(select(ResourceVersion.id)).all()
            assert ["kept"] == ids

    def test_a_rollback_drops_waiting_rows_and_the_next_transaction_starts_clean(self, db: Database) -> None:
        """Rows left waiting by a failed transaction never reach a later one on the same pooled connection."""
        def failing(session: Session) -> None:
            put_resource(session, _condition("c1", "rolled-back"), T0)
            raise RuntimeError("the work failed")

        with pytest.raises(RuntimeError):
            db.run(failing)

        with db.transaction() as session:
            put_resource(session, _condition("c2", "committed"), T0)

        with db.transaction() as session:
            assert 0 == _tokens(session, "rolled-back")
            assert 1 == _tokens(session, "committed")
            assert ["c2"] == session.exec(select(ResourceVersion.id)).all()
            assert ["c2"] == session.exec(select(StoredResource.id)).all()

    def test_a_failing_send_fails_the_commit_and_keeps_nothing(self, db: Database) -> None:
        """A waiting row the database refuses surfaces as an error from the transaction, which keeps nothing."""
        table = ResourceVersion.__table__  # type: ignore[attr-defined]
        def clashing(session: Session) -> None:
            put_resource(session, _condition("c1", "refused"), T0)
            batched.add(session.connection(), table, [{  # a second version 1 of c1: a primary-key clash
                "resource_type": "Condition", "id": "c1", "version_id": 1, "last_updated": T0, "method": "PUT",
                "deleted": False, "content": None}])

        with pytest.raises(IntegrityError):
            db.run(clashing)

        with db.transaction() as session:
            assert 0 == _tokens(session, "refused")
            assert [] == session.exec(select(col(StoredResource.id))).all()

    def test_a_row_refused_inside_a_savepoint_fails_that_savepoint_only(self, db: Database) -> None:
        """As a batch Bundle entry does: the entry's own error surfaces when its savepoint ends, and the
        transaction goes on with what came before and after it."""
        table = ResourceVersion.__table__  # type: ignore[attr-defined]
        with db.transaction() as session:
            put_resource(session, _condition("c1", "before"), T0)
            with pytest.raises(IntegrityError), session.begin_nested():
                batched.add(session.connection(), table, [{
                    "resource_type": "Condition", "id": "c1", "version_id": 1, "last_updated": T0,
                    "method": "PUT", "deleted": False, "content": None}])
            put_resource(session, _condition("c2", "after"), T0)

        with db.transaction() as session:
            assert [("c1", 1), ("c2", 1)] == sorted(session.exec(select(ResourceVersion.id,
                                                                        ResourceVersion.version_id)).all())
            assert (1, 1) == (_tokens(session, "before"), _tokens(session, "after"))

    def test_a_savepoint_begun_before_the_first_write_is_counted(self, db_url: str) -> None:
        """A fresh Database whose first transaction opens a savepoint before any write: the rows written in
        it are not held past it."""
        database = Database(db_url)
        try:
            with database.transaction() as session:
                with session.begin_nested():
                    put_resource(session, _condition("c1", "in-savepoint"), T0)
                    assert {} == session.connection().info.get("zorgpad.pending_inserts", {})
        finally:
            database.dispose()
