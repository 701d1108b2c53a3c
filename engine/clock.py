"""Clocks: the only way engine code learns the time.

Evaluation never calls ``datetime.now()``; the runtime passes ``now`` in, and tests use
:class:`FrozenClock` to move through months of a pathway without sleeping.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "FrozenClock", "SystemClock", "utc"]


def utc(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime; naive datetimes are taken to be UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class Clock(Protocol):
    """Something that tells the current time as an aware UTC datetime."""

    def now(self) -> datetime:
        """Return the current time."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        """Return the current UTC time."""
        return datetime.now(UTC)


class FrozenClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime) -> None:
        self._now = utc(start)

    def now(self) -> datetime:
        """Return the frozen time."""
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock forward by ``delta`` and return the new time."""
        if delta < timedelta(0):
            raise ValueError(f"a clock only moves forward (got {delta})")
        self._now += delta
        return self._now

    def set(self, when: datetime) -> datetime:
        """Move the clock to ``when``, which must not be in its past."""
        when = utc(when)
        if when < self._now:
            raise ValueError(f"a clock only moves forward (at {self._now.isoformat()}, got {when.isoformat()})")
        self._now = when
        return self._now
