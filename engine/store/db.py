"""Opening the database: SQLite in WAL mode by default, PostgreSQL by URL, one code path for both.

SQLite allows one writer at a time; write transactions start with ``BEGIN IMMEDIATE`` so that two
processes ticking at once queue up instead of failing half-way. PostgreSQL transactions claim rows
with ``FOR UPDATE SKIP LOCKED`` (see :mod:`zorgpad.engine.timers`).
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.pool import StaticPool
from sqlmodel import Session
from zorgpad.engine.errors import ConfigurationError
from zorgpad.engine.store import batched

DEFAULT_URL = "sqlite:///zorgpad.db"
#: How long SQLite waits for another writer before giving up ("database is locked").
_BUSY_SECONDS = 30
ENV_VAR = "ZORGPAD_DATABASE_URL"
T = TypeVar("T")


def database_url(url: str | None = None) -> str:
    """The URL to use: ``url``, else ``$ZORGPAD_DATABASE_URL``, else ``sqlite:///zorgpad.db``."""
    return url or os.environ.get(ENV_VAR) or DEFAULT_URL


def _normalise(url: str) -> str:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigurationError(f"not a database URL: {url!r} (expected sqlite:///FILE or "
                                 "postgresql://USER@HOST/DB)") from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigurationError(f"unsupported database {parsed.get_backend_name()!r} in {url!r} "
                                 "(use sqlite or postgresql)")
    return parsed.render_as_string(hide_password=False)


class Database:
    """A connection pool and transactions for one database URL."""

    def __init__(self, url: str | None = None, *, sqlite_synchronous: str = "NORMAL") -> None:
        self.url = _normalise(database_url(url))
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {}
        if self.dialect == "sqlite":
            database = parsed.database or ""
            if database and database != ":memory:":
                folder = Path(database).parent
                if not folder.is_dir():
                    raise ConfigurationError(f"folder {folder} for database {database} does not exist")
            else:
                kwargs["poolclass"] = StaticPool
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": _BUSY_SECONDS}
        else:
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = create_engine(self.url, **kwargs)
        batched.install(self.engine)
        #: Called as ``listener(session, stored, previous, now)`` after every resource write, inside the
        #: writing transaction (the FHIR layer queues Subscription notifications this way).
        self.resource_listeners: list[Callable[..., None]] = []
        #: SQLite: the threads of this process take turns here before ``BEGIN IMMEDIATE``, in the order they
        #: came, so the next one starts the moment the writer before it ends (SQLite's own busy handler polls,
        #: sleeping up to 100 ms a time, and lets a thread that just committed begin again at once). Other
        #: processes still queue in the busy handler.
        self._turns: Turns | None = None
        if self.dialect == "sqlite":
            _configure_sqlite(self.engine, sqlite_synchronous)
            self._turns = Turns()

    @property
    def is_postgresql(self) -> bool:
        """Whether this is PostgreSQL (row locks with SKIP LOCKED are available)."""
        return self.dialect == "postgresql"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on any error."""
        # A turn not had within the busy timeout is skipped: SQLite's own locking still holds.
        turn = self._turns is not None and self._turns.acquire(timeout=_BUSY_SECONDS)
        try:
            with Session(self.engine, expire_on_commit=False) as session:
                session.info["resource_listeners"] = self.resource_listeners
                try:
                    yield session
                    session.commit()
                except BaseException:
                    session.rollback()
                    raise
        finally:
            if turn:
                assert self._turns is not None
                self._turns.release()

    def run(self, work: Callable[[Session], T], *, attempts: int = 5) -> T:
        """Run ``work`` in a transaction, retrying when the database reports a lock conflict."""
        for attempt in range(1, attempts + 1):
            try:
                with self.transaction() as session:
                    return work(session)
            except (OperationalError, DBAPIError) as exc:
                if attempt == attempts or not _is_conflict(exc):
                    raise
                time.sleep(0.05 * attempt)
        raise AssertionError("unreachable")

    def backup(self, target: str | Path) -> int:
        """Copy a SQLite database, while it is in use, to the new file ``target`` with SQLite's online backup
        (a consistent snapshot, the WAL included: copying the file itself is not safe while Zorgpad runs).
        Returns the size of the copy in bytes. PostgreSQL has its own tools (pg_dump)."""
        if self.dialect != "sqlite" or make_url(self.url).database in (None, "", ":memory:"):
            raise ConfigurationError("zorgpad db backup copies a SQLite database file; back up PostgreSQL with "
                                     "pg_dump")
        path = Path(target)
        exists = ConfigurationError(f"{path} exists already; the backup goes into a new file")
        if path.exists():
            raise exists
        if not path.parent.is_dir():
            raise ConfigurationError(f"folder {path.parent} for the backup does not exist")
        # Written under another name and linked to the target only when complete and on disk: a killed backup
        # leaves no file that looks like a good one, and the link never replaces a file that appeared meanwhile.
        partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
        source = self.engine.raw_connection()
        try:
            copy = sqlite3.connect(partial)
            try:
                source.driver_connection.backup(copy)  # type: ignore[union-attr]
            finally:
                copy.close()
            with partial.open("rb") as written:
                os.fsync(written.fileno())
            os.link(partial, path)
        except FileExistsError:
            raise exists from None
        finally:
            source.close()
            partial.unlink(missing_ok=True)
        return path.stat().st_size

    def upgrade(self) -> None:
        """Bring the schema to the newest migration."""
        from zorgpad.engine.store.migrate import upgrade

        upgrade(self)

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


class Turns:
    """A re-entrant lock handed to its waiting threads in the order they came."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._owner: int | None = None
        self._depth = 0
        self._waiting: deque[tuple[int, threading.Event]] = deque()

    def acquire(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the turn; False if it did not come."""
        me = threading.get_ident()
        with self._mutex:
            if self._owner == me or (self._owner is None and not self._waiting):
                self._owner, self._depth = me, self._depth + 1
                return True
            called = threading.Event()
            self._waiting.append((me, called))
        if called.wait(timeout):
            return True
        with self._mutex:
            if self._owner == me:  # handed over just as the wait ran out
                return True
            self._waiting.remove((me, called))
            return False

    def release(self) -> None:
        """End this thread's turn (its outermost one); the longest waiting thread has the next."""
        with self._mutex:
            self._depth -= 1
            if self._depth:
                return
            self._owner = None
            if self._waiting:
                self._owner, called = self._waiting.popleft()
                self._depth = 1
                called.set()


def _is_conflict(exc: DBAPIError) -> bool:
    text = str(exc.orig if exc.orig is not None else exc).lower()
    return any(s in text for s in _CONFLICTS)


#: Errors that running the transaction again resolves: locks, and a resource this transaction read as absent
#: that another one created before this one's insert (see ``resources._current``).
_CONFLICTS = ("database is locked", "deadlock detected", "could not serialize", "busy", "lock timeout",
              'violates unique constraint "resource_pkey"')


def _configure_sqlite(engine: Engine, synchronous: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={_BUSY_SECONDS * 1000}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
