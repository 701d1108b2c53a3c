"""An index from ``(resourceType, code)`` to the criteria that may match, so that an incoming resource
is matched in constant time instead of by scanning pathways and enrolments."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from zorgpad.engine._criteria import Criterion, codings_at
from zorgpad.engine._dsl import Pathway

PathwayKey = tuple[str, str]  # (pathway id, version)


@dataclass(frozen=True)
class Use:
    """One criterion as used by one pathway version."""

    pathway: PathwayKey
    criterion: Criterion


@dataclass(frozen=True)
class Matches:
    """What one resource meets: criterion names per pathway version, and which pathways it enrols in."""

    by_pathway: Mapping[PathwayKey, frozenset[str]]
    enrols: frozenset[PathwayKey]


class CriteriaIndex:
    """Criteria of many pathways, looked up by the resource's type and codes."""

    def __init__(self, pathways: Iterable[type[Pathway]] = ()) -> None:
        self._by_code: dict[tuple[str, str, str, str], list[Use]] = defaultdict(list)
        self._any_code: dict[str, list[Use]] = defaultdict(list)
        self._paths: dict[str, set[str]] = defaultdict(set)
        self._enrol: dict[PathwayKey, frozenset[str]] = {}
        for pathway in pathways:
            self.add(pathway)

    def add(self, pathway: type[Pathway]) -> None:
        """Index every criterion of ``pathway``."""
        key = (pathway.id, pathway.version)
        for criterion in pathway.criteria().values():
            use = Use(key, criterion)
            if criterion.codes:
                self._paths[criterion.resource_type].add(criterion.path)
                for coding in criterion.codes:
                    self._by_code[(criterion.resource_type, criterion.path, coding.system, coding.code)].append(use)
            else:
                self._any_code[criterion.resource_type].append(use)
        if pathway.enrol_when is not None:
            self._enrol[key] = frozenset(c.name for c in pathway.enrol_when.leaves())

    def candidates(self, resource: Mapping[str, Any]) -> list[Use]:
        """Criteria that could match ``resource``, found by type and code alone."""
        rtype = str(resource.get("resourceType", ""))
        found = list(self._any_code.get(rtype, ()))
        for path in self._paths.get(rtype, ()):
            for coding in set(codings_at(resource, path)):
                found += self._by_code.get((rtype, path, coding.system, coding.code), ())
        return found

    def match(self, resource: Mapping[str, Any]) -> Matches:
        """The criteria ``resource`` fully meets, per pathway version."""
        names: dict[PathwayKey, set[str]] = defaultdict(set)
        for use in self.candidates(resource):
            if use.criterion.matches(resource):
                names[use.pathway].add(use.criterion.name)
        by_pathway = {k: frozenset(v) for k, v in names.items()}
        enrols = frozenset(k for k, v in by_pathway.items() if v & self._enrol.get(k, frozenset()))
        return Matches(by_pathway, enrols)
