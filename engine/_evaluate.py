"""Deterministic evaluation: ``(pathway, state, event, now) -> Outcome(new state, commands)``.

No I/O, no clock, no randomness: the same inputs always give the same outcome, so enrolment
histories can be replayed. The caller applies the commands in the same transaction as the state.
"""

from __future__ import annotations

from datetime import datetime

from zorgpad.engine._criteria import AllOf, Guard
from zorgpad.engine._dsl import Before, Pathway, Step
from zorgpad.engine._model import (
    CancelTimers,
    Command,
    EndEnrolment,
    Enrol,
    EnrolmentState,
    Event,
    NoticeKind,
    Notify,
    OpenTask,
    Outcome,
    ResourceChanged,
    RunAction,
    ScheduleTimer,
    StepOverride,
    StepRun,
    TaskStatusChanged,
    TimerFired,
    TimerKind,
    UpdateTask,
    Withdraw,
)
from zorgpad.engine._roles import COORDINATOR
from zorgpad.engine._states import (
    OPEN_STATES,
    OWNER_TASK_STATUS,
    SATISFIED_STATES,
    TASK_STATUSES,
    EnrolmentStatus,
    StepState,
    check_transition,
    task_status_of,
)
from zorgpad.engine.errors import IllegalTransitionError, NotEnrolledError

__all__ = ["evaluate", "new_enrolment"]


def new_enrolment(pathway: type[Pathway], enrolment_id: str, patient: str, now: datetime) -> EnrolmentState:
    """A fresh enrolment with every step pending; evaluate :class:`Enrol` on it to start it."""
    return EnrolmentState(
        id=enrolment_id,
        patient=patient,
        pathway_id=pathway.id,
        version=pathway.version,
        enrolled_at=now,
        steps={s.id: StepRun(s.id, owner_role=s.assignee.code if s.assignee else None) for s in pathway.steps},
    )


def evaluate(pathway: type[Pathway], state: EnrolmentState, event: Event, now: datetime) -> Outcome:
    """Apply ``event`` at ``now`` to a copy of ``state``; return the new state and the commands."""
    if (pathway.id, pathway.version) != (state.pathway_id, state.version):
        raise ValueError(f"enrolment {state.id} is on {state.pathway_id}|{state.version}, "
                         f"not {pathway.id}|{pathway.version}")
    run = _Evaluation(pathway, state.copy(), now)
    run.handle(event)
    return Outcome(run.state, tuple(run.commands))


