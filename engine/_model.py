"""Engine state, events and commands: plain values that evaluation takes and returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from zorgpad.engine._states import EnrolmentStatus, StepState


class TimerKind(StrEnum):
    """What a durable timer does when it fires."""

    START = "start"  # a pending step's offset or repeat interval has passed
    DUE = "due"  # an open step becomes overdue
    REMIND = "remind"  # send the next reminder
    ESCALATE = "escalate"  # tell the escalation role


class NoticeKind(StrEnum):
    """Why an organisation is notified."""

    REMINDER = "reminder"
    ESCALATION = "escalation"
    HANDOVER = "handover"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    INFORM = "inform"


@dataclass
class StepRun:
    """The state of one step in one enrolment (the current round, for a repeating step)."""

    step_id: str
    state: StepState = StepState.PENDING
    iteration: int = 0
    completions: int = 0
    start_at: datetime | None = None
    ready_at: datetime | None = None
    due_at: datetime | None = None
    completed_at: datetime | None = None
    reminders_sent: int = 0
    overdue: bool = False
    escalated: bool = False
    business_status: str | None = None
    reason: str | None = None
    owner_role: str | None = None
    owner: str | None = None  # organisation reference when a coordinator assigned one
    rerun: bool = False  # something changed during the open round: run once more when it completes


Facts = dict[str, dict[str, datetime]]  # criterion name -> {resource reference: when it last matched}


@dataclass
class EnrolmentState:
    """A patient's enrolment in one pathway version."""

    id: str
    patient: str
    pathway_id: str
    version: str
    enrolled_at: datetime
    status: EnrolmentStatus = EnrolmentStatus.ACTIVE
    ended_at: datetime | None = None
    end_reason: str | None = None
    steps: dict[str, StepRun] = field(default_factory=dict)
    facts: Facts = field(default_factory=dict)
    dates: dict[str, datetime] = field(default_factory=dict)  # criterion name -> the date its resource carries
    episode: str | None = None  # the resource that started the enrolment (``Type/id``), if one did

    def copy(self) -> EnrolmentState:
        """A copy that evaluation may change without touching this one."""
        return replace(
            self,
            steps={k: replace(v) for k, v in self.steps.items()},
            facts={k: dict(v) for k, v in self.facts.items()},
            dates=dict(self.dates),
        )


# Events -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Enrol:
    """Start the enrolment; ``facts`` are the patient's stored resources that already match criteria."""

    facts: Mapping[str, Mapping[str, datetime]] = field(default_factory=dict)
    dates: Mapping[str, datetime] = field(default_factory=dict)
    trigger: str | None = None  # the resource that started the enrolment, when criteria did


@dataclass(frozen=True)
class ResourceChanged:
    """A resource of the patient was created or updated; ``matched`` names the criteria it meets."""

    resource: Mapping[str, Any]
    matched: frozenset[str]

    @property
    def reference(self) -> str:
        """``Type/id`` of the resource."""
        return f"{self.resource.get('resourceType')}/{self.resource.get('id')}"


@dataclass(frozen=True)
class TimerFired:
    """A durable timer came due."""

    kind: TimerKind
    step_id: str
    iteration: int
    seq: int = 0


@dataclass(frozen=True)
class TaskStatusChanged:
    """The owner of a step's Task set its status (a FHIR Task.status code)."""

    step_id: str
    status: str
    reason: str | None = None


@dataclass(frozen=True)
class StepOverride:
    """A coordinator marks a step done, not applicable, or gives it to another organisation."""

    step_id: str
    action: Literal["complete", "skip", "reassign"]
    reason: str
    owner: str | None = None


@dataclass(frozen=True)
class Withdraw:
    """A coordinator ends the enrolment."""

    reason: str


Event = Enrol | ResourceChanged | TimerFired | TaskStatusChanged | StepOverride | Withdraw


# Commands -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenTask:
    """Create the Task for a step round, owned by ``role`` (requested by ``requester_role`` for handovers)."""

    step_id: str
    iteration: int
    role: str
    requester_role: str | None
    due_at: datetime | None


@dataclass(frozen=True)
class UpdateTask:
    """Change a step round's Task."""

    step_id: str
    iteration: int
    status: str
    business_status: str | None = None
    reason: str | None = None
    owner: str | None = None
    due_at: datetime | None = None


@dataclass(frozen=True)
class ScheduleTimer:
    """Add a durable timer."""

    kind: TimerKind
    step_id: str
    iteration: int
    at: datetime
    seq: int = 0


@dataclass(frozen=True)
class CancelTimers:
    """Drop the pending timers of one step, or of the whole enrolment when ``step_id`` is None."""

    step_id: str | None = None


@dataclass(frozen=True)
class Notify:
    """Tell the organisation in ``role`` about a step (becomes a Communication and an outbox row)."""

    kind: NoticeKind
    step_id: str
    iteration: int
    role: str
    seq: int = 0
    reason: str | None = None


@dataclass(frozen=True)
class RunAction:
    """Run the step's integrator action after commit, through the outbox."""

    step_id: str
    iteration: int


@dataclass(frozen=True)
class EndEnrolment:
    """The enrolment ended."""

    status: EnrolmentStatus
    reason: str


Command = OpenTask | UpdateTask | ScheduleTimer | CancelTimers | Notify | RunAction | EndEnrolment


@dataclass(frozen=True)
class Outcome:
    """What evaluating one event produced: the new state and the commands to apply with it."""

    state: EnrolmentState
    commands: tuple[Command, ...]
