"""The durable store: FHIR resources with history and search rows, enrolment state, UTC columns, opening."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError, StatementError
from sqlmodel import Session, col, select
from zorgpad.engine._model import EnrolmentState, StepRun
from zorgpad.engine._states import EnrolmentStatus, StepState
from zorgpad.engine.errors import ConfigurationError
from zorgpad.engine.store.db import ENV_VAR, Database, Turns, database_url
from zorgpad.engine.store.enrolments import active_enrolments_of, load_state, save_state
from zorgpad.engine.store.resources import get_resource, patient_of, put_resource
from zorgpad.engine.store.tables import (
    AuditEntry,
    Enrolment,
    ResourceVersion,
    SearchDate,
    SearchReference,
    SearchToken,
    Timer,
)
from zorgpad.engine.store.tables import StepRun as StepRunRow

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
T1 = T0 + timedelta(days=1, hours=2, microseconds=250)
CEST = timezone(timedelta(hours=2))
LOINC = "http://loinc.org"


def _patient(family: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "p1", "name": [{"family": family}], **extra}


def _observation(code: str, patient: str, effective: str, status: str = "final") -> dict[str, Any]:
    return {"resourceType": "Observation", "id": "o1", "status": status,
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "subject": {"reference": patient}, "effectiveDateTime": effective}


def _tokens(session: Session, rid: str) -> set[tuple[str, str | None, str]]:
    rows = session.exec(select(SearchToken).where(SearchToken.resource_id == rid))
    return {(r.param, r.system, r.code) for r in rows}


def _references(session: Session, rid: str) -> set[tuple[str, str]]:
    rows = session.exec(select(SearchReference).where(SearchReference.resource_id == rid))
    return {(r.param, r.target) for r in rows}


def _dates(session: Session, rid: str) -> set[tuple[str, datetime | None, datetime | None]]:
    rows = session.exec(select(SearchDate).where(SearchDate.resource_id == rid))
    return {(r.param, r.start, r.end) for r in rows}


class TestPutResource:
    """Every put stores a new version, stamps meta and keeps the history."""

    def test_each_put_adds_one_to_the_version_and_stamps_meta(self, db: Database) -> None:
        """meta.versionId counts the puts and meta.lastUpdated is the put's moment as a UTC instant."""
        first = db.run(lambda s: put_resource(s, _patient("Jansen"), T0, method="POST"))
        second = db.run(lambda s: put_resource(s, _patient("de Vries"), T1))
        stored = db.run(lambda s: get_resource(s, "Patient", "p1"))

        assert (1, "1", "2026-01-05T09:00:00Z") == (first.version_id, first.content["meta"]["versionId"],
                                                    first.content["meta"]["lastUpdated"])
        assert (2, "2", "2026-01-06T11:00:00.000250Z") == (second.version_id, second.content["meta"]["versionId"],
                                                           second.content["meta"]["lastUpdated"])
        assert stored is not None
        assert (2, T1, "de Vries") == (stored.version_id, stored.last_updated, stored.content["name"][0]["family"])

    def test_every_version_is_kept_in_the_history_table(self, db: Database) -> None:
        """resource_version holds one row per put, with its method, moment and content."""
        db.run(lambda s: put_resource(s, _patient("Jansen"), T0, method="POST"))
        db.run(lambda s: put_resource(s, _patient("de Vries"), T1))
        rows = db.run(lambda s: list(s.exec(select(ResourceVersion).order_by(col(ResourceVersion.version_id)))))

        assert [(1, "POST", T0, "Jansen", "1"), (2, "PUT", T1, "de Vries", "2")] == [
            (r.version_id, r.method, r.last_updated, r.content["name"][0]["family"], r.content["meta"]["versionId"])
            for r in rows if r.content is not None]

    def test_the_callers_meta_is_replaced_but_its_other_elements_kept(self, db: Database) -> None:
        """A versionId sent by the caller is overwritten; a profile is kept; the caller's dict is not changed."""
        resource = _patient("Jansen", meta={"versionId": "99", "profile": ["http://example.org/p"]})
        stored = db.run(lambda s: put_resource(s, resource, T0))

        assert {"versionId": "1", "lastUpdated": "2026-01-05T09:00:00Z",
                "profile": ["http://example.org/p"]} == stored.content["meta"]
        assert {"versionId": "99", "profile": ["http://example.org/p"]} == resource["meta"]

    def test_a_delete_is_a_version_without_content(self, db: Database) -> None:
        """Deleting marks the current row deleted and adds a history row without content."""
        db.run(lambda s: put_resource(s, _patient("Jansen"), T0))
        db.run(lambda s: put_resource(s, _patient("Jansen"), T1, method="DELETE", deleted=True))
        stored = db.run(lambda s: get_resource(s, "Patient", "p1"))
        history = db.run(lambda s: [(r.version_id, r.method, r.deleted, r.content is None)
                                    for r in s.exec(select(ResourceVersion).order_by(col(ResourceVersion.version_id)))])

        assert stored is not None
        assert (2, True) == (stored.version_id, stored.deleted)
        assert [(1, "PUT", False, False), (2, "DELETE", True, True)] == history

    def test_the_patient_column_follows_the_resource(self, db: Database) -> None:
        """The stored row's patient is recomputed on every put."""
        db.run(lambda s: put_resource(s, _observation("1", "Patient/p1", "2026-01-02"), T0))
        before = db.run(lambda s: get_resource(s, "Observation", "o1"))
        db.run(lambda s: put_resource(s, _observation("1", "Patient/p2", "2026-01-02"), T1))
        after = db.run(lambda s: get_resource(s, "Observation", "o1"))

        assert before is not None
        assert after is not None
        assert ("Patient/p1", "Patient/p2") == (before.patient, after.patient)


