"""The fault and fuzz suite's tally, printed at the end of every test run (see ``pytest_terminal_summary``).

Tests add to it with :func:`count`; the names are free text, by convention ``"<suite>: <what>"``, e.g.
``count("sigkill sqlite: faults injected", 20)``. ``lost`` and ``duplicated`` counts are recorded even
when they are 0, so the summary shows that they were checked.
"""

from __future__ import annotations

from collections import Counter

COUNTS: Counter[str] = Counter()


def count(name: str, n: int = 1) -> None:
    """Add ``n`` to the tally ``name`` (``n`` may be 0: the line still shows)."""
    COUNTS[name] += n


def summary() -> list[str]:
    """The tally as lines, in name order."""
    width = max((len(name) for name in COUNTS), default=0)
    return [f"{name:<{width}}  {COUNTS[name]:>10,}" for name in sorted(COUNTS)]
