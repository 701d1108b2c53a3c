"""State machines of steps and enrolments, and how they map onto FHIR Task and CarePlan statuses."""

from __future__ import annotations

from enum import StrEnum

from zorgpad.engine.errors import IllegalTransitionError


class StepState(StrEnum):
    """Where one step of one enrolment stands."""

    PENDING = "pending"  # waiting for the steps before it, its start moment or its only_if guard
    READY = "ready"  # a Task is open at the owner; nobody has started
    IN_PROGRESS = "in-progress"  # the owner has started (or put it on hold)
    COMPLETED = "completed"  # done; a repeating step goes back to pending for its next round
    SKIPPED = "skipped"  # not applicable: guard failed (otherwise='skip'), until= met, or a coordinator said so
    CANCELLED = "cancelled"  # the enrolment ended before the step was done
    FAILED = "failed"  # the owner rejected it or could not do it; a coordinator reassigns or skips it


OPEN_STATES = frozenset({StepState.READY, StepState.IN_PROGRESS})
#: Steps whose successors may start.
SATISFIED_STATES = frozenset({StepState.COMPLETED, StepState.SKIPPED})

_ALLOWED: dict[StepState, frozenset[StepState]] = {
    StepState.PENDING: frozenset({StepState.READY, StepState.SKIPPED, StepState.CANCELLED}),
    StepState.READY: frozenset(
        {StepState.IN_PROGRESS, StepState.COMPLETED, StepState.FAILED, StepState.SKIPPED, StepState.CANCELLED}
    ),
    StepState.IN_PROGRESS: frozenset(
        {StepState.COMPLETED, StepState.FAILED, StepState.SKIPPED, StepState.CANCELLED}
    ),
    StepState.COMPLETED: frozenset({StepState.PENDING}),  # only into the next round of a repeating step
    StepState.FAILED: frozenset({StepState.READY, StepState.COMPLETED, StepState.SKIPPED, StepState.CANCELLED}),
    StepState.SKIPPED: frozenset(),
    StepState.CANCELLED: frozenset(),
}

_WHY: dict[StepState, str] = {
    StepState.PENDING: "it has not started yet",
    StepState.READY: "it is waiting for its owner",
    StepState.IN_PROGRESS: "its owner is working on it",
    StepState.COMPLETED: "it is already completed",
    StepState.SKIPPED: "it was skipped as not applicable",
    StepState.CANCELLED: "it was cancelled when the enrolment ended",
    StepState.FAILED: "its owner rejected it; a coordinator must reassign or skip it",
}


def check_transition(step_id: str, current: StepState, target: StepState) -> None:
    """Raise :class:`IllegalTransitionError` unless a step may move from ``current`` to ``target``."""
    if target not in _ALLOWED[current]:
        raise IllegalTransitionError(f"step {step_id!r} cannot go from {current} to {target}: {_WHY[current]}")


class EnrolmentStatus(StrEnum):
    """Where a patient's enrolment in one pathway stands."""

    ACTIVE = "active"  # steps are running
    COMPLETED = "completed"  # every step is completed or skipped
    EXITED = "exited"  # an exit criterion was met (death, withdrawal recorded in FHIR)
    WITHDRAWN = "withdrawn"  # a coordinator ended it

    @property
    def careplan_status(self) -> str:
        """The FHIR CarePlan.status that shows this status."""
        return {"active": "active", "completed": "completed"}.get(self.value, "revoked")


#: Every R4 Task.status code (http://hl7.org/fhir/task-status); fhir.resources does not check them.
TASK_STATUSES = (
    "draft", "requested", "received", "accepted", "rejected", "ready", "cancelled",
    "in-progress", "on-hold", "failed", "completed", "entered-in-error",
)

#: What a Task.status set by the step's owner means for the step.
OWNER_TASK_STATUS: dict[str, StepState] = {
    "requested": StepState.READY,
    "received": StepState.READY,
    "accepted": StepState.READY,
    "ready": StepState.READY,
    "in-progress": StepState.IN_PROGRESS,
    "on-hold": StepState.IN_PROGRESS,
    "completed": StepState.COMPLETED,
    "rejected": StepState.FAILED,
    "failed": StepState.FAILED,
}


def task_status_of(state: StepState) -> str:
    """The FHIR Task.status that shows a step in ``state``."""
    return {
        StepState.PENDING: "draft",
        StepState.READY: "requested",
        StepState.IN_PROGRESS: "in-progress",
        StepState.COMPLETED: "completed",
        StepState.SKIPPED: "cancelled",
        StepState.CANCELLED: "cancelled",
        StepState.FAILED: "failed",
    }[state]
