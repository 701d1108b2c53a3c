"""Touchstone (AEGIS) TestScript placeholders in Nictiz fixtures, resolved the way the harness does.

``${DATE, T, D, -450}`` is today minus 450 days as a FHIR date (valid wherever a dateTime is too); the
unit may be ``Y``, ``M`` or ``D``. ``${CURRENTDATE}`` is today. Anything else that looks like a
placeholder is an error, so that a fixture never reaches the server half-resolved.
"""

from __future__ import annotations

import calendar
import re
from datetime import date, timedelta
from typing import Any

_DATE = re.compile(r"\$\{DATE,\s*T,\s*([YMD]),\s*([+-]?\d+)\s*\}")
_CURRENT = re.compile(r"\$\{CURRENTDATE\}")
_ANY = re.compile(r"\$\{[^}]*\}")


def shift(today: date, unit: str, amount: int) -> date:
    """``today`` moved by ``amount`` years, months or days (clamped to the month's last day)."""
    if unit == "D":
        return today + timedelta(days=amount)
    months = amount * 12 if unit == "Y" else amount
    year, month = divmod(today.year * 12 + today.month - 1 + months, 12)
    day = min(today.day, calendar.monthrange(year, month + 1)[1])
    return date(year, month + 1, day)


def resolve_text(text: str, today: date) -> str:
    """``text`` with every Touchstone date placeholder replaced."""
    text = _DATE.sub(lambda m: shift(today, m.group(1), int(m.group(2))).isoformat(), text)
    text = _CURRENT.sub(today.isoformat(), text)
    leftover = _ANY.search(text)
    if leftover:
        raise ValueError(f"unsupported Touchstone placeholder {leftover.group(0)!r}")
    return text


def resolve(node: Any, today: date) -> Any:
    """A copy of a JSON value with every placeholder in its strings replaced."""
    if isinstance(node, dict):
        return {key: resolve(value, today) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve(value, today) for value in node]
    if isinstance(node, str):
        return resolve_text(node, today)
    return node
