"""Alembic migrations: `zorgpad db upgrade` builds the schema the tables declare, on both dialects."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import zorgpad.engine.store.tables  # noqa: F401  (the tables register themselves on SQLModel.metadata)
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel, select
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.migrate import alembic_config, current_revision, upgrade
from zorgpad.engine.store.tables import AuditEntry

ZORGPAD = Path(sys.executable).parent / "zorgpad"


@pytest.fixture
def empty_url(db_option: str, tmp_path: Path) -> Iterator[str]:
    """URL of a database with no tables at all (a fresh file, or a fresh PostgreSQL database)."""
    if not db_option.startswith("postgres"):
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    base = make_url(db_option).set(drivername="postgresql+psycopg")
    name = f"zorgpad_migrate_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield base.set(database=name).render_as_string(hide_password=False).replace("+psycopg", "")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _head(db: Database) -> str:
    head = ScriptDirectory.from_config(alembic_config(db)).get_current_head()
    assert head is not None
    return head


def _upgrade_cli(url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ZORGPAD_DATABASE_URL"}
    return subprocess.run([str(ZORGPAD), "db", "upgrade", "--db", url], capture_output=True, text=True,
                          timeout=120, check=False, env=env)


def _differences(db: Database) -> list[object]:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, SQLModel.metadata))


class TestUpgrade:
    """`zorgpad db upgrade` creates and migrates the schema."""

    def test_an_empty_database_is_brought_to_head(self, empty_url: str) -> None:
        """Upgrading a database without tables reaches the newest revision and says so."""
        result = _upgrade_cli(empty_url)
        db = Database(empty_url)
        try:
            revision = current_revision(db)
            head = _head(db)
        finally:
            db.dispose()

        assert (0, "") == (result.returncode, result.stderr)
        assert head == revision
        assert result.stdout.strip().endswith(f"is at revision {head}")

    def test_the_upgraded_schema_matches_the_table_declarations(self, empty_url: str) -> None:
        """Alembic's autogenerate comparison finds nothing to add, drop or alter after an upgrade."""
        result = _upgrade_cli(empty_url)
        db = Database(empty_url)
        try:
            differences = _differences(db)
        finally:
            db.dispose()

        assert 0 == result.returncode, result.stderr
        assert [] == differences

    def test_every_declared_table_exists_after_upgrade(self, empty_url: str) -> None:
        """The migrations create each table SQLModel knows about, and alembic_version."""
        _upgrade_cli(empty_url)
        db = Database(empty_url)
        try:
            tables = set(inspect(db.engine).get_table_names())
        finally:
            db.dispose()

        assert set(SQLModel.metadata.tables) | {"alembic_version"} == tables

    def test_upgrading_twice_is_harmless(self, empty_url: str) -> None:
        """A second upgrade keeps the revision, the schema and the data."""
        first = _upgrade_cli(empty_url)
        db = Database(empty_url)
        try:
            db.run(lambda s: s.add(AuditEntry(recorded_at=datetime(2026, 1, 5, tzinfo=UTC), actor="t",
                                              action="R", what="read")))
            second = _upgrade_cli(empty_url)
            db.upgrade()
            kept = db.run(lambda s: [a.actor for a in s.exec(select(AuditEntry))])
            revision = current_revision(db)
            differences = _differences(db)
            head = _head(db)
        finally:
            db.dispose()

        assert (0, 0) == (first.returncode, second.returncode), second.stderr
        assert (["t"], head, []) == (kept, revision, differences)

    def test_subscription_counters_start_from_the_notifications_already_queued(self, empty_url: str) -> None:
        """0007 counts each Subscription's rest-hook outbox items, so the next event gets the next number."""
        db = Database(empty_url)
        try:
            upgrade(db, "0006")
            now = datetime(2026, 1, 5, tzinfo=UTC)
            with db.engine.begin() as connection:
                for sub_id in ("s1", "s2"):
                    connection.execute(text(
                        "INSERT INTO resource (resource_type, id, version_id, last_updated, deleted, content) "
                        "VALUES ('Subscription', :id, 1, :now, false, '{}')"), {"id": sub_id, "now": now})
                for n in (1, 2, 3):
                    connection.execute(text(
                        "INSERT INTO outbox (idempotency_key, channel, payload, status, attempts, created_at, "
                        "next_attempt_at) VALUES (:key, 'rest-hook', '{}', 'delivered', 1, :now, :now)"),
                        {"key": f"rest-hook/s1/Task/t{n}/1", "now": now})
            db.upgrade()
            with db.engine.connect() as connection:
                counters = dict(connection.execute(text(
                    "SELECT subscription_id, events FROM subscription_counter")).all())
        finally:
            db.dispose()

        assert {"s1": 3, "s2": 0} == counters

    def test_the_test_database_fixture_is_at_head(self, db: Database) -> None:
        """The shared fixture's database was built by the same migrations, so tests run on the real schema."""
        revision, differences = current_revision(db), _differences(db)

        assert _head(db) == revision
        assert [] == differences

    def test_a_command_other_than_upgrade_refuses_an_unmigrated_database(self, empty_url: str) -> None:
        """`zorgpad tick` on a database without schema fails with a hint to run `zorgpad db upgrade`."""
        if empty_url.startswith("sqlite"):
            Path(empty_url.removeprefix("sqlite:///")).touch()
        result = subprocess.run([str(ZORGPAD), "tick", "--db", empty_url], capture_output=True, text=True,
                                timeout=120, check=False)

        assert 1 == result.returncode
        assert "run `zorgpad db upgrade` first" in result.stderr
