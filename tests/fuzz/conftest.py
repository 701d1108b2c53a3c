"""The fuzz suite's server: a real `zorgpad serve` with organisations A and B seeded."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from faultcounts import count

from tests.fuzz.fuzzkit import World, seeded_server

#: Tallies that must stay 0, recorded up front so that the summary shows they were checked.
MUST_BE_ZERO = ("fuzz: 5xx answers", "fuzz: stored by bad input", "fuzz: cross-organisation leaks",
                "fuzz: requests that hung (> 10 s)", "fuzz: 4xx answers that are not an OperationOutcome")


@pytest.fixture(scope="session")
def world(database_factory: Callable[[], str]) -> Iterator[World]:
    """A server on a fresh database, with organisations A and B each holding a patient and its data.

    One for the whole fuzz suite (starting and seeding takes seconds; the run must stay under 90 s): every
    property checks its own request before and after, so they do not depend on each other.
    """
    for name in MUST_BE_ZERO:
        count(name, 0)
    with seeded_server(database_factory()) as built:
        yield built
