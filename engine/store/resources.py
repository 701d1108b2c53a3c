"""The FHIR resource store: current versions, full history, and search index rows.

Resources are kept as plain JSON dicts; the FHIR interface validates them once at the boundary.
"""

from __future__ import annotations

import copy
import re
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import (
    CompoundSelect,
    Select,
    String,
    Table,
    TextClause,
    bindparam,
    cast,
    delete,
    event,
    literal_column,
    null,
    text,
    union_all,
    update,
)
from sqlalchemy import select as select_core
from sqlalchemy.orm import SessionTransaction, class_mapper, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key
from sqlmodel import Session, SQLModel
from zorgpad.engine.store import batched
from zorgpad.engine.store._types import UTCDateTime
from zorgpad.engine.store.search_params import params_for
from zorgpad.engine.store.tables import (
    ResourceVersion,
    SearchDate,
    SearchReference,
    SearchToken,
    StoredResource,
)

JSON = dict[str, Any]
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")

__all__ = ["expect_writes", "fresh_id", "get_resource", "held_rows", "new_id", "note_written", "patient_of",
           "prefetch_resources", "put_resource", "read_cache", "resources_of_patient", "tokens_of", "values_at"]


def new_id() -> str:
    """A fresh server-assigned resource id."""
    return str(uuid.uuid4())


def fresh_id(session: Session, resource_type: str) -> str:
    """A fresh server-assigned id for a resource of ``resource_type`` this transaction is about to create:
    known to be absent, so :func:`put_resource` inserts it with the transaction's waiting rows."""
    rid = new_id()
    held_rows(session)[(resource_type, rid)] = None
    return rid


def patient_of(resource: Mapping[str, Any]) -> str | None:
    """``Patient/id`` of the patient a resource is about, if any."""
    if resource.get("resourceType") == "Patient":
        return f"Patient/{resource.get('id')}"
    for element in ("subject", "patient", "for", "beneficiary"):
        value = resource.get(element)
        if isinstance(value, Mapping):
            ref = value.get("reference")
            if isinstance(ref, str):
                # Relative (Patient/1) or absolute (https://…/Patient/1[/_history/2]) references.
                parts = ref.split("/_history/")[0].rstrip("/").split("/")
                if len(parts) >= 2 and parts[-2] == "Patient" and _FHIR_ID.match(parts[-1]):
                    return f"Patient/{parts[-1]}"
    return None


_READ_CACHE = "zorgpad.read_cache"
_HELD = "zorgpad.held_resources"
#: Keys of the held resources whose rows this transaction has locked (PostgreSQL; see :func:`_current`).
_LOCKED = "zorgpad.locked_resources"
#: Objects whose rows core statements wrote, one list per open savepoint (the first: outside any).
_WRITTEN_OBJECTS = "zorgpad.written_objects"
_ENDED_FRAME = "zorgpad.ended_savepoint_objects"


def read_cache(session: Session) -> dict[tuple[frozenset[str], Any], Any]:
    """Reads worth keeping for the rest of the transaction, keyed ``(resource types read, key)``.

    :func:`put_resource` drops every entry that read the type it writes, and every entry goes when the
    transaction or a savepoint ends, so an entry never outlives what it was read from.
    """
    cache: dict[tuple[frozenset[str], Any], Any] = session.info.setdefault(_READ_CACHE, {})
    return cache