class TestSearchIndex:
    """Search rows mirror the current version of each resource."""

    def test_token_reference_and_date_rows_are_written(self, db: Database) -> None:
        """An Observation gets code/status tokens, patient/subject references and its effective date."""
        db.run(lambda s: put_resource(s, _observation("72133-2", "Patient/p1", "2026-01-02"), T0))

        tokens = db.run(lambda s: _tokens(s, "o1"))
        references = db.run(lambda s: _references(s, "o1"))
        dates = db.run(lambda s: _dates(s, "o1"))

        assert {("code", LOINC, "72133-2"), ("status", None, "final")} == tokens
        assert {("patient", "Patient/p1"), ("subject", "Patient/p1")} == references
        assert {("date", datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 3, tzinfo=UTC))} == dates

    def test_an_update_replaces_every_index_row(self, db: Database) -> None:
        """After an update only the new version's values are searchable."""
        db.run(lambda s: put_resource(s, _observation("72133-2", "Patient/p1", "2026-01-02"), T0))
        db.run(lambda s: put_resource(s, _observation("8867-4", "Patient/p2", "2026-02-03T10:00:00+01:00",
                                                      status="amended"), T1))

        tokens = db.run(lambda s: _tokens(s, "o1"))
        references = db.run(lambda s: _references(s, "o1"))
        dates = db.run(lambda s: _dates(s, "o1"))

        moment = datetime(2026, 2, 3, 9, 0, tzinfo=UTC)

        assert {("code", LOINC, "8867-4"), ("status", None, "amended")} == tokens
        assert {("patient", "Patient/p2"), ("subject", "Patient/p2")} == references
        assert {("date", moment, moment)} == dates

    def test_a_rewrite_with_the_same_values_touches_no_index_row(self, db: Database) -> None:
        """The stored rows read back (all three tables in one query, dates included) match the ones wanted."""
        observation = _observation("72133-2", "Patient/p1", "2026-02-03T10:00:00+01:00")
        db.run(lambda s: put_resource(s, observation, T0))
        statements: list[str] = []

        def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if statement.split()[0] in ("INSERT", "DELETE") and "search_" in statement:
                statements.append(statement)

        event.listen(db.engine, "before_cursor_execute", seen)
        try:
            db.run(lambda s: put_resource(s, {**observation, "note": [{"text": "checked"}]}, T1))
        finally:
            event.remove(db.engine, "before_cursor_execute", seen)

        assert [] == statements
        moment = datetime(2026, 2, 3, 9, 0, tzinfo=UTC)
        assert {("date", moment, moment)} == db.run(lambda s: _dates(s, "o1"))

    def test_an_update_leaves_other_resources_rows_alone(self, db: Database) -> None:
        """Reindexing one resource does not touch the rows of another."""
        other = {**_observation("72133-2", "Patient/p9", "2025-12-01"), "id": "o2"}
        db.run(lambda s: put_resource(s, other, T0))
        db.run(lambda s: put_resource(s, _observation("72133-2", "Patient/p1", "2026-01-02"), T0))
        db.run(lambda s: put_resource(s, _observation("8867-4", "Patient/p2", "2026-01-02"), T1))

        references = db.run(lambda s: _references(s, "o2"))

        assert {("patient", "Patient/p9"), ("subject", "Patient/p9")} == references

    def test_a_deleted_resource_has_no_index_rows(self, db: Database) -> None:
        """Deleting removes the resource from every search table."""
        db.run(lambda s: put_resource(s, _observation("72133-2", "Patient/p1", "2026-01-02"), T0))
        db.run(lambda s: put_resource(s, _observation("72133-2", "Patient/p1", "2026-01-02"), T1,
                                      method="DELETE", deleted=True))

        found = db.run(lambda s: (_tokens(s, "o1"), _references(s, "o1"), _dates(s, "o1")))

        assert (set(), set(), set()) == found


