"""Reading and writing enrolment state: one ``enrolment`` row and one ``step_run`` row per step."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, insert, update
from sqlalchemy import select as select_core
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select
from zorgpad.engine._model import EnrolmentState
from zorgpad.engine._model import StepRun as StepRunState
from zorgpad.engine._states import EnrolmentStatus, StepState
from zorgpad.engine.store import batched
from zorgpad.engine.store.resources import held_rows, note_written
from zorgpad.engine.store.tables import Enrolment, StepRun

_STEP_FIELDS = ("state", "iteration", "completions", "start_at", "ready_at", "due_at", "completed_at",
                "reminders_sent", "overdue", "escalated", "business_status", "reason", "owner_role", "owner", "rerun")


_ENROLMENT = Enrolment.__table__  # type: ignore[attr-defined]
_STEP_RUN = StepRun.__table__  # type: ignore[attr-defined]
_STEPS_OF = select_core(_STEP_RUN).where(_STEP_RUN.c.enrolment_id == bindparam("enrolment"))
_STEPS_OF_MANY = (select_core(_STEP_RUN).where(_STEP_RUN.c.enrolment_id.in_(bindparam("enrolments", expanding=True)))
                  .order_by(_STEP_RUN.c.enrolment_id, _STEP_RUN.c.step_id))
# Statements built once (SQLAlchemy would otherwise walk each new one to make its cache key). An UPDATE
# sets the columns named in its parameters.
_UPDATE_ENROLMENT = update(_ENROLMENT).where(_ENROLMENT.c.id == bindparam("k_id"))
_INSERT_STEPS = insert(_STEP_RUN)
_UPDATE_STEP = update(_STEP_RUN).where(_STEP_RUN.c.enrolment_id == bindparam("k_enrolment"),
                                       _STEP_RUN.c.step_id == bindparam("k_step"))


def _facts_to_json(facts: dict[str, dict[str, datetime]]) -> dict[str, Any]:
    return {name: {ref: when.isoformat() for ref, when in refs.items()} for name, refs in facts.items()}


def _facts_from_json(data: dict[str, Any]) -> dict[str, dict[str, datetime]]:
    return {name: {ref: datetime.fromisoformat(when) for ref, when in refs.items()}
            for name, refs in (data or {}).items()}


def lock_enrolments(session: Session, enrolment_ids: Iterable[str]) -> list[Enrolment]:
    """Lock the enrolment rows in id order (a fixed order, so two workers never deadlock)."""
    ids = sorted(set(enrolment_ids))
    if not ids:
        return []
    return list(session.exec(_LOCK_ENROLMENTS, params={"ids": ids}))


# A row read earlier without the lock is refreshed.
_LOCK_ENROLMENTS = (select(Enrolment).where(col(Enrolment.id).in_(bindparam("ids", expanding=True)))
                    .order_by(col(Enrolment.id)).with_for_update().execution_options(populate_existing=True))


def load_state(session: Session, enrolment: Enrolment) -> EnrolmentState:
    """The evaluation state of ``enrolment`` (its steps from :func:`prefetch_steps` when it read them)."""
    runs = held_rows(session).pop((StepRun, "prefetched", enrolment.id), None)
    if runs is None:
        runs = session.connection().execute(_STEPS_OF, {"enrolment": enrolment.id}).mappings().all()
    return _state(enrolment, runs)


def prefetch_steps(session: Session, enrolments: Iterable[Enrolment]) -> None:
    """Read the steps of several enrolments in one query, for one :func:`load_state` of each later in the
    transaction (each enrolment's steps are taken once: a second load reads them again)."""
    ids = sorted({row.id for row in enrolments})
    if not ids:
        return
    runs: dict[str, list[Mapping[str, Any]]] = {enrolment_id: [] for enrolment_id in ids}
    result = session.connection().execute(_STEPS_OF_MANY, {"enrolments": ids})
    names = list(result.keys())
    for values in result:
        run = dict(zip(names, values, strict=True))  # cheaper than a RowMapping per row
        runs[run["enrolment_id"]].append(run)
    held = held_rows(session)
    for enrolment_id, found in runs.items():
        held[(StepRun, "prefetched", enrolment_id)] = found


def _state(enrolment: Enrolment, runs: Iterable[Mapping[str, Any]]) -> EnrolmentState:
    steps = {}
    for row in runs:
        values = {name: row[name] for name in _STEP_FIELDS}
        values["state"] = StepState(row["state"])
        steps[row["step_id"]] = StepRunState(step_id=row["step_id"], **values)
    return EnrolmentState(
        id=enrolment.id,
        patient=enrolment.patient,
        pathway_id=enrolment.pathway_id,
        version=enrolment.pathway_version,
        enrolled_at=enrolment.enrolled_at,
        status=EnrolmentStatus(enrolment.status),
        ended_at=enrolment.ended_at,
        end_reason=enrolment.end_reason,
        steps=steps,
        facts=_facts_from_json(enrolment.facts),
        dates={name: datetime.fromisoformat(when) for name, when in (enrolment.dates or {}).items()},
        episode=enrolment.episode,
    )


def save_state(session: Session, state: EnrolmentState, before: EnrolmentState | None,
               row: Enrolment | None = None) -> Enrolment:
    """Write ``state``; only the step rows that changed since ``before`` are touched.

    A new enrolment's row goes in through the session; after that its row and its changed steps are
    updated by core statements that wait to go with the transaction's other rows (see
    :mod:`zorgpad.engine.store.batched`), and the session's enrolment object is kept in step without
    being flushed.
    """
    if row is None:
        row = session.get(Enrolment, state.id)
    values: dict[str, Any] = {
        "pathway_id": state.pathway_id, "pathway_version": state.version, "status": state.status.value,
        "ended_at": state.ended_at, "end_reason": state.end_reason, "episode": state.episode}
    if before is None or before.facts != state.facts:
        values["facts"] = _facts_to_json(state.facts)
    if before is None or before.dates != state.dates:
        values["dates"] = {name: when.isoformat() for name, when in state.dates.items()}
    connection = session.connection()
    if row is None:
        row = Enrolment(id=state.id, patient=state.patient, enrolled_at=state.enrolled_at, revision=1, **values)
        session.add(row)
        session.flush()
        _forget_enrolments_of(session, state.patient)
    else:
        values["revision"] = row.revision + 1
        batched.add(connection, _ENROLMENT, [{"k_id": state.id, **values}], statement=_UPDATE_ENROLMENT)
        for name, value in values.items():
            set_committed_value(row, name, value)
        note_written(session, row, created=False)
    changed: list[dict[str, Any]] = []
    added: list[dict[str, Any]] = []
    for step_id, run in state.steps.items():
        old = before.steps.get(step_id) if before else None
        if old == run:
            continue
        fields = {name: getattr(run, name) for name in _STEP_FIELDS}
        fields["state"] = run.state.value
        if old is None:
            added.append({"enrolment_id": state.id, "step_id": step_id, **fields})
        else:
            changed.append({"k_enrolment": state.id, "k_step": step_id, **fields})
    batched.add(connection, _STEP_RUN, changed, statement=_UPDATE_STEP)
    if added:
        connection.execute(_INSERT_STEPS, added)
    gone = sorted(set(before.steps) - set(state.steps)) if before is not None else []
    if gone:
        connection.execute(delete(_STEP_RUN).where(_STEP_RUN.c.enrolment_id == state.id,
                                                   _STEP_RUN.c.step_id.in_(gone)))
    return row


def active_enrolments_of(session: Session, patient: str, *, lock: bool = False) -> list[Enrolment]:
    """The patient's active enrolments (locked in id order when ``lock``).

    On SQLite the patient's enrolment rows are read once per transaction (a Bundle of one patient's record
    asks for every entry) and filtered on their current status here, so an enrolment that ends or starts
    later in the transaction is seen as it is then; :func:`save_state` forgets the rows when it adds one.
    """
    held = held_rows(session)
    # Only SQLite's write transaction keeps others from enrolling the patient meanwhile; on PostgreSQL
    # every call reads again (row locks do not stop new rows).
    keep = session.get_bind().dialect.name == "sqlite"
    rows: list[Enrolment] | None = held.get(_of_patient(patient, locked=True)) if keep else None
    if rows is None and keep and not lock:
        rows = held.get(_of_patient(patient, locked=False))
    if rows is None:
        query = select(Enrolment).where(Enrolment.patient == patient).order_by(col(Enrolment.id))
        if lock:
            query = query.with_for_update().execution_options(populate_existing=True)
        rows = list(session.exec(query))
        if keep:
            held[_of_patient(patient, locked=lock)] = rows
    return [row for row in rows if row.status == EnrolmentStatus.ACTIVE.value]


def _of_patient(patient: str, *, locked: bool) -> tuple[Any, ...]:
    return (Enrolment, "of-patient", patient, locked)


def _forget_enrolments_of(session: Session, patient: str) -> None:
    held = held_rows(session)
    for locked in (True, False):
        held.pop(_of_patient(patient, locked=locked), None)
