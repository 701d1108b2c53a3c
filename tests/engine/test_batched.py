"""Inserts that wait in their transaction (engine.store.batched): sent as one statement per table, and
never missed by a read, a savepoint, a commit or a rollback."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import bindparam, event, func, text, update
from sqlalchemy import select as select_core
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select
from zorgpad.engine._model import EnrolmentState
from zorgpad.engine._states import EnrolmentStatus
from zorgpad.engine.store import batched
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.enrolments import save_state
from zorgpad.engine.store.resources import expect_writes, fresh_id, get_resource, put_resource
from zorgpad.engine.store.tables import (
    Enrolment,
    ResourceVersion,
    SearchReference,
    SearchToken,
    StepRun,
    StoredResource,
)

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
SNOMED = "http://snomed.info/sct"


def _condition(rid: str, code: str, patient: str = "Patient/p1") -> dict[str, Any]:
    return {"resourceType": "Condition", "id": rid, "subject": {"reference": patient},
            "code": {"coding": [{"system": SNOMED, "code": code}]}}


def _version(rid: str) -> dict[str, Any]:
    return {"resource_type": "Condition", "id": rid, "version_id": 1, "last_updated": T0, "method": "PUT",
            "deleted": False, "content": None}


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

    def test_a_statement_built_from_one_already_run_is_judged_on_its_own_tables(self, db: Database) -> None:
        """SQLAlchemy copies a statement's attributes into the statements built from it; what the first
        one touched must not pass for the second."""
        resources = StoredResource.__table__  # type: ignore[attr-defined]
        tokens = SearchToken.__table__  # type: ignore[attr-defined]
        base = select_core(resources.c.id).where(resources.c.resource_type == "Condition")
        with db.transaction() as session:
            put_resource(session, _condition("c1", "first"), T0)
            assert ["c1"] == list(session.connection().execute(base).scalars())
            put_resource(session, _condition("c2", "second"), T0)
            derived = base.where(select_core(tokens.c.pk).where(tokens.c.resource_id == resources.c.id,
                                                                tokens.c.code == "second").exists())
            assert ["c2"] == list(session.connection().execute(derived).scalars())

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
            with database.transaction() as session, session.begin_nested():
                put_resource(session, _condition("c1", "in-savepoint"), T0)
                assert 0 == batched.waiting(session.connection())
        finally:
            database.dispose()


class TestWaitingUpdates:
    """UPDATEs by key wait too, in order with the inserts of their table."""

    def test_an_update_added_after_an_insert_of_its_row_goes_after_it(self, db: Database) -> None:
        table = ResourceVersion.__table__  # type: ignore[attr-defined]
        mark = update(table).where(table.c.resource_type == bindparam("k_type"), table.c.id == bindparam("k_id"),
                                   table.c.version_id == bindparam("k_version"))

        def row(rid: str) -> dict[str, Any]:
            return {"resource_type": "Condition", "id": rid, "version_id": 1, "last_updated": T0,
                    "method": "PUT", "deleted": False, "content": None}

        statements = _Statements(db)
        try:
            with db.transaction() as session:
                connection = session.connection()
                batched.add(connection, table, [row("c1")])
                batched.add(connection, table, [{"k_type": "Condition", "k_id": "c1", "k_version": 1,
                                                 "method": "PATCH"}], statement=mark)
                batched.add(connection, table, [row("c2")])
                batched.add(connection, table, [{"k_type": "Condition", "k_id": "c2", "k_version": 1,
                                                 "method": "PATCH"}], statement=mark)
                assert 4 == batched.waiting(connection, table)
        finally:
            statements.close()

        assert 2 == statements.inserts["resource_version"]  # insert, update, insert, update: four runs
        with db.transaction() as session:
            assert [("c1", "PATCH"), ("c2", "PATCH")] == sorted(session.exec(select(
                ResourceVersion.id, ResourceVersion.method)).all())

    def test_a_read_sends_the_rows_of_its_own_tables_only(self, db: Database) -> None:
        """A read of the token index sends the token rows; the history and reference rows queued around
        them keep waiting for the commit."""
        versions, tokens, references = (t.__table__ for t in (ResourceVersion, SearchToken, SearchReference))  # type: ignore[attr-defined]
        with db.transaction() as session:
            connection = session.connection()
            batched.add(connection, versions, [_version("c1")])
            batched.add(connection, tokens, [{"resource_type": "Condition", "resource_id": "c1", "param": "code",
                                              "system": SNOMED, "code": "queued"}])
            batched.add(connection, references, [{"resource_type": "Condition", "resource_id": "c1",
                                                  "param": "subject", "target": "Patient/p1"}])
            assert 1 == _tokens(session, "queued")
            assert (1, 0, 1) == tuple(batched.waiting(connection, t) for t in (versions, tokens, references))
        with db.transaction() as session:
            assert 1 == session.exec(select(func.count()).select_from(SearchReference)).one()
            assert 1 == session.exec(select(func.count()).select_from(ResourceVersion)).one()

    def test_a_read_of_one_table_sends_all_its_runs_in_order(self, db: Database) -> None:
        """History insert, token row, history update: a read of the history sends both of its runs, the
        insert before the update, and leaves the token row waiting."""
        versions, tokens = ResourceVersion.__table__, SearchToken.__table__  # type: ignore[attr-defined]
        mark = update(versions).where(versions.c.resource_type == bindparam("k_type"),
                                      versions.c.id == bindparam("k_id"),
                                      versions.c.version_id == bindparam("k_version"))
        with db.transaction() as session:
            connection = session.connection()
            batched.add(connection, versions, [_version("c1")])
            batched.add(connection, tokens, [{"resource_type": "Condition", "resource_id": "c1", "param": "code",
                                              "system": SNOMED, "code": "between"}])
            batched.add(connection, versions, [{"k_type": "Condition", "k_id": "c1", "k_version": 1,
                                                "method": "PATCH"}], statement=mark)
            assert ["PATCH"] == session.exec(select(ResourceVersion.method)).all()
            assert (0, 1) == (batched.waiting(connection, versions), batched.waiting(connection, tokens))

    @pytest.mark.parametrize("read", ["child", "parent"])
    def test_rows_linked_by_a_foreign_key_go_together(self, db: Database, read: str) -> None:
        """A step row waits behind its enrolment's row: a read of either table sends both, the enrolment
        first (the database checks the key at once)."""
        enrolments, steps = Enrolment.__table__, StepRun.__table__  # type: ignore[attr-defined]
        with db.transaction() as session:
            connection = session.connection()
            batched.add(connection, enrolments, [{
                "id": "e1", "patient": "Patient/p1", "pathway_id": "pzp", "pathway_version": "1.0.0",
                "status": "active", "enrolled_at": T0, "facts": {}, "dates": {}, "revision": 1}])
            batched.add(connection, steps, [{
                "enrolment_id": "e1", "step_id": "conversation", "state": "waiting", "iteration": 1,
                "completions": 0, "reminders_sent": 0, "overdue": False, "escalated": False, "rerun": False}])
            table = steps if read == "child" else enrolments
            assert 1 == connection.execute(select_core(func.count()).select_from(table)).scalar_one()
            assert 0 == batched.waiting(connection)

    def test_an_enrolment_saved_twice_in_a_transaction_is_read_back_as_last_saved(self, db: Database) -> None:
        """The waiting updates go before the read; both saves share one statement per table."""
        state = EnrolmentState(id="e1", patient="Patient/p1", pathway_id="pzp", version="1.0.0",
                               enrolled_at=T0, status=EnrolmentStatus.ACTIVE)
        with db.transaction() as session:
            save_state(session, state, None)
        updates: list[str] = []

        def listener(_connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if statement.startswith("UPDATE"):
                updates.append(statement.split()[1])

        event.listen(db.engine, "before_cursor_execute", listener)
        try:
            with db.transaction() as session:
                row = session.get(Enrolment, "e1")
                first = dataclasses.replace(state, episode="first")
                save_state(session, first, state, row)
                second = dataclasses.replace(first, episode="second")
                save_state(session, second, first, row)
                assert 2 == batched.waiting(session.connection(), Enrolment.__table__)  # type: ignore[attr-defined]
                table = Enrolment.__table__  # type: ignore[attr-defined]
                read = session.connection().execute(select_core(table.c.episode, table.c.revision)).one()
        finally:
            event.remove(db.engine, "before_cursor_execute", listener)

        assert ("second", 3) == tuple(read)
        assert ["enrolment"] == updates


class TestHeldSavepoints:
    """batched.savepoint(): rows wait inside it too, and reach the database before it is released."""

    def test_rows_written_in_a_held_savepoint_go_as_one_statement_per_table(self, db: Database) -> None:
        statements = _Statements(db)
        try:
            with db.transaction() as session:
                put_resource(session, _condition("before", "before"), T0)
                with batched.savepoint(session):
                    for n in range(4):
                        put_resource(session, _condition(f"c{n}", f"held-{n}"), T0)
                    assert 4 == batched.waiting(session.connection(), ResourceVersion.__table__)  # type: ignore[attr-defined]
                assert 0 == batched.waiting(session.connection())
        finally:
            statements.close()

        assert 2 == statements.inserts["resource_version"]  # the row before the savepoint, then its four
        assert 5 == statements.inserts["resource"]
        with db.transaction() as session:
            assert 5 == session.exec(select(func.count()).select_from(ResourceVersion)).one()
            assert all(1 == _tokens(session, f"held-{n}") for n in range(4))

    def test_a_row_refused_in_a_held_savepoint_fails_that_savepoint_only(self, db: Database) -> None:
        """The refusal surfaces as the block ends; the savepoint's other rows go with it, the transaction
        keeps what came before and after."""
        table = ResourceVersion.__table__  # type: ignore[attr-defined]
        def entry(session: Session) -> None:
            with batched.savepoint(session):
                put_resource(session, _condition("c2", "inside"), T0)
                batched.add(session.connection(), table, [{  # a second version 1 of c1
                    "resource_type": "Condition", "id": "c1", "version_id": 1, "last_updated": T0,
                    "method": "PUT", "deleted": False, "content": None}])

        with db.transaction() as session:
            put_resource(session, _condition("c1", "before"), T0)
            with pytest.raises(IntegrityError):
                entry(session)
            session.expunge_all()
            put_resource(session, _condition("c3", "after"), T0)

        with db.transaction() as session:
            assert [("c1", 1), ("c3", 1)] == sorted(session.exec(select(ResourceVersion.id,
                                                                        ResourceVersion.version_id)).all())
            assert (1, 0, 1) == (_tokens(session, "before"), _tokens(session, "inside"), _tokens(session, "after"))
            assert ["c1", "c3"] == sorted(session.exec(select(col(StoredResource.id))).all())

    def test_an_error_in_a_held_savepoint_drops_its_waiting_rows(self, db: Database) -> None:
        def entry(session: Session) -> None:
            with batched.savepoint(session):
                put_resource(session, _condition("c2", "inside"), T0)
                raise RuntimeError("the entry failed")

        with db.transaction() as session:
            put_resource(session, _condition("c1", "before"), T0)
            with pytest.raises(RuntimeError, match="the entry failed"):
                entry(session)
            session.expunge_all()
            assert 0 == batched.waiting(session.connection())

        with db.transaction() as session:
            assert ["c1"] == session.exec(select(ResourceVersion.id)).all()
            assert (1, 0) == (_tokens(session, "before"), _tokens(session, "inside"))

    def test_a_plain_savepoint_inside_a_held_one_writes_at_once(self, db: Database) -> None:
        with db.transaction() as session, batched.savepoint(session):
            put_resource(session, _condition("c1", "held"), T0)
            with session.begin_nested():
                put_resource(session, _condition("c2", "plain"), T0)
                assert 0 == batched.waiting(session.connection())
            put_resource(session, _condition("c3", "held-again"), T0)
            assert 1 == batched.waiting(session.connection(), ResourceVersion.__table__)  # type: ignore[attr-defined]

        with db.transaction() as session:
            assert ["c1", "c2", "c3"] == sorted(session.exec(select(ResourceVersion.id)).all())

    def test_a_text_statement_with_declared_tables_leaves_other_tables_rows_waiting(self, db: Database) -> None:
        with db.transaction() as session:
            put_resource(session, _condition("c1", "waiting"), T0)
            declared = batched.touching(text("SELECT count(*) FROM enrolment"), Enrolment.__table__)  # type: ignore[attr-defined]
            session.connection().execute(declared)
            assert batched.waiting(session.connection())
            session.connection().execute(text("SELECT count(*) FROM enrolment"))  # undeclared: sends first
            assert 0 == batched.waiting(session.connection())


class TestSavepointRollback:
    """Core writes inside a savepoint that rolls back leave no stale objects in the session."""

    def test_an_update_rolled_back_with_its_savepoint_is_forgotten(self, db: Database) -> None:
        """The next read and write see version 1, and history has no gap."""
        with db.transaction() as session:
            first = put_resource(session, _condition("c1", "first"), T0)
            savepoint = session.begin_nested()
            put_resource(session, _condition("c1", "rolled-back"), T0)
            savepoint.rollback()

            again = get_resource(session, "Condition", "c1")
            assert again is not None
            assert (1, "first") == (again.version_id, again.content["code"]["coding"][0]["code"])
            assert 2 == put_resource(session, _condition("c1", "second"), T0).version_id
            del first

        with db.transaction() as session:
            assert [1, 2] == sorted(session.exec(select(ResourceVersion.version_id)).all())
            assert (0, 1) == (_tokens(session, "rolled-back"), _tokens(session, "second"))

    def test_a_resource_created_in_a_rolled_back_savepoint_can_be_created_again(self, db: Database) -> None:
        """The object made for the vanished row leaves the session, so the next write creates the row."""
        with db.transaction() as session:
            put_resource(session, _condition("c0", "unrelated"), T0)
            savepoint = session.begin_nested()
            made = put_resource(session, _condition("c1", "rolled-back"), T0)
            savepoint.rollback()

            assert get_resource(session, "Condition", "c1") is None
            again = put_resource(session, _condition("c1", "kept"), T0)
            assert (1, True) == (again.version_id, made is not again)

        with db.transaction() as session:
            stored = session.get(StoredResource, ("Condition", "c1"))
            assert stored is not None
            assert 1 == stored.version_id
            assert (0, 1) == (_tokens(session, "rolled-back"), _tokens(session, "kept"))

    def test_an_enrolment_saved_in_a_rolled_back_savepoint_reads_as_before(self, db: Database) -> None:
        before = EnrolmentState(id="e1", patient="Patient/p1", pathway_id="example-acp", version="1.0.0",
                                enrolled_at=T0, status=EnrolmentStatus.ACTIVE, steps={})
        db.run(lambda s: save_state(s, before, None))

        def work(session: Session) -> str:
            row = session.get(Enrolment, "e1")
            ended = before.copy()
            ended.status, ended.ended_at, ended.end_reason = EnrolmentStatus.WITHDRAWN, T0, "moved away"
            savepoint = session.begin_nested()
            save_state(session, ended, before, row)
            savepoint.rollback()
            assert row is not None
            return row.status

        assert EnrolmentStatus.ACTIVE.value == db.run(work)


class TestExpectedWrites:
    """``expect_writes``: resources looked up as absent are written with the others, not one by one."""

    def test_expected_absent_resources_go_in_one_statement(self, db: Database) -> None:
        statements = _Statements(db)
        try:
            with db.transaction() as session:
                expect_writes(session, [("Condition", f"c{n}") for n in range(5)])
                for n in range(5):
                    put_resource(session, _condition(f"c{n}", f"code-{n}"), T0)
                table = StoredResource.__table__  # type: ignore[attr-defined]
                seen = session.connection().execute(select_core(func.count()).select_from(table)).scalar_one()
                assert 5 == seen  # a read in the same transaction sees the waiting rows
        finally:
            statements.close()

        assert 1 == statements.inserts["resource"]
        with db.transaction() as session:
            stored = session.exec(select(StoredResource).order_by(StoredResource.id)).all()
            assert [(f"c{n}", 1) for n in range(5)] == [(s.id, s.version_id) for s in stored]
            assert all(1 == _tokens(session, f"code-{n}") for n in range(5))

    def test_resources_with_fresh_server_ids_go_in_one_statement(self, db: Database) -> None:
        statements = _Statements(db)
        try:
            with db.transaction() as session:
                ids = [fresh_id(session, "Condition") for _ in range(5)]
                for n, rid in enumerate(ids):
                    put_resource(session, _condition(rid, f"code-{n}"), T0)
        finally:
            statements.close()

        assert 1 == statements.inserts["resource"]
        with db.transaction() as session:
            assert all(get_resource(session, "Condition", rid) is not None for rid in ids)

    def test_an_expected_resource_that_exists_gets_its_next_version(self, db: Database) -> None:
        with db.transaction() as session:
            put_resource(session, _condition("c1", "first"), T0)
        with db.transaction() as session:
            expect_writes(session, [("Condition", "c1"), ("Condition", "c2")])
            put_resource(session, _condition("c1", "second"), T0)
            put_resource(session, _condition("c2", "new"), T0)

        with db.transaction() as session:
            versions = session.exec(select(ResourceVersion.id, ResourceVersion.version_id)
                                    .order_by(ResourceVersion.id, ResourceVersion.version_id)).all()
            assert [("c1", 1), ("c1", 2), ("c2", 1)] == [tuple(v) for v in versions]
            assert (0, 1, 1) == (_tokens(session, "first"), _tokens(session, "second"), _tokens(session, "new"))

    def test_a_rolled_back_savepoint_takes_its_expected_resource_along(self, db: Database) -> None:
        with db.transaction() as session:
            expect_writes(session, [("Condition", "c1")])

            def failing_entry() -> None:
                with batched.savepoint(session):
                    put_resource(session, _condition("c1", "dropped"), T0)
                    raise RuntimeError("the entry fails")

            with pytest.raises(RuntimeError):
                failing_entry()
            session.expunge_all()
            assert get_resource(session, "Condition", "c1") is None
            put_resource(session, _condition("c1", "kept"), T0)

        with db.transaction() as session:
            stored = get_resource(session, "Condition", "c1")
            assert stored is not None
            assert 1 == stored.version_id
            assert (0, 1) == (_tokens(session, "dropped"), _tokens(session, "kept"))

    def test_a_resource_another_transaction_creates_after_the_lookup_is_written_on_a_second_run(
            self, db: Database) -> None:
        """PostgreSQL: the lookup cannot keep others from creating the resource; the insert then fails on the
        primary key, and the transaction runs again (on SQLite the write transaction excludes the race)."""
        if not db.is_postgresql:
            pytest.skip("SQLite's write transaction excludes other writers")
        runs: list[int] = []

        def work(session: Session) -> int:
            runs.append(1)
            expect_writes(session, [("Condition", "c1")])
            if len(runs) == 1:
                with db.transaction() as other:  # its own connection, committed before ours writes
                    put_resource(other, _condition("c1", "theirs"), T0)
            return put_resource(session, _condition("c1", "ours"), T0).version_id

        assert 2 == db.run(work)
        assert 2 == len(runs)
        with db.transaction() as session:
            assert (0, 1) == (_tokens(session, "theirs"), _tokens(session, "ours"))

    def test_an_expected_resource_that_exists_is_updated_without_reading_it_again(self, db: Database) -> None:
        with db.transaction() as session:
            put_resource(session, _condition("c1", "first"), T0)
        reads: list[str] = []

        def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if statement.startswith("SELECT") and "FROM resource " in f"{statement} ":
                reads.append(statement)

        with db.transaction() as session:
            expect_writes(session, [("Condition", "c1")])
            event.listen(db.engine, "before_cursor_execute", seen)
            try:
                stored = put_resource(session, _condition("c1", "second"), T0)
            finally:
                event.remove(db.engine, "before_cursor_execute", seen)
            assert 2 == stored.version_id

        assert [] == reads

    def test_on_postgresql_the_lookup_locks_the_existing_rows(self, db: Database) -> None:
        """Read FOR UPDATE: nobody changes them between the lookup and this transaction's write."""
        if not db.is_postgresql:
            pytest.skip("SQLite's write transaction excludes other writers")
        with db.transaction() as session:
            put_resource(session, _condition("c1", "first"), T0)
        probe = "SELECT id FROM resource WHERE resource_type = 'Condition' AND id = 'c1' FOR UPDATE NOWAIT"

        with db.transaction() as session:
            expect_writes(session, [("Condition", "c1"), ("Condition", "absent")])
            with db.engine.connect() as other, pytest.raises(OperationalError, match="could not obtain lock"):
                other.exec_driver_sql(probe)
        with db.engine.connect() as other:
            assert ["c1"] == list(other.exec_driver_sql(probe).scalars())
