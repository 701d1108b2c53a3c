"""Moving running enrolments from one pathway version to a newer one.

An enrolment stays on the ``url|version`` it started with until it is migrated on purpose:

    migrate_enrolments(db, registry, "palliative-acp", "1.0.0", "1.1.0",
                       step_map={"talk": "conversation", "old_check": None})

Steps with the same id in both versions carry over unchanged. ``step_map`` renames a step
(``old: new``) or drops it (``old: None``). Every step of the old version that is open or failed must
either exist in the new version or be named in the map, otherwise nothing is migrated and
:class:`MigrationError` lists every problem. An open step that is renamed keeps its deadline, gets a
new Task under its new name, and its old Task is cancelled; an open step that is dropped has its Task
cancelled. Steps new in the new version start as soon as the steps before them are done.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime

from sqlalchemy import delete, update
from sqlmodel import Session, col, select
from zorgpad.engine._apply import apply_outcome
from zorgpad.engine._dsl import Pathway
from zorgpad.engine._evaluate import evaluate
from zorgpad.engine._model import Command, Enrol, EnrolmentState, OpenTask, Outcome, StepRun, UpdateTask
from zorgpad.engine._states import OPEN_STATES, EnrolmentStatus, StepState
from zorgpad.engine.errors import MigrationError
from zorgpad.engine.registry import Registry
from zorgpad.engine.runtime import known_facts
from zorgpad.engine.store.audit import Actor, audit
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.enrolments import load_state, lock_enrolments
from zorgpad.engine.store.tables import Enrolment, Timer

MIGRATE_ACTOR = Actor("system:migrate")


def plan_step_map(old: type[Pathway], new: type[Pathway], step_map: Mapping[str, str | None]) -> dict[str, str | None]:
    """The full old-step → new-step map, or :class:`MigrationError` with every problem."""
    problems = []
    old_ids = [s.id for s in old.steps]
    new_ids = {s.id for s in new.steps}
    for source, target in step_map.items():
        if source not in old_ids:
            problems.append(f"{source!r} is not a step of {old.id}|{old.version}")
        if target is not None and target not in new_ids:
            problems.append(f"{target!r} is not a step of {new.id}|{new.version}")
    full: dict[str, str | None] = {}
    for source in old_ids:
        full[source] = step_map.get(source, source if source in new_ids else None)
    targets = [t for t in full.values() if t is not None]
    for target in sorted({t for t in targets if targets.count(t) > 1}):
        problems.append(f"several old steps map to {target!r}")
    if problems:
        raise MigrationError(f"cannot migrate {old.id} from {old.version} to {new.version}: " + "; ".join(problems))
    return full


def migrate_enrolments(db: Database, registry: Registry, pathway_id: str, from_version: str, to_version: str,
                       *, step_map: Mapping[str, str | None] | None = None, now: datetime,
                       actor: Actor = MIGRATE_ACTOR) -> list[str]:
    """Move every active enrolment of ``pathway_id`` at ``from_version`` to ``to_version``.

    All or nothing: one transaction. Returns the ids of the migrated enrolments.
    """
    old, new = registry.get(pathway_id, from_version), registry.get(pathway_id, to_version)
    if old is new:
        raise MigrationError(f"{pathway_id} {from_version} and {to_version} are the same version")
    full = plan_step_map(old, new, step_map or {})

    def work(session: Session) -> list[str]:
        ids = session.exec(select(Enrolment.id).where(
            Enrolment.pathway_id == pathway_id, Enrolment.pathway_version == from_version,
            Enrolment.status == EnrolmentStatus.ACTIVE.value)).all()
        problems: list[str] = []
        plans = []
        for row in lock_enrolments(session, ids):
            state = load_state(session, row)
            unmapped = [s for s, run in state.steps.items() if full.get(s) is None and s not in (step_map or {})
                        and (run.state in OPEN_STATES or run.state is StepState.FAILED)]
            problems += [f"enrolment {row.id}: open step {s!r} has no place in {to_version} "
                         f"(map it to a step, or to None to drop it)" for s in unmapped]
            plans.append((row, state))
        if problems:
            raise MigrationError("; ".join(problems))
        for row, state in plans:
            _migrate_one(session, row, state, old, new, full, now, actor)
        return [row.id for row, _ in plans]

    return db.run(work)


def _move_timers(session: Session, enrolment_id: str, moves: Mapping[str, str | None]) -> None:
    """Drop the timers of dropped steps and rename the rest, in two phases so that a step renamed to the id of
    another (dropped or renamed) step never mixes their timers."""
    mine = col(Timer.enrolment_id) == enrolment_id
    for source, target in moves.items():
        if target is None:
            session.execute(delete(Timer).where(mine, col(Timer.step_id) == source))
    renamed = {source: target for source, target in moves.items() if target is not None and target != source}
    for source in renamed:
        session.execute(update(Timer).where(mine, col(Timer.step_id) == source).values(step_id=f"~{source}"))
    for source, target in renamed.items():
        session.execute(update(Timer).where(mine, col(Timer.step_id) == f"~{source}").values(step_id=target))


def _migrate_one(session: Session, row: Enrolment, state: EnrolmentState, old: type[Pathway], new: type[Pathway],
                 full: Mapping[str, str | None], now: datetime, actor: Actor) -> None:
    extra: list[Command] = []
    steps: dict[str, StepRun] = {}
    _move_timers(session, state.id, {source: full.get(source) for source in state.steps})
    for source, run in state.steps.items():
        target = full.get(source)
        had_task = run.state in OPEN_STATES or run.state is StepState.FAILED
        if target is None:
            if had_task:
                extra.append(UpdateTask(source, run.iteration, "cancelled",
                                        reason=f"step removed in {new.id} {new.version}"))
            continue
        step = new.step(target)
        steps[target] = replace(run, step_id=target,
                                owner_role=step.assignee.code if step.assignee else run.owner_role)
        if target != source and had_task:
            extra.append(UpdateTask(source, run.iteration, "cancelled",
                                    reason=f"moved to step {target!r} in {new.id} {new.version}"))
            extra.append(OpenTask(target, run.iteration, steps[target].owner_role or "coordinator", None, run.due_at))
    for step in new.steps:
        steps.setdefault(step.id, StepRun(step.id, owner_role=step.assignee.code if step.assignee else None))
    facts, dates = known_facts(session, new, state.patient, now, since=state.enrolled_at, episode=state.episode)
    for name, refs in facts.items():  # a fact keeps the moment it was first known
        for ref in refs:
            refs[ref] = state.facts.get(name, {}).get(ref, now)
    moved = replace(state, version=new.version, steps=steps, facts={}, dates={})
    event = Enrol(facts, dates, state.episode)
    outcome = evaluate(new, moved, event, now)
    outcome = Outcome(outcome.state, (*extra, *outcome.commands))
    apply_outcome(session, new, state, event, outcome, now, actor, row, former=old)
    audit(session, actor, now, action="U", what="migrate", entity=f"CarePlan/{state.id}", patient=state.patient,
          detail=f"{old.canonical()} -> {new.canonical()}")
