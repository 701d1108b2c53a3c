"""Seeding for the fault suite: many enrolments with due timers, many notices waiting in the outbox.

Rows are copied rather than made one by one through the engine, to keep seeding to a second or two.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from example_pathway import ExampleAcp, ExampleAcpV2
from sqlmodel import Session, select
from zorgpad.engine._projection import to_task
from zorgpad.engine.clock import FrozenClock
from zorgpad.engine.registry import Registry
from zorgpad.engine.runtime import Engine
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.enrolments import load_state, save_state
from zorgpad.engine.store.resources import put_resource
from zorgpad.engine.store.tables import Enrolment, OutboxItem, Timer

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
REGISTERED = START + timedelta(hours=1)
LATE = REGISTERED + timedelta(days=91)  # due, reminder and escalation of every conversation have passed


def seed_open_conversations(db: Database, n: int) -> list[str]:
    """``n`` enrolments on 1.0.0 with an open conversation: one through the engine, the others copied
    from its state rows (Enrolment, StepRun, Timer, the conversation Task) to keep seeding fast."""
    engine = Engine(db, Registry([ExampleAcp, ExampleAcpV2]), FrozenClock(START))
    template = engine.enrol("example-acp", "Patient/c00000", version="1.0.0", now=START).id
    engine.task_status(template, "register", "completed", now=REGISTERED)

    def copy(session: Session) -> list[str]:
        state = load_state(session, session.get(Enrolment, template))
        timers = list(session.exec(select(Timer).where(Timer.enrolment_id == template)))
        step = ExampleAcp.step("conversation")
        ids = [template]
        for i in range(1, n):
            clone = state.copy()
            clone.id, clone.patient = f"crash-{i:05d}", f"Patient/c{i:05d}"
            save_state(session, clone, None)
            session.add_all([Timer(due_at=t.due_at, enrolment_id=clone.id, step_id=t.step_id, kind=t.kind,
                                   iteration=t.iteration, seq=t.seq) for t in timers])
            put_resource(session, to_task(ExampleAcp, step, clone, 0, status="requested", role="gp", owner=None,
                                          requester=None, due_at=clone.steps["conversation"].due_at,
                                          now=REGISTERED), REGISTERED)
            ids.append(clone.id)
        return ids

    return db.run(copy)


def seed_notices(db: Database, n: int) -> list[str]:
    """``n`` notices waiting in the outbox: an in-progress Communication and a ``notify`` item for each."""

    def seed(session: Session) -> list[str]:
        keys = []
        for i in range(n):
            reference = f"Communication/crash-{i:05d}"
            put_resource(session, {"resourceType": "Communication", "id": f"crash-{i:05d}", "status": "in-progress",
                                   "subject": {"reference": f"Patient/c{i:05d}"}}, START)
            keys.append(f"notify/{reference}")
            session.add(OutboxItem(idempotency_key=keys[-1], channel="notify", target="Organization/gp-1",
                                   payload={"communication": reference, "patient": f"Patient/c{i:05d}"},
                                   created_at=START, next_attempt_at=START))
        return keys

    return db.run(seed)
