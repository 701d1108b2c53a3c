"""Inserts (and updates by key) that wait in their transaction and reach the database as one
``executemany`` per table and statement.

A pathway transition writes several resources, and each resource a history row and up to three kinds of
search-index rows; sent one by one, that is one statement (with its fixed cost in the driver and in
SQLAlchemy) per table per resource. Instead :func:`add` keeps the rows on the connection, and they are
sent together, in the order they were added, before anything could see their absence:

- before every statement that may touch a table with waiting rows, so reads in the same transaction see
  them: that table's rows go, with those of the tables linked to it by a foreign key (a statement whose
  tables cannot be told, raw SQL included, counts as touching every table, and sends everything);
- before a savepoint starts, so that rolling back to it never takes older rows along;
- inside a savepoint opened with :func:`savepoint`, before it is released: a row the database refuses
  then fails the savepoint's own work (a batch Bundle entry, a message's content), and rolling back to it
  drops its rows. Inside a savepoint opened with a plain ``begin_nested()`` rows are written at once;
- before the commit (the session's ``before_commit``). A rollback drops them with the rest of the
  transaction.

Rows whose generated keys someone needs, and updates whose row count someone checks, must not wait here.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, Executable, Insert, Table, event, insert
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.sql.expression import TableClause, TextClause
from sqlalchemy.sql.util import find_tables

_PENDING = "zorgpad.pending_rows"
_TABLES = "_zorgpad_tables"
_SAVEPOINTS = "zorgpad.open_savepoints"
_CONNECTION = "zorgpad.batched_connection"
_INSTALLED: weakref.WeakSet[Engine] = weakref.WeakSet()
_INSERTS: dict[Table, Insert] = {}

__all__ = ["add", "install", "savepoint", "send", "touching", "waiting"]


@dataclass
class _Run:
    """Rows for one statement, sent as one ``executemany``."""

    table: Table
    statement: Executable
    keys: frozenset[str]
    rows: list[dict[str, Any]] = field(default_factory=list)


def add(connection: Connection, table: Table, rows: list[dict[str, Any]], *,
        statement: Executable | None = None) -> None:
    """Queue ``rows`` for ``table`` in the connection's transaction (or its innermost :func:`savepoint`).

    ``statement`` (an INSERT into ``table`` by default) may also be an UPDATE of ``table`` built once, whose
    parameters name the columns to set: a table's rows go in the order they were added.
    """
    if not rows:
        return
    install(connection.engine)
    statement = _insert(table) if statement is None else statement
    holding: list[bool] = connection.info.get(_SAVEPOINTS) or [True]
    if not holding[-1]:  # a plain begin_nested(): nothing sends the rows before it is released
        connection.execute(statement, rows)
        return
    pending: list[_Run] = connection.info.setdefault(_PENDING, [])
    for row in rows:
        keys = frozenset(row)
        last = next((run for run in reversed(pending) if run.table is table), None)
        if last is None or last.statement is not statement or last.keys != keys:
            last = _Run(table, statement, keys)
            pending.append(last)
        last.rows.append(row)


def send(connection: Connection, tables: frozenset[str] | None = None) -> None:
    """Write the waiting rows now, one ``executemany`` per run of rows for one statement, in order.

    With ``tables`` (names), only the rows of those tables go, with the rows of the tables linked to them
    by a foreign key either way, so that no waiting parent row is left behind its child's.
    """
    pending: list[_Run] | None = connection.info.get(_PENDING)
    if not pending:
        return
    names = _linked(pending, tables) if tables is not None else None
    going = [run for run in pending if names is None or run.table.name in names]
    connection.info[_PENDING] = [run for run in pending if names is not None and run.table.name not in names]
    for run in going:  # every row of their tables goes: a table's rows stay in the order they were added
        connection.execute(run.statement, run.rows)


def _linked(pending: list[_Run], tables: frozenset[str]) -> set[str]:
    """``tables`` and, through foreign keys either way, every table of a waiting run linked to them."""
    names = set(tables)
    grown = True
    while grown:
        grown = False
        for run in pending:
            parents = {key.column.table.name for key in run.table.foreign_keys}
            if run.table.name in names and not parents <= names:
                names |= parents
                grown = True
            elif run.table.name not in names and parents & names:
                names.add(run.table.name)
                grown = True
    return names


def waiting(connection: Connection, table: Table | None = None) -> int:
    """How many rows (for ``table``) wait to be sent."""
    pending: list[_Run] = [] if connection.invalidated else connection.info.get(_PENDING) or []
    return sum(len(run.rows) for run in pending if table is None or run.table is table)


@contextmanager
def savepoint(session: Session) -> Iterator[None]:
    """``session.begin_nested()`` in which rows wait too: they are sent as the block ends, inside the
    savepoint, so a row the database refuses rolls the savepoint back with the rest of its work."""
    install(session.connection().engine)
    with session.begin_nested():
        connection = session.connection()  # emits the SAVEPOINT now (the session does so lazily)
        connection.info[_SAVEPOINTS][-1] = True
        yield
        send(connection)


def _insert(table: Table) -> Insert:
    statement = _INSERTS.get(table)
    if statement is None:
        statement = _INSERTS[table] = insert(table)
    return statement


# The handlers below leave an invalidated connection (the database went away) alone: even reading its
# ``info`` raises, and the pool clears that dict when it reconnects.

def _drop(connection: Connection, *_: Any) -> None:
    if not connection.invalidated:
        connection.info.pop(_PENDING, None)
        connection.info.pop(_SAVEPOINTS, None)


# Waiting rows always belong to the innermost open savepoint (or to the transaction when none is open):
# a savepoint's start sends what came before it. _SAVEPOINTS holds, per open savepoint, whether it holds rows.

def _savepoint_starts(connection: Connection, *_: Any) -> None:
    if not connection.invalidated:
        send(connection)
        connection.info.setdefault(_SAVEPOINTS, []).append(False)


def _savepoint_released(connection: Connection, *_: Any) -> None:
    if not connection.invalidated:
        send(connection)  # savepoint() sent them already; this is for rows added after that
        _savepoint_ends(connection)


def _savepoint_rolled_back(connection: Connection, *_: Any) -> None:
    if not connection.invalidated:
        connection.info.pop(_PENDING, None)  # they were added inside the savepoint
        _savepoint_ends(connection)


def _savepoint_ends(connection: Connection) -> None:
    holding = connection.info.get(_SAVEPOINTS)
    if holding:
        holding.pop()


def _commits(connection: Connection, *_: Any) -> None:
    if not connection.invalidated:
        send(connection)  # a connection used without a session; a session has sent its rows already
        connection.info.pop(_SAVEPOINTS, None)


@event.listens_for(Session, "after_begin")
def _remember_connection(session: Session, _transaction: Any, connection: Connection) -> None:
    session.info[_CONNECTION] = connection


@event.listens_for(Session, "before_commit")
def _send_before_commit(session: Session) -> None:
    """Send the waiting rows before the session commits, as ordinary statements of the transaction: a
    database that fails them then fails the commit the way it fails any statement (and the session rolls
    back cleanly), which a failure inside the connection's own commit would not."""
    connection: Connection | None = session.info.get(_CONNECTION)
    if connection is not None and not connection.closed and not connection.invalidated \
            and connection.info.get(_PENDING):
        send(connection)


