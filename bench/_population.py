"""A region of waiting enrolments, made fast: one patient goes through the engine, the rest are copies.

Putting 100,000 patients through the engine one event at a time would take longer than the benchmarks
themselves, so the population is made as the engine would leave it: one *template* patient is enrolled
and advanced by :class:`~zorgpad.engine.Engine` in a scratch database, and its rows (resources, history,
search index, enrolment, step runs, timers, outbox, audit) are copied with fresh ids into the target
database by batched core inserts, each copy shifted in time. Each copy is a complete, consistent patient
the engine can go on with.

The template's story: identified by the Surprise Question at ``t0``, with a care team and a privacy
Consent to share; the GP marks and invites the patient the same day; the PZP conversation becomes
overdue at ``t0 + 28 d`` (first reminder sent); the second reminder is due at ``t0 + 35 d``.

Ids the engine derives from the enrolment id (Tasks, Communications, letters: ``uuid5`` of the enrolment,
step and round) are derived again for each copy, so the engine finds a copy's Tasks where it looks for them.

A *lean* template (``build_template(..., lean=True)``) keeps only what makes a waiting enrolment engine
state the server acts on (see :data:`LEAN_RESOURCES`): a million of those fit on disk, a million complete
patients do not.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Connection, Integer, Table, func, insert, select
from sqlmodel import SQLModel
from zorgpad.engine import Engine
from zorgpad.engine._model import NoticeKind
from zorgpad.engine._projection import _NAMESPACE as ENGINE_IDS
from zorgpad.engine.registry import Registry
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.tables import Timer

from bench import _fhir

TEMPLATE_PATIENT = "bp0000000"
#: From enrolment to the second reminder of the overdue conversation.
SECOND_REMINDER = timedelta(days=35)
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_SKIP_TABLES = {"alembic_version", "api_token", "inbox", "account", "dashboard_session"}
#: How often :func:`populate` reports progress, in copies.
PROGRESS_EVERY = 100_000
#: The resources a lean copy keeps, current version only, with their search index rows: the Patient
#: (the tick's notices name it; the GP role falls back to its generalPractitioner when no CareTeam names
#: one) and the CarePlan (the enrolment over FHIR; the engine reads its activity list when a step opens).
#: Left out, as nothing the engine needs while the enrolment waits: older versions, the Tasks (a reminder
#: updates its step's Task only when there is one; a step that opens writes its own), the CareTeam, the
#: Surprise Question Observation and sharing Consent (already facts on the enrolment), the Communications
#: and outbox item of the notice already sent, and the audit trail.
LEAN_RESOURCES = frozenset({"Patient", "CarePlan"})
#: The tables of a lean copy: engine state, the resources above and their search index.
LEAN_TABLES = frozenset({"enrolment", "step_run", "timer", "resource", "search_token", "search_reference",
                         "search_date"})


def patient_id(index: int) -> str:
    """The id of the ``index``-th copied patient (1-based; 0 is the template)."""
    return f"bp{index:07d}"


def tables() -> list[Table]:
    """Zorgpad's tables in foreign-key order."""
    return [t for t in SQLModel.metadata.sorted_tables if t.name not in _SKIP_TABLES]


def row_counts(db_url: str) -> dict[str, int]:
    """Rows per Zorgpad table in the database at ``db_url``."""
    database = Database(db_url)
    try:
        with database.engine.connect() as connection:
            return {t.name: int(connection.execute(select(func.count()).select_from(t)).scalar_one())
                    for t in tables()}
    finally:
        database.dispose()


@dataclass
class _Part:
    """A string value cut at the ids that change per copy: literals and ("uuid", n) / ("patient",) holes."""

    pieces: list[str | tuple[str, int]]

    def render(self, uuids: list[str], patient: str) -> str:
        out: list[str] = []
        for piece in self.pieces:
            if isinstance(piece, str):
                out.append(piece)
            elif piece[0] == "patient":
                out.append(patient)
            else:
                out.append(uuids[piece[1]])
        return "".join(out)


