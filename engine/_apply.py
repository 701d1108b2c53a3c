"""Applying an evaluation outcome inside the caller's transaction: state rows, timers, FHIR resources
(CarePlan, Task, Communication), outbox rows and the audit entry all commit together or not at all."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete
from sqlmodel import Session
from zorgpad.engine._assign import patient_label, resolve
from zorgpad.engine._criteria import holds
from zorgpad.engine._dsl import Pathway, Step
from zorgpad.engine._letters import letter_context
from zorgpad.engine._model import (
    CancelTimers,
    Command,
    EndEnrolment,
    EnrolmentState,
    Event,
    NoticeKind,
    Notify,
    OpenTask,
    Outcome,
    RunAction,
    ScheduleTimer,
    UpdateTask,
)
from zorgpad.engine._projection import (
    BUSINESS_STATUS_SYSTEM,
    communication_id,
    instant,
    letter_id,
    summary_id,
    task_id,
    to_careplan,
    to_communication,
    to_letter,
    to_summary,
    to_task,
)
from zorgpad.engine.render.letters import language
from zorgpad.engine.render.messages import render_notice
from zorgpad.engine.store import batched
from zorgpad.engine.store.audit import Actor, audit
from zorgpad.engine.store.enrolments import save_state
from zorgpad.engine.store.resources import expect_writes, get_resource, put_resource, resources_of_patient
from zorgpad.engine.store.tables import Enrolment, OutboxItem, StoredResource, Timer

NOTIFY_CHANNEL = "notify"
#: A handover Task changed: its receiver is told (eOverdracht sends a notification on every Task change), by
#: the FHIR layer's transport for this channel, over the receiver's endpoints. No Communication goes with it.
TASK_CHANGED_CHANNEL = "task-changed"
_TIMER = Timer.__table__  # type: ignore[attr-defined]
_CANCEL_ALL = delete(_TIMER).where(_TIMER.c.enrolment_id == bindparam("enrolment"))
_CANCEL_STEPS = _CANCEL_ALL.where(_TIMER.c.step_id.in_(bindparam("steps", expanding=True)))
ACTION_CHANNEL = "action"


def apply_outcome(session: Session, pathway: type[Pathway], before: EnrolmentState | None, event: Event,
                  outcome: Outcome, now: datetime, actor: Actor, row: Enrolment | None = None, *,
                  former: type[Pathway] | None = None) -> Enrolment:
    """Write ``outcome`` (the result of evaluating ``event`` on ``before``) in ``session``; ``former`` is the
    version an enrolment is migrated from, whose removed steps' Tasks the outcome may still update."""
    applier = _Applier(session, pathway, outcome.state, now, actor=actor, former=former)
    expect_writes(session, resources_written(pathway, outcome))
    for command in outcome.commands:
        applier.apply(command)
    applier.tell_receivers()
    applier.write_timers()
    saved = save_state(session, outcome.state, before, row)
    session.flush()
    applier.write_careplan(created=before is None,
                           repinned=before is not None and before.version != outcome.state.version)
    audit(session, actor, now, action="C" if before is None else "U", what=type(event).__name__,
          entity=f"CarePlan/{outcome.state.id}", patient=outcome.state.patient,
          detail="; ".join(type(c).__name__ for c in outcome.commands) or None)
    return saved


def resources_written(pathway: type[Pathway], outcome: Outcome) -> Iterator[tuple[str, str]]:
    """``(type, id)`` of the resources applying ``outcome`` may write (its CarePlan included), for
    :func:`expect_writes`."""
    enrolment = outcome.state.id
    yield "CarePlan", enrolment
    for command in outcome.commands:
        match command:
            case OpenTask():
                step, iteration = pathway.step(command.step_id), command.iteration
                yield "Task", task_id(enrolment, step.id, iteration)
                if step.letter is not None:
                    yield "Communication", letter_id(enrolment, step.id, iteration)
                if step.handover is not None and step.handover.summary is not None:
                    yield "Composition", summary_id(enrolment, step.id, iteration)
            case UpdateTask():
                yield "Task", task_id(enrolment, command.step_id, command.iteration)
            case Notify():
                yield "Communication", communication_id(enrolment, command.step_id, command.iteration,
                                                        command.kind, command.seq)


