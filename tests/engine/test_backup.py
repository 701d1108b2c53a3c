"""`zorgpad db backup`: a consistent copy of a SQLite database taken while Zorgpad keeps writing to it."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from example_pathway import ExampleAcp
from sqlmodel import select
from zorgpad.engine import Database, Engine, Registry
from zorgpad.engine.clock import FrozenClock
from zorgpad.engine.store.migrate import current_revision
from zorgpad.engine.store.tables import Enrolment

REPO = Path(__file__).resolve().parents[2]
ZORGPAD = REPO / ".venv" / "bin" / "zorgpad"
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def zorgpad(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command, without an inherited database URL."""
    env = {k: v for k, v in os.environ.items() if k != "ZORGPAD_DATABASE_URL"}
    return subprocess.run([str(ZORGPAD), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
                          check=False)


def one_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single ``zorgpad: error:`` line of a failed command."""
    assert (1, "") == (result.returncode, result.stdout), result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("zorgpad: error: ")
    return line


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    """A migrated SQLite database with the example pathway (backups are of SQLite files, whatever --db is)."""
    db = Database(f"sqlite:///{tmp_path / 'live.db'}")
    db.upgrade()
    yield db
    db.dispose()


def _enrolments(url: str) -> set[str]:
    copy = Database(url)
    try:
        return set(copy.run(lambda s: list(s.exec(select(Enrolment.patient)))))
    finally:
        copy.dispose()


class TestBackup:
    """A backup is a complete, valid database; bad targets are refused and nothing is written."""

    def test_a_backup_taken_while_patients_are_enrolled_is_a_valid_database(
            self, sqlite_db: Database, tmp_path: Path) -> None:
        """While a thread keeps enrolling patients, the copy passes SQLite's integrity check, is at the newest
        schema revision, and holds every enrolment committed before the backup began."""
        engine = Engine(sqlite_db, Registry([ExampleAcp]), FrozenClock(START))
        for n in range(20):
            engine.enrol("example-acp", f"Patient/before-{n}", now=START)
        stop = threading.Event()

        def keep_enrolling() -> None:
            n = 0
            while not stop.is_set():
                engine.enrol("example-acp", f"Patient/during-{n}", now=START + timedelta(minutes=n))
                n += 1

        writer = threading.Thread(target=keep_enrolling)
        writer.start()
        try:
            result = zorgpad("db", "backup", str(tmp_path / "copy.db"), "--db", sqlite_db.url)
        finally:
            stop.set()
            writer.join(timeout=60)
        with sqlite3.connect(tmp_path / "copy.db") as connection:
            integrity = connection.execute("PRAGMA integrity_check").fetchone()[0]
        copy = Database(f"sqlite:///{tmp_path / 'copy.db'}")
        try:
            revision, head = current_revision(copy), current_revision(sqlite_db)
        finally:
            copy.dispose()
        patients = _enrolments(f"sqlite:///{tmp_path / 'copy.db'}")

        assert 0 == result.returncode, result.stderr
        assert result.stdout.startswith(f"backed up {sqlite_db.url} to {tmp_path / 'copy.db'} (")
        assert ("ok", head) == (integrity, revision)
        assert {f"Patient/before-{n}" for n in range(20)} <= patients
        assert [] == list(tmp_path.glob(".*.partial"))

    def test_an_existing_target_is_refused_and_left_alone(self, sqlite_db: Database, tmp_path: Path) -> None:
        """Backing up onto a file that exists is one error line; the file keeps its content."""
        target = tmp_path / "earlier-backup.db"
        target.write_bytes(b"yesterday's backup")

        line = one_error(zorgpad("db", "backup", str(target), "--db", sqlite_db.url))

        assert f"zorgpad: error: {target} exists already; the backup goes into a new file" == line
        assert (b"yesterday's backup", []) == (target.read_bytes(), list(tmp_path.glob(".*.partial")))

    def test_a_target_in_a_missing_folder_is_refused(self, sqlite_db: Database, tmp_path: Path) -> None:
        """No folder is created: one error line, no file."""
        target = tmp_path / "no-such-folder" / "copy.db"

        line = one_error(zorgpad("db", "backup", str(target), "--db", sqlite_db.url))

        assert (f"zorgpad: error: folder {target.parent} for the backup does not exist", False) == (
            line, target.parent.exists())

    def test_postgresql_is_pointed_to_pg_dump(self, db_url: str, tmp_path: Path) -> None:
        """On PostgreSQL the command says to use pg_dump and writes nothing (on SQLite it makes a copy)."""
        target = tmp_path / "copy.db"
        if not db_url.startswith("postgresql"):
            pytest.skip("the SQLite tests above make copies")

        line = one_error(zorgpad("db", "backup", str(target), "--db", db_url))

        assert ("zorgpad: error: zorgpad db backup copies a SQLite database file; back up PostgreSQL with "
                "pg_dump", False) == (line, target.exists())