def _cut(value: str, uuid_index: dict[str, int]) -> _Part | str:
    pattern = re.compile("|".join([re.escape(TEMPLATE_PATIENT), *map(re.escape, uuid_index)]))
    pieces: list[str | tuple[str, int]] = []
    position = 0
    for match in pattern.finditer(value):
        pieces.append(value[position:match.start()])
        found = match.group(0)
        pieces.append(("patient", 0) if found == TEMPLATE_PATIENT else ("uuid", uuid_index[found]))
        position = match.end()
    if position == 0:
        return value
    pieces.append(value[position:])
    return _Part(pieces)


@dataclass
class Template:
    """The template patient's rows, ready to be copied."""

    t0: datetime
    #: Rows every region needs once (the organisations), per table name.
    shared: dict[str, list[dict[str, Any]]]
    #: The patient's rows per table name, as values in column order: strings and JSON text cut at the
    #: changing ids (:class:`_Part`), datetimes (shifted per copy), other values as they are.
    rows: dict[str, list[list[Any]]]
    columns: dict[str, list[str]]
    uuids: list[str]
    #: Which of ``uuids`` is the enrolment id.
    enrolment_uuid: int = 0
    #: Ids the engine derives from the enrolment id: uuid index → the ``uuid5`` name, ``{}`` for the enrolment.
    derived: dict[int, str] = field(default_factory=dict)

    @property
    def rows_per_patient(self) -> int:
        """How many rows one copied patient is."""
        return sum(len(r) for r in self.rows.values())

    def copy(self, index: int, shift: timedelta, processors: dict[str, list[Callable[[Any], Any] | None]]
             ) -> dict[str, list[tuple[Any, ...]]]:
        """The rows of copy ``index`` as driver parameters, every datetime moved by ``shift``.

        ``processors`` are the dialect's bind processors per column (None where the value goes as it is).
        """
        uuids = [f"{index:08x}{u[8:]}" for u in self.uuids]
        enrolment = uuids[self.enrolment_uuid]
        for position, name in self.derived.items():
            uuids[position] = str(uuid.uuid5(ENGINE_IDS, name.format(enrolment)))
        patient = patient_id(index)
        out: dict[str, list[tuple[Any, ...]]] = {}
        for name, rows in self.rows.items():
            column_processors = processors[name]
            copied = []
            for row in rows:
                values = []
                for value, process in zip(row, column_processors, strict=True):
                    if isinstance(value, _Part):
                        value = value.render(uuids, patient)
                    elif isinstance(value, datetime):
                        value = value + shift
                    values.append(process(value) if process is not None and value is not None else value)
                copied.append(tuple(values))
            out[name] = copied
        return out


def _autoincrement(table: Table) -> set[str]:
    return {c.name for c in table.primary_key.columns if isinstance(c.type, Integer) and len(table.primary_key) == 1}


def _json_columns(table: Table) -> set[str]:
    return {c.name for c in table.columns if isinstance(c.type, JSON)}


def _derived(raw: dict[str, list[dict[str, Any]]], found: list[str]) -> dict[int, str]:
    """Which found ids the engine derives from the enrolment id, as ``uuid5`` names with ``{}`` for it."""
    enrolment = raw["enrolment"][0]["id"]
    steps = [(run["step_id"], iteration) for run in raw["step_run"] for iteration in range(run["iteration"] + 2)]
    names = [f"{kind}/{{}}/{step}/{iteration}" for step, iteration in steps for kind in ("task", "letter", "summary")]
    names += [f"communication/{{}}/{step}/{iteration}/{notice.value}/{seq}"
              for step, iteration in steps for notice in NoticeKind for seq in range(4)]
    by_id = {str(uuid.uuid5(ENGINE_IDS, name.format(enrolment))): name for name in names}
    return {position: by_id[u] for position, u in enumerate(found) if u in by_id}