class _Applier:
    def __init__(self, session: Session, pathway: type[Pathway], state: EnrolmentState, now: datetime, *,
                 actor: Actor | None = None, former: type[Pathway] | None = None) -> None:
        self.session = session
        self.pathway = pathway
        self.state = state
        self.now = now
        #: The organisation making this change: it is not told of its own change (an owner's status update).
        self.acting_organisation = actor.organisation if actor is not None else None
        #: Every step an update may name: the former version's (a migration), then this version's.
        self.steps = {s.id: s for p in (former, pathway) if p is not None for s in p.steps}
        #: Handover Tasks this outcome changed: step id, last version written, owners before and after.
        self.changed_tasks: dict[str, tuple[str, StoredResource, list[str | None]]] = {}
        self.new_tasks: list[str] = []
        self.ended = False
        #: The outcome's timer commands, netted (see :meth:`write_timers`).
        self.cancel_all = False
        self.cancelled: set[str] = set()
        self.timers: list[dict[str, Any]] = []

    def apply(self, command: Command) -> None:
        match command:
            case OpenTask():
                self._open_task(command)
            case UpdateTask():
                self._update_task(command)
            case ScheduleTimer():
                self.timers.append({
                    "due_at": command.at, "enrolment_id": self.state.id, "step_id": command.step_id,
                    "kind": command.kind.value, "iteration": command.iteration, "seq": command.seq})
            case CancelTimers():
                # Timers this outcome scheduled before are dropped unwritten; the stored ones go in write_timers.
                self.timers = [t for t in self.timers if command.step_id not in (None, t["step_id"])]
                if command.step_id is None:
                    self.cancel_all = True
                else:
                    self.cancelled.add(command.step_id)
            case Notify():
                self._notify(command)
            case RunAction():
                key = f"action/{self.state.id}/{command.step_id}/{command.iteration}"
                self._outbox(ACTION_CHANNEL, None, key, command.step_id, {
                    "pathway": self.pathway.id, "version": self.pathway.version, "enrolment": self.state.id,
                    "patient": self.state.patient, "step": command.step_id, "iteration": command.iteration})
            case EndEnrolment():
                self.ended = True

    def write_timers(self) -> None:
        """Delete the stored timers the outcome cancelled, in one statement, then queue the timers it scheduled
        and did not cancel. Nothing else in the transaction reads timers, so this has the effect of applying
        the commands in order, in two statements instead of two per step."""
        connection = self.session.connection()
        if self.cancel_all:
            connection.execute(_CANCEL_ALL, {"enrolment": self.state.id})
        elif self.cancelled:
            connection.execute(_CANCEL_STEPS, {"enrolment": self.state.id, "steps": sorted(self.cancelled)})
        batched.add(connection, _TIMER, self.timers)

    def _open_task(self, command: OpenTask) -> None:
        step = self.pathway.step(command.step_id)
        run = self.state.steps[step.id]
        note = None
        if run.owner is None:
            assignment = resolve(self.session, self.state.patient, command.role)
            run.owner, note = assignment.owner, assignment.note
        requester = None
        if command.requester_role:
            requester = resolve(self.session, self.state.patient, command.requester_role).owner
        share = step.handover is not None and (step.handover.share_if is None
                                                or holds(step.handover.share_if, self.state.facts))
        inputs = self._handover_content(step) if share else []
        if step.letter is not None or (share and step.handover is not None and step.handover.summary is not None):
            inputs += self._letters(step, command.iteration, requester or run.owner, summary=share)
        task = to_task(self.pathway, step, self.state, command.iteration, status="requested", role=command.role,
                       owner=run.owner, requester=requester, due_at=command.due_at, now=self.now,
                       business_status="unassigned" if run.owner is None else None, reason=note,
                       inputs=inputs)
        if note:
            task["note"] = [{"text": note, "time": instant(self.now)}]
        put_resource(self.session, task, self.now, method="PUT")
        self.new_tasks.append(f"Task/{task['id']}")

    def _letters(self, step: Step, iteration: int, author: str | None, *, summary: bool = True) -> list[str]:
        """Render the step's letter (a Communication to the patient and relatives) and its handover summary
        (a Composition); return their references for Task.input."""
        from zorgpad.engine.render.letters import render_letter

        assert self.pathway.letters is not None
        context = letter_context(self.session, self.pathway, self.state, step, self.now)
        made: list[str] = []
        if step.letter is not None:
            text = render_letter(self.pathway.letters, step.letter, context)
            letter = to_letter(self.state, step, iteration, text=text, recipients=context["recipients"],
                               now=self.now, language=language())
            put_resource(self.session, letter, self.now, method="PUT")
            made.append(f"Communication/{letter['id']}")
        if summary and step.handover is not None and step.handover.summary is not None:
            html = render_letter(self.pathway.letters, step.handover.summary, context, html=True)
            composition = to_summary(self.state, step, iteration, html=html, author=author, now=self.now,
                                     entries=context["content_refs"], title=context["summary_title"])
            put_resource(self.session, composition, self.now, method="PUT")
            made.append(f"Composition/{composition['id']}")
        return made

    def _handover_content(self, step: Step) -> list[str]:
        assert step.handover is not None
        criteria = step.handover.content
        types = {c.resource_type for c in criteria}
        if not types:
            return []
        return sorted(f"{r['resourceType']}/{r['id']}"
                      for r in resources_of_patient(self.session, self.state.patient, types)
                      if any(c.matches(r) for c in criteria))

    def _update_task(self, command: UpdateTask) -> None:
        stored = get_resource(self.session, "Task", task_id(self.state.id, command.step_id, command.iteration))
        if stored is None:
            return
        task: dict[str, Any] = dict(stored.content)
        owner_before = (task.get("owner") or {}).get("reference")
        task.pop("meta", None)
        task["status"] = command.status
        task["lastModified"] = instant(self.now)
        if command.business_status:
            task["businessStatus"] = {"coding": [{"system": BUSINESS_STATUS_SYSTEM,
                                                  "code": command.business_status}],
                                      "text": command.business_status}
        else:
            task.pop("businessStatus", None)
        if command.reason:
            task["statusReason"] = {"text": command.reason}
        if command.owner:
            task["owner"] = {"reference": command.owner}
        if command.due_at is not None:
            task["restriction"] = {"period": {"end": instant(command.due_at)}}
        if command.status in ("completed", "failed", "cancelled", "rejected"):
            period = dict(task.get("executionPeriod") or {})
            period["end"] = instant(self.now)
            task["executionPeriod"] = period
        elif command.status == "in-progress":
            task["executionPeriod"] = {"start": instant(self.now)}
        written = put_resource(self.session, task, self.now, method="PUT")
        if self.steps[command.step_id].handover is not None:
            owners = [owner_before, (task.get("owner") or {}).get("reference")]
            earlier = self.changed_tasks.get(written.id)
            self.changed_tasks[written.id] = (command.step_id, written, [*(earlier[2] if earlier else ()), *owners])

    def tell_receivers(self) -> None:
        """Queue one Task-changed notification per changed handover Task (at its last version) for its owner,
        and for the owner it had before a reassignment, unless that organisation made the change itself."""
        for step_id, task, owners in self.changed_tasks.values():
            told = (o for o in owners if o and o.startswith("Organization/") and o != self.acting_organisation)
            for owner in dict.fromkeys(told):
                self._outbox(TASK_CHANGED_CHANNEL, owner, f"task-changed/{task.id}/{task.version_id}/{owner}",
                             step_id, {"task": f"Task/{task.id}", "patient": self.state.patient,
                                       "version": task.version_id, "status": task.content.get("status")})

    def _notify(self, command: Notify) -> None:
        step = self.pathway.step(command.step_id)
        run = self.state.steps[step.id]
        own_role = step.assignee.code if step.assignee else None
        if command.role == own_role and run.owner:
            recipient: str | None = run.owner
        else:
            recipient = resolve(self.session, self.state.patient, command.role).owner
        values = {"step": step.title, "patient": patient_label(self.session, self.state.patient),
                  "pathway": self.pathway.title, "due": instant(run.due_at) if run.due_at else "-",
                  "owner": run.owner or run.owner_role or "-", "reason": command.reason or "-"}
        text = render_notice(command.kind.value, language(), **values)
        communication = to_communication(self.state, step, command.iteration, command.kind, command.seq,
                                         recipient=recipient, text=text, now=self.now)
        put_resource(self.session, communication, self.now, method="PUT")
        key = communication_id(self.state.id, step.id, command.iteration, command.kind, command.seq)
        self._outbox(NOTIFY_CHANNEL, recipient or f"role:{command.role}", f"notify/{key}", step.id, {
            "kind": command.kind.value, "communication": f"Communication/{communication['id']}",
            "task": f"Task/{task_id(self.state.id, step.id, command.iteration)}",
            "patient": self.state.patient, "role": command.role,
            "handover": command.kind is NoticeKind.HANDOVER})

    def _outbox(self, channel: str, target: str | None, key: str, step_id: str | None,
                payload: Mapping[str, Any]) -> None:
        # The row waits to go with the transaction's others: only the delivery reads it, in later transactions.
        batched.add(self.session.connection(), OutboxItem.__table__, [{  # type: ignore[attr-defined]
            "idempotency_key": key, "channel": channel, "target": target, "payload": dict(payload),
            "status": "pending", "attempts": 0, "created_at": self.now, "next_attempt_at": self.now,
            "lease_until": None, "delivered_at": None, "last_error": None, "enrolment_id": self.state.id,
            "step_id": step_id}])

    def write_careplan(self, *, created: bool, repinned: bool = False) -> None:
        if not (created or repinned or self.new_tasks or self.ended):
            return
        refs: list[str] = []
        if not created:
            stored = get_resource(self.session, "CarePlan", self.state.id)
            if stored is not None:
                refs = [a["reference"]["reference"] for a in stored.content.get("activity", [])]
        refs += [ref for ref in self.new_tasks if ref not in refs]
        put_resource(self.session, to_careplan(self.pathway, self.state, refs), self.now,
                     method="POST" if created else "PUT")