class TestPatientOf:
    """patient_of names the patient a resource is about."""

    @pytest.mark.parametrize(("resource", "expected"), [
        ({"resourceType": "Patient", "id": "p1"}, "Patient/p1"),
        ({"resourceType": "Observation", "subject": {"reference": "Patient/p2"}}, "Patient/p2"),
        ({"resourceType": "Consent", "patient": {"reference": "Patient/p3"}}, "Patient/p3"),
        ({"resourceType": "Task", "for": {"reference": "Patient/p4"}}, "Patient/p4"),
        ({"resourceType": "Coverage", "beneficiary": {"reference": "Patient/p5"}}, "Patient/p5"),
        ({"resourceType": "Observation", "subject": {"reference": "Group/g1"}}, None),
        ({"resourceType": "Organization", "id": "org1"}, None),
        ({"resourceType": "Observation", "subject": "Patient/p6"}, None),
    ], ids=["patient", "subject", "patient-element", "task-for", "beneficiary", "group-subject",
            "no-patient", "not-a-reference"])
    def test_the_patient_reference_is_found(self, resource: dict[str, Any], expected: str | None) -> None:
        """The Patient itself, or the Patient/… reference in subject, patient, for or beneficiary."""
        actual = patient_of(resource)

        assert expected == actual


def _state(*, version: str = "1.0.0") -> EnrolmentState:
    return EnrolmentState(
        id="e1", patient="Patient/p1", pathway_id="example-acp", version=version, enrolled_at=T0,
        status=EnrolmentStatus.ACTIVE,
        steps={
            "register": StepRun("register", StepState.COMPLETED, iteration=0, completions=1, start_at=T0,
                                ready_at=T0, due_at=T0 + timedelta(days=7), completed_at=T1, owner_role="gp",
                                reason="done by the GP"),
            "conversation": StepRun("conversation", StepState.READY, start_at=T1, ready_at=T1,
                                    due_at=T1 + timedelta(days=28), reminders_sent=2, overdue=True,
                                    escalated=True, business_status="escalated", owner_role="gp",
                                    owner="Organization/gp-1"),
            "review": StepRun("review", StepState.PENDING, iteration=3, owner_role="gp"),
        },
        facts={"acp-recorded": {"Procedure/x1": T1, "Procedure/x2": T1.astimezone(CEST)}},
    )


