"""Checks a pathway declaration and reports every problem at once."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from zorgpad.engine._criteria import AllOf, AnyOf, Criterion
from zorgpad.engine._dsl import RESERVED, Before, Escalation, Handover, Pathway, Reminder, Step
from zorgpad.engine._durations import Duration
from zorgpad.engine._roles import Role
from zorgpad.engine.errors import InvalidPathwayError

_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_RESOURCE_TYPE = re.compile(r"^[A-Z][A-Za-z]+$")


def _got(value: object) -> str:
    return f"{value!r} that is a {type(value)}"


def validate(pathway: type[Pathway], names: Mapping[str, Any] | None = None) -> None:
    """Raise :class:`InvalidPathwayError` with every problem of ``pathway``, or return quietly."""
    problems: list[str] = []
    problems += _check_identity(pathway)
    problems += _check_names(pathway, names or vars(pathway))
    # The base class's method: a step that took the name 'known_roles' must not hide it.
    roles = set(Pathway.__dict__["known_roles"].__func__(pathway))
    for step in pathway.steps:
        problems += _check_step(pathway, step, roles)
    problems += _check_cycles(pathway)
    problems += _check_criteria(pathway)
    if problems:
        raise InvalidPathwayError(pathway.__name__, problems)


def _check_identity(pathway: type[Pathway]) -> list[str]:
    problems = []
    if not _FHIR_ID.match(pathway.id or ""):
        problems.append(f"id must be a FHIR id of 1-64 letters, digits, '-' or '.' (got {pathway.id!r})")
    if not pathway.version or "|" in pathway.version:
        problems.append(f"version must be a non-empty string without '|' (got {pathway.version!r})")
    if not pathway.steps:
        problems.append("it has no steps")
    for label in ("enrol_when", "exit_when"):
        value = getattr(pathway, label)
        if value is not None and not isinstance(value, Criterion | AnyOf):
            problems.append(f"'{label}' must be a Criterion or criteria joined with | (got {_got(value)})")
    if not isinstance(pathway.roles, list | tuple):
        problems.append(f"'roles' must be a tuple of Role objects (got {_got(pathway.roles)})")
    else:
        problems += [f"'roles' must hold Role objects (got {_got(role)})"
                     for role in pathway.roles if not isinstance(role, Role)]
    if pathway.enrol_within is not None and not isinstance(pathway.enrol_within, Duration):
        problems.append(f"'enrol_within' must be a Duration (got {_got(pathway.enrol_within)})")
    if not isinstance(pathway.once, bool):
        problems.append(f"'once' must be True or False (got {_got(pathway.once)})")
    requires = pathway.requires
    if not isinstance(requires, list | tuple) or not all(isinstance(r, str) and r for r in requires):
        problems.append(f"'requires' must be a tuple of pathway ids (got {_got(requires)})")
    elif pathway.id in requires:
        problems.append("it requires an enrolment in itself")
    return problems


def _check_names(pathway: type[Pathway], names: Mapping[str, Any]) -> list[str]:
    problems = []
    seen: dict[int, str] = {}
    for name, value in names.items():
        if not isinstance(value, Step):
            continue
        if name in RESERVED:
            problems.append(f"step attribute {name!r} is a reserved name")
        if id(value) in seen:
            problems.append(f"one step is declared twice, as {seen[id(value)]!r} and {name!r}")
        seen[id(value)] = name
    return problems


def _role_problem(step: Step, label: str, role: object, roles: set[Role]) -> list[str]:
    if not isinstance(role, Role):
        return [f"step {step.id!r} has {label}= that is not a Role (got {_got(role)})"]
    if role not in roles:
        return [f"step {step.id!r} has {label}={role.code!r}, which is not a known role"]
    return []


def _check_step(pathway: type[Pathway], step: Step, roles: set[Role]) -> list[str]:
    problems: list[str] = []
    if not step.title or not isinstance(step.title, str):
        problems.append(f"step {step.id!r} has no title")
    if step.owner is None:
        problems.append(f"step {step.id!r} has no owner")
    else:
        problems += _role_problem(step, "owner", step.owner, roles)

    own_steps = {id(s) for s in pathway.steps}
    after = step.after if isinstance(step.after, list | tuple) else [step.after]
    for other in after:
        if not isinstance(other, Step):
            problems.append(f"step {step.id!r} has after={other!r}, which is not a Step (got {_got(other)})")
        elif id(other) not in own_steps:
            problems.append(f"step {step.id!r} has after={other.id or other.title!r}, which is not a step of "
                            f"{pathway.__name__}")
        elif other is step:
            problems.append(f"step {step.id!r} comes after itself")

    for label in ("offset", "due", "repeat"):
        value = getattr(step, label)
        if label == "due" and isinstance(value, Before):
            problems += _check_before(step, value)
        elif value is not None and not isinstance(value, Duration):
            problems.append(f"step {step.id!r}: '{label}' must be a Duration (got {_got(value)})")
    if isinstance(step.repeat, Duration) and step.repeat.value == 0:
        problems.append(f"step {step.id!r} repeats every 0 {step.repeat.unit}")
    if step.until is not None and step.repeat is None:
        problems.append(f"step {step.id!r} has until= but no repeat= (until says when repeating stops)")

    problems += _check_reminder(step, roles)
    problems += _check_escalation(step, roles)

    for label in ("done_when", "only_if", "again_when", "until"):
        value = getattr(step, label)
        allowed: tuple[type, ...] = (Criterion, AnyOf, AllOf) if label == "only_if" else (Criterion, AnyOf)
        if value is not None and not isinstance(value, allowed):
            problems.append(f"step {step.id!r}: '{label}' must be a Criterion"
                            f"{' (a & b only in only_if)' if isinstance(value, AllOf) else ''} (got {_got(value)})")
    if isinstance(step.again_when, Criterion | AnyOf) and isinstance(step.done_when, Criterion | AnyOf):
        shared = {c.name for c in step.again_when.leaves()} & {c.name for c in step.done_when.leaves()}
        if shared:
            problems.append(f"step {step.id!r} has {', '.join(sorted(shared))} both in done_when and again_when")
    for role in step.informs:
        problems += _role_problem(step, "inform", role, roles)
    if step.automatic and (step.remind is not None or step.escalate is not None or step.done_when is not None):
        problems.append(f"step {step.id!r} is automatic (done as soon as it starts) but has reminders, an "
                        "escalation or done_when")
    if step.otherwise not in ("wait", "skip"):
        problems.append(f"step {step.id!r}: 'otherwise' must be 'wait' or 'skip' (got {step.otherwise!r})")
    if step.otherwise == "skip" and step.only_if is None:
        problems.append(f"step {step.id!r} has otherwise='skip' but no only_if guard")
    if step.handover is not None:
        if not isinstance(step.handover, Handover):
            problems.append(f"step {step.id!r}: 'handover' must be a Handover (got {_got(step.handover)})")
        else:
            problems += _role_problem(step, "handover.to", step.handover.to, roles)
            problems += [f"step {step.id!r}: handover content must be Criteria (got {_got(c)})"
                         for c in step.handover.content if not isinstance(c, Criterion)]
            share_if = step.handover.share_if
            if share_if is not None and not isinstance(share_if, Criterion | AnyOf | AllOf):
                problems.append(f"step {step.id!r}: handover share_if must be a Criterion (got {_got(share_if)})")
    problems += _check_letters(pathway, step)
    if step.action is not None and not callable(step.action):
        problems.append(f"step {step.id!r}: 'action' must be callable (got {_got(step.action)})")
    return problems


def _check_letters(pathway: type[Pathway], step: Step) -> list[str]:
    from zorgpad.engine.render.letters import LANGUAGES, template_exists

    wanted = []
    if step.letter is not None:
        wanted.append((step.letter, False))
    if isinstance(step.handover, Handover) and step.handover.summary is not None:
        wanted.append((step.handover.summary, True))
    if not wanted:
        return []
    if not pathway.letters:
        return [f"step {step.id!r} uses letter templates but the pathway names no 'letters' folder"]
    return [f"step {step.id!r}: letter template {name!r} is missing for "
            f"{'/'.join(LANGUAGES)} in {pathway.letters} (expected {name}.<language>.{'html' if html else 'txt'}.j2)"
            for name, html in wanted if not template_exists(pathway.letters, name, html=html)]


def _check_before(step: Step, deadline: Before) -> list[str]:
    problems = []
    if not isinstance(deadline.of, Criterion) or deadline.of.date is None:
        problems.append(f"step {step.id!r}: due=before(...) needs a Criterion with a date= element "
                        f"(got {_got(deadline.of)})")
    if not isinstance(deadline.by, Duration) or deadline.by.unit in ("mo", "a"):
        problems.append(f"step {step.id!r}: due=before(..., by) needs a Duration in minutes, hours, days or weeks "
                        f"(got {_got(deadline.by)})")
    return problems


def _check_reminder(step: Step, roles: set[Role]) -> list[str]:
    remind = step.remind
    if remind is None:
        return []
    if not isinstance(remind, Reminder):
        return [f"step {step.id!r}: 'remind' must be a Reminder (got {_got(remind)})"]
    problems = []
    if step.due is None:
        problems.append(f"step {step.id!r} has reminders but no due= deadline")
    if not isinstance(remind.every, Duration) or remind.every.value == 0:
        problems.append(f"step {step.id!r}: reminder 'every' must be a Duration longer than zero "
                        f"(got {remind.every!r})")
    if not isinstance(remind.times, int) or remind.times < 1:
        problems.append(f"step {step.id!r}: reminder 'times' must be at least 1 (got {remind.times!r})")
    if remind.to is not None:
        problems += _role_problem(step, "remind.to", remind.to, roles)
    escalate = step.escalate
    if not problems and isinstance(escalate, Escalation) and isinstance(escalate.after, Duration):
        last = remind.offsets()[-1]
        if last.approximate() >= escalate.after.approximate():
            problems.append(f"step {step.id!r} reminds {last} after due, which is not before its escalation "
                            f"{escalate.after} after due")
    return problems


def _check_escalation(step: Step, roles: set[Role]) -> list[str]:
    escalate = step.escalate
    if escalate is None:
        return []
    if not isinstance(escalate, Escalation):
        return [f"step {step.id!r}: 'escalate' must be an Escalation (got {_got(escalate)})"]
    problems = []
    if step.due is None:
        problems.append(f"step {step.id!r} has an escalation but no due= deadline")
    if not isinstance(escalate.after, Duration):
        problems.append(f"step {step.id!r}: escalation 'after' must be a Duration (got {_got(escalate.after)})")
    problems += _role_problem(step, "escalate.to", escalate.to, roles)
    return problems


def _check_cycles(pathway: type[Pathway]) -> list[str]:
    own = {id(s) for s in pathway.steps}
    graph = {s.id: [p.id for p in s.predecessors if isinstance(p, Step) and id(p) in own] for s in pathway.steps}
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, []):
            if nxt == node:
                continue  # reported as "comes after itself"
            if state.get(nxt) == 1:
                loop = [*trail[trail.index(nxt):], nxt] if nxt in trail else [node, nxt]
                cycles.append("steps form a cycle: " + " -> ".join(reversed(loop)))
            elif nxt in graph and not state.get(nxt):
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for node in graph:
        if not state.get(node):
            visit(node, [node])
    return cycles


def _check_criteria(pathway: type[Pathway]) -> list[str]:
    problems = []
    by_name: dict[str, Criterion] = {}
    conditions: list[object] = [pathway.enrol_when, pathway.exit_when]
    for step in pathway.steps:
        conditions += [step.done_when, step.only_if, step.again_when, step.until]
        if isinstance(step.due, Before):
            conditions.append(step.due.of)
        if isinstance(step.handover, Handover):
            conditions += [*step.handover.content, step.handover.share_if]
    for condition in conditions:
        if not isinstance(condition, Criterion | AnyOf | AllOf):
            continue
        for leaf in condition.leaves():
            if not _FHIR_ID.match(leaf.name):
                problems.append(f"criterion name must be a FHIR id (got {leaf.name!r})")
            if not _RESOURCE_TYPE.match(leaf.resource_type):
                problems.append(f"criterion {leaf.name!r} has resource type {leaf.resource_type!r}, "
                                "which is not a FHIR resource type")
            known = by_name.setdefault(leaf.name, leaf)
            if known != leaf:
                problems.append(f"criterion name {leaf.name!r} names two different criteria")
    return sorted(set(problems), key=problems.index)