@event.listens_for(Session, "after_transaction_end")
def _forget_reads(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is not None and not transaction.nested:
        return  # the inner transaction of a flush, not the end of a transaction or savepoint
    session.info.pop(_READ_CACHE, None)
    session.info.pop(_HELD, None)
    session.info.pop(_LOCKED, None)
    frames: list[list[tuple[Any, bool]]] | None = session.info.get(_WRITTEN_OBJECTS)
    if transaction.nested and frames and len(frames) > 1:
        ended = frames.pop()
        frames[-1].extend(ended)  # kept if the savepoint is released; undone below if it rolled back
        session.info[_ENDED_FRAME] = ended


@event.listens_for(Session, "after_transaction_create")
def _open_frame(session: Session, transaction: SessionTransaction) -> None:
    if transaction.nested:
        session.info.setdefault(_WRITTEN_OBJECTS, [[]]).append([])


@event.listens_for(Session, "after_soft_rollback")
def _undo_written(session: Session, previous: SessionTransaction) -> None:
    """After a savepoint rolls back, the session's objects that core writes changed inside it no longer
    match the database: the ones it created leave the session, the others are reloaded when next read.
    (The ORM does this itself for what it flushed; core writes it cannot see.)"""
    if not previous.nested:
        return
    for stored, created in session.info.pop(_ENDED_FRAME, []):
        if stored in session:
            if created:
                session.expunge(stored)
            else:
                session.expire(stored)


def note_written(session: Session, stored: Any, *, created: bool) -> None:
    """Record that a core statement wrote ``stored``'s row (see :func:`_undo_written`)."""
    session.info.setdefault(_WRITTEN_OBJECTS, [[]])[-1].append((stored, created))


def held_rows(session: Session) -> dict[Any, Any]:
    """Rows read in this transaction that later statements of it want again, held until it (or a
    savepoint) ends: the session's identity map only keeps rows that something else still refers to."""
    held: dict[Any, Any] = session.info.setdefault(_HELD, {})
    return held


def _forget_written(session: Session, rtype: str) -> None:
    """Drop the held reads that read resources of type ``rtype`` (one is being written)."""
    cache: dict[tuple[frozenset[str], Any], Any] | None = session.info.get(_READ_CACHE)
    if cache:
        for key in [k for k in cache if rtype in k[0]]:
            del cache[key]


def get_resource(session: Session, resource_type: str, resource_id: str) -> StoredResource | None:
    """The current version of a resource, deleted or not.

    A row (or its absence) read once in a transaction is held until it ends (see :func:`held_rows`).
    """
    held = held_rows(session)
    key = (resource_type, resource_id)
    if key not in held:
        known = session.identity_map.get(identity_key(StoredResource, key))
        if known is None:
            row = session.connection().execute(_READ_ROW, {"k_type": resource_type, "k_id": resource_id}
                                               ).mappings().first()
            known = None if row is None else _attached(session, dict(row))
        held[key] = known
    found: StoredResource | None = held[key]
    return found


def prefetch_resources(session: Session, resource_type: str, resource_ids: Iterable[str]) -> None:
    """Read several resources of one type in one query, for :func:`get_resource` later in the transaction."""
    held = held_rows(session)
    _hold(session, {(resource_type, rid) for rid in resource_ids if (resource_type, rid) not in held}, locking=False)


def expect_writes(session: Session, keys: Iterable[tuple[str, str]]) -> None:
    """Say which resources (``(type, id)``) the transaction is about to write.

    They are read now, in one query (locked, on PostgreSQL), so that :func:`put_resource` needs no query of
    its own: an absent one is inserted with the history and index rows (see :mod:`batched`; if another
    transaction creates it first, see :func:`_current`), an existing one updated at once.
    """
    held = held_rows(session)
    locking = session.get_bind().dialect.name != "sqlite"
    locked = _locked(session)
    _hold(session, {key for key in keys if key not in held
                    or (locking and held[key] is not None and key not in locked)}, locking=locking)


def _hold(session: Session, wanted: set[tuple[str, str]], *, locking: bool) -> None:
    """Read the resources ``wanted`` (``FOR UPDATE`` when ``locking``) in one query and hold them, or their
    absence, for the rest of the transaction (see :func:`held_rows`)."""
    if not wanted:
        return
    found = session.connection().execute(_READ_KEYS_LOCKED if locking else _READ_KEYS, {
        "types": sorted({t for t, _ in wanted}), "ids": sorted({i for _, i in wanted})}).mappings()
    rows = {(row["resource_type"], row["id"]): dict(row) for row in found}
    held, locked = held_rows(session), _locked(session)
    for key in wanted:
        row = rows.get(key)
        held[key] = None if row is None else _attached(session, row)  # brings a known object in step
        if locking and row is not None:
            locked.add(key)


def _locked(session: Session) -> set[tuple[str, str]]:
    locked: set[tuple[str, str]] = session.info.setdefault(_LOCKED, set())
    return locked


_RESOURCE = StoredResource.__table__  # type: ignore[attr-defined]
_VERSION = ResourceVersion.__table__  # type: ignore[attr-defined]
_KEY = (_RESOURCE.c.resource_type == bindparam("k_type")) & (_RESOURCE.c.id == bindparam("k_id"))
_READ_ROW = select_core(_RESOURCE).where(_KEY)
_READ_ROW_LOCKED = _READ_ROW.with_for_update()
_READ_KEYS = select_core(_RESOURCE).where(_RESOURCE.c.resource_type.in_(bindparam("types", expanding=True)),
                                          _RESOURCE.c.id.in_(bindparam("ids", expanding=True)))
_READ_KEYS_LOCKED = _READ_KEYS.with_for_update()


def _insert_or_nothing(table: Table, columns: tuple[str, ...]) -> TextClause:
    """``INSERT … ON CONFLICT DO NOTHING RETURNING 1`` of ``columns`` of ``table``, as text with typed
    parameters: SQLAlchemy 2.0 never caches its dialects' ``on_conflict_do_nothing()`` inserts, so each
    execution compiled the statement anew (a tenth of a ``$process-message``). Both dialects speak this SQL.
    """
    names = ", ".join(f'"{table.c[name].name}"' for name in columns)  # our own metadata, never input
    values = ", ".join(f":{name}" for name in columns)
    sql = f'INSERT INTO "{table.name}" ({names}) VALUES ({values}) ON CONFLICT DO NOTHING RETURNING 1'  # noqa: S608
    statement = text(sql).bindparams(*(bindparam(name, type_=table.c[name].type) for name in columns))
    return batched.touching(statement, table)


#: The columns a write changes (the key never does).
_WRITTEN = ("version_id", "last_updated", "deleted", "patient", "content")
#: Insert a resource's first version, or nothing when the resource is already there (no row returned:
#: psycopg reports no rowcount for ``ON CONFLICT DO NOTHING``).
_INSERT_NEW = _insert_or_nothing(_RESOURCE, ("resource_type", "id", *_WRITTEN))
_UPDATE_ROW = update(_RESOURCE).where(_KEY)


class _Unknown:
    """Whether the row exists is not known yet (see :func:`_current`)."""


class _Stale:
    """The row exists, but this transaction read it without a lock (see :func:`_current`)."""


_UNKNOWN = _Unknown()
_STALE = _Stale()


def _attached(session: Session, values: Mapping[str, Any]) -> StoredResource:
    """The session's object for a row known to be in the database, made from ``values`` without a query.

    The object is built the way the ORM builds loaded rows, so it starts clean: put_resource writes the
    row itself and only keeps the object in step (see :func:`_keep_in_step`).
    """
    known: StoredResource | None = session.identity_map.get(
        identity_key(StoredResource, (values["resource_type"], values["id"])))
    if known is not None:
        _keep_in_step(known, values)
        return known
    stored: StoredResource = class_mapper(StoredResource).class_manager.new_instance()
    for name, value in values.items():
        set_committed_value(stored, name, value)
    make_transient_to_detached(stored)
    session.add(stored)
    return stored


def _keep_in_step(stored: StoredResource, values: Mapping[str, Any]) -> None:
    for name in _WRITTEN:
        set_committed_value(stored, name, values[name])


def _current(session: Session, rtype: str, rid: str) -> StoredResource | _Unknown | _Stale | None:
    """What this transaction knows, without a query, of the stored row of a resource about to be written.

    A row the transaction has not read is :data:`_UNKNOWN`: put_resource then tries the insert first (most
    writes are of new resources) and reads the row, locked, only when it is there. On SQLite the write
    transaction (``BEGIN IMMEDIATE``) excludes every other writer, so a row the transaction has read is
    current. Elsewhere it is current once the transaction has locked it (read it ``FOR UPDATE`` or written
    it), and :data:`_STALE` before (rows are never removed, so it is still there: put_resource reads it
    again, locked). A resource read as absent is None on every database: put_resource inserts it with the
    transaction's waiting rows. On PostgreSQL another transaction may create it first; the insert then fails
    on the primary key, and :meth:`Database.run` runs the transaction again, which finds the row.
    """
    held = held_rows(session)
    known: StoredResource | None
    if (rtype, rid) in held:
        known = held[(rtype, rid)]
    else:
        known = session.identity_map.get(identity_key(StoredResource, (rtype, rid)))
        if known is None:
            return _UNKNOWN
    if known is None or session.get_bind().dialect.name == "sqlite" or (rtype, rid) in _locked(session):
        return known
    return _STALE


def _read_locked(session: Session, rtype: str, rid: str) -> StoredResource:
    """The row of a resource known to exist, read (``FOR UPDATE`` on PostgreSQL) into the session."""
    locking = session.get_bind().dialect.name != "sqlite"
    row = session.connection().execute(_READ_ROW_LOCKED if locking else _READ_ROW,
                                       {"k_type": rtype, "k_id": rid}).mappings().one()
    return _attached(session, dict(row))  # re-read under the lock: an object already there is brought in step


def _versioned(resource: Mapping[str, Any], version: int, now: datetime) -> JSON:
    content: JSON = copy.deepcopy(dict(resource))
    meta = dict(content.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = now.astimezone(UTC).isoformat().replace("+00:00", "Z")
    content["meta"] = meta
    return content


def put_resource(session: Session, resource: Mapping[str, Any], now: datetime, *,
                 method: str = "PUT", deleted: bool = False) -> StoredResource:
    """Store a new version of ``resource`` (which must have ``resourceType`` and ``id``).

    Sets ``meta.versionId`` and ``meta.lastUpdated``, writes history and rewrites the search index. The
    rows are written at once with core statements; the session's object for the resource is kept in step
    without being flushed.
    """
    rtype, rid = str(resource["resourceType"]), str(resource["id"])
    _forget_written(session, rtype)
    connection = session.connection()
    current = _current(session, rtype, rid)
    content = _versioned(resource, 1, now)
    values = {"version_id": 1, "last_updated": now, "deleted": deleted, "patient": patient_of(content),
              "content": content}
    if current is _STALE:
        current = _read_locked(session, rtype, rid)
    created = False
    if current is None:  # read as absent (see _current): the row waits with the others
        batched.add(connection, _RESOURCE, [{"resource_type": rtype, "id": rid, **values}])
        created = True
    elif current is _UNKNOWN:
        created = connection.execute(_INSERT_NEW, {"resource_type": rtype, "id": rid, **values}).first() is not None
        if not created:
            current = _read_locked(session, rtype, rid)
    if created:
        previous = None
        current = _attached(session, {"resource_type": rtype, "id": rid, **values})
    else:
        assert isinstance(current, StoredResource)
        previous = None if current.deleted else current.content
        values["version_id"] = current.version_id + 1
        values["content"] = content = _versioned(resource, current.version_id + 1, now)
        if connection.execute(_UPDATE_ROW, {"k_type": rtype, "k_id": rid, **values}).rowcount != 1:
            raise RuntimeError(f"{rtype}/{rid}: the stored row this transaction read is gone")
        _keep_in_step(current, values)
    note_written(session, current, created=created)
    batched.add(connection, _VERSION, [{
        "resource_type": rtype, "id": rid, "version_id": values["version_id"], "last_updated": now,
        "method": method, "deleted": deleted, "content": None if deleted else content}])
    existed = not created
    _reindex(session, content, deleted, existed=existed)
    held_rows(session)[(rtype, rid)] = current
    _locked(session).add((rtype, rid))  # the write locks the row until the transaction ends
    for listener in session.info.get("resource_listeners", ()):
        listener(session, current, previous, now)
    return current


def resources_of_patient(session: Session, patient: str, resource_types: set[str] | None = None
                         ) -> Iterator[JSON]:
    """The current, not deleted resources about ``patient`` (``Patient/id``), the Patient included.

    With ``resource_types``, the answer is kept for the rest of the transaction (see :func:`read_cache`)
    until a resource of one of those types is written.
    """
    if not resource_types:
        yield from _read_resources_of_patient(session, patient, None)
        return
    cache = read_cache(session)
    key = (frozenset(resource_types), ("resources-of-patient", patient))
    if key not in cache:
        cache[key] = list(_read_resources_of_patient(session, patient, resource_types))
    yield from cache[key]


def _read_resources_of_patient(session: Session, patient: str, resource_types: set[str] | None) -> Iterator[JSON]:
    if resource_types:
        found = session.connection().execute(_OF_PATIENT_TYPED, {"patient": patient, "types": sorted(resource_types)})
    else:
        found = session.connection().execute(_OF_PATIENT, {"patient": patient})
    for (content,) in found:
        yield content


_OF_PATIENT = select_core(_RESOURCE.c.content).where(_RESOURCE.c.patient == bindparam("patient"),
                                                     _RESOURCE.c.deleted.is_(False))
_OF_PATIENT_TYPED = _OF_PATIENT.where(_RESOURCE.c.resource_type.in_(bindparam("types", expanding=True)))


# -- search index -------------------------------------------------------------------------------------

#: The value columns of each index table; a row is ``(param, *values)``.
_INDEX_COLUMNS: dict[type[SQLModel], tuple[str, ...]] = {
    SearchToken: ("param", "system", "code"),
    SearchReference: ("param", "target"),
    SearchDate: ("param", "start", "end"),
}

IndexRows = dict[type[SQLModel], list[tuple[Any, ...]]]


def index_rows(resource: JSON) -> IndexRows:
    """The search index rows of ``resource``, per index table, as tuples of :data:`_INDEX_COLUMNS`."""
    rows: IndexRows = {table: [] for table in _INDEX_COLUMNS}
    for param, (kind, paths) in params_for(resource["resourceType"]).items():
        for path in paths:
            for value in values_at(resource, path.split(".")):
                if kind == "token":
                    rows[SearchToken].extend((param, system, code[:256]) for system, code in tokens_of(value))
                elif kind == "reference":
                    ref = value.get("reference") if isinstance(value, Mapping) else None
                    if isinstance(ref, str):
                        rows[SearchReference].append((param, ref[:256]))
                else:
                    start, end = _period(value)
                    if start is not None or end is not None:
                        rows[SearchDate].append((param, start, end))
    return rows


def _reindex(session: Session, resource: JSON, deleted: bool, *, existed: bool) -> None:
    """Bring the resource's index rows to what its content asks for, touching only the rows that differ.

    The rows in the database are read (not derived from the previous content), so rows written under
    older search parameters are brought up to date too: one query for all three index tables. A
    resource that did not exist has no rows.
    """
    rtype, rid = resource["resourceType"], resource["id"]
    wanted = {table: [] for table in _INDEX_COLUMNS} if deleted else index_rows(resource)
    connection = session.connection()
    missing = {table: Counter(rows) for table, rows in wanted.items()}
    if existed:
        surplus: dict[type[SQLModel], list[int]] = {table: [] for table in _INDEX_COLUMNS}
        for kind, pk, *values in connection.execute(_READ_INDEX, {"k_type": rtype, "k_id": rid}):
            table, picked = _INDEX_KINDS[kind]
            row = tuple(values[i] for i in picked)
            if missing[table][row] > 0:
                missing[table][row] -= 1
            else:
                surplus[table].append(pk)
        for table, pks in surplus.items():
            if pks:
                connection.execute(_DELETE_INDEX[table], {"pks": pks})
    for table, rows in missing.items():
        columns = _INDEX_COLUMNS[table]
        batched.add(connection, table.__table__, [  # type: ignore[attr-defined]
            {"resource_type": rtype, "resource_id": rid, **dict(zip(columns, row, strict=True))}
            for row in rows.elements()])


def _read_index() -> CompoundSelect[Any]:
    """One resource's rows of all three index tables as ``(kind, pk, param, system, code, target, start,
    end)``, each table's row filling its own columns (see :data:`_INDEX_KINDS`)."""
    token, reference, moment = (table.__table__ for table in _INDEX_COLUMNS)  # type: ignore[attr-defined]

    def owned(core: Table, kind: int, *values: Any) -> Select[Any]:
        owner = (core.c.resource_type == bindparam("k_type")) & (core.c.resource_id == bindparam("k_id"))
        return select_core(literal_column(str(kind)), core.c.pk, *values).where(owner)

    # Typed: PostgreSQL matches a union's column types pairwise, and would take two bare NULLs for text.
    def text_null() -> Any:
        return cast(null(), String())

    def date_null() -> Any:
        return cast(null(), UTCDateTime())

    return union_all(
        owned(token, 0, token.c.param, token.c.system, token.c.code, text_null(), date_null(), date_null()),
        owned(reference, 1, reference.c.param, text_null(), text_null(), reference.c.target, date_null(),
              date_null()),
        owned(moment, 2, moment.c.param, text_null(), text_null(), text_null(), moment.c.start, moment.c.end))


_READ_INDEX = _read_index()
#: Per kind of :func:`_read_index` row: its table, and which of its values make the table's row tuple.
_INDEX_KINDS: dict[int, tuple[type[SQLModel], tuple[int, ...]]] = {
    0: (SearchToken, (0, 1, 2)), 1: (SearchReference, (0, 3)), 2: (SearchDate, (0, 4, 5))}
_DELETE_INDEX = {table: delete(table.__table__).where(  # type: ignore[attr-defined]
    table.__table__.c.pk.in_(bindparam("pks", expanding=True))) for table in _INDEX_COLUMNS}  # type: ignore[attr-defined]


def values_at(node: Any, parts: list[str]) -> Iterator[Any]:
    """Every value at a dotted element path (``name[x]`` matches any choice type), through lists."""
    if isinstance(node, list):
        for item in node:
            yield from values_at(item, parts)
        return
    if not parts:
        yield node
        return
    if not isinstance(node, Mapping):
        return
    head = parts[0]
    if head.endswith("[x]"):
        stem = head[:-3]
        for key, value in node.items():
            if key.startswith(stem) and key[len(stem):len(stem) + 1].isupper():
                yield from values_at(value, parts[1:])
    elif head in node:
        yield from values_at(node[head], parts[1:])


def tokens_of(value: Any) -> Iterator[tuple[str | None, str]]:
    """``(system, code)`` pairs of a code, Coding, CodeableConcept, Identifier or boolean."""
    if isinstance(value, str | bool):
        yield None, str(value).lower() if isinstance(value, bool) else value
    elif isinstance(value, Mapping):
        if "coding" in value:
            for coding in value.get("coding") or []:
                if isinstance(coding, Mapping) and coding.get("code") is not None:
                    yield coding.get("system"), str(coding["code"])
        elif "value" in value:  # Identifier
            yield value.get("system"), str(value["value"])
        elif "code" in value:  # Coding
            yield value.get("system"), str(value["code"])


def parse_fhir_datetime(text: str) -> tuple[datetime, datetime]:
    """The span a FHIR date/dateTime/instant covers, as aware UTC datetimes ``[start, end)``."""
    if len(text) == 4:
        start = datetime(int(text), 1, 1, tzinfo=UTC)
        return start, start.replace(year=start.year + 1)
    if len(text) == 7:
        year, month = int(text[:4]), int(text[5:7])
        start = datetime(year, month, 1, tzinfo=UTC)
        return start, (datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC))
    if len(text) == 10:
        day = date.fromisoformat(text)
        start = datetime.combine(day, time(), tzinfo=UTC)
        return start, datetime.fromordinal(day.toordinal() + 1).replace(tzinfo=UTC)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment, moment


def _period(value: Any) -> tuple[datetime | None, datetime | None]:
    try:
        if isinstance(value, str):
            return parse_fhir_datetime(value)
        if isinstance(value, Mapping):
            start = parse_fhir_datetime(value["start"])[0] if isinstance(value.get("start"), str) else None
            end = parse_fhir_datetime(value["end"])[1] if isinstance(value.get("end"), str) else None
            return start, end
    except (ValueError, KeyError):
        return None, None
    return None, None