class TestEnrolmentState:
    """save_state and load_state store evaluation state as rows and give it back unchanged."""

    def test_state_round_trips(self, db: Database) -> None:
        """Every field of the enrolment and of each step run survives save and load."""
        state = _state()
        db.run(lambda s: save_state(s, state, None))

        loaded = db.run(lambda s: load_state(s, s.get(Enrolment, "e1")))

        assert state == loaded

    def test_an_ended_enrolment_round_trips(self, db: Database) -> None:
        """Status, end moment and reason come back as they were saved."""
        state = _state()
        state.status, state.ended_at, state.end_reason = EnrolmentStatus.WITHDRAWN, T1, "moved away"
        db.run(lambda s: save_state(s, state, None))

        loaded = db.run(lambda s: load_state(s, s.get(Enrolment, "e1")))

        assert (EnrolmentStatus.WITHDRAWN, T1, "moved away") == (loaded.status, loaded.ended_at, loaded.end_reason)

    def test_loaded_datetimes_are_aware_utc(self, db: Database) -> None:
        """Datetimes come back with tzinfo UTC, facts included, whatever zone they were written in."""
        db.run(lambda s: save_state(s, _state(), None))

        loaded = db.run(lambda s: load_state(s, s.get(Enrolment, "e1")))

        moments = [loaded.enrolled_at, loaded.steps["conversation"].due_at, loaded.steps["register"].completed_at]

        assert [UTC, UTC, UTC] == [m.tzinfo if m else None for m in moments]
        assert T1 == loaded.facts["acp-recorded"]["Procedure/x2"]

    def test_saving_again_updates_changed_steps_deletes_removed_ones_and_counts_revisions(self, db: Database) -> None:
        """A second save writes the changed step, drops a step no longer in the state, and bumps revision."""
        before = _state()
        db.run(lambda s: save_state(s, before, None))
        after = before.copy()
        after.version = "1.1.0"
        after.steps["conversation"].state = StepState.IN_PROGRESS
        after.steps["conversation"].reminders_sent = 3
        del after.steps["review"]
        after.facts = {}
        db.run(lambda s: save_state(s, after, before))

        loaded = db.run(lambda s: load_state(s, s.get(Enrolment, "e1")))
        row = db.run(lambda s: s.get(Enrolment, "e1"))
        step_ids = db.run(lambda s: sorted(r.step_id for r in s.exec(select(StepRunRow))))

        assert after == loaded
        assert ["conversation", "register"] == step_ids
        assert row is not None
        assert (2, "1.1.0") == (row.revision, row.pathway_version)


class TestUtcColumns:
    """UTC columns take aware datetimes and give back aware UTC datetimes on both dialects."""

    def test_an_aware_datetime_in_another_zone_comes_back_as_the_same_instant_in_utc(self, db: Database) -> None:
        """11:00+02:00 is stored and read back as 09:00 UTC, microseconds included."""
        written = datetime(2026, 6, 1, 11, 0, 0, 123456, tzinfo=CEST)
        db.run(lambda s: s.add(AuditEntry(recorded_at=written, actor="t", action="R", what="read")))

        read = db.run(lambda s: s.exec(select(AuditEntry)).one().recorded_at)

        assert datetime(2026, 6, 1, 9, 0, 0, 123456, tzinfo=UTC) == read
        assert UTC is read.tzinfo

    def test_comparisons_use_the_instant_not_the_wall_time(self, db: Database) -> None:
        """A filter with a non-UTC bound selects by instant (the tick relies on this)."""
        db.run(lambda s: s.add_all([
            Timer(due_at=T0, enrolment_id="e1", step_id="a", kind="due"),
            Timer(due_at=T0 + timedelta(hours=2), enrolment_id="e1", step_id="b", kind="due"),
        ]))
        bound = (T0 + timedelta(hours=1)).astimezone(CEST)  # 12:00+02:00 is 10:00 UTC

        due = db.run(lambda s: [t.step_id for t in s.exec(select(Timer).where(Timer.due_at <= bound))])

        assert ["a"] == due

    def test_a_naive_datetime_is_refused(self, db: Database) -> None:
        """Writing a naive datetime fails instead of guessing its zone, and nothing is written."""
        with pytest.raises(StatementError, match="naive datetime 2026-01-01T00:00:00 given to a UTC column") as info:
            db.run(lambda s: s.add(AuditEntry(recorded_at=datetime(2026, 1, 1), actor="t", action="R",
                                              what="read")))

        count = db.run(lambda s: len(s.exec(select(AuditEntry)).all()))

        assert isinstance(info.value.orig, ValueError)
        assert 0 == count


