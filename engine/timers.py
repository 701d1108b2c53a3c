"""The tick: fire every durable timer due by ``now``, exactly once.

Each batch is one transaction: the timers are claimed (PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so two
tickers take disjoint batches; SQLite: ``BEGIN IMMEDIATE``, one writer at a time), their enrolments are
locked in id order, each timer's effects are written, and the timers are deleted. A crash before commit
leaves every timer of the batch in place to fire on the next tick; a commit leaves none to fire again.
Timers missed while nothing ticked are simply due, and fire on the next tick.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlmodel import Session, col, select
from zorgpad.engine._apply import apply_outcome, resources_written
from zorgpad.engine._dsl import Pathway
from zorgpad.engine._evaluate import evaluate
from zorgpad.engine._model import EnrolmentState, Outcome, TimerFired, TimerKind
from zorgpad.engine.registry import Registry
from zorgpad.engine.store.audit import Actor
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.enrolments import load_state, lock_enrolments, prefetch_steps
from zorgpad.engine.store.resources import expect_writes, prefetch_resources
from zorgpad.engine.store.tables import Timer

TICK_ACTOR = Actor("system:tick")


def tick(db: Database, registry: Registry, now: datetime, *, batch_size: int = 200) -> int:
    """Fire every timer due by ``now``; return how many fired."""
    fired = 0
    while True:
        count = db.run(lambda session: fire_batch(session, registry, now, batch_size, db.is_postgresql))
        if count == 0:
            return fired
        fired += count


def _pathway(registry: Registry, state: EnrolmentState) -> type[Pathway]:
    return registry.get(state.pathway_id, state.version)


def _event(timer: Timer) -> TimerFired:
    return TimerFired(TimerKind(timer.kind), timer.step_id, timer.iteration, timer.seq)


def fire_batch(session: Session, registry: Registry, now: datetime, batch_size: int, skip_locked: bool) -> int:
    """Claim and fire up to ``batch_size`` due timers in the caller's transaction."""
    query = select(Timer).where(Timer.due_at <= now).order_by(col(Timer.due_at), col(Timer.id)).limit(batch_size)
    if skip_locked:
        query = query.with_for_update(skip_locked=True)
    timers = list(session.exec(query))
    if not timers:
        return 0
    rows = {row.id: row for row in lock_enrolments(session, {t.enrolment_id for t in timers})}
    # Delete the whole batch first, in one statement: an outcome may cancel its step's timers, a fired
    # one included, and every claimed timer is gone at commit whatever its outcome.
    table = Timer.__table__  # type: ignore[attr-defined]
    session.connection().execute(delete(table).where(table.c.id.in_([t.id for t in timers])))
    for timer in timers:
        session.expunge(timer)  # gone: a timer inserted later may take its id
    # One query each for the steps of every enrolment and for their patients (notices name the patient).
    prefetch_steps(session, rows.values())
    prefetch_resources(session, "Patient", {row.patient.split("/", 1)[1] for row in rows.values()})
    # Every timer is evaluated first (evaluation reads nothing), so that one query looks up the resources
    # all the outcomes write. Those outcomes are applied, except that a later timer of an enrolment is
    # evaluated again on the state its predecessor's outcome left once applied (applying assigns owners).
    states = {row.id: load_state(session, row) for row in rows.values()}
    planned: dict[int, Outcome] = {}
    ahead = dict(states)
    for index, timer in enumerate(timers):
        state = ahead.get(timer.enrolment_id)
        if state is not None:
            planned[index] = evaluate(_pathway(registry, state), state, _event(timer), now)
            ahead[timer.enrolment_id] = planned[index].state
    expect_writes(session, (key for outcome in planned.values()
                            for key in resources_written(_pathway(registry, outcome.state), outcome)))
    applied: set[str] = set()
    for index, timer in enumerate(timers):
        row = rows.get(timer.enrolment_id)
        if row is None:
            continue  # its enrolment is gone
        state = states[row.id]
        pathway = _pathway(registry, state)
        event = _event(timer)
        outcome = evaluate(pathway, state, event, now) if row.id in applied else planned[index]
        applied.add(row.id)
        if outcome.state == state and not outcome.commands:
            continue  # stale timer: nothing to write
        apply_outcome(session, pathway, state, event, outcome, now, TICK_ACTOR, row)
        states[row.id] = outcome.state
    session.flush()
    return len(timers)
