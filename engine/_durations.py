"""UCUM-typed durations, so that "3 months" survives export to FHIR as 3 `mo`, not 90 days."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

Unit = Literal["min", "h", "d", "wk", "mo", "a"]

_NAMES: dict[str, tuple[str, str]] = {
    "min": ("minute", "minutes"),
    "h": ("hour", "hours"),
    "d": ("day", "days"),
    "wk": ("week", "weeks"),
    "mo": ("month", "months"),
    "a": ("year", "years"),
}
_FIXED: dict[str, timedelta] = {
    "min": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "wk": timedelta(weeks=1),
}


def _add_months(when: datetime, months: int) -> datetime:
    month_index = when.month - 1 + months
    year, month = when.year + month_index // 12, month_index % 12 + 1
    last_day = calendar.monthrange(year, month)[1]
    if when.day > last_day:
        # Clamped to the month's last day: take its last moment, so that a later start never gives an
        # earlier result (30 Jan 23:00 and 31 Jan 00:00 both end on 28 Feb 23:59:59.999999).
        return when.replace(year=year, month=month, day=last_day, hour=23, minute=59, second=59,
                            microsecond=999999)
    return when.replace(year=year, month=month)


@dataclass(frozen=True, order=False)
class Duration:
    """A whole number of UCUM time units: ``minutes``, ``hours``, ``days``, ``weeks``, ``months``, ``years``.

    Months and years are calendar units: one month after 31 January is the end of 28 or 29 February.
    """

    value: int
    unit: Unit

    def __post_init__(self) -> None:
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            raise TypeError(f"a Duration's value must be a whole number (got {self.value!r})")
        if self.value < 0:
            raise ValueError(f"a Duration cannot be negative (got {self.value})")
        if self.unit not in _NAMES:
            raise ValueError(f"a Duration's unit must be one of {', '.join(_NAMES)} (got {self.unit!r})")

    def after(self, when: datetime) -> datetime:
        """Return the moment this duration after ``when``."""
        if self.unit == "mo":
            return _add_months(when, self.value)
        if self.unit == "a":
            return _add_months(when, 12 * self.value)
        return when + self.value * _FIXED[self.unit]

    def approximate(self) -> timedelta:
        """A fixed-length stand-in (month = 30 days, year = 365 days), for comparing durations."""
        if self.unit == "mo":
            return timedelta(days=30 * self.value)
        if self.unit == "a":
            return timedelta(days=365 * self.value)
        return self.value * _FIXED[self.unit]

    def __add__(self, other: Duration) -> Duration:
        if not isinstance(other, Duration):
            return NotImplemented
        if other.unit == self.unit:
            return Duration(self.value + other.value, self.unit)
        minutes = (self.approximate() + other.approximate()) // timedelta(minutes=1)
        return Duration(int(minutes), "min")

    def __mul__(self, times: int) -> Duration:
        return Duration(self.value * times, self.unit)

    def __str__(self) -> str:
        singular, plural = _NAMES[self.unit]
        return f"{self.value} {singular if self.value == 1 else plural}"


def minutes(n: int) -> Duration:
    """``n`` minutes."""
    return Duration(n, "min")


def hours(n: int) -> Duration:
    """``n`` hours."""
    return Duration(n, "h")


def days(n: int) -> Duration:
    """``n`` days."""
    return Duration(n, "d")


def weeks(n: int) -> Duration:
    """``n`` weeks."""
    return Duration(n, "wk")


def months(n: int) -> Duration:
    """``n`` calendar months."""
    return Duration(n, "mo")


def years(n: int) -> Duration:
    """``n`` calendar years."""
    return Duration(n, "a")