class TestDatabase:
    """Opening databases and running transactions."""

    @pytest.mark.skipif("not config.getoption('--db').startswith('sqlite')", reason="SQLite journal mode")
    def test_sqlite_opens_in_wal_mode(self, db: Database) -> None:
        """Every SQLite connection uses the write-ahead log, so readers never block the ticking writer."""
        with db.engine.connect() as connection:
            mode = connection.execute(text("PRAGMA journal_mode")).scalar()
            foreign_keys = connection.execute(text("PRAGMA foreign_keys")).scalar()

        assert ("wal", 1) == (mode, foreign_keys)

    def test_sqlite_threads_take_turns_before_they_begin(self, tmp_path: Any) -> None:
        """A second thread waits for its turn in the process, not in SQLite's polling busy handler: it issues
        no BEGIN while the first thread's transaction is open, and runs as soon as that one ends."""
        database = Database(f"sqlite:///{tmp_path / 'turns.db'}")
        pooled = [database.engine.connect() for _ in range(2)]  # so no thread opens a connection while locked
        for connection in pooled:
            connection.close()
        begun: list[str] = []

        def sent(_connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if statement == "BEGIN IMMEDIATE":  # seen before the driver waits for the lock
                begun.append(threading.current_thread().name)

        event.listen(database.engine, "before_cursor_execute", sent)
        second = threading.Thread(target=lambda: database.run(lambda s: s.exec(text("SELECT 1")).all()),
                                  name="second")
        try:
            with database.transaction() as session:
                session.exec(text("SELECT 1")).all()
                second.start()
                second.join(timeout=0.3)
                assert second.is_alive()
                assert [threading.current_thread().name] == begun
            second.join(timeout=10)
            assert not second.is_alive()
            assert [threading.current_thread().name, "second"] == begun
        finally:
            database.dispose()

    def test_the_dialect_is_known(self, db: Database, db_option: str) -> None:
        """is_postgresql is true exactly on PostgreSQL."""
        expected = db_option.startswith("postgres")

        assert expected == db.is_postgresql

    @pytest.mark.parametrize(("url", "message"), [
        ("not a url", "not a database URL: 'not a url' (expected sqlite:///FILE or postgresql://USER@HOST/DB)"),
        ("mysql://user@localhost/zorgpad", "unsupported database 'mysql' in 'mysql://user@localhost/zorgpad' "
                                           "(use sqlite or postgresql)"),
        ("sqlite:////no/such/folder/zorgpad.db", "folder /no/such/folder for database /no/such/folder/zorgpad.db "
                                                 "does not exist"),
    ], ids=["garbage", "other-database", "missing-folder"])
    def test_an_unusable_url_raises_a_configuration_error(self, url: str, message: str) -> None:
        """The message names the URL and what is expected."""
        with pytest.raises(ConfigurationError) as info:
            Database(url)

        assert message == str(info.value)
        assert isinstance(info.value, ValueError)

    @pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
    def test_postgresql_urls_use_the_psycopg_driver(self, scheme: str) -> None:
        """postgresql:// and postgres:// both open with psycopg 3 (no connection is made)."""
        database = Database(f"{scheme}://zorg:secret@db.example:5433/zorgpad")

        assert ("postgresql+psycopg://zorg:secret@db.example:5433/zorgpad", "postgresql") == (
            database.url, database.dialect)

    def test_the_url_comes_from_the_argument_then_the_environment_then_the_default(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An explicit URL wins over $ZORGPAD_DATABASE_URL, which wins over sqlite:///zorgpad.db."""
        monkeypatch.delenv(ENV_VAR, raising=False)
        default = database_url()
        monkeypatch.setenv(ENV_VAR, "sqlite:///from-env.db")

        assert ("sqlite:///zorgpad.db", "sqlite:///from-env.db", "sqlite:///given.db") == (
            default, database_url(), database_url("sqlite:///given.db"))

    def test_a_failed_transaction_writes_nothing(self, db: Database) -> None:
        """An error inside run() rolls back everything the work wrote."""
        def work(session: Session) -> None:
            session.add(AuditEntry(recorded_at=T0, actor="t", action="R", what="read"))
            session.flush()
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            db.run(work)

        assert 0 == db.run(lambda s: len(s.exec(select(AuditEntry)).all()))

    def test_a_lock_conflict_is_retried(self, db: Database) -> None:
        """run() repeats the work when the database reports it is locked, and returns the result."""
        calls: list[int] = []

        def work(session: Session) -> str:
            calls.append(1)
            if len(calls) == 1:
                raise OperationalError("INSERT …", {}, Exception("database is locked"))
            session.add(AuditEntry(recorded_at=T0, actor="t", action="R", what="read"))
            return "done"

        result = db.run(work)

        assert ("done", 2, 1) == (result, len(calls), db.run(lambda s: len(s.exec(select(AuditEntry)).all())))

    def test_other_database_errors_are_not_retried(self, db: Database) -> None:
        """An operational error that is no lock conflict is raised at once."""
        calls: list[int] = []

        def work(session: Session) -> None:
            calls.append(1)
            raise OperationalError("SELECT …", {}, Exception("no such table: nope"))

        with pytest.raises(OperationalError, match="no such table"):
            db.run(work)

        assert 1 == len(calls)


class TestTurns:
    """The SQLite writers' queue inside one process."""

    def test_waiting_threads_get_their_turn_in_the_order_they_came(self) -> None:
        turns, order = Turns(), []

        def writer(name: str) -> None:
            assert turns.acquire(timeout=10)
            order.append(name)
            turns.release()

        assert turns.acquire(timeout=1)
        threads = []
        for name in ("first", "second", "third"):
            thread = threading.Thread(target=writer, args=(name,))
            thread.start()
            threads.append(thread)
            while len(turns._waiting) < len(threads):  # queued before the next one starts
                time.sleep(0.001)
        turns.release()
        for thread in threads:
            thread.join(timeout=10)

        assert ["first", "second", "third"] == order

    def test_a_turn_is_reentrant_and_a_wait_that_runs_out_leaves_the_queue(self) -> None:
        turns = Turns()
        assert turns.acquire(timeout=1)
        assert turns.acquire(timeout=1)  # the same thread again
        results: list[bool] = []
        thread = threading.Thread(target=lambda: results.append(turns.acquire(timeout=0.05)))
        thread.start()
        thread.join(timeout=10)
        turns.release()
        turns.release()

        assert [False] == results
        assert not turns._waiting
        assert turns.acquire(timeout=0)  # free again


class TestActiveEnrolmentsOf:
    """active_enrolments_of reads a patient's enrolments once per transaction and still answers as they
    are at the moment of asking."""

    def test_an_enrolment_saved_later_in_the_transaction_is_seen(self, db: Database) -> None:
        def work(session: Session) -> tuple[list[str], list[str]]:
            before = [row.id for row in active_enrolments_of(session, "Patient/p1", lock=True)]
            save_state(session, _state(), None)
            return before, [row.id for row in active_enrolments_of(session, "Patient/p1", lock=True)]

        assert ([], ["e1"]) == db.run(work)

    def test_an_enrolment_that_ends_in_the_transaction_drops_out(self, db: Database) -> None:
        db.run(lambda s: save_state(s, _state(), None))

        def work(session: Session) -> tuple[list[str], list[str]]:
            rows = active_enrolments_of(session, "Patient/p1")
            before = _state()
            ended = before.copy()
            ended.status, ended.ended_at, ended.end_reason = EnrolmentStatus.WITHDRAWN, T1, "moved away"
            save_state(session, ended, before, rows[0])
            return [row.id for row in rows], [row.id for row in active_enrolments_of(session, "Patient/p1")]

        assert (["e1"], []) == db.run(work)

    def test_only_the_patients_own_enrolments_in_id_order(self, db: Database) -> None:
        for eid, patient in (("e2", "Patient/p1"), ("e1", "Patient/p1"), ("e3", "Patient/p2")):
            state = _state()
            state.id, state.patient = eid, patient
            db.run(lambda s, state=state: save_state(s, state, None))

        ids = db.run(lambda s: [row.id for row in active_enrolments_of(s, "Patient/p1", lock=True)])

        assert ["e1", "e2"] == ids
