"""The pathway DSL: a pathway is a class whose attributes are its steps.

    @defn(id="example", version="1.0.0")
    class Example(Pathway):
        \"\"\"What the pathway is for.\"\"\"

        enrol_when = SURPRISE_QUESTION_NO
        register = Step("Add to the palliative register", owner=GP, due=days(7))
        talk = Step("Hold the ACP conversation", owner=GP, after=register, due=days(28))

Step ids are the attribute names; the class docstring is the description. ``after=`` takes the step
objects themselves, so a typo fails at import time. :func:`defn` validates the whole declaration and
raises one :class:`InvalidPathwayError` listing every problem.

A new version of a pathway can be a subclass of the old one that declares only what changed: it has the
old version's steps, in their order, with each step of the same name replaced by its own, and its own new
steps after them (a step that comes ``after=`` a replaced step must be declared again too)::

    @defn(id="example", version="1.1.0")
    class ExampleV2(Example):
        \"\"\"What the pathway is for, now talking sooner.\"\"\"

        talk = Step("Hold the ACP conversation", owner=GP, after=Example.register, due=days(14))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar, Literal, TypeVar

from zorgpad.engine._criteria import AllOf, AnyOf, Coding, Condition, Criterion, Guard
from zorgpad.engine._durations import Duration
from zorgpad.engine._roles import STANDARD_ROLES, Role

DEFAULT_BASE_URL = "https://zorgpad.nl/fhir"


@dataclass(frozen=True)
class Reminder:
    """Remind the owner (or ``to``) of an open step: first ``first`` after its due moment, then every
    ``every``, at most ``times`` times."""

    every: Duration
    times: int = 1
    first: Duration | None = None
    to: Role | None = None

    def offsets(self) -> list[Duration]:
        """When each reminder falls, measured from the step's due moment (approximate across units)."""
        start = self.first if self.first is not None else Duration(0, self.every.unit)
        return [start + self.every * n if n else start for n in range(self.times)]

    def moments(self, due: datetime) -> list[datetime]:
        """When each reminder falls for a step due at ``due``, in exact calendar arithmetic."""
        moment = self.first.after(due) if self.first is not None else due
        found = [moment]
        for _ in range(self.times - 1):
            moment = self.every.after(moment)
            found.append(moment)
        return found


@dataclass(frozen=True)
class Escalation:
    """Tell ``to`` when a step is still open ``after`` its due moment has passed."""

    after: Duration
    to: Role


@dataclass(frozen=True)
class Handover:
    """Hand the step over to another organisation: a Task owned by the receiving role, announced with a
    notified pull, carrying the patient's resources that match ``content``."""

    to: Role
    content: tuple[Criterion, ...] = ()
    code: Coding | None = None
    summary: str | None = None  # a letter template rendered into a Composition that travels with the Task
    share_if: Guard | None = None  # without it, the Task travels without content or summary (e.g. no consent)


@dataclass(frozen=True)
class Before:
    """A deadline ``by`` before the date that a criterion's resource carries (its ``date`` element), such
    as a discharge conversation due 12 hours before the planned discharge. The step waits until such a
    resource is known."""

    of: Criterion
    by: Duration

    def __str__(self) -> str:
        return f"{self.by} before {self.of.name}"


def before(of: Criterion, by: Duration) -> Before:
    """A deadline ``by`` before the date in the resource that meets ``of``."""
    return Before(of, by)


@dataclass(frozen=True)
class ActionContext:
    """What an integrator's step action is told. Actions run after commit, at least once, through the
    outbox: make them idempotent on ``idempotency_key``."""

    enrolment_id: str
    patient: str
    pathway: str
    step: str
    iteration: int
    idempotency_key: str
    now: datetime


Action = Callable[[ActionContext], None]


@dataclass(eq=False)
class Step:
    """One piece of work in a pathway, owned by a role, with its timing and what completes it."""

    title: str
    owner: Role | None = None
    after: Step | Sequence[Step] = ()
    offset: Duration | None = None
    due: Duration | Before | None = None
    repeat: Duration | None = None
    remind: Reminder | None = None
    escalate: Escalation | None = None
    done_when: Condition | None = None
    only_if: Guard | None = None
    otherwise: Literal["wait", "skip"] = "wait"
    handover: Handover | None = None
    action: Action | None = None
    code: Coding | None = None
    description: str = ""
    again_when: Condition | None = None
    #: With ``repeat=``: once a resource meets this, no round starts any more (a planned one, or the first, is
    #: skipped: the step is not applicable) and a round that completes is the last.
    until: Condition | None = None
    inform: Role | tuple[Role, ...] = ()
    automatic: bool = False
    letter: str | None = None  # a letter template rendered for the patient and relatives when the step starts
    id: str = field(default="", init=False)

    def __set_name__(self, owner: type, name: str) -> None:
        if not self.id:
            self.id = name

    @property
    def predecessors(self) -> tuple[Step, ...]:
        """The steps this one waits for (``after=`` as a tuple)."""
        after: object = self.after
        if isinstance(after, list | tuple):
            return tuple(after)
        return (after,)  # type: ignore[return-value]  # validation reports anything that is not a Step

    @property
    def informs(self) -> tuple[Role, ...]:
        """The roles told when the step starts (``inform=`` as a tuple)."""
        inform: object = self.inform
        if isinstance(inform, list | tuple):
            return tuple(inform)
        return (inform,)  # type: ignore[return-value]  # validation reports anything that is not a Role

    @property
    def assignee(self) -> Role | None:
        """The role whose Task this is: the receiver for a handover, otherwise the owner."""
        return self.handover.to if self.handover else self.owner

    def __repr__(self) -> str:
        return f"Step({self.id or self.title!r})"