def _lean(raw: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """The rows of a waiting enrolment without its history (see :data:`LEAN_RESOURCES`)."""
    kept = {(r["resource_type"], r["id"]) for r in raw["resource"] if r["resource_type"] in LEAN_RESOURCES}
    lean: dict[str, list[dict[str, Any]]] = {}
    for name, rows in raw.items():
        if name == "resource":
            lean[name] = [r for r in rows if (r["resource_type"], r["id"]) in kept]
        elif name.startswith("search_"):
            lean[name] = [r for r in rows if (r["resource_type"], r["resource_id"]) in kept]
        elif name in LEAN_TABLES:
            lean[name] = rows
    return lean


def build_template(t0: datetime, workdir: Path | None = None, *, lean: bool = False) -> Template:
    """Put the template patient through the engine in a scratch SQLite database and cut its rows.

    ``lean`` keeps only the rows a waiting enrolment needs (:data:`LEAN_RESOURCES`), not its history.
    """
    folder = Path(tempfile.mkdtemp(prefix="zorgpad-template-", dir=workdir))
    database = Database(f"sqlite:///{folder / 'template.db'}")
    database.upgrade()
    engine = Engine(database, Registry.default())
    for organisation_id in _fhir.ORGANISATIONS.values():
        engine.ingest(_fhir.organisation(organisation_id), now=t0 - timedelta(days=1))
    pid = TEMPLATE_PATIENT
    engine.ingest(_fhir.patient(pid), now=t0)
    engine.ingest(_fhir.care_team(pid), now=t0)
    engine.ingest(_fhir.sharing_consent(pid, t0), now=t0)
    enrolment = engine.ingest(_fhir.surprise_question(pid, t0), now=t0).enrolled[0]
    engine.task_status(enrolment, "mark", "completed", now=t0)
    engine.task_status(enrolment, "invite", "completed", now=t0)
    engine.tick(t0 + timedelta(days=28, seconds=1))

    shared: dict[str, list[dict[str, Any]]] = {}
    raw: dict[str, list[dict[str, Any]]] = {}
    organisations = {("Organization", o) for o in _fhir.ORGANISATIONS.values()}
    with database.engine.connect() as connection:
        for table in tables():
            drop = _autoincrement(table)
            for row in connection.execute(select(table)).mappings():
                values = {k: v for k, v in row.items() if k not in drop}
                key = (values.get("resource_type"), values.get("id", values.get("resource_id")))
                is_shared = key in organisations or (table.name == "audit" and values.get("patient") is None)
                (shared if is_shared else raw).setdefault(table.name, []).append(values)
    database.dispose()
    shutil.rmtree(folder, ignore_errors=True)
    if lean:
        raw = _lean(raw)

    found: list[str] = []
    for rows in raw.values():
        for row in rows:
            for value in row.values():
                text = json.dumps(value) if isinstance(value, dict | list) else value
                if isinstance(text, str):
                    found.extend(u for u in _UUID.findall(text) if u not in found)
    uuid_index = {u: i for i, u in enumerate(found)}
    by_name = {t.name: t for t in tables()}
    columns: dict[str, list[str]] = {}
    cut: dict[str, list[list[Any]]] = {}
    for name, rows in raw.items():
        json_columns = _json_columns(by_name[name])
        columns[name] = list(rows[0])
        cut[name] = []
        for row in rows:
            values: list[Any] = []
            for key in columns[name]:
                value = row[key]
                if key in json_columns and value is not None:
                    value = _cut(json.dumps(value), uuid_index)
                elif isinstance(value, str):
                    value = _cut(value, uuid_index)
                values.append(value)
            cut[name].append(values)
    enrolment_uuid = found.index(raw["enrolment"][0]["id"])
    return Template(t0, shared, cut, columns, found, enrolment_uuid, _derived(raw, found))


def _batches(count: int, size: int) -> Iterator[range]:
    for start in range(1, count + 1, size):
        yield range(start, min(start + size, count + 1))


def populate(db_url: str, template: Template, count: int, shift: Callable[[int], timedelta], *,
             batch: int = 250, log: Callable[[str], None] | None = None) -> None:
    """Write the organisations and ``count`` copies of the template patient into ``db_url``.

    The copies go in as driver-level ``executemany`` of pre-rendered values (JSON as text; on PostgreSQL
    by ``COPY``), one transaction per ``batch`` patients: the cheapest way to write rows, since this is
    set-up, not measured.
    ``log`` hears how far it got every :data:`PROGRESS_EVERY` copies.
    """
    database = Database(db_url)
    dialect = database.engine.dialect
    by_name = {t.name: t for t in tables()}
    quote = dialect.identifier_preparer.quote
    marker = "?" if dialect.paramstyle == "qmark" else "%s"
    statements: dict[str, str] = {}
    copies: dict[str, str] = {}  # PostgreSQL: COPY … FROM STDIN, several times faster than INSERTs
    processors: dict[str, list[Callable[[Any], Any] | None]] = {}
    for name, columns in template.columns.items():
        table = by_name[name]
        names, markers = ", ".join(quote(c) for c in columns), ", ".join([marker] * len(columns))
        statements[name] = f"INSERT INTO {quote(name)} ({names}) VALUES ({markers})"  # noqa: S608 - our own table names
        copies[name] = f"COPY {quote(name)} ({names}) FROM STDIN"
        json_columns = _json_columns(table)
        # JSON is already text; every other column goes through the dialect's own bind processing.
        processors[name] = [None if c in json_columns else table.c[c].type._cached_bind_processor(dialect)
                            for c in columns]
    order = [t.name for t in tables() if t.name in template.columns]
    try:
        with database.engine.begin() as connection:
            for name, rows in template.shared.items():
                connection.execute(insert(by_name[name]), rows)
        for indexes in _batches(count, batch):
            collected: dict[str, list[tuple[Any, ...]]] = {name: [] for name in order}
            for index in indexes:
                for name, rows in template.copy(index, shift(index), processors).items():
                    collected[name].extend(rows)
            with database.engine.begin() as connection:
                for name in order:
                    if database.is_postgresql:
                        _copy(connection, copies[name], collected[name])
                    else:
                        connection.exec_driver_sql(statements[name], collected[name])
            if log is not None and (indexes.stop - 1) // PROGRESS_EVERY > (indexes.start - 1) // PROGRESS_EVERY:
                log(f"    {indexes.stop - 1:,} of {count:,} copies written")
    finally:
        database.dispose()


def _copy(connection: Connection, statement: str, rows: list[tuple[Any, ...]]) -> None:
    """Write ``rows`` with PostgreSQL's COPY, through psycopg's own connection (in the caller's transaction)."""
    raw = connection.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def top_up_timers(db_url: str, total: int, enrolment_ids: Sequence[str], far: datetime, *, batch: int = 5_000) -> int:
    """Add timers due from ``far`` on (next year: never due during the run) until ``total`` are pending."""
    database = Database(db_url)
    try:
        with database.engine.connect() as connection:
            pending = int(connection.execute(select(func.count()).select_from(Timer.__table__)).scalar_one())
        missing = max(0, total - pending)
        timer_table = Timer.__table__
        for start in range(0, missing, batch):
            rows = [{"due_at": far + timedelta(seconds=j), "enrolment_id": enrolment_ids[j % len(enrolment_ids)],
                     "step_id": "review", "kind": "start", "iteration": 0, "seq": 1_000 + j // len(enrolment_ids)}
                    for j in range(start, min(start + batch, missing))]
            with database.engine.begin() as connection:
                connection.execute(insert(timer_table), rows)
        return missing
    finally:
        database.dispose()
