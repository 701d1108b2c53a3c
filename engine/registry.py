"""Which pathways exist: the built-in ones, those registered through the ``zorgpad.pathways``
entry-point group, and pathway files named on the command line.

Several versions of one pathway may be registered at once: new enrolments take the newest, running
enrolments stay on the version they started with.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

from zorgpad.engine._dsl import Pathway
from zorgpad.engine._index import CriteriaIndex
from zorgpad.engine.errors import InvalidPathwayError, PathwayError, UnknownPathwayError

ENTRY_POINT_GROUP = "zorgpad.pathways"

__all__ = ["ENTRY_POINT_GROUP", "Registry", "load_file", "pathways_in"]


def _version_key(version: str) -> tuple[tuple[int, str], ...]:
    return tuple((int(part), "") if part.isdigit() else (-1, part) for part in version.split("."))


def pathways_in(value: Any) -> list[type[Pathway]]:
    """The pathway classes in ``value``: a pathway, an iterable of them, or a module."""
    if isinstance(value, type) and issubclass(value, Pathway) and value is not Pathway:
        return [value]
    if isinstance(value, ModuleType):
        return [v for v in vars(value).values()
                if isinstance(v, type) and issubclass(v, Pathway) and v is not Pathway and v.id]
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        found: list[type[Pathway]] = []
        for item in value:
            found += pathways_in(item)
        return found
    raise PathwayError(f"expected a Pathway, a list of them or a module (got {value!r})")


def load_file(path: str | Path) -> list[type[Pathway]]:
    """Import a pathway file (validating every pathway in it) and return its pathways."""
    path = Path(path)
    if not path.is_file():
        raise PathwayError(f"{path}: no such file")
    name = f"zorgpad_pathway_file_{abs(hash(path.resolve()))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PathwayError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except InvalidPathwayError:
        raise
    except SyntaxError as exc:
        raise PathwayError(f"{path}:{exc.lineno}: {exc.msg}") from exc
    except Exception as exc:
        raise PathwayError(f"{path}: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.modules.pop(name, None)
    found = pathways_in(module)
    if not found:
        raise PathwayError(f"{path}: defines no pathway (decorate a Pathway subclass with @defn)")
    return found


class Registry:
    """Pathway versions by id, with the criteria index over all of them."""

    def __init__(self, pathways: Iterable[type[Pathway]] = ()) -> None:
        self._versions: dict[str, dict[str, type[Pathway]]] = {}
        for pathway in pathways:
            self.add(pathway)
        self._index: CriteriaIndex | None = None

    @classmethod
    def default(cls, *, entry_points_too: bool = True) -> Registry:
        """The built-in pathways plus every ``zorgpad.pathways`` entry point."""
        from zorgpad.pathways import REGISTRY  # the composition root may know the pathways package

        registry = cls(REGISTRY)
        if entry_points_too:
            for entry in entry_points(group=ENTRY_POINT_GROUP):
                try:
                    loaded = entry.load()
                except InvalidPathwayError:
                    raise
                except Exception as exc:
                    raise PathwayError(f"entry point {entry.name} ({entry.value}) failed: {exc}") from exc
                for pathway in pathways_in(loaded):
                    registry.add(pathway)
        return registry

    @classmethod
    def with_files(cls, paths: Iterable[str | Path]) -> Registry:
        """The default registry plus the pathways of these Python files (``zorgpad … --file``)."""
        registry = cls.default()
        for path in paths:
            for pathway in load_file(path):
                registry.add(pathway)
        return registry

    def add(self, pathway: type[Pathway]) -> None:
        """Register ``pathway``; registering the same class twice is harmless."""
        versions = self._versions.setdefault(pathway.id, {})
        known = versions.get(pathway.version)
        if known is not None and known is not pathway:
            raise PathwayError(f"two different pathways claim {pathway.id}|{pathway.version}: "
                               f"{known.__module__}.{known.__qualname__} and "
                               f"{pathway.__module__}.{pathway.__qualname__}")
        versions[pathway.version] = pathway
        self._index = None

    def get(self, pathway_id: str, version: str | None = None) -> type[Pathway]:
        """The pathway ``pathway_id`` at ``version``, or its newest version."""
        versions = self._versions.get(pathway_id)
        if not versions:
            raise UnknownPathwayError(pathway_id, list(self._versions))
        if version is None:
            return versions[max(versions, key=_version_key)]
        if version not in versions:
            raise UnknownPathwayError(f"{pathway_id}|{version}", [f"{pathway_id}|{v}" for v in versions])
        return versions[version]

    def latest(self) -> list[type[Pathway]]:
        """The newest version of every pathway, by id."""
        return [self.get(pid) for pid in sorted(self._versions)]

    def all(self) -> list[type[Pathway]]:
        """Every registered version of every pathway."""
        return [v for pid in sorted(self._versions)
                for _, v in sorted(self._versions[pid].items(), key=lambda kv: _version_key(kv[0]))]

    @property
    def index(self) -> CriteriaIndex:
        """The criteria index over every registered version."""
        if self._index is None:
            self._index = CriteriaIndex(self.all())
        return self._index