class _Evaluation:
    def __init__(self, pathway: type[Pathway], state: EnrolmentState, now: datetime) -> None:
        self.pathway = pathway
        self.state = state
        self.now = now
        self.commands: list[Command] = []
        self.steps = {s.id: s for s in pathway.steps}

    # -- dispatch ----------------------------------------------------------------------------------

    def handle(self, event: Event) -> None:
        if self.state.status is not EnrolmentStatus.ACTIVE:
            if isinstance(event, TaskStatusChanged | StepOverride | Withdraw):
                raise NotEnrolledError(f"enrolment {self.state.id} has ended ({self.state.status})")
            return  # late timers and resources for an ended enrolment change nothing
        match event:
            case Enrol():
                self._enrol(event)
            case ResourceChanged():
                self._resource_changed(event)
            case TimerFired():
                self._timer_fired(event)
            case TaskStatusChanged():
                self._task_status_changed(event)
            case StepOverride():
                self._override(event)
            case Withdraw():
                self._end(EnrolmentStatus.WITHDRAWN, event.reason)

    def _enrol(self, event: Enrol) -> None:
        for name, refs in event.facts.items():
            self.state.facts[name] = dict(refs)
        self.state.dates.update(event.dates)
        self.state.episode = event.trigger
        exit_fact = self._holding(self.pathway.exit_when)
        if exit_fact:
            self._end(EnrolmentStatus.EXITED, f"exit criterion {exit_fact} was already met")
            return
        self._advance()

    def _resource_changed(self, event: ResourceChanged) -> None:
        ref = event.reference
        criteria = self.pathway.criteria()
        if self.state.episode is not None:  # episode criteria count only the resource that started it all
            event = ResourceChanged(event.resource, frozenset(
                n for n in event.matched if not (n in criteria and criteria[n].episode and ref != self.state.episode)))
        moved: set[str] = set()
        for name in event.matched:
            self.state.facts.setdefault(name, {})[ref] = self.now
            moment = criteria[name].date_of(event.resource) if name in criteria else None
            if moment is not None and self.state.dates.get(name) != moment:
                moved.add(name)
                self.state.dates[name] = moment
        for name in list(self.state.facts):
            if ref in self.state.facts[name] and name not in event.matched:
                del self.state.facts[name][ref]
                if not self.state.facts[name]:
                    del self.state.facts[name]
        exit_names = {c.name for c in self.pathway.exit_when.leaves()} if self.pathway.exit_when else set()
        met = sorted(exit_names & event.matched)
        if met:
            self._end(EnrolmentStatus.EXITED, f"exit criterion {met[0]} met by {ref}")
            return
        for step in self.pathway.steps:
            run = self.state.steps[step.id]
            done = {c.name for c in step.done_when.leaves()} if step.done_when is not None else set()
            if run.state in OPEN_STATES and done & event.matched:
                self._complete(step, run, f"{ref} recorded")
        for step in self.pathway.steps:
            again = {c.name for c in step.again_when.leaves()} if step.again_when is not None else set()
            if again & event.matched:
                self._again(step, self.state.steps[step.id], ref)
            run = self.state.steps[step.id]
            if isinstance(step.due, Before) and step.due.of.name in moved and run.state in OPEN_STATES:
                self._schedule_deadlines(step, run, restart=True)  # the date moved: so does the deadline
                run.business_status = None
                self._update_task(step, run, due_moved=True)
        self._advance()

    def _again(self, step: Step, run: StepRun, ref: str) -> None:
        """Run a step once more because ``ref`` changed: a new round now, a scheduled round brought forward, or
        (while a round is open) one more round as soon as the open one completes."""
        if run.state in OPEN_STATES:
            run.rerun = True
            return
        if run.state is StepState.COMPLETED:
            check_transition(step.id, run.state, StepState.PENDING)
            run.state = StepState.PENDING
            run.iteration += 1
        elif run.state is not StepState.PENDING or run.start_at is None or run.start_at <= self.now:
            return  # not reached yet (its predecessors are not done), or starting anyway
        run.start_at = self.now
        run.ready_at = run.due_at = None
        run.reason = f"{ref} changed"
        self.commands.append(CancelTimers(step.id))

    def _timer_fired(self, event: TimerFired) -> None:
        step = self.steps.get(event.step_id)
        run = self.state.steps.get(event.step_id)
        if step is None or run is None or run.iteration != event.iteration:
            return  # a timer of an earlier round or another version: stale
        if event.kind is TimerKind.START:
            if run.state is StepState.PENDING:
                self._advance()
            return
        if run.state not in OPEN_STATES:
            return
        if event.kind is TimerKind.DUE:
            run.overdue = True
            if not run.escalated:
                run.business_status = "overdue"
            self._update_task(step, run)
        elif event.kind is TimerKind.REMIND:
            self._remind(step, run, event.seq)
        elif event.kind is TimerKind.ESCALATE and step.escalate and not run.escalated:
            run.escalated = True
            run.business_status = "escalated"
            self._update_task(step, run)
            self.commands.append(Notify(NoticeKind.ESCALATION, step.id, run.iteration, step.escalate.to.code))

    def _remind(self, step: Step, run: StepRun, seq: int) -> None:
        if step.remind is None or run.due_at is None:
            return
        run.reminders_sent += 1
        role = (step.remind.to or step.assignee or COORDINATOR).code
        self.commands.append(Notify(NoticeKind.REMINDER, step.id, run.iteration, role, seq=seq))
        # Reminders missed while the service was down are not sent in a burst: go on from the next one
        # that still lies in the future.
        moments = step.remind.moments(run.due_at)
        for later in range(seq + 1, len(moments)):
            at = moments[later]
            if at > self.now:
                self.commands.append(ScheduleTimer(TimerKind.REMIND, step.id, run.iteration, at, seq=later))
                break

    def _task_status_changed(self, event: TaskStatusChanged) -> None:
        step, run = self._step(event.step_id)
        if event.status not in TASK_STATUSES:
            raise IllegalTransitionError(
                f"{event.status!r} is not a Task status (expected one of {', '.join(TASK_STATUSES)})"
            )
        target = OWNER_TASK_STATUS.get(event.status)
        if target is None:
            raise IllegalTransitionError(
                f"step {step.id!r}: the owner cannot set its Task to {event.status!r} "
                "(reject it, or ask a coordinator to mark it not applicable)"
            )
        if run.state is StepState.FAILED and target is StepState.READY:
            raise IllegalTransitionError(
                f"step {step.id!r} cannot go from failed to {event.status}: only a coordinator reassigns a "
                "rejected step"
            )
        if target is run.state:
            run.business_status = event.status if event.status in ("received", "accepted", "on-hold") else None
            self._update_task(step, run, status=None if event.status == "ready" else event.status)
            return
        check_transition(step.id, run.state, target)
        if target is StepState.IN_PROGRESS:
            run.state = StepState.IN_PROGRESS
            run.business_status = "on-hold" if event.status == "on-hold" else run.business_status
            self._update_task(step, run, status=event.status)
        elif target is StepState.COMPLETED:
            self._complete(step, run, event.reason)
            self._finish_if_done()
        elif target is StepState.FAILED:
            run.state = StepState.FAILED
            run.reason = event.reason or f"the owner set the Task to {event.status}"
            self.commands.append(CancelTimers(step.id))
            self._update_task(step, run, status=event.status)
            self.commands.append(
                Notify(NoticeKind.REJECTED, step.id, run.iteration, COORDINATOR.code, reason=run.reason)
            )
        else:  # READY from FAILED is a coordinator's reassignment, not the owner's to make
            check_transition(step.id, run.state, target)

    def _override(self, event: StepOverride) -> None:
        step, run = self._step(event.step_id)
        if event.action == "complete":
            check_transition(step.id, run.state, StepState.COMPLETED)
            self._complete(step, run, event.reason)
        elif event.action == "skip":
            check_transition(step.id, run.state, StepState.SKIPPED)
            had_task = run.state is not StepState.PENDING
            run.state = StepState.SKIPPED
            run.business_status = None
            run.reason = event.reason
            self.commands.append(CancelTimers(step.id))
            if had_task:
                self._update_task(step, run, status="cancelled")
            self._advance()
        else:
            if event.owner is None:
                raise IllegalTransitionError(f"step {step.id!r}: reassigning needs an organisation to own it")
            if run.state is StepState.FAILED:
                check_transition(step.id, run.state, StepState.READY)
                run.state = StepState.READY
                self._schedule_deadlines(step, run, restart=True)
            elif run.state not in OPEN_STATES:
                raise IllegalTransitionError(
                    f"step {step.id!r} cannot be reassigned while it is {run.state}: only open or failed steps"
                )
            run.owner = event.owner
            run.reason = event.reason
            self._update_task(step, run, status="requested" if run.state is StepState.READY else None)
        self._finish_if_done()

    # -- the moves of a step --------------------------------------------------------------------------

    def _advance(self) -> None:
        """Start every pending step that may start now, until nothing changes (skips can cascade)."""
        changed = True
        while changed and self.state.status is EnrolmentStatus.ACTIVE:
            changed = False
            for step in self.pathway.steps:
                run = self.state.steps[step.id]
                if run.state is StepState.PENDING and self._try_start(step, run):
                    changed = True
        self._finish_if_done()

    def _try_start(self, step: Step, run: StepRun) -> bool:
        for before in step.predecessors:
            if self.state.steps[before.id].state not in SATISFIED_STATES and not (
                self.state.steps[before.id].completions
            ):
                return False
        until = self._holding(step.until)
        if until:  # no further round: a scheduled one is dropped too
            check_transition(step.id, run.state, StepState.SKIPPED)
            run.state = StepState.SKIPPED
            run.business_status = None
            run.reason = f"until {until} was met"
            self.commands.append(CancelTimers(step.id))
            return True
        if run.start_at is None:
            if step.offset is not None and run.iteration == 0 and step.offset.value:
                run.start_at = step.offset.after(self.now)
                run.business_status = "scheduled"
                self.commands.append(ScheduleTimer(TimerKind.START, step.id, run.iteration, run.start_at))
                return False
            run.start_at = self.now
        if run.start_at > self.now:
            return False
        if isinstance(step.due, Before) and step.due.of.name not in self.state.dates:
            run.business_status = "waiting-for-date"
            return False
        if step.only_if is not None and not self._holding(step.only_if):
            if step.otherwise == "skip":
                check_transition(step.id, run.state, StepState.SKIPPED)
                run.state = StepState.SKIPPED
                run.business_status = None
                run.reason = f"only_if {step.only_if} was not met"
                return True
            run.business_status = "waiting-for-condition"
            return False
        self._make_ready(step, run)
        return True

    def _make_ready(self, step: Step, run: StepRun) -> None:
        check_transition(step.id, run.state, StepState.READY)
        run.state = StepState.READY
        run.ready_at = self.now
        run.business_status = None
        run.reason = None
        role = step.assignee or COORDINATOR
        requester = step.owner.code if step.handover and step.owner else None
        self._schedule_deadlines(step, run, restart=True)
        self.commands.append(OpenTask(step.id, run.iteration, role.code, requester, run.due_at))
        if step.handover is not None:
            self.commands.append(Notify(NoticeKind.HANDOVER, step.id, run.iteration, step.handover.to.code))
        for seq, informed in enumerate(step.informs):
            self.commands.append(Notify(NoticeKind.INFORM, step.id, run.iteration, informed.code, seq=seq))
        if step.action is not None:
            self.commands.append(RunAction(step.id, run.iteration))
        if step.automatic:
            self._complete(step, run, "done when started")
        elif step.done_when is not None and self._done_fact(step, run):
            self._complete(step, run, f"{self._done_fact(step, run)} was already recorded")

    def _schedule_deadlines(self, step: Step, run: StepRun, *, restart: bool) -> None:
        if isinstance(step.due, Before):
            run.due_at = self.state.dates[step.due.of.name] - step.due.by.approximate()
        else:
            run.due_at = step.due.after(self.now) if step.due is not None else None
        run.overdue = run.escalated = False
        run.reminders_sent = 0
        if run.due_at is None:
            return
        timers = [ScheduleTimer(TimerKind.DUE, step.id, run.iteration, run.due_at)]
        if step.remind is not None:
            first = step.remind.moments(run.due_at)[0]
            timers.append(ScheduleTimer(TimerKind.REMIND, step.id, run.iteration, first, seq=0))
        if step.escalate is not None:
            timers.append(ScheduleTimer(TimerKind.ESCALATE, step.id, run.iteration,
                                        step.escalate.after.after(run.due_at)))
        if restart:
            self.commands.append(CancelTimers(step.id))
        self.commands.extend(timers)

    def _complete(self, step: Step, run: StepRun, reason: str | None) -> None:
        check_transition(step.id, run.state, StepState.COMPLETED)
        run.state = StepState.COMPLETED
        run.completions += 1
        run.completed_at = self.now
        run.business_status = None
        run.reason = reason
        self.commands.append(CancelTimers(step.id))
        self._update_task(step, run, status="completed")
        if run.rerun or (step.repeat is not None and not self._holding(step.until)):
            check_transition(step.id, run.state, StepState.PENDING)
            run.state = StepState.PENDING
            run.iteration += 1
            run.start_at = self.now if run.rerun or step.repeat is None else step.repeat.after(self.now)
            run.reason = "changed while the last round was open" if run.rerun else None
            run.rerun = False
            run.ready_at = run.due_at = None
            run.overdue = run.escalated = False
            run.reminders_sent = 0
            if run.start_at > self.now:
                run.business_status = "scheduled"
                self.commands.append(ScheduleTimer(TimerKind.START, step.id, run.iteration, run.start_at))
        self._advance()

    def _finish_if_done(self) -> None:
        if self.state.status is EnrolmentStatus.ACTIVE and all(
            run.state in SATISFIED_STATES for run in self.state.steps.values()
        ):
            self._end(EnrolmentStatus.COMPLETED, "every step is completed or not applicable")

    def _end(self, status: EnrolmentStatus, reason: str) -> None:
        for step in self.pathway.steps:
            run = self.state.steps[step.id]
            if run.state in OPEN_STATES or run.state in (StepState.PENDING, StepState.FAILED):
                had_task = run.state is not StepState.PENDING
                run.state = StepState.CANCELLED
                run.business_status = None
                run.reason = reason
                if had_task:
                    self._update_task(step, run, status="cancelled")
                    role = run.owner_role or COORDINATOR.code
                    self.commands.append(
                        Notify(NoticeKind.CANCELLED, step.id, run.iteration, role, reason=reason)
                    )
        self.commands.append(CancelTimers(None))
        self.state.status = status
        self.state.ended_at = self.now
        self.state.end_reason = reason
        self.commands.append(EndEnrolment(status, reason))

    # -- helpers -----------------------------------------------------------------------------------

    def _step(self, step_id: str) -> tuple[Step, StepRun]:
        if step_id not in self.steps:
            raise IllegalTransitionError(
                f"pathway {self.pathway.id} has no step {step_id!r} (steps: {', '.join(self.steps)})"
            )
        return self.steps[step_id], self.state.steps[step_id]

    def _update_task(self, step: Step, run: StepRun, status: str | None = None, *, due_moved: bool = False) -> None:
        self.commands.append(
            UpdateTask(step.id, run.iteration, status or task_status_of(run.state), run.business_status,
                       run.reason, run.owner, run.due_at if due_moved else None)
        )

    def _holding(self, condition: Guard | None) -> str | None:
        """The name of a criterion of ``condition`` that some known resource meets, if any (for ``a & b``:
        all of them must be met, and the names are joined)."""
        if condition is None:
            return None
        if isinstance(condition, AllOf):
            met = [self._holding(part) for part in condition.parts]
            return None if None in met else " & ".join(m for m in met if m)
        for leaf in condition.leaves():
            if self.state.facts.get(leaf.name):
                return leaf.name
        return None

    def _done_fact(self, step: Step, run: StepRun) -> str | None:
        """A resource meeting the step's done_when. One recorded before the step started counts for a step
        that runs once (the work was already done); a recurring step counts only what its round brought."""
        if step.done_when is None:
            return None
        earlier_counts = run.iteration == 0 and step.repeat is None
        for leaf in step.done_when.leaves():
            for ref, when in self.state.facts.get(leaf.name, {}).items():
                if earlier_counts or (run.ready_at is not None and when >= run.ready_at):
                    return ref
        return None
