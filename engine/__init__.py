"""Zorgpad's engine: declare care pathways in Python and run them durably against FHIR data.

The public surface is exactly ``__all__``; everything in ``_private`` modules may change.
"""

from zorgpad.engine._criteria import AllOf, AnyOf, Coding, Criterion
from zorgpad.engine._dsl import ActionContext, Before, Escalation, Handover, Pathway, Reminder, Step, before, defn
from zorgpad.engine._durations import Duration, days, hours, minutes, months, weeks, years
from zorgpad.engine._evaluate import evaluate, new_enrolment
from zorgpad.engine._model import (
    Command,
    Enrol,
    EnrolmentState,
    Event,
    NoticeKind,
    Outcome,
    ResourceChanged,
    StepOverride,
    StepRun,
    TaskStatusChanged,
    TimerFired,
    TimerKind,
    Withdraw,
)
from zorgpad.engine._roles import (
    AMBULANCE,
    COORDINATOR,
    GP,
    HOME_CARE,
    HOSPITAL,
    OUT_OF_HOURS,
    ROLE_SYSTEM,
    STANDARD_ROLES,
    Role,
)
from zorgpad.engine._states import EnrolmentStatus, StepState
from zorgpad.engine._validate import validate
from zorgpad.engine.clock import Clock, FrozenClock, SystemClock
from zorgpad.engine.errors import (
    ConfigurationError,
    IllegalTransitionError,
    InvalidPathwayError,
    MigrationError,
    NotEnrolledError,
    PathwayError,
    UnknownPathwayError,
)
from zorgpad.engine.registry import Registry
from zorgpad.engine.runtime import Engine
from zorgpad.engine.store.db import Database

__all__ = [
    "AMBULANCE",
    "COORDINATOR",
    "GP",
    "HOME_CARE",
    "HOSPITAL",
    "OUT_OF_HOURS",
    "ROLE_SYSTEM",
    "STANDARD_ROLES",
    "ActionContext",
    "AllOf",
    "AnyOf",
    "Before",
    "Clock",
    "Coding",
    "Command",
    "ConfigurationError",
    "Criterion",
    "Database",
    "Duration",
    "Engine",
    "Enrol",
    "EnrolmentState",
    "EnrolmentStatus",
    "Escalation",
    "Event",
    "FrozenClock",
    "Handover",
    "IllegalTransitionError",
    "InvalidPathwayError",
    "MigrationError",
    "NotEnrolledError",
    "NoticeKind",
    "Outcome",
    "Pathway",
    "PathwayError",
    "Registry",
    "Reminder",
    "ResourceChanged",
    "Role",
    "Step",
    "StepOverride",
    "StepRun",
    "StepState",
    "SystemClock",
    "TaskStatusChanged",
    "TimerFired",
    "TimerKind",
    "UnknownPathwayError",
    "Withdraw",
    "before",
    "days",
    "defn",
    "evaluate",
    "hours",
    "minutes",
    "months",
    "new_enrolment",
    "validate",
    "weeks",
    "years",
]