def _send_first(connection: Connection, element: Any, multiparams: Any, params: Any,
                _options: Any) -> tuple[Any, Any, Any]:
    pending: list[_Run] | None = None if connection.invalidated else connection.info.get(_PENDING)
    if pending:
        found = _tables_of(element) if isinstance(element, ClauseElement) else frozenset()
        if not found:  # a statement whose tables cannot be told may touch every table
            send(connection)
        elif any(run.table.name in found for run in pending):
            send(connection, found)
    return element, multiparams, params


def _tables_of(element: ClauseElement) -> frozenset[str]:
    """The names of the tables a statement mentions, subqueries included, remembered on the statement
    (statements do not change once built; the ORM and this package reuse theirs)."""
    memo: tuple[int, frozenset[str]] | None = element.__dict__.get(_TABLES)
    # A statement derived from this one (.where(), .join()) starts with a copy of its __dict__: the memo
    # only counts for the statement it was made for.
    if memo is None or memo[0] != id(element):
        # By name: the ORM hands over annotated copies of tables, and aliases are searched through.
        memo = (id(element), frozenset(t.name for t in find_tables(
            element, check_columns=True, include_joins=True, include_selects=True, include_crud=True)
            if isinstance(t, TableClause)))
        element.__dict__[_TABLES] = memo
    return memo[1]


def touching(statement: TextClause, *tables: Table) -> TextClause:
    """Declare the tables a text statement reads or writes (one with none declared counts as touching every
    table with waiting rows, so they are sent before it)."""
    statement.__dict__[_TABLES] = (id(statement), frozenset(table.name for table in tables))
    return statement


def install(engine: Engine) -> None:
    """Watch ``engine``'s statements, savepoints and transaction ends (done when a Database opens it, so
    that savepoints begun before the first :func:`add` are counted too)."""
    if engine in _INSTALLED:
        return
    event.listen(engine, "before_execute", _send_first, retval=True)
    event.listen(engine, "savepoint", _savepoint_starts)
    event.listen(engine, "release_savepoint", _savepoint_released)
    event.listen(engine, "rollback_savepoint", _savepoint_rolled_back)
    event.listen(engine, "commit", _commits)
    event.listen(engine, "rollback", _drop)
    _INSTALLED.add(engine)
