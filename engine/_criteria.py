"""Criteria: which FHIR resources enrol a patient, end an enrolment, complete a step or open a guard.

A criterion matches one resource type, optionally by code (``system|code`` at a path such as ``code`` or
``provision.code``), status, value (``value[x]``) and elements that must be present (``deceased[x]``).
Criteria are data, not lambdas, so they can be indexed by ``(resourceType, code)`` and exported.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

JSON = Mapping[str, Any]


@dataclass(frozen=True)
class Coding:
    """A code in a code system, written ``system|code``."""

    system: str
    code: str
    display: str = field(default="", compare=False)

    def __str__(self) -> str:
        return f"{self.system}|{self.code}"


def codings_at(resource: JSON, path: str) -> Iterator[Coding]:
    """Yield every Coding under the CodeableConcept(s) or Coding(s) at a dotted ``path``."""
    for node in _walk(resource, path.split(".")):
        if not isinstance(node, Mapping):
            continue
        entries = node.get("coding", [node] if "code" in node and "system" in node else [])
        for coding in entries:
            if isinstance(coding, Mapping) and coding.get("code") is not None:
                yield Coding(str(coding.get("system", "")), str(coding["code"]))


def _walk(node: Any, parts: list[str]) -> Iterator[Any]:
    if isinstance(node, list):
        for item in node:
            yield from _walk(item, parts)
        return
    if not parts:
        yield node
        return
    if isinstance(node, Mapping) and parts[0] in node:
        yield from _walk(node[parts[0]], parts[1:])


def _choice_values(resource: JSON, name: str) -> list[Any]:
    """Values of a choice element ``name[x]`` (for ``value`` this finds valueBoolean, valueQuantity, …)."""
    return [v for k, v in resource.items() if k.startswith(name) and k[len(name) : len(name) + 1].isupper()]


def _value_matches(expected: object, resource: JSON) -> bool:
    for actual in _choice_values(resource, "value"):
        if isinstance(expected, Coding):
            if isinstance(actual, Mapping) and expected in set(codings_at({"v": actual}, "v")):
                return True
        elif isinstance(expected, bool) or isinstance(actual, bool):
            if actual is expected:
                return True
        elif isinstance(expected, int | float) and isinstance(actual, Mapping):
            if actual.get("value") == expected:
                return True
        elif actual == expected:
            return True
    return False


def _present(resource: JSON, element: str) -> bool:
    if element.endswith("[x]"):
        values = _choice_values(resource, element[:-3])
    else:
        values = list(_walk(resource, element.split(".")))
    return any(v not in (None, False, "", [], {}) for v in values)


@dataclass(frozen=True)
class Criterion:
    """A named test on one FHIR resource.

    >>> dnr = Criterion("cpr-refused", "Consent", code=Coding("http://snomed.info/sct", "89666000"),
    ...                 path="provision.code", status="active")
    """

    name: str
    resource_type: str
    code: Coding | tuple[Coding, ...] = ()
    path: str = "code"
    status: str | tuple[str, ...] = ()
    value: bool | int | float | str | Coding | None = None
    present: str | tuple[str, ...] = ()
    description: str = ""
    date: str | None = None  # dotted path to a date the pathway times against, e.g. "period.end"
    #: Only a resource written while the enrolment runs counts (not one from an earlier episode, such as
    #: the discharge of a previous admission).
    during_enrolment: bool = False
    #: Only the resource that started the enrolment counts (e.g. the admission Encounter, when it later says
    #: the patient was discharged), not another resource of the same kind (an ACP conversation's Encounter).
    episode: bool = False

    @property
    def codes(self) -> tuple[Coding, ...]:
        """The codes, any of which matches; empty when the criterion matches any code."""
        return (self.code,) if isinstance(self.code, Coding) else tuple(self.code)

    @property
    def statuses(self) -> tuple[str, ...]:
        """The accepted statuses; empty when any status matches."""
        return (self.status,) if isinstance(self.status, str) else tuple(self.status)

    @property
    def required_elements(self) -> tuple[str, ...]:
        """Elements that must be present and not false."""
        return (self.present,) if isinstance(self.present, str) else tuple(self.present)

    def leaves(self) -> tuple[Criterion, ...]:
        """The single criteria this one is made of (itself)."""
        return (self,)

    def matches(self, resource: JSON) -> bool:
        """Whether ``resource`` meets every part of this criterion."""
        if resource.get("resourceType") != self.resource_type:
            return False
        if self.codes and not set(self.codes) & set(codings_at(resource, self.path)):
            return False
        if self.statuses and resource.get("status") not in self.statuses:
            return False
        if self.value is not None and not _value_matches(self.value, resource):
            return False
        return all(_present(resource, element) for element in self.required_elements)

    def date_of(self, resource: JSON) -> datetime | None:
        """The moment at ``date`` in ``resource`` (a date means its start), or None."""
        if self.date is None:
            return None
        for node in _walk(resource, self.date.split(".")):
            if isinstance(node, str):
                try:
                    moment = datetime.fromisoformat(node.replace("Z", "+00:00"))
                except ValueError:
                    continue
                return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        return None

    def __or__(self, other: Criterion | AnyOf) -> AnyOf:
        return AnyOf(self.leaves() + other.leaves())

    def __and__(self, other: Criterion | AnyOf | AllOf) -> AllOf:
        return AllOf((self,) + (other.parts if isinstance(other, AllOf) else (other,)))

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class AnyOf:
    """Matches when any of its criteria matches (built with ``a | b``)."""

    criteria: tuple[Criterion, ...]

    def leaves(self) -> tuple[Criterion, ...]:
        """The single criteria, any of which matches."""
        return self.criteria

    def matches(self, resource: JSON) -> bool:
        """Whether any of the criteria matches ``resource``."""
        return any(c.matches(resource) for c in self.criteria)

    def __or__(self, other: Criterion | AnyOf) -> AnyOf:
        return AnyOf(self.criteria + other.leaves())

    def __and__(self, other: Criterion | AnyOf | AllOf) -> AllOf:
        return AllOf((self,) + (other.parts if isinstance(other, AllOf) else (other,)))

    def __str__(self) -> str:
        return " | ".join(c.name for c in self.criteria)


@dataclass(frozen=True)
class AllOf:
    """Holds when every one of its criteria holds for some resource of the patient (built with ``a & b``).

    Only a step's ``only_if`` guard may combine criteria this way: it asks about the patient's known
    facts, not about one resource.
    """

    parts: tuple[Criterion | AnyOf, ...]

    def leaves(self) -> tuple[Criterion, ...]:
        """Every single criterion in it."""
        return tuple(leaf for part in self.parts for leaf in part.leaves())

    def __and__(self, other: Criterion | AnyOf | AllOf) -> AllOf:
        return AllOf(self.parts + (other.parts if isinstance(other, AllOf) else (other,)))

    def __str__(self) -> str:
        return " & ".join(f"({p})" if isinstance(p, AnyOf) else str(p) for p in self.parts)


Condition = Criterion | AnyOf
Guard = Criterion | AnyOf | AllOf


def holds(condition: Guard, facts: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether ``facts`` (criterion name -> matching resources) satisfy a condition."""
    if isinstance(condition, AllOf):
        return all(holds(part, facts) for part in condition.parts)
    return any(facts.get(leaf.name) for leaf in condition.leaves())