#: Attribute names that belong to the pathway itself and cannot name a step.
RESERVED = frozenset(
    {"id", "version", "title", "description", "url", "canonical", "steps", "roles", "enrol_when", "exit_when",
     "requires", "step", "known_roles", "criteria", "letters", "once", "enrol_within"}
)


class Pathway:
    """Base class of every pathway declaration; decorate subclasses with :func:`defn`."""

    id: ClassVar[str] = ""
    version: ClassVar[str] = ""
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    url: ClassVar[str] = ""
    enrol_when: ClassVar[Condition | None] = None
    exit_when: ClassVar[Condition | None] = None
    roles: ClassVar[tuple[Role, ...]] = ()
    requires: ClassVar[tuple[str, ...]] = ()  # pathway ids the patient must be actively enrolled in
    letters: ClassVar[str | None] = None  # folder of this pathway's letter templates
    once: ClassVar[bool] = False  # enrol a patient automatically at most once, ever (e.g. after death)
    #: Enrol automatically only when the enrolling criterion's date lies no further back than this (a death
    #: recorded decades ago, as in an imported history, starts no bereavement care).
    enrol_within: ClassVar[Duration | None] = None
    steps: ClassVar[tuple[Step, ...]] = ()

    def __init__(self) -> None:
        raise TypeError(f"{type(self).__name__} is a pathway declaration; use the class itself")

    @classmethod
    def canonical(cls) -> str:
        """``url|version``: what an enrolment is pinned to."""
        return f"{cls.url}|{cls.version}"

    @classmethod
    def step(cls, step_id: str) -> Step:
        """The step with id ``step_id``."""
        for step in cls.steps:
            if step.id == step_id:
                return step
        raise KeyError(f"pathway {cls.id} has no step {step_id!r} (steps: {', '.join(s.id for s in cls.steps)})")

    @classmethod
    def known_roles(cls) -> tuple[Role, ...]:
        """The standard roles plus the ones this pathway declares."""
        declared = cls.roles if isinstance(cls.roles, list | tuple) else ()
        return STANDARD_ROLES + tuple(r for r in declared if isinstance(r, Role) and r not in STANDARD_ROLES)

    @classmethod
    def criteria(cls) -> dict[str, Criterion]:
        """Every single criterion the pathway uses, by name (computed once per declared pathway)."""
        cached: dict[str, Criterion] | None = cls.__dict__.get("_criteria_cache")
        if cached is not None:
            return cached
        found: dict[str, Criterion] = {}
        for condition in _conditions(cls):
            for leaf in condition.leaves():
                found.setdefault(leaf.name, leaf)
        if cls.id:  # declared with @defn: the declaration no longer changes
            cls._criteria_cache = found  # type: ignore[attr-defined]
        return found


def _conditions(pathway: type[Pathway]) -> list[Guard]:
    conditions: list[Guard] = [c for c in (pathway.enrol_when, pathway.exit_when) if c is not None]
    for step in pathway.steps:
        conditions += [c for c in (step.done_when, step.only_if, step.again_when, step.until)
                       if isinstance(c, Criterion | AnyOf | AllOf)]
        if isinstance(step.due, Before) and isinstance(step.due.of, Criterion):
            conditions.append(step.due.of)
        if isinstance(step.handover, Handover) and isinstance(step.handover.share_if, Criterion | AnyOf | AllOf):
            conditions.append(step.handover.share_if)
    return conditions


P = TypeVar("P", bound=type[Pathway])


def _base_steps(cls: type[Pathway]) -> tuple[Step, ...]:
    """The steps of the declared pathway ``cls`` derives from (none when it derives from Pathway itself)."""
    for base in cls.__mro__[1:]:
        if base is not Pathway and issubclass(base, Pathway) and base.__dict__.get("id"):
            return base.steps
    return ()


def defn(
    *, id: str, version: str, title: str | None = None, url: str | None = None
) -> Callable[[P], P]:
    """Declare a pathway: collect its steps, fill in id, version and canonical URL, and validate it.

    Raises :class:`~zorgpad.engine.errors.InvalidPathwayError` listing every problem at once.
    """
    from zorgpad.engine._validate import validate  # local: _validate imports this module

    def declare(cls: P) -> P:
        names = dict(vars(cls))  # before the pathway's own attributes overwrite any step of the same name
        own: dict[str, Step] = {}
        for name, value in names.items():
            if isinstance(value, Step):
                if not value.id:
                    value.id = name
                own[name] = value
        inherited = [own.pop(step.id, step) for step in _base_steps(cls)]
        cls.steps = (*inherited, *own.values())
        cls.id = id
        cls.version = version
        doc = (cls.__doc__ or "").strip()
        cls.description = doc
        cls.title = title or (doc.splitlines()[0].rstrip(".") if doc else cls.__name__)
        cls.url = url or f"{DEFAULT_BASE_URL}/PlanDefinition/{id}"
        validate(cls, names=names)
        return cls

    return declare

