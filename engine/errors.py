"""Errors raised by Zorgpad.

Every error Zorgpad raises on purpose derives from :class:`PathwayError`, and also from the builtin
exception a caller would naturally catch::

    PathwayError(Exception)
    ├── InvalidPathwayError(PathwayError, ValueError)   a declaration breaks the rules; lists every reason
    ├── UnknownPathwayError(PathwayError, LookupError)  no pathway with that id (and version) is registered
    ├── IllegalTransitionError(PathwayError, ValueError)  a step or enrolment cannot move to that state
    ├── NotEnrolledError(PathwayError, LookupError)     no such enrolment, or it is not active
    ├── ConfigurationError(PathwayError, ValueError)    a database URL, time or option is unusable
    ├── MigrationError(PathwayError, ValueError)        an enrolment cannot be moved to another version
    └── BusyError(PathwayError, RuntimeError)           too much of a costly kind of work at once: try again

Messages name the thing, the expected value and the value received. Third-party errors
(SQLAlchemy, pydantic) are mapped to these at the boundary where they are caught.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "BusyError",
    "ConfigurationError",
    "IllegalTransitionError",
    "InvalidPathwayError",
    "MigrationError",
    "NotEnrolledError",
    "PathwayError",
    "UnknownPathwayError",
]


class PathwayError(Exception):
    """Root of every error Zorgpad raises on purpose."""


class InvalidPathwayError(PathwayError, ValueError):
    """A pathway declaration is invalid; ``reasons`` lists every problem found, not just the first."""

    def __init__(self, pathway: str, reasons: Sequence[str]) -> None:
        self.pathway = pathway
        self.reasons = list(reasons)
        noun = "reason" if len(self.reasons) == 1 else "reasons"
        super().__init__(f"Invalid pathway {pathway} for {len(self.reasons)} {noun}: " + "; ".join(self.reasons))


class UnknownPathwayError(PathwayError, LookupError):
    """No registered pathway has the requested id (or id and version)."""

    def __init__(self, pathway_id: str, known: Sequence[str] = ()) -> None:
        self.pathway_id = pathway_id
        hint = f" (known: {', '.join(sorted(known))})" if known else " (no pathways are registered)"
        super().__init__(f"Unknown pathway {pathway_id!r}{hint}")

    def __str__(self) -> str:  # LookupError would otherwise repr() the message
        return str(self.args[0])


class IllegalTransitionError(PathwayError, ValueError):
    """A state change that the state machine forbids."""


class NotEnrolledError(PathwayError, LookupError):
    """The enrolment does not exist or is no longer active."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not enrolled"


class ConfigurationError(PathwayError, ValueError):
    """A setting given on the command line or in the environment cannot be used."""


class MigrationError(PathwayError, ValueError):
    """Enrolments cannot be moved between the two pathway versions as asked."""


class BusyError(PathwayError, RuntimeError):
    """Too many requests of a costly kind (password checks) at once; the caller may try again shortly."""
