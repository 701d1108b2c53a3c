"""Reading and writing enrolment state: one ``enrolment`` row and one ``step_run`` row per step."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select
from zorgpad.engine._model import EnrolmentState
from zorgpad.engine._model import StepRun as StepRunState
from zorgpad.engine._states import EnrolmentStatus, StepState
from zorgpad.engine.store.resources import held_rows
from zorgpad.engine.store.tables import Enrolment, StepRun

_STEP_FIELDS = ("state", "iteration", "completions", "start_at", "ready_at", "due_at", "completed_at",
                "reminders_sent", "overdue", "escalated", "business_status", "reason", "owner_role", "owner", "rerun")


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
    query = select(Enrolment).where(col(Enrolment.id).in_(ids)).order_by(col(Enrolment.id)).with_for_update()
    return list(session.exec(query))


def load_state(session: Session, enrolment: Enrolment) -> EnrolmentState:
    """The evaluation state of ``enrolment`` (its steps from :func:`prefetch_steps` when it read them)."""
    runs = held_rows(session).pop((StepRun, "prefetched", enrolment.id), None)
    if runs is None:
        runs = session.exec(select(StepRun).where(StepRun.enrolment_id == enrolment.id)).all()
    return _state(session, enrolment, runs)


def prefetch_steps(session: Session, enrolments: Iterable[Enrolment]) -> None:
    """Read the steps of several enrolments in one query, for one :func:`load_state` of each later in the
    transaction (each enrolment's steps are taken once: a second load reads them again)."""
    ids = sorted({row.id for row in enrolments})
    if not ids:
        return
    runs: dict[str, list[StepRun]] = {enrolment_id: [] for enrolment_id in ids}
    query = (select(StepRun).where(col(StepRun.enrolment_id).in_(ids))
             .order_by(col(StepRun.enrolment_id), col(StepRun.step_id)))
    for run in session.exec(query):
        runs[run.enrolment_id].append(run)
    held = held_rows(session)
    for enrolment_id, found in runs.items():
        held[(StepRun, "prefetched", enrolment_id)] = found


def _state(session: Session, enrolment: Enrolment, runs: Iterable[StepRun]) -> EnrolmentState:
    held = held_rows(session)
    steps = {}
    for row in runs:
        held[(StepRun, row.enrolment_id, row.step_id)] = row  # save_state writes to these rows
        values = {name: getattr(row, name) for name in _STEP_FIELDS}
        values["state"] = StepState(row.state)
        steps[row.step_id] = StepRunState(step_id=row.step_id, **values)
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


def _step_row(session: Session, enrolment_id: str, step_id: str) -> StepRun | None:
    held = held_rows(session).get((StepRun, enrolment_id, step_id))
    if isinstance(held, StepRun) and held in session:
        return held
    return session.get(StepRun, (enrolment_id, step_id))


def save_state(session: Session, state: EnrolmentState, before: EnrolmentState | None,
               row: Enrolment | None = None) -> Enrolment:
    """Write ``state``; only the step rows that changed since ``before`` are touched."""
    if row is None:
        row = session.get(Enrolment, state.id)
    if row is None:
        row = Enrolment(id=state.id, patient=state.patient, pathway_id=state.pathway_id,
                        pathway_version=state.version, status=state.status.value, enrolled_at=state.enrolled_at)
        _forget_enrolments_of(session, state.patient)
    row.pathway_id, row.pathway_version = state.pathway_id, state.version
    row.status = state.status.value
    row.ended_at = state.ended_at
    row.end_reason = state.end_reason
    row.episode = state.episode
    if before is None or before.facts != state.facts:
        row.facts = _facts_to_json(state.facts)
    if before is None or before.dates != state.dates:
        row.dates = {name: when.isoformat() for name, when in state.dates.items()}
    row.revision += 1
    session.add(row)
    session.flush()
    for step_id, run in state.steps.items():
        old = before.steps.get(step_id) if before else None
        if old == run:
            continue
        stored = _step_row(session, state.id, step_id) if old is not None else None
        if stored is None:
            stored = StepRun(enrolment_id=state.id, step_id=step_id, state=run.state.value)
        for name in _STEP_FIELDS:
            value = getattr(run, name)
            setattr(stored, name, value.value if isinstance(value, StepState) else value)
        session.add(stored)
    if before is not None:
        for gone in set(before.steps) - set(state.steps):
            stored = _step_row(session, state.id, gone)
            if stored is not None:
                session.delete(stored)
    return row


def active_enrolments_of(session: Session, patient: str, *, lock: bool = False) -> list[Enrolment]:
    """The patient's active enrolments (locked in id order when ``lock``).

    The patient's enrolment rows are read once per transaction (a Bundle of one patient's record asks for
    every entry) and filtered on their current status here, so an enrolment that ends or starts later in
    the transaction is seen as it is then; :func:`save_state` forgets the rows when it adds one.
    """
    held = held_rows(session)
    rows: list[Enrolment] | None = held.get(_of_patient(patient, locked=True))
    if rows is None and not lock:
        rows = held.get(_of_patient(patient, locked=False))
    if rows is None:
        query = select(Enrolment).where(Enrolment.patient == patient).order_by(col(Enrolment.id))
        if lock:
            query = query.with_for_update()
        rows = held[_of_patient(patient, locked=lock)] = list(session.exec(query))
    return [row for row in rows if row.status == EnrolmentStatus.ACTIVE.value]


def _of_patient(patient: str, *, locked: bool) -> tuple[Any, ...]:
    return (Enrolment, "of-patient", patient, locked)


def _forget_enrolments_of(session: Session, patient: str) -> None:
    held = held_rows(session)
    for locked in (True, False):
        held.pop(_of_patient(patient, locked=locked), None)
